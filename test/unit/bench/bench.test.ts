import t from 'tap';
import { parseBenchArgs } from '../../../bench/args.ts';
import {
  BODY,
  haproxyConf,
  meshletServiceEntry,
  nginxBackendConf,
  nginxProxyConf,
} from '../../../bench/configs.ts';
import { parseCpuList } from '../../../bench/procs.ts';
import {
  type BenchReport,
  formatLatency,
  formatMarkdown,
  formatText,
  median,
  type RoundResult,
  summarizeTarget,
  withRatios,
} from '../../../bench/report.ts';
import { parseWrkDuration, parseWrkOutput, wrkCommandLine } from '../../../bench/wrk.ts';

const WRK_OUTPUT = `Running 2s test @ http://127.0.0.1:18999/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   337.56us  175.00us   4.51ms   93.76%
    Req/Sec   108.75k     5.21k  115.72k    70.00%
  Latency Distribution
     50%  353.00us
     75%  422.00us
     90%  471.00us
     99%    1.72ms
  216058 requests in 2.00s, 43.68MB read
  Socket errors: connect 0, read 3, write 1, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec: 107918.11
Transfer/sec:     21.82MB
`;

t.test('wrk durations in us, ms, s', async (t) => {
  t.equal(parseWrkDuration('353.00us'), 0.353);
  t.equal(parseWrkDuration('1.72ms'), 1.72);
  t.equal(parseWrkDuration('2.00s'), 2000);
  t.equal(parseWrkDuration('1.50m'), 90_000);
  t.equal(parseWrkDuration('12'), undefined);
  t.equal(parseWrkDuration('fast'), undefined);
});

t.test('wrk --latency report', async (t) => {
  const r = parseWrkOutput(WRK_OUTPUT);
  t.equal(r.requestsPerSec, 107918.11);
  t.equal(r.p50Ms, 0.353);
  t.equal(r.p99Ms, 1.72);
  t.equal(r.requests, 216058);
  t.equal(r.socketErrors, 6);
  t.equal(r.non2xx, 7);
  const clean = parseWrkOutput(
    WRK_OUTPUT.replace(/ {2}Socket errors.*\n/, '').replace(/ {2}Non-2xx.*\n/, ''),
  );
  t.equal(clean.socketErrors, 0);
  t.equal(clean.non2xx, 0);
  t.throws(() => parseWrkOutput('unable to connect to 127.0.0.1:1 Connection refused'), /Requests\/sec/);
  t.throws(() => parseWrkOutput(WRK_OUTPUT.replace(/ {5}99%.*\n/, '')), /99%/);
});

t.test('wrk command line is pinned and quoted', async (t) => {
  const run = { url: 'http://127.0.0.1:8080/', host: 'bench-backend', connections: 50, durationSec: 5 };
  t.equal(
    wrkCommandLine({ ...run, cpu: 0 }),
    "taskset -c 0 wrk -t1 -c50 -d5s --latency --timeout 2s -H 'Host: bench-backend' http://127.0.0.1:8080/",
  );
  t.notMatch(wrkCommandLine({ ...run, cpu: undefined }), /taskset/);
});

t.test('median', async (t) => {
  t.equal(median([3, 1, 2]), 2);
  t.equal(median([4, 1, 3, 2]), 2.5);
  t.equal(median([5]), 5);
  t.ok(Number.isNaN(median([])));
});

const round = (rps: number, p99Ms: number, extra: Partial<RoundResult> = {}): RoundResult => ({
  requestsPerSec: rps,
  p50Ms: p99Ms / 4,
  p99Ms,
  requests: rps * 5,
  socketErrors: 0,
  non2xx: 0,
  ...extra,
});

t.test('summaries and ratios to nginx', async (t) => {
  const nginx = summarizeTarget('nginx', [round(50_000, 2), round(40_000, 4), round(60_000, 3)], []);
  t.same(nginx.median, { requestsPerSec: 50_000, p50Ms: 0.75, p99Ms: 3 });
  const haproxy = summarizeTarget('haproxy', [round(25_000, 6, { non2xx: 3 })], []);
  t.match(haproxy.warnings.join(), /3 non-2xx/);
  const failed = summarizeTarget('meshlet-uws', [], ['round 1: wrk exited with code 1']);
  t.equal(failed.status, 'failed');
  t.equal(failed.reason, 'round 1: wrk exited with code 1');
  const [n, h, m] = withRatios([nginx, haproxy, failed]);
  t.equal(n?.rpsRatio, 1);
  t.equal(h?.rpsRatio, 0.5);
  t.equal(h?.p99Ratio, 2);
  t.equal(m?.rpsRatio, undefined);
  const noNginx = withRatios([haproxy]);
  t.equal(noNginx[0]?.rpsRatio, undefined);
});

t.test('latency formatting', async (t) => {
  t.equal(formatLatency(0.353), '353 µs');
  t.equal(formatLatency(1.724), '1.72 ms');
  t.equal(formatLatency(2500), '2.50 s');
});

t.test('command-line flags', async (t) => {
  const d = parseBenchArgs([]);
  t.ok(d.ok);
  if (d.ok) {
    t.equal(d.options.durationSec, 5);
    t.equal(d.options.rounds, 3);
    t.equal(d.options.connections, 50);
    t.equal(d.options.warmupSec, 1);
    t.same(d.options.targets, [
      'direct',
      'nginx',
      'haproxy',
      'meshlet-h1',
      'meshlet-h1-telemetry',
      'meshlet-uws',
      'meshlet-node',
    ]);
  }
  const c = parseBenchArgs([
    '--duration',
    '2',
    '--rounds',
    '5',
    '--targets',
    'nginx,direct,nginx',
    '--json',
    'o.json',
  ]);
  t.ok(c.ok);
  if (c.ok) {
    t.equal(c.options.durationSec, 2);
    t.same(c.options.targets, ['nginx', 'direct']);
    t.equal(c.options.json, 'o.json');
    t.equal(c.options.markdown, undefined);
  }
  t.match(parseBenchArgs(['--targets', 'envoy']), { ok: false, message: /unknown target "envoy"/ });
  t.match(parseBenchArgs(['--duration', '0']), { ok: false, message: /between 1 and 600/ });
  t.match(parseBenchArgs(['--rounds', '2.5']), { ok: false, message: /whole number/ });
  t.match(parseBenchArgs(['--bogus']), { ok: false });
  t.match(parseBenchArgs(['-h']), { ok: false, message: '' });
});

t.test('CPU lists', async (t) => {
  t.same(parseCpuList('0,1'), [0, 1]);
  t.same(parseCpuList(' 0-2,5 '), [0, 1, 2, 5]);
  t.same(parseCpuList(''), []);
});

t.test('generated configs stay on loopback and in the temp dir', async (t) => {
  t.equal(Buffer.byteLength(BODY), 64);
  const dir = '/tmp/meshlet-bench-x';
  const backend = nginxBackendConf({ dir }, 8001);
  t.match(backend, 'listen 127.0.0.1:8001;');
  t.match(backend, `return 200 "${BODY}";`);
  t.match(backend, 'daemon off;');
  t.match(backend, 'worker_processes 1;');
  t.match(backend, 'access_log off;');
  for (const line of backend.split('\n')) {
    const path = /^(?:\w+_temp_path|pid|lock_file|error_log)\s+([^\s;]+)/.exec(line.trim());
    if (path !== null) t.ok(path[1]?.startsWith(`${dir}/`), `${line.trim()} is inside the temp dir`);
  }
  t.notMatch(nginxBackendConf({ dir, omit: new Set(['scgi_temp_path']) }, 1), /scgi_temp_path/);
  const proxy = nginxProxyConf({ dir }, 8002, 8001);
  t.match(proxy, 'server 127.0.0.1:8001;');
  t.match(proxy, 'keepalive 64;');
  t.match(proxy, 'proxy_http_version 1.1;');
  t.match(proxy, 'proxy_set_header Connection "";');
  const ha = haproxyConf(8003, 8001);
  for (const s of [
    'mode http',
    'nbthread 1',
    'http-reuse always',
    'option http-keep-alive',
    'bind 127.0.0.1:8003',
  ]) {
    t.match(ha, s);
  }
  const se = meshletServiceEntry(8001);
  t.match(se, 'apiVersion: networking.istio.io/v1');
  t.match(se, 'kind: ServiceEntry');
  t.match(se, /name: bench-backend\n {2}namespace: default/);
  t.match(se, 'http: 8001');
  t.match(se, 'resolution: STATIC');
  t.match(se, 'location: MESH_INTERNAL');
});

t.test('text and Markdown reports', async (t) => {
  const report: BenchReport = {
    date: '2026-01-01T00:00:00.000Z',
    command: 'npm run bench',
    wrkCommand: 'taskset -c 0 wrk -t1 -c50 -d5s --latency http://127.0.0.1:<port>/',
    settings: { durationSec: 5, rounds: 3, connections: 50, warmupSec: 1 },
    machine: {
      cpus: 2,
      cpuModel: 'Test CPU',
      kernel: '6.0',
      node: 'v20.0.0',
      nginx: 'nginx/1.22.1',
      haproxy: 'haproxy 2.6',
      wrk: 'wrk 4.1.0',
      pinning: 'wrk + backend on CPU 0; the measured proxy alone on CPU 1 (taskset -c)',
      backend: 'nginx',
      loadBefore: 1.5,
    },
    telemetry: 'meshlet-h1 with telemetry off',
    targets: withRatios([
      summarizeTarget('direct', [round(100_000, 1)], []),
      summarizeTarget(
        'nginx',
        [round(50_000, 2, { usPerRequest: 19.5, proxyCores: 0.98, otherOnProxyCpu: 0.03 })],
        ['round 2: wrk did not finish within 20 s'],
      ),
      summarizeTarget('haproxy', [round(40_000, 3, { socketErrors: 2 })], []),
      {
        ...summarizeTarget('meshlet-h1-telemetry', [round(30_000, 4)], []),
        notes: ['access log 1.00 per request'],
      },
      {
        name: 'meshlet-uws',
        status: 'skipped',
        reason: 'cli missing',
        rounds: [],
        roundErrors: [],
        warnings: [],
      },
    ]),
  };
  const text = formatText(report);
  t.match(text, /^direct\s+100,000\s+250 µs\s+1.00 ms\s+2.00×\s+0.50×\s+—\s+—\s+—\s+100,000$/m);
  t.match(text, /^haproxy\s+40,000 \(!\)/m);
  t.match(text, /^meshlet-uws\s+skipped/m);
  t.match(text, 'meshlet-uws: skipped (cli missing)');
  t.match(text, 'nginx: a round failed: round 2: wrk did not finish within 20 s');
  t.match(text, 'haproxy: 2 socket errors');
  t.match(text, /^telemetry: meshlet-h1 with telemetry off$/m);
  t.match(text, /^meshlet-h1-telemetry: access log 1.00 per request$/m);
  t.match(text, 'compare ratios, not absolute numbers');
  t.match(text, 'load average before the run: 1.50 (other work was running: expect noise)');
  const md = formatMarkdown(report);
  t.match(md, '- **command**: `npm run bench`');
  t.match(
    md,
    '| target | req/s (median) | p50 | p99 | req/s ÷ nginx | p99 ÷ nginx | CPU µs/req | proxy CPU | other load on its CPU | req/s per round |',
  );
  t.match(md, '| nginx | 50,000 | 500 µs | 2.00 ms | 1.00× | 1.00× | 19.5 | 98 % | 3 % | 50,000 |');
  t.match(md, '| meshlet-uws | skipped | — | — | — | — | — | — | — | — |');
  t.match(md, '- meshlet-uws: skipped (cli missing)');
  t.match(md, '- **telemetry**: meshlet-h1 with telemetry off');
  t.match(md, '- meshlet-h1-telemetry: access log 1.00 per request');
});
