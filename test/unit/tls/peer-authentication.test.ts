import t from 'tap';
import type {
  PeerAuthenticationMode,
  PeerAuthenticationSpec,
  Resource,
} from '../../../src/config/resource-types.ts';
import { compilePeerAuthentication, peerAuthenticationMode } from '../../../src/tls/peer-authentication.ts';
import type { WorkloadSelectorInput } from '../../../src/tls/policy-types.ts';

const ROOT = 'istio-system';

let nextOrder = 0;

/** A PeerAuthentication as the loader emits it; `order` defaults to load order of creation. */
function pa(
  name: string,
  namespace: string,
  spec: {
    selector?: Record<string, string>;
    mode?: PeerAuthenticationMode;
    ports?: Array<[number, PeerAuthenticationMode]>;
  } = {},
  order = nextOrder++,
): Resource<PeerAuthenticationSpec> {
  const { ports = [], ...rest } = spec;
  return {
    meta: { name, namespace, annotations: {}, pos: { file: 'test.yaml', line: 1, col: 1 }, order },
    spec: { ...rest, portLevelMtls: new Map(ports) },
  };
}

const reviews: WorkloadSelectorInput = { namespace: 'default', labels: { app: 'reviews', version: 'v1' } };
const mode = (policies: Resource<PeerAuthenticationSpec>[], port = 9080, w = reviews) =>
  peerAuthenticationMode(policies, w, port, ROOT);

t.test('no policy at all is PERMISSIVE', async (t) => {
  t.equal(mode([]), 'PERMISSIVE');
  t.equal(mode([pa('other', 'other-ns', { mode: 'STRICT' })]), 'PERMISSIVE', "another namespace's policy");
});

t.test('mesh level: a root-namespace policy without a selector applies everywhere', async (t) => {
  t.equal(mode([pa('mesh', ROOT, { mode: 'STRICT' })]), 'STRICT');
  t.equal(mode([pa('mesh', ROOT, { mode: 'DISABLE' })]), 'DISABLE');
  t.equal(mode([pa('mesh', ROOT, { mode: 'UNSET' })]), 'PERMISSIVE', 'UNSET inherits the default');
  t.equal(mode([pa('mesh', ROOT, {})]), 'PERMISSIVE', 'no mtls block is UNSET');
});

t.test('namespace level overrides the mesh, UNSET inherits it', async (t) => {
  const mesh = pa('mesh', ROOT, { mode: 'STRICT' });
  t.equal(mode([mesh, pa('ns', 'default', { mode: 'PERMISSIVE' })]), 'PERMISSIVE');
  t.equal(mode([mesh, pa('ns', 'default', { mode: 'DISABLE' })]), 'DISABLE');
  t.equal(mode([mesh, pa('ns', 'default', { mode: 'UNSET' })]), 'STRICT');
  t.equal(mode([mesh, pa('ns', 'default', {})]), 'STRICT');
  t.equal(mode([pa('ns', 'default', { mode: 'STRICT' })]), 'STRICT', 'without a mesh policy');
  t.equal(mode([mesh, pa('ns', 'other', { mode: 'DISABLE' })]), 'STRICT', 'another namespace does not apply');
});

t.test('workload level overrides namespace and mesh, UNSET inherits', async (t) => {
  const mesh = pa('mesh', ROOT, { mode: 'DISABLE' });
  const ns = pa('ns', 'default', { mode: 'PERMISSIVE' });
  t.equal(mode([mesh, ns, pa('wl', 'default', { selector: { app: 'reviews' }, mode: 'STRICT' })]), 'STRICT');
  t.equal(
    mode([mesh, ns, pa('wl', 'default', { selector: { app: 'reviews' }, mode: 'UNSET' })]),
    'PERMISSIVE',
  );
  t.equal(
    mode([mesh, pa('wl', 'default', { selector: { app: 'reviews' } })]),
    'DISABLE',
    'inherits the mesh',
  );
  t.equal(
    mode([mesh, ns, pa('wl', 'default', { selector: { app: 'ratings' }, mode: 'STRICT' })]),
    'PERMISSIVE',
    'a selector that does not match the labels',
  );
  t.equal(
    mode([pa('wl', 'default', { selector: { app: 'reviews', version: 'v2' }, mode: 'STRICT' })]),
    'PERMISSIVE',
    'every selector label must match',
  );
  t.equal(
    mode([pa('wl', 'default', { selector: { app: 'reviews', version: 'v1' }, mode: 'STRICT' })]),
    'STRICT',
    'selector ⊆ labels',
  );
  t.equal(
    mode([pa('wl', 'other', { selector: { app: 'reviews' }, mode: 'STRICT' })]),
    'PERMISSIVE',
    'a selector policy of another namespace',
  );
});

t.test('an empty selector selects like no selector (namespace level)', async (t) => {
  const mesh = pa('mesh', ROOT, { mode: 'STRICT' });
  t.equal(mode([mesh, pa('ns', 'default', { selector: {}, mode: 'DISABLE' })]), 'DISABLE');
  // It is the namespace policy, so a real workload policy still overrides it.
  t.equal(
    mode([
      pa('ns', 'default', { selector: {}, mode: 'DISABLE' }),
      pa('wl', 'default', { selector: { app: 'reviews' }, mode: 'STRICT' }),
    ]),
    'STRICT',
  );
  t.equal(mode([pa('mesh', ROOT, { selector: {}, mode: 'STRICT' })]), 'STRICT', 'in the root: mesh level');
});

t.test('selector policies in the root namespace are ignored', async (t) => {
  t.equal(mode([pa('root-wl', ROOT, { selector: { app: 'reviews' }, mode: 'STRICT' })]), 'PERMISSIVE');
  t.equal(
    mode([
      pa('mesh', ROOT, { mode: 'DISABLE' }),
      pa('root-wl', ROOT, { selector: { app: 'reviews' }, mode: 'STRICT', ports: [[9080, 'STRICT']] }),
    ]),
    'DISABLE',
    'neither its mode nor its port-level entries',
  );
  // A workload that lives in the root namespace gets only the mesh-level policy.
  const inRoot: WorkloadSelectorInput = { namespace: ROOT, labels: { app: 'gw' } };
  t.equal(
    mode(
      [pa('mesh', ROOT, { mode: 'STRICT' }), pa('wl', ROOT, { selector: { app: 'gw' }, mode: 'DISABLE' })],
      80,
      inRoot,
    ),
    'STRICT',
  );
});

t.test('portLevelMtls of the workload policy, keyed by the workload port', async (t) => {
  const policies = [
    pa('mesh', ROOT, { mode: 'STRICT' }),
    pa('wl', 'default', {
      selector: { app: 'reviews' },
      ports: [
        [8080, 'DISABLE'],
        [8081, 'PERMISSIVE'],
        [8082, 'UNSET'],
      ],
    }),
  ];
  t.equal(mode(policies, 8080), 'DISABLE');
  t.equal(mode(policies, 8081), 'PERMISSIVE');
  t.equal(mode(policies, 8082), 'STRICT', 'UNSET on a port inherits the workload mode');
  t.equal(mode(policies, 9080), 'STRICT', 'a port without an entry gets the workload mode');

  const withMode = [
    pa('ns', 'default', { mode: 'DISABLE' }),
    pa('wl', 'default', { selector: { app: 'reviews' }, mode: 'PERMISSIVE', ports: [[8080, 'STRICT']] }),
  ];
  t.equal(mode(withMode, 8080), 'STRICT');
  t.equal(mode(withMode, 8443), 'PERMISSIVE');
});

t.test('port-level entries on a namespace-wide policy are not used', async (t) => {
  // Validation rejects portLevelMtls without a selector; if one slips through, it has no effect.
  const policies = [pa('ns', 'default', { mode: 'PERMISSIVE', ports: [[8080, 'STRICT']] })];
  t.equal(mode(policies, 8080), 'PERMISSIVE');
});

t.test('at the same level the oldest (first in load order) wins', async (t) => {
  const first = pa('b-first', 'default', { mode: 'STRICT' }, 1);
  const second = pa('a-second', 'default', { mode: 'DISABLE' }, 2);
  t.equal(mode([first, second]), 'STRICT');
  t.equal(mode([second, first]), 'STRICT', 'by meta.order, not by array position');

  const meshOld = pa('mesh-old', ROOT, { mode: 'DISABLE' }, 3);
  const meshNew = pa('mesh-new', ROOT, { mode: 'STRICT' }, 4);
  t.equal(mode([meshNew, meshOld]), 'DISABLE');

  const wlOld = pa('wl-old', 'default', { selector: { app: 'reviews' }, ports: [[8080, 'DISABLE']] }, 5);
  const wlNew = pa(
    'wl-new',
    'default',
    { selector: { version: 'v1' }, mode: 'STRICT', ports: [[8081, 'STRICT']] },
    6,
  );
  t.equal(mode([wlNew, wlOld], 8080), 'DISABLE', 'the oldest workload policy');
  t.equal(mode([wlNew, wlOld], 8081), 'PERMISSIVE', "the newer one's port entries are not merged in");
  t.equal(mode([wlNew, wlOld], 9080), 'PERMISSIVE', 'nor its mode');

  // An older UNSET policy still wins its level; it then inherits rather than deferring to a newer one.
  const unsetOld = pa('unset-old', 'default', { mode: 'UNSET' }, 7);
  const strictNew = pa('strict-new', 'default', { mode: 'STRICT' }, 8);
  t.equal(mode([strictNew, unsetOld, pa('mesh', ROOT, { mode: 'DISABLE' }, 9)]), 'DISABLE');
});

t.test('compilePeerAuthentication answers every port from one compilation', async (t) => {
  const policies = [
    pa('mesh', ROOT, { mode: 'STRICT' }),
    pa('wl', 'default', { selector: { app: 'reviews' }, ports: [[15090, 'DISABLE']] }),
  ];
  const modeOf = compilePeerAuthentication(policies, reviews, ROOT);
  t.equal(modeOf(9080), 'STRICT');
  t.equal(modeOf(15090), 'DISABLE');
  t.equal(modeOf(1), 'STRICT');
  const noPolicy = compilePeerAuthentication([], reviews, ROOT);
  t.equal(noPolicy(9080), 'PERMISSIVE');
  // A port entry equal to the resolved mode changes nothing.
  const same = compilePeerAuthentication(
    [pa('wl', 'default', { selector: { app: 'reviews' }, mode: 'STRICT', ports: [[8080, 'STRICT']] })],
    reviews,
    ROOT,
  );
  t.equal(same(8080), 'STRICT');
  t.equal(same(8081), 'STRICT');
});

t.test('a custom root namespace', async (t) => {
  const policies = [pa('mesh', 'mesh-root', { mode: 'STRICT' }), pa('x', ROOT, { mode: 'DISABLE' })];
  t.equal(peerAuthenticationMode(policies, reviews, 9080, 'mesh-root'), 'STRICT');
  // istio-system is an ordinary namespace then: its policy does not reach `default`.
  t.equal(
    peerAuthenticationMode([pa('x', ROOT, { mode: 'DISABLE' })], reviews, 9080, 'mesh-root'),
    'PERMISSIVE',
  );
});
