import t from 'tap';
import type { ObservedRequest } from '../../../../src/telemetry/observed-request.ts';
import { Sampler } from '../../../../src/telemetry/tracing/sampler.ts';
import { PooledIds } from '../../../../src/telemetry/tracing/span-ids.ts';
import {
  SPAN_KIND_CLIENT,
  SPAN_KIND_SERVER,
  type SpanRecord,
} from '../../../../src/telemetry/tracing/span-record.ts';
import { hostOf, MeshTracer } from '../../../../src/telemetry/tracing/tracer.ts';
import { observed } from '../../../helpers/observed-request.ts';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER = '00f067aa0ba902b7';

/** Ids 0000…1, 0000…2, … so the test can name them. */
function counterIds(): { traceId(): string; spanId(): string } {
  let n = 0;
  return {
    traceId: () => `${'f'.repeat(16)}${(++n).toString(16).padStart(16, '0')}`,
    spanId: () => (++n).toString(16).padStart(16, '0'),
  };
}

/** The tracer tests' request: the shared one with the values these tests read. */
function request(over: Partial<Record<keyof ObservedRequest, unknown>> = {}): ObservedRequest {
  return {
    ...observed(
      {
        startedAt: 1000,
        bytesSent: 0,
        bytesReceived: 0,
        authority: 'reviews:9080',
        path: '/reviews/1?x=1',
        originalPath: '/r/1?x=1',
        requestId: 'rid',
        cluster: { name: 'outbound|9080||reviews.default.svc.cluster.local' },
        rttMs: 1,
      },
      { headers: [], remoteAddress: '127.0.0.7' },
    ),
    ...over,
  } as ObservedRequest;
}

function attrs(s: SpanRecord): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = 0; i < s.attributes.length; i += 2) out[String(s.attributes[i])] = s.attributes[i + 1];
  return out;
}

function header(list: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < list.length; i += 2) if (list[i] === name) out.push(list[i + 1]!);
  return out;
}

function setup(percent: number, draws: number[] = []) {
  let clock = 1000;
  const spans: SpanRecord[] = [];
  const tracer = new MeshTracer({
    samplingPercent: percent,
    random: () => draws.shift() ?? 0.999,
    ids: counterIds(),
    now: () => clock,
    sink: (s) => spans.push(s),
  });
  return {
    tracer,
    spans,
    at: (ms: number) => {
      clock = ms;
    },
  };
}

t.test('sampler: the caller decides, else the ratio with the injected draw', async (t) => {
  const draws = [0.05, 0.2, 0.0999];
  const s = new Sampler(10, () => draws.shift()!);
  t.equal(s.sampled(true), true);
  t.equal(s.sampled(false), false);
  t.equal(draws.length, 3, 'no draw when the caller decided');
  t.equal(s.sampled(null), true);
  t.equal(s.sampled(null), false);
  t.equal(s.sampled(null), true);
  t.equal(new Sampler(0, () => 0).sampled(null), false);
  t.equal(new Sampler(100, () => 0.999999).sampled(null), true);
  t.equal(new Sampler(0, () => 0).sampled(true), true, 'a sampled caller is traced even at 0 %');
});

t.test('a sampled request with two attempts: span tree, ids, timing, headers', async (t) => {
  const { tracer, spans, at } = setup(0);
  const incoming = ['host', 'reviews:9080', 'traceparent', `00-${TRACE}-${CALLER}-01`, 'tracestate', 'v=1'];
  const trace = tracer.start(incoming, 'source', 1000);
  t.ok(trace, 'sampled by the caller even at 0 %');
  const r = request();
  at(1001);
  const h1 = trace!.attemptStarted(
    ['host', 'reviews:9080', 'traceparent', `00-${TRACE}-${CALLER}-01`, 'tracestate', 'v=1'],
    r,
  );
  at(1005);
  trace!.attemptEnded(request({ upstreamStatus: 503, attempts: 1 }), null);
  at(1010);
  const h2 = trace!.attemptStarted(
    ['host', 'reviews:9080'],
    request({ attempts: 2, endpoint: { id: '127.0.0.12:9080', labels: {} } }),
  );
  at(1020);
  trace!.attemptEnded(request({ attempts: 2 }), null);
  t.equal(spans.length, 0, 'nothing is exported before the request finished');
  trace!.finished(request({ attempts: 2 }), 25, 200);
  t.equal(spans.length, 3);
  const [server, a1, a2] = spans as [SpanRecord, SpanRecord, SpanRecord];
  t.equal(server.kind, SPAN_KIND_SERVER);
  t.equal(server.traceId, TRACE);
  t.equal(server.parentSpanId, CALLER);
  t.equal(server.name, 'GET reviews.default.svc.cluster.local');
  t.equal(server.startMs, 1000);
  t.equal(server.endMs, 1025);
  t.equal(server.error, null);
  t.match(attrs(server), {
    'http.request.method': 'GET',
    'url.path': '/r/1',
    'server.address': 'reviews',
    'http.response.status_code': 200,
    'network.peer.address': '127.0.0.7',
    upstream_cluster: 'outbound|9080||reviews.default.svc.cluster.local',
    response_flags: '-',
    'guid:x-request-id': 'rid',
  });
  for (const a of [a1, a2]) {
    t.equal(a.kind, SPAN_KIND_CLIENT);
    t.equal(a.parentSpanId, server.spanId);
    t.equal(a.traceId, TRACE);
    t.equal(a.name, 'router outbound|9080||reviews.default.svc.cluster.local egress');
    t.ok(a.startMs >= server.startMs && a.endMs <= server.endMs, 'inside the request span');
  }
  t.not(a1.spanId, a2.spanId);
  t.same([a1.startMs, a1.endMs, a2.startMs, a2.endMs], [1001, 1005, 1010, 1020]);
  t.equal(a1.error, 'upstream answered 503');
  t.equal(attrs(a1)['http.response.status_code'], 503);
  t.equal(attrs(a1)['http.request.resend_count'], undefined);
  t.equal(attrs(a2)['http.request.resend_count'], 1);
  t.equal(attrs(a2)['network.peer.address'], '127.0.0.12');
  t.equal(attrs(a2)['network.peer.port'], 9080);
  t.equal(attrs(a2)['url.path'], '/reviews/1');
  t.same(header(h1, 'traceparent'), [`00-${TRACE}-${a1.spanId}-01`], 'one traceparent naming the attempt');
  t.same(header(h1, 'tracestate'), ['v=1']);
  t.same(header(h2, 'traceparent'), [`00-${TRACE}-${a2.spanId}-01`]);
  t.same(header(h2, 'tracestate'), ['v=1'], 'tracestate passed on unchanged');
  t.same(header(h1, 'x-b3-traceid'), [], 'no B3 when none came in');
});

t.test('B3 in, B3 out in the same form', async (t) => {
  const { tracer, spans } = setup(0);
  const multi = tracer.start(
    ['x-b3-traceid', CALLER, 'x-b3-spanid', CALLER, 'x-b3-sampled', '1'],
    'destination',
    1000,
  );
  const h = multi!.attemptStarted(
    ['x-b3-traceid', CALLER, 'x-b3-spanid', CALLER, 'x-b3-sampled', '1'],
    request({ reporter: 'destination' }),
  );
  multi!.attemptEnded(request(), null);
  multi!.finished(request({ reporter: 'destination' }), 5, 200);
  const [server, attempt] = spans as [SpanRecord, SpanRecord];
  t.equal(server.traceId, `0000000000000000${CALLER}`);
  t.same(header(h, 'x-b3-traceid'), [CALLER], '64-bit id answered in 64 bits');
  t.same(header(h, 'x-b3-spanid'), [attempt.spanId]);
  t.same(header(h, 'x-b3-parentspanid'), [server.spanId]);
  t.same(header(h, 'x-b3-sampled'), ['1']);
  t.same(header(h, 'traceparent'), [`00-0000000000000000${CALLER}-${attempt.spanId}-01`]);
  const single = tracer.start(['b3', `${TRACE}-${CALLER}-1`], 'source', 1000);
  const hs = single!.attemptStarted(['b3', `${TRACE}-${CALLER}-1`], request());
  t.match(header(hs, 'b3')[0], new RegExp(`^${TRACE}-[0-9a-f]{16}-1-[0-9a-f]{16}$`));
  t.same(header(hs, 'x-b3-traceid'), []);
});

t.test(
  'unsampled: no spans; a new trace gets a traceparent with flags 00; a caller context passes through',
  async (t) => {
    const { tracer, spans } = setup(10, [0.5, 0.5]);
    t.equal(
      tracer.start(['traceparent', `00-${TRACE}-${CALLER}-00`], 'source', 1000),
      null,
      'caller said no',
    );
    t.equal(tracer.start(['b3', '0'], 'source', 1000), null);
    const root = tracer.start(['host', 'a', 'traceparent', 'junk'], 'source', 1000);
    t.ok(root);
    const h1 = root!.attemptStarted(['host', 'a', 'traceparent', 'junk'], request());
    const h2 = root!.attemptStarted(['host', 'a'], request());
    const tp = header(h1, 'traceparent');
    t.equal(tp.length, 1, 'the invalid one is replaced');
    t.match(tp[0], /^00-f{16}[0-9a-f]{16}-[0-9a-f]{16}-00$/);
    t.same(header(h2, 'traceparent'), tp);
    root!.attemptEnded(request(), null);
    root!.finished(request(), 1, 200);
    t.equal(spans.length, 0);
    const quiet = new MeshTracer({
      samplingPercent: 0,
      random: Math.random,
      ids: new PooledIds(),
      now: () => 0,
      sink: () => t.fail('no span'),
      propagateUnsampled: false,
    });
    t.equal(quiet.start([], 'source', 0), null);
  },
);

t.test('a new sampled trace is a root; failures mark spans as errors', async (t) => {
  const { tracer, spans, at } = setup(50, [0.1]);
  const trace = tracer.start([], 'destination', 1000);
  const r = request({
    reporter: 'destination',
    cluster: null,
    endpoint: null,
    target: { address: '127.0.0.1', port: 8080 },
  });
  at(1002);
  trace!.attemptStarted([], r);
  at(1030);
  trace!.attemptEnded(r, 'per-try-timeout');
  // An attempt that failed before sending has no start: a zero-length span.
  at(1031);
  trace!.attemptEnded(r, 'connect');
  trace!.attemptStarted([], r);
  // The request finishes with the attempt still open: it is closed at the request's end.
  trace!.finished(
    request({
      reporter: 'destination',
      cluster: null,
      flags: 'UT',
      peer: { serviceFqdn: 'unknown', serviceName: 'x', serviceNamespace: 'x' },
    }),
    40,
    504,
  );
  const [server, a1, a2, a3] = spans as [SpanRecord, SpanRecord, SpanRecord, SpanRecord];
  t.equal(spans.length, 4);
  t.equal(server.parentSpanId, '');
  t.equal(server.name, 'GET reviews');
  t.equal(server.error, 'status 504: UT');
  t.equal(attrs(server).response_flags, 'UT');
  t.equal(a1.name, 'router inbound|8080|| egress');
  t.equal(a1.error, 'per-try-timeout');
  t.equal(attrs(a1)['network.peer.address'], '127.0.0.1');
  t.same([a2.startMs, a2.endMs, a2.error], [1031, 1031, 'connect']);
  t.same([a3.endMs, a3.error], [1040, 'unfinished']);
});

t.test('hostOf', async (t) => {
  t.equal(hostOf('a:80'), 'a');
  t.equal(hostOf('a'), 'a');
  t.equal(hostOf('[::1]:80'), '::1');
});

t.test('pooled ids are valid hex and differ', async (t) => {
  const ids = new PooledIds();
  const seen = new Set<string>();
  let bad = 0;
  // 1000 of each crosses several refills of the 4 KiB pool.
  for (let i = 0; i < 1000; i++) {
    const s = ids.spanId();
    if (!/^[0-9a-f]{16}$/.test(s) || !/^[0-9a-f]{32}$/.test(ids.traceId())) bad++;
    seen.add(s);
  }
  t.equal(bad, 0);
  t.equal(seen.size, 1000);
});

t.test('pooled ids never answer all zeros', async (t) => {
  // The first pool is all zeros, the next all 0x01 bytes: the zero ids are skipped, not returned.
  let fills = 0;
  const ids = new PooledIds((b) => {
    b.fill(fills++ === 0 ? 0 : 1);
  });
  let zeroSpans = 0;
  for (let i = 0; i < 128; i++) if (ids.spanId() === '0000000000000000') zeroSpans++;
  t.equal(zeroSpans, 0);
  t.equal(ids.traceId(), '01'.repeat(16));
  const traces = new PooledIds((b) => {
    b.fill(fills++ === 2 ? 0 : 2);
  });
  t.equal(traces.traceId(), '02'.repeat(16));
});

t.test('an attempt started while the previous one is open closes it as abandoned', async (t) => {
  const { tracer, spans } = setup(100);
  const trace = tracer.start([], 'source', 1000)!;
  trace.attemptStarted([], request());
  trace.attemptStarted([], request());
  trace.attemptEnded(request(), null);
  trace.finished(request(), 5, 200);
  t.same(
    spans.map((s) => s.error),
    [null, 'abandoned', null],
  );
});
