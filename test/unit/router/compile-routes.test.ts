import t from 'tap';
import { compileRoutes } from '../../../src/router/compile-routes.ts';
import {
  bundle,
  dest,
  dr,
  endpoint,
  match,
  options,
  port,
  prefix,
  req,
  rule,
  se,
  subset,
  svc,
  target,
  vs,
} from './bundle-builder.ts';

const REVIEWS = 'reviews.default.svc.cluster.local';

t.test('registry: endpoint ports, weights and ids', async (t) => {
  const table = compileRoutes(
    bundle({
      serviceEntries: [
        se(
          'reviews',
          [REVIEWS],
          [port(9080, 'http'), port(9443, 'http2', { targetPort: 8443 }), port(7000, 'tcp')],
          {
            endpoints: [
              endpoint('10.0.0.1', { ports: { http: 19080 }, labels: { version: 'v1' } }),
              endpoint('10.0.0.2', { labels: { version: 'v2' }, weight: 3 }),
            ],
          },
        ),
      ],
    }),
    options(),
  );
  const c9080 = table.clusters.get(`outbound|9080||${REVIEWS}`);
  t.same(
    c9080?.endpoints.map((e) => [e.id, e.port, e.weight]),
    [
      ['10.0.0.1:19080', 19080, 1],
      ['10.0.0.2:9080', 9080, 3],
    ],
    'endpoint port map, then the service port',
  );
  t.same(
    table.clusters.get(`outbound|9443||${REVIEWS}`)?.endpoints.map((e) => e.id),
    ['10.0.0.1:8443', '10.0.0.2:8443'],
    'targetPort when the endpoint has no entry for the port name',
  );
  t.same(
    table.clusters.get(`outbound|7000||${REVIEWS}`)?.endpoints.length,
    2,
    'every endpoint backs every port',
  );
  t.equal(c9080?.serviceName, 'reviews');
  t.equal(c9080?.serviceFqdn, REVIEWS);
  t.equal(c9080?.serviceNamespace, 'default');
  t.equal(c9080?.subset, '');
  t.equal(c9080?.port, 9080);
});

t.test('registry: DNS without endpoints and NONE resolve to the host itself', async (t) => {
  const table = compileRoutes(
    bundle({
      serviceEntries: [
        se('google', ['www.google.com'], [port(443, 'https')], {
          resolution: 'DNS',
          location: 'MESH_EXTERNAL',
        }),
        se('dns-ep', ['api.example.org'], [port(80)], {
          resolution: 'DNS',
          endpoints: [endpoint('lb.example.org')],
        }),
        se('none', ['legacy.corp'], [port(8080)], { resolution: 'NONE', namespace: 'ops' }),
      ],
    }),
    options(),
  );
  t.same(table.clusters.get('outbound|443||www.google.com')?.endpoints, [
    { id: 'www.google.com:443', address: 'www.google.com', port: 443, weight: 1, labels: {} },
  ]);
  t.same(table.clusters.get('outbound|80||api.example.org')?.endpoints[0]?.id, 'lb.example.org:80');
  const legacy = table.clusters.get('outbound|8080||legacy.corp');
  t.same(
    legacy?.endpoints.map((e) => e.id),
    ['legacy.corp:8080'],
  );
  t.equal(legacy?.serviceNamespace, 'ops');
  t.equal(target(table.route(req('legacy.corp:8080'))), 'outbound|8080||legacy.corp');
});

t.test('clusters per subset; subset endpoints by labels; empty labels select all', async (t) => {
  const table = compileRoutes(
    bundle({
      serviceEntries: [
        se('reviews', [REVIEWS], [port(9080)], {
          endpoints: [
            endpoint('10.0.0.1', { labels: { app: 'reviews', version: 'v1' } }),
            endpoint('10.0.0.2', { labels: { app: 'reviews', version: 'v2' } }),
          ],
        }),
      ],
      destinationRules: [
        dr('reviews', REVIEWS, [
          subset('v1', { version: 'v1' }),
          subset('v2', { version: 'v2', app: 'reviews' }),
          subset('v3', { version: 'v3' }),
          subset('all', {}),
        ]),
      ],
    }),
    options(),
  );
  const ids = (name: string) => table.clusters.get(name)?.endpoints.map((e) => e.address);
  t.same(ids(`outbound|9080|v1|${REVIEWS}`), ['10.0.0.1']);
  t.same(ids(`outbound|9080|v2|${REVIEWS}`), ['10.0.0.2']);
  t.same(ids(`outbound|9080|v3|${REVIEWS}`), [], 'a subset matching nothing is a cluster with no endpoints');
  t.same(ids(`outbound|9080|all|${REVIEWS}`), ['10.0.0.1', '10.0.0.2']);
  t.equal(table.clusters.get(`outbound|9080|v3|${REVIEWS}`)?.subset, 'v3');
  t.equal(table.clusters.size, 5);
});

t.test('DR selection: exact beats wildcard, most specific wildcard, merge, workloadSelector', async (t) => {
  const lb = (simple: 'RANDOM' | 'ROUND_ROBIN' | 'LEAST_REQUEST' | 'PASSTHROUGH') => ({
    loadBalancer: { simple },
    portLevelSettings: [],
  });
  const table = compileRoutes(
    bundle({
      serviceEntries: [
        se('a', ['a.b.example.com', 'c.b.example.com', 'x.example.com', 'example.com'], [port(80)], {
          endpoints: [endpoint('10.0.0.1', { labels: { v: '1' } })],
        }),
      ],
      destinationRules: [
        dr('wide', '*.example.com', [subset('wide', {})], { trafficPolicy: lb('RANDOM') }),
        dr('narrow', '*.b.example.com', [subset('narrow', {})], { trafficPolicy: lb('ROUND_ROBIN') }),
        dr('exact1', 'a.b.example.com', [subset('s1', { v: '1' })]),
        dr('exact2', 'a.b.example.com', [subset('s1', { v: 'other' }), subset('s2', {})], {
          trafficPolicy: lb('LEAST_REQUEST'),
        }),
        dr('exact3', 'a.b.example.com', [], { trafficPolicy: lb('PASSTHROUGH') }),
        dr('other-workload', 'c.b.example.com', [subset('foreign', {})], {
          workloadSelector: { app: 'ratings' },
        }),
      ],
    }),
    options(),
  );
  const c = (name: string) => table.clusters.get(name);
  t.ok(c('outbound|80|s1|a.b.example.com'), 'merged subsets');
  t.ok(c('outbound|80|s2|a.b.example.com'), 'merged subsets from the second DR');
  t.same(c('outbound|80|s1|a.b.example.com')?.endpoints.length, 1, 'first definition of s1 wins');
  t.same(
    c('outbound|80||a.b.example.com')?.trafficPolicy?.loadBalancer,
    { simple: 'LEAST_REQUEST' },
    'first policy',
  );
  t.notOk(c('outbound|80|narrow|a.b.example.com'), 'exact DR beats wildcard');
  t.ok(c('outbound|80|narrow|c.b.example.com'), 'most specific wildcard');
  t.notOk(c('outbound|80|foreign|c.b.example.com'), 'DR for another workload is ignored');
  t.same(c('outbound|80||c.b.example.com')?.trafficPolicy?.loadBalancer, { simple: 'ROUND_ROBIN' });
  t.ok(c('outbound|80|wide|x.example.com'));
  t.notOk(c('outbound|80|wide|example.com'), '*.example.com does not cover example.com');
  t.equal(c('outbound|80||example.com')?.trafficPolicy, undefined);
});

t.test('DR policy per cluster follows §3.2', async (t) => {
  const pool = (n: number) => ({ tcp: { maxConnections: n } });
  const table = compileRoutes(
    bundle({
      serviceEntries: [svc('reviews', 'default', [port(9080), port(9090)])],
      destinationRules: [
        dr(
          'reviews',
          REVIEWS,
          [
            subset('plain', {}),
            subset(
              'pool',
              {},
              {
                trafficPolicy: {
                  connectionPool: { http: { http1MaxPendingRequests: 1 } },
                  portLevelSettings: [],
                },
              },
            ),
            subset(
              'portlevel',
              {},
              {
                trafficPolicy: {
                  loadBalancer: { simple: 'RANDOM' },
                  portLevelSettings: [{ port: 9080, tls: { mode: 'DISABLE' } }],
                },
              },
            ),
          ],
          {
            trafficPolicy: {
              loadBalancer: { simple: 'ROUND_ROBIN' },
              connectionPool: pool(10),
              outlierDetection: { consecutive5xxErrors: 3 },
              portLevelSettings: [{ port: 9090, connectionPool: pool(99) }],
            },
          },
        ),
      ],
    }),
    options(),
  );
  const policy = (name: string) => table.clusters.get(`${name}|${REVIEWS}`)?.trafficPolicy;
  t.same(policy('outbound|9080|'), {
    loadBalancer: { simple: 'ROUND_ROBIN' },
    connectionPool: pool(10),
    outlierDetection: { consecutive5xxErrors: 3 },
    portLevelSettings: [],
  });
  t.same(
    policy('outbound|9090|'),
    { connectionPool: pool(99), portLevelSettings: [] },
    'port level replaces all four',
  );
  t.same(policy('outbound|9080|plain'), policy('outbound|9080|'), 'subset without policy inherits');
  t.same(
    policy('outbound|9080|pool'),
    {
      loadBalancer: { simple: 'ROUND_ROBIN' },
      connectionPool: { http: { http1MaxPendingRequests: 1 } },
      outlierDetection: { consecutive5xxErrors: 3 },
      portLevelSettings: [],
    },
    'subset connectionPool replaces the whole component (tcp gone)',
  );
  t.same(
    policy('outbound|9080|portlevel'),
    { tls: { mode: 'DISABLE' }, portLevelSettings: [] },
    'subset port-level replaces all four',
  );
  t.same(
    policy('outbound|9090|portlevel'),
    { loadBalancer: { simple: 'RANDOM' }, connectionPool: pool(99), portLevelSettings: [] },
    'subset top-level components over the DR port-level entry',
  );
});

t.test('services without a VirtualService get a default route', async (t) => {
  const table = compileRoutes(
    bundle({ serviceEntries: [svc('reviews', 'default', [port(9080)])] }),
    options(),
  );
  const d = table.route(req('reviews', '/x?y=1'));
  t.equal(d.kind, 'forward');
  if (d.kind !== 'forward') return;
  t.equal(d.cluster.name, `outbound|9080||${REVIEWS}`);
  t.equal(d.routeName, '');
  t.equal(d.path, '/x?y=1');
  t.equal(d.authority, 'reviews');
  t.equal(d.retries, undefined, 'default retry policy');
  t.equal(d.timeoutMs, undefined);
  t.notOk('originalPath' in d);
  t.same(d.requestHeaders, []);
  t.same(d.mirrors, []);
});

t.test('a VS for an unknown destination host or subset yields noCluster', async (t) => {
  const table = compileRoutes(
    bundle({
      serviceEntries: [svc('reviews', 'default', [port(9080)])],
      destinationRules: [dr('reviews', REVIEWS, [subset('v1', { version: 'v1' })])],
      virtualServices: [
        vs(
          'reviews',
          [REVIEWS],
          [
            rule({ match: [{ ...mk('/missing-host') }], route: [dest('nope.default.svc.cluster.local')] }),
            rule({ match: [{ ...mk('/missing-subset') }], route: [dest(REVIEWS, { subset: 'v9' })] }),
            rule({ match: [{ ...mk('/missing-port') }], route: [dest(REVIEWS, { port: 1234 })] }),
            rule({ route: [dest(REVIEWS, { subset: 'v1' })] }),
          ],
        ),
      ],
    }),
    options(),
  );
  const host = table.route(req('reviews', '/missing-host'));
  t.same(host, {
    kind: 'noCluster',
    clusterName: 'outbound|9080||nope.default.svc.cluster.local',
    reason: 'no service nope.default.svc.cluster.local',
    routeName: 'default/reviews',
  });
  t.equal(target(table.route(req('reviews', '/missing-subset'))), `noCluster outbound|9080|v9|${REVIEWS}`);
  t.equal(target(table.route(req('reviews', '/missing-port'))), `noCluster outbound|1234||${REVIEWS}`);
  const ok = table.route(req('reviews', '/'));
  t.equal(target(ok), `outbound|9080|v1|${REVIEWS}`);
  t.equal(
    ok.kind === 'forward' && ok.cluster.endpoints.length,
    0,
    'subset without endpoints: cluster, 0 endpoints',
  );
});

function mk(p: string) {
  return match({ uri: prefix(p) });
}

t.test('registry edge cases: unix sockets, STATIC without endpoints, duplicate hosts', async (t) => {
  const table = compileRoutes(
    bundle({
      serviceEntries: [
        se('uds', ['uds.local'], [port(80)], {
          endpoints: [endpoint('unix:///var/run/app.sock', { weight: 0 })],
        }),
        se('empty', ['empty.local'], [port(80)], { resolution: 'STATIC' }),
        se('dup1', ['dup.local'], [port(80)], { endpoints: [endpoint('10.0.0.1')], namespace: 'first' }),
        se('dup2', ['dup.local'], [port(80), port(81)], {
          endpoints: [endpoint('10.0.0.2')],
          namespace: 'second',
        }),
      ],
    }),
    options(),
  );
  t.same(table.clusters.get('outbound|80||uds.local')?.endpoints, [
    { id: 'unix:///var/run/app.sock', address: 'unix:///var/run/app.sock', port: 0, weight: 1, labels: {} },
  ]);
  t.same(table.clusters.get('outbound|80||empty.local')?.endpoints, []);
  t.same(
    table.clusters.get('outbound|80||dup.local')?.endpoints.map((e) => e.address),
    ['10.0.0.1'],
    'first wins',
  );
  t.same(
    table.clusters.get('outbound|81||dup.local')?.endpoints.map((e) => e.address),
    ['10.0.0.2'],
    'ports merge',
  );
  t.equal(table.clusters.get('outbound|81||dup.local')?.serviceNamespace, 'first');
});

t.test('hosts are expanded with the namespace of the referencing resource (pitfall 11)', async (t) => {
  // `reviews` written in a VS of namespace `prod` is `reviews.prod.svc.cluster.local`: it does not
  // touch the `default` reviews service.
  const table = compileRoutes(
    bundle({
      serviceEntries: [svc('reviews', 'default', [port(9080)]), svc('reviews', 'prod', [port(9080)])],
      virtualServices: [
        vs('reviews', ['reviews.prod.svc.cluster.local'], [rule({ directResponse: { status: 418 } })], {
          namespace: 'prod',
        }),
      ],
    }),
    options(),
  );
  t.equal(target(table.route(req('reviews'))), `outbound|9080||${REVIEWS}`);
  t.equal(target(table.route(req('reviews.prod'))), 'direct 418');
});

t.test(
  'clusters carry what mTLS origination needs: location, subjectAltNames, service accounts',
  async (t) => {
    const table = compileRoutes(
      bundle({
        serviceEntries: [
          se('internal', [REVIEWS], [port(9080)], {
            location: 'MESH_INTERNAL',
            subjectAltNames: ['spiffe://cluster.local/ns/default/sa/reviews'],
            endpoints: [endpoint('10.0.0.1', { serviceAccount: 'reviews' }), endpoint('10.0.0.2')],
          }),
          se('external', ['api.example.com'], [port(443)], {
            location: 'MESH_EXTERNAL',
            resolution: 'DNS',
          }),
          // A second entry for the same host: the first entry's identity settings stay.
          se('later', [REVIEWS], [port(9081)], {
            location: 'MESH_EXTERNAL',
            subjectAltNames: ['spiffe://other/ns/x/sa/y'],
            endpoints: [endpoint('10.0.0.3')],
          }),
        ],
        destinationRules: [dr('reviews', REVIEWS, [subset('v1', { version: 'v1' })])],
      }),
      options(),
    );
    const c = table.clusters.get(`outbound|9080||${REVIEWS}`);
    t.equal(c?.location, 'MESH_INTERNAL');
    t.same(c?.subjectAltNames, ['spiffe://cluster.local/ns/default/sa/reviews']);
    t.same(
      c?.endpoints.map((e) => e.serviceAccount),
      ['reviews', undefined],
      'the WorkloadEntry service account, absent when not given',
    );
    t.notOk('serviceAccount' in (c?.endpoints[1] ?? {}), 'no key at all without one');
    const sub = table.clusters.get(`outbound|9080|v1|${REVIEWS}`);
    t.equal(sub?.location, 'MESH_INTERNAL', 'subset clusters too');
    t.same(sub?.subjectAltNames, ['spiffe://cluster.local/ns/default/sa/reviews']);
    t.equal(table.clusters.get(`outbound|9081||${REVIEWS}`)?.location, 'MESH_INTERNAL', 'first entry wins');
    const ext = table.clusters.get('outbound|443||api.example.com');
    t.equal(ext?.location, 'MESH_EXTERNAL');
    t.equal(ext?.subjectAltNames, undefined, 'no SAN list when the entry has none');
  },
);
