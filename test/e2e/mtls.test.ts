import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Agent } from 'undici';
import { caInit } from '../helpers/mesh-ca.ts';
import { adminText, call, hasFlag, metricSum } from '../helpers/mesh-client.ts';
import { makeCa, makeLeaf } from '../helpers/openssl-pki.ts';
import {
  bodyOf,
  curlHttp,
  curlHttps,
  plainExchange,
  sClient,
  statusOf,
  tlsExchange,
} from '../helpers/tls-clients.ts';
import { echoApp, echoOf, engineOf, spawnReady, xfccOf } from '../helpers/zt-mesh.ts';
import { docs, meshServiceYaml, peerAuthenticationYaml, proxyYaml, spiffe } from '../helpers/zt-yaml.ts';

/**
 * STRICT mTLS between real meshlet sidecars (issue 4, "Done when"): certificates issued in-process
 * from one CA made by `meshlet ca init`; sidecar A originates mTLS to sidecar B (auto-mTLS on the
 * endpoint label) and B's app sees A's SPIFFE id; B refuses plaintext, a certificate from another
 * CA and an expired certificate; A refuses a server presenting the wrong SPIFFE id (sidecar C,
 * `sa/c`, where `sa/b` is expected). Once per TLS-terminating engine (uws has no TLS).
 */

const B_HOST = 'b.default.svc.cluster.local';
const URI_OF = (sa: string): RegExp =>
  new RegExp(`(^|[;,])URI=${spiffe(sa).replace(/[./]/g, '\\$&')}(;|,|$)`);

// One mesh CA (made by `meshlet ca init`) for the whole file, and the client certificates the
// tests present: one from the mesh CA, one of the same kind from a CA the mesh does not trust, and
// one signed by the mesh CA whose validity ended yesterday. openssl signs them (quicker than a
// `meshlet ca issue` process each; the examples test covers that command).
const dir = mkdtempSync(join(tmpdir(), 'meshlet-zt-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const ca = await caInit(join(dir, 'ca'));
const otherCa = await makeCa(join(dir, 'other-ca'), 'not-the-mesh');
const DAY = 86_400_000;
const [curlCert, foreign, expired] = await Promise.all([
  makeLeaf(ca, dir, 'curl', { uri: spiffe('curl') }),
  makeLeaf(otherCa, dir, 'foreign', { uri: spiffe('curl') }),
  makeLeaf(ca, dir, 'expired', {
    uri: spiffe('curl'),
    notBefore: new Date(Date.now() - 2 * DAY),
    notAfter: new Date(Date.now() - DAY),
  }),
]);

for (const engine of ['h1', 'node'] as const) {
  t.test(`STRICT mTLS between sidecars on the ${engine} engine`, async (t) => {
    const identity = { kind: 'ca', caCertFile: ca.certFile, caKeyFile: ca.keyFile } as const;
    const appB = await echoApp(t, 'b');
    const appC = await echoApp(t, 'c');
    const server = (sa: string, appPort: number) =>
      spawnReady(
        t,
        docs(
          proxyYaml({ serviceAccount: sa, labels: { app: sa }, identity }),
          peerAuthenticationYaml('default', 'STRICT'),
        ),
        { engine, args: ['--app', `127.0.0.1:${appPort}`] },
      );
    const [b, c] = await Promise.all([server('b', appB.port), server('c', appC.port)]);
    const a = await spawnReady(
      t,
      docs(
        proxyYaml({ serviceAccount: 'a', labels: { app: 'a' }, identity }),
        meshServiceYaml('b', [{ port: b.inboundPort, serviceAccount: 'b' }]),
        // Both point at C (which is sa/c) but expect sa/b: once by the ServiceEntry's
        // subjectAltNames, once by the endpoint's service account.
        meshServiceYaml('wrong-by-san', [{ port: c.inboundPort }], { subjectAltNames: [spiffe('b')] }),
        meshServiceYaml('wrong-by-sa', [{ port: c.inboundPort, serviceAccount: 'b' }]),
      ),
      { engine },
    );
    const agent = new Agent({ connections: 4 });
    t.teardown(() => agent.close());
    t.equal(engineOf(b, b.inboundPort), engine, `B's inbound is served by ${engine}`);
    t.equal(a.engine, engine, `A's outbound is served by ${engine}`);

    t.test('app A reaches B over mTLS and B sees A’s SPIFFE id in x-forwarded-client-cert', async (t) => {
      const before = appB.count;
      const res = await call(a, agent, '/hello?x=1', {
        host: B_HOST,
        // A client cannot speak for its caller: B removes this before adding the verified one.
        headers: { 'x-forwarded-client-cert': `URI=${spiffe('admin')}` },
      });
      t.equal(res.status, 200, res.text);
      const echo = echoOf(res.text);
      t.equal(echo?.name, 'b');
      t.equal(echo?.url, '/hello?x=1');
      const xfcc = xfccOf(echo);
      t.match(xfcc, URI_OF('a'), `XFCC names A: ${xfcc}`);
      t.notMatch(xfcc, /sa\/admin/, 'the forged XFCC from app A did not survive');
      t.equal(appB.count, before + 1);
    });

    t.test('B reports the request as mutual TLS from A', async (t) => {
      const metrics = await adminText(b, agent, '/metrics');
      const mtls = metricSum(
        metrics,
        'istio_requests_total',
        (l) =>
          l['reporter'] === 'destination' &&
          l['connection_security_policy'] === 'mutual_tls' &&
          l['source_principal'] === spiffe('a'),
      );
      t.ok(
        mtls >= 1,
        `istio_requests_total{reporter="destination",connection_security_policy="mutual_tls",source_principal="${spiffe('a')}"} = ${mtls}`,
      );
    });

    t.test('a client certificate from the mesh CA is accepted (the control case)', async (t) => {
      const res = await curlHttps(b.inboundPort, '/direct', { cert: curlCert });
      t.equal(res.status, 200, `curl: ${res.stderr}`);
      t.match(xfccOf(echoOf(res.body)), URI_OF('curl'));
      const s = await sClient(b.inboundPort, { cert: curlCert });
      t.equal(statusOf(s.stdout.slice(s.stdout.indexOf('HTTP/1.1'))), 200, 'openssl s_client gets 200 too');
    });

    t.test('plaintext to a STRICT port is refused', async (t) => {
      const before = appB.count;
      const raw = await plainExchange(b.inboundPort);
      t.equal(
        statusOf(raw.response),
        0,
        `no HTTP response (got ${JSON.stringify(raw.response.slice(0, 80))})`,
      );
      t.ok(raw.closed, 'the connection is closed');
      const res = await curlHttp(b.inboundPort, '/');
      t.equal(res.status, 0, 'curl gets no HTTP status');
      t.not(res.code, 0, `curl fails (${res.stderr.trim()})`);
      t.equal(appB.count, before, 'nothing reached the app');
    });

    t.test('TLS without a client certificate is refused', async (t) => {
      const x = await tlsExchange(b.inboundPort);
      t.equal(statusOf(x.response), 0, `no HTTP response (${x.error})`);
      const res = await curlHttps(b.inboundPort, '/');
      t.equal(res.status, 0);
      t.not(res.code, 0, `curl fails (${res.stderr.trim()})`);
    });

    t.test('a client certificate from another CA is refused', async (t) => {
      const before = appB.count;
      const res = await curlHttps(b.inboundPort, '/', { cert: foreign });
      t.equal(res.status, 0, 'curl --cert gets no HTTP status');
      t.not(res.code, 0, `curl fails (${res.stderr.trim()})`);
      const s = await sClient(b.inboundPort, { cert: foreign });
      t.notMatch(s.stdout, /HTTP\/1\.1 \d{3}/, 'openssl s_client gets no HTTP response');
      t.match(`${s.stdout}\n${s.stderr}`, /alert|error|errno/i, 'openssl s_client reports the refusal');
      t.equal(appB.count, before, 'nothing reached the app');
    });

    t.test('an expired client certificate is refused', async (t) => {
      const before = appB.count;
      const res = await curlHttps(b.inboundPort, '/', { cert: expired });
      t.equal(res.status, 0, 'curl --cert gets no HTTP status');
      t.not(res.code, 0, `curl fails (${res.stderr.trim()})`);
      const s = await sClient(b.inboundPort, { cert: expired });
      t.notMatch(s.stdout, /HTTP\/1\.1 \d{3}/, 'openssl s_client gets no HTTP response');
      t.equal(appB.count, before, 'nothing reached the app');
    });

    t.test('B presents its own SPIFFE id', async (t) => {
      const x = await tlsExchange(b.inboundPort, {
        cert: { certPem: curlCert.certPem, keyPem: curlCert.keyPem },
      });
      t.ok(x.handshake, x.error);
      t.match(x.serverSan, `URI:${spiffe('b')}`);
      t.match(x.protocol, /^TLSv1\.[23]$/);
      t.equal(statusOf(x.response), 200);
    });

    t.test('a client resuming its TLS session is served (as a sidecar reconnecting does)', async (t) => {
      const cert = { certPem: curlCert.certPem, keyPem: curlCert.keyPem };
      const first = await tlsExchange(b.inboundPort, { cert });
      t.equal(statusOf(first.response), 200, first.error);
      t.ok(first.session !== undefined, 'the server sent a session ticket');
      const again = await tlsExchange(b.inboundPort, {
        cert,
        ...(first.session !== undefined ? { session: first.session } : {}),
      });
      t.equal(statusOf(again.response), 200, `the resuming connection gets 200 (${again.error})`);
      t.match(xfccOf(echoOf(bodyOf(again.response))), URI_OF('curl'), 'with the caller’s identity');
    });

    t.test('a server presenting the wrong SPIFFE id is refused by the client side (UF)', async (t) => {
      const before = appC.count;
      for (const host of ['wrong-by-san', 'wrong-by-sa']) {
        const res = await call(a, agent, '/', { host: `${host}.default.svc.cluster.local` });
        t.equal(res.status, 503, `${host}: ${res.text}`);
        t.ok(hasFlag(res.flags, 'UF'), `${host}: flags ${res.flags} include UF`);
      }
      t.equal(appC.count, before, 'no request reached the app behind the impostor');
      const reason = a.logs.filter((l) => l.includes(spiffe('c')));
      t.ok(reason.length > 0, `sidecar A's log names the identity C presented (${spiffe('c')})`);
      t.match(reason.join('\n'), /sa\/b/, 'and the one it expected');
    });
  });
}
