import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

/**
 * Real TLS peers for the zero-trust end-to-end tests: curl, `openssl s_client`, and Node's tls
 * client (which shows the server's certificate). Every call is bounded in time and comes back with
 * what happened instead of throwing, so that "the handshake was refused" is an assertion, not a
 * crash.
 */

export interface ClientCert {
  readonly certFile: string;
  readonly keyFile: string;
}

export interface CurlResult {
  /** curl's exit code: 0 when an HTTP response arrived. */
  readonly code: number | null;
  /** HTTP status, 0 when there was none. */
  readonly status: number;
  readonly body: string;
  readonly stderr: string;
}

const STATUS_MARK = '\n--meshlet-test-status:';

/**
 * `curl https://127.0.0.1:<port><path>` with a client certificate. The server certificate is not
 * verified (`-k`): mesh server certificates carry only a SPIFFE URI SAN, no host name, and these
 * calls test what the server accepts.
 */
export function curlHttps(
  port: number,
  path: string,
  opts: { readonly cert?: ClientCert; readonly headers?: Readonly<Record<string, string>> } = {},
): Promise<CurlResult> {
  const args = ['-sS', '-k', '--max-time', '5', '-w', `${STATUS_MARK}%{http_code}`];
  if (opts.cert !== undefined) args.push('--cert', opts.cert.certFile, '--key', opts.cert.keyFile);
  for (const [k, v] of Object.entries(opts.headers ?? {})) args.push('-H', `${k}: ${v}`);
  args.push(`https://127.0.0.1:${port}${path}`);
  return runCurl(args);
}

/** Plain `curl http://127.0.0.1:<port><path>`. */
export function curlHttp(
  port: number,
  path: string,
  headers: Readonly<Record<string, string>> = {},
): Promise<CurlResult> {
  const args = ['-sS', '--max-time', '5', '-w', `${STATUS_MARK}%{http_code}`];
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
  args.push(`http://127.0.0.1:${port}${path}`);
  return runCurl(args);
}

function runCurl(args: readonly string[]): Promise<CurlResult> {
  return new Promise((ok) => {
    execFile('curl', args, { timeout: 10_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
      const at = stdout.lastIndexOf(STATUS_MARK);
      const body = at < 0 ? stdout : stdout.slice(0, at);
      const status = at < 0 ? 0 : Number(stdout.slice(at + STATUS_MARK.length)) || 0;
      ok({ code, status, body, stderr });
    });
  });
}

export interface SClientResult {
  readonly code: number | null;
  /** Everything s_client printed (certificates with -showcerts, the HTTP response if any). */
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * `openssl s_client` to 127.0.0.1:<port>, optionally with a client certificate; sends one HTTP
 * request (Connection: close) once connected and returns what came back. `-ign_eof` keeps it
 * reading after stdin ends, so a refused certificate shows up as an alert and no HTTP response.
 */
export function sClient(
  port: number,
  opts: { readonly cert?: ClientCert; readonly showcerts?: boolean; readonly path?: string } = {},
): Promise<SClientResult> {
  const args = ['s_client', '-connect', `127.0.0.1:${port}`, '-ign_eof'];
  if (opts.cert !== undefined) args.push('-cert', opts.cert.certFile, '-key', opts.cert.keyFile);
  if (opts.showcerts === true) args.push('-showcerts');
  return new Promise((ok) => {
    const child = spawn('openssl', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString('latin1');
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString('latin1');
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 8000);
    child.once('close', (code) => {
      clearTimeout(timer);
      ok({ code, stdout, stderr });
    });
    child.stdin.on('error', () => {
      // s_client may exit before reading its input (refused handshake): nothing to do.
    });
    child.stdin.end(`GET ${opts.path ?? '/'} HTTP/1.1\r\nHost: s-client\r\nConnection: close\r\n\r\n`);
  });
}

export interface TlsExchange {
  /** The TLS handshake completed (on TLS 1.3 the server may still refuse the client certificate after it). */
  readonly handshake: boolean;
  /** `subjectaltname` of the server's leaf certificate (`URI:spiffe://…`), '' when none was seen. */
  readonly serverSan: string;
  /** SHA-256 fingerprint of the server's leaf certificate, '' when none was seen. */
  readonly fingerprint: string;
  /** Negotiated protocol (`TLSv1.3`), '' without a handshake. */
  readonly protocol: string;
  /** Everything the server sent back after the handshake (the raw HTTP response). */
  readonly response: string;
  /** The first error, '' when none. */
  readonly error: string;
  /** The last TLS session (ticket) the server sent, for `session` on a later exchange. */
  readonly session: Buffer | undefined;
  /** The handshake resumed the offered session. */
  readonly resumed: boolean;
}

/**
 * One HTTP/1.1 request over a fresh TLS connection made with Node's tls client: the server
 * certificate is not verified (the test reads its SAN instead), the client certificate is sent
 * when given. Resolves when the server closes the connection, or after `timeoutMs`.
 */
export function tlsExchange(
  port: number,
  opts: {
    readonly cert?: { readonly certPem: string; readonly keyPem: string };
    readonly path?: string;
    readonly host?: string;
    readonly alpn?: readonly string[];
    /** SNI to send (none by default: Node sends no SNI to an IP address). */
    readonly servername?: string;
    /** A session from an earlier exchange, offered for resumption. */
    readonly session?: Buffer;
    readonly timeoutMs?: number;
  } = {},
): Promise<TlsExchange> {
  return new Promise((ok) => {
    let handshake = false;
    let serverSan = '';
    let fingerprint = '';
    let protocol = '';
    let response = '';
    let error = '';
    let session: Buffer | undefined;
    let resumed = false;
    const socket = tlsConnect({
      host: '127.0.0.1',
      port,
      rejectUnauthorized: false,
      ...(opts.cert !== undefined ? { cert: opts.cert.certPem, key: opts.cert.keyPem } : {}),
      ...(opts.alpn !== undefined ? { ALPNProtocols: [...opts.alpn] } : {}),
      ...(opts.servername !== undefined ? { servername: opts.servername } : {}),
      ...(opts.session !== undefined ? { session: opts.session } : {}),
    });
    socket.on('session', (ticket: Buffer) => {
      session = ticket;
    });
    const timer = setTimeout(() => {
      if (error === '') error = 'timeout';
      socket.destroy();
    }, opts.timeoutMs ?? 5000);
    socket.once('secureConnect', () => {
      handshake = true;
      resumed = socket.isSessionReused();
      protocol = socket.getProtocol() ?? '';
      const peer = socket.getPeerCertificate();
      serverSan = peer.subjectaltname ?? '';
      fingerprint = peer.fingerprint256 ?? '';
      socket.write(
        `GET ${opts.path ?? '/'} HTTP/1.1\r\nHost: ${opts.host ?? 'tls-client'}\r\nConnection: close\r\n\r\n`,
      );
    });
    socket.on('data', (d: Buffer) => {
      response += d.toString('latin1');
    });
    socket.on('error', (err: Error) => {
      if (error === '') error = err.message;
    });
    socket.once('close', () => {
      clearTimeout(timer);
      ok({ handshake, serverSan, fingerprint, protocol, response, error, session, resumed });
    });
  });
}

/**
 * Plain HTTP/1.1 bytes to 127.0.0.1:<port> on a raw socket; resolves with what came back once the
 * server closes (or after `timeoutMs`, with `closed: false`).
 */
export function plainExchange(
  port: number,
  raw = 'GET / HTTP/1.1\r\nHost: plain\r\nConnection: close\r\n\r\n',
  timeoutMs = 3000,
): Promise<{ readonly response: string; readonly closed: boolean; readonly error: string }> {
  return new Promise((ok) => {
    let response = '';
    let error = '';
    let closed = false;
    const socket = netConnect(port, '127.0.0.1', () => socket.write(raw));
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    socket.on('data', (d: Buffer) => {
      response += d.toString('latin1');
    });
    socket.on('error', (err: Error) => {
      if (error === '') error = err.message;
    });
    socket.on('end', () => {
      closed = true;
    });
    socket.once('close', (hadError) => {
      clearTimeout(timer);
      ok({ response, closed: closed || hadError, error });
    });
  });
}

/** The status code of a raw HTTP/1.1 response, 0 when there is none. */
export function statusOf(rawResponse: string): number {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(rawResponse);
  return m === null ? 0 : Number(m[1]);
}

/** The body of a raw HTTP/1.1 response (everything after the head; chunked framing undone). */
export function bodyOf(rawResponse: string): string {
  const at = rawResponse.indexOf('\r\n\r\n');
  if (at < 0) return '';
  const head = rawResponse.slice(0, at);
  const rest = rawResponse.slice(at + 4);
  if (!/\r\ntransfer-encoding:[^\r]*chunked/i.test(head)) return rest;
  let out = '';
  let pos = 0;
  for (;;) {
    const eol = rest.indexOf('\r\n', pos);
    if (eol < 0) return out;
    const size = Number.parseInt(rest.slice(pos, eol), 16);
    if (!(size > 0)) return out;
    out += rest.slice(eol + 2, eol + 2 + size);
    pos = eol + 2 + size + 2;
  }
}

/** PEM files read into what `tlsExchange` takes. */
export function pemPair(c: ClientCert): { readonly certPem: string; readonly keyPem: string } {
  return { certPem: readFileSync(c.certFile, 'utf8'), keyPem: readFileSync(c.keyFile, 'utf8') };
}
