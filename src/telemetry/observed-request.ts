/**
 * What telemetry observers read from a finished request. The pipeline's `Exchange` has these fields
 * (it is passed as it is: observing allocates nothing), and this interface keeps telemetry from
 * depending on the pipeline. Observers run after the response ended, in the order they were given;
 * each must be cheap and must not throw (export is batched and asynchronous, never inline).
 */
import type { HeaderList } from '../listener/listener-types.ts';
import type { PeerDescription } from './metrics.ts';

export interface ObservedRequest {
  readonly reporter: 'source' | 'destination';
  readonly req: {
    readonly method: string;
    /** Lowercase names, as received. */
    readonly headers: HeaderList;
    readonly remoteAddress: string;
    readonly localPort: number;
    readonly secure: boolean;
    /** The caller's verified mTLS identity (inbound). */
    readonly peer?: { readonly spiffeId: string };
    readonly sni?: string;
  };
  /** When the request arrived (the pipeline's monotonic clock, ms). */
  readonly startedAt: number;
  /** Status sent to the client (0 before a response head). */
  readonly status: number;
  /** Envoy response flags, comma-joined ('' when none). */
  readonly flags: string;
  /** Response body bytes sent to the client. */
  readonly bytesSent: number;
  /** Request body bytes read from the client. */
  readonly bytesReceived: number;
  readonly authority: string;
  /** Path sent upstream (after rewrites), with its query. */
  readonly path: string;
  /** Path as the client sent it. */
  readonly originalPath: string;
  /** `VirtualService` route name ('' when none). */
  readonly routeName: string;
  readonly requestId: string;
  /** `response_code_details` ('' when none). */
  readonly details: string;
  /** Why TLS origination failed ('' when it did not). */
  readonly tlsFailure: string;
  readonly peer: PeerDescription;
  /** Endpoint of the last attempt (null: fixed target or none). */
  readonly endpoint: { readonly id: string; readonly labels: Readonly<Record<string, string>> } | null;
  /** Fixed target of the last attempt (inbound application, passthrough), else null. */
  readonly target: { readonly address: string; readonly port: number } | null;
  /** Cluster the route chose (null: local reply before routing, inbound, passthrough). */
  readonly cluster: { readonly name: string } | null;
  /** Upstream attempts made. */
  readonly attempts: number;
  /** Status the last attempt's upstream sent (0: none). */
  readonly upstreamStatus: number;
  /** From the last attempt's start to its response head, ms (valid when `upstreamStatus > 0`). */
  readonly rttMs: number;
}

export interface RequestObserver {
  /**
   * One finished request. `durationMs`: from arrival to the end of the response; `code`: the status
   * as the client saw it (0: it got no response head).
   */
  observe(r: ObservedRequest, durationMs: number, code: number): void;
}

/**
 * Envoy's `%UPSTREAM_HOST%`: the endpoint of the last attempt, else the fixed target (inbound
 * application, passthrough) as `address:port`, '-' when nothing was sent upstream.
 */
export function upstreamHostOf(r: ObservedRequest): string {
  const e = r.endpoint;
  if (e !== null) return e.id;
  const t = r.target;
  return t === null ? '-' : `${t.address}:${t.port}`;
}
