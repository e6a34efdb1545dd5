/**
 * Listener engine `h1`: node's own `net` sockets with meshlet's HTTP/1.1 server codec
 * (h1-request-parser.ts). As strict as the node engine (the conformance corpus decides), without
 * node:http's per-request machinery.
 *
 * - One `H1Conn` per socket holds the parser state; its socket listeners are attached once.
 *   Requests on a connection run one at a time, in order: bytes of pipelined requests stay
 *   buffered (the socket pauses above 64 KiB) until the response before them ended.
 * - Every head goes through `checkRequestHead`, so framing decisions are the other engines'; what it
 *   refuses gets `400` + `x-meshlet-flags: DPE` + close, and nothing after it on the connection is
 *   read. A head over 60 KiB gets 431; unknown methods 501; HTTP versions other than 1.0/1.1 505.
 * - Absolute-form targets (`GET http://h/p`, what HTTP_PROXY clients send) reach the handler as
 *   received. CONNECT gets 501. Asterisk-form only for OPTIONS.
 * - HTTP/1.0: keep-alive only with `Connection: keep-alive` (answered with the same header); no
 *   Host needed. HTTP/1.1: keep-alive unless `Connection: close`.
 * - Responses: the head is built as one string and goes out with the first body bytes (or the end)
 *   in one write; a head with no body in the same tick is flushed from a microtask. Framing is the
 *   engine's: a valid `content-length` is kept, a one-shot `end(body)` gets one, otherwise chunked
 *   (HTTP/1.1) or close-delimited (HTTP/1.0).
 * - `Expect: 100-continue`: `100 Continue` goes out when the handler attaches to the body (as the
 *   other engines do it, before the handler runs or as soon as the head is parsed).
 * - Upgrade (`Connection: upgrade` + `Upgrade`): the socket leaves the engine (listeners removed)
 *   and goes to `onUpgrade` with the bytes read after the head; without `onUpgrade`, 501 + close.
 * - Timeouts: one coarse sweep per listener; idle keep-alive connections close after 60 s, a head
 *   that is not complete 30 s after its first byte gets 408 and a close.
 * - Inbound mTLS (`opts.tls`): new connections go through the TLS gate (inbound-tls.ts) first; what
 *   it hands over (a TLS socket, or the accepted socket with the bytes it read to decide) is served
 *   exactly like a plaintext connection, and every request of a TLS connection carries its `peer` and
 *   `sni`. Sniffing and the handshake share the head timeout. Without `opts.tls` nothing of this runs.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { clampToLength, EngineIncoming, ExchangeBase } from './engine-exchange.ts';
import {
  CHUNK_DATA,
  CHUNK_DONE,
  CHUNK_ERROR,
  ChunkedDecoder,
  HEAD_ERROR,
  HEAD_INCOMPLETE,
  HeadParser,
} from './h1-request-parser.ts';
import {
  checkRequestHead,
  fieldsChecked,
  isBodilessStatus,
  isFieldValue,
  isHeadProblem,
  isToken,
  rawLocalReply,
  statusLine,
  trimOws,
} from './http-syntax.ts';
import { type ConnectionTls, type GateTimers, InboundTlsGate, type TlsAwareListener } from './inbound-tls.ts';
import type {
  BodyStream,
  HeaderList,
  ListenOptions,
  ResponseSink,
  UpgradeHandler,
} from './listener-types.ts';

/** The IMF-fixdate of now, formatted at most once per second. */
let dateText = '';
let dateSecond = -1;
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(second * 1000).toUTCString();
  }
  return dateText;
}

const EMPTY = Buffer.alloc(0);
const LENGTH_VALUE = /^\d{1,15}$/;
/** Unparsed bytes (or undelivered body bytes) above which the socket stops reading. */
const BUFFER_LIMIT = 64 * 1024;
/** Bodies up to this size are copied next to the head (one buffer, one write); larger ones are corked. */
const CONCAT_LIMIT = 16 * 1024;
const CONTINUE = Buffer.from('HTTP/1.1 100 Continue\r\n\r\n', 'latin1');
const LAST_CHUNK = '0\r\n\r\n';

/** Internal tuning, for tests. */
export interface H1Tuning {
  /** Idle keep-alive connections close after this long (ms). */
  readonly idleTimeoutMs?: number;
  /** A request head not complete this long after its first byte gets 408 and a close (ms). */
  readonly headTimeoutMs?: number;
  /** Timers for the TLS sniff/handshake deadline (which is `headTimeoutMs`). */
  readonly tlsTimers?: GateTimers;
}

const STATUS_LINES = new Map<number, string>();
function statusLineText(status: number): string {
  let s = STATUS_LINES.get(status);
  if (s === undefined) {
    s = `HTTP/1.1 ${statusLine(status)}\r\n`;
    if (STATUS_LINES.size < 512) STATUS_LINES.set(status, s);
  }
  return s;
}

/** Where a connection is, for the parse loop. */
const P_HEAD = 0;
const P_BODY_LENGTH = 1;
const P_BODY_CHUNKED = 2;
/** The message was read; the next head waits until its response ended. */
const P_WAIT = 3;
/** Closing after the current response: nothing more is read. */
const P_CLOSING = 4;
/** Handed to an upgrade handler, or destroyed. */
const P_GONE = 5;

/** For the timeout sweep. */
const T_IDLE = 0;
const T_HEAD = 1;
const T_BUSY = 2;

class H1ListenerState {
  inFlight = 0;
  connectionsActive = 0;
  connectionsTotal = 0;
  /** The raw socket's 'close' listener that counts the connection out (one function for all). */
  readonly connectionClosed = (): void => {
    this.connectionsActive--;
  };
  draining = false;
  /** Coarse clock, advanced by the sweep. */
  now = Date.now();
  port = 0;
  readonly conns = new Set<H1Conn>();
  readonly opts: ListenOptions;
  readonly onUpgrade: UpgradeHandler | null;
  readonly idleMs: number;
  readonly headMs: number;
  constructor(opts: ListenOptions, tuning: H1Tuning) {
    this.opts = opts;
    this.onUpgrade = opts.onUpgrade ?? null;
    this.idleMs = tuning.idleTimeoutMs ?? 60_000;
    this.headMs = tuning.headTimeoutMs ?? 30_000;
  }
}

class H1Body implements BodyStream {
  consumer: ((chunk: Buffer, last: boolean) => void) | null = null;
  private readonly queue: Buffer[] = [];
  private lastQueued = false;
  queuedBytes = 0;
  paused = false;
  /** The response ended: nobody reads the rest; it is read and dropped. */
  discarding = false;
  /** `Expect: 100-continue` still to be answered when the consumer attaches. */
  expectContinue: boolean;
  flushScheduled = false;
  private readonly conn: H1Conn;

  constructor(conn: H1Conn, expectContinue: boolean) {
    this.conn = conn;
    this.expectContinue = expectContinue;
  }

  onData(cb: (chunk: Buffer, last: boolean) => void): void {
    if (this.consumer !== null) throw new Error('request body already has a consumer');
    this.consumer = cb;
    if (this.expectContinue) {
      this.expectContinue = false;
      this.conn.sendContinue();
    }
    this.scheduleFlush();
    this.conn.drive();
  }

  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.conn.updateReading();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.scheduleFlush();
    this.conn.drive();
  }

  /** The parser may hand more bytes over (otherwise it stops and the socket may pause). */
  accepting(): boolean {
    if (this.discarding) return true;
    return !this.paused && this.queuedBytes < BUFFER_LIMIT;
  }

  deliver(chunk: Buffer, last: boolean): void {
    if (this.discarding) return;
    const cb = this.consumer;
    if (cb !== null && !this.paused && this.queue.length === 0) {
      cb(chunk, last);
      return;
    }
    this.queue.push(chunk);
    this.queuedBytes += chunk.length;
    if (last) this.lastQueued = true;
  }

  /** The response ended: drop what is queued, read the rest of the body without keeping it. */
  discard(): void {
    this.discarding = true;
    this.queue.length = 0;
    this.queuedBytes = 0;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.queue.length === 0) return;
    this.flushScheduled = true;
    this.conn.scheduleBodyFlush(this);
  }

  /** Delivers what was queued while nobody read (from a microtask). */
  flush(): void {
    this.flushScheduled = false;
    let delivered = false;
    while (this.consumer !== null && !this.paused && !this.discarding && this.queue.length > 0) {
      const chunk = this.queue.shift() as Buffer;
      this.queuedBytes -= chunk.length;
      delivered = true;
      this.consumer(chunk, this.lastQueued && this.queue.length === 0);
    }
    if (delivered) this.conn.drive();
  }
}

class H1Exchange extends ExchangeBase<H1ListenerState> implements ResponseSink {
  private endCalled = false;
  private headStored = false;
  headSent = false;
  private status = 200;
  private headers: HeaderList = [];
  private bodiless = false;
  /** Valid content-length from the handler, or -1. */
  private declared = -1;
  private chunked = false;
  private written = 0;
  /** Close the connection after this response. */
  closeAfter: boolean;
  private readonly conn: H1Conn;
  private readonly isHead: boolean;
  private readonly http10: boolean;

  constructor(conn: H1Conn, isHead: boolean, http10: boolean, closeAfter: boolean) {
    super(conn.state);
    this.conn = conn;
    this.isHead = isHead;
    this.http10 = http10;
    this.closeAfter = closeAfter;
  }

  writeHead(status: number, headers: HeaderList): void {
    if (this.finished || this.headStored) return;
    this.headStored = true;
    this.status = status;
    this.headers = headers;
    this.bodiless = this.isHead || isBodilessStatus(status);
    for (let i = 0; i + 1 < headers.length; i += 2) {
      if (headers[i] !== 'content-length') continue;
      const v = trimOws(headers[i + 1] as string);
      if (LENGTH_VALUE.test(v)) this.declared = Number(v);
      break;
    }
    this.conn.scheduleHeadFlush(this);
  }

  /** From the microtask: a head with no body in the same tick goes out now. */
  flushPendingHead(): void {
    if (this.finished || this.headSent || !this.headStored) return;
    this.conn.send(this.buildHead(-1), null, false);
  }

  /**
   * The status line and fields. `oneShot` is the whole body's length when `end(body)` comes before
   * any write (it then gets a Content-Length), else -1.
   */
  private buildHead(oneShot: number): string {
    this.headSent = true;
    const status = this.status;
    const headers = this.headers;
    let s = statusLineText(status);
    let lengthSeen = false;
    let dateSeen = false;
    // Lists from a strict parser (an upstream response) were checked field by field already.
    const checked = fieldsChecked(headers);
    for (let i = 0; i + 1 < headers.length; i += 2) {
      const name = headers[i] as string;
      const value = headers[i + 1] as string;
      switch (name) {
        case 'content-length':
          if (lengthSeen || status === 204 || status < 200) continue;
          lengthSeen = true;
          if (!this.bodiless && this.declared === -1) continue;
          if (this.bodiless) {
            const v = trimOws(value);
            if (LENGTH_VALUE.test(v)) s += `content-length: ${v}\r\n`;
          } else s += `content-length: ${this.declared}\r\n`;
          continue;
        case 'transfer-encoding':
        case 'connection':
        case 'keep-alive':
          continue;
        case 'date':
          dateSeen = true;
          if (!checked && !isFieldValue(value)) continue;
          s += `date: ${value}\r\n`;
          continue;
        default:
          if (!checked && (!isToken(name) || !isFieldValue(value))) continue;
          s += `${name}: ${value}\r\n`;
      }
    }
    // RFC 9110 §6.6.1: a response the proxy makes itself carries a Date; upstream ones keep theirs.
    if (!dateSeen) s += `date: ${httpDate()}\r\n`;
    if (!this.bodiless && this.declared === -1) {
      if (oneShot >= 0) {
        this.declared = oneShot;
        s += `content-length: ${oneShot}\r\n`;
      } else if (this.http10) {
        // No length, no chunked in HTTP/1.0: the close ends the body.
        this.closeAfter = true;
      } else {
        this.chunked = true;
        s += 'transfer-encoding: chunked\r\n';
      }
    }
    if (this.closeAfter || this.state.draining) {
      this.closeAfter = true;
      s += 'connection: close\r\n\r\n';
    } else if (this.http10) {
      s += 'connection: keep-alive\r\n\r\n';
    } else s += '\r\n';
    return s;
  }

  write(chunk: Buffer): boolean {
    if (this.finished || this.endCalled) return true;
    if (!this.headStored) this.writeHead(200, []);
    if (chunk.length === 0 || this.bodiless) return !this.needDrain;
    const data = this.clamp(chunk);
    if (data.length === 0) return true;
    const head = this.headSent ? null : this.buildHead(-1);
    this.written += data.length;
    const ok = this.conn.send(head, data, this.chunked);
    if (!ok) this.needDrain = true;
    return ok;
  }

  end(chunk?: Buffer, close?: boolean): void {
    if (this.finished || this.endCalled) return;
    this.endCalled = true;
    if (close === true) this.closeAfter = true;
    if (!this.headStored) this.writeHead(200, []);
    if (this.bodiless) {
      if (!this.headSent) this.conn.send(this.buildHead(-1), null, false);
      this.complete();
      return;
    }
    let data = chunk === undefined ? EMPTY : chunk;
    let head: string | null = null;
    if (!this.headSent) head = this.buildHead(this.written === 0 ? data.length : -1);
    data = this.clamp(data);
    this.written += data.length;
    if (this.declared !== -1 && this.written < this.declared) {
      // Fewer bytes than the Content-Length promised: cut so the client cannot mistake it.
      if (head !== null || data.length > 0) this.conn.send(head, data, false);
      this.destroy();
      return;
    }
    if (this.chunked) this.conn.sendLast(head, data);
    else if (head !== null || data.length > 0) this.conn.send(head, data, false);
    this.complete();
  }

  destroy(): void {
    if (!this.finish(true)) return;
    this.conn.exchangeGone(this);
    this.conn.socket.destroy();
  }

  private clamp(chunk: Buffer): Buffer {
    return clampToLength(chunk, this.declared, this.written);
  }

  private complete(): void {
    if (!this.finish(false)) return;
    this.conn.responseDone(this, this.closeAfter || this.state.draining);
  }

  /** The connection closed or failed before `end`. */
  abort(): void {
    this.clientGone();
  }
}

class H1Conn {
  readonly socket: Socket;
  readonly state: H1ListenerState;
  readonly remoteAddress: string;
  /** TLS facts of the connection (null: plaintext), the same for each of its requests. */
  private readonly security: ConnectionTls | null;
  /** Bytes received and not parsed yet. */
  private buf: Buffer = EMPTY;
  private phase = P_HEAD;
  private readonly head = new HeadParser();
  private chunkedDecoder: ChunkedDecoder | null = null;
  /** Body bytes still to read (Content-Length framing). */
  private remaining = 0;
  /** The request whose response has not ended. */
  current: H1Exchange | null = null;
  /** The body being read (until its last byte). */
  private body: H1Body | null = null;
  /** Close once the current message and its response are done (Connection: close, HTTP/1.0, errors). */
  private closeAfterMessage = false;
  private driving = false;
  private again = false;
  private readingPaused = false;
  private peerEnded = false;
  timerMode = T_IDLE;
  since: number;
  private headFlush: H1Exchange | null = null;
  private readonly headFlushBound: () => void;
  private bodyFlush: H1Body | null = null;
  private readonly bodyFlushBound: () => void;

  constructor(socket: Socket, state: H1ListenerState, security: ConnectionTls | null) {
    this.socket = socket;
    this.state = state;
    this.security = security;
    this.remoteAddress = socket.remoteAddress ?? '';
    this.since = state.now;
    this.headFlushBound = () => {
      const ex = this.headFlush;
      this.headFlush = null;
      if (ex !== null) ex.flushPendingHead();
    };
    this.bodyFlushBound = () => {
      const body = this.bodyFlush;
      this.bodyFlush = null;
      if (body !== null) body.flush();
    };
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('end', () => this.onEnd());
    socket.on('close', () => this.onClose());
    socket.on('drain', () => this.current?.drained());
    socket.on('error', () => {});
  }

  /** Bytes the TLS gate read from the socket to tell plaintext from TLS: they come first. */
  feed(initial: Buffer): void {
    if (initial.length > 0) this.onData(initial);
  }

  private onData(d: Buffer): void {
    if (this.phase >= P_CLOSING) return;
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    this.drive();
  }

  private onEnd(): void {
    this.peerEnded = true;
    if (this.phase === P_GONE) return;
    // As node:http (without httpAllowHalfOpen): the client's FIN ends the exchange in flight.
    const ex = this.current;
    this.current = null;
    this.body = null;
    this.closeNow();
    if (ex !== null) ex.abort();
  }

  private onClose(): void {
    this.state.conns.delete(this);
    if (this.phase === P_GONE) return;
    this.phase = P_GONE;
    const ex = this.current;
    this.current = null;
    if (ex !== null) ex.abort();
  }

  /** Runs the parser over buffered bytes as far as it may go. Re-entrant calls loop instead. */
  drive(): void {
    if (this.driving) {
      this.again = true;
      return;
    }
    this.driving = true;
    try {
      do {
        this.again = false;
        this.parse();
      } while (this.again);
    } finally {
      this.driving = false;
    }
    this.updateReading();
  }

  private parse(): void {
    for (;;) {
      switch (this.phase) {
        case P_HEAD:
          if (this.current !== null || this.buf.length === 0) return;
          if (!this.parseHead()) return;
          break;
        case P_BODY_LENGTH:
          if (this.buf.length === 0 || !(this.body as H1Body).accepting()) return;
          this.parseLengthBody();
          break;
        case P_BODY_CHUNKED:
          if (this.buf.length === 0 || !(this.body as H1Body).accepting()) return;
          if (!this.parseChunkedBody()) return;
          break;
        case P_WAIT:
          if (this.current !== null) return;
          this.messageDone();
          break;
        default:
          return;
      }
    }
  }

  /** Pauses the socket while nothing may be read, resumes it when it may. */
  updateReading(): void {
    if (this.phase >= P_CLOSING) return;
    let stop = this.buf.length > BUFFER_LIMIT;
    const body = this.body;
    if (body !== null && !body.accepting()) stop = true;
    if (stop !== this.readingPaused) {
      this.readingPaused = stop;
      if (stop) this.socket.pause();
      else this.socket.resume();
    }
    // Timeout bookkeeping.
    const mode = this.current !== null || body !== null ? T_BUSY : this.buf.length > 0 ? T_HEAD : T_IDLE;
    if (mode !== this.timerMode) {
      this.timerMode = mode;
      this.since = this.state.now;
    }
  }

  /** True when a head was handled and parsing may go on. */
  private parseHead(): boolean {
    if (this.timerMode === T_IDLE) {
      this.timerMode = T_HEAD;
      this.since = this.state.now;
    }
    const hp = this.head;
    const end = hp.parse(this.buf);
    if (end === HEAD_INCOMPLETE) return false;
    if (end === HEAD_ERROR) {
      this.refuse(
        hp.errorStatus,
        `malformed request: ${hp.errorText}`,
        hp.errorStatus === 501 ? null : 'DPE',
      );
      return false;
    }
    const rest = this.buf.length === end ? EMPTY : this.buf.subarray(end);
    this.buf = rest;
    const method = hp.method;
    const target = hp.target;
    const headers = hp.headers;
    const http10 = hp.minor === 0;
    const keepAliveAsked = hp.keepAlive;
    const expectContinue = hp.expectContinue && !http10;
    const form = hp.form;
    hp.reset();
    const framing = checkRequestHead(method, target, headers);
    if (isHeadProblem(framing)) {
      this.refuse(400, `malformed request: ${framing.problem}`, 'DPE');
      return false;
    }
    if (form === 'authority') {
      this.refuse(501, 'CONNECT is not supported', null);
      return false;
    }
    if (!framing.hasHost && !http10) {
      this.refuse(400, 'malformed request: missing host header', 'DPE');
      return false;
    }
    if (framing.upgrade) {
      const onUpgrade = this.state.onUpgrade;
      if (onUpgrade === null) {
        this.refuse(501, 'protocol upgrade is not supported on this listener', null);
        return false;
      }
      this.detach();
      onUpgrade(
        new EngineIncoming(
          'h1',
          method,
          target,
          headers,
          this.remoteAddress,
          this.state.port,
          null,
          this.security,
        ),
        this.socket,
        rest,
      );
      return false;
    }
    let close = framing.close || (http10 && !keepAliveAsked);
    // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing: read it, then close.
    if (http10 && framing.chunked) close = true;
    if (close) this.closeAfterMessage = true;
    let body: H1Body | null = null;
    if (framing.chunked) {
      body = new H1Body(this, expectContinue);
      this.phase = P_BODY_CHUNKED;
      this.chunkedDecoder = new ChunkedDecoder();
    } else if (framing.contentLength > 0) {
      body = new H1Body(this, expectContinue);
      this.phase = P_BODY_LENGTH;
      this.remaining = framing.contentLength;
    } else this.phase = P_WAIT;
    this.body = body;
    const ex = new H1Exchange(this, method === 'HEAD', http10, close || this.state.draining);
    this.current = ex;
    this.timerMode = T_BUSY;
    this.state.inFlight++;
    const req = new EngineIncoming(
      'h1',
      method,
      target,
      headers,
      this.remoteAddress,
      this.state.port,
      body,
      this.security,
    );
    try {
      this.state.opts.handler(req, ex);
    } catch {
      if (!ex.aborted) ex.destroy();
      return false;
    }
    return this.phase !== P_GONE;
  }

  private parseLengthBody(): void {
    const body = this.body as H1Body;
    const buf = this.buf;
    const n = Math.min(this.remaining, buf.length);
    const chunk = n === buf.length ? buf : buf.subarray(0, n);
    this.buf = n === buf.length ? EMPTY : buf.subarray(n);
    this.remaining -= n;
    const last = this.remaining === 0;
    if (last) {
      this.body = null;
      this.phase = P_WAIT;
    }
    body.deliver(chunk, last);
  }

  /** False on a framing error. */
  private parseChunkedBody(): boolean {
    const body = this.body as H1Body;
    const dec = this.chunkedDecoder as ChunkedDecoder;
    const buf = this.buf;
    const pos = dec.step(buf, 0);
    this.buf = pos === buf.length ? EMPTY : buf.subarray(pos);
    switch (dec.event) {
      case CHUNK_DATA:
        body.deliver(buf.subarray(dec.dataStart, dec.dataEnd), false);
        return true;
      case CHUNK_DONE:
        this.body = null;
        this.chunkedDecoder = null;
        this.phase = P_WAIT;
        body.deliver(EMPTY, true);
        return true;
      case CHUNK_ERROR:
        this.refuse(400, `malformed request: ${dec.errorText}`, 'DPE');
        return false;
      default:
        return true;
    }
  }

  /** The request was read completely and its response ended. */
  private messageDone(): void {
    if (this.closeAfterMessage) {
      this.closeNow();
      return;
    }
    this.phase = P_HEAD;
  }

  /** A local reply before (or instead of) the handler, then close; nothing more is read. */
  private refuse(status: number, text: string, flags: string | null): void {
    const ex = this.current;
    this.phase = P_CLOSING;
    this.buf = EMPTY;
    this.body = null;
    if (ex?.headSent) {
      // The response already started: the only honest signal left is the cut.
      this.current = null;
      this.phase = P_GONE;
      ex.abort();
      this.socket.destroy();
      return;
    }
    if (this.socket.writable) this.socket.write(rawLocalReply(status, text, flags), 'latin1');
    this.closeNow();
    if (ex !== null) {
      this.current = null;
      ex.abort();
    }
  }

  /** Ends the connection (after what was written); nothing more is read. */
  private closeNow(): void {
    this.phase = P_CLOSING;
    this.buf = EMPTY;
    this.timerMode = T_IDLE;
    this.since = this.state.now;
    if (this.readingPaused) {
      this.readingPaused = false;
      this.socket.resume();
    }
    if (this.peerEnded) this.socket.destroySoon();
    else this.socket.end();
  }

  /** Hands the socket over: no listener of ours stays on it. */
  private detach(): void {
    this.phase = P_GONE;
    this.state.conns.delete(this);
    const s = this.socket;
    s.removeAllListeners('data');
    s.removeAllListeners('end');
    // The connection count's listener stays (on a plaintext connection it is on this socket): the
    // connection is still open on this listener until the new owner closes it.
    const counted = s.listeners('close').includes(this.state.connectionClosed);
    s.removeAllListeners('close');
    if (counted) s.once('close', this.state.connectionClosed);
    s.removeAllListeners('drain');
    s.removeAllListeners('error');
    // As node:http does for 'upgrade': neither flowing nor paused, so the new owner's 'data'
    // listener or pipe starts the flow.
    (s as { readableFlowing: boolean | null }).readableFlowing = null;
  }

  // ---- called by the exchange and the body ----

  scheduleHeadFlush(ex: H1Exchange): void {
    if (this.headFlush === null) queueMicrotask(this.headFlushBound);
    this.headFlush = ex;
  }

  /** One body reads at a time per connection, so one pending flush is enough. */
  scheduleBodyFlush(body: H1Body): void {
    const pending = this.bodyFlush;
    if (pending === null) queueMicrotask(this.bodyFlushBound);
    else if (pending !== body) pending.flushScheduled = false;
    this.bodyFlush = body;
  }

  sendContinue(): void {
    const ex = this.current;
    if (ex !== null && !ex.headSent && !ex.finished && this.socket.writable) this.socket.write(CONTINUE);
  }

  /** Writes an optional head and a body chunk (chunk-framed when `chunked`) in one go. */
  send(head: string | null, data: Buffer | null, chunked: boolean): boolean {
    const socket = this.socket;
    if (!socket.writable) return true;
    const n = data === null ? 0 : data.length;
    if (n === 0) return head === null ? true : socket.write(head, 'latin1');
    const prefix = chunked ? `${n.toString(16)}\r\n` : '';
    const suffix = chunked ? 2 : 0;
    if (n <= CONCAT_LIMIT) {
      const hl = head === null ? 0 : head.length;
      const out = Buffer.allocUnsafe(hl + prefix.length + n + suffix);
      let o = 0;
      if (head !== null) o += out.write(head, 0, 'latin1');
      if (prefix.length > 0) o += out.write(prefix, o, 'latin1');
      o += (data as Buffer).copy(out, o);
      if (chunked) {
        out[o] = 0x0d;
        out[o + 1] = 0x0a;
      }
      return socket.write(out);
    }
    socket.cork();
    if (head !== null || chunked) socket.write((head ?? '') + prefix, 'latin1');
    let ok = socket.write(data as Buffer);
    if (chunked) ok = socket.write('\r\n', 'latin1');
    socket.uncork();
    return ok;
  }

  /** The last chunk of a chunked body (with an optional head and data before it). */
  sendLast(head: string | null, data: Buffer): void {
    if (data.length === 0) {
      const socket = this.socket;
      if (socket.writable) socket.write(head === null ? LAST_CHUNK : head + LAST_CHUNK, 'latin1');
      return;
    }
    const socket = this.socket;
    socket.cork();
    this.send(head, data, true);
    if (socket.writable) socket.write(LAST_CHUNK, 'latin1');
    socket.uncork();
  }

  /** The response ended (`end`). */
  responseDone(ex: H1Exchange, close: boolean): void {
    if (this.current !== ex) return;
    this.current = null;
    const body = this.body;
    if (body !== null) {
      // The handler answered before the body was read: the rest is read and dropped, unless the
      // client waits for a 100 Continue it never got (then it may never send the body).
      if (body.expectContinue) this.closeAfterMessage = true;
      else body.discard();
    }
    if (close) this.closeAfterMessage = true;
    if (this.closeAfterMessage) {
      // Half-close; what the client still sends is read and dropped (no reset under the response).
      if (this.phase < P_CLOSING) this.closeNow();
      return;
    }
    if (this.phase < P_CLOSING) this.drive();
  }

  /** The exchange was destroyed (the socket is being destroyed too). */
  exchangeGone(ex: H1Exchange): void {
    if (this.current === ex) this.current = null;
    this.phase = P_GONE;
    this.buf = EMPTY;
    this.body = null;
  }

  /** Draining: idle connections close now, busy ones after their response. */
  drain(): void {
    if (this.phase >= P_CLOSING) return;
    if (this.current === null && this.body === null && this.buf.length === 0) this.closeNow();
    else this.closeAfterMessage = true;
  }

  /** Timeout sweep. */
  sweep(now: number): void {
    if (this.phase === P_GONE) return;
    if (this.timerMode === T_IDLE) {
      if (now - this.since >= this.state.idleMs) this.socket.destroy();
    } else if (this.timerMode === T_HEAD && this.current === null) {
      if (now - this.since >= this.state.headMs) this.refuse(408, 'request timeout', null);
    }
  }
}

/**
 * Serves `opts.handler` on net sockets with the h1 codec, behind the TLS gate when `opts.tls` is set.
 * Rejects when the address cannot be bound.
 */
export function listenH1(opts: ListenOptions, tuning: H1Tuning = {}): Promise<TlsAwareListener> {
  const state = new H1ListenerState(opts, tuning);
  const serve = (socket: Socket, security: ConnectionTls | null, initial: Buffer): void => {
    if (state.draining) {
      socket.destroy();
      return;
    }
    const conn = new H1Conn(socket, state, security);
    state.conns.add(conn);
    conn.feed(initial);
  };
  const gate =
    opts.tls === undefined
      ? null
      : new InboundTlsGate({
          tls: opts.tls,
          timeoutMs: state.headMs,
          onReady: serve,
          ...(tuning.tlsTimers === undefined ? {} : { timers: tuning.tlsTimers }),
        });
  const onConnection = (socket: Socket): void => {
    state.connectionsTotal++;
    state.connectionsActive++;
    socket.once('close', state.connectionClosed);
    if (gate === null) serve(socket, null, EMPTY);
    else if (state.draining) socket.destroy();
    else gate.accept(socket);
  };
  const server: Server = createServer({ noDelay: true, keepAlive: true, allowHalfOpen: true }, onConnection);
  const tick = Math.max(10, Math.floor(Math.min(state.idleMs, state.headMs) / 4));
  const sweeper = setInterval(() => {
    const now = Date.now();
    state.now = now;
    for (const c of state.conns) c.sweep(now);
  }, tick);
  sweeper.unref();
  return new Promise<TlsAwareListener>((resolve, reject) => {
    const onError = (err: Error): void => {
      clearInterval(sweeper);
      reject(err);
    };
    server.once('error', onError);
    server.listen({ host: opts.host, port: opts.port }, () => {
      server.off('error', onError);
      const addr = server.address();
      state.port = addr !== null && typeof addr === 'object' ? addr.port : opts.port;
      server.on('close', () => clearInterval(sweeper));
      let stopped = false;
      const stopAccepting = (): void => {
        state.draining = true;
        if (stopped) return;
        stopped = true;
        server.close();
        // Connections still deciding or handshaking have no request in flight.
        gate?.closeAll();
        for (const c of [...state.conns]) c.drain();
      };
      resolve({
        name: opts.name,
        engine: 'h1',
        host: opts.host,
        port: state.port,
        stopAccepting,
        inFlight: () => state.inFlight,
        connectionsActive: () => state.connectionsActive,
        connectionsTotal: () => state.connectionsTotal,
        close: () => {
          stopAccepting();
          clearInterval(sweeper);
          for (const c of [...state.conns]) c.socket.destroy();
        },
        tlsHandshakeErrors: () => (gate === null ? 0 : gate.tlsHandshakeErrors()),
        plaintextRefused: () => (gate === null ? 0 : gate.plaintextRefused()),
      });
    });
  });
}
