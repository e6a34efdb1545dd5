import t from 'tap';
import {
  type AccessLogEntry,
  jsonString,
  lineFormatter,
  StartTimeFormatter,
  textValue,
} from '../../../src/telemetry/access-log-format.ts';
import { observed, WALL } from '../../helpers/observed-request.ts';

t.test('JSON line: every field, in order, with Envoy names and absent values as -', async (t) => {
  const line = lineFormatter('json', () => WALL)(observed(), 7.9, 200);
  t.equal(
    line,
    '{"start_time":"2026-11-29T20:51:31.242Z","method":"GET","path":"/reviews/1?x=1","protocol":"HTTP/1.1",' +
      '"response_code":200,"response_flags":"-","response_code_details":"-","bytes_received":3,"bytes_sent":12,' +
      '"duration":7,"upstream_service_time":"4","upstream_host":"127.0.0.11:9080",' +
      '"upstream_cluster":"outbound|9080|v1|reviews.default.svc.cluster.local","x_forwarded_for":"10.0.0.9",' +
      '"user_agent":"curl/8.5.0","request_id":"rid-1","authority":"reviews","route_name":"r1",' +
      '"downstream_remote_address":"127.0.0.1","downstream_peer_uri_san":"-",' +
      '"upstream_transport_failure_reason":"-","requested_server_name":"-","reporter":"source","attempts":1}',
  );
  const entry = JSON.parse(line) as AccessLogEntry;
  t.equal(entry.path, '/reviews/1?x=1', 'the path as the client sent it, not the rewritten one');
});

t.test('JSON line: a local reply before routing and an inbound mTLS request', async (t) => {
  const format = lineFormatter('json', () => WALL);
  const nr = JSON.parse(
    format(
      observed(
        {
          flags: 'NR',
          endpoint: null,
          cluster: null,
          upstreamStatus: 0,
          attempts: 0,
          requestId: '',
          routeName: '',
          originalPath: '',
          path: '/x',
        },
        { headers: ['host', 'nowhere'] },
      ),
      0,
      404,
    ),
  ) as AccessLogEntry;
  t.equal(
    JSON.parse(format(observed({ requestId: '' }, { headers: ['x-request-id', 'from-client'] }), 0, 404))
      .request_id,
    'from-client',
    "a local reply before any attempt logs the client's x-request-id",
  );
  t.equal(
    JSON.parse(format(observed({ originalPath: '', path: '' }), 0, 0)).path,
    '-',
    'no path at all (the connection ended before the request was read)',
  );
  t.match(nr, {
    response_code: 404,
    response_flags: 'NR',
    upstream_service_time: '-',
    upstream_host: '-',
    upstream_cluster: '-',
    user_agent: '-',
    x_forwarded_for: '-',
    request_id: '-',
    route_name: '-',
    path: '/x',
    attempts: 0,
  });
  const inbound = JSON.parse(
    format(
      observed(
        {
          reporter: 'destination',
          endpoint: null,
          cluster: null,
          target: { address: '127.0.0.1', port: 8080 },
          details: 'via_upstream',
        },
        { peer: { spiffeId: 'spiffe://cluster.local/ns/default/sa/p' }, sni: 'reviews', secure: true },
      ),
      1,
      200,
    ),
  ) as AccessLogEntry;
  t.match(inbound, {
    reporter: 'destination',
    upstream_host: '127.0.0.1:8080',
    upstream_cluster: 'reviews',
    downstream_peer_uri_san: 'spiffe://cluster.local/ns/default/sa/p',
    requested_server_name: 'reviews',
    response_code_details: 'via_upstream',
  });
});

t.test('JSON escaping: quotes, backslashes, control characters, non-ASCII, lone surrogates', async (t) => {
  const nasty = [
    'a"b',
    'back\\slash',
    'tab\there',
    'nl\nline\r',
    '\u0000\u001f',
    'DEL\u007f',
    'caf\u00e9 \u00fc',
    '\u65e5\u672c',
    'emoji \ud83d\ude00',
    'lone \ud800 x',
    '\u2028',
  ];
  for (const [i, s] of nasty.entries()) {
    const lit = jsonString(s);
    // The index names the case: U+2028 in a message would break the TAP stream.
    t.equal(JSON.parse(lit), s, `round trip of case ${i}`);
    t.notOk(
      [...lit].some((c) => c.charCodeAt(0) < 0x20),
      'no raw control character',
    );
    t.equal(Buffer.from(lit, 'utf8').toString('utf8'), lit, 'no lone surrogate: UTF-8 keeps it whole');
  }
  t.equal(jsonString('plain/path?q=1'), '"plain/path?q=1"', 'safe strings are quoted as they are');
  t.equal(jsonString('lone \ud800'), '"lone \\ud800"', 'a lone surrogate is escaped');
  const format = lineFormatter('json', () => WALL);
  const line = format(
    observed(
      { originalPath: '/caf\u00e9/"x"', authority: 'h\\' },
      { headers: ['user-agent', 'Mozilla "5.0"\t\u00e9', 'x-forwarded-for', 'a\u0001'] },
    ),
    1,
    200,
  );
  t.notOk(line.includes('\n'), 'one line');
  const entry = JSON.parse(line) as AccessLogEntry;
  t.equal(entry.path, '/caf\u00e9/"x"');
  t.equal(entry.user_agent, 'Mozilla "5.0"\t\u00e9');
  t.equal(entry.x_forwarded_for, 'a\u0001');
  t.equal(entry.authority, 'h\\');
});

t.test("text line: Envoy's default format, field by field", async (t) => {
  const format = lineFormatter('text', () => WALL);
  t.equal(
    format(observed(), 7.9, 200),
    '[2026-11-29T20:51:31.242Z] "GET /reviews/1?x=1 HTTP/1.1" 200 - 3 12 7 4 "10.0.0.9" "curl/8.5.0" "rid-1" "reviews" "127.0.0.11:9080"',
  );
  t.equal(
    format(
      observed(
        { flags: 'UF,URX', endpoint: null, upstreamStatus: 0, requestId: '', bytesSent: 91 },
        { method: 'POST', headers: [] },
      ),
      12,
      503,
    ),
    '[2026-11-29T20:51:31.238Z] "POST /reviews/1?x=1 HTTP/1.1" 503 UF,URX 3 91 12 - "-" "-" "-" "reviews" "-"',
  );
});

t.test('text escaping: quotes, backslashes and control characters cannot break the line', async (t) => {
  t.equal(textValue('plain'), 'plain');
  t.equal(textValue('a"b'), 'a\\"b');
  t.equal(textValue('c:\\x'), 'c:\\\\x');
  t.equal(textValue('a\nb\r\u0000\u007f'), 'a\\x0ab\\x0d\\x00\\x7f');
  t.equal(textValue('caf\u00e9 \u65e5'), 'caf\u00e9 \u65e5', 'non-ASCII as it is');
  const line = lineFormatter('text', () => WALL)(
    observed({}, { headers: ['user-agent', 'evil"\n[2020-01-01T00:00:00.000Z] "GET / HTTP/1.1" 200'] }),
    0,
    200,
  );
  t.notOk(line.includes('\n'));
  t.match(line, /"evil\\"\\x0a\[2020-01-01T00:00:00.000Z\] \\"GET \/ HTTP\/1.1\\" 200"/);
});

t.test('start time: milliseconds padded, the second cached but never stale', async (t) => {
  const f = new StartTimeFormatter();
  t.equal(f.format(Date.UTC(2026, 0, 2, 3, 4, 5, 6)), '2026-01-02T03:04:05.006Z');
  t.equal(f.format(Date.UTC(2026, 0, 2, 3, 4, 5, 78)), '2026-01-02T03:04:05.078Z');
  t.equal(f.format(Date.UTC(2026, 0, 2, 3, 4, 5, 999.9)), '2026-01-02T03:04:05.999Z');
  t.equal(f.format(Date.UTC(2026, 0, 2, 3, 4, 6, 0)), '2026-01-02T03:04:06.000Z');
  t.equal(
    f.format(Date.UTC(2026, 0, 2, 3, 4, 5, 500)),
    '2026-01-02T03:04:05.500Z',
    'an earlier second again',
  );
  for (const ms of [0, 1, 999, 1000, 1_764_000_000_123, 1_764_000_059_999]) {
    t.equal(f.format(ms), new Date(ms).toISOString(), `same as toISOString for ${ms}`);
  }
});

t.test('cost per line (printed for the README; the hand-built JSON line beats JSON.stringify)', async (t) => {
  const r = observed();
  const json = lineFormatter('json');
  const text = lineFormatter('text');
  // The same fields as an object, the way a JSON.stringify-based logger would build the line.
  const object = JSON.parse(json(r, 3, 200)) as Record<string, unknown>;
  const stringify = (d: number): string =>
    JSON.stringify({ ...object, start_time: new Date(Date.now() - d).toISOString(), duration: d });
  const n = 20_000;
  const fns = {
    json: (d: number) => json(r, d, 200),
    text: (d: number) => text(r, d, 200),
    stringify,
  };
  const cost = {
    json: Number.POSITIVE_INFINITY,
    text: Number.POSITIVE_INFINITY,
    stringify: Number.POSITIVE_INFINITY,
  };
  // Rounds alternate between the three, so a busy machine slows them alike; the best round counts.
  for (let round = 0; round < 6; round++) {
    for (const key of ['json', 'text', 'stringify'] as const) {
      const fn = fns[key];
      let size = 0;
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < n; i++) size += fn(i & 7).length;
      const us = Number(process.hrtime.bigint() - t0) / 1e3 / n;
      if (size > 0 && round > 0) cost[key] = Math.min(cost[key], us);
    }
  }
  t.comment(
    `µs per line (best of 5 rounds × ${n}): json ${cost.json.toFixed(2)}, text ${cost.text.toFixed(2)}, JSON.stringify of the fields ${cost.stringify.toFixed(2)}`,
  );
  t.ok(cost.json < cost.stringify, 'hand-built JSON is cheaper than JSON.stringify');
});
