/**
 * The upstream client on undici: one `Pool` per endpoint, requests through `pool.dispatch`.
 * This is the only file that imports undici.
 *
 * Handler API. undici 7 accepts two handler shapes. Its core (`core/request.js`, `client-h1.js`) still
 * speaks the older one (`onConnect`, `onHeaders(status, rawHeaders, resume)`, `onData`, `onComplete`,
 * `onError`); a handler with `onRequestStart` is wrapped per request in an `UnwrapHandler` plus an
 * `UnwrapController`, and every response's raw headers are parsed into an object by `parseHeaders`
 * before `onResponseStart` sees them. We need the raw list anyway, so we use the older shape: fewer
 * allocations per request, same backpressure (`onData` returning false pauses the parser, the
 * `resume` callback restarts it). The types mark it deprecated; if undici 8 drops it, only this file
 * changes.
 *
 * Stale keep-alive connections (what undici does, read in `client-h1.js`):
 * - an idle socket is closed after the server's `Keep-Alive: timeout=N` hint minus 2 s, or after
 *   `keepAliveTimeoutMs` (default 4 s, under Node's 5 s server default) when there is no hint;
 * - with pipelining 1 it frees a connection only one event-loop turn (`setImmediate`) after the
 *   response ended, so a server that closes despite keep-alive is seen first (a request sent in that
 *   very turn opens another connection);
 * - before it writes a request on a reused idle socket, it yields once (`setImmediate`) so a FIN or
 *   RST already queued on that socket is read first; a socket closed then is replaced, and requests
 *   not yet written move to a new connection without an error (socket errors never fail requests
 *   that were not written);
 * - it does NOT retry a request already written: if the server closes the socket in the tiny window
 *   after that check, the request fails with `UND_ERR_SOCKET` / `ECONNRESET`, which we report as
 *   `reset` before headers. Retrying that (idempotent methods only) is the retry stage's decision.
 *
 * Expect: undici 7 rejects an `expect` header and honours `expectContinue` only on HTTP/2; on HTTP/1.1
 * it sends the body at once and treats a `100` response as invalid. So `onContinue` is not called by
 * this client: the proxy answers `100 Continue` itself (Envoy's default), the listener's business.
 *
 * The request body is attached to the `BodyStream` only when undici starts writing the request, so an
 * attempt that fails with `connect` or `timeout` never consumed the body and may be retried elsewhere.
 *
 * `requestWritten` (4th argument of `onError`), best effort: true once undici called `onConnect` (it
 * does so right before it writes the head on a connected socket), false before that (connect errors
 * and timeouts, a bad origin, a request refused before any socket).
 *
 * Per-request connection policy (`UpstreamRequest.pool`). undici takes its connection settings per
 * `Pool` (one per endpoint, shared by every cluster that sends there), not per dispatch, so:
 * - `connectTimeoutMs`: a timer per request, started at `send` and stopped by `onConnect`; when it
 *   fires first the attempt fails with `timeout` (request not written). It measures the wait for a
 *   socket, which is the connect time (plus, only under `connectionsPerEndpoint`, time queued for a
 *   free connection; a reused socket gets there at once). The pool's own connect timeout (client
 *   option, default 10 s) still bounds the connect itself, so a request value above it acts as that
 *   one. The connect is not cancelled: when it completes, undici hands the abandoned request over and
 *   `onConnect` aborts it, which destroys that socket;
 * - `maxRequestsPerConnection` 1 sets `reset: true` on the dispatch (undici sends `connection: close`
 *   and does not reuse the socket); larger limits are not applied (undici counts requests per socket
 *   only with its pool-wide `maxRequestsPerClient`);
 * - `idleTimeoutMs` is not applied: the pool's keep-alive timeout (above) governs idle sockets.
 *
 * TLS origination (`target.tls`): one more `Pool` per endpoint and `tls.poolKey` (origin `https://…`),
 * whose connections come from our own connector, so both clients originate TLS the same way: the
 * lean client's `tlsSetup` (one secure context per `UpstreamTls`, shared by equal material), SNI,
 * ALPN, session resumption per pool, and after `secureConnect` the same server identity check
 * (`verifyServer`); a chain, handshake or identity failure fails the attempt as `connect` with the
 * reason. A new `poolKey` for an endpoint closes that endpoint's TLS pools that hold no connection
 * and no request (the pools of rotated identities, once drained). Limits:
 * - the connect timeout of a TLS pool is the client's (`connectTimeoutMs`, covering the handshake),
 *   applied by our connector; a request's own connect timeout still races it as above;
 * - undici fails every request queued on a pool when a connect fails, so requests waiting behind a
 *   failed handshake (only possible under `connectionsPerEndpoint`) fail with the same reason;
 * - a TLS alert after the handshake (a TLS 1.3 server refusing our certificate) is a `reset` here,
 *   since undici reports it as a socket error on a written request; the lean client tells it apart.
 */
import { Readable } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { type buildConnector, type Dispatcher, errors, Pool } from 'undici';
import type { BodyStream, HeaderList } from '../listener/listener-types.ts';
import type { UpstreamTls } from '../tls/identity-types.ts';
import { EndpointMap } from './endpoint-map.ts';
import { addConnectionTokens, isHopByHop } from './forward-headers.ts';
import { TlsSession, type TlsSetup, tlsConnectOptions, tlsSetup, verifyServer } from './h1-client.ts';
import { errorCode, errorDetail, failureBeforeSend, UpstreamTlsError } from './upstream-errors.ts';
import {
  type ConnectionOptions,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_KEEP_ALIVE_TIMEOUT_MS,
  type EndpointClient,
  type UpstreamCall,
  type UpstreamFailure,
  type UpstreamHandler,
  type UpstreamRequest,
  type UpstreamTarget,
} from './upstream-types.ts';

export interface UndiciUpstreamOptions extends ConnectionOptions {
  /** Connection cap per endpoint. Default: no cap (circuit breaking happens before the client). */
  readonly connectionsPerEndpoint?: number;
}

/** `retain` closes the dropped endpoints' pools gracefully; `endpoints` lists the pools open. */
export type UndiciUpstream = EndpointClient;

/** Envoy's default limit for a header section (60 KiB); Node's default would be 16 KiB. */
const MAX_HEADER_SIZE = 60 * 1024;
const BODY_HIGH_WATER_MARK = 64 * 1024;
const ABORTED = new Error('aborted by the proxy');

export function createUndiciUpstream(opts: UndiciUpstreamOptions = {}): UndiciUpstream {
  const poolOptions: Pool.Options = {
    connectTimeout: opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    keepAliveTimeout: opts.keepAliveTimeoutMs ?? DEFAULT_KEEP_ALIVE_TIMEOUT_MS,
    connections: opts.connectionsPerEndpoint ?? null,
    pipelining: 1,
    // Route and idle timeouts are enforced by the pipeline; 0 turns undici's own off.
    headersTimeout: 0,
    bodyTimeout: 0,
    maxHeaderSize: MAX_HEADER_SIZE,
  };
  const connectTimeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const pools = new EndpointMap<Pool>(
    (address, port) => new Pool(`http://${hostOf(address)}:${port}`, poolOptions),
  );
  /** TLS pools by endpoint, then `poolKey`. */
  const tlsPools = new EndpointMap<Map<string, Pool>>(() => new Map());

  function tlsPool(address: string, port: number, tls: UpstreamTls, setup: TlsSetup): Pool {
    const byKey = tlsPools.get(address, port);
    let pool = byKey.get(tls.poolKey);
    if (pool === undefined) {
      // A new key (first use or a rotated identity): close the pools with nothing open or queued.
      for (const [key, p] of byKey) {
        const stats = p.stats;
        if (stats.connected === 0 && stats.size === 0) {
          byKey.delete(key);
          p.close().catch(() => {});
        }
      }
      pool = new Pool(`https://${hostOf(address)}:${port}`, {
        ...poolOptions,
        connect: tlsConnector(setup, connectTimeoutMs),
      });
      byKey.set(tls.poolKey, pool);
    }
    return pool;
  }

  return {
    send(target: UpstreamTarget, req: UpstreamRequest, handler: UpstreamHandler): UpstreamCall {
      const attempt = new Attempt(handler, req.body);
      let pool: Pool;
      try {
        const tls = target.tls;
        if (tls === undefined) {
          pool = pools.get(target.address, target.port);
        } else {
          const setup = tlsSetup(tls);
          if (setup.error !== '') {
            attempt.failLater('connect', setup.error);
            return attempt;
          }
          pool = tlsPool(target.address, target.port, tls, setup);
        }
      } catch (err) {
        // Bad address or port: undici refuses to build the origin.
        attempt.failLater('connect', errorDetail(err));
        return attempt;
      }
      const dispatchOptions: Dispatcher.DispatchOptions = {
        path: req.path,
        method: req.method,
        headers: req.headers,
        body: attempt.body,
        expectContinue: req.expectContinue,
      };
      const policy = req.pool;
      if (policy !== undefined) {
        // Only ever `true`: undici lets an explicit `reset: false` undo its own reset for HEAD.
        if (policy.maxRequestsPerConnection === 1) dispatchOptions.reset = true;
        const ms = policy.connectTimeoutMs;
        if (ms !== undefined && ms > 0) attempt.startConnectTimer(ms);
      }
      attempt.inSend = true;
      pool.dispatch(dispatchOptions, attempt);
      attempt.inSend = false;
      return attempt;
    },

    retain(keys: ReadonlySet<string>): void {
      pools.retain(keys, (pool) => {
        pool.close().catch(() => {});
      });
      tlsPools.retain(keys, (byKey) => {
        for (const pool of byKey.values()) pool.close().catch(() => {});
      });
    },

    endpoints(): string[] {
      const keys = pools.keys();
      for (const key of tlsPools.keys()) if (!keys.includes(key)) keys.push(key);
      return keys;
    },

    async close(): Promise<void> {
      const closing: Promise<void>[] = [];
      for (const pool of pools.values()) closing.push(pool.close());
      for (const byKey of tlsPools.values()) for (const pool of byKey.values()) closing.push(pool.close());
      pools.clear();
      tlsPools.clear();
      await Promise.all(closing);
    },
  };
}

function ignore(): void {}

function hostOf(address: string): string {
  return address.includes(':') ? `[${address}]` : address;
}

/**
 * undici's connector for the TLS pool of one `UpstreamTls`: `tls.connect` with its setup, the
 * session of the previous connection offered for resumption, the connect timeout over the handshake,
 * and the server identity check before undici gets the socket.
 */
function tlsConnector(setup: TlsSetup, timeoutMs: number): buildConnector.connector {
  const session = new TlsSession();
  return (options, callback) => {
    const socket = tlsConnect(
      tlsConnectOptions(setup, options.hostname, Number(options.port), session.offer(setup.tls)),
    );
    const tickets = session.watch(socket, setup.tls);
    let settled = false;
    const settle = (err: Error | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('error', settle);
      if (err === null) {
        callback(null, socket);
      } else {
        // Whatever the dying socket still reports has nobody to go to.
        socket.on('error', ignore);
        socket.destroy();
        callback(err, null);
      }
    };
    const timer = setTimeout(
      () => settle(new errors.ConnectTimeoutError(`connect timeout after ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.once('error', settle);
    socket.once('secureConnect', () => {
      const reason = verifyServer(socket, setup.tls);
      if (reason === null) tickets.verified();
      else session.forget();
      settle(reason === null ? null : new UpstreamTlsError(reason));
    });
  };
}

/** One attempt: undici's (older-shape) dispatch handler and our `UpstreamCall` in one object. */
class Attempt implements Dispatcher.DispatchHandler, UpstreamCall {
  readonly handler: UpstreamHandler;
  readonly body: RequestBody | null;
  /** True while `pool.dispatch` runs: errors raised inside it are delivered on a microtask. */
  inSend = false;
  private done = false;
  /** undici started writing the request (`onConnect`). */
  private sent = false;
  private headersSeen = false;
  private inData = false;
  private resumeAsked = false;
  private paused = false;
  private abortFn: ((err?: Error) => void) | null = null;
  private resumeFn: (() => void) | null = null;
  /** The request's own connect timeout (see the top), until `onConnect`. */
  private connectTimer: NodeJS.Timeout | null = null;

  constructor(handler: UpstreamHandler, body: BodyStream | null) {
    this.handler = handler;
    this.body = body === null ? null : new RequestBody(body);
  }

  // ---- UpstreamCall ----

  resume(): void {
    if (this.done) return;
    if (this.inData) {
      // Called from inside `onData`: undici's parser is running and cannot be resumed re-entrantly.
      this.resumeAsked = true;
      return;
    }
    if (!this.paused) return;
    this.paused = false;
    this.resumeFn?.();
  }

  abort(): void {
    if (this.done) return;
    this.done = true;
    this.stopConnectTimer();
    this.body?.destroy();
    // Not yet on a socket: `onConnect` aborts when undici gets there (or `onError` arrives first).
    this.abortFn?.(ABORTED);
  }

  // ---- undici handler ----

  onConnect(abort: (err?: Error) => void): void {
    if (this.done) {
      abort(ABORTED);
      return;
    }
    this.stopConnectTimer();
    this.abortFn = abort;
    this.sent = true;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (this.done) return false;
    // Informational responses (102, 103) are not relayed; 100 never gets here on HTTP/1.1 (see top).
    if (statusCode < 200) return true;
    this.headersSeen = true;
    this.resumeFn = resume;
    this.handler.onHeaders(statusCode, responseHeaders(rawHeaders));
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.done) return false;
    this.inData = true;
    this.resumeAsked = false;
    const more = this.handler.onData(chunk);
    this.inData = false;
    if (more || this.resumeAsked || this.done) return true;
    this.paused = true;
    return false;
  }

  onComplete(): void {
    if (this.done) return;
    this.done = true;
    this.handler.onEnd();
  }

  onError(err: Error): void {
    if (this.done) return;
    const failure = classify(err, this.sent);
    const detail = errorDetail(err);
    if (this.inSend) {
      this.failLater(failure, detail);
      return;
    }
    this.done = true;
    this.stopConnectTimer();
    this.body?.destroy();
    this.handler.onError(failure, this.headersSeen, detail, this.sent);
  }

  /** Reports a failure on a microtask, so `send` returns before any callback runs. */
  failLater(failure: UpstreamFailure, detail: string): void {
    queueMicrotask(() => {
      if (this.done) return;
      this.done = true;
      this.stopConnectTimer();
      this.body?.destroy();
      this.handler.onError(failure, false, detail, this.sent);
    });
  }

  startConnectTimer(ms: number): void {
    // Node fires longer delays after 1 ms; the pool's own connect timeout is far below this anyway.
    this.connectTimer = setTimeout(() => this.onConnectTimeout(ms), Math.min(ms, 2 ** 31 - 1));
  }

  private stopConnectTimer(): void {
    if (this.connectTimer !== null) {
      clearTimeout(this.connectTimer);
      this.connectTimer = null;
    }
  }

  private onConnectTimeout(ms: number): void {
    this.connectTimer = null;
    if (this.done || this.sent) return;
    // undici keeps the request queued; `onConnect` aborts it if a socket ever comes (see the top).
    this.done = true;
    this.body?.destroy();
    this.handler.onError('timeout', false, `connect timeout after ${ms} ms`, false);
  }
}

/**
 * Adapts a `BodyStream` to the `Readable` undici writes from. Attaches on the first `_read` (when
 * undici starts writing), pauses the downstream when the buffer is full and resumes it on `_read`.
 */
class RequestBody extends Readable {
  private readonly source: BodyStream;
  private attached = false;
  private sourcePaused = false;

  constructor(source: BodyStream) {
    super({ highWaterMark: BODY_HIGH_WATER_MARK });
    this.source = source;
  }

  override _read(): void {
    if (!this.attached) {
      this.attached = true;
      this.source.onData((chunk, last) => this.onChunk(chunk, last));
      return;
    }
    if (this.sourcePaused) {
      this.sourcePaused = false;
      this.source.resume();
    }
  }

  private onChunk(chunk: Buffer, last: boolean): void {
    if (this.destroyed) return;
    if (chunk.length > 0 && !this.push(chunk) && !last && !this.sourcePaused) {
      this.sourcePaused = true;
      this.source.pause();
    }
    if (last) this.push(null);
  }
}

/** Raw undici header buffers → lowercase `HeaderList` without hop-by-hop and Connection-named headers. */
function responseHeaders(raw: Buffer[]): HeaderList {
  const out: HeaderList = [];
  let named: string[] | null = null;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    // latin1 is a byte-for-byte copy; toLowerCase returns the same string when nothing changes.
    const name = raw[i]!.toString('latin1').toLowerCase();
    if (isHopByHop(name)) {
      if (name === 'connection') named = addConnectionTokens(raw[i + 1]!.toString('latin1'), named);
      continue;
    }
    out.push(name, raw[i + 1]!.toString('latin1'));
  }
  if (named === null) return out;
  // Rare: `Connection` named an end-to-end header. Filter once more in place.
  let w = 0;
  for (let r = 0; r < out.length; r += 2) {
    if (named.includes(out[r]!)) continue;
    out[w++] = out[r]!;
    out[w++] = out[r + 1]!;
  }
  out.length = w;
  return out;
}

/**
 * Maps an undici or socket error to an `UpstreamFailure`. `sent` tells whether undici had started
 * writing the request: before that nothing reached the upstream, so it is a connect failure.
 */
export function classify(err: unknown, sent: boolean): UpstreamFailure {
  const code = errorCode(err);
  if (code === 'UND_ERR_CONNECT_TIMEOUT') return 'timeout';
  if (code === 'UND_ERR_INVALID_ARG' || code === 'UND_ERR_NOT_SUPPORTED') return 'protocol';
  if (!sent) return failureBeforeSend(code);
  // undici 7.30 builds `HPE_*` codes from a lookup that misses, so its parser errors carry no code: go by
  // the class name. A message ending at EOF means the connection closed mid-message: a reset.
  if (code.startsWith('HPE_') || (err instanceof Error && err.name === 'HTTPParserError')) {
    const message = err instanceof Error ? err.message : '';
    return code === 'HPE_INVALID_EOF_STATE' || message.includes('EOF') ? 'reset' : 'protocol';
  }
  switch (code) {
    case 'UND_ERR_HEADERS_OVERFLOW':
    case 'UND_ERR_RES_EXCEEDED_MAX_SIZE':
      return 'protocol';
    case 'UND_ERR_SOCKET': {
      // undici's parser reports a response it cannot place (unsolicited 100, upgrade) this way.
      const message = err instanceof Error ? err.message : '';
      return message === 'bad response' || message === 'bad upgrade' ? 'protocol' : 'reset';
    }
    default:
      // ECONNRESET, EPIPE, UND_ERR_CLOSED, UND_ERR_DESTROYED, UND_ERR_REQ_CONTENT_LENGTH_MISMATCH, and
      // UND_ERR_RES_CONTENT_LENGTH_MISMATCH (the connection ended before Content-Length bytes), …
      return 'reset';
  }
}
