/**
 * An incremental HTTP/1.1 response parser over Buffers, strict like llhttp's default mode (RFC 9112).
 *
 * It is an abstract base class: the per-request object of the lean client (`h1-client.ts`) extends it
 * and implements the hooks, so one request costs one object (parser state included).
 *
 * What it accepts:
 * - status line `HTTP/1.0` or `HTTP/1.1`, SP, three digits (100–999), then nothing or SP and a reason
 *   of HTAB / SP / VCHAR / obs-text; every line ends with CRLF (a bare LF or a bare CR is an error);
 *   empty lines (CRLF) before the status line are skipped, as llhttp does;
 * - header fields `token ":" OWS value OWS` with the value made of HTAB / SP / VCHAR / obs-text; no
 *   space before the colon, no obs-fold (a line starting with SP / HTAB), no CTLs;
 * - one `Content-Length` of 1–15 digits (a second one, even equal, is an error, as in llhttp);
 * - `Transfer-Encoding: chunked` exactly (one field, one coding); any other coding is refused, because a
 *   proxy that strips the hop-by-hop `Transfer-Encoding` could not pass an undecoded body on faithfully;
 *   `Transfer-Encoding` together with `Content-Length`, or in an HTTP/1.0 response, is an error;
 * - chunked bodies: hex size (no spaces), extensions `;name[=token|quoted-string]`, CRLF after the
 *   data, trailers checked like header fields and then dropped;
 * - no body for responses to HEAD, for 1xx, 204 and 304; otherwise Content-Length, chunked, or until
 *   the connection closes;
 * - interim 1xx responses are skipped; `101` is an error (the lean client never asks for an upgrade).
 *
 * The head is parsed once it is complete, from one Buffer: a head split across reads is joined with
 * `Buffer.concat` (the only copy). Body chunks are handed on as `subarray` slices of the socket's reads.
 * When the body hook returns false the parser stops where it is and keeps the rest of the current read
 * (`resumeParser` goes on from there).
 */
import { markFieldsChecked } from '../listener/http-syntax.ts';
import type { HeaderList } from '../listener/listener-types.ts';
import { addConnectionTokens, isHopByHop } from './forward-headers.ts';

/** Envoy's default limit for a header section (60 KiB), the same as the undici client's. */
export const MAX_HEAD_SIZE = 60 * 1024;
/** Limit for the extensions of one chunk header (Node's llhttp binding uses 16 KiB too). */
const MAX_CHUNK_EXTENSIONS = 16 * 1024;

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;
const SEMI = 0x3b;
const EQUALS = 0x3d;
const DQUOTE = 0x22;
const BACKSLASH = 0x5c;

/** Byte classes: bit 1 tchar, bit 2 field-value byte (HTAB, SP, VCHAR, obs-text). */
const TOKEN = 1;
const VALUE = 2;
const CLASS = new Uint8Array(256);
for (let c = 0x21; c <= 0x7e; c++) CLASS[c] = VALUE;
for (let c = 0x80; c <= 0xff; c++) CLASS[c] = VALUE;
CLASS[SP] = VALUE;
CLASS[HTAB] = VALUE;
for (const ch of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") {
  CLASS[ch.charCodeAt(0)] = (CLASS[ch.charCodeAt(0)] ?? 0) | TOKEN;
}

/** Hex digit values, -1 for anything else. */
const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c;
for (let c = 0; c < 6; c++) {
  HEX[0x41 + c] = 10 + c;
  HEX[0x61 + c] = 10 + c;
}

// Parser states (plain numbers: no enums under erasableSyntaxOnly).
const S_HEAD = 0;
const S_LENGTH = 1;
const S_CLOSE = 2;
const S_CHUNK_LINE = 3;
const S_CHUNK_DATA = 4;
const S_CHUNK_DATA_CR = 5;
const S_CHUNK_DATA_LF = 6;
const S_TRAILERS = 7;
const S_DONE = 8;

// Sub-states of a chunk-size line.
const C_SIZE_FIRST = 0;
const C_SIZE = 1;
const C_EXT_NAME_START = 2;
const C_EXT_NAME = 3;
const C_EXT_VALUE_START = 4;
const C_EXT_TOKEN = 5;
const C_EXT_QUOTED = 6;
const C_EXT_QUOTED_ESCAPE = 7;
const C_EXT_AFTER_QUOTE = 8;
const C_LF = 9;

// Sub-states of the trailer section.
const T_LINE_START = 0;
const T_NAME = 1;
const T_VALUE = 2;
const T_VALUE_LF = 3;
const T_END_LF = 4;

// Results of parseHead besides an offset.
const NEED_MORE = -1;
const BAD = -2;

const EMPTY = Buffer.alloc(0);
const MAX_SIZE_BEFORE_SHIFT = Math.floor(Number.MAX_SAFE_INTEGER / 16);

export abstract class H1ResponseParser {
  /** Set by the subclass when the exchange ended (completed, failed, aborted): parsing stops. */
  protected done = false;
  /** Status of the final response (after `onHead`). */
  protected status = 0;
  /** Keep-alive semantics of the response: reusable if the message completes cleanly. */
  protected keepAlive = false;
  /** `Keep-Alive: timeout=N` in milliseconds, or -1. */
  protected keepAliveHintMs = -1;
  /** True when at least one byte of a response arrived. */
  protected responseStarted = false;
  /** True while the body hook asked to stop; `resumeParser` clears it. */
  protected parserSuspended = false;

  private state = S_HEAD;
  private delivered = false;
  /** The request was HEAD: whatever the headers say, the response has no body. */
  private noBody = false;
  private headPart: Buffer | null = null;
  private pending: Buffer | null = null;
  private remaining = 0;
  private sub = 0;
  private chunkSize = 0;
  private lineBytes = 0;
  // Head fields, filled by parseHead.
  private minor = 1;
  private contentLength = -1;
  private chunked = false;
  private sawTransferEncoding = false;
  private connectionClose = false;
  private connectionKeepAlive = false;
  /** Names listed in a `Connection` field that are not hop-by-hop anyway (removed from `headers`). */
  private connectionNamed: string[] | null = null;
  private headers: HeaderList = [];
  private problem = '';

  // ---- hooks ----

  /** The final response head: status and headers (lowercase, hop-by-hop removed). */
  protected abstract onHead(status: number, headers: HeaderList): void;
  /** A body slice. Return false to stop until `resumeParser`. */
  protected abstract onBody(chunk: Buffer): boolean;
  /** The response is complete; `extra` tells whether bytes followed it in the same read. */
  protected abstract onComplete(extra: boolean): void;
  /** The response is invalid. */
  protected abstract onParseError(detail: string): void;

  // ---- driving ----

  /** Prepares for the response to a new request. */
  protected resetParser(headRequest: boolean): void {
    this.state = S_HEAD;
    this.delivered = false;
    this.noBody = headRequest;
    this.headPart = null;
    this.pending = null;
    this.parserSuspended = false;
    this.responseStarted = false;
    this.keepAliveHintMs = -1;
  }

  /** Feeds one read from the socket. */
  protected execute(b: Buffer): void {
    this.responseStarted = true;
    this.run(b, 0);
  }

  /** Goes on after the body hook returned false. */
  protected resumeParser(): void {
    if (!this.parserSuspended) return;
    this.parserSuspended = false;
    const rest = this.pending ?? EMPTY;
    this.pending = null;
    this.run(rest, 0);
  }

  /**
   * The connection ended (FIN). Returns true when that completed the response (a close-delimited body;
   * `onComplete` was called), false when the response was cut short.
   */
  protected executeEof(): boolean {
    if (this.state !== S_CLOSE || this.parserSuspended) return false;
    this.state = S_DONE;
    this.keepAlive = false;
    this.onComplete(false);
    return true;
  }

  /** True once the final head was delivered. */
  protected get headDelivered(): boolean {
    return this.delivered;
  }

  private suspend(b: Buffer, pos: number): void {
    this.parserSuspended = true;
    this.pending = pos < b.length ? b.subarray(pos) : null;
  }

  private fail(detail: string): void {
    this.state = S_DONE;
    this.onParseError(detail);
  }

  private finish(b: Buffer, pos: number): void {
    this.state = S_DONE;
    this.onComplete(pos < b.length);
  }

  private run(b: Buffer, pos: number): void {
    let end = b.length;
    for (;;) {
      if (this.done) return;
      switch (this.state) {
        case S_HEAD: {
          if (pos >= end) return;
          if (this.headPart !== null) {
            b = Buffer.concat([this.headPart, pos === 0 ? b : b.subarray(pos)]);
            pos = 0;
            end = b.length;
            this.headPart = null;
          }
          const r = this.parseHead(b, pos, end);
          if (r === NEED_MORE) {
            if (end - pos > MAX_HEAD_SIZE) {
              this.fail('response head larger than 60 KiB');
              return;
            }
            this.headPart = pos === 0 ? b : b.subarray(pos);
            return;
          }
          if (r === BAD) {
            this.fail(this.problem);
            return;
          }
          if (r - pos > MAX_HEAD_SIZE) {
            this.fail('response head larger than 60 KiB');
            return;
          }
          pos = r;
          const status = this.status;
          if (status < 200) {
            // 101 only answers an upgrade request, which the lean client never sends.
            if (status === 101) {
              this.fail('unexpected 101 Switching Protocols');
              return;
            }
            continue; // interim response (100, 102, 103, …): skipped
          }
          if (this.sawTransferEncoding && this.contentLength >= 0) {
            this.fail('both Transfer-Encoding and Content-Length');
            return;
          }
          if (this.sawTransferEncoding && this.minor === 0) {
            this.fail('Transfer-Encoding in an HTTP/1.0 response');
            return;
          }
          this.keepAlive =
            this.minor === 1 ? !this.connectionClose : this.connectionKeepAlive && !this.connectionClose;
          if (this.noBody || status === 204 || status === 304) {
            // No body whatever the headers say: complete right after onHead.
            this.state = S_LENGTH;
            this.remaining = 0;
          } else if (this.chunked) {
            this.state = S_CHUNK_LINE;
            this.sub = C_SIZE_FIRST;
            this.chunkSize = 0;
            this.lineBytes = 0;
          } else if (this.contentLength >= 0) {
            this.state = S_LENGTH;
            this.remaining = this.contentLength;
          } else {
            this.state = S_CLOSE;
            this.keepAlive = false;
          }
          this.delivered = true;
          const named = this.connectionNamed;
          // Names are tokens and values field values (checked byte by byte above): writers may skip that.
          this.onHead(
            status,
            markFieldsChecked(named === null ? this.headers : withoutNamed(this.headers, named)),
          );
          continue;
        }
        case S_LENGTH: {
          if (this.remaining === 0) {
            this.finish(b, pos);
            return;
          }
          if (pos >= end) return;
          const n = Math.min(this.remaining, end - pos);
          const chunk = pos === 0 && n === end ? b : b.subarray(pos, pos + n);
          pos += n;
          this.remaining -= n;
          if (!this.onBody(chunk)) {
            if (!this.done) this.suspend(b, pos);
            return;
          }
          continue;
        }
        case S_CLOSE: {
          if (pos >= end) return;
          const chunk = pos === 0 ? b : b.subarray(pos);
          pos = end;
          if (!this.onBody(chunk)) {
            if (!this.done) this.suspend(b, pos);
            return;
          }
          continue;
        }
        case S_CHUNK_LINE: {
          if (pos >= end) return;
          const r = this.chunkLine(b, pos, end);
          if (r === BAD) {
            this.fail(this.problem);
            return;
          }
          pos = r;
          continue;
        }
        case S_CHUNK_DATA: {
          if (this.remaining === 0) {
            this.state = S_CHUNK_DATA_CR;
            continue;
          }
          if (pos >= end) return;
          const n = Math.min(this.remaining, end - pos);
          const chunk = b.subarray(pos, pos + n);
          pos += n;
          this.remaining -= n;
          if (!this.onBody(chunk)) {
            if (!this.done) this.suspend(b, pos);
            return;
          }
          continue;
        }
        case S_CHUNK_DATA_CR: {
          if (pos >= end) return;
          if (b[pos++] !== CR) {
            this.fail('missing CRLF after chunk data');
            return;
          }
          this.state = S_CHUNK_DATA_LF;
          continue;
        }
        case S_CHUNK_DATA_LF: {
          if (pos >= end) return;
          if (b[pos++] !== LF) {
            this.fail('missing CRLF after chunk data');
            return;
          }
          this.state = S_CHUNK_LINE;
          this.sub = C_SIZE_FIRST;
          this.chunkSize = 0;
          this.lineBytes = 0;
          continue;
        }
        case S_TRAILERS: {
          if (pos >= end) return;
          const r = this.trailers(b, pos, end);
          if (r === BAD) {
            this.fail(this.problem);
            return;
          }
          if (r === NEED_MORE) return;
          this.finish(b, r);
          return;
        }
        default:
          // S_DONE: bytes after a complete response are the subclass's business (`extra`).
          return;
      }
    }
  }

  /**
   * Parses a complete head from `b[p..end)`. Returns the offset after its final CRLF, NEED_MORE, or BAD
   * (with `problem` set). Fills status, version, framing fields and `headers`.
   */
  private parseHead(b: Buffer, p: number, end: number): number {
    // Empty lines before the status line (llhttp skips them too).
    while (p < end && b[p] === CR) {
      if (p + 1 >= end) return NEED_MORE;
      if (b[p + 1] !== LF) return this.bad('bare CR before the status line');
      p += 2;
    }
    if (p >= end) return NEED_MORE;
    const lf = b.indexOf(LF, p);
    if (lf === -1) {
      // Reject a wrong start early rather than waiting for a line end that may never come.
      const n = Math.min(end - p, 5);
      for (let i = 0; i < n; i++) if (b[p + i] !== HTTP_SLASH[i]) return this.bad('invalid status line');
      return NEED_MORE;
    }
    // Status line: HTTP/1.x SP 3DIGIT [SP reason] CRLF
    const lineEnd = lf - 1;
    if (lineEnd < p || b[lineEnd] !== CR) return this.bad('status line not terminated by CRLF');
    if (
      lineEnd - p < 12 ||
      b[p] !== 0x48 ||
      b[p + 1] !== 0x54 ||
      b[p + 2] !== 0x54 ||
      b[p + 3] !== 0x50 ||
      b[p + 4] !== 0x2f ||
      b[p + 5] !== 0x31 ||
      b[p + 6] !== 0x2e ||
      (b[p + 7] !== 0x30 && b[p + 7] !== 0x31) ||
      b[p + 8] !== SP
    ) {
      return this.bad('invalid status line');
    }
    this.minor = b[p + 7] === 0x31 ? 1 : 0;
    const d0 = (b[p + 9] ?? 0) - 0x30;
    const d1 = (b[p + 10] ?? 0) - 0x30;
    const d2 = (b[p + 11] ?? 0) - 0x30;
    if (d0 < 1 || d0 > 9 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) return this.bad('invalid status code');
    this.status = d0 * 100 + d1 * 10 + d2;
    let q = p + 12;
    if (q < lineEnd) {
      if (b[q] !== SP) return this.bad('invalid status code');
      for (q++; q < lineEnd; q++) {
        if ((CLASS[b[q]!]! & VALUE) === 0) return this.bad('invalid character in the reason phrase');
      }
    }
    q = lf + 1;

    this.contentLength = -1;
    this.chunked = false;
    this.sawTransferEncoding = false;
    this.connectionClose = false;
    this.connectionKeepAlive = false;
    this.connectionNamed = null;
    this.keepAliveHintMs = -1;
    const headers: HeaderList = [];
    this.headers = headers;
    // The field lines are decoded with one latin1 conversion (names and values are substrings of it):
    // everything after the status line when it is small, else up to the first empty line.
    const base = q;
    let textEnd = end;
    if (end - q > DECODE_ALL_LIMIT) {
      const blank = b.indexOf(CRLF_CRLF, lf - 1);
      if (blank !== -1) textEnd = blank + 4;
    }
    const text = b.toString('latin1', q, textEnd);

    for (;;) {
      if (q >= end) return NEED_MORE;
      let c = b[q]!;
      if (c === CR) {
        if (q + 1 >= end) return NEED_MORE;
        if (b[q + 1] !== LF) return this.bad('bare CR in the head');
        return q + 2;
      }
      if (c === SP || c === HTAB) return this.bad('line folding or whitespace before a field name');
      // Field name.
      const nameStart = q;
      let upper = false;
      for (;;) {
        if ((CLASS[c]! & TOKEN) === 0) break;
        if (c >= 0x41 && c <= 0x5a) upper = true;
        if (++q >= end) return NEED_MORE;
        c = b[q]!;
      }
      if (c !== COLON) return this.bad('invalid character in a field name');
      if (q === nameStart) return this.bad('empty field name');
      const nameEnd = q;
      q++;
      // OWS, value, OWS, CRLF.
      while (q < end && (b[q] === SP || b[q] === HTAB)) q++;
      const valueStart = q;
      let valueEnd = q;
      for (;;) {
        if (q >= end) return NEED_MORE;
        c = b[q]!;
        if (c === CR) break;
        if ((CLASS[c]! & VALUE) === 0) return this.bad('invalid character in a field value');
        q++;
        if (c !== SP && c !== HTAB) valueEnd = q;
      }
      if (q + 1 >= end) return NEED_MORE;
      if (b[q + 1] !== LF) return this.bad('bare CR in a field value');
      q += 2;
      let name = text.slice(nameStart - base, nameEnd - base);
      if (upper) name = name.toLowerCase();
      const value = valueEnd > valueStart ? text.slice(valueStart - base, valueEnd - base) : '';
      // Hop-by-hop fields are read here and never reach `headers` (as `cleanResponseHeaders` would).
      switch (name) {
        case 'content-length': {
          if (this.contentLength >= 0) return this.bad('more than one Content-Length');
          const n = parseDecimal(value);
          if (n < 0) return this.bad('invalid Content-Length');
          this.contentLength = n;
          headers.push(name, value);
          break;
        }
        case 'transfer-encoding':
          if (this.sawTransferEncoding) return this.bad('more than one Transfer-Encoding');
          this.sawTransferEncoding = true;
          if (value.length !== 7 || value.toLowerCase() !== 'chunked') {
            return this.bad(`unsupported Transfer-Encoding "${value}"`);
          }
          this.chunked = true;
          break;
        case 'connection':
          this.connectionTokens(value);
          this.connectionNamed = addConnectionTokens(value, this.connectionNamed);
          break;
        case 'keep-alive':
          this.keepAliveHintMs = keepAliveTimeoutMs(value);
          break;
        default:
          if (!isHopByHop(name)) headers.push(name, value);
      }
    }
  }

  private bad(problem: string): number {
    this.problem = problem;
    return BAD;
  }

  /** Records `close` / `keep-alive` tokens of a Connection value (case-insensitive, comma-separated). */
  private connectionTokens(value: string): void {
    let i = 0;
    const n = value.length;
    while (i < n) {
      while (
        i < n &&
        (value.charCodeAt(i) === SP || value.charCodeAt(i) === HTAB || value.charCodeAt(i) === 0x2c)
      )
        i++;
      const start = i;
      while (i < n && value.charCodeAt(i) !== 0x2c) i++;
      let stop = i;
      while (stop > start && (value.charCodeAt(stop - 1) === SP || value.charCodeAt(stop - 1) === HTAB))
        stop--;
      const len = stop - start;
      if (len === 5 && equalsLower(value, start, 'close')) this.connectionClose = true;
      else if (len === 10 && equalsLower(value, start, 'keep-alive')) this.connectionKeepAlive = true;
    }
  }

  /** One step through a chunk-size line; returns the new offset or BAD. */
  private chunkLine(b: Buffer, p: number, end: number): number {
    let sub = this.sub;
    const lineStart = p;
    while (p < end) {
      const c = b[p]!;
      switch (sub) {
        case C_SIZE_FIRST:
        case C_SIZE: {
          const h = HEX[c]!;
          if (h >= 0) {
            if (this.chunkSize > MAX_SIZE_BEFORE_SHIFT) return this.bad('chunk size too large');
            this.chunkSize = this.chunkSize * 16 + h;
            sub = C_SIZE;
          } else if (sub === C_SIZE_FIRST) {
            return this.bad('invalid character in a chunk size');
          } else if (c === CR) {
            sub = C_LF;
          } else if (c === SEMI) {
            sub = C_EXT_NAME_START;
          } else {
            return this.bad('invalid character in a chunk size');
          }
          break;
        }
        case C_EXT_NAME_START:
          if ((CLASS[c]! & TOKEN) === 0) return this.bad('invalid chunk extension');
          sub = C_EXT_NAME;
          break;
        case C_EXT_NAME:
          if (c === SEMI) sub = C_EXT_NAME_START;
          else if (c === EQUALS) sub = C_EXT_VALUE_START;
          else if (c === CR) sub = C_LF;
          else if ((CLASS[c]! & TOKEN) === 0) return this.bad('invalid chunk extension');
          break;
        case C_EXT_VALUE_START:
          if (c === DQUOTE) sub = C_EXT_QUOTED;
          else if ((CLASS[c]! & TOKEN) !== 0) sub = C_EXT_TOKEN;
          else return this.bad('invalid chunk extension value');
          break;
        case C_EXT_TOKEN:
          if (c === SEMI) sub = C_EXT_NAME_START;
          else if (c === CR) sub = C_LF;
          else if ((CLASS[c]! & TOKEN) === 0) return this.bad('invalid chunk extension value');
          break;
        case C_EXT_QUOTED:
          // qdtext: HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
          if (c === DQUOTE) sub = C_EXT_AFTER_QUOTE;
          else if (c === BACKSLASH) sub = C_EXT_QUOTED_ESCAPE;
          else if ((CLASS[c]! & VALUE) === 0) return this.bad('invalid chunk extension quoted value');
          break;
        case C_EXT_QUOTED_ESCAPE:
          if ((CLASS[c]! & VALUE) === 0) return this.bad('invalid chunk extension quoted value');
          sub = C_EXT_QUOTED;
          break;
        case C_EXT_AFTER_QUOTE:
          if (c === SEMI) sub = C_EXT_NAME_START;
          else if (c === CR) sub = C_LF;
          else return this.bad('invalid chunk extension');
          break;
        default: {
          // C_LF
          if (c !== LF) return this.bad('chunk size line not terminated by CRLF');
          p++;
          if (this.chunkSize === 0) {
            this.state = S_TRAILERS;
            this.sub = T_LINE_START;
            this.lineBytes = 0;
          } else {
            this.state = S_CHUNK_DATA;
            this.remaining = this.chunkSize;
          }
          return p;
        }
      }
      p++;
    }
    this.lineBytes += p - lineStart;
    if (this.lineBytes > MAX_CHUNK_EXTENSIONS) return this.bad('chunk extensions too long');
    this.sub = sub;
    return p;
  }

  /** Trailer section after the last chunk: checked, then dropped. Returns the end offset, NEED_MORE or BAD. */
  private trailers(b: Buffer, p: number, end: number): number {
    let sub = this.sub;
    const start = p;
    while (p < end) {
      const c = b[p]!;
      switch (sub) {
        case T_LINE_START:
          if (c === CR) sub = T_END_LF;
          else if ((CLASS[c]! & TOKEN) !== 0) sub = T_NAME;
          else return this.bad('invalid trailer field');
          break;
        case T_NAME:
          if (c === COLON) sub = T_VALUE;
          else if ((CLASS[c]! & TOKEN) === 0) return this.bad('invalid trailer field name');
          break;
        case T_VALUE:
          if (c === CR) sub = T_VALUE_LF;
          else if ((CLASS[c]! & VALUE) === 0) return this.bad('invalid trailer field value');
          break;
        case T_VALUE_LF:
          if (c !== LF) return this.bad('bare CR in a trailer field');
          sub = T_LINE_START;
          break;
        default:
          // T_END_LF
          if (c !== LF) return this.bad('bare CR after the trailers');
          return p + 1;
      }
      p++;
    }
    this.lineBytes += p - start;
    if (this.lineBytes > MAX_HEAD_SIZE) return this.bad('trailers larger than 60 KiB');
    this.sub = sub;
    return NEED_MORE;
  }
}

const HTTP_SLASH = [0x48, 0x54, 0x54, 0x50, 0x2f];
const CRLF_CRLF = Buffer.from('\r\n\r\n', 'latin1');
/** Up to this many bytes after the status line are decoded whole (a small head and its body's start). */
const DECODE_ALL_LIMIT = 2048;

/** `headers` without the fields a `Connection` field named. */
function withoutNamed(headers: HeaderList, named: readonly string[]): HeaderList {
  const out: HeaderList = [];
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!;
    if (!named.includes(name)) out.push(name, headers[i + 1]!);
  }
  return out;
}

/** 1–15 decimal digits → value; anything else → -1. (Also the lean client's check of a request's length.) */
export function parseDecimal(s: string): number {
  const n = s.length;
  if (n === 0 || n > 15) return -1;
  let v = 0;
  for (let i = 0; i < n; i++) {
    const d = s.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}

/** `s[at..at+lower.length)` equals `lower` ignoring ASCII case. */
function equalsLower(s: string, at: number, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    let c = s.charCodeAt(at + i);
    if (c >= 0x41 && c <= 0x5a) c += 0x20;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/** `timeout=N` in a Keep-Alive value → N seconds in ms; -1 when absent or invalid. */
function keepAliveTimeoutMs(value: string): number {
  const at = value.toLowerCase().indexOf('timeout=');
  if (at === -1) return -1;
  let i = at + 8;
  let v = 0;
  let digits = 0;
  while (i < value.length && digits < 9) {
    const d = value.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) break;
    v = v * 10 + d;
    digits++;
    i++;
  }
  return digits === 0 ? -1 : v * 1000;
}
