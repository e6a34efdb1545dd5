import { join } from 'node:path';
import t from 'tap';
import { Agent } from 'undici';
import { startEchoBackend } from '../helpers/backends.ts';
import { caInit, caIssue } from '../helpers/mesh-ca.ts';
import { adminText, call, metricSum } from '../helpers/mesh-client.ts';
import { spawnMeshlet } from '../helpers/spawn-meshlet.ts';
import { tlsExchange } from '../helpers/tls-clients.ts';
import { echoOf, tempDir, xfccOf } from '../helpers/zt-mesh.ts';
import { docs, meshServiceYaml, peerAuthenticationYaml, proxyYaml, spiffe } from '../helpers/zt-yaml.ts';

/**
 * Workload certificates rotated under steady load cause no failed request (issue 4). Both sidecars
 * issue their own certificates with a 2 s lifetime, so each renews (at 70 %, every ~1.4 s) several
 * times during ~7 s of load from A to B over STRICT mTLS. A opens a new connection to B every 20
 * requests (DestinationRule `maxRequestsPerConnection`), so handshakes keep happening across the
 * rotations on both sides, while the connections already open keep serving.
 */

const B_HOST = 'b.default.svc.cluster.local';
const LOAD_MS = 7000;
const CONCURRENCY = 8;

function maxRequestsPerConnection(host: string, n: number): string {
  return `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ${host}, namespace: default }
spec:
  host: ${host}
  trafficPolicy:
    connectionPool:
      http: { maxRequestsPerConnection: ${n} }
`;
}

function rotations(metrics: string): number {
  return metricSum(metrics, 'meshlet_certificate_rotations_total');
}

t.test('certificates rotated under steady load: no failed request', async (t) => {
  const dir = tempDir(t);
  const ca = await caInit(join(dir, 'ca'));
  const probeCert = await caIssue(ca, 'probe', join(dir, 'probe'));
  const identity = { kind: 'ca', caCertFile: ca.certFile, caKeyFile: ca.keyFile, certTtl: '2s' } as const;
  const app = await startEchoBackend('b');
  const b = await spawnMeshlet(
    docs(proxyYaml({ serviceAccount: 'b', identity }), peerAuthenticationYaml('default', 'STRICT')),
    { engine: 'h1', args: ['--app', `127.0.0.1:${app.port}`] },
  );
  const a = await spawnMeshlet(
    docs(
      proxyYaml({ serviceAccount: 'a', identity }),
      meshServiceYaml('b', [{ port: b.inboundPort, serviceAccount: 'b' }]),
      maxRequestsPerConnection(B_HOST, 20),
    ),
    { engine: 'h1' },
  );
  const agent = new Agent({ connections: CONCURRENCY });
  t.teardown(async () => {
    await agent.close();
    await Promise.all([a.stop(), b.stop()]);
    await app.close();
  });
  const probe = { certPem: probeCert.certPem, keyPem: probeCert.keyPem };
  const first = await tlsExchange(b.inboundPort, { cert: probe });
  t.match(first.serverSan, `URI:${spiffe('b')}`);
  const rotationsBefore = {
    a: rotations(await adminText(a, agent, '/metrics')),
    b: rotations(await adminText(b, agent, '/metrics')),
  };

  let ok = 0;
  const failures: string[] = [];
  const deadline = Date.now() + LOAD_MS;
  const worker = async (w: number): Promise<void> => {
    for (let i = 0; Date.now() < deadline; i++) {
      const res = await call(a, agent, `/load/${w}/${i}`, { host: B_HOST, timeoutMs: 3000 });
      const xfcc = xfccOf(echoOf(res.text));
      if (res.status === 200 && xfcc.includes(`URI=${spiffe('a')}`)) ok++;
      else failures.push(`${res.status} ${res.flags} ${res.text.slice(0, 120)}`);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, (_, w) => worker(w)));
  t.same(
    failures,
    [],
    `no failed request out of ${ok + failures.length} (a success is a 200 from B's app naming A)`,
  );
  t.ok(ok > 200, `steady load: ${ok} requests in ${LOAD_MS} ms`);

  const after = {
    a: rotations(await adminText(a, agent, '/metrics')),
    b: rotations(await adminText(b, agent, '/metrics')),
  };
  t.ok(after.a - rotationsBefore.a >= 3, `A rotated ${after.a - rotationsBefore.a} times during the load`);
  t.ok(after.b - rotationsBefore.b >= 3, `B rotated ${after.b - rotationsBefore.b} times during the load`);
  const last = await tlsExchange(b.inboundPort, { cert: probe });
  t.match(last.serverSan, `URI:${spiffe('b')}`, 'B still serves its identity');
  t.not(last.fingerprint, first.fingerprint, 'with a new certificate');
});
