import t from 'tap';
import { parseConfigText } from '../../../src/config/load-config.ts';
import type { ConfigBundle, HTTPRoute } from '../../../src/config/resource-types.ts';

function load(http: string, extra = '', ns = 'default'): ConfigBundle {
  const text = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
  namespace: ${ns}
spec:
  hosts: [reviews]
${extra}  http:
${http}`;
  return parseConfigText([{ name: 'vs.yaml', text }], {});
}
const errors = (b: ConfigBundle) => b.issues.filter((i) => i.severity === 'error');
const warnings = (b: ConfigBundle) => b.issues.filter((i) => i.severity === 'warning');
const msgs = (b: ConfigBundle) =>
  errors(b).map((e) => `${e.path.replace('VirtualService default/r: ', '')} | ${e.message}`);

function route(b: ConfigBundle, i = 0): HTTPRoute {
  const r = b.virtualServices[0]?.spec.http[i];
  if (r === undefined) throw new Error(`no route: ${JSON.stringify(b.issues)}`);
  return r;
}

t.test('short names expand with the namespace of the VirtualService (pitfall 11)', async (t) => {
  const b = load(
    `  - route:
    - destination: {host: ratings, subset: v1, port: {number: 9080}}
`,
    '',
    'foo',
  );
  t.same(errors(b), []);
  t.same(b.virtualServices[0]?.spec.hosts, ['reviews.foo.svc.cluster.local']);
  t.same(route(b).route[0]?.destination, { host: 'ratings.foo.svc.cluster.local', subset: 'v1', port: 9080 });
  t.same(b.virtualServices[0]?.spec.gateways, []);
});

t.test('fault: percentage absent means 0; percent values become per-million fractions', async (t) => {
  const b = load(`  - fault:
      abort: {httpStatus: 555}
      delay: {fixedDelay: 1.5s}
    route: [{destination: {host: reviews}}]
  - fault:
      abort: {httpStatus: 503, percentage: {value: 33.33333}}
      delay: {fixedDelay: 7s, percentage: {value: 100}}
    route: [{destination: {host: reviews}}]
  - fault:
      abort: {grpcStatus: UNAVAILABLE, percent: 20}
    route: [{destination: {host: reviews}}]
`);
  t.same(errors(b), []);
  t.same(route(b, 0).fault, {
    delay: { fixedDelayMs: 1500, fraction: 0 },
    abort: { httpStatus: 555, fraction: 0 },
  });
  t.same(route(b, 1).fault, {
    delay: { fixedDelayMs: 7000, fraction: 1 },
    abort: { httpStatus: 503, fraction: 0.333333 },
  });
  t.same(route(b, 2).fault, { abort: { grpcStatus: 'UNAVAILABLE', fraction: 0.2 } });
});

t.test('fault validation', async (t) => {
  const b = load(`  - fault: {}
    route: [{destination: {host: reviews}}]
  - fault:
      delay: {percentage: {value: 101}}
      abort: {httpStatus: 700, percentage: {value: 0.00001}}
    route: [{destination: {host: reviews}}]
  - fault:
      delay: {fixedDelay: 0.5ms}
    route: [{destination: {host: reviews}}]
`);
  t.same(msgs(b), [
    'spec.http[0].fault | fault must set delay or abort',
    'spec.http[1].fault.delay.fixedDelay | fixedDelay is required',
    'spec.http[1].fault.delay.percentage.value | value 101 is above the maximum 100',
    'spec.http[1].fault.abort.httpStatus | value 700 is above the maximum 599',
    'spec.http[1].fault.abort.percentage.value | percentage must be 0 or at least 0.0001',
    'spec.http[2].fault.delay.fixedDelay | duration must be at least 1ms',
  ]);
});

t.test('mirror: percentage absent means 100 %, 0 turns it off; mirror vs mirrors', async (t) => {
  const b = load(`  - route: [{destination: {host: reviews}}]
    mirror: {host: shadow}
  - route: [{destination: {host: reviews}}]
    mirror: {host: shadow}
    mirrorPercentage: {value: 0}
  - route: [{destination: {host: reviews}}]
    mirrors:
    - destination: {host: a}
    - destination: {host: b.other.svc.cluster.local, subset: v2}
      percentage: {value: 12.5}
`);
  t.same(errors(b), []);
  t.same(route(b, 0).mirrors, [{ destination: { host: 'shadow.default.svc.cluster.local' }, fraction: 1 }]);
  t.same(route(b, 1).mirrors, [{ destination: { host: 'shadow.default.svc.cluster.local' }, fraction: 0 }]);
  t.same(route(b, 2).mirrors, [
    { destination: { host: 'a.default.svc.cluster.local' }, fraction: 1 },
    { destination: { host: 'b.other.svc.cluster.local', subset: 'v2' }, fraction: 0.125 },
  ]);
  const bad = load(`  - route: [{destination: {host: reviews}}]
    mirror: {host: shadow}
    mirrors: [{destination: {host: a}}]
`);
  t.same(msgs(bad), ['spec.http[0].mirrors | mirror and mirrors are mutually exclusive']);
});

t.test('weights: unset is 0, Σ > 0 needed with several destinations, negative rejected', async (t) => {
  const b = load(`  - route:
    - destination: {host: reviews, subset: v1}
      weight: 75
    - destination: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews}
`);
  t.same(errors(b), []);
  t.same(
    route(b, 0).route.map((r) => r.weight),
    [75, 0],
  );
  t.equal(route(b, 1).route[0]?.weight, 0, 'a single destination keeps weight 0 (it is ignored)');
  const bad = load(`  - route:
    - destination: {host: a}
      weight: 0
    - destination: {host: b}
  - route:
    - destination: {host: a}
      weight: -1
    - destination: {host: b}
      weight: "50"
`);
  t.same(msgs(bad), [
    'spec.http[0].route | total weight of the destinations must be greater than 0',
    'spec.http[1].route[0].weight | value -1 is below the minimum 0',
    'spec.http[1].route[1].weight | expected integer, got string',
  ]);
});

t.test('redirect: default code 301, allowed codes, exclusivity', async (t) => {
  const b = load(`  - redirect: {uri: /new, authority: b.example.com}
  - redirect: {scheme: https, redirectCode: 308, derivePort: FROM_REQUEST_PORT}
  - match: [{uri: {prefix: /old}}]
    redirect: {prefixRewrite: /new}
`);
  t.same(errors(b), []);
  t.same(route(b, 0).redirect, { uri: '/new', authority: 'b.example.com', redirectCode: 301 });
  t.same(route(b, 1).redirect, { scheme: 'https', derivePort: 'FROM_REQUEST_PORT', redirectCode: 308 });
  t.same(route(b, 2).redirect, { prefixRewrite: '/new', redirectCode: 301 });
  t.same(route(b, 0).route, []);
  const bad = load(`  - redirect: {uri: /a, redirectCode: 200}
  - redirect: {uri: /a, prefixRewrite: /b}
  - redirect: {redirectCode: 302}
  - redirect: {uri: /a}
    rewrite: {uri: /b}
    fault: {abort: {httpStatus: 500}}
  - match: [{uri: {exact: /x}}]
    redirect: {prefixRewrite: /y}
  - route: [{destination: {host: a}}]
    directResponse: {status: 200}
  - name: nothing
`);
  t.same(msgs(bad), [
    'spec.http[0].redirect.redirectCode | redirectCode 200 is invalid; expected one of 301, 302, 303, 307, 308',
    'spec.http[1].redirect.prefixRewrite | uri and prefixRewrite are mutually exclusive',
    'spec.http[2].redirect | redirect must set at least one of uri, prefixRewrite, authority, scheme or port',
    'spec.http[3].rewrite | rewrite cannot be used together with redirect',
    'spec.http[3].fault | fault cannot be used together with redirect',
    'spec.http[4].redirect.prefixRewrite | prefixRewrite requires every uri match of the rule to be a prefix match',
    'spec.http[5].directResponse | route and directResponse are mutually exclusive',
    'spec.http[6] | exactly one of route, redirect or directResponse is required',
  ]);
});

t.test('directResponse bodies become Buffers', async (t) => {
  const b = load(`  - directResponse: {status: 503, body: {string: "down for maintenance"}}
  - directResponse: {status: 200, body: {bytes: "aGVsbG8="}}
  - directResponse: {status: 204}
`);
  t.same(errors(b), []);
  t.equal(route(b, 0).directResponse?.body?.toString(), 'down for maintenance');
  t.equal(route(b, 1).directResponse?.body?.toString(), 'hello');
  t.same(route(b, 2).directResponse, { status: 204 });
  const bad = load(`  - directResponse: {body: {string: x}}
  - directResponse: {status: 600}
  - directResponse: {status: 200, body: {string: a, bytes: YQ==}}
`);
  t.same(msgs(bad), [
    'spec.http[0].directResponse.status | status is required',
    'spec.http[1].directResponse.status | value 600 is above the maximum 599',
    'spec.http[2].directResponse.body.bytes | string and bytes are mutually exclusive',
  ]);
});

t.test('retries: defaults and validation', async (t) => {
  const b = load(`  - route: [{destination: {host: reviews}}]
    retries: {attempts: 3, perTryTimeout: 2s}
  - route: [{destination: {host: reviews}}]
    retries: {attempts: 0}
  - route: [{destination: {host: reviews}}]
    retries: {attempts: 2, retryOn: "5xx, 503,reset", backoff: 50ms, retryRemoteLocalities: true}
    timeout: 10s
  - route: [{destination: {host: reviews}}]
    timeout: 0s
`);
  t.same(errors(b), []);
  t.same(route(b, 0).retries, {
    attempts: 3,
    perTryTimeoutMs: 2000,
    retryOn: 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes',
  });
  t.equal(route(b, 1).retries?.attempts, 0);
  t.same(route(b, 2).retries, {
    attempts: 2,
    retryOn: '5xx, 503,reset',
    backoffMs: 50,
    retryRemoteLocalities: true,
  });
  t.equal(route(b, 2).timeoutMs, 10_000);
  t.equal(route(b, 3).timeoutMs, 0, 'timeout 0s means disabled');
  t.equal(route(b, 0).timeoutMs, undefined);
  const bad = load(`  - route: [{destination: {host: reviews}}]
    retries: {attempts: -1, retryOn: "555,bogus", perTryTimeout: 10}
    timeout: 5
`);
  t.same(msgs(bad), [
    'spec.http[0].retries.attempts | value -1 is below the minimum 0',
    'spec.http[0].retries.retryOn | invalid retryOn policy "555"',
    'spec.http[0].retries.retryOn | invalid retryOn policy "bogus"',
    'spec.http[0].retries.perTryTimeout | expected duration string such as "5s", got number',
    'spec.http[0].timeout | expected duration string such as "5s", got number',
  ]);
});

t.test('matches: StringMatch rules, lowercase header names, presence', async (t) => {
  const b = load(`  - match:
    - uri: {prefix: ""}
      headers:
        End-User: {exact: jason}
        x-present: {}
        x-legacy: {regex: "*"}
        cookie: {regex: "^(.*?;)?(user=dev-123)(;.*)?"}
      withoutHeaders:
        x-debug: {exact: "1"}
      queryParams:
        Token: {prefix: abc}
      method: {exact: GET}
      ignoreUriCase: true
      port: 9080
      sourceLabels: {app: productpage}
      sourceNamespace: shop
      gateways: [mesh]
    route: [{destination: {host: reviews}}]
`);
  t.same(errors(b), []);
  const m = route(b).match[0];
  t.same(m?.uri, { kind: 'prefix', value: '' });
  t.same(Object.keys(m?.headers ?? {}), ['end-user', 'x-present', 'x-legacy', 'cookie']);
  t.same(m?.headers['end-user'], { kind: 'exact', value: 'jason' });
  t.same(m?.headers['x-present'], { kind: 'present' });
  t.same(m?.headers['x-legacy'], { kind: 'present' });
  const cookie = m?.headers['cookie'];
  t.equal(cookie?.kind, 'regex');
  if (cookie?.kind === 'regex') {
    t.ok(cookie.re.test('a=1;user=dev-123'));
    t.equal(cookie.source, '^(.*?;)?(user=dev-123)(;.*)?');
  }
  t.same(
    m?.queryParams,
    { Token: { kind: 'prefix', value: 'abc' } },
    'query parameter names keep their case',
  );
  t.same(m?.withoutHeaders, { 'x-debug': { kind: 'exact', value: '1' } });
  t.equal(m?.ignoreUriCase, true);
  t.equal(m?.port, 9080);
  t.same(m?.sourceLabels, { app: 'productpage' });
  t.equal(m?.sourceNamespace, 'shop');
  t.same(m?.gateways, ['mesh']);

  const bad = load(`  - match:
    - uri: {exact: /a, prefix: /b}
      method: {prefix: ""}
      scheme: {}
      authority: {regex: ""}
      headers:
        x: {regex: "(?=a)"}
    - uri: {regex: "\\\\d+(a"}
    route: [{destination: {host: reviews}}]
`);
  t.same(msgs(bad), [
    'spec.http[0].match[0].uri.prefix | exactly one of exact, prefix or regex is allowed, got exact, prefix',
    'spec.http[0].match[0].method.prefix | empty prefix is only allowed for uri',
    'spec.http[0].match[0].scheme | exactly one of exact, prefix or regex is required',
    'spec.http[0].match[0].authority.regex | empty regex',
    'spec.http[0].match[0].headers.x.regex | invalid regex: lookahead ((?=) is not supported by RE2',
    'spec.http[0].match[1].uri.regex | invalid regex: Invalid regular expression: /^(?:\\d+(a)$/u: Unterminated group',
  ]);
});

t.test('match [{}] is a catch-all with a warning', async (t) => {
  const b = load(`  - match: [{}]
    route: [{destination: {host: reviews}}]
`);
  t.same(errors(b), []);
  t.equal(route(b).match.length, 1);
  t.same(route(b).match[0], { headers: {}, withoutHeaders: {}, queryParams: {}, ignoreUriCase: false });
  t.match(warnings(b)[0]?.message, /catch-all/);
  t.equal(warnings(b)[0]?.path, 'VirtualService default/r: spec.http[0].match[0]');
});

t.test('gateways without mesh: kept, with a warning', async (t) => {
  const b = load(`  - route: [{destination: {host: reviews}}]\n`, '  gateways: [istio-system/ingress]\n');
  t.same(errors(b), []);
  t.same(b.virtualServices[0]?.spec.gateways, ['istio-system/ingress']);
  t.match(warnings(b)[0]?.message, /does not apply to sidecars/);
  const withStar = parseConfigText(
    [
      {
        name: 'x.yaml',
        text: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: gw}
spec:
  hosts: ["*"]
  gateways: [my-gateway]
  http: [{route: [{destination: {host: a}}]}]
`,
      },
    ],
    {},
  );
  t.same(errors(withStar), [], '"*" is fine for a gateway-only VirtualService');
});

t.test('hosts: "*" for the mesh, duplicates, delegate, missing http', async (t) => {
  const b = parseConfigText(
    [
      {
        name: 'x.yaml',
        text: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a}
spec:
  hosts: ["*", Reviews, reviews.default.svc.cluster.local]
  http:
  - delegate: {name: child}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b}
spec:
  hosts: []
`,
      },
    ],
    {},
  );
  t.same(
    errors(b).map((e) => `${e.path} | ${e.message}`),
    [
      'VirtualService default/a: spec.hosts[0] | "*" alone is not allowed as a host of a VirtualService bound to the mesh (sidecars)',
      'VirtualService default/a: spec.hosts[2] | duplicate host "reviews.default.svc.cluster.local"',
      'VirtualService default/a: spec.http[0].delegate | delegate is not supported',
      'VirtualService default/b: spec | http, tcp or tls must be provided in a VirtualService',
      'VirtualService default/b: spec.hosts | at least one host is required',
    ],
  );
});

t.test('rewrite: uri, authority, uriRegexRewrite in JS replacement syntax', async (t) => {
  const b = load(`  - route: [{destination: {host: reviews}}]
    rewrite: {uri: /v2, authority: new.example.com}
  - route: [{destination: {host: reviews}}]
    rewrite:
      uriRegexRewrite: {match: "^/service/([^/]+)(/.*)$", rewrite: '/customprefix\\2/\\1$'}
`);
  t.same(errors(b), []);
  t.same(route(b, 0).rewrite, { uri: '/v2', authority: 'new.example.com' });
  const rr = route(b, 1).rewrite?.uriRegexRewrite;
  t.equal(rr?.rewrite, '/customprefix$2/$1$$');
  t.equal('/service/foo/bar'.replace(rr?.match ?? /x/, rr?.rewrite ?? ''), '/customprefix/bar/foo$');
  const bad = load(`  - route: [{destination: {host: reviews}}]
    rewrite: {uri: /a, uriRegexRewrite: {match: a, rewrite: b}}
  - route: [{destination: {host: reviews}}]
    rewrite: {}
`);
  t.same(msgs(bad), [
    'spec.http[0].rewrite.uriRegexRewrite | uri and uriRegexRewrite are mutually exclusive',
    'spec.http[1].rewrite | rewrite must set at least one of uri, uriRegexRewrite or authority',
  ]);
});

t.test('header edits: names lowercased, order kept', async (t) => {
  const b = load(`  - route:
    - destination: {host: reviews}
      headers:
        response: {set: {X-Dest: a}}
    headers:
      request:
        set: {X-Mode: test, Host: other}
        add: {X-Trace: "1"}
        remove: [X-Secret]
      response:
        remove: [Server]
`);
  t.same(errors(b), []);
  t.same(route(b).headers, {
    request: {
      set: [
        ['x-mode', 'test'],
        ['host', 'other'],
      ],
      add: [['x-trace', '1']],
      remove: ['x-secret'],
    },
    response: { set: [], add: [], remove: ['server'] },
  });
  t.same(route(b).route[0]?.headers, { response: { set: [['x-dest', 'a']], add: [], remove: [] } });
});

t.test('retries, mirrors, timeouts and faults are acted on: no warning for them', async (t) => {
  const b = parseConfigText([
    {
      name: 'vs.yaml',
      text: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: r }
spec:
  hosts: [reviews]
  http:
    - route: [{ destination: { host: reviews } }]
      retries: { attempts: 3, retryOn: "5xx,gateway-error,reset,retriable-4xx,409", perTryTimeout: 1s, backoff: 10ms, retryIgnorePreviousHosts: false, retryRemoteLocalities: false }
      mirror: { host: shadow }
      mirrorPercentage: { value: 10 }
      timeout: 3s
      fault: { delay: { fixedDelay: 5ms, percentage: { value: 1 } } }
    - route: [{ destination: { host: reviews } }]
      retries: { attempts: 0 }
      mirrors: [{ destination: { host: shadow, subset: v2 }, percentage: { value: 50 } }, { destination: { host: other } }]
`,
    },
  ]);
  t.same(b.issues, [], 'no error and no warning');
  const [first, second] = b.virtualServices[0]?.spec.http ?? [];
  t.same(first?.retries, {
    attempts: 3,
    retryOn: '5xx,gateway-error,reset,retriable-4xx,409',
    perTryTimeoutMs: 1000,
    retryRemoteLocalities: false,
    retryIgnorePreviousHosts: false,
    backoffMs: 10,
  });
  t.same(first?.mirrors, [{ destination: { host: 'shadow.default.svc.cluster.local' }, fraction: 0.1 }]);
  t.same(second?.mirrors, [
    { destination: { host: 'shadow.default.svc.cluster.local', subset: 'v2' }, fraction: 0.5 },
    { destination: { host: 'other.default.svc.cluster.local' }, fraction: 1 },
  ]);
});

t.test('retryRemoteLocalities: true is a warning naming the field (meshlet has no localities)', async (t) => {
  const b = load(`  - route: [{destination: {host: reviews}}]
    retries: {attempts: 2, retryRemoteLocalities: true}
`);
  t.same(errors(b), []);
  t.same(
    warnings(b).map((w) => `${w.pos.line}:${w.pos.col} ${w.path.replace(/^.*: /, '')} | ${w.message}`),
    [
      '10:51 spec.http[0].retries.retryRemoteLocalities | retryRemoteLocalities is not acted on (meshlet has no localities); retries choose among all endpoints',
    ],
  );
  t.equal(route(b).retries?.retryRemoteLocalities, true, 'kept as written');
});

t.test('durations that become timers are capped at what a Node.js timer can wait', async (t) => {
  const b = load(`  - route: [{destination: {host: reviews}}]
    timeout: 720h
    retries: {attempts: 1, perTryTimeout: 596h31m23.648s, backoff: 60h}
    fault: {delay: {fixedDelay: 1000h, percentage: {value: 1}}}
  - route: [{destination: {host: reviews}}]
    timeout: 596h31m23.647s
    retries: {attempts: 1, backoff: 59h39m8.364s}
`);
  t.same(errors(b), []);
  const max = 2_147_483_647;
  const tenth = 214_748_364;
  const msg = (ms: number, cap: number, days: string) =>
    `${ms}ms is longer than meshlet's timers can wait; ${cap}ms (about ${days} days) is used`;
  t.same(
    warnings(b).map((w) => `${w.path.replace(/^.*: /, '')} | ${w.message}`),
    [
      `spec.http[0].timeout | ${msg(2_592_000_000, max, '24.9')}`,
      `spec.http[0].retries.perTryTimeout | ${msg(2_147_483_648, max, '24.9')}`,
      `spec.http[0].retries.backoff | ${msg(216_000_000, tenth, '2.5')}`,
      `spec.http[0].fault.delay.fixedDelay | ${msg(3_600_000_000, max, '24.9')}`,
    ],
    'back-off waits up to 10 x its base, so the base is capped at a tenth',
  );
  t.equal(route(b, 0).timeoutMs, max);
  t.equal(route(b, 0).retries?.perTryTimeoutMs, max);
  t.equal(route(b, 0).retries?.backoffMs, tenth);
  t.equal(route(b, 0).fault?.delay?.fixedDelayMs, max);
  t.equal(route(b, 1).timeoutMs, max, 'exactly the largest timer is kept');
  t.equal(route(b, 1).retries?.backoffMs, tenth, 'exactly a tenth of it too');
});
