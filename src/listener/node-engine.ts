/**
 * Listener engine on node:http: the portable path, and the only one that can hand a raw socket to
 * an upgrade handler.
 *
 * - llhttp in strict mode (`insecureHTTPParser: false`) does the request-smuggling checks; what it
 *   refuses arrives as `clientError` and gets `400` + `x-meshlet-flags: DPE` + a one-line body,
 *   then the connection closes.
 * - `requireHostHeader: false`: node's own check would answer 400 without our body and flag, so the
 *   engine checks Host itself (HTTP/1.1 only, RFC 9112 §3.2).
 * - `Expect: 100-continue`: `checkContinue` writes `100 Continue` and hands the request on, the same
 *   behaviour as uWS, which sends the 100 by itself.
 * - CONNECT and upgrade requests never reach the request handler: CONNECT gets 501; upgrades go to
 *   `onUpgrade`, or get 501 when there is none.
 * - Inbound mTLS (`opts.tls`): node:http's own connection handler is taken off the server and run by
 *   the TLS gate (inbound-tls.ts) once a connection is plaintext or has finished its handshake, so
 *   the server keeps listening, tracking connections and timing out heads as usual. Bytes the gate
 *   read to decide are handed to the parser before anything else. Requests of a TLS connection carry
 *   its `peer` and `sni`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { clampToLength, EngineIncoming, ExchangeBase } from './engine-exchange.ts';
import {
  checkRequestHead,
  isBodilessStatus,
  isFieldValue,
  isHeadProblem,
  isToken,
  rawLocalReply,
  reasonPhrase,
  trimOws,
} from './http-syntax.ts';
import { type ConnectionTls, type GateTimers, InboundTlsGate, type TlsAwareListener } from './inbound-tls.ts';
import type { BodyStream, HeaderList, ListenOptions, ResponseSink } from './listener-types.ts';

const EMPTY = Buffer.alloc(0);
const LENGTH_VALUE = /^\d{1,15}$/;

/** Internal tuning, for tests. */
export interface NodeTuning {
  /** Sniffing plus the TLS handshake must finish this long after accept (ms); default 60 s, as node:http's head timeout. */
  readonly tlsTimeoutMs?: number;
  readonly tlsTimers?: GateTimers;
}

class NodeListenerState {
  inFlight = 0;
  connectionsActive = 0;
  connectionsTotal = 0;
  /** The raw socket's 'close' listener that counts the connection out (one function for all). */
  readonly connectionClosed = (): void => {
    this.connectionsActive--;
  };
  draining = false;
  /** TLS facts of each TLS connection (plaintext connections have none). */
  readonly security = new WeakMap<Duplex, ConnectionTls>();
  /** The exchange currently using each socket, so `clientError` knows whether a response started. */
  readonly active = new WeakMap<Duplex, NodeExchange>();
  /** Connections whose request was refused with 400: nothing more from them reaches the handler. */
  readonly refused = new WeakSet<Duplex>();
}

class NodeBody implements BodyStream {
  private attached = false;
  private readonly req: IncomingMessage;

  constructor(req: IncomingMessage) {
    this.req = req;
    // An aborted upload emits 'error' only when someone listens; the sink's onAborted reports it.
    req.on('error', () => {});
  }

  onData(cb: (chunk: Buffer, last: boolean) => void): void {
    if (this.attached) throw new Error('request body already has a consumer');
    this.attached = true;
    this.req.on('data', (chunk: Buffer) => cb(chunk, false));
    this.req.on('end', () => cb(EMPTY, true));
  }

  pause(): void {
    this.req.pause();
  }

  resume(): void {
    this.req.resume();
  }
}

class NodeExchange extends ExchangeBase<NodeListenerState> implements ResponseSink {
  private headSent = false;
  private flushed = false;
  private status = 200;
  private headOut: string[] = [];
  private endCalled = false;
  private bodiless = false;
  private closeAfter = false;
  private closeHeaderSent = false;
  private declared = -1;
  private written = 0;
  private drainArmed = false;
  private readonly req: IncomingMessage;
  private readonly res: ServerResponse;

  constructor(req: IncomingMessage, res: ServerResponse, state: NodeListenerState) {
    super(state);
    this.req = req;
    this.res = res;
    res.on('finish', () => this.onFinish());
    res.on('close', () => this.onClose());
  }

  /** The client sent `Connection: close`; node does not always act on it (e.g. `close\t`). */
  closeAfterResponse(): void {
    this.closeAfter = true;
  }

  /** Whether the status line went out (then `clientError` must not write a raw reply). */
  responseStarted(): boolean {
    return this.flushed;
  }

  /**
   * Records status and headers; they go out with the first body byte or `end` (node would not
   * send them earlier either), so `end(…, close)` can still add `connection: close` and a one-shot
   * `end(body)` gets a Content-Length, as on uWS.
   */
  writeHead(status: number, headers: HeaderList): void {
    if (this.finished || this.headSent) return;
    this.headSent = true;
    this.status = status;
    this.bodiless = this.req.method === 'HEAD' || isBodilessStatus(status);
    const out: string[] = [];
    let lengthSeen = false;
    for (let i = 0; i + 1 < headers.length; i += 2) {
      const name = headers[i] as string;
      const value = headers[i + 1] as string;
      if (name === 'content-length') {
        const v = trimOws(value);
        if (lengthSeen || status === 204 || status < 200 || !LENGTH_VALUE.test(v)) continue;
        lengthSeen = true;
        if (!this.bodiless) this.declared = Number(v);
        out.push(name, v);
        continue;
      }
      if (name === 'transfer-encoding' || name === 'connection' || name === 'keep-alive') continue;
      if (!isToken(name) || !isFieldValue(value)) continue;
      out.push(name, value);
    }
    this.headOut = out;
    // A head with no body in the same tick (an event stream waiting for its first event) still
    // goes out now.
    queueMicrotask(() => {
      if (this.flushed || this.finished) return;
      this.flushHead(-1);
      this.res.flushHeaders();
    });
  }

  private flushHead(oneShotLength: number): void {
    if (this.flushed) return;
    this.flushed = true;
    const out = this.headOut;
    if (oneShotLength >= 0 && this.declared === -1 && !this.bodiless) {
      out.push('content-length', String(oneShotLength));
    }
    if (this.closeAfter || this.state.draining) {
      out.push('connection', 'close');
      this.closeHeaderSent = true;
    }
    this.res.writeHead(this.status, reasonPhrase(this.status), out);
  }

  write(chunk: Buffer): boolean {
    if (this.finished || this.endCalled) return true;
    if (!this.headSent) this.writeHead(200, []);
    if (chunk.length === 0 || this.bodiless) return !this.needDrain;
    const data = this.clamp(chunk);
    if (data.length === 0) return true;
    this.flushHead(-1);
    this.written += data.length;
    const ok = this.res.write(data);
    if (!ok) {
      this.needDrain = true;
      if (!this.drainArmed) {
        this.drainArmed = true;
        this.res.once('drain', () => {
          this.drainArmed = false;
          this.drained();
        });
      }
    }
    return ok;
  }

  end(chunk?: Buffer, close?: boolean): void {
    if (this.finished || this.endCalled) return;
    this.endCalled = true;
    if (close === true) this.closeAfter = true;
    if (!this.headSent) this.writeHead(200, []);
    if (this.bodiless) {
      this.flushHead(-1);
      this.res.end();
      return;
    }
    const data = chunk === undefined ? EMPTY : this.clamp(chunk);
    this.flushHead(this.written === 0 ? data.length : -1);
    this.written += data.length;
    if (this.declared !== -1 && this.written < this.declared) {
      // Fewer bytes than the Content-Length promised: cut so the client cannot mistake it.
      if (data.length > 0) this.res.write(data);
      this.destroy();
      return;
    }
    this.res.end(data);
  }

  destroy(): void {
    if (this.finish(true)) this.req.socket.destroy();
  }

  /** Local reply through the response object (the request was parsed). */
  localReply(status: number, text: string, flags: string | null): void {
    const body = Buffer.from(`${text}\n`);
    const headers = ['content-type', 'text/plain; charset=utf-8', 'content-length', String(body.length)];
    if (flags !== null) headers.push('x-meshlet-flags', flags);
    this.closeAfter = true;
    this.writeHead(status, headers);
    this.endCalled = true;
    this.flushHead(-1);
    this.res.end(body);
  }

  private clamp(chunk: Buffer): Buffer {
    return clampToLength(chunk, this.declared, this.written);
  }

  private onFinish(): void {
    if (!this.finish(false)) return;
    if (this.state.active.get(this.req.socket) === this) this.state.active.delete(this.req.socket);
    // Close requested after the head went out without `connection: close` (or drain began since).
    if ((this.closeAfter || this.state.draining) && !this.closeHeaderSent) this.req.socket.end();
  }

  private onClose(): void {
    if (this.state.active.get(this.req.socket) === this) this.state.active.delete(this.req.socket);
    this.clientGone();
  }
}

function headerList(req: IncomingMessage): HeaderList {
  const raw = req.rawHeaders;
  const out: HeaderList = new Array<string>(raw.length);
  for (let i = 0; i + 1 < raw.length; i += 2) {
    out[i] = (raw[i] as string).toLowerCase();
    out[i + 1] = raw[i + 1] as string;
  }
  return out;
}

function hasRequestBody(req: IncomingMessage): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const cl = req.headers['content-length'];
  return cl !== undefined && Number(cl) > 0;
}

function missingHost(req: IncomingMessage): boolean {
  return req.httpVersionMajor === 1 && req.httpVersionMinor >= 1 && req.headers.host === undefined;
}

function endSocket(socket: Duplex, reply: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  if (socket instanceof Socket) {
    socket.write(reply);
    socket.destroySoon();
  } else {
    socket.end(reply);
  }
}

/**
 * Takes node:http's connection handler off `server` and runs it through the TLS gate instead: the
 * server still listens (so connection tracking, head timeouts and `close*Connections` keep working),
 * but a connection reaches HTTP only when it is plaintext or finished its handshake.
 */
function gateConnections(
  server: Server,
  state: NodeListenerState,
  opts: ListenOptions & { readonly tls: NonNullable<ListenOptions['tls']> },
  tuning: NodeTuning,
): InboundTlsGate {
  const own = server.listeners('connection') as Array<(this: Server, socket: Duplex) => void>;
  const httpConnection = own[0];
  if (own.length !== 1 || httpConnection === undefined) {
    throw new Error('node:http server has an unexpected set of connection listeners');
  }
  server.removeListener('connection', httpConnection);
  const gate = new InboundTlsGate({
    tls: opts.tls,
    timeoutMs: tuning.tlsTimeoutMs ?? server.headersTimeout,
    onReady: (socket, security, initial) => {
      if (state.draining) {
        socket.destroy();
        return;
      }
      if (security !== null) state.security.set(socket, security);
      httpConnection.call(server, socket);
      // The parser now reads the socket (node:http takes its handle over); the bytes read before
      // hand-over go to its 'data' listener first, ahead of anything the handle reads later.
      if (initial.length > 0) socket.emit('data', initial);
    },
    ...(tuning.tlsTimers === undefined ? {} : { timers: tuning.tlsTimers }),
  });
  server.on('connection', (raw: Socket) => gate.accept(raw));
  return gate;
}

/**
 * Serves `opts.handler` on node:http, behind the TLS gate when `opts.tls` is set. Rejects when the
 * address cannot be bound.
 */
export function listenNode(opts: ListenOptions, tuning: NodeTuning = {}): Promise<TlsAwareListener> {
  const state = new NodeListenerState();
  const server: Server = createServer({
    insecureHTTPParser: false,
    requireHostHeader: false,
    joinDuplicateHeaders: false,
    keepAlive: true,
  });
  let port = opts.port;
  const tls = opts.tls;
  const gate = tls === undefined ? null : gateConnections(server, state, { ...opts, tls }, tuning);
  // Added after the gate took node:http's own 'connection' listener over (it expects exactly one).
  server.on('connection', (raw: Socket) => {
    state.connectionsTotal++;
    state.connectionsActive++;
    raw.once('close', state.connectionClosed);
  });

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    state.inFlight++;
    const exchange = new NodeExchange(req, res, state);
    const socket = req.socket;
    if (state.refused.has(socket)) {
      // A request pipelined behind one we refused: the connection closes after that 400.
      exchange.destroy();
      return;
    }
    state.active.set(socket, exchange);
    const method = req.method ?? 'GET';
    const target = req.url ?? '/';
    const headers = headerList(req);
    // llhttp is strict, but not about everything a proxy must refuse (it lets a request with
    // `Transfer-Encoding: gzip` through, for one): the same head rules as the uws engine.
    const framing = checkRequestHead(method, target, headers);
    let problem: string | null = null;
    if (isHeadProblem(framing)) problem = framing.problem;
    else if (!framing.hasHost && req.httpVersionMajor === 1 && req.httpVersionMinor >= 1) {
      problem = 'missing host header';
    }
    if (problem !== null) {
      state.refused.add(socket);
      exchange.localReply(400, `malformed request: ${problem}`, 'DPE');
      return;
    }
    if (!isHeadProblem(framing) && framing.close) exchange.closeAfterResponse();
    const incoming = new EngineIncoming(
      'node',
      method,
      target,
      headers,
      socket.remoteAddress ?? '',
      port,
      hasRequestBody(req) ? new NodeBody(req) : null,
      gate === null ? null : (state.security.get(socket) ?? null),
    );
    try {
      opts.handler(incoming, exchange);
    } catch {
      if (!exchange.aborted) exchange.destroy();
    }
  };

  server.on('request', onRequest);
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    res.writeContinue();
    onRequest(req, res);
  });
  server.on('clientError', (err: Error & { code?: string }, socket: Duplex) => {
    const code = err.code ?? 'HPE_INVALID';
    const active = state.active.get(socket);
    if (code === 'ECONNRESET' || code === 'EPIPE' || active?.responseStarted() === true) {
      socket.destroy();
      return;
    }
    if (code === 'HPE_HEADER_OVERFLOW') {
      endSocket(socket, rawLocalReply(431, 'malformed request: header section too large', 'DPE'));
    } else if (code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      endSocket(socket, rawLocalReply(408, 'request timeout', null));
    } else {
      endSocket(socket, rawLocalReply(400, `malformed request: ${code}`, 'DPE'));
    }
  });
  server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
    endSocket(socket, rawLocalReply(501, 'CONNECT is not supported', null));
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (missingHost(req)) {
      endSocket(socket, rawLocalReply(400, 'malformed request: missing host header', 'DPE'));
      return;
    }
    if (opts.onUpgrade === undefined) {
      endSocket(socket, rawLocalReply(501, 'protocol upgrade is not supported on this listener', null));
      return;
    }
    const incoming = new EngineIncoming(
      'node',
      req.method ?? 'GET',
      req.url ?? '/',
      headerList(req),
      req.socket.remoteAddress ?? '',
      port,
      null,
      gate === null ? null : (state.security.get(req.socket) ?? null),
    );
    opts.onUpgrade(incoming, socket, head);
  });

  return new Promise<TlsAwareListener>((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen({ host: opts.host, port: opts.port }, () => {
      server.off('error', onError);
      const addr = server.address();
      if (addr !== null && typeof addr === 'object') port = addr.port;
      let stopped = false;
      const stopAccepting = (): void => {
        state.draining = true;
        if (stopped) return;
        stopped = true;
        server.close();
        server.closeIdleConnections();
        gate?.closeAll();
      };
      resolve({
        name: opts.name,
        engine: 'node',
        host: opts.host,
        port,
        stopAccepting,
        inFlight: () => state.inFlight,
        connectionsActive: () => state.connectionsActive,
        connectionsTotal: () => state.connectionsTotal,
        close: () => {
          stopAccepting();
          server.closeAllConnections();
        },
        tlsHandshakeErrors: () => (gate === null ? 0 : gate.tlsHandshakeErrors()),
        plaintextRefused: () => (gate === null ? 0 : gate.plaintextRefused()),
      });
    });
  });
}
