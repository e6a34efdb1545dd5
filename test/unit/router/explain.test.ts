import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { ClusterStateImpl } from '../../../src/balancer/cluster-state.ts';
import { OutlierDetector } from '../../../src/balancer/outlier-detector.ts';
import { parseConfigText } from '../../../src/config/load-config.ts';
import type { ConfigBundle } from '../../../src/config/resource-types.ts';
import { resolveSettings, type SettingFlags } from '../../../src/config/runtime-settings.ts';
import { compileRoutes } from '../../../src/router/compile-routes.ts';
import {
  type ActionExplanation,
  buildRequest,
  type Explanation,
  explain,
  parseHeaderArg,
} from '../../../src/router/explain.ts';
import { renderText, runExplain } from '../../../src/router/explain-output.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const samples = resolve(repoRoot, '../shared/istio-samples/samples/bookinfo/networking');

function load(...texts: string[]): ConfigBundle {
  const bundle = parseConfigText(texts.map((text, i) => ({ name: `f${i}.yaml`, text })));
  const errors = bundle.issues.filter((i) => i.severity === 'error');
  if (errors.length > 0) throw new Error(JSON.stringify(errors));
  return bundle;
}

function run(
  bundle: ConfigBundle,
  method: string,
  url: string,
  headers: string[] = [],
  flags: SettingFlags = {},
): Explanation {
  const built = buildRequest(method, url, headers);
  if (!built.ok) throw new Error(built.error);
  return explain(bundle, resolveSettings(flags, bundle.proxy?.spec ?? null), built.request, built.input);
}

function forward(e: Explanation): Extract<ActionExplanation, { kind: 'forward' }> {
  if (e.action.kind !== 'forward') throw new Error(`expected forward, got ${e.action.kind}`);
  return e.action;
}

const SE = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews }
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  endpoints:
    - { address: 10.0.0.1, labels: { app: reviews, version: v1 } }
    - { address: 10.0.0.2, labels: { app: reviews, version: v2, security.istio.io/tlsMode: istio } }
    - { address: 10.0.0.3, labels: { app: reviews, version: v3 }, weight: 3 }
`;
const DR = `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews-dr }
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: { simple: ROUND_ROBIN }
    connectionPool: { tcp: { maxConnections: 10 }, http: { http1MaxPendingRequests: 5 } }
    outlierDetection: { consecutive5xxErrors: 3 }
  subsets:
    - { name: v1, labels: { version: v1 } }
    - name: v2
      labels: { version: v2 }
      trafficPolicy:
        loadBalancer: { simple: LEAST_REQUEST }
    - { name: v3, labels: { version: v3 } }
`;

function vs(http: string): string {
  return `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews }
spec:
  hosts: [reviews]
  http:
${http}`;
}

t.test('request: URL, Host override, headers and argument errors', async (t) => {
  const a = buildRequest('GET', 'http://Reviews:9080/r/1?x=1', ['End-User:  jason ']);
  t.ok(a.ok);
  if (a.ok) {
    t.equal(a.request.authority, 'Reviews:9080');
    t.equal(a.request.host, 'reviews');
    t.equal(a.request.port, 9080);
    t.equal(a.request.path, '/r/1?x=1');
    t.equal(a.request.authoritySource, 'url');
    t.same(a.request.headers, [
      ['host', 'Reviews:9080'],
      ['end-user', 'jason'],
    ]);
  }
  const b = buildRequest('POST', 'http://127.0.0.1:15001', ['Host: ratings']);
  t.ok(b.ok);
  if (b.ok) {
    t.equal(b.request.authority, 'ratings', '-H host overrides the URL authority');
    t.equal(b.request.authoritySource, 'host header');
    t.equal(b.request.path, '/');
    t.equal(b.request.port, null);
  }
  const errors: [string, string, string[]][] = [
    ['GET', 'reviews/1', []],
    ['GET', 'ftp://x/y', []],
    ['GET', 'http://x/a b', []],
    ['GE T', 'http://x/', []],
    ['GET', 'http://x/', ['no-colon']],
    ['GET', 'http://x/', ['bad name: v']],
    ['GET', 'http://x/', ['x: a\u0001b']],
    ['GET', 'http://x/', ['host: a', 'host: b']],
    ['GET', 'http://x/', ['host:']],
  ];
  for (const [m, u, h] of errors) {
    const r = buildRequest(m, u, h);
    t.notOk(r.ok, `${m} ${u} ${h.join(',')} is refused`);
  }
  t.same(parseHeaderArg('a: b'), ['a', 'b']);
  t.match(parseHeaderArg('a b'), /expected 'name: value'/);
});

t.test('why-not reasons: header, uri, method, query, authority, scheme, withoutHeaders', async (t) => {
  const bundle = load(
    SE,
    DR,
    vs(`
    - name: jason
      match: [{ headers: { end-user: { exact: jason } } }]
      route: [{ destination: { host: reviews, subset: v2 } }]
    - name: v2-prefix
      match: [{ uri: { prefix: /v2 } }]
      route: [{ destination: { host: reviews, subset: v2 } }]
    - name: exact-ci
      match: [{ uri: { exact: /EXACT }, ignoreUriCase: true }]
      route: [{ destination: { host: reviews, subset: v2 } }]
    - name: regex
      match: [{ uri: { regex: "/r[0-9]+" } }]
      route: [{ destination: { host: reviews, subset: v2 } }]
    - name: post
      match: [{ method: { exact: POST } }]
      route: [{ destination: { host: reviews, subset: v2 } }]
    - name: query
      match: [{ queryParams: { debug: { exact: "1" } } }]
      route: [{ destination: { host: reviews, subset: v2 } }]
    - name: authority
      match: [{ authority: { prefix: "reviews.default" } }]
      route: [{ destination: { host: reviews, subset: v2 } }]
    - name: scheme
      match: [{ scheme: { exact: https } }]
      route: [{ destination: { host: reviews, subset: v2 } }]
    - name: without
      match: [{ withoutHeaders: { x-canary: {} } }, { withoutHeaders: { x-stage: { exact: blue } } }]
      route: [{ destination: { host: reviews, subset: v1 } }]
`),
  );
  const e = run(bundle, 'GET', 'http://reviews:9080/reviews/1?debug=2', ['end-user: bob', 'x-canary: 1']);
  t.same(e.problems, []);
  const text = renderText(e);
  t.match(text, 'rule 0 (name "jason"): header end-user: exact "jason" — end-user is "bob", not "jason"');
  t.match(
    text,
    'rule 1 (name "v2-prefix"): uri prefix "/v2" — path "/reviews/1?debug=2" does not start with it',
  );
  t.match(
    text,
    'rule 2 (name "exact-ci"): uri exact "/EXACT" (ignoring case) — path is "/reviews/1", not "/EXACT"',
  );
  t.match(text, 'rule 3 (name "regex"): uri regex "/r[0-9]+" — path "/reviews/1" does not match it');
  t.match(text, 'rule 4 (name "post"): method exact "POST" — method is "GET", not "POST"');
  t.match(text, 'rule 5 (name "query"): query debug: exact "1" — query debug is "2", not "1"');
  t.match(
    text,
    'rule 6 (name "authority"): authority prefix "reviews.default" — authority "reviews:9080" does not start with it',
  );
  t.match(text, 'rule 7 (name "scheme"): scheme exact "https" — scheme is "http", not "https"');
  t.match(
    text,
    'rule 8 (name "without") match 0: withoutHeaders x-canary: present — request has a x-canary header',
  );
  t.match(
    text,
    'rule 8 (name "without") match 1: matched: withoutHeaders x-stage: exact "blue" — x-stage (absent, tested as "") is "", not "blue"',
  );
  t.equal(e.rules.length, 9);
  t.equal(forward(e).destinations[0]?.cluster, 'outbound|9080|v1|reviews.default.svc.cluster.local');

  const missing = run(bundle, 'GET', 'http://reviews:9080/reviews/1', ['x-canary: 1', 'x-stage: blue']);
  const m = renderText(missing);
  t.match(m, 'rule 0 (name "jason"): header end-user: exact "jason" — request has no end-user header');
  t.match(m, 'rule 5 (name "query"): query debug: exact "1" — query has no debug parameter');
  t.match(
    m,
    'rule 8 (name "without") match 1: withoutHeaders x-stage: exact "blue" — x-stage is "blue", which withoutHeaders excludes',
  );
  t.equal(missing.action.kind, 'noRoute');
  t.match(m, 'action: answer 404 NR');

  const held = run(bundle, 'POST', 'http://reviews:9080/v2/x');
  t.match(
    renderText(held),
    'rule 1 (name "v2-prefix"): matched: uri prefix "/v2" — path "/v2/x" starts with it',
  );
  const regexHeld = run(bundle, 'GET', 'http://reviews:9080/r12');
  t.match(renderText(regexHeld), 'matched: uri regex "/r[0-9]+" — path "/r12" matches it');
});

t.test('weights: every destination with its probability, as route() picks it', async (t) => {
  const bundle = load(
    SE,
    DR,
    vs(`
    - route:
        - { destination: { host: reviews, subset: v1 }, weight: 80 }
        - { destination: { host: reviews, subset: v3 }, weight: 20 }
        - { destination: { host: reviews, subset: v2 }, weight: 0 }
`),
  );
  const e = run(bundle, 'GET', 'http://reviews:9080/');
  const a = forward(e);
  t.same(
    a.destinations.map((d) => [d.cluster, d.weight, d.probability]),
    [
      ['outbound|9080|v1|reviews.default.svc.cluster.local', 80, 80],
      ['outbound|9080|v3|reviews.default.svc.cluster.local', 20, 20],
    ],
  );
  t.same(a.neverChosen, ['outbound|9080|v2|reviews.default.svc.cluster.local']);
  t.same(e.rules[0]?.catchAll, true);
  const text = renderText(e);
  t.match(
    text,
    'destination outbound|9080|v1|reviews.default.svc.cluster.local  weight 80  probability 80 %',
  );
  t.match(text, 'never chosen');
  t.match(text, 'rule 0: matched (no match conditions: takes every request)');
});

t.test('redirect and direct response', async (t) => {
  const bundle = load(
    SE,
    vs(`
    - match: [{ uri: { prefix: /old } }]
      redirect: { uri: /new, redirectCode: 302 }
    - match: [{ uri: { exact: /health } }]
      directResponse: { status: 200, body: { string: "ok" } }
      headers: { response: { set: { x-served-by: meshlet } } }
    - match: [{ uri: { exact: /empty } }]
      directResponse: { status: 204 }
`),
  );
  const r = run(bundle, 'GET', 'http://reviews:9080/old/page');
  t.same(r.action, {
    kind: 'redirect',
    routeName: 'default/reviews',
    status: 302,
    location: 'http://reviews:9080/new',
    responseHeaders: [],
  });
  t.match(renderText(r), /location\s+http:\/\/reviews:9080\/new/);
  const d = run(bundle, 'GET', 'http://reviews:9080/health');
  t.same(d.action, {
    kind: 'direct',
    routeName: 'default/reviews',
    status: 200,
    body: 'ok',
    responseHeaders: ['set x-served-by: meshlet'],
  });
  t.match(
    renderText(d),
    /action: direct response \(route default\/reviews\)\n\s+status\s+200\n\s+body\s+"ok"/,
  );
  const empty = run(bundle, 'GET', 'http://reviews:9080/empty');
  t.match(renderText(empty), /body\s+none/);
});

t.test('fault, mirror, timeout, rewrite, header edits, retries explicit and default', async (t) => {
  const bundle = load(
    SE,
    DR,
    `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: shadow }
spec:
  hosts: [shadow.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 8080, name: http, protocol: HTTP }]
  endpoints: [{ address: 10.0.1.1 }]
`,
    vs(`
    - name: faulty
      match: [{ uri: { prefix: /api } }]
      rewrite: { uri: /v2/api }
      fault:
        delay: { fixedDelay: 2s, percentage: { value: 10 } }
        abort: { httpStatus: 503, percentage: { value: 5 } }
      mirror: { host: shadow }
      mirrorPercentage: { value: 25 }
      timeout: 3s
      retries: { attempts: 4, perTryTimeout: 500ms, retryOn: "5xx,reset" }
      headers: { request: { set: { x-route: faulty } } }
      route: [{ destination: { host: reviews, subset: v1 }, headers: { request: { add: { x-dest: v1 } } } }]
    - route: [{ destination: { host: reviews, subset: v1 } }]
`),
  );
  const e = run(bundle, 'GET', 'http://reviews:9080/api/x?q=1');
  const a = forward(e);
  t.equal(a.upstreamPath, '/v2/api/x?q=1');
  t.equal(a.rewritten, true);
  t.same(a.fault, ['delay 2s for 10 % of requests', 'abort with HTTP 503 for 5 % of requests']);
  t.same(a.mirrors, ['outbound|8080||shadow.default.svc.cluster.local for 25 % of requests']);
  t.equal(a.timeoutMs, 3000);
  t.same(a.retries, {
    source: 'route',
    attempts: 4,
    perTryTimeoutMs: 500,
    retryOn: '5xx,reset',
    backoffBaseMs: 25,
  });
  t.same(a.destinations[0]?.requestHeaders, ['set x-route: faulty', 'add x-dest: v1']);
  const text = renderText(e);
  t.match(text, /upstream path\s+\/v2\/api\/x\?q=1 \(rewritten from \/api\/x\?q=1\)/);
  t.match(text, /retries\s+route: 4 attempts on 5xx,reset, per try 500ms, backoff 25ms/);
  t.match(text, /timeout\s+3s/);

  const plain = forward(run(bundle, 'GET', 'http://reviews:9080/other'));
  t.same(plain.retries, {
    source: 'Istio default',
    attempts: 2,
    perTryTimeoutMs: null,
    retryOn: 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes',
    backoffBaseMs: 25,
  });
  t.same(plain.fault, []);
  t.same(plain.mirrors, []);
  t.equal(plain.timeoutMs, null);
  t.match(renderText(run(bundle, 'GET', 'http://reviews:9080/other')), /retries\s+Istio default: 2 attempts/);
});

t.test('DestinationRule policy: subset override, defaults filled, endpoints', async (t) => {
  const bundle = load(
    SE,
    DR,
    vs(`
    - match: [{ headers: { end-user: { exact: jason } } }]
      route: [{ destination: { host: reviews, subset: v2 } }]
    - route: [{ destination: { host: reviews, subset: v3 } }]
`),
  );
  const v3 = forward(run(bundle, 'GET', 'http://reviews:9080/')).destinations[0]?.details;
  t.same(v3?.destinationRule, { host: 'reviews.default.svc.cluster.local', rules: ['default/reviews-dr'] });
  t.equal(v3?.loadBalancer, 'ROUND_ROBIN', 'the top-level policy');
  t.equal(v3?.connectionPool['maxConnections'], '10');
  t.equal(v3?.connectionPool['http1MaxPendingRequests'], '5');
  t.equal(v3?.connectionPool['http2MaxRequests'], 'unlimited');
  t.equal(v3?.connectionPool['connectTimeout'], '10s');
  t.same(v3?.outlierDetection, {
    consecutive5xxErrors: '3',
    consecutiveGatewayErrors: '0 (off)',
    consecutiveLocalOriginFailures: 'counted with the others (splitExternalLocalOriginErrors off)',
    errorCodes: '500-599',
    interval: '10s',
    baseEjectionTime: '30s',
    maxEjectionTime: '300s',
    maxEjectionPercent: '10 %',
    minHealthPercent: '0 (panic mode off)',
  });
  t.same(
    v3?.endpoints.map((e) => [e.address, e.port, e.weight, e.labels['version']]),
    [['10.0.0.3', 9080, 3, 'v3']],
  );
  const v2 = forward(run(bundle, 'GET', 'http://reviews:9080/', ['end-user: jason'])).destinations[0]
    ?.details;
  t.equal(v2?.loadBalancer, 'LEAST_REQUEST', 'the subset overrides the load balancer');
  t.equal(v2?.connectionPool['maxConnections'], '10', 'and keeps the rest of the top-level policy');
  const text = renderText(run(bundle, 'GET', 'http://reviews:9080/'));
  t.match(text, /destination rule\s+default\/reviews-dr \(host reviews.default.svc.cluster.local\)/);
  t.match(text, /outlier detection\s+consecutive5xxErrors 3, consecutiveGatewayErrors 0 \(off\)/);
  t.match(text, /10\.0\.0\.3:9080 {2}weight 3 {2}labels app=reviews,version=v3 {2}tls plaintext/);

  const noDr = load(SE);
  const d = forward(run(noDr, 'GET', 'http://reviews:9080/')).destinations[0]?.details;
  t.equal(d?.destinationRule, null);
  t.equal(d?.loadBalancer, 'P2C + peak-EWMA (meshlet default)');
  t.equal(d?.outlierDetection, null);
  t.match(
    renderText(run(noDr, 'GET', 'http://reviews:9080/')),
    /no VirtualService for reviews.default.svc.cluster.local/,
  );
});

t.test('load balancer kinds and outlier settings as given', async (t) => {
  const lbs: [string, string][] = [
    ['{ simple: RANDOM }', 'RANDOM'],
    ['{ simple: LEAST_CONN }', 'LEAST_REQUEST'],
    ['{ simple: PASSTHROUGH }', "P2C + peak-EWMA (PASSTHROUGH is served by meshlet's default)"],
    ['{ consistentHash: { httpHeaderName: x-user } }', 'RING_HASH consistent hash on header x-user'],
    ['{ consistentHash: { httpCookie: { name: c, ttl: 0s } } }', 'RING_HASH consistent hash on cookie c'],
    [
      '{ consistentHash: { httpQueryParameterName: u, maglev: { tableSize: 65537 } } }',
      'MAGLEV consistent hash on query parameter u',
    ],
    ['{ consistentHash: { useSourceIp: true } }', 'RING_HASH consistent hash on source IP'],
  ];
  for (const [lb, want] of lbs) {
    const bundle = load(
      SE,
      `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: r }
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: ${lb}
    outlierDetection: { splitExternalLocalOriginErrors: true, interval: 1500ms, maxEjectionPercent: 50, minHealthPercent: 20, outlierDetectionHttpErrorCodes: [500, 503] }
    connectionPool: { http: { maxRequestsPerConnection: 2, idleTimeout: 30s } }
`,
    );
    const c = forward(run(bundle, 'GET', 'http://reviews:9080/')).destinations[0]?.details;
    t.equal(c?.loadBalancer, want, lb);
    t.equal(c?.outlierDetection?.['consecutiveLocalOriginFailures'], '5');
    t.equal(c?.outlierDetection?.['interval'], '1500ms');
    t.equal(c?.outlierDetection?.['maxEjectionPercent'], '50 %');
    t.equal(c?.outlierDetection?.['minHealthPercent'], '20 %');
    t.equal(c?.outlierDetection?.['errorCodes'], '500,503');
    t.equal(c?.connectionPool['maxRequestsPerConnection'], '2');
    t.equal(c?.connectionPool['idleTimeout'], '30s');
  }
});

t.test('load balancer and outlier defaults agree with the balancer itself', async (t) => {
  // explain restates these two mappings in words; the balancer's own objects pin them.
  const kinds: Record<string, string> = {
    P2C_PEAK_EWMA: 'P2C + peak-EWMA',
    ROUND_ROBIN: 'ROUND_ROBIN',
    LEAST_REQUEST: 'LEAST_REQUEST',
    RANDOM: 'RANDOM',
    RING_HASH: 'RING_HASH',
    MAGLEV: 'MAGLEV',
  };
  for (const lb of [
    '',
    'loadBalancer: { simple: RANDOM }',
    'loadBalancer: { simple: LEAST_CONN }',
    'loadBalancer: { simple: ROUND_ROBIN }',
    'loadBalancer: { simple: PASSTHROUGH }',
    'loadBalancer: { consistentHash: { httpHeaderName: x } }',
    'loadBalancer: { consistentHash: { httpHeaderName: x, maglev: { tableSize: 65537 } } }',
  ]) {
    for (const od of ['{}', '{ interval: 2s, maxEjectionPercent: 0, minHealthPercent: 30 }']) {
      const bundle = load(
        SE,
        `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: r }
spec:
  host: reviews
  trafficPolicy:
    outlierDetection: ${od}
    ${lb}
`,
      );
      const built = buildRequest('GET', 'http://reviews:9080/', []);
      if (!built.ok) throw new Error(built.error);
      const settings = resolveSettings({}, null);
      const c = forward(explain(bundle, settings, built.request, built.input)).destinations[0]?.details;
      const table = compileRoutes(bundle, {
        namespace: 'default',
        domainSuffix: 'cluster.local',
        proxyLabels: {},
        outboundTrafficPolicy: 'ALLOW_ANY',
        random: () => 0.5,
      });
      const cluster = table.clusters.get('outbound|9080||reviews.default.svc.cluster.local');
      if (cluster === undefined) throw new Error('no cluster');
      const state = new ClusterStateImpl(cluster, {
        clock: () => 0,
        random: () => 0.5,
        setInterval: () => ({ cancel: () => {} }),
      });
      const kind = state.status().loadBalancer;
      state.close();
      t.ok(c?.loadBalancer.startsWith(kinds[kind] ?? '?'), `${lb || 'no loadBalancer'}: ${kind}`);
      const detector = new OutlierDetector(cluster.trafficPolicy?.outlierDetection ?? {}, { clock: () => 0 });
      t.equal(c?.outlierDetection?.['interval'], `${detector.intervalMs / 1000}s`);
      t.equal(c?.outlierDetection?.['maxEjectionPercent'], `${detector.maxEjectionPercent} %`);
      t.equal(
        c?.outlierDetection?.['minHealthPercent'],
        detector.minHealthPercent === 0 ? '0 (panic mode off)' : `${detector.minHealthPercent} %`,
      );
    }
  }
});

t.test('TLS: auto-mTLS by endpoint label, PeerAuthentication DISABLE, DR modes, no identity', async (t) => {
  const withIdentity: SettingFlags = { identityDir: '/nonexistent/identity' };
  const bundle = load(SE);
  const c = forward(run(bundle, 'GET', 'http://reviews:9080/', [], withIdentity)).destinations[0]?.details;
  t.match(c?.tls, /^auto-mTLS: ISTIO_MUTUAL to endpoints labelled/);
  t.same(
    c?.endpoints.map((e) => e.tls),
    [
      'plaintext',
      'ISTIO_MUTUAL (SNI outbound_.9080_._.reviews.default.svc.cluster.local, expects any mesh identity)',
      'plaintext',
    ],
    'only the endpoint labelled security.istio.io/tlsMode: istio gets mTLS',
  );
  const none = forward(run(bundle, 'GET', 'http://reviews:9080/')).destinations[0]?.details;
  t.equal(none?.tls, 'plaintext: auto-mTLS is off (this proxy has no workload identity)');
  t.same(
    none?.endpoints.map((e) => e.tls),
    ['plaintext', 'plaintext', 'plaintext'],
  );

  const disabled = load(
    SE,
    `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: off, namespace: default }
spec: { mtls: { mode: DISABLE } }
`,
  );
  const d = forward(run(disabled, 'GET', 'http://reviews:9080/', [], withIdentity)).destinations[0]?.details;
  t.equal(d?.tls, "plaintext: the destination's PeerAuthentication mode is DISABLE");
  t.same(
    d?.endpoints.map((e) => e.tls),
    ['plaintext', 'plaintext', 'plaintext'],
  );

  const external = load(SE.replace('MESH_INTERNAL', 'MESH_EXTERNAL'));
  t.equal(
    forward(run(external, 'GET', 'http://reviews:9080/', [], withIdentity)).destinations[0]?.details?.tls,
    'plaintext: auto-mTLS never applies to MESH_EXTERNAL services',
  );

  const drTls = (tls: string): ConfigBundle =>
    load(
      SE,
      `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: r }
spec:
  host: reviews
  trafficPolicy: { tls: ${tls} }
`,
    );
  const istio = forward(run(drTls('{ mode: ISTIO_MUTUAL }'), 'GET', 'http://reviews:9080/', [], withIdentity))
    .destinations[0]?.details;
  t.equal(istio?.tls, 'ISTIO_MUTUAL (DestinationRule tls)');
  t.match(istio?.endpoints[0]?.tls, /^ISTIO_MUTUAL \(SNI outbound_/);
  const noCert = forward(run(drTls('{ mode: ISTIO_MUTUAL }'), 'GET', 'http://reviews:9080/')).destinations[0]
    ?.details;
  t.equal(noCert?.endpoints[0]?.tls, 'fails (UF): no workload certificate');
  const simple = forward(
    run(drTls('{ mode: SIMPLE, sni: reviews.example.com }'), 'GET', 'http://reviews:9080/'),
  ).destinations[0]?.details;
  t.equal(simple?.tls, 'SIMPLE (DestinationRule tls)');
  t.equal(simple?.endpoints[0]?.tls, 'SIMPLE (SNI reviews.example.com, expects reviews.example.com)');
  const insecure = forward(
    run(drTls('{ mode: SIMPLE, insecureSkipVerify: true }'), 'GET', 'http://reviews:9080/'),
  ).destinations[0]?.details;
  t.equal(
    insecure?.endpoints[0]?.tls,
    'SIMPLE (SNI reviews.default.svc.cluster.local, not verified (insecureSkipVerify))',
  );
  const dir = mkdtempSync(join(tmpdir(), 'explain-tls-'));
  writeFileSync(join(dir, 'c.pem'), 'cert');
  writeFileSync(join(dir, 'k.pem'), 'key');
  const mutual = forward(
    run(
      drTls(`{ mode: MUTUAL, clientCertificate: ${join(dir, 'c.pem')}, privateKey: ${join(dir, 'k.pem')} }`),
      'GET',
      'http://reviews:9080/',
    ),
  ).destinations[0]?.details;
  t.equal(
    mutual?.endpoints[0]?.tls,
    'MUTUAL (SNI reviews.default.svc.cluster.local, expects reviews.default.svc.cluster.local)',
  );
  const unreadable = forward(
    run(drTls('{ mode: SIMPLE, caCertificates: /nonexistent/ca.pem }'), 'GET', 'http://reviews:9080/'),
  ).destinations[0]?.details;
  t.match(unreadable?.endpoints[0]?.tls, /^fails \(UF\): caCertificates: cannot read \/nonexistent\/ca.pem/);
  const off = forward(run(drTls('{ mode: DISABLE }'), 'GET', 'http://reviews:9080/', [], withIdentity))
    .destinations[0]?.details;
  t.equal(off?.tls, 'DISABLE (DestinationRule tls)');
});

t.test('unknown hosts: ALLOW_ANY passthrough, REGISTRY_ONLY 502; missing subsets 503 NC', async (t) => {
  const bundle = load(SE);
  const any = run(bundle, 'GET', 'http://example.com/x');
  t.same(any.action.kind, 'passthrough');
  t.equal(any.virtualHost, null);
  t.match(renderText(any), 'action: passthrough to example.com:80');
  t.match(renderText(any), 'virtual host: none for example.com');
  const closed = load(
    SE,
    `
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: default }
spec: { outboundTrafficPolicy: { mode: REGISTRY_ONLY } }
`,
  );
  const blocked = run(closed, 'GET', 'http://example.com:8080/x');
  t.same(blocked.action.kind, 'noRoute');
  t.equal(blocked.outboundTrafficPolicyFrom, 'Sidecar default/default');
  t.match(renderText(blocked), 'action: answer 502 NR');
  t.match(blocked.notes.join('\n'), /Sidecar egress and exportTo are not applied/);
  const port = run(bundle, 'GET', 'http://reviews:9999/');
  t.match(port.notes.join('\n'), /has no port 9999/);
  t.equal(port.action.kind, 'passthrough');

  const missing = load(
    SE,
    vs(`
    - route:
        - { destination: { host: reviews, subset: nope }, weight: 50 }
        - { destination: { host: reviews }, weight: 50 }
`),
  );
  const m = forward(run(missing, 'GET', 'http://reviews:9080/'));
  t.equal(m.destinations[0]?.missing, 'no subset nope for reviews.default.svc.cluster.local');
  t.match(renderText(run(missing, 'GET', 'http://reviews:9080/')), 'answered 503 NC');
  const allMissing = load(SE, vs('    - route: [{ destination: { host: nothere } }]\n'));
  const nc = run(allMissing, 'GET', 'http://reviews:9080/');
  t.equal(nc.action.kind, 'noCluster');
  t.match(renderText(nc), 'action: answer 503 NC (cluster outbound|9080||nothere.default.svc.cluster.local)');
});

t.test(
  'virtual service choice: exact beats wildcard, gateways, VS-only hosts, build-time selectors',
  async (t) => {
    const bundle = load(
      SE,
      `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: wild }
spec:
  hosts: ["*.svc.cluster.local"]
  http: [{ directResponse: { status: 418 } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: gw }
spec:
  hosts: [reviews]
  gateways: [ingress]
  http: [{ directResponse: { status: 500 } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: exact }
spec:
  hosts: [reviews]
  http:
    - match: [{ port: 1234, uri: { prefix: / } }, { sourceLabels: { app: x } }, { gateways: [ingress] }, { sourceNamespace: other }]
      directResponse: { status: 500 }
    - directResponse: { status: 200 }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: later }
spec:
  hosts: [reviews]
  http: [{ directResponse: { status: 503 } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: external }
spec:
  hosts: [api.example.com]
  http: [{ directResponse: { status: 201 } }]
`,
    );
    const e = run(bundle, 'GET', 'http://reviews:9080/');
    t.equal(e.virtualService?.name, 'exact');
    t.match(e.virtualService?.why, /names the host exactly/);
    t.same(
      e.virtualService?.notChosen.map((n) => [n.name, n.reason]),
      [
        ['wild', 'wildcard *.svc.cluster.local loses to the exact host'],
        ['gw', 'bound to gateways ingress, not mesh'],
        ['later', 'also names the host; the first in load order wins'],
      ],
    );
    const text = renderText(e);
    t.match(text, 'rule 0 match 0: not on this proxy: port 1234 (this route list is port 9080)');
    t.match(
      text,
      'rule 0 match 1: not on this proxy: sourceLabels app=x do not select this proxy (labels none)',
    );
    t.match(text, 'rule 0 match 2: not on this proxy: gateways ingress do not include mesh');
    t.match(
      text,
      "rule 0 match 3: not on this proxy: sourceNamespace other is not this proxy's namespace default",
    );
    t.equal(e.action.kind, 'direct');

    const wild = load(
      SE.replace('reviews.default.svc.cluster.local', 'ratings.default.svc.cluster.local'),
      `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: wild }
spec:
  hosts: ["*.svc.cluster.local"]
  http: [{ directResponse: { status: 418 } }]
`,
    );
    const w = run(wild, 'GET', 'http://ratings.default.svc.cluster.local:9080/');
    t.match(
      w.virtualService?.why,
      'wildcard host *.svc.cluster.local covers ratings.default.svc.cluster.local',
    );
    t.equal(w.virtualHost?.domainKind, 'name');
    const ext = run(bundle, 'GET', 'http://api.example.com/');
    t.equal(ext.virtualHost?.service, false);
    t.equal(ext.virtualHost?.portFrom, 'service default');
    t.match(renderText(ext), 'virtual host: api.example.com port 80 (VirtualService host, no ServiceEntry)');
    t.same(ext.action, {
      kind: 'direct',
      routeName: 'default/external',
      status: 201,
      body: null,
      responseHeaders: [],
    });
  },
);

t.test('virtual host domains: address, wildcard service, DNS endpoints', async (t) => {
  const bundle = load(`
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ext }
spec:
  hosts: [api.example.com]
  addresses: [240.0.0.1]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{ number: 80, name: http, protocol: HTTP }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: wild }
spec:
  hosts: ["*.wild.example.com"]
  resolution: NONE
  ports: [{ number: 80, name: http, protocol: HTTP }]
`);
  const byAddress = run(bundle, 'GET', 'http://240.0.0.1/');
  t.equal(byAddress.virtualHost?.domainKind, 'address');
  t.match(renderText(byAddress), '240.0.0.1: an address of api.example.com');
  const c = forward(byAddress).destinations[0]?.details;
  t.same(
    c?.endpoints.map((e) => [e.address, e.dns]),
    [['api.example.com', true]],
  );
  t.match(renderText(byAddress), 'resolved at run time');
  const wild = run(bundle, 'GET', 'http://a.wild.example.com/');
  t.equal(wild.virtualHost?.domainKind, 'wildcard');
  t.same(wild.action.kind, 'passthrough');
  t.match(
    renderText(wild),
    'a.wild.example.com: covered by the wildcard domain *.wild.example.com of *.wild.example.com',
  );
});

/** The destination a draw `r` picks from an explanation's destinations (cumulative probabilities). */
function pickFromExplanation(a: Extract<ActionExplanation, { kind: 'forward' }>, r: number): string {
  let cum = 0;
  for (const d of a.destinations) {
    cum += d.probability / 100;
    if (r < cum) return d.cluster;
  }
  return a.destinations[a.destinations.length - 1]?.cluster ?? '';
}

/** Every request: no problem, and each draw of the real router lands on the destination explain shows. */
function agree(t: Test, bundle: ConfigBundle, requests: readonly [string, string, string[]][]): void {
  const settings = resolveSettings({}, bundle.proxy?.spec ?? null);
  for (const [method, url, headers] of requests) {
    const built = buildRequest(method, url, headers);
    if (!built.ok) throw new Error(built.error);
    const e = explain(bundle, settings, built.request, built.input);
    t.same(e.problems, [], `${method} ${url} ${headers.join(' ')}`);
    for (const r of [0.01, 0.3, 0.5, 0.7, 0.85, 0.99]) {
      const table = compileRoutes(bundle, {
        namespace: settings.namespace,
        domainSuffix: settings.domainSuffix,
        proxyLabels: settings.labels,
        outboundTrafficPolicy: e.outboundTrafficPolicy,
        random: () => r,
      });
      const d = table.route(built.input);
      const a = e.action;
      const got = d.kind === 'forward' ? d.cluster.name : d.kind === 'noCluster' ? d.clusterName : d.kind;
      const want =
        a.kind === 'forward' ? pickFromExplanation(a, r) : a.kind === 'noCluster' ? a.cluster : a.kind;
      t.equal(got, want, `${method} ${url} ${headers.join(' ')} draw ${r}`);
    }
  }
}

const BOOKINFO_SE = ['productpage', 'reviews', 'ratings', 'details']
  .map(
    (name) => `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name} }
spec:
  hosts: [${name}.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  endpoints:
    - { address: 10.1.0.1, labels: { app: ${name}, version: v1 } }
    - { address: 10.1.0.2, labels: { app: ${name}, version: v2 } }
    - { address: 10.1.0.3, labels: { app: ${name}, version: v3 } }
`,
  )
  .join('---\n');

t.test('explain agrees with route() over the bookinfo samples', async (t) => {
  const files = readdirSync(samples).filter(
    (f) => f.startsWith('virtual-service-') || f.startsWith('fault-'),
  );
  t.ok(files.length >= 6, 'the bookinfo samples are there');
  const dr = readFileSync(join(samples, 'destination-rule-all.yaml'), 'utf8');
  const requests: [string, string, string[]][] = [];
  for (const host of ['reviews', 'ratings', 'details', 'productpage'])
    for (const path of ['/', '/reviews/1', '/ratings/0', '/productpage'])
      for (const h of [[], ['end-user: jason'], ['end-user: bob']])
        requests.push(['GET', `http://${host}:9080${path}`, h]);
  for (const file of files) {
    const bundle = load(BOOKINFO_SE, dr, readFileSync(join(samples, file), 'utf8'));
    agree(t, bundle, requests);
  }
});

t.test('explain agrees with route() over the config examples', async (t) => {
  const dir = join(repoRoot, 'config-examples');
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.yaml'))) {
    const bundle = parseConfigText([{ name: file, text: readFileSync(join(dir, file), 'utf8') }]);
    if (bundle.issues.some((i) => i.severity === 'error')) continue;
    const requests: [string, string, string[]][] = [];
    for (const se of bundle.serviceEntries) {
      for (const host of se.spec.hosts) {
        const short = host.split('.')[0] ?? host;
        for (const p of se.spec.ports) {
          for (const path of ['/', '/reviews/1', '/status/500'])
            for (const h of [[], ['end-user: jason'], ['x-fault: abort'], ['end-user: ann@beta.example.com']])
              requests.push(['GET', `http://${short}:${p.number}${path}`, h]);
        }
      }
    }
    t.ok(requests.length > 0, `${file} has requests to try`);
    agree(t, bundle, requests);
  }
});

t.test('runExplain: exit codes, JSON, configuration errors', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'explain-'));
  const good = join(dir, 'good.yaml');
  writeFileSync(good, `${SE}---\n${vs(`    - route: [{ destination: { host: reviews } }]\n`)}`);
  const ok = await runExplain({
    config: good,
    method: 'GET',
    url: 'http://reviews:9080/',
    headers: [],
    json: false,
  });
  t.equal(ok.code, 0);
  t.match(ok.stdout, 'action: forward (route default/reviews)');
  const json = await runExplain({
    config: good,
    method: 'GET',
    url: 'http://reviews:9080/',
    headers: ['end-user: x'],
    namespace: 'default',
    json: true,
  });
  t.equal(json.code, 0);
  const parsed = JSON.parse(json.stdout) as Explanation;
  t.equal(parsed.action.kind, 'forward');
  t.equal(parsed.request.headers.length, 2);
  const badUrl = await runExplain({ config: good, method: 'GET', url: 'reviews', headers: [], json: false });
  t.equal(badUrl.code, 2);
  t.match(badUrl.stderr, 'is not an absolute http:// or https:// URL');
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, vs('    - route: [{ destination: { host: reviews }, weight: -1 }]\n'));
  const invalid = await runExplain({
    config: bad,
    method: 'GET',
    url: 'http://reviews/',
    headers: [],
    json: false,
  });
  t.equal(invalid.code, 2);
  t.match(invalid.stderr, 'invalid configuration');
  const settings = join(dir, 'settings.yaml');
  writeFileSync(
    settings,
    `apiVersion: meshlet.dev/v1alpha1
kind: Proxy
metadata: { name: p }
spec: { app: "not a host port" }
`,
  );
  const badSettings = await runExplain({
    config: settings,
    method: 'GET',
    url: 'http://x/',
    headers: [],
    json: false,
  });
  t.equal(badSettings.code, 2);
  const badDomain = await runExplain({
    config: good,
    method: 'GET',
    url: 'http://reviews:9080/',
    headers: [],
    trustDomain: 'Not A Domain',
    json: false,
  });
  t.equal(badDomain.code, 2);
  t.match(badDomain.stderr, '--trust-domain must be a SPIFFE trust domain');
  const withId = await runExplain({
    config: good,
    method: 'GET',
    url: 'http://reviews:9080/',
    headers: [],
    identityDir: '/nonexistent',
    trustDomain: 'example.org',
    json: false,
  });
  t.equal(withId.code, 0);
  t.match(withId.stdout, 'ISTIO_MUTUAL (SNI outbound_.9080_._.reviews.default.svc.cluster.local');
});

t.test(
  'more reasons and actions: present, ignoreUriCase prefix, mirrors, gRPC abort, no retries',
  async (t) => {
    const bundle = load(
      SE,
      DR,
      `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: shadow }
spec:
  hosts: [shadow.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 8080, name: http, protocol: HTTP }, { number: 8081, name: http2, protocol: HTTP }]
  endpoints: [{ address: 10.0.1.1, serviceAccount: shadow }]
`,
      vs(`
    - name: present
      match: [{ headers: { x-debug: {} }, withoutHeaders: { x-skip: {} }, uri: { prefix: /API }, ignoreUriCase: true }]
      fault: { abort: { grpcStatus: UNAVAILABLE, percentage: { value: 100 } } }
      mirrors:
        - { destination: { host: shadow, port: { number: 8080 } }, percentage: { value: 0 } }
        - { destination: { host: shadow, port: { number: 9999 } } }
      retries: { attempts: 0 }
      headers: { response: { remove: [server] } }
      route: [{ destination: { host: reviews, subset: v1 } }]
`),
    );
    const e = run(bundle, 'GET', 'http://reviews:9080/api/x', ['x-debug: 1']);
    t.same(e.problems, []);
    const text = renderText(e);
    t.match(text, 'matched: header x-debug: present — x-debug is present');
    t.match(text, 'matched: withoutHeaders x-skip: present — request has no x-skip header');
    t.match(text, 'matched: uri prefix "/API" (ignoring case) — path "/api/x" starts with it');
    const a = forward(e);
    t.same(a.fault, ['abort with gRPC UNAVAILABLE for 100 % of requests']);
    t.same(a.mirrors, [
      'outbound|8080||shadow.default.svc.cluster.local for 0 % of requests (fraction 0: never sent)',
      'outbound|9999||shadow.default.svc.cluster.local for 100 % of requests (does not exist: no copy is sent)',
    ]);
    t.equal(a.retries.attempts, 0);
    t.match(text, /retries\s+route: none \(attempts 0\)/);
    t.same(a.destinations[0]?.responseHeaders, ['remove server']);
    const skipped = run(bundle, 'GET', 'http://reviews:9080/api/x', ['x-debug: 1', 'x-skip: 1']);
    t.match(renderText(skipped), 'withoutHeaders x-skip: present — request has a x-skip header');
    const sa = forward(
      run(
        load(
          SE.replace('reviews', 'x'),
          `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: shadow }
spec:
  hosts: [shadow.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 8080, name: http, protocol: HTTP }]
  endpoints: [{ address: 10.0.1.1, serviceAccount: shadow }]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: strict, namespace: default }
spec: { mtls: { mode: STRICT } }
`,
        ),
        'GET',
        'http://shadow:8080/',
        [],
        { identityDir: '/nonexistent' },
      ),
    ).destinations[0]?.details;
    t.match(sa?.tls, /destination PeerAuthentication STRICT/);
    t.equal(sa?.endpoints[0]?.serviceAccount, 'shadow');
    t.equal(
      sa?.endpoints[0]?.tls,
      'ISTIO_MUTUAL (SNI outbound_.8080_._.shadow.default.svc.cluster.local, expects spiffe://cluster.local/ns/default/sa/shadow)',
    );
    t.match(
      renderText(
        run(
          load(SE, vs('    - route: [{ destination: { host: reviews } }]\n')),
          'GET',
          'http://reviews:9080/',
          ['host: reviews:9080'],
        ),
      ),
      /authority\s+reviews:9080 \(from the Host header\)/,
    );
  },
);

t.test('Proxy document policy and a wildcard VirtualService that is less specific', async (t) => {
  const bundle = load(
    SE.replace('reviews.default.svc.cluster.local', 'reviews.prod.example.com'),
    `
apiVersion: meshlet.dev/v1alpha1
kind: Proxy
metadata: { name: p }
spec: { outboundTrafficPolicy: REGISTRY_ONLY }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: broad }
spec:
  hosts: ["*.example.com"]
  http: [{ directResponse: { status: 500 } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: narrow }
spec:
  hosts: ["*.prod.example.com"]
  http: [{ directResponse: { status: 200 } }]
`,
  );
  const e = run(bundle, 'GET', 'http://reviews.prod.example.com:9080/');
  t.equal(e.outboundTrafficPolicyFrom, 'Proxy document');
  t.equal(e.virtualService?.name, 'narrow');
  t.same(e.virtualService?.notChosen, [
    { name: 'broad', namespace: 'default', reason: '*.example.com is less specific or later in load order' },
  ]);
  t.same(e.action, {
    kind: 'direct',
    routeName: 'default/narrow',
    status: 200,
    body: null,
    responseHeaders: [],
  });
});
