/**
 * The contract between the request path (pipeline/) and the per-cluster state the balancer room
 * keeps: endpoint choice, load feedback, outlier detection, circuit breaking (connection-pool
 * limits) and the retry budget. One `ClusterState` per cluster name (`outbound|port|subset|host`),
 * kept by a `ClusterRegistry` across configuration reloads: per-endpoint state (EWMA, in-flight,
 * ejections, consecutive failures) survives for endpoint ids that did not change.
 */
import type { ConnectionPoolSettings } from '../config/resource-types.ts';
import type { HeaderList } from '../listener/listener-types.ts';
import type { Cluster, Endpoint } from '../router/route-types.ts';
import type { ConnectionPolicy, UpstreamFailure } from '../upstream/upstream-types.ts';

export type { ConnectionPolicy };

/** What a consistent-hash policy may hash on, for one request. */
export interface PickContext {
  /** Request headers, lowercase names (`cookie` included). */
  readonly headers: HeaderList;
  /** Origin-form path with query string (for `httpQueryParameterName`). */
  readonly path: string;
  /** Downstream peer IP (for `useSourceIp`). */
  readonly remoteAddress: string;
}

export interface Pick {
  readonly endpoint: Endpoint;
  /**
   * Set when a consistent-hash `httpCookie` policy with `ttl` made up a cookie value because the
   * request had none: the whole `Set-Cookie` header value the response must carry.
   */
  readonly setCookie?: string;
}

/**
 * How one attempt at an endpoint ended, as the outlier detector and the EWMA need it.
 * `status` is the upstream's own status (0 when it sent none); `failure` is the local-origin
 * failure (null when the upstream answered). `rttMs` is the time to the response head, or to the
 * failure.
 */
export interface AttemptResult {
  readonly rttMs: number;
  readonly status: number;
  readonly failure: UpstreamFailure | 'per-try-timeout' | null;
}

/** Result of asking for a request slot under the connection-pool limits. */
export type Admission =
  /** A slot is held: call `release()` exactly once when the request is done with the upstream. */
  | { readonly kind: 'granted' }
  /**
   * Over the active-request / connection limit with room in the pending queue: `onGranted` (given
   * to `admit`) runs later with the slot held, unless `cancel()` was called first.
   */
  | { readonly kind: 'queued'; cancel(): void }
  /** Pending queue full: answer 503 UO with `x-envoy-overloaded: true` at once, never retried. */
  | { readonly kind: 'overflow' };

/** Why a retry was refused by the cluster (see `tryRetry`). */
export type RetryRefusal = 'budget' | 'max-retries';

/** Counters for `/clusters` and the metrics exposition (monotonic over the state's lifetime). */
export interface ClusterCounters {
  readonly requests: number;
  readonly retries: number;
  readonly retryBudgetExhausted: number;
  readonly retryOverflow: number;
  readonly overflows: number;
  readonly ejections: number;
  readonly pendingQueued: number;
}

/** Per-endpoint view for `/clusters` (JSON). */
export interface EndpointStatus {
  readonly id: string;
  readonly address: string;
  readonly port: number;
  readonly weight: number;
  /** Peak-EWMA RTT estimate in ms (null for pickers that do not keep one). */
  readonly ewmaMs: number | null;
  readonly inFlight: number;
  /** Monotonic-clock ms until which the endpoint is ejected, or null. */
  readonly ejectedUntilMs: number | null;
  readonly timesEjected: number;
  readonly consecutive5xx: number;
  readonly consecutiveGatewayErrors: number;
  readonly consecutiveLocalOriginFailures: number;
  /** Open upstream connections (busy + idle) when the upstream client reports them, else null. */
  readonly connections: number | null;
}

export interface ClusterStatus {
  readonly name: string;
  /** `P2C_PEAK_EWMA`, `ROUND_ROBIN`, `LEAST_REQUEST`, `RANDOM`, `RING_HASH`, `MAGLEV`. */
  readonly loadBalancer: string;
  readonly active: number;
  readonly pending: number;
  /** True while the healthy share is under `minHealthPercent` (all endpoints used). */
  readonly panic: boolean;
  readonly counters: ClusterCounters;
  readonly endpoints: readonly EndpointStatus[];
}

export interface ClusterState {
  readonly name: string;
  /** True for consistent-hash policies: retries then keep previous hosts unless told otherwise. */
  readonly consistentHash: boolean;
  /** Connection settings for `UpstreamRequest.pool`, or undefined when the cluster sets none. */
  readonly connection: ConnectionPolicy | undefined;
  /** Endpoints after DNS resolution (what the picker chooses from, ejected ones included). */
  readonly endpoints: readonly Endpoint[];

  /**
   * Chooses an endpoint among the non-ejected ones (all of them in panic mode); null when none is
   * available (→ 503 UH). `exclude`: ids already tried by this request, skipped while others remain.
   */
  pick(ctx: PickContext, exclude?: ReadonlySet<string>): Pick | null;

  /** An attempt was sent to `endpoint` (in-flight +1, load feedback start). */
  attemptStarted(endpoint: Endpoint): void;
  /** Exactly once per `attemptStarted`: EWMA end, outlier detection bookkeeping. */
  attemptEnded(endpoint: Endpoint, result: AttemptResult): void;

  /** Connection-pool admission for one request (before its first attempt). */
  admit(onGranted: () => void): Admission;
  /** Releases a slot granted by `admit` (directly or through `onGranted`). */
  release(): void;

  /** Records an original request (the retry budget counts them). */
  recordRequest(): void;
  /**
   * Takes one retry: null when allowed (then `retryEnded()` must follow once the retry's attempt is
   * over), or why it is refused (budget exhausted, or `maxRetries` concurrent retries in flight).
   */
  tryRetry(): RetryRefusal | null;
  retryEnded(): void;

  status(): ClusterStatus;
}

/** Keeps one `ClusterState` per cluster name across snapshots. */
export interface ClusterRegistry {
  /**
   * The state for `cluster`. Fast path: the same `Cluster` object as last time returns the cached
   * state. A new `Cluster` object with the same name updates the state in place (new endpoints,
   * new policy), keeping per-endpoint state by id.
   */
  get(cluster: Cluster): ClusterState;
  /** Forget clusters the current configuration no longer has. */
  retain(clusterNames: ReadonlySet<string>): void;
  /** Every cluster state, for `/clusters` and metrics. */
  all(): Iterable<ClusterState>;
  /** Stops timers (outlier interval, DNS refresh). */
  close(): void;
}

/** Effective connection-pool limits, with Istio's "0 or absent = unlimited". */
export function poolLimits(pool: ConnectionPoolSettings | undefined): {
  readonly maxConnections: number;
  readonly maxPending: number;
  readonly maxRequests: number;
  readonly maxRetries: number;
} {
  const unlimited = (n: number | undefined): number => (n === undefined || n <= 0 ? Infinity : n);
  return {
    maxConnections: unlimited(pool?.tcp?.maxConnections),
    maxPending: unlimited(pool?.http?.http1MaxPendingRequests),
    maxRequests: unlimited(pool?.http?.http2MaxRequests),
    maxRetries: unlimited(pool?.http?.maxRetries),
  };
}
