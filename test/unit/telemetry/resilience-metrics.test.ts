import { spawnSync } from 'node:child_process';
import t from 'tap';
import type {
  ClusterCounters,
  ClusterState,
  ClusterStatus,
  EndpointStatus,
} from '../../../src/balancer/cluster-types.ts';
import { istioLabels, MeshMetrics } from '../../../src/telemetry/metrics.ts';
import { ResilienceStats } from '../../../src/telemetry/resilience-stats.ts';
import { PRODUCTPAGE, REVIEWS } from '../../helpers/metric-parties.ts';

/** A cluster state that only answers `status()`, with counters the test bumps by hand. */
class FakeState implements ClusterState {
  readonly consistentHash = false;
  readonly connection = undefined;
  readonly endpoints = [];
  statusCalls = 0;
  active = 0;
  pending = 0;
  counters: { -readonly [K in keyof ClusterCounters]: ClusterCounters[K] } = {
    requests: 0,
    retries: 0,
    retryBudgetExhausted: 0,
    retryOverflow: 0,
    overflows: 0,
    ejections: 0,
    pendingQueued: 0,
  };
  ejectedUntil: (number | null)[] = [];
  readonly name: string;
  constructor(name: string) {
    this.name = name;
  }
  pick(): never {
    throw new Error('not used');
  }
  attemptStarted(): void {}
  attemptEnded(): void {}
  admit(): never {
    throw new Error('not used');
  }
  release(): void {}
  recordRequest(): void {}
  tryRetry(): null {
    return null;
  }
  retryEnded(): void {}
  status(): ClusterStatus {
    this.statusCalls++;
    return {
      name: this.name,
      loadBalancer: 'P2C_PEAK_EWMA',
      active: this.active,
      pending: this.pending,
      panic: false,
      counters: { ...this.counters },
      endpoints: this.ejectedUntil.map(
        (until, i): EndpointStatus => ({
          id: `10.0.0.${i + 1}:9080`,
          address: `10.0.0.${i + 1}`,
          port: 9080,
          weight: 1,
          ewmaMs: 1,
          inFlight: 0,
          ejectedUntilMs: until,
          timesEjected: until === null ? 0 : 1,
          consecutive5xx: 0,
          consecutiveGatewayErrors: 0,
          consecutiveLocalOriginFailures: 0,
          connections: null,
        }),
      ),
    };
  }
}

/** The value of one sample line, or undefined when the exposition has no such line. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

const V1 = 'outbound|9080|v1|reviews.default.svc.cluster.local';
const V2 = 'outbound|9080|v2|reviews.default.svc.cluster.local';

t.test('no resilience metrics until attached', async (t) => {
  const m = new MeshMetrics();
  const text = await m.exposition();
  t.notMatch(text, /meshlet_upstream_retries_total/);
  t.notMatch(text, /meshlet_faults_injected_total/);
});

t.test('per-cluster counters and gauges are read from the states at scrape time', async (t) => {
  const m = new MeshMetrics();
  const stats = new ResilienceStats();
  const a = new FakeState(V1);
  const b = new FakeState(V2);
  let states: FakeState[] = [a, b];
  let now = 1500;
  m.attachResilience(
    () => states,
    stats,
    () => now,
  );

  let text = await m.exposition();
  t.equal(sample(text, `meshlet_upstream_retries_total{cluster_name="${V1}"}`), 0, 'zero before traffic');
  t.equal(sample(text, `meshlet_faults_injected_total{kind="delay"}`), 0);
  t.equal(sample(text, `meshlet_mirror_requests_total{result="skipped"}`), 0);

  a.counters.retries = 7;
  a.counters.retryBudgetExhausted = 2;
  a.counters.retryOverflow = 3;
  a.counters.overflows = 4;
  a.counters.ejections = 5;
  a.active = 6;
  a.pending = 8;
  a.ejectedUntil = [1600, null, 2000, 1500];
  b.counters.retries = 11;
  stats.faultsDelayed = 12;
  stats.faultsAborted = 13;
  stats.mirrorsSent = 14;
  stats.mirrorsFailed = 15;
  stats.mirrorsSkipped = 16;
  const before = a.statusCalls;
  text = await m.exposition();
  t.equal(a.statusCalls - before, 1, 'one status() per cluster per scrape, shared by all metrics');

  t.match(text, /# TYPE meshlet_upstream_retries_total counter/);
  t.match(text, /# TYPE meshlet_endpoints_ejected gauge/);
  t.match(text, /# TYPE meshlet_upstream_requests_pending gauge/);
  t.match(text, /# TYPE meshlet_upstream_requests_active gauge/);
  t.match(text, /# TYPE meshlet_faults_injected_total counter/);
  t.match(text, /# TYPE meshlet_mirror_requests_total counter/);
  t.equal(sample(text, `meshlet_upstream_retries_total{cluster_name="${V1}"}`), 7);
  t.equal(sample(text, `meshlet_upstream_retries_total{cluster_name="${V2}"}`), 11);
  t.equal(sample(text, `meshlet_retry_budget_exhausted_total{cluster_name="${V1}"}`), 2);
  t.equal(sample(text, `meshlet_retry_overflow_total{cluster_name="${V1}"}`), 3);
  t.equal(sample(text, `meshlet_upstream_overflow_total{cluster_name="${V1}"}`), 4);
  t.equal(sample(text, `meshlet_outlier_ejections_total{cluster_name="${V1}"}`), 5);
  t.equal(sample(text, `meshlet_upstream_requests_active{cluster_name="${V1}"}`), 6);
  t.equal(sample(text, `meshlet_upstream_requests_pending{cluster_name="${V1}"}`), 8);
  t.equal(
    sample(text, `meshlet_endpoints_ejected{cluster_name="${V1}"}`),
    2,
    'two ejections running; one over at its deadline',
  );
  t.equal(sample(text, `meshlet_endpoints_ejected{cluster_name="${V2}"}`), 0);
  t.equal(sample(text, `meshlet_faults_injected_total{kind="delay"}`), 12);
  t.equal(sample(text, `meshlet_faults_injected_total{kind="abort"}`), 13);
  t.equal(sample(text, `meshlet_mirror_requests_total{result="sent"}`), 14);
  t.equal(sample(text, `meshlet_mirror_requests_total{result="failed"}`), 15);
  t.equal(sample(text, `meshlet_mirror_requests_total{result="skipped"}`), 16);

  a.counters.retries = 9;
  states = [a];
  now = 1700;
  text = await m.exposition();
  t.equal(sample(text, `meshlet_endpoints_ejected{cluster_name="${V1}"}`), 1, 'read with the clock');
  t.equal(sample(text, `meshlet_upstream_retries_total{cluster_name="${V1}"}`), 9, 'not added twice');
  t.equal(
    sample(text, `meshlet_upstream_retries_total{cluster_name="${V2}"}`),
    undefined,
    'a cluster that left the configuration is no longer reported',
  );
  t.equal(sample(text, `meshlet_endpoints_ejected{cluster_name="${V2}"}`), undefined);

  // A second attach replaces the sources instead of registering the metrics twice.
  const other = new ResilienceStats();
  other.faultsAborted = 1;
  m.attachResilience(() => [], other);
  text = await m.exposition();
  t.equal(sample(text, `meshlet_faults_injected_total{kind="abort"}`), 1);
  t.equal(sample(text, `meshlet_upstream_retries_total{cluster_name="${V1}"}`), undefined);
});

t.test('the whole exposition passes promtool check metrics', async (t) => {
  const m = new MeshMetrics();
  const stats = new ResilienceStats();
  stats.faultsDelayed = 1;
  stats.mirrorsSent = 2;
  const a = new FakeState(V1);
  a.counters.retries = 3;
  a.ejectedUntil = [5, null];
  m.attachResilience(
    () => [a, new FakeState(V2)],
    stats,
    () => 0,
  );
  m.reload('applied');
  // Every metric family present: Istio's request metrics (two label sets, one with a body), the
  // overflow counter past a cap of 2, identities, listeners.
  const self = PRODUCTPAGE;
  const peer = REVIEWS;
  const full = new MeshMetrics({ maxRequestSeries: 2 });
  for (const [code, flags] of [
    [200, ''],
    [503, 'UF'],
    [404, 'NR'],
  ] as const)
    full.record(
      `${code}`,
      () => istioLabels('source', self, peer, { app: 'reviews' }, code, flags),
      12,
      100,
      2000,
    );
  full.attachListenerConnections(() => [
    { name: 'outbound', connectionsActive: () => 1, connectionsTotal: () => 3 },
  ]);
  full.attachListeners(() => [{ name: 'inbound', tlsHandshakeErrors: () => 1, plaintextRefused: () => 0 }]);
  full.attachIdentities(() => [
    {
      spiffeId: 'spiffe://cluster.local/ns/default/sa/a',
      current: () => ({ notAfter: new Date(0) }) as never,
      rotations: 0,
    },
  ]);
  full.attachResilience(
    () => [a],
    stats,
    () => 0,
  );
  const fullText = await full.exposition();
  t.match(fullText, /istio_response_bytes_bucket/);
  t.match(fullText, /meshlet_metric_series_overflow_total 1\n/);
  const fullRun = spawnSync('promtool', ['check', 'metrics'], {
    input: fullText,
    encoding: 'utf8',
    timeout: 10_000,
  });
  t.equal(fullRun.error, undefined, 'promtool runs');
  // Istio's duration histogram is in milliseconds, not the base unit: promtool notes that (exit
  // code 3: lint findings, no parse error), and that is all it may say. The `_bytes` histograms
  // are in base units already.
  t.equal(fullRun.status, 3, "promtool's exit code for lint findings only");
  t.same(
    `${fullRun.stdout}${fullRun.stderr}`.trim().split('\n'),
    ['istio_request_duration_milliseconds use base unit "seconds" instead of "milliseconds"'],
    `only the note on Istio's unit name: ${fullRun.stdout}${fullRun.stderr}`,
  );

  const text = await m.exposition();
  t.notMatch(text, /nodejs_active_\w+_total/, "prom-client's gauges named _total are left out");
  t.match(text, /# TYPE meshlet_nodejs_active_handles gauge/, 'their per-type gauges stay');
  // promtool ships with the `prometheus` package (apt-get install prometheus).
  const run = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 10_000 });
  t.equal(run.error, undefined, 'promtool runs (install the prometheus package if it is missing)');
  t.equal(run.status, 0, `promtool accepts the exposition: ${run.stdout}${run.stderr}`);
  t.equal(`${run.stdout}${run.stderr}`.trim(), '', 'no lint findings');
});
