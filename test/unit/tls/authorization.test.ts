import t from 'tap';
import type {
  AuthorizationPolicySpec,
  AuthzCondition,
  AuthzOperation,
  AuthzRule,
  AuthzSource,
  Resource,
} from '../../../src/config/resource-types.ts';
import {
  applicableAuthorizationPolicies,
  type CompiledAuthorizer,
  compileAuthorizer,
} from '../../../src/tls/authorization.ts';
import type { PeerIdentity } from '../../../src/tls/identity-types.ts';
import type { AuthzRequest, WorkloadSelectorInput } from '../../../src/tls/policy-types.ts';

const ROOT = 'istio-system';
const TD = 'cluster.local';
const W: WorkloadSelectorInput = { namespace: 'default', labels: { app: 'reviews', version: 'v1' } };

let nextOrder = 0;

function ap(
  name: string,
  namespace: string,
  spec: Partial<AuthorizationPolicySpec> = {},
): Resource<AuthorizationPolicySpec> {
  return {
    meta: {
      name,
      namespace,
      annotations: {},
      pos: { file: 'test.yaml', line: 1, col: 1 },
      order: nextOrder++,
    },
    spec: { action: 'ALLOW', rules: [], hasTargetRefs: false, dryRun: false, ...spec },
  };
}

function rule(r: Partial<AuthzRule> = {}): AuthzRule {
  return { from: [], to: [], when: [], ...r };
}

function peer(namespace: string, serviceAccount: string, trustDomain = TD): PeerIdentity {
  const principal = `${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
  return { spiffeId: `spiffe://${principal}`, principal, trustDomain, namespace, serviceAccount };
}

const PRODUCTPAGE = peer('default', 'productpage');

function req(extra: Partial<AuthzRequest> = {}): AuthzRequest {
  return {
    method: 'GET',
    host: 'reviews:9080',
    path: '/',
    port: 9080,
    headers: [],
    sourceIp: '10.0.0.5',
    ...extra,
  };
}

const compile = (policies: Resource<AuthorizationPolicySpec>[], trustDomain = TD, workload = W) =>
  compileAuthorizer(policies, workload, ROOT, trustDomain);

/** Whether one rule matches a request: an ALLOW policy holding only that rule allows exactly its matches. */
function matcher(r: AuthzRule, trustDomain = TD): (request: AuthzRequest) => boolean {
  const authz = compile([ap('p', 'default', { rules: [r] })], trustDomain);
  if (authz.warnings.length > 0) throw new Error(`unexpected warnings: ${authz.warnings.join('; ')}`);
  return (request) => authz.check(request).allowed;
}

const from = (source: AuthzSource, trustDomain = TD) => matcher(rule({ from: [source] }), trustDomain);
const to = (operation: AuthzOperation) => matcher(rule({ to: [operation] }));
const when = (...conditions: AuthzCondition[]) => matcher(rule({ when: conditions }));

/** Compiles a rule that must be dropped; returns the authorizer (an ALLOW policy with no usable rule). */
function dropped(r: AuthzRule, action: 'ALLOW' | 'DENY' = 'ALLOW'): CompiledAuthorizer {
  const authz = compile([ap('bad', 'default', { action, rules: [r] })]);
  const [warning, ...more] = authz.warnings;
  if (
    warning === undefined ||
    more.length > 0 ||
    !warning.startsWith('AuthorizationPolicy default/bad: rules[0] dropped: ')
  ) {
    throw new Error(
      `expected the rule to be dropped with one warning, got ${JSON.stringify(authz.warnings)}`,
    );
  }
  return authz;
}

// ---- Source fields -----------------------------------------------------------------------------

t.test('principals: exact, prefix, suffix, * (any authenticated peer); never on plaintext', async (t) => {
  const exact = from({ principals: ['cluster.local/ns/default/sa/productpage'] });
  t.ok(exact(req({ peer: PRODUCTPAGE })));
  t.notOk(exact(req({ peer: peer('default', 'ratings') })));
  t.notOk(exact(req()), 'plaintext');

  const prefix = from({ principals: ['cluster.local/ns/default/*'] });
  t.ok(prefix(req({ peer: peer('default', 'anything') })));
  t.notOk(prefix(req({ peer: peer('other', 'anything') })));

  const suffix = from({ principals: ['*/sa/productpage'] });
  t.ok(suffix(req({ peer: peer('foo', 'productpage', 'other.td') })));
  t.notOk(suffix(req({ peer: peer('foo', 'ratings') })));

  const any = from({ principals: ['*'] });
  t.ok(any(req({ peer: peer('x', 'y') })), 'any authenticated peer');
  t.notOk(any(req()), '* is not "anyone": plaintext has no principal');

  const list = from({ principals: ['cluster.local/ns/a/sa/a', 'cluster.local/ns/b/sa/b'] });
  t.ok(list(req({ peer: peer('b', 'b') })), 'values are ORed');
  t.notOk(list(req({ peer: peer('a', 'b') })));
});

t.test('notPrincipals: none may match; always matches plaintext', async (t) => {
  const m = from({ notPrincipals: ['cluster.local/ns/default/sa/productpage', 'cluster.local/ns/x/*'] });
  t.notOk(m(req({ peer: PRODUCTPAGE })));
  t.notOk(m(req({ peer: peer('x', 'y') })));
  t.ok(m(req({ peer: peer('default', 'ratings') })));
  t.ok(m(req()), 'plaintext');

  // The usual way to refuse plaintext: DENY notPrincipals ["*"].
  const authz = compile([
    ap('require-mtls', 'default', { action: 'DENY', rules: [rule({ from: [{ notPrincipals: ['*'] }] })] }),
  ]);
  t.notOk(authz.check(req()).allowed);
  t.equal(authz.check(req()).reason, 'rbac_access_denied_matched_policy[default-require-mtls-rule[0]]');
  t.ok(authz.check(req({ peer: PRODUCTPAGE })).allowed);
});

t.test('principals written with cluster.local stand for the mesh trust domain', async (t) => {
  const m = from({ principals: ['cluster.local/ns/default/sa/productpage'] }, 'example.org');
  t.ok(m(req({ peer: peer('default', 'productpage', 'example.org') })));
  t.notOk(
    m(req({ peer: peer('default', 'productpage', 'cluster.local') })),
    'the alias replaces, it does not add',
  );
  const foreign = from({ principals: ['other.org/ns/default/sa/productpage'] }, 'example.org');
  t.ok(
    foreign(req({ peer: peer('default', 'productpage', 'other.org') })),
    'other trust domains stay as written',
  );
  t.notOk(foreign(req({ peer: peer('default', 'productpage', 'example.org') })));
  const not = from({ notPrincipals: ['cluster.local/ns/default/*'] }, 'example.org');
  t.notOk(not(req({ peer: peer('default', 'a', 'example.org') })));
  t.ok(not(req({ peer: peer('default', 'a', 'cluster.local') })));
});

t.test('namespaces / notNamespaces: the /ns/<value>/ part of the identity', async (t) => {
  const m = from({ namespaces: ['default', 'test*'] });
  t.ok(m(req({ peer: PRODUCTPAGE })));
  t.ok(m(req({ peer: peer('test-1', 'sa') })), 'a * inside the value');
  t.notOk(m(req({ peer: peer('prod', 'sa') })));
  t.notOk(m(req({ peer: peer('defaults', 'sa') })), 'whole segment, not a prefix');
  t.notOk(m(req()), 'plaintext');

  const glob = from({ namespaces: ['*'] });
  t.ok(glob(req({ peer: peer('any', 'sa') })));
  t.notOk(glob(req()));
  const middle = from({ namespaces: ['team-*-prod'] });
  t.ok(middle(req({ peer: peer('team-a-prod', 'sa') })));
  t.notOk(middle(req({ peer: peer('team-a-dev', 'sa') })));

  const not = from({ notNamespaces: ['istio-system', 'kube*'] });
  t.ok(not(req({ peer: PRODUCTPAGE })));
  t.notOk(not(req({ peer: peer('istio-system', 'gw') })));
  t.notOk(not(req({ peer: peer('kube-public', 'x') })));
  t.ok(not(req()), 'plaintext always matches notNamespaces');
});

t.test('serviceAccounts / notServiceAccounts: ns/sa, or sa in the policy namespace', async (t) => {
  const m = from({ serviceAccounts: ['other/ratings', 'productpage'] });
  t.ok(m(req({ peer: PRODUCTPAGE })), 'sa alone means the policy namespace (default)');
  t.ok(m(req({ peer: peer('other', 'ratings') })));
  t.notOk(m(req({ peer: peer('other', 'productpage') })));
  t.notOk(m(req({ peer: peer('default', 'productpage', 'other.td') })), 'only the mesh trust domain');
  t.notOk(m(req()), 'plaintext');

  const td = from({ serviceAccounts: ['default/productpage'] }, 'example.org');
  t.ok(td(req({ peer: peer('default', 'productpage', 'example.org') })));

  // In a root-namespace policy, `sa` alone means the root namespace.
  const rootPolicy = compile([ap('p', ROOT, { rules: [rule({ from: [{ serviceAccounts: ['gw'] }] })] })]);
  t.ok(rootPolicy.check(req({ peer: peer(ROOT, 'gw') })).allowed);
  t.notOk(rootPolicy.check(req({ peer: peer('default', 'gw') })).allowed);

  const not = from({ notServiceAccounts: ['productpage'] });
  t.notOk(not(req({ peer: PRODUCTPAGE })));
  t.ok(not(req({ peer: peer('default', 'ratings') })));
  t.ok(not(req()), 'plaintext');

  for (const bad of ['a/b/c', '/sa', 'ns/', 'ns/*']) {
    const authz = dropped(rule({ from: [{ serviceAccounts: [bad] }] }));
    t.notOk(authz.check(req({ peer: PRODUCTPAGE })).allowed, `${bad}: the ALLOW rule is gone`);
  }
});

t.test('trustDomains / notTrustDomains', async (t) => {
  const m = from({ trustDomains: ['cluster.local', '*.example.org'] });
  t.ok(m(req({ peer: PRODUCTPAGE })));
  t.ok(m(req({ peer: peer('a', 'b', 'east.example.org') })));
  t.notOk(m(req({ peer: peer('a', 'b', 'other.td') })));
  t.notOk(m(req()));
  const not = from({ notTrustDomains: ['other.td'] });
  t.ok(not(req({ peer: PRODUCTPAGE })));
  t.notOk(not(req({ peer: peer('a', 'b', 'other.td') })));
  t.ok(not(req()));
});

t.test('ipBlocks / notIpBlocks: the direct peer IP, IP or CIDR, v4 and v6', async (t) => {
  const m = from({ ipBlocks: ['10.0.0.0/8', '192.168.1.7', '2001:db8::/32'] });
  t.ok(m(req({ sourceIp: '10.200.3.4' })));
  t.ok(m(req({ sourceIp: '192.168.1.7' })));
  t.notOk(m(req({ sourceIp: '192.168.1.8' })));
  t.ok(m(req({ sourceIp: '2001:db8::42' })));
  t.notOk(m(req({ sourceIp: '2001:db9::1' })));
  t.ok(m(req({ sourceIp: '::ffff:10.1.2.3' })), 'IPv4-mapped IPv6 peers match IPv4 blocks');
  t.ok(
    m(req({ sourceIp: '10.1.2.3', headers: ['x-forwarded-for', '8.8.8.8'] })),
    'X-Forwarded-For is ignored',
  );
  t.ok(from({ ipBlocks: ['10.1.2.3/8'] })(req({ sourceIp: '10.9.9.9' })), 'host bits of the CIDR are masked');

  const not = from({ notIpBlocks: ['10.0.0.0/8'] });
  t.notOk(not(req({ sourceIp: '10.0.0.1' })));
  t.ok(not(req({ sourceIp: '172.16.0.1' })));

  for (const bad of ['10.0.0.0/33', 'not-an-ip', '10.0.0.0/x', '1.2.3', '::1/129']) {
    const authz = dropped(rule({ from: [{ ipBlocks: [bad] }] }));
    t.notOk(authz.check(req()).allowed, `${bad}: dropped`);
  }
});

t.test('remoteIpBlocks / notRemoteIpBlocks: first X-Forwarded-For entry, else the peer IP', async (t) => {
  const m = from({ remoteIpBlocks: ['203.0.113.0/24'] });
  t.ok(m(req({ sourceIp: '10.0.0.1', headers: ['x-forwarded-for', '203.0.113.9, 10.0.0.7'] })));
  t.notOk(
    m(req({ sourceIp: '203.0.113.1', headers: ['x-forwarded-for', '10.0.0.7, 203.0.113.9'] })),
    'first entry only',
  );
  t.ok(m(req({ sourceIp: '203.0.113.1' })), 'no header: the peer IP');
  t.ok(
    m(req({ sourceIp: '203.0.113.1', headers: ['x-forwarded-for', ' '] })),
    'an empty header: the peer IP',
  );
  t.ok(
    m(req({ headers: ['x-forwarded-for', '203.0.113.5', 'x-forwarded-for', '10.0.0.1'] })),
    'the first of repeated headers',
  );
  t.notOk(m(req({ headers: ['x-forwarded-for', 'garbage'] })), 'a non-IP entry matches no block');
  const not = from({ notRemoteIpBlocks: ['203.0.113.0/24'] });
  t.notOk(not(req({ headers: ['x-forwarded-for', '203.0.113.5'] })));
  t.ok(not(req({ headers: ['x-forwarded-for', '198.51.100.1'] })));
});

t.test('requestPrincipals never match, notRequestPrincipals always match (no JWT)', async (t) => {
  t.notOk(from({ requestPrincipals: ['*'] })(req({ peer: PRODUCTPAGE })));
  t.notOk(from({ requestPrincipals: ['https://issuer/sub'] })(req()));
  t.ok(from({ notRequestPrincipals: ['*'] })(req()));
  t.ok(from({ notRequestPrincipals: ['https://issuer/sub'] })(req({ peer: PRODUCTPAGE })));
});

t.test('Source fields are ANDed, sources are ORed', async (t) => {
  const both = from({ principals: ['cluster.local/ns/default/*'], ipBlocks: ['10.0.0.0/8'] });
  t.ok(both(req({ peer: PRODUCTPAGE, sourceIp: '10.0.0.1' })));
  t.notOk(both(req({ peer: PRODUCTPAGE, sourceIp: '11.0.0.1' })));
  t.notOk(both(req({ peer: peer('x', 'y'), sourceIp: '10.0.0.1' })));
  const either = matcher(rule({ from: [{ namespaces: ['a'] }, { ipBlocks: ['10.0.0.0/8'] }] }));
  t.ok(either(req({ peer: peer('a', 's'), sourceIp: '11.0.0.1' })));
  t.ok(either(req({ sourceIp: '10.0.0.1' })));
  t.notOk(either(req({ peer: peer('b', 's'), sourceIp: '11.0.0.1' })));
  t.ok(matcher(rule({ from: [{}] }))(req()), 'an empty source matches everything');
  t.ok(from({ principals: [] })(req()), 'an empty list is unset');
});

// ---- Operation fields --------------------------------------------------------------------------

t.test('hosts / notHosts: case-insensitive, port not stripped', async (t) => {
  const m = to({ hosts: ['Reviews.Default.svc.cluster.local', '*.example.com', 'api.*'] });
  t.ok(m(req({ host: 'reviews.default.svc.cluster.local' })));
  t.ok(m(req({ host: 'REVIEWS.default.SVC.cluster.local' })));
  t.notOk(m(req({ host: 'reviews.default.svc.cluster.local:9080' })), 'the port is part of the host');
  t.ok(m(req({ host: 'a.b.EXAMPLE.com' })));
  t.notOk(m(req({ host: 'example.com' })));
  t.ok(m(req({ host: 'API.internal:8080' })));
  const withPort = to({ hosts: ['example.com:8080'] });
  t.ok(withPort(req({ host: 'Example.com:8080' })));
  t.notOk(withPort(req({ host: 'example.com' })));
  t.ok(to({ hosts: ['*'] })(req({ host: 'x' })));
  t.notOk(to({ hosts: ['*'] })(req({ host: '' })), '* needs a non-empty value');
  const not = to({ notHosts: ['admin.*'] });
  t.notOk(not(req({ host: 'Admin.example.com' })));
  t.ok(not(req({ host: 'www.example.com' })));
});

t.test('ports / notPorts: the destination (workload) port, exact', async (t) => {
  const m = to({ ports: ['8080', '9080'] });
  t.ok(m(req({ port: 9080 })));
  t.ok(m(req({ port: 8080 })));
  t.notOk(m(req({ port: 80 })));
  const not = to({ notPorts: ['15090'] });
  t.ok(not(req({ port: 9080 })));
  t.notOk(not(req({ port: 15090 })));
  for (const bad of ['80*', 'http', '0', '70000', '']) {
    const authz = dropped(rule({ to: [{ ports: [bad] }] }));
    t.notOk(authz.check(req()).allowed, `"${bad}": dropped`);
  }
});

t.test('methods / notMethods: case-sensitive', async (t) => {
  const m = to({ methods: ['GET', 'HEAD'] });
  t.ok(m(req({ method: 'GET' })));
  t.notOk(m(req({ method: 'get' })));
  t.notOk(m(req({ method: 'POST' })));
  t.ok(to({ methods: ['*'] })(req({ method: 'PATCH' })));
  t.ok(to({ methods: ['P*'] })(req({ method: 'PUT' })));
  const not = to({ notMethods: ['DELETE'] });
  t.ok(not(req({ method: 'GET' })));
  t.ok(not(req({ method: 'delete' })), 'case-sensitive');
  t.notOk(not(req({ method: 'DELETE' })));
});

t.test('paths: exact, prefix, suffix and *, without the query, case-sensitive', async (t) => {
  const exact = to({ paths: ['/login'] });
  t.ok(exact(req({ path: '/login' })));
  t.ok(exact(req({ path: '/login?next=/admin' })));
  t.notOk(exact(req({ path: '/Login' })));
  t.notOk(exact(req({ path: '/login/' })));
  const prefix = to({ paths: ['/foo*'] });
  for (const p of ['/foo', '/foobar', '/foo/x']) t.ok(prefix(req({ path: p })), p);
  t.notOk(prefix(req({ path: '/fo' })));
  const suffix = to({ paths: ['*.html'] });
  t.ok(suffix(req({ path: '/a/b.html?x=1' })));
  t.notOk(suffix(req({ path: '/a/b.htm' })));
  t.ok(to({ paths: ['*'] })(req({ path: '/anything' })));
  t.ok(
    to({ paths: ['/pkg.Service/Method'] })(req({ method: 'POST', path: '/pkg.Service/Method' })),
    'gRPC path',
  );
  t.ok(to({ paths: ['/a*b'] })(req({ path: '/a*b' })), 'a * in the middle is literal');
  t.notOk(to({ paths: ['/a*b'] })(req({ path: '/axb' })));
});

t.test('paths are matched after BASE normalization', async (t) => {
  const admin = to({ paths: ['/admin*'] });
  t.ok(admin(req({ path: '/public/../admin/x' })), '/a/../b');
  t.ok(admin(req({ path: '/public/%2e%2e/admin' })), '%2e%2e is a dot segment');
  t.ok(admin(req({ path: '/%61dmin' })), 'unreserved escapes are decoded');
  t.ok(admin(req({ path: '/./admin' })));
  t.ok(admin(req({ path: '/x/..\\admin' })), 'backslash is a separator');
  t.notOk(admin(req({ path: '/public%2F..%2Fadmin' })), 'an encoded slash is not decoded (BASE)');
  t.notOk(admin(req({ path: '//admin' })), 'slashes are not merged (BASE)');
  // A DENY on /admin cannot be bypassed with dot segments.
  const authz = compile([
    ap('deny-admin', 'default', { action: 'DENY', rules: [rule({ to: [{ paths: ['/admin*'] }] })] }),
  ]);
  t.notOk(authz.check(req({ path: '/public/../admin/secret' })).allowed);
  t.notOk(authz.check(req({ path: '/public/%2E%2E/admin' })).allowed);
  t.ok(authz.check(req({ path: '/public/admin' })).allowed);
});

t.test('a path that cannot be normalized is denied when a rule looks at paths', async (t) => {
  const withPaths = compile([
    ap('p', 'default', { action: 'DENY', rules: [rule({ to: [{ notPaths: ['/public*'] }] })] }),
  ]);
  const d = withPaths.check(req({ path: '/public/%00' }));
  t.notOk(d.allowed);
  t.equal(d.reason, 'path_normalization_failed');
  const withoutPaths = compile([
    ap('p', 'default', { action: 'DENY', rules: [rule({ to: [{ methods: ['POST'] }] })] }),
  ]);
  t.ok(withoutPaths.check(req({ path: '/public/%00' })).allowed, 'no rule needs the path');
});

t.test('notPaths', async (t) => {
  const not = to({ notPaths: ['/healthz', '/metrics*'] });
  t.ok(not(req({ path: '/api' })));
  t.notOk(not(req({ path: '/healthz?full=1' })));
  t.notOk(not(req({ path: '/metrics/x' })));
  t.notOk(not(req({ path: '/x/../healthz' })), 'normalized first');
});

t.test('path templates: {*} is one segment, {**} zero or more and last', async (t) => {
  const one = to({ paths: ['/users/{*}/orders'] });
  t.ok(one(req({ path: '/users/42/orders' })));
  t.ok(one(req({ path: '/users/a%20b/orders?x' })));
  t.notOk(one(req({ path: '/users/1/2/orders' })));
  t.notOk(one(req({ path: '/users//orders' })), '{*} needs a non-empty segment');
  t.notOk(one(req({ path: '/users/42/orders/x' })));

  const many = to({ paths: ['/files/{**}'] });
  t.ok(many(req({ path: '/files/' })), 'zero segments');
  t.ok(many(req({ path: '/files/a' })));
  t.ok(many(req({ path: '/files/a/b/c.txt' })));
  t.notOk(many(req({ path: '/files' })), 'the slash before {**} is literal');
  t.notOk(many(req({ path: '/filesx/a' })));

  const both = to({ paths: ['/v1/{*}/items/{**}', '/static*'] });
  t.ok(both(req({ path: '/v1/shop/items/1/2' })));
  t.notOk(both(req({ path: '/v1/shop/x/items/1' })));
  t.ok(both(req({ path: '/static/app.js' })), 'templates mix with plain values');

  const dot = to({ paths: ['/a.b/{*}'] });
  t.ok(dot(req({ path: '/a.b/x' })));
  t.notOk(dot(req({ path: '/aXb/x' })), 'literal parts are escaped');

  const not = to({ notPaths: ['/private/{**}'] });
  t.notOk(not(req({ path: '/private/a/b' })));
  t.ok(not(req({ path: '/public/a' })));

  for (const bad of ['/a/{**}/{*}', '/a/x{*}', '/a/{*}y', '/a/{**}/b/{**}', 'a/{*}', '/a/*/{*}']) {
    const authz = dropped(rule({ to: [{ paths: [bad] }] }));
    t.notOk(authz.check(req({ path: '/a/b/c' })).allowed, `${bad}: dropped`);
  }
  // A literal after {**} is allowed (only operators must not follow it).
  t.ok(to({ paths: ['/a/{**}/end'] })(req({ path: '/a/x/y/end' })));
});

t.test('Operation fields are ANDed, operations are ORed', async (t) => {
  const m = to({ methods: ['GET'], paths: ['/info*'], ports: ['9080'] });
  t.ok(m(req({ method: 'GET', path: '/info/1' })));
  t.notOk(m(req({ method: 'POST', path: '/info/1' })));
  t.notOk(m(req({ method: 'GET', path: '/data' })));
  t.notOk(m(req({ method: 'GET', path: '/info', port: 80 })));
  const either = matcher(
    rule({
      to: [
        { methods: ['GET'], paths: ['/info*'] },
        { methods: ['POST'], paths: ['/data'] },
      ],
    }),
  );
  t.ok(either(req({ method: 'POST', path: '/data' })));
  t.notOk(either(req({ method: 'POST', path: '/info' })));
});

// ---- when --------------------------------------------------------------------------------------

t.test('when request.headers[...]: values syntax, absent header, repeated headers', async (t) => {
  const m = when({ key: 'request.headers[X-Env]', values: ['prod', 'stag*', '*-canary'] });
  t.ok(m(req({ headers: ['x-env', 'prod'] })), 'the header name is case-insensitive');
  t.ok(m(req({ headers: ['x-env', 'staging'] })));
  t.ok(m(req({ headers: ['x-env', 'eu-canary'] })));
  t.notOk(m(req({ headers: ['x-env', 'Prod'] })), 'values are case-sensitive');
  t.notOk(m(req()), 'an absent header fails values');

  const present = when({ key: 'request.headers[x-token]', values: ['*'] });
  t.ok(present(req({ headers: ['x-token', 'abc'] })));
  t.ok(present(req({ headers: ['x-token', ''] })), '* is a presence check for headers, even empty');
  t.notOk(present(req()));

  const not = when({ key: 'request.headers[x-env]', notValues: ['prod'] });
  t.ok(not(req()), 'an absent header satisfies notValues');
  t.ok(not(req({ headers: ['x-env', 'dev'] })));
  t.notOk(not(req({ headers: ['x-env', 'prod'] })));

  const joined = when({ key: 'request.headers[x-a]', values: ['1,2'] });
  t.ok(joined(req({ headers: ['x-a', '1', 'x-b', 'z', 'x-a', '2'] })), 'repeated headers are joined with ,');
  t.notOk(joined(req({ headers: ['x-a', '1'] })));

  const both = when({ key: 'request.headers[x-env]', values: ['p*'], notValues: ['preview'] });
  t.ok(both(req({ headers: ['x-env', 'prod'] })));
  t.notOk(both(req({ headers: ['x-env', 'preview'] })), 'values and notValues must both hold');
});

t.test('when request.headers of pseudo-headers read the request line', async (t) => {
  t.ok(when({ key: 'request.headers[:authority]', values: ['reviews:*'] })(req()));
  t.ok(when({ key: 'request.headers[:method]', values: ['GET'] })(req()));
  t.ok(
    when({ key: 'request.headers[:path]', values: ['/x?*'] })(req({ path: '/x?y=1' })),
    ':path keeps the query',
  );
  t.notOk(when({ key: 'request.headers[:method]', values: ['POST'] })(req()));
});

t.test('when source.ip / remote.ip / destination.ip: CIDRs', async (t) => {
  const source = when({ key: 'source.ip', values: ['10.0.0.0/8'], notValues: ['10.0.0.66'] });
  t.ok(source(req({ sourceIp: '10.0.0.5' })));
  t.notOk(source(req({ sourceIp: '10.0.0.66' })));
  t.notOk(source(req({ sourceIp: '11.0.0.5', headers: ['x-forwarded-for', '10.0.0.5'] })));

  const remote = when({ key: 'remote.ip', values: ['203.0.113.0/24'] });
  t.ok(remote(req({ headers: ['x-forwarded-for', '203.0.113.8'] })));
  t.notOk(remote(req()));

  const dest = when({ key: 'destination.ip', values: ['10.1.0.0/16'] });
  t.ok(dest(req({ destinationIp: '10.1.2.3' })));
  t.notOk(dest(req({ destinationIp: '10.2.0.1' })));
  t.notOk(dest(req()), 'unknown destination IP: values never match');
  t.ok(when({ key: 'destination.ip', notValues: ['10.1.0.0/16'] })(req()), '…and notValues always do');

  dropped(rule({ when: [{ key: 'source.ip', values: ['10.0.0.0/99'] }] }));
});

t.test('when destination.port: exact numbers', async (t) => {
  const m = when({ key: 'destination.port', values: ['9080'] });
  t.ok(m(req({ port: 9080 })));
  t.notOk(m(req({ port: 9081 })));
  t.ok(when({ key: 'destination.port', notValues: ['15090'] })(req({ port: 9080 })));
  t.notOk(when({ key: 'destination.port', notValues: ['15090'] })(req({ port: 15090 })));
  dropped(rule({ when: [{ key: 'destination.port', values: ['90*'] }] }));
});

t.test('when source.namespace / principal / serviceAccount / trustDomain', async (t) => {
  const ns = when({ key: 'source.namespace', values: ['default'] });
  t.ok(ns(req({ peer: PRODUCTPAGE })));
  t.notOk(ns(req({ peer: peer('x', 'y') })));
  t.notOk(ns(req()), 'plaintext');
  t.ok(when({ key: 'source.namespace', notValues: ['default'] })(req()), 'plaintext satisfies notValues');

  const principal = when({ key: 'source.principal', values: ['cluster.local/ns/default/sa/productpage'] });
  t.ok(principal(req({ peer: PRODUCTPAGE })));
  t.notOk(principal(req()));
  t.notOk(when({ key: 'source.principal', notValues: ['*'] })(req({ peer: PRODUCTPAGE })));
  t.ok(when({ key: 'source.principal', notValues: ['*'] })(req()));
  const aliased = matcher(
    rule({ when: [{ key: 'source.principal', values: ['cluster.local/ns/a/sa/b'] }] }),
    'corp.td',
  );
  t.ok(aliased(req({ peer: peer('a', 'b', 'corp.td') })), 'the cluster.local alias applies to when too');

  const sa = when({ key: 'source.serviceAccount', values: ['productpage', 'other/x'] });
  t.ok(sa(req({ peer: PRODUCTPAGE })));
  t.ok(sa(req({ peer: peer('other', 'x') })));
  t.notOk(sa(req({ peer: peer('other', 'productpage') })));
  t.notOk(sa(req()));
  t.ok(when({ key: 'source.serviceAccount', notValues: ['productpage'] })(req()));

  const td = when({ key: 'source.trustDomain', values: ['cluster.local'] });
  t.ok(td(req({ peer: PRODUCTPAGE })));
  t.notOk(td(req({ peer: peer('a', 'b', 'x.td') })));
  t.notOk(td(req()));
  t.ok(when({ key: 'source.trustDomain', notValues: ['x.td'] })(req()));
});

t.test('when connection.sni', async (t) => {
  const m = when({ key: 'connection.sni', values: ['outbound_.9080_._.reviews.default.svc.cluster.local'] });
  t.ok(m(req({ sni: 'outbound_.9080_._.reviews.default.svc.cluster.local' })));
  t.notOk(m(req({ sni: 'other' })));
  t.notOk(m(req()), 'no TLS, no SNI');
  t.ok(when({ key: 'connection.sni', values: ['*.cluster.local'] })(req({ sni: 'a.cluster.local' })));
  t.ok(when({ key: 'connection.sni', notValues: ['*'] })(req()));
});

t.test('when request.auth.*: values never match, notValues always match (no JWT)', async (t) => {
  for (const key of [
    'request.auth.principal',
    'request.auth.audiences',
    'request.auth.presenter',
    'request.auth.claims[iss]',
    'request.auth.claims[groups][admin]',
  ]) {
    t.notOk(when({ key, values: ['*'] })(req({ peer: PRODUCTPAGE })), `${key} values`);
    t.ok(when({ key, notValues: ['x'] })(req()), `${key} notValues`);
  }
});

t.test('when experimental.envoy.filters.* sees no metadata: values never match, notValues do', async (t) => {
  const key = 'experimental.envoy.filters.network.mysql_proxy[db.table]';
  t.notOk(when({ key, values: ['[update]'] })(req()));
  t.ok(when({ key, notValues: ['[update]'] })(req()));
});

t.test('an unknown when key drops the rule: ALLOW narrows, DENY is lost', async (t) => {
  const r = rule({ when: [{ key: 'request.method', values: ['GET'] }] });
  const allow = dropped(r, 'ALLOW');
  t.notOk(allow.check(req()).allowed);
  t.equal(
    allow.check(req()).reason,
    'rbac_access_denied_matched_policy[none]',
    'the ALLOW policy still applies',
  );
  const deny = dropped(r, 'DENY');
  t.ok(deny.check(req()).allowed);
  t.match(deny.warnings[0], /unknown when key "request\.method"/);
  for (const key of ['request.headers[]', 'request.auth.claims', 'request.auth.claims[]', 'source.port']) {
    dropped(rule({ when: [{ key, values: ['x'] }] }));
  }
});

t.test('a when condition without values or notValues drops the rule', async (t) => {
  for (const c of [
    { key: 'request.headers[x]' },
    { key: 'source.ip', values: [], notValues: [] },
    { key: 'destination.port' },
  ]) {
    const authz = dropped(rule({ when: [c] }));
    t.match(authz.warnings[0], /has neither values nor notValues/, c.key);
    t.notOk(authz.check(req()).allowed);
  }
});

t.test('all when conditions must hold', async (t) => {
  const m = when(
    { key: 'request.headers[x-a]', values: ['1'] },
    { key: 'destination.port', values: ['9080'] },
  );
  t.ok(m(req({ headers: ['x-a', '1'] })));
  t.notOk(m(req({ headers: ['x-a', '1'], port: 80 })));
  t.notOk(m(req({ headers: ['x-a', '2'] })));
});

t.test('from, to and when of one rule are ANDed', async (t) => {
  const m = matcher(
    rule({
      from: [{ principals: ['cluster.local/ns/default/sa/productpage'] }],
      to: [{ methods: ['GET'] }],
      when: [{ key: 'request.headers[x-a]', values: ['1'] }],
    }),
  );
  t.ok(m(req({ peer: PRODUCTPAGE, headers: ['x-a', '1'] })));
  t.notOk(m(req({ headers: ['x-a', '1'] })));
  t.notOk(m(req({ peer: PRODUCTPAGE, method: 'POST', headers: ['x-a', '1'] })));
  t.notOk(m(req({ peer: PRODUCTPAGE })));
});

// ---- evaluation order, empty rules, dry-run, audit ----------------------------------------------

const allowProductpage = () =>
  ap('allow-pp', 'default', {
    rules: [rule({ from: [{ principals: ['cluster.local/ns/default/sa/productpage'] }] })],
  });

t.test('no applicable policy: empty authorizer, everything allowed', async (t) => {
  const authz = compile([]);
  t.ok(authz.empty);
  t.same(authz.check(req()), { allowed: true, reason: 'no_allow_policy', audited: false });
});

t.test('ALLOW: a matching rule allows, none matching denies; reasons name the rule', async (t) => {
  const authz = compile([allowProductpage()]);
  t.notOk(authz.empty);
  t.same(authz.check(req({ peer: PRODUCTPAGE })), {
    allowed: true,
    reason: 'allowed_by[default-allow-pp-rule[0]]',
    audited: false,
  });
  t.same(authz.check(req({ peer: peer('default', 'ratings') })), {
    allowed: false,
    reason: 'rbac_access_denied_matched_policy[none]',
    audited: false,
  });
});

t.test('any of several ALLOW policies may allow', async (t) => {
  const authz = compile([
    allowProductpage(),
    ap('allow-get', 'default', {
      rules: [rule({ to: [{ methods: ['GET'] }] }), rule({ to: [{ methods: ['HEAD'] }] })],
    }),
  ]);
  t.ok(authz.check(req({ method: 'GET' })).allowed);
  t.equal(authz.check(req({ method: 'HEAD' })).reason, 'allowed_by[default-allow-get-rule[1]]');
  t.notOk(authz.check(req({ method: 'POST' })).allowed);
  t.ok(authz.check(req({ method: 'POST', peer: PRODUCTPAGE })).allowed);
});

t.test('DENY is evaluated before ALLOW', async (t) => {
  const authz = compile([
    allowProductpage(),
    ap('deny-delete', 'default', { action: 'DENY', rules: [rule({ to: [{ methods: ['DELETE'] }] })] }),
  ]);
  t.ok(authz.check(req({ peer: PRODUCTPAGE })).allowed);
  const d = authz.check(req({ peer: PRODUCTPAGE, method: 'DELETE' }));
  t.notOk(d.allowed, 'an ALLOW match does not save a request a DENY rule matches');
  t.equal(d.reason, 'rbac_access_denied_matched_policy[default-deny-delete-rule[0]]');
  // Only DENY policies: whatever they do not match is allowed.
  const denyOnly = compile([
    ap('deny-delete', 'default', { action: 'DENY', rules: [rule({ to: [{ methods: ['DELETE'] }] })] }),
  ]);
  t.same(denyOnly.check(req()), { allowed: true, reason: 'no_allow_policy', audited: false });
  t.notOk(denyOnly.check(req({ method: 'DELETE' })).allowed);
});

t.test('the reason names the first matching DENY rule in load order, original rule index kept', async (t) => {
  const authz = compile([
    ap('d1', 'default', {
      action: 'DENY',
      rules: [rule({ when: [{ key: 'bogus', values: ['x'] }] }), rule({ to: [{ methods: ['POST'] }] })],
    }),
    ap('d2', 'default', { action: 'DENY', rules: [rule({ to: [{ methods: ['POST', 'PUT'] }] })] }),
  ]);
  t.equal(authz.warnings.length, 1);
  t.equal(
    authz.check(req({ method: 'POST' })).reason,
    'rbac_access_denied_matched_policy[default-d1-rule[1]]',
  );
  t.equal(
    authz.check(req({ method: 'PUT' })).reason,
    'rbac_access_denied_matched_policy[default-d2-rule[0]]',
  );
});

t.test('empty rules: ALLOW allows nothing, DENY and AUDIT never match', async (t) => {
  const allowNothing = compile([ap('allow-nothing', 'default')]);
  t.notOk(allowNothing.check(req({ peer: PRODUCTPAGE })).allowed);
  t.equal(allowNothing.check(req()).reason, 'rbac_access_denied_matched_policy[none]');
  const denyNothing = compile([ap('deny-nothing', 'default', { action: 'DENY' })]);
  t.notOk(denyNothing.empty, 'the policy applies');
  t.same(denyNothing.check(req()), { allowed: true, reason: 'no_allow_policy', audited: false });
  const auditNothing = compile([ap('audit-nothing', 'default', { action: 'AUDIT' })]);
  t.notOk(auditNothing.check(req()).audited);
  // allow-nothing next to another ALLOW policy does not block what the other allows.
  t.ok(
    compile([ap('allow-nothing', 'default'), allowProductpage()]).check(req({ peer: PRODUCTPAGE })).allowed,
  );
});

t.test('rules: [{}] matches every request (allow-all, deny-all)', async (t) => {
  const allowAll = compile([ap('allow-all', 'default', { rules: [rule()] })]);
  t.equal(allowAll.check(req()).reason, 'allowed_by[default-allow-all-rule[0]]');
  t.ok(allowAll.check(req({ method: 'DELETE', path: '/x/../y', peer: PRODUCTPAGE })).allowed);
  const denyAll = compile([
    ap('deny-all', 'default', { action: 'DENY', rules: [rule()] }),
    ap('allow-all', 'default', { rules: [rule()] }),
  ]);
  t.notOk(denyAll.check(req()).allowed);
  t.equal(denyAll.check(req()).reason, 'rbac_access_denied_matched_policy[default-deny-all-rule[0]]');
});

t.test('AUDIT marks matching requests and never changes the decision', async (t) => {
  const authz = compile([
    ap('audit-post', 'default', { action: 'AUDIT', rules: [rule({ to: [{ methods: ['POST'] }] })] }),
    ap('deny-delete', 'default', { action: 'DENY', rules: [rule({ to: [{ methods: ['DELETE'] }] })] }),
  ]);
  t.same(authz.check(req({ method: 'POST' })), { allowed: true, reason: 'no_allow_policy', audited: true });
  t.same(authz.check(req({ method: 'GET' })), { allowed: true, reason: 'no_allow_policy', audited: false });
  const withAllow = compile([
    ap('audit-all', 'default', { action: 'AUDIT', rules: [rule()] }),
    allowProductpage(),
    ap('deny-delete', 'default', { action: 'DENY', rules: [rule({ to: [{ methods: ['DELETE'] }] })] }),
  ]);
  t.same(withAllow.check(req()), {
    allowed: false,
    reason: 'rbac_access_denied_matched_policy[none]',
    audited: true,
  });
  t.same(withAllow.check(req({ peer: PRODUCTPAGE })), {
    allowed: true,
    reason: 'allowed_by[default-allow-pp-rule[0]]',
    audited: true,
  });
  t.equal(withAllow.check(req({ method: 'DELETE' })).audited, true, 'denied requests are marked too');
  t.equal(withAllow.check(req({ method: 'DELETE' })).allowed, false);
});

t.test('dry-run DENY: evaluated and reported, never enforced', async (t) => {
  const authz = compile([
    ap('dry-deny', 'default', {
      action: 'DENY',
      dryRun: true,
      rules: [rule({ to: [{ methods: ['POST'] }] })],
    }),
  ]);
  t.notOk(authz.empty);
  const d = authz.check(req({ method: 'POST' }));
  t.ok(d.allowed);
  t.equal(d.reason, 'no_allow_policy');
  t.equal(d.dryRunDenied, 'rbac_access_denied_matched_policy[default-dry-deny-rule[0]]');
  t.equal(authz.check(req()).dryRunDenied, undefined);
});

t.test('dry-run ALLOW: reports what enforcing it would deny', async (t) => {
  const dry = () =>
    ap('dry-allow', 'default', { dryRun: true, rules: [rule({ to: [{ methods: ['GET'] }] })] });
  const alone = compile([dry()]);
  t.same(alone.check(req({ method: 'GET' })), { allowed: true, reason: 'no_allow_policy', audited: false });
  const post = alone.check(req({ method: 'POST' }));
  t.ok(post.allowed, 'not enforced');
  t.equal(post.dryRunDenied, 'rbac_access_denied_matched_policy[none]');

  // Next to an enforced ALLOW policy, a request that policy allows stays allowed either way.
  const withAllow = compile([dry(), allowProductpage()]);
  const pp = withAllow.check(req({ method: 'POST', peer: PRODUCTPAGE }));
  t.ok(pp.allowed);
  t.equal(pp.dryRunDenied, undefined);
  // A request the enforced policies deny already is not reported as a dry-run denial.
  const denied = withAllow.check(req({ method: 'POST' }));
  t.notOk(denied.allowed);
  t.equal(denied.dryRunDenied, undefined);

  const dryNothing = compile([ap('dry-nothing', 'default', { dryRun: true })]);
  t.equal(
    dryNothing.check(req()).dryRunDenied,
    'rbac_access_denied_matched_policy[none]',
    'dry-run allow-nothing',
  );
});

t.test('dry-run policies never change an enforced decision', async (t) => {
  const authz = compile([
    ap('dry-deny-all', 'default', { action: 'DENY', dryRun: true, rules: [rule()] }),
    ap('dry-allow-all', 'default', { dryRun: true, rules: [rule()] }),
    allowProductpage(),
  ]);
  t.notOk(authz.check(req()).allowed, 'a dry-run allow-all does not allow');
  const pp = authz.check(req({ peer: PRODUCTPAGE }));
  t.ok(pp.allowed, 'a dry-run deny-all does not deny');
  t.equal(pp.dryRunDenied, 'rbac_access_denied_matched_policy[default-dry-deny-all-rule[0]]');
});

t.test('a dry-run AUDIT policy marks nothing', async (t) => {
  const authz = compile([ap('dry-audit', 'default', { action: 'AUDIT', dryRun: true, rules: [rule()] })]);
  t.notOk(authz.check(req()).audited);
});

// ---- scope -------------------------------------------------------------------------------------

t.test('scope: own namespace with a matching or no selector, root namespace mesh-wide', async (t) => {
  const policies = [
    ap('ns-wide', 'default', { action: 'DENY', rules: [rule({ to: [{ paths: ['/a'] }] })] }),
    ap('selected', 'default', {
      selector: { app: 'reviews' },
      action: 'DENY',
      rules: [rule({ to: [{ paths: ['/b'] }] })],
    }),
    ap('other-app', 'default', {
      selector: { app: 'ratings' },
      action: 'DENY',
      rules: [rule({ to: [{ paths: ['/c'] }] })],
    }),
    ap('partial', 'default', {
      selector: { app: 'reviews', version: 'v2' },
      action: 'DENY',
      rules: [rule({ to: [{ paths: ['/d'] }] })],
    }),
    ap('other-ns', 'prod', { action: 'DENY', rules: [rule({ to: [{ paths: ['/e'] }] })] }),
    ap('mesh', ROOT, { action: 'DENY', rules: [rule({ to: [{ paths: ['/f'] }] })] }),
    ap('mesh-selected', ROOT, {
      selector: { app: 'reviews' },
      action: 'DENY',
      rules: [rule({ to: [{ paths: ['/g'] }] })],
    }),
    ap('mesh-other', ROOT, {
      selector: { app: 'ratings' },
      action: 'DENY',
      rules: [rule({ to: [{ paths: ['/h'] }] })],
    }),
    ap('waypoint', 'default', {
      hasTargetRefs: true,
      action: 'DENY',
      rules: [rule({ to: [{ paths: ['/i'] }] })],
    }),
    ap('empty-selector', 'default', {
      selector: {},
      action: 'DENY',
      rules: [rule({ to: [{ paths: ['/j'] }] })],
    }),
  ];
  const authz = compile(policies);
  const denied = (p: string) => !authz.check(req({ path: p })).allowed;
  t.ok(denied('/a'), 'namespace-wide');
  t.ok(denied('/b'), 'selector ⊆ labels');
  t.notOk(denied('/c'), 'selector for another app');
  t.notOk(denied('/d'), 'selector with a label the workload lacks');
  t.notOk(denied('/e'), 'another namespace');
  t.ok(denied('/f'), 'root namespace, no selector: mesh-wide');
  t.ok(denied('/g'), 'root namespace with a matching selector');
  t.notOk(denied('/h'), 'root namespace with another selector');
  t.notOk(denied('/i'), 'targetRefs: waypoint/gateway only');
  t.ok(denied('/j'), 'an empty selector selects everything');
  t.same(authz.policies, [
    'default/ns-wide',
    'default/selected',
    'istio-system/mesh',
    'istio-system/mesh-selected',
    'default/empty-selector',
  ]);

  // A workload elsewhere sees only the mesh-wide ones.
  const ratings = compileAuthorizer(policies, { namespace: 'prod', labels: { app: 'ratings' } }, ROOT, TD);
  t.same(ratings.policies, ['prod/other-ns', 'istio-system/mesh', 'istio-system/mesh-other']);
});

t.test('scope: only targetRefs or unrelated policies leave the authorizer empty', async (t) => {
  const authz = compile([
    ap('waypoint', 'default', { hasTargetRefs: true }),
    ap('elsewhere', 'prod'),
    ap('other-app', 'default', { selector: { app: 'ratings' } }),
  ]);
  t.ok(authz.empty);
  t.ok(authz.check(req()).allowed);
});

t.test('scope: a workload in the root namespace sees each policy once, in load order', async (t) => {
  const policies = [ap('b', ROOT, { action: 'DENY', rules: [rule()] }), ap('a', ROOT)];
  const inRoot: WorkloadSelectorInput = { namespace: ROOT, labels: {} };
  t.same(
    applicableAuthorizationPolicies([policies[1]!, policies[0]!], inRoot, ROOT).map((p) => p.meta.name),
    ['b', 'a'],
  );
  t.equal(
    compileAuthorizer(policies, inRoot, ROOT, TD).check(req()).reason,
    'rbac_access_denied_matched_policy[istio-system-b-rule[0]]',
  );
});

t.test('decisions without dry-run are shared objects (no allocation per request)', async (t) => {
  const authz = compile([allowProductpage()]);
  t.equal(authz.check(req({ peer: PRODUCTPAGE })), authz.check(req({ peer: PRODUCTPAGE, path: '/other' })));
  t.ok(Object.isFrozen(authz.check(req())));
});
