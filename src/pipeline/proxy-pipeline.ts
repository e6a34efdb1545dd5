import { LOCAL_REPLIES, noClusterReply, noRouteReply } from '../errors/local-reply.ts';
import type { HeaderList, RequestHandler, UpgradeHandler } from '../listener/listener-types.ts';
import { DEFAULT_INBOUND_RETRY_POLICY, NO_RETRY_POLICY } from '../resilience/retry-policy.ts';
import { applyHeaderOps } from '../router/header-edits.ts';
import type { RouteDecision } from '../router/route-types.ts';
import { keepBodyForRetries, prepareRequest, retryPolicyFor, startAttempts } from './attempt-loop.ts';
import { secureInbound } from './authz-stage.ts';
import { Exchange, PASSTHROUGH_PEER } from './exchange.ts';
import { applyFault } from './fault-stage.ts';
import { drawMirrors, type MirrorCopy } from './mirror-stage.ts';
import {
  type ExchangeOwner,
  type InboundWorkload,
  NODE_TIMERS,
  OPEN_POLICY,
  type PipelineDeps,
  type Timers,
} from './pipeline-types.ts';
import { parseRequestTarget, splitAuthority } from './request-target.ts';
import { TelemetryStage } from './telemetry-stage.ts';
import { upgradeHandler } from './upgrade-stage.ts';

export type { PipelineDeps, Timers } from './pipeline-types.ts';

/**
 * The request path, in the order a request walks it (one page, per the design). Each concern is its
 * own stage, and a stage a route does not use costs one field check: no timer, closure or buffer.
 *
 *   1. target      absolute-form or Host → authority + path; neither → 400 DPE (nothing else can run).
 *   2. snapshot    read once; the request keeps it to its end, so a reload never mixes versions.
 *   3. route       RouteTable.route(): direct response, redirect, NR, NC, passthrough or forward.
 *   4. fault       (fault-stage.ts) delay, then abort. Before everything that touches the upstream:
 *                  an aborted request never reaches admission, a balancer or an endpoint (spec §2.4).
 *   5. prepare     upstream headers and request id, once for every attempt and mirror copy.
 *   6. mirror tap  (mirror-stage.ts) draws which mirrors copy the request. It wraps the body before
 *                  the retry buffer does, so the client's body is read once for the primary, its
 *                  retries and the copies.
 *   7. replay      (attempt-loop.ts) the body is kept up to 64 KiB when the retry policy is on.
 *   8. timeout     (attempt-loop.ts) the route timeout starts here, at the router stage, so a fault
 *                  delay is not counted (as in Envoy) while admission waits, attempts and back-offs are.
 *   9. admission   (attempt-loop.ts) connection-pool limits, once per request: after the timeout so a
 *                  queued request still times out; before any pick so an overflow touches no endpoint.
 *  10. attempts    (attempt-loop.ts) pick → send → per-try timeout → retry decision and back-off.
 *  11. mirrors     bodiless copies leave right after the primary's first attempt, so the primary is
 *                  never behind them; copies of a body leave when the body has passed to the primary.
 *  12. response    header edits and the balancer's cookie, then status/headers/body streamed with
 *                  backpressure; the attempt's load feedback ends with the body.
 *  13. telemetry   (telemetry-stage.ts) metrics, then the observers (access log, live stats, tap),
 *                  then the trace's server span, observe the finished exchange. Tracing also reads
 *                  the trace context when the request arrives (stage 1) and gives each attempt its
 *                  own client span and headers (stage 10).
 *
 * Outbound attempts originate mTLS where the destination asks for it (origination-stage.ts, spec
 * §3.7): a plaintext endpoint costs one call to the (caching) origination module.
 *
 * Inbound requests skip 3–9. Instead (authz-stage.ts): plaintext under STRICT is refused, an outside
 * `x-forwarded-client-cert` is removed, AuthorizationPolicy decides (403 on deny), and a verified
 * caller's identity is passed on in `x-forwarded-client-cert`; then they go to the workload's
 * application with the inbound retry policy.
 * Every reply the proxy makes itself goes through errors/local-reply.ts.
 */
export class ProxyPipeline implements ExchangeOwner {
  readonly deps: PipelineDeps;
  readonly timers: Timers;
  /** Requests accepted and not yet finished, across listeners. */
  inFlight = 0;
  private readonly telemetry: TelemetryStage;

  constructor(deps: PipelineDeps) {
    this.deps = deps;
    this.timers = deps.timers ?? NODE_TIMERS;
    this.telemetry = new TelemetryStage(deps);
    this.defaultWorkload = deps.inboundWorkload ?? plainWorkload(deps);
    this.inbound = this.inboundFor(this.defaultWorkload);
  }

  /** The outbound listener's handler: the app calls other services through it. */
  readonly outbound: RequestHandler = (req, res) => {
    const ex = new Exchange(this, req, res, 'source');
    try {
      this.routeOutbound(ex);
    } catch (err) {
      ex.internalError(err);
    }
  };

  /** The inbound listener's handler: peers call the local application through it. */
  readonly inbound: RequestHandler;

  /**
   * The inbound handler of one workload (node mode: one inbound listener per workload, each with
   * its own application, identity and policies).
   */
  inboundFor(workload: InboundWorkload): RequestHandler {
    return (req, res) => {
      const ex = new Exchange(this, req, res, 'destination');
      ex.workload = workload;
      try {
        this.routeInbound(ex, workload);
      } catch (err) {
        ex.internalError(err);
      }
    };
  }

  /** Upgrade (WebSocket) passthrough, see upgrade-stage.ts. Inbound: for the default workload. */
  readonly upgrade = (reporter: 'source' | 'destination'): UpgradeHandler =>
    upgradeHandler(this.deps, reporter, this.defaultWorkload);

  /** Inbound upgrade passthrough for one workload (node mode). */
  upgradeFor(workload: InboundWorkload): UpgradeHandler {
    return upgradeHandler(this.deps, 'destination', workload);
  }

  /** The workload `inbound` serves. */
  readonly defaultWorkload: InboundWorkload;

  /** ExchangeOwner: the exchange is over. */
  finished(ex: Exchange): void {
    this.inFlight--;
    this.telemetry.observe(ex);
  }

  private begin(ex: Exchange): void {
    this.inFlight++;
    const tracer = this.deps.tracer;
    if (tracer !== undefined) ex.trace = tracer.start(ex.req.headers, ex.reporter, ex.startedAt);
    ex.res.onAborted(() => ex.onClientGone());
    ex.res.onWritable(() => ex.call?.resume());
  }

  private routeOutbound(ex: Exchange): void {
    const req = ex.req;
    this.begin(ex);
    const target = parseRequestTarget(req.target, req.headers);
    if (target === null) {
      ex.reply(LOCAL_REPLIES.missingHost, [], true);
      return;
    }
    ex.authority = target.authority;
    ex.path = target.path;
    ex.originalPath = target.path;
    const snapshot = this.deps.store.current;
    const decision = snapshot.routes.route({
      method: req.method,
      authority: target.authority,
      path: target.path,
      scheme: target.scheme ?? (req.secure ? 'https' : 'http'),
      headers: req.headers,
    });
    this.dispatchDecision(ex, decision);
  }

  private routeInbound(ex: Exchange, workload: InboundWorkload): void {
    const req = ex.req;
    this.begin(ex);
    const target = parseRequestTarget(req.target, req.headers);
    ex.authority = target?.authority ?? '';
    ex.path = target?.path ?? req.target;
    ex.originalPath = ex.path;
    const host = splitAuthority(ex.authority).host;
    const dot = host.indexOf('.');
    ex.peer = {
      serviceFqdn: host === '' ? 'unknown' : host,
      // The first label, without the array `split` would make on every inbound request.
      serviceName: host === '' ? 'InboundPassthroughCluster' : dot < 0 ? host : host.slice(0, dot),
      serviceNamespace: workload.namespace,
    };
    // Security first: nothing reaches the application before the caller is authorized.
    const headers = secureInbound(ex, workload, workload.policy(this.deps.store.current));
    if (headers === null) return;
    const app = workload.app;
    if (app === null) {
      ex.reply(LOCAL_REPLIES.noUpstreamForInbound);
      return;
    }
    if (ex.authority === '') ex.authority = `${app.address}:${app.port}`;
    ex.target = app;
    // Server side: 2 retries on reset-before-request only (spec §2.5), no route timeout.
    ex.policy = DEFAULT_INBOUND_RETRY_POLICY;
    prepareRequest(ex, headers);
    keepBodyForRetries(ex);
    startAttempts(ex, undefined);
  }

  private dispatchDecision(ex: Exchange, d: RouteDecision): void {
    switch (d.kind) {
      case 'forward': {
        ex.routeName = d.routeName;
        ex.cluster = d.cluster;
        ex.peer = d.cluster;
        ex.responseEdits = d.responseHeaders;
        const fault = d.fault;
        if (fault !== undefined && applyFault(ex, fault, () => this.forward(ex, d))) return;
        this.forward(ex, d);
        return;
      }
      case 'direct': {
        ex.routeName = d.routeName;
        const headers = applyHeaderOps(['content-length', String(d.body?.length ?? 0)], d.responseHeaders);
        this.localResponse(ex, d.status, headers, d.body);
        return;
      }
      case 'redirect': {
        ex.routeName = d.routeName;
        const headers = applyHeaderOps(['location', d.location, 'content-length', '0'], d.responseHeaders);
        this.localResponse(ex, d.status, headers, null);
        return;
      }
      case 'noRoute':
        ex.peer = { serviceFqdn: d.serviceFqdn, serviceName: d.serviceName, serviceNamespace: 'unknown' };
        ex.reply(noRouteReply(d.status, d.reason));
        return;
      case 'noCluster':
        ex.routeName = d.routeName;
        ex.reply(noClusterReply(d.reason));
        return;
      case 'passthrough': {
        // ALLOW_ANY: forward as asked, no retries and no timeout (spec §4.3).
        ex.peer = { ...PASSTHROUGH_PEER, serviceFqdn: d.host };
        ex.target = { address: d.host, port: d.port };
        ex.policy = NO_RETRY_POLICY;
        prepareRequest(ex, ex.req.headers);
        startAttempts(ex, undefined);
        return;
      }
    }
  }

  /** Stages 5–11 for a forward decision (after the fault, if any). */
  private forward(ex: Exchange, d: Extract<RouteDecision, { kind: 'forward' }>): void {
    let headers = ex.req.headers;
    if (d.requestHeaders.length > 0) headers = applyHeaderOps(headers, d.requestHeaders);
    if (d.originalPath !== undefined) headers = [...headers, 'x-envoy-original-path', d.originalPath];
    ex.authority = d.authority;
    ex.path = d.path;
    ex.policy = retryPolicyFor(d.retries);
    ex.state = this.deps.clusters.get(d.cluster);
    prepareRequest(ex, headers);
    let mirror: MirrorCopy | null = null;
    if (d.mirrorClusters.length > 0) {
      mirror = drawMirrors(ex, d.mirrorClusters, d.timeoutMs);
      if (mirror !== null && ex.body !== null) {
        ex.body = mirror.tap(ex.body);
        ex.mirror = mirror;
      }
    }
    keepBodyForRetries(ex);
    startAttempts(ex, d.timeoutMs);
    if (mirror !== null && ex.req.body === null) mirror.sendNow();
  }

  private localResponse(ex: Exchange, status: number, headers: HeaderList, body: Buffer | null): void {
    ex.status = status;
    ex.headersSent = true;
    if (!ex.res.aborted) {
      ex.res.writeHead(status, headers);
      ex.res.end(body ?? undefined);
    }
    ex.bytesSent = body?.length ?? 0;
    ex.finish();
  }
}

/** The workload of a pipeline configured without one: plaintext, no policies. */
function plainWorkload(deps: PipelineDeps): InboundWorkload {
  return {
    name: deps.identity.workload,
    app: deps.app,
    identity: deps.identity,
    namespace: deps.namespace,
    spiffeId: () => null,
    policy: () => OPEN_POLICY,
  };
}
