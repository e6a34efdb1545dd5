/**
 * Proxy document: the zero-trust fields (trustDomain, rootNamespace, serviceAccount, labels,
 * identity, workloads and mode node).
 */
import { join } from 'node:path';
import t from 'tap';
import { parseConfigText } from '../../../src/config/load-config.ts';
import type { ConfigBundle } from '../../../src/config/resource-types.ts';

const DIR = '/etc/meshlet';

function proxy(spec: string): ConfigBundle {
  return parseConfigText(
    [
      {
        name: join(DIR, 'proxy.yaml'),
        text: `apiVersion: meshlet.dev/v1alpha1\nkind: Proxy\nspec:\n${spec}`,
      },
    ],
    {},
  );
}

const msgs = (b: ConfigBundle, severity = 'error') =>
  b.issues
    .filter((i) => i.severity === severity)
    .map((e) => `${e.path.replace(/^Proxy \S+: /, '')} | ${e.message}`);

t.test('trustDomain, rootNamespace, serviceAccount and labels', async (t) => {
  const b = proxy(`  trustDomain: example.org
  rootNamespace: mesh-system
  serviceAccount: productpage.v1
  labels: {app: productpage, app.kubernetes.io/version: "1.0"}`);
  t.same(b.issues, []);
  t.same(b.proxy?.spec, {
    serviceAccount: 'productpage.v1',
    labels: { app: 'productpage', 'app.kubernetes.io/version': '1.0' },
    trustDomain: 'example.org',
    rootNamespace: 'mesh-system',
  });
  const bad = proxy(`  trustDomain: Example.org
  rootNamespace: Mesh_System
  serviceAccount: "sa/x"
  labels: {"": x, app: "a b"}`);
  t.same(msgs(bad), [
    'spec.trustDomain | trustDomain "Example.org" must be a SPIFFE trust domain: lower-case letters, digits, ".", "_" and "-"',
    'spec.rootNamespace | rootNamespace "Mesh_System" must be a DNS label',
    'spec.serviceAccount | serviceAccount "sa/x" must be a Kubernetes service account name (a DNS subdomain)',
    'spec.labels[""] | invalid label "": empty key',
    'spec.labels.app | invalid label "app": a label value is at most 63 letters, digits, "-", "_" or "." starting and ending with a letter or digit',
  ]);
  t.equal(bad.proxy, null);
  t.same(
    msgs(proxy(`  trustDomain: "${'a'.repeat(256)}"`)).length,
    1,
    'a trust domain is at most 255 characters',
  );
});

t.test('identity ca: paths resolved against the configuration folder, certTtl in ms', async (t) => {
  const b = proxy(`  identity:
    ca: {certFile: ca/cert.pem, keyFile: /abs/key.pem, trustBundleFile: ./roots.pem, certTtl: 12h}`);
  t.same(b.issues, []);
  t.same(b.proxy?.spec.identity, {
    kind: 'ca',
    caCertFile: join(DIR, 'ca/cert.pem'),
    caKeyFile: '/abs/key.pem',
    trustBundleFile: join(DIR, 'roots.pem'),
    certTtl: 43_200_000,
  });
  const minimal = proxy('  identity: {ca: {certFile: c.pem, keyFile: k.pem}}');
  t.same(minimal.issues, []);
  t.same(
    minimal.proxy?.spec.identity,
    { kind: 'ca', caCertFile: join(DIR, 'c.pem'), caKeyFile: join(DIR, 'k.pem') },
    'certTtl absent stays absent (the runtime default is 24h)',
  );
  const edges = proxy('  identity: {ca: {certFile: c, keyFile: k, certTtl: 1m}}');
  t.same(edges.issues, [], 'one minute is the shortest lifetime');
  t.same(
    msgs(proxy('  identity: {ca: {certFile: c, keyFile: k, certTtl: 2160h}}')),
    [],
    '90 days is the longest',
  );
  t.same(msgs(proxy('  identity: {ca: {certFile: c, keyFile: k, certTtl: 59s}}')), [
    'spec.identity.ca.certTtl | certTtl must be between 1m and 2160h (90 days)',
  ]);
  t.same(msgs(proxy('  identity: {ca: {certFile: c, keyFile: k, certTtl: 2161h}}')), [
    'spec.identity.ca.certTtl | certTtl must be between 1m and 2160h (90 days)',
  ]);
  t.same(msgs(proxy('  identity: {ca: {certFile: "", trustBundleFile: 3, ttl: 1h}}')), [
    'spec.identity.ca.keyFile | keyFile is required',
    'spec.identity.ca.certFile | certFile must not be empty',
    'spec.identity.ca.trustBundleFile | expected string, got number',
    'spec.identity.ca.ttl | unknown field',
  ]);
});

t.test('identity files: three paths, all required', async (t) => {
  const b = proxy(`  identity:
    files: {certFile: certs/cert.pem, keyFile: certs/key.pem, trustBundleFile: /var/run/bundle.pem}`);
  t.same(b.issues, []);
  t.same(b.proxy?.spec.identity, {
    kind: 'files',
    certFile: join(DIR, 'certs/cert.pem'),
    keyFile: join(DIR, 'certs/key.pem'),
    trustBundleFile: '/var/run/bundle.pem',
  });
  t.same(msgs(proxy('  identity: {files: {certFile: c, certTtl: 1h}}')), [
    'spec.identity.files.keyFile | keyFile is required',
    'spec.identity.files.trustBundleFile | trustBundleFile is required',
    'spec.identity.files.certTtl | unknown field',
  ]);
});

t.test('identity: exactly one of ca and files', async (t) => {
  t.same(msgs(proxy('  identity: {}')), [
    'spec.identity | identity needs ca (issue certificates from a CA) or files (certificates managed outside)',
  ]);
  t.same(
    msgs(
      proxy(
        '  identity:\n    ca: {certFile: a, keyFile: b}\n    files: {certFile: a, keyFile: b, trustBundleFile: c}\n    spire: {}',
      ),
    ),
    [
      'spec.identity.files | ca and files are mutually exclusive (identity comes from one source)',
      'spec.identity.spire | unknown field',
    ],
  );
  t.same(msgs(proxy('  identity: {ca: x}')), ['spec.identity.ca | expected map, got string']);
  t.same(msgs(proxy('  identity: {files: x}')), ['spec.identity.files | expected map, got string']);
  t.same(msgs(proxy('  identity: files')), ['spec.identity | expected map, got string']);
});

const WORKLOADS = `  mode: node
  namespace: shop
  identity: {ca: {certFile: ca.pem, keyFile: ca-key.pem}}
  workloads:
  - name: reviews
    serviceAccount: reviews
    labels: {app: reviews, version: v1}
    inboundPort: 15106
    app: 127.0.0.1:9080
  - name: ratings
    namespace: data
    inboundPort: 0
    app: "[::1]:9081"
    identity: {files: {certFile: r/cert.pem, keyFile: r/key.pem, trustBundleFile: r/ca.pem}}
  - name: details
    inboundPort: 0
    app: localhost:9082`;

t.test('mode node: workloads with their own ports, apps, accounts and identities', async (t) => {
  const b = proxy(WORKLOADS);
  t.same(b.issues, []);
  t.same(b.proxy?.spec.workloads, [
    {
      name: 'reviews',
      serviceAccount: 'reviews',
      labels: { app: 'reviews', version: 'v1' },
      inboundPort: 15106,
      app: '127.0.0.1:9080',
    },
    {
      name: 'ratings',
      namespace: 'data',
      inboundPort: 0,
      app: '[::1]:9081',
      identity: {
        kind: 'files',
        certFile: join(DIR, 'r/cert.pem'),
        keyFile: join(DIR, 'r/key.pem'),
        trustBundleFile: join(DIR, 'r/ca.pem'),
      },
    },
    { name: 'details', inboundPort: 0, app: 'localhost:9082' },
  ]);
  t.equal(b.proxy?.spec.mode, 'node');
});

t.test('workloads: required fields, unique names and ports, no clash with outbound or admin', async (t) => {
  const b = proxy(`  mode: node
  outboundPort: 16001
  workloads:
  - {name: a, inboundPort: 15106, app: "127.0.0.1:1"}
  - {name: a, inboundPort: 15107, app: "127.0.0.1:2"}
  - {name: b, inboundPort: 15106, app: "127.0.0.1:3"}
  - {name: c, inboundPort: 16001, app: "127.0.0.1:4"}
  - {name: d, inboundPort: 15000, app: "127.0.0.1:5"}
  - {inboundPort: 0, app: "127.0.0.1:6"}
  - {name: f, app: "127.0.0.1:7"}
  - {name: g, inboundPort: 1}
  - {name: h, inboundPort: 2, app: "nope", namespace: Bad, serviceAccount: "Bad", labels: {"a*": b}, port: 3}
  - {name: "I", inboundPort: 70000, app: "127.0.0.1:0"}
  - ~
  - {name: j, inboundPort: 0, app: "127.0.0.1:8"}
  - {name: k, inboundPort: 0, app: "127.0.0.1:9"}`);
  t.same(msgs(b), [
    'spec.workloads[1].name | duplicate workload name "a"',
    'spec.workloads[2].inboundPort | inboundPort 15106 is already used by workload a',
    'spec.workloads[3].inboundPort | inboundPort 16001 is already used by outboundPort',
    'spec.workloads[4].inboundPort | inboundPort 15000 is already used by adminPort',
    'spec.workloads[5].name | name is required',
    'spec.workloads[6].inboundPort | inboundPort is required',
    'spec.workloads[7].app | app is required',
    'spec.workloads[8].app | app "nope" must be HOST:PORT',
    'spec.workloads[8].namespace | namespace "Bad" must be a DNS label',
    'spec.workloads[8].serviceAccount | serviceAccount "Bad" must be a Kubernetes service account name (a DNS subdomain)',
    'spec.workloads[8].labels["a*"] | invalid label "a*": wildcards are not supported',
    'spec.workloads[8].port | unknown field',
    'spec.workloads[9].name | workload name "I" must be a lowercase DNS name',
    'spec.workloads[9].inboundPort | port number 70000 is out of range (0-65535)',
    'spec.workloads[9].app | app "127.0.0.1:0" must be HOST:PORT',
    'spec.workloads[10] | a workload must not be null',
  ]);
  t.equal(b.proxy, null, 'an invalid Proxy is not used');
  const defaults = proxy(`  mode: node
  workloads: [{name: a, inboundPort: 15001, app: "127.0.0.1:1"}]`);
  t.same(
    msgs(defaults),
    ['spec.workloads[0].inboundPort | inboundPort 15001 is already used by outboundPort'],
    'the default outbound port counts',
  );
  const zeroOutbound = proxy(`  mode: node
  outboundPort: 0
  workloads: [{name: a, inboundPort: 15001, app: "127.0.0.1:1"}]`);
  t.same(msgs(zeroOutbound), [], 'port 0 (pick one) clashes with nothing');
});

t.test('mode: node needs workloads; sidecar mode must not have them', async (t) => {
  t.same(msgs(proxy('  mode: node')), [
    'spec.mode | mode: node needs workloads (each with a name, an inboundPort and an app)',
  ]);
  t.same(msgs(proxy('  mode: node\n  workloads: []')), [
    'spec.workloads | mode: node needs workloads (each with a name, an inboundPort and an app)',
  ]);
  const sidecar = 'workloads: [{name: a, inboundPort: 0, app: "127.0.0.1:1"}]';
  t.same(msgs(proxy(`  mode: sidecar\n  ${sidecar}`)), [
    'spec.workloads | workloads are only used with mode: node; a sidecar serves one workload (its app)',
  ]);
  t.same(
    msgs(proxy(`  ${sidecar}`)),
    ['spec.workloads | workloads are only used with mode: node; a sidecar serves one workload (its app)'],
    'the default mode is sidecar',
  );
  const extra = proxy(`  mode: node\n  app: 127.0.0.1:1\n  inboundPort: 15006\n  ${sidecar}`);
  t.same(msgs(extra), []);
  t.same(msgs(extra, 'warning'), [
    'spec.app | app is not used in node mode: each workload has its own',
    'spec.inboundPort | inboundPort is not used in node mode: each workload has its own',
  ]);
});

t.test('node mode: one set of identity files cannot serve several workloads', async (t) => {
  const shared = proxy(`  mode: node
  identity: {files: {certFile: c, keyFile: k, trustBundleFile: b}}
  workloads:
  - {name: a, inboundPort: 0, app: "127.0.0.1:1"}
  - {name: b, inboundPort: 0, app: "127.0.0.1:2", identity: {files: {certFile: c2, keyFile: k2, trustBundleFile: b}}}
  - {name: c, inboundPort: 0, app: "127.0.0.1:3"}`);
  t.same(msgs(shared), [
    "spec.workloads[0] | workload a needs its own identity: the Proxy's identity.files holds one certificate (one service account); give each workload identity.files, or use identity.ca to issue one per workload",
    "spec.workloads[2] | workload c needs its own identity: the Proxy's identity.files holds one certificate (one service account); give each workload identity.files, or use identity.ca to issue one per workload",
  ]);
  const single = proxy(`  mode: node
  identity: {files: {certFile: c, keyFile: k, trustBundleFile: b}}
  workloads: [{name: a, inboundPort: 0, app: "127.0.0.1:1"}]`);
  t.same(msgs(single), [], 'one workload may use the Proxy files');
});
