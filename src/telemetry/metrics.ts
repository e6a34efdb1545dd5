import { Counter, collectDefaultMetrics, type Metric, Registry } from 'prom-client';
import type { ClusterState } from '../balancer/cluster-types.ts';
import type { WorkloadCertificate } from '../tls/identity-types.ts';
import { ResilienceMetrics } from './resilience-metrics.ts';
import type { ResilienceStats } from './resilience-stats.ts';

/**
 * Istio's standard request metrics (spec §7) and meshlet's own counters, exposed with prom-client.
 *
 * The hot path never builds a label object: each distinct label combination is resolved once into
 * prom-client children, cached under a compact key, and later requests only call `inc`/`observe`.
 */

/** Envoy's default histogram buckets, which Istio uses for all three request histograms. */
export const ISTIO_BUCKETS = [
  0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000,
  3600000,
];

export const ISTIO_LABELS = [
  'reporter',
  'source_workload',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_canonical_service',
  'source_canonical_revision',
  'source_cluster',
  'destination_workload',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_service',
  'destination_service_name',
  'destination_service_namespace',
  'destination_canonical_service',
  'destination_canonical_revision',
  'destination_cluster',
  'request_protocol',
  'response_code',
  'grpc_response_status',
  'response_flags',
  'connection_security_policy',
] as const;

type IstioLabel = (typeof ISTIO_LABELS)[number];
export type IstioLabelValues = Readonly<Record<IstioLabel, string>>;

/** Who this proxy is, for the source_* (outbound) or destination_* (inbound) labels. */
export interface WorkloadIdentity {
  readonly workload: string;
  readonly namespace: string;
  readonly app: string;
  readonly version: string;
  readonly canonicalService: string;
  readonly canonicalRevision: string;
  readonly cluster: string;
}

/** What is known about the other side of one request. */
export interface PeerDescription {
  readonly serviceFqdn: string;
  readonly serviceName: string;
  readonly serviceNamespace: string;
}

/**
 * What mTLS tells about one request, for the principal labels (spec §7.2). Absent: nothing known,
 * every principal `unknown` and the connection `none` (destination side).
 */
export interface SecurityLabels {
  /** `spiffe://…` of the caller, or `unknown`. */
  readonly sourcePrincipal: string;
  /** `spiffe://…` of the server, or `unknown`. */
  readonly destinationPrincipal: string;
  /** Destination side: the caller came over mTLS (peer certificate and our own both present). */
  readonly mutualTls: boolean;
  /**
   * Destination side: the caller's namespace from its certificate's `/ns/` segment, which Istio uses
   * for `source_workload_namespace` when there is one.
   */
  readonly peerNamespace?: string;
}

/** One label combination of the request metrics: a counter and a histogram, updated together. */
interface Series {
  readonly key: string;
  readonly labels: IstioLabelValues;
  count: number;
  sum: number;
  /** Observations per bucket (not cumulative); the last slot is +Inf. */
  readonly buckets: Float64Array;
  /** Dropped by a reset: the next observation registers it again under its key. */
  detached: boolean;
}

/**
 * A label combination of the request metrics, resolved once (`MeshMetrics.requestSeries`), so that
 * a caller that keeps it records without building a key or looking it up.
 */
export type RequestSeries = { readonly labels: IstioLabelValues };

type MetricValue = {
  readonly labels: Readonly<Record<string, string | number>>;
  readonly value: number;
  readonly metricName?: string;
};

/**
 * The two Istio request metrics, kept as plain numbers per label combination and handed to
 * prom-client only when it is scraped. prom-client's own children re-hash their 25 labels on every
 * `inc`/`observe` (about a tenth of the proxy's CPU in a profile); here a request costs a Map lookup
 * on a key the pipeline already built, two additions and a short bucket scan.
 */
class IstioRequestMetrics {
  private readonly series = new Map<string, Series>();

  get(key: string, labels: () => IstioLabelValues): Series {
    let s = this.series.get(key);
    if (s === undefined) {
      s = {
        key,
        labels: labels(),
        count: 0,
        sum: 0,
        buckets: new Float64Array(ISTIO_BUCKETS.length + 1),
        detached: false,
      };
      this.series.set(key, s);
    }
    return s;
  }

  observe(series: Series, durationMs: number): void {
    let s = series;
    if (s.detached) s = this.get(s.key, () => series.labels);
    s.count++;
    s.sum += durationMs;
    let i = 0;
    while (i < ISTIO_BUCKETS.length && durationMs > (ISTIO_BUCKETS[i] as number)) i++;
    s.buckets[i] = (s.buckets[i] as number) + 1;
  }

  /** prom-client's metric interface, for `registry.registerMetric`. */
  readonly counter = {
    name: 'istio_requests_total',
    help: 'Requests handled, counted when the response finishes.',
    type: 'counter',
    aggregator: 'sum',
    get: async () => ({
      name: this.counter.name,
      help: this.counter.help,
      type: this.counter.type,
      aggregator: this.counter.aggregator,
      values: [...this.series.values()].map((s): MetricValue => ({ labels: s.labels, value: s.count })),
    }),
    reset: () => this.clear(),
  };

  private clear(): void {
    for (const s of this.series.values()) s.detached = true;
    this.series.clear();
  }

  readonly histogram = {
    name: 'istio_request_duration_milliseconds',
    help: 'Time from the start of the downstream request to the end of the response, in milliseconds.',
    type: 'histogram',
    aggregator: 'sum',
    get: async () => {
      const values: MetricValue[] = [];
      const name = this.histogram.name;
      for (const s of this.series.values()) {
        let cumulative = 0;
        for (let i = 0; i <= ISTIO_BUCKETS.length; i++) {
          cumulative += s.buckets[i] as number;
          const le = i < ISTIO_BUCKETS.length ? (ISTIO_BUCKETS[i] as number) : '+Inf';
          values.push({ labels: { ...s.labels, le }, value: cumulative, metricName: `${name}_bucket` });
        }
        values.push({ labels: s.labels, value: s.sum, metricName: `${name}_sum` });
        values.push({ labels: s.labels, value: s.count, metricName: `${name}_count` });
      }
      return {
        name,
        help: this.histogram.help,
        type: this.histogram.type,
        aggregator: this.histogram.aggregator,
        values,
      };
    },
    reset: () => this.clear(),
  };
}

export class MeshMetrics {
  readonly registry = new Registry();
  private readonly requests = new IstioRequestMetrics();
  private readonly reloads: Counter<'result'>;
  private resilience: ResilienceMetrics | undefined;
  private readonly authz: Readonly<Record<AuthzOutcome, Counter<'workload'>>>;
  private identities: () => Iterable<CertificateHolder> = () => [];
  private handshakeSources: () => Iterable<HandshakeErrorSource> = () => [];
  /** Wall clock (epoch ms) for certificate expiry; injected by tests. */
  private wallClock: () => number = Date.now;

  constructor() {
    this.registry.registerMetric(this.requests.counter as unknown as Metric);
    this.registry.registerMetric(this.requests.histogram as unknown as Metric);
    this.reloads = new Counter({
      name: 'meshlet_config_reloads_total',
      help: 'Configuration reloads by result: applied, rejected (invalid, old configuration kept), unchanged.',
      labelNames: ['result'],
      registers: [this.registry],
    });
    for (const result of ['applied', 'rejected', 'unchanged']) this.reloads.labels(result).inc(0);
    const authz = (name: string, help: string): Counter<'workload'> =>
      new Counter({ name, help, labelNames: ['workload'], registers: [this.registry] });
    this.authz = {
      denied: authz(
        'meshlet_authz_denied_total',
        'Requests denied by AuthorizationPolicy (403 RBAC: access denied), per workload.',
      ),
      dry_run_denied: authz(
        'meshlet_authz_dry_run_denied_total',
        'Requests a dry-run AuthorizationPolicy would have denied (logged, not enforced), per workload.',
      ),
      audited: authz(
        'meshlet_authz_audited_total',
        'Requests an AUDIT AuthorizationPolicy rule matched, per workload.',
      ),
    };
    this.registry.registerMetric(
      scrapedMetric(
        'meshlet_certificate_expiry_seconds',
        'Seconds until the workload certificate expires (negative once expired), per SPIFFE id.',
        'gauge',
        () => {
          const now = this.wallClock();
          const values: MetricValue[] = [];
          for (const h of this.identities()) {
            const cert = h.current();
            if (cert !== null)
              values.push({
                labels: { spiffe_id: h.spiffeId },
                value: (cert.notAfter.getTime() - now) / 1000,
              });
          }
          return values;
        },
      ),
    );
    this.registry.registerMetric(
      scrapedMetric(
        'meshlet_certificate_rotations_total',
        'Workload certificates replaced after the first one (renewals and file updates), per SPIFFE id.',
        'counter',
        () => [...this.identities()].map((h) => ({ labels: { spiffe_id: h.spiffeId }, value: h.rotations })),
      ),
    );
    /** A counter read from each listener that has it, per listener. */
    const perListener = (
      name: string,
      help: string,
      read: (l: HandshakeErrorSource) => number | undefined,
    ): void => {
      this.registry.registerMetric(
        scrapedMetric(name, help, 'counter', () => {
          const values: MetricValue[] = [];
          for (const l of this.handshakeSources()) {
            const count = read(l);
            if (count !== undefined) values.push({ labels: { listener: l.name }, value: count });
          }
          return values;
        }),
      );
    };
    perListener(
      'meshlet_tls_handshake_errors_total',
      'Inbound TLS handshakes that failed (no, expired or untrusted client certificate, plaintext to STRICT), per listener.',
      (l) => l.tlsHandshakeErrors?.(),
    );
    perListener(
      'meshlet_tls_plaintext_refused_total',
      'Plaintext connections closed by an inbound listener because its PeerAuthentication is STRICT, per listener.',
      (l) => l.plaintextRefused?.(),
    );
    collectDefaultMetrics({ register: this.registry, prefix: 'meshlet_' });
    // prom-client exports three gauges named `*_total`, which `promtool check metrics` refuses
    // (only counters end in `_total`). Each is the sum of the per-type gauge of the same name
    // without the suffix, so dropping them loses nothing.
    for (const kind of ['handles', 'requests', 'resources'])
      this.registry.removeSingleMetric(`meshlet_nodejs_active_${kind}_total`);
  }

  /**
   * Exposes the resilience counters (retries, budgets, overflows, ejections, faults, mirrors; see
   * resilience-metrics.ts). Called once at start; the sources are read only when `/metrics` is
   * scraped, so the request path pays nothing. A later call replaces the sources. `now` is the
   * monotonic clock of the cluster states (ms), to tell running ejections from finished ones.
   */
  attachResilience(
    clusters: () => Iterable<ClusterState>,
    stats: ResilienceStats,
    now: () => number = () => performance.now(),
  ): void {
    if (this.resilience === undefined)
      this.resilience = new ResilienceMetrics(this.registry, { clusters, stats, now });
    else this.resilience.sources = { clusters, stats, now };
  }

  /**
   * The certificates to report (`meshlet_certificate_expiry_seconds`, `..._rotations_total`), read
   * at scrape time. `wallClock`: epoch ms (default `Date.now`).
   */
  attachIdentities(holders: () => Iterable<CertificateHolder>, wallClock: () => number = Date.now): void {
    this.identities = holders;
    this.wallClock = wallClock;
  }

  /** Listeners whose TLS handshake error counts are reported, read at scrape time. */
  attachListeners(listeners: () => Iterable<HandshakeErrorSource>): void {
    this.handshakeSources = listeners;
  }

  /** An authorization outcome other than a plain allow (allowed requests cost nothing here). */
  authzDecision(workload: string, outcome: AuthzOutcome): void {
    this.authz[outcome].labels(workload).inc();
  }

  reload(result: 'applied' | 'rejected' | 'unchanged'): void {
    this.reloads.labels(result).inc();
  }

  /**
   * Records one finished request. `key` identifies the label combination (the caller builds it
   * from values it already has); `labels` is only called on the first request with that key.
   */
  record(key: string, labels: () => IstioLabelValues, durationMs: number): void {
    const requests = this.requests;
    requests.observe(requests.get(key, labels), durationMs);
  }

  /**
   * The series of one label combination (`key` and `labels` as for `record`), to keep and pass to
   * `observe` for later requests with the same labels. It stays valid across a reset of the metrics.
   */
  requestSeries(key: string, labels: () => IstioLabelValues): RequestSeries {
    return this.requests.get(key, labels);
  }

  /** Records one finished request in a series from `requestSeries`. */
  observe(series: RequestSeries, durationMs: number): void {
    this.requests.observe(series as Series, durationMs);
  }

  async exposition(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** Authorization outcomes that are counted (a plain allow is not). */
export type AuthzOutcome = 'denied' | 'dry_run_denied' | 'audited';

/** A certificate to report: its SPIFFE id and where the current one is read. */
export interface CertificateHolder {
  readonly spiffeId: string;
  current(): WorkloadCertificate | null;
  readonly rotations: number;
}

/** A listener that may count failed TLS handshakes (inbound mTLS listeners do). */
export interface HandshakeErrorSource {
  readonly name: string;
  tlsHandshakeErrors?(): number;
  /** Plaintext connections closed because the port is STRICT. */
  plaintextRefused?(): number;
}

/** A metric whose values are computed when `/metrics` is scraped (nothing is kept between scrapes). */
function scrapedMetric(
  name: string,
  help: string,
  type: 'counter' | 'gauge',
  values: () => MetricValue[],
): Metric {
  const metric = {
    name,
    help,
    type,
    aggregator: 'sum',
    get: async () => ({ name, help, type, aggregator: 'sum', values: values() }),
    reset: () => {},
  };
  return metric as unknown as Metric;
}

/** Canonical service and revision per spec §7.2. */
export function canonicalOf(
  labels: Readonly<Record<string, string>>,
  fallbackName: string,
): { readonly service: string; readonly revision: string } {
  return {
    service:
      labels['service.istio.io/canonical-name'] ??
      labels['app.kubernetes.io/name'] ??
      labels['app'] ??
      fallbackName,
    revision:
      labels['service.istio.io/canonical-revision'] ??
      labels['app.kubernetes.io/version'] ??
      labels['version'] ??
      'latest',
  };
}

/** Label values for a request seen by this proxy as a client (`source`) or as a server (`destination`). */
export function istioLabels(
  reporter: 'source' | 'destination',
  self: WorkloadIdentity,
  peer: PeerDescription,
  /** Labels of the peer workload (the upstream endpoint's, for ServiceEntry endpoints). */
  peerLabels: Readonly<Record<string, string>>,
  code: number,
  flags: string,
  security?: SecurityLabels,
): IstioLabelValues {
  const peerCanonical = canonicalOf(peerLabels, 'unknown');
  const peerSide = {
    workload: peerLabels['app'] ?? 'unknown',
    namespace: security?.peerNamespace ?? peer.serviceNamespace,
    app: peerLabels['app'] ?? 'unknown',
    version: peerLabels['version'] ?? 'unknown',
    canonicalService: peerCanonical.service,
    canonicalRevision: peerCanonical.revision,
    cluster: 'unknown',
  };
  const src = reporter === 'source' ? self : peerSide;
  const dst = reporter === 'source' ? peerSide : self;
  return {
    reporter,
    source_workload: src.workload,
    source_workload_namespace: src.namespace,
    source_principal: security?.sourcePrincipal ?? 'unknown',
    source_app: src.app,
    source_version: src.version,
    source_canonical_service: src.canonicalService,
    source_canonical_revision: src.canonicalRevision,
    source_cluster: src.cluster,
    destination_workload: dst.workload,
    destination_workload_namespace: dst.namespace,
    destination_principal: security?.destinationPrincipal ?? 'unknown',
    destination_app: dst.app,
    destination_version: dst.version,
    destination_service: peer.serviceFqdn,
    destination_service_name: peer.serviceName,
    destination_service_namespace: peer.serviceNamespace,
    destination_canonical_service: dst.canonicalService,
    destination_canonical_revision: dst.canonicalRevision,
    destination_cluster: dst.cluster,
    request_protocol: 'http',
    response_code: String(code),
    grpc_response_status: '',
    response_flags: flags === '' ? '-' : flags,
    connection_security_policy:
      reporter === 'source' ? 'unknown' : security?.mutualTls === true ? 'mutual_tls' : 'none',
  };
}
