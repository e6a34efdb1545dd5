import type { ClusterRegistry } from '../balancer/cluster-types.ts';
import type { Snapshot, SnapshotStore } from '../config/snapshot-store.ts';
import type { Cluster, Endpoint } from '../router/route-types.ts';
import type { MeshMetrics, WorkloadIdentity } from '../telemetry/metrics.ts';
import type { RequestObserver } from '../telemetry/observed-request.ts';
import type { ResilienceStats } from '../telemetry/resilience-stats.ts';
import type { Tracer } from '../telemetry/trace-types.ts';
import type { MtlsMode, UpstreamTls } from '../tls/identity-types.ts';
import type { Authorizer } from '../tls/policy-types.ts';
import type { UpstreamClient, UpstreamTarget } from '../upstream/upstream-types.ts';
import type { Exchange } from './exchange.ts';

/** A pending timer, as `Timers.start` returned it. */
export type TimerHandle = object;

/**
 * One-shot timers (fault delay, route timeout, per-try timeout, retry back-off, mirror timeout).
 * Injected so tests can move time by hand; the process uses Node's timers.
 */
export interface Timers {
  /** Runs `fn` once after `ms`. */
  start(fn: () => void, ms: number): TimerHandle;
  /** Cancels a timer that has not fired yet (a no-op for one that did). */
  cancel(handle: TimerHandle): void;
}

export const NODE_TIMERS: Timers = {
  start: (fn, ms) => setTimeout(fn, ms),
  cancel: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface PipelineDeps {
  readonly store: SnapshotStore;
  readonly upstream: UpstreamClient;
  /** Per-cluster state: endpoint choice, load feedback, admission, retry budget. */
  readonly clusters: ClusterRegistry;
  /** Fault and mirror counters (per-cluster counters live in the cluster states). */
  readonly stats: ResilienceStats;
  readonly metrics: MeshMetrics;
  readonly identity: WorkloadIdentity;
  /**
   * Observers of every finished request after the metrics (access log, live stats, tap), in order.
   * Each must be cheap and never throw; export is their own, batched and asynchronous.
   */
  readonly observers?: readonly RequestObserver[];
  /** Tracing (trace context in and out, spans); absent: trace headers pass through untouched. */
  readonly tracer?: Tracer;
  /** Random source in [0, 1): fault, mirror and back-off draws. Injected for deterministic tests. */
  readonly random: () => number;
  /** Monotonic milliseconds (the clock the timers run on). */
  readonly now: () => number;
  /** Default: Node's `setTimeout`. */
  readonly timers?: Timers;
  readonly requestId: () => string;
  /** The local application that inbound traffic goes to. */
  readonly app: UpstreamTarget | null;
  /** Own namespace, for inbound metrics. */
  readonly namespace: string;
  /** Reports an internal error caught on the request path (logged; the process keeps serving). */
  readonly onBug: (err: unknown) => void;
  /**
   * The workload the `inbound` handler serves (sidecar: this proxy). Absent: one made of `app`,
   * `identity` and `namespace`, without identity or policies (plaintext, everything allowed).
   */
  readonly inboundWorkload?: InboundWorkload;
  /**
   * TLS origination for one outbound attempt (DestinationRule `tls`, auto-mTLS; tls/origination.ts).
   * Called per attempt, so it must be cheap (the origination module caches). Absent: plaintext.
   */
  readonly originate?: (cluster: Cluster, endpoint: Endpoint) => Origination;
  /** This proxy's own SPIFFE id for outbound mTLS (`source_principal`), or null without an identity. */
  readonly spiffeId?: () => string | null;
  /** Security events worth a log line (rate-limited by the receiver): see `SecurityEvent`. */
  readonly onSecurityEvent?: (event: SecurityEvent) => void;
}

/**
 * What origination answers for one attempt: the TLS settings, undefined for plaintext, or the reason
 * TLS cannot be originated now (ISTIO_MUTUAL without a workload certificate): that attempt fails
 * like a connection failure (UF, retried as one) and the reason goes to the log.
 */
export type Origination = UpstreamTls | undefined | { readonly error: string };

/** Narrows an `Origination` to its error form. */
export function originationError(o: Origination): string | null {
  return o !== undefined && 'error' in o && typeof o.error === 'string' ? o.error : null;
}

/**
 * One workload the inbound side serves: a sidecar's own application, or one of a node-mode proxy's
 * workloads (each with its own inbound listener, application, identity and policies).
 */
export interface InboundWorkload {
  /** Workload name: metric label of the authorization counters, logs. */
  readonly name: string;
  /** The local application; null: inbound requests get 503 UH. */
  readonly app: UpstreamTarget | null;
  /** The destination_* labels of inbound metrics. */
  readonly identity: WorkloadIdentity;
  /** For `destination_service_namespace`. */
  readonly namespace: string;
  /** Own SPIFFE id (`By=` of x-forwarded-client-cert, `destination_principal`); null without identity. */
  spiffeId(): string | null;
  /** The workload's policies in one configuration snapshot (compiled once per snapshot). */
  policy(snapshot: Snapshot): InboundPolicy;
}

/** The inbound security decisions of a workload in one snapshot. */
export interface InboundPolicy {
  /** AuthorizationPolicy engine; null (or `empty`): no policy applies, every request is allowed. */
  readonly authorizer: Authorizer | null;
  /** PeerAuthentication mode of the application port. */
  readonly mode: MtlsMode;
}

/** Inbound workload policies when nothing is configured: PERMISSIVE, no authorization. */
export const OPEN_POLICY: InboundPolicy = { authorizer: null, mode: 'PERMISSIVE' };

export type SecurityEvent =
  /** A dry-run AuthorizationPolicy would have denied this request (not enforced). */
  | {
      readonly kind: 'authz-dry-run-denied';
      readonly workload: string;
      readonly reason: string;
      readonly method: string;
      readonly path: string;
      readonly source: string;
    }
  /** An AuthorizationPolicy denied a request (403). */
  | {
      readonly kind: 'authz-denied';
      readonly workload: string;
      readonly reason: string;
      readonly method: string;
      readonly path: string;
      readonly source: string;
    }
  /** A plaintext request reached a STRICT workload (its connection is closed). */
  | { readonly kind: 'strict-plaintext'; readonly workload: string; readonly source: string }
  /** TLS origination failed (no certificate, server identity mismatch, handshake error): UF. */
  | {
      readonly kind: 'upstream-tls';
      readonly cluster: string;
      readonly endpoint: string;
      readonly reason: string;
    };

/** What an exchange needs from the pipeline that owns it. */
export interface ExchangeOwner {
  readonly deps: PipelineDeps;
  readonly timers: Timers;
  /** The exchange is over: telemetry observes it and it leaves the in-flight count. */
  finished(ex: Exchange): void;
}
