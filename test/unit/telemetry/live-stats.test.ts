import { Int32Histogram } from 'hdr-histogram-js';
import t from 'tap';
import { LiveStats } from '../../../src/telemetry/live-stats.ts';
import type { WindowStats } from '../../../src/telemetry/live-stats-types.ts';
import type { ObservedRequest } from '../../../src/telemetry/observed-request.ts';
import { observed } from '../../helpers/observed-request.ts';

const SVC = 'reviews.default.svc.cluster.local';

/** The live-stats tests' request: the shared one, to `service`. */
function request(over: Partial<ObservedRequest> = {}, service = SVC): ObservedRequest {
  return observed(
    {
      bytesSent: 10,
      bytesReceived: 0,
      authority: 'reviews:9080',
      path: '/r/1',
      originalPath: '/reviews/1',
      routeName: '',
      requestId: 'id-1',
      peer: { serviceFqdn: service, serviceName: service.split('.')[0] ?? '', serviceNamespace: 'default' },
      endpoint: { id: '10.0.0.1:9080', labels: {} },
      cluster: { name: `outbound|9080||${service}` },
      rttMs: 1,
      ...over,
    },
    { headers: [] },
  );
}

/** A LiveStats on a clock the test moves (ms). */
function setup(opts: { maxServices?: number; maxRoutes?: number } = {}): {
  stats: LiveStats;
  clock: { t: number };
} {
  const clock = { t: 1_000_000 };
  const stats = new LiveStats({ now: () => clock.t, wallClock: () => 1_700_000_000_000 + clock.t, ...opts });
  return { stats, clock };
}

function win(stats: LiveStats, seconds: string, index = 0): WindowStats {
  const s = stats.snapshot().services[index];
  if (s === undefined) throw new Error('no service');
  const w = s.windows[seconds];
  if (w === undefined) throw new Error(`no window ${seconds}`);
  return w;
}

/** Within HDR's 2 significant digits (1 %), plus the 10 µs unit. */
function near(
  t: { ok(v: boolean, m: string): unknown },
  actual: number,
  expected: number,
  what: string,
): void {
  t.ok(Math.abs(actual - expected) <= expected * 0.01 + 0.01, `${what}: ${actual} ≈ ${expected}`);
}

t.test('windows: requests at t, t+5 s and t+61 s', async (t) => {
  const { stats, clock } = setup();
  const start = clock.t;
  // t: 100 requests, latencies 1..100 ms, every 10th a 503.
  for (let i = 1; i <= 100; i++) stats.observe(request(), i, i % 10 === 0 ? 503 : 200);
  clock.t = start + 5_000;
  // t+5 s: 100 requests of 0.25 ms (sub-millisecond must stay resolved).
  for (let i = 0; i < 100; i++) stats.observe(request(), 0.25, 200);
  clock.t = start + 5_500;

  let w10 = win(stats, '10s');
  let w60 = win(stats, '60s');
  t.equal(w10.requests, 200);
  t.equal(w60.requests, 200);
  t.equal(w10.errors, 10);
  t.equal(w10.error_rate, 0.05);
  // Uptime 5.5 s: both windows divide by what they really cover.
  t.equal(w10.rps, round3(200 / 5.5));
  t.equal(w60.rps, round3(200 / 5.5));
  near(t, w10.p50_ms, 0.25, 'p50 is the sub-ms half');
  near(t, w10.p90_ms, 80, 'p90');
  near(t, w10.p99_ms, 98, 'p99');
  near(t, w10.p999_ms, 100, 'p99.9');
  near(t, w10.max_ms, 100, 'max');

  // t+11 s: the first second has left the 10 s window but not the 60 s one.
  clock.t = start + 11_500;
  w10 = win(stats, '10s');
  w60 = win(stats, '60s');
  t.equal(w10.requests, 100, '10 s: only the t+5 s requests');
  t.equal(w10.errors, 0);
  t.equal(w10.error_rate, 0);
  near(t, w10.p99_ms, 0.25, '10 s p99');
  near(t, w10.max_ms, 0.25, '10 s max');
  t.equal(w10.rps, round3(100 / 9.5), '9 whole seconds and half of this one');
  t.equal(w60.requests, 200);
  near(t, w60.max_ms, 100, '60 s max');
  t.equal(w60.rps, round3(200 / 11.5), 'the uptime');

  clock.t = start + 60_000;
  stats.observe(request(), 7, 500);
  w60 = win(stats, '60s');
  t.equal(w60.requests, 101, 't itself has left the 60 s window');
  t.equal(w60.errors, 1);
  near(t, w60.max_ms, 7, 'and its 100 ms');
  clock.t = start + 61_000;
  stats.observe(request(), 3, 200);
  w60 = win(stats, '60s');
  t.equal(w60.requests, 102);
  t.equal(w60.rps, round3(102 / 59), 'at a second boundary: 59 whole seconds');
  w10 = win(stats, '10s');
  t.equal(w10.requests, 2, 't+60 s and t+61 s');
  t.equal(w10.error_rate, 0.5);
  // t+69 s: the ring has 64 slots, so this second reuses the slot of t+5 s, whose 100 requests of
  // 0.25 ms must be gone from its counts and its histogram.
  clock.t = start + 69_000;
  stats.observe(request(), 9, 200);
  w60 = win(stats, '60s');
  t.equal(w60.requests, 3);
  near(t, w60.p50_ms, 7, 'p50 of 3, 7 and 9 ms');
  near(t, w60.p90_ms, 9, 'p90');

  // A minute after the last request every window is empty: zeros everywhere.
  clock.t = start + 69_000 + 60_000;
  w60 = win(stats, '60s');
  t.same(
    [w60.requests, w60.rps, w60.errors, w60.error_rate, w60.p50_ms, w60.p99_ms, w60.max_ms],
    [0, 0, 0, 0, 0, 0, 0],
  );
  // Once the last request has left the ring too, the service is let go.
  clock.t = start + 69_000 + 64_000;
  t.same(stats.snapshot().services, []);
});

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

t.test('merged windows give the percentiles one HDR histogram of the same values gives', async (t) => {
  const { stats, clock } = setup();
  const start = clock.t;
  const all = new Int32Histogram(1, 2, 2);
  all.autoResize = true;
  // A seeded generator: the same mixed latencies (sub-ms to seconds, long tail) every run.
  let seed = 42;
  const random = (): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  for (let s = 0; s < 50; s++) {
    clock.t = start + s * 1000 + 300;
    for (let i = 0; i < 200; i++) {
      const ms = random() < 0.95 ? 0.05 + random() * 5 : 50 + random() * 3000;
      stats.observe(request(), ms, 200);
      all.recordValue(Math.round(ms * 100));
    }
  }
  const w = win(stats, '60s');
  t.equal(w.requests, 10_000);
  for (const [field, p] of [
    ['p50_ms', 50],
    ['p90_ms', 90],
    ['p99_ms', 99],
    ['p999_ms', 99.9],
  ] as const)
    t.equal(w[field], Math.round(all.getValueAtPercentile(p) * 10) / 1000, field);
  t.equal(w.max_ms, Math.round(all.maxValue * 10) / 1000, 'max');
});

t.test('incremental window sums equal sums made afresh, whatever the gap between reads', async (t) => {
  // Two instances fed the same requests: one read after every step (running sums), the other only
  // at the checks, more than 4 s apart (summed afresh every time).
  const a = setup();
  const b = setup();
  let seed = 7;
  const random = (): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const start = a.clock.t;
  let at = 0;
  let lastCheck = -10_000;
  for (let step = 0; step < 400; step++) {
    // Gaps of 0 to 6 s, in ms.
    at += Math.floor(random() * 6000);
    a.clock.t = start + at;
    b.clock.t = start + at;
    const n = Math.floor(random() * 30);
    for (let i = 0; i < n; i++) {
      const ms = random() < 0.9 ? random() * 3 : 20 + random() * 500;
      const code = random() < 0.1 ? 503 : 200;
      const r = request({ routeName: random() < 0.5 ? 'r1' : 'r2' });
      a.stats.observe(r, ms, code);
      b.stats.observe(r, ms, code);
    }
    const snapA = a.stats.snapshot();
    if (at - lastCheck > 5_000) {
      lastCheck = at;
      t.same(snapA.services, b.stats.snapshot().services, `services at ${at} ms`);
      t.same(snapA.routes, b.stats.snapshot().routes, `routes at ${at} ms`);
    }
  }
});

t.test('services and routes are keyed by reporter', async (t) => {
  const { stats } = setup();
  stats.observe(request({ routeName: 'r1' }), 1, 200);
  stats.observe(request({ routeName: 'r1' }), 1, 200);
  stats.observe(request({ routeName: 'r2' }, 'ratings.default.svc.cluster.local'), 1, 200);
  stats.observe(request({ reporter: 'destination' }), 1, 0);
  const snap = stats.snapshot();
  t.same(
    snap.services.map((s) => [s.reporter, s.service, s.service_name, s.windows['10s']?.requests]),
    [
      ['source', SVC, 'reviews', 2],
      ['source', 'ratings.default.svc.cluster.local', 'ratings', 1],
      ['destination', SVC, 'reviews', 1],
    ],
  );
  t.same(
    snap.routes.map((r) => [r.reporter, r.route, r.service, r.windows['60s']?.requests]),
    [
      ['source', 'r1', SVC, 2],
      ['source', 'r2', 'ratings.default.svc.cluster.local', 1],
    ],
    'requests without a route name are in no route',
  );
  t.same(snap.windows, [10, 60]);
  t.equal(snap.services[2]?.windows['10s']?.errors, 1, 'status 0 is an error');
  t.equal(snap.time, new Date(1_700_001_000_000).toISOString());
});

t.test('keys are capped: new keys beyond the cap are counted, not tracked', async (t) => {
  const { stats } = setup({ maxServices: 2, maxRoutes: 1 });
  for (const s of ['a', 'b', 'c', 'd'])
    stats.observe(request({ routeName: `route-${s}` }, `${s}.default.svc.cluster.local`), 1, 200);
  stats.observe(request({ routeName: 'route-a' }, 'a.default.svc.cluster.local'), 1, 200);
  const snap = stats.snapshot();
  t.same(
    snap.services.map((s) => [s.service, s.windows['10s']?.requests]),
    [
      ['a.default.svc.cluster.local', 2],
      ['b.default.svc.cluster.local', 1],
    ],
  );
  t.same(
    snap.routes.map((r) => r.route),
    ['route-a'],
  );
  t.same(stats.keys(), { services: 2, routes: 1, untrackedServices: 2, untrackedRoutes: 3 });
});

t.test('idle keys are let go after the ring (64 s): from the snapshot and from under the cap', async (t) => {
  const { stats, clock } = setup({ maxServices: 2, maxRoutes: 2 });
  const start = clock.t;
  const svc = (s: string): string => `${s}.default.svc.cluster.local`;
  stats.observe(request({ routeName: 'ra' }, svc('a')), 1, 200);
  stats.observe(request({ routeName: 'rb' }, svc('b')), 1, 200);
  clock.t = start + 30_000;
  stats.observe(request({ routeName: 'rb' }, svc('b')), 1, 200);
  stats.observe(request({ routeName: 'rc' }, svc('c')), 1, 200);
  t.same(
    stats.keys(),
    { services: 2, routes: 2, untrackedServices: 1, untrackedRoutes: 1 },
    'c: over the cap',
  );
  // a's only second has left the ring; b's has not.
  clock.t = start + 64_000;
  stats.observe(request({ routeName: 'rc' }, svc('c')), 1, 200);
  t.same(
    stats.keys(),
    { services: 2, routes: 2, untrackedServices: 1, untrackedRoutes: 1 },
    'a gave way to c',
  );
  let snap = stats.snapshot();
  t.same(
    snap.services.map((s) => [s.service, s.windows['60s']?.requests]),
    [
      [svc('b'), 1],
      [svc('c'), 1],
    ],
  );
  t.same(
    snap.routes.map((r) => r.route),
    ['rb', 'rc'],
  );
  clock.t = start + 30_000 + 63_999;
  t.equal(stats.snapshot().services.length, 2, 'b stays while its second is in the ring');
  clock.t = start + 200_000;
  snap = stats.snapshot();
  t.same([snap.services, snap.routes], [[], []], 'all idle: nothing left');
  t.same(stats.keys(), { services: 0, routes: 0, untrackedServices: 1, untrackedRoutes: 1 });
});

t.test('recent errors: the last 50, newest first', async (t) => {
  const { stats, clock } = setup();
  stats.observe(request(), 1, 200);
  t.same(stats.snapshot().recent_errors, [], 'successes are not errors');
  stats.observe(request({ routeName: 'x' }), 2, 404);
  t.same(stats.snapshot().recent_errors, [], '4xx is not an error');
  for (let i = 0; i < 60; i++) {
    clock.t += 1;
    stats.observe(request({ originalPath: `/p/${i}`, flags: i === 59 ? 'UF,URX' : '' }), i, 503);
  }
  stats.observe(request({ endpoint: null, target: { address: '127.0.0.1', port: 8080 } }), 1.23456, 0);
  const errors = stats.snapshot().recent_errors;
  t.equal(errors.length, 50);
  t.same(errors[0], {
    time: new Date(1_700_000_000_000 + clock.t).toISOString(),
    reporter: 'source',
    method: 'GET',
    authority: 'reviews:9080',
    path: '/reviews/1',
    status: 0,
    flags: '-',
    duration_ms: 1.235,
    upstream_host: '127.0.0.1:8080',
    service: SVC,
  });
  t.match(errors[1], { path: '/p/59', status: 503, flags: 'UF,URX', upstream_host: '10.0.0.1:9080' });
  t.same(
    errors.slice(1).map((e) => e.path),
    Array.from({ length: 49 }, (_, i) => `/p/${59 - i}`),
    'the oldest fell out',
  );
});

t.test('odd durations never throw', async (t) => {
  const { stats } = setup();
  stats.observe(request(), Number.NaN, 200);
  stats.observe(request(), -5, 200);
  stats.observe(request(), 1e12, 200);
  const w = win(stats, '10s');
  t.equal(w.requests, 3);
  t.ok(w.max_ms >= 3_600_000 * 0.999, 'clamped to one hour');
  t.throws(() => new LiveStats({ now: () => 0, windows: [61] }), /1-60/);
});

t.test('observe cost (µs per request, reported)', async (t) => {
  const { stats, clock } = setup();
  const r = request({ routeName: 'r1' });
  const n = 200_000;
  for (let i = 0; i < 20_000; i++) stats.observe(r, (i % 500) / 10, 200);
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    if (i % 1000 === 0) clock.t += 100;
    stats.observe(r, (i % 5000) / 100, i % 50 === 0 ? 503 : 200);
  }
  const us = Number(process.hrtime.bigint() - start) / 1000 / n;
  t.comment(`LiveStats.observe: ${us.toFixed(3)} µs per request (service + route)`);
  // A loose bound: on a loaded CI machine this must still be far below the 30 µs of a request.
  t.ok(us < 5, `${us} µs`);
});

t.test('a percentile never passes the largest latency recorded (it is the top of its bucket)', async (t) => {
  const { stats } = setup();
  // 101.3 ms sits inside a bucket whose top is above it at two significant digits.
  for (let i = 0; i < 50; i++) stats.observe(request(), 101.3, 200);
  const w = win(stats, '10s');
  t.equal(w.max_ms, 101.3);
  for (const p of [w.p50_ms, w.p90_ms, w.p99_ms, w.p999_ms]) t.ok(p <= w.max_ms && p > 100, `${p} ≤ max`);
});
