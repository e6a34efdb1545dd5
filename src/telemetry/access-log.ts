/**
 * One JSON line per finished request, with Envoy's default access-log fields under their
 * usual names. Lines are batched and written asynchronously so the request path never blocks
 * on stdout.
 */
import type { ObservedRequest, RequestObserver } from './observed-request.ts';

export interface AccessLogEntry {
  readonly start_time: string;
  readonly method: string;
  readonly path: string;
  readonly protocol: 'HTTP/1.1';
  readonly response_code: number;
  readonly response_flags: string;
  readonly bytes_received: number;
  readonly bytes_sent: number;
  readonly duration: number;
  readonly upstream_host: string;
  readonly upstream_cluster: string;
  readonly authority: string;
  readonly x_forwarded_for: string;
  readonly request_id: string;
  readonly route_name: string;
  readonly reporter: 'source' | 'destination';
  /**
   * Why the proxy answered as it did when it decided itself, Envoy's `%RESPONSE_CODE_DETAILS%`:
   * `rbac_access_denied_matched_policy[ns-name-rule[i]]` (or `[none]`) for an AuthorizationPolicy
   * denial, which has no response flag. '-' otherwise.
   */
  readonly response_code_details: string;
  /** Envoy's `%UPSTREAM_TRANSPORT_FAILURE_REASON%`: why mTLS origination failed (UF), else '-'. */
  readonly upstream_transport_failure_reason: string;
  /** Envoy's `%DOWNSTREAM_PEER_URI_SAN%`: the caller's verified SPIFFE id (inbound mTLS), else '-'. */
  readonly downstream_peer_uri_san: string;
  /** Envoy's `%REQUESTED_SERVER_NAME%`: the SNI of the downstream TLS connection, else '-'. */
  readonly requested_server_name: string;
}

export class AccessLog implements RequestObserver {
  private pending: string[] = [];
  private scheduled = false;

  private readonly write: (text: string) => void;

  constructor(write: (text: string) => void = (t) => process.stdout.write(t)) {
    this.write = write;
  }

  observe(r: ObservedRequest, durationMs: number, code: number): void {
    this.log({
      start_time: new Date(Date.now() - durationMs).toISOString(),
      method: r.req.method,
      path: r.path,
      protocol: 'HTTP/1.1',
      response_code: code,
      response_flags: r.flags === '' ? '-' : r.flags,
      bytes_received: r.bytesReceived,
      bytes_sent: r.bytesSent,
      duration: Math.round(durationMs),
      upstream_host: r.endpoint?.id ?? (r.target === null ? '-' : `${r.target.address}:${r.target.port}`),
      upstream_cluster: r.cluster?.name ?? r.peer.serviceName,
      authority: r.authority,
      x_forwarded_for: header(r, 'x-forwarded-for'),
      request_id: r.requestId === '' ? '-' : r.requestId,
      route_name: r.routeName === '' ? '-' : r.routeName,
      reporter: r.reporter,
      response_code_details: r.details === '' ? '-' : r.details,
      upstream_transport_failure_reason: r.tlsFailure === '' ? '-' : r.tlsFailure,
      downstream_peer_uri_san: r.req.peer?.spiffeId ?? '-',
      requested_server_name: r.req.sni ?? '-',
    });
  }

  log(entry: AccessLogEntry): void {
    this.pending.push(JSON.stringify(entry));
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  flush(): void {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const text = `${this.pending.join('\n')}\n`;
    this.pending = [];
    this.write(text);
  }
}

/** The first value of a request header, '-' when absent. */
function header(r: ObservedRequest, name: string): string {
  const h = r.req.headers;
  for (let i = 0; i < h.length; i += 2) if (h[i] === name) return h[i + 1] as string;
  return '-';
}
