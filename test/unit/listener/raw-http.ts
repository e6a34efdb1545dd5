/**
 * Test helpers for the listener engines: a raw TCP client and a small HTTP/1.1 response parser, so
 * tests see exactly what went on the wire (status line, framing, connection close).
 */
import { connect, type Socket } from 'node:net';

export interface RawResponse {
  readonly statusLine: string;
  readonly status: number;
  /** Lowercased names, wire order. */
  readonly headers: string[];
  readonly body: Buffer;
  readonly chunked: boolean;
  /** Body read until the connection closed (no length framing). */
  readonly untilClose: boolean;
}

export function header(r: RawResponse, name: string): string | undefined {
  for (let i = 0; i + 1 < r.headers.length; i += 2) if (r.headers[i] === name) return r.headers[i + 1];
  return undefined;
}

export function headerValues(r: RawResponse, name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < r.headers.length; i += 2)
    if (r.headers[i] === name) out.push(r.headers[i + 1] ?? '');
  return out;
}

interface ParseStep {
  readonly response: RawResponse;
  readonly used: number;
}

const CRLF2 = Buffer.from('\r\n\r\n');

/** Parses one response at the start of `buf`; null when incomplete. `closed` allows read-until-close. */
function parseOne(buf: Buffer, isHead: boolean, closed: boolean): ParseStep | null {
  const headEnd = buf.indexOf(CRLF2);
  if (headEnd === -1) return null;
  const lines = buf.subarray(0, headEnd).toString('latin1').split('\r\n');
  const statusLine = lines[0] ?? '';
  const status = Number(statusLine.split(' ')[1]);
  const headers: string[] = [];
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    headers.push(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
  }
  let pos = headEnd + 4;
  const base = { statusLine, status, headers };
  if (isHead || (status >= 100 && status < 200) || status === 204 || status === 304) {
    return { response: { ...base, body: Buffer.alloc(0), chunked: false, untilClose: false }, used: pos };
  }
  const te = headers.findIndex((h, i) => i % 2 === 0 && h === 'transfer-encoding');
  if (te !== -1) {
    const parts: Buffer[] = [];
    for (;;) {
      const lineEnd = buf.indexOf('\r\n', pos);
      if (lineEnd === -1) return null;
      const size = Number.parseInt(buf.subarray(pos, lineEnd).toString('latin1'), 16);
      if (Number.isNaN(size)) throw new Error(`bad chunk size at ${pos}`);
      pos = lineEnd + 2;
      if (size === 0) {
        const trailerEnd = buf.indexOf('\r\n', pos);
        if (trailerEnd === -1) return null;
        // No trailers expected from the engines.
        pos = trailerEnd + 2;
        break;
      }
      if (buf.length < pos + size + 2) return null;
      parts.push(buf.subarray(pos, pos + size));
      pos += size + 2;
    }
    return { response: { ...base, body: Buffer.concat(parts), chunked: true, untilClose: false }, used: pos };
  }
  const cl = headers.findIndex((h, i) => i % 2 === 0 && h === 'content-length');
  if (cl !== -1) {
    const n = Number(headers[cl + 1]);
    if (buf.length < pos + n) return null;
    return {
      response: { ...base, body: buf.subarray(pos, pos + n), chunked: false, untilClose: false },
      used: pos + n,
    };
  }
  if (!closed) return null;
  return {
    response: { ...base, body: buf.subarray(pos), chunked: false, untilClose: true },
    used: buf.length,
  };
}

/** Every complete response in `buf`, in order. `heads[i]` says whether request i was HEAD. */
export function parseResponses(buf: Buffer, closed: boolean, heads: readonly boolean[] = []): RawResponse[] {
  const out: RawResponse[] = [];
  let rest = buf;
  while (rest.length > 0) {
    const step = parseOne(rest, heads[out.length] === true, closed);
    if (step === null) break;
    out.push(step.response);
    rest = rest.subarray(step.used);
  }
  return out;
}

export interface RawResult {
  readonly data: Buffer;
  readonly closed: boolean;
  readonly timedOut: boolean;
  readonly error: string | null;
  readonly responses: RawResponse[];
}

export interface RawOptions {
  readonly host?: string;
  /** Give up after this long (ms). */
  readonly timeoutMs?: number;
  /** Resolve once this many complete responses arrived (and `settleMs` passed quietly). */
  readonly responses?: number;
  /** Quiet time after the expected responses, to catch extra bytes or a close. */
  readonly settleMs?: number;
  readonly heads?: readonly boolean[];
  /** Resolve once data arrived and then nothing more for this long (ms). */
  readonly idleMs?: number;
}

/** Sends raw bytes, collects what comes back until close, timeout, or the expected responses. */
export function rawRequest(port: number, bytes: Buffer | string, opts: RawOptions = {}): Promise<RawResult> {
  const timeoutMs = opts.timeoutMs ?? 2000;
  const settleMs = opts.settleMs ?? 50;
  return new Promise((resolve) => {
    const socket = connect({ port, host: opts.host ?? '127.0.0.1' });
    const parts: Buffer[] = [];
    let error: string | null = null;
    let settled = false;
    let settleTimer: NodeJS.Timeout | null = null;
    const finish = (closed: boolean, timedOut: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (settleTimer !== null) clearTimeout(settleTimer);
      socket.destroy();
      const data = Buffer.concat(parts);
      resolve({ data, closed, timedOut, error, responses: parseResponses(data, closed, opts.heads) });
    };
    const timer = setTimeout(() => finish(false, true), timeoutMs);
    socket.on('data', (d: Buffer) => {
      parts.push(d);
      if (opts.idleMs !== undefined) {
        if (settleTimer !== null) clearTimeout(settleTimer);
        settleTimer = setTimeout(() => finish(false, false), opts.idleMs);
      }
      if (opts.responses === undefined) return;
      const got = parseResponses(Buffer.concat(parts), false, opts.heads).length;
      if (got >= opts.responses) {
        if (settleTimer !== null) clearTimeout(settleTimer);
        settleTimer = setTimeout(() => finish(false, false), settleMs);
      }
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      error = e.code ?? e.message;
    });
    socket.on('close', () => finish(true, false));
    socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
  });
}

/** An open raw connection for step-by-step tests. */
export class RawConn {
  readonly socket: Socket;
  private buf: Buffer = Buffer.alloc(0);
  closed = false;
  private waiters: Array<() => void> = [];

  constructor(port: number, host = '127.0.0.1') {
    this.socket = connect({ port, host });
    this.socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    this.socket.on('error', () => {});
    this.socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  write(s: string | Buffer): void {
    this.socket.write(typeof s === 'string' ? Buffer.from(s, 'latin1') : s);
  }

  data(): Buffer {
    return this.buf;
  }

  /** Waits until `pred` holds on the received bytes (or the connection closed, or timeout). */
  async until(pred: (buf: Buffer, closed: boolean) => boolean, timeoutMs = 3000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this.buf, this.closed)) {
      if (this.closed || Date.now() > deadline) return pred(this.buf, this.closed);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return true;
  }

  async responses(n: number, heads: readonly boolean[] = [], timeoutMs = 3000): Promise<RawResponse[]> {
    await this.until((b, c) => parseResponses(b, c, heads).length >= n, timeoutMs);
    return parseResponses(this.buf, this.closed, heads);
  }

  async waitClosed(timeoutMs = 2000): Promise<boolean> {
    return this.until((_b, c) => c, timeoutMs);
  }

  destroy(): void {
    this.socket.destroy();
  }
}
