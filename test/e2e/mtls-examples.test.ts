import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { Agent } from 'undici';
import { deadPort } from '../helpers/backends.ts';
import { caInit, caIssue } from '../helpers/mesh-ca.ts';
import { call } from '../helpers/mesh-client.ts';
import { REPO_ROOT } from '../helpers/spawn-meshlet.ts';
import { curlHttp, curlHttps, tlsExchange } from '../helpers/tls-clients.ts';
import { echoApp, echoOf, spawnReady, tempDir, xfccOf } from '../helpers/zt-mesh.ts';
import { docs, peerAuthenticationYaml, proxyYaml, spiffe } from '../helpers/zt-yaml.ts';

/**
 * The zero-trust examples in config-examples/ do what their comment blocks say, run as they are
 * except for the CA folder (a temp one instead of /tmp/meshlet-ca) and the fixed ports (free ones).
 */

const example = (name: string): string => readFileSync(join(REPO_ROOT, 'config-examples', name), 'utf8');

/** Replaces every occurrence of each key by its value. */
function substitute(text: string, pairs: Readonly<Record<string, string>>): string {
  let out = text;
  for (const [from, to] of Object.entries(pairs)) out = out.split(from).join(to);
  return out;
}

t.test('config-examples/sidecar-mtls.yaml', async (t) => {
  const dir = tempDir(t);
  const ca = await caInit(join(dir, 'ca'));
  const [productpage, reviews] = await Promise.all([
    caIssue(ca, 'productpage', join(dir, 'productpage')),
    caIssue(ca, 'reviews', join(dir, 'reviews')),
  ]);
  const [app, detailsApp] = await Promise.all([echoApp(t, 'ratings'), echoApp(t, 'details')]);
  // The details sidecar the example's ServiceEntry points at, with the identity it expects.
  const details = await spawnReady(
    t,
    docs(
      proxyYaml({
        serviceAccount: 'details',
        identity: { kind: 'ca', caCertFile: ca.certFile, caKeyFile: ca.keyFile },
      }),
      peerAuthenticationYaml('default', 'STRICT'),
    ),
    { engine: 'h1', args: ['--app', `127.0.0.1:${detailsApp.port}`] },
  );
  const mesh = await spawnReady(
    t,
    substitute(example('sidecar-mtls.yaml'), {
      '/tmp/meshlet-ca/': `${ca.dir}/`,
      'http: 15106': `http: ${details.inboundPort}`,
    }),
    { engine: 'h1', args: ['--app', `127.0.0.1:${app.port}`] },
  );
  const agent = new Agent({ connections: 2 });
  t.teardown(() => agent.close());

  const ok = await curlHttps(mesh.inboundPort, '/ratings/1', { cert: productpage });
  t.equal(ok.status, 200, `productpage GET /ratings/1: ${ok.stderr}`);
  t.match(xfccOf(echoOf(ok.body)), `URI=${spiffe('productpage')}`);
  const otherPath = await curlHttps(mesh.inboundPort, '/details/1', { cert: productpage });
  t.equal(otherPath.status, 403, 'productpage on another path');
  const denied = await curlHttps(mesh.inboundPort, '/ratings/1', { cert: reviews });
  t.equal(denied.status, 403, 'reviews');
  t.equal(denied.body.trim(), 'RBAC: access denied');
  const plain = await curlHttp(mesh.inboundPort, '/ratings/1');
  t.equal(plain.status, 0, 'plaintext is refused');
  const served = await tlsExchange(mesh.inboundPort, {
    cert: { certPem: productpage.certPem, keyPem: productpage.keyPem },
  });
  t.match(served.serverSan, `URI:${spiffe('ratings')}`);
  const out = await call(mesh, agent, '/', { host: 'details:9080' });
  t.equal(out.status, 200, `outbound to details over mTLS: ${out.text}`);
  t.match(xfccOf(echoOf(out.text)), `URI=${spiffe('ratings')}`, 'details sees ratings calling');
});

t.test('config-examples/node-mode.yaml', async (t) => {
  const dir = tempDir(t);
  const ca = await caInit(join(dir, 'ca'));
  const [reviewsCert, otherCert] = await Promise.all([
    caIssue(ca, 'reviews', join(dir, 'reviews')),
    caIssue(ca, 'other', join(dir, 'other')),
  ]);
  const [ratingsApp, reviewsApp] = await Promise.all([echoApp(t, 'ratings-app'), echoApp(t, 'reviews-app')]);
  const [ratingsPort, reviewsPort] = [await deadPort(), await deadPort()];
  const mesh = await spawnReady(
    t,
    substitute(example('node-mode.yaml'), {
      '/tmp/meshlet-ca/': `${ca.dir}/`,
      '15006': String(ratingsPort),
      '15007': String(reviewsPort),
      '127.0.0.1:9080': `127.0.0.1:${ratingsApp.port}`,
      '127.0.0.1:9081': `127.0.0.1:${reviewsApp.port}`,
    }),
    { engine: 'h1' },
  );
  const agent = new Agent({ connections: 2 });
  t.teardown(() => agent.close());
  const pem = { certPem: reviewsCert.certPem, keyPem: reviewsCert.keyPem };
  t.match((await tlsExchange(ratingsPort, { cert: pem })).serverSan, `URI:${spiffe('ratings')}`);
  t.match((await tlsExchange(reviewsPort, { cert: pem })).serverSan, `URI:${spiffe('reviews')}`);
  const fromReviews = await curlHttps(ratingsPort, '/', { cert: reviewsCert });
  t.equal(fromReviews.status, 200, 'ratings: mTLS from reviews');
  t.equal(echoOf(fromReviews.body)?.name, 'ratings-app');
  t.equal((await curlHttps(ratingsPort, '/', { cert: otherCert })).status, 403, 'ratings: another identity');
  t.equal((await curlHttp(ratingsPort, '/')).status, 0, 'ratings: plaintext refused');
  const plainReviews = await curlHttp(reviewsPort, '/');
  t.equal(plainReviews.status, 200, 'reviews: plaintext served');
  t.equal(echoOf(plainReviews.body)?.name, 'reviews-app');
  t.equal((await curlHttps(reviewsPort, '/', { cert: reviewsCert })).status, 200, 'reviews: mTLS served');
  const out = await call(mesh, agent, '/', { host: 'reviews:9080' });
  t.equal(out.status, 200, `outbound to the reviews workload: ${out.text}`);
  t.equal(echoOf(out.text)?.name, 'reviews-app');
  t.match(
    xfccOf(echoOf(out.text)),
    `URI=${spiffe('node-proxy')}`,
    'over mTLS, with the Proxy’s own identity',
  );
});
