import t from 'tap';
import { request } from 'undici';
import { deadPort, type Echo, startEchoBackend } from '../helpers/backends.ts';
import { spawnMeshlet } from '../helpers/spawn-meshlet.ts';

/** The inbound listener forwards to --app and reports as the destination. */

const EMPTY =
  'apiVersion: meshlet.dev/v1alpha1\nkind: Proxy\nmetadata: { name: p }\nspec:\n  labels: { app: ratings, version: v1 }\n';

for (const engine of ['h1', 'uws', 'node'] as const) {
  t.test(`inbound on the ${engine} engine`, async (t) => {
    const app = await startEchoBackend('app');
    const mesh = await spawnMeshlet(EMPTY, { engine, args: ['--app', `127.0.0.1:${app.port}`] });
    t.teardown(async () => {
      await mesh.stop();
      await app.close();
    });
    const res = await request(`http://127.0.0.1:${mesh.inboundPort}/ratings/1?x=1`, {
      headers: { host: 'ratings.default.svc.cluster.local:9080', 'x-request-id': 'given-id' },
    });
    t.equal(res.statusCode, 200);
    const echo = (await res.body.json()) as Echo;
    t.equal(echo.url, '/ratings/1?x=1');
    t.equal(echo.headers['host'], 'ratings.default.svc.cluster.local:9080', 'Host kept');
    t.equal(echo.headers['x-request-id'], 'given-id', 'an incoming request id is kept');
    const metrics = await (await request(mesh.admin('/metrics'))).body.text();
    t.match(
      metrics,
      /istio_requests_total\{reporter="destination",[^}]*destination_workload="ratings"[^}]*destination_service="ratings\.default\.svc\.cluster\.local"[^}]*response_code="200"[^}]*connection_security_policy="none"\} 1/,
    );
  });
}

t.test('inbound without --app answers 503 UH saying why', async (t) => {
  const mesh = await spawnMeshlet(EMPTY, { engine: 'node' });
  t.teardown(() => mesh.stop());
  const res = await request(`http://127.0.0.1:${mesh.inboundPort}/`);
  t.equal(res.statusCode, 503);
  t.equal(res.headers['x-meshlet-flags'], 'UH');
  t.match(await res.body.text(), /no local application configured/);
});

t.test('admin endpoints', async (t) => {
  const mesh = await spawnMeshlet(EMPTY, { engine: 'node' });
  t.teardown(() => mesh.stop());
  const get = async (path: string, method = 'GET'): Promise<{ status: number; text: string }> => {
    const r = await request(mesh.admin(path), { method: method as 'GET' });
    return { status: r.statusCode, text: await r.body.text() };
  };
  t.same(await get('/ready'), { status: 200, text: 'ready\n' });
  t.same(await get('/live'), { status: 200, text: 'live\n' });
  t.match((await get('/help')).text, /POST \/reload/);
  const listeners = JSON.parse((await get('/listeners')).text) as Array<{
    name: string;
    port: number;
    engine: string;
  }>;
  t.same(
    listeners.map((l) => [l.name, l.port, l.engine]),
    [
      ['outbound', mesh.outboundPort, 'node'],
      ['inbound', mesh.inboundPort, 'node'],
    ],
  );
  const dump = JSON.parse((await get('/config_dump')).text) as {
    version: number;
    hash: string;
    resources: unknown[];
  };
  t.equal(dump.version, 1);
  t.match(dump.hash, /^[0-9a-f]{64}$/);
  t.equal(dump.resources.length, 1);
  t.same(JSON.parse((await get('/clusters')).text), []);
  const same = await get('/reload', 'POST');
  t.equal(same.status, 200);
  t.match(same.text, /"result": "unchanged"/);
  t.equal((await get('/reload')).status, 405);
  t.equal((await get('/nope')).status, 404);
});

t.test('--access-log writes one JSON line per request to stdout', async (t) => {
  const app = await startEchoBackend('app');
  const mesh = await spawnMeshlet(EMPTY, { args: ['--access-log', '--app', `127.0.0.1:${app.port}`] });
  t.teardown(async () => {
    await mesh.stop();
    await app.close();
  });
  await (
    await request(`http://127.0.0.1:${mesh.inboundPort}/logged?x=1`, { headers: { host: 'ratings' } })
  ).body.text();
  const dead = `127.0.0.1:${await deadPort()}`;
  await (await request(mesh.url('/nowhere'), { headers: { host: dead } })).body.text();
  const deadline = Date.now() + 3000;
  while (mesh.stdout.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const lines = mesh.stdout.map((l) => JSON.parse(l) as Record<string, unknown>);
  t.equal(lines.length, 2);
  t.match(lines[0], {
    method: 'GET',
    path: '/logged?x=1',
    response_code: 200,
    response_flags: '-',
    reporter: 'destination',
    authority: 'ratings',
  });
  t.match(lines[1], { path: '/nowhere', reporter: 'source', authority: dead });
  t.match(
    String(lines[1]?.['response_flags']),
    /^UF/,
    'unknown host under ALLOW_ANY: passthrough, which fails to connect',
  );
});
