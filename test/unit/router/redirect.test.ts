import t from 'tap';
import type { HTTPMatchRequest, HTTPRedirect } from '../../../src/config/resource-types.ts';
import { compileRoutes } from '../../../src/router/compile-routes.ts';
import type { RouteInput } from '../../../src/router/route-types.ts';
import { bundle, exact, match, options, port, prefix, req, rule, svc, vs } from './bundle-builder.ts';

const REVIEWS = 'reviews.default.svc.cluster.local';

function redirecting(redirect: Partial<HTTPRedirect>, m?: Partial<HTTPMatchRequest>) {
  const table = compileRoutes(
    bundle({
      serviceEntries: [
        svc('reviews', 'default', [port(9080)]),
        svc('multi', 'default', [port(80), port(8080)]),
      ],
      virtualServices: [
        vs(
          'reviews',
          [REVIEWS, 'multi.default.svc.cluster.local'],
          [
            rule({
              ...(m ? { match: [match(m)] } : {}),
              redirect: { redirectCode: 301, ...redirect },
              headers: { response: { set: [['cache-control', 'no-store']], add: [], remove: [] } },
            }),
          ],
        ),
      ],
    }),
    options(),
  );
  return (authority: string, path: string, extra: Partial<RouteInput> = {}): string => {
    const d = table.route(req(authority, path, extra));
    if (d.kind !== 'redirect') throw new Error(`expected redirect, got ${d.kind}`);
    return `${d.status} ${d.location}`;
  };
}

t.test('uri replaces the path and keeps the query unless it has its own', async (t) => {
  t.equal(redirecting({ uri: '/new' })('reviews', '/old?x=1'), '301 http://reviews/new?x=1');
  t.equal(redirecting({ uri: '/new?y=2' })('reviews', '/old?x=1'), '301 http://reviews/new?y=2');
  t.equal(
    redirecting({ uri: '/new' }, { uri: prefix('/old') })('reviews:9080', '/old/deep'),
    '301 http://reviews:9080/new',
  );
});

t.test('prefixRewrite replaces only the matched prefix', async (t) => {
  const r = redirecting({ prefixRewrite: '/' }, { uri: prefix('/foo') });
  t.equal(r('reviews', '/foo/baz?q=1'), '301 http://reviews//baz?q=1');
  t.equal(
    redirecting({ prefixRewrite: '/' }, { uri: prefix('/foo/') })('reviews', '/foo/baz'),
    '301 http://reviews/baz',
  );
  t.equal(
    redirecting({ prefixRewrite: '/v2' })('reviews', '/x'),
    '301 http://reviews/v2x',
    'implicit prefix /',
  );
});

t.test('neither uri nor prefixRewrite keeps path and query', async (t) => {
  t.equal(
    redirecting({ authority: 'other.example.com' })('reviews', '/p?q'),
    '301 http://other.example.com/p?q',
  );
});

t.test('authority is used as written; scheme; redirectCode', async (t) => {
  t.equal(
    redirecting({ authority: 'bookinfo.com:8000', redirectCode: 308 })('reviews:9080', '/p'),
    '308 http://bookinfo.com:8000/p',
  );
  t.equal(redirecting({ scheme: 'https' })('reviews', '/p'), '301 https://reviews/p');
  t.equal(
    redirecting({ scheme: 'https' })('multi:80', '/p'),
    '301 https://multi/p',
    'old default port dropped',
  );
  t.equal(
    redirecting({ uri: '/x' })('multi:80', '/p'),
    '301 http://multi:80/x',
    'same scheme: port kept as sent',
  );
  t.equal(
    redirecting({ scheme: 'https' })('reviews:9080', '/p'),
    '301 https://reviews:9080/p',
    'other port kept',
  );
});

t.test('port and derivePort; default ports of the scheme are left out', async (t) => {
  t.equal(redirecting({ port: 8443, scheme: 'https' })('reviews:9080', '/p'), '301 https://reviews:8443/p');
  t.equal(redirecting({ port: 443, scheme: 'https' })('reviews:9080', '/p'), '301 https://reviews/p');
  t.equal(redirecting({ port: 80 })('reviews:9080', '/p'), '301 http://reviews/p');
  t.equal(redirecting({ port: 8443, authority: 'x.com:1' })('reviews', '/p'), '301 http://x.com:8443/p');
  const derived = redirecting({ derivePort: 'FROM_REQUEST_PORT', uri: '/d' });
  t.equal(derived('reviews', '/p'), '301 http://reviews:9080/d', 'the service port when the Host has none');
  t.equal(derived('multi', '/p'), '301 http://multi/d', 'port 80 with http is left out');
  t.equal(derived('multi:8080', '/p'), '301 http://multi:8080/d');
  t.equal(
    redirecting({ derivePort: 'FROM_PROTOCOL_DEFAULT', scheme: 'https' })('reviews', '/p'),
    '301 https://reviews/p',
  );
});

t.test('redirect decisions carry route name and route-level response headers', async (t) => {
  const table = compileRoutes(
    bundle({
      serviceEntries: [svc('reviews', 'default', [port(9080)])],
      virtualServices: [
        vs(
          'reviews',
          [REVIEWS],
          [
            rule({
              match: [match({ headers: { 'end-user': exact('jason') } })],
              redirect: {
                uri: '/v1/bookRatings',
                authority: 'bookratings.default.svc.cluster.local',
                redirectCode: 301,
              },
              headers: { response: { set: [], add: [['x-r', '1']], remove: [] } },
            }),
          ],
        ),
      ],
    }),
    options(),
  );
  t.same(table.route(req('reviews', '/', { headers: ['end-user', 'jason'] })), {
    kind: 'redirect',
    routeName: 'default/reviews',
    responseHeaders: [{ set: [], add: [['x-r', '1']], remove: [] }],
    status: 301,
    location: 'http://bookratings.default.svc.cluster.local/v1/bookRatings',
  });
});
