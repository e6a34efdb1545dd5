import t from 'tap';
import { parseConfigText } from '../../../src/config/load-config.ts';
import type { ConfigBundle } from '../../../src/config/resource-types.ts';

function load(spec: string, ns = 'default'): ConfigBundle {
  const text = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr, namespace: ${ns}}
spec:
${spec}`;
  return parseConfigText([{ name: 'dr.yaml', text }], {});
}
const msgs = (b: ConfigBundle, severity = 'error') =>
  b.issues
    .filter((i) => i.severity === severity)
    .map((e) => `${e.path.replace(/^DestinationRule \S+: /, '')} | ${e.message}`);

t.test('traffic policy kept as plain data with durations in ms', async (t) => {
  const b = load(
    `  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool:
      tcp: {maxConnections: 99, connectTimeout: 6s, tcpKeepalive: {time: 2h, interval: 75s, probes: 9}}
      http: {http2MaxRequests: 33, maxRequestsPerConnection: 65, maxRetries: 4, http1MaxPendingRequests: 14, idleTimeout: 0s}
    outlierDetection: {interval: 8ms, baseEjectionTime: 1m, maxEjectionPercent: 11, consecutive5xxErrors: 0}
    tls: {mode: DISABLE}
    portLevelSettings:
    - port: {number: 443}
      tls: {mode: SIMPLE, sni: www.example.com}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer:
        consistentHash:
          httpCookie: {name: Cookie, ttl: 30s}
          minimumRingSize: 42
  workloadSelector: {matchLabels: {app: productpage}}
`,
    'shop',
  );
  t.same(msgs(b), []);
  const spec = b.destinationRules[0]?.spec;
  t.equal(spec?.host, 'reviews.shop.svc.cluster.local', 'host expanded with the DR namespace');
  t.same(spec?.trafficPolicy, {
    loadBalancer: { simple: 'ROUND_ROBIN' },
    connectionPool: {
      tcp: {
        maxConnections: 99,
        connectTimeout: 6000,
        tcpKeepalive: { probes: 9, time: 7_200_000, interval: 75_000 },
      },
      http: {
        http1MaxPendingRequests: 14,
        http2MaxRequests: 33,
        maxRequestsPerConnection: 65,
        maxRetries: 4,
        idleTimeout: 0,
      },
    },
    outlierDetection: {
      consecutive5xxErrors: 0,
      interval: 8,
      baseEjectionTime: 60_000,
      maxEjectionPercent: 11,
    },
    tls: { mode: 'DISABLE' },
    portLevelSettings: [{ port: 443, tls: { mode: 'SIMPLE', sni: 'www.example.com' } }],
  });
  t.same(spec?.subsets[1], {
    name: 'v2',
    labels: { version: 'v2' },
    trafficPolicy: {
      loadBalancer: { consistentHash: { httpCookie: { name: 'Cookie', ttl: 30_000 }, minimumRingSize: 42 } },
      portLevelSettings: [],
    },
  });
  t.same(spec?.workloadSelector, { app: 'productpage' });
});

t.test('traffic policy shape errors', async (t) => {
  const b = load(`  host: "*.foo.com"
  trafficPolicy:
    loadBalancer:
      simple: FASTEST
      consistentHash: {useSourceIp: true, httpHeaderName: x-user, maglev: {tableSize: 100}}
    connectionPool:
      tcp: {connectTimeout: 0s, maxConnections: -1}
      http: {h2UpgradePolicy: MAYBE}
    outlierDetection: {maxEjectionPercent: 101, interval: soon}
    tls: {mode: MUTUAL}
    portLevelSettings:
    - tls: {mode: ISTIO_MUTUAL, caCertificates: /ca.pem}
    - port: {number: 80}
    - port: {number: 80}
  subsets:
  - labels: {a: b}
  - name: V_1
  - name: v1
  - name: v1
`);
  t.same(msgs(b), [
    'spec.trafficPolicy.loadBalancer.simple | invalid value "FASTEST"; expected one of UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST',
    'spec.trafficPolicy.loadBalancer.consistentHash | simple and consistentHash are mutually exclusive (loadBalancer policy)',
    'spec.trafficPolicy.loadBalancer.consistentHash.useSourceIp | httpHeaderName and useSourceIp are mutually exclusive (consistentHash hash key)',
    'spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize | maglev tableSize must be a prime number below 5000011',
    'spec.trafficPolicy.connectionPool.tcp.connectTimeout | duration must be at least 1ms',
    'spec.trafficPolicy.connectionPool.tcp.maxConnections | value -1 is below the minimum 0',
    'spec.trafficPolicy.connectionPool.http.h2UpgradePolicy | invalid value "MAYBE"; expected one of DEFAULT, DO_NOT_UPGRADE, UPGRADE',
    'spec.trafficPolicy.outlierDetection.maxEjectionPercent | value 101 is above the maximum 100',
    'spec.trafficPolicy.outlierDetection.interval | invalid duration "soon": missing number (use Go syntax such as 1h, 1m30s, 500ms, 1.5s)',
    'spec.trafficPolicy.tls.clientCertificate | clientCertificate is required for mode MUTUAL (or set credentialName)',
    'spec.trafficPolicy.tls.privateKey | privateKey is required for mode MUTUAL (or set credentialName)',
    'spec.trafficPolicy.portLevelSettings[0].port | port is required',
    'spec.trafficPolicy.portLevelSettings[0].tls.caCertificates | caCertificates must not be set with mode ISTIO_MUTUAL',
    'spec.trafficPolicy.portLevelSettings[2].port | duplicate portLevelSettings entry for port 80',
    'spec.subsets[0].name | subset name is required',
    'spec.subsets[1].name | subset name "V_1" must be a DNS label (lowercase letters, digits and "-")',
    'spec.subsets[3].name | duplicate subset name "v1"',
  ]);
  t.equal(b.destinationRules.length, 0);
});

t.test('unknown and not implemented fields warn', async (t) => {
  const b = load(`  host: reviews
  trafficPolicy:
    tunnel: {protocol: CONNECT, targetHost: x, targetPort: 1}
    connectionPool: {tcp: {maxConnectons: 3}}
`);
  t.same(msgs(b), []);
  t.same(msgs(b, 'warning'), [
    'spec.trafficPolicy.tunnel | tunnel is not implemented; ignored',
    'spec.trafficPolicy.connectionPool | connectionPool is validated but not acted on yet; no connection or request limits apply',
    'spec.trafficPolicy.connectionPool.tcp.maxConnectons | unknown field; ignored',
  ]);
  t.same(b.destinationRules[0]?.spec.trafficPolicy?.connectionPool, { tcp: {} });
});

t.test('policy components that are not acted on yet are warnings naming them', async (t) => {
  const b = parseConfigText([
    {
      name: 'dr.yaml',
      text: `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: r }
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: { simple: RANDOM }
    outlierDetection: { consecutive5xxErrors: 3 }
    tls: { mode: ISTIO_MUTUAL }
  subsets:
    - name: v1
      labels: { version: v1 }
      trafficPolicy: { tls: { mode: DISABLE } }
`,
    },
  ]);
  t.same(
    b.issues.filter((i) => i.severity === 'error'),
    [],
  );
  const warnings = b.issues.map((i) => `${i.pos.line}:${i.pos.col} ${i.message}`);
  t.same(warnings, [
    '7:19 loadBalancer is validated but not acted on yet; endpoints are balanced by weighted round robin',
    '8:23 outlierDetection is validated but not acted on yet; no endpoint is ejected',
    '9:10 tls mode ISTIO_MUTUAL is not implemented yet: meshlet sends plaintext to this destination',
  ]);
});
