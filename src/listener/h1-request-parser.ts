/**
 * Incremental, strict HTTP/1.1 request parsing for the h1 engine (RFC 9112), over Buffers.
 *
 * - `HeadParser` reads the request line and the field lines. The caller keeps the bytes of an
 *   incomplete head in one Buffer (appending what arrives) and calls `parse` again: offsets stay
 *   valid, and each line is checked once, as soon as its LF arrives. Lines end in CR LF, nothing
 *   else; no obs-fold, no whitespace before a colon, field names are tokens (`_` and `.` included),
 *   values carry no CTL but HTAB. Framing decisions (Content-Length, Transfer-Encoding, Host) are
 *   left to `checkRequestHead`, shared with the other engines.
 * - `ChunkedDecoder` reads a chunked body step by step (size, extensions as RFC 9112 §7.1.1 defines
 *   them, data, CR LF, trailers, which are checked and dropped), stopping after each data span so
 *   the caller can hand it on, or stop when the consumer is paused.
 */
import { METHODS } from 'node:http';
import type { HeaderList } from './listener-types.ts';

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;

/** tchar (RFC 9110 §5.6.2) by byte. */
const TCHAR = new Uint8Array(256);
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;
for (const ch of "!#$%&'*+-.^_`|~") TCHAR[ch.charCodeAt(0)] = 1;

/** field-vchar / SP / HTAB / obs-text: what a field value may hold. */
const VALUE = new Uint8Array(256);
VALUE[HTAB] = 1;
for (let c = 0x20; c <= 0x7e; c++) VALUE[c] = 1;
for (let c = 0x80; c <= 0xff; c++) VALUE[c] = 1;

/**
 * Methods this engine serves: the ones node:http (llhttp) knows for HTTP/1.x. RFC 9110 lets any
 * token be a method, but the node engine refuses unknown ones, and a proxy that forwards methods
 * its peers may parse differently gains nothing; unknown methods get 501.
 */
const KNOWN_METHODS = new Set<string>(METHODS);

/** States of `HeadParser.checkPartial`. */
const PS_METHOD = 0;
const PS_TARGET = 1;
const PS_VERSION = 2;
const PS_FIELD_START = 3;
const PS_FIELD_NAME = 4;
const PS_FIELD_VALUE = 5;
const PS_CR = 6;

const CRLF_CRLF = Buffer.from('\r\n\r\n', 'latin1');
/** A head with at most this many bytes from its request line to the end of the read is decoded whole. */
const DECODE_ALL_LIMIT = 2048;

/** Longest request head (request line + fields + the empty line). */
export const MAX_HEAD_BYTES = 60 * 1024;

/** Result codes of `HeadParser.parse`. */
export const HEAD_INCOMPLETE = 0;
export const HEAD_ERROR = -1;

function isLowerAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) return false;
  }
  return true;
}

/** origin-form, absolute-form (`scheme://authority…`) or asterisk-form; not authority-form. */
function targetForm(t: string): 'origin' | 'absolute' | 'asterisk' | 'authority' | null {
  const c0 = t.charCodeAt(0);
  if (c0 === 0x2f) return 'origin';
  if (t === '*') return 'asterisk';
  // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
  let i = 0;
  for (; i < t.length; i++) {
    const c = t.charCodeAt(i);
    const alpha = (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
    if (alpha) continue;
    if (i > 0 && ((c >= 0x30 && c <= 0x39) || c === 0x2b || c === 0x2d || c === 0x2e)) continue;
    break;
  }
  if (i > 0 && t.startsWith('://', i)) {
    const a = i + 3;
    const c = t.charCodeAt(a);
    // A non-empty authority.
    if (a < t.length && c !== 0x2f && c !== 0x3f && c !== 0x23) return 'absolute';
    return null;
  }
  // authority-form: host:port, no path.
  if (t.indexOf('/') === -1 && t.lastIndexOf(':') > 0) return 'authority';
  return null;
}

export class HeadParser {
  /** Offset of the request line (after leading empty lines). */
  private start = 0;
  /** Offset of the next line to read. */
  private line = 0;
  private haveRequestLine = false;
  /** Incremental check of the incomplete line: its offset, how far it was checked, and where. */
  private partLine = -1;
  private partChecked = 0;
  private partState = 0;
  private partCount = 0;
  private partMajor = 0;
  private lengthSeen = false;
  /** Latin1 text of `buf[textBase..textEnd)` for the current `parse` call (one conversion per head). */
  private text = '';
  private textBase = 0;
  private textEnd = -1;

  method = '';
  target = '';
  /** 1 for HTTP/1.1, 0 for HTTP/1.0. */
  minor = 1;
  form: 'origin' | 'absolute' | 'asterisk' | 'authority' = 'origin';
  headers: HeaderList = [];
  /** A `Connection` field lists `keep-alive` (what HTTP/1.0 keep-alive needs). */
  keepAlive = false;
  /** `Expect: 100-continue`. */
  expectContinue = false;
  /** Set when `parse` returns HEAD_ERROR. */
  errorStatus = 400;
  errorText = '';

  /** Forget the previous head; call before parsing a new one. */
  reset(): void {
    this.start = 0;
    this.line = 0;
    this.haveRequestLine = false;
    this.partLine = -1;
    this.lengthSeen = false;
    this.headers = [];
    this.keepAlive = false;
    this.expectContinue = false;
  }

  /**
   * Reads lines of `buf` (the bytes of this head from its start, more appended on each call).
   * Returns the offset just past the head, HEAD_INCOMPLETE, or HEAD_ERROR (`errorStatus`,
   * `errorText`).
   */
  parse(buf: Buffer): number {
    this.textEnd = -1;
    for (;;) {
      const lf = buf.indexOf(LF, this.line);
      if (lf === -1) {
        if (buf.length - this.start > MAX_HEAD_BYTES) return this.fail(431, 'header section too large');
        return this.checkPartial(buf) ? HEAD_INCOMPLETE : HEAD_ERROR;
      }
      if (lf + 1 - this.start > MAX_HEAD_BYTES) return this.fail(431, 'header section too large');
      const end = lf - 1;
      if (end < this.line || buf[end] !== CR) return this.fail(400, 'line not terminated by CR LF');
      if (end === this.line) {
        if (!this.haveRequestLine) {
          // RFC 9112 §2.2: empty lines before a request line are ignored.
          this.line = lf + 1;
          this.start = this.line;
          continue;
        }
        return lf + 1;
      }
      const ok = this.haveRequestLine
        ? this.fieldLine(buf, this.line, end)
        : this.requestLine(buf, this.line, end);
      if (!ok) return HEAD_ERROR;
      this.line = lf + 1;
    }
  }

  /**
   * Checks the bytes of the line that has no LF yet, from where the last call stopped, so that a
   * byte no complete line could hold is refused when it arrives (as llhttp does), not when a CR LF
   * that may never come arrives.
   */
  private checkPartial(buf: Buffer): boolean {
    if (this.partLine !== this.line) {
      this.partLine = this.line;
      this.partChecked = this.line;
      this.partState = this.haveRequestLine ? PS_FIELD_START : PS_METHOD;
      this.partCount = 0;
    }
    let state = this.partState;
    let count = this.partCount;
    let i = this.partChecked;
    for (; i < buf.length; i++) {
      const c = buf[i] as number;
      if (state === PS_CR) {
        this.fail(400, 'CR not followed by LF');
        return false;
      }
      if (c === CR) {
        state = PS_CR;
        continue;
      }
      switch (state) {
        case PS_METHOD:
          if (TCHAR[c] === 1) count++;
          else if (c === SP && count > 0) {
            state = PS_TARGET;
            count = 0;
          } else {
            this.fail(400, 'invalid method');
            return false;
          }
          break;
        case PS_TARGET:
          if (c > SP && c < 0x7f) count++;
          else if (c === SP && count > 0) {
            state = PS_VERSION;
            count = 0;
          } else {
            this.fail(400, 'invalid request-target');
            return false;
          }
          break;
        case PS_VERSION: {
          let ok: boolean;
          if (count < 5) ok = c === 'HTTP/'.charCodeAt(count);
          else if (count === 5 || count === 7) ok = c >= 0x30 && c <= 0x39;
          else ok = count === 6 && c === 0x2e;
          if (!ok) {
            this.fail(400, 'invalid HTTP version');
            return false;
          }
          if (count === 5) this.partMajor = c - 0x30;
          if ((count === 5 && c !== 0x31) || (count === 7 && c > 0x31)) {
            this.fail(505, `HTTP/${this.partMajor}.${count === 7 ? c - 0x30 : 'x'} is not supported`);
            return false;
          }
          count++;
          break;
        }
        case PS_FIELD_START:
          if (TCHAR[c] !== 1) {
            this.fail(400, c === SP || c === HTAB ? 'obsolete line folding' : 'invalid header name');
            return false;
          }
          state = PS_FIELD_NAME;
          break;
        case PS_FIELD_NAME:
          if (c === COLON) state = PS_FIELD_VALUE;
          else if (TCHAR[c] !== 1) {
            this.fail(400, 'invalid header name');
            return false;
          }
          break;
        default:
          if (VALUE[c] !== 1) {
            this.fail(400, 'invalid character in header value');
            return false;
          }
      }
    }
    this.partState = state;
    this.partCount = count;
    this.partChecked = i;
    return true;
  }

  /**
   * `buf[from..to)` as latin1. The first call of a `parse` converts everything from there to the
   * end of the head (or of `buf`, when small) at once; later ones take substrings of it.
   */
  private str(buf: Buffer, from: number, to: number): string {
    if (to > this.textEnd || from < this.textBase) {
      let stop = buf.length;
      if (stop - from > DECODE_ALL_LIMIT) {
        const blank = buf.indexOf(CRLF_CRLF, from);
        stop = blank === -1 ? to : Math.max(blank + 4, to);
      }
      this.text = buf.toString('latin1', from, stop);
      this.textBase = from;
      this.textEnd = stop;
    }
    return this.text.slice(from - this.textBase, to - this.textBase);
  }

  private fail(status: number, text: string): number {
    this.errorStatus = status;
    this.errorText = text;
    return HEAD_ERROR;
  }

  private requestLine(buf: Buffer, from: number, end: number): boolean {
    let i = from;
    while (i < end && TCHAR[buf[i] as number] === 1) i++;
    if (i === from || i >= end || buf[i] !== SP) {
      this.fail(400, 'invalid method');
      return false;
    }
    const method = this.str(buf, from, i);
    const t0 = ++i;
    // Visible US-ASCII only (RFC 9112 §3.2): no controls, spaces, DEL or raw non-ASCII.
    while (i < end) {
      const c = buf[i] as number;
      if (c <= SP || c >= 0x7f) break;
      i++;
    }
    if (i === t0 || i >= end || buf[i] !== SP) {
      this.fail(400, 'invalid request-target');
      return false;
    }
    const target = this.str(buf, t0, i);
    i++;
    // HTTP-version = "HTTP/" DIGIT "." DIGIT, then the CR.
    if (
      end - i !== 8 ||
      buf[i] !== 0x48 ||
      buf[i + 1] !== 0x54 ||
      buf[i + 2] !== 0x54 ||
      buf[i + 3] !== 0x50 ||
      buf[i + 4] !== 0x2f ||
      buf[i + 6] !== 0x2e
    ) {
      this.fail(400, 'invalid HTTP version');
      return false;
    }
    const major = (buf[i + 5] as number) - 0x30;
    const minor = (buf[i + 7] as number) - 0x30;
    if (major < 0 || major > 9 || minor < 0 || minor > 9) {
      this.fail(400, 'invalid HTTP version');
      return false;
    }
    if (major !== 1 || minor > 1) {
      this.fail(505, `HTTP/${major}.${minor} is not supported`);
      return false;
    }
    if (!KNOWN_METHODS.has(method)) {
      this.fail(501, 'method not implemented');
      return false;
    }
    const form = targetForm(target);
    if (form === null) {
      this.fail(400, 'invalid request-target');
      return false;
    }
    if ((form === 'authority') !== (method === 'CONNECT')) {
      this.fail(400, 'invalid request-target for the method');
      return false;
    }
    if (form === 'asterisk' && method !== 'OPTIONS') {
      this.fail(400, 'asterisk-form is only for OPTIONS');
      return false;
    }
    this.method = method;
    this.target = target;
    this.minor = minor;
    this.form = form;
    this.haveRequestLine = true;
    return true;
  }

  private fieldLine(buf: Buffer, from: number, end: number): boolean {
    let i = from;
    while (i < end && TCHAR[buf[i] as number] === 1) i++;
    if (i === from) {
      const c = buf[from] as number;
      this.fail(400, c === SP || c === HTAB ? 'obsolete line folding' : 'invalid header name');
      return false;
    }
    if (i >= end || buf[i] !== COLON) {
      this.fail(400, 'invalid header name');
      return false;
    }
    const rawName = this.str(buf, from, i);
    const name = isLowerAscii(rawName) ? rawName : rawName.toLowerCase();
    i++;
    while (i < end && (buf[i] === SP || buf[i] === HTAB)) i++;
    const v0 = i;
    let v1 = i;
    for (; i < end; i++) {
      const c = buf[i] as number;
      if (VALUE[c] !== 1) {
        this.fail(400, `invalid character in header ${name}`);
        return false;
      }
      if (c !== SP && c !== HTAB) v1 = i + 1;
    }
    const value = v1 === v0 ? '' : this.str(buf, v0, v1);
    this.headers.push(name, value);
    if (name === 'content-length') {
      // Refused here already (as llhttp does), with the words checkRequestHead would use.
      if (this.lengthSeen) {
        this.fail(400, 'multiple content-length headers');
        return false;
      }
      this.lengthSeen = true;
      if (!/^\d{1,15}$/.test(value)) {
        this.fail(400, 'invalid content-length');
        return false;
      }
    } else if (name === 'connection') {
      if (value.toLowerCase().includes('keep-alive')) this.keepAlive = true;
    } else if (name === 'expect') {
      if (value.toLowerCase() === '100-continue') this.expectContinue = true;
    }
    return true;
  }
}

// ---- chunked bodies ------------------------------------------------------------------------------

/** What `ChunkedDecoder.step` found. */
export const CHUNK_MORE = 0;
export const CHUNK_DATA = 1;
export const CHUNK_DONE = 2;
export const CHUNK_ERROR = 3;

const S_SIZE_FIRST = 0;
const S_SIZE = 1;
const S_EXT_NAME_START = 2;
const S_EXT_NAME = 3;
const S_EXT_VALUE_START = 4;
const S_EXT_TOKEN = 5;
const S_EXT_QUOTED = 6;
const S_EXT_QUOTED_PAIR = 7;
const S_EXT_AFTER_QUOTED = 8;
const S_SIZE_LF = 9;
const S_DATA = 10;
const S_DATA_CR = 11;
const S_DATA_LF = 12;
const S_TRAILER = 13;
const S_TRAILER_LF = 14;

/** Longest chunk-size line (size and extensions). */
const MAX_CHUNK_LINE = 4096;
/** Chunk sizes beyond this are refused (2^48 bytes: nonsense for a proxied body). */
const MAX_CHUNK_SIZE = 2 ** 48;

export class ChunkedDecoder {
  private state = S_SIZE_FIRST;
  private size = 0;
  private lineBytes = 0;
  private trailerBytes = 0;
  /** The current trailer line (latin1), checked when it ends. */
  private trailerLine = '';
  /** After CHUNK_DATA: the span of `buf` that is body data. */
  dataStart = 0;
  dataEnd = 0;
  event = CHUNK_MORE;
  errorText = '';

  /**
   * Advances over `buf` from `pos` until one event: a data span (CHUNK_DATA, `dataStart`/`dataEnd`),
   * the end of the message (CHUNK_DONE, returns the offset just past it), an error, or the end of
   * `buf` (CHUNK_MORE). Returns the offset reached.
   */
  step(buf: Buffer, pos: number): number {
    const len = buf.length;
    let i = pos;
    while (i < len) {
      const c = buf[i] as number;
      switch (this.state) {
        case S_DATA: {
          const n = Math.min(this.size, len - i);
          this.size -= n;
          if (this.size === 0) this.state = S_DATA_CR;
          this.dataStart = i;
          this.dataEnd = i + n;
          this.event = CHUNK_DATA;
          return i + n;
        }
        case S_SIZE_FIRST:
        case S_SIZE: {
          const d = hexValue(c);
          if (d >= 0) {
            this.size = this.size * 16 + d;
            if (this.size > MAX_CHUNK_SIZE) return this.fail('chunk size too large', i);
            this.state = S_SIZE;
          } else if (this.state === S_SIZE && c === 0x3b) this.state = S_EXT_NAME_START;
          else if (this.state === S_SIZE && c === CR) this.state = S_SIZE_LF;
          else return this.fail('invalid character in chunk size', i);
          break;
        }
        case S_EXT_NAME_START:
          if (TCHAR[c] !== 1) return this.fail('invalid character in chunk extension', i);
          this.state = S_EXT_NAME;
          break;
        case S_EXT_NAME:
          if (c === 0x3d) this.state = S_EXT_VALUE_START;
          else if (c === 0x3b) this.state = S_EXT_NAME_START;
          else if (c === CR) this.state = S_SIZE_LF;
          else if (TCHAR[c] !== 1) return this.fail('invalid character in chunk extension', i);
          break;
        case S_EXT_VALUE_START:
          if (c === 0x22) this.state = S_EXT_QUOTED;
          else if (TCHAR[c] === 1) this.state = S_EXT_TOKEN;
          else return this.fail('invalid character in chunk extension', i);
          break;
        case S_EXT_TOKEN:
          if (c === 0x3b) this.state = S_EXT_NAME_START;
          else if (c === CR) this.state = S_SIZE_LF;
          else if (TCHAR[c] !== 1) return this.fail('invalid character in chunk extension', i);
          break;
        case S_EXT_QUOTED:
          // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
          if (c === 0x22) this.state = S_EXT_AFTER_QUOTED;
          else if (c === 0x5c) this.state = S_EXT_QUOTED_PAIR;
          else if (VALUE[c] !== 1) return this.fail('invalid character in chunk extension', i);
          break;
        case S_EXT_QUOTED_PAIR:
          if (VALUE[c] !== 1) return this.fail('invalid character in chunk extension', i);
          this.state = S_EXT_QUOTED;
          break;
        case S_EXT_AFTER_QUOTED:
          if (c === 0x3b) this.state = S_EXT_NAME_START;
          else if (c === CR) this.state = S_SIZE_LF;
          else return this.fail('invalid character in chunk extension', i);
          break;
        case S_SIZE_LF:
          if (c !== LF) return this.fail('chunk size line not terminated by CR LF', i);
          this.lineBytes = 0;
          if (this.size === 0) {
            this.state = S_TRAILER;
            this.trailerLine = '';
          } else this.state = S_DATA;
          i++;
          continue;
        case S_DATA_CR:
          if (c !== CR) return this.fail('chunk data not terminated by CR LF', i);
          this.state = S_DATA_LF;
          break;
        case S_DATA_LF:
          if (c !== LF) return this.fail('chunk data not terminated by CR LF', i);
          this.state = S_SIZE_FIRST;
          this.size = 0;
          this.lineBytes = 0;
          i++;
          continue;
        case S_TRAILER:
          if (c === CR) {
            this.state = S_TRAILER_LF;
          } else {
            if (++this.trailerBytes > MAX_HEAD_BYTES) return this.fail('trailer section too large', i);
            this.trailerLine += String.fromCharCode(c);
          }
          i++;
          continue;
        case S_TRAILER_LF: {
          if (c !== LF) return this.fail('trailer line not terminated by CR LF', i);
          i++;
          if (this.trailerLine === '') {
            this.event = CHUNK_DONE;
            return i;
          }
          const problem = checkTrailerLine(this.trailerLine);
          if (problem !== null) return this.fail(problem, i);
          this.trailerLine = '';
          this.state = S_TRAILER;
          continue;
        }
        default:
          return this.fail('chunked decoder state', i);
      }
      if (++this.lineBytes > MAX_CHUNK_LINE) return this.fail('chunk size line too long', i);
      i++;
    }
    this.event = CHUNK_MORE;
    return i;
  }

  private fail(text: string, at: number): number {
    this.errorText = text;
    this.event = CHUNK_ERROR;
    return at;
  }
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

/** A trailer field line: token, colon, value without CTLs. Null when fine. */
function checkTrailerLine(line: string): string | null {
  const colon = line.indexOf(':');
  if (colon <= 0) return 'invalid trailer field';
  for (let i = 0; i < colon; i++) {
    const c = line.charCodeAt(i);
    if (TCHAR[c] !== 1) return 'invalid trailer field name';
  }
  for (let i = colon + 1; i < line.length; i++) {
    if (VALUE[line.charCodeAt(i)] !== 1) return 'invalid character in trailer field';
  }
  return null;
}
