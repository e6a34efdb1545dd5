import t from 'tap';
import { parseConfigText } from '../../../src/config/load-config.ts';
import type { ConfigBundle, PeerAuthenticationSpec } from '../../../src/config/resource-types.ts';

function load(docs: string, proxy = ''): ConfigBundle {
  return parseConfigText([{ name: 'pa.yaml', text: proxy === '' ? docs : `${proxy}\n---\n${docs}` }], {});
}

const pa = (spec: string, meta = '{name: pa, namespace: foo}'): string =>
  `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: ${meta}
${spec}`;

const msgs = (b: ConfigBundle, severity = 'error') =>
  b.issues
    .filter((i) => i.severity === severity)
    .map((e) => `${e.path.replace(/^PeerAuthentication \S+: /, '')} | ${e.message}`);

/** The spec with the port map as pairs, for t.same. */
const plain = (s: PeerAuthenticationSpec | undefined) =>
  s === undefined ? undefined : { ...s, portLevelMtls: [...s.portLevelMtls] };

t.test('modes, and absent mtls or mode is UNSET', async (t) => {
  for (const mode of ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT']) {
    const b = load(pa(`spec: {mtls: {mode: ${mode}}}`));
    t.same(b.issues, [], mode);
    t.same(plain(b.peerAuthentications[0]?.spec), { mode, portLevelMtls: [] });
  }
  for (const spec of ['spec: {}', 'spec: {mtls: {}}', 'spec: {mtls: ~}', 'spec: {mtls: {mode: ~}}', '']) {
    const b = load(pa(spec));
    t.same(b.issues, [], JSON.stringify(spec));
    t.same(plain(b.peerAuthentications[0]?.spec), { mode: 'UNSET', portLevelMtls: [] }, JSON.stringify(spec));
  }
  const bad = load(pa('spec: {mtls: {mode: strict}}'));
  t.same(msgs(bad), [
    'spec.mtls.mode | invalid value "strict"; expected one of UNSET, DISABLE, PERMISSIVE, STRICT',
  ]);
  t.equal(bad.peerAuthentications.length, 0, 'an invalid policy is not kept');
});

t.test('both apiVersions load; metadata namespace and order are kept for precedence', async (t) => {
  const b = load(
    `${pa('spec: {mtls: {mode: STRICT}}')}\n---\n${pa('spec: {mtls: {mode: DISABLE}}', '{name: other}').replace('security.istio.io/v1', 'security.istio.io/v1beta1')}`,
  );
  t.same(b.issues, []);
  t.same(
    b.peerAuthentications.map((r) => [r.meta.namespace, r.meta.name, r.meta.order, r.spec.mode]),
    [
      ['foo', 'pa', 0, 'STRICT'],
      ['default', 'other', 1, 'DISABLE'],
    ],
  );
});

t.test('selector: matchLabels kept; an empty selector is namespace-wide (no selector)', async (t) => {
  const b = load(pa('spec:\n  selector: {matchLabels: {app: reviews, version: v1}}\n  mtls: {mode: STRICT}'));
  t.same(b.issues, []);
  t.same(b.peerAuthentications[0]?.spec.selector, { app: 'reviews', version: 'v1' });
  for (const sel of ['{}', '{matchLabels: {}}', '{matchLabels: ~}']) {
    const e = load(pa(`spec:\n  selector: ${sel}\n  mtls: {mode: STRICT}`));
    t.same(msgs(e), [], sel);
    t.equal(msgs(e, 'warning').length, 1, `${sel} warns that it selects every workload`);
    t.notOk(e.peerAuthentications[0]?.spec.selector !== undefined, `${sel} is returned as no selector`);
    t.equal(e.peerAuthentications[0]?.spec.mode, 'STRICT');
  }
});

t.test('selector labels are checked like Istio (no empty key, no wildcard, label syntax)', async (t) => {
  const b = load(
    pa(
      'spec:\n  selector:\n    matchLabels: {"": x, app: "rev*", "a*": b, "-bad": c, "x/y/z": d, ok: "has space", n: 1}',
    ),
  );
  t.same(msgs(b), [
    'spec.selector.matchLabels[""] | invalid selector label "": empty key',
    'spec.selector.matchLabels.app | invalid selector value "rev*" for "app": wildcards are not supported',
    'spec.selector.matchLabels["a*"] | invalid selector label "a*": wildcards are not supported',
    'spec.selector.matchLabels["-bad"] | invalid selector label "-bad": the name must be at most 63 letters, digits, "-", "_" or "." and start and end with a letter or digit',
    'spec.selector.matchLabels["x/y/z"] | invalid selector label "x/y/z": the name must be at most 63 letters, digits, "-", "_" or "." and start and end with a letter or digit',
    'spec.selector.matchLabels.ok | invalid selector value "has space" for "ok": a label value is at most 63 letters, digits, "-", "_" or "." starting and ending with a letter or digit',
    'spec.selector.matchLabels.n | expected string, got number',
  ]);
  t.equal(b.peerAuthentications.length, 0);
  const prefixed = load(pa('spec:\n  selector: {matchLabels: {"app.kubernetes.io/name": web, empty: ""}}'));
  t.same(prefixed.issues, []);
  t.same(prefixed.peerAuthentications[0]?.spec.selector, { 'app.kubernetes.io/name': 'web', empty: '' });
  const badPrefix = load(pa('spec:\n  selector: {matchLabels: {"Bad_Prefix/name": x}}'));
  t.same(msgs(badPrefix), [
    'spec.selector.matchLabels["Bad_Prefix/name"] | invalid selector label "Bad_Prefix/name": the prefix before "/" must be a DNS subdomain',
  ]);
});

t.test('portLevelMtls: int or string keys, UNSET entries, only with a selector', async (t) => {
  const b = load(
    pa(`spec:
  selector: {matchLabels: {app: a}}
  portLevelMtls:
    9090: {mode: PERMISSIVE}
    "8080": {mode: DISABLE}
    7070: {}
    6060: {mode: STRICT}`),
  );
  t.same(b.issues, []);
  t.same(plain(b.peerAuthentications[0]?.spec), {
    selector: { app: 'a' },
    mode: 'UNSET',
    portLevelMtls: [
      [9090, 'PERMISSIVE'],
      [8080, 'DISABLE'],
      [7070, 'UNSET'],
      [6060, 'STRICT'],
    ],
  });

  const noSelector = load(pa('spec:\n  mtls: {mode: STRICT}\n  portLevelMtls: {9090: {mode: DISABLE}}'));
  t.same(msgs(noSelector), [
    'spec.portLevelMtls | portLevelMtls is only allowed with a selector (a namespace- or mesh-wide PeerAuthentication cannot set port-level modes)',
  ]);
  t.equal(noSelector.peerAuthentications.length, 0);
  const emptySelector = load(
    pa('spec:\n  selector: {matchLabels: {}}\n  portLevelMtls: {9090: {mode: DISABLE}}'),
  );
  t.match(msgs(emptySelector), [/only allowed with a selector/], 'an empty selector is no selector');

  const bad = load(
    pa(`spec:
  selector: {matchLabels: {app: a}}
  portLevelMtls:
    0: {mode: STRICT}
    70000: {mode: STRICT}
    http: {mode: STRICT}
    9090: {mode: STRICT}
    "9090": {mode: DISABLE}
    8080: ~
    7070: {mode: OFF}
    6060: STRICT`),
  );
  t.same(msgs(bad), [
    'spec.portLevelMtls["0"] | portLevelMtls key "0" must be a workload port number (1-65535)',
    'spec.portLevelMtls["70000"] | portLevelMtls key "70000" must be a workload port number (1-65535)',
    'spec.portLevelMtls.http | portLevelMtls key "http" must be a workload port number (1-65535)',
    'spec.portLevelMtls["9090"] | duplicate portLevelMtls entry for port 9090',
    'spec.portLevelMtls["8080"] | portLevelMtls entry for port 8080 must be a map with a mode',
    'spec.portLevelMtls["7070"].mode | invalid value "OFF"; expected one of UNSET, DISABLE, PERMISSIVE, STRICT',
    'spec.portLevelMtls["6060"] | expected map, got string',
  ]);
  const empty = load(pa('spec:\n  selector: {matchLabels: {app: a}}\n  portLevelMtls: {}'));
  t.same(msgs(empty), ['spec.portLevelMtls | portLevelMtls, if present, must have at least one port']);
});

t.test('unknown fields warn, as for the networking kinds', async (t) => {
  const b = load(pa('spec:\n  mtls: {mode: STRICT, extra: 1}\n  mtlsMode: STRICT'));
  t.same(msgs(b), []);
  t.same(msgs(b, 'warning'), [
    'spec.mtls.extra | unknown field; ignored',
    'spec.mtlsMode | unknown field; ignored',
  ]);
  t.equal(b.peerAuthentications[0]?.spec.mode, 'STRICT');
});

t.test(
  'policies that can never apply warn (root-namespace selector, second namespace-wide policy)',
  async (t) => {
    const b = load(
      [
        pa('spec: {mtls: {mode: PERMISSIVE}}', '{name: mesh, namespace: istio-system}'),
        pa(
          'spec: {selector: {matchLabels: {app: a}}, mtls: {mode: STRICT}}',
          '{name: sel, namespace: istio-system}',
        ),
        pa('spec: {mtls: {mode: STRICT}}', '{name: first, namespace: foo}'),
        pa('spec: {mtls: {mode: DISABLE}}', '{name: second, namespace: foo}'),
        pa('spec: {mtls: {mode: DISABLE}}', '{name: mesh2, namespace: istio-system}'),
        pa('spec: {selector: {matchLabels: {app: a}}, mtls: {mode: DISABLE}}', '{name: wl, namespace: foo}'),
      ].join('\n---\n'),
    );
    t.same(msgs(b), []);
    t.same(
      b.issues.map((i) => `${i.pos.line} ${i.path} | ${i.message}`),
      [
        "6 PeerAuthentication istio-system/sel: spec.selector | a PeerAuthentication with a selector in the root namespace istio-system is ignored, as Istio ignores it; put it in the workload's namespace",
        '16 PeerAuthentication foo/second | namespace foo already has a namespace-wide PeerAuthentication, first (pa.yaml:11:1); the first one wins and this one is ignored',
        '21 PeerAuthentication istio-system/mesh2 | namespace istio-system already has a mesh-wide PeerAuthentication, mesh (pa.yaml:1:1); the first one wins and this one is ignored',
      ],
    );
    t.equal(b.peerAuthentications.length, 6, 'they still load: the precedence code decides');

    const otherRoot = load(
      pa(
        'spec: {selector: {matchLabels: {app: a}}, mtls: {mode: STRICT}}',
        '{name: sel, namespace: istio-system}',
      ),
      'apiVersion: meshlet.dev/v1alpha1\nkind: Proxy\nspec: {rootNamespace: mesh-root}',
    );
    t.same(otherRoot.issues, [], 'the root namespace comes from the Proxy document');
    const inRoot = load(
      pa(
        'spec: {selector: {matchLabels: {app: a}}, mtls: {mode: STRICT}}',
        '{name: sel, namespace: mesh-root}',
      ),
      'apiVersion: meshlet.dev/v1alpha1\nkind: Proxy\nspec: {rootNamespace: mesh-root}',
    );
    t.match(msgs(inRoot, 'warning'), [/root namespace mesh-root is ignored/]);
  },
);
