import t from 'tap';
import type { HTTPMatchRequest } from '../../../src/config/resource-types.ts';
import { compileRoutes } from '../../../src/router/compile-routes.ts';
import { headerValue, queryParamValue } from '../../../src/router/match-request.ts';
import type { RouteInput } from '../../../src/router/route-types.ts';
import {
  bundle,
  exact,
  headers,
  match,
  options,
  port,
  prefix,
  present,
  regex,
  req,
  rule,
  svc,
  vs,
} from './bundle-builder.ts';

const REVIEWS = 'reviews.default.svc.cluster.local';

/** A table whose only rule answers 200 when `m` matches; otherwise the answer is 404 NR. */
function matcher(m: Partial<HTTPMatchRequest>): (input: RouteInput) => boolean {
  const table = compileRoutes(
    bundle({
      serviceEntries: [svc('reviews', 'default', [port(9080)])],
      virtualServices: [
        vs('reviews', [REVIEWS], [rule({ match: [match(m)], directResponse: { status: 200 } })]),
      ],
    }),
    options(),
  );
  return (input) => {
    const d = table.route(input);
    if (d.kind === 'noRoute') return false;
    if (d.kind === 'direct') return true;
    throw new Error(`unexpected ${d.kind}`);
  };
}

const path = (p: string, extra: Partial<RouteInput> = {}) => req('reviews', p, extra);

t.test('uri exact ignores the query string', async (t) => {
  const m = matcher({ uri: exact('/login') });
  t.ok(m(path('/login')));
  t.ok(m(path('/login?next=/x')));
  t.notOk(m(path('/login/')));
  t.notOk(m(path('/Login')));
});

t.test('uri prefix is a pure string prefix of the raw path, query included (pitfall 8)', async (t) => {
  const m = matcher({ uri: prefix('/api') });
  t.ok(m(path('/api')));
  t.ok(m(path('/apix')));
  t.ok(m(path('/api?x=1')));
  t.notOk(m(path('/ap')));
  t.ok(matcher({ uri: prefix('/a?x=1') })(path('/a?x=1&y')), 'the prefix may reach into the query');
  t.ok(matcher({ uri: prefix('') })(path('/anything')), 'empty uri prefix matches everything');
});

t.test('uri regex is a full match on the path without the query', async (t) => {
  const m = matcher({ uri: regex('/items/\\d+') });
  t.ok(m(path('/items/42')));
  t.ok(m(path('/items/42?x=1')));
  t.notOk(m(path('/items/42/edit')), 'not a partial match');
  t.notOk(m(path('/v1/items/42')));
  const digits = matcher({ headers: { 'x-n': regex('\\d+$') } });
  t.ok(digits(path('/', { headers: headers(['x-n', '123']) })));
  t.notOk(digits(path('/', { headers: headers(['x-n', 'a123']) })));
  t.notOk(digits(path('/', { headers: headers(['x-n', '123a']) })));
});

t.test('ignoreUriCase applies to exact and prefix, not regex', async (t) => {
  t.ok(matcher({ uri: exact('/Login'), ignoreUriCase: true })(path('/LOGIN?Q=1')));
  t.ok(matcher({ uri: prefix('/API'), ignoreUriCase: true })(path('/api/v1')));
  t.notOk(matcher({ uri: prefix('/API'), ignoreUriCase: true })(path('/ap')));
  t.notOk(matcher({ uri: regex('/api'), ignoreUriCase: true })(path('/API')));
  t.notOk(matcher({ uri: exact('/Login') })(path('/login')));
});

t.test('method, scheme and authority; authority sees the port (pitfall 9)', async (t) => {
  const get = matcher({ method: exact('GET') });
  t.ok(get(path('/')));
  t.notOk(get(path('/', { method: 'get' })), 'methods are case-sensitive');
  const https = matcher({ scheme: exact('https') });
  t.ok(https(path('/', { scheme: 'https' })));
  t.notOk(https(path('/')));
  const withPort = matcher({ authority: exact('reviews:9080') });
  t.ok(withPort(req('reviews:9080', '/')));
  t.notOk(withPort(req('reviews', '/')));
  const noPort = matcher({ authority: exact('reviews') });
  t.notOk(noPort(req('reviews:9080', '/')));
  t.ok(matcher({ authority: prefix('reviews') })(req('reviews:9080', '/')));
});

t.test('headers: present, absent, exact empty, repeated', async (t) => {
  const isPresent = matcher({ headers: { 'x-debug': present() } });
  t.ok(isPresent(path('/', { headers: headers(['x-debug', '']) })));
  t.notOk(isPresent(path('/')));
  const empty = matcher({ headers: { 'x-debug': exact('') } });
  t.ok(empty(path('/', { headers: headers(['x-debug', '']) })), 'exact "" with an empty value');
  t.notOk(empty(path('/')), 'an absent header never satisfies exact ""');
  const user = matcher({ headers: { 'end-user': exact('jason') } });
  t.ok(user(path('/', { headers: headers(['end-user', 'jason']) })));
  t.notOk(user(path('/', { headers: headers(['end-user', 'Jason']) })), 'values are case-sensitive');
  t.notOk(user(path('/')), 'absent fails a value matcher');
  const joined = matcher({ headers: { 'x-a': exact('1,2') } });
  t.ok(
    joined(path('/', { headers: headers(['x-a', '1'], ['x-b', 'z'], ['x-a', '2']) })),
    'repeats joined with ,',
  );
  t.notOk(user(path('/', { headers: headers(['end-user', 'jason'], ['end-user', 'x']) })));
  const cookie = matcher({ headers: { cookie: regex('^(.*?;)?(user=jason)(;.*)?') } });
  t.ok(cookie(path('/', { headers: headers(['cookie', 'a=1;user=jason']) })));
});

t.test('withoutHeaders: missing header treated as "" then inverted; present inverted', async (t) => {
  const notFoo = matcher({ withoutHeaders: { 'x-env': exact('foo') } });
  t.ok(notFoo(path('/')), 'missing header satisfies withoutHeaders exact foo');
  t.ok(notFoo(path('/', { headers: headers(['x-env', 'bar']) })));
  t.notOk(notFoo(path('/', { headers: headers(['x-env', 'foo']) })));
  const absent = matcher({ withoutHeaders: { 'x-env': present() } });
  t.ok(absent(path('/')));
  t.notOk(absent(path('/', { headers: headers(['x-env', '']) })));
  const notEmpty = matcher({ withoutHeaders: { 'x-env': exact('') } });
  t.notOk(notEmpty(path('/')), 'missing is "" which equals "", inverted: no match');
  t.ok(notEmpty(path('/', { headers: headers(['x-env', 'v']) })));
});

t.test('queryParams: case-sensitive names, first occurrence, exact "" for ?key and ?key=', async (t) => {
  const q = matcher({ queryParams: { debug: exact('1') } });
  t.ok(q(path('/x?debug=1')));
  t.ok(q(path('/x?a=b&debug=1&c')));
  t.notOk(q(path('/x?Debug=1')), 'names are case-sensitive');
  t.notOk(q(path('/x?debug=2&debug=1')), 'first occurrence counts');
  t.notOk(q(path('/x?xdebug=1')));
  t.notOk(q(path('/x')));
  const emptyValue = matcher({ queryParams: { flag: exact('') } });
  t.ok(emptyValue(path('/?flag')));
  t.ok(emptyValue(path('/?flag=')));
  t.ok(emptyValue(path('/?a=1&flag')));
  t.notOk(emptyValue(path('/?flag=1')));
  t.notOk(emptyValue(path('/')));
  const isPresent = matcher({ queryParams: { flag: present() } });
  t.ok(isPresent(path('/?flag=anything')));
  t.notOk(isPresent(path('/?flags=1')));
  t.ok(matcher({ queryParams: { v: regex('[0-9]+') } })(path('/?v=123')));
  t.notOk(matcher({ queryParams: { v: regex('[0-9]+') } })(path('/?v=123a')), 'full match');
  t.ok(matcher({ queryParams: { q: exact('a%20b') } })(path('/?q=a%20b')), 'raw values, not decoded');
});

t.test('conditions within one entry are ANDed, entries are ORed', async (t) => {
  const table = compileRoutes(
    bundle({
      serviceEntries: [svc('reviews', 'default', [port(9080)])],
      virtualServices: [
        vs(
          'reviews',
          [REVIEWS],
          [
            rule({
              match: [
                match({ uri: prefix('/a'), method: exact('POST') }),
                match({ headers: { 'x-b': present() } }),
              ],
              directResponse: { status: 200 },
            }),
          ],
        ),
      ],
    }),
    options(),
  );
  t.equal(table.route(path('/a', { method: 'POST' })).kind, 'direct');
  t.equal(table.route(path('/a')).kind, 'noRoute');
  t.equal(table.route(path('/z', { headers: headers(['x-b', '1']) })).kind, 'direct');
});

t.test('headerValue and queryParamValue helpers', async (t) => {
  t.equal(headerValue(['a', '1', 'b', '2', 'a', '3'], 'a'), '1,3');
  t.equal(headerValue([], 'a'), undefined);
  const p = '/p?a=1&b&c=&a=2';
  const q = p.indexOf('?');
  t.equal(queryParamValue(p, q, 'a'), '1');
  t.equal(queryParamValue(p, q, 'b'), '');
  t.equal(queryParamValue(p, q, 'c'), '');
  t.equal(queryParamValue(p, q, 'd'), undefined);
  t.equal(queryParamValue('/p', -1, 'a'), undefined);
  t.equal(queryParamValue('/p?a&b=1', 2, 'a&b'), undefined, 'a name never spans a separator');
});
