import t from 'tap';
import { ClusterStateImpl, type ClusterStateOptions } from '../../../src/balancer/cluster-state.ts';
import type { AttemptResult } from '../../../src/balancer/cluster-types.ts';
import type { TrafficPolicy } from '../../../src/config/resource-types.ts';
import type { Endpoint } from '../../../src/router/route-types.ts';
import { cluster, ctx, fakeResolver, ipEp, manualTimers } from './cluster-helpers.ts';
import { manualClock, seededRandom, sequence, tally } from './sim-helpers.ts';

type Policy = Omit<TrafficPolicy, 'portLevelSettings'>;

const OK: AttemptResult = { rttMs: 10, status: 200, failure: null };
const E503: AttemptResult = { rttMs: 2, status: 503, failure: null };

function setup(
  endpoints: readonly Endpoint[],
  policy?: Policy,
  extra: Partial<ClusterStateOptions> = {},
): {
  state: ClusterStateImpl;
  clock: ReturnType<typeof manualClock>;
  timers: ReturnType<typeof manualTimers>;
} {
  const clock = manualClock(1_000);
  const timers = manualTimers();
  const state = new ClusterStateImpl(cluster(endpoints, policy), {
    clock: clock.now,
    random: seededRandom(11),
    setInterval: timers.setInterval,
    ...extra,
  });
  return { state, clock, timers };
}

function picks(state: ClusterStateImpl, n: number, exclude?: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(state.pick(ctx(), exclude)?.endpoint.id ?? 'null');
  return out;
}

/** One attempt to `id` that ends with `result`. */
function attempt(state: ClusterStateImpl, id: string, result: AttemptResult): void {
  const e = state.endpoints.find((x) => x.id === id)!;
  state.attemptStarted(e);
  state.attemptEnded(e, result);
}

const three = [ipEp(1), ipEp(2), ipEp(3)];

t.test('default picker is P2C over peak EWMA and avoids a slow endpoint', async (t) => {
  const { state, clock } = setup(three);
  t.equal(state.status().loadBalancer, 'P2C_PEAK_EWMA');
  t.equal(state.consistentHash, false);
  t.same(Object.keys(tally(picks(state, 300))).sort(), ['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080']);
  clock.advance(100);
  attempt(state, '10.0.0.1:8080', { rttMs: 5, status: 200, failure: null });
  attempt(state, '10.0.0.2:8080', { rttMs: 800, status: 200, failure: null });
  attempt(state, '10.0.0.3:8080', { rttMs: 5, status: 200, failure: null });
  const after = tally(picks(state, 300));
  t.equal(after['10.0.0.2:8080'], undefined, 'the slow one loses every pair it is drawn in');
  const slow = state.status().endpoints.find((e) => e.id === '10.0.0.2:8080')!;
  t.equal(slow.ewmaMs, 800);
  t.equal(slow.inFlight, 0);

  // A failure answered fast counts as slow (the EWMA penalty), so a 503-ing endpoint is avoided too.
  attempt(state, '10.0.0.3:8080', { rttMs: 1, status: 503, failure: null });
  t.ok(state.status().endpoints.find((e) => e.id === '10.0.0.3:8080')!.ewmaMs! >= 1_000);
  const avoid = tally(picks(state, 300));
  t.equal(avoid['10.0.0.3:8080'], undefined, 'the failing endpoint loses every pair');
  t.ok(avoid['10.0.0.1:8080']! > avoid['10.0.0.2:8080']!, 'the fast one wins most');
});

t.test('each loadBalancer setting maps to its picker', async (t) => {
  const cases: [Policy | undefined, string][] = [
    [undefined, 'P2C_PEAK_EWMA'],
    [{ loadBalancer: {} }, 'P2C_PEAK_EWMA'],
    [{ loadBalancer: { simple: 'UNSPECIFIED' } }, 'P2C_PEAK_EWMA'],
    [{ loadBalancer: { simple: 'PASSTHROUGH' } }, 'P2C_PEAK_EWMA'],
    [{ loadBalancer: { simple: 'LEAST_REQUEST' } }, 'LEAST_REQUEST'],
    [{ loadBalancer: { simple: 'LEAST_CONN' } }, 'LEAST_REQUEST'],
    [{ loadBalancer: { simple: 'ROUND_ROBIN' } }, 'ROUND_ROBIN'],
    [{ loadBalancer: { simple: 'RANDOM' } }, 'RANDOM'],
    [{ loadBalancer: { consistentHash: { httpHeaderName: 'x' } } }, 'RING_HASH'],
    [
      { loadBalancer: { consistentHash: { httpHeaderName: 'x', ringHash: { minimumRingSize: 64 } } } },
      'RING_HASH',
    ],
    [{ loadBalancer: { consistentHash: { httpHeaderName: 'x', maglev: { tableSize: 251 } } } }, 'MAGLEV'],
    [{ loadBalancer: { consistentHash: { httpHeaderName: 'x', maglev: { tableSize: 100 } } } }, 'MAGLEV'],
  ];
  for (const [policy, kind] of cases) {
    const { state } = setup(three, policy);
    t.equal(state.status().loadBalancer, kind, JSON.stringify(policy));
    t.equal(state.loadBalancer, kind);
    t.equal(state.consistentHash, kind === 'RING_HASH' || kind === 'MAGLEV');
    t.not(state.pick(ctx(['x', 'k'])), null);
  }

  const rr = setup(three, { loadBalancer: { simple: 'ROUND_ROBIN' } }).state;
  t.same(
    picks(rr, 6),
    [...three, ...three].map((e) => e.id),
    'round robin rotates',
  );

  // Least request: an endpoint with requests in flight loses to the idle ones.
  const lr = setup(three, { loadBalancer: { simple: 'LEAST_REQUEST' } }).state;
  lr.attemptStarted(three[0]!);
  lr.attemptStarted(three[0]!);
  t.equal(tally(picks(lr, 200))['10.0.0.1:8080'], undefined);
  t.equal(lr.status().endpoints[0]!.inFlight, 2);
  t.equal(lr.status().endpoints[0]!.ewmaMs, null, 'no EWMA outside P2C');

  // Random: uniform over the list, driven by the injected source.
  const rnd = setup(three, { loadBalancer: { simple: 'RANDOM' } }, { random: sequence(0, 0.4, 0.9) }).state;
  t.same(picks(rnd, 3), ['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080']);
});

const ten = Array.from({ length: 10 }, (_, i) => ipEp(i + 1));

for (const algo of ['ringHash', 'maglev'] as const) {
  t.test(
    `consistent hash (${algo}) on a header: sticky, and ~1/N keys move when one of N leaves`,
    async (t) => {
      const lb = {
        consistentHash: { httpHeaderName: 'x-user', ...(algo === 'maglev' ? { maglev: {} } : {}) },
      };
      const { state } = setup(ten, { loadBalancer: lb });
      const first = state.pick(ctx(['x-user', 'alice']))!;
      t.equal(first.setCookie, undefined);
      for (let i = 0; i < 20; i++) t.equal(state.pick(ctx(['x-user', 'alice']))!.endpoint, first.endpoint);

      const keys = Array.from({ length: 5_000 }, (_, i) => `user-${i}`);
      const before = keys.map((k) => state.pick(ctx(['x-user', k]))!.endpoint.id);
      t.equal(Object.keys(tally(before)).length, 10, 'keys spread over every endpoint');
      const leaving = '10.0.0.4:8080';
      state.update(
        cluster(
          ten.filter((e) => e.id !== leaving),
          { loadBalancer: lb },
        ),
      );
      const after = keys.map((k) => state.pick(ctx(['x-user', k]))!.endpoint.id);
      let moved = 0;
      let movedFromStaying = 0;
      for (let i = 0; i < keys.length; i++) {
        if (before[i] === after[i]) continue;
        moved++;
        if (before[i] !== leaving) movedFromStaying++;
      }
      t.ok(
        after.every((id) => id !== leaving),
        'nothing goes to the endpoint that left',
      );
      t.ok(moved / keys.length > 0.07 && moved / keys.length < 0.14, `moved ${moved / keys.length}`);
      t.ok(
        movedFromStaying / keys.length < 0.03,
        `keys of staying endpoints that moved: ${movedFromStaying}`,
      );

      // Retries walk on to an endpoint not tried yet.
      const owner = state.pick(ctx(['x-user', 'alice']))!.endpoint.id;
      const retry = state.pick(ctx(['x-user', 'alice']), new Set([owner]))!.endpoint.id;
      t.not(retry, owner);
      t.equal(
        state.pick(ctx(['x-user', 'alice']), new Set([owner]))!.endpoint.id,
        retry,
        'and that is stable too',
      );

      // No header: a random endpoint (the injected source decides), and no cookie.
      const spread = tally(picks(state, 300));
      t.ok(Object.keys(spread).length >= 8, 'missing key: random endpoints');
    },
  );
}

t.test(
  'consistent hash on a cookie: issued with ttl, session cookie with ttl 0, random without ttl',
  async (t) => {
    const lb = (ttl?: number): Policy => ({
      loadBalancer: {
        consistentHash: {
          httpCookie: { name: 'sticky', path: '/', ...(ttl === undefined ? {} : { ttl }) },
        },
      },
    });
    const { state } = setup(ten, lb(60_000));
    const issued = state.pick(ctx())!;
    t.match(issued.setCookie, /^sticky=[0-9a-f]{32}; Path=\/; Max-Age=60; HttpOnly$/);
    const value = /^sticky=([0-9a-f]{32});/.exec(issued.setCookie!)![1]!;
    for (let i = 0; i < 10; i++) {
      const back = state.pick(ctx(['cookie', `other=1; sticky=${value}`]))!;
      t.equal(back.endpoint, issued.endpoint, 'the client sending the cookie back stays on that endpoint');
      t.equal(back.setCookie, undefined, 'and gets no new cookie');
    }
    const another = state.pick(ctx())!.setCookie!;
    t.not(another, issued.setCookie, 'every request without the cookie gets a fresh value');

    const session = setup(ten, lb(0)).state;
    t.match(session.pick(ctx())!.setCookie, /^sticky=[0-9a-f]{32}; Path=\/; HttpOnly$/);

    const none = setup(ten, lb(undefined)).state;
    const results = Array.from({ length: 200 }, () => none.pick(ctx())!);
    t.ok(
      results.every((r) => r.setCookie === undefined),
      'no ttl: no cookie',
    );
    t.ok(Object.keys(tally(results.map((r) => r.endpoint.id))).length >= 8, 'no ttl: random endpoints');
  },
);

t.test('consistent hash on a query parameter and on the source IP', async (t) => {
  const q = setup(ten, { loadBalancer: { consistentHash: { httpQueryParameterName: 'session' } } }).state;
  const a = q.pick(ctx([], '/cart?session=s%201&x=1'))!.endpoint;
  for (let i = 0; i < 10; i++) t.equal(q.pick(ctx([], '/other?x=2&session=s+1'))!.endpoint, a);
  const ownersQ = new Set(
    Array.from({ length: 200 }, (_, i) => q.pick(ctx([], `/?session=${i}`))!.endpoint.id),
  );
  t.ok(ownersQ.size >= 8, 'different values spread');

  const ip = setup(ten, { loadBalancer: { consistentHash: { useSourceIp: true } } }).state;
  const b = ip.pick(ctx([], '/', '192.0.2.7'))!.endpoint;
  for (let i = 0; i < 10; i++) t.equal(ip.pick(ctx([], `/p${i}`, '192.0.2.7'))!.endpoint, b);
  t.equal(ip.pick(ctx([], '/', '::ffff:192.0.2.7'))!.endpoint, b, 'IPv4-mapped form: same client');
  const ownersIp = new Set(
    Array.from({ length: 200 }, (_, i) => ip.pick(ctx([], '/', `198.51.100.${i}`))!.endpoint.id),
  );
  t.ok(ownersIp.size >= 8);
});

const od = (extra: Record<string, number> = {}): Policy => ({
  loadBalancer: { simple: 'ROUND_ROBIN' },
  outlierDetection: {
    consecutive5xxErrors: 2,
    interval: 1_000,
    baseEjectionTime: 5_000,
    maxEjectionPercent: 100,
    ...extra,
  },
});

t.test('an ejected endpoint is skipped and returns after its ejection time', async (t) => {
  const { state, clock, timers } = setup(three, od());
  t.same(timers.live(), [{ ms: 1_000 }], 'the sweep runs every interval');
  attempt(state, '10.0.0.2:8080', E503);
  t.same(
    picks(state, 3).sort(),
    three.map((e) => e.id),
    'one error is not enough',
  );
  attempt(state, '10.0.0.2:8080', E503);
  t.same(tally(picks(state, 60)), { '10.0.0.1:8080': 30, '10.0.0.3:8080': 30 }, 'ejected: skipped');
  const status = state.status();
  t.equal(status.counters.ejections, 1);
  t.equal(status.endpoints[1]!.ejectedUntilMs, 6_000);
  t.equal(status.endpoints[1]!.timesEjected, 1);
  t.equal(status.panic, false);
  t.equal(state.endpoints.length, 3, 'endpoints still lists it');

  clock.advance(4_999);
  timers.tick();
  t.notOk(picks(state, 30).includes('10.0.0.2:8080'), 'still ejected just before the end');
  clock.advance(1);
  timers.tick();
  t.same(tally(picks(state, 60)), { '10.0.0.1:8080': 20, '10.0.0.2:8080': 20, '10.0.0.3:8080': 20 }, 'back');
  t.equal(state.status().endpoints[1]!.ejectedUntilMs, null);
});

t.test('local failures count for outlier detection; successes reset the run', async (t) => {
  const { state } = setup(three, od());
  attempt(state, '10.0.0.1:8080', { rttMs: 1, status: 0, failure: 'connect' });
  attempt(state, '10.0.0.1:8080', OK);
  attempt(state, '10.0.0.1:8080', { rttMs: 1, status: 0, failure: 'per-try-timeout' });
  t.equal(state.status().endpoints[0]!.consecutive5xx, 1, 'the 200 broke the run');
  attempt(state, '10.0.0.1:8080', { rttMs: 1, status: 0, failure: 'reset' });
  t.notOk(picks(state, 20).includes('10.0.0.1:8080'), 'two local failures in a row eject');
});

t.test('panic mode: under minHealthPercent every endpoint is used', async (t) => {
  const { state } = setup(three, od({ minHealthPercent: 50 }));
  attempt(state, '10.0.0.1:8080', E503);
  attempt(state, '10.0.0.1:8080', E503);
  t.equal(state.status().panic, false, '2 of 3 healthy is above 50 %');
  t.notOk(picks(state, 20).includes('10.0.0.1:8080'));
  attempt(state, '10.0.0.2:8080', E503);
  attempt(state, '10.0.0.2:8080', E503);
  t.equal(state.status().panic, true, '1 of 3 is under 50 %');
  t.same(
    Object.keys(tally(picks(state, 30))).sort(),
    three.map((e) => e.id),
    'all three again',
  );
});

t.test('every endpoint ejected and no panic threshold: no endpoint (503 UH)', async (t) => {
  const { state, clock, timers } = setup([ipEp(1)], od());
  attempt(state, '10.0.0.1:8080', E503);
  attempt(state, '10.0.0.1:8080', E503);
  t.equal(state.pick(ctx()), null);
  t.equal(state.status().panic, false);
  clock.advance(5_000);
  timers.tick();
  t.equal(state.pick(ctx())?.endpoint.id, '10.0.0.1:8080');
});

t.test('ejection with P2C and consistent hash: the healthy list is adopted, tables rebuilt', async (t) => {
  const p2c = setup(three, { outlierDetection: { consecutive5xxErrors: 1, maxEjectionPercent: 100 } }).state;
  attempt(p2c, '10.0.0.1:8080', OK);
  attempt(p2c, '10.0.0.3:8080', E503);
  t.same(Object.keys(tally(picks(p2c, 100))).sort(), ['10.0.0.1:8080', '10.0.0.2:8080']);
  t.equal(p2c.healthyEndpoints.length, 2);

  const lb = { consistentHash: { httpHeaderName: 'k' } };
  const hash = setup(ten, { loadBalancer: lb, outlierDetection: { consecutive5xxErrors: 1 } }).state;
  const owner = hash.pick(ctx(['k', 'v']))!.endpoint.id;
  attempt(hash, owner, E503);
  const moved = hash.pick(ctx(['k', 'v']))!.endpoint.id;
  t.not(moved, owner, 'the key moves off the ejected endpoint');
  t.equal(hash.pick(ctx(['k', 'v']))!.endpoint.id, moved, 'and sticks to its new owner');
});

t.test('outlier detection removed by a reload: the sweep stops and ejected endpoints return', async (t) => {
  const { state, timers } = setup(three, od());
  attempt(state, '10.0.0.1:8080', E503);
  attempt(state, '10.0.0.1:8080', E503);
  t.equal(state.healthyEndpoints.length, 2);
  state.update(cluster(three, { ...od(), outlierDetection: { ...od().outlierDetection, interval: 2_000 } }));
  t.same(timers.live(), [{ ms: 2_000 }], 'a new interval restarts the timer');
  t.equal(state.healthyEndpoints.length, 2, 'ejections survive a settings change');
  state.update(cluster(three, { loadBalancer: { simple: 'ROUND_ROBIN' } }));
  t.same(timers.live(), [], 'no more sweep');
  t.equal(state.healthyEndpoints.length, 3);
  t.equal(state.status().counters.ejections, 1, 'the count of past ejections is kept');
  state.update(cluster(three, od()));
  t.same(timers.live(), [{ ms: 1_000 }], 'outlier detection back: the sweep again');
  state.close();
  t.same(timers.live(), []);
});

t.test('connection pool limits: granted, queued, overflow', async (t) => {
  const { state } = setup(three, {
    connectionPool: { tcp: { maxConnections: 2 }, http: { http2MaxRequests: 1, http1MaxPendingRequests: 1 } },
  });
  let granted = 0;
  t.equal(state.admit(() => granted++).kind, 'granted', 'min(maxConnections, http2MaxRequests) = 1');
  const queued = state.admit(() => granted++);
  t.equal(queued.kind, 'queued');
  t.equal(state.admit(() => granted++).kind, 'overflow');
  let status = state.status();
  t.equal(status.active, 1);
  t.equal(status.pending, 1);
  t.equal(status.counters.overflows, 1);
  t.equal(status.counters.pendingQueued, 1);
  state.release();
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(granted, 1, 'the queued request got the slot');
  state.release();
  status = state.status();
  t.equal(status.active, 0);
  t.equal(status.pending, 0);

  const unlimited = setup(three).state;
  for (let i = 0; i < 100; i++) t.equal(unlimited.admit(() => t.fail('never queued')).kind, 'granted');
});

t.test('retry budget and maxRetries', async (t) => {
  const budget = setup(three, undefined, {
    retryBudget: { retryRatio: 0.5, minRetriesPerSecond: 0.1, ttlMs: 10_000 },
  }).state;
  t.equal(budget.tryRetry(), null, 'the floor allows one retry per window');
  budget.retryEnded();
  t.equal(budget.tryRetry(), 'budget');
  budget.recordRequest();
  budget.recordRequest();
  t.equal(budget.tryRetry(), null, 'two requests at 50 % earn one more');
  budget.retryEnded();
  t.equal(budget.tryRetry(), 'budget');
  const c = budget.status().counters;
  t.equal(c.requests, 2);
  t.equal(c.retries, 2);
  t.equal(c.retryBudgetExhausted, 2);
  t.equal(c.retryOverflow, 0);

  const limited = setup(three, { connectionPool: { http: { maxRetries: 2 } } }).state;
  t.equal(limited.tryRetry(), null);
  t.equal(limited.tryRetry(), null);
  t.equal(limited.tryRetry(), 'max-retries', 'two concurrent retries already');
  limited.retryEnded();
  t.equal(limited.tryRetry(), null, 'one ended: room for another');
  limited.retryEnded();
  limited.retryEnded();
  limited.retryEnded();
  limited.retryEnded();
  t.equal(limited.tryRetry(), null);
  t.equal(limited.tryRetry(), null);
  t.equal(limited.tryRetry(), 'max-retries', 'extra retryEnded calls do not make room');
  t.equal(limited.status().counters.retryOverflow, 2);
});

t.test('connection policy from connectionPool', async (t) => {
  t.equal(setup(three).state.connection, undefined);
  t.equal(setup(three, { connectionPool: { tcp: { maxConnections: 5 } } }).state.connection, undefined);
  t.same(
    setup(three, {
      connectionPool: {
        tcp: { connectTimeout: 250, idleTimeout: 9_000 },
        http: { maxRequestsPerConnection: 1, idleTimeout: 3_000 },
      },
    }).state.connection,
    { connectTimeoutMs: 250, maxRequestsPerConnection: 1, idleTimeoutMs: 3_000 },
    'http.idleTimeout wins over tcp.idleTimeout',
  );
  const { state } = setup(three, { connectionPool: { tcp: { idleTimeout: 9_000 } } });
  const policy = state.connection;
  t.same(policy, { idleTimeoutMs: 9_000 }, 'tcp.idleTimeout when http has none');
  t.equal(state.connection, policy, 'the same object every time');
  state.update(cluster(three, { connectionPool: { tcp: { idleTimeout: 9_000 } } }));
  t.equal(state.connection, policy, 'an equal policy from a reload keeps the object');
  state.update(cluster(three, { connectionPool: { tcp: { idleTimeout: 1_000 } } }));
  t.same(state.connection, { idleTimeoutMs: 1_000 });
});

t.test('DNS: host-name endpoints are expanded per address and follow changes', async (t) => {
  const resolver = fakeResolver();
  const labels = { version: 'v1' };
  const host: Endpoint = { id: 'db.example:5432', address: 'db.example', port: 5432, weight: 3, labels };
  const { state } = setup([host, ipEp(9)], undefined, { resolver });
  t.same(resolver.asked, ['db.example'], 'resolution was asked for');
  t.same(
    state.endpoints.map((e) => e.id),
    ['db.example:5432', '10.0.0.9:8080'],
    'not resolved yet: the host name stays',
  );

  resolver.set('db.example', ['192.0.2.1', '192.0.2.2']);
  state.dnsChanged('db.example');
  t.same(
    state.endpoints.map((e) => [e.id, e.address, e.port, e.weight, e.labels]),
    [
      ['192.0.2.1:5432', '192.0.2.1', 5432, 3, labels],
      ['192.0.2.2:5432', '192.0.2.2', 5432, 3, labels],
      ['10.0.0.9:8080', '10.0.0.9', 8080, 1, {}],
    ],
  );
  t.ok(state.usesHost('db.example'));
  t.notOk(state.usesHost('other.example'));
  t.same(
    Object.keys(tally(picks(state, 200, new Set(['10.0.0.9:8080'])))).sort(),
    ['192.0.2.1:5432', '192.0.2.2:5432'],
    'both addresses are picked',
  );

  attempt(state, '192.0.2.2:5432', { rttMs: 400, status: 200, failure: null });
  resolver.set('db.example', ['192.0.2.2', '192.0.2.3']);
  state.dnsChanged('db.example');
  t.same(
    state.endpoints.map((e) => e.id),
    ['192.0.2.2:5432', '192.0.2.3:5432', '10.0.0.9:8080'],
  );
  t.equal(state.status().endpoints[0]!.ewmaMs, 400, 'state of an address that stayed survives');
  t.notOk(picks(state, 100).includes('192.0.2.1:5432'));

  resolver.set('db.example', []);
  state.dnsChanged('db.example');
  t.same(
    state.endpoints.map((e) => e.id),
    ['10.0.0.9:8080'],
    'resolved to nothing: no endpoint',
  );
  state.dnsChanged('other.example');
  t.same(
    state.endpoints.map((e) => e.id),
    ['10.0.0.9:8080'],
  );
});

t.test('DNS: duplicates kept once, unix sockets and IP literals are not resolved', async (t) => {
  const resolver = fakeResolver();
  resolver.set('a.example', ['10.0.0.1', '10.0.0.2']);
  resolver.set('b.example', ['10.0.0.2']);
  const unix: Endpoint = { id: 'unix:///tmp/s', address: 'unix:///tmp/s', port: 0, weight: 1, labels: {} };
  const { state } = setup(
    [
      { id: 'a.example:8080', address: 'a.example', port: 8080, weight: 1, labels: {} },
      { id: 'b.example:8080', address: 'b.example', port: 8080, weight: 1, labels: {} },
      ipEp(1),
      { id: '::1:8080', address: '::1', port: 8080, weight: 1, labels: {} },
    ],
    undefined,
    { resolver },
  );
  t.same(
    state.endpoints.map((e) => e.id),
    ['10.0.0.1:8080', '10.0.0.2:8080', '::1:8080'],
  );
  const plain = setup([unix, ipEp(1)], undefined, { resolver });
  t.equal(plain.state.endpoints.length, 2);
  t.notOk(resolver.asked.includes('unix:///tmp/s'));
});

t.test(
  'update in place keeps per-endpoint state by id and the picker when only endpoints change',
  async (t) => {
    const { state, clock } = setup(three);
    clock.advance(10);
    attempt(state, '10.0.0.2:8080', { rttMs: 300, status: 200, failure: null });
    state.attemptStarted(three[0]!);
    state.update(cluster([...three, ipEp(4)]));
    const s = state.status();
    t.same(
      s.endpoints.map((e) => e.id),
      ['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080', '10.0.0.4:8080'],
    );
    t.equal(s.endpoints[1]!.ewmaMs, 300, 'EWMA kept');
    t.equal(s.endpoints[0]!.inFlight, 1, 'in-flight kept');
    t.equal(s.endpoints[3]!.ewmaMs, 30, 'a new endpoint starts at the default estimate');
    state.attemptEnded(three[0]!, OK);
    t.equal(state.status().endpoints[0]!.inFlight, 0);

    // Round robin keeps its rotation across a reload with the same endpoints.
    const rr = setup(three, { loadBalancer: { simple: 'ROUND_ROBIN' } }).state;
    t.same(picks(rr, 1), ['10.0.0.1:8080']);
    rr.update(
      cluster(
        three.map((e) => ({ ...e })),
        { loadBalancer: { simple: 'ROUND_ROBIN' } },
      ),
    );
    t.same(picks(rr, 2), ['10.0.0.2:8080', '10.0.0.3:8080'], 'rotation continues');
    rr.update(cluster(three, { loadBalancer: { simple: 'RANDOM' } }));
    t.equal(rr.status().loadBalancer, 'RANDOM', 'a policy change swaps the picker');

    // New labels on the same ids reach the endpoints (metrics read them).
    state.update(cluster([ipEp(1, 1, { version: 'v2' }), ipEp(2), ipEp(3), ipEp(4)]));
    t.same(state.endpoints[0]!.labels, { version: 'v2' });
    t.same(Object.keys(tally(picks(state, 400).filter((id) => id === '10.0.0.1:8080'))), ['10.0.0.1:8080']);
    t.equal(
      state.pick(ctx(), new Set(['10.0.0.2:8080', '10.0.0.3:8080', '10.0.0.4:8080']))!.endpoint.labels[
        'version'
      ],
      'v2',
      'the picker hands out the relabelled endpoint',
    );
  },
);

t.test('status lists connections when the upstream client reports them', async (t) => {
  const { state } = setup(three, undefined, { connections: (id) => (id === '10.0.0.1:8080' ? 4 : null) });
  t.same(
    state.status().endpoints.map((e) => e.connections),
    [4, null, null],
  );
  t.equal(setup(three).state.status().endpoints[0]!.connections, null);
  t.equal(state.status().name, 'outbound|8080||svc.default.svc.cluster.local');
});

t.test('no endpoints: pick is null for every picker', async (t) => {
  for (const policy of [
    undefined,
    { loadBalancer: { simple: 'ROUND_ROBIN' as const } },
    { loadBalancer: { consistentHash: { httpHeaderName: 'k' } } },
    { loadBalancer: { consistentHash: { httpCookie: { name: 'c', ttl: 0 } } } },
  ]) {
    const { state } = setup([], policy);
    t.equal(state.pick(ctx(['k', 'v'])), null);
    t.equal(state.pick(ctx()), null);
  }
});
