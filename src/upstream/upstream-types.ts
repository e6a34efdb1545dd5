import type { BodyStream, HeaderList } from '../listener/listener-types.ts';
import type { UpstreamTls } from '../tls/identity-types.ts';

/** Where one attempt goes: an endpoint address and port (plain HTTP/1.1 for now). */
export interface UpstreamTarget {
  /** IP address or host name. */
  readonly address: string;
  readonly port: number;
  /** TLS origination (mTLS); absent: plaintext. Connections are pooled per endpoint and `tls.poolKey`. */
  readonly tls?: UpstreamTls;
}

/** What is sent upstream. Headers are final: hop-by-hop removed, forwarding headers added. */
export interface UpstreamRequest {
  readonly method: string;
  /** Origin-form path with query. */
  readonly path: string;
  /** Lowercase names, flattened pairs; includes `host`. */
  readonly headers: HeaderList;
  readonly body: BodyStream | null;
  /** True when the client sent `Expect: 100-continue` (already removed from headers). */
  readonly expectContinue: boolean;
  /** The cluster's connection settings (DestinationRule `connectionPool`); absent: client defaults. */
  readonly pool?: ConnectionPolicy;
}

/** Upstream connection settings of a cluster, from `connectionPool` (absent fields: client defaults). */
export interface ConnectionPolicy {
  /** Connect timeout (`tcp.connectTimeout`); a timeout fails the attempt with `timeout`. */
  readonly connectTimeoutMs?: number;
  /** `http.maxRequestsPerConnection`: 0 or absent = unlimited; 1 disables keep-alive. */
  readonly maxRequestsPerConnection?: number;
  /** `http.idleTimeout` (else `tcp.idleTimeout`): idle pooled connections close after this. */
  readonly idleTimeoutMs?: number;
}

/**
 * Why an attempt failed. `connect` never reached the upstream (safe to retry anywhere);
 * `reset` lost the connection after sending started; `timeout` is a connect timeout;
 * `protocol` is an invalid upstream response (UPE).
 */
export type UpstreamFailure = 'connect' | 'reset' | 'timeout' | 'protocol';

/** Callbacks for one attempt. Exactly one of `onEnd` / `onError` ends it. */
export interface UpstreamHandler {
  /** Upstream answered `100 Continue` (only when `expectContinue`). */
  onContinue?(): void;
  /** Final status and headers (lowercase names, hop-by-hop already removed). */
  onHeaders(status: number, headers: HeaderList): void;
  /** A body chunk. Return false to pause the upstream until `resume()` is called. */
  onData(chunk: Buffer): boolean;
  onEnd(): void;
  /**
   * `afterHeaders` tells whether `onHeaders` was already called. `requestWritten` is false when not
   * one byte of the request reached the socket (what `reset-before-request` retries look at);
   * clients that cannot tell pass true or leave it out.
   */
  onError(failure: UpstreamFailure, afterHeaders: boolean, detail: string, requestWritten?: boolean): void;
}

/** Controls an attempt in flight. */
export interface UpstreamCall {
  /** Resume reading the upstream body after `onData` returned false. */
  resume(): void;
  /** Abort the attempt (client went away, timeout). No callback fires after this. */
  abort(): void;
}

export interface UpstreamClient {
  /** Starts one attempt. Never throws: failures arrive through `handler.onError`. */
  send(target: UpstreamTarget, req: UpstreamRequest, handler: UpstreamHandler): UpstreamCall;
  /** Close every pool (shutdown). */
  close(): Promise<void>;
}

/** Connection options both clients take. */
export interface ConnectionOptions {
  /** Default 10 000 (Istio's mesh `connectTimeout`). */
  readonly connectTimeoutMs?: number;
  /** Idle time before a pooled connection is closed when the server sends no hint. Default 4 000. */
  readonly keepAliveTimeoutMs?: number;
}

export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** Under Node's 5 s server default, so the client closes an idle connection before the server does. */
export const DEFAULT_KEEP_ALIVE_TIMEOUT_MS = 4_000;

/** A client that keeps connections per endpoint (`address:port`). */
export interface EndpointClient extends UpstreamClient {
  /** Closes the connections of endpoints whose `address:port` key is not in `keys` and forgets them. */
  retain(keys: ReadonlySet<string>): void;
  /** `address:port` keys of the endpoints currently kept. */
  endpoints(): string[];
}
