/**
 * Listener engine on uWebSockets.js (the fast path).
 *
 * What this build of uWS (uWebSockets/20 in the `uwebsockets@3.0.6` mirror) does by itself, found
 * by testing it, and what this engine does about it:
 *
 * - Its parser answers some requests before any handler runs: HTTP/1.0 and any request-target that
 *   does not start with `/` (absolute-form `http://h/p`, authority-form `CONNECT h:443`,
 *   asterisk-form `*`) get `505 HTTP Version Not Supported` and a close; a missing Host, or both
 *   Content-Length and Transfer-Encoding, get its own `400 Bad Request` and a close. None of those
 *   replies carries our one-line body or `x-meshlet-flags`. So HTTP_PROXY-style absolute-form
 *   requests need `--engine node`.
 * - It is lenient where a proxy must not be (e.g. `Transfer-Encoding: gzip` without chunked is read
 *   as "no body", duplicate Content-Length is accepted): every request head goes through
 *   `checkRequestHead` here, and anything it refuses gets `400` + `x-meshlet-flags: DPE` + close
 *   before the handler sees it.
 * - `Expect: 100-continue`: uWS writes `100 Continue` itself as soon as the head is parsed, so the
 *   client never hangs; the handler still sees the `expect` header (the pipeline should not pass it
 *   upstream).
 * - It adds `Date` and `uWebSockets: 20` to every response; they cannot be turned off from JS.
 * - `endWithoutBody(n)` with a length, and `endWithoutBody(undefined, close)`, are broken in this
 *   build (the response never completes, or a bogus `Content-Length: 9223372036854775808` goes
 *   out). Bodiless responses therefore write the upstream's `content-length` as a plain header and
 *   call `endWithoutBody()` without arguments.
 * - `end(chunk, true)` after earlier `write`/`tryEnd` calls writes `Connection: close` into the
 *   body. Closing after a response is therefore only possible for one-shot responses
 *   (`end(body, true)` with no earlier write); a streamed response that ends with `close` gets a
 *   `connection: close` header only if the listener was already draining when the body started.
 * - Header values are handed to JS decoded as UTF-8: obs-text bytes (0x80-0xFF) arrive as U+FFFD.
 * - Upgrade: uWS only upgrades to its own WebSocket implementation, never hands out the socket, so
 *   `Connection: upgrade` requests are answered here with 501.
 * - No TLS: `opts.tls` is not served here (this build exposes no client certificate, so no caller
 *   identity); `startListener` runs listeners with `tls` on h1 instead.
 */

import type * as Uws from 'uWebSockets.js';
import { createRequire } from 'node:module';
import { EngineIncoming, ExchangeBase } from './engine-exchange.ts';
import {
  checkRequestHead,
  compactIpv6,
  isBodilessStatus,
  isFieldValue,
  isHeadProblem,
  isToken,
  statusLine,
  trimOws,
} from './http-syntax.ts';
import type {
  BodyStream,
  HeaderList,
  Listener,
  ListenOptions,
  RequestHandler,
  ResponseSink,
} from './listener-types.ts';

type UwsModule = typeof Uws;
type UwsResponse = Uws.HttpResponse;
type UwsRequest = Uws.HttpRequest;

const EMPTY = Buffer.alloc(0);
const LENGTH_VALUE = /^\d{1,15}$/;

let loaded: UwsModule | null | undefined;
let loadFailure: string | null = null;

function isUwsModule(m: unknown): m is UwsModule {
  if (typeof m !== 'object' || m === null) return false;
  const rec = m as Record<string, unknown>;
  return (
    typeof rec['App'] === 'function' &&
    typeof rec['us_listen_socket_close'] === 'function' &&
    typeof rec['us_socket_local_port'] === 'function'
  );
}

/**
 * Loads the native addon once. Null when it cannot load on this platform or Node version (or when
 * `MESHLET_DISABLE_UWS=1`, used by tests and as an operator escape hatch); `uwsLoadFailure()` says why.
 */
export function loadUws(): UwsModule | null {
  if (process.env['MESHLET_DISABLE_UWS'] === '1') {
    loadFailure = 'disabled by MESHLET_DISABLE_UWS=1';
    return null;
  }
  if (loaded !== undefined) return loaded;
  try {
    const req = createRequire(import.meta.url);
    const mod: unknown = req('uWebSockets.js');
    if (!isUwsModule(mod)) throw new Error('uWebSockets.js does not export App/us_listen_socket_close');
    loaded = mod;
  } catch (err) {
    loadFailure = err instanceof Error ? (err.message.split('\n')[0] ?? err.message) : String(err);
    loaded = null;
  }
  return loaded;
}

export function uwsLoadFailure(): string | null {
  return loadFailure;
}

const Mode = {
  /** writeHead not called yet. */
  none: 0,
  /** Known length: `tryEnd(chunk, total)`; uWS writes Content-Length. */
  length: 1,
  /** Unknown length: `write` (uWS chunks it). */
  chunked: 2,
  /** HEAD, 1xx, 204, 304. */
  bodiless: 3,
} as const;
type BodyMode = (typeof Mode)[keyof typeof Mode];

/** Per-listener counters shared by the exchanges. */
class UwsListenerState {
  inFlight = 0;
  draining = false;
}

class UwsBody implements BodyStream {
  private consumer: ((chunk: Buffer, last: boolean) => void) | null = null;
  private readonly queue: Buffer[] = [];
  /** The last chunk is in `queue` (or was delivered). */
  private gotLast = false;
  private paused = false;
  private flushScheduled = false;
  private readonly exchange: UwsExchange;

  constructor(exchange: UwsExchange) {
    this.exchange = exchange;
    exchange.res.onData((ab, isLast) => this.onChunk(ab, isLast));
  }

  private onChunk(ab: ArrayBuffer, isLast: boolean): void {
    // The ArrayBuffer is neutered when this callback returns: copy.
    if (this.consumer === null && !this.exchange.resUsable()) return; // response over, nobody reads
    const chunk = ab.byteLength === 0 ? EMPTY : Buffer.from(new Uint8Array(ab));
    if (isLast) this.gotLast = true;
    if (this.consumer !== null && !this.paused && this.queue.length === 0) {
      this.consumer(chunk, isLast);
      return;
    }
    this.queue.push(chunk);
  }

  onData(cb: (chunk: Buffer, last: boolean) => void): void {
    if (this.consumer !== null) throw new Error('request body already has a consumer');
    this.consumer = cb;
    this.scheduleFlush();
  }

  pause(): void {
    if (this.paused) return;
    this.paused = true;
    if (this.exchange.resUsable() && !this.gotLast) this.exchange.res.pause();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    if (this.exchange.resUsable()) this.exchange.res.resume();
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.queue.length === 0) return;
    this.flushScheduled = true;
    queueMicrotask(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.consumer !== null && !this.paused && this.queue.length > 0) {
      const chunk = this.queue.shift() as Buffer;
      this.consumer(chunk, this.gotLast && this.queue.length === 0);
    }
  }
}

/** `finished`: the uWS response object is no longer usable (completed, aborted or destroyed). */
class UwsExchange extends ExchangeBase<UwsListenerState> implements ResponseSink {
  private mode: BodyMode = Mode.none;
  /** Status and headers given to `writeHead`, not written yet (see `emitHead`). */
  private headStatus = 0;
  private headHeaders: HeaderList | null = null;
  private endCalled = false;
  /** Declared length in `Mode.length`. */
  private declared = -1;
  /** Body bytes handed to uWS (accepted by it). */
  private sent = 0;
  private bodyStarted = false;
  /** Known-length bytes uWS did not take yet (tryEnd does not buffer). */
  private readonly pending: Buffer[] = [];
  private endPending = false;
  private writableArmed = false;
  readonly res: UwsResponse;
  private readonly isHead: boolean;
  /** The client asked for `Connection: close`. */
  clientClose = false;

  constructor(res: UwsResponse, state: UwsListenerState, isHead: boolean) {
    super(state);
    this.res = res;
    this.isHead = isHead;
    res.onAborted(() => this.onUwsAborted());
  }

  resUsable(): boolean {
    return !this.finished;
  }

  writeHead(status: number, headers: HeaderList): void {
    if (this.finished || this.mode !== Mode.none) return;
    const bodiless = this.isHead || isBodilessStatus(status);
    this.mode = bodiless ? Mode.bodiless : Mode.chunked;
    if (!bodiless) {
      for (let i = 0; i + 1 < headers.length; i += 2) {
        if (headers[i] !== 'content-length') continue;
        const v = trimOws(headers[i + 1] as string);
        if (LENGTH_VALUE.test(v)) {
          this.mode = Mode.length;
          this.declared = Number(v);
        }
        break;
      }
    }
    // The head goes out with the first body bytes (or the end), in the same cork: one write per
    // response instead of two.
    this.headStatus = status;
    this.headHeaders = headers;
    // A head with no body in the same tick (an event stream waiting for its first event) still
    // goes out now.
    queueMicrotask(() => this.flushHead());
  }

  private flushHead(): void {
    if (this.headHeaders === null || this.finished) return;
    this.res.cork(() => this.emitHead());
  }

  /** Writes the status line and headers held by `writeHead`. Call inside `cork`, before any body. */
  private emitHead(): void {
    const headers = this.headHeaders;
    if (headers === null) return;
    this.headHeaders = null;
    const res = this.res;
    const status = this.headStatus;
    const bodiless = this.mode === Mode.bodiless;
    res.writeStatus(statusLine(status));
    let lengthSeen = false;
    for (let i = 0; i + 1 < headers.length; i += 2) {
      const name = headers[i] as string;
      const value = headers[i + 1] as string;
      if (name === 'content-length') {
        if (lengthSeen || status === 204 || status < 200) continue;
        lengthSeen = true;
        // HEAD / 304: report the upstream's length (uWS adds none for endWithoutBody()); otherwise
        // uWS writes Content-Length itself from tryEnd's total or end's body.
        if (bodiless) {
          const v = trimOws(value);
          if (LENGTH_VALUE.test(v)) res.writeHeader('content-length', v);
        }
        continue;
      }
      // Framing belongs to the engine; uWS writes its own Date.
      if (name === 'transfer-encoding' || name === 'connection' || name === 'keep-alive' || name === 'date')
        continue;
      if (!isToken(name) || !isFieldValue(value)) continue;
      res.writeHeader(name, value);
    }
  }

  write(chunk: Buffer): boolean {
    if (this.finished || this.endCalled) return true;
    if (this.mode === Mode.none) this.writeHead(200, []);
    if (chunk.length === 0 || this.mode === Mode.bodiless) return !this.needDrain;
    if (this.mode === Mode.chunked) {
      let ok = true;
      const res = this.res;
      res.cork(() => {
        this.emitHead();
        this.startBody();
        ok = res.write(chunk);
      });
      if (!ok) this.waitForDrain();
      return ok;
    }
    if (this.pending.length > 0) {
      this.pending.push(chunk);
      this.needDrain = true;
      return false;
    }
    const ok = this.writeKnownLength(chunk);
    if (!ok) this.waitForDrain();
    return ok;
  }

  end(chunk?: Buffer, close?: boolean): void {
    if (this.finished || this.endCalled) return;
    this.endCalled = true;
    if (this.mode === Mode.none) this.writeHead(200, []);
    const data = chunk ?? EMPTY;
    const closeWanted = close === true || this.clientClose || this.state.draining;
    const res = this.res;
    switch (this.mode) {
      case Mode.bodiless:
        res.cork(() => {
          this.emitHead();
          if (closeWanted) res.writeHeader('connection', 'close');
          res.endWithoutBody();
        });
        this.complete();
        return;
      case Mode.chunked:
        if (!this.bodyStarted) {
          // One shot: uWS frames it with Content-Length and can close after it.
          res.cork(() => {
            this.emitHead();
            res.end(data, closeWanted);
          });
        } else {
          res.cork(() => {
            this.emitHead();
            if (data.length > 0) res.write(data);
            res.end();
          });
        }
        this.complete();
        return;
      default:
        break;
    }
    // Known length.
    if (!this.bodyStarted && this.pending.length === 0 && data.length === this.declared) {
      res.cork(() => {
        this.emitHead();
        res.end(data, closeWanted);
      });
      this.complete();
      return;
    }
    if (data.length > 0) {
      if (this.pending.length > 0) this.pending.push(data);
      else if (!this.writeKnownLength(data)) this.armWritable();
    }
    if (this.finished) return;
    if (this.pending.length > 0) {
      this.endPending = true;
      return;
    }
    // Fewer bytes than the Content-Length promised: cut the connection so the client sees it.
    this.destroy();
  }

  destroy(): void {
    if (this.finish(true)) this.res.close();
  }

  /** Local reply before the handler ran: one-line body, optional flag, connection closed. */
  localReply(status: number, text: string, flags: string | null): void {
    if (this.finished) return;
    const res = this.res;
    res.cork(() => {
      res.writeStatus(statusLine(status));
      res.writeHeader('content-type', 'text/plain; charset=utf-8');
      if (flags !== null) res.writeHeader('x-meshlet-flags', flags);
      res.end(`${text}\n`, true);
    });
    this.endCalled = true;
    this.complete();
  }

  private startBody(): void {
    if (this.bodyStarted) return;
    this.bodyStarted = true;
    if (this.state.draining || this.clientClose) this.res.writeHeader('connection', 'close');
  }

  /** tryEnd one chunk (clamped to the declared length); false when uWS took only part of it. */
  private writeKnownLength(chunk: Buffer): boolean {
    const room = this.declared - this.sent;
    if (room <= 0) return true;
    const data = chunk.length > room ? chunk.subarray(0, room) : chunk;
    const res = this.res;
    let ok = false;
    let done = false;
    let taken = 0;
    res.cork(() => {
      this.emitHead();
      this.startBody();
      const before = res.getWriteOffset();
      [ok, done] = res.tryEnd(data, this.declared);
      if (!done) taken = res.getWriteOffset() - before;
    });
    if (done) {
      this.sent = this.declared;
      this.complete();
      return true;
    }
    if (ok) {
      this.sent += data.length;
      return true;
    }
    this.sent += taken;
    this.pending.push(taken > 0 ? data.subarray(taken) : data);
    return false;
  }

  private waitForDrain(): void {
    this.needDrain = true;
    this.armWritable();
  }

  private armWritable(): void {
    if (this.writableArmed || this.finished) return;
    this.writableArmed = true;
    this.res.onWritable(() => this.onUwsWritable());
  }

  private onUwsWritable(): boolean {
    if (this.finished) return true;
    while (this.pending.length > 0) {
      const chunk = this.pending.shift() as Buffer;
      if (!this.writeKnownLength(chunk)) {
        // writeKnownLength queued the rest at the end; it must stay first.
        const rest = this.pending.pop() as Buffer;
        this.pending.unshift(rest);
        return false;
      }
      if (this.finished) return true;
    }
    if (this.endPending) {
      this.endPending = false;
      this.destroy();
      return true;
    }
    this.drained();
    return true;
  }

  private complete(): void {
    this.finish(false);
  }

  private onUwsAborted(): void {
    this.clientGone();
  }
}

/** forEach target, created once: no closure per request (architecture-anchors §6.10). */
let collecting: HeaderList = [];
function collectHeader(name: string, value: string): void {
  collecting.push(name, value);
}

/** Dotted text of IPv4 peers, by address: peers are few and requests many, so each is formatted once. */
const ipv4Text = new Map<number, string>();

function remoteText(res: UwsResponse): string {
  const raw = res.getRemoteAddress();
  if (raw.byteLength === 4) {
    const view = new DataView(raw);
    const n = view.getUint32(0);
    let text = ipv4Text.get(n);
    if (text === undefined) {
      text = `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
      if (ipv4Text.size > 4096) ipv4Text.clear();
      ipv4Text.set(n, text);
    }
    return text;
  }
  const text = Buffer.from(res.getRemoteAddressAsText()).toString('latin1');
  return text.includes(':') ? compactIpv6(text) : text;
}

function onRequest(
  res: UwsResponse,
  req: UwsRequest,
  state: UwsListenerState,
  port: () => number,
  handler: RequestHandler,
  upgradeSupported: boolean,
): void {
  // Everything from `req` is read now: it is invalid once this function returns.
  const method = req.getCaseSensitiveMethod();
  const url = req.getUrl();
  const query = req.getQuery();
  const target = query === undefined || query === '' ? url : `${url}?${query}`;
  const headers: HeaderList = [];
  collecting = headers;
  req.forEach(collectHeader);
  state.inFlight++;
  const exchange = new UwsExchange(res, state, method === 'HEAD');
  const framing = checkRequestHead(method, target, headers);
  if (isHeadProblem(framing)) {
    exchange.localReply(400, `malformed request: ${framing.problem}`, 'DPE');
    return;
  }
  if (!framing.hasHost) {
    exchange.localReply(400, 'malformed request: missing host header', 'DPE');
    return;
  }
  if (framing.upgrade) {
    exchange.localReply(
      501,
      upgradeSupported
        ? 'protocol upgrade (websocket) needs the node engine: run with --engine node'
        : 'protocol upgrade is not supported on this listener',
      null,
    );
    return;
  }
  exchange.clientClose = framing.close;
  const body = framing.chunked || framing.contentLength > 0 ? new UwsBody(exchange) : null;
  const incoming = new EngineIncoming('uws', method, target, headers, remoteText(res), port(), body);
  try {
    handler(incoming, exchange);
  } catch {
    if (!exchange.aborted) exchange.destroy();
  }
}

/** Serves `opts.handler` on uWebSockets.js. Rejects when the address cannot be bound. */
export function listenUws(uws: UwsModule, opts: ListenOptions): Promise<Listener> {
  const state = new UwsListenerState();
  const app = uws.App();
  let port = opts.port;
  const upgradeSupported = opts.onUpgrade !== undefined;
  app.any('/*', (res, req) => onRequest(res, req, state, () => port, opts.handler, upgradeSupported));
  // uWebSockets.js calls the filter with +1 when an HTTP connection opens and -1 when it closes.
  let connectionsActive = 0;
  let connectionsTotal = 0;
  // The typings declare the count as a boxed `Number`; it arrives as a plain number.
  const countConnection = (_res: Uws.HttpResponse, count: unknown): void => {
    if ((count as number) > 0) {
      connectionsTotal++;
      connectionsActive++;
    } else connectionsActive--;
  };
  app.filter(countConnection);
  return new Promise<Listener>((resolve, reject) => {
    app.listen(opts.host, opts.port, (ls) => {
      if (ls === false) {
        reject(new Error(`uws: cannot listen on ${opts.host}:${opts.port}`));
        return;
      }
      let listenSocket: Uws.us_listen_socket | null = ls;
      port = uws.us_socket_local_port(ls);
      const stopAccepting = (): void => {
        state.draining = true;
        if (listenSocket !== null) {
          uws.us_listen_socket_close(listenSocket);
          listenSocket = null;
        }
      };
      let closed = false;
      resolve({
        name: opts.name,
        engine: 'uws',
        host: opts.host,
        port,
        stopAccepting,
        inFlight: () => state.inFlight,
        connectionsActive: () => connectionsActive,
        connectionsTotal: () => connectionsTotal,
        close: () => {
          if (closed) return;
          closed = true;
          stopAccepting();
          // Forcefully closes every connection; open responses see onAborted.
          app.close();
        },
      });
    });
  });
}
