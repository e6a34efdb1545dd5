import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
    'spec.trafficPolicy.tls.clientCertificate | clientCertificate is required for mode MUTUAL (meshlet does not read credentialName)',
    'spec.trafficPolicy.tls.privateKey | privateKey is required for mode MUTUAL (meshlet does not read credentialName)',
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
    'spec.trafficPolicy.connectionPool.tcp.maxConnectons | unknown field; ignored',
  ]);
  t.same(b.destinationRules[0]?.spec.trafficPolicy?.connectionPool, { tcp: {} });
});

t.test('acted-on components give no warning, tls included', async (t) => {
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
    outlierDetection: { consecutive5xxErrors: 3, interval: 1s, minHealthPercent: 50 }
    connectionPool:
      tcp: { maxConnections: 10, connectTimeout: 1s, idleTimeout: 0s }
      http: { http1MaxPendingRequests: 1, http2MaxRequests: 2, maxRequestsPerConnection: 1, maxRetries: 3, idleTimeout: 5m, h2UpgradePolicy: DO_NOT_UPGRADE, useClientProtocol: false }
    tls: { mode: ISTIO_MUTUAL }
  subsets:
    - name: v1
      labels: { version: v1 }
      trafficPolicy:
        tls: { mode: DISABLE }
        loadBalancer:
          consistentHash: { httpQueryParameterName: user, maglev: { tableSize: 65537 } }
          localityLbSetting: { enabled: false }
`,
    },
  ]);
  t.same(
    b.issues.filter((i) => i.severity === 'error'),
    [],
  );
  t.same(
    b.issues.map((i) => `${i.pos.line}:${i.pos.col} ${i.message}`),
    [],
    'ISTIO_MUTUAL and DISABLE are acted on (no "sends plaintext" warning any more)',
  );
});

t.test('sub-fields meshlet does not act on are warnings naming the field', async (t) => {
  const b = load(`  host: reviews
  trafficPolicy:
    retryBudget: {percent: {value: 20}}
    loadBalancer:
      simple: PASSTHROUGH
      localityLbSetting: {enabled: true, failover: [{from: us-east, to: us-west}]}
      warmup: {duration: 30s}
    connectionPool:
      tcp: {tcpKeepalive: {time: 10s}, maxConnectionDuration: 1h}
      http: {h2UpgradePolicy: UPGRADE, useClientProtocol: true, maxConcurrentStreams: 100, http2KeepAlive: {interval: 10s}}
    outlierDetection: {consecutiveErrors: 5}
  subsets:
  - name: v1
    trafficPolicy:
      loadBalancer: {simple: ROUND_ROBIN, warmupDurationSecs: 10s}
`);
  t.same(msgs(b), []);
  t.same(msgs(b, 'warning'), [
    "spec.trafficPolicy.retryBudget | retryBudget (Istio's) is not implemented; ignored. meshlet applies the retryBudget of its Proxy document (spec.retryBudget) to every cluster",
    'spec.trafficPolicy.loadBalancer.simple | simple: PASSTHROUGH is not supported; the default P2C + peak-EWMA balancer is used',
    'spec.trafficPolicy.loadBalancer.localityLbSetting | localityLbSetting is not acted on (meshlet has no localities); every endpoint is treated alike',
    'spec.trafficPolicy.loadBalancer.warmup | warmup is not implemented; a new endpoint gets its full share of traffic at once',
    'spec.trafficPolicy.connectionPool.tcp.tcpKeepalive | tcpKeepalive is not implemented; upstream sockets keep the operating system keep-alive settings',
    'spec.trafficPolicy.connectionPool.tcp.maxConnectionDuration | maxConnectionDuration is not implemented; upstream connections are not closed for their age',
    'spec.trafficPolicy.connectionPool.http.h2UpgradePolicy | h2UpgradePolicy: UPGRADE is not supported; meshlet speaks HTTP/1.1 to upstreams',
    'spec.trafficPolicy.connectionPool.http.useClientProtocol | useClientProtocol is not supported; meshlet speaks HTTP/1.1 to upstreams whatever the client spoke',
    'spec.trafficPolicy.connectionPool.http.maxConcurrentStreams | maxConcurrentStreams applies to HTTP/2 only; meshlet speaks HTTP/1.1 to upstreams',
    'spec.trafficPolicy.connectionPool.http.http2KeepAlive | http2KeepAlive applies to HTTP/2 only; meshlet speaks HTTP/1.1 to upstreams',
    'spec.trafficPolicy.outlierDetection.consecutiveErrors | consecutiveErrors is deprecated and ignored (as Istio does); use consecutive5xxErrors or consecutiveGatewayErrors',
    'spec.subsets[0].trafficPolicy.loadBalancer.warmupDurationSecs | warmupDurationSecs is not implemented; a new endpoint gets its full share of traffic at once',
  ]);
  const tp = b.destinationRules[0]?.spec.trafficPolicy;
  t.same(tp?.outlierDetection, { consecutiveErrors: 5 }, 'ignored fields are still kept as validated data');
  t.equal(tp?.loadBalancer?.simple, 'PASSTHROUGH');
});

t.test(
  'consistentHash: names that reach the request path are checked; header names lowercased',
  async (t) => {
    const ok = load(`  host: reviews
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: X-User-ID, ringHash: {minimumRingSize: 0}}
  subsets:
  - name: a
    trafficPolicy:
      loadBalancer:
        consistentHash:
          httpCookie:
            name: session_id
            path: /shop
            ttl: 0s
            attributes: [{name: SameSite, value: Strict}, {name: Secure}]
          maglev: {tableSize: 0}
  - name: b
    trafficPolicy:
      loadBalancer:
        consistentHash: {useSourceIp: true, minimumRingSize: 0}
  - name: c
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpQueryParameterName: u, ringHash: {minimumRingSize: 8388608}}
`);
    t.same(msgs(ok), []);
    t.same(msgs(ok, 'warning'), []);
    const spec = ok.destinationRules[0]?.spec;
    t.same(
      spec?.trafficPolicy?.loadBalancer?.consistentHash,
      { httpHeaderName: 'x-user-id', ringHash: {} },
      'lowercase header name; a 0 ring size is the protobuf "unset" and is dropped',
    );
    t.same(spec?.subsets[0]?.trafficPolicy?.loadBalancer?.consistentHash, {
      httpCookie: {
        name: 'session_id',
        path: '/shop',
        ttl: 0,
        attributes: [{ name: 'SameSite', value: 'Strict' }, { name: 'Secure' }],
      },
      maglev: {},
    });
    t.same(spec?.subsets[1]?.trafficPolicy?.loadBalancer?.consistentHash, { useSourceIp: true });
    t.same(spec?.subsets[2]?.trafficPolicy?.loadBalancer?.consistentHash, {
      httpQueryParameterName: 'u',
      ringHash: { minimumRingSize: 8_388_608 },
    });

    const bad = load(`  host: reviews
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: "x user", ringHash: {minimumRingSize: 8388609}}
  subsets:
  - name: a
    trafficPolicy:
      loadBalancer:
        consistentHash:
          httpCookie:
            name: "sess;ion"
            path: "/a; Domain=evil.example"
            attributes: [{name: "Same Site"}, {name: SameSite, value: "Lax\\r\\nX-Evil: 1"}]
  - name: b
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpQueryParameterName: "", minimumRingSize: 10000000}
  - name: c
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpHeaderName: ""}
`);
    t.same(msgs(bad), [
      'spec.trafficPolicy.loadBalancer.consistentHash.httpHeaderName | header name "x user" is not a valid header name (a token: letters, digits and !#$%&\'*+-.^_`|~)',
      'spec.trafficPolicy.loadBalancer.consistentHash.ringHash.minimumRingSize | minimumRingSize 8388609 is above 8388608, the largest ring Envoy builds',
      'spec.subsets[0].trafficPolicy.loadBalancer.consistentHash.httpCookie.name | cookie name "sess;ion" is not a valid cookie name (a token: letters, digits and !#$%&\'*+-.^_`|~)',
      'spec.subsets[0].trafficPolicy.loadBalancer.consistentHash.httpCookie.path | cookie path must be printable ASCII without ";" (it is written into Set-Cookie)',
      'spec.subsets[0].trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes[0].name | cookie attribute name "Same Site" is not a valid cookie attribute name (a token: letters, digits and !#$%&\'*+-.^_`|~)',
      'spec.subsets[0].trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes[1].value | cookie attribute value must be printable ASCII without ";" (it is written into Set-Cookie)',
      'spec.subsets[1].trafficPolicy.loadBalancer.consistentHash.httpQueryParameterName | httpQueryParameterName must not be empty',
      'spec.subsets[1].trafficPolicy.loadBalancer.consistentHash.minimumRingSize | minimumRingSize 10000000 is above 8388608, the largest ring Envoy builds',
      'spec.subsets[2].trafficPolicy.loadBalancer.consistentHash.httpHeaderName | header name "" is not a valid header name (a token: letters, digits and !#$%&\'*+-.^_`|~)',
    ]);
    t.equal(bad.destinationRules.length, 0, 'a rule with any error is not kept');
  },
);

t.test('outlier and pool durations: at least 1 ms, timers capped at what Node can wait', async (t) => {
  const bad = load(`  host: reviews
  trafficPolicy:
    outlierDetection: {interval: 0s, baseEjectionTime: 100us, minHealthPercent: -1, maxEjectionPercent: 100}
    connectionPool: {tcp: {connectTimeout: 0.5ms}}
`);
  t.same(msgs(bad), [
    'spec.trafficPolicy.outlierDetection.interval | duration must be at least 1ms',
    'spec.trafficPolicy.outlierDetection.baseEjectionTime | duration must be at least 1ms',
    'spec.trafficPolicy.outlierDetection.minHealthPercent | value -1 is below the minimum 0',
    'spec.trafficPolicy.connectionPool.tcp.connectTimeout | duration must be at least 1ms',
  ]);
  const long = load(`  host: reviews
  trafficPolicy:
    outlierDetection: {interval: 600h, baseEjectionTime: 596h31m23.647s}
    connectionPool:
      tcp: {connectTimeout: 1000h, idleTimeout: 2000h}
      http: {idleTimeout: 9000h}
`);
  t.same(msgs(long), []);
  const capped = (ms: number) =>
    `${ms}ms is longer than meshlet's timers can wait; 2147483647ms (about 24.9 days) is used`;
  t.same(msgs(long, 'warning'), [
    `spec.trafficPolicy.outlierDetection.interval | ${capped(2_160_000_000)}`,
    `spec.trafficPolicy.connectionPool.tcp.connectTimeout | ${capped(3_600_000_000)}`,
    `spec.trafficPolicy.connectionPool.tcp.idleTimeout | ${capped(7_200_000_000)}`,
    `spec.trafficPolicy.connectionPool.http.idleTimeout | ${capped(32_400_000_000)}`,
  ]);
  const tp = long.destinationRules[0]?.spec.trafficPolicy;
  t.same(tp?.connectionPool, {
    tcp: { connectTimeout: 2_147_483_647, idleTimeout: 2_147_483_647 },
    http: { idleTimeout: 2_147_483_647 },
  });
  t.same(
    tp?.outlierDetection,
    { interval: 2_147_483_647, baseEjectionTime: 2_147_483_647 },
    'exactly 2^31 - 1 ms is kept without a warning',
  );
});

/** A temporary configuration folder with the given files (path → contents). */
function folder(files: Readonly<Record<string, string>>): string {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-dr-tls-'));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

const drFile = (dir: string, tls: string): ConfigBundle =>
  parseConfigText(
    [
      {
        name: join(dir, 'dr.yaml'),
        text: `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr}
spec:
  host: db.example.com
  trafficPolicy:
    tls: ${tls}
`,
      },
    ],
    {},
  );

t.test('tls: SIMPLE, MUTUAL and ISTIO_MUTUAL load without a plaintext warning', async (t) => {
  const dir = folder({ 'certs/cert.pem': 'c', 'certs/key.pem': 'k', 'certs/ca.pem': 'a' });
  for (const tls of [
    '{mode: SIMPLE}',
    '{mode: SIMPLE, sni: db.example.com, subjectAltNames: [db.example.com], caCertificates: certs/ca.pem}',
    '{mode: MUTUAL, clientCertificate: certs/cert.pem, privateKey: certs/key.pem}',
    '{mode: ISTIO_MUTUAL, sni: x, subjectAltNames: ["spiffe://cluster.local/ns/db/sa/db"]}',
    '{mode: SIMPLE, insecureSkipVerify: true}',
  ]) {
    const b = drFile(dir, tls);
    t.same(b.issues, [], tls);
    t.equal(b.destinationRules.length, 1);
  }
});

t.test('tls: file paths resolve against the folder of the configuration file', async (t) => {
  const dir = folder({ 'certs/cert.pem': 'c', 'certs/key.pem': 'k', 'ca.pem': 'a' });
  const b = drFile(
    dir,
    `{mode: MUTUAL, clientCertificate: certs/cert.pem, privateKey: ./certs/key.pem, caCertificates: ${join(dir, 'ca.pem')}}`,
  );
  t.same(b.issues, []);
  t.same(b.destinationRules[0]?.spec.trafficPolicy?.tls, {
    mode: 'MUTUAL',
    clientCertificate: join(dir, 'certs/cert.pem'),
    privateKey: join(dir, 'certs/key.pem'),
    caCertificates: join(dir, 'ca.pem'),
  });
});

t.test('tls: a missing or unreadable file is a warning naming the field and the path', async (t) => {
  const dir = folder({ 'cert.pem': 'c', 'sub/file': 'x' });
  const b = drFile(
    dir,
    '{mode: MUTUAL, clientCertificate: cert.pem, privateKey: missing/key.pem, caCertificates: sub}',
  );
  const warned = b.issues
    .filter((i) => i.severity === 'warning')
    .map((i) => `${i.path.replace(/^DestinationRule default\/dr: /, '')} | ${i.message}`);
  const later = 'connections to this destination fail (UF) until it can be read';
  t.same(warned, [
    `spec.trafficPolicy.tls.privateKey | privateKey file ${join(dir, 'missing/key.pem')} does not exist; ${later}`,
    `spec.trafficPolicy.tls.caCertificates | caCertificates file ${join(dir, 'sub')} is not a file; ${later}`,
  ]);
  t.same(msgs(b), [], 'no error: the files may be mounted later');
  t.equal(b.destinationRules.length, 1);
  t.same(b.destinationRules[0]?.spec.trafficPolicy?.tls, {
    mode: 'MUTUAL',
    clientCertificate: join(dir, 'cert.pem'),
    privateKey: join(dir, 'missing/key.pem'),
    caCertificates: join(dir, 'sub'),
  });
  const empty = drFile(dir, '{mode: SIMPLE, caCertificates: ""}');
  t.same(msgs(empty), ['spec.trafficPolicy.tls.caCertificates | caCertificates must not be empty']);
});

t.test('tls: credentialName and caCrl warn; MUTUAL needs the files even with credentialName', async (t) => {
  const dir = folder({ 'crl.pem': 'x' });
  const b = drFile(dir, '{mode: MUTUAL, credentialName: db-client, caCrl: crl.pem}');
  t.same(msgs(b), [
    'spec.trafficPolicy.tls.clientCertificate | clientCertificate is required for mode MUTUAL (meshlet does not read credentialName)',
    'spec.trafficPolicy.tls.privateKey | privateKey is required for mode MUTUAL (meshlet does not read credentialName)',
  ]);
  t.same(msgs(b, 'warning'), [
    'spec.trafficPolicy.tls.credentialName | credentialName names a Kubernetes secret (read by gateways); meshlet reads no secrets and ignores it: use clientCertificate, privateKey and caCertificates',
    'spec.trafficPolicy.tls.caCrl | caCrl is not checked: meshlet consults no revocation list, so a revoked server certificate is accepted',
  ]);
  const simple = drFile(dir, '{mode: SIMPLE, credentialName: db-ca}');
  t.same(msgs(simple), []);
  t.equal(msgs(simple, 'warning').length, 1);
  t.equal(simple.destinationRules.length, 1, 'a warning does not refuse the rule');
});

t.test('tls: ISTIO_MUTUAL with file fields is refused without looking at the files', async (t) => {
  const b = drFile(folder({}), '{mode: ISTIO_MUTUAL, clientCertificate: nowhere.pem}');
  t.same(msgs(b), [
    'spec.trafficPolicy.tls.clientCertificate | clientCertificate must not be set with mode ISTIO_MUTUAL',
  ]);
});
