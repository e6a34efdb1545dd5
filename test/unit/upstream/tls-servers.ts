/**
 * What the TLS origination tests of both upstream clients share: the certificates of a small mesh
 * (made once per test file with `openssl`), an HTTPS server on 127.0.0.1 that reports what it saw of
 * each connection (the client's URI SAN, SNI, ALPN, session resumption), and an attempt runner that
 * also records `requestWritten`.
 */
import { once } from 'node:events';
import { createServer, type Server, type ServerOptions } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Test } from 'tap';
import type { UpstreamTls } from '../../../src/tls/identity-types.ts';
import type {
  UpstreamClient,
  UpstreamFailure,
  UpstreamRequest,
  UpstreamTarget,
} from '../../../src/upstream/upstream-types.ts';
import { type CertFiles, createTestCerts } from '../../helpers/test-certs.ts';

type Ca = CertFiles;
type Leaf = CertFiles;

export const TD = 'cluster.local';
export const SA_A = `spiffe://${TD}/ns/default/sa/a`;
export const SA_B = `spiffe://${TD}/ns/default/sa/b`;

export interface Pki {
  readonly mesh: Ca;
  readonly other: Ca;
  /** Client identity `sa/a` (two certificates: before and after a rotation). */
  readonly clientA: Leaf;
  readonly clientA2: Leaf;
  /** Server identity `sa/b`, and DNS names `svc.example.test`, `*.wild.example.test`. */
  readonly serverB: Leaf;
  /** `sa/b`, but issued by a CA the mesh does not trust. */
  readonly foreignB: Leaf;
  /** `sa/b`, expired an hour ago. */
  readonly expiredB: Leaf;
}

export async function makePki(t: Test): Promise<Pki> {
  const certs = await createTestCerts();
  t.teardown(certs.cleanup);
  const [clientA, clientA2, serverB, foreignB, expiredB] = await Promise.all([
    certs.issue('client-a', { uri: SA_A }),
    certs.issue('client-a2', { uri: SA_A }),
    certs.issue('server-b', { uri: SA_B, dns: ['svc.example.test', '*.wild.example.test'] }),
    certs.issue('foreign-b', { uri: SA_B, signer: 'otherCa' }),
    certs.issue('expired-b', {
      uri: SA_B,
      notBefore: new Date(Date.now() - 2 * 86_400_000),
      notAfter: new Date(Date.now() - 3_600_000),
    }),
  ]);
  return { mesh: certs.ca, other: certs.otherCa, clientA, clientA2, serverB, foreignB, expiredB };
}

/** What the server saw of one TLS connection. */
export interface SeenConnection {
  /** The client certificate's `subjectaltname`, '' without one. */
  readonly peer: string;
  /** The client certificate's serial number, '' without one (tells two certificates of one SAN apart). */
  readonly peerSerial: string;
  readonly sni: string;
  readonly alpn: string;
  readonly resumed: boolean;
  /** `TLSv1.3`, `TLSv1.2`. */
  readonly protocol: string;
}

export interface TlsServed {
  readonly server: Server;
  readonly target: { readonly address: string; readonly port: number };
  /** One entry per secure connection, in order. */
  readonly seen: SeenConnection[];
  /** Requests answered. */
  requests: () => number;
  /** Connections currently open (server side). */
  open: () => number;
}

/**
 * An HTTPS server presenting `leaf`. With `clientCa` it requires a client certificate chaining to it.
 * Each request is answered 200 with the client's URI SAN as body, after `delayMs` when given.
 */
export async function tlsServer(
  t: Test,
  leaf: Leaf,
  opts: { clientCa?: Ca; alpn?: string[]; delayMs?: number; tls12?: boolean } = {},
): Promise<TlsServed> {
  const options: ServerOptions = {
    cert: leaf.certPem,
    key: leaf.keyPem,
    keepAliveTimeout: 30_000,
    ALPNProtocols: opts.alpn ?? ['istio-http/1.1', 'http/1.1'],
  };
  if (opts.tls12 === true) options.maxVersion = 'TLSv1.2';
  if (opts.clientCa !== undefined) {
    options.ca = opts.clientCa.certPem;
    options.requestCert = true;
    options.rejectUnauthorized = true;
  }
  const seen: SeenConnection[] = [];
  let requests = 0;
  let open = 0;
  const server = createServer(options, (req, res) => {
    requests++;
    const socket = req.socket as TLSSocket;
    const peer = socket.getPeerCertificate();
    const answer = (): void => {
      res.setHeader('content-type', 'text/plain');
      res.end(peer.subjectaltname ?? '');
    };
    if (opts.delayMs === undefined) answer();
    else setTimeout(answer, opts.delayMs);
  });
  server.on('secureConnection', (socket: TLSSocket) => {
    const peer = socket.getPeerCertificate();
    seen.push({
      peer: peer.subjectaltname ?? '',
      peerSerial: peer.serialNumber ?? '',
      sni: typeof socket.servername === 'string' ? socket.servername : '',
      alpn: typeof socket.alpnProtocol === 'string' ? socket.alpnProtocol : '',
      resumed: socket.isSessionReused(),
      protocol: socket.getProtocol() ?? '',
    });
  });
  server.on('connection', (socket) => {
    open++;
    socket.on('close', () => open--);
  });
  // A client that gives up mid-handshake is not a test failure.
  server.on('tlsClientError', () => {});
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    target: { address: '127.0.0.1', port },
    seen,
    requests: () => requests,
    open: () => open,
  };
}

/** ISTIO_MUTUAL-style origination: client `leaf`, mesh anchors, expected `sans`. */
export function meshTls(pki: Pki, leaf: Leaf, sans: readonly string[], poolKey = 'k1'): UpstreamTls {
  return {
    poolKey,
    certChainPem: leaf.certPem,
    keyPem: leaf.keyPem,
    caPem: pki.mesh.certPem,
    servername: 'outbound_.9080_._.b.default.svc.cluster.local',
    alpn: ['istio-http/1.1', 'istio'],
    expectedSans: sans,
  };
}

export interface TlsOutcome {
  status: number;
  body: string;
  failure: UpstreamFailure | null;
  detail: string;
  requestWritten: boolean | undefined;
}

export function get(overrides: Partial<UpstreamRequest> = {}): UpstreamRequest {
  return {
    method: 'GET',
    path: '/',
    headers: ['host', 'b'],
    body: null,
    expectContinue: false,
    ...overrides,
  };
}

/** One attempt through `client`, with everything the handler saw. */
export function attempt(
  client: UpstreamClient,
  target: UpstreamTarget,
  req: UpstreamRequest = get(),
): Promise<TlsOutcome> {
  return new Promise((resolve) => {
    const o: TlsOutcome = { status: 0, body: '', failure: null, detail: '', requestWritten: undefined };
    const chunks: Buffer[] = [];
    client.send(target, req, {
      onHeaders(status) {
        o.status = status;
      },
      onData(chunk) {
        chunks.push(Buffer.from(chunk));
        return true;
      },
      onEnd() {
        o.body = Buffer.concat(chunks).toString();
        resolve(o);
      },
      onError(failure, _afterHeaders, detail, requestWritten) {
        o.failure = failure;
        o.detail = detail;
        o.requestWritten = requestWritten;
        resolve(o);
      },
    });
  });
}
