/**
 * The security side of one served workload (the sidecar's application, or one workload of a
 * node-mode proxy): its identity, its inbound listener's TLS, and its policies per configuration
 * snapshot. Also the destination modes auto-mTLS reads for outbound clusters.
 *
 * Policies are compiled once per snapshot and workload (`prepare`, called when a snapshot is made
 * or swapped in) and read on the request path with one comparison: the last snapshot asked about is
 * kept beside its policies, so a steady stream of requests never touches the WeakMap.
 *
 * The compilers are passed in (tls/authorization.ts, tls/peer-authentication.ts in the process), so
 * this file only decides what is compiled for whom and when.
 */
import type { SecureContext } from 'node:tls';
import type { AuthorizationPolicySpec, PeerAuthenticationSpec, Resource } from '../config/resource-types.ts';
import type { Snapshot } from '../config/snapshot-store.ts';
import type { InboundTls } from '../listener/listener-types.ts';
import type { Cluster } from '../router/route-types.ts';
import type { WorkloadIdentity } from '../telemetry/metrics.ts';
import type { IdentitySource, MtlsMode } from '../tls/identity-types.ts';
import type { Authorizer, WorkloadSelectorInput } from '../tls/policy-types.ts';
import type { UpstreamTarget } from '../upstream/upstream-types.ts';
import type { InboundPolicy, InboundWorkload } from './pipeline-types.ts';

export type CompileAuthorizer = (
  policies: readonly Resource<AuthorizationPolicySpec>[],
  workload: WorkloadSelectorInput,
  rootNamespace: string,
  trustDomain: string,
) => Authorizer & { readonly warnings?: readonly string[] };

export type CompilePeerAuthentication = (
  policies: readonly Resource<PeerAuthenticationSpec>[],
  workload: WorkloadSelectorInput,
  rootNamespace: string,
) => (port: number) => MtlsMode;

export interface PolicyCompilers {
  readonly authorizer: CompileAuthorizer;
  readonly peerAuthentication: CompilePeerAuthentication;
  readonly rootNamespace: string;
  readonly trustDomain: string;
}

export interface WorkloadSecurityOptions {
  readonly name: string;
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly app: UpstreamTarget | null;
  /** destination_* labels of the inbound metrics. */
  readonly identity: WorkloadIdentity;
  /** Where the workload's certificate comes from; null: no identity (plaintext inbound only). */
  readonly source: IdentitySource | null;
  /** The SPIFFE id the workload is configured with (the certificate's own id wins once there is one). */
  readonly spiffeId: string | null;
  readonly compilers: PolicyCompilers;
  /** Server context for the current certificate (tls/secure-context.ts), or null without one. */
  readonly secureContext?: () => SecureContext | null;
}

/** What compiling a snapshot found worth a log line. */
export interface PolicyReport {
  readonly mode: MtlsMode;
  /** Applicable AuthorizationPolicies (when the compiler tells), for the log. */
  readonly policies: readonly string[];
  /** Rules the compiler had to drop, and settings that cannot be honoured. */
  readonly warnings: readonly string[];
}

export class WorkloadSecurity implements InboundWorkload {
  readonly name: string;
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly app: UpstreamTarget | null;
  readonly identity: WorkloadIdentity;
  readonly source: IdentitySource | null;
  private readonly configuredId: string | null;
  private readonly compilers: PolicyCompilers;
  private readonly contextOf: (() => SecureContext | null) | undefined;
  private readonly compiled = new WeakMap<Snapshot, InboundPolicy>();
  private lastSnapshot: Snapshot | null = null;
  private lastPolicy: InboundPolicy | null = null;

  constructor(o: WorkloadSecurityOptions) {
    this.name = o.name;
    this.namespace = o.namespace;
    this.labels = o.labels;
    this.app = o.app;
    this.identity = o.identity;
    this.source = o.source;
    this.configuredId = o.spiffeId;
    this.compilers = o.compilers;
    this.contextOf = o.secureContext;
  }

  spiffeId(): string | null {
    return this.source?.current()?.spiffe.uri ?? this.configuredId;
  }

  policy(snapshot: Snapshot): InboundPolicy {
    if (snapshot === this.lastSnapshot && this.lastPolicy !== null) return this.lastPolicy;
    let policy = this.compiled.get(snapshot);
    if (policy === undefined) policy = this.compile(snapshot).policy;
    this.lastSnapshot = snapshot;
    this.lastPolicy = policy;
    return policy;
  }

  /**
   * Compiles the workload's policies for `snapshot` ahead of its first request. Throws when a
   * compiler does (the caller rejects that configuration).
   */
  prepare(snapshot: Snapshot): PolicyReport {
    return this.compile(snapshot).report;
  }

  private compile(snapshot: Snapshot): { policy: InboundPolicy; report: PolicyReport } {
    const c = this.compilers;
    const workload: WorkloadSelectorInput = { namespace: this.namespace, labels: this.labels };
    const bundle = snapshot.bundle;
    const authorizer = c.authorizer(
      bundle.authorizationPolicies ?? [],
      workload,
      c.rootNamespace,
      c.trustDomain,
    );
    const modeOf = c.peerAuthentication(bundle.peerAuthentications ?? [], workload, c.rootNamespace);
    const mode = modeOf(this.app?.port ?? 0);
    const policy: InboundPolicy = { authorizer: authorizer.empty ? null : authorizer, mode };
    this.compiled.set(snapshot, policy);
    const warnings = [...(authorizer.warnings ?? [])];
    if (mode === 'STRICT' && this.source === null) {
      warnings.push(
        `PeerAuthentication makes workload ${this.name} STRICT but it has no identity (Proxy identity): ` +
          'mTLS cannot be terminated, so every plaintext request is refused',
      );
    }
    const named = (authorizer as { readonly policies?: readonly string[] }).policies;
    return { policy, report: { mode, policies: named ?? [], warnings } };
  }

  /**
   * The inbound listener's TLS (undefined without an identity: the listener stays plaintext, and
   * STRICT is still enforced by the pipeline, which refuses plaintext requests). Both functions are
   * read per connection: the mode of the current snapshot, the context of the current certificate.
   */
  inboundTls(current: () => Snapshot): InboundTls | undefined {
    const contextOf = this.contextOf;
    if (this.source === null || contextOf === undefined) return undefined;
    return {
      mode: () => this.policy(current()).mode,
      secureContext: contextOf,
    };
  }
}

/**
 * The server-side mode of a destination cluster, for auto-mTLS (spec §3.7: no mTLS to a destination
 * whose PeerAuthentication is DISABLE). The destination workloads are the cluster's endpoints: the
 * labels they all share select workload policies, the service namespace is theirs, and the port is
 * the endpoints' target port when they agree on one (the service port otherwise). Computed once per
 * cluster object (clusters go with their snapshot).
 */
export function destinationModes(
  current: () => Snapshot,
  compile: CompilePeerAuthentication,
  rootNamespace: string,
): (cluster: Cluster) => MtlsMode | undefined {
  const modes = new WeakMap<Cluster, MtlsMode>();
  return (cluster) => {
    let mode = modes.get(cluster);
    if (mode === undefined) {
      const policies = current().bundle.peerAuthentications ?? [];
      if (policies.length === 0) mode = 'PERMISSIVE';
      else {
        const endpoints = cluster.endpoints;
        const labels = sharedLabels(endpoints.map((e) => e.labels));
        const first = endpoints[0]?.port;
        const port = first !== undefined && endpoints.every((e) => e.port === first) ? first : cluster.port;
        mode = compile(policies, { namespace: cluster.serviceNamespace, labels }, rootNamespace)(port);
      }
      modes.set(cluster, mode);
    }
    return mode;
  };
}

/** The labels every set has with the same value (empty for no sets). */
export function sharedLabels(sets: readonly Readonly<Record<string, string>>[]): Record<string, string> {
  const [first, ...rest] = sets;
  if (first === undefined) return {};
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(first)) if (rest.every((s) => s[k] === v)) out[k] = v;
  return out;
}
