import t from 'tap';
import {
  canonicalOf,
  ISTIO_LABELS,
  istioLabels,
  MeshMetrics,
  type WorkloadIdentity,
} from '../../../src/telemetry/metrics.ts';
import { PRODUCTPAGE, REVIEWS } from '../../helpers/metric-parties.ts';

const self: WorkloadIdentity = PRODUCTPAGE;
const peer = REVIEWS;

t.test('source-side labels: all 25, Istio conventions', async (t) => {
  const l = istioLabels('source', self, peer, { app: 'reviews', version: 'v2' }, 200, '');
  t.same(Object.keys(l).sort(), [...ISTIO_LABELS].sort());
  t.equal(ISTIO_LABELS.length, 25);
  t.equal(l.reporter, 'source');
  t.equal(l.source_workload, 'productpage');
  t.equal(l.destination_app, 'reviews');
  t.equal(l.destination_version, 'v2');
  t.equal(l.destination_canonical_revision, 'v2');
  t.equal(l.response_flags, '-', 'no flags is "-"');
  t.equal(l.connection_security_policy, 'unknown', 'always unknown on the client side');
  const d = istioLabels('destination', self, peer, {}, 0, 'DC');
  t.equal(d.destination_workload, 'productpage', 'the proxy is the destination on inbound');
  t.equal(d.source_workload, 'unknown');
  t.equal(d.response_code, '0');
  t.equal(d.response_flags, 'DC');
  t.equal(d.connection_security_policy, 'none');
});

t.test('canonical service and revision fall back as Istio does', async (t) => {
  t.same(canonicalOf({ 'service.istio.io/canonical-name': 'a', app: 'b', version: 'v9' }, 'w'), {
    service: 'a',
    revision: 'v9',
  });
  t.same(canonicalOf({ 'app.kubernetes.io/name': 'k', 'app.kubernetes.io/version': '3' }, 'w'), {
    service: 'k',
    revision: '3',
  });
  t.same(canonicalOf({}, 'w'), { service: 'w', revision: 'latest' });
});

t.test('counter and histogram exposition', async (t) => {
  const m = new MeshMetrics();
  const labels = () => istioLabels('source', self, peer, {}, 200, '');
  m.record('k200', labels, 0.3, 0, 64);
  m.record('k200', labels, 7, 3, 700);
  m.record('k200', labels, 4000000, 20000, 0);
  m.record('k503', () => istioLabels('source', self, peer, {}, 503, 'UF'), 12, 0, 0);
  m.reload('rejected');
  const text = await m.exposition();
  t.match(text, /# TYPE istio_requests_total counter/);
  t.match(text, /# TYPE istio_request_duration_milliseconds histogram/);
  t.match(text, /istio_requests_total\{[^}]*response_code="200"[^}]*\} 3\n/);
  t.match(text, /istio_requests_total\{[^}]*response_code="503"[^}]*response_flags="UF"[^}]*\} 1\n/);
  t.match(
    text,
    /istio_request_duration_milliseconds_bucket\{[^}]*response_code="200"[^}]*le="0\.5"\} 1\n/,
    '0.3 ms in the first bucket',
  );
  t.match(text, /istio_request_duration_milliseconds_bucket\{[^}]*response_code="200"[^}]*le="5"\} 1\n/);
  t.match(
    text,
    /istio_request_duration_milliseconds_bucket\{[^}]*response_code="200"[^}]*le="10"\} 2\n/,
    'cumulative',
  );
  t.match(
    text,
    /istio_request_duration_milliseconds_bucket\{[^}]*response_code="200"[^}]*le="3600000"\} 2\n/,
  );
  t.match(text, /istio_request_duration_milliseconds_bucket\{[^}]*response_code="200"[^}]*le="\+Inf"\} 3\n/);
  t.match(text, /istio_request_duration_milliseconds_sum\{[^}]*response_code="200"[^}]*\} 4000007\.3\n/);
  t.match(text, /istio_request_duration_milliseconds_count\{[^}]*response_code="200"[^}]*\} 3\n/);
  t.match(text, /# TYPE istio_request_bytes histogram/);
  t.match(text, /# TYPE istio_response_bytes histogram/);
  t.match(
    text,
    /istio_request_bytes_bucket\{[^}]*response_code="200"[^}]*le="0\.5"\} 1\n/,
    'no body: 0 bytes',
  );
  t.match(text, /istio_request_bytes_bucket\{[^}]*response_code="200"[^}]*le="1"\} 1\n/);
  t.match(text, /istio_request_bytes_bucket\{[^}]*response_code="200"[^}]*le="5"\} 2\n/);
  t.match(text, /istio_request_bytes_bucket\{[^}]*response_code="200"[^}]*le="10000"\} 2\n/);
  t.match(text, /istio_request_bytes_bucket\{[^}]*response_code="200"[^}]*le="30000"\} 3\n/);
  t.match(text, /istio_request_bytes_sum\{[^}]*response_code="200"[^}]*\} 20003\n/);
  t.match(text, /istio_request_bytes_count\{[^}]*response_code="200"[^}]*\} 3\n/);
  t.match(text, /istio_response_bytes_bucket\{[^}]*response_code="200"[^}]*le="50"\} 1\n/);
  t.match(text, /istio_response_bytes_bucket\{[^}]*response_code="200"[^}]*le="100"\} 2\n/);
  t.match(text, /istio_response_bytes_bucket\{[^}]*response_code="200"[^}]*le="1000"\} 3\n/);
  t.match(text, /istio_response_bytes_sum\{[^}]*response_code="200"[^}]*\} 764\n/);
  t.match(text, /istio_response_bytes_sum\{[^}]*response_code="503"[^}]*\} 0\n/);
  t.match(text, /# TYPE istio_build gauge\nistio_build\{component="proxy",tag="\d+\.\d+\.\d+[^"]*"\} 1\n/);
  t.match(text, /meshlet_config_reloads_total\{result="rejected"\} 1\n/);
  t.match(text, /meshlet_config_reloads_total\{result="applied"\} 0\n/);
  t.match(text, /meshlet_process_cpu_seconds_total/);
});

t.test('principal labels and connection security policy', async (t) => {
  const inbound = istioLabels('destination', self, peer, {}, 200, '', {
    sourcePrincipal: 'spiffe://cluster.local/ns/shop/sa/a',
    destinationPrincipal: 'spiffe://cluster.local/ns/default/sa/productpage',
    mutualTls: true,
    peerNamespace: 'shop',
  });
  t.equal(inbound.source_principal, 'spiffe://cluster.local/ns/shop/sa/a');
  t.equal(inbound.destination_principal, 'spiffe://cluster.local/ns/default/sa/productpage');
  t.equal(inbound.connection_security_policy, 'mutual_tls');
  t.equal(inbound.source_workload_namespace, 'shop', "the caller's namespace from its certificate");
  t.equal(inbound.destination_service_namespace, 'default');
  const outbound = istioLabels('source', self, peer, {}, 200, '', {
    sourcePrincipal: 'spiffe://cluster.local/ns/default/sa/productpage',
    destinationPrincipal: 'spiffe://cluster.local/ns/default/sa/reviews',
    mutualTls: true,
  });
  t.equal(outbound.connection_security_policy, 'unknown', 'unknown on the client side even with mTLS');
  t.equal(outbound.destination_principal, 'spiffe://cluster.local/ns/default/sa/reviews');
  const plain = istioLabels('destination', self, peer, {}, 200, '');
  t.same([plain.source_principal, plain.destination_principal], ['unknown', 'unknown']);
});

t.test('certificate metrics are computed at scrape time; handshake errors per listener', async (t) => {
  const m = new MeshMetrics();
  let now = Date.UTC(2026, 0, 1);
  let cert: { notAfter: Date } | null = null;
  let rotations = 0;
  m.attachIdentities(
    () => [
      {
        spiffeId: 'spiffe://cluster.local/ns/default/sa/a',
        current: () => (cert === null ? null : ({ notAfter: cert.notAfter } as never)),
        get rotations() {
          return rotations;
        },
      },
    ],
    () => now,
  );
  m.attachListeners(() => [
    { name: 'inbound', tlsHandshakeErrors: () => 4, plaintextRefused: () => 2 },
    { name: 'outbound' },
  ]);
  let text = await m.exposition();
  t.notMatch(text, /meshlet_certificate_expiry_seconds\{/, 'no certificate yet: no series');
  t.match(
    text,
    /meshlet_certificate_rotations_total\{spiffe_id="spiffe:\/\/cluster.local\/ns\/default\/sa\/a"\} 0/,
  );
  t.match(text, /meshlet_tls_handshake_errors_total\{listener="inbound"\} 4/);
  t.match(text, /meshlet_tls_plaintext_refused_total\{listener="inbound"\} 2/);
  t.notMatch(text, /listener="outbound"/, 'a listener without TLS has no counter');
  cert = { notAfter: new Date(now + 3600_000) };
  rotations = 2;
  now += 600_000;
  text = await m.exposition();
  t.match(
    text,
    /meshlet_certificate_expiry_seconds\{spiffe_id="spiffe:\/\/cluster.local\/ns\/default\/sa\/a"\} 3000/,
  );
  t.match(text, /meshlet_certificate_rotations_total\{[^}]*\} 2/);
  t.match(text, /# TYPE meshlet_certificate_expiry_seconds gauge/);
  t.match(text, /# TYPE meshlet_certificate_rotations_total counter/);
});

t.test('keys with equal labels share one series: no duplicate in the exposition', async (t) => {
  const m = new MeshMetrics();
  // Two endpoints of reviews with the same app/version labels: two keys, one label set.
  const labels = () => istioLabels('source', self, peer, { app: 'reviews', version: 'v1' }, 200, '');
  m.record('ep1|200', labels, 1, 0, 10);
  m.record('ep2|200', labels, 2, 0, 10);
  const s1 = m.requestSeries('ep1|200', labels);
  const s2 = m.requestSeries('ep2|200', labels);
  t.equal(s1, s2, 'the same series object');
  m.observe(s2, 3, 0, 10);
  const text = await m.exposition();
  const lines = text.split('\n').filter((l) => l.startsWith('istio_requests_total{'));
  t.equal(lines.length, 1, 'one istio_requests_total series');
  t.match(lines[0], / 3$/);
  t.equal(m.requestSeriesCount, 1);
});

t.test('past the series cap, new label sets fold into overflow series and are counted', async (t) => {
  const m = new MeshMetrics({ maxRequestSeries: 2 });
  const svc = (name: string) => ({
    serviceFqdn: `${name}.default.svc.cluster.local`,
    serviceName: name,
    serviceNamespace: 'default',
  });
  const rec = (name: string, code: number, flags = '') =>
    m.record(
      `${name}|${code}|${flags}`,
      () => istioLabels('source', self, svc(name), {}, code, flags),
      5,
      0,
      0,
    );
  rec('a', 200);
  rec('b', 200);
  rec('a', 200);
  t.equal(m.requestSeriesCount, 2);
  rec('c', 200);
  rec('d', 200);
  rec('e', 503, 'UF');
  rec('a', 200);
  const text = await m.exposition();
  t.notMatch(text, /destination_service_name="c"/, 'the third service gets no series of its own');
  t.notMatch(text, /destination_service_name="d"/);
  t.match(
    text,
    /istio_requests_total\{[^}]*destination_service_name="a"[^}]*\} 3\n/,
    'series under the cap keep counting',
  );
  const overflow200 = text
    .split('\n')
    .filter((l) => l.startsWith('istio_requests_total{') && l.includes('destination_service_name="unknown"'));
  t.equal(overflow200.length, 2, 'one overflow series per code and flags');
  t.match(
    overflow200.join('\n'),
    /reporter="source"[^}]*response_code="200"[^}]*response_flags="-"[^}]*\} 2/,
  );
  t.match(overflow200.join('\n'), /response_code="503"[^}]*response_flags="UF"[^}]*\} 1/);
  t.match(text, /source_workload="unknown"/, 'the overflow series hold no other value');
  t.match(text, /meshlet_metric_series_overflow_total 3\n/);
  t.equal(m.requestSeriesCount, 4);
});

t.test('listener connection counts are read at scrape time', async (t) => {
  const m = new MeshMetrics();
  let active = 2;
  m.attachListenerConnections(() => [
    { name: 'outbound', connectionsActive: () => active, connectionsTotal: () => 9 },
    { name: 'inbound', connectionsActive: () => 0, connectionsTotal: () => 0 },
  ]);
  let text = await m.exposition();
  t.match(text, /# TYPE meshlet_listener_connections_active gauge/);
  t.match(text, /# TYPE meshlet_listener_connections_total counter/);
  t.match(text, /meshlet_listener_connections_active\{listener="outbound"\} 2\n/);
  t.match(text, /meshlet_listener_connections_total\{listener="outbound"\} 9\n/);
  t.match(text, /meshlet_listener_connections_total\{listener="inbound"\} 0\n/);
  active = 1;
  text = await m.exposition();
  t.match(text, /meshlet_listener_connections_active\{listener="outbound"\} 1\n/);
  t.match(text, /# TYPE meshlet_nodejs_eventloop_lag_p99_seconds gauge/, "prom-client's event-loop lag");
});

t.test('label values are escaped in the exposition', async (t) => {
  const m = new MeshMetrics();
  const odd = { serviceFqdn: 'a"b\\c\nd', serviceName: 'x', serviceNamespace: 'default' };
  m.record('odd', () => istioLabels('source', self, odd, {}, 200, ''), 1, 0, 0);
  const text = await m.exposition();
  t.match(text, 'istio_requests_total{reporter="source",source_workload="productpage",');
  t.match(text, 'destination_service="a\\"b\\\\c\\nd"');
  const kept = m.requestSeries('odd', () => istioLabels('source', self, odd, {}, 200, ''));
  m.resetRequests();
  t.notMatch(await m.exposition(), /istio_requests_total\{/, 'reset forgets the series');
  m.observe(kept, 2, 0, 0);
  t.match(await m.exposition(), /istio_requests_total\{[^}]*\} 1\n/, 'a kept series registers again');
});
