import t from 'tap';
import type { HeaderEdits, HeaderOps, HTTPRewrite } from '../../../src/config/resource-types.ts';
import { compileRoutes } from '../../../src/router/compile-routes.ts';
import { applyHeaderOps, planHeaderEdits } from '../../../src/router/header-edits.ts';
import type { RouteDecision } from '../../../src/router/route-types.ts';
import { bundle, dest, dr, endpoint, options, port, req, rule, se, subset, vs } from './bundle-builder.ts';

const REVIEWS = 'reviews.default.svc.cluster.local';

const ops = (o: Partial<HeaderOps>): HeaderOps => ({ set: [], add: [], remove: [], ...o });

t.test('applyHeaderOps: remove, then set (replace all values), then add; input untouched', async (t) => {
  const input = ['a', '1', 'b', '2', 'a', '3', 'c', '4'];
  const out = applyHeaderOps(input, [
    ops({
      remove: ['c'],
      set: [
        ['a', 'x'],
        ['d', 'new'],
      ],
      add: [['b', '5']],
    }),
    ops({ set: [['b', 'y']] }),
  ]);
  t.same(out, ['a', 'x', 'b', 'y', 'd', 'new']);
  t.same(input, ['a', '1', 'b', '2', 'a', '3', 'c', '4']);
  t.same(applyHeaderOps(['a', '1'], [ops({ remove: ['a'], set: [['a', '2']], add: [['a', '3']] })]), [
    'a',
    '2',
    'a',
    '3',
  ]);
  t.same(applyHeaderOps(['a', '1'], []), ['a', '1']);
});

t.test(
  'planHeaderEdits: single destination is route then destination; weighted is the reverse',
  async (t) => {
    const route: HeaderEdits = {
      request: ops({ set: [['x', 'route']] }),
      response: ops({ set: [['y', 'route']] }),
    };
    const destination: HeaderEdits = {
      request: ops({ set: [['x', 'dest']] }),
      response: ops({ set: [['y', 'dest']] }),
    };
    const single = planHeaderEdits(route, destination, undefined, false);
    t.same(applyHeaderOps([], single.request), ['x', 'dest'], 'destination set overrides route set');
    t.same(applyHeaderOps([], single.response), ['y', 'dest']);
    const weighted = planHeaderEdits(route, destination, undefined, true);
    t.same(applyHeaderOps([], weighted.request), ['x', 'route'], 'route level wins for weighted');
    t.same(applyHeaderOps([], weighted.response), ['y', 'route']);
    t.same(planHeaderEdits(undefined, undefined, undefined, false), {
      request: [],
      response: [],
      authority: undefined,
    });
  },
);

t.test('host and :authority edits become an authority rewrite; pseudo-headers are skipped', async (t) => {
  const plan = (route?: HeaderEdits, d?: HeaderEdits, rewrite?: HTTPRewrite) =>
    planHeaderEdits(route, d, rewrite, false);
  const addThenSet: HeaderEdits = {
    request: ops({
      add: [['host', 'added']],
      set: [
        [':authority', 'set'],
        [':path', '/x'],
        ['x', '1'],
      ],
      remove: ['host', ':method'],
    }),
  };
  const p = plan(addThenSet);
  t.equal(p.authority, 'set', 'set wins over add');
  t.same(p.request, [ops({ set: [['x', '1']] })], 'host and pseudo-headers removed from the ops');
  t.equal(plan({ request: ops({ add: [['host', 'added']] }) }).authority, 'added');
  t.equal(
    plan(addThenSet, undefined, { authority: 'rewritten' }).authority,
    'rewritten',
    'rewrite.authority wins',
  );
  t.equal(
    plan(undefined, { request: ops({ set: [['host', 'dest']] }) }).authority,
    'dest',
    'destination level',
  );
  t.equal(
    plan(addThenSet, { request: ops({ set: [['host', 'dest']] }) }).authority,
    'set',
    'route level first',
  );
  t.same(
    plan({ response: ops({ set: [['host', 'h']] }) }).response,
    [],
    'response host edits are skipped too',
  );
  t.equal(plan({ response: ops({ set: [['host', 'h']] }) }).authority, undefined);
});

function forward(d: RouteDecision) {
  if (d.kind !== 'forward') throw new Error(`expected forward, got ${d.kind}`);
  return d;
}

t.test('end to end: ordering and authority in forward decisions', async (t) => {
  const routeEdits: HeaderEdits = {
    request: ops({ set: [['x-who', 'route']], add: [['x-route', '1']] }),
    response: ops({ remove: ['server'] }),
  };
  const destEdits = (v: string): HeaderEdits => ({
    request: ops({
      set: [
        ['x-who', v],
        ['host', `${v}.internal`],
      ],
    }),
    response: ops({ add: [['x-dest', v]] }),
  });
  const table = compileRoutes(
    bundle({
      serviceEntries: [
        se('reviews', [REVIEWS], [port(9080)], {
          endpoints: [
            endpoint('10.0.0.1', { labels: { version: 'v1' } }),
            endpoint('10.0.0.2', { labels: { version: 'v2' } }),
          ],
        }),
        se('w', ['weighted.example.com'], [port(80)], { endpoints: [endpoint('10.0.0.5')] }),
      ],
      destinationRules: [
        dr('reviews', REVIEWS, [subset('v1', { version: 'v1' }), subset('v2', { version: 'v2' })]),
      ],
      virtualServices: [
        vs(
          'single',
          [REVIEWS],
          [
            rule({
              headers: routeEdits,
              route: [{ ...dest(REVIEWS, { subset: 'v1' }), headers: destEdits('v1') }],
            }),
          ],
        ),
        vs(
          'weighted',
          ['weighted.example.com'],
          [
            rule({
              headers: routeEdits,
              route: [
                { ...dest(REVIEWS, { subset: 'v1' }, 50), headers: destEdits('v1') },
                { ...dest(REVIEWS, { subset: 'v2' }, 50), headers: destEdits('v2') },
              ],
            }),
          ],
        ),
      ],
    }),
    options({ random: () => 0.75 }),
  );
  const single = forward(table.route(req('reviews', '/', { headers: ['x-who', 'client'] })));
  t.same(applyHeaderOps(['x-who', 'client'], single.requestHeaders), ['x-who', 'v1', 'x-route', '1']);
  t.equal(single.authority, 'v1.internal', 'destination authority applies when the route set none');
  t.same(single.responseHeaders, [ops({ remove: ['server'] }), ops({ add: [['x-dest', 'v1']] })]);

  const weighted = forward(table.route(req('weighted.example.com')));
  t.equal(weighted.cluster.subset, 'v2');
  t.same(applyHeaderOps([], weighted.requestHeaders), ['x-who', 'route', 'x-route', '1']);
  t.same(weighted.responseHeaders, [ops({ add: [['x-dest', 'v2']] }), ops({ remove: ['server'] })]);
  t.equal(weighted.authority, 'v2.internal');
});
