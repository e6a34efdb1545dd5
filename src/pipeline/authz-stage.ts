/**
 * The inbound security stages (spec §5.3, §6), in the order a request walks them before it reaches
 * the application:
 *
 *   1. STRICT      a plaintext request to a workload whose PeerAuthentication is STRICT is refused by
 *                  closing the connection, as Envoy does. The listener already refuses plaintext
 *                  connections under STRICT; this catches a keep-alive connection accepted before a
 *                  reload made the port STRICT, and a proxy that has no identity to terminate TLS with.
 *   2. sanitize    any `x-forwarded-client-cert` that came from outside is removed: only this proxy
 *                  vouches for the caller's identity.
 *   3. authorize   the workload's AuthorizationPolicies (compiled once per snapshot). Denied: 403
 *                  `RBAC: access denied` (gRPC: 200 with grpc-status 7), no response flag, the reason
 *                  in the access log's `response_code_details`, counted per workload.
 *   4. identify    with an mTLS caller, `x-forwarded-client-cert: By=<own id>;URI=<caller id>` is
 *                  added for the application (Envoy's format and order of keys). `Hash` (sha256 of
 *                  the caller's certificate) is left out: the listener hands over the verified
 *                  identity, not the certificate. `Subject` and `DNS` are left out like Istio does.
 *
 * A workload without policies and without an mTLS caller pays one header scan (step 2) and two
 * field checks.
 */
import { rbacDeniedReply } from '../errors/local-reply.ts';
import type { HeaderList, IncomingRequest } from '../listener/listener-types.ts';
import type { PeerIdentity } from '../tls/identity-types.ts';
import type { Authorizer, AuthzDecision } from '../tls/policy-types.ts';
import type { Exchange } from './exchange.ts';
import type { InboundPolicy, InboundWorkload, PipelineDeps } from './pipeline-types.ts';
import { headerValue } from './request-target.ts';

export const XFCC = 'x-forwarded-client-cert';

/** The header list without any `x-forwarded-client-cert`; the same list when there is none. */
export function withoutXfcc(headers: HeaderList): HeaderList {
  let i = 0;
  while (i < headers.length && headers[i] !== XFCC) i += 2;
  if (i >= headers.length) return headers;
  const out = headers.slice(0, i);
  for (i += 2; i < headers.length; i += 2) {
    const name = headers[i]!;
    if (name !== XFCC) out.push(name, headers[i + 1]!);
  }
  return out;
}

/**
 * The value Envoy sets for a verified caller: `By=` our own id (when we have one), `URI=` the
 * caller's. SPIFFE ids hold no `;`, `,` or `"`, so no quoting is needed.
 */
export function xfccValue(own: string | null, peer: PeerIdentity): string {
  return own === null ? `URI=${peer.spiffeId}` : `By=${own};URI=${peer.spiffeId}`;
}

/** gRPC callers read the status from `grpc-status`: Envoy answers them in that form. */
function isGrpc(headers: HeaderList): boolean {
  const type = headerValue(headers, 'content-type');
  return type?.startsWith('application/grpc') === true;
}

/** The destination (workload) port policies speak of: the application's port. */
export function workloadPort(workload: InboundWorkload, req: IncomingRequest): number {
  return workload.app?.port ?? req.localPort;
}

/**
 * Asks the authorizer about one request (headers already sanitized). Counts and reports what is not
 * a plain allow. Returns the decision, or null when no policy applies.
 */
export function checkAuthz(
  deps: PipelineDeps,
  workload: InboundWorkload,
  authorizer: Authorizer | null,
  req: IncomingRequest,
  authority: string,
  path: string,
  headers: HeaderList,
): AuthzDecision | null {
  if (authorizer === null || authorizer.empty) return null;
  const decision = authorizer.check({
    method: req.method,
    host: authority,
    path,
    port: workloadPort(workload, req),
    headers,
    sourceIp: req.remoteAddress,
    ...(req.peer === undefined ? {} : { peer: req.peer }),
    ...(req.sni === undefined ? {} : { sni: req.sni }),
  });
  const source = req.peer?.spiffeId ?? req.remoteAddress;
  if (decision.audited) deps.metrics.authzDecision(workload.name, 'audited');
  if (decision.dryRunDenied !== undefined) {
    deps.metrics.authzDecision(workload.name, 'dry_run_denied');
    deps.onSecurityEvent?.({
      kind: 'authz-dry-run-denied',
      workload: workload.name,
      reason: decision.dryRunDenied,
      method: req.method,
      path,
      source,
    });
  }
  if (!decision.allowed) {
    deps.metrics.authzDecision(workload.name, 'denied');
    deps.onSecurityEvent?.({
      kind: 'authz-denied',
      workload: workload.name,
      reason: decision.reason,
      method: req.method,
      path,
      source,
    });
  }
  return decision;
}

/**
 * Steps 1–4 for an inbound exchange. Returns the headers to forward to the application, or null when
 * the request was answered (denied) or its connection closed (plaintext under STRICT).
 */
export function secureInbound(
  ex: Exchange,
  workload: InboundWorkload,
  policy: InboundPolicy,
): HeaderList | null {
  const req = ex.req;
  const deps = ex.owner.deps;
  if (policy.mode === 'STRICT' && !req.secure) {
    deps.onSecurityEvent?.({ kind: 'strict-plaintext', workload: workload.name, source: req.remoteAddress });
    ex.details = 'plaintext_rejected_by_strict_mtls';
    ex.headersSent = true;
    ex.res.destroy();
    ex.finish();
    return null;
  }
  let headers = withoutXfcc(req.headers);
  const decision = checkAuthz(deps, workload, policy.authorizer, req, ex.authority, ex.path, headers);
  if (decision !== null && !decision.allowed) {
    ex.details = decision.reason;
    ex.reply(rbacDeniedReply(isGrpc(headers)));
    return null;
  }
  const peer = req.peer;
  // A new list: the one authorization saw (and the request's own) stay as they were.
  if (peer !== undefined) headers = headers.concat(XFCC, xfccValue(workload.spiffeId(), peer));
  return headers;
}
