import type { ClusterRegistry } from '../balancer/cluster-types.ts';
import type { SnapshotStore } from '../config/snapshot-store.ts';
import type { AccessLog } from '../telemetry/access-log.ts';
import type { MeshMetrics, WorkloadIdentity } from '../telemetry/metrics.ts';
import type { ResilienceStats } from '../telemetry/resilience-stats.ts';
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
  readonly accessLog: AccessLog | null;
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
}

/** What an exchange needs from the pipeline that owns it. */
export interface ExchangeOwner {
  readonly deps: PipelineDeps;
  readonly timers: Timers;
  /** The exchange is over: telemetry observes it and it leaves the in-flight count. */
  finished(ex: Exchange): void;
}
