import t from 'tap';
import { AccessLog, type AccessLogEntry } from '../../../src/telemetry/access-log.ts';
import { createLogger } from '../../../src/telemetry/logger.ts';

const entry = (code: number): AccessLogEntry => ({
  start_time: '2026-01-01T00:00:00.000Z',
  method: 'GET',
  path: '/x',
  protocol: 'HTTP/1.1',
  response_code: code,
  response_flags: '-',
  bytes_received: 0,
  bytes_sent: 3,
  duration: 1,
  upstream_host: '127.0.0.1:80',
  upstream_cluster: 'outbound|80||a',
  authority: 'a',
  x_forwarded_for: '-',
  request_id: 'id',
  route_name: '-',
  reporter: 'source',
  response_code_details: '-',
  upstream_transport_failure_reason: '-',
  downstream_peer_uri_san: '-',
  requested_server_name: '-',
});

t.test('access log lines are batched into one write per tick', async (t) => {
  const writes: string[] = [];
  const log = new AccessLog((text) => writes.push(text));
  log.log(entry(200));
  log.log(entry(404));
  t.same(writes, [], 'nothing written synchronously');
  await new Promise((r) => setImmediate(r));
  t.equal(writes.length, 1);
  const lines = (writes[0] ?? '')
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as AccessLogEntry);
  t.same(
    lines.map((l) => l.response_code),
    [200, 404],
  );
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
