import type { Server } from 'node:http';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import t from 'tap';
import {
  type AdminDeps,
  clustersView,
  isLoopback,
  startAdminServer,
} from '../../../src/admin/admin-server.ts';
import { DASHBOARD_HTML } from '../../../src/admin/dashboard.ts';
import type { ClusterState, ClusterStatus, EndpointStatus } from '../../../src/balancer/cluster-types.ts';
import type { ConfigBundle } from '../../../src/config/resource-types.ts';
import { SnapshotStore } from '../../../src/config/snapshot-store.ts';
import type { Cluster, Endpoint } from '../../../src/router/route-types.ts';
import { LiveStats } from '../../../src/telemetry/live-stats.ts';
import { createLogger } from '../../../src/telemetry/logger.ts';
import { MeshMetrics } from '../../../src/telemetry/metrics.ts';
import type { ObservedRequest } from '../../../src/telemetry/observed-request.ts';
import { ResilienceStats } from '../../../src/telemetry/resilience-stats.ts';
import { Tap } from '../../../src/telemetry/tap.ts';

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
  body: (
    get: (
      path: string,
      init?: RequestInit,
    ) => Promise<{ status: number; type: string; text: string; headers: Headers }>,
    port: number,
  ) => Promise<void>,
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
    await body(async (path, init = {}) => {
      const res = await fetch(`http://127.0.0.1:${port}${path}`, {
        signal: AbortSignal.timeout(5000),
        ...init,
      });
      return {
        status: res.status,
        type: res.headers.get('content-type') ?? '',
        text: await res.text(),
        headers: res.headers,
      };
    }, port);
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

t.test('GET /help lists the endpoints, GET / serves the dashboard', async (t) => {
  await withAdmin({}, async (get) => {
    const help = await get('/help');
    t.match(help.text, /GET {2}\/clusters .*format=text/);
    for (const e of [
      'GET  /stats',
      'GET  /tap',
      'GET  /logging',
      'POST /logging',
      'POST /drain',
      'POST /shutdown',
    ])
      t.match(help.text, e);
    const page = await get('/');
    t.equal(page.status, 200);
    t.match(page.type, /^text\/html/);
    t.equal(page.text, DASHBOARD_HTML);
  });
});

t.test('unknown paths 404, wrong methods 405 with Allow', async (t) => {
  await withAdmin({}, async (get) => {
    const missing = await get('/nope');
    t.equal(missing.status, 404);
    t.match(missing.text, /unknown admin endpoint \/nope; GET \/help lists them/);
    const reload = await get('/reload');
    t.equal(reload.status, 405);
    t.equal(reload.headers.get('allow'), 'POST');
    const stats = await get('/stats', { method: 'POST' });
    t.equal(stats.status, 405);
    t.equal(stats.headers.get('allow'), 'GET');
    t.equal((await get('/logging', { method: 'DELETE' })).headers.get('allow'), 'GET, POST');
  });
});

t.test('GET /stats: the snapshot, compact or ?pretty', async (t) => {
  let now = 5000;
  const live = new LiveStats({ now: () => now, wallClock: () => 0 });
  now = 7500;
  await withAdmin({ stats: live }, async (get) => {
    const res = await get('/stats');
    t.equal(res.status, 200);
    t.match(res.type, /application\/json/);
    t.equal(res.text.trimEnd().split('\n').length, 1, 'one line');
    t.same(JSON.parse(res.text), {
      time: '1970-01-01T00:00:00.000Z',
      uptime_s: 2.5,
      windows: [10, 60],
      services: [],
      routes: [],
      recent_errors: [],
    });
    const pretty = await get('/stats?pretty');
    t.ok(pretty.text.split('\n').length > 5);
    t.same(JSON.parse(pretty.text), JSON.parse(res.text));
  });
  await withAdmin({}, async (get) => {
    t.equal((await get('/stats')).status, 501);
  });
});

t.test('GET /logging shows the level, POST /logging changes it', async (t) => {
  const lines: string[] = [];
  const logger = createLogger('info', (l) => lines.push(l));
  await withAdmin({ logger }, async (get) => {
    t.same(JSON.parse((await get('/logging')).text), {
      level: 'info',
      levels: ['debug', 'info', 'warn', 'error'],
    });
    const changed = await get('/logging?level=debug', { method: 'POST' });
    t.equal(changed.status, 200);
    t.same(JSON.parse(changed.text), { level: 'debug', previous: 'info' });
    t.equal(logger.level, 'debug');
    t.ok(logger.enabled('debug'));
    t.match(lines.at(-1), /"level":"info","msg":"log level changed","from":"info","to":"debug"/);
    t.equal(JSON.parse((await get('/logging')).text).level, 'debug');
    const bad = await get('/logging?level=trace', { method: 'POST' });
    t.equal(bad.status, 400);
    t.match(bad.text, /use \?level=debug\|info\|warn\|error/);
    t.equal(logger.level, 'debug', 'unchanged');
    await get('/logging?level=error', { method: 'POST' });
    t.match(lines.at(-1), /"level":"error","msg":"log level changed"/, 'shows under the new level');
  });
});

t.test('POST /drain: draining, idempotent; POST /shutdown: answers, then shuts down', async (t) => {
  let draining = false;
  let drains = 0;
  let shutdowns = 0;
  await withAdmin(
    {
      draining: () => draining,
      drain: () => {
        drains++;
        draining = true;
      },
      shutdown: () => {
        shutdowns++;
      },
    },
    async (get) => {
      t.equal((await get('/ready')).status, 200);
      const first = await get('/drain', { method: 'POST' });
      t.equal(first.status, 200);
      t.match(first.text, /^draining: new connections are refused/);
      t.same([(await get('/ready')).status, (await get('/ready')).text], [503, 'draining\n']);
      const again = await get('/drain', { method: 'POST' });
      t.same([again.status, again.text], [200, 'already draining\n']);
      t.equal(drains, 2, 'drain() is called each time and must be idempotent');
      const bye = await get('/shutdown', { method: 'POST' });
      t.equal(bye.status, 202);
      await new Promise((r) => setImmediate(r));
      t.equal(shutdowns, 1, 'after the reply');
    },
  );
  await withAdmin({}, async (get) => {
    t.equal((await get('/drain', { method: 'POST' })).status, 501);
    t.equal((await get('/shutdown', { method: 'POST' })).status, 501);
  });
});

t.test('state-changing endpoints refuse cross-origin pages', async (t) => {
  let reloads = 0;
  await withAdmin(
    {
      reload: async () => {
        reloads++;
        return { result: 'unchanged', version: 1, hash: 'h' };
      },
    },
    async (get, port) => {
      const res = await get('/reload', { method: 'POST', headers: { origin: 'http://evil.example' } });
      t.equal(res.status, 403);
      t.match(res.text, /another origin \(http:\/\/evil\.example\)/);
      t.equal(reloads, 0);
      t.equal((await get('/reload', { method: 'POST' })).status, 200);
      t.equal(reloads, 1);
      // DNS rebinding: a page at rebind.example (resolving to 127.0.0.1) is same-origin with itself.
      // (fetch cannot set Host: node:http can.)
      const rebound = await postWithHost(
        port,
        '/reload',
        'rebind.example:15000',
        'http://rebind.example:15000',
      );
      t.equal(rebound.status, 403);
      t.match(rebound.text, /must name the admin port by IP address or localhost/);
      t.equal(reloads, 1);
      for (const host of ['localhost:15000', '[::1]:15000', '127.0.0.1']) {
        t.equal((await postWithHost(port, '/reload', host)).status, 200, host);
      }
      t.equal(reloads, 4);
    },
  );
});

t.test('endpoints without their dependency answer 501; /listeners and /config_dump', async (t) => {
  await withAdmin(
    {
      store: () => null,
      listeners: () => [
        {
          name: 'outbound',
          engine: 'h1',
          host: '127.0.0.1',
          port: 15001,
          stopAccepting: () => undefined,
          inFlight: () => 2,
          connectionsActive: () => 0,
          connectionsTotal: () => 0,
          close: () => undefined,
        },
      ],
    },
    async (get) => {
      t.equal((await get('/tap')).status, 501);
      t.equal((await get('/logging')).status, 501);
      t.equal((await get('/logging?level=info', { method: 'POST' })).status, 501);
      t.equal((await get('/config_dump')).status, 503);
      t.same(JSON.parse((await get('/listeners')).text), [
        { name: 'outbound', host: '127.0.0.1', port: 15001, engine: 'h1', in_flight: 2 },
      ]);
    },
  );
});

t.test('a non-loopback caller gets 403 from every state-changing endpoint', async (t) => {
  const outside = Object.values(networkInterfaces())
    .flatMap((l) => l ?? [])
    .find((a) => a.family === 'IPv4' && !a.internal)?.address;
  if (outside === undefined) {
    // Nothing to call from on this machine: isLoopback's own test covers the decision.
    t.pass('no non-loopback IPv4 address here');
    return;
  }
  let changed = 0;
  const deps: AdminDeps = {
    store: () => null,
    listeners: () => [],
    metrics: new MeshMetrics(),
    reload: async () => {
      changed++;
      return { result: 'unchanged', version: 1, hash: 'h' };
    },
    ready: () => true,
    draining: () => false,
    version: 'test',
    startedAt: new Date(0),
    logger: createLogger('info', () => undefined),
    drain: () => {
      changed++;
    },
    shutdown: () => {
      changed++;
    },
  };
  const { server, port } = await startAdminServer('0.0.0.0', 0, deps);
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  for (const path of ['/reload', '/drain', '/shutdown', '/logging?level=debug']) {
    const res = await fetch(`http://${outside}:${port}${path}`, {
      method: 'POST',
      signal: AbortSignal.timeout(5000),
    });
    t.equal(res.status, 403, path);
    t.match(
      await res.text(),
      `is only accepted from loopback (127.0.0.0/8, ::1); this request came from ${outside}`,
    );
  }
  await new Promise((r) => setImmediate(r));
  t.equal(changed, 0, 'nothing was called');
  t.equal(deps.logger?.level, 'info');
  const live = await fetch(`http://${outside}:${port}/live`, { signal: AbortSignal.timeout(5000) });
  t.equal(live.status, 200, 'reading is for everyone');
  await live.text();
});

t.test('isLoopback', async (t) => {
  for (const a of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1', '::FFFF:127.0.0.5'])
    t.ok(isLoopback(a), a);
  for (const a of [
    undefined,
    '',
    '10.0.0.1',
    '128.0.0.1',
    '::ffff:10.0.0.1',
    '::2',
    'fe80::1',
    '0.0.0.0',
    '1127.0.0.1',
  ])
    t.notOk(isLoopback(a), String(a));
});

function observed(path: string, status: number): ObservedRequest {
  return {
    reporter: 'source',
    req: { method: 'GET', headers: [], remoteAddress: '127.0.0.1', localPort: 1, secure: false },
    startedAt: 0,
    status,
    flags: '',
    bytesSent: 0,
    bytesReceived: 0,
    authority: 'a',
    path,
    originalPath: path,
    routeName: '',
    requestId: 'r',
    details: '',
    tlsFailure: '',
    peer: { serviceFqdn: 'a.default.svc.cluster.local', serviceName: 'a', serviceNamespace: 'default' },
    endpoint: null,
    target: null,
    cluster: null,
    attempts: 1,
    upstreamStatus: status,
    rttMs: 0,
  };
}

t.test('GET /tap streams matching requests as server-sent events', async (t) => {
  const tapObserver = new Tap({ heartbeatMs: 0, maxSubscribers: 1 });
  await withAdmin({ tap: tapObserver }, async (get, port) => {
    const bad = await get('/tap?status=bad');
    t.equal(bad.status, 400);
    t.match(bad.text, /status bad/);
    const res = await fetch(`http://127.0.0.1:${port}/tap?path_prefix=/x&limit=2`, {
      signal: AbortSignal.timeout(5000),
    });
    t.equal(res.status, 200);
    t.equal(res.headers.get('content-type'), 'text/event-stream');
    t.equal(tapObserver.subscriberCount, 1, 'subscribed once the head arrived');
    const full = await get('/tap');
    t.equal(full.status, 503, 'beyond the subscriber bound');
    t.match(full.text, /too many tap subscribers/);
    tapObserver.observe(observed('/y', 200), 1, 200);
    tapObserver.observe(observed('/x/1', 200), 1, 200);
    tapObserver.observe(observed('/x/2', 503), 2, 503);
    tapObserver.observe(observed('/x/3', 200), 1, 200);
    const text = await res.text();
    const events = text
      .split('\n\n')
      .filter((e) => e.startsWith('data: '))
      .map((e) => (JSON.parse(e.slice(6)) as { path: string; status: number }).path);
    t.same(events, ['/x/1', '/x/2'], 'the stream ended after 2 matching events');
    t.equal(tapObserver.subscriberCount, 0);
  });
});

t.test('GET /tap: a client that stops reading is dropped with a last event', async (t) => {
  const tapObserver = new Tap({ heartbeatMs: 0, maxBufferedBytes: 64 * 1024 });
  await withAdmin({ tap: tapObserver }, async (_get, port) => {
    const socket = connect(port, '127.0.0.1');
    await new Promise<void>((ok) => socket.once('connect', ok));
    const received: Buffer[] = [];
    socket.on('data', (d: Buffer) => received.push(d));
    socket.write('GET /tap HTTP/1.1\r\nhost: admin\r\n\r\n');
    for (let i = 0; i < 100 && tapObserver.subscriberCount === 0; i++)
      await new Promise((r) => setTimeout(r, 5));
    t.equal(tapObserver.subscriberCount, 1);
    // The client stops reading: the kernel buffers fill, then the response's own buffer grows.
    socket.pause();
    const long = observed(`/${'x'.repeat(1000)}`, 200);
    let sent = 0;
    while (tapObserver.dropped === 0 && sent < 200_000) {
      for (let i = 0; i < 500; i++) tapObserver.observe(long, 1, 200);
      sent += 500;
      await new Promise((r) => setImmediate(r));
    }
    t.equal(tapObserver.dropped, 1, `dropped after ${sent} events`);
    t.equal(tapObserver.subscriberCount, 0);
    tapObserver.observe(long, 1, 200);
    socket.resume();
    // The response ends (the connection itself may stay open for keep-alive).
    for (let i = 0; i < 500 && !Buffer.concat(received).toString().endsWith('\r\n0\r\n\r\n'); i++)
      await new Promise((r) => setTimeout(r, 10));
    socket.destroy();
    const text = Buffer.concat(received).toString();
    t.match(
      text,
      /event: dropped\ndata: \{"reason":"subscriber too slow: more than 65536 bytes not sent"\}\n\n/,
    );
    t.notMatch(text.slice(text.indexOf('event: dropped')), /data: \{"time"/, 'no event after it');
    t.match(text, /\r\n0\r\n\r\n$/, 'and the response ended');
  });
});

t.test('GET /tap: a client that goes away is unsubscribed', async (t) => {
  const tapObserver = new Tap({ heartbeatMs: 0 });
  await withAdmin({ tap: tapObserver }, async (_get, port) => {
    const controller = new AbortController();
    const res = await fetch(`http://127.0.0.1:${port}/tap`, { signal: controller.signal });
    t.equal(tapObserver.subscriberCount, 1);
    controller.abort();
    await res.body?.cancel().catch(() => undefined);
    for (let i = 0; i < 100 && tapObserver.subscriberCount > 0; i++)
      await new Promise((r) => setTimeout(r, 10));
    t.equal(tapObserver.subscriberCount, 0);
  });
});

/** A POST with a Host header of the test's choosing (fetch always sends the URL's). */
function postWithHost(
  port: number,
  path: string,
  host: string,
  origin?: string,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        path,
        method: 'POST',
        headers: { host, ...(origin === undefined ? {} : { origin }) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          text += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}
