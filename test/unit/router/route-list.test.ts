import t from 'tap';
import type { HTTPRoute } from '../../../src/config/resource-types.ts';
import { compileRoutes } from '../../../src/router/compile-routes.ts';
import {
  bundle,
  dest,
  dr,
  endpoint,
  exact,
  headers,
  match,
  options,
  port,
  prefix,
  regex,
  req,
  rule,
  se,
  seededRandom,
  subset,
  svc,
  target,
  vs,
} from './bundle-builder.ts';

const REVIEWS = 'reviews.default.svc.cluster.local';
const C = (s: string, p = 9080) => `outbound|${p}|${s}|${REVIEWS}`;

function reviewsTable(http: HTTPRoute[], extra: Parameters<typeof options>[0] = {}) {
  return compileRoutes(
    bundle({
      serviceEntries: [
        se('reviews', [REVIEWS], [port(9080)], {
          endpoints: [
            endpoint('10.0.0.1', { labels: { version: 'v1' } }),
            endpoint('10.0.0.2', { labels: { version: 'v2' } }),
            endpoint('10.0.0.3', { labels: { version: 'v3' } }),
          ],
        }),
      ],
      destinationRules: [
        dr('reviews', REVIEWS, [
          subset('v1', { version: 'v1' }),
          subset('v2', { version: 'v2' }),
          subset('v3', { version: 'v3' }),
        ]),
      ],
      virtualServices: [vs('reviews', [REVIEWS], http)],
    }),
    options(extra),
  );
}

t.test('first matching route wins; no match gives 404 NR', async (t) => {
  const table = reviewsTable([
    rule({
      match: [match({ headers: { 'end-user': exact('jason') } })],
      route: [dest(REVIEWS, { subset: 'v2' })],
    }),
    rule({ match: [match({ uri: prefix('/api') })], route: [dest(REVIEWS, { subset: 'v3' })] }),
    rule({ match: [match({ uri: prefix('/api/v1') })], route: [dest(REVIEWS, { subset: 'v1' })] }),
  ]);
  t.equal(
    target(table.route(req('reviews', '/api/v1', { headers: headers(['end-user', 'jason']) }))),
    C('v2'),
  );
  t.equal(target(table.route(req('reviews', '/api/v1'))), C('v3'), 'earlier rule wins over a longer prefix');
  t.same(table.route(req('reviews', '/other')), {
    kind: 'noRoute',
    status: 404,
    reason: 'no route matched',
    serviceFqdn: REVIEWS,
    serviceName: 'reviews',
  });
});

t.test('a rule without match is a catch-all and stops the list (pitfall 5)', async (t) => {
  const table = reviewsTable([
    rule({ route: [dest(REVIEWS, { subset: 'v1' })], fault: { abort: { httpStatus: 555, fraction: 1 } } }),
    rule({ match: [match({ uri: prefix('/x') })], route: [dest(REVIEWS, { subset: 'v2' })] }),
  ]);
  const d = table.route(req('reviews', '/x'));
  t.equal(target(d), C('v1'));
  t.same(d.kind === 'forward' && d.fault, { abort: { httpStatus: 555, fraction: 1 } });
});

t.test('a catch-all match entry (prefix / or regex .*) stops the list', async (t) => {
  const prefixAll = reviewsTable([
    rule({
      match: [match({ uri: prefix('/') }), match({ uri: prefix('/never') })],
      route: [dest(REVIEWS, { subset: 'v1' })],
    }),
    rule({ route: [dest(REVIEWS, { subset: 'v2' })] }),
  ]);
  t.equal(target(prefixAll.route(req('reviews', '/anything'))), C('v1'));
  const regexAll = reviewsTable([
    rule({ match: [match({ uri: regex('.*') })], route: [dest(REVIEWS, { subset: 'v3' })] }),
    rule({ route: [dest(REVIEWS, { subset: 'v2' })] }),
  ]);
  t.equal(target(regexAll.route(req('reviews', '/a/b'))), C('v3'));
  const withHeader = reviewsTable([
    rule({
      match: [match({ uri: prefix('/'), headers: { x: exact('1') } })],
      route: [dest(REVIEWS, { subset: 'v1' })],
    }),
    rule({ route: [dest(REVIEWS, { subset: 'v2' })] }),
  ]);
  t.equal(
    target(withHeader.route(req('reviews', '/a'))),
    C('v2'),
    'prefix / with a header is not a catch-all',
  );
});

t.test('build-time selectors: sourceLabels, sourceNamespace, port, gateways (pitfall 6)', async (t) => {
  const http = [
    rule({
      name: 'only-ratings',
      match: [match({ sourceLabels: { app: 'ratings' } })],
      route: [dest(REVIEWS, { subset: 'v3' })],
    }),
    rule({
      match: [match({ sourceLabels: { app: 'productpage' }, headers: { x: exact('1') } })],
      route: [dest(REVIEWS, { subset: 'v2' })],
    }),
    rule({ match: [match({ sourceNamespace: 'other' })], route: [dest(REVIEWS, { subset: 'v3' })] }),
    rule({ match: [match({ port: 1234 })], route: [dest(REVIEWS, { subset: 'v3' })] }),
    rule({ match: [match({ gateways: ['ingress'] })], route: [dest(REVIEWS, { subset: 'v3' })] }),
    rule({
      match: [match({ gateways: ['mesh'], sourceLabels: { app: 'nobody' }, uri: prefix('/gw') })],
      route: [dest(REVIEWS, { subset: 'v2' })],
    }),
    rule({
      match: [match({ port: 9080, sourceNamespace: 'default', uri: prefix('/p') })],
      route: [dest(REVIEWS, { subset: 'v2' })],
    }),
  ];
  const table = reviewsTable(http);
  t.equal(
    target(table.route(req('reviews', '/'))),
    'noRoute 404',
    'dropped rules vanish, no catch-all appears',
  );
  t.equal(
    target(table.route(req('reviews', '/', { headers: headers(['x', '1']) }))),
    C('v2'),
    'sourceLabels ⊆ proxy',
  );
  t.equal(
    target(table.route(req('reviews', '/gw'))),
    C('v2'),
    'match gateways with mesh: labels not checked',
  );
  t.equal(target(table.route(req('reviews', '/p'))), C('v2'), 'matching port and namespace kept');
  const asRatings = reviewsTable(http, { proxyLabels: { app: 'ratings', version: 'v1' } });
  t.equal(
    target(asRatings.route(req('reviews', '/'))),
    C('v3'),
    'the same config on a ratings proxy keeps the rule',
  );
});

t.test('a single destination ignores its weight, even 0 (pitfall 3)', async (t) => {
  const table = reviewsTable([rule({ route: [dest(REVIEWS, { subset: 'v1' }, 0)] })], {
    random: () => {
      throw new Error('no draw for a single destination');
    },
  });
  t.equal(target(table.route(req('reviews'))), C('v1'));
});

t.test('weighted split with seeded random stays within ±2 % over 10 000 picks', async (t) => {
  const table = reviewsTable(
    [
      rule({
        route: [
          dest(REVIEWS, { subset: 'v1' }, 30),
          dest(REVIEWS, { subset: 'v2' }, 0),
          dest(REVIEWS, { subset: 'v3' }, 10),
        ],
      }),
    ],
    { random: seededRandom(42) },
  );
  const counts = new Map<string, number>();
  for (let i = 0; i < 10_000; i++) {
    const name = target(table.route(req('reviews')));
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  t.notOk(counts.has(C('v2')), 'weight-0 entries are dropped');
  const v1 = (counts.get(C('v1')) ?? 0) / 10_000;
  const v3 = (counts.get(C('v3')) ?? 0) / 10_000;
  t.ok(Math.abs(v1 - 0.75) <= 0.02, `v1 ${v1} ≈ 0.75 (relative weights 30:10)`);
  t.ok(Math.abs(v3 - 0.25) <= 0.02, `v3 ${v3} ≈ 0.25`);
});

t.test('weighted choice draws random once per request; boundaries', async (t) => {
  let draws = 0;
  let next = 0;
  const table = reviewsTable(
    [rule({ route: [dest(REVIEWS, { subset: 'v1' }, 90), dest(REVIEWS, { subset: 'v2' }, 10)] })],
    {
      random: () => {
        draws++;
        return next;
      },
    },
  );
  next = 0;
  t.equal(target(table.route(req('reviews'))), C('v1'));
  next = 0.8999;
  t.equal(target(table.route(req('reviews'))), C('v1'));
  next = 0.9;
  t.equal(target(table.route(req('reviews'))), C('v2'));
  next = 0.9999999;
  t.equal(target(table.route(req('reviews'))), C('v2'));
  t.equal(draws, 4);
});

t.test('destination port: explicit, else the only service port, else the request port', async (t) => {
  const table = compileRoutes(
    bundle({
      serviceEntries: [
        svc('reviews', 'default', [port(9080)]),
        se('multi', ['multi.default.svc.cluster.local'], [port(8080), port(8081)], {
          endpoints: [endpoint('10.0.0.9')],
        }),
        se('front', ['front.example.com'], [port(80), port(8081)], { endpoints: [endpoint('10.0.0.8')] }),
      ],
      virtualServices: [
        vs(
          'front',
          ['front.example.com'],
          [
            rule({ match: [match({ uri: prefix('/one') })], route: [dest(REVIEWS)] }),
            rule({
              match: [match({ uri: prefix('/explicit') })],
              route: [dest('multi.default.svc.cluster.local', { port: 8080 })],
            }),
            rule({ route: [dest('multi.default.svc.cluster.local')] }),
          ],
        ),
      ],
    }),
    options(),
  );
  t.equal(target(table.route(req('front.example.com', '/one'))), `outbound|9080||${REVIEWS}`);
  t.equal(
    target(table.route(req('front.example.com', '/explicit'))),
    'outbound|8080||multi.default.svc.cluster.local',
  );
  t.equal(
    target(table.route(req('front.example.com:8081', '/'))),
    'outbound|8081||multi.default.svc.cluster.local',
  );
  t.equal(
    target(table.route(req('front.example.com', '/'))),
    'noCluster outbound|80||multi.default.svc.cluster.local',
    'the request port (80) is not a port of multi',
  );
});

t.test('route fields: name, timeout, retries, mirrors with the port filled in', async (t) => {
  const retries = { attempts: 3, retryOn: '5xx' };
  const table = reviewsTable([
    rule({
      match: [match({ uri: prefix('/t') })],
      route: [dest(REVIEWS, { subset: 'v1' })],
      timeoutMs: 500,
      retries,
      mirrors: [{ destination: { host: REVIEWS, subset: 'v3' }, fraction: 0.5 }],
    }),
    rule({ route: [dest(REVIEWS, { subset: 'v1' })], timeoutMs: 0 }),
  ]);
  const d = table.route(req('reviews', '/t'));
  if (d.kind !== 'forward') {
    t.fail(d.kind);
    return;
  }
  t.equal(d.routeName, 'default/reviews');
  t.equal(d.timeoutMs, 500);
  t.same(d.retries, retries);
  t.same(d.mirrors, [{ destination: { host: REVIEWS, subset: 'v3', port: 9080 }, fraction: 0.5 }]);
  const other = table.route(req('reviews', '/u'));
  t.notOk(other.kind === 'forward' && 'timeoutMs' in other, 'timeout 0 means none');
});

t.test('mirrors resolve to clusters at compile time; unknown ones warn and send nothing', async (t) => {
  const table = reviewsTable([
    rule({
      route: [dest(REVIEWS, { subset: 'v1' }), dest(REVIEWS, { subset: 'v2' })],
      mirrors: [
        { destination: { host: REVIEWS, subset: 'v3' }, fraction: 0.25 },
        { destination: { host: REVIEWS, subset: 'v9' }, fraction: 1 },
        { destination: { host: 'ghost.default.svc.cluster.local' }, fraction: 1 },
        { destination: { host: REVIEWS, subset: 'v2' }, fraction: 0 },
      ],
    }),
  ]);
  const d = table.route(req('reviews', '/'));
  if (d.kind !== 'forward') {
    t.fail(d.kind);
    return;
  }
  t.same(
    d.mirrorClusters.map((m) => [m.cluster.name, m.fraction]),
    [[C('v3'), 0.25]],
    'only the mirror that exists and has a share of traffic',
  );
  t.equal(d.mirrorClusters[0]?.cluster, table.clusters.get(C('v3')), 'the same Cluster object as the table');
  t.same(
    table.warnings,
    [
      `route default/reviews: mirror ${C('v9')} does not exist (no subset v9 for ${REVIEWS}); no copy is sent`,
      'route default/reviews: mirror outbound|9080||ghost.default.svc.cluster.local does not exist ' +
        '(no service ghost.default.svc.cluster.local); no copy is sent',
    ],
    'one warning per missing mirror, although the rule has two destinations',
  );
  const plain = reviewsTable([rule({ route: [dest(REVIEWS)] })]).route(req('reviews', '/'));
  t.same(plain.kind === 'forward' ? plain.mirrorClusters : null, [], 'no mirrors: an empty list');
});

t.test('directResponse with route-level response headers', async (t) => {
  const body = Buffer.from('gone');
  const table = reviewsTable([
    rule({
      directResponse: { status: 410, body },
      headers: {
        response: { set: [['content-type', 'text/plain']], add: [], remove: [] },
        request: { set: [['x-ignored', '1']], add: [], remove: [] },
      },
    }),
  ]);
  t.same(table.route(req('reviews')), {
    kind: 'direct',
    routeName: 'default/reviews',
    responseHeaders: [{ set: [['content-type', 'text/plain']], add: [], remove: [] }],
    status: 410,
    body,
  });
  const empty = reviewsTable([rule({ directResponse: { status: 204 } })]).route(req('reviews'));
  t.equal(empty.kind === 'direct' && empty.body, null);
});
