/**
 * Counters of the request-path stages that are not per cluster: faults injected and mirrors. The
 * pipeline bumps plain numbers (no label lookups on the request path); the metrics exposition reads
 * them at scrape time. Per-cluster counters (retries, budget exhaustion, overflows, ejections) live
 * in each `ClusterState` (balancer/cluster-types.ts).
 */
export class ResilienceStats {
  /** Requests delayed by a fault (`DI`). */
  faultsDelayed = 0;
  /** Requests aborted by a fault (`FI`). */
  faultsAborted = 0;
  /** Mirror copies sent (the copy left for its upstream). */
  mirrorsSent = 0;
  /** Mirror copies that failed (no endpoint, connect failure, reset...). The primary never sees it. */
  mirrorsFailed = 0;
  /** Mirror copies not sent: the request body was larger than the mirror buffer. */
  mirrorsSkipped = 0;
}
