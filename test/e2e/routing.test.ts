import t from 'tap';
import { Agent, request } from 'undici';
import { type Backend, deadPort, type Echo, startEchoBackend } from '../helpers/backends.ts';
import { serviceEntryYaml } from '../helpers/mesh-yaml.ts';
import { type Meshlet, spawnMeshlet } from '../helpers/spawn-meshlet.ts';

/**
 * The real meshlet process against real backends on loopback, once per listener engine:
 * matching, first-match-wins, weighted split, rewrite, redirect, header edits, local replies.
 */

function meshYaml(v1: number, v2: number, v3: number, dead: number): string {
  const reviews = [v1, v2, v3].map((port, i) => ({ port, labels: { app: 'reviews', version: `v${i + 1}` } }));
  return `${serviceEntryYaml('reviews', reviews, { servicePort: 9080 })}---
${serviceEntryYaml('dead', [{ port: dead }])}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews }
spec:
  host: reviews
  subsets:
    - { name: v1, labels: { version: v1 } }
    - { name: v2, labels: { version: v2 } }
    - { name: v3, labels: { version: v3 } }
    - { name: nobody, labels: { version: v9 } }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews }
spec:
  hosts: [reviews]
  http:
    - name: jason
      match: [{ headers: { end-user: { exact: jason } } }]
      route: [{ destination: { host: reviews, subset: v2 } }]
    - name: post-api
      match: [{ uri: { prefix: /api }, method: { exact: POST } }]
      route: [{ destination: { host: reviews, subset: v3 } }]
    - name: debug-query
      match: [{ queryParams: { debug: { exact: "1" } } }]
      directResponse: { status: 418, body: { string: "debug mode" } }
      headers: { response: { set: { content-type: text/plain } } }
    - name: moved
      match: [{ uri: { exact: /old } }]
      redirect: { uri: /new, redirectCode: 302 }
    - name: rewritten
      match: [{ uri: { prefix: /legacy/ } }]
      rewrite: { uri: /v2/ }
      route: [{ destination: { host: reviews, subset: v1 } }]
      headers:
        request: { set: { x-mesh-edit: set-by-route }, remove: [x-drop-me] }
        response: { add: { x-resp-edit: added } }
    - name: regex
      match: [{ uri: { regex: "/items/[0-9]+" } }]
      route: [{ destination: { host: reviews, subset: v2 } }]
    - name: split
      match: [{ uri: { prefix: /split } }]
      route:
        - { destination: { host: reviews, subset: v1 }, weight: 75 }
        - { destination: { host: reviews, subset: v3 }, weight: 25 }
    - name: unhealthy
      match: [{ uri: { prefix: /nobody } }]
      route: [{ destination: { host: reviews, subset: nobody } }]
    - name: no-such-subset
      match: [{ uri: { prefix: /nc } }]
      route: [{ destination: { host: reviews, subset: v7 } }]
`;
}

for (const engine of ['h1', 'uws', 'node'] as const) {
  t.test(`routing through the ${engine} engine`, async (t) => {
    const backends: Backend[] = [
      await startEchoBackend('v1'),
      await startEchoBackend('v2'),
      await startEchoBackend('v3'),
    ];
    const [v1, v2, v3] = backends as [Backend, Backend, Backend];
    const mesh: Meshlet = await spawnMeshlet(meshYaml(v1.port, v2.port, v3.port, await deadPort()), {
      engine,
    });
    const agent = new Agent({ connections: 8 });
    t.teardown(async () => {
      await agent.close();
      await mesh.stop();
      for (const b of backends) await b.close();
    });
    t.equal(mesh.engine, engine, `the ${engine} engine serves the outbound listener`);

    const call = async (
      path: string,
      init: { method?: string; headers?: Record<string, string>; host?: string } = {},
    ): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }> => {
      const res = await request(mesh.url(path), {
        dispatcher: agent,
        method: (init.method ?? 'GET') as 'GET',
        headers: { host: init.host ?? 'reviews:9080', ...init.headers },
      });
      return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
    };
    const echoOf = async (path: string, init: Parameters<typeof call>[1] = {}): Promise<Echo> => {
      const r = await call(path, init);
      t.equal(r.status, 200, `${init.method ?? 'GET'} ${path} answers 200`);
      return JSON.parse(r.text) as Echo;
    };

    t.test('header match wins over later rules (first match wins)', async (t) => {
      t.equal((await echoOf('/split', { headers: { 'end-user': 'jason' } })).name, 'v2');
      t.equal((await echoOf('/api/x', { method: 'POST', headers: { 'end-user': 'jason' } })).name, 'v2');
    });

    t.test('method and uri prefix match', async (t) => {
      t.equal((await echoOf('/api/x', { method: 'POST' })).name, 'v3');
      const get = await call('/api/x');
      t.equal(get.status, 404, 'GET does not match the POST rule and nothing else matches');
      t.equal(get.headers['x-meshlet-flags'], 'NR');
    });

    t.test('query parameter match gives a direct response with header edits', async (t) => {
      const r = await call('/anything?debug=1');
      t.equal(r.status, 418);
      t.equal(r.text, 'debug mode');
      t.equal(r.headers['content-type'], 'text/plain');
      t.equal((await call('/anything?debug=2')).status, 404, 'another value does not match');
    });

    t.test('redirect', async (t) => {
      const r = await call('/old?keep=1');
      t.equal(r.status, 302);
      t.equal(r.headers['location'], 'http://reviews:9080/new?keep=1');
    });

    t.test('rewrite and header edits', async (t) => {
      const r = await call('/legacy/item?x=1', { headers: { 'x-drop-me': 'gone' } });
      t.equal(r.status, 200);
      t.equal(r.headers['x-resp-edit'], 'added', 'response header added');
      t.equal(typeof r.headers['date'], 'string', 'exactly one Date header');
      const echo = JSON.parse(r.text) as Echo;
      t.equal(echo.name, 'v1');
      t.equal(echo.url, '/v2/item?x=1', 'matched prefix replaced, rest and query kept');
      t.equal(echo.headers['x-mesh-edit'], 'set-by-route');
      t.equal(echo.headers['x-drop-me'], undefined, 'removed header is not forwarded');
      t.equal(echo.headers['x-envoy-original-path'], '/legacy/item?x=1');
      t.match(echo.headers['x-forwarded-for'], /127\.0\.0\.1/);
      t.equal(echo.headers['x-forwarded-proto'], 'http');
      t.match(echo.headers['x-request-id'], /^[0-9a-f-]{36}$/, 'request id generated');
      t.equal(echo.headers['host'], 'reviews:9080');
    });

    t.test('regex is a full match', async (t) => {
      t.equal((await echoOf('/items/42')).name, 'v2');
      t.equal((await call('/items/42x')).status, 404);
      t.equal((await call('/x/items/42')).status, 404);
    });

    t.test('absolute-form request (HTTP_PROXY clients)', async (t) => {
      const res = await agent.request({
        origin: `http://127.0.0.1:${mesh.outboundPort}`,
        path: 'http://reviews:9080/items/7',
        method: 'GET',
      });
      if (engine === 'uws') {
        // Documented limitation: uWebSockets.js answers absolute-form targets itself, before meshlet sees them.
        t.equal(res.statusCode, 505, 'uws refuses absolute-form targets (README: use the node engine)');
        await res.body.dump();
        return;
      }
      t.equal(res.statusCode, 200);
      const echo = (await res.body.json()) as Echo;
      t.equal(echo.name, 'v2');
      t.equal(echo.url, '/items/7', 'forwarded in origin-form');
    });

    t.test('weighted split over 1000 requests stays within tolerance', async (t) => {
      const counts: Record<string, number> = { v1: 0, v3: 0 };
      const batch = 50;
      for (let i = 0; i < 1000; i += batch) {
        const echoes = await Promise.all(Array.from({ length: batch }, () => call('/split')));
        for (const e of echoes) {
          const name = (JSON.parse(e.text) as Echo).name;
          counts[name] = (counts[name] ?? 0) + 1;
        }
      }
      t.equal((counts['v1'] ?? 0) + (counts['v3'] ?? 0), 1000, 'every request reached v1 or v3');
      t.ok(Math.abs((counts['v1'] ?? 0) - 750) <= 50, `v1 got ${counts['v1']} of 1000 (expected 750 ± 50)`);
    });

    t.test('local replies: NR, UH, NC, UF, unknown host passthrough', async (t) => {
      const nr = await call('/not-routed');
      t.equal(nr.status, 404);
      t.equal(typeof nr.headers['date'], 'string', 'local replies carry a Date too');
      t.equal(nr.headers['x-meshlet-flags'], 'NR');
      t.match(nr.text, /no route/);

      const uh = await call('/nobody');
      t.equal(uh.status, 503);
      t.equal(uh.headers['x-meshlet-flags'], 'UH');
      t.equal(uh.text, 'no healthy upstream\n');

      const nc = await call('/nc');
      t.equal(nc.status, 503);
      t.equal(nc.headers['x-meshlet-flags'], 'NC');

      const uf = await call('/', { host: 'dead' });
      t.equal(uf.status, 503);
      t.match(uf.headers['x-meshlet-flags'], /^UF/);
      t.match(uf.text, /reset reason: connection failure/);

      // ALLOW_ANY (the mesh default): an unknown host is forwarded as asked.
      const pass = await call('/through', { host: `127.0.0.1:${v3.port}` });
      t.equal(pass.status, 200);
      t.equal((JSON.parse(pass.text) as Echo).name, 'v3');
    });

    t.test('metrics carry Istio labels and the reload counter', async (t) => {
      const res = await request(mesh.admin('/metrics'), { dispatcher: agent });
      const text = await res.body.text();
      t.match(
        text,
        /istio_requests_total\{reporter="source",[^}]*destination_service="reviews\.default\.svc\.cluster\.local"[^}]*response_code="200"[^}]*response_flags="-"/,
      );
      t.match(text, /istio_requests_total\{[^}]*response_code="404"[^}]*response_flags="NR"[^}]*\} \d+/);
      t.match(
        text,
        /istio_requests_total\{[^}]*destination_service_name="dead"[^}]*response_code="503"[^}]*response_flags="UF/,
      );
      t.match(text, /istio_request_duration_milliseconds_bucket\{[^}]*le="0\.5"/);
      t.match(text, /meshlet_config_reloads_total\{result="rejected"\} 0/);
    });
  });
}
