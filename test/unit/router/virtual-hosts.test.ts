import t from 'tap';
import { compileRoutes } from '../../../src/router/compile-routes.ts';
import { bundle, dest, endpoint, options, port, req, rule, se, svc, target, vs } from './bundle-builder.ts';

const REVIEWS = 'reviews.default.svc.cluster.local';
const RATINGS = 'ratings.prod.svc.cluster.local';

t.test('short-name candidates: own namespace vs another namespace', async (t) => {
  const table = compileRoutes(
    bundle({
      serviceEntries: [svc('reviews', 'default', [port(9080)]), svc('ratings', 'prod', [port(9080)])],
    }),
    options({ outboundTrafficPolicy: 'REGISTRY_ONLY' }),
  );
  for (const host of [REVIEWS, 'reviews', 'reviews.default', 'reviews.default.svc']) {
    t.equal(target(table.route(req(host))), `outbound|9080||${REVIEWS}`, host);
  }
  for (const host of [RATINGS, 'ratings.prod', 'ratings.prod.svc']) {
    t.equal(target(table.route(req(host))), `outbound|9080||${RATINGS}`, host);
  }
  t.equal(target(table.route(req('ratings'))), 'noRoute 502', 'no bare short name for another namespace');
  t.equal(target(table.route(req('reviews.default.svc.cluster'))), 'noRoute 502');
});

t.test('host selection is case-insensitive and ignores the port; addresses are domains', async (t) => {
  const table = compileRoutes(
    bundle({
      serviceEntries: [
        se('reviews', [REVIEWS], [port(9080)], {
          addresses: ['240.0.0.10', '10.1.0.0/16', '2001:db8::10'],
          endpoints: [endpoint('10.0.0.1')],
        }),
      ],
    }),
    options(),
  );
  t.equal(target(table.route(req('ReViEwS:9080'))), `outbound|9080||${REVIEWS}`);
  t.equal(target(table.route(req('REVIEWS.DEFAULT.SVC.CLUSTER.LOCAL'))), `outbound|9080||${REVIEWS}`);
  t.equal(target(table.route(req('240.0.0.10:9080'))), `outbound|9080||${REVIEWS}`);
  t.equal(target(table.route(req('[2001:db8::10]:9080'))), `outbound|9080||${REVIEWS}`);
  t.equal(
    target(table.route(req('10.1.2.3:9080'))),
    'passthrough 10.1.2.3:9080',
    'CIDRs are not Host domains',
  );
});

t.test('request port: authority port, else the only service port, else 80', async (t) => {
  const table = compileRoutes(
    bundle({
      serviceEntries: [
        svc('reviews', 'default', [port(9080)]),
        se('multi', ['multi.example.com'], [port(80), port(8080)], { endpoints: [endpoint('10.0.0.2')] }),
        se('multi2', ['nodefault.example.com'], [port(8080), port(8443)], {
          endpoints: [endpoint('10.0.0.3')],
        }),
      ],
    }),
    options(),
  );
  t.equal(target(table.route(req('reviews'))), `outbound|9080||${REVIEWS}`);
  t.equal(target(table.route(req('multi.example.com'))), 'outbound|80||multi.example.com');
  t.equal(target(table.route(req('multi.example.com:8080'))), 'outbound|8080||multi.example.com');
  t.equal(
    target(table.route(req('reviews:7777'))),
    'passthrough reviews:7777',
    'a known host on a port it does not serve is outside the registry',
  );
  t.equal(target(table.route(req('nodefault.example.com'))), 'passthrough nodefault.example.com:80');
});

t.test('unknown host under ALLOW_ANY and REGISTRY_ONLY', async (t) => {
  const b = bundle({ serviceEntries: [svc('reviews', 'default', [port(9080)])] });
  const allow = compileRoutes(b, options({ outboundTrafficPolicy: 'ALLOW_ANY' }));
  t.same(allow.route(req('Example.ORG:8443')), { kind: 'passthrough', host: 'example.org', port: 8443 });
  t.same(allow.route(req('example.org')), { kind: 'passthrough', host: 'example.org', port: 80 });
  const only = compileRoutes(b, options({ outboundTrafficPolicy: 'REGISTRY_ONLY' }));
  t.same(only.route(req('example.org:8443')), {
    kind: 'noRoute',
    status: 502,
    reason: 'unknown host under REGISTRY_ONLY',
    serviceFqdn: 'example.org',
    serviceName: 'BlackHoleCluster',
  });
});

t.test('wildcard ServiceEntry hosts: *.example.com covers a.b.example.com, not example.com', async (t) => {
  const table = compileRoutes(
    bundle({
      serviceEntries: [
        se('wild', ['*.example.com'], [port(80)], { resolution: 'DNS', endpoints: [endpoint('proxy.corp')] }),
        se('wild-narrow', ['*.api.example.com'], [port(80)], {
          resolution: 'DNS',
          endpoints: [endpoint('api-proxy.corp')],
        }),
        se('exact', ['www.api.example.com'], [port(80)], { endpoints: [endpoint('10.9.9.9')] }),
        se('none', ['*.passthrough.io'], [port(443, 'https')], { resolution: 'NONE' }),
      ],
    }),
    options({ outboundTrafficPolicy: 'REGISTRY_ONLY' }),
  );
  t.equal(target(table.route(req('a.example.com'))), 'outbound|80||*.example.com');
  t.equal(target(table.route(req('a.b.example.com'))), 'outbound|80||*.example.com');
  t.equal(target(table.route(req('example.com'))), 'noRoute 502');
  t.equal(
    target(table.route(req('v1.api.example.com'))),
    'outbound|80||*.api.example.com',
    'longest suffix wins',
  );
  t.equal(target(table.route(req('www.api.example.com'))), 'outbound|80||www.api.example.com', 'exact wins');
  t.same(
    table.route(req('s3.passthrough.io:443')),
    { kind: 'passthrough', host: 's3.passthrough.io', port: 443 },
    'a wildcard NONE service passes through to the requested host',
  );
});

t.test(
  'wildcard VirtualService hosts apply to the services they cover unless a more specific VS does',
  async (t) => {
    const table = compileRoutes(
      bundle({
        serviceEntries: [
          se('a', ['a.example.com'], [port(8080)], { endpoints: [endpoint('10.0.0.1')] }),
          se('b', ['b.example.com'], [port(8080)], { endpoints: [endpoint('10.0.0.2')] }),
          se('deep', ['x.y.example.com'], [port(8080)], { endpoints: [endpoint('10.0.0.3')] }),
          se('top', ['example.com'], [port(8080)], { endpoints: [endpoint('10.0.0.4')] }),
        ],
        virtualServices: [
          vs('wild', ['*.example.com'], [rule({ route: [dest('a.example.com')] })]),
          vs('b', ['b.example.com'], [rule({ route: [dest('b.example.com')] })]),
        ],
      }),
      options(),
    );
    const a = table.route(req('a.example.com'));
    t.equal(target(a), 'outbound|8080||a.example.com');
    t.equal(a.kind === 'forward' && a.routeName, 'default/wild');
    t.equal(
      target(table.route(req('x.y.example.com'))),
      'outbound|8080||a.example.com',
      'covers deeper names',
    );
    t.equal(target(table.route(req('b.example.com'))), 'outbound|8080||b.example.com', 'more specific VS');
    t.equal(
      target(table.route(req('example.com'))),
      'outbound|8080||example.com',
      'not covered: default route',
    );
    t.equal(
      target(table.route(req('other.example.com'))),
      'outbound|8080||a.example.com',
      'the wildcard VS host itself serves port 80 traffic',
    );
    t.equal(target(table.route(req('other.example.com:8081'))), 'passthrough other.example.com:8081');
  },
);

t.test('VS host without a service: its rules on port 80 only', async (t) => {
  const table = compileRoutes(
    bundle({
      serviceEntries: [svc('reviews', 'default', [port(9080)])],
      virtualServices: [vs('alias', ['fake.internal'], [rule({ route: [dest(REVIEWS)] })])],
    }),
    options(),
  );
  t.equal(target(table.route(req('fake.internal'))), `outbound|9080||${REVIEWS}`);
  t.equal(target(table.route(req('fake.internal:80'))), `outbound|9080||${REVIEWS}`);
  t.equal(target(table.route(req('fake.internal:9080'))), 'passthrough fake.internal:9080');
});

t.test('VS gateways without mesh are skipped; several VS for one host: first wins', async (t) => {
  const table = compileRoutes(
    bundle({
      serviceEntries: [svc('reviews', 'default', [port(9080)]), svc('ratings', 'default', [port(9080)])],
      virtualServices: [
        vs('gw-only', [REVIEWS], [rule({ route: [dest('ratings.default.svc.cluster.local')] })], {
          gateways: ['istio-system/ingress'],
        }),
        vs('first', [REVIEWS], [rule({ directResponse: { status: 201 } })], {
          gateways: ['ingress', 'mesh'],
        }),
        vs('second', [REVIEWS], [rule({ directResponse: { status: 202 } })]),
      ],
    }),
    options(),
  );
  t.equal(target(table.route(req('reviews'))), 'direct 201');
});

t.test('load order is meta.order, not array order', async (t) => {
  const first = vs('first', [REVIEWS], [rule({ directResponse: { status: 201 } })]);
  const second = vs('second', [REVIEWS], [rule({ directResponse: { status: 202 } })]);
  const table = compileRoutes(
    bundle({ serviceEntries: [svc('reviews', 'default', [port(9080)])], virtualServices: [second, first] }),
    options(),
  );
  t.equal(target(table.route(req('reviews'))), 'direct 201');
});
