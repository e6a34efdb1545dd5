/**
 * Upgrade (WebSocket) passthrough (h1 and node engines): route like any request, pick an endpoint
 * from the cluster's balancer, then hand the raw connection to a tunnel. Anything that cannot be
 * tunnelled gets a local reply and is closed. Tunnels take no part in retries, timeouts, admission
 * or load feedback (their lifetime is the connection's), and are not counted in the request metrics.
 *
 * Inbound upgrades pass the same security stages as requests (authz-stage.ts): plaintext under
 * STRICT is closed, AuthorizationPolicy decides (403 on deny), `x-forwarded-client-cert` is replaced.
 * Outbound: the tunnel speaks plaintext TCP only, so an upgrade to an endpoint that needs mTLS
 * origination is refused with 503 UF saying so, rather than sent in the clear.
 */
import {
  LOCAL_REPLIES,
  type LocalReply,
  noClusterReply,
  noRouteReply,
  rbacDeniedReply,
  transportFailureReply,
} from '../errors/local-reply.ts';
import { rawLocalReply } from '../listener/http-syntax.ts';
import type { UpgradeHandler } from '../listener/listener-types.ts';
import { applyHeaderOps } from '../router/header-edits.ts';
import { prepareUpstreamHeaders } from '../upstream/forward-headers.ts';
import { openUpgradeTunnel } from '../upstream/upgrade-tunnel.ts';
import type { UpstreamTarget } from '../upstream/upstream-types.ts';
import { failureReply } from './attempt-loop.ts';
import { checkAuthz, withoutXfcc, XFCC, xfccValue } from './authz-stage.ts';
import { attemptTarget } from './origination-stage.ts';
import type { InboundWorkload, PipelineDeps } from './pipeline-types.ts';
import { headerValue, parseRequestTarget } from './request-target.ts';

/** Why upgrades cannot go to an endpoint that needs TLS origination. */
export const UPGRADE_OVER_TLS_REASON = 'upgrade (WebSocket) tunnels to mTLS/TLS upstreams are not supported';

export function upgradeHandler(
  deps: PipelineDeps,
  reporter: 'source' | 'destination',
  workload: InboundWorkload,
): UpgradeHandler {
  return (req, socket, head) => {
    const refuse = (r: LocalReply): void => {
      socket.end(rawLocalReply(r.status, r.body, r.flags === '' ? null : r.flags));
    };
    const target = parseRequestTarget(req.target, req.headers);
    let upstream: UpstreamTarget | null;
    let authority = target?.authority ?? '';
    let path = target?.path ?? req.target;
    let headers = req.headers;
    if (reporter === 'destination') {
      const policy = workload.policy(deps.store.current);
      if (policy.mode === 'STRICT' && !req.secure) {
        deps.onSecurityEvent?.({
          kind: 'strict-plaintext',
          workload: workload.name,
          source: req.remoteAddress,
        });
        socket.destroy();
        return;
      }
      headers = withoutXfcc(headers);
      const decision = checkAuthz(deps, workload, policy.authorizer, req, authority, path, headers);
      if (decision !== null && !decision.allowed) {
        return refuse(rbacDeniedReply(false));
      }
      if (req.peer !== undefined) headers = headers.concat(XFCC, xfccValue(workload.spiffeId(), req.peer));
      upstream = workload.app;
      if (upstream === null) return refuse(LOCAL_REPLIES.noUpstreamForInbound);
    } else {
      if (target === null) return refuse(LOCAL_REPLIES.missingHost);
      const d = deps.store.current.routes.route({
        method: req.method,
        authority: target.authority,
        path: target.path,
        scheme: target.scheme ?? 'http',
        headers: req.headers,
      });
      switch (d.kind) {
        case 'forward': {
          const pick = deps.clusters
            .get(d.cluster)
            .pick({ headers: req.headers, path: target.path, remoteAddress: req.remoteAddress });
          if (pick === null) return refuse(LOCAL_REPLIES.noHealthyUpstream);
          const to = attemptTarget(deps, d.cluster, pick.endpoint);
          if (typeof to === 'string') return refuse(transportFailureReply(to));
          if (to.tls !== undefined) return refuse(transportFailureReply(UPGRADE_OVER_TLS_REASON));
          upstream = pick.endpoint;
          authority = d.authority;
          path = d.path;
          if (d.requestHeaders.length > 0) headers = applyHeaderOps(headers, d.requestHeaders);
          break;
        }
        case 'passthrough':
          upstream = { address: d.host, port: d.port };
          break;
        case 'noRoute':
          return refuse(noRouteReply(d.status, d.reason));
        case 'noCluster':
          return refuse(noClusterReply(d.reason));
        default:
          return refuse(LOCAL_REPLIES.upgradeNotRoutable);
      }
    }
    const prepared = prepareUpstreamHeaders(headers, {
      authority,
      remoteAddress: req.remoteAddress,
      scheme: req.secure ? 'https' : 'http',
      requestId: headerValue(req.headers, 'x-request-id') ?? deps.requestId(),
    });
    openUpgradeTunnel(
      upstream,
      { method: req.method, path, headers: prepared.headers, body: null, expectContinue: false },
      socket,
      head,
      (failure) => refuse(failureReply(failure)),
    );
  };
}
