import t from 'tap';
import { Agent, request } from 'undici';
import { startEchoBackend } from '../helpers/backends.ts';
import { serviceEntryYaml } from '../helpers/mesh-yaml.ts';
import { spawnMeshlet } from '../helpers/spawn-meshlet.ts';

/** REGISTRY_ONLY, fault injection and the route timeout, through the real process. */

t.test('outbound traffic policy, faults and timeouts', async (t) => {
  const slow = await startEchoBackend('slow', (req, res) => {
    if (req.url?.startsWith('/slow') !== true) return false;
    setTimeout(() => res.end('late'), 1500);
    return true;
  });
  const mesh = await spawnMeshlet(`
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: default }
spec:
  outboundTrafficPolicy: { mode: REGISTRY_ONLY }
---
${serviceEntryYaml('app', [{ port: slow.port }])}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: app }
spec:
  hosts: [app]
  http:
    - match: [{ uri: { prefix: /abort } }]
      fault: { abort: { httpStatus: 555, percentage: { value: 100 } } }
      route: [{ destination: { host: app } }]
    - match: [{ uri: { prefix: /no-percentage } }]
      fault: { abort: { httpStatus: 500 } }
      route: [{ destination: { host: app } }]
    - match: [{ uri: { prefix: /delay } }]
      fault: { delay: { fixedDelay: 300ms, percentage: { value: 100 } } }
      route: [{ destination: { host: app } }]
    - match: [{ uri: { prefix: /slow } }]
      timeout: 200ms
      route: [{ destination: { host: app } }]
`);
  const agent = new Agent();
  t.teardown(async () => {
    await agent.close();
    await mesh.stop();
    await slow.close();
  });
  const call = async (
    path: string,
    host = 'app',
  ): Promise<{ status: number; flags: unknown; text: string; ms: number }> => {
    const start = Date.now();
    const res = await request(mesh.url(path), { dispatcher: agent, headers: { host } });
    const text = await res.body.text();
    return { status: res.statusCode, flags: res.headers['x-meshlet-flags'], text, ms: Date.now() - start };
  };

  const blocked = await call('/', 'unknown.example.com');
  t.same([blocked.status, blocked.flags], [502, 'NR'], 'REGISTRY_ONLY: an unknown host gets 502 NR');
  const unmatched = await call('/');
  t.same(
    [unmatched.status, unmatched.flags],
    [404, 'NR'],
    'a registered host whose rules do not match: 404 NR (no fallback route)',
  );

  const abort = await call('/abort');
  t.same([abort.status, abort.flags, abort.text], [555, 'FI', 'fault filter abort\n']);
  t.equal((await call('/no-percentage')).status, 200, 'an abort without percentage never fires (0 %)');

  const delayed = await call('/delay');
  t.equal(delayed.status, 200);
  t.ok(delayed.ms >= 280, `delayed by the fault (${delayed.ms} ms)`);

  const timedOut = await call('/slow');
  t.same([timedOut.status, timedOut.flags, timedOut.text], [504, 'UT', 'upstream request timeout\n']);
  t.ok(timedOut.ms < 1400, `answered at the route timeout (${timedOut.ms} ms), not when the upstream did`);

  const metrics = await (await request(mesh.admin('/metrics'), { dispatcher: agent })).body.text();
  t.match(
    metrics,
    /istio_requests_total\{[^}]*destination_service="unknown\.example\.com"[^}]*destination_service_name="BlackHoleCluster"[^}]*response_code="502"[^}]*response_flags="NR"/,
  );
  t.match(metrics, /istio_requests_total\{[^}]*response_code="555"[^}]*response_flags="FI"/);
  t.match(metrics, /istio_requests_total\{[^}]*response_code="200"[^}]*response_flags="DI"/);
  t.match(metrics, /istio_requests_total\{[^}]*response_code="504"[^}]*response_flags="UT"/);
});
