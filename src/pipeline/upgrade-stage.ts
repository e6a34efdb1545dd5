/**
 * Upgrade (WebSocket) passthrough (h1 and node engines): route like any request, pick an endpoint
 * from the cluster's balancer, then hand the raw connection to a tunnel. Anything that cannot be
 * tunnelled gets a local reply and is closed. Tunnels take no part in retries, timeouts, admission
 * or load feedback (their lifetime is the connection's), and are not counted in the request metrics.
 */
import { LOCAL_REPLIES, type LocalReply, noClusterReply, noRouteReply } from '../errors/local-reply.ts';
import { rawLocalReply } from '../listener/http-syntax.ts';
import type { UpgradeHandler } from '../listener/listener-types.ts';
import { applyHeaderOps } from '../router/header-edits.ts';
import { prepareUpstreamHeaders } from '../upstream/forward-headers.ts';
import { openUpgradeTunnel } from '../upstream/upgrade-tunnel.ts';
import type { UpstreamTarget } from '../upstream/upstream-types.ts';
import type { PipelineDeps } from './pipeline-types.ts';
import { headerValue, parseRequestTarget } from './request-target.ts';

export function upgradeHandler(deps: PipelineDeps, reporter: 'source' | 'destination'): UpgradeHandler {
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
      upstream = deps.app;
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
      (failure) => {
        refuse(
          failure === 'connect' || failure === 'timeout'
            ? LOCAL_REPLIES.connectFailure
            : failure === 'protocol'
              ? LOCAL_REPLIES.upstreamProtocolError
              : LOCAL_REPLIES.upstreamReset,
        );
      },
    );
  };
}
