import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import t from 'tap';
import {
  type ExportTimers,
  httpTransport,
  OtlpExporter,
  type Transport,
} from '../../../../src/telemetry/tracing/otlp-exporter.ts';
import {
  exportRequestJson,
  type SpanRecord,
  unixNanos,
} from '../../../../src/telemetry/tracing/span-record.ts';

/** Timers run by hand: `tick()` fires the ones due. */
function fakeTimers() {
  let now = 0;
  const pending: Array<{ at: number; fn: () => void; id: number }> = [];
  let next = 1;
  const timers: ExportTimers = {
    setTimeout: (fn, ms) => {
      const id = next++;
      pending.push({ at: now + ms, fn, id });
      return id;
    },
    clearTimeout: (h) => {
      const i = pending.findIndex((p) => p.id === h);
      if (i >= 0) pending.splice(i, 1);
    },
  };
  return {
    timers,
    get pending() {
      return pending.length;
    },
    async advance(ms: number) {
      now += ms;
      for (;;) {
        const due = pending.filter((p) => p.at <= now).sort((a, b) => a.at - b.at)[0];
        if (due === undefined) break;
        pending.splice(pending.indexOf(due), 1);
        due.fn();
        await flushMicrotasks();
      }
      await flushMicrotasks();
    },
  };
}

async function flushMicrotasks(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

function span(n: number): SpanRecord {
  return {
    traceId: 'a'.repeat(32),
    spanId: n.toString(16).padStart(16, '0'),
    parentSpanId: '',
    name: `s${n}`,
    kind: 2,
    startMs: 10,
    endMs: 12.5,
    attributes: ['k', 'v', 'n', 3, 'd', 1.5, 'b', true],
    error: null,
  };
}

/** A transport that answers with the given statuses in turn (a thrown Error = connection failure). */
function scripted(answers: Array<number | Error>) {
  const bodies: string[] = [];
  const transport: Transport = async (body) => {
    bodies.push(body);
    const a = answers.shift() ?? 200;
    if (a instanceof Error) throw a;
    return a;
  };
  return { transport, bodies };
}

function spanNames(body: string): string[] {
  const parsed = JSON.parse(body) as {
    resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<{ name: string }> }> }>;
  };
  return parsed.resourceSpans[0]!.scopeSpans[0]!.spans.map((s) => s.name);
}

function make(
  transport: Transport,
  timers: ExportTimers,
  over: Partial<{ maxBatchSize: number; maxQueueSize: number }> = {},
) {
  const registry = new Registry();
  const exporter = new OtlpExporter({
    transport,
    resource: { serviceName: 'svc' },
    unixOffsetMs: 1_700_000_000_000,
    maxBatchSize: over.maxBatchSize ?? 3,
    flushIntervalMs: 1000,
    maxQueueSize: over.maxQueueSize ?? 5,
    retryBackoffMs: 500,
    registry,
    timers,
  });
  return { exporter, registry };
}

t.test('OTLP JSON mapping', async (t) => {
  t.equal(unixNanos(1_700_000_000_123.25), '1700000000123250000');
  t.equal(unixNanos(1.9999999), '2000000');
  const body = JSON.parse(
    exportRequestJson(
      [span(1), { ...span(2), parentSpanId: 'b'.repeat(16), error: 'boom' }],
      { serviceName: 'svc' },
      1000,
      { name: 'meshlet', version: '1' },
    ),
  );
  const rs = body.resourceSpans[0];
  t.same(rs.resource.attributes, [{ key: 'service.name', value: { stringValue: 'svc' } }]);
  t.same(rs.scopeSpans[0].scope, { name: 'meshlet', version: '1' });
  const [s1, s2] = rs.scopeSpans[0].spans;
  t.same(s1, {
    traceId: 'a'.repeat(32),
    spanId: '0000000000000001',
    name: 's1',
    kind: 2,
    startTimeUnixNano: '1010000000',
    endTimeUnixNano: '1012500000',
    attributes: [
      { key: 'k', value: { stringValue: 'v' } },
      { key: 'n', value: { intValue: '3' } },
      { key: 'd', value: { doubleValue: 1.5 } },
      { key: 'b', value: { boolValue: true } },
    ],
    status: { code: 0 },
  });
  t.equal(s2.parentSpanId, 'b'.repeat(16));
  t.same(s2.status, { code: 2, message: 'boom' });
});

t.test('batches: a full batch goes at once, a partial one after the interval', async (t) => {
  const clock = fakeTimers();
  const { transport, bodies } = scripted([]);
  const { exporter, registry } = make(transport, clock.timers);
  exporter.enqueue(span(1));
  exporter.enqueue(span(2));
  await flushMicrotasks();
  t.equal(bodies.length, 0, 'waits for the interval');
  await clock.advance(999);
  t.equal(bodies.length, 0);
  await clock.advance(1);
  t.same(bodies.map(spanNames), [['s1', 's2']]);
  for (let i = 3; i <= 6; i++) exporter.enqueue(span(i));
  await flushMicrotasks();
  t.same(bodies.map(spanNames)[1], ['s3', 's4', 's5'], 'a full batch is sent without waiting');
  await clock.advance(1000);
  t.same(bodies.map(spanNames)[2], ['s6']);
  t.equal(exporter.exported, 6);
  t.match(await registry.metrics(), /meshlet_trace_spans_exported_total 6/);
});

t.test('a bounded queue: beyond maxQueueSize spans are dropped and counted', async (t) => {
  const clock = fakeTimers();
  let release: (n: number) => void = () => {};
  const bodies: string[] = [];
  const transport: Transport = (body) => {
    bodies.push(body);
    return new Promise((r) => {
      release = r;
    });
  };
  const { exporter, registry } = make(transport, clock.timers, { maxBatchSize: 2, maxQueueSize: 3 });
  exporter.enqueue(span(1));
  exporter.enqueue(span(2)); // full batch: in flight, the collector is slow
  for (let i = 3; i <= 7; i++) exporter.enqueue(span(i));
  t.equal(exporter.queued, 3);
  t.equal(exporter.dropped.queue_full, 2);
  t.match(await registry.metrics(), /meshlet_trace_spans_dropped_total\{reason="queue_full"\} 2/);
  release(200);
  await flushMicrotasks();
  t.same(spanNames(bodies[1]!), ['s3', 's4'], 'the next full batch follows the first');
  release(200);
  await flushMicrotasks();
  await clock.advance(1000);
  t.same(spanNames(bodies[2]!), ['s5']);
  release(200);
  await flushMicrotasks();
  t.equal(exporter.exported, 5);
});

t.test('one retry after a back-off on 503, 429 and connection failures, then drop', async (t) => {
  const clock = fakeTimers();
  const { transport, bodies } = scripted([503, 200, new Error('ECONNREFUSED'), 429, 400]);
  const { exporter, registry } = make(transport, clock.timers, { maxBatchSize: 1 });
  exporter.enqueue(span(1));
  await flushMicrotasks();
  t.equal(bodies.length, 1);
  await clock.advance(499);
  t.equal(bodies.length, 1, 'the retry waits for the back-off');
  await clock.advance(1);
  t.equal(bodies.length, 2);
  t.equal(exporter.exported, 1, 'the retry succeeded');
  exporter.enqueue(span(2));
  await flushMicrotasks();
  await clock.advance(500);
  t.equal(bodies.length, 4, 'connection failure, then 429: given up');
  t.equal(exporter.dropped.export_failed, 1);
  exporter.enqueue(span(3));
  await flushMicrotasks();
  await clock.advance(500);
  t.equal(bodies.length, 5, '400 is not retried');
  t.equal(exporter.dropped.rejected, 1);
  const text = await registry.metrics();
  t.match(text, /meshlet_trace_spans_dropped_total\{reason="export_failed"\} 1/);
  t.match(text, /meshlet_trace_spans_dropped_total\{reason="rejected"\} 1/);
});

t.test('shutdown sends what is queued, bounded in time', async (t) => {
  const clock = fakeTimers();
  const { transport, bodies } = scripted([]);
  const { exporter } = make(transport, clock.timers, { maxBatchSize: 2, maxQueueSize: 10 });
  for (let i = 1; i <= 5; i++) exporter.enqueue(span(i));
  t.equal(await exporter.shutdown(1000), true);
  t.same(bodies.map(spanNames), [['s1', 's2'], ['s3', 's4'], ['s5']]);
  const hung = make(() => new Promise<number>(() => {}), clock.timers);
  hung.exporter.enqueue(span(1));
  const done = hung.exporter.shutdown(300);
  await clock.advance(300);
  t.equal(await done, false, 'a collector that never answers does not hold the shutdown');
});

t.test('the HTTP transport posts JSON over keep-alive', async (t) => {
  const seen: Array<{ method: string; type: string; auth: string; body: string }> = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString();
    });
    req.on('end', () => {
      seen.push({
        method: req.method ?? '',
        type: req.headers['content-type'] ?? '',
        auth: req.headers.authorization ?? '',
        body,
      });
      res.writeHead(seen.length === 1 ? 200 : 503).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as AddressInfo).port;
  const send = httpTransport(`http://127.0.0.1:${port}/v1/traces`, { authorization: 'Bearer x' }, 2000);
  t.equal(await send('{"a":1}'), 200);
  t.equal(await send('{}'), 503);
  t.same(seen[0], { method: 'POST', type: 'application/json', auth: 'Bearer x', body: '{"a":1}' });
  const closed = httpTransport('http://127.0.0.1:1/v1/traces', {}, 2000);
  await t.rejects(closed('{}'), 'a connection failure rejects');
});

t.test('a span that cannot be encoded drops its batch as rejected', async (t) => {
  const clock = fakeTimers();
  const errors: string[] = [];
  const { transport, bodies } = scripted([]);
  const exporter = new OtlpExporter({
    transport,
    resource: { serviceName: 'svc' },
    unixOffsetMs: 0,
    maxBatchSize: 1,
    flushIntervalMs: 10,
    maxQueueSize: 10,
    timers: clock.timers,
    onError: (reason, _detail, n) => errors.push(`${reason} ${n}`),
  });
  exporter.enqueue({ ...span(1), startMs: Number.NaN });
  await flushMicrotasks();
  t.equal(bodies.length, 0);
  t.same(errors, ['rejected 1']);
  t.equal(exporter.dropped.rejected, 1);
});

t.test('real timers: a partial batch leaves after flushIntervalMs', async (t) => {
  const { transport, bodies } = scripted([]);
  const exporter = new OtlpExporter({
    transport,
    resource: { serviceName: 'svc' },
    unixOffsetMs: 0,
    maxBatchSize: 10,
    flushIntervalMs: 5,
    maxQueueSize: 10,
  });
  exporter.enqueue(span(1));
  const deadline = Date.now() + 2000;
  while (bodies.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  t.equal(bodies.length, 1);
  t.equal(await exporter.shutdown(100), true);
});
