import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer } from 'node:tls';
import t from 'tap';
import { connectionLoad } from '../../../bench/handshake-load.ts';
import {
  clientSidecarYaml,
  MTLS_HOST,
  PLAIN_HOST,
  pemFilesIn,
  serverSidecarYaml,
} from '../../../bench/mtls-configs.ts';
import { parseConfigText } from '../../../src/config/load-config.ts';
import { makeCa, makeLeaf } from '../../helpers/openssl-pki.ts';

const CA = { certFile: '/etc/meshlet/ca.crt', keyFile: '/etc/meshlet/ca.key' };

t.test('the bench configurations load without errors', async (t) => {
  for (const [name, text] of [
    ['client', clientSidecarYaml(CA, 15006)],
    ['server strict', serverSidecarYaml(CA, 'STRICT')],
    ['server permissive', serverSidecarYaml(CA, 'PERMISSIVE')],
  ] as const) {
    const bundle = parseConfigText([{ name: `${name}.yaml`, text }]);
    t.same(
      bundle.issues.filter((i) => i.severity === 'error').map((i) => i.message),
      [],
      `${name}: no errors`,
    );
  }
});

t.test('only the mTLS service is labelled for auto-mTLS, both reach the same port', async (t) => {
  const bundle = parseConfigText([{ name: 'client.yaml', text: clientSidecarYaml(CA, 15006) }]);
  const byHost = new Map(bundle.serviceEntries.map((r) => [r.spec.hosts[0], r.spec]));
  const plain = byHost.get(`${PLAIN_HOST}.default.svc.cluster.local`);
  const mtls = byHost.get(`${MTLS_HOST}.default.svc.cluster.local`);
  t.same(plain?.endpoints[0]?.labels, {});
  t.same(mtls?.endpoints[0]?.labels, { 'security.istio.io/tlsMode': 'istio' });
  t.equal(mtls?.endpoints[0]?.serviceAccount, 'bench-server');
  t.equal(plain?.endpoints[0]?.ports['http'], 15006);
  t.equal(mtls?.endpoints[0]?.ports['http'], 15006);
});

t.test('pemFilesIn finds the key and the certificate by content', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mtls-bench-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cert = '-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n';
  writeFileSync(join(dir, 'a-notes.txt'), 'nothing');
  mkdirSync(join(dir, 'b-a-folder'));
  writeFileSync(join(dir, 'ca.crt'), cert);
  writeFileSync(join(dir, 'cert.pem'), cert);
  writeFileSync(join(dir, 'key.pem'), '-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n');
  t.same(pemFilesIn(dir, 'workload'), { certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem') });
  t.same(pemFilesIn(dir, 'ca'), { certFile: join(dir, 'ca.crt'), keyFile: join(dir, 'key.pem') });
  rmSync(join(dir, 'key.pem'));
  t.throws(() => pemFilesIn(dir, 'ca'), /no certificate and key/);
});

t.test('connectionLoad: plaintext connections, one request each', async (t) => {
  let connections = 0;
  const server = createHttpServer((_req, res) => res.end('ok'));
  server.on('connection', () => connections++);
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()));
  t.teardown(() => new Promise<void>((ok) => server.close(() => ok())));
  const r = await connectionLoad({
    port: (server.address() as AddressInfo).port,
    durationMs: 200,
    concurrency: 3,
  });
  t.ok(r.completed > 3, `${r.completed} completed`);
  t.equal(r.errors, 0);
  t.equal(connections, r.completed, 'a fresh connection per request');
  t.ok(r.perSecond > 0);
});

t.test('connectionLoad: full mTLS handshakes, client certificate sent, errors counted', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mtls-bench-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ca = await makeCa(join(dir, 'ca'), 'bench-test');
  const [server, client] = await Promise.all([
    makeLeaf(ca, dir, 'server', { uri: 'spiffe://cluster.local/ns/default/sa/server' }),
    makeLeaf(ca, dir, 'client', { uri: 'spiffe://cluster.local/ns/default/sa/client' }),
  ]);
  let resumed = 0;
  let withCert = 0;
  const tls = createTlsServer(
    { cert: server.certPem, key: server.keyPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true },
    (socket) => {
      if (socket.isSessionReused()) resumed++;
      if (socket.getPeerCertificate().subjectaltname?.includes('sa/client') === true) withCert++;
      socket.once('data', () => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
    },
  );
  await new Promise<void>((ok) => tls.listen(0, '127.0.0.1', () => ok()));
  t.teardown(() => new Promise<void>((ok) => tls.close(() => ok())));
  const port = (tls.address() as AddressInfo).port;
  const r = await connectionLoad({
    port,
    durationMs: 300,
    concurrency: 2,
    tls: { certPem: client.certPem, keyPem: client.keyPem },
  });
  t.ok(r.completed > 2, `${r.completed} handshakes`);
  t.equal(r.errors, 0, r.errorSamples.join('; '));
  t.equal(withCert, r.completed, 'every connection presented the client certificate');
  t.equal(resumed, 0, 'no session was resumed: every handshake is a full one');

  const refused = await connectionLoad({ port, durationMs: 100, concurrency: 1 });
  t.equal(refused.completed, 0, 'plaintext to a TLS port never completes');
  t.ok(refused.errors > 0);
  t.ok(refused.errorSamples.length > 0);
});
