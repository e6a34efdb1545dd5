import type { AddressInfo } from 'node:net';
import { createServer as createNetServer } from 'node:net';
import { connect, createSecureContext, type SecureContext, TLSSocket } from 'node:tls';
import t from 'tap';
import type { IdentitySource, PeerIdentity, WorkloadCertificate } from '../../../src/tls/identity-types.ts';
import { createRootCa, issueWorkloadCertificate } from '../../../src/tls/pki.ts';
import {
  certificateFingerprint,
  clientSecureContext,
  ISTIO_ALPN,
  inboundSecureContext,
  istioMutualTls,
  serverSecureContext,
} from '../../../src/tls/secure-context.ts';
import { peerIdentityFromCertificate, spiffeId } from '../../../src/tls/spiffe.ts';

const ca = await createRootCa({ trustDomain: 'cluster.local' });
const foreign = await createRootCa({ trustDomain: 'cluster.local' });
const issue = (sa: string, authority = ca): Promise<WorkloadCertificate> =>
  issueWorkloadCertificate(authority, spiffeId('cluster.local', 'default', sa), { ttlMs: 600_000 });
const server = await issue('server');
const client = await issue('client');

interface Outcome {
  readonly ok: boolean;
  readonly error?: string;
  readonly protocol?: string | null;
  readonly serverSawPeer?: PeerIdentity | null;
  readonly clientSawServer?: PeerIdentity | null;
}

/** One mTLS handshake on loopback: server with `serverCtx` requiring client certificates. */
async function handshake(serverCtx: SecureContext, clientCtx: SecureContext): Promise<Outcome> {
  let serverSawPeer: PeerIdentity | null = null;
  // tls.createServer ignores a `secureContext` option; a listener wraps accepted sockets itself
  // (as the PERMISSIVE listener does after sniffing the first bytes). A standalone server TLSSocket
  // completes the handshake whatever the client certificate and leaves the verdict to its owner:
  // the verify result is read from the handle, as src/listener/inbound-tls.ts does.
  const srv = createNetServer((raw) => {
    const s = new TLSSocket(raw, {
      isServer: true,
      secureContext: serverCtx,
      requestCert: true,
      rejectUnauthorized: true,
    });
    s.on('error', () => s.destroy());
    s.on('secure', () => {
      const handle = (s as unknown as { _handle: { verifyError(): Error | null } })._handle;
      if (handle.verifyError() !== null) {
        s.destroy();
        return;
      }
      serverSawPeer = peerIdentityFromCertificate(s.getPeerCertificate());
      s.end('hi');
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  try {
    return await new Promise<Outcome>((ok) => {
      const timer = setTimeout(() => ok({ ok: false, error: 'timeout' }), 5000);
      const sock = connect({
        host: '127.0.0.1',
        port: (srv.address() as AddressInfo).port,
        secureContext: clientCtx,
        checkServerIdentity: () => undefined,
      });
      sock.once('data', () => {
        clearTimeout(timer);
        const out: Outcome = {
          ok: true,
          protocol: sock.getProtocol(),
          serverSawPeer,
          clientSawServer: peerIdentityFromCertificate(sock.getPeerCertificate()),
        };
        sock.destroy();
        ok(out);
      });
      sock.once('error', (err) => {
        clearTimeout(timer);
        sock.destroy();
        ok({ ok: false, error: err.message });
      });
    });
  } finally {
    srv.close();
  }
}

const bundle = ca.certPem;

t.test('contexts are built once per certificate and bundle', async (t) => {
  const a = serverSecureContext(server, bundle);
  t.equal(serverSecureContext(server, bundle), a, 'cached');
  t.not(clientSecureContext(server, bundle), a, 'server and client caches are separate');
  const withMore = serverSecureContext(server, bundle + foreign.certPem);
  t.not(withMore, a, 'a new bundle builds a new context');
  t.equal(serverSecureContext(server, bundle + foreign.certPem), withMore);
  const rotated = await issue('server');
  t.not(serverSecureContext(rotated, bundle), withMore, 'a rotated certificate builds a new context');
});

t.test(
  'mTLS between contexts of one CA: both sides see SPIFFE ids, TLS 1.3 by default, 1.2 accepted',
  async (t) => {
    const r = await handshake(serverSecureContext(server, bundle), clientSecureContext(client, bundle));
    t.ok(r.ok, r.error ?? 'handshake');
    t.equal(r.protocol, 'TLSv1.3');
    t.equal(r.serverSawPeer?.principal, 'cluster.local/ns/default/sa/client');
    t.equal(r.clientSawServer?.spiffeId, 'spiffe://cluster.local/ns/default/sa/server');
    // The protocol range is a property of the context: a client limited to TLS 1.2.
    const tls12 = createSecureContext({
      cert: client.certChainPem,
      key: client.keyPem,
      ca: bundle,
      maxVersion: 'TLSv1.2',
    });
    const r12 = await handshake(serverSecureContext(server, bundle), tls12);
    t.ok(r12.ok, r12.error ?? 'handshake');
    t.equal(r12.protocol, 'TLSv1.2');
  },
);

t.test('peers from another CA are refused on both sides; several anchors accept both', async (t) => {
  const stranger = await issue('stranger', foreign);
  const refusedClient = await handshake(
    serverSecureContext(server, bundle),
    clientSecureContext(stranger, foreign.certPem),
  );
  t.notOk(refusedClient.ok, 'server refuses a client of another CA');
  const refusedServer = await handshake(
    serverSecureContext(stranger, bundle),
    clientSecureContext(client, bundle),
  );
  t.notOk(refusedServer.ok, 'client refuses a server of another CA');
  t.match(refusedServer.error, /certificate|verify/i);
  const both = ca.certPem + foreign.certPem;
  const accepted = await handshake(serverSecureContext(server, both), clientSecureContext(stranger, both));
  t.ok(accepted.ok, accepted.error ?? 'handshake');
  t.equal(accepted.serverSawPeer?.serviceAccount, 'stranger');
});

t.test('an empty bundle trusts nothing (not the public roots)', async (t) => {
  const r = await handshake(serverSecureContext(server, bundle), clientSecureContext(client, ''));
  t.notOk(r.ok);
  t.match(r.error, /self-signed certificate in certificate chain|unable to (get local issuer|verify)/);
});

t.test('inboundSecureContext follows the source', async (t) => {
  let cert: WorkloadCertificate | null = null;
  const source: IdentitySource = {
    current: () => cert,
    trustBundlePem: () => bundle,
    onChange: () => {},
    rotations: 0,
    lastError: null,
    close: () => {},
  };
  const ctx = inboundSecureContext(source);
  t.equal(ctx(), null, 'no certificate: no context');
  cert = server;
  t.equal(ctx(), serverSecureContext(server, bundle));
});

t.test('ISTIO_MUTUAL UpstreamTls and its pool key', async (t) => {
  const fp = certificateFingerprint(client);
  t.match(fp, /^[0-9a-f]{16}$/);
  t.equal(certificateFingerprint(client), fp, 'stable');
  const sans = ['spiffe://cluster.local/ns/default/sa/server'];
  const up = istioMutualTls(client, bundle, { expectedSans: sans, servername: 'reviews' });
  t.same(up, {
    poolKey: up.poolKey,
    certChainPem: client.certChainPem,
    keyPem: client.keyPem,
    caPem: bundle,
    alpn: ISTIO_ALPN,
    expectedSans: sans,
    servername: 'reviews',
  });
  t.match(up.poolKey, fp);
  t.notOk('servername' in istioMutualTls(client, bundle, { expectedSans: sans }), 'no SNI unless asked');
  const keys = new Set([
    up.poolKey,
    istioMutualTls(client, bundle, { expectedSans: sans }).poolKey,
    istioMutualTls(client, bundle, { expectedSans: [] }).poolKey,
    istioMutualTls(client, bundle + foreign.certPem, { expectedSans: sans, servername: 'reviews' }).poolKey,
    istioMutualTls(await issue('client'), bundle, { expectedSans: sans, servername: 'reviews' }).poolKey,
  ]);
  t.equal(keys.size, 5, 'SNI, SANs, bundle and certificate each give their own pool');
  t.equal(istioMutualTls(client, bundle, { expectedSans: sans, servername: 'reviews' }).poolKey, up.poolKey);
});
