/**
 * Inbound mTLS on the h1 and node engines: STRICT / PERMISSIVE / DISABLE per connection, client
 * certificate verification against the trust bundle, the caller's SPIFFE identity on every request
 * of a connection, sniffing with split first bytes, handshake deadlines, the h1 codec's keep-alive,
 * pipelining, backpressure, timeouts and upgrade hand-off on TLS sockets, real `curl` and
 * `openssl s_client` clients, and the uws fallback. Certificates are made with openssl per run.
 */
import { execFile, spawn } from 'node:child_process';
import { connect as netConnect, createServer as netServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createSecureContext, type SecureContext, type TLSSocket, connect as tlsConnect } from 'node:tls';
import t, { type Test } from 'tap';
import { type H1Tuning, listenH1 } from '../../../src/listener/h1-engine.ts';
import {
  type GateTimers,
  INBOUND_ALPN,
  SNIFF_MORE,
  SNIFF_PLAIN,
  SNIFF_TLS,
  selectAlpn,
  sniffTls,
  type TlsAwareListener,
} from '../../../src/listener/inbound-tls.ts';
import type {
  InboundTls,
  IncomingRequest,
  ListenOptions,
  RequestHandler,
  UpgradeHandler,
} from '../../../src/listener/listener-types.ts';
import { listenNode } from '../../../src/listener/node-engine.ts';
import { startListener, UWS_TLS_FALLBACK } from '../../../src/listener/start-listener.ts';
import type { MtlsMode } from '../../../src/tls/identity-types.ts';
import { type CertFiles, createTestCerts, DEFAULT_TEST_SPIFFE } from '../../helpers/test-certs.ts';
import { parseResponses, RawConn, type RawResponse } from './raw-http.ts';

const PRINCIPAL = 'cluster.local/ns/default/sa/x';
const SERVER_SPIFFE = 'spiffe://cluster.local/ns/default/sa/server';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const certs = await createTestCerts();
t.teardown(() => certs.cleanup());
const [server, server2, client, otherClient, expiredClient] = await Promise.all([
  certs.serverFor(SERVER_SPIFFE),
  certs.serverFor('spiffe://cluster.local/ns/default/sa/server-rotated'),
  certs.clientFor(DEFAULT_TEST_SPIFFE),
  certs.otherCaClient(),
  certs.expiredClient(),
]);
const noSpiffeClient = await certs.issue('dns-only', { dns: ['client.local'] });

/** What src/tls/secure-context.ts builds for a workload: its certificate, the bundle, TLS 1.2 minimum. */
function contextFor(s: CertFiles): SecureContext {
  return createSecureContext({ cert: s.certPem, key: s.keyPem, ca: certs.ca.certPem, minVersion: 'TLSv1.2' });
}
const serverContext = contextFor(server);

/** An `InboundTls` the test steers: mode and context may change between connections. */
class TestTls implements InboundTls {
  current: MtlsMode;
  context: SecureContext | null;
  modeReads = 0;
  constructor(mode: MtlsMode, context: SecureContext | null = serverContext) {
    this.current = mode;
    this.context = context;
  }
  mode(): MtlsMode {
    this.modeReads++;
    return this.current;
  }
  secureContext(): SecureContext | null {
    return this.context;
  }
}

/** Timers that fire only when the test says so. */
class ManualTimers implements GateTimers {
  readonly armed = new Set<() => void>();
  start(cb: () => void): () => void {
    this.armed.add(cb);
    return () => this.armed.delete(cb);
  }
  fireAll(): void {
    const cbs = [...this.armed];
    this.armed.clear();
    for (const cb of cbs) cb();
  }
  async waitArmed(n: number): Promise<void> {
    for (let i = 0; i < 200 && this.armed.size < n; i++) await sleep(5);
  }
}

type Engine = 'h1' | 'node';
const ENGINES: readonly Engine[] = ['h1', 'node'];

interface ListenExtra {
  readonly tls?: InboundTls;
  readonly onUpgrade?: UpgradeHandler;
  readonly timers?: GateTimers;
  readonly h1?: H1Tuning;
}

async function listen(
  t: Test,
  engine: Engine,
  handler: RequestHandler,
  extra: ListenExtra = {},
): Promise<TlsAwareListener> {
  const opts: ListenOptions = {
    engine,
    host: '127.0.0.1',
    port: 0,
    name: 'inbound',
    handler,
    ...(extra.tls === undefined ? {} : { tls: extra.tls }),
    ...(extra.onUpgrade === undefined ? {} : { onUpgrade: extra.onUpgrade }),
  };
  const timers = extra.timers === undefined ? {} : { tlsTimers: extra.timers };
  const l =
    engine === 'h1'
      ? await listenH1(opts, { ...extra.h1, ...timers })
      : await listenNode(opts, { tlsTimeoutMs: 5000, ...timers });
  t.teardown(() => l.close());
  return l;
}

interface Seen {
  readonly secure: boolean;
  readonly principal: string | null;
  readonly spiffe: string | null;
  readonly sni: string | null;
  readonly target: string;
}

/** Answers each request with what the engine told about its connection, and keeps the requests. */
function whoami(seen: IncomingRequest[] = []): RequestHandler {
  return (req, res) => {
    seen.push(req);
    const body: Seen = {
      secure: req.secure,
      principal: req.peer?.principal ?? null,
      spiffe: req.peer?.spiffeId ?? null,
      sni: req.sni ?? null,
      target: req.target,
    };
    res.writeHead(200, ['content-type', 'application/json']);
    res.end(Buffer.from(JSON.stringify(body)));
  };
}

function seenOf(r: RawResponse | undefined): Seen {
  return JSON.parse(r?.body.toString() ?? 'null') as Seen;
}

const GET = (path: string, close = true): string =>
  `GET ${path} HTTP/1.1\r\nHost: reviews:9080\r\n${close ? 'Connection: close\r\n' : ''}\r\n`;

interface TlsClientOptions {
  readonly cert?: CertFiles;
  readonly servername?: string;
  readonly alpn?: string[];
  readonly minVersion?: 'TLSv1' | 'TLSv1.2';
  readonly maxVersion?: 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';
  readonly ciphers?: string;
  /** Connect to this port instead (a splitting proxy in front of the listener). */
  readonly via?: number;
}

/** A TLS client connection that records everything it receives. */
class TlsConn {
  readonly socket: TLSSocket;
  private parts: Buffer[] = [];
  received = 0;
  closed = false;
  secured = false;
  error: string | null = null;
  /** Noted at the end of the handshake (the socket forgets them once closed). */
  protocol: string | null = null;
  serverSans = '';
  private readonly ready: Promise<boolean>;

  constructor(port: number, o: TlsClientOptions = {}) {
    this.socket = tlsConnect({
      host: '127.0.0.1',
      port: o.via ?? port,
      ca: certs.ca.certPem,
      ...(o.cert === undefined ? {} : { cert: o.cert.certPem, key: o.cert.keyPem }),
      ...(o.servername === undefined ? {} : { servername: o.servername }),
      ...(o.alpn === undefined ? {} : { ALPNProtocols: o.alpn }),
      ...(o.minVersion === undefined ? {} : { minVersion: o.minVersion }),
      ...(o.maxVersion === undefined ? {} : { maxVersion: o.maxVersion }),
      ...(o.ciphers === undefined ? {} : { ciphers: o.ciphers }),
      // The server is verified against the mesh CA; its name is not what these tests are about.
      checkServerIdentity: () => undefined,
    });
    this.ready = new Promise((resolve) => {
      this.socket.once('secureConnect', () => {
        this.secured = true;
        this.protocol = this.socket.getProtocol();
        this.serverSans = this.socket.getPeerX509Certificate()?.subjectAltName ?? '';
        resolve(true);
      });
      this.socket.once('close', () => resolve(false));
    });
    this.socket.on('data', (d: Buffer) => {
      this.parts.push(d);
      this.received += d.length;
    });
    this.socket.on('error', (e: NodeJS.ErrnoException) => {
      this.error ??= e.code ?? e.message;
    });
    this.socket.on('close', () => {
      this.closed = true;
    });
  }

  /** Whether the client side finished its handshake. */
  handshake(): Promise<boolean> {
    return this.ready;
  }

  write(s: string | Buffer): void {
    this.socket.write(s);
  }

  async until(pred: () => boolean, timeoutMs = 3000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!pred() && !this.closed && Date.now() < deadline) await sleep(5);
    return pred();
  }

  async responses(n: number, timeoutMs = 3000): Promise<RawResponse[]> {
    await this.until(() => parseResponses(this.data(), this.closed).length >= n, timeoutMs);
    return parseResponses(this.data(), this.closed);
  }

  data(): Buffer {
    if (this.parts.length > 1) this.parts = [Buffer.concat(this.parts)];
    return this.parts[0] ?? Buffer.alloc(0);
  }

  waitClosed(timeoutMs = 3000): Promise<boolean> {
    return this.until(() => this.closed, timeoutMs);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** One request over a fresh TLS connection (with `Connection: close`), the way most cases need it. */
async function tlsGet(
  t: Test,
  port: number,
  o: TlsClientOptions = {},
  path = '/',
): Promise<{ conn: TlsConn; response: RawResponse | undefined }> {
  const conn = new TlsConn(port, o);
  t.teardown(() => conn.destroy());
  if (await conn.handshake()) conn.write(GET(path));
  await conn.waitClosed();
  return { conn, response: (await conn.responses(1, 10))[0] };
}

/** A plaintext request on a fresh connection. */
async function plainGet(
  t: Test,
  port: number,
  path = '/',
): Promise<{ conn: RawConn; response?: RawResponse }> {
  const conn = new RawConn(port);
  t.teardown(() => conn.destroy());
  conn.write(GET(path));
  await conn.waitClosed();
  const [response] = parseResponses(conn.data(), true);
  return response === undefined ? { conn } : { conn, response };
}

/**
 * A TCP proxy in front of `port` that forwards the first bytes of each connection one at a time,
 * with pauses, so the listener sees its first byte alone, then the second, then the rest.
 */
async function splittingProxy(t: Test, port: number): Promise<number> {
  const proxy: Server = netServer((down: Socket) => {
    const up = netConnect({ host: '127.0.0.1', port });
    let chain = Promise.resolve();
    let first = true;
    down.on('data', (d: Buffer) => {
      const pieces = first ? [d.subarray(0, 1), d.subarray(1, 2), d.subarray(2)] : [d];
      first = false;
      chain = chain.then(async () => {
        for (const p of pieces) {
          if (p.length === 0) continue;
          up.write(p);
          await sleep(25);
        }
      });
    });
    down.on('end', () => void chain.then(() => up.end()));
    up.pipe(down);
    up.on('error', () => down.destroy());
    down.on('error', () => up.destroy());
    up.on('close', () => down.destroy());
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  t.teardown(() => proxy.close());
  const addr = proxy.address();
  return addr !== null && typeof addr === 'object' ? addr.port : 0;
}

// ---- pure functions ----

t.test(
  'sniffTls tells a TLS handshake record from anything else, waiting when it cannot tell yet',
  async (t) => {
    t.equal(sniffTls(Buffer.alloc(0)), SNIFF_MORE);
    t.equal(sniffTls(Buffer.from('G')), SNIFF_PLAIN, 'one byte is enough for HTTP');
    t.equal(sniffTls(Buffer.from([0x16])), SNIFF_MORE);
    t.equal(sniffTls(Buffer.from([0x16, 0x03])), SNIFF_MORE);
    t.equal(sniffTls(Buffer.from([0x16, 0x03, 0x01])), SNIFF_TLS, 'TLS 1.0 record version (ClientHello)');
    t.equal(sniffTls(Buffer.from([0x16, 0x03, 0x03, 0x02, 0x00])), SNIFF_TLS, 'TLS 1.2 record version');
    t.equal(sniffTls(Buffer.from([0x16, 0x03, 0x00])), SNIFF_TLS, 'SSL 3.0 record version');
    t.equal(sniffTls(Buffer.from([0x16, 0x02])), SNIFF_PLAIN, 'not major version 3');
    t.equal(sniffTls(Buffer.from([0x16, 0x03, 0x05])), SNIFF_PLAIN, 'unknown minor version');
    t.equal(sniffTls(Buffer.from([0x80, 0x2e, 0x01])), SNIFF_PLAIN, 'SSLv2 hello is not accepted');
  },
);

t.test('selectAlpn picks an HTTP/1.1-compatible protocol and refuses HTTP/2-only clients', async (t) => {
  t.equal(selectAlpn(['h2', 'http/1.1']), 'http/1.1');
  t.equal(selectAlpn(['istio-http/1.1', 'istio']), 'istio-http/1.1');
  t.equal(selectAlpn(['istio-peer-exchange', 'istio']), 'istio');
  t.equal(selectAlpn(['istio-peer-exchange']), 'istio-peer-exchange');
  t.equal(selectAlpn(['h2']), undefined);
  t.equal(selectAlpn([]), undefined);
  t.same(INBOUND_ALPN, ['http/1.1', 'istio-http/1.1', 'istio', 'istio-peer-exchange']);
});

// ---- both engines ----

for (const engine of ENGINES) {
  t.test(`${engine}: STRICT serves a valid client certificate and attaches its identity`, async (t) => {
    const seen: IncomingRequest[] = [];
    const tls = new TestTls('STRICT');
    const l = await listen(t, engine, whoami(seen), { tls });
    const { conn, response } = await tlsGet(t, l.port, {
      cert: client,
      servername: 'reviews.default.svc.cluster.local',
      alpn: ['istio-http/1.1', 'istio', 'http/1.1'],
    });
    t.equal(response?.status, 200);
    const body = seenOf(response);
    t.same(body, {
      secure: true,
      principal: PRINCIPAL,
      spiffe: DEFAULT_TEST_SPIFFE,
      sni: 'reviews.default.svc.cluster.local',
      target: '/',
    });
    t.equal(conn.socket.alpnProtocol, 'http/1.1', 'http/1.1 preferred when offered');
    t.equal(conn.protocol, 'TLSv1.3', 'TLS 1.3 when the client offers it');
    t.match(seen[0]?.peer, {
      trustDomain: 'cluster.local',
      namespace: 'default',
      serviceAccount: 'x',
    });
    t.equal(seen[0]?.engine, engine);
    t.equal(tls.modeReads, 1, 'mode read once for the connection');
    t.equal(l.tlsHandshakeErrors(), 0);
  });

  t.test(`${engine}: keep-alive and pipelining on one mTLS connection, identity computed once`, async (t) => {
    const seen: IncomingRequest[] = [];
    const tls = new TestTls('STRICT');
    const l = await listen(t, engine, whoami(seen), { tls });
    const conn = new TlsConn(l.port, { cert: client, alpn: ['istio-http/1.1', 'istio'] });
    t.teardown(() => conn.destroy());
    t.ok(await conn.handshake());
    t.equal(conn.socket.alpnProtocol, 'istio-http/1.1', 'Istio ALPN accepted');
    conn.write(GET('/a', false) + GET('/b', false));
    const rs = await conn.responses(2);
    t.same(
      rs.map((r) => seenOf(r).target),
      ['/a', '/b'],
    );
    conn.write(GET('/c', false));
    const rs2 = await conn.responses(3);
    t.equal(seenOf(rs2[2]).principal, PRINCIPAL);
    t.equal(seen.length, 3);
    t.ok(seen[0]?.peer !== undefined && seen[0]?.peer === seen[2]?.peer, 'one PeerIdentity per connection');
    t.notOk(conn.closed, 'still open after three requests');
    t.equal(tls.modeReads, 1);
  });

  t.test(`${engine}: STRICT closes plaintext at once, without a response`, async (t) => {
    const seen: IncomingRequest[] = [];
    const l = await listen(t, engine, whoami(seen), { tls: new TestTls('STRICT') });
    const { conn, response } = await plainGet(t, l.port);
    t.equal(response, undefined);
    t.equal(conn.data().length, 0, 'not one byte written');
    t.ok(conn.closed);
    t.equal(seen.length, 0);
    t.equal(l.plaintextRefused(), 1);
    t.equal(l.tlsHandshakeErrors(), 0);
  });

  t.test(`${engine}: STRICT refuses a client certificate from another CA`, async (t) => {
    const seen: IncomingRequest[] = [];
    const l = await listen(t, engine, whoami(seen), { tls: new TestTls('STRICT') });
    const { conn, response } = await tlsGet(t, l.port, { cert: otherClient });
    t.equal(response, undefined);
    t.equal(conn.data().length, 0);
    t.equal(seen.length, 0);
    t.equal(l.tlsHandshakeErrors(), 1);
  });

  t.test(`${engine}: STRICT refuses an expired client certificate`, async (t) => {
    const seen: IncomingRequest[] = [];
    const l = await listen(t, engine, whoami(seen), { tls: new TestTls('STRICT') });
    const { response } = await tlsGet(t, l.port, { cert: expiredClient });
    t.equal(response, undefined);
    t.equal(seen.length, 0);
    t.equal(l.tlsHandshakeErrors(), 1);
  });

  t.test(`${engine}: STRICT refuses TLS without a client certificate`, async (t) => {
    const seen: IncomingRequest[] = [];
    const l = await listen(t, engine, whoami(seen), { tls: new TestTls('STRICT') });
    const { conn, response } = await tlsGet(t, l.port);
    t.equal(response, undefined);
    t.ok(conn.error !== null, `client sees the refusal (${conn.error})`);
    t.equal(seen.length, 0);
    t.equal(l.tlsHandshakeErrors(), 1);
  });

  t.test(`${engine}: STRICT serves a chained certificate without a SPIFFE id, with no peer`, async (t) => {
    const l = await listen(t, engine, whoami(), { tls: new TestTls('STRICT') });
    const { response } = await tlsGet(t, l.port, { cert: noSpiffeClient });
    t.equal(response?.status, 200);
    t.same(seenOf(response), { secure: true, principal: null, spiffe: null, sni: null, target: '/' });
  });

  t.test(`${engine}: PERMISSIVE serves plaintext and mTLS on one port`, async (t) => {
    const l = await listen(t, engine, whoami(), { tls: new TestTls('PERMISSIVE') });
    const plain = await plainGet(t, l.port, '/plain');
    t.same(seenOf(plain.response), {
      secure: false,
      principal: null,
      spiffe: null,
      sni: null,
      target: '/plain',
    });
    const mtls = await tlsGet(t, l.port, { cert: client }, '/mtls');
    t.same(seenOf(mtls.response), {
      secure: true,
      principal: PRINCIPAL,
      spiffe: DEFAULT_TEST_SPIFFE,
      sni: null,
      target: '/mtls',
    });
    // TLS without a certificate, or with one that does not verify: served, but nobody is named.
    const anon = await tlsGet(t, l.port, {}, '/anon');
    t.same(seenOf(anon.response), {
      secure: true,
      principal: null,
      spiffe: null,
      sni: null,
      target: '/anon',
    });
    const other = await tlsGet(t, l.port, { cert: otherClient }, '/other');
    t.equal(other.response?.status, 200);
    t.equal(seenOf(other.response).principal, null, 'an unverified certificate names nobody');
    const expired = await tlsGet(t, l.port, { cert: expiredClient }, '/expired');
    t.equal(seenOf(expired.response).principal, null);
    t.equal(l.tlsHandshakeErrors(), 0);
    t.equal(l.plaintextRefused(), 0);
  });

  t.test(`${engine}: PERMISSIVE waits for enough bytes and loses none (split first bytes)`, async (t) => {
    const l = await listen(t, engine, whoami(), { tls: new TestTls('PERMISSIVE') });
    const via = await splittingProxy(t, l.port);
    // Plaintext: "G", "E", then the rest, through the proxy.
    const plain = new RawConn(via);
    t.teardown(() => plain.destroy());
    plain.write(GET('/split', false));
    const [r1] = await plain.responses(1);
    t.equal(seenOf(r1).target, '/split', 'the bytes read to decide reach the parser first');
    plain.write(GET('/split2', false));
    const r2 = (await plain.responses(2))[1];
    t.equal(seenOf(r2).target, '/split2');
    // TLS: 0x16, then 0x03, then the rest of the ClientHello.
    const mtls = await tlsGet(t, l.port, { cert: client, via }, '/split-tls');
    t.equal(seenOf(mtls.response).principal, PRINCIPAL);
    t.equal(seenOf(mtls.response).target, '/split-tls');
  });

  t.test(`${engine}: DISABLE serves plaintext and does not terminate TLS`, async (t) => {
    const seen: IncomingRequest[] = [];
    const l = await listen(t, engine, whoami(seen), { tls: new TestTls('DISABLE') });
    const plain = await plainGet(t, l.port, '/plain');
    t.same(seenOf(plain.response), {
      secure: false,
      principal: null,
      spiffe: null,
      sni: null,
      target: '/plain',
    });
    const conn = new TlsConn(l.port, { cert: client });
    t.teardown(() => conn.destroy());
    t.notOk(await conn.handshake(), 'the handshake bytes are read as (bad) HTTP');
    t.equal(seen.length, 1);
  });

  t.test(`${engine}: the mode is read per connection; open connections keep theirs`, async (t) => {
    const tls = new TestTls('PERMISSIVE');
    const l = await listen(t, engine, whoami(), { tls });
    const kept = new RawConn(l.port);
    t.teardown(() => kept.destroy());
    kept.write(GET('/1', false));
    t.equal((await kept.responses(1))[0]?.status, 200);
    tls.current = 'STRICT';
    const refused = await plainGet(t, l.port);
    t.equal(refused.response, undefined, 'a new plaintext connection is refused under STRICT');
    kept.write(GET('/2', false));
    t.equal(seenOf((await kept.responses(2))[1]).target, '/2', 'the open one still serves');
    tls.current = 'DISABLE';
    t.equal((await plainGet(t, l.port)).response?.status, 200);
    t.equal(tls.modeReads, 3);
  });

  t.test(
    `${engine}: no certificate yet: STRICT closes, PERMISSIVE serves plaintext; rotation applies to new connections`,
    async (t) => {
      const tls = new TestTls('STRICT', null);
      const l = await listen(t, engine, whoami(), { tls });
      const refused = await plainGet(t, l.port);
      t.equal(refused.conn.data().length, 0);
      t.ok(refused.conn.closed);
      t.equal(l.tlsHandshakeErrors(), 1);
      tls.current = 'PERMISSIVE';
      t.equal((await plainGet(t, l.port)).response?.status, 200);
      const noCert = await tlsGet(t, l.port, { cert: client });
      t.equal(noCert.response, undefined, 'TLS refused while no certificate is available');
      t.equal(l.tlsHandshakeErrors(), 2);
      tls.context = serverContext;
      const first = await tlsGet(t, l.port, { cert: client });
      t.equal(first.response?.status, 200);
      t.match(first.conn.serverSans, /sa\/server,/);
      tls.context = contextFor(server2);
      const second = await tlsGet(t, l.port, { cert: client });
      t.equal(second.response?.status, 200);
      t.match(second.conn.serverSans, /sa\/server-rotated/);
    },
  );

  t.test(`${engine}: TLS below 1.2 and HTTP/2-only ALPN are refused`, async (t) => {
    // A context without the 1.2 floor: the listener's own check still refuses TLS 1.1.
    const weak = new TestTls(
      'PERMISSIVE',
      createSecureContext({
        cert: server.certPem,
        key: server.keyPem,
        ca: certs.ca.certPem,
        minVersion: 'TLSv1',
        ciphers: 'DEFAULT@SECLEVEL=0',
      }),
    );
    const l = await listen(t, engine, whoami(), { tls: weak });
    const old = await tlsGet(t, l.port, {
      cert: client,
      minVersion: 'TLSv1',
      maxVersion: 'TLSv1.1',
      ciphers: 'DEFAULT@SECLEVEL=0',
    });
    t.equal(old.response, undefined);
    t.equal(l.tlsHandshakeErrors(), 1);
    const tls12 = await tlsGet(t, l.port, { cert: client, maxVersion: 'TLSv1.2' });
    t.equal(seenOf(tls12.response).principal, PRINCIPAL, 'TLS 1.2 is accepted');
    t.equal(tls12.conn.protocol, 'TLSv1.2');
    // The normal context refuses TLS 1.1 in the handshake already.
    const l2 = await listen(t, engine, whoami(), { tls: new TestTls('PERMISSIVE') });
    const old2 = await tlsGet(t, l2.port, {
      cert: client,
      minVersion: 'TLSv1',
      maxVersion: 'TLSv1.1',
      ciphers: 'DEFAULT@SECLEVEL=0',
    });
    t.equal(old2.response, undefined);
    t.equal(l2.tlsHandshakeErrors(), 1);
    const h2 = await tlsGet(t, l2.port, { cert: client, alpn: ['h2'] });
    t.equal(h2.response, undefined);
    t.equal(l2.tlsHandshakeErrors(), 2);
  });

  t.test(`${engine}: sniffing and the handshake must finish before the deadline`, async (t) => {
    const timers = new ManualTimers();
    const l = await listen(t, engine, whoami(), { tls: new TestTls('PERMISSIVE'), timers });
    // Nothing sent: closed at the deadline, not counted as a TLS failure.
    const silent = new RawConn(l.port);
    t.teardown(() => silent.destroy());
    await timers.waitArmed(1);
    t.equal(timers.armed.size, 1);
    await sleep(20);
    t.notOk(silent.closed, 'waits for bytes');
    timers.fireAll();
    t.ok(await silent.waitClosed());
    t.equal(l.tlsHandshakeErrors(), 0);
    // A handshake record header and nothing more: TLS started, then cut at the deadline.
    const stalled = new RawConn(l.port);
    t.teardown(() => stalled.destroy());
    stalled.write(Buffer.from([0x16, 0x03, 0x01]));
    await timers.waitArmed(1);
    await sleep(20);
    timers.fireAll();
    t.ok(await stalled.waitClosed());
    t.equal(l.tlsHandshakeErrors(), 1);
    // The deadline is cancelled once the connection is handed over.
    const served = await tlsGet(t, l.port, { cert: client });
    t.equal(served.response?.status, 200);
    t.equal(timers.armed.size, 0);
  });

  t.test(`${engine}: a client that leaves before the first bytes decide anything`, async (t) => {
    const timers = new ManualTimers();
    const seen: IncomingRequest[] = [];
    const l = await listen(t, engine, whoami(seen), { tls: new TestTls('PERMISSIVE'), timers });
    const c = new RawConn(l.port);
    t.teardown(() => c.destroy());
    c.write(Buffer.from([0x16]));
    await timers.waitArmed(1);
    c.socket.end();
    t.ok(await c.waitClosed());
    for (let i = 0; i < 100 && timers.armed.size > 0; i++) await sleep(5);
    t.equal(timers.armed.size, 0, 'deadline cancelled');
    t.equal(l.tlsHandshakeErrors(), 0);
    t.equal(seen.length, 0);
  });

  t.test(`${engine}: close() closes connections still sniffing`, async (t) => {
    const timers = new ManualTimers();
    const l = await listen(t, engine, whoami(), { tls: new TestTls('PERMISSIVE'), timers });
    const c = new RawConn(l.port);
    t.teardown(() => c.destroy());
    await timers.waitArmed(1);
    l.close();
    t.ok(await c.waitClosed());
  });

  t.test(`${engine}: upgrade hands the TLS socket over with the caller's identity`, async (t) => {
    let upgraded: { req: IncomingRequest; socket: Duplex; head: string } | null = null;
    const onUpgrade: UpgradeHandler = (req, socket, head) => {
      upgraded = { req, socket, head: head.toString() };
      socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n');
      if (head.length > 0) socket.write(head);
      socket.on('data', (d: Buffer) => socket.write(d));
    };
    const l = await listen(t, engine, whoami(), { tls: new TestTls('STRICT'), onUpgrade });
    const conn = new TlsConn(l.port, { cert: client });
    t.teardown(() => conn.destroy());
    t.ok(await conn.handshake());
    conn.write('GET /ws HTTP/1.1\r\nHost: reviews\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\nhello');
    t.ok(await conn.until(() => conn.data().toString().endsWith('hello')));
    conn.write(' world');
    t.ok(await conn.until(() => conn.data().toString().endsWith('hello world')));
    const u = upgraded as { req: IncomingRequest; socket: Duplex; head: string } | null;
    t.equal(u?.req.peer?.principal, PRINCIPAL);
    t.equal(u?.req.secure, true);
    t.equal((u?.socket as TLSSocket | undefined)?.encrypted, true, 'the handler owns the TLS socket');
  });

  t.test(`${engine}: a slow TLS client gets backpressure, and the whole body`, async (t) => {
    const total = 4 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    let sawFull = false;
    const l = await listen(
      t,
      engine,
      (_req, res) => {
        let sent = 0;
        const pump = (): void => {
          while (sent < total) {
            sent += chunk.length;
            if (!res.write(chunk)) {
              sawFull = true;
              return;
            }
          }
          res.end();
        };
        res.onWritable(pump);
        res.writeHead(200, ['content-type', 'application/octet-stream']);
        pump();
      },
      { tls: new TestTls('STRICT') },
    );
    const conn = new TlsConn(l.port, { cert: client });
    t.teardown(() => conn.destroy());
    t.ok(await conn.handshake());
    conn.socket.pause();
    conn.write(GET('/big'));
    await sleep(150);
    t.ok(sawFull, 'write() said stop while the client did not read');
    conn.socket.resume();
    // Chunked framing adds a few bytes per chunk: wait for the body, then parse once.
    t.ok(await conn.until(() => conn.received > total, 20_000));
    const [r] = await conn.responses(1, 5000);
    t.equal(r?.body.length, total);
  });
}

// ---- h1 only: its own timeouts on TLS sockets ----

t.test('h1: idle keep-alive and head timeouts apply to TLS connections', async (t) => {
  const timers = new ManualTimers();
  const l = await listen(t, 'h1', whoami(), {
    tls: new TestTls('STRICT'),
    timers,
    h1: { idleTimeoutMs: 150, headTimeoutMs: 150 },
  });
  const idle = new TlsConn(l.port, { cert: client });
  t.teardown(() => idle.destroy());
  t.ok(await idle.handshake());
  idle.write(GET('/', false));
  t.equal((await idle.responses(1))[0]?.status, 200);
  t.ok(await idle.waitClosed(2000), 'idle TLS connection closed by the sweep');
  const slow = new TlsConn(l.port, { cert: client });
  t.teardown(() => slow.destroy());
  t.ok(await slow.handshake());
  slow.write('GET / HTTP/1.1\r\nHost: x\r\n');
  t.ok(await slow.waitClosed(2000));
  t.equal((await slow.responses(1))[0]?.status, 408, 'incomplete head answered 408 over TLS');
});

// ---- real clients ----

function run(
  cmd: string,
  args: readonly string[],
  input?: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    if (input !== undefined) child.stdin.write(input);
    // s_client keeps reading after stdin ends (-ign_eof): the server's close ends it.
    child.stdin.end();
  });
}

for (const engine of ENGINES) {
  t.test(`${engine}: curl --cert/--key/--cacert and openssl s_client`, async (t) => {
    const l = await listen(t, engine, whoami(), { tls: new TestTls('STRICT') });
    const url = `https://127.0.0.1:${l.port}/curl`;
    const ok = await run('curl', [
      '-sS',
      '--max-time',
      '5',
      '--cacert',
      certs.ca.certFile,
      '--cert',
      client.certFile,
      '--key',
      client.keyFile,
      url,
    ]);
    t.equal(ok.code, 0, ok.stderr);
    t.same(JSON.parse(ok.stdout), {
      secure: true,
      principal: PRINCIPAL,
      spiffe: DEFAULT_TEST_SPIFFE,
      sni: null,
      target: '/curl',
    });
    const noCert = await run('curl', ['-sS', '--max-time', '5', '--cacert', certs.ca.certFile, url]);
    t.not(noCert.code, 0, 'curl without a client certificate fails');
    const plain = await run('curl', ['-sS', '--max-time', '5', `http://127.0.0.1:${l.port}/`]);
    t.equal(plain.code, 52, 'plain curl: empty reply from server');
    const sc = await run(
      'openssl',
      [
        's_client',
        '-quiet',
        '-connect',
        `127.0.0.1:${l.port}`,
        '-servername',
        'reviews.default.svc.cluster.local',
        '-CAfile',
        certs.ca.certFile,
        '-cert',
        client.certFile,
        '-key',
        client.keyFile,
        '-verify_return_error',
        '-alpn',
        'istio-http/1.1,istio',
      ],
      GET('/s_client'),
    );
    t.match(sc.stdout, /^HTTP\/1\.1 200 /);
    const body = sc.stdout.slice(sc.stdout.indexOf('\r\n\r\n') + 4);
    t.same(JSON.parse(body), {
      secure: true,
      principal: PRINCIPAL,
      spiffe: DEFAULT_TEST_SPIFFE,
      sni: 'reviews.default.svc.cluster.local',
      target: '/s_client',
    });
    const scOther = await run(
      'openssl',
      [
        's_client',
        '-quiet',
        '-connect',
        `127.0.0.1:${l.port}`,
        '-CAfile',
        certs.ca.certFile,
        '-cert',
        otherClient.certFile,
        '-key',
        otherClient.keyFile,
      ],
      GET('/'),
    );
    t.notMatch(scOther.stdout, /HTTP\/1\.1/, 'a certificate from another CA gets nothing');
  });
}

// ---- engine selection ----

t.test('uws with tls falls back to h1 and says why', async (t) => {
  const l = await startListener({
    engine: 'uws',
    host: '127.0.0.1',
    port: 0,
    name: 'inbound',
    handler: whoami(),
    tls: new TestTls('STRICT'),
  });
  t.teardown(() => l.close());
  t.equal(l.engine, 'h1');
  t.equal(l.fallbackReason, UWS_TLS_FALLBACK);
  const { response } = await tlsGet(t, l.port, { cert: client });
  t.equal(seenOf(response).principal, PRINCIPAL);
  t.equal(l.tlsHandshakeErrors(), 0);
  t.equal(l.inFlight(), 0);
  const refused = await plainGet(t, l.port);
  t.equal(refused.response, undefined);
  t.equal(l.plaintextRefused(), 1);
});

t.test('startListener reports no fallback and zero counters for the engine asked for', async (t) => {
  for (const engine of ['h1', 'node', 'uws'] as const) {
    const l = await startListener({
      engine,
      host: '127.0.0.1',
      port: 0,
      name: 'outbound',
      handler: whoami(),
    });
    t.equal(l.tlsHandshakeErrors(), 0);
    t.equal(l.plaintextRefused(), 0);
    if (l.engine === engine) t.equal(l.fallbackReason, null, engine);
    else t.ok(l.fallbackReason !== null, `${engine} fell back to ${l.engine}: ${l.fallbackReason}`);
    const plain = await plainGet(t, l.port);
    t.equal(seenOf(plain.response).secure, false);
    l.stopAccepting();
    l.close();
  }
});

// openssl and curl are required by this suite; fail clearly when they are missing.
t.test('openssl and curl are installed', async (t) => {
  const v = await new Promise<string>((resolve) =>
    execFile('openssl', ['version'], (_e, out) => resolve(String(out))),
  );
  t.match(v, /OpenSSL 3/);
});
