import { request as httpRequest, type IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import t from 'tap';
import { Agent, request } from 'undici';
import type { StatsSnapshot } from '../../src/telemetry/live-stats-types.ts';
import type { TapSummary } from '../../src/telemetry/tap.ts';
import { startEchoBackend } from '../helpers/backends.ts';
import { serviceEntryYaml } from '../helpers/mesh-yaml.ts';
import { spawnMeshlet } from '../helpers/spawn-meshlet.ts';

/**
 * The observability endpoints of the admin port on the real process: /stats after load, the tap,
 * /logging, POST /drain and POST /shutdown, and the loopback-only rule for a caller from another
 * address.
 */

const HOST = 'app.default.svc.cluster.local';

function yaml(port: number): string {
  return `${serviceEntryYaml('app', [{ port }])}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: app }
spec:
  hosts: [${HOST}]
  http:
    - route: [{ destination: { host: ${HOST} } }]
`;
}

/** The machine's first non-loopback IPv4 address, if it has one. */
function outsideAddress(): string | null {
  for (const list of Object.values(networkInterfaces()))
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return null;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** A deadline for a race: unref'd, so that it does not keep the test process alive once won. */
const deadline = (ms: number): Promise<'timed out'> =>
  new Promise((r) => setTimeout(() => r('timed out'), ms).unref());

t.test('admin observability endpoints', async (t) => {
  const backend = await startEchoBackend('app', (req, res) => {
    if (req.url !== '/slow') return false;
    setTimeout(() => res.end('slow'), 400);
    return true;
  });
  const mesh = await spawnMeshlet(yaml(backend.port), {
    engine: 'h1',
    args: ['--admin-host', '0.0.0.0', '--no-access-log'],
  });
  const agent = new Agent({ connections: 8 });
  t.teardown(async () => {
    await agent.close();
    await mesh.stop();
    await backend.close();
  });
  const get = async (path: string): Promise<number> => {
    const res = await request(mesh.url(path), { dispatcher: agent, headers: { host: HOST } });
    await res.body.text();
    return res.statusCode;
  };
  const admin = async (path: string, method = 'GET'): Promise<{ status: number; text: string }> => {
    const res = await fetch(mesh.admin(path), { method, signal: AbortSignal.timeout(5000) });
    return { status: res.status, text: await res.text() };
  };

  t.test('/stats after load: the service and the route with rate and percentiles', async (t) => {
    const statuses = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const out: number[] = [];
        for (let i = 0; i < 25; i++) out.push(await get(`/load/${i}`));
        return out;
      }),
    );
    t.ok(
      statuses.flat().every((s) => s === 200),
      '200 requests answered',
    );
    const res = await admin('/stats');
    t.equal(res.status, 200);
    const snap = JSON.parse(res.text) as StatsSnapshot;
    const service = snap.services.find((s) => s.reporter === 'source' && s.service === HOST);
    t.ok(service, 'the service is there');
    const w10 = service?.windows['10s'];
    const w60 = service?.windows['60s'];
    t.equal(w10?.requests, 200);
    t.equal(w60?.requests, 200);
    t.equal(w10?.errors, 0);
    t.ok((w10?.rps ?? 0) > 0, `rps ${w10?.rps}`);
    const p50 = w10?.p50_ms ?? 0;
    const p99 = w10?.p99_ms ?? 0;
    t.ok(p50 > 0 && p50 < 200, `p50 ${p50} ms`);
    t.ok(p99 >= p50 && p99 < 2000, `p99 ${p99} ms`);
    t.ok((w10?.max_ms ?? 0) >= p99);
    const route = snap.routes.find((r) => r.route === 'default/app');
    t.equal(route?.windows['10s']?.requests, 200, 'the route');
    t.same(snap.recent_errors, []);
    t.ok((await admin('/stats?pretty')).text.includes('\n  "services"'), '?pretty');
  });

  t.test('/tap?path_prefix=/x&limit=2 streams exactly the matching requests', async (t) => {
    const res = await new Promise<IncomingMessage>((ok, fail) => {
      const req = httpRequest(mesh.admin('/tap?path_prefix=/x&limit=2'), ok);
      req.on('error', fail);
      req.setTimeout(5000, () => req.destroy(new Error('tap timed out')));
      req.end();
    });
    t.equal(res.statusCode, 200);
    t.equal(res.headers['content-type'], 'text/event-stream');
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (c: string) => {
      body += c;
    });
    const ended = new Promise<void>((ok) => res.once('end', ok));
    for (const p of ['/y', '/x/1', '/z', '/x/2?q=1', '/x/3']) t.equal(await get(p), 200, p);
    await Promise.race([ended, deadline(5000)]);
    const events = body
      .split('\n\n')
      .filter((e) => e.startsWith('data: '))
      .map((e) => JSON.parse(e.slice(6)) as TapSummary);
    t.same(
      events.map((e) => e.path),
      ['/x/1', '/x/2?q=1'],
    );
    t.match(events[0], {
      reporter: 'source',
      method: 'GET',
      authority: HOST,
      status: 200,
      flags: '-',
      upstream_host: `127.0.0.1:${backend.port}`,
      upstream_cluster: `outbound|80||${HOST}`,
      route_name: 'default/app',
    });
    t.ok(res.complete, 'the stream ended after 2 events');
  });

  t.test('/logging: read and change the level', async (t) => {
    t.same(JSON.parse((await admin('/logging')).text).level, 'info');
    const changed = await admin('/logging?level=debug', 'POST');
    t.equal(changed.status, 200);
    t.same(JSON.parse(changed.text), { level: 'debug', previous: 'info' });
    t.equal(JSON.parse((await admin('/logging')).text).level, 'debug');
    t.ok(
      mesh.logs.some((l) => l.includes('"msg":"log level changed"') && l.includes('"to":"debug"')),
      'logged',
    );
  });

  const outside = outsideAddress();
  t.test('a caller from a non-loopback address gets 403 on state-changing endpoints', async (t) => {
    if (outside === null) {
      // No other address to call from here: the address check is covered by the unit test.
      t.comment('no non-loopback IPv4 address on this machine');
      t.pass('nothing to call from');
      return;
    }
    const port = new URL(mesh.admin('/')).port;
    for (const path of ['/drain', '/shutdown', '/reload', '/logging?level=error']) {
      const res = await fetch(`http://${outside}:${port}${path}`, {
        method: 'POST',
        signal: AbortSignal.timeout(5000),
      });
      t.equal(res.status, 403, path);
      t.match(await res.text(), /only accepted from loopback .* this request came from /, path);
    }
    const stats = await fetch(`http://${outside}:${port}/stats`, { signal: AbortSignal.timeout(5000) });
    t.equal(stats.status, 200, 'reading is allowed');
    await stats.text();
    t.equal((await admin('/ready')).status, 200, 'nothing was drained');
    t.equal(JSON.parse((await admin('/logging')).text).level, 'debug', 'nor the level changed');
  });

  t.test('POST /drain: /ready 503, new connections refused, in-flight requests finish', async (t) => {
    const slow = request(mesh.url('/slow'), { headers: { host: HOST } }).then(async (r) => ({
      status: r.statusCode,
      text: await r.body.text(),
    }));
    await sleep(100);
    const drained = await admin('/drain', 'POST');
    t.equal(drained.status, 200);
    t.match(drained.text, /^draining/);
    t.same(await slow, { status: 200, text: 'slow' }, 'the request in flight finished');
    const ready = await admin('/ready');
    t.same([ready.status, ready.text], [503, 'draining\n']);
    const refused = await new Promise<string>((ok) => {
      const s = connect(mesh.outboundPort, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        ok('connected');
      });
      s.once('error', (e: NodeJS.ErrnoException) => ok(e.code ?? 'error'));
    });
    t.equal(refused, 'ECONNREFUSED');
    t.equal((await admin('/drain', 'POST')).text, 'already draining\n', 'idempotent');
    await sleep(200);
    t.equal(mesh.proc.exitCode, null, 'the process keeps running');
    t.equal((await admin('/live')).status, 200);
  });

  t.test('POST /shutdown: the process exits 0', async (t) => {
    const res = await admin('/shutdown', 'POST');
    t.equal(res.status, 202);
    const code = await Promise.race([mesh.exited, deadline(10_000)]);
    t.equal(code, 0);
    t.ok(
      mesh.logs.some((l) => l.includes('admin /shutdown: draining')),
      'logged like a signal',
    );
  });
});
