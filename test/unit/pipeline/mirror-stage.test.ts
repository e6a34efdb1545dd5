import t from 'tap';
import type { MirrorTarget } from '../../../src/router/route-types.ts';
import {
  bodyOf,
  cluster,
  forward,
  readBody,
  request,
  respond,
  type SentCall,
  Sink,
  settle,
  setup,
} from './pipeline-harness.ts';

/**
 * Mirrors: a copy per drawn mirror cluster, fire and forget. Whatever the copy meets (no endpoint,
 * failure, slow upstream, big body), the primary's response is the same.
 */

const primary = cluster('svc', 1);
const shadow = cluster('shadow', 7, 8);
const MIRROR: readonly MirrorTarget[] = [{ cluster: shadow, fraction: 1 }];

/** Primary calls go to port 1, mirror calls to 7/8. */
const isMirror = (call: SentCall): boolean => call.target !== '127.0.0.1:1';

t.test('a bodiless request is copied after the primary left; the copy changes nothing', async (t) => {
  const { pipeline, calls, registry, stats } = setup(
    () => forward(primary, { mirrorClusters: MIRROR, path: '/v2/p' }),
    (call) => {
      if (isMirror(call)) respond(call, 500, 'mirror says no');
      else respond(call, 200, 'primary');
    },
  );
  const res = new Sink();
  pipeline.outbound(request('/p'), res);
  t.same(
    calls.map((c) => c.target),
    ['127.0.0.1:1', '127.0.0.1:7'],
    'primary first, then the copy',
  );
  await settle();
  t.same([res.status, res.body], [200, 'primary']);
  const [p, m] = calls;
  t.equal(m?.req.method, 'GET');
  t.equal(m?.req.path, '/v2/p', 'the path as sent to the primary');
  t.same(m?.req.headers, p?.req.headers, 'the same headers, Host unchanged');
  const s = registry.get(shadow);
  t.same(s.started, ['127.0.0.1:7']);
  t.same(
    s.ended.map((e) => [e.result.status, e.result.failure]),
    [[500, null]],
    'the copy ends its attempt in the mirror cluster',
  );
  t.same(
    [s.admits, s.releases, s.requests],
    [1, 1, 0],
    'admitted and released; not a request for the budget',
  );
  t.same([stats.mirrorsSent, stats.mirrorsFailed, stats.mirrorsSkipped], [1, 0, 0]);
});

t.test('the percentage is drawn per mirror and per request', async (t) => {
  const other = cluster('other', 9);
  const { pipeline, calls, stats } = setup(
    () =>
      forward(primary, {
        mirrorClusters: [
          { cluster: shadow, fraction: 0.4 },
          { cluster: other, fraction: 0.6 },
        ],
      }),
    (call) => respond(call, 200),
  );
  pipeline.outbound(request('/p'), new Sink());
  t.same(
    calls.map((c) => c.target),
    ['127.0.0.1:1', '127.0.0.1:9'],
    'draw 0.5: under 0.6, not under 0.4',
  );
  await settle();
  t.equal(stats.mirrorsSent, 1);
});

t.test('mirror failures are counted and never reach the primary', async (t) => {
  const { pipeline, calls, registry, stats, time } = setup(
    () => forward(primary, { mirrorClusters: MIRROR, timeoutMs: 100 }),
    (call) => {
      if (!isMirror(call)) respond(call, 200, 'primary');
      else if (call.index === 1) call.h.onError('connect', false, 'refused', false);
      // Later copies hang until the route timeout.
    },
  );
  const first = new Sink();
  pipeline.outbound(request('/p'), first);
  await settle();
  t.same([first.status, first.body], [200, 'primary']);
  t.same([stats.mirrorsSent, stats.mirrorsFailed], [1, 1], 'connect failure');
  t.equal(calls.length, 2, 'a failed copy is not retried');

  const second = new Sink();
  pipeline.outbound(request('/p'), second);
  await settle();
  t.equal(second.status, 200, 'the primary does not wait for a hanging copy');
  await time.advance(100);
  t.ok(calls[3]?.aborted, 'the hanging copy is given up at the route timeout');
  t.same([stats.mirrorsSent, stats.mirrorsFailed], [2, 2]);
  const s = registry.get(shadow);
  t.same(
    s.ended.map((e) => e.result.failure),
    ['connect', 'per-try-timeout'],
  );
  t.equal(s.releases, 2);

  registry.get(shadow).endpoints = [];
  const third = new Sink();
  pipeline.outbound(request('/p'), third);
  await settle();
  t.same(
    [third.status, stats.mirrorsSent, stats.mirrorsFailed],
    [200, 2, 3],
    'no endpoint: failed, not sent',
  );

  registry.get(shadow).admitMode = 'overflow';
  const fourth = new Sink();
  pipeline.outbound(request('/p'), fourth);
  await settle();
  t.same([fourth.status, stats.mirrorsFailed], [200, 4], 'overflow in the mirror cluster: failed');
  t.same(time.waiting(), []);
});

t.test('a copy waits for its own admission without holding up the primary', async (t) => {
  const { pipeline, calls, registry, stats } = setup(
    () => forward(primary, { mirrorClusters: MIRROR }),
    (call) => respond(call, 200),
  );
  const s = registry.get(shadow);
  s.admitMode = 'queued';
  const res = new Sink();
  pipeline.outbound(request('/p'), res);
  await settle();
  t.same([res.status, calls.length], [200, 1]);
  s.onGranted?.();
  await settle();
  t.same([calls.length, stats.mirrorsSent, s.releases], [2, 1, 1]);
});

t.test('a body is copied once it has passed to the primary', async (t) => {
  const { pipeline, calls, stats } = setup(
    () => forward(primary, { mirrorClusters: MIRROR }),
    (call) => readBody(call, () => respond(call, 200, isMirror(call) ? 'm' : `p ${call.body}`)),
  );
  const res = new Sink();
  pipeline.outbound(request('/p', { method: 'POST', body: bodyOf('hello ', 'world') }), res);
  t.equal(calls.length, 1, 'the copy waits for the body');
  await settle();
  t.same([res.status, res.body], [200, 'p hello world']);
  t.equal(calls.length, 2);
  t.same([calls[1]?.body, calls[1]?.bodyEnded, calls[1]?.req.method], ['hello world', true, 'POST']);
  t.same([stats.mirrorsSent, stats.mirrorsSkipped], [1, 0]);
});

t.test('a body over 64 KiB is not mirrored; the primary gets all of it', async (t) => {
  const { pipeline, calls, stats } = setup(
    () => forward(primary, { mirrorClusters: [...MIRROR, { cluster: cluster('other', 9), fraction: 1 }] }),
    (call) => readBody(call, () => respond(call, 200, String(call.body.length))),
  );
  const chunk = 'x'.repeat(40 * 1024);
  const res = new Sink();
  pipeline.outbound(request('/p', { method: 'PUT', body: bodyOf(chunk, chunk) }), res);
  await settle();
  t.same([res.status, res.body], [200, String(80 * 1024)]);
  t.equal(calls.length, 1);
  t.same([stats.mirrorsSent, stats.mirrorsSkipped], [0, 2], 'one skip per mirror');
});

t.test('a body the primary stopped reading is not mirrored (the copy would be incomplete)', async (t) => {
  const { pipeline, calls, stats } = setup(
    () => forward(primary, { mirrorClusters: MIRROR }),
    (call) => respond(call, 413, 'too big'),
  );
  const res = new Sink();
  pipeline.outbound(request('/p', { method: 'POST', body: bodyOf('never', 'read') }), res);
  await settle();
  t.same([res.status, calls.length], [413, 1]);
  t.same([stats.mirrorsSent, stats.mirrorsSkipped], [0, 1]);
});

t.test('with retries and a mirror the body is read once and both get all of it', async (t) => {
  const { pipeline, calls, stats, time } = setup(
    () => forward(primary, { mirrorClusters: MIRROR, retries: { attempts: 1, retryOn: '5xx' } }),
    (call) =>
      readBody(call, () => respond(call, isMirror(call) ? 202 : call.index === 0 ? 503 : 200, call.body)),
  );
  const res = new Sink();
  pipeline.outbound(request('/p', { method: 'POST', body: bodyOf('ab', 'cd') }), res);
  await time.advance(100);
  t.same([res.status, res.body], [200, 'abcd']);
  t.same(
    calls.map((c) => [c.target, c.body]),
    [
      ['127.0.0.1:1', 'abcd'],
      ['127.0.0.1:7', 'abcd'],
      ['127.0.0.1:1', 'abcd'],
    ],
    'first try, the copy when the body ended, then the retry with the replayed body',
  );
  t.equal(stats.mirrorsSent, 1, 'one copy per request, not per attempt');
});

t.test('an aborted request is not mirrored; a delayed one is, after the delay', async (t) => {
  const aborted = setup(
    () => forward(primary, { mirrorClusters: MIRROR, fault: { abort: { httpStatus: 503, fraction: 1 } } }),
    () => {},
  );
  aborted.pipeline.outbound(request('/p'), new Sink());
  t.same([aborted.calls.length, aborted.stats.mirrorsSent], [0, 0]);

  const delayed = setup(
    () => forward(primary, { mirrorClusters: MIRROR, fault: { delay: { fixedDelayMs: 50, fraction: 1 } } }),
    (call) => respond(call, 200),
  );
  delayed.pipeline.outbound(request('/p'), new Sink());
  await delayed.time.advance(49);
  t.equal(delayed.calls.length, 0);
  await delayed.time.advance(1);
  t.equal(delayed.calls.length, 2);
});

t.test('a bug in a copy is counted and reported; the primary is untouched', async (t) => {
  const { pipeline, registry, stats, bugs } = setup(
    () => forward(primary, { mirrorClusters: MIRROR }),
    (call) => respond(call, 200, 'primary'),
  );
  registry.get(shadow).pick = () => {
    throw new Error('mirror pick bug');
  };
  const res = new Sink();
  pipeline.outbound(request('/p'), res);
  await settle();
  t.same([res.status, res.body], [200, 'primary']);
  t.same([stats.mirrorsFailed, stats.mirrorsSent, bugs.length], [1, 0, 1]);
});

t.test('backpressure passes through the tap, and the copy honours its own', async (t) => {
  let sourcePaused = 0;
  let sourceResumed = 0;
  let copyPaused = false;
  let chunksWhilePaused = 0;
  const source = bodyOf('one ', 'two ', 'three');
  const counted = {
    onData: source.onData.bind(source),
    pause: () => {
      sourcePaused++;
    },
    resume: () => {
      sourceResumed++;
    },
  };
  const { pipeline, calls } = setup(
    () => forward(primary, { mirrorClusters: MIRROR, retries: { attempts: 0, retryOn: '' } }),
    (call) => {
      const body = call.req.body;
      if (body === null) return;
      if (!isMirror(call)) {
        body.pause();
        body.resume();
        readBody(call, () => respond(call, 200));
        return;
      }
      // The copy reads one chunk, pauses, and asks for the rest later.
      body.onData((chunk, last) => {
        if (copyPaused) chunksWhilePaused++;
        call.body += chunk.toString();
        if (last) respond(call, 204);
        else if (call.body === 'one ') {
          body.pause();
          copyPaused = true;
          setImmediate(() => {
            copyPaused = false;
            body.resume();
          });
        }
      });
    },
  );
  pipeline.outbound(request('/p', { method: 'POST', body: counted }), new Sink());
  await settle(5);
  t.same([sourcePaused, sourceResumed], [1, 1], 'the primary pauses and resumes the client body');
  t.same(
    calls.map((c) => c.body),
    ['one two three', 'one two three'],
  );
  t.equal(chunksWhilePaused, 0, 'no chunk reaches the copy while it is paused');
});
