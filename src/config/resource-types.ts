import type { AccessLogSpec } from './validate-access-log.ts';
import type { TracingSpec } from './validate-tracing.ts';
/**
 * Validated, normalized Istio resources: what the loader hands to the compiler.
 *
 * Normalization done by the loader (so the compiler never repeats it):
 * - host names are lowercased and short names expanded with the namespace of the resource that
 *   names them (`reviews` in a VirtualService in `default` → `reviews.default.svc.cluster.local`);
 * - durations are milliseconds; percentages are fractions in [0, 1] at per-million resolution;
 * - enum defaults are applied as Istio applies them (see ../shared/spec/istio-subset.md);
 * - endpoint `weight: 0` (unset) becomes 1.
 * Fields that meshlet does not act on yet are kept only if listed here; the loader warns about
 * the rest by field path.
 */

/** Where something came from, for messages: `file:line:col`. Lines and columns are 1-based. */
export interface SourcePos {
  readonly file: string;
  readonly line: number;
  readonly col: number;
}

export interface ConfigIssue {
  readonly severity: 'error' | 'warning';
  readonly pos: SourcePos;
  /** Field path inside the document, e.g. `VirtualService default/reviews: spec.http[0].route[1].weight`. */
  readonly path: string;
  readonly message: string;
}

export interface ResourceMeta {
  readonly name: string;
  readonly namespace: string;
  readonly annotations: Readonly<Record<string, string>>;
  /** Where the document starts. */
  readonly pos: SourcePos;
  /** Index of the document in load order (files in name order, documents in file order). */
  readonly order: number;
}

/** StringMatch after parsing. `present` is `{}` (or the legacy `regex: "*"`). */
export type StringMatch =
  | { readonly kind: 'exact'; readonly value: string }
  | { readonly kind: 'prefix'; readonly value: string }
  /** `source` is the RE2 pattern as written; `re` is its compiled, fully anchored JS equivalent. */
  | { readonly kind: 'regex'; readonly source: string; readonly re: RegExp }
  | { readonly kind: 'present' };

export interface HTTPMatchRequest {
  readonly name?: string;
  readonly uri?: StringMatch;
  readonly scheme?: StringMatch;
  readonly method?: StringMatch;
  readonly authority?: StringMatch;
  /** Keys lowercase. */
  readonly headers: Readonly<Record<string, StringMatch>>;
  readonly withoutHeaders: Readonly<Record<string, StringMatch>>;
  /** Keys case-sensitive. */
  readonly queryParams: Readonly<Record<string, StringMatch>>;
  readonly ignoreUriCase: boolean;
  /** Build-time selectors (§2.2 step 4). */
  readonly port?: number;
  readonly sourceLabels?: Readonly<Record<string, string>>;
  readonly sourceNamespace?: string;
  readonly gateways?: readonly string[];
}

export interface Destination {
  /** Expanded FQDN, lowercase. */
  readonly host: string;
  readonly subset?: string;
  readonly port?: number;
}

export interface HeaderOps {
  /** Names lowercase. */
  readonly set: ReadonlyArray<readonly [string, string]>;
  readonly add: ReadonlyArray<readonly [string, string]>;
  readonly remove: readonly string[];
}

export interface HeaderEdits {
  readonly request?: HeaderOps;
  readonly response?: HeaderOps;
}

export interface HTTPRouteDestination {
  readonly destination: Destination;
  /** 0 when unset. */
  readonly weight: number;
  readonly headers?: HeaderEdits;
}

export interface HTTPRedirect {
  readonly uri?: string;
  readonly prefixRewrite?: string;
  readonly authority?: string;
  readonly scheme?: string;
  readonly port?: number;
  readonly derivePort?: 'FROM_PROTOCOL_DEFAULT' | 'FROM_REQUEST_PORT';
  /** Default 301. */
  readonly redirectCode: number;
}

export interface HTTPDirectResponse {
  readonly status: number;
  readonly body?: Buffer;
}

export interface HTTPRewrite {
  readonly uri?: string;
  /**
   * `match` is the RE2 pattern translated to a JS RegExp that is NOT anchored and has the `g` flag
   * (every non-overlapping match is substituted); `rewrite` is already in JS replacement syntax
   * (`\1` → `$1`, a literal `$` → `$$`), so the rewritten path is `path.replace(match, rewrite)`.
   */
  readonly uriRegexRewrite?: { readonly match: RegExp; readonly rewrite: string };
  readonly authority?: string;
}

export interface Percent {
  /** Fraction in [0, 1]. */
  readonly fraction: number;
}

export interface HTTPFault {
  readonly delay?: { readonly fixedDelayMs: number; readonly fraction: number };
  readonly abort?: { readonly httpStatus?: number; readonly grpcStatus?: string; readonly fraction: number };
}

export interface HTTPRetry {
  /** Retries (not tries). 0 disables. */
  readonly attempts: number;
  readonly perTryTimeoutMs?: number;
  /** Raw comma-separated `retryOn`, already defaulted. */
  readonly retryOn: string;
  readonly retryRemoteLocalities?: boolean;
  readonly retryIgnorePreviousHosts?: boolean;
  readonly backoffMs?: number;
}

export interface HTTPMirror {
  readonly destination: Destination;
  /** Default 1 (100 %). */
  readonly fraction: number;
}

export interface HTTPRoute {
  readonly name?: string;
  /** Empty: the rule has no `match` (a catch-all). */
  readonly match: readonly HTTPMatchRequest[];
  readonly route: readonly HTTPRouteDestination[];
  readonly redirect?: HTTPRedirect;
  readonly directResponse?: HTTPDirectResponse;
  readonly rewrite?: HTTPRewrite;
  readonly headers?: HeaderEdits;
  /** Undefined or 0: no route timeout. */
  readonly timeoutMs?: number;
  readonly retries?: HTTPRetry;
  readonly fault?: HTTPFault;
  readonly mirrors: readonly HTTPMirror[];
  /** Kept raw; acted on by the resilience issue. */
  readonly corsPolicy?: unknown;
}

export interface VirtualServiceSpec {
  /** Expanded FQDNs (or `*.suffix`), lowercase, no duplicates. */
  readonly hosts: readonly string[];
  /** Empty means `mesh`. */
  readonly gateways: readonly string[];
  readonly http: readonly HTTPRoute[];
  readonly exportTo: readonly string[];
}

export interface ServicePort {
  readonly number: number;
  /** Upper-cased; '' when unset. */
  readonly protocol: string;
  readonly name: string;
  readonly targetPort?: number;
}

export interface WorkloadEntry {
  readonly address: string;
  readonly ports: Readonly<Record<string, number>>;
  readonly labels: Readonly<Record<string, string>>;
  /** 0 in YAML becomes 1. */
  readonly weight: number;
  readonly locality?: string;
  readonly network?: string;
  readonly serviceAccount?: string;
}

export interface ServiceEntrySpec {
  readonly hosts: readonly string[];
  readonly addresses: readonly string[];
  readonly ports: readonly ServicePort[];
  readonly location: 'MESH_EXTERNAL' | 'MESH_INTERNAL';
  readonly resolution: 'NONE' | 'STATIC' | 'DNS' | 'DNS_ROUND_ROBIN' | 'DYNAMIC_DNS';
  readonly endpoints: readonly WorkloadEntry[];
  readonly exportTo: readonly string[];
  readonly subjectAltNames: readonly string[];
}

/**
 * A DestinationRule traffic policy. Parsed and validated now; most of it is acted on by the
 * resilience and zero-trust issues. Kept as validated plain data (durations in ms).
 *
 * Convention for the plain-data components: the Istio field names are kept as written
 * (`connectTimeout`, `baseEjectionTime`, `httpCookie.ttl`, ...), but every Duration value is
 * replaced by a number of milliseconds (`connectTimeout: 6s` → `connectTimeout: 6000`). Enums are
 * upper-case strings as in Istio; integers stay numbers; nothing is defaulted here (an absent
 * field is absent), so the consumer applies the defaults of spec §3.4–§3.7.
 */
export interface TrafficPolicy {
  readonly loadBalancer?: LoadBalancerSettings;
  readonly connectionPool?: ConnectionPoolSettings;
  readonly outlierDetection?: OutlierDetectionSettings;
  readonly tls?: Readonly<Record<string, unknown>>;
  readonly portLevelSettings: ReadonlyArray<{
    readonly port: number;
    readonly loadBalancer?: LoadBalancerSettings;
    readonly connectionPool?: ConnectionPoolSettings;
    readonly outlierDetection?: OutlierDetectionSettings;
    readonly tls?: Readonly<Record<string, unknown>>;
  }>;
}

/** DR `loadBalancer` as validated (spec §3.4). Durations in ms; absent means absent. */
export interface LoadBalancerSettings {
  readonly simple?: 'UNSPECIFIED' | 'LEAST_CONN' | 'RANDOM' | 'PASSTHROUGH' | 'ROUND_ROBIN' | 'LEAST_REQUEST';
  readonly consistentHash?: ConsistentHashSettings;
  readonly localityLbSetting?: Readonly<Record<string, unknown>>;
  readonly warmupDurationSecs?: number;
  readonly warmup?: Readonly<Record<string, unknown>>;
}

/** Exactly one hash key is present (the validator enforces it); at most one of ringHash / maglev. */
export interface ConsistentHashSettings {
  readonly httpHeaderName?: string;
  readonly httpCookie?: {
    readonly name: string;
    readonly path?: string;
    /** ms; 0 = session cookie. Absent: never issue a cookie. */
    readonly ttl?: number;
    readonly attributes?: ReadonlyArray<{ readonly name: string; readonly value?: string }>;
  };
  readonly useSourceIp?: boolean;
  readonly httpQueryParameterName?: string;
  readonly ringHash?: { readonly minimumRingSize?: number };
  readonly maglev?: { readonly tableSize?: number };
  /** Deprecated top-level ring size. */
  readonly minimumRingSize?: number;
}

/** DR `connectionPool` as validated (spec §3.5). Durations in ms; 0 integers mean "unset". */
export interface ConnectionPoolSettings {
  readonly tcp?: {
    readonly maxConnections?: number;
    readonly connectTimeout?: number;
    readonly tcpKeepalive?: Readonly<Record<string, unknown>>;
    readonly maxConnectionDuration?: number;
    readonly idleTimeout?: number;
  };
  readonly http?: {
    readonly http1MaxPendingRequests?: number;
    readonly http2MaxRequests?: number;
    readonly maxRequestsPerConnection?: number;
    readonly maxRetries?: number;
    readonly idleTimeout?: number;
    readonly h2UpgradePolicy?: 'DEFAULT' | 'DO_NOT_UPGRADE' | 'UPGRADE';
    readonly useClientProtocol?: boolean;
    readonly maxConcurrentStreams?: number;
    readonly http2KeepAlive?: Readonly<Record<string, unknown>>;
  };
}

/** DR `outlierDetection` as validated (spec §3.6). Durations in ms; defaults applied by the consumer. */
export interface OutlierDetectionSettings {
  readonly consecutiveErrors?: number;
  readonly consecutiveLocalOriginFailures?: number;
  readonly consecutiveGatewayErrors?: number;
  readonly consecutive5xxErrors?: number;
  readonly splitExternalLocalOriginErrors?: boolean;
  readonly interval?: number;
  readonly baseEjectionTime?: number;
  readonly maxEjectionPercent?: number;
  readonly minHealthPercent?: number;
  readonly outlierDetectionHttpErrorCodes?: readonly number[];
}

export interface Subset {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly trafficPolicy?: TrafficPolicy;
}

export interface DestinationRuleSpec {
  /** Expanded FQDN or `*.suffix`, lowercase. */
  readonly host: string;
  readonly subsets: readonly Subset[];
  readonly trafficPolicy?: TrafficPolicy;
  readonly exportTo: readonly string[];
  readonly workloadSelector?: Readonly<Record<string, string>>;
}

export interface SidecarSpec {
  /** Only `outboundTrafficPolicy` is acted on for now. */
  readonly outboundTrafficPolicy?: 'ALLOW_ANY' | 'REGISTRY_ONLY';
  readonly workloadSelector?: Readonly<Record<string, string>>;
}

/** PeerAuthentication `mtls.mode` values; UNSET inherits (spec §5). */
export type PeerAuthenticationMode = 'UNSET' | 'DISABLE' | 'PERMISSIVE' | 'STRICT';

/** `security.istio.io` PeerAuthentication (spec §5.1). */
export interface PeerAuthenticationSpec {
  /** `selector.matchLabels`; absent: namespace-wide (or mesh-wide in the root namespace). */
  readonly selector?: Readonly<Record<string, string>>;
  /** `mtls.mode`; absent (or no `mtls`) means UNSET. */
  readonly mode?: PeerAuthenticationMode;
  /** Workload (container) port → mode. Only with a selector. */
  readonly portLevelMtls: ReadonlyMap<number, PeerAuthenticationMode>;
}

/** One `from[].source` (spec §6.3). Absent lists are absent (not empty). */
export interface AuthzSource {
  readonly principals?: readonly string[];
  readonly notPrincipals?: readonly string[];
  readonly namespaces?: readonly string[];
  readonly notNamespaces?: readonly string[];
  readonly serviceAccounts?: readonly string[];
  readonly notServiceAccounts?: readonly string[];
  readonly trustDomains?: readonly string[];
  readonly notTrustDomains?: readonly string[];
  readonly ipBlocks?: readonly string[];
  readonly notIpBlocks?: readonly string[];
  readonly remoteIpBlocks?: readonly string[];
  readonly notRemoteIpBlocks?: readonly string[];
  /** JWT: meshlet validates no JWT, so a request never has a request principal. */
  readonly requestPrincipals?: readonly string[];
  readonly notRequestPrincipals?: readonly string[];
}

/** One `to[].operation` (spec §6.3). */
export interface AuthzOperation {
  readonly hosts?: readonly string[];
  readonly notHosts?: readonly string[];
  readonly ports?: readonly string[];
  readonly notPorts?: readonly string[];
  readonly methods?: readonly string[];
  readonly notMethods?: readonly string[];
  readonly paths?: readonly string[];
  readonly notPaths?: readonly string[];
}

/** One `when[]` condition. */
export interface AuthzCondition {
  readonly key: string;
  readonly values?: readonly string[];
  readonly notValues?: readonly string[];
}

export interface AuthzRule {
  readonly from: readonly AuthzSource[];
  readonly to: readonly AuthzOperation[];
  readonly when: readonly AuthzCondition[];
}

/** `security.istio.io` AuthorizationPolicy (spec §6). CUSTOM is rejected at load. */
export interface AuthorizationPolicySpec {
  readonly selector?: Readonly<Record<string, string>>;
  /** Set when the policy uses `targetRef`/`targetRefs` (waypoint/gateway only: skipped by a sidecar). */
  readonly hasTargetRefs: boolean;
  readonly action: 'ALLOW' | 'DENY' | 'AUDIT';
  /** Absent `rules` and `rules: []` are both empty. */
  readonly rules: readonly AuthzRule[];
  /** `istio.io/dry-run: "true"` annotation: evaluate and log, never enforce. */
  readonly dryRun: boolean;
}

/** Where a workload's identity comes from (Proxy `identity`). */
export type IdentitySettings =
  /** Issue short-lived workload certificates in memory from this CA (files written by `meshlet ca init`). */
  | {
      readonly kind: 'ca';
      /** CA certificate (PEM) path. */
      readonly caCertFile: string;
      /** CA private key (PEM) path. */
      readonly caKeyFile: string;
      /** Extra trust anchors (PEM) besides the CA, for anchor rotation. */
      readonly trustBundleFile?: string;
      /** Workload certificate lifetime, ms (default 24 h). */
      readonly certTtl?: number;
    }
  /** Certificate, key and bundle files managed by someone else; watched and reloaded. */
  | {
      readonly kind: 'files';
      readonly certFile: string;
      readonly keyFile: string;
      readonly trustBundleFile: string;
    };

/** One workload served by a node-mode proxy (Proxy `workloads[]`). */
export interface WorkloadSpec {
  readonly name: string;
  readonly namespace?: string;
  readonly serviceAccount?: string;
  readonly labels?: Readonly<Record<string, string>>;
  /** Inbound listener port for this workload. */
  readonly inboundPort: number;
  /** `HOST:PORT` of the application. */
  readonly app: string;
  /** Identity for this workload; absent: the Proxy's `identity` (issuing mode issues one per workload). */
  readonly identity?: IdentitySettings;
}

/** `meshlet.dev/v1alpha1` `Proxy`: the bootstrap of this process. Every field is optional. */
export interface ProxySpec {
  readonly mode?: 'sidecar' | 'node';
  readonly namespace?: string;
  readonly workloadName?: string;
  readonly serviceAccount?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly trustDomain?: string;
  readonly domainSuffix?: string;
  readonly outboundPort?: number;
  readonly inboundPort?: number;
  readonly adminPort?: number;
  /**
   * Address the admin port binds (default 127.0.0.1). `0.0.0.0` lets kubelet probes and Prometheus
   * reach it from outside the pod; `/reload` is then reachable from the pod network too.
   */
  readonly adminHost?: string;
  /** `HOST:PORT` of the local application. */
  readonly app?: string;
  readonly engine?: 'h1' | 'uws' | 'node';
  readonly logLevel?: 'debug' | 'info' | 'warn' | 'error';
  readonly outboundTrafficPolicy?: 'ALLOW_ANY' | 'REGISTRY_ONLY';
  readonly drainTimeoutMs?: number;
  readonly accessLog?: AccessLogSpec;
  readonly tracing?: TracingSpec;
  /** Linkerd-style retry budget applied per cluster (issue 3). Absent fields take the defaults. */
  readonly retryBudget?: {
    /** Extra load retries may add, as a fraction of requests (default 0.2). */
    readonly retryRatio?: number;
    /** Retries always allowed per second (default 10). */
    readonly minRetriesPerSecond?: number;
    /** Window, ms (default 10 000). */
    readonly ttl?: number;
  };
  /** Namespace whose PeerAuthentication/AuthorizationPolicy apply mesh-wide (default `istio-system`). */
  readonly rootNamespace?: string;
  /** Where the workload certificate comes from; absent: no mTLS (plaintext only, PERMISSIVE inbound). */
  readonly identity?: IdentitySettings;
  /** Node mode: the workloads this process serves (each its own inbound port, app and identity). */
  readonly workloads?: readonly WorkloadSpec[];
  /** How often DNS-resolved ServiceEntry hosts are re-resolved, ms (default 30 000, Envoy's dns_refresh_rate is 5 s; Istio uses the record TTL). */
  readonly dnsRefreshRate?: number;
}

export interface Resource<S> {
  readonly meta: ResourceMeta;
  readonly spec: S;
}

/** Everything a load produced. `issues` holds errors and warnings; valid when no error. */
export interface ConfigBundle {
  readonly serviceEntries: readonly Resource<ServiceEntrySpec>[];
  readonly virtualServices: readonly Resource<VirtualServiceSpec>[];
  readonly destinationRules: readonly Resource<DestinationRuleSpec>[];
  readonly sidecars: readonly Resource<SidecarSpec>[];
  readonly peerAuthentications: readonly Resource<PeerAuthenticationSpec>[];
  readonly authorizationPolicies: readonly Resource<AuthorizationPolicySpec>[];
  /** The last `Proxy` document, or null when there is none. */
  readonly proxy: Resource<ProxySpec> | null;
  readonly issues: readonly ConfigIssue[];
  /** Files read, in order. */
  readonly files: readonly string[];
  /** sha256 hex of the concatenated file contents in load order. */
  readonly hash: string;
  /** The raw documents as plain objects, for `/config_dump`. */
  readonly documents: readonly unknown[];
}

/** Settings the loader needs to normalize names. */
export interface LoadOptions {
  /**
   * Namespace for resources without `metadata.namespace`. When given (the CLI flag) it wins;
   * otherwise the `Proxy` document's `spec.namespace`, else `default`.
   */
  readonly namespace?: string;
  /** When given it wins; otherwise the `Proxy` document's `spec.domainSuffix`, else `cluster.local`. */
  readonly domainSuffix?: string;
}
