import t from 'tap';
import { cluster, forward, request, respond, Sink, settle, setup } from './pipeline-harness.ts';

/** Fault injection: independent draws, delay before abort, counters, and nothing upstream on abort. */

t.test('an HTTP abort answers locally with FI; no admission, no pick, no upstream', async (t) => {
  const c = cluster('svc', 1);
  const { pipeline, calls, registry, stats, metrics } = setup(
    () => forward(c, { fault: { abort: { httpStatus: 555, fraction: 1 } } }),
    () => {},
  );
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  t.same([res.status, res.header('x-meshlet-flags'), res.body], [555, 'FI', 'fault filter abort\n']);
  t.same([calls.length, registry.states.size], [0, 0], 'the cluster is never touched');
  t.same([stats.faultsAborted, stats.faultsDelayed], [1, 0]);
  t.match(await metrics.exposition(), /response_code="555"[^}]*response_flags="FI"/);
});

t.test('a gRPC abort answers 200 with grpc-status', async (t) => {
  const { pipeline, calls, stats } = setup(
    () => forward(cluster('svc', 1), { fault: { abort: { grpcStatus: 'UNAVAILABLE', fraction: 1 } } }),
    () => {},
  );
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  t.same(
    [res.status, res.header('grpc-status'), res.header('content-type')],
    [200, '14', 'application/grpc'],
  );
  t.same([calls.length, stats.faultsAborted], [0, 1]);
  const unknown = setup(
    () => forward(cluster('svc', 1), { fault: { abort: { grpcStatus: 'NOT_A_CODE', fraction: 1 } } }),
    () => {},
  );
  const res2 = new Sink();
  unknown.pipeline.outbound(request('/x'), res2);
  t.equal(res2.header('grpc-status'), '2', 'an unknown name is UNKNOWN');
});

t.test('a delay holds the request, then it goes upstream; the route timeout starts after it', async (t) => {
  const c = cluster('svc', 1);
  const { pipeline, calls, stats, time, logged } = setup(
    () => forward(c, { timeoutMs: 100, fault: { delay: { fixedDelayMs: 300, fraction: 1 } } }),
    () => {},
  );
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  t.same(time.waiting(), [300], 'only the delay; the route timeout is not running yet');
  t.equal(stats.faultsDelayed, 1);
  await time.advance(300);
  t.equal(calls.length, 1);
  t.same(time.waiting(), [100], 'now the route timeout');
  await time.advance(100);
  t.same([res.status, res.header('x-meshlet-flags')], [504, 'DI,UT']);
  await settle();
  t.equal(logged[0]?.response_flags, 'DI,UT');
});

t.test('delay then abort: both fire, in that order, and both are counted', async (t) => {
  const { pipeline, calls, stats, time } = setup(
    () =>
      forward(cluster('svc', 1), {
        fault: { delay: { fixedDelayMs: 20, fraction: 1 }, abort: { httpStatus: 503, fraction: 1 } },
      }),
    () => {},
  );
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  t.equal(res.status, 0);
  await time.advance(20);
  t.same([res.status, res.header('x-meshlet-flags'), calls.length], [503, 'DI,FI', 0]);
  t.same([stats.faultsDelayed, stats.faultsAborted], [1, 1]);
});

t.test('percentages: the delay and the abort are drawn independently', async (t) => {
  // Draws: delay 0.3, abort 0.7. Delay fraction 0.5 fires; abort fraction 0.5 does not.
  const { pipeline, calls, stats, time } = setup(
    () =>
      forward(cluster('svc', 1), {
        fault: { delay: { fixedDelayMs: 5, fraction: 0.5 }, abort: { httpStatus: 500, fraction: 0.5 } },
      }),
    (call) => respond(call, 200, 'ok'),
    { random: [0.3, 0.7] },
  );
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  await time.advance(5);
  t.same([res.status, calls.length, stats.faultsDelayed, stats.faultsAborted], [200, 1, 1, 0]);
  const none = setup(
    () => forward(cluster('svc', 1), { fault: { abort: { httpStatus: 500, fraction: 0 } } }),
    (call) => respond(call, 200),
  );
  const res2 = new Sink();
  none.pipeline.outbound(request('/x'), res2);
  await settle();
  t.same([res2.status, none.stats.faultsAborted], [200, 0], 'a 0 % abort never fires');
});

t.test('the client leaving during a delay ends the exchange; nothing fires later', async (t) => {
  const { pipeline, calls, time } = setup(
    () => forward(cluster('svc', 1), { fault: { delay: { fixedDelayMs: 50, fraction: 1 } } }),
    () => {},
  );
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  res.abort();
  t.same(time.waiting(), [], 'the delay timer is cancelled');
  await time.advance(100);
  t.same([calls.length, pipeline.inFlight], [0, 0]);
});

t.test('a bug after the delay answers 500 instead of escaping the timer', async (t) => {
  const { pipeline, registry, bugs, time } = setup(
    () => forward(cluster('svc', 1), { fault: { delay: { fixedDelayMs: 5, fraction: 1 } } }),
    () => {},
  );
  registry.get = () => {
    throw new Error('registry bug');
  };
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  await time.advance(5);
  t.same([res.status, bugs.length, pipeline.inFlight], [500, 1, 0]);
});
