/**
 * Inbound mTLS for the h1 and node engines: what happens to a new connection before the HTTP codec
 * sees it (spec §5.3).
 *
 * - The mode is read once per connection (`InboundTls.mode()`), so a PeerAuthentication reload
 *   applies to new connections and open ones keep what they started with.
 * - STRICT: only TLS with a client certificate that chains to the trust bundle. A plaintext first
 *   byte closes the connection at once, with nothing written (Envoy does the same; an HTTP error
 *   would tell a scanner more than it needs).
 * - PERMISSIVE: the first bytes decide. A TLS handshake record (0x16, then major version 3) is
 *   terminated, with a client certificate asked for but not required; anything else is plaintext
 *   HTTP on the same port. Unlike Istio, a TLS ClientHello without an Istio ALPN is terminated too:
 *   meshlet only speaks HTTP here, so passing TLS bytes to the application would serve nobody.
 * - DISABLE: plaintext, no sniffing: the engine gets the socket as it was accepted.
 *
 * The secure context (src/tls/secure-context.ts makes it) holds the workload certificate, the trust
 * bundle and the TLS 1.2 floor; this file adds the per-connection side: client certificates are
 * requested, and verified by OpenSSL against the trust bundle of the context; Node
 * only exposes the result on `tls.Server` sockets, so for these sockets (wrapped one by one, because
 * the context is read per connection) the result is read from the TLS handle, failing closed if that
 * ever goes away. A verified certificate's SPIFFE id becomes the connection's `PeerIdentity`, worked
 * out once per connection, not per request.
 *
 * Sniffing and the handshake together must finish within the engine's head timeout; failures are
 * counted per listener (`tlsHandshakeErrors`, `plaintextRefused`).
 */
import type { Socket } from 'node:net';
import { type SecureContext, TLSSocket } from 'node:tls';
import type { PeerIdentity } from '../tls/identity-types.ts';
import { peerIdentityFromCertificate } from '../tls/spiffe.ts';
import type { InboundTls, Listener } from './listener-types.ts';

const EMPTY = Buffer.alloc(0);

/** What an engine knows about a TLS connection; plaintext connections have none. */
export interface ConnectionTls {
  /** The verified caller (SPIFFE URI SAN of a client certificate that chained to the bundle). */
  readonly peer: PeerIdentity | null;
  /** SNI the client sent, or null. */
  readonly sni: string | null;
  /** The ALPN protocol selected, or null when the client offered none. */
  readonly alpn: string | null;
  /** `TLSv1.2` or `TLSv1.3`. */
  readonly protocol: string;
}

/** Per-listener counters of connections refused before HTTP. */
export interface InboundTlsCounters {
  /**
   * TLS connections that never became usable: handshake errors (no client certificate under
   * STRICT, protocol or ALPN mismatch, garbage), client certificates that failed verification under
   * STRICT, TLS refused while no certificate is available, handshakes cut or timed out.
   */
  tlsHandshakeErrors(): number;
  /** Plaintext connections closed because the port is STRICT. */
  plaintextRefused(): number;
}

/** A listener of the h1 or node engine: the contract plus its TLS counters (0 without TLS). */
export type TlsAwareListener = Listener & InboundTlsCounters;

/** Result of looking at the first bytes of a connection. */
export const SNIFF_TLS = 0;
export const SNIFF_PLAIN = 1;
/** Not enough bytes to tell yet. */
export const SNIFF_MORE = 2;

/**
 * Whether the first bytes of a connection start a TLS handshake record: content type 22, then the
 * record version's major byte 3 and a minor byte 0 to 4 (SSL 3.0 to TLS 1.3; a ClientHello record
 * says 3.1 or 3.3 in practice). No HTTP request can start with byte 22, so one byte is enough for
 * plaintext; TLS needs three.
 */
export function sniffTls(buf: Buffer): typeof SNIFF_TLS | typeof SNIFF_PLAIN | typeof SNIFF_MORE {
  if (buf.length === 0) return SNIFF_MORE;
  if (buf[0] !== 0x16) return SNIFF_PLAIN;
  if (buf.length < 2) return SNIFF_MORE;
  if (buf[1] !== 0x03) return SNIFF_PLAIN;
  if (buf.length < 3) return SNIFF_MORE;
  return (buf[2] as number) <= 0x04 ? SNIFF_TLS : SNIFF_PLAIN;
}

/**
 * ALPN protocols the inbound side accepts, most preferred first. All of them carry HTTP/1.1 here:
 * the Istio names are what sidecars offer to mark mesh traffic; HTTP/2 is not spoken.
 */
export const INBOUND_ALPN: readonly string[] = ['http/1.1', 'istio-http/1.1', 'istio', 'istio-peer-exchange'];

/** The protocol to select from what a client offers; undefined rejects the handshake (fatal alert). */
export function selectAlpn(offered: readonly string[]): string | undefined {
  for (const p of INBOUND_ALPN) if (offered.includes(p)) return p;
  return undefined;
}

/** Timers for the sniff/handshake deadline, injectable for tests. `start` returns a cancel function. */
export interface GateTimers {
  start(cb: () => void, ms: number): () => void;
}

const realTimers: GateTimers = {
  start(cb, ms) {
    const t = setTimeout(cb, ms);
    t.unref();
    return () => clearTimeout(t);
  },
};

export interface TlsGateOptions {
  readonly tls: InboundTls;
  /** Sniffing plus the handshake must be done this long after accept (the engine's head timeout). */
  readonly timeoutMs: number;
  /**
   * The connection is ready for HTTP. `socket` is the accepted one (plaintext) or the TLS socket
   * wrapping it; `security` is null for plaintext; `initial` holds bytes already read from a
   * plaintext socket, which the engine must parse before anything else (empty otherwise).
   */
  readonly onReady: (socket: Socket, security: ConnectionTls | null, initial: Buffer) => void;
  readonly timers?: GateTimers;
}

/** The slice of Node's TLS handle that holds OpenSSL's verification result (not public API). */
interface VerifyHandle {
  verifyError(): (Error & { code?: string }) | null;
}

/**
 * Why the client certificate of a finished handshake is not trusted, or null when it chains to the
 * bundle. No certificate counts as not trusted. Fails closed when Node's handle lacks the method.
 */
function verificationFailure(socket: TLSSocket): string | null {
  const handle = (socket as unknown as { ssl?: Partial<VerifyHandle> | null }).ssl;
  if (handle === null || handle === undefined || typeof handle.verifyError !== 'function') {
    return 'verification result unavailable';
  }
  const err = handle.verifyError();
  if (err === null) return null;
  return err.code ?? err.message;
}

/**
 * Accepts connections for one listener with `tls` set: decides per connection between plaintext
 * and TLS, runs the handshake, and hands a ready socket to the engine.
 */
export class InboundTlsGate implements InboundTlsCounters {
  handshakeErrors = 0;
  refusedPlaintext = 0;
  /** Connections still sniffing or handshaking (closed by `closeAll`). */
  readonly pending = new Set<PendingConnection>();
  readonly tls: InboundTls;
  readonly timeoutMs: number;
  readonly onReady: (socket: Socket, security: ConnectionTls | null, initial: Buffer) => void;
  readonly timers: GateTimers;

  constructor(opts: TlsGateOptions) {
    this.tls = opts.tls;
    this.timeoutMs = opts.timeoutMs;
    this.onReady = opts.onReady;
    this.timers = opts.timers ?? realTimers;
  }

  tlsHandshakeErrors(): number {
    return this.handshakeErrors;
  }

  plaintextRefused(): number {
    return this.refusedPlaintext;
  }

  /** A new connection from the listening socket. */
  accept(raw: Socket): void {
    const mode = this.tls.mode();
    if (mode === 'DISABLE') {
      this.onReady(raw, null, EMPTY);
      return;
    }
    let context: SecureContext | null = null;
    if (mode === 'STRICT') {
      // Nothing can be served without a certificate: do not even wait for the first bytes.
      context = this.tls.secureContext();
      if (context === null) {
        this.handshakeErrors++;
        raw.destroy();
        return;
      }
    }
    this.pending.add(new PendingConnection(this, raw, mode === 'STRICT', context));
  }

  /** Closes every connection that is not handed over yet (listener close or drain). */
  closeAll(): void {
    for (const p of [...this.pending]) p.abort();
  }
}

/** One connection between accept and hand-over. */
class PendingConnection {
  private readonly gate: InboundTlsGate;
  private readonly raw: Socket;
  private readonly strict: boolean;
  private context: SecureContext | null;
  private buf: Buffer = EMPTY;
  private tlsSocket: TLSSocket | null = null;
  private done = false;
  private readonly cancelTimer: () => void;
  private readonly onRawData = (d: Buffer): void => this.sniff(d);
  private readonly onRawGone = (): void => this.finish(false, true);
  private readonly onTlsGone = (): void => this.finish(true, true);

  constructor(gate: InboundTlsGate, raw: Socket, strict: boolean, context: SecureContext | null) {
    this.gate = gate;
    this.raw = raw;
    this.strict = strict;
    this.context = context;
    raw.on('data', this.onRawData);
    // A client that leaves before sending enough to decide: nothing to serve.
    raw.on('end', this.onRawGone);
    raw.on('error', this.onRawGone);
    raw.on('close', this.onRawGone);
    this.cancelTimer = gate.timers.start(() => this.finish(this.tlsSocket !== null, true), gate.timeoutMs);
  }

  /** Listener close: gone without counting. */
  abort(): void {
    this.finish(false, true);
  }

  private sniff(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    const verdict = sniffTls(this.buf);
    if (verdict === SNIFF_MORE) return;
    if (verdict === SNIFF_PLAIN) {
      if (this.strict) {
        this.gate.refusedPlaintext++;
        this.finish(false, true);
        return;
      }
      const initial = this.buf;
      this.finish(false, false);
      this.gate.onReady(this.raw, null, initial);
      return;
    }
    this.startTls();
  }

  private startTls(): void {
    const raw = this.raw;
    if (this.context === null) this.context = this.gate.tls.secureContext();
    if (this.context === null) {
      this.finish(true, true);
      return;
    }
    this.detachRaw();
    // Give the bytes read so far back: the TLS socket reads what the stream holds before anything
    // else arrives, so the ClientHello is neither lost nor reordered.
    raw.pause();
    raw.unshift(this.buf);
    this.buf = EMPTY;
    const s = new TLSSocket(raw, {
      isServer: true,
      secureContext: this.context,
      requestCert: true,
      // STRICT: a handshake without a client certificate fails inside OpenSSL already; a
      // certificate that does not verify is refused in `secured`.
      rejectUnauthorized: this.strict,
      ALPNCallback: ({ protocols }) => selectAlpn(protocols),
    });
    this.tlsSocket = s;
    s.once('secure', () => this.secured(s));
    s.on('error', this.onTlsGone);
    s.on('close', this.onTlsGone);
  }

  private secured(s: TLSSocket): void {
    if (this.done) return;
    const protocol = s.getProtocol();
    // The secure context decides the versions; this guards against one made without the 1.2 floor.
    if (protocol !== 'TLSv1.3' && protocol !== 'TLSv1.2') {
      this.finish(true, true);
      return;
    }
    const failure = verificationFailure(s);
    if (failure !== null && this.strict) {
      this.finish(true, true);
      return;
    }
    let peer: PeerIdentity | null = null;
    if (failure === null) {
      const cert = s.getPeerX509Certificate();
      if (cert !== undefined) peer = peerIdentityFromCertificate(cert);
    }
    const security: ConnectionTls = {
      peer,
      sni: typeof s.servername === 'string' && s.servername !== '' ? s.servername : null,
      alpn: typeof s.alpnProtocol === 'string' ? s.alpnProtocol : null,
      protocol,
    };
    this.finish(false, false);
    // The engine attaches its own listeners right away (its 'error' one included).
    s.off('error', this.onTlsGone);
    s.off('close', this.onTlsGone);
    this.gate.onReady(s, security, EMPTY);
  }

  private detachRaw(): void {
    const raw = this.raw;
    raw.off('data', this.onRawData);
    raw.off('end', this.onRawGone);
    raw.off('error', this.onRawGone);
    raw.off('close', this.onRawGone);
  }

  /**
   * Leaves the pending state once: `failed` counts a handshake error, `destroy` closes the
   * connection (else it is being handed over).
   */
  private finish(failed: boolean, destroy: boolean): void {
    if (this.done) return;
    this.done = true;
    this.cancelTimer();
    this.gate.pending.delete(this);
    if (failed) this.gate.handshakeErrors++;
    if (this.tlsSocket === null) this.detachRaw();
    if (!destroy) return;
    // The TLS socket owns the accepted one once it exists; destroying it closes both.
    if (this.tlsSocket !== null) this.tlsSocket.destroy();
    this.raw.destroy();
  }
}
