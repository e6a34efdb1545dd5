import t from 'tap';
import { NODE_TIMERS } from '../../../src/pipeline/pipeline-types.ts';
import type { UpstreamRequest } from '../../../src/upstream/upstream-types.ts';
import { cluster, forward, request, respond, Sink, settle, setup } from './pipeline-harness.ts';

/** The request path end to end with fakes: targets, local replies, headers, inbound and passthrough. */

t.test('no Host and no absolute-form target: 400 DPE and close', async (t) => {
  const { pipeline, calls } = setup(
    () => forward(cluster('svc', 1)),
    () => {},
  );
  const res = new Sink();
  pipeline.outbound(request('/x', {}, []), res);
  t.equal(res.status, 400);
  t.equal(res.header('x-meshlet-flags'), 'DPE');
  t.ok(res.closed, 'connection closed');
  t.equal(calls.length, 0);
});

t.test('a plain forward: one pick, one attempt with feedback, one admission released once', async (t) => {
  const c = cluster('svc', 1, 2);
  const { pipeline, calls, registry, time, logged } = setup(
    () => forward(c),
    (call) => {
      time.now += 7;
      respond(call, 200, 'hello');
    },
  );
  const res = new Sink();
  pipeline.outbound(request('/p?q=1'), res);
  await settle();
  const state = registry.get(c);
  t.same([res.status, res.body, res.ended], [200, 'hello', true]);
  t.same(
    calls.map((x) => x.target),
    ['127.0.0.1:1'],
  );
  t.same(state.started, ['127.0.0.1:1']);
  t.same(state.ended, [{ id: '127.0.0.1:1', result: { rttMs: 7, status: 200, failure: null } }]);
  t.same([state.admits, state.releases, state.requests, state.retryAsks], [1, 1, 1, 0]);
  t.same(
    state.picks[0]?.ctx,
    { headers: ['host', 'svc'], path: '/p?q=1', remoteAddress: '10.1.2.3' },
    'the balancer hashes what the client sent (path before rewrite)',
  );
  t.equal(state.picks[0]?.exclude, undefined, 'the first pick excludes nothing');
  t.equal(calls[0]?.req.pool, undefined, 'no pool settings on a cluster without any');
  t.same(time.waiting(), [], 'no timer left behind');
  t.equal(pipeline.inFlight, 0);
  await settle();
  t.match(logged[0], { response_code: 200, response_flags: '-', upstream_host: '127.0.0.1:1', path: '/p' });
});

t.test('the cluster connection policy goes with every attempt', async (t) => {
  const c = cluster('svc', 1);
  const { pipeline, calls, registry } = setup(
    () => forward(c),
    (call) => respond(call, 204),
  );
  registry.get(c).connection = { maxRequestsPerConnection: 1, connectTimeoutMs: 250 };
  pipeline.outbound(request('/x'), new Sink());
  await settle();
  t.same(calls[0]?.req.pool, { maxRequestsPerConnection: 1, connectTimeoutMs: 250 });
});

t.test('reset after the headers cuts the stream and flags UC', async (t) => {
  const c = cluster('svc', 1);
  const { pipeline, metrics, registry } = setup(
    () => forward(c),
    (call) => {
      call.h.onHeaders(200, ['content-length', '10']);
      call.h.onData(Buffer.from('abc'));
      call.h.onError('reset', true, 'reset', true);
    },
  );
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  await settle();
  t.equal(res.status, 200);
  t.ok(res.destroyed, 'stream cut');
  t.notOk(res.ended);
  t.match(await metrics.exposition(), /response_code="200"[^}]*response_flags="UC"/);
  t.same(
    registry.get(c).ended.map((e) => [e.result.status, e.result.failure]),
    [[200, 'reset']],
    'the attempt ends once, with the status it had and the failure',
  );
});

t.test(
  'reset before headers: 503 UC; invalid response: 502 UPE (not retried by the default policy)',
  async (t) => {
    for (const [failure, status, flag] of [
      ['reset', 503, 'UC'],
      ['protocol', 502, 'UPE'],
    ] as const) {
      const { pipeline, calls } = setup(
        () => forward(cluster('svc', 1, 2)),
        (call) => call.h.onError(failure, false, failure, true),
      );
      const res = new Sink();
      pipeline.outbound(request('/x'), res);
      await settle();
      t.same([res.status, res.header('x-meshlet-flags'), calls.length], [status, flag, 1]);
    }
  },
);

t.test('a bug on the request path answers 500 and is reported, not thrown', async (t) => {
  const { pipeline, bugs } = setup(
    () => {
      throw new Error('boom');
    },
    () => {},
  );
  const res = new Sink();
  t.doesNotThrow(() => pipeline.outbound(request('/x'), res));
  t.equal(res.status, 500);
  t.equal(bugs.length, 1);
  t.equal(pipeline.inFlight, 0, 'the exchange is finished');
});

t.test(
  'a bug in response header edits answers 500 and still ends the attempt and the admission',
  async (t) => {
    const c = cluster('svc', 1);
    const { pipeline, registry, bugs, calls } = setup(
      () =>
        forward(c, {
          responseHeaders: [
            {
              get set(): never {
                throw new Error('bad edit');
              },
              add: [],
              remove: [],
            },
          ],
        }),
      (call) => respond(call, 200, 'x'),
    );
    const res = new Sink();
    pipeline.outbound(request('/x'), res);
    await settle();
    const state = registry.get(c);
    t.equal(res.status, 500);
    t.equal(bugs.length, 1);
    t.ok(calls[0]?.aborted, 'the upstream call is dropped');
    t.same([state.ended.length, state.releases], [1, 1]);
  },
);

t.test('forwarded headers: request edits, x-forwarded-*, request id, original path', async (t) => {
  let got: UpstreamRequest | null = null;
  const { pipeline } = setup(
    () =>
      forward(cluster('svc', 1), {
        path: '/v2/p',
        originalPath: '/p',
        requestHeaders: [{ set: [['x-set', 'yes']], add: [], remove: ['x-drop'] }],
        responseHeaders: [{ set: [['x-resp', 'r']], add: [], remove: [] }],
      }),
    (call) => {
      got = call.req;
      respond(call, 201, 'ok');
    },
  );
  const res = new Sink();
  pipeline.outbound(request('/p', {}, ['host', 'svc', 'x-drop', '1', 'connection', 'keep-alive']), res);
  await settle();
  const r = got as UpstreamRequest | null;
  t.equal(r?.path, '/v2/p');
  const h = r?.headers ?? [];
  const value = (n: string): string | undefined => {
    const i = h.indexOf(n);
    return i < 0 ? undefined : h[i + 1];
  };
  t.equal(value('x-set'), 'yes');
  t.equal(value('x-drop'), undefined);
  t.equal(value('connection'), undefined, 'hop-by-hop removed');
  t.equal(value('x-forwarded-for'), '10.1.2.3');
  t.equal(value('x-forwarded-proto'), 'http');
  t.equal(value('x-request-id'), 'rid');
  t.equal(value('x-envoy-original-path'), '/p');
  t.same([res.status, res.body, res.header('x-resp')], [201, 'ok', 'r']);
});

t.test('direct responses and redirects answer locally, with no cluster involved', async (t) => {
  const { pipeline, calls, registry } = setup(
    () => ({
      kind: 'direct',
      routeName: 'default/svc',
      responseHeaders: [],
      status: 410,
      body: Buffer.from('gone'),
    }),
    () => {},
  );
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  t.same([res.status, res.body, calls.length, registry.states.size], [410, 'gone', 0, 0]);
  const redirect = setup(
    () => ({ kind: 'redirect', routeName: 'r', responseHeaders: [], status: 301, location: 'http://a/b' }),
    () => {},
  );
  const res2 = new Sink();
  redirect.pipeline.outbound(request('/x'), res2);
  t.same([res2.status, res2.header('location')], [301, 'http://a/b']);
});

t.test('no route and no cluster: NR and NC local replies', async (t) => {
  const nr = setup(
    () => ({ kind: 'noRoute', status: 404, reason: 'no route matched', serviceFqdn: 'a', serviceName: 'a' }),
    () => {},
  );
  const res = new Sink();
  nr.pipeline.outbound(request('/x'), res);
  t.same([res.status, res.header('x-meshlet-flags')], [404, 'NR']);
  const nc = setup(
    () => ({ kind: 'noCluster', clusterName: 'c', reason: 'no subset v9', routeName: 'r' }),
    () => {},
  );
  const res2 = new Sink();
  nc.pipeline.outbound(request('/x'), res2);
  t.same([res2.status, res2.header('x-meshlet-flags')], [503, 'NC']);
});

t.test('passthrough (ALLOW_ANY): the requested host, no retries, no cluster state', async (t) => {
  const { pipeline, calls, registry } = setup(
    () => ({ kind: 'passthrough', host: '10.9.9.9', port: 8080 }),
    (call) => call.h.onError('connect', false, 'refused', false),
  );
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  await settle();
  t.same(
    calls.map((c) => c.target),
    ['10.9.9.9:8080'],
  );
  t.same([res.status, res.header('x-meshlet-flags')], [503, 'UF'], 'no URX: retries are off');
  t.equal(registry.states.size, 0);
});

t.test(
  'inbound: reset-before-request is retried against the app; a reset after writing is not',
  async (t) => {
    const app = { address: '127.0.0.1', port: 9000 };
    const before = setup(
      () => forward(cluster('svc', 1)),
      (call) => {
        if (call.index === 0) call.h.onError('reset', false, 'closed', false);
        else respond(call, 200, 'app');
      },
      { app },
    );
    const res = new Sink();
    before.pipeline.inbound(request('/in', {}, ['host', 'me.default.svc.cluster.local']), res);
    await before.time.advance(100);
    t.same(
      before.calls.map((c) => c.target),
      ['127.0.0.1:9000', '127.0.0.1:9000'],
    );
    t.same([res.status, res.body], [200, 'app']);

    const after = setup(
      () => forward(cluster('svc', 1)),
      (call) => call.h.onError('reset', false, 'closed', true),
      { app },
    );
    const res2 = new Sink();
    after.pipeline.inbound(request('/in'), res2);
    await after.time.advance(100);
    t.equal(after.calls.length, 1);
    t.same([res2.status, res2.header('x-meshlet-flags')], [503, 'UC']);

    const none = setup(
      () => forward(cluster('svc', 1)),
      () => {},
    );
    const res3 = new Sink();
    none.pipeline.inbound(request('/in'), res3);
    t.same([res3.status, res3.header('x-meshlet-flags')], [503, 'UH'], 'no --app');
  },
);

t.test('the client leaving mid-response aborts the attempt and ends it once', async (t) => {
  const c = cluster('svc', 1);
  const { pipeline, calls, registry, metrics } = setup(
    () => forward(c),
    (call) => call.h.onHeaders(200, ['content-length', '100']),
  );
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  await settle();
  res.abort();
  const state = registry.get(c);
  t.ok(calls[0]?.aborted);
  t.same(
    state.ended.map((e) => [e.result.status, e.result.failure]),
    [[200, null]],
  );
  t.equal(state.releases, 1);
  t.match(await metrics.exposition(), /response_code="200"[^}]*response_flags="DC"/);
});

t.test("the process's timers: a started timer fires, a cancelled one does not", async (t) => {
  const fired: string[] = [];
  NODE_TIMERS.start(() => fired.push('kept'), 1);
  const cancelled = NODE_TIMERS.start(() => fired.push('cancelled'), 1);
  NODE_TIMERS.cancel(cancelled);
  await new Promise((r) => setTimeout(r, 20));
  t.same(fired, ['kept']);
});
