import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Agent, request } from 'undici';
import { startEchoBackend } from '../helpers/backends.ts';
import { serviceEntryYaml } from '../helpers/mesh-yaml.ts';
import { spawnMeshlet } from '../helpers/spawn-meshlet.ts';

/**
 * A real Prometheus server (Debian's `prometheus`, on loopback) scrapes the real meshlet's admin
 * `/metrics` every second while requests go through it; the numbers are read back through
 * Prometheus' own query API, the way a Grafana dashboard would: the p99 from `histogram_quantile`
 * over `istio_request_duration_milliseconds_bucket`, and the request count.
 */

const PROMETHEUS = '/usr/bin/prometheus';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A free loopback port (bound, then released) for Prometheus' web listener. */
function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = addr !== null && typeof addr === 'object' ? addr.port : 0;
      s.close(() => ok(port));
    });
  });
}

interface QueryResult {
  readonly status: string;
  readonly data?: { readonly result: ReadonlyArray<{ readonly value: [number, string] }> };
}

t.test('Prometheus scrapes meshlet and computes a p99 with histogram_quantile', async (t) => {
  const backend = await startEchoBackend('reviews', (req, res) => {
    if (req.url?.startsWith('/slow') !== true) return false;
    // The slow route makes the upper quantiles land in a known bucket range.
    setTimeout(() => res.end('slow'), 20);
    return true;
  });
  t.teardown(() => backend.close());
  const mesh = await spawnMeshlet(
    serviceEntryYaml('reviews', [{ port: backend.port, labels: { app: 'reviews', version: 'v1' } }], {
      servicePort: 9080,
    }),
    { engine: 'h1', args: ['--no-access-log'] },
  );
  t.teardown(() => mesh.stop());

  const dir = mkdtempSync(join(tmpdir(), 'meshlet-prometheus-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const webPort = await freePort();
  writeFileSync(
    join(dir, 'prometheus.yml'),
    `global: { scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s }
scrape_configs:
  - job_name: meshlet
    static_configs: [{ targets: ['127.0.0.1:${mesh.adminPort}'] }]
`,
  );
  const prometheus: ChildProcess = spawn(
    PROMETHEUS,
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${webPort}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let prometheusLog = '';
  prometheus.stderr?.on('data', (d: Buffer) => {
    prometheusLog += d.toString();
  });
  const prometheusExit = new Promise<void>((r) => prometheus.once('exit', () => r()));
  // Registered after the temp dir's teardown, so it runs first: Prometheus stops before its
  // storage is removed.
  t.teardown(async () => {
    if (prometheus.exitCode === null && prometheus.signalCode === null) prometheus.kill('SIGTERM');
    const kill = setTimeout(() => prometheus.kill('SIGKILL'), 5000);
    await prometheusExit;
    clearTimeout(kill);
  });

  const api = new Agent({ connections: 2 });
  t.teardown(() => api.close());
  const query = async (promql: string): Promise<number | null> => {
    const res = await request(
      `http://127.0.0.1:${webPort}/api/v1/query?query=${encodeURIComponent(promql)}`,
      { dispatcher: api },
    );
    const body = (await res.body.json()) as QueryResult;
    const first = body.data?.result[0];
    return first === undefined ? null : Number(first.value[1]);
  };
  const ready = async (): Promise<boolean> => {
    try {
      const res = await request(`http://127.0.0.1:${webPort}/-/ready`, { dispatcher: api });
      await res.body.dump();
      return res.statusCode === 200;
    } catch {
      return false;
    }
  };
  let up = false;
  for (let i = 0; i < 100 && !up; i++) {
    if (prometheus.exitCode !== null) break;
    up = await ready();
    if (!up) await sleep(100);
  }
  t.ok(up, `Prometheus is ready: ${prometheusLog}`);
  if (!up) return;
  // Prometheus applies its scrape targets up to 5 s after start (its target-update tick): the load
  // starts once the first scrape happened, so the counters move between scrapes.
  let scraped: number | null = null;
  for (let i = 0; i < 80 && scraped !== 1; i++) {
    scraped = await query('up{job="meshlet"}');
    if (scraped !== 1) await sleep(100);
  }
  t.equal(scraped, 1, 'meshlet is scraped');

  // A few hundred requests over about 5 s: bursts of 5 every 80 ms, one in five on the slow route,
  // one in ten a POST with a 100-byte body.
  const client = new Agent({ connections: 5 });
  t.teardown(() => client.close());
  let sent = 0;
  let failed = 0;
  const body = Buffer.alloc(100, 0x61);
  for (let burst = 0; burst < 60; burst++) {
    const started = Date.now();
    await Promise.all(
      [0, 1, 2, 3, 4].map(async (i) => {
        const n = burst * 5 + i;
        const post = n % 10 === 3;
        const res = await request(mesh.url(i === 0 ? '/slow' : '/fast'), {
          method: post ? 'POST' : 'GET',
          headers: { host: 'reviews:9080' },
          dispatcher: client,
          ...(post ? { body } : {}),
        });
        await res.body.dump();
        sent++;
        if (res.statusCode !== 200) failed++;
      }),
    );
    await sleep(Math.max(0, 80 - (Date.now() - started)));
  }
  t.equal(sent, 300);
  t.equal(failed, 0, 'every request answered 200');

  // Wait until Prometheus scraped the final count and holds at least 3 scrapes.
  let total: number | null = null;
  let scrapes: number | null = null;
  for (let i = 0; i < 50; i++) {
    total = await query('sum(istio_requests_total)');
    scrapes = await query('count_over_time(up{job="meshlet"}[1m])');
    if (total === sent && scrapes !== null && scrapes >= 3) break;
    await sleep(200);
  }
  t.equal(total, sent, 'sum(istio_requests_total) counts every request sent');
  t.ok(scrapes !== null && scrapes >= 3, `at least 3 scrapes (${scrapes})`);
  t.equal(await query('min_over_time(up{job="meshlet"}[1m])'), 1, 'every scrape succeeded');

  const p99 = await query(
    'histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{reporter="source"}[30s])))',
  );
  t.ok(p99 !== null && Number.isFinite(p99), `a finite p99 (${p99})`);
  // A fifth of the requests take at least 20 ms, so the p99 is in the slow requests' range: above
  // the 10 ms bucket boundary, and far below anything a healthy loopback proxy would take.
  t.ok(p99 !== null && p99 > 10 && p99 <= 250, `p99 ${p99} ms in (10, 250]`);
  const p50 = await query(
    'histogram_quantile(0.5, sum by (le) (rate(istio_request_duration_milliseconds_bucket{reporter="source"}[30s])))',
  );
  t.ok(p50 !== null && p99 !== null && p50 < p99, `p50 ${p50} below p99 ${p99}`);
  t.equal(await query('sum(istio_request_bytes_sum)'), 30 * 100, 'request body bytes of the POSTs');
  t.equal(await query('sum(istio_request_bytes_count)'), sent);
  const responseBytes = await query('sum(istio_response_bytes_sum)');
  t.ok(responseBytes !== null && responseBytes > 4 * 60, `response body bytes recorded (${responseBytes})`);
  t.equal(await query('istio_build{component="proxy"}'), 1);
  const connections = await query('meshlet_listener_connections_total{listener="outbound"}');
  t.ok(connections !== null && connections >= 1 && connections <= 5, `client connections (${connections})`);
  t.ok((await query('meshlet_nodejs_eventloop_lag_p99_seconds')) !== null, 'event-loop lag scraped');
});
