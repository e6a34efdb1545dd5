/**
 * Contracts of the inbound security decisions (spec §5 and §6), implemented in tls/ and used by the
 * pipeline: the mTLS mode of a workload port (PeerAuthentication) and the authorization decision
 * of a request (AuthorizationPolicy). Both are compiled once per configuration snapshot and workload.
 */
import type { HeaderList } from '../listener/listener-types.ts';
import type { PeerIdentity } from './identity-types.ts';

/** The workload a decision is for (sidecar: this proxy; node mode: one of its workloads). */
export interface WorkloadSelectorInput {
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** What authorization looks at for one inbound request. */
export interface AuthzRequest {
  readonly method: string;
  /** `:authority` / Host as received (port kept). */
  readonly host: string;
  /** Request path as received (query included; the authorizer strips and normalizes). */
  readonly path: string;
  /** Destination (workload) port. */
  readonly port: number;
  readonly headers: HeaderList;
  /** Direct peer IP. */
  readonly sourceIp: string;
  /**
   * Local (workload) IP the connection arrived on, for the `destination.ip` condition. Absent when
   * the caller does not know it: `destination.ip` values then never match and notValues always do.
   */
  readonly destinationIp?: string;
  /** Verified mTLS identity; absent on plaintext. */
  readonly peer?: PeerIdentity;
  /** SNI of the TLS connection, when any. */
  readonly sni?: string;
}

export interface AuthzDecision {
  readonly allowed: boolean;
  /**
   * Why, Envoy style: `rbac_access_denied_matched_policy[ns-name-rule[i]]` or `[none]` when denied,
   * `allowed_by[ns-name-rule[i]]` / `no_allow_policy` when allowed. For logs and the access log.
   */
  readonly reason: string;
  /** A dry-run policy would have denied this request (logged, never enforced). */
  readonly dryRunDenied?: string;
  /** A matching AUDIT rule marked the request. */
  readonly audited: boolean;
}

export interface Authorizer {
  /** True when no policy applies to the workload: every request is allowed, skip the stage. */
  readonly empty: boolean;
  check(req: AuthzRequest): AuthzDecision;
}
