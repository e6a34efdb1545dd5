import type { Duplex } from 'node:stream';
import type { MtlsMode, PeerIdentity } from '../tls/identity-types.ts';

/**
 * The engine-neutral HTTP interface. Every listener engine (uWebSockets.js, node:http, and h1: net
 * sockets with meshlet's own HTTP/1.1 codec) turns what it accepts into an `IncomingRequest` plus a `ResponseSink`; nothing past `listener/`
 * knows which engine accepted the connection.
 */

/**
 * Header list in wire order, flattened: `[name0, value0, name1, value1, …]`.
 * Names are lowercase. Repeated headers appear as repeated pairs.
 */
export type HeaderList = string[];

/** A request body that streams with backpressure. Exactly one consumer may attach. */
export interface BodyStream {
  /**
   * Attach the consumer. Chunks arrive in order; the last call has `last === true` (its chunk may
   * be empty). The engine copies data before handing it over, so the consumer may keep chunks.
   * Chunks that arrived before a consumer attached are buffered and delivered on attach.
   */
  onData(cb: (chunk: Buffer, last: boolean) => void): void;
  /** Stop reading from the client (backpressure towards the downstream socket). */
  pause(): void;
  resume(): void;
}

export interface IncomingRequest {
  /** Which engine accepted this request, for logs and the admin port. */
  readonly engine: EngineName;
  /** Method as received, case preserved (methods are case-sensitive). */
  readonly method: string;
  /** The request-target exactly as received: origin-form `/p?q` or absolute-form `http://h:1/p?q`. */
  readonly target: string;
  /** Lowercase names, wire order. Hop-by-hop headers are still present here. */
  readonly headers: HeaderList;
  /** Peer address of the downstream connection (IPv4 dotted, or IPv6 text). */
  readonly remoteAddress: string;
  /** Port of the listener that accepted the request. */
  readonly localPort: number;
  /** Whether the downstream connection is TLS (for `x-forwarded-proto`). */
  readonly secure: boolean;
  /**
   * The verified mTLS identity of the caller (inbound listeners with TLS), absent on plaintext
   * connections and on TLS without a verified client certificate.
   */
  readonly peer?: PeerIdentity;
  /** SNI the client sent on a TLS connection (`connection.sni` in AuthorizationPolicy). */
  readonly sni?: string;
  /** Null when the request has no body (no Content-Length > 0 and no chunked encoding). */
  readonly body: BodyStream | null;
}

/**
 * Where the response goes. Calls after the client went away are ignored, never thrown.
 * Order: `writeHead` once, then any number of `write`, then `end` once (or `destroy`).
 */
export interface ResponseSink {
  /** True once the downstream connection closed or the response was destroyed. */
  readonly aborted: boolean;
  /** Called once when the client goes away before `end`. Register before any async step. */
  onAborted(cb: () => void): void;
  /** Status line (with its reason phrase) and headers. Lowercase names. No hop-by-hop headers. */
  writeHead(status: number, headers: HeaderList): void;
  /**
   * Writes a body chunk. Returns false when the client is slow and the chunk had to be
   * buffered; stop producing until `onWritable` fires.
   */
  write(chunk: Buffer): boolean;
  /** Called once each time buffered output drained after `write` returned false. */
  onWritable(cb: () => void): void;
  /** Finishes the response, optionally with a last chunk. `close` asks to close the connection after it. */
  end(chunk?: Buffer, close?: boolean): void;
  /** Cuts the response (and the connection): used when the upstream reset after headers were sent. */
  destroy(): void;
}

/** Called synchronously by the engine for each request. */
export type RequestHandler = (req: IncomingRequest, res: ResponseSink) => void;

export type EngineName = 'uws' | 'node' | 'h1';

/**
 * Called for a request that asks for a protocol upgrade (`Connection: upgrade` + `Upgrade`).
 * `req.body` is null; `head` holds bytes that arrived after the request head. The handler owns
 * `socket` from then on. The node and h1 engines hand over the raw socket: the uws engine answers
 * upgrade requests itself with 501 (see uws-engine.ts).
 */
export type UpgradeHandler = (req: IncomingRequest, socket: Duplex, head: Buffer) => void;

export interface ListenOptions {
  readonly engine: EngineName;
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly handler: RequestHandler;
  /** Name for logs: `outbound`, `inbound`. */
  readonly name: string;
  /** Upgrade (WebSocket) passthrough. Absent: upgrade requests get a local 501 and the connection closes. */
  readonly onUpgrade?: UpgradeHandler;
  /** Inbound mTLS termination (h1 and node engines). Absent: plaintext only. */
  readonly tls?: InboundTls;
}

/**
 * What an inbound listener needs to terminate mTLS. Both functions are read per connection, so a
 * configuration reload (PeerAuthentication) or a certificate rotation applies to new connections
 * without a restart, and connections already open keep what they negotiated.
 */
export interface InboundTls {
  /**
   * Mode for a new connection: STRICT (TLS with a client certificate chaining to the trust bundle,
   * else the connection is closed), PERMISSIVE (look at the first bytes: a TLS ClientHello is
   * terminated, anything else served as plaintext), DISABLE (plaintext; TLS bytes are not
   * terminated).
   */
  mode(): MtlsMode;
  /**
   * Server certificate + trust bundle, with client certificates requested and verified against the
   * bundle; null while no certificate is available (then TLS connections are refused).
   */
  secureContext(): import('node:tls').SecureContext | null;
}

export interface Listener {
  readonly name: string;
  /** The engine that actually serves (uws falls back to node when the addon cannot load). */
  readonly engine: EngineName;
  readonly host: string;
  readonly port: number;
  /** Stop accepting new connections; keep serving in-flight requests. */
  stopAccepting(): void;
  /** Number of requests currently in flight on this listener. */
  inFlight(): number;
  /**
   * Downstream connections open now: accepted and not yet closed (TLS ones from accept, before and
   * after their handshake; upgraded ones until the tunnel closes). Plain numbers kept by the
   * engine, read when metrics are scraped.
   */
  connectionsActive(): number;
  /** Downstream connections accepted since the listener started. */
  connectionsTotal(): number;
  /** Close everything now, in-flight or not. */
  close(): void;
}
