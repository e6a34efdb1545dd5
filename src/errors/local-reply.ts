import type { HeaderList, ResponseSink } from '../listener/listener-types.ts';

/**
 * Envoy response flags that meshlet sets (see the design's behavior contract and spec §7.3).
 * The flag goes into the `x-meshlet-flags` header, the access log and the `response_flags` label.
 */
export type ResponseFlag =
  | 'NR'
  | 'NC'
  | 'UH'
  | 'UF'
  | 'UO'
  | 'UC'
  | 'UT'
  | 'UPE'
  | 'URX'
  | 'FI'
  | 'DI'
  | 'DPE'
  | 'DC';

/** A response that the proxy makes itself. The body is one line saying why. */
export interface LocalReply {
  readonly status: number;
  /** Flags joined with `,`, or '' for a plain local reply (redirect, direct response). */
  readonly flags: string;
  readonly body: string;
  /** Headers the reply always carries besides the content headers (e.g. `x-envoy-overloaded`). */
  readonly headers?: HeaderList;
  /**
   * The body goes out exactly as written, without the trailing newline of the other replies, for
   * replies whose exact bytes clients compare (Envoy's `RBAC: access denied`).
   */
  readonly exactBody?: boolean;
  /** Default `text/plain`. */
  readonly contentType?: string;
}

const reply = (status: number, flags: string, body: string): LocalReply => ({ status, flags, body });

/** Every failure the proxy answers itself, in one table. Bodies match Envoy's where operators grep for them. */
export const LOCAL_REPLIES = {
  missingHost: reply(400, 'DPE', 'bad request: no Host header and no absolute-form target'),
  noUpstreamForInbound: reply(503, 'UH', 'no healthy upstream: no local application configured (--app)'),
  noHealthyUpstream: reply(503, 'UH', 'no healthy upstream'),
  connectFailure: reply(
    503,
    'UF',
    'upstream connect error or disconnect/reset before headers. reset reason: connection failure',
  ),
  /** Circuit breaker: the cluster's pending queue is full (spec §3.5). Envoy's body and header. */
  overflow: {
    status: 503,
    flags: 'UO',
    body: 'upstream connect error or disconnect/reset before headers. reset reason: overflow',
    headers: ['x-envoy-overloaded', 'true'],
  },
  upstreamReset: reply(
    503,
    'UC',
    'upstream connect error or disconnect/reset before headers. reset reason: connection termination',
  ),
  upstreamProtocolError: reply(502, 'UPE', 'upstream sent an invalid HTTP response'),
  routeTimeout: reply(504, 'UT', 'upstream request timeout'),
  faultAbort: reply(0, 'FI', 'fault filter abort'),
  internalError: reply(500, '', 'internal error in meshlet (logged); please report it'),
  upgradeNotRoutable: reply(
    400,
    '',
    'bad request: this route answers locally (redirect or direct response) and cannot be upgraded',
  ),
} as const satisfies Record<string, LocalReply>;

/**
 * A connection failure caused by TLS origination (no workload certificate, handshake failure, server
 * identity mismatch): 503 UF with the reason appended as Envoy's `transport failure reason`.
 */
export function transportFailureReply(reason: string): LocalReply {
  return reply(503, 'UF', `${LOCAL_REPLIES.connectFailure.body}, transport failure reason: ${reason}`);
}

/** Envoy's RBAC denial body (spec §6.4), byte for byte: clients and tests compare it. */
export const RBAC_DENIED_BODY = 'RBAC: access denied';

const RBAC_DENIED: LocalReply = { status: 403, flags: '', body: RBAC_DENIED_BODY, exactBody: true };

/**
 * gRPC clients read the status from `grpc-status`, not from the HTTP status, so Envoy answers them
 * HTTP 200 with `grpc-status: 7` (PERMISSION_DENIED) and the message percent-encoded, no body.
 */
const RBAC_DENIED_GRPC: LocalReply = {
  status: 200,
  flags: '',
  body: '',
  exactBody: true,
  contentType: 'application/grpc',
  headers: ['grpc-status', '7', 'grpc-message', encodeURIComponent(RBAC_DENIED_BODY)],
};

/**
 * The reply to a request an AuthorizationPolicy denied (spec §6.4): 403 `RBAC: access denied`, or the
 * gRPC form for a gRPC caller. No response flag, as in Envoy (the reason goes to the access log).
 */
export function rbacDeniedReply(grpc: boolean): LocalReply {
  return grpc ? RBAC_DENIED_GRPC : RBAC_DENIED;
}

/**
 * The same reply with `URX` added: the failure was retriable but no retry was left (spec §2.5), e.g.
 * `UF,URX` after the last connect failure.
 */
export function retriesExhausted(r: LocalReply): LocalReply {
  return { ...r, flags: r.flags === '' ? 'URX' : `${r.flags},URX` };
}

/** 404 NR for a known host whose rules did not match, 502 NR for an unknown host under REGISTRY_ONLY. */
export function noRouteReply(status: 404 | 502, reason: string): LocalReply {
  return reply(status, 'NR', `no route: ${reason}`);
}

export function noClusterReply(reason: string): LocalReply {
  return reply(503, 'NC', `cluster not found: ${reason}`);
}

/**
 * Writes a local reply. `extra` headers come first (e.g. response header edits), then the reply's
 * own headers, the content headers and the flag header. Safe to call after the client went away.
 */
export function sendLocalReply(
  res: ResponseSink,
  r: LocalReply,
  extra: HeaderList = [],
  close = false,
): number {
  if (res.aborted) return 0;
  const body = Buffer.from(r.exactBody === true ? r.body : `${r.body}\n`);
  const headers = extra.slice();
  if (r.headers !== undefined) headers.push(...r.headers);
  headers.push('content-type', r.contentType ?? 'text/plain', 'content-length', String(body.length));
  if (r.flags !== '') headers.push('x-meshlet-flags', r.flags);
  res.writeHead(r.status, headers);
  res.end(body, close);
  return body.length;
}
