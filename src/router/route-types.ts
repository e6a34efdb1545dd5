import type {
  ConfigBundle,
  HeaderOps,
  HTTPFault,
  HTTPMirror,
  HTTPRetry,
  TrafficPolicy,
} from '../config/resource-types.ts';
import type { HeaderList } from '../listener/listener-types.ts';

/** One upstream endpoint of a cluster. */
export interface Endpoint {
  /** `address:port`; stable across reloads, so per-endpoint state (pools, EWMA) survives. */
  readonly id: string;
  readonly address: string;
  readonly port: number;
  /** ≥ 1. */
  readonly weight: number;
  readonly labels: Readonly<Record<string, string>>;
  /** WorkloadEntry `serviceAccount` (expected server identity for ISTIO_MUTUAL), when given. */
  readonly serviceAccount?: string;
}

/** An upstream pool: `outbound|<port>|<subset>|<host>`. */
export interface Cluster {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  /** '' when none. */
  readonly subset: string;
  /** Endpoints selected by the subset's labels (all endpoints when no subset). May be empty. */
  readonly endpoints: readonly Endpoint[];
  /** Effective DestinationRule policy for this cluster (§3.2), or undefined. */
  readonly trafficPolicy?: TrafficPolicy;
  /** ServiceEntry `location` (auto-mTLS never applies to MESH_EXTERNAL). Absent: MESH_EXTERNAL. */
  readonly location?: 'MESH_EXTERNAL' | 'MESH_INTERNAL';
  /** ServiceEntry `subjectAltNames`: expected server identities for mTLS origination. */
  readonly subjectAltNames?: readonly string[];
  /** For metrics: `destination_service` (the FQDN). */
  readonly serviceFqdn: string;
  /** For metrics: `destination_service_name` (first label). */
  readonly serviceName: string;
  /** For metrics: `destination_service_namespace` (the namespace of the ServiceEntry). */
  readonly serviceNamespace: string;
}

/**
 * A mirror destination resolved to its cluster when the configuration is compiled, so the request
 * path never looks a mirror up by name. `fraction` is in [0, 1]: the share of requests copied.
 */
export interface MirrorTarget {
  readonly cluster: Cluster;
  readonly fraction: number;
}

/** What the router looks at. Built once per request by the pipeline. */
export interface RouteInput {
  readonly method: string;
  /** `Host` / `:authority` as sent, port included when present. */
  readonly authority: string;
  /** Origin-form path with its query string, as received. */
  readonly path: string;
  /** `http` or `https`. */
  readonly scheme: string;
  /** Lowercase names. */
  readonly headers: HeaderList;
}

/** Fields shared by every routed decision. */
interface RoutedBase {
  /** `<vs-namespace>/<vs-name>` rule name for logs, or '' for the default route. */
  readonly routeName: string;
  /** Response header edits to apply (already ordered per §2.6); empty when none. */
  readonly responseHeaders: readonly HeaderOps[];
}

export type RouteDecision =
  | (RoutedBase & {
      readonly kind: 'forward';
      readonly cluster: Cluster;
      /** Path to send upstream (after `rewrite.uri` / `uriRegexRewrite`), query kept. */
      readonly path: string;
      /** Authority to send upstream (after `rewrite.authority` or header edits), else the original. */
      readonly authority: string;
      /** Set when the path was rewritten: the original, for `x-envoy-original-path`. */
      readonly originalPath?: string;
      /** Request header edits, already ordered per §2.6. */
      readonly requestHeaders: readonly HeaderOps[];
      /** Undefined: no route timeout. */
      readonly timeoutMs?: number;
      /** The route's retry policy; undefined means Istio's default policy. */
      readonly retries?: HTTPRetry;
      readonly fault?: HTTPFault;
      /** The rule's mirrors as configured, with the destination port filled in (config dumps, tests). */
      readonly mirrors: readonly HTTPMirror[];
      /**
       * The mirrors that resolved to a cluster (what the pipeline sends copies to); empty when none.
       * A mirror whose host, port or subset does not exist is left out here and reported in
       * `RouteTable.warnings`.
       */
      readonly mirrorClusters: readonly MirrorTarget[];
    })
  | (RoutedBase & {
      readonly kind: 'redirect';
      readonly status: number;
      readonly location: string;
    })
  | (RoutedBase & {
      readonly kind: 'direct';
      readonly status: number;
      readonly body: Buffer | null;
    })
  /** ALLOW_ANY for an unknown host: forward to `host:port` from the authority (default port 80). */
  | {
      readonly kind: 'passthrough';
      readonly host: string;
      readonly port: number;
    }
  /**
   * No route. `status` 404 when a known host's rules did not match; 502 for an unknown host under
   * REGISTRY_ONLY (`serviceName` is then `BlackHoleCluster`).
   */
  | {
      readonly kind: 'noRoute';
      readonly status: 404 | 502;
      readonly reason: string;
      readonly serviceFqdn: string;
      readonly serviceName: string;
    }
  /** The chosen destination names a host or subset that does not exist: 503 NC. */
  | {
      readonly kind: 'noCluster';
      readonly clusterName: string;
      readonly reason: string;
      readonly routeName: string;
    };

/** Settings the compiler needs about this proxy (§2.2 build-time selectors, §4.3). */
export interface CompileOptions {
  readonly namespace: string;
  readonly domainSuffix: string;
  /** The proxy's own labels, for `sourceLabels`. */
  readonly proxyLabels: Readonly<Record<string, string>>;
  readonly outboundTrafficPolicy: 'ALLOW_ANY' | 'REGISTRY_ONLY';
  /** Random source in [0, 1) for weighted choices; injected so tests are deterministic. */
  readonly random: () => number;
}

/** The compiled, immutable routing table for one configuration version. */
export interface RouteTable {
  /** Decide what to do with one outbound request. Cost: a hash lookup plus the host's own rules. */
  route(input: RouteInput): RouteDecision;
  /** Every cluster the configuration defines (for `/clusters` and config dumps). */
  readonly clusters: ReadonlyMap<string, Cluster>;
  /**
   * Problems found while compiling that do not stop the configuration from serving (e.g. a mirror
   * to a host that does not exist: no copy is sent). Logged once per load; absent means none.
   */
  readonly warnings?: readonly string[];
}

export type CompileRoutes = (bundle: ConfigBundle, options: CompileOptions) => RouteTable;
