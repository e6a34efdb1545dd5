/**
 * Telemetry observes every finished exchange (metrics, access log); it never answers and never
 * changes the response. It is the only stage that reads the whole exchange.
 */
import type { Endpoint } from '../router/route-types.ts';
import { istioLabels, type RequestSeries } from '../telemetry/metrics.ts';
import type { Exchange } from './exchange.ts';
import type { PipelineDeps } from './pipeline-types.ts';
import { headerValue } from './request-target.ts';

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

export class TelemetryStage {
  private readonly deps: PipelineDeps;
  /** Resolved metric series per endpoint (see `observe`); entries go with their snapshot's endpoints. */
  private readonly seriesByEndpoint = new WeakMap<Endpoint, EndpointSeries>();

  constructor(deps: PipelineDeps) {
    this.deps = deps;
  }

  observe(ex: Exchange): void {
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
}

/** The key of an exchange's metric series: the label values that vary between requests. */
function metricKey(ex: Exchange, code: number): string {
  const peer = ex.peer;
  return `${ex.reporter}|${peer.serviceFqdn}|${peer.serviceName}|${ex.endpoint?.id ?? ''}|${code}|${ex.flags}`;
}
