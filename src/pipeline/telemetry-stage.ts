/**
 * Telemetry observes every finished exchange (metrics, then the observers: access log, live stats,
 * tap; then the trace's server span); it never answers and never changes the response. It is the
 * only stage that reads the whole exchange.
 */
import type { Endpoint } from '../router/route-types.ts';
import { istioLabels, type RequestSeries, type SecurityLabels } from '../telemetry/metrics.ts';
import type { Exchange } from './exchange.ts';
import { upstreamPrincipal } from './origination-stage.ts';
import type { PipelineDeps } from './pipeline-types.ts';

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
  /** `upstreamPrincipal` of the attempts these series count ('' for plaintext). */
  readonly principal: string;
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
    const { metrics, now } = this.deps;
    const duration = now() - ex.startedAt;
    const code = ex.res.aborted && !ex.headersSent ? 0 : ex.status;
    const peer = ex.peer;
    const endpoint = ex.endpoint;
    const identity = ex.workload?.identity ?? this.deps.identity;
    if (endpoint !== null && ex.flags === '') {
      // The common case (a request forwarded to an endpoint) keeps its series: no key to build.
      metrics.observe(this.endpointSeries(ex, endpoint, code), duration, ex.bytesReceived, ex.bytesSent);
    } else {
      metrics.record(
        metricKey(ex, code),
        () =>
          istioLabels(
            ex.reporter,
            identity,
            peer,
            endpoint?.labels ?? NO_LABELS,
            code,
            ex.flags,
            this.securityLabels(ex),
          ),
        duration,
        ex.bytesReceived,
        ex.bytesSent,
      );
    }
    const observers = this.deps.observers;
    if (observers !== undefined) for (const o of observers) o.observe(ex, duration, code);
    ex.trace?.finished(ex, duration, code);
  }

  /** The series `metrics.record` would use for `ex` (flags '', sent to `endpoint`), cached. */
  private endpointSeries(ex: Exchange, endpoint: Endpoint, code: number): RequestSeries {
    const peer = ex.peer;
    const principal = upstreamPrincipal(ex.upstreamTls);
    let e = this.seriesByEndpoint.get(endpoint);
    if (
      e === undefined ||
      e.reporter !== ex.reporter ||
      e.serviceFqdn !== peer.serviceFqdn ||
      e.serviceName !== peer.serviceName ||
      e.principal !== principal
    ) {
      e = {
        reporter: ex.reporter,
        serviceFqdn: peer.serviceFqdn,
        serviceName: peer.serviceName,
        principal,
        byCode: new Map(),
      };
      this.seriesByEndpoint.set(endpoint, e);
    }
    let series = e.byCode.get(code);
    if (series === undefined) {
      const { identity } = this.deps;
      series = this.deps.metrics.requestSeries(metricKey(ex, code), () =>
        istioLabels(ex.reporter, identity, peer, endpoint.labels, code, '', this.securityLabels(ex)),
      );
      e.byCode.set(code, series);
    }
    return series;
  }

  /**
   * The principal labels (spec §7.2). Destination side: the caller's verified id, our own id when
   * the connection was TLS, mutual_tls when the caller presented a certificate (ours was presented
   * too: the listener only terminates TLS with one). Source side: our id and the server's when the
   * attempt was mTLS (see `upstreamPrincipal`).
   */
  private securityLabels(ex: Exchange): SecurityLabels | undefined {
    if (ex.reporter === 'destination') {
      const req = ex.req;
      const peer = req.peer;
      if (!req.secure && peer === undefined) return undefined;
      const labels: { -readonly [K in keyof SecurityLabels]: SecurityLabels[K] } = {
        sourcePrincipal: peer?.spiffeId ?? 'unknown',
        destinationPrincipal: (req.secure ? ex.workload?.spiffeId() : null) ?? 'unknown',
        mutualTls: peer !== undefined,
      };
      if (peer !== undefined) labels.peerNamespace = peer.namespace;
      return labels;
    }
    const server = upstreamPrincipal(ex.upstreamTls);
    if (server === '') return undefined;
    return {
      sourcePrincipal: this.deps.spiffeId?.() ?? 'unknown',
      destinationPrincipal: server,
      mutualTls: true,
    };
  }
}

/**
 * The key part of one endpoint object: its id and its labels. An endpoint keeps its id (its
 * address) across reloads while a reload may change its labels (a version relabelled), and the
 * metrics map a key to the labels it was first seen with; each snapshot has its own endpoint
 * objects, so this is computed once per endpoint and snapshot.
 */
const endpointKeys = new WeakMap<Endpoint, string>();

function endpointKey(endpoint: Endpoint | null): string {
  if (endpoint === null) return '';
  let key = endpointKeys.get(endpoint);
  if (key === undefined) {
    key = `${endpoint.id}${JSON.stringify(endpoint.labels)}`;
    endpointKeys.set(endpoint, key);
  }
  return key;
}

/** The key of an exchange's metric series: the label values that vary between requests. */
function metricKey(ex: Exchange, code: number): string {
  const peer = ex.peer;
  const base = `${ex.reporter}|${peer.serviceFqdn}|${peer.serviceName}|${endpointKey(ex.endpoint)}|${code}|${ex.flags}`;
  if (ex.reporter === 'destination') {
    // Inbound: the workload (node mode has several) and what mTLS told about the caller.
    const req = ex.req;
    const workload = ex.workload?.name ?? '';
    return req.secure ? `${base}|${workload}|s|${req.peer?.spiffeId ?? ''}` : `${base}|${workload}`;
  }
  return `${base}|${upstreamPrincipal(ex.upstreamTls)}`;
}
