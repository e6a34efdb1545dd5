/**
 * TLS origination by the lean client (src/upstream/h1-client.ts) against real HTTPS servers on
 * 127.0.0.1 with certificates made by `openssl`: mTLS with the server seeing our SPIFFE id, SNI and
 * ALPN; the server identity check (wrong SPIFFE id, another CA, an expired certificate, DNS and
 * wildcard names, insecureSkipVerify); a server refusing us for want of a client certificate; pools
 * per endpoint and `poolKey` (reuse, separation, rotation while a request is in flight); session
 * resumption; the connect timeout over the handshake; unusable settings; the undici fallback.
 */
import t, { type Test } from 'tap';
import type { UpstreamTls } from '../../../src/tls/identity-types.ts';
import { createH1Upstream, type H1Upstream } from '../../../src/upstream/h1-client.ts';
import { createUndiciUpstream } from '../../../src/upstream/undici-upstream.ts';
import type { UpstreamClient } from '../../../src/upstream/upstream-types.ts';
import { attempt, get, makePki, meshTls, SA_A, SA_B, tlsServer } from './tls-servers.ts';
import { netServer } from './upstream-harness.ts';

const pki = await makePki(t);

const unusedFallback: UpstreamClient = {
  send() {
    throw new Error('fallback used');
  },
  close: async () => {},
};

function client(t: Test, fallback: UpstreamClient = unusedFallback): H1Upstream {
  const c = createH1Upstream({ fallback, keepAliveTimeoutMs: 30_000 });
  t.teardown(() => c.close());
  return c;
}

t.test('mTLS: the server requires our certificate, sees our SPIFFE id, SNI and ALPN', async (t) => {
  const s = await tlsServer(t, pki.serverB, { clientCa: pki.mesh });
  const c = client(t);
  const tls = meshTls(pki, pki.clientA, [SA_B]);
  const first = await attempt(c, { ...s.target, tls });
  t.equal(first.failure, null, first.detail);
  t.equal(first.status, 200);
  t.equal(first.body, `URI:${SA_A}`, 'the application sees the caller identity');
  t.equal(s.seen.length, 1);
  t.equal(s.seen[0]?.sni, 'outbound_.9080_._.b.default.svc.cluster.local');
  t.equal(s.seen[0]?.alpn, 'istio-http/1.1');
  const second = await attempt(c, { ...s.target, tls }, get({ method: 'POST', path: '/again' }));
  t.equal(second.status, 200);
  t.equal(s.seen.length, 1, 'the second request reused the connection');
  t.equal(c.connections(`127.0.0.1:${s.target.port}`), 1);
});

t.test('a server with the wrong SPIFFE id fails the attempt as connect, with the reason', async (t) => {
  const s = await tlsServer(t, pki.serverB, { clientCa: pki.mesh });
  const c = client(t);
  const o = await attempt(c, { ...s.target, tls: meshTls(pki, pki.clientA, [SA_A]) });
  t.equal(o.failure, 'connect');
  t.equal(o.detail, `server identity ${SA_B} does not match expected ${SA_A}`);
  t.equal(o.requestWritten, false);
  t.equal(s.requests(), 0, 'nothing reached the application');
  t.equal(c.connections(`127.0.0.1:${s.target.port}`), 0, 'the socket is gone');
  const several = await attempt(c, {
    ...s.target,
    tls: meshTls(pki, pki.clientA, [SA_A, 'spiffe://cluster.local/ns/x/sa/y'], 'k2'),
  });
  t.equal(
    several.detail,
    `server identity ${SA_B} does not match expected one of ${SA_A}, spiffe://cluster.local/ns/x/sa/y`,
  );
  const any = await attempt(c, { ...s.target, tls: meshTls(pki, pki.clientA, [SA_A, SA_B], 'k3') });
  t.equal(any.status, 200, 'any one of the expected names is enough');
});

t.test('empty expectedSans checks the chain only', async (t) => {
  const s = await tlsServer(t, pki.serverB, { clientCa: pki.mesh });
  const c = client(t);
  const o = await attempt(c, { ...s.target, tls: meshTls(pki, pki.clientA, []) });
  t.equal(o.status, 200);
});

t.test('a server certificate from another CA is refused', async (t) => {
  const s = await tlsServer(t, pki.foreignB, { clientCa: pki.mesh });
  const c = client(t);
  const o = await attempt(c, { ...s.target, tls: meshTls(pki, pki.clientA, [SA_B]) });
  t.equal(o.failure, 'connect');
  t.match(o.detail, /^server certificate rejected: .*\(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)$/);
  t.equal(o.requestWritten, false);
  t.equal(s.requests(), 0);
});

t.test('an expired server certificate is refused', async (t) => {
  const s = await tlsServer(t, pki.expiredB, { clientCa: pki.mesh });
  const c = client(t);
  const o = await attempt(c, { ...s.target, tls: meshTls(pki, pki.clientA, [SA_B]) });
  t.equal(o.failure, 'connect');
  t.equal(o.detail, 'server certificate rejected: certificate has expired (CERT_HAS_EXPIRED)');
  t.equal(s.requests(), 0);
});

t.test('insecureSkipVerify skips the chain and the identity checks', async (t) => {
  const s = await tlsServer(t, pki.foreignB);
  const c = client(t);
  const o = await attempt(c, {
    ...s.target,
    tls: { poolKey: 'insecure', expectedSans: [SA_A], insecureSkipVerify: true },
  });
  t.equal(o.failure, null, o.detail);
  t.equal(o.status, 200);
});

t.test('SIMPLE: the server verified with given anchors and its DNS name (wildcards too)', async (t) => {
  const s = await tlsServer(t, pki.serverB, { alpn: ['http/1.1'] });
  const c = client(t);
  const simple = (poolKey: string, name: string): UpstreamTls => ({
    poolKey,
    caPem: pki.mesh.certPem,
    servername: name,
    expectedSans: [name],
  });
  const exact = await attempt(c, { ...s.target, tls: simple('a', 'svc.example.test') });
  t.equal(exact.status, 200, exact.detail);
  t.equal(exact.body, '', 'no client certificate was sent');
  t.equal(s.seen.at(-1)?.sni, 'svc.example.test');
  const upper = await attempt(c, { ...s.target, tls: simple('b', 'SVC.Example.Test') });
  t.equal(upper.status, 200, 'DNS names compare without case');
  const wild = await attempt(c, { ...s.target, tls: simple('c', 'api.wild.example.test') });
  t.equal(wild.status, 200, 'a wildcard covers one label');
  const deep = await attempt(c, { ...s.target, tls: simple('d', 'a.b.wild.example.test') });
  t.equal(deep.failure, 'connect', 'but not two');
  t.match(deep.detail, /does not match expected a\.b\.wild\.example\.test$/);
  const bare = await attempt(c, { ...s.target, tls: simple('e', 'wild.example.test') });
  t.equal(bare.failure, 'connect', 'nor the bare domain');
  const ip = await attempt(c, {
    ...s.target,
    tls: { poolKey: 'f', caPem: pki.mesh.certPem, servername: '127.0.0.1', expectedSans: [] },
  });
  t.equal(ip.status, 200, 'an IP servername is not sent as SNI');
  t.equal(s.seen.at(-1)?.sni, '');
});

t.test('SIMPLE without anchors uses the system store, which does not know a test CA', async (t) => {
  const s = await tlsServer(t, pki.serverB);
  const c = client(t);
  const o = await attempt(c, { ...s.target, tls: { poolKey: 'sys', expectedSans: [] } });
  t.equal(o.failure, 'connect');
  t.match(o.detail, /^server certificate rejected: /);
});

t.test('a server that refuses us for want of a client certificate: connect, not reset', async (t) => {
  const s = await tlsServer(t, pki.serverB, { clientCa: pki.mesh });
  const c = client(t);
  const o = await attempt(c, {
    ...s.target,
    tls: { poolKey: 'nocert', caPem: pki.mesh.certPem, expectedSans: [SA_B] },
  });
  t.equal(o.failure, 'connect');
  t.match(
    o.detail,
    /^TLS handshake failed: .*certificate required.*\(ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED\)$/,
  );
  t.equal(o.requestWritten, false, 'the application never saw it');
  t.equal(s.requests(), 0);
  const untrusted = await attempt(c, {
    ...s.target,
    tls: { ...meshTls(pki, pki.foreignB, [SA_B]), poolKey: 'foreign' },
  });
  // Limit: a Node server checks the chain of a client certificate after the handshake and just closes
  // the connection, with no alert, so this cannot be told from any other close: a reset.
  t.equal(untrusted.failure, 'reset', 'a client certificate from another CA: the server just closes');
  t.equal(untrusted.detail, 'connection closed by the upstream');
  t.equal(s.requests(), 0);
});

t.test('pools per endpoint and poolKey: same key reuses, another key connects anew', async (t) => {
  const s = await tlsServer(t, pki.serverB, { clientCa: pki.mesh });
  const c = client(t);
  const id = `127.0.0.1:${s.target.port}`;
  const k1 = meshTls(pki, pki.clientA, [SA_B], 'k1');
  const k2 = meshTls(pki, pki.clientA, [SA_B], 'k2');
  t.equal((await attempt(c, { ...s.target, tls: k1 })).status, 200);
  t.equal((await attempt(c, { ...s.target, tls: k2 })).status, 200);
  t.equal(s.seen.length, 2, 'two keys: two connections');
  t.equal(c.connections(id), 2);
  t.equal((await attempt(c, { ...s.target, tls: k1 })).status, 200);
  t.equal(
    (await attempt(c, { ...s.target, tls: { ...k2 } })).status,
    200,
    'an equal object with the same key',
  );
  t.equal(s.seen.length, 2, 'each key reused its own connection');
  t.equal(s.requests(), 4);
  t.same(c.endpoints(), [id]);
  // retain() drops the endpoint with every pool of it.
  c.retain(new Set());
  t.equal(c.connections(id), null);
});

t.test('a rotated client certificate: new connections use it, the request in flight finishes', async (t) => {
  const s = await tlsServer(t, pki.serverB, { clientCa: pki.mesh, delayMs: 150 });
  const c = client(t);
  const before = meshTls(pki, pki.clientA, [SA_B], 'istio|v1');
  const after = meshTls(pki, pki.clientA2, [SA_B], 'istio|v2');
  const slow = attempt(c, { ...s.target, tls: before });
  // Once the old connection is up, the identity rotates.
  while (s.seen.length < 1) await new Promise((r) => setTimeout(r, 5));
  const fresh = await attempt(c, { ...s.target, tls: after });
  const old = await slow;
  t.equal(old.status, 200, 'the old connection finished its request');
  t.equal(fresh.status, 200);
  t.equal(s.seen.length, 2);
  t.not(s.seen[0]?.peerSerial, s.seen[1]?.peerSerial, 'the new connection carried the new certificate');
  t.equal(c.connections(`127.0.0.1:${s.target.port}`), 2, 'the old connection stays until it idles out');
  // A third key prunes the pools without sockets only: both keys above still hold one.
  t.equal((await attempt(c, { ...s.target, tls: after })).status, 200);
  t.equal(s.seen.length, 2, 'v2 reused its connection');
});

t.test('keys rotating on every request (each socket closed after it): nothing is left open', async (t) => {
  const s = await tlsServer(t, pki.serverB, { clientCa: pki.mesh });
  const c = client(t);
  const id = `127.0.0.1:${s.target.port}`;
  const once = { maxRequestsPerConnection: 1 };
  for (let v = 1; v <= 5; v++) {
    const o = await attempt(
      c,
      { ...s.target, tls: meshTls(pki, pki.clientA, [SA_B], `v${v}`) },
      get({ pool: once }),
    );
    t.equal(o.status, 200);
  }
  await new Promise((r) => setTimeout(r, 20));
  t.equal(c.connections(id), 0, 'every connection closed after its one request');
  t.equal(s.seen.length, 5);
});

t.test('TLS sessions are resumed on later connections of a pool', async (t) => {
  const s = await tlsServer(t, pki.serverB, { clientCa: pki.mesh });
  const c = client(t);
  const tls = meshTls(pki, pki.clientA, [SA_B]);
  const once = get({ pool: { maxRequestsPerConnection: 1 } });
  t.equal((await attempt(c, { ...s.target, tls }, once)).status, 200);
  t.equal((await attempt(c, { ...s.target, tls }, once)).status, 200);
  t.equal(s.seen.length, 2);
  t.equal(s.seen[0]?.resumed, false);
  t.equal(s.seen[1]?.resumed, true, 'the second handshake resumed the first session');
  t.equal(s.seen[1]?.peer, `URI:${SA_A}`, 'and the server still knows who we are');
});

t.test(
  'TLS 1.2: mTLS, the identity check, and resumption (the ticket comes during the handshake)',
  async (t) => {
    const s = await tlsServer(t, pki.serverB, { clientCa: pki.mesh, tls12: true });
    const c = client(t);
    const tls = meshTls(pki, pki.clientA, [SA_B]);
    const once = get({ pool: { maxRequestsPerConnection: 1 } });
    const first = await attempt(c, { ...s.target, tls }, once);
    t.equal(first.body, `URI:${SA_A}`, first.detail);
    t.equal(s.seen[0]?.protocol, 'TLSv1.2');
    t.equal((await attempt(c, { ...s.target, tls }, once)).status, 200);
    t.equal(s.seen[1]?.resumed, true);
    const wrong = await attempt(c, { ...s.target, tls: meshTls(pki, pki.clientA, [SA_A], 'wrong') });
    t.equal(wrong.failure, 'connect');
    t.equal(wrong.detail, `server identity ${SA_B} does not match expected ${SA_A}`);
  },
);

t.test('a session is offered only to connections expecting the names it was verified for', async (t) => {
  const s = await tlsServer(t, pki.serverB, { clientCa: pki.mesh });
  const c = client(t);
  const once = get({ pool: { maxRequestsPerConnection: 1 } });
  const tls = meshTls(pki, pki.clientA, [SA_B], 'same-key');
  t.equal((await attempt(c, { ...s.target, tls }, once)).status, 200);
  // Same pool key, other expected names (a caller breaking the poolKey contract): no resumption, so
  // the identity is checked on the new handshake.
  const other = { ...tls, expectedSans: [SA_A] };
  const o = await attempt(c, { ...s.target, tls: other }, once);
  t.equal(o.failure, 'connect');
  t.equal(o.detail, `server identity ${SA_B} does not match expected ${SA_A}`, 'checked, so not resumed');
});

t.test('more distinct trust material than the context cache holds still connects', async (t) => {
  const s = await tlsServer(t, pki.serverB, { clientCa: pki.mesh });
  const c = client(t);
  for (let i = 0; i < 34; i++) {
    // Text outside the PEM block is ignored by OpenSSL but makes the material distinct.
    const tls = { ...meshTls(pki, pki.clientA, [SA_B], `m${i}`), caPem: `${pki.mesh.certPem}# ${i}\n` };
    const o = await attempt(c, { ...s.target, tls }, get({ pool: { maxRequestsPerConnection: 1 } }));
    t.equal(o.status, 200, o.detail);
  }
});

t.test('the connect timeout covers the handshake', async (t) => {
  // Accepts TCP, never answers the ClientHello.
  const silent = await netServer(t, () => {});
  const port = silent.target.port;
  const c = client(t);
  const started = Date.now();
  const o = await attempt(
    c,
    { address: '127.0.0.1', port, tls: meshTls(pki, pki.clientA, [SA_B]) },
    get({ pool: { connectTimeoutMs: 150 } }),
  );
  t.equal(o.failure, 'timeout');
  t.equal(o.detail, 'connect timeout after 150 ms');
  t.ok(Date.now() - started < 2_000);
  t.equal(silent.connections(), 1, 'TCP was up: only the handshake was waited for');
});

t.test('unusable TLS settings fail every attempt as connect, without a socket', async (t) => {
  const s = await tlsServer(t, pki.serverB, { clientCa: pki.mesh });
  const c = client(t);
  const bad: UpstreamTls = {
    poolKey: 'bad',
    certChainPem: 'not a certificate',
    keyPem: 'nor a key',
    expectedSans: [],
  };
  const o = await attempt(c, { ...s.target, tls: bad });
  t.equal(o.failure, 'connect');
  t.match(o.detail, /^unusable TLS settings: /);
  t.equal(o.requestWritten, false);
  t.equal(s.seen.length, 0);
  const again = await attempt(c, { ...s.target, tls: bad });
  t.equal(again.detail, o.detail, 'the same reason, from the cache');
});

t.test('requests the lean path does not take go to the undici fallback with their TLS', async (t) => {
  const s = await tlsServer(t, pki.serverB, { clientCa: pki.mesh });
  const fallback = createUndiciUpstream({ keepAliveTimeoutMs: 30_000 });
  const c = client(t, fallback);
  const tls = meshTls(pki, pki.clientA, [SA_B]);
  const o = await attempt(c, { ...s.target, tls }, get({ method: 'PUT', expectContinue: true }));
  t.equal(o.failure, null, o.detail);
  t.equal(o.status, 200);
  t.equal(o.body, `URI:${SA_A}`);
  t.same(c.endpoints(), [], 'the lean path knows no endpoint');
  t.same(fallback.endpoints(), [`127.0.0.1:${s.target.port}`]);
});
