import t from 'tap';
import type { HTTPMatchRequest, HTTPRewrite } from '../../../src/config/resource-types.ts';
import { compileRoutes } from '../../../src/router/compile-routes.ts';
import type { RouteDecision } from '../../../src/router/route-types.ts';
import {
  bundle,
  dest,
  exact,
  match,
  options,
  port,
  prefix,
  regex,
  req,
  rule,
  svc,
  vs,
} from './bundle-builder.ts';

const REVIEWS = 'reviews.default.svc.cluster.local';

function rewriting(rewrite: HTTPRewrite, m?: Partial<HTTPMatchRequest>) {
  const table = compileRoutes(
    bundle({
      serviceEntries: [svc('reviews', 'default', [port(9080)])],
      virtualServices: [
        vs(
          'reviews',
          [REVIEWS],
          [rule({ ...(m ? { match: [match(m)] } : {}), route: [dest(REVIEWS)], rewrite })],
        ),
      ],
    }),
    options(),
  );
  return (path: string, authority = 'reviews'): Extract<RouteDecision, { kind: 'forward' }> => {
    const d = table.route(req(authority, path));
    if (d.kind !== 'forward') throw new Error(`expected forward, got ${d.kind}`);
    return d;
  };
}

t.test('prefix match: only the matched prefix is replaced, rest and query kept (pitfall 10)', async (t) => {
  const r = rewriting({ uri: '/' }, { uri: prefix('/foo') });
  const d = r('/foo/bar?x=1');
  t.equal(d.path, '//bar?x=1');
  t.equal(d.originalPath, '/foo/bar?x=1');
  t.equal(rewriting({ uri: '/v2/' }, { uri: prefix('/foo/') })('/foo/bar').path, '/v2/bar');
  t.equal(rewriting({ uri: '/new' }, { uri: prefix('/old') })('/oldx').path, '/newx');
});

t.test('no uri condition: the implicit prefix / is replaced', async (t) => {
  t.equal(rewriting({ uri: '/v2' })('/foo').path, '/v2foo');
  t.equal(
    rewriting({ uri: '/v2/' }, { method: exact('GET') })('/foo?a=b').path,
    '/v2/foo?a=b',
    'method-only match',
  );
});

t.test('exact and regex matches: the whole path without the query is replaced', async (t) => {
  t.equal(
    rewriting({ uri: '/signin' }, { uri: exact('/login') })('/login?next=/home').path,
    '/signin?next=/home',
  );
  t.equal(rewriting({ uri: '/item' }, { uri: regex('/items/\\d+') })('/items/7').path, '/item');
  t.equal(rewriting({ uri: '/item' }, { uri: regex('/items/\\d+') })('/items/7?v=1').path, '/item?v=1');
});

t.test('ignoreUriCase: the matched prefix is replaced by its length', async (t) => {
  const d = rewriting({ uri: '/v2' }, { uri: prefix('/API'), ignoreUriCase: true })('/api/users?Q=1');
  t.equal(d.path, '/v2/users?Q=1');
  t.equal(d.originalPath, '/api/users?Q=1');
});

t.test('uriRegexRewrite: every match in the path, groups, query untouched', async (t) => {
  const groups = rewriting({
    uriRegexRewrite: { match: /^\/service\/([^/]+)(\/.*)$/g, rewrite: '/customprefix$2/$1' },
  });
  t.equal(groups('/service/foo/bar?q=/service/x').path, '/customprefix/bar/foo?q=/service/x');
  const all = rewriting({ uriRegexRewrite: { match: /a/g, rewrite: 'b' } });
  t.equal(all('/aXa?a=a').path, '/bXb?a=a', 'all non-overlapping matches, not in the query');
  const notGlobal = rewriting({ uriRegexRewrite: { match: /a/, rewrite: 'b' } });
  t.equal(notGlobal('/aa').path, '/bb', 'a non-global RegExp is made global at compile time');
  const d = all('/xyz');
  t.equal(d.path, '/xyz');
  t.notOk('originalPath' in d, 'no originalPath when nothing changed');
});

t.test('rewrite.authority replaces the authority; matching saw the original', async (t) => {
  const r = rewriting({ authority: 'new-host:8080' }, { authority: exact('reviews:9080') });
  const d = r('/p', 'reviews:9080');
  t.equal(d.authority, 'new-host:8080');
  t.equal(d.path, '/p');
  t.notOk('originalPath' in d);
  const keep = rewriting({ uri: '/x' })('/', 'Reviews:9080');
  t.equal(keep.authority, 'Reviews:9080', 'unchanged authority is passed through as sent');
});
