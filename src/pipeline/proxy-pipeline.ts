import type { BalancerRegistry } from '../balancer/round-robin.ts';
import type { HeaderOps, HTTPFault } from '../config/resource-types.ts';
import type { SnapshotStore } from '../config/snapshot-store.ts';
import {
  LOCAL_REPLIES,
  type LocalReply,
  noClusterReply,
  noRouteReply,
  sendLocalReply,
} from '../errors/local-reply.ts';
import { rawLocalReply } from '../listener/http-syntax.ts';
import type {
  HeaderList,
  IncomingRequest,
  RequestHandler,
  ResponseSink,
  UpgradeHandler,
} from '../listener/listener-types.ts';
import { applyHeaderOps } from '../router/header-edits.ts';
import type { Cluster, Endpoint, RouteDecision } from '../router/route-types.ts';
import type { AccessLog } from '../telemetry/access-log.ts';
import {
  istioLabels,
  type MeshMetrics,
  type PeerDescription,
  type RequestSeries,
  type WorkloadIdentity,
} from '../telemetry/metrics.ts';
import { prepareUpstreamHeaders } from '../upstream/forward-headers.ts';
import { openUpgradeTunnel } from '../upstream/upgrade-tunnel.ts';
import type {
  UpstreamCall,
  UpstreamClient,
  UpstreamFailure,
  UpstreamHandler,
  UpstreamTarget,
} from '../upstream/upstream-types.ts';
import { headerValue, parseRequestTarget, splitAuthority } from './request-target.ts';

/**
 * The request path, in the order a request walks it (one page, per the design):
 *
 *   1. target      absolute-form or Host → authority + path; neither → 400 DPE (nothing else can run).
 *   2. snapshot    read once; the request keeps it to its end, so a reload never mixes versions.
 *   3. route       RouteTable.route(): direct response, redirect, NR, NC, passthrough or forward.
 *   4. fault       delay, then abort (spec §2.4: delay first; an aborted request never goes upstream).
 *   5. timeout     the route timeout covers every attempt (started at dispatch, so a fault delay is
 *                  not counted against it, as in Envoy where the timer starts at the router).
 *   6. attempts    balancer pick → upstream. Connect failures are retried on another endpoint under
 *                  the default policy (2 retries) or a route policy that names connect-failure.
 *   7. response    response header edits, then status/headers/body streamed with backpressure.
 *   8. telemetry   metrics and the access log observe the finished exchange; they never answer.
 *
 * Every reply the proxy makes itself goes through errors/local-reply.ts.
 */

export interface PipelineDeps {
  readonly store: SnapshotStore;
  readonly upstream: UpstreamClient;
  readonly balancers: BalancerRegistry;
  readonly metrics: MeshMetrics;
  readonly identity: WorkloadIdentity;
  readonly accessLog: AccessLog | null;
  /** Random source in [0, 1): fault draws. Injected for deterministic tests. */
  readonly random: () => number;
  /** Monotonic milliseconds. */
  readonly now: () => number;
  readonly requestId: () => string;
  /** The local application that inbound traffic goes to. */
  readonly app: UpstreamTarget | null;
  /** Own namespace, for inbound metrics. */
  readonly namespace: string;
  /** Reports an internal error caught on the request path (logged; the process keeps serving). */
  readonly onBug: (err: unknown) => void;
}

/** Retry on connect failure: Istio's default is 2 retries (spec §2.5). */
const DEFAULT_CONNECT_RETRIES = 2;

const PASSTHROUGH: PeerDescription = {
  serviceFqdn: 'unknown',
  serviceName: 'PassthroughCluster',
  serviceNamespace: 'unknown',
};

const NO_LABELS: Readonly<Record<string, string>> = {};

/**
 * The metric series of requests to one endpoint that finished without flags, per status code: the
 * key fields they were resolved for (an endpoint object may serve more than one service) and the
 * series.
 */
interface EndpointSeries {
  readonly reporter: 'source' | 'destination';
  readonly serviceFqdn: string;
  readonly serviceName: string;
  readonly byCode: Map<number, RequestSeries>;
}

/** State of one request from accept to the end of its response. One shape for every request. */
class Exchange implements UpstreamHandler {
  readonly startedAt: number;
  status = 0;
  flags = '';
  headersSent = false;
  finished = false;
  bytesSent = 0;
  call: UpstreamCall | null = null;
  timer: NodeJS.Timeout | null = null;
  endpoint: Endpoint | null = null;
  cluster: Cluster | null = null;
  peer: PeerDescription = PASSTHROUGH;
  authority = '';
  path = '';
  routeName = '';
  requestId = '';
  upstreamHeaders: HeaderList = [];
  responseEdits: readonly HeaderOps[] = [];
  /**
   * Endpoints already tried by this request (connect-failure retries go elsewhere). Made on the first
   * retry: until then `endpoint` is the only one.
   */
  tried: Set<string> | null = null;
  retriesLeft = 0;
  /** Upstream attempts made so far. */
  attempts = 0;

  readonly pipeline: ProxyPipeline;
  readonly req: IncomingRequest;
  readonly res: ResponseSink;
  readonly reporter: 'source' | 'destination';

  constructor(
    pipeline: ProxyPipeline,
    req: IncomingRequest,
    res: ResponseSink,
    reporter: 'source' | 'destination',
  ) {
    this.pipeline = pipeline;
    this.req = req;
    this.res = res;
    this.reporter = reporter;
    this.startedAt = pipeline.deps.now();
  }

  // ---- UpstreamHandler: called by the upstream client for the current attempt ----

  onHeaders(status: number, headers: HeaderList): void {
    if (this.finished) return;
    this.clearTimer();
    let out: HeaderList;
    try {
      out = this.responseEdits.length === 0 ? headers : applyHeaderOps(headers, this.responseEdits);
    } catch (err) {
      this.internalError(err);
      return;
    }
    this.status = status;
    this.headersSent = true;
    this.res.writeHead(status, out);
  }

  /**
   * A bug of ours surfaced while serving this request: answer 500 (or cut the stream if the status
   * is out), report it, and keep serving everyone else instead of letting it take the process down.
   */
  internalError(err: unknown): void {
    this.pipeline.deps.onBug(err);
    this.call?.abort();
    this.call = null;
    if (this.headersSent) {
      this.res.destroy();
      this.finish();
    } else {
      this.reply(LOCAL_REPLIES.internalError);
    }
  }

  onData(chunk: Buffer): boolean {
    if (this.finished) return true;
    this.bytesSent += chunk.length;
    return this.res.write(chunk);
  }

  onEnd(): void {
    if (this.finished) return;
    this.res.end();
    this.finish();
  }

  onError(failure: UpstreamFailure, afterHeaders: boolean, _detail: string): void {
    if (this.finished) return;
    this.call = null;
    if (afterHeaders || this.headersSent) {
      // The status is already on the wire: the only honest signal left is to cut the stream.
      this.flags = 'UC';
      this.res.destroy();
      this.finish();
      return;
    }
    if ((failure === 'connect' || failure === 'timeout') && this.retriesLeft > 0 && this.cluster !== null) {
      this.retriesLeft--;
      this.pipeline.attempt(this);
      return;
    }
    this.clearTimer();
    switch (failure) {
      case 'connect':
      case 'timeout':
        this.reply(
          this.tried !== null && this.tried.size > 1
            ? LOCAL_REPLIES.connectFailureRetried
            : LOCAL_REPLIES.connectFailure,
        );
        return;
      case 'reset':
        this.reply(LOCAL_REPLIES.upstreamReset);
        return;
      case 'protocol':
        this.reply(LOCAL_REPLIES.upstreamProtocolError);
        return;
    }
  }

  // ---- local replies and the end of the exchange ----

  reply(r: LocalReply, extra: HeaderList = [], close = false): void {
    if (this.finished) return;
    this.status = r.status;
    if (r.flags !== '') this.flags = this.flags === '' ? r.flags : `${this.flags},${r.flags}`;
    this.headersSent = true;
    sendLocalReply(this.res, r, extra, close);
    this.finish();
  }

  clearTimer(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  /** The client went away before the end. */
  onClientGone(): void {
    if (this.finished) return;
    this.flags = this.flags === '' ? 'DC' : `${this.flags},DC`;
    this.call?.abort();
    this.call = null;
    this.finish();
  }

  finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.clearTimer();
    this.pipeline.observe(this);
  }
}

export class ProxyPipeline {
  readonly deps: PipelineDeps;
  /** Requests accepted and not yet finished, across listeners. */
  inFlight = 0;
  /** Resolved metric series per endpoint (see `observe`); entries go with their snapshot's endpoints. */
  private readonly seriesByEndpoint = new WeakMap<Endpoint, EndpointSeries>();

  constructor(deps: PipelineDeps) {
    this.deps = deps;
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

  /** The inbound listener's handler: peers call the local application through it. */
  readonly inbound: RequestHandler = (req, res) => {
    const ex = new Exchange(this, req, res, 'destination');
    this.begin(ex);
    const target = parseRequestTarget(req.target, req.headers);
    ex.authority = target?.authority ?? '';
    ex.path = target?.path ?? req.target;
    const host = splitAuthority(ex.authority).host;
    ex.peer = {
      serviceFqdn: host === '' ? 'unknown' : host,
      serviceName: host === '' ? 'InboundPassthroughCluster' : (host.split('.')[0] ?? host),
      serviceNamespace: this.deps.namespace,
    };
    const app = this.deps.app;
    if (app === null) {
      ex.reply(LOCAL_REPLIES.noUpstreamForInbound);
      return;
    }
    this.send(ex, app, ex.authority === '' ? `${app.address}:${app.port}` : ex.authority, ex.path, []);
  };

  /**
   * Upgrade (WebSocket) passthrough (h1 and node engines): route like any request, then hand the raw
   * connection to a tunnel. Anything that cannot be tunnelled gets a local reply and is closed.
   * Tunnels are not counted in the request metrics (their lifetime is the connection's).
   */
  readonly upgrade = (reporter: 'source' | 'destination'): UpgradeHandler => {
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
        upstream = this.deps.app;
        if (upstream === null) return refuse(LOCAL_REPLIES.noUpstreamForInbound);
      } else {
        if (target === null) return refuse(LOCAL_REPLIES.missingHost);
        const d = this.deps.store.current.routes.route({
          method: req.method,
          authority: target.authority,
          path: target.path,
          scheme: target.scheme ?? 'http',
          headers: req.headers,
        });
        switch (d.kind) {
          case 'forward': {
            const endpoint = this.deps.balancers.pickerFor(d.cluster.name, d.cluster.endpoints).pick();
            if (endpoint === null) return refuse(LOCAL_REPLIES.noHealthyUpstream);
            upstream = endpoint;
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
        requestId: headerValue(req.headers, 'x-request-id') ?? this.deps.requestId(),
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
  };

  private begin(ex: Exchange): void {
    this.inFlight++;
    ex.res.onAborted(() => ex.onClientGone());
    ex.res.onWritable(() => ex.call?.resume());
  }

  private dispatchDecision(ex: Exchange, d: RouteDecision): void {
    switch (d.kind) {
      case 'forward': {
        ex.routeName = d.routeName;
        ex.cluster = d.cluster;
        ex.peer = d.cluster;
        ex.responseEdits = d.responseHeaders;
        const fault = d.fault;
        if (fault !== undefined && this.applyFault(ex, fault, () => this.forward(ex, d))) return;
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
        ex.peer = { ...PASSTHROUGH, serviceFqdn: d.host };
        this.send(ex, { address: d.host, port: d.port }, ex.authority, ex.path, []);
        return;
      }
    }
  }

  /** Returns true when the fault took over the request (an abort, or a delay that continues later). */
  private applyFault(ex: Exchange, fault: HTTPFault, resume: () => void): boolean {
    const { random } = this.deps;
    // Draw both decisions up front: they are independent (spec §2.4).
    const delay =
      fault.delay !== undefined && random() < fault.delay.fraction ? fault.delay.fixedDelayMs : -1;
    const abort = fault.abort !== undefined && random() < fault.abort.fraction ? fault.abort : undefined;
    if (delay < 0 && abort === undefined) return false;
    const act = (): void => {
      if (ex.finished) return;
      if (abort !== undefined) {
        if (abort.grpcStatus !== undefined) {
          ex.flags = ex.flags === '' ? 'FI' : `${ex.flags},FI`;
          ex.status = 200;
          ex.headersSent = true;
          ex.res.writeHead(200, [
            'content-type',
            'application/grpc',
            'grpc-status',
            grpcCode(abort.grpcStatus),
            'grpc-message',
            'fault filter abort',
            'content-length',
            '0',
          ]);
          ex.res.end();
          ex.finish();
          return;
        }
        ex.reply({ ...LOCAL_REPLIES.faultAbort, status: abort.httpStatus ?? 500 });
        return;
      }
      resume();
    };
    if (delay >= 0) {
      ex.flags = 'DI';
      ex.timer = setTimeout(() => {
        ex.timer = null;
        act();
      }, delay);
      return true;
    }
    act();
    return true;
  }

  private forward(ex: Exchange, d: Extract<RouteDecision, { kind: 'forward' }>): void {
    const retries = d.retries;
    const connectRetries =
      retries === undefined
        ? DEFAULT_CONNECT_RETRIES
        : retries.attempts > 0 &&
            /(^|,)\s*(connect-failure|5xx|gateway-error|reset)\s*(,|$)/.test(retries.retryOn)
          ? retries.attempts
          : 0;
    // A request body can be sent once: without a replay buffer (resilience issue) only bodiless requests are retried.
    ex.retriesLeft = ex.req.body === null ? connectRetries : 0;
    let headers = ex.req.headers;
    if (d.requestHeaders.length > 0) headers = applyHeaderOps(headers, d.requestHeaders);
    if (d.originalPath !== undefined) headers = [...headers, 'x-envoy-original-path', d.originalPath];
    ex.authority = d.authority;
    ex.path = d.path;
    ex.upstreamHeaders = headers;
    if (d.timeoutMs !== undefined && d.timeoutMs > 0) {
      ex.timer = setTimeout(() => {
        ex.timer = null;
        if (ex.finished) return;
        ex.call?.abort();
        ex.call = null;
        if (ex.headersSent) {
          ex.flags = 'UT';
          ex.res.destroy();
          ex.finish();
        } else {
          ex.reply(LOCAL_REPLIES.routeTimeout);
        }
      }, d.timeoutMs);
    }
    this.attempt(ex);
  }

  /** One attempt at the current cluster: pick an endpoint and send. */
  attempt(ex: Exchange): void {
    const cluster = ex.cluster!;
    const picker = this.deps.balancers.pickerFor(cluster.name, cluster.endpoints);
    if (ex.tried === null && ex.endpoint !== null) ex.tried = new Set([ex.endpoint.id]);
    const endpoint = picker.pick(ex.tried ?? undefined);
    if (endpoint === null) {
      ex.clearTimer();
      ex.reply(LOCAL_REPLIES.noHealthyUpstream);
      return;
    }
    ex.endpoint = endpoint;
    ex.attempts++;
    ex.tried?.add(endpoint.id);
    this.send(ex, endpoint, ex.authority, ex.path, ex.upstreamHeaders);
  }

  /** Sends to one target. `edited` are the request headers after route edits ([] = the request's own). */
  private send(
    ex: Exchange,
    target: UpstreamTarget,
    authority: string,
    path: string,
    edited: HeaderList,
  ): void {
    const req = ex.req;
    if (ex.requestId === '') ex.requestId = headerValue(req.headers, 'x-request-id') ?? this.deps.requestId();
    const prepared = prepareUpstreamHeaders(edited.length === 0 ? req.headers : edited, {
      authority,
      remoteAddress: req.remoteAddress,
      scheme: req.secure ? 'https' : 'http',
      requestId: ex.requestId,
    });
    ex.call = this.deps.upstream.send(
      target,
      {
        method: req.method,
        path,
        headers: prepared.headers,
        body: req.body,
        expectContinue: prepared.expectContinue,
      },
      ex,
    );
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

  /** The series `metrics.record` would use for `ex` (flags '', sent to `endpoint`), cached. */
  private endpointSeries(ex: Exchange, endpoint: Endpoint, code: number): RequestSeries {
    const peer = ex.peer;
    let e = this.seriesByEndpoint.get(endpoint);
    if (
      e === undefined ||
      e.reporter !== ex.reporter ||
      e.serviceFqdn !== peer.serviceFqdn ||
      e.serviceName !== peer.serviceName
    ) {
      e = {
        reporter: ex.reporter,
        serviceFqdn: peer.serviceFqdn,
        serviceName: peer.serviceName,
        byCode: new Map(),
      };
      this.seriesByEndpoint.set(endpoint, e);
    }
    let series = e.byCode.get(code);
    if (series === undefined) {
      const { identity } = this.deps;
      series = this.deps.metrics.requestSeries(metricKey(ex, code), () =>
        istioLabels(ex.reporter, identity, peer, endpoint.labels, code, ''),
      );
      e.byCode.set(code, series);
    }
    return series;
  }

  /** Telemetry for a finished exchange: the only place that reads the whole of it. */
  observe(ex: Exchange): void {
    this.inFlight--;
    const { metrics, identity, accessLog, now } = this.deps;
    const duration = now() - ex.startedAt;
    const code = ex.res.aborted && !ex.headersSent ? 0 : ex.status;
    const peer = ex.peer;
    const endpoint = ex.endpoint;
    if (endpoint !== null && ex.flags === '') {
      // The common case (a request forwarded to an endpoint) keeps its series: no key to build.
      metrics.observe(this.endpointSeries(ex, endpoint, code), duration);
    } else {
      metrics.record(
        metricKey(ex, code),
        () => istioLabels(ex.reporter, identity, peer, endpoint?.labels ?? NO_LABELS, code, ex.flags),
        duration,
      );
    }
    if (accessLog !== null) {
      accessLog.log({
        start_time: new Date(Date.now() - duration).toISOString(),
        method: ex.req.method,
        path: ex.path,
        protocol: 'HTTP/1.1',
        response_code: code,
        response_flags: ex.flags === '' ? '-' : ex.flags,
        bytes_sent: ex.bytesSent,
        duration: Math.round(duration),
        upstream_host: ex.endpoint?.id ?? '-',
        upstream_cluster: ex.cluster?.name ?? peer.serviceName,
        authority: ex.authority,
        x_forwarded_for: headerValue(ex.req.headers, 'x-forwarded-for') ?? '-',
        request_id: ex.requestId === '' ? '-' : ex.requestId,
        route_name: ex.routeName === '' ? '-' : ex.routeName,
        reporter: ex.reporter,
      });
    }
  }
}

/** The key of an exchange's metric series: the label values that vary between requests. */
function metricKey(ex: Exchange, code: number): string {
  const peer = ex.peer;
  return `${ex.reporter}|${peer.serviceFqdn}|${peer.serviceName}|${ex.endpoint?.id ?? ''}|${code}|${ex.flags}`;
}

const GRPC_CODES: Readonly<Record<string, string>> = {
  OK: '0',
  CANCELLED: '1',
  UNKNOWN: '2',
  INVALID_ARGUMENT: '3',
  DEADLINE_EXCEEDED: '4',
  NOT_FOUND: '5',
  ALREADY_EXISTS: '6',
  PERMISSION_DENIED: '7',
  RESOURCE_EXHAUSTED: '8',
  FAILED_PRECONDITION: '9',
  ABORTED: '10',
  OUT_OF_RANGE: '11',
  UNIMPLEMENTED: '12',
  INTERNAL: '13',
  UNAVAILABLE: '14',
  DATA_LOSS: '15',
  UNAUTHENTICATED: '16',
};

function grpcCode(name: string): string {
  return GRPC_CODES[name] ?? '2';
}
