import { Counter, Gauge, type Registry } from 'prom-client';
import type { ClusterState, ClusterStatus } from '../balancer/cluster-types.ts';
import type { ResilienceStats } from './resilience-stats.ts';

/**
 * The resilience metrics (retries, budgets, circuit breaking, outlier ejection, faults, mirrors).
 *
 * Nothing here runs on the request path: the request path bumps plain numbers in each
 * `ClusterState` and in `ResilienceStats`, and every metric below reads them in its prom-client
 * `collect()`, that is only when `/metrics` is scraped. Each scrape rebuilds the series from the
 * sources, so a cluster that leaves the configuration simply stops being reported.
 */

/** Where the values come from; replaceable (see `ResilienceMetrics.sources`). */
export interface ResilienceSources {
  /** Every live cluster state (`ClusterRegistry.all`). */
  readonly clusters: () => Iterable<ClusterState>;
  readonly stats: ResilienceStats;
  /** The monotonic clock of the cluster states (ms), to tell which ejections are still running. */
  readonly now: () => number;
}

/** The metric names, for documentation and tests. */
export const RESILIENCE_METRICS = {
  retries: 'meshlet_upstream_retries_total',
  retryBudgetExhausted: 'meshlet_retry_budget_exhausted_total',
  retryOverflow: 'meshlet_retry_overflow_total',
  upstreamOverflow: 'meshlet_upstream_overflow_total',
  ejections: 'meshlet_outlier_ejections_total',
  endpointsEjected: 'meshlet_endpoints_ejected',
  pending: 'meshlet_upstream_requests_pending',
  active: 'meshlet_upstream_requests_active',
  faults: 'meshlet_faults_injected_total',
  mirrors: 'meshlet_mirror_requests_total',
} as const;

type ClusterLabel = 'cluster_name';

/** A per-cluster value read from one cluster's status; `now` is the scrape's clock reading. */
type ClusterValue = (s: ClusterStatus, now: number) => number;

export class ResilienceMetrics {
  /** Read at every scrape; `MeshMetrics.attachResilience` may replace it. */
  sources: ResilienceSources;
  /**
   * The cluster statuses of the scrape in progress. prom-client calls every metric's `collect()`
   * synchronously, one after the other, when a scrape starts; sharing one read across them makes a
   * scrape cost one `status()` per cluster instead of one per cluster and metric, and gives all
   * per-cluster metrics of one scrape the same instant. Cleared at the next microtask.
   */
  private scrape: { readonly statuses: readonly ClusterStatus[]; readonly now: number } | null = null;

  constructor(registry: Registry, sources: ResilienceSources) {
    this.sources = sources;
    const perCluster = (kind: 'counter' | 'gauge', name: string, help: string, value: ClusterValue): void => {
      const read = () => this.read();
      if (kind === 'counter') {
        new Counter<ClusterLabel>({
          name,
          help,
          labelNames: ['cluster_name'],
          registers: [registry],
          collect() {
            // A counter cannot be set; it is rebuilt from the monotonic source on every scrape.
            this.reset();
            const { statuses, now } = read();
            for (const s of statuses) this.inc({ cluster_name: s.name }, value(s, now));
          },
        });
      } else {
        new Gauge<ClusterLabel>({
          name,
          help,
          labelNames: ['cluster_name'],
          registers: [registry],
          collect() {
            this.reset();
            const { statuses, now } = read();
            for (const s of statuses) this.set({ cluster_name: s.name }, value(s, now));
          },
        });
      }
    };

    perCluster(
      'counter',
      RESILIENCE_METRICS.retries,
      'Retries sent to the upstream cluster (Envoy upstream_rq_retry).',
      (s) => s.counters.retries,
    );
    perCluster(
      'counter',
      RESILIENCE_METRICS.retryBudgetExhausted,
      'Retries refused because the retry budget was exhausted.',
      (s) => s.counters.retryBudgetExhausted,
    );
    perCluster(
      'counter',
      RESILIENCE_METRICS.retryOverflow,
      'Retries refused by the connection-pool maxRetries limit (Envoy upstream_rq_retry_overflow).',
      (s) => s.counters.retryOverflow,
    );
    perCluster(
      'counter',
      RESILIENCE_METRICS.upstreamOverflow,
      'Requests answered 503 UO because the pending queue of the cluster was full (Envoy upstream_rq_pending_overflow).',
      (s) => s.counters.overflows,
    );
    perCluster(
      'counter',
      RESILIENCE_METRICS.ejections,
      'Endpoints ejected by outlier detection (Envoy outlier_detection.ejections_enforced_total).',
      (s) => s.counters.ejections,
    );
    perCluster(
      'gauge',
      RESILIENCE_METRICS.endpointsEjected,
      'Endpoints of the cluster ejected right now.',
      (s, now) => {
        // A past deadline the state has not cleared yet is not an ejection any more.
        let n = 0;
        for (const e of s.endpoints) if (e.ejectedUntilMs !== null && e.ejectedUntilMs > now) n++;
        return n;
      },
    );
    perCluster(
      'gauge',
      RESILIENCE_METRICS.pending,
      'Requests waiting for a connection-pool slot of the cluster.',
      (s) => s.pending,
    );
    perCluster(
      'gauge',
      RESILIENCE_METRICS.active,
      'Requests holding a connection-pool slot of the cluster.',
      (s) => s.active,
    );

    const stats = (): ResilienceStats => this.sources.stats;
    new Counter<'kind'>({
      name: RESILIENCE_METRICS.faults,
      help: 'Requests delayed (kind="delay", flag DI) or aborted (kind="abort", flag FI) by fault injection.',
      labelNames: ['kind'],
      registers: [registry],
      collect() {
        const s = stats();
        this.reset();
        this.inc({ kind: 'delay' }, s.faultsDelayed);
        this.inc({ kind: 'abort' }, s.faultsAborted);
      },
    });
    new Counter<'result'>({
      name: RESILIENCE_METRICS.mirrors,
      help: 'Mirrored request copies: sent, failed (the copy got no response), skipped (body over the mirror buffer).',
      labelNames: ['result'],
      registers: [registry],
      collect() {
        const s = stats();
        this.reset();
        this.inc({ result: 'sent' }, s.mirrorsSent);
        this.inc({ result: 'failed' }, s.mirrorsFailed);
        this.inc({ result: 'skipped' }, s.mirrorsSkipped);
      },
    });
  }

  private read(): { readonly statuses: readonly ClusterStatus[]; readonly now: number } {
    if (this.scrape === null) {
      const statuses: ClusterStatus[] = [];
      for (const c of this.sources.clusters()) statuses.push(c.status());
      this.scrape = { statuses, now: this.sources.now() };
      queueMicrotask(() => {
        this.scrape = null;
      });
    }
    return this.scrape;
  }
}
