import { join } from 'node:path';
import t from 'tap';
import { Agent } from 'undici';
import { deadPort } from '../helpers/backends.ts';
import { caInit } from '../helpers/mesh-ca.ts';
import { call } from '../helpers/mesh-client.ts';
import { makeLeaf } from '../helpers/openssl-pki.ts';
import { curlHttp, curlHttps, sClient, statusOf, tlsExchange } from '../helpers/tls-clients.ts';
import { echoApp, echoOf, readyListeners, spawnReady, tempDir, xfccOf } from '../helpers/zt-mesh.ts';
import { docs, meshServiceYaml, peerAuthenticationYaml, proxyYaml, spiffe } from '../helpers/zt-yaml.ts';

/**
 * Node mode (issue 4): one meshlet process serves two workloads, each with its own inbound port,
 * application and identity (issued in-process from one CA), and a shared outbound listener. Each
 * workload port presents that workload's certificate, each app sees the calls made to its port,
 * and PeerAuthentication applies per workload: STRICT for the namespace, PERMISSIVE for the
 * workload labelled `app: reviews`.
 */

t.test('node mode: two workloads in one process', async (t) => {
  const dir = tempDir(t);
  const ca = await caInit(join(dir, 'ca'));
  const client = await makeLeaf(ca, dir, 'client', { uri: spiffe('client') });
  const clientPem = { certPem: client.certPem, keyPem: client.keyPem };
  const [ratingsApp, reviewsApp] = await Promise.all([echoApp(t, 'ratings-app'), echoApp(t, 'reviews-app')]);
  const [ratingsPort, reviewsPort] = [await deadPort(), await deadPort()];
  const mesh = await spawnReady(
    t,
    docs(
      proxyYaml({
        mode: 'node',
        serviceAccount: 'node-proxy',
        identity: { kind: 'ca', caCertFile: ca.certFile, caKeyFile: ca.keyFile },
        workloads: [
          {
            name: 'ratings',
            serviceAccount: 'ratings',
            labels: { app: 'ratings' },
            inboundPort: ratingsPort,
            app: `127.0.0.1:${ratingsApp.port}`,
          },
          {
            name: 'reviews',
            serviceAccount: 'reviews',
            labels: { app: 'reviews' },
            inboundPort: reviewsPort,
            app: `127.0.0.1:${reviewsApp.port}`,
          },
        ],
      }),
      peerAuthenticationYaml('default', 'STRICT'),
      peerAuthenticationYaml('reviews-permissive', 'PERMISSIVE', { selector: { app: 'reviews' } }),
      meshServiceYaml('ratings', [{ port: ratingsPort, serviceAccount: 'ratings' }]),
    ),
    { engine: 'h1' },
  );
  const agent = new Agent({ connections: 2 });
  t.teardown(() => agent.close());

  t.test('one listener per workload port, and the shared outbound', async (t) => {
    const ports = readyListeners(mesh).map((l) => l.port);
    t.ok(ports.includes(ratingsPort), `ratings port ${ratingsPort} in ${ports.join(', ')}`);
    t.ok(ports.includes(reviewsPort), `reviews port ${reviewsPort}`);
    t.ok(mesh.outboundPort > 0);
  });

  t.test('each workload port presents that workload’s identity', async (t) => {
    for (const [port, sa] of [
      [ratingsPort, 'ratings'],
      [reviewsPort, 'reviews'],
    ] as const) {
      const x = await tlsExchange(port, { cert: clientPem });
      t.ok(x.handshake, x.error);
      t.match(x.serverSan, `URI:${spiffe(sa)}`, `port ${port} presents ${sa}`);
      t.notMatch(x.serverSan, sa === 'ratings' ? 'sa/reviews' : 'sa/ratings');
    }
    // The same, seen by openssl: the leaf certificate s_client prints first.
    const s = await sClient(reviewsPort, { cert: client, showcerts: true });
    t.match(s.stdout, /BEGIN CERTIFICATE/);
    t.match(s.stdout, /HTTP\/1\.1 200/);
  });

  t.test('each app sees the calls made to its workload port', async (t) => {
    const r1 = await curlHttps(ratingsPort, '/ratings/1', { cert: client });
    t.equal(r1.status, 200, r1.stderr);
    t.equal(echoOf(r1.body)?.name, 'ratings-app');
    t.match(xfccOf(echoOf(r1.body)), `URI=${spiffe('client')}`);
    const r2 = await curlHttps(reviewsPort, '/reviews/1', { cert: client });
    t.equal(r2.status, 200, r2.stderr);
    t.equal(echoOf(r2.body)?.name, 'reviews-app');
    t.match(xfccOf(echoOf(r2.body)), `URI=${spiffe('client')}`);
  });

  t.test('PeerAuthentication per workload: ratings STRICT, reviews PERMISSIVE', async (t) => {
    const before = ratingsApp.count;
    const strict = await curlHttp(ratingsPort, '/plain');
    t.equal(strict.status, 0, 'plaintext to the STRICT workload is refused');
    t.equal(ratingsApp.count, before);
    const permissive = await curlHttp(reviewsPort, '/plain');
    t.equal(permissive.status, 200, 'plaintext to the PERMISSIVE workload is served');
    t.equal(echoOf(permissive.body)?.name, 'reviews-app');
    const noCert = await tlsExchange(ratingsPort);
    t.equal(statusOf(noCert.response), 0, 'TLS without a client certificate to STRICT is refused');
  });

  t.test('the shared outbound listener reaches a workload over mTLS', async (t) => {
    const res = await call(mesh, agent, '/via-outbound', { host: 'ratings.default.svc.cluster.local' });
    t.equal(res.status, 200, res.text);
    const echo = echoOf(res.text);
    t.equal(echo?.name, 'ratings-app');
    // Every app of the node calls through this listener, so it presents the Proxy's own identity.
    t.match(xfccOf(echo), `URI=${spiffe('node-proxy')}`, 'over mTLS (STRICT port), as the Proxy itself');
  });
});
