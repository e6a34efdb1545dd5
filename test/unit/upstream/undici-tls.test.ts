/**
 * TLS origination by the undici fallback (src/upstream/undici-upstream.ts) against real HTTPS
 * servers on 127.0.0.1: mTLS with the server seeing our SPIFFE id, the server identity check, chain
 * failures, a pool per `poolKey` (and pruning of drained ones), session resumption, the handshake
 * under the connect timeout, unusable settings, and `endpoints`/`retain`/`close` over TLS pools.
 */
import t, { type Test } from 'tap';
import { createUndiciUpstream, type UndiciUpstream } from '../../../src/upstream/undici-upstream.ts';
import { attempt, get, makePki, meshTls, SA_A, SA_B, tlsServer } from './tls-servers.ts';
import { netServer } from './upstream-harness.ts';

const pki = await makePki(t);

/** undici frees a connection one event-loop turn after its response ended (see the client's header). */
function settled(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 10));
}

function client(t: Test, connectTimeoutMs?: number): UndiciUpstream {
  const c = createUndiciUpstream({
    keepAliveTimeoutMs: 30_000,
    ...(connectTimeoutMs === undefined ? {} : { connectTimeoutMs }),
  });
  t.teardown(() => c.close());
  return c;
}

t.test('mTLS through undici: our SPIFFE id, SNI, ALPN, and reuse of the connection', async (t) => {
  const s = await tlsServer(t, pki.serverB, { clientCa: pki.mesh });
  const c = client(t);
  const tls = meshTls(pki, pki.clientA, [SA_B]);
  const first = await attempt(c, { ...s.target, tls });
  t.equal(first.failure, null, first.detail);
  t.equal(first.body, `URI:${SA_A}`);
  t.equal(s.seen[0]?.sni, 'outbound_.9080_._.b.default.svc.cluster.local');
  t.equal(s.seen[0]?.alpn, 'istio-http/1.1');
  await settled();
  t.equal((await attempt(c, { ...s.target, tls })).status, 200);
  t.equal(s.seen.length, 1, 'one connection for both');
});

t.test('the wrong server identity fails as connect with the reason', async (t) => {
  const s = await tlsServer(t, pki.serverB, { clientCa: pki.mesh });
  const c = client(t);
  const o = await attempt(c, { ...s.target, tls: meshTls(pki, pki.clientA, [SA_A]) });
  t.equal(o.failure, 'connect');
  t.equal(o.detail, `server identity ${SA_B} does not match expected ${SA_A}`);
  t.equal(o.requestWritten, false);
  t.equal(s.requests(), 0);
});

t.test('another CA and an expired certificate are refused as connect', async (t) => {
  const foreign = await tlsServer(t, pki.foreignB, { clientCa: pki.mesh });
  const expired = await tlsServer(t, pki.expiredB, { clientCa: pki.mesh });
  const c = client(t);
  const tls = meshTls(pki, pki.clientA, [SA_B]);
  const a = await attempt(c, { ...foreign.target, tls });
  t.equal(a.failure, 'connect');
  t.match(a.detail, /^server certificate rejected: .*\(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)$/);
  const b = await attempt(c, { ...expired.target, tls });
  t.equal(b.failure, 'connect');
  t.equal(b.detail, 'server certificate rejected: certificate has expired (CERT_HAS_EXPIRED)');
  t.equal(foreign.requests() + expired.requests(), 0);
});

t.test('a pool per poolKey; a new key closes the drained pools of the endpoint', async (t) => {
  const s = await tlsServer(t, pki.serverB, { clientCa: pki.mesh });
  const c = client(t);
  const k1 = meshTls(pki, pki.clientA, [SA_B], 'k1');
  const k2 = meshTls(pki, pki.clientA2, [SA_B], 'k2');
  t.equal((await attempt(c, { ...s.target, tls: k1 })).status, 200);
  t.equal((await attempt(c, { ...s.target, tls: k2 })).status, 200);
  await settled();
  t.equal((await attempt(c, { ...s.target, tls: k1 })).status, 200);
  t.equal(s.seen.length, 2, 'two keys, two connections, each reused');
  t.not(s.seen[0]?.peerSerial, s.seen[1]?.peerSerial, 'each with its own client certificate');
  t.same(c.endpoints(), [`127.0.0.1:${s.target.port}`]);
  // k1 and k2 still hold a connection each: a third key leaves them alone.
  t.equal((await attempt(c, { ...s.target, tls: meshTls(pki, pki.clientA, [SA_B], 'k3') })).status, 200);
  t.equal(s.open(), 3);
  // Connections closed by the server (k1..k3 all drained), a fourth key closes those pools.
  s.server.closeAllConnections();
  while (s.open() > 0) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 20));
  t.equal((await attempt(c, { ...s.target, tls: meshTls(pki, pki.clientA, [SA_B], 'k4') })).status, 200);
  t.equal((await attempt(c, { ...s.target, tls: k1 })).status, 200, 'a pruned key comes back as a new pool');
  t.equal(s.seen.length, 5);
});

t.test('plaintext and TLS pools of one endpoint are listed once and retained together', async (t) => {
  const s = await tlsServer(t, pki.serverB, { clientCa: pki.mesh });
  const c = client(t);
  t.equal((await attempt(c, { ...s.target, tls: meshTls(pki, pki.clientA, [SA_B]) })).status, 200);
  const plain = await attempt(c, s.target);
  t.equal(plain.failure, 'reset', 'plaintext to a TLS port is its own pool (and fails)');
  t.same(c.endpoints(), [`127.0.0.1:${s.target.port}`]);
  c.retain(new Set());
  t.same(c.endpoints(), []);
  while (s.open() > 0) await new Promise((r) => setTimeout(r, 5));
  t.equal(s.open(), 0, 'the TLS pool closed its connection');
});

t.test('sessions are resumed on new connections of a pool', async (t) => {
  const s = await tlsServer(t, pki.serverB, { clientCa: pki.mesh });
  const c = client(t);
  const tls = meshTls(pki, pki.clientA, [SA_B]);
  const once = get({ pool: { maxRequestsPerConnection: 1 } });
  t.equal((await attempt(c, { ...s.target, tls }, once)).status, 200);
  t.equal((await attempt(c, { ...s.target, tls }, once)).status, 200);
  t.equal(s.seen.length, 2);
  t.equal(s.seen[1]?.resumed, true);
  t.equal(s.seen[1]?.peer, `URI:${SA_A}`);
});

t.test('the client connect timeout covers the handshake', async (t) => {
  const silent = await netServer(t, () => {});
  const port = silent.target.port;
  const c = client(t, 150);
  const o = await attempt(c, { address: '127.0.0.1', port, tls: meshTls(pki, pki.clientA, [SA_B]) });
  t.equal(o.failure, 'timeout');
  t.match(o.detail, /connect timeout after 150 ms/);
  t.equal(o.requestWritten, false);
});

t.test('unusable TLS settings fail as connect', async (t) => {
  const c = client(t);
  const o = await attempt(c, {
    address: '127.0.0.1',
    port: 9,
    tls: { poolKey: 'bad', certChainPem: 'garbage', keyPem: 'garbage', expectedSans: [] },
  });
  t.equal(o.failure, 'connect');
  t.match(o.detail, /^unusable TLS settings: /);
  t.same(c.endpoints(), [], 'no pool was made');
});
