import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import t from 'tap';
import { ACCESS_LOG_DEFAULTS } from '../../../src/config/validate-access-log.ts';
import {
  AccessLog,
  type AccessLogEntry,
  createAccessLog,
  reopenLogged,
} from '../../../src/telemetry/access-log.ts';
import { AccessLogSink, type BatchWriter } from '../../../src/telemetry/access-log-sink.ts';
import { createLogger } from '../../../src/telemetry/logger.ts';
import { observed, WALL } from '../../helpers/observed-request.ts';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

function collect(): { lines: string[]; write: (text: string) => void } {
  const lines: string[] = [];
  return { lines, write: (text) => lines.push(...text.trimEnd().split('\n')) };
}

t.test('observe: one JSON line per request, batched into one write per turn', async (t) => {
  const writes: string[] = [];
  const log = new AccessLog((text) => writes.push(text), { wallNow: () => WALL });
  log.observe(observed(), 2, 200);
  log.observe(observed({ flags: 'NR' }), 1, 404);
  t.same(writes, [], 'nothing written synchronously');
  await tick();
  t.equal(writes.length, 1);
  const lines = (writes[0] ?? '')
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as AccessLogEntry);
  t.same(
    lines.map((l) => [l.response_code, l.response_flags, l.start_time]),
    [
      [200, '-', '2026-11-29T20:51:31.248Z'],
      [404, 'NR', '2026-11-29T20:51:31.249Z'],
    ],
  );
});

t.test('format text goes through observe', async (t) => {
  const out = collect();
  const log = new AccessLog(out.write, { format: 'text', wallNow: () => WALL });
  log.observe(observed(), 0, 200);
  await log.flush();
  t.same(out.lines, [
    '[2026-11-29T20:51:31.250Z] "GET /reviews/1?x=1 HTTP/1.1" 200 - 3 12 0 4 "10.0.0.9" "curl/8.5.0" "rid-1" "reviews" "127.0.0.11:9080"',
  ]);
});

t.test('minStatus: lower statuses are skipped, no response and flagged requests always pass', async (t) => {
  const out = collect();
  const log = new AccessLog(out.write, { format: 'text', minStatus: 500, wallNow: () => WALL });
  log.observe(observed(), 1, 200);
  log.observe(observed(), 1, 404);
  log.observe(observed(), 1, 500);
  log.observe(observed(), 1, 503);
  log.observe(observed({ flags: 'DI' }), 1, 200);
  log.observe(observed(), 1, 0);
  await log.flush();
  t.same(
    out.lines.map((l) => l.split(' ').slice(4, 6).join(' ')),
    ['500 -', '503 -', '200 DI', '0 -'],
  );
});

t.test('sampling: the injected draw decides, and only when sampling is below 100', async (t) => {
  const draws = [0.05, 0.1, 0.0999, 0.5, 0.99];
  let i = 0;
  let asked = 0;
  const out = collect();
  const log = new AccessLog(out.write, {
    sampling: 10,
    random: () => {
      asked++;
      return draws[i++] as number;
    },
  });
  for (let n = 0; n < draws.length; n++) log.observe(observed({ requestId: `r${n}` }), 1, 200);
  await log.flush();
  t.same(
    out.lines.map((l) => (JSON.parse(l) as AccessLogEntry).request_id),
    ['r0', 'r2'],
    'kept when draw * 100 < 10',
  );
  t.equal(asked, 5);
  const all = new AccessLog(collect().write, {
    random: () => {
      asked++;
      return 0;
    },
  });
  all.observe(observed(), 1, 200);
  t.equal(asked, 5, 'sampling 100: no draw at all');
  const none = collect();
  const off = new AccessLog(none.write, { sampling: 0, random: () => 0 });
  off.observe(observed(), 1, 200);
  await off.flush();
  t.same(none.lines, [], 'sampling 0 keeps nothing');
  const both = collect();
  const errorsOnly = new AccessLog(both.write, { minStatus: 500, sampling: 50, random: () => 0.7 });
  errorsOnly.observe(observed(), 1, 503);
  await errorsOnly.flush();
  t.same(both.lines, [], 'sampling applies to what passes minStatus');
});

t.test('observe never throws: a line that cannot be built is counted as dropped', async (t) => {
  const log = new AccessLog(() => {});
  const broken = observed();
  Object.defineProperty(broken, 'flags', {
    get() {
      return '';
    },
  });
  Object.defineProperty(broken.req, 'headers', {
    get() {
      throw new Error('boom');
    },
  });
  t.doesNotThrow(() => log.observe(broken, 1, 200));
  t.equal(log.sink.droppedBacklog, 1);
});

t.test('createAccessLog: a file, created when missing and appended to', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-al-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'access.log');
  writeFileSync(path, 'earlier\n');
  const registry = new Registry();
  const log = createAccessLog(
    { ...ACCESS_LOG_DEFAULTS, path, format: 'text', minStatus: 400, sampling: 50 },
    { registry, random: () => 0.2, onError: () => {} },
  );
  log.observe(observed(), 1, 200);
  log.observe(observed({ flags: 'UF' }), 1, 503);
  await log.close();
  const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
  t.equal(lines.length, 2);
  t.equal(lines[0], 'earlier', 'appended, not truncated');
  t.match(lines[1], /" 503 UF 3 12 1 4 "/);
  const fresh = join(dir, 'new.log');
  const other = createAccessLog({ ...ACCESS_LOG_DEFAULTS, path: fresh });
  other.observe(observed(), 1, 200);
  await other.reopen();
  await other.close();
  t.match(JSON.parse(readFileSync(fresh, 'utf8')), { response_code: 200 });
});

t.test(
  'createAccessLog: a missing directory or an unwritable path is a start-up error naming it',
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'meshlet-al-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const missing = join(dir, 'nope', 'access.log');
    t.throws(() => createAccessLog({ ...ACCESS_LOG_DEFAULTS, path: missing }), {
      message: `cannot open the access log ${missing}: its directory ${join(dir, 'nope')} does not exist`,
    });
    t.throws(() => createAccessLog({ ...ACCESS_LOG_DEFAULTS, path: dir }), {
      message: new RegExp(`cannot open the access log ${dir}: EISDIR`),
    });
    const stdout = createAccessLog(ACCESS_LOG_DEFAULTS);
    t.ok(stdout instanceof AccessLog, 'stdout needs no file');
    await stdout.close();
  },
);

t.test('meshlet_access_log_dropped_total counts backlog drops and failed writes', async (t) => {
  const dones: Array<(err: Error | null) => void> = [];
  const writer: BatchWriter = {
    write: (_text, done) => dones.push(done),
    reopen: async () => {},
    close: async () => {},
  };
  const registry = new Registry();
  const { registerAccessLogMetrics } = await import('../../../src/telemetry/access-log.ts');
  const sink = new AccessLogSink(writer, { maxBacklogBytes: 500, schedule: (fn) => fn() });
  registerAccessLogMetrics(registry, sink);
  const log = new AccessLog(sink, { format: 'text' });
  for (let i = 0; i < 5; i++) log.observe(observed(), 1, 200);
  const value = async (reason: string): Promise<number> => {
    const text = await registry.metrics();
    const m = new RegExp(`meshlet_access_log_dropped_total\\{reason="${reason}"\\} (\\d+)`).exec(text);
    return Number(m?.[1]);
  };
  t.equal(await value('backlog'), 2, 'three lines of about 150 bytes fit in 500');
  dones.shift()?.(new Error('EIO'));
  t.equal(await value('write_error'), 1);
  dones.shift()?.(new Error('EIO'));
  log.observe(observed(), 1, 200);
  t.equal(await value('write_error'), 3, 'counts go up across scrapes');
  t.equal(await value('backlog'), 2);
});

t.test('failed writes are reported in the process log, at most once per 10 s', async (t) => {
  const out: Array<Record<string, unknown>> = [];
  const logger = createLogger('info', (l) => out.push(JSON.parse(l) as Record<string, unknown>));
  let clock = 0;
  // Every write to /dev/full fails with ENOSPC.
  const log = createAccessLog({ ...ACCESS_LOG_DEFAULTS, path: '/dev/full' }, { logger, now: () => clock });
  const fail = async (): Promise<void> => {
    log.observe(observed(), 1, 200);
    await log.flush();
  };
  await fail();
  clock = 5_000;
  await fail();
  await fail();
  clock = 10_001;
  await fail();
  t.equal(log.sink.droppedWriteError, 4);
  t.match(out, [
    {
      level: 'warn',
      msg: 'access log write failed; its lines are dropped',
      path: '/dev/full',
      error: /ENOSPC/,
    },
    { level: 'warn', similar_errors_not_logged: 2 },
  ]);
  t.equal(out.length, 2);
  t.notOk('similar_errors_not_logged' in (out[0] ?? {}));
  await log.close();
  const seen: string[] = [];
  const own = createAccessLog(
    { ...ACCESS_LOG_DEFAULTS, path: '/dev/full' },
    { logger, onError: (e) => seen.push(e.message) },
  );
  own.observe(observed(), 1, 200);
  await own.close();
  t.match(seen, [/ENOSPC/], 'an onError of its own replaces the log line');
  t.equal(out.length, 2);
  const stdout = createAccessLog(ACCESS_LOG_DEFAULTS, { logger });
  await stdout.close();
});

t.test('reopenLogged: a new file after rotation, or a warning and the old file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-al-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sub = join(dir, 'logs');
  mkdirSync(sub);
  const path = join(sub, 'access.log');
  const out: Array<Record<string, unknown>> = [];
  const logger = createLogger('info', (l) => out.push(JSON.parse(l) as Record<string, unknown>));
  const log = createAccessLog({ ...ACCESS_LOG_DEFAULTS, path, format: 'text' });
  log.observe(observed(), 1, 200);
  await log.flush();
  renameSync(path, `${path}.1`);
  await reopenLogged(log, path, logger);
  log.observe(observed(), 1, 201);
  await log.flush();
  t.match(readFileSync(`${path}.1`, 'utf8'), /" 200 /);
  t.match(readFileSync(path, 'utf8'), /" 201 /);
  renameSync(sub, join(dir, 'gone'));
  await reopenLogged(log, path, logger);
  log.observe(observed(), 1, 202);
  await log.close();
  t.match(readFileSync(join(dir, 'gone', 'access.log'), 'utf8'), /" 202 /, 'still the old file');
  t.match(out, [
    { level: 'info', msg: 'access log reopened', path },
    {
      level: 'warn',
      msg: 'access log could not be reopened; lines still go to the previous file',
      error: /ENOENT/,
    },
  ]);
});

t.test('logger: JSON lines, level filter', async (t) => {
  const out: string[] = [];
  const log = createLogger('warn', (l) => out.push(l));
  log.log('info', 'hidden');
  log.log('error', 'shown', { a: 1 });
  t.equal(out.length, 1);
  const rec = JSON.parse(out[0] ?? '{}') as { level: string; msg: string; a: number };
  t.same([rec.level, rec.msg, rec.a], ['error', 'shown', 1]);
  t.ok(log.enabled('warn'));
  t.notOk(log.enabled('debug'));
});
