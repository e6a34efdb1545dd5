import { copyFileSync, mkdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { caInit, caIssue } from '../helpers/mesh-ca.ts';
import { sleep } from '../helpers/mesh-client.ts';
import { makeLeaf } from '../helpers/openssl-pki.ts';
import { spawnMeshlet } from '../helpers/spawn-meshlet.ts';
import { curlHttps, statusOf, tlsExchange } from '../helpers/tls-clients.ts';
import { echoApp, echoOf, eventually, tempDir, xfccOf } from '../helpers/zt-mesh.ts';
import { docs, peerAuthenticationYaml, proxyYaml, spiffe } from '../helpers/zt-yaml.ts';

/**
 * `/ready` is 503 until the proxy holds a valid certificate (issue 4). The identity comes from
 * externally managed files (as cert-manager or SPIRE write them) that do not exist when meshlet
 * starts; once they appear, meshlet loads them, `/ready` turns 200 and the STRICT port serves
 * with that identity.
 */

async function readyStatus(adminUrl: string): Promise<number> {
  try {
    const res = await request(adminUrl, { headersTimeout: 2000, bodyTimeout: 2000 });
    await res.body.text();
    return res.statusCode;
  } catch {
    return 0;
  }
}

t.test('/ready waits for the workload certificate files', async (t) => {
  const dir = tempDir(t);
  const ca = await caInit(join(dir, 'ca'));
  // The files the proxy waits for are what `meshlet ca issue` writes (cert.pem, key.pem, ca.pem).
  const [served, client] = await Promise.all([
    caIssue(ca, 'late', join(dir, 'issued-late')),
    makeLeaf(ca, dir, 'curl', { uri: spiffe('curl') }),
  ]);
  const live = join(dir, 'live');
  mkdirSync(live);
  const files = {
    kind: 'files',
    certFile: join(live, 'tls.crt'),
    keyFile: join(live, 'tls.key'),
    trustBundleFile: join(live, 'ca.crt'),
  } as const;
  const app = await echoApp(t, 'late');
  const mesh = await spawnMeshlet(
    docs(proxyYaml({ serviceAccount: 'late', identity: files }), peerAuthenticationYaml('default', 'STRICT')),
    { engine: 'h1', args: ['--app', `127.0.0.1:${app.port}`] },
  );
  t.teardown(() => mesh.stop());
  const ready = mesh.admin('/ready');

  // Not ready, and it stays so: sample it a few times over half a second.
  for (let i = 0; i < 5; i++) {
    t.equal(await readyStatus(ready), 503, `/ready is 503 without a certificate (sample ${i + 1})`);
    await sleep(100);
  }
  const early = await tlsExchange(mesh.inboundPort, {
    cert: { certPem: client.certPem, keyPem: client.keyPem },
  });
  t.equal(statusOf(early.response), 0, `no mTLS service without a certificate (${early.error})`);
  t.equal(app.count, 0);

  // The files appear the way a writer that cares about readers puts them: each one renamed in.
  const put = (from: string, to: string): void => {
    copyFileSync(from, `${to}.tmp`);
    renameSync(`${to}.tmp`, to);
  };
  put(ca.certFile, files.trustBundleFile);
  put(served.keyFile, files.keyFile);
  put(served.certFile, files.certFile);

  t.ok(await eventually(async () => (await readyStatus(ready)) === 200, 10_000), '/ready turns 200');
  const x = await tlsExchange(mesh.inboundPort, { cert: { certPem: client.certPem, keyPem: client.keyPem } });
  t.match(x.serverSan, `URI:${spiffe('late')}`, 'the port serves the certificate from the files');
  t.equal(statusOf(x.response), 200, x.error);
  const res = await curlHttps(mesh.inboundPort, '/after', { cert: client });
  t.equal(res.status, 200, res.stderr);
  t.match(xfccOf(echoOf(res.body)), `URI=${spiffe('curl')}`);
});
