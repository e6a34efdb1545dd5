import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import t from 'tap';
import type { Logger } from '../../../../src/telemetry/logger.ts';
import type { ObservedRequest } from '../../../../src/telemetry/observed-request.ts';
import { startTracing } from '../../../../src/telemetry/tracing/start-tracing.ts';

/** The wiring main.ts uses: settings in, a tracer whose spans reach the collector, counters, a quiet log. */

function fakeLogger(
  lines: Array<{ msg: string; fields: Readonly<Record<string, unknown>> | undefined }>,
): Logger {
  return {
    level: 'info',
    enabled: () => true,
    log: (_level, msg, fields) => {
      lines.push({ msg, fields });
    },
  };
}

const config = (endpoint: string) => ({
  endpoint,
  headers: { 'x-tenant': 't1' },
  samplingPercent: 100,
  serviceName: 'reviews',
  maxBatchSize: 10,
  flushIntervalMs: 10,
  maxQueueSize: 100,
});

function oneRequest(tracer: ReturnType<typeof startTracing>['tracer'], clock: number): void {
  const trace = tracer.start([], 'source', clock);
  const r: ObservedRequest = {
    reporter: 'source',
    req: { method: 'GET', headers: [], remoteAddress: '127.0.0.1', localPort: 1, secure: false },
    startedAt: clock,
    status: 200,
    flags: '',
    bytesSent: 0,
    bytesReceived: 0,
    authority: 'a',
    path: '/',
    originalPath: '/',
    routeName: '',
    requestId: 'id',
    details: '',
    tlsFailure: '',
    peer: { serviceFqdn: 'a.default.svc.cluster.local', serviceName: 'a', serviceNamespace: 'default' },
    endpoint: null,
    target: null,
    cluster: null,
    attempts: 0,
    upstreamStatus: 0,
    rttMs: 0,
  };
  trace?.finished(r, 1, 200);
}

t.test('spans reach the collector with the configured headers and service name', async (t) => {
  const bodies: Array<{ tenant: string; body: string }> = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString();
    });
    req.on('end', () => {
      bodies.push({ tenant: String(req.headers['x-tenant']), body });
      res.end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as AddressInfo).port;
  const registry = new Registry();
  const lines: Array<{ msg: string; fields: Readonly<Record<string, unknown>> | undefined }> = [];
  const tracing = startTracing(
    config(`http://127.0.0.1:${port}/v1/traces`),
    registry,
    () => performance.now(),
    fakeLogger(lines),
  );
  oneRequest(tracing.tracer, performance.now());
  t.equal(await tracing.exporter.shutdown(2000), true);
  t.equal(bodies.length, 1);
  t.equal(bodies[0]?.tenant, 't1');
  t.match(bodies[0]?.body, /"service.name","value":\{"stringValue":"reviews"\}/);
  const start = /"startTimeUnixNano":"(\d+)"/.exec(bodies[0]?.body ?? '')?.[1] ?? '0';
  t.ok(
    Math.abs(Number(BigInt(start) / 1_000_000n) - Date.now()) < 10_000,
    'Unix time, from the monotonic clock',
  );
  t.match(await registry.metrics(), /meshlet_trace_spans_exported_total 1/);
  t.same(lines, []);
});

t.test('failed exports are logged at most once per 10 s, with the spans held back counted', async (t) => {
  let clock = 0;
  const lines: Array<{ msg: string; fields: Readonly<Record<string, unknown>> | undefined }> = [];
  // Port 1 on loopback refuses: every export fails after its retry (1 s back-off).
  const tracing = startTracing(
    config('http://127.0.0.1:1/v1/traces'),
    new Registry(),
    () => clock,
    fakeLogger(lines),
  );
  oneRequest(tracing.tracer, 0);
  await tracing.exporter.shutdown(3000);
  t.equal(lines.length, 1);
  t.match(lines[0], {
    msg: 'trace export failed; spans dropped',
    fields: { reason: 'export_failed', spans: 1 },
  });
  const again = startTracing(
    config('http://127.0.0.1:1/v1/traces'),
    new Registry(),
    () => clock,
    fakeLogger(lines),
  );
  // The same logger and clock: a second failure within 10 s is held back (its own limiter starts fresh).
  oneRequest(again.tracer, 0);
  await again.exporter.shutdown(3000);
  t.equal(lines.length, 2, 'a new exporter logs its first failure');
  clock = 5000;
  oneRequest(again.tracer, 5000);
  await again.exporter.shutdown(3000);
  t.equal(lines.length, 2, 'held back within 10 s');
  clock = 20_000;
  oneRequest(again.tracer, 20_000);
  await again.exporter.shutdown(3000);
  t.equal(lines.length, 3);
  t.match(lines[2], { fields: { spans: 2 } }, 'the held-back span is counted in the next line');
});
