import type { Server } from 'node:http';
import t from 'tap';
import { type AdminDeps, clustersView, startAdminServer } from '../../../src/admin/admin-server.ts';
import type { ClusterState, ClusterStatus, EndpointStatus } from '../../../src/balancer/cluster-types.ts';
import type { ConfigBundle } from '../../../src/config/resource-types.ts';
import { SnapshotStore } from '../../../src/config/snapshot-store.ts';
import type { Cluster, Endpoint } from '../../../src/router/route-types.ts';
import { MeshMetrics } from '../../../src/telemetry/metrics.ts';
import { ResilienceStats } from '../../../src/telemetry/resilience-stats.ts';

const HOST = 'reviews.default.svc.cluster.local';
const V1 = `outbound|9080|v1|${HOST}`;
const V2 = `outbound|9080|v2|${HOST}`;

function endpoint(address: string, labels: Record<string, string>): Endpoint {
  return { id: `${address}:9080`, address, port: 9080, weight: 1, labels };
}

function cluster(name: string, subset: string, endpoints: Endpoint[]): Cluster {
  return {
    name,
    host: HOST,
    port: 9080,
    subset,
    endpoints,
    serviceFqdn: HOST,
    serviceName: 'reviews',
    serviceNamespace: 'default',
  };
}

function endpointStatus(id: string, over: Partial<EndpointStatus>): EndpointStatus {
  const [address = '', port = '0'] = id.split(':');
  return {
    id,
    address,
    port: Number(port),
    weight: 1,
    ewmaMs: null,
    inFlight: 0,
    ejectedUntilMs: null,
    timesEjected: 0,
    consecutive5xx: 0,
    consecutiveGatewayErrors: 0,
    consecutiveLocalOriginFailures: 0,
    connections: null,
    ...over,
  };
}

/** A cluster state that only answers `status()`. */
function fakeState(status: ClusterStatus): ClusterState {
  const unused = (): never => {
    throw new Error('not used by the admin server');
  };
  return {
    name: status.name,
    consistentHash: false,
    connection: undefined,
    endpoints: [],
    pick: unused,
    attemptStarted: unused,
    attemptEnded: unused,
    admit: unused,
    release: unused,
    recordRequest: unused,
    tryRetry: unused,
    retryEnded: unused,
    status: () => status,
  };
}

const NOW = 10_000;

const v1 = cluster(V1, 'v1', [
  endpoint('10.0.0.1', { app: 'reviews', version: 'v1' }),
  endpoint('10.0.0.2', { app: 'reviews', version: 'v1' }),
]);
const v2 = cluster(V2, 'v2', [endpoint('10.0.0.3', { app: 'reviews', version: 'v2' })]);

const v1Status: ClusterStatus = {
  name: V1,
  loadBalancer: 'P2C_PEAK_EWMA',
  active: 3,
  pending: 1,
  panic: true,
  counters: {
    requests: 100,
    retries: 7,
    retryBudgetExhausted: 2,
    retryOverflow: 1,
    overflows: 4,
    ejections: 5,
    pendingQueued: 6,
  },
  endpoints: [
    endpointStatus('10.0.0.1:9080', {
      ewmaMs: 12.34567,
      inFlight: 2,
      ejectedUntilMs: NOW + 30_000,
      timesEjected: 2,
      consecutive5xx: 5,
      consecutiveGatewayErrors: 3,
      consecutiveLocalOriginFailures: 1,
      connections: 4,
    }),
    // Its deadline has passed: back in service, though the state has not cleared the deadline yet.
    endpointStatus('10.0.0.2:9080', { ewmaMs: 1, ejectedUntilMs: NOW - 0.5, timesEjected: 1 }),
    // Known to the state only (an address resolved from a DNS name, say).
    endpointStatus('10.0.0.9:9080', { weight: 3, inFlight: 1 }),
  ],
};

const ZEROED = {
  ewma_ms: null,
  in_flight: 0,
  ejected: false,
  ejected_until: null,
  times_ejected: 0,
  consecutive_5xx: 0,
  consecutive_gateway_errors: 0,
  consecutive_local_origin_failures: 0,
  connections: null,
};

const EXPECTED_V2 = {
  name: V2,
  service: HOST,
  load_balancer: null,
  active: 0,
  pending: 0,
  panic: false,
  counters: {
    requests: 0,
    retries: 0,
    retry_budget_exhausted: 0,
    retry_overflow: 0,
    overflows: 0,
    ejections: 0,
    pending_queued: 0,
  },
  endpoints: [{ address: '10.0.0.3:9080', weight: 1, labels: { app: 'reviews', version: 'v2' }, ...ZEROED }],
};

function store(clusters: Cluster[]): SnapshotStore {
  return new SnapshotStore({
    version: 1,
    hash: 'h',
    loadedAt: new Date(0),
    bundle: {} as ConfigBundle,
    routes: {
      route: () => {
        throw new Error('not used by the admin server');
      },
      clusters: new Map(clusters.map((c) => [c.name, c])),
    },
    outboundTrafficPolicy: 'ALLOW_ANY',
  });
}

async function withAdmin(
  over: Partial<AdminDeps>,
  body: (get: (path: string) => Promise<{ status: number; type: string; text: string }>) => Promise<void>,
): Promise<void> {
  const deps: AdminDeps = {
    store: () => store([v1, v2]),
    listeners: () => [],
    metrics: new MeshMetrics(),
    reload: async () => ({ result: 'unchanged', version: 1, hash: 'h' }),
    ready: () => true,
    draining: () => false,
    version: 'test',
    startedAt: new Date(0),
    ...over,
  };
  const { server, port }: { server: Server; port: number } = await startAdminServer('127.0.0.1', 0, deps);
  try {
    await body(async (path) => {
      const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(5000) });
      return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
    });
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

t.test('GET /clusters merges the live state into the configured clusters', async (t) => {
  await withAdmin({ clusters: () => [fakeState(v1Status)], now: () => NOW }, async (get) => {
    const res = await get('/clusters');
    t.equal(res.status, 200);
    t.match(res.type, /application\/json/);
    const view = JSON.parse(res.text) as unknown[];
    t.same(view, [
      {
        name: V1,
        service: HOST,
        load_balancer: 'P2C_PEAK_EWMA',
        active: 3,
        pending: 1,
        panic: true,
        counters: {
          requests: 100,
          retries: 7,
          retry_budget_exhausted: 2,
          retry_overflow: 1,
          overflows: 4,
          ejections: 5,
          pending_queued: 6,
        },
        endpoints: [
          {
            address: '10.0.0.1:9080',
            weight: 1,
            labels: { app: 'reviews', version: 'v1' },
            ewma_ms: 12.346,
            in_flight: 2,
            ejected: true,
            ejected_until: 30_000,
            times_ejected: 2,
            consecutive_5xx: 5,
            consecutive_gateway_errors: 3,
            consecutive_local_origin_failures: 1,
            connections: 4,
          },
          {
            address: '10.0.0.2:9080',
            weight: 1,
            labels: { app: 'reviews', version: 'v1' },
            ...ZEROED,
            ewma_ms: 1,
            times_ejected: 1,
          },
          { address: '10.0.0.9:9080', weight: 3, labels: {}, ...ZEROED, in_flight: 1 },
        ],
      },
      EXPECTED_V2,
    ]);
  });
});

t.test('ejected_until is relative to the clock the admin server is given', async (t) => {
  const at = (now: number) => {
    const [c] = clustersView([v1], [fakeState(v1Status)], now);
    return c?.endpoints.map((e) => e.ejected_until);
  };
  const ejected = (now: number) => clustersView([v1], [fakeState(v1Status)], now)[0]?.endpoints[0]?.ejected;
  t.same(at(NOW), [30_000, null, null]);
  t.same(at(NOW + 10_000), [20_000, null, null], 'counts down as the clock moves');
  t.same(at(NOW + 29_999.5), [1, null, null], 'rounded up: never 0 while time is left');
  t.equal(ejected(NOW + 29_999.5), true);
  t.same(at(NOW + 30_000), [null, null, null], 'over at the deadline');
  t.equal(ejected(NOW + 30_000), false);
  t.same(at(NOW - 1), [30_001, 1, null], 'the second one was ejected a moment ago');
});

t.test('without cluster states, /clusters shows the configuration with zeroed live fields', async (t) => {
  await withAdmin({}, async (get) => {
    const view = JSON.parse((await get('/clusters')).text) as unknown[];
    t.equal(view.length, 2);
    t.same(view[1], EXPECTED_V2);
    t.same(view[0], {
      ...EXPECTED_V2,
      name: V1,
      endpoints: [
        { address: '10.0.0.1:9080', weight: 1, labels: { app: 'reviews', version: 'v1' }, ...ZEROED },
        { address: '10.0.0.2:9080', weight: 1, labels: { app: 'reviews', version: 'v1' }, ...ZEROED },
      ],
    });
  });
  await withAdmin({ store: () => null, clusters: () => [fakeState(v1Status)] }, async (get) => {
    t.same(JSON.parse((await get('/clusters')).text), [], 'no configuration: no clusters');
  });
});

t.test('a state whose cluster is no longer configured is not shown', async (t) => {
  t.same(
    clustersView([v2], [fakeState(v1Status)], NOW).map((c) => c.name),
    [V2],
  );
});

t.test('GET /clusters?format=text: one cluster::endpoint::field::value line per value', async (t) => {
  await withAdmin({ clusters: () => [fakeState(v1Status)], now: () => NOW }, async (get) => {
    const res = await get('/clusters?format=text');
    t.equal(res.status, 200);
    t.match(res.type, /text\/plain/);
    const lines = res.text.trimEnd().split('\n');
    for (const line of [
      `${V1}::service::${HOST}`,
      `${V1}::load_balancer::P2C_PEAK_EWMA`,
      `${V1}::active::3`,
      `${V1}::pending::1`,
      `${V1}::panic::true`,
      `${V1}::retries::7`,
      `${V1}::retry_budget_exhausted::2`,
      `${V1}::10.0.0.1:9080::weight::1`,
      `${V1}::10.0.0.1:9080::labels::app=reviews,version=v1`,
      `${V1}::10.0.0.1:9080::ewma_ms::12.346`,
      `${V1}::10.0.0.1:9080::ejected::true`,
      `${V1}::10.0.0.1:9080::ejected_until::30000`,
      `${V1}::10.0.0.1:9080::consecutive_5xx::5`,
      `${V1}::10.0.0.1:9080::connections::4`,
      `${V1}::10.0.0.9:9080::labels::`,
      `${V1}::10.0.0.9:9080::ewma_ms::-`,
      `${V2}::load_balancer::-`,
      `${V2}::10.0.0.3:9080::in_flight::0`,
    ])
      t.ok(lines.includes(line), line);
    t.equal(lines.filter((l) => l.startsWith(`${V1}::10.0.0.1:9080::`)).length, 11, 'every endpoint field');
    t.equal(lines.filter((l) => l.startsWith(`${V2}::`)).length, 5 + 7 + 11, 'cluster, counters, endpoint');
  });
  await withAdmin({ store: () => null }, async (get) => {
    t.equal((await get('/clusters?format=text')).text, '', 'no clusters: empty body');
  });
});

t.test('GET /clusters with an unknown format is refused', async (t) => {
  await withAdmin({}, async (get) => {
    const res = await get('/clusters?format=yaml');
    t.equal(res.status, 400);
    t.match(res.text, /unknown format yaml/);
    t.equal((await get('/clusters?format=json')).status, 200);
  });
});

t.test('GET /metrics serves the resilience metrics once attached', async (t) => {
  const metrics = new MeshMetrics();
  const stats = new ResilienceStats();
  stats.faultsAborted = 3;
  metrics.attachResilience(
    () => [fakeState(v1Status)],
    stats,
    () => NOW,
  );
  await withAdmin({ metrics }, async (get) => {
    const res = await get('/metrics');
    t.equal(res.status, 200);
    t.match(res.text, `meshlet_upstream_retries_total{cluster_name="${V1}"} 7\n`);
    t.match(res.text, `meshlet_endpoints_ejected{cluster_name="${V1}"} 1\n`);
    t.match(res.text, 'meshlet_faults_injected_total{kind="abort"} 3\n');
  });
});

t.test('GET / lists the endpoints', async (t) => {
  await withAdmin({}, async (get) => {
    const res = await get('/');
    t.match(res.text, /GET {2}\/clusters .*format=text/);
  });
});

t.test('GET /ready: 503 with the reason while a workload certificate is missing', async (t) => {
  let reason: string | null = 'no workload certificate yet for spiffe://cluster.local/ns/default/sa/a';
  await withAdmin({ notReadyReason: () => reason }, async (get) => {
    const waiting = await get('/ready');
    t.equal(waiting.status, 503);
    t.equal(
      waiting.text,
      'not ready: no workload certificate yet for spiffe://cluster.local/ns/default/sa/a\n',
    );
    reason = null;
    const ready = await get('/ready');
    t.same([ready.status, ready.text], [200, 'ready\n']);
  });
  await withAdmin({ notReadyReason: () => 'x', ready: () => false }, async (get) => {
    t.match((await get('/ready')).text, /configuration or listeners not up yet/, 'start-up comes first');
  });
  await withAdmin({ notReadyReason: () => 'x', draining: () => true }, async (get) => {
    t.equal((await get('/ready')).text, 'draining\n');
  });
});
