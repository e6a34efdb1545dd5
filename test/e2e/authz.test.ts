import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Agent } from 'undici';
import { caInit } from '../helpers/mesh-ca.ts';
import { adminText, call, metricSum, sleep } from '../helpers/mesh-client.ts';
import { makeLeaf } from '../helpers/openssl-pki.ts';
import { curlHttp, curlHttps } from '../helpers/tls-clients.ts';
import { echoApp, echoOf, engineOf, spawnReady, xfccOf } from '../helpers/zt-mesh.ts';
import {
  authorizationPolicyYaml,
  docs,
  meshServiceYaml,
  peerAuthenticationYaml,
  proxyYaml,
  spiffe,
} from '../helpers/zt-yaml.ts';

/**
 * AuthorizationPolicy on a real inbound port (issue 4, spec §6): an ALLOW policy naming only
 * `cluster.local/ns/default/sa/productpage` lets that identity in (200) and answers 403
 * `RBAC: access denied` to any other identity and to plaintext callers (no principal), before the
 * app sees anything; a DENY policy is evaluated first, so productpage is still denied `/admin*`.
 * The caller with the allowed identity is a meshlet sidecar (auto-mTLS), the others are curl with
 * certificates signed by the mesh CA. The port is PERMISSIVE, so that plaintext reaches the policy.
 */

const RATINGS = 'ratings.default.svc.cluster.local';

const ALLOW_PRODUCTPAGE = `    - from:
        - source:
            principals: ["cluster.local/ns/default/sa/productpage"]
`;
const DENY_ADMIN = `    - to:
        - operation:
            paths: ["/admin*"]
`;

const dir = mkdtempSync(join(tmpdir(), 'meshlet-zt-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const ca = await caInit(join(dir, 'ca'));
const [productpage, reviews] = await Promise.all([
  makeLeaf(ca, dir, 'productpage', { uri: spiffe('productpage') }),
  makeLeaf(ca, dir, 'reviews', { uri: spiffe('reviews') }),
]);

for (const engine of ['h1', 'node'] as const) {
  t.test(`AuthorizationPolicy on the ${engine} engine`, async (t) => {
    const identity = { kind: 'ca', caCertFile: ca.certFile, caKeyFile: ca.keyFile } as const;
    const app = await echoApp(t, 'ratings');
    const server = await spawnReady(
      t,
      docs(
        proxyYaml({ serviceAccount: 'ratings', labels: { app: 'ratings' }, identity }),
        peerAuthenticationYaml('default', 'PERMISSIVE'),
        authorizationPolicyYaml('productpage-only', 'ALLOW', ALLOW_PRODUCTPAGE, {
          selector: { app: 'ratings' },
        }),
        authorizationPolicyYaml('no-admin', 'DENY', DENY_ADMIN),
      ),
      { engine, args: ['--app', `127.0.0.1:${app.port}`, '--access-log'] },
    );
    const caller = await spawnReady(
      t,
      docs(
        proxyYaml({ serviceAccount: 'productpage', labels: { app: 'productpage' }, identity }),
        meshServiceYaml('ratings', [{ port: server.inboundPort, serviceAccount: 'ratings' }]),
      ),
      { engine },
    );
    const agent = new Agent({ connections: 2 });
    t.teardown(() => agent.close());
    t.equal(engineOf(server, server.inboundPort), engine);
    let denied = 0;

    t.test('the allowed identity gets 200 (sidecar to sidecar)', async (t) => {
      const res = await call(caller, agent, '/ratings/1', { host: RATINGS });
      t.equal(res.status, 200, res.text);
      t.match(xfccOf(echoOf(res.text)), `URI=${spiffe('productpage')}`);
    });

    t.test('the allowed identity gets 200 (curl --cert)', async (t) => {
      const res = await curlHttps(server.inboundPort, '/ratings/2', { cert: productpage });
      t.equal(res.status, 200, res.stderr);
    });

    t.test('another identity gets 403 RBAC: access denied, and the app sees nothing', async (t) => {
      const before = app.count;
      const res = await curlHttps(server.inboundPort, '/ratings/3', { cert: reviews });
      t.equal(res.status, 403, res.stderr);
      t.equal(res.body.trim(), 'RBAC: access denied');
      denied++;
      t.equal(app.count, before);
    });

    t.test('a plaintext caller has no principal: 403', async (t) => {
      const before = app.count;
      const res = await curlHttp(server.inboundPort, '/ratings/4', { host: RATINGS });
      t.equal(res.status, 403);
      t.equal(res.body.trim(), 'RBAC: access denied');
      denied++;
      t.equal(app.count, before);
    });

    t.test('DENY comes first: the allowed identity is denied /admin', async (t) => {
      const res = await call(caller, agent, '/admin/users', { host: RATINGS });
      t.equal(res.status, 403, 'the 403 travels back through the calling sidecar');
      t.equal(res.text.trim(), 'RBAC: access denied');
      denied++;
      const viaCurl = await curlHttps(server.inboundPort, '/admin', { cert: productpage });
      t.equal(viaCurl.status, 403);
      denied++;
    });

    t.test('denials are counted and flagged in the access log', async (t) => {
      const metrics = await adminText(server, agent, '/metrics');
      const d403 = metricSum(
        metrics,
        'istio_requests_total',
        (l) => l['reporter'] === 'destination' && l['response_code'] === '403',
      );
      t.equal(d403, denied, 'istio_requests_total{reporter="destination",response_code="403"}');
      const deadline = Date.now() + 2000;
      const lines = (): Array<Record<string, unknown>> =>
        server.stdout.map((l) => JSON.parse(l) as Record<string, unknown>);
      while (lines().filter((l) => l['response_code'] === 403).length < denied && Date.now() < deadline)
        await sleep(50);
      const deniedLines = lines().filter((l) => l['response_code'] === 403);
      t.equal(deniedLines.length, denied);
      for (const l of deniedLines)
        t.match(
          JSON.stringify(l),
          /rbac_access_denied/,
          `access log line flags the denial: ${JSON.stringify(l)}`,
        );
      const allowed = lines().filter((l) => l['response_code'] === 200);
      t.ok(allowed.length >= 2);
      for (const l of allowed) t.notMatch(JSON.stringify(l), /rbac_access_denied/);
    });
  });
}
