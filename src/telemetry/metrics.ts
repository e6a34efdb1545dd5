import { Counter, collectDefaultMetrics, Gauge, type Metric, Registry } from 'prom-client';
import type { ClusterState } from '../balancer/cluster-types.ts';
import type { WorkloadCertificate } from '../tls/identity-types.ts';
import { VERSION } from '../version.ts';
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

/**
 * One label set of the request metrics: the counter and the three histograms, updated together.
 * Buckets hold observations per bucket (not cumulative); the last slot of each is +Inf.
 */
interface Series {
  readonly key: string;
  readonly labels: IstioLabelValues;
  count: number;
  durationSum: number;
  readonly durationBuckets: Float64Array;
  requestBytesSum: number;
  readonly requestBuckets: Float64Array;
  responseBytesSum: number;
  readonly responseBuckets: Float64Array;
  /** Dropped by a reset: the next observation registers it again under its key. */
  detached: boolean;
  /** Stands for the label sets refused by the cap. */
  readonly overflow: boolean;
  /** The labels as exposition text, built at the first scrape. */
  text: string | null;
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
 * Default cap on the label sets of the request metrics (see `IstioRequestMetrics`). Each label set
 * is 67 exposition lines of about 800 bytes (25 labels): 2 000 sets are about 108 MB and 0.1–0.2 s
 * of formatting per scrape; 10 000 would pass V8's longest string (about 512 MB) and could not be
 * exposed at all.
 */
export const MAX_REQUEST_SERIES = 2_000;

/** Labels an overflow series keeps; every other label of it is `unknown`. */
const OVERFLOW_KEPT: readonly IstioLabel[] = [
  'reporter',
  'request_protocol',
  'response_code',
  'grpc_response_status',
  'response_flags',
];

/** Index of the first bucket whose upper bound is >= `v` (the +Inf slot when none is). */
function bucketOf(v: number): number {
  let i = 0;
  while (i < ISTIO_BUCKETS.length && v > (ISTIO_BUCKETS[i] as number)) i++;
  return i;
}

/** The label values in a fixed order, as one string: two keys with equal labels get equal strings. */
function labelIdentity(labels: IstioLabelValues): string {
  let s = '';
  for (const name of ISTIO_LABELS) s += `${labels[name]}\u0000`;
  return s;
}

/**
 * The Istio request metrics (count, duration, request and response bytes), kept as plain numbers
 * per label set and handed to prom-client only when it is scraped. prom-client's own children
 * re-hash their 25 labels on every `inc`/`observe` (about a tenth of the proxy's CPU in a profile);
 * here a request costs a Map lookup on a key the pipeline already built (or none, for a caller that
 * keeps its series), a few additions and three short bucket scans.
 *
 * Keys are finer than label sets (a key names the endpoint, and two endpoints may carry the same
 * labels), so keys map onto shared series, one per distinct label set: the exposition never holds
 * the same label set twice. The number of label sets is capped (`maxSeries`): past the cap a new
 * label set is folded into an overflow series per reporter, protocol, code and flags, with every
 * other label `unknown`, and each request recorded there is counted in
 * `meshlet_metric_series_overflow_total`.
 */
class IstioRequestMetrics {
  /** Series per caller key (several keys may share one series). */
  private readonly byKey = new Map<string, Series>();
  /** Series per distinct label set (what is exposed), overflow series included. */
  private readonly byLabels = new Map<string, Series>();
  /** Label sets recorded as themselves (the overflow series are not counted against the cap). */
  private distinct = 0;
  /** Requests recorded in an overflow series. */
  overflowed = 0;
  private readonly maxSeries: number;

  constructor(maxSeries: number) {
    this.maxSeries = maxSeries;
  }

  get(key: string, labels: () => IstioLabelValues): Series {
    const s = this.byKey.get(key);
    if (s !== undefined) return s;
    const values = labels();
    const identity = labelIdentity(values);
    let shared = this.byLabels.get(identity);
    if (shared === undefined) {
      if (this.distinct < this.maxSeries) {
        shared = newSeries(key, values, false);
        this.distinct++;
        this.byLabels.set(identity, shared);
      } else {
        shared = this.overflowSeries(values);
      }
    }
    // Keys are kept up to twice the cap, so that a flood of distinct keys past the cap costs a
    // label computation per request rather than memory without bound.
    if (this.byKey.size < 2 * this.maxSeries) this.byKey.set(key, shared);
    return shared;
  }

  private overflowSeries(values: IstioLabelValues): Series {
    const folded: Record<string, string> = {};
    for (const name of ISTIO_LABELS) folded[name] = 'unknown';
    for (const name of OVERFLOW_KEPT) folded[name] = values[name];
    const labels = folded as IstioLabelValues;
    const identity = labelIdentity(labels);
    let s = this.byLabels.get(identity);
    if (s === undefined) {
      s = newSeries(identity, labels, true);
      this.byLabels.set(identity, s);
    }
    return s;
  }

  observe(series: Series, durationMs: number, requestBytes: number, responseBytes: number): void {
    let s = series;
    if (s.detached) s = this.get(s.key, () => series.labels);
    s.count++;
    s.durationSum += durationMs;
    let i = bucketOf(durationMs);
    s.durationBuckets[i] = (s.durationBuckets[i] as number) + 1;
    s.requestBytesSum += requestBytes;
    i = bucketOf(requestBytes);
    s.requestBuckets[i] = (s.requestBuckets[i] as number) + 1;
    s.responseBytesSum += responseBytes;
    i = bucketOf(responseBytes);
    s.responseBuckets[i] = (s.responseBuckets[i] as number) + 1;
    if (s.overflow) this.overflowed++;
  }

  /** Label sets exposed now (overflow series included). */
  get size(): number {
    return this.byLabels.size;
  }

  /**
   * The four families in Prometheus' text format. Written here rather than through prom-client:
   * each label set is 67 lines of 25 labels, and prom-client's formatter (a label object per line,
   * every value escaped again) took seconds for a thousand label sets, on the event loop that
   * serves requests. Here each label set's label text is escaped once and reused.
   */
  format(): string {
    const all = [...this.byLabels.values()];
    let out = `# HELP istio_requests_total Requests handled, counted when the response finishes.\n# TYPE istio_requests_total counter\n`;
    for (const s of all) out += `istio_requests_total{${labelText(s)}} ${s.count}\n`;
    out += histogramText(
      all,
      'istio_request_duration_milliseconds',
      'Time from the start of the downstream request to the end of the response, in milliseconds.',
      (s) => s.durationBuckets,
      (s) => s.durationSum,
    );
    out += histogramText(
      all,
      'istio_request_bytes',
      'Request body bytes received from the downstream, per request.',
      (s) => s.requestBuckets,
      (s) => s.requestBytesSum,
    );
    out += histogramText(
      all,
      'istio_response_bytes',
      'Response body bytes sent to the downstream, per request.',
      (s) => s.responseBuckets,
      (s) => s.responseBytesSum,
    );
    return out;
  }

  /** Forgets every series (tests); series kept by callers register again on their next request. */
  clear(): void {
    for (const s of this.byLabels.values()) s.detached = true;
    this.byKey.clear();
    this.byLabels.clear();
    this.distinct = 0;
    this.overflowed = 0;
  }
}

/** `le` label values, formatted once. */
const LE_TEXT = [...ISTIO_BUCKETS.map((b) => String(b)), '+Inf'];

function histogramText(
  all: readonly Series[],
  name: string,
  help: string,
  buckets: (s: Series) => Float64Array,
  sum: (s: Series) => number,
): string {
  let out = `# HELP ${name} ${help}\n# TYPE ${name} histogram\n`;
  for (const s of all) {
    const labels = labelText(s);
    const b = buckets(s);
    let cumulative = 0;
    for (let i = 0; i < LE_TEXT.length; i++) {
      cumulative += b[i] as number;
      out += `${name}_bucket{${labels},le="${LE_TEXT[i]}"} ${cumulative}\n`;
    }
    out += `${name}_sum{${labels}} ${sum(s)}\n${name}_count{${labels}} ${s.count}\n`;
  }
  return out;
}

/** The series' labels as exposition text (`a="x",b="y"`), escaped once and kept. */
function labelText(s: Series): string {
  if (s.text === null) {
    let text = '';
    for (const name of ISTIO_LABELS) {
      const v = s.labels[name];
      text += `${text === '' ? '' : ','}${name}="${escapeLabelValue(v)}"`;
    }
    s.text = text;
  }
  return s.text;
}

/** Prometheus text format: backslash, double quote and line feed are escaped in label values. */
function escapeLabelValue(v: string): string {
  return /[\\"\n]/.test(v) ? v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') : v;
}

function newSeries(key: string, labels: IstioLabelValues, overflow: boolean): Series {
  const n = ISTIO_BUCKETS.length + 1;
  return {
    key,
    labels,
    count: 0,
    durationSum: 0,
    durationBuckets: new Float64Array(n),
    requestBytesSum: 0,
    requestBuckets: new Float64Array(n),
    responseBytesSum: 0,
    responseBuckets: new Float64Array(n),
    detached: false,
    overflow,
    text: null,
  };
}

/** Options of `MeshMetrics`. */
export interface MeshMetricsOptions {
  /** Cap on the label sets of the Istio request metrics (default `MAX_REQUEST_SERIES`). */
  readonly maxRequestSeries?: number;
}

export class MeshMetrics {
  readonly registry = new Registry();
  private readonly requests: IstioRequestMetrics;
  private readonly reloads: Counter<'result'>;
  private resilience: ResilienceMetrics | undefined;
  private readonly authz: Readonly<Record<AuthzOutcome, Counter<'workload'>>>;
  private identities: () => Iterable<CertificateHolder> = () => [];
  private handshakeSources: () => Iterable<HandshakeErrorSource> = () => [];
  private connectionSources: () => Iterable<ConnectionCountSource> = () => [];
  /** Wall clock (epoch ms) for certificate expiry; injected by tests. */
  private wallClock: () => number = Date.now;

  constructor(options: MeshMetricsOptions = {}) {
    const requests = new IstioRequestMetrics(options.maxRequestSeries ?? MAX_REQUEST_SERIES);
    this.requests = requests;
    this.registry.registerMetric(
      scrapedMetric(
        'meshlet_metric_series_overflow_total',
        'Requests recorded in an overflow series of the istio_* request metrics because their label set came after the series cap.',
        'counter',
        () => [{ labels: {}, value: requests.overflowed }],
      ),
    );
    new Gauge({
      name: 'istio_build',
      help: 'Build of this proxy: component="proxy", tag = meshlet version. Always 1.',
      labelNames: ['component', 'tag'],
      registers: [this.registry],
    }).set({ component: 'proxy', tag: VERSION }, 1);
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
    /** A value read from every listener, per listener. */
    const connections = (
      name: string,
      help: string,
      type: 'counter' | 'gauge',
      read: (l: ConnectionCountSource) => number,
    ): void => {
      this.registry.registerMetric(
        scrapedMetric(name, help, type, () => {
          const values: MetricValue[] = [];
          for (const l of this.connectionSources())
            values.push({ labels: { listener: l.name }, value: read(l) });
          return values;
        }),
      );
    };
    connections(
      'meshlet_listener_connections_active',
      'Downstream connections open on the listener now (TLS ones from accept, before their handshake ends).',
      'gauge',
      (l) => l.connectionsActive(),
    );
    connections(
      'meshlet_listener_connections_total',
      'Downstream connections the listener accepted since start.',
      'counter',
      (l) => l.connectionsTotal(),
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

  /** Every listener, for the connection counts (`meshlet_listener_connections_*`), read at scrape time. */
  attachListenerConnections(listeners: () => Iterable<ConnectionCountSource>): void {
    this.connectionSources = listeners;
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
   * `requestBytes`: request body bytes received from the downstream; `responseBytes`: response
   * body bytes sent to it.
   */
  record(
    key: string,
    labels: () => IstioLabelValues,
    durationMs: number,
    requestBytes: number,
    responseBytes: number,
  ): void {
    const requests = this.requests;
    requests.observe(requests.get(key, labels), durationMs, requestBytes, responseBytes);
  }

  /**
   * The series of one label combination (`key` and `labels` as for `record`), to keep and pass to
   * `observe` for later requests with the same labels. It stays valid across a reset of the metrics.
   */
  requestSeries(key: string, labels: () => IstioLabelValues): RequestSeries {
    return this.requests.get(key, labels);
  }

  /** Records one finished request in a series from `requestSeries` (the numbers as for `record`). */
  observe(series: RequestSeries, durationMs: number, requestBytes: number, responseBytes: number): void {
    this.requests.observe(series as Series, durationMs, requestBytes, responseBytes);
  }

  /** Label sets of the request metrics exposed now (overflow series included). */
  get requestSeriesCount(): number {
    return this.requests.size;
  }

  /** The whole exposition: Istio's request metrics (formatted here) and the registry's metrics. */
  async exposition(): Promise<string> {
    const others = await this.registry.metrics();
    return this.requests.format() + others;
  }

  /** Forgets the request metrics' series (tests). */
  resetRequests(): void {
    this.requests.clear();
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

/** A listener's connection counts, kept by its engine as plain numbers. */
export interface ConnectionCountSource {
  readonly name: string;
  connectionsActive(): number;
  connectionsTotal(): number;
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
