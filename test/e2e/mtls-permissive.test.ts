import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Agent } from 'undici';
import { caInit } from '../helpers/mesh-ca.ts';
import { adminText, call, metricSum } from '../helpers/mesh-client.ts';
import { makeLeaf } from '../helpers/openssl-pki.ts';
import { curlHttp, curlHttps } from '../helpers/tls-clients.ts';
import { echoApp, echoOf, engineOf, spawnReady, xfccOf } from '../helpers/zt-mesh.ts';
import { docs, meshServiceYaml, peerAuthenticationYaml, proxyYaml, spiffe } from '../helpers/zt-yaml.ts';

/**
 * PERMISSIVE serves mTLS and plaintext on the same inbound port (issue 4): a plaintext curl, a
 * curl with a mesh client certificate and a sidecar originating auto-mTLS all reach the app; only
 * the mTLS ones carry an `x-forwarded-client-cert`, and a forged one from a plaintext caller is
 * removed. On h1 with an explicit PERMISSIVE PeerAuthentication; on node with no policy at all,
 * which means PERMISSIVE. On uws, which has no TLS, the inbound listener falls back to h1.
 */

const B_HOST = 'b.default.svc.cluster.local';

const dir = mkdtempSync(join(tmpdir(), 'meshlet-zt-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const ca = await caInit(join(dir, 'ca'));
const curlCert = await makeLeaf(ca, dir, 'curl', { uri: spiffe('curl') });

for (const [engine, policy] of [
  ['h1', 'explicit PERMISSIVE'],
  ['node', 'no PeerAuthentication'],
] as const) {
  t.test(`PERMISSIVE (${policy}) on the ${engine} engine`, async (t) => {
    const identity = { kind: 'ca', caCertFile: ca.certFile, caKeyFile: ca.keyFile } as const;
    const app = await echoApp(t, 'b');
    const bDocs = [proxyYaml({ serviceAccount: 'b', labels: { app: 'b' }, identity })];
    if (policy === 'explicit PERMISSIVE') bDocs.push(peerAuthenticationYaml('default', 'PERMISSIVE'));
    const b = await spawnReady(t, docs(...bDocs), { engine, args: ['--app', `127.0.0.1:${app.port}`] });
    const a = await spawnReady(
      t,
      docs(
        proxyYaml({ serviceAccount: 'a', identity }),
        meshServiceYaml('b', [{ port: b.inboundPort, serviceAccount: 'b' }]),
      ),
      { engine },
    );
    const agent = new Agent({ connections: 2 });
    t.teardown(() => agent.close());
    t.equal(engineOf(b, b.inboundPort), engine);

    t.test('plaintext is served, and a forged x-forwarded-client-cert is removed', async (t) => {
      const res = await curlHttp(b.inboundPort, '/plain', {
        host: B_HOST,
        'x-forwarded-client-cert': `URI=${spiffe('admin')}`,
      });
      t.equal(res.status, 200, res.stderr);
      const echo = echoOf(res.body);
      t.equal(echo?.url, '/plain');
      t.equal(xfccOf(echo), '', 'no XFCC reaches the app from a plaintext caller');
    });

    t.test('mTLS from curl is served on the same port, with the caller’s identity', async (t) => {
      const res = await curlHttps(b.inboundPort, '/curl-mtls', { cert: curlCert });
      t.equal(res.status, 200, res.stderr);
      t.match(xfccOf(echoOf(res.body)), `URI=${spiffe('curl')}`);
    });

    t.test('auto-mTLS from sidecar A is served on the same port', async (t) => {
      const res = await call(a, agent, '/from-a', { host: B_HOST });
      t.equal(res.status, 200, res.text);
      t.match(xfccOf(echoOf(res.text)), `URI=${spiffe('a')}`);
    });

    t.test('B tells mutual TLS from plaintext in its metrics', async (t) => {
      const metrics = await adminText(b, agent, '/metrics');
      const count = (policy: string): number =>
        metricSum(
          metrics,
          'istio_requests_total',
          (l) => l['reporter'] === 'destination' && l['connection_security_policy'] === policy,
        );
      t.equal(count('mutual_tls'), 2, 'curl --cert and sidecar A');
      t.equal(count('none'), 1, 'the plaintext curl');
    });
  });
}

t.test(
  'uws has no TLS: an inbound port with an identity is served by h1, and the log says why',
  async (t) => {
    const app = await echoApp(t, 'b');
    const identity = { kind: 'ca', caCertFile: ca.certFile, caKeyFile: ca.keyFile } as const;
    const b = await spawnReady(t, docs(proxyYaml({ serviceAccount: 'b', identity })), {
      engine: 'uws',
      args: ['--app', `127.0.0.1:${app.port}`],
    });
    t.equal(engineOf(b, b.inboundPort), 'h1');
    t.ok(
      b.logs.some((l) => /uws|uWebSockets/i.test(l) && /TLS/.test(l)),
      'a log line gives the reason for the fallback',
    );
    const mtls = await curlHttps(b.inboundPort, '/uws-mtls', { cert: curlCert });
    t.equal(mtls.status, 200, mtls.stderr);
    t.match(xfccOf(echoOf(mtls.body)), `URI=${spiffe('curl')}`);
    t.equal((await curlHttp(b.inboundPort, '/uws-plain')).status, 200);
  },
);
