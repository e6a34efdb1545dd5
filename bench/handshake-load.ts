/**
 * New-connection load for `npm run bench:mtls`: `concurrency` loops, each opening a fresh
 * connection, sending one `GET` with `Connection: close`, reading the response to its end and
 * starting over, for `durationMs`. With `tls` every connection is a full TLS handshake with a
 * client certificate (no session resumption: no session is ever offered back), so the rate is
 * bounded by what a handshake costs the server. Without it the same loop runs in plaintext, which
 * gives the cost of a connection without the handshake for comparison.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { connect as tlsConnect } from 'node:tls';

export interface ConnectionLoadOptions {
  readonly port: number;
  readonly host?: string;
  readonly durationMs: number;
  readonly concurrency: number;
  /** Client certificate and key (PEM) for mTLS; absent: plaintext. */
  readonly tls?: { readonly certPem: string; readonly keyPem: string };
  /** Per-connection limit; a connection that takes longer counts as an error. Default 5000 ms. */
  readonly timeoutMs?: number;
  /** Host header. */
  readonly hostHeader?: string;
}

export interface ConnectionLoadResult {
  /** Connections that completed (handshake, request, whole response with a 2xx status). */
  readonly completed: number;
  readonly errors: number;
  /** The first few distinct error messages. */
  readonly errorSamples: readonly string[];
  /** Wall time actually spent, ms. */
  readonly elapsedMs: number;
  /** completed ÷ elapsed seconds. */
  readonly perSecond: number;
}

/** One connection, one request; resolves with '' on success or the reason it failed. */
function oneConnection(opts: ConnectionLoadOptions): Promise<string> {
  return new Promise((resolve) => {
    const host = opts.host ?? '127.0.0.1';
    const request = `GET / HTTP/1.1\r\nHost: ${opts.hostHeader ?? 'bench'}\r\nConnection: close\r\n\r\n`;
    let head = '';
    let settled = false;
    let socket: Socket;
    const finish = (reason: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(reason);
    };
    if (opts.tls === undefined) {
      socket = netConnect(opts.port, host, () => socket.write(request));
    } else {
      const tls = tlsConnect({
        host,
        port: opts.port,
        cert: opts.tls.certPem,
        key: opts.tls.keyPem,
        // The bench measures the server's cost; the test suite checks identities.
        rejectUnauthorized: false,
      });
      tls.once('secureConnect', () => tls.write(request));
      socket = tls;
    }
    const timer = setTimeout(() => finish('timeout'), opts.timeoutMs ?? 5000);
    socket.on('data', (d: Buffer) => {
      if (head.length < 16) head += d.toString('latin1', 0, Math.min(d.length, 16));
    });
    socket.on('error', (err: Error) => finish(err.message));
    socket.once('close', () => {
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
      const status = m === null ? 0 : Number(m[1]);
      finish(status >= 200 && status < 300 ? '' : `status ${status || 'none'}`);
    });
  });
}

export async function connectionLoad(opts: ConnectionLoadOptions): Promise<ConnectionLoadResult> {
  const start = performance.now();
  const deadline = start + opts.durationMs;
  let completed = 0;
  let errors = 0;
  const samples = new Set<string>();
  const loop = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const reason = await oneConnection(opts);
      if (reason === '') completed++;
      else {
        errors++;
        if (samples.size < 5) samples.add(reason);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency) }, loop));
  const elapsedMs = performance.now() - start;
  return {
    completed,
    errors,
    errorSamples: [...samples],
    elapsedMs,
    perSecond: elapsedMs > 0 ? completed / (elapsedMs / 1000) : 0,
  };
}
