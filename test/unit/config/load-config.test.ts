import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { formatIssue } from '../../../src/config/format-issue.ts';
import { loadConfig, parseConfigText } from '../../../src/config/load-config.ts';
import type { ConfigBundle, LoadOptions } from '../../../src/config/resource-types.ts';

const here = dirname(fileURLToPath(import.meta.url));
const fixtures = resolve(here, '../../fixtures/config');

function load(text: string, options: LoadOptions = {}): ConfigBundle {
  return parseConfigText([{ name: 'test.yaml', text }], options);
}
const errors = (b: ConfigBundle) => b.issues.filter((i) => i.severity === 'error');
const warnings = (b: ConfigBundle) => b.issues.filter((i) => i.severity === 'warning');

const SE = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: ext
spec:
  hosts: [ext.example.com]
  ports:
  - number: 80
    name: http
`;

t.test('a YAML syntax error reports file:line:col and other documents still load', async (t) => {
  const path = join(fixtures, 'broken-syntax.yaml');
  const b = await loadConfig(path, {});
  t.equal(errors(b).length, 1);
  const e = errors(b)[0];
  t.same(e?.pos, { file: path, line: 12, col: 15 });
  t.match(e?.message, /^YAML syntax error: /);
  t.equal(formatIssue(e!), `${path}:12:15: error: ${e?.message}`);
  t.same(
    b.serviceEntries.map((s) => s.meta.name),
    ['fine'],
  );
});

t.test('a wrong field type reports the exact line, column and path', async (t) => {
  const b = load(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: shop
spec:
  hosts:
  - reviews
  http:
  - match:
    - uri:
        prefix: /a
    - uri:
        regex: 42
    route:
    - destination:
        host: reviews
`);
  t.equal(errors(b).length, 1);
  const e = errors(b)[0]!;
  t.same(e.pos, { file: 'test.yaml', line: 14, col: 16 });
  t.equal(e.path, 'VirtualService shop/reviews: spec.http[0].match[1].uri.regex');
  t.equal(e.message, 'expected string, got number');
  t.equal(
    formatIssue(e),
    'test.yaml:14:16: error: VirtualService shop/reviews: spec.http[0].match[1].uri.regex: expected string, got number',
  );
  t.equal(b.virtualServices.length, 0, 'an invalid resource is not kept');
});

t.test('all problems are collected, across documents and files', async (t) => {
  const b = parseConfigText(
    [
      {
        name: 'one.yaml',
        text: `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: bad
spec:
  hosts: ["*"]
  ports:
  - number: 70000
    name: http
  - number: 80
  resolution: STATIC
  endpoints:
  - address: not-an-ip
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: vs
spec:
  hosts: [a, a]
  http:
  - route:
    - destination: {host: a}
    redirect: {uri: /x}
`,
      },
      {
        name: 'two.yaml',
        text: `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr}
spec:
  host: a
  subsets: [{name: v1}, {name: v1}]
`,
      },
    ],
    {},
  );
  const got = errors(b).map((i) => `${i.pos.file}:${i.pos.line}:${i.pos.col} ${i.path} | ${i.message}`);
  t.same(got, [
    'one.yaml:6:11 ServiceEntry default/bad: spec.hosts[0] | invalid host "*": bare "*" is not a valid ServiceEntry host',
    'one.yaml:8:13 ServiceEntry default/bad: spec.ports[0].number | port number 70000 is out of range (1-65535)',
    'one.yaml:10:5 ServiceEntry default/bad: spec.ports[1].name | port name is required',
    'one.yaml:13:14 ServiceEntry default/bad: spec.endpoints[0].address | address "not-an-ip" must be an IP address or unix:// path with resolution STATIC',
    'one.yaml:20:14 VirtualService default/vs: spec.hosts[1] | duplicate host "a.default.svc.cluster.local"',
    'one.yaml:24:15 VirtualService default/vs: spec.http[0].redirect | route and redirect are mutually exclusive',
    'two.yaml:6:32 DestinationRule default/dr: spec.subsets[1].name | duplicate subset name "v1"',
  ]);
  t.same(b.files, ['one.yaml', 'two.yaml']);
});

t.test('unknown fields are warnings naming the field', async (t) => {
  const b = load(`${SE}  endpoint: []
  resolutoin: DNS
`);
  t.same(errors(b), []);
  t.same(
    warnings(b).map((w) => `${w.pos.line}:${w.pos.col} ${w.path} | ${w.message}`),
    [
      '10:3 ServiceEntry default/ext: spec.endpoint | unknown field; ignored',
      '11:3 ServiceEntry default/ext: spec.resolutoin | unknown field; ignored',
    ],
  );
  t.equal(b.serviceEntries.length, 1);
});

t.test('known but not implemented fields warn with their path', async (t) => {
  const b = load(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: v}
spec:
  hosts: [v]
  http:
  - route: [{destination: {host: v}}]
    corsPolicy: {allowOrigins: [{exact: "https://a"}]}
  tcp:
  - route: [{destination: {host: v}}]
`);
  t.same(errors(b), []);
  t.same(
    warnings(b).map((w) => w.path),
    ['VirtualService default/v: spec.http[0].corsPolicy', 'VirtualService default/v: spec.tcp'],
  );
  t.same(b.virtualServices[0]?.spec.http[0]?.corsPolicy, { allowOrigins: [{ exact: 'https://a' }] });
});

t.test('folder: *.yaml and *.yml in name order, hidden and other files skipped', async (t) => {
  const dir = join(fixtures, 'ordered');
  const b = await loadConfig(dir, {});
  t.same(errors(b), []);
  t.same(b.files, [join(dir, 'a-first.yml'), join(dir, 'b-second.yaml')]);
  t.same(
    b.serviceEntries.map((s) => [s.meta.name, s.meta.order]),
    [
      ['first', 0],
      ['first-b', 1],
      ['second', 2],
    ],
  );
  t.equal(b.documents.length, 3, 'empty documents are skipped');
  t.equal(b.serviceEntries[2]?.spec.ports[0]?.protocol, 'HTTP', 'protocol is upper-cased');
  t.equal(b.serviceEntries[1]?.spec.ports[0]?.protocol, '', 'unset protocol is ""');
  t.match(b.hash, /^[0-9a-f]{64}$/);
  t.same(b.serviceEntries[0]?.meta.pos, { file: join(dir, 'a-first.yml'), line: 1, col: 1 });
  t.same(b.serviceEntries[1]?.meta.pos.line, 11);
});

t.test('folder mounted from a Kubernetes ConfigMap (symlinks followed, ..data skipped)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-cm-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, '..2026_01_01'));
  await writeFile(join(dir, '..2026_01_01', 'mesh.yaml'), SE);
  await symlink('..2026_01_01', join(dir, '..data'));
  await symlink('..data/mesh.yaml', join(dir, 'mesh.yaml'));
  const b = await loadConfig(dir, {});
  t.same(errors(b), []);
  t.same(b.files, [join(dir, 'mesh.yaml')]);
  t.equal(b.serviceEntries.length, 1);
});

t.test('a missing file is an error naming the path; nothing throws', async (t) => {
  const b = await loadConfig('/nonexistent/meshlet.yaml', {});
  t.equal(b.issues.length, 1);
  t.equal(b.issues[0]?.severity, 'error');
  t.match(b.issues[0]?.message, /\/nonexistent\/meshlet\.yaml/);
  t.match(b.issues[0]?.message, /no such file/);
  t.same(b.files, []);
});

t.test('hash covers the contents in order', async (t) => {
  const a = parseConfigText([{ name: 'a', text: SE }], {});
  const b = parseConfigText([{ name: 'b', text: SE }], {});
  const c = parseConfigText([{ name: 'a', text: `${SE}\n` }], {});
  t.equal(a.hash, b.hash);
  t.not(a.hash, c.hash);
});

t.test('kinds: security, not implemented, ignored and missing', async (t) => {
  const b = load(`apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: foo}
spec: {}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default}
spec: {mtls: {mode: STRICT}}
---
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: gw}
spec: {}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: t}
spec: {}
---
apiVersion: v1
kind: Service
metadata: {name: httpbin}
spec: {ports: [{port: 8000}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: httpbin}
---
metadata: {name: nokind}
---
apiVersion: networking.istio.io/v2
kind: VirtualService
metadata: {name: future}
spec: {}
---
- just
- a list
`);
  t.same(
    b.issues.map((i) => `${i.severity} ${i.pos.line} ${i.path} | ${i.message}`),
    [
      'warning 12 Gateway default/gw: kind | kind Gateway is not implemented; document ignored',
      'warning 17 Telemetry default/t: kind | kind Telemetry is not implemented; document ignored',
      'error 30 document 7: apiVersion | apiVersion is required',
      'error 30 document 7: kind | kind is required',
      'error 32 VirtualService default/future: apiVersion | unsupported apiVersion networking.istio.io/v2; expected networking.istio.io/v1alpha3|v1beta1|v1',
      'error 37 document 9 | a document must be a mapping with apiVersion, kind, metadata and spec',
    ],
  );
  t.equal(b.documents.length, 9, 'every non-empty document is kept for the config dump');
  t.same(
    b.authorizationPolicies.map((r) => `${r.meta.namespace}/${r.meta.name}`),
    ['foo/deny'],
    'security kinds load',
  );
  t.same(
    b.peerAuthentications.map((r) => `${r.meta.namespace}/${r.meta.name} ${r.spec.mode}`),
    ['default/default STRICT'],
  );
  const unknownSecurity = load(
    'apiVersion: security.istio.io/v1\nkind: Whatever\nmetadata: {name: w}\nspec: {}\n',
  );
  t.same(
    unknownSecurity.issues.map((i) => `${i.severity} ${i.message}`),
    ['warning kind Whatever is not implemented; document ignored'],
  );
  const oldSecurity = load(
    'apiVersion: security.istio.io/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec: {}\n',
  );
  t.same(
    oldSecurity.issues.map((i) => `${i.severity} ${i.message}`),
    ['error unsupported apiVersion security.istio.io/v1alpha1; expected security.istio.io/v1beta1|v1'],
  );
});

t.test('RequestAuthentication loads with a warning explaining why ignoring it is safe', async (t) => {
  const b = load(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  jwtRules:
  - issuer: https://issuer.example.com
    jwksUri: https://issuer.example.com/jwks
    forwardOriginalToken: true
`);
  t.same(errors(b), []);
  t.same(
    warnings(b).map((i) => `${i.pos.line}:${i.pos.col} ${i.path} | ${i.message}`),
    [
      '2:7 RequestAuthentication foo/jwt: kind | meshlet does not validate JWTs; RequestAuthentication is not enforced and requests carry no request principal. ' +
        'This never widens access: a RequestAuthentication alone denies nothing in Istio (it only rejects invalid tokens), ' +
        'and AuthorizationPolicy rules that need a request principal never match, so they fail closed. ' +
        'Requests with an invalid or expired token are not rejected with 401; they reach the application as they are',
    ],
  );
  t.same(b.authorizationPolicies, []);
  t.same(b.peerAuthentications, []);
  t.equal(b.documents.length, 1, 'kept for the config dump');
  const v1beta1 = load(
    'apiVersion: security.istio.io/v1beta1\nkind: RequestAuthentication\nmetadata: {name: j}\n',
  );
  t.same(errors(v1beta1), [], 'no spec is fine: the document is not enforced anyway');
  t.equal(warnings(v1beta1).length, 1);
});

t.test('RequestAuthentication that would make the application trust a header is an error', async (t) => {
  const b = load(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt}
spec:
  jwtRules:
  - issuer: a
    outputPayloadToHeader: x-jwt-payload
  - issuer: b
    outputClaimToHeaders: [{header: x-sub, claim: sub}]
  - ~
  - "odd"
`);
  t.same(
    errors(b).map((i) => `${i.pos.line} ${i.path} | ${i.message}`),
    [
      '7 RequestAuthentication default/jwt: spec.jwtRules[0].outputPayloadToHeader | outputPayloadToHeader is not supported: meshlet validates no JWT, so the application would trust a header that the caller can write itself',
      '9 RequestAuthentication default/jwt: spec.jwtRules[1].outputClaimToHeaders | outputClaimToHeaders is not supported: meshlet validates no JWT, so the application would trust a header that the caller can write itself',
    ],
  );
  const odd = load(
    'apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: j}\nspec: {jwtRules: 3}\n',
  );
  t.same(errors(odd), [], 'the rest of the document is not read');
});

t.test('all accepted apiVersions', async (t) => {
  for (const v of ['v1alpha3', 'v1beta1', 'v1']) {
    const b = load(SE.replace('networking.istio.io/v1', `networking.istio.io/${v}`));
    t.same(errors(b), [], v);
    t.equal(b.serviceEntries.length, 1);
  }
});

t.test('metadata: name required, namespace default, annotations kept', async (t) => {
  const b = load(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  annotations: {a: b}
spec:
  hosts: [x.example.com]
  ports: [{number: 80, name: http}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: ok
  annotations: {owner: team-a}
spec:
  hosts: [y.example.com]
  ports: [{number: 80, name: http}]
`);
  t.same(
    errors(b).map((e) => `${e.pos.line}:${e.pos.col} ${e.path} | ${e.message}`),
    ['4:3 ServiceEntry default/<unnamed>: metadata.name | metadata.name is required'],
  );
  t.same(b.serviceEntries[0]?.meta.annotations, { owner: 'team-a' });
  t.equal(b.serviceEntries[0]?.meta.namespace, 'default');
});

t.test('namespace and domainSuffix: option, then Proxy document, then defaults', async (t) => {
  const text = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: ratings}}]}]
---
apiVersion: meshlet.dev/v1alpha1
kind: Proxy
metadata: {name: me}
spec:
  namespace: shop
  domainSuffix: corp.local
  drainTimeout: 10s
`;
  const fromProxy = load(text);
  t.same(errors(fromProxy), []);
  t.same(fromProxy.virtualServices[0]?.spec.hosts, ['reviews.shop.svc.corp.local']);
  t.equal(fromProxy.virtualServices[0]?.meta.namespace, 'shop');
  t.equal(fromProxy.proxy?.spec.drainTimeoutMs, 10_000);

  const fromFlags = load(text, { namespace: 'cli', domainSuffix: 'flag.local' });
  t.same(fromFlags.virtualServices[0]?.spec.hosts, ['reviews.cli.svc.flag.local']);
  t.same(
    fromFlags.virtualServices[0]?.spec.http[0]?.route[0]?.destination.host,
    'ratings.cli.svc.flag.local',
  );

  const noProxy = load(text.split('---')[0] ?? '');
  t.same(noProxy.virtualServices[0]?.spec.hosts, ['reviews.default.svc.cluster.local']);
  t.equal(noProxy.proxy, null);
});

t.test('Proxy is strict: unknown fields and bad values are errors', async (t) => {
  const b = load(`apiVersion: meshlet.dev/v1alpha1
kind: Proxy
metadata: {name: p}
spec:
  mode: sidecar
  outboundPort: 0
  inboundPort: 15006
  adminPort: 70000
  app: 127.0.0.1:8080
  engine: uws
  logLevel: loud
  labels: {app: reviews, version: v1}
  accessLog: true
  colour: blue
`);
  t.same(
    errors(b).map((e) => `${e.pos.line}:${e.pos.col} ${e.path} | ${e.message}`),
    [
      '8:14 Proxy default/p: spec.adminPort | port number 70000 is out of range (0-65535)',
      '11:13 Proxy default/p: spec.logLevel | invalid value "loud"; expected one of debug, info, warn, error',
      '14:3 Proxy default/p: spec.colour | unknown field',
    ],
  );
  t.equal(b.proxy, null, 'an invalid Proxy is not used');
  const ok = load(`apiVersion: meshlet.dev/v1alpha1
kind: Proxy
spec:
  mode: sidecar
  app: "[::1]:9000"
  outboundTrafficPolicy: REGISTRY_ONLY
`);
  t.same(errors(ok), []);
  t.same(ok.proxy?.spec, { mode: 'sidecar', app: '[::1]:9000', outboundTrafficPolicy: 'REGISTRY_ONLY' });
  const wrongVersion = load('apiVersion: meshlet.dev/v1\nkind: Proxy\nspec: {}\n');
  t.match(errors(wrongVersion)[0]?.message, /unsupported apiVersion meshlet\.dev\/v1/);
});

t.test('Proxy retryBudget and dnsRefreshRate: durations in ms, strict like the rest of Proxy', async (t) => {
  const ok = load(`apiVersion: meshlet.dev/v1alpha1
kind: Proxy
spec:
  retryBudget: {retryRatio: 0.5, minRetriesPerSecond: 3, ttl: 1m}
  dnsRefreshRate: 5s
`);
  t.same(errors(ok), []);
  t.same(ok.proxy?.spec, {
    retryBudget: { retryRatio: 0.5, minRetriesPerSecond: 3, ttl: 60_000 },
    dnsRefreshRate: 5000,
  });
  const edges = load(`apiVersion: meshlet.dev/v1alpha1
kind: Proxy
spec:
  retryBudget: {retryRatio: 1, minRetriesPerSecond: 0, ttl: 1s}
  dnsRefreshRate: 1000ms
`);
  t.same(errors(edges), [], 'retryRatio 1, no floor and one-second windows are allowed');
  t.same(edges.proxy?.spec, {
    retryBudget: { retryRatio: 1, minRetriesPerSecond: 0, ttl: 1000 },
    dnsRefreshRate: 1000,
  });
  const partial = load(`apiVersion: meshlet.dev/v1alpha1
kind: Proxy
spec:
  retryBudget: {retryRatio: 0}
`);
  t.same(errors(partial), []);
  t.same(partial.proxy?.spec, { retryBudget: { retryRatio: 0 } }, 'absent fields stay absent');

  const bad = load(`apiVersion: meshlet.dev/v1alpha1
kind: Proxy
metadata: {name: p}
spec:
  retryBudget:
    retryRatio: 1.5
    minRetriesPerSecond: 2.5
    ttl: 500ms
    percent: 20
  dnsRefreshRate: 100ms
`);
  t.same(
    errors(bad).map((e) => `${e.pos.line}:${e.pos.col} ${e.path} | ${e.message}`),
    [
      '6:17 Proxy default/p: spec.retryBudget.retryRatio | value 1.5 is above the maximum 1',
      '7:26 Proxy default/p: spec.retryBudget.minRetriesPerSecond | expected integer, got 2.5',
      '8:10 Proxy default/p: spec.retryBudget.ttl | ttl must be at least 1s',
      '9:5 Proxy default/p: spec.retryBudget.percent | unknown field',
      '10:19 Proxy default/p: spec.dnsRefreshRate | dnsRefreshRate must be at least 1s',
    ],
  );
  t.equal(bad.proxy, null);
  const types = load(`apiVersion: meshlet.dev/v1alpha1
kind: Proxy
metadata: {name: p}
spec:
  retryBudget: 0.2
  dnsRefreshRate: 30
`);
  t.same(
    errors(types).map((e) => `${e.path} | ${e.message}`),
    [
      'Proxy default/p: spec.retryBudget | expected map, got number',
      'Proxy default/p: spec.dnsRefreshRate | expected duration string such as "5s", got number',
    ],
  );
  const long = load(`apiVersion: meshlet.dev/v1alpha1
kind: Proxy
metadata: {name: p}
spec:
  dnsRefreshRate: 1000h
  drainTimeout: 800h
`);
  t.same(errors(long), []);
  t.same(
    warnings(long).map((w) => `${w.path} | ${w.message}`),
    [
      "Proxy default/p: spec.dnsRefreshRate | 3600000000ms is longer than meshlet's timers can wait; 2147483647ms (about 24.9 days) is used",
      "Proxy default/p: spec.drainTimeout | 2880000000ms is longer than meshlet's timers can wait; 2147483647ms (about 24.9 days) is used",
    ],
  );
  t.same(long.proxy?.spec, { dnsRefreshRate: 2_147_483_647, drainTimeoutMs: 2_147_483_647 });
});

t.test('aliases and anchors resolve', async (t) => {
  const b = load(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a}
spec:
  hosts: [a.example.com]
  ports: &ports [{number: 80, name: http}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: b}
spec:
  hosts: [b.example.com]
  ports: [{number: 81, name: http}]
`);
  t.same(errors(b), []);
  t.equal(b.serviceEntries.length, 2);
});

t.test('duplicate resources warn', async (t) => {
  const b = load(`${SE}---\n${SE}`);
  t.same(errors(b), []);
  t.equal(warnings(b).length, 1);
  t.match(warnings(b)[0]?.message, /duplicate ServiceEntry default\/ext \(first defined at test\.yaml:1:1\)/);
});

t.test('Proxy adminHost must be an IP address', async (t) => {
  const doc = (host: string): string => `apiVersion: meshlet.dev/v1alpha1
kind: Proxy
metadata: {name: p}
spec:
  adminHost: ${host}
`;
  t.equal(load(doc('0.0.0.0')).proxy?.spec.adminHost, '0.0.0.0');
  const bad = load(doc('localhost'));
  t.same(
    errors(bad).map((e) => `${e.path} | ${e.message}`),
    [
      'Proxy default/p: spec.adminHost | adminHost "localhost" must be an IP address (e.g. 127.0.0.1 or 0.0.0.0)',
    ],
  );
});
