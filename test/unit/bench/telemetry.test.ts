import { appendFileSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { takeStringFlag } from '../../../bench/options.ts';
import { type HttpResult, httpGet, Processes } from '../../../bench/procs.ts';
import {
  countLines,
  countOtlpSpans,
  createOtlpSink,
  describeTelemetry,
  type Every,
  formatScrapes,
  fullTelemetry,
  type Get,
  mergeScrapes,
  OTLP_TRACES_PATH,
  parseSinkCounts,
  startOtlpSink,
  startScrapes,
  TELEMETRY_OFF,
  takeAccessLog,
  telemetryArgs,
} from '../../../bench/telemetry.ts';

t.test('the flags of each telemetry choice', async (t) => {
  t.same(telemetryArgs(TELEMETRY_OFF), ['--no-access-log']);
  const full = fullTelemetry('/tmp/x', { endpoint: 'http://127.0.0.1:9/v1/traces' });
  t.same(full, {
    mode: 'full',
    accessLogPath: '/tmp/x/access.log',
    tracingEndpoint: 'http://127.0.0.1:9/v1/traces',
    samplingPercent: 1,
  });
  t.same(telemetryArgs(full), [
    '--access-log',
    '/tmp/x/access.log',
    '--access-log-format',
    'json',
    '--tracing-endpoint',
    'http://127.0.0.1:9/v1/traces',
    '--tracing-sampling',
    '1',
  ]);
  t.match(describeTelemetry(TELEMETRY_OFF), /--no-access-log, no tracing/);
  t.match(describeTelemetry(full), /access log to a file, tracing at 1 % .*scraped every second/);
});

t.test('spans in an OTLP/JSON export', async (t) => {
  const span = { traceId: 'a', spanId: 'b', name: 'x' };
  t.equal(
    countOtlpSpans({
      resourceSpans: [
        { scopeSpans: [{ spans: [span, span] }, { spans: [span] }, { scope: {} }] },
        { resource: {} },
        null,
        { scopeSpans: [null, { spans: [span] }] },
      ],
    }),
    4,
  );
  t.equal(countOtlpSpans({ resourceSpans: [] }), 0);
  t.equal(countOtlpSpans({}), undefined);
  t.equal(countOtlpSpans(null), undefined);
  t.equal(countOtlpSpans('spans'), undefined);
});

function post(port: number, path: string, body: string): Promise<number> {
  return fetch(`http://127.0.0.1:${port}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  }).then(async (r) => {
    await r.arrayBuffer();
    return r.status;
  });
}

t.test('the OTLP sink counts exports and spans and rejects the rest', async (t) => {
  const server = createOtlpSink();
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  t.teardown(() => new Promise<void>((ok) => server.close(() => ok())));
  const port = (server.address() as AddressInfo).port;
  const counts = async () => parseSinkCounts(await httpGet(port, '/counts', 'sink', 1000));
  t.same(await counts(), { posts: 0, spans: 0, bytes: 0, rejected: 0 });
  const body = JSON.stringify({ resourceSpans: [{ scopeSpans: [{ spans: [{}, {}, {}] }] }] });
  t.equal(await post(port, OTLP_TRACES_PATH, body), 200);
  t.equal(await post(port, `${OTLP_TRACES_PATH}?x=1`, body), 200);
  t.equal(await post(port, OTLP_TRACES_PATH, 'not json'), 400);
  t.equal(await post(port, OTLP_TRACES_PATH, '{"other":1}'), 400);
  t.equal(await post(port, '/v1/metrics', body), 404);
  t.equal((await httpGet(port, OTLP_TRACES_PATH, 'sink', 1000)).status, 404);
  t.same(await counts(), { posts: 2, spans: 6, bytes: 2 * Buffer.byteLength(body), rejected: 4 });
});

t.test('sink counts: a non-200 answer throws, missing fields are NaN', async (t) => {
  t.throws(() => parseSinkCounts({ status: 503, body: Buffer.from('') }), /answered 503/);
  const c = parseSinkCounts({ status: 200, body: Buffer.from('{"posts":1,"spans":"x"}') });
  t.equal(c.posts, 1);
  t.ok(Number.isNaN(c.spans));
  t.ok(Number.isNaN(c.rejected));
});

t.test('a sink that cannot start is reported and stopped', async (t) => {
  const procs = new Processes();
  t.teardown(() => procs.cleanup());
  // Run from the sources, the script next to this module (otlp-sink.js) does not exist: node exits.
  await t.rejects(startOtlpSink(procs, new Set(), undefined, 5000), /the OTLP sink did not start: exited/);
});

/** A manual clock for startScrapes: `tick()` runs one interval. */
function manual(): { schedule: Every; tick: () => void; cancelled: () => boolean; ms: () => number } {
  let fn: (() => void) | undefined;
  let every = 0;
  let cancelled = false;
  return {
    schedule: (tick, ms) => {
      fn = tick;
      every = ms;
      return () => {
        cancelled = true;
      };
    },
    tick: () => fn?.(),
    cancelled: () => cancelled,
    ms: () => every,
  };
}

t.test('scrapes: each path once per interval, never two at once, failures counted', async (t) => {
  const clock = manual();
  const calls: string[] = [];
  const pending: Array<() => void> = [];
  const get: Get = (port, path, host, timeoutMs) => {
    calls.push(`${port} ${path} ${host} ${timeoutMs}`);
    if (path === '/stats') return Promise.resolve({ status: 404, body: Buffer.from('no') });
    if (path === '/down') return Promise.reject(new Error('refused'));
    return new Promise<HttpResult>((ok) => pending.push(() => ok({ status: 200, body: Buffer.alloc(2048) })));
  };
  const s = startScrapes(7, ['/metrics', '/stats', '/down'], 1000, get, clock.schedule);
  t.equal(clock.ms(), 1000);
  t.same(calls, [], 'nothing before the first interval');
  clock.tick();
  await new Promise((r) => setImmediate(r));
  clock.tick(); // /metrics is still running: not scraped again; /stats and /down are done, so they are
  await new Promise((r) => setImmediate(r));
  t.same(calls, [
    '7 /metrics 127.0.0.1:7 5000',
    '7 /stats 127.0.0.1:7 5000',
    '7 /down 127.0.0.1:7 5000',
    '7 /stats 127.0.0.1:7 5000',
    '7 /down 127.0.0.1:7 5000',
  ]);
  for (const done of pending.splice(0)) done();
  await new Promise((r) => setImmediate(r));
  clock.tick();
  const stopping = s.stop();
  for (const done of pending.splice(0)) done();
  const tallies = await stopping;
  t.ok(clock.cancelled());
  t.same(
    tallies.map((x) => [x.path, [...x.statuses], x.bytes]),
    [
      ['/metrics', [[200, 2]], 4096],
      ['/stats', [[404, 3]], 0],
      ['/down', [[0, 3]], 0],
    ],
  );
  t.equal(formatScrapes(tallies), '/metrics 2 × 200 (2.0 KB each); /stats 3 × 404; /down 3 × failed');
  const twice = mergeScrapes(tallies, tallies);
  t.same(
    twice.map((x) => [x.path, [...x.statuses], x.bytes]),
    [
      ['/metrics', [[200, 4]], 8192],
      ['/stats', [[404, 6]], 0],
      ['/down', [[0, 6]], 0],
    ],
  );
  t.same(mergeScrapes([], tallies), tallies);
  t.same(mergeScrapes(tallies, []), tallies);
  t.equal(formatScrapes([]), 'no scrapes');
  t.equal(formatScrapes([{ path: '/x', statuses: new Map(), bytes: 0 }]), '/x none');
});

t.test('scrapes on a real timer stop cleanly', async (t) => {
  const s = startScrapes(1, ['/metrics'], 5, async () => ({ status: 200, body: Buffer.from('m') }));
  await new Promise((r) => setTimeout(r, 40));
  const [tally] = await s.stop();
  t.ok((tally?.statuses.get(200) ?? 0) >= 1);
});

t.test('the access log is counted, then emptied', async (t) => {
  const procs = new Processes();
  t.teardown(() => procs.cleanup());
  const path = join(procs.tempDir(), 'access.log');
  t.same(await countLines(path), { lines: 0, bytes: 0 }, 'missing file');
  t.same(await takeAccessLog(path), { lines: 0, bytes: 0 });
  const line = `${JSON.stringify({ response_code: 200, path: '/' })}\n`;
  writeFileSync(path, line.repeat(50_000));
  t.same(await countLines(path), { lines: 50_000, bytes: 50_000 * line.length });
  t.same(await takeAccessLog(path), { lines: 50_000, bytes: 50_000 * line.length });
  t.same(await countLines(path), { lines: 0, bytes: 0 });
  appendFileSync(path, line + line);
  t.same(await takeAccessLog(path), { lines: 2, bytes: 2 * line.length });
});

t.test('a string flag taken out of argv', async (t) => {
  t.same(takeStringFlag(['--rounds', '3', '--cpu-prof', '/tmp/p', '--duration', '2'], 'cpu-prof'), {
    value: '/tmp/p',
    rest: ['--rounds', '3', '--duration', '2'],
  });
  t.same(takeStringFlag(['--cpu-prof=/tmp/q'], 'cpu-prof'), { value: '/tmp/q', rest: [] });
  t.same(takeStringFlag(['--rounds', '3'], 'cpu-prof'), { value: undefined, rest: ['--rounds', '3'] });
  t.equal(takeStringFlag(['--cpu-prof'], 'cpu-prof'), '--cpu-prof needs a value');
  t.equal(takeStringFlag(['--cpu-prof', '--rounds', '3'], 'cpu-prof'), '--cpu-prof needs a value');
  t.equal(takeStringFlag(['--cpu-prof='], 'cpu-prof'), '--cpu-prof needs a value');
});
