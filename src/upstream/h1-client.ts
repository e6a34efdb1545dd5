/**
 * A lean HTTP/1.1 upstream client for the hot path, on raw `net.Socket`s. What it does not handle goes
 * to `opts.fallback` (the undici client) for that request:
 * - targets whose address is not an IP literal (DNS) or whose port is invalid (decided once per
 *   endpoint and cached);
 * - `expectContinue`, upgrade requests (an `upgrade` header), CONNECT.
 *
 * Connections. Per endpoint (`address:port`) a stack of idle keep-alive sockets (most recently used
 * first); one request at a time per socket, no pipelining; a new socket when none is idle (no cap:
 * circuit breaking happens before the client). Idle sockets are closed after `keepAliveTimeoutMs`
 * (default 4 s), or after the server's `Keep-Alive: timeout=N` minus 1 s, by one coarse sweep timer
 * per endpoint that runs only while the endpoint has idle sockets; a sweep closes a socket up to one
 * sweep period early, never late. An idle timeout shorter than the sweep period (which the sweep
 * could only honour late, or at once) gets a timer of its own on that socket instead. At most
 * `maxIdlePerEndpoint` (default 1024) idle sockets are kept. A socket is reused only after a complete
 * response with keep-alive semantics (HTTP/1.1 without `Connection: close`, HTTP/1.0 with
 * `Connection: keep-alive`), a request body written completely, and no byte after the response;
 * otherwise it is destroyed. An idle socket that receives anything (bytes, FIN, an error) is dropped.
 * `connections(id)` counts the open sockets of an endpoint (connecting, busy and idle) with a counter
 * kept per endpoint.
 *
 * TLS origination (`target.tls`, an `UpstreamTls`). An endpoint keeps one idle stack for plaintext
 * and one per `tls.poolKey`, so connections with different client identities or settings never mix,
 * and a rotated client certificate (a new `poolKey`) is used for new connections while the sockets of
 * the old key finish their requests and then idle out. When a new key appears, the stacks of keys with
 * no socket left are forgotten. Per `UpstreamTls` object, once (a WeakMap): a `SecureContext` (client
 * certificate, key, trust anchors, TLS 1.2 minimum), itself shared by every `UpstreamTls` with the same
 * material (a small bounded cache), so no context is ever built per connection. A socket is
 * `tls.connect` with SNI (never an IP literal, which RFC 6066 forbids), ALPN, and the last session
 * ticket of the stack (resumption saves a full handshake; see `TlsSession` for which tickets are kept
 * and offered). Node's host-name check is replaced by ours: after `secureConnect`, unless
 * `insecureSkipVerify`, the server certificate must carry one of `expectedSans` (URI SAN exactly, or
 * DNS SAN; see `serverIdentityMismatch`). A resumed session shows the client no certificate, so it is
 * not checked again: its ticket came from a connection that passed this check against the same names,
 * and only that server can resume it. A chain failure, a handshake failure, a SAN mismatch or unusable TLS settings fail the
 * attempt as `connect` (the request never reached the application: safe to retry, UF) with a `detail`
 * that names the reason, e.g. `server identity spiffe://td/ns/x/sa/b does not match expected
 * spiffe://td/ns/x/sa/a`. A TLS alert after our side of the handshake (TLS 1.3 servers check client
 * certificates then) on a fresh connection before any response byte is also `connect`, with
 * `requestWritten` false: the server's TLS layer refused the connection. The connect timeout covers the
 * handshake. Plaintext targets take the same path as before: one `tls === undefined` check.
 *
 * Per-request connection policy (`UpstreamRequest.pool`, the cluster's DestinationRule
 * `connectionPool`). Absent, it costs one `undefined` check where a setting would apply. Present:
 * - `connectTimeoutMs` replaces the client's connect timeout for a socket opened for this request
 *   (a reused socket has nothing to time out);
 * - `maxRequestsPerConnection` (> 0): each socket counts the requests written on it; the request that
 *   reaches the limit goes out with `connection: close` (so the server closes too, instead of waiting
 *   for more) and its socket is destroyed after the response instead of going back to the idle stack.
 *   With 1 no socket is ever reused. Sockets are shared by every cluster that sends to the endpoint;
 *   the limit checked is that of the request being sent;
 * - `idleTimeoutMs` (> 0): the socket released after this request is closed after at most that long
 *   (the smaller of it and the server hint or default above). Istio's `0s` ("no idle timeout") is
 *   not applied: the server hint / default still close the socket, since keeping it longer than the
 *   server does only invites the stale keep-alive race below.
 *
 * Stale keep-alive race. A server may close an idle connection at the moment we write a new request
 * on it. If a reused socket fails (ECONNRESET, EPIPE, or a clean close) before any byte of the
 * response arrived, and the request has no body, the request is written once more on a fresh
 * connection, without telling the handler. This is safe: HTTP/1.1 lets a client retry a request when
 * the connection closed before any part of the response (RFC 9112 §9.3.1); with no body, the server
 * got at most the head and sent nothing back, and a server closing an idle connection does so without
 * processing what arrives after. Requests with a body are not retried here (bytes of it may have been
 * consumed): they fail with `reset`, and retrying is the retry stage's decision.
 *
 * Requests. The request line and headers (final, from `prepareUpstreamHeaders`) go out in one
 * `socket.write` of a latin1 string. A body with a `content-length` header is written as is (and
 * must match it, else `reset`, as undici reports a length mismatch); without one it is sent with
 * `transfer-encoding: chunked`; with no body, POST / PUT / PATCH get `content-length: 0`. When
 * `socket.write` returns false the `BodyStream` is paused until `'drain'`. The body is attached only
 * once the connection is up, so a `connect` / `timeout` failure never consumed it.
 *
 * Responses: `H1ResponseParser` (strictness described there). Body slices go to `handler.onData`; when
 * it returns false the socket is paused until `resume()`.
 *
 * Failures, as undici-upstream classifies them: `connect` (refused, unreachable, any error before the
 * connection is up), `timeout` (connect timeout, default 10 s), `reset` (closed or reset after that),
 * `protocol` (invalid response, or an invalid request head). `abort()` destroys the socket; no
 * callback fires afterwards. `requestWritten` (the 4th argument of `onError`) is true once the request
 * head was handed to a connected socket, false otherwise (connect failures and timeouts, a closed
 * client, a head that could not be built). After the stale keep-alive retry it describes the fresh
 * connection only: the write on the stale socket was already judged unprocessed when it was retried.
 *
 * Allocation per request: the `H1Call` object (parser state included), the head string, the header
 * list, and for a request with a body one closure for `BodyStream.onData`. Socket listeners are attached
 * once per socket and route events to the current call through `Conn.call`.
 */
import { connect, isIP, type Socket } from 'node:net';
import {
  createSecureContext,
  type SecureContext,
  type TLSSocket,
  type ConnectionOptions as TlsConnectOptions,
  connect as tlsConnect,
} from 'node:tls';
import { isFieldValue, isTargetText, isToken } from '../listener/http-syntax.ts';
import type { BodyStream, HeaderList } from '../listener/listener-types.ts';
import type { UpstreamTls } from '../tls/identity-types.ts';
import { EndpointMap } from './endpoint-map.ts';
import { H1ResponseParser, parseDecimal } from './h1-response-parser.ts';
import {
  errorCode,
  errorDetail,
  failureBeforeSend,
  isTlsAlert,
  serverIdentityMismatch,
  UpstreamTlsError,
} from './upstream-errors.ts';
import {
  type ConnectionOptions,
  type ConnectionPolicy,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_KEEP_ALIVE_TIMEOUT_MS,
  type EndpointClient,
  type UpstreamCall,
  type UpstreamClient,
  type UpstreamFailure,
  type UpstreamHandler,
  type UpstreamRequest,
  type UpstreamTarget,
} from './upstream-types.ts';

export interface H1UpstreamOptions extends ConnectionOptions {
  /** Takes every request the lean path does not handle (see the top of this file). */
  readonly fallback: UpstreamClient;
  /** Idle sockets kept per endpoint. Default 1024. */
  readonly maxIdlePerEndpoint?: number;
}

/**
 * `retain` closes the idle sockets of the dropped endpoints (sockets in use are closed when their
 * request ends) and is passed on to the fallback when it has `retain`; `endpoints` lists the lean
 * endpoints currently known.
 */
export type H1Upstream = EndpointClient & {
  /**
   * Open sockets (connecting, busy and idle) to the endpoint `id` (`address:port`), or null when the
   * lean path does not know it (never used, dropped by `retain`, or served by the fallback). O(1).
   * Sockets still busy on an endpoint dropped by `retain` are no longer counted.
   */
  connections(id: string): number | null;
};

/** Upper bound for a server's keep-alive hint. */
const MAX_KEEP_ALIVE_MS = 600_000;
/** Node's timer limit: a longer delay would fire after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

interface Settings {
  readonly fallback: UpstreamClient;
  readonly connectTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  readonly maxIdle: number;
  readonly sweepMs: number;
  /** Calls in flight on the lean path (for `close`). */
  busy: number;
  closed: boolean;
  /** Resolvers waiting for `busy` to reach 0. */
  drained: Array<() => void>;
}

export function createH1Upstream(opts: H1UpstreamOptions): H1Upstream {
  const keepAliveTimeoutMs = opts.keepAliveTimeoutMs ?? DEFAULT_KEEP_ALIVE_TIMEOUT_MS;
  const settings: Settings = {
    fallback: opts.fallback,
    connectTimeoutMs: opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    keepAliveTimeoutMs,
    maxIdle: opts.maxIdlePerEndpoint ?? 1024,
    sweepMs: Math.min(1000, Math.max(25, Math.floor(keepAliveTimeoutMs / 4))),
    busy: 0,
    closed: false,
    drained: [],
  };
  const fallback = opts.fallback;
  const endpoints = new EndpointMap<Endpoint>((address, port) => new Endpoint(settings, address, port));

  return {
    send(target: UpstreamTarget, req: UpstreamRequest, handler: UpstreamHandler): UpstreamCall {
      if (req.expectContinue || req.method === 'CONNECT' || hasUpgrade(req.headers)) {
        return fallback.send(target, req, handler);
      }
      const ep = endpoints.get(target.address, target.port);
      if (!ep.lean) return fallback.send(target, req, handler);
      const tls = target.tls;
      const call =
        tls === undefined
          ? new H1Call(ep.plain, null, req, handler)
          : new H1Call(ep.poolFor(tls), tlsSetup(tls), req, handler);
      call.start();
      return call;
    },

    retain(keys: ReadonlySet<string>): void {
      endpoints.retain(keys, (ep) => ep.shut());
      if (hasRetain(fallback)) fallback.retain(keys);
    },

    endpoints(): string[] {
      return endpoints.keys((ep) => ep.lean);
    },

    connections(id: string): number | null {
      // `address:port`; the address may be IPv6 (colons inside), so split at the last colon.
      const colon = id.lastIndexOf(':');
      if (colon <= 0) return null;
      const ep = endpoints.peek(id.slice(0, colon), Number(id.slice(colon + 1)));
      return ep?.lean ? ep.open : null;
    },

    async close(): Promise<void> {
      settings.closed = true;
      for (const ep of endpoints.values()) ep.shut();
      endpoints.clear();
      if (settings.busy > 0) {
        await new Promise<void>((resolve) => {
          settings.drained.push(resolve);
        });
      }
      await fallback.close();
    },
  };
}

function hasRetain(c: UpstreamClient): c is UpstreamClient & Pick<EndpointClient, 'retain'> {
  return 'retain' in c && typeof c.retain === 'function';
}

function hasUpgrade(headers: HeaderList): boolean {
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === 'upgrade') return true;
  return false;
}

/** One `address:port`: the plaintext idle stack, one per TLS `poolKey`, and the open-socket count. */
class Endpoint {
  readonly settings: Settings;
  readonly address: string;
  readonly port: number;
  /** Served here (IP literal, valid port); otherwise every request goes to the fallback. */
  readonly lean: boolean;
  /** Plaintext connections. */
  readonly plain: ConnPool;
  /** TLS connections by `UpstreamTls.poolKey`; null until the first TLS request. */
  private tlsPools: Map<string, ConnPool> | null = null;
  /** Open sockets of every pool (connecting, busy, idle): what `connections()` reports. */
  open = 0;
  closed = false;

  constructor(settings: Settings, address: string, port: number) {
    this.settings = settings;
    this.address = address;
    this.port = port;
    this.lean = isIP(address) !== 0 && Number.isInteger(port) && port > 0 && port < 65536;
    this.plain = new ConnPool(this);
  }

  /** The pool of `tls.poolKey`, created on first use. */
  poolFor(tls: UpstreamTls): ConnPool {
    let pools = this.tlsPools;
    if (pools === null) {
      pools = new Map();
      this.tlsPools = pools;
    }
    let pool = pools.get(tls.poolKey);
    if (pool === undefined) {
      // A new key (first use, or a rotated identity): forget the keys with no socket left, so the
      // pools of past identities do not pile up. Pools still holding sockets stay until they empty.
      for (const [key, p] of pools) if (p.open === 0) pools.delete(key);
      pool = new ConnPool(this);
      pools.set(tls.poolKey, pool);
    }
    return pool;
  }

  /** Closes every idle socket; sockets in use are destroyed when their request ends. */
  shut(): void {
    this.closed = true;
    this.plain.shut();
    if (this.tlsPools !== null) for (const pool of this.tlsPools.values()) pool.shut();
  }
}

/** The idle sockets of one endpoint and one kind of connection (plaintext or a TLS `poolKey`). */
class ConnPool {
  readonly endpoint: Endpoint;
  readonly settings: Settings;
  /** Idle sockets; the most recently used at the end. */
  readonly idle: Conn[] = [];
  /** Open sockets of this pool. */
  open = 0;
  /** The last TLS session a verified connection of this pool got, offered for resumption. */
  readonly session = new TlsSession();
  private timer: NodeJS.Timeout | null = null;

  constructor(endpoint: Endpoint) {
    this.endpoint = endpoint;
    this.settings = endpoint.settings;
  }

  /** The most recently used idle socket, or null. */
  acquire(): Conn | null {
    const idle = this.idle;
    while (idle.length > 0) {
      const conn = idle.pop()!;
      conn.isIdle = false;
      if (!conn.dead && !conn.socket.destroyed) {
        conn.clearTimer();
        return conn;
      }
    }
    return null;
  }

  /** Keeps a socket after a complete response, for `timeoutMs`; destroys it when that is not possible. */
  release(conn: Conn, timeoutMs: number): void {
    if (this.endpoint.closed || timeoutMs <= 0 || this.idle.length >= this.settings.maxIdle) {
      conn.destroy();
      return;
    }
    conn.reused = true;
    conn.idleSince = Date.now();
    conn.idleTimeoutMs = timeoutMs;
    conn.isIdle = true;
    if (conn.readPaused) {
      // Read while idle, so a FIN or stray bytes are noticed.
      conn.readPaused = false;
      conn.socket.resume();
    }
    this.idle.push(conn);
    if (timeoutMs < this.settings.sweepMs) {
      // The sweep would close it either late or nearly at once: a timer of its own closes it on time.
      conn.startIdleTimer(timeoutMs);
    } else if (this.timer === null) {
      this.timer = setInterval(() => this.sweep(), this.settings.sweepMs);
      this.timer.unref();
    }
  }

  drop(conn: Conn): void {
    conn.isIdle = false;
    const i = this.idle.indexOf(conn);
    if (i !== -1) this.idle.splice(i, 1);
    if (this.idle.length === 0) this.stopTimer();
  }

  /** Closes every idle socket. */
  shut(): void {
    const idle = this.idle.splice(0);
    for (const conn of idle) {
      conn.isIdle = false;
      conn.destroy();
    }
    this.stopTimer();
  }

  private sweep(): void {
    const now = Date.now();
    const slack = this.settings.sweepMs;
    const idle = this.idle;
    let w = 0;
    for (let r = 0; r < idle.length; r++) {
      const conn = idle[r]!;
      if (conn.dead || (!conn.ownIdleTimer && now - conn.idleSince + slack >= conn.idleTimeoutMs)) {
        conn.isIdle = false;
        conn.destroy();
      } else {
        idle[w++] = conn;
      }
    }
    idle.length = w;
    if (w === 0) this.stopTimer();
  }

  private stopTimer(): void {
    if (this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }
}

/**
 * What one `UpstreamTls` needs per connection, worked out once: the secure context, the SNI to send
 * (none for an IP literal), the ALPN list, or why the settings cannot be used (`error`, non-empty).
 */
export interface TlsSetup {
  readonly tls: UpstreamTls;
  readonly context: SecureContext | null;
  readonly servername: string | undefined;
  readonly alpn: string[] | undefined;
  readonly error: string;
}

const setups = new WeakMap<UpstreamTls, TlsSetup>();
/**
 * Secure contexts by their material (chain, key, anchors). Many `UpstreamTls` objects carry the same
 * workload certificate (one per cluster and expected identity), and building a context parses every
 * anchor of the bundle, so they share one. Bounded: after a rotation the old material ages out.
 */
const contextsByMaterial = new Map<string, SecureContext>();
const MAX_CONTEXTS = 32;

/** The setup of `tls`, built on its first use and kept as long as the object lives. */
export function tlsSetup(tls: UpstreamTls): TlsSetup {
  let setup = setups.get(tls);
  if (setup === undefined) {
    setup = buildTlsSetup(tls);
    setups.set(tls, setup);
  }
  return setup;
}

function buildTlsSetup(tls: UpstreamTls): TlsSetup {
  const sni = tls.servername;
  const servername = sni === undefined || sni === '' || isIP(sni) !== 0 ? undefined : sni;
  const alpn = tls.alpn === undefined || tls.alpn.length === 0 ? undefined : [...tls.alpn];
  const material = `${tls.certChainPem ?? ''}\0${tls.keyPem ?? ''}\0${tls.caPem ?? '(system)'}`;
  let context = contextsByMaterial.get(material);
  if (context === undefined) {
    try {
      context = createSecureContext({
        ...(tls.certChainPem === undefined ? {} : { cert: tls.certChainPem }),
        ...(tls.keyPem === undefined ? {} : { key: tls.keyPem }),
        // Absent: Node's bundled root store (SIMPLE without caCertificates).
        ...(tls.caPem === undefined ? {} : { ca: tls.caPem }),
        minVersion: 'TLSv1.2',
      });
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      return { tls, context: null, servername, alpn, error: `unusable TLS settings: ${message}` };
    }
    if (contextsByMaterial.size >= MAX_CONTEXTS) {
      // Map order is insertion order: the oldest material goes first.
      const oldest = contextsByMaterial.keys().next().value;
      if (oldest !== undefined) contextsByMaterial.delete(oldest);
    }
    contextsByMaterial.set(material, context);
  }
  return { tls, context, servername, alpn, error: '' };
}

/** Node's host-name check is replaced by `verifyServer` (the mesh checks SPIFFE ids, not host names). */
function skipHostnameCheck(): undefined {
  return undefined;
}

/** `tls.connect` options for one new connection to `host:port` with `setup` (and a session to resume). */
export function tlsConnectOptions(
  setup: TlsSetup,
  host: string,
  port: number,
  session: Buffer | undefined,
): TlsConnectOptions {
  const options: TlsConnectOptions = {
    host,
    port,
    secureContext: setup.context!,
    rejectUnauthorized: setup.tls.insecureSkipVerify !== true,
    checkServerIdentity: skipHostnameCheck,
  };
  if (setup.servername !== undefined) options.servername = setup.servername;
  if (setup.alpn !== undefined) options.ALPNProtocols = setup.alpn;
  if (session !== undefined) options.session = session;
  return options;
}

/**
 * The server identity check, after `secureConnect` (Node already verified the chain unless
 * `insecureSkipVerify`): null when the server may be talked to, else the reason.
 */
export function verifyServer(socket: TLSSocket, tls: UpstreamTls): string | null {
  if (tls.insecureSkipVerify === true || tls.expectedSans.length === 0) return null;
  // A resumed session shows no peer certificate to the client. It was only offered if it came from
  // a connection that passed this check against the same expected names (see `TlsSession`), and only
  // that server can resume it.
  if (socket.isSessionReused()) return null;
  return serverIdentityMismatch(socket.getPeerCertificate().subjectaltname, tls.expectedSans);
}

/**
 * Where a pool's TLS session ticket is kept, for resumption. A ticket is stored only once its
 * connection passed `verifyServer`, with the expected names it passed against, and offered only to
 * connections expecting those very names (the same array: one `UpstreamTls` or its interned twin).
 * Resumption skips the identity check (nothing to check it on), so this is what keeps it sound.
 */
export class TlsSession {
  private ticket: Buffer | undefined = undefined;
  private sans: readonly string[] | null = null;

  /** The ticket to offer a new connection for `tls`, if any. */
  offer(tls: UpstreamTls): Buffer | undefined {
    return this.sans === tls.expectedSans ? this.ticket : undefined;
  }

  /** Keeps `ticket` from a connection verified for `tls`. */
  keep(ticket: Buffer, tls: UpstreamTls): void {
    this.ticket = ticket;
    this.sans = tls.expectedSans;
  }

  forget(): void {
    this.ticket = undefined;
    this.sans = null;
  }

  /**
   * Listens for tickets on `socket`: one before verification is held until `verified()` is called
   * (TLS 1.2 delivers it during the handshake), later ones (TLS 1.3) are kept at once.
   */
  watch(socket: TLSSocket, tls: UpstreamTls): { verified(): void } {
    let ok = false;
    let pending: Buffer | undefined;
    socket.on('session', (ticket: Buffer) => {
      if (ok) this.keep(ticket, tls);
      else pending = ticket;
    });
    return {
      verified: () => {
        ok = true;
        if (pending !== undefined) this.keep(pending, tls);
        pending = undefined;
      },
    };
  }
}

/** One socket. Listeners are attached once; events go to `call` (null while idle). */
class Conn {
  readonly socket: Socket;
  readonly pool: ConnPool;
  readonly endpoint: Endpoint;
  /** Set for a TLS connection. */
  readonly tls: TlsSetup | null;
  call: H1Call | null = null;
  connected = false;
  /** Served a complete response before (so a failure before any response byte may be a stale close). */
  reused = false;
  /** Requests written on this socket (for `maxRequestsPerConnection`). */
  requests = 0;
  isIdle = false;
  idleSince = 0;
  idleTimeoutMs = 0;
  /** Idle with a timer of its own (a timeout shorter than the sweep period): the sweep leaves it alone. */
  ownIdleTimer = false;
  dead = false;
  /** Paused for a consumer that returned false. */
  readPaused = false;
  private readonly connectTimeoutMs: number;
  /** The connect timer until connected; later the idle timer when `ownIdleTimer`. */
  private timer: NodeJS.Timeout | null;

  constructor(pool: ConnPool, call: H1Call, connectTimeoutMs: number, tls: TlsSetup | null) {
    const endpoint = pool.endpoint;
    this.pool = pool;
    this.endpoint = endpoint;
    this.tls = tls;
    this.call = call;
    this.connectTimeoutMs = connectTimeoutMs;
    endpoint.open++;
    pool.open++;
    let socket: Socket;
    if (tls === null) {
      socket = connect({ host: endpoint.address, port: endpoint.port });
      socket.on('connect', () => this.onConnect());
    } else {
      const tlsSocket = tlsConnect(
        tlsConnectOptions(tls, endpoint.address, endpoint.port, pool.session.offer(tls.tls)),
      );
      const tickets = pool.session.watch(tlsSocket, tls.tls);
      tlsSocket.on('secureConnect', () => this.onSecureConnect(tickets));
      socket = tlsSocket;
    }
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (b: Buffer) => this.onData(b));
    socket.on('end', () => this.onEnd());
    socket.on('error', (err: Error) => this.onError(err));
    socket.on('close', () => this.onClose());
    socket.on('drain', () => this.call?.onDrain());
    this.timer = setTimeout(() => this.onConnectTimeout(), connectTimeoutMs);
  }

  destroy(): void {
    if (this.dead) return;
    this.markDead();
    this.socket.destroy();
  }

  /** Once per socket, whichever of `destroy` and `'close'` comes first. */
  private markDead(): void {
    if (this.dead) return;
    this.dead = true;
    this.clearTimer();
    if (this.isIdle) this.pool.drop(this);
    this.endpoint.open--;
    this.pool.open--;
  }

  clearTimer(): void {
    this.ownIdleTimer = false;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  startIdleTimer(ms: number): void {
    this.ownIdleTimer = true;
    this.timer = setTimeout(() => this.onIdleTimeout(), ms);
    this.timer.unref();
  }

  private onIdleTimeout(): void {
    this.timer = null;
    this.ownIdleTimer = false;
    if (this.isIdle) this.destroy();
  }

  private onConnect(): void {
    this.connected = true;
    this.clearTimer();
    this.call?.onConnected();
  }

  private onSecureConnect(tickets: { verified(): void }): void {
    const reason = verifyServer(this.socket as TLSSocket, this.tls!.tls);
    if (reason === null) {
      tickets.verified();
      this.onConnect();
      return;
    }
    this.pool.session.forget();
    const call = this.call;
    if (call !== null) call.onConnectError(new UpstreamTlsError(reason));
    this.destroy();
  }

  private onConnectTimeout(): void {
    this.timer = null;
    if (this.connected) return;
    const call = this.call;
    if (call !== null) {
      call.onConnectTimeout(this.connectTimeoutMs);
    }
    this.destroy();
  }

  private onData(b: Buffer): void {
    const call = this.call;
    if (call === null) {
      // Bytes nobody asked for (after a response, or while idle): the connection cannot be trusted.
      this.destroy();
      return;
    }
    call.onSocketData(b);
  }

  private onEnd(): void {
    const call = this.call;
    if (call === null) {
      this.destroy();
      return;
    }
    call.onSocketEnd();
  }

  private onError(err: Error): void {
    const call = this.call;
    if (call !== null) {
      if (!this.connected) call.onConnectError(err);
      else if (this.tls !== null && !this.reused && isTlsAlert(errorCode(err))) call.onTlsRefused(err);
      else call.onSocketLost(errorCode(err), errorDetail(err));
    }
    this.destroy();
  }

  private onClose(): void {
    const call = this.call;
    if (call !== null) call.onSocketLost('', 'connection closed by the upstream');
    this.markDead();
  }
}

const BODY_METHODS_NEED_LENGTH = new Set(['POST', 'PUT', 'PATCH']);

/** True when request number `n` on a socket is the last `maxRequestsPerConnection` allows. */
function isLastRequest(pool: ConnectionPolicy, n: number): boolean {
  const max = pool.maxRequestsPerConnection;
  return max !== undefined && max > 0 && n >= max;
}

/**
 * How long a socket that served `requests` requests may stay idle under `pool`, given the `timeout`
 * the server hint or the client default allows: 0 (close it) once the request limit is reached, else
 * the smaller of `timeout` and the policy's idle timeout.
 */
function policyIdleTimeout(pool: ConnectionPolicy, requests: number, timeout: number): number {
  if (isLastRequest(pool, requests)) return 0;
  const idle = pool.idleTimeoutMs;
  return idle !== undefined && idle > 0 && idle < timeout ? idle : timeout;
}

/** One request: its parser state, its body writer and the `UpstreamCall` the caller holds. */
class H1Call extends H1ResponseParser implements UpstreamCall {
  private readonly endpoint: Endpoint;
  private readonly pool: ConnPool;
  /** Null for plaintext. */
  private readonly tls: TlsSetup | null;
  private readonly req: UpstreamRequest;
  private readonly handler: UpstreamHandler;
  private conn: Conn | null = null;
  private head = '';
  private invalid = '';
  private headersSeen = false;
  /** The head was handed to a connected socket (`requestWritten`). */
  private written = false;
  private retried = false;
  /** -1: chunked request body. */
  private declaredLength = -1;
  private bodyWritten = 0;
  private bodyAttached = false;
  private bodyFinished: boolean;
  private bodyPaused = false;
  private inData = false;
  private resumeAsked = false;
  private consumerPaused = false;

  constructor(pool: ConnPool, tls: TlsSetup | null, req: UpstreamRequest, handler: UpstreamHandler) {
    super();
    this.endpoint = pool.endpoint;
    this.pool = pool;
    this.tls = tls;
    this.req = req;
    this.handler = handler;
    this.bodyFinished = req.body === null;
  }

  start(): void {
    const settings = this.endpoint.settings;
    settings.busy++;
    if (settings.closed || this.endpoint.closed) {
      this.failLater('connect', 'upstream client closed');
      return;
    }
    if (this.tls !== null && this.tls.error !== '') {
      this.failLater('connect', this.tls.error);
      return;
    }
    this.head = this.buildHead();
    if (this.head === '') {
      this.failLater('protocol', this.invalid);
      return;
    }
    const conn = this.pool.acquire();
    if (conn === null) {
      this.conn = new Conn(this.pool, this, this.connectTimeoutMs(), this.tls);
      return;
    }
    conn.call = this;
    this.conn = conn;
    this.writeRequest(conn);
  }

  // ---- UpstreamCall ----

  resume(): void {
    if (this.done) return;
    if (this.inData) {
      this.resumeAsked = true;
      return;
    }
    if (!this.consumerPaused) return;
    this.consumerPaused = false;
    this.resumeParser();
    const conn = this.conn;
    if (!this.done && !this.parserSuspended && conn?.readPaused) {
      conn.readPaused = false;
      conn.socket.resume();
    }
  }

  abort(): void {
    if (this.done) return;
    this.settle();
    this.dropConn();
  }

  // ---- from Conn ----

  onConnected(): void {
    if (this.done || this.conn === null) return;
    this.writeRequest(this.conn);
  }

  onConnectTimeout(ms: number): void {
    this.failWith('timeout', `connect timeout after ${ms} ms`);
  }

  onConnectError(err: Error): void {
    this.failWith(failureBeforeSend(errorCode(err)), errorDetail(err));
  }

  onSocketData(b: Buffer): void {
    if (this.done) return;
    this.execute(b);
  }

  onSocketEnd(): void {
    if (this.done) return;
    if (this.executeEof()) return;
    this.onSocketLost('', 'connection closed by the upstream');
  }

  /** The connection closed or reset after it was up. `code` is the error code, '' for a clean close. */
  onSocketLost(code: string, detail: string): void {
    if (this.done) return;
    const conn = this.conn;
    if (
      conn?.reused &&
      !this.retried &&
      !this.responseStarted &&
      this.req.body === null &&
      (code === '' || code === 'ECONNRESET' || code === 'EPIPE')
    ) {
      // Stale keep-alive race (see the top): once more on a fresh connection. What went to the stale
      // socket is taken as unprocessed, so `requestWritten` starts over with the new connection.
      this.retried = true;
      this.written = false;
      this.dropConn();
      this.conn = new Conn(this.pool, this, this.connectTimeoutMs(), this.tls);
      return;
    }
    this.failWith('reset', detail);
  }

  /**
   * A TLS alert on a fresh connection that was up on our side (see the top): the server refused the
   * handshake, typically our client certificate. Before any response byte that is a connect failure
   * and the application never saw the request; after one, an ordinary reset.
   */
  onTlsRefused(err: Error): void {
    if (this.done) return;
    if (this.responseStarted) {
      this.failWith('reset', errorDetail(err));
      return;
    }
    this.written = false;
    this.failWith('connect', errorDetail(err));
  }

  onDrain(): void {
    if (this.bodyPaused && !this.done) {
      this.bodyPaused = false;
      this.req.body?.resume();
    }
  }

  // ---- parser hooks ----

  protected onHead(status: number, headers: HeaderList): void {
    this.headersSeen = true;
    this.handler.onHeaders(status, headers);
  }

  protected onBody(chunk: Buffer): boolean {
    this.inData = true;
    this.resumeAsked = false;
    const more = this.handler.onData(chunk);
    this.inData = false;
    if (more || this.resumeAsked || this.done) return true;
    this.consumerPaused = true;
    const conn = this.conn;
    if (conn !== null && !conn.readPaused) {
      conn.readPaused = true;
      conn.socket.pause();
    }
    return false;
  }

  protected onComplete(extra: boolean): void {
    this.settle();
    const conn = this.conn!;
    this.conn = null;
    conn.call = null;
    if (this.keepAlive && !extra && this.bodyFinished) {
      const hint = this.keepAliveHintMs;
      let timeout =
        hint >= 0 ? Math.min(hint - 1000, MAX_KEEP_ALIVE_MS) : this.endpoint.settings.keepAliveTimeoutMs;
      const pool = this.req.pool;
      if (pool !== undefined) timeout = policyIdleTimeout(pool, conn.requests, timeout);
      this.pool.release(conn, timeout);
    } else {
      conn.destroy();
    }
    if (this.bodyPaused) {
      // The response is complete before the request body: let the rest of it drain (ignored).
      this.bodyPaused = false;
      this.req.body?.resume();
    }
    this.handler.onEnd();
  }

  protected onParseError(detail: string): void {
    this.failWith('protocol', `invalid response: ${detail}`);
  }

  // ---- internals ----

  private settle(): void {
    this.done = true;
    const settings = this.endpoint.settings;
    if (--settings.busy === 0 && settings.drained.length > 0) {
      for (const resolve of settings.drained.splice(0)) resolve();
    }
  }

  private failWith(failure: UpstreamFailure, detail: string): void {
    if (this.done) return;
    this.settle();
    this.dropConn();
    this.handler.onError(failure, this.headersSeen, detail, this.written);
  }

  /** Lets go of the socket, if any: no more events from it, and it is destroyed (never reused). */
  private dropConn(): void {
    const conn = this.conn;
    this.conn = null;
    if (conn !== null) {
      conn.call = null;
      conn.destroy();
    }
  }

  /** Reports a failure on a microtask, so `send` returns before any callback runs. */
  private failLater(failure: UpstreamFailure, detail: string): void {
    queueMicrotask(() => {
      if (this.done) return;
      this.settle();
      this.handler.onError(failure, false, detail, false);
    });
  }

  /** The request's connect timeout for a new socket: its policy's, else the client's. */
  private connectTimeoutMs(): number {
    const ms = this.req.pool?.connectTimeoutMs;
    return ms !== undefined && ms > 0 ? Math.min(ms, MAX_TIMER_MS) : this.endpoint.settings.connectTimeoutMs;
  }

  private writeRequest(conn: Conn): void {
    this.resetParser(this.req.method === 'HEAD');
    this.written = true;
    const n = ++conn.requests;
    const pool = this.req.pool;
    if (pool !== undefined && isLastRequest(pool, n)) {
      // The socket closes after this response: say so, so the server does not keep it open either.
      conn.socket.write(`${this.head.slice(0, -2)}connection: close\r\n\r\n`, 'latin1');
    } else {
      conn.socket.write(this.head, 'latin1');
    }
    const body = this.req.body;
    if (body !== null && !this.bodyAttached) this.attachBody(body);
  }

  private attachBody(body: BodyStream): void {
    this.bodyAttached = true;
    body.onData((chunk, last) => this.onBodyChunk(chunk, last));
  }

  private onBodyChunk(chunk: Buffer, last: boolean): void {
    const conn = this.conn;
    if (this.done || conn === null) return;
    const socket = conn.socket;
    let ok = true;
    if (this.declaredLength < 0) {
      if (chunk.length > 0) {
        socket.cork();
        socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
        socket.write(chunk);
        ok = socket.write(last ? '\r\n0\r\n\r\n' : '\r\n', 'latin1');
        socket.uncork();
      } else if (last) {
        ok = socket.write('0\r\n\r\n', 'latin1');
      }
    } else {
      this.bodyWritten += chunk.length;
      if (this.bodyWritten > this.declaredLength) {
        this.failWith('reset', 'request body longer than its content-length');
        return;
      }
      if (chunk.length > 0) ok = socket.write(chunk);
      if (last && this.bodyWritten !== this.declaredLength) {
        this.failWith('reset', 'request body shorter than its content-length');
        return;
      }
    }
    if (last) {
      this.bodyFinished = true;
      return;
    }
    if (!ok && !this.bodyPaused) {
      this.bodyPaused = true;
      this.req.body?.pause();
    }
  }

  /** Request line and headers as one latin1 string; '' (with `invalid` set) when they cannot be sent. */
  private buildHead(): string {
    const req = this.req;
    if (!isToken(req.method)) return this.refuse('invalid method');
    if (!isTargetText(req.path)) return this.refuse('invalid request target');
    const headers = req.headers;
    let head = `${req.method} ${req.path} HTTP/1.1\r\n`;
    let length = -1;
    for (let i = 0; i + 1 < headers.length; i += 2) {
      const name = headers[i]!;
      const value = headers[i + 1]!;
      if (!isToken(name) || !isFieldValue(value))
        return this.refuse(`invalid header ${JSON.stringify(name)}`);
      if (name === 'content-length') {
        if (length !== -1) return this.refuse('more than one content-length');
        length = parseDecimal(value);
        if (length < 0) return this.refuse('invalid content-length');
      }
      head += `${name}: ${value}\r\n`;
    }
    if (req.body === null) {
      if (length === -1 && BODY_METHODS_NEED_LENGTH.has(req.method)) head += 'content-length: 0\r\n';
    } else if (length === -1) {
      head += 'transfer-encoding: chunked\r\n';
    }
    this.declaredLength = length;
    return `${head}\r\n`;
  }

  private refuse(why: string): string {
    this.invalid = `request not sent: ${why}`;
    return '';
  }
}
