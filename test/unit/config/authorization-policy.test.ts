import t from 'tap';
import { parseConfigText } from '../../../src/config/load-config.ts';
import type { ConfigBundle } from '../../../src/config/resource-types.ts';
import {
  conditionKeyRule,
  isIpOrCidr,
  pathTemplateProblem,
} from '../../../src/config/validate-authorization-policy.ts';

function load(spec: string, meta = '{name: ap, namespace: foo}'): ConfigBundle {
  const text = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: ${meta}
${spec}`;
  return parseConfigText([{ name: 'ap.yaml', text }], {});
}

const msgs = (b: ConfigBundle, severity = 'error') =>
  b.issues
    .filter((i) => i.severity === severity)
    .map((e) => `${e.path.replace(/^AuthorizationPolicy \S+: /, '')} | ${e.message}`);

/** A policy with one rule made of `rule` (YAML flow or block under `rules:`). */
const withRule = (rule: string): ConfigBundle => load(`spec:\n  rules:\n  - ${rule}`);

t.test('empty spec, absent spec: an ALLOW policy with no rules (allow nothing)', async (t) => {
  for (const spec of ['spec: {}', '', 'spec: {rules: []}', 'spec: {rules: ~}']) {
    const b = load(spec);
    t.same(b.issues, [], JSON.stringify(spec));
    t.same(b.authorizationPolicies[0]?.spec, {
      hasTargetRefs: false,
      action: 'ALLOW',
      rules: [],
      dryRun: false,
    });
  }
  const b = load('spec: {}');
  t.equal(b.authorizationPolicies[0]?.meta.namespace, 'foo');
  t.equal(b.authorizationPolicies[0]?.meta.name, 'ap');
});

t.test('`rules: [{}]` is one rule that matches every request', async (t) => {
  const b = load('spec: {action: DENY, rules: [{}]}');
  t.same(b.issues, []);
  t.same(b.authorizationPolicies[0]?.spec.rules, [{ from: [], to: [], when: [] }]);
  t.equal(b.authorizationPolicies[0]?.spec.action, 'DENY');
});

t.test('actions: ALLOW (default), DENY, AUDIT; CUSTOM is an error; provider only with CUSTOM', async (t) => {
  for (const action of ['ALLOW', 'DENY', 'AUDIT']) {
    const b = load(`spec: {action: ${action}}`);
    t.same(b.issues, [], action);
    t.equal(b.authorizationPolicies[0]?.spec.action, action);
  }
  const custom = load('spec:\n  action: CUSTOM\n  provider: {name: my-ext-authz}\n  rules: [{}]');
  t.same(msgs(custom), [
    'spec.action | action CUSTOM (ext-authz) is not supported: meshlet has no external authorizer, and skipping the policy would let through what it is meant to check',
  ]);
  t.equal(custom.authorizationPolicies.length, 0, 'a CUSTOM policy is refused, so the load fails');
  const provider = load('spec:\n  action: DENY\n  provider: {name: x}');
  t.same(msgs(provider), ['spec.provider | provider is only allowed with action CUSTOM']);
  const bad = load('spec: {action: deny}');
  t.same(msgs(bad), ['spec.action | invalid value "deny"; expected one of ALLOW, DENY, AUDIT, CUSTOM']);
});

t.test('selector, targetRef and targetRefs: at most one; targetRefs mark the policy', async (t) => {
  const sel = load('spec:\n  selector: {matchLabels: {app: httpbin}}');
  t.same(sel.issues, []);
  t.same(sel.authorizationPolicies[0]?.spec.selector, { app: 'httpbin' });
  const emptySel = load('spec:\n  selector: {matchLabels: {}}');
  t.same(msgs(emptySel), []);
  t.notOk('selector' in (emptySel.authorizationPolicies[0]?.spec ?? {}), 'an empty selector is no selector');

  const refs = load('spec:\n  targetRefs:\n  - {kind: Gateway, group: gateway.networking.k8s.io, name: gw}');
  t.same(msgs(refs), []);
  t.same(msgs(refs, 'warning'), [
    'spec.targetRefs | targetRef(s) attach this policy to a waypoint or gateway; like an Istio sidecar, meshlet does not apply it to its workloads',
  ]);
  t.equal(refs.authorizationPolicies[0]?.spec.hasTargetRefs, true);
  const ref = load('spec:\n  targetRef: {kind: Service, name: reviews}');
  t.same(msgs(ref), []);
  t.equal(ref.authorizationPolicies[0]?.spec.hasTargetRefs, true);
  const emptyWithSelector = load('spec:\n  selector: {matchLabels: {app: a}}\n  targetRefs: []');
  t.same(emptyWithSelector.issues, [], 'an empty targetRefs does not clash with a selector');
  t.same(emptyWithSelector.authorizationPolicies[0]?.spec.selector, { app: 'a' });
  const emptyRefs = load('spec:\n  targetRefs: []');
  t.same(emptyRefs.issues, []);
  t.equal(emptyRefs.authorizationPolicies[0]?.spec.hasTargetRefs, false, 'an empty list is no targetRefs');

  const both = load('spec:\n  selector: {matchLabels: {app: a}}\n  targetRefs: [{kind: Service, name: a}]');
  t.same(msgs(both), [
    'spec.targetRefs | selector and targetRefs are mutually exclusive (a policy attaches one way)',
  ]);
  t.equal(both.authorizationPolicies.length, 0);
  const badRef = load('spec:\n  targetRefs: [{kind: Service, sectionName: http}, ~]\n  targetRef: {name: 1}');
  t.same(msgs(badRef), [
    'spec.targetRefs | targetRef and targetRefs are mutually exclusive (a policy attaches one way)',
    'spec.targetRefs[0].name | name is required',
    'spec.targetRefs[0].sectionName | unknown field',
    'spec.targetRefs[1] | targetRef must not be null',
    'spec.targetRef.kind | kind is required',
    'spec.targetRef.name | expected string, got number',
  ]);
  const notMap = load('spec:\n  selector: {matchLabels: app=a}');
  t.same(msgs(notMap), ['spec.selector.matchLabels | expected map, got string']);
  t.equal(notMap.authorizationPolicies.length, 0);
  const badSel = load('spec:\n  selector: {matchLabels: {app: "a*"}}');
  t.same(msgs(badSel), [
    'spec.selector.matchLabels.app | invalid selector value "a*" for "app": wildcards are not supported',
  ]);
  t.equal(badSel.authorizationPolicies.length, 0);
});

t.test('unknown fields are errors at every level (a dropped field changes who may call)', async (t) => {
  const b = load(`spec:
  action: DENY
  rule: []
  rules:
  - form: [{source: {principals: [a]}}]
    from:
    - source: {notPrincipal: ["*"]}
      sources: {}
    to:
    - operation: {method: [GET]}
    when:
    - {key: source.ip, values: [1.2.3.4], value: [x]}`);
  t.same(msgs(b), [
    'spec.rule | unknown field',
    'spec.rules[0].form | unknown field',
    'spec.rules[0].from[0].source | `from.source` must not be empty',
    'spec.rules[0].from[0].source.notPrincipal | unknown field',
    'spec.rules[0].from[0].sources | unknown field',
    'spec.rules[0].to[0].operation | `to.operation` must not be empty',
    'spec.rules[0].to[0].operation.method | unknown field',
    'spec.rules[0].when[0].value | unknown field',
  ]);
  t.equal(b.authorizationPolicies.length, 0);
});

t.test('rule shape: null rules, empty from/to lists, entries without source or operation', async (t) => {
  const b = load(`spec:
  rules:
  - ~
  - from: []
  - to: []
  - from: [{}, ~, {source: ~}, {source: {}}]
  - to: [{}, {operation: {}}, {operation: {paths: []}}, ~]
  - when: [~, {}, {key: source.ip}, {key: source.ip, values: [], notValues: []}]
  - when: []
  - from: "x"`);
  t.same(msgs(b), [
    'spec.rules[0] | a rule must not be null (write {} for a rule that matches every request)',
    'spec.rules[1].from | `from` must not be an empty list (leave it out to match every request)',
    'spec.rules[2].to | `to` must not be an empty list (leave it out to match every request)',
    'spec.rules[3].from[0].source | `from.source` must not be empty',
    'spec.rules[3].from[1] | `from` entries must not be null',
    'spec.rules[3].from[2].source | `from.source` must not be empty',
    'spec.rules[3].from[3].source | `from.source` must not be empty',
    'spec.rules[4].to[0].operation | `to.operation` must not be empty',
    'spec.rules[4].to[1].operation | `to.operation` must not be empty',
    'spec.rules[4].to[2].operation | `to.operation` must not be empty',
    'spec.rules[4].to[3] | `to` entries must not be null',
    'spec.rules[5].when[0] | a `when` condition must not be empty',
    'spec.rules[5].when[1].key | key is required',
    'spec.rules[5].when[2] | at least one of values or notValues must be set for key source.ip',
    'spec.rules[5].when[3] | at least one of values or notValues must be set for key source.ip',
    'spec.rules[7].from | expected list, got string',
  ]);
  const whenEmpty = load('spec:\n  rules:\n  - when: []');
  t.same(whenEmpty.issues, [], '`when: []` is no condition');
});

t.test('source: every field is kept as written; empty lists are unset', async (t) => {
  const b = withRule(`from:
    - source:
        principals: [cluster.local/ns/default/sa/productpage, "cluster.local/ns/x/*", "*/sa/admin", "*"]
        notPrincipals: [cluster.local/ns/default/sa/evil]
        namespaces: [default, "prod-*", "*-test", "*", "a*b"]
        notNamespaces: [kube-system]
        trustDomains: [cluster.local, "*.example.org"]
        notTrustDomains: [evil.org]
        ipBlocks: [10.0.0.1, 10.0.0.0/8, "::1", "fd00::/8"]
        notIpBlocks: [10.1.2.3/32]
        remoteIpBlocks: [192.168.0.0/16]
        notRemoteIpBlocks: [192.168.1.1]
    - source:
        serviceAccounts: [default/productpage, reviews]
        notServiceAccounts: [other-ns/admin]
        ipBlocks: []`);
  t.same(msgs(b), []);
  t.same(b.authorizationPolicies[0]?.spec.rules[0]?.from, [
    {
      principals: ['cluster.local/ns/default/sa/productpage', 'cluster.local/ns/x/*', '*/sa/admin', '*'],
      notPrincipals: ['cluster.local/ns/default/sa/evil'],
      namespaces: ['default', 'prod-*', '*-test', '*', 'a*b'],
      notNamespaces: ['kube-system'],
      trustDomains: ['cluster.local', '*.example.org'],
      notTrustDomains: ['evil.org'],
      ipBlocks: ['10.0.0.1', '10.0.0.0/8', '::1', 'fd00::/8'],
      notIpBlocks: ['10.1.2.3/32'],
      remoteIpBlocks: ['192.168.0.0/16'],
      notRemoteIpBlocks: ['192.168.1.1'],
    },
    { serviceAccounts: ['default/productpage', 'reviews'], notServiceAccounts: ['other-ns/admin'] },
  ]);
});

t.test('value syntax: "*" alone, or once at the start or the end; no empty values', async (t) => {
  const b = withRule(`from:
    - source:
        principals: ["a*b", "*a*", "**", ""]
        trustDomains: ["x*y"]
    to:
    - operation:
        hosts: ["*.example.com", "example.*", "ex*ample.com"]
        methods: ["G*T"]
        paths: ["/a*/b", "/api/*", "*.js"]`);
  t.same(msgs(b), [
    'spec.rules[0].from[0].source.principals[0] | "a*b": "*" may only be the whole value, or once at the start (suffix match) or at the end (prefix match)',
    'spec.rules[0].from[0].source.principals[1] | "*a*": "*" may only be the whole value, or once at the start (suffix match) or at the end (prefix match)',
    'spec.rules[0].from[0].source.principals[2] | "**": "*" may only be the whole value, or once at the start (suffix match) or at the end (prefix match)',
    'spec.rules[0].from[0].source.principals[3] | empty value not allowed in principals',
    'spec.rules[0].from[0].source.trustDomains[0] | "x*y": "*" may only be the whole value, or once at the start (suffix match) or at the end (prefix match)',
    'spec.rules[0].to[0].operation.hosts[2] | "ex*ample.com": "*" may only be the whole value, or once at the start (suffix match) or at the end (prefix match)',
    'spec.rules[0].to[0].operation.methods[0] | "G*T": "*" may only be the whole value, or once at the start (suffix match) or at the end (prefix match)',
    'spec.rules[0].to[0].operation.paths[0] | "/a*/b": "*" may only be the whole value, or once at the start (suffix match) or at the end (prefix match)',
  ]);
  t.equal(b.authorizationPolicies.length, 0);
  const types = withRule('from: [{source: {principals: [1, ~]}}]');
  t.same(msgs(types), [
    'spec.rules[0].from[0].source.principals[0] | expected string, got number',
    'spec.rules[0].from[0].source.principals[1] | expected string, got null',
  ]);
  const notList = withRule('from: [{source: {principals: cluster.local/ns/a/sa/b}}]');
  t.same(msgs(notList), ['spec.rules[0].from[0].source.principals | expected list, got string']);
});

t.test('namespaces: "*" anywhere (Istio makes it "anything"), namespace characters otherwise', async (t) => {
  const b = withRule(
    'from: [{source: {namespaces: ["team-*-prod", "Default", "a.b", "ns/x"], notNamespaces: [""]}}]',
  );
  t.same(msgs(b), [
    'spec.rules[0].from[0].source.namespaces[1] | namespace "Default" may only hold lowercase letters, digits, "-" and "*"',
    'spec.rules[0].from[0].source.namespaces[2] | namespace "a.b" may only hold lowercase letters, digits, "-" and "*"',
    'spec.rules[0].from[0].source.namespaces[3] | namespace "ns/x" may only hold lowercase letters, digits, "-" and "*"',
    'spec.rules[0].from[0].source.notNamespaces[0] | empty value not allowed in notNamespaces',
  ]);
});

t.test(
  'serviceAccounts: ns/sa or sa, no wildcard, at most 16, never with principals or namespaces',
  async (t) => {
    const b = withRule(
      'from: [{source: {serviceAccounts: ["*", "a/b/c", "Ns/sa", "ns/Sa", "ns/*"], notServiceAccounts: ["-x"]}}]',
    );
    t.same(msgs(b), [
      'spec.rules[0].from[0].source.serviceAccounts[0] | wildcards are not supported in serviceAccounts ("*")',
      'spec.rules[0].from[0].source.serviceAccounts[1] | serviceAccounts "a/b/c" must be "namespace/serviceaccount" or "serviceaccount"',
      'spec.rules[0].from[0].source.serviceAccounts[2] | "Ns" in "Ns/sa" is not a namespace name',
      'spec.rules[0].from[0].source.serviceAccounts[3] | "Sa" in "ns/Sa" is not a service account name',
      'spec.rules[0].from[0].source.serviceAccounts[4] | wildcards are not supported in serviceAccounts ("ns/*")',
      'spec.rules[0].from[0].source.notServiceAccounts[0] | "-x" in "-x" is not a service account name',
    ]);
    const seventeen = Array.from({ length: 17 }, (_, i) => `sa${i}`).join(', ');
    const many = withRule(
      `from: [{source: {serviceAccounts: [${seventeen}], notServiceAccounts: [${seventeen}]}}]`,
    );
    t.same(msgs(many), [
      'spec.rules[0].from[0].source.serviceAccounts | at most 16 serviceAccounts are allowed, got 17',
      'spec.rules[0].from[0].source.notServiceAccounts | at most 16 notServiceAccounts are allowed, got 17',
    ]);
    const sixteen = Array.from({ length: 16 }, (_, i) => `sa${i}`).join(', ');
    t.same(msgs(withRule(`from: [{source: {serviceAccounts: [${sixteen}]}}]`)), [], '16 are allowed');
    const mixed = withRule(
      'from: [{source: {serviceAccounts: [a], principals: [x], notNamespaces: [y]}}, {source: {notServiceAccounts: [a], namespaces: [n]}}, {source: {serviceAccounts: [a], ipBlocks: [1.2.3.4]}}]',
    );
    t.same(msgs(mixed), [
      'spec.rules[0].from[0].source.serviceAccounts | serviceAccounts cannot be combined with principals or notNamespaces in one source',
      'spec.rules[0].from[1].source.notServiceAccounts | notServiceAccounts cannot be combined with namespaces in one source',
    ]);
  },
);

t.test('ipBlocks: IPs and CIDRs only', async (t) => {
  const b = withRule(
    'from: [{source: {ipBlocks: ["1.2.3.4/33", "1.2.3", "*", "::1/129", "10.0.0.0/x", "10.0.0.0/8/1", "fe80::1%eth0"], remoteIpBlocks: ["10.0.0.0/08"]}}]',
  );
  t.same(msgs(b), [
    'spec.rules[0].from[0].source.ipBlocks[0] | "1.2.3.4/33" is not an IP address or CIDR block',
    'spec.rules[0].from[0].source.ipBlocks[1] | "1.2.3" is not an IP address or CIDR block',
    'spec.rules[0].from[0].source.ipBlocks[2] | "*" is not an IP address or CIDR block',
    'spec.rules[0].from[0].source.ipBlocks[3] | "::1/129" is not an IP address or CIDR block',
    'spec.rules[0].from[0].source.ipBlocks[4] | "10.0.0.0/x" is not an IP address or CIDR block',
    'spec.rules[0].from[0].source.ipBlocks[5] | "10.0.0.0/8/1" is not an IP address or CIDR block',
    'spec.rules[0].from[0].source.ipBlocks[6] | "fe80::1%eth0" is not an IP address or CIDR block',
  ]);
  t.ok(isIpOrCidr('10.0.0.0/08'), 'a leading zero in the prefix length reads as 8');
  t.ok(isIpOrCidr('0.0.0.0/0'));
  t.ok(isIpOrCidr('::/0'));
  t.ok(isIpOrCidr('2001:db8::/32'));
  t.ok(isIpOrCidr('1.2.3.4/16'), 'host bits may be set (Go ParseCIDR accepts it)');
  t.notOk(isIpOrCidr(''));
  t.notOk(isIpOrCidr('/8'));
});

t.test('JWT source fields load with a warning saying how they evaluate', async (t) => {
  const b = withRule('from: [{source: {requestPrincipals: ["*"]}}, {source: {notRequestPrincipals: ["*"]}}]');
  t.same(msgs(b), []);
  t.same(msgs(b, 'warning'), [
    'spec.rules[0].from[0].source.requestPrincipals | meshlet does not validate JWTs, so a request never has a request principal (as in Istio when no RequestAuthentication applies): requestPrincipals never match',
    'spec.rules[0].from[1].source.notRequestPrincipals | meshlet does not validate JWTs, so a request never has a request principal (as in Istio when no RequestAuthentication applies): notRequestPrincipals always match',
  ]);
  t.same(b.authorizationPolicies[0]?.spec.rules[0]?.from, [
    { requestPrincipals: ['*'] },
    { notRequestPrincipals: ['*'] },
  ]);
});

t.test('operation: every field kept; ports are port numbers written as strings', async (t) => {
  const b = withRule(`to:
    - operation:
        hosts: [reviews.default.svc.cluster.local, "*.example.com:8080"]
        notHosts: ["evil.*"]
        ports: ["8080", "0", "65535"]
        notPorts: ["9090"]
        methods: [GET, POST]
        notMethods: [DELETE]
        paths: ["/api/*", "/healthz", "*.css", "*", "/v1/{*}/items/{**}"]
        notPaths: ["/admin*"]`);
  t.same(msgs(b), []);
  t.same(b.authorizationPolicies[0]?.spec.rules[0]?.to, [
    {
      hosts: ['reviews.default.svc.cluster.local', '*.example.com:8080'],
      notHosts: ['evil.*'],
      ports: ['8080', '0', '65535'],
      notPorts: ['9090'],
      methods: ['GET', 'POST'],
      notMethods: ['DELETE'],
      paths: ['/api/*', '/healthz', '*.css', '*', '/v1/{*}/items/{**}'],
      notPaths: ['/admin*'],
    },
  ]);
  const bad = withRule('to: [{operation: {ports: ["http", "70000", "-1", "+80", 80], notPorts: ["8o"]}}]');
  t.same(msgs(bad), [
    'spec.rules[0].to[0].operation.ports[0] | "http" is not a port number (0-65535, written as a string)',
    'spec.rules[0].to[0].operation.ports[1] | "70000" is not a port number (0-65535, written as a string)',
    'spec.rules[0].to[0].operation.ports[2] | "-1" is not a port number (0-65535, written as a string)',
    'spec.rules[0].to[0].operation.ports[3] | "+80" is not a port number (0-65535, written as a string)',
    'spec.rules[0].to[0].operation.ports[4] | expected string, got number',
    'spec.rules[0].to[0].operation.notPorts[0] | "8o" is not a port number (0-65535, written as a string)',
  ]);
});

t.test('methods that are not upper case warn (they match case-sensitively)', async (t) => {
  const b = withRule('to: [{operation: {methods: [get, "*"], notMethods: [Post]}}]');
  t.same(msgs(b), []);
  t.same(msgs(b, 'warning'), [
    'spec.rules[0].to[0].operation.methods[0] | methods match case-sensitively: "get" does not match the upper-case method names clients send',
    'spec.rules[0].to[0].operation.notMethods[0] | methods match case-sensitively: "Post" does not match the upper-case method names clients send',
  ]);
});

t.test('path templates: {*} one segment, {**} last operator, nothing beside an operator', async (t) => {
  for (const ok of [
    '/path/template/{*}',
    '/{**}/path/template',
    '/a/{*}/{*}/b',
    '/a/{*}/{**}',
    '/{**}',
    "/x/a-b_c.d~e!$&'()+,;=:@%20/{*}",
  ]) {
    t.equal(pathTemplateProblem(ok), null, ok);
  }
  const cases: Array<[string, RegExp]> = [
    ['/{**}/{*}', /\{\*\*\} must be the last operator/],
    ['/{**}/x/{**}', /\{\*\*\} must be the last operator/],
    ['/a{*}', /may only appear as a whole \{\*\} or \{\*\*\} segment/],
    ['/{*}.js', /may only appear as a whole/],
    ['/{x}/{*}', /may only appear as a whole/],
    ['/*/{*}', /a bare "\*" cannot be mixed/],
    ['/**/{**}', /a bare "\*" cannot be mixed/],
    ['{*}/x', /must start with "\/"/],
    ['/a b/{*}', /segment "a b" has characters that are not allowed/],
    ['/%zz/{*}', /segment "%zz" has characters/],
  ];
  for (const [path, re] of cases) t.match(pathTemplateProblem(path), re, path);
  const b = withRule('to: [{operation: {paths: ["/{**}/{*}"], notPaths: ["/a{*}"]}}]');
  t.same(msgs(b), [
    'spec.rules[0].to[0].operation.paths[0] | path template "/{**}/{*}": {**} must be the last operator',
    'spec.rules[0].to[0].operation.notPaths[0] | path template "/a{*}": "{" and "}" may only appear as a whole {*} or {**} segment',
  ]);
  const literalBraces = withRule('to: [{operation: {paths: ["/a{b}"]}}]');
  t.same(msgs(literalBraces), [], 'braces without an operator are a literal exact path');
});

t.test('when: every supported key, with its value syntax', async (t) => {
  const b = withRule(`when:
    - {key: "request.headers[X-Token]", values: ["abc*", ""], notValues: ["*"]}
    - {key: source.ip, values: [10.0.0.0/8]}
    - {key: remote.ip, notValues: ["::1"]}
    - {key: destination.ip, values: [127.0.0.1]}
    - {key: destination.port, values: ["8080"]}
    - {key: source.namespace, values: ["team-*-x"]}
    - {key: source.principal, values: ["cluster.local/ns/default/sa/*"]}
    - {key: source.serviceAccount, values: [default/productpage]}
    - {key: source.trustDomain, values: [cluster.local]}
    - {key: connection.sni, values: ["*.example.com"]}
    - {key: "request.headers[:authority]", values: ["api.example.com"]}`);
  t.same(b.issues, []);
  t.same(b.authorizationPolicies[0]?.spec.rules[0]?.when, [
    { key: 'request.headers[X-Token]', values: ['abc*', ''], notValues: ['*'] },
    { key: 'source.ip', values: ['10.0.0.0/8'] },
    { key: 'remote.ip', notValues: ['::1'] },
    { key: 'destination.ip', values: ['127.0.0.1'] },
    { key: 'destination.port', values: ['8080'] },
    { key: 'source.namespace', values: ['team-*-x'] },
    { key: 'source.principal', values: ['cluster.local/ns/default/sa/*'] },
    { key: 'source.serviceAccount', values: ['default/productpage'] },
    { key: 'source.trustDomain', values: ['cluster.local'] },
    { key: 'connection.sni', values: ['*.example.com'] },
    { key: 'request.headers[:authority]', values: ['api.example.com'] },
  ]);
  const bad = withRule(`when:
    - {key: source.ip, values: [not-an-ip]}
    - {key: destination.port, notValues: [http]}
    - {key: source.principal, values: ["a*b", ""]}
    - {key: source.serviceAccount, values: ["*"]}
    - {key: "request.headers[X]", values: ["a*b"]}`);
  t.same(msgs(bad), [
    'spec.rules[0].when[0].values[0] | "not-an-ip" is not an IP address or CIDR block',
    'spec.rules[0].when[1].notValues[0] | "http" is not a port number (0-65535, written as a string)',
    'spec.rules[0].when[2].values[0] | "a*b": "*" may only be the whole value, or once at the start (suffix match) or at the end (prefix match)',
    'spec.rules[0].when[2].values[1] | empty value not allowed in values of source.principal',
    'spec.rules[0].when[3].values[0] | wildcards are not supported in values of source.serviceAccount ("*")',
    'spec.rules[0].when[4].values[0] | "a*b": "*" may only be the whole value, or once at the start (suffix match) or at the end (prefix match)',
  ]);
});

t.test('when: unsupported keys and malformed map keys are errors', async (t) => {
  const b = withRule(`when:
    - {key: request.method, values: [GET]}
    - {key: "request.headers[]", values: [x]}
    - {key: "request.headers[a b]", values: [x]}
    - {key: "request.headers[::x]", values: [x]}
    - {key: "request.headers", values: [x]}
    - {key: "request.auth.claims", values: [x]}
    - {key: "request.auth.claims[]", values: [x]}
    - {key: "request.auth.claims[a]x", values: [x]}
    - {key: "", values: [x]}
    - {key: 7, values: [x]}`);
  t.same(
    msgs(b).map((m) => m.replace(/; supported: .*/, '; supported: ...')),
    [
      'spec.rules[0].when[0].key | unsupported key "request.method"; supported: ...',
      'spec.rules[0].when[1].key | bad key "request.headers[]": expected request.headers[<header name>]',
      'spec.rules[0].when[2].key | bad key "request.headers[a b]": expected request.headers[<header name>]',
      'spec.rules[0].when[3].key | bad key "request.headers[::x]": expected request.headers[<header name>]',
      'spec.rules[0].when[4].key | unsupported key "request.headers"; supported: ...',
      'spec.rules[0].when[5].key | unsupported key "request.auth.claims"; supported: ...',
      'spec.rules[0].when[6].key | bad key "request.auth.claims[]": expected request.auth.claims[<claim>] or request.auth.claims[<a>][<b>]',
      'spec.rules[0].when[7].key | bad key "request.auth.claims[a]x": expected request.auth.claims[<claim>] or request.auth.claims[<a>][<b>]',
      'spec.rules[0].when[8].key | unsupported key ""; supported: ...',
      'spec.rules[0].when[9].key | expected string, got number',
    ],
  );
  t.match(
    conditionKeyRule('request.method'),
    /supported: request\.headers\[<name>\], source\.ip, .*connection\.sni, request\.auth\.principal/,
  );
  t.equal(b.authorizationPolicies.length, 0, 'an unknown key refuses the policy (Istio would drop the rule)');
});

t.test('when: JWT keys and experimental Envoy keys load with a warning', async (t) => {
  const b = withRule(`when:
    - {key: request.auth.principal, values: ["*"]}
    - {key: request.auth.audiences, notValues: [x]}
    - {key: request.auth.presenter, values: [x]}
    - {key: "request.auth.claims[iss]", values: [x]}
    - {key: "request.auth.claims[nested1][nested2]", values: [x]}
    - {key: "experimental.envoy.filters.network.mysql_proxy[db.table]", values: [x]}`);
  t.same(msgs(b), []);
  t.same(msgs(b, 'warning'), [
    'spec.rules[0].when[0].key | meshlet does not validate JWTs, so a request never has a request principal (as in Istio when no RequestAuthentication applies): "request.auth.principal" values never match and notValues always match',
    'spec.rules[0].when[1].key | meshlet does not validate JWTs, so a request never has a request principal (as in Istio when no RequestAuthentication applies): "request.auth.audiences" values never match and notValues always match',
    'spec.rules[0].when[2].key | meshlet does not validate JWTs, so a request never has a request principal (as in Istio when no RequestAuthentication applies): "request.auth.presenter" values never match and notValues always match',
    'spec.rules[0].when[3].key | meshlet does not validate JWTs, so a request never has a request principal (as in Istio when no RequestAuthentication applies): "request.auth.claims[iss]" values never match and notValues always match',
    'spec.rules[0].when[4].key | meshlet does not validate JWTs, so a request never has a request principal (as in Istio when no RequestAuthentication applies): "request.auth.claims[nested1][nested2]" values never match and notValues always match',
    'spec.rules[0].when[5].key | "experimental.envoy.filters.network.mysql_proxy[db.table]" reads Envoy dynamic metadata that nothing in meshlet sets: it is always absent, so values never match and notValues always match (as in Envoy without the filter that sets it)',
  ]);
  t.equal(
    b.authorizationPolicies[0]?.spec.rules[0]?.when.length,
    6,
    'the conditions are kept for the authorizer',
  );
});

t.test('istio.io/dry-run annotation sets dryRun (Go ParseBool forms)', async (t) => {
  const cases: Array<[string, boolean]> = [
    ['"true"', true],
    ['"True"', true],
    ['"1"', true],
    ['"false"', false],
    ['"0"', false],
    ['"F"', false],
  ];
  for (const [value, want] of cases) {
    const b = load('spec: {}', `{name: ap, annotations: {istio.io/dry-run: ${value}}}`);
    t.same(b.issues, [], value);
    t.equal(b.authorizationPolicies[0]?.spec.dryRun, want, value);
  }
  const other = load('spec: {}', '{name: ap, annotations: {other: "true"}}');
  t.equal(other.authorizationPolicies[0]?.spec.dryRun, false, 'other annotations do not matter');
  const unquoted = load('spec: {}', '{name: ap, annotations: {istio.io/dry-run: true}}');
  t.same(msgs(unquoted), ['metadata.annotations["istio.io/dry-run"] | expected string, got boolean']);
  t.equal(unquoted.authorizationPolicies.length, 0, 'annotations are strings, as in Kubernetes');
  const bad = load('spec: {}', '{name: ap, annotations: {istio.io/dry-run: "yes"}}');
  t.same(msgs(bad), [
    'metadata.annotations["istio.io/dry-run"] | istio.io/dry-run must be "true" or "false", got "yes"',
  ]);
  t.equal(bad.authorizationPolicies.length, 0);
  const badNoSpec = load('', '{name: ap, annotations: {istio.io/dry-run: "yes"}}');
  t.equal(badNoSpec.authorizationPolicies.length, 0, 'checked without a spec too');
  const dryNoSpec = load('', '{name: ap, annotations: {istio.io/dry-run: "true"}}');
  t.equal(dryNoSpec.authorizationPolicies[0]?.spec.dryRun, true);
});

t.test('a policy with any error is not kept; its valid neighbours are', async (t) => {
  const b = parseConfigText(
    [
      {
        name: 'two.yaml',
        text: `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: bad}
spec: {rules: [{from: [{source: {principals: ["a*b"]}}]}]}
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: good, namespace: istio-system}
spec: {action: DENY, rules: [{from: [{source: {notPrincipals: ["*"]}}]}]}
`,
      },
    ],
    {},
  );
  t.equal(msgs(b).length, 1);
  t.same(
    b.authorizationPolicies.map((p) => [p.meta.namespace, p.meta.name, p.meta.order]),
    [['istio-system', 'good', 1]],
  );
});
