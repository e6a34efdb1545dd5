import t from 'tap';
import type { ConnectionPoolSettings } from '../../../src/config/resource-types.ts';
import { poolCanQueue, retryPolicyFor } from '../../../src/pipeline/attempt-loop.ts';
import { DEFAULT_RETRY_POLICY } from '../../../src/resilience/retry-policy.ts';
import type { Cluster } from '../../../src/router/route-types.ts';
import {
  bodyOf,
  cluster,
  forward,
  readBody,
  request,
  respond,
  Sink,
  settle,
  setup,
} from './pipeline-harness.ts';

/**
 * Every branch of the attempt loop: retries on responses, failures and per-try timeouts; URX; the
 * route timeout over attempts and back-off; body replay limits; the retry budget; admission
 * (overflow, queue); no healthy endpoint; host exclusion and consistent hashing; the balancer cookie.
 * Random draws are 0.5 unless a test says otherwise, so the first back-off is floor(0.5 × 25) = 12 ms.
 */

const FIVE_XX = { attempts: 2, retryOn: '5xx' };

/** `c` with a DestinationRule connection pool. */
function withPool(c: Cluster, connectionPool: ConnectionPoolSettings): Cluster {
  return { ...c, trafficPolicy: { portLevelSettings: [], connectionPool } };
}

t.test(
  'retry policies compile once per HTTPRetry object; no retries block is the default policy',
  async (t) => {
    const r = { attempts: 3, retryOn: 'gateway-error' };
    t.equal(retryPolicyFor(r), retryPolicyFor(r), 'cached');
    t.equal(retryPolicyFor(r).attempts, 3);
    t.not(retryPolicyFor({ ...r }), retryPolicyFor(r), 'another object compiles on its own');
    t.equal(retryPolicyFor(undefined), DEFAULT_RETRY_POLICY);
  },
);

t.test('which pools can make a request wait', async (t) => {
  const c = cluster('svc', 1);
  t.notOk(poolCanQueue(c));
  t.notOk(
    poolCanQueue(withPool(c, { http: { http1MaxPendingRequests: 1 } })),
    'a queue but no limit to wait on',
  );
  t.notOk(poolCanQueue(withPool(c, { tcp: { maxConnections: 0 } })), '0 means unset');
  t.ok(poolCanQueue(withPool(c, { tcp: { maxConnections: 1 } })));
  t.ok(poolCanQueue(withPool(c, { http: { http2MaxRequests: 5 } })));
});

t.test('a 503 under 5xx is retried on another endpoint after the back-off, then succeeds', async (t) => {
  const c = cluster('svc', 1, 2);
  const { pipeline, calls, registry, time, logged } = setup(
    () => forward(c, { retries: FIVE_XX }),
    (call) => {
      if (call.index === 0) respond(call, 503, 'busy');
      else respond(call, 200, 'ok');
    },
  );
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  await settle();
  t.equal(calls.length, 1, 'no retry before the back-off');
  t.ok(calls[0]?.aborted, 'the retried response is dropped');
  t.equal(res.status, 0, 'the client saw nothing of it');
  await time.advance(11);
  t.equal(calls.length, 1, 'back-off is 12 ms');
  await time.advance(1);
  t.same(
    calls.map((x) => x.target),
    ['127.0.0.1:1', '127.0.0.1:2'],
  );
  t.same([res.status, res.body], [200, 'ok']);
  const state = registry.get(c);
  t.same(
    state.ended.map((e) => [e.id, e.result.status, e.result.failure]),
    [
      ['127.0.0.1:1', 503, null],
      ['127.0.0.1:2', 200, null],
    ],
  );
  t.same(state.picks[1]?.exclude, ['127.0.0.1:1'], 'the retry avoids the host tried');
  t.same([state.retryAsks, state.retriesEnded, state.requests, state.releases], [1, 1, 1, 1]);
  await settle();
  t.equal(logged[0]?.response_flags, '-', 'a successful retry leaves no flag');
});

t.test('retries exhausted on responses: the last upstream response passes through with URX', async (t) => {
  const c = cluster('svc', 1, 2, 3);
  const { pipeline, calls, time, metrics, registry } = setup(
    () => forward(c, { retries: FIVE_XX }),
    (call) => respond(call, 503, `no ${call.index}`),
  );
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  await time.advance(1000);
  t.equal(calls.length, 3, '1 + 2 attempts');
  t.same([res.status, res.body], [503, 'no 2'], "the upstream's own response");
  t.equal(res.header('x-meshlet-flags'), undefined, 'not a local reply');
  t.match(await metrics.exposition(), /response_code="503"[^}]*response_flags="URX"/);
  t.same(registry.get(c).ended.length, 3);
});

t.test('connect failures are retried on other endpoints, then 503 UF,URX', async (t) => {
  const { pipeline, calls, metrics, time } = setup(
    () => forward(cluster('svc', 1, 2, 3)),
    (call) => call.h.onError('connect', false, 'refused', false),
  );
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  await time.advance(1000);
  t.equal(calls.length, 3, 'the default policy: two retries');
  t.equal(new Set(calls.map((x) => x.target)).size, 3, 'each on another endpoint');
  t.same([res.status, res.header('x-meshlet-flags')], [503, 'UF,URX']);
  t.match(await metrics.exposition(), /response_code="503"[^}]*response_flags="UF,URX"/);
});

t.test('a route with retries off makes one attempt and adds no URX', async (t) => {
  const { pipeline, calls, time } = setup(
    () => forward(cluster('svc', 1, 2), { retries: { attempts: 0, retryOn: '' } }),
    (call) => call.h.onError('connect', false, 'refused', false),
  );
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  await time.advance(1000);
  t.equal(calls.length, 1);
  t.equal(res.header('x-meshlet-flags'), 'UF');
});

t.test('the default policy does not retry a 503 response (Istio ≥ 1.24)', async (t) => {
  const { pipeline, calls, time } = setup(
    () => forward(cluster('svc', 1, 2)),
    (call) => respond(call, 503, 'x'),
  );
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  await time.advance(1000);
  t.same([calls.length, res.status], [1, 503]);
});

t.test('per-try timeout: the attempt is abandoned and retried under 5xx', async (t) => {
  const c = cluster('svc', 1, 2);
  const { pipeline, calls, registry, time } = setup(
    () => forward(c, { retries: { ...FIVE_XX, perTryTimeoutMs: 100 } }),
    (call) => {
      if (call.index === 1) respond(call, 200, 'second');
    },
  );
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  await time.advance(99);
  t.equal(calls.length, 1);
  await time.advance(1);
  t.ok(calls[0]?.aborted, 'the slow attempt is aborted at its per-try timeout');
  await time.advance(12);
  t.equal(calls.length, 2);
  t.same([res.status, res.body], [200, 'second']);
  t.same(
    registry.get(c).ended.map((e) => [e.result.rttMs, e.result.status, e.result.failure]),
    [
      [100, 0, 'per-try-timeout'],
      [0, 200, null],
    ],
  );
  t.same(time.waiting(), [], 'no per-try timer outlives its attempt');
});

t.test('per-try timeout: 504 UT when not retriable, UT,URX when retries ran out', async (t) => {
  const notRetriable = setup(
    () =>
      forward(cluster('svc', 1, 2), {
        retries: { attempts: 2, retryOn: 'connect-failure', perTryTimeoutMs: 50 },
      }),
    () => {},
  );
  const res = new Sink();
  notRetriable.pipeline.outbound(request('/x'), res);
  await notRetriable.time.advance(50);
  t.same([notRetriable.calls.length, res.status, res.header('x-meshlet-flags')], [1, 504, 'UT']);
  t.equal(res.body, 'upstream request timeout\n');

  const exhausted = setup(
    () =>
      forward(cluster('svc', 1, 2), {
        retries: { attempts: 1, retryOn: 'gateway-error', perTryTimeoutMs: 50 },
      }),
    () => {},
  );
  const res2 = new Sink();
  exhausted.pipeline.outbound(request('/x'), res2);
  await exhausted.time.advance(1000);
  t.same([exhausted.calls.length, res2.status, res2.header('x-meshlet-flags')], [2, 504, 'UT,URX']);
});

t.test('the route timeout covers attempts and back-off: 504 UT, everything stopped', async (t) => {
  const c = cluster('svc', 1, 2, 3);
  const { pipeline, calls, registry, time } = setup(
    () => forward(c, { timeoutMs: 50, retries: { attempts: 5, retryOn: '5xx' } }),
    (call) => {
      if (call.index === 0) {
        time.now += 5;
        respond(call, 503);
      }
      // The second attempt hangs.
    },
  );
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  await time.advance(49);
  t.equal(calls.length, 2, 'retried after 5 ms + 12 ms of back-off');
  t.equal(res.status, 0);
  await time.advance(1);
  t.same([res.status, res.header('x-meshlet-flags')], [504, 'UT']);
  t.ok(calls[1]?.aborted, 'the attempt in flight is aborted');
  const state = registry.get(c);
  t.same(
    state.ended.map((e) => e.result.failure),
    [null, 'per-try-timeout'],
    'the attempt cut by the route timeout ends as a timeout',
  );
  t.same([state.retriesEnded, state.releases], [1, 1]);
  t.same(time.waiting(), []);
});

t.test('route timeout during the back-off: 504 UT and no further attempt', async (t) => {
  const c = cluster('svc', 1, 2);
  const { pipeline, calls, registry, time } = setup(
    () => forward(c, { timeoutMs: 30, retries: { attempts: 3, retryOn: '5xx' } }),
    (call) => {
      time.now += 10;
      respond(call, 503);
    },
    { random: [0.5, 0.3] },
  );
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  // t=10: first 503, back-off 12 → t=22: second 503, back-off floor(0.3 × 75) = 22 would end at
  // 44 ≥ 30: that retry is not made and the 503 goes back.
  await time.advance(100);
  t.equal(calls.length, 2);
  t.same([res.status, res.header('x-meshlet-flags')], [503, undefined], 'the last response, no URX');
  t.same([registry.get(c).retriesEnded, registry.get(c).retryAsks], [1, 1]);
});

t.test(
  'a back-off that ends before the deadline is waited out; after a reset the failure returns',
  async (t) => {
    const c = cluster('svc', 1, 2);
    const { pipeline, calls, registry, time } = setup(
      () => forward(c, { timeoutMs: 20, retries: { attempts: 3, retryOn: '5xx' } }),
      (call) => respond(call, 503),
      { random: [0.7] },
    );
    const res = new Sink();
    pipeline.outbound(request('/x'), res);
    // First 503 at t=0, back-off floor(0.7 × 25) = 17 < 20: the retry is granted. At t=17 the second
    // 503 draws floor(0.7 × 75) = 52: past the deadline, so that response is the answer.
    await time.advance(16);
    t.equal(calls.length, 1);
    t.same(time.waiting(), [1, 4], 'the back-off and the route timeout');
    await time.advance(1);
    t.same([calls.length, res.status, res.header('x-meshlet-flags')], [2, 503, undefined]);
    t.same([registry.get(c).retryAsks, registry.get(c).retriesEnded], [1, 1]);
    t.same(time.waiting(), [], 'the route timer is stopped with the exchange');

    const early = setup(
      () => forward(c, { timeoutMs: 10, retries: { attempts: 3, retryOn: '5xx' } }),
      (call) => call.h.onError('reset', false, 'x', true),
      { random: [0.3] },
    );
    const res2 = new Sink();
    early.pipeline.outbound(request('/x'), res2);
    // Reset at t=0, back-off floor(0.3 × 25) = 7 < 10 → retry at 7 → reset → back-off floor(0.3 × 75)
    // = 22: 7 + 22 ≥ 10, no retry: 503 UC.
    await early.time.advance(100);
    t.same([early.calls.length, res2.status, res2.header('x-meshlet-flags')], [2, 503, 'UC']);
  },
);

t.test('per-try timeouts under a route timeout: no retry fits, the route timeout answers', async (t) => {
  const c = cluster('svc', 1, 2, 3);
  const { pipeline, calls, registry, time } = setup(
    () => forward(c, { timeoutMs: 250, retries: { attempts: 2, retryOn: '5xx', perTryTimeoutMs: 100 } }),
    () => {},
    { random: [0.5, 0.9] },
  );
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  // Try 1: 0–100; back-off 12 → try 2: 112–212; the next back-off floor(0.9 × 75) = 67 would end
  // at 279 > 250: no third try, and no answer before the route timeout.
  await time.advance(212);
  t.equal(calls.length, 2);
  t.equal(res.status, 0, 'nothing yet: the route has 38 ms left');
  t.same(time.waiting(), [38]);
  await time.advance(38);
  t.same([res.status, res.header('x-meshlet-flags')], [504, 'UT']);
  t.same(
    registry.get(c).ended.map((e) => e.result.failure),
    ['per-try-timeout', 'per-try-timeout'],
  );
});

t.test('a body up to 64 KiB is replayed on retry; a larger one is sent once', async (t) => {
  const small = setup(
    () => forward(cluster('svc', 1, 2), { retries: FIVE_XX }),
    (call) => readBody(call, () => respond(call, call.index === 0 ? 503 : 200, `got ${call.body.length}`)),
  );
  const res = new Sink();
  small.pipeline.outbound(
    request('/x', { method: 'POST', body: bodyOf('a'.repeat(1000), 'b'.repeat(1000)) }),
    res,
  );
  await small.time.advance(100);
  t.equal(small.calls.length, 2);
  t.same(
    small.calls.map((c) => [c.body.length, c.bodyEnded]),
    [
      [2000, true],
      [2000, true],
    ],
    'the retry sends the whole body again',
  );
  t.same([res.status, res.body], [200, 'got 2000']);

  const big = setup(
    () => forward(cluster('svc', 1, 2), { retries: FIVE_XX }),
    (call) => readBody(call, () => respond(call, 503, 'busy')),
  );
  const res2 = new Sink();
  const chunk = 'x'.repeat(16 * 1024);
  big.pipeline.outbound(
    request('/x', { method: 'POST', body: bodyOf(chunk, chunk, chunk, chunk, chunk) }),
    res2,
  );
  await big.time.advance(100);
  t.equal(big.calls.length, 1, '80 KiB: not retried');
  t.same([res2.status, res2.body], [503, 'busy']);
  t.equal(big.registry.get(cluster('svc', 1, 2)).retryAsks, 0, 'no retry slot asked for');
});

t.test('the retry budget refuses: the failure is returned as it is, without URX', async (t) => {
  const c = cluster('svc', 1, 2);
  const { pipeline, calls, registry, time } = setup(
    () => forward(c),
    (call) => call.h.onError('connect', false, 'refused', false),
  );
  registry.get(c).refusal = 'budget';
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  await time.advance(1000);
  t.equal(calls.length, 1);
  t.same([res.status, res.header('x-meshlet-flags')], [503, 'UF']);
  const state = registry.get(c);
  t.same([state.retryAsks, state.retriesEnded], [1, 0], 'a refused retry holds no slot');
});

t.test('overflow: 503 UO with x-envoy-overloaded at once, never retried, nothing picked', async (t) => {
  const c = cluster('svc', 1, 2);
  const { pipeline, calls, registry, time } = setup(
    () => forward(c, { retries: { attempts: 3, retryOn: '5xx,reset,connect-failure' } }),
    () => {},
  );
  const state = registry.get(c);
  state.admitMode = 'overflow';
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  await time.advance(1000);
  t.same([res.status, res.header('x-meshlet-flags'), res.header('x-envoy-overloaded')], [503, 'UO', 'true']);
  t.equal(res.body, 'upstream connect error or disconnect/reset before headers. reset reason: overflow\n');
  t.same(
    [calls.length, state.picks.length, state.releases, state.requests, state.retryAsks],
    [0, 0, 0, 0, 0],
  );
});

t.test('queued admission: the request waits, then goes when granted', async (t) => {
  const limited = withPool(cluster('svc', 1), { tcp: { maxConnections: 1 } });
  const { pipeline, calls, registry } = setup(
    () => forward(limited),
    (call) => respond(call, 200, 'late'),
  );
  const state = registry.get(limited);
  state.admitMode = 'queued';
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  await settle();
  t.same([calls.length, res.status, state.requests], [0, 0, 0], 'nothing sent while queued');
  state.onGranted?.();
  await settle();
  t.same([calls.length, res.status, res.body], [1, 200, 'late']);
  t.same([state.requests, state.releases, state.cancels], [1, 1, 0]);
});

t.test('queued admission: client gone or route timeout cancels the place in the queue', async (t) => {
  const limited = withPool(cluster('svc', 1), { http: { http2MaxRequests: 1 } });
  const gone = setup(
    () => forward(limited),
    () => {},
  );
  gone.registry.get(limited).admitMode = 'queued';
  const res = new Sink();
  gone.pipeline.outbound(request('/x'), res);
  res.abort();
  const s1 = gone.registry.get(limited);
  t.same([s1.cancels, s1.releases, gone.calls.length], [1, 0, 0]);

  const timeout = setup(
    () => forward(limited, { timeoutMs: 40 }),
    () => {},
  );
  timeout.registry.get(limited).admitMode = 'queued';
  const res2 = new Sink();
  timeout.pipeline.outbound(request('/x'), res2);
  await timeout.time.advance(40);
  const s2 = timeout.registry.get(limited);
  t.same([res2.status, res2.header('x-meshlet-flags'), s2.cancels, s2.releases], [504, 'UT', 1, 0]);
});

t.test('a cluster without limits that queues anyway (limits came with a reload) still resumes', async (t) => {
  const c = cluster('svc', 1);
  const { pipeline, calls, registry } = setup(
    () => forward(c),
    (call) => respond(call, 200),
  );
  const state = registry.get(c);
  state.admitMode = 'queued';
  pipeline.outbound(request('/x'), new Sink());
  t.same([state.admits, state.cancels], [2, 1], 'asked again with a callback that resumes the request');
  state.onGranted?.();
  await settle();
  t.equal(calls.length, 1);
});

t.test('no endpoint to pick: 503 UH, the admission slot is given back', async (t) => {
  const c = cluster('svc');
  const { pipeline, calls, registry } = setup(
    () => forward(c),
    () => {},
  );
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  t.same([res.status, res.header('x-meshlet-flags'), res.body], [503, 'UH', 'no healthy upstream\n']);
  t.same([calls.length, registry.get(c).releases], [0, 1]);
});

t.test('consistent hashing keeps the host on retries unless the route says otherwise', async (t) => {
  for (const [ignore, expected] of [
    [undefined, ['127.0.0.1:1', '127.0.0.1:1']],
    [true, ['127.0.0.1:1', '127.0.0.1:2']],
  ] as const) {
    const c = cluster('svc', 1, 2);
    const retries =
      ignore === undefined
        ? { attempts: 1, retryOn: '5xx' }
        : { attempts: 1, retryOn: '5xx', retryIgnorePreviousHosts: ignore };
    const { pipeline, calls, registry, time } = setup(
      () => forward(c, { retries }),
      (call) => respond(call, call.index === 0 ? 503 : 200),
    );
    const state = registry.get(c);
    state.consistentHash = true;
    state.sticky = true;
    pipeline.outbound(request('/x'), new Sink());
    await time.advance(100);
    t.same(
      calls.map((x) => x.target),
      expected,
      `retryIgnorePreviousHosts ${String(ignore)}`,
    );
    t.same(state.picks[1]?.exclude, ignore === undefined ? undefined : ['127.0.0.1:1']);
  }
});

t.test('retryIgnorePreviousHosts: false keeps previous hosts on a round-robin cluster', async (t) => {
  const c = cluster('svc', 1, 2);
  const { pipeline, registry, time } = setup(
    () => forward(c, { retries: { attempts: 1, retryOn: '5xx', retryIgnorePreviousHosts: false } }),
    (call) => respond(call, call.index === 0 ? 503 : 200),
  );
  pipeline.outbound(request('/x'), new Sink());
  await time.advance(100);
  t.same(
    registry.get(c).picks.map((p) => p.exclude),
    [undefined, undefined],
  );
});

t.test("the balancer's cookie is added to the response", async (t) => {
  const c = cluster('svc', 1);
  const { pipeline, registry } = setup(
    () => forward(c, { responseHeaders: [{ set: [['x-edit', '1']], add: [], remove: [] }] }),
    (call) => respond(call, 200, 'ok', ['x-up', 'u']),
  );
  registry.get(c).cookie = 'session=abc; Path=/; Max-Age=60; HttpOnly';
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  await settle();
  t.equal(res.header('set-cookie'), 'session=abc; Path=/; Max-Age=60; HttpOnly');
  t.same([res.header('x-up'), res.header('x-edit')], ['u', '1'], 'upstream headers and edits kept');
});

t.test('the client leaving during the back-off stops the loop and gives everything back', async (t) => {
  const c = cluster('svc', 1, 2);
  const { pipeline, calls, registry, time } = setup(
    () => forward(c, { retries: FIVE_XX }),
    (call) => respond(call, 503),
  );
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  await settle();
  res.abort();
  await time.advance(1000);
  const state = registry.get(c);
  t.equal(calls.length, 1);
  t.same([state.retryAsks, state.retriesEnded, state.releases], [1, 1, 1]);
  t.same(time.waiting(), []);
});

t.test('an attempt that fails inside send is not mistaken for the next one', async (t) => {
  const c = cluster('svc', 1, 2);
  const { pipeline, registry, time } = setup(
    () => forward(c),
    () => {},
  );
  // A client that fails synchronously (before `send` returns).
  const sync = pipeline.deps.upstream;
  let sends = 0;
  let aborts = 0;
  Object.assign(sync, {
    send: (_t: unknown, _r: unknown, h: { onError(f: string, a: boolean, d: string, w: boolean): void }) => {
      sends++;
      h.onError('connect', false, 'refused', false);
      return {
        resume() {},
        abort() {
          aborts++;
        },
      };
    },
  });
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  await time.advance(1000);
  t.same([sends, res.status, res.header('x-meshlet-flags')], [3, 503, 'UF,URX']);
  t.equal(aborts, 3, 'each settled call is let go');
  t.equal(registry.get(c).ended.length, 3);
});

t.test('the route timeout after the response head cuts the stream and flags UT', async (t) => {
  const c = cluster('svc', 1);
  const { pipeline, registry, time, metrics } = setup(
    () => forward(c, { timeoutMs: 100 }),
    (call) => {
      call.h.onHeaders(200, ['content-length', '10']);
      call.h.onData(Buffer.from('12345'));
    },
  );
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  await time.advance(99);
  t.same([res.status, res.destroyed], [200, false], 'streaming');
  await time.advance(1);
  t.same([res.destroyed, res.ended], [true, false], 'cut at the route timeout');
  t.same(
    registry.get(c).ended.map((e) => [e.result.status, e.result.failure]),
    [[200, null]],
    'the upstream had answered: not an attempt timeout',
  );
  t.match(await metrics.exposition(), /response_code="200"[^}]*response_flags="UT"/);
});

t.test('bugs in timer and upstream callbacks answer 500 (or cut the stream) and are reported', async (t) => {
  // The cluster throws while the per-try timeout ends the attempt.
  const c = cluster('svc', 1, 2);
  const perTry = setup(
    () => forward(c, { retries: { attempts: 1, retryOn: '5xx', perTryTimeoutMs: 10 } }),
    () => {},
  );
  perTry.registry.get(c).attemptEnded = () => {
    throw new Error('feedback bug');
  };
  const res = new Sink();
  perTry.pipeline.outbound(request('/x'), res);
  await perTry.time.advance(10);
  t.same([res.status, perTry.bugs.length, perTry.pipeline.inFlight], [500, 1, 0]);

  // The pick throws on the retry, which runs from the back-off timer.
  const retry = setup(
    () => forward(c, { retries: FIVE_XX }),
    (call) => respond(call, 503),
  );
  const state = retry.registry.get(c);
  const pick = state.pick.bind(state);
  state.pick = (ctx, exclude) => {
    if (exclude !== undefined) throw new Error('pick bug');
    return pick(ctx, exclude);
  };
  const res2 = new Sink();
  retry.pipeline.outbound(request('/x'), res2);
  await retry.time.advance(100);
  t.same([res2.status, retry.bugs.length, state.releases], [500, 1, 1]);

  // The feedback throws at the end of a response whose head went out: the stream is cut.
  const late = setup(
    () => forward(c),
    (call) => respond(call, 200, 'body'),
  );
  late.registry.get(c).attemptEnded = () => {
    throw new Error('end bug');
  };
  const res3 = new Sink();
  late.pipeline.outbound(request('/x'), res3);
  await settle();
  t.same([res3.status, res3.destroyed, res3.ended, late.bugs.length], [200, true, false, 1]);

  // A bug while preparing an inbound request.
  const inbound = setup(
    () => forward(c),
    () => {},
    { app: { address: '127.0.0.1', port: 9 } },
  );
  Object.assign(inbound.pipeline.deps, {
    requestId: () => {
      throw new Error('id bug');
    },
  });
  const res4 = new Sink();
  inbound.pipeline.inbound(request('/x'), res4);
  t.same([res4.status, inbound.bugs.length, inbound.pipeline.inFlight], [500, 1, 0]);
});
