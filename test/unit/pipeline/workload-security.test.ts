import type { SecureContext } from 'node:tls';
import t from 'tap';
import type {
  AuthorizationPolicySpec,
  ConfigBundle,
  PeerAuthenticationSpec,
  Resource,
} from '../../../src/config/resource-types.ts';
import type { Snapshot } from '../../../src/config/snapshot-store.ts';
import {
  type CompileAuthorizer,
  type CompilePeerAuthentication,
  destinationModes,
  sharedLabels,
  WorkloadSecurity,
} from '../../../src/pipeline/workload-security.ts';
import type { Cluster } from '../../../src/router/route-types.ts';
import type { IdentitySource, MtlsMode, WorkloadCertificate } from '../../../src/tls/identity-types.ts';
import type { WorkloadSelectorInput } from '../../../src/tls/policy-types.ts';

/** Per-workload security: compile once per snapshot, identity, inbound TLS, destination modes. */

const meta = (name: string, namespace: string, order: number) => ({
  name,
  namespace,
  annotations: {},
  pos: { file: 't.yaml', line: 1, col: 1 },
  order,
});

function snapshot(
  version: number,
  pas: Resource<PeerAuthenticationSpec>[] = [],
  aps: Resource<AuthorizationPolicySpec>[] = [],
): Snapshot {
  return {
    version,
    hash: `h${version}`,
    loadedAt: new Date(0),
    bundle: { peerAuthentications: pas, authorizationPolicies: aps } as unknown as ConfigBundle,
    routes: { route: () => ({ kind: 'passthrough', host: 'x', port: 80 }), clusters: new Map() },
    outboundTrafficPolicy: 'ALLOW_ANY',
  };
}

const pa = (mode: MtlsMode, namespace = 'default'): Resource<PeerAuthenticationSpec> => ({
  meta: meta(`pa-${mode}`, namespace, 0),
  spec: { mode, portLevelMtls: new Map() },
});

/** Fake compilers that record their calls: mode = the first PA's mode, authorizer empty without APs. */
function compilers() {
  const calls = {
    authorizer: [] as WorkloadSelectorInput[],
    pa: [] as Array<[WorkloadSelectorInput, number]>,
  };
  const authorizer: CompileAuthorizer = (policies, workload) => {
    calls.authorizer.push(workload);
    return {
      empty: policies.length === 0,
      check: () => ({ allowed: false, reason: 'r', audited: false }),
      warnings: policies.length > 1 ? ['a rule was dropped'] : [],
      policies: policies.map((p) => `${p.meta.namespace}/${p.meta.name}`),
    } as ReturnType<CompileAuthorizer>;
  };
  const peerAuthentication: CompilePeerAuthentication = (policies, workload) => (port) => {
    calls.pa.push([workload, port]);
    return (policies[0]?.spec.mode as MtlsMode | undefined) ?? 'PERMISSIVE';
  };
  return { calls, authorizer, peerAuthentication };
}

const ap = (name: string): Resource<AuthorizationPolicySpec> => ({
  meta: meta(name, 'default', 0),
  spec: { hasTargetRefs: false, action: 'ALLOW', rules: [], dryRun: false },
});

function fakeSource(cert: WorkloadCertificate | null): IdentitySource {
  return {
    current: () => cert,
    trustBundlePem: () => 'BUNDLE',
    onChange: () => {},
    rotations: 0,
    lastError: null,
    close: () => {},
  };
}

function workload(source: IdentitySource | null, c = compilers(), ctx: SecureContext | null = null) {
  return new WorkloadSecurity({
    name: 'reviews',
    namespace: 'shop',
    labels: { app: 'reviews' },
    app: { address: '127.0.0.1', port: 9080 },
    identity: {
      workload: 'reviews',
      namespace: 'shop',
      app: 'reviews',
      version: 'unknown',
      canonicalService: 'reviews',
      canonicalRevision: 'latest',
      cluster: 'unknown',
    },
    source,
    spiffeId: source === null ? null : 'spiffe://cluster.local/ns/shop/sa/reviews',
    compilers: {
      authorizer: c.authorizer,
      peerAuthentication: c.peerAuthentication,
      rootNamespace: 'istio-system',
      trustDomain: 'cluster.local',
    },
    secureContext: () => ctx,
  });
}

t.test('policies compile once per snapshot, for the workload and its app port', async (t) => {
  const c = compilers();
  const w = workload(fakeSource(null), c);
  const s1 = snapshot(1, [pa('STRICT')], [ap('a'), ap('b')]);
  const report = w.prepare(s1);
  t.same(report, { mode: 'STRICT', policies: ['default/a', 'default/b'], warnings: ['a rule was dropped'] });
  t.same(c.calls.authorizer, [{ namespace: 'shop', labels: { app: 'reviews' } }]);
  t.same(c.calls.pa, [[{ namespace: 'shop', labels: { app: 'reviews' } }, 9080]], 'the application port');
  const p1 = w.policy(s1);
  t.equal(w.policy(s1), p1);
  t.equal(c.calls.authorizer.length, 1, 'prepared: not compiled again');
  t.equal(p1.mode, 'STRICT');
  t.not(p1.authorizer, null);
  const s2 = snapshot(2);
  const p2 = w.policy(s2);
  t.same([p2.mode, p2.authorizer], ['PERMISSIVE', null], 'an empty authorizer is dropped');
  t.equal(c.calls.authorizer.length, 2, 'a snapshot not prepared compiles on first use');
  t.equal(w.policy(s1), p1, 'an older snapshot keeps its own policies');
  t.equal(c.calls.authorizer.length, 2);
});

t.test('STRICT without an identity is reported: every plaintext request will be refused', async (t) => {
  const w = workload(null);
  const report = w.prepare(snapshot(1, [pa('STRICT')]));
  t.match(report.warnings, [/STRICT but it has no identity/]);
  t.equal(
    w.inboundTls(() => snapshot(1)),
    undefined,
    'no identity: a plaintext listener',
  );
  t.equal(w.spiffeId(), null);
});

t.test('identity and inbound TLS follow the certificate and the current snapshot', async (t) => {
  let cert: WorkloadCertificate | null = null;
  const source: IdentitySource = { ...fakeSource(null), current: () => cert };
  const ctx = {} as SecureContext;
  const w = workload(source, compilers(), ctx);
  t.equal(
    w.spiffeId(),
    'spiffe://cluster.local/ns/shop/sa/reviews',
    'the configured id before a certificate',
  );
  cert = {
    certChainPem: '',
    keyPem: '',
    notBefore: new Date(0),
    notAfter: new Date(1),
    spiffe: {
      trustDomain: 'td',
      namespace: 'shop',
      serviceAccount: 'other',
      uri: 'spiffe://td/ns/shop/sa/other',
    },
  };
  t.equal(w.spiffeId(), 'spiffe://td/ns/shop/sa/other', "then the certificate's own");
  let current = snapshot(1, [pa('STRICT')]);
  const tls = w.inboundTls(() => current);
  t.equal(tls?.mode(), 'STRICT');
  current = snapshot(2, [pa('DISABLE')]);
  t.equal(tls?.mode(), 'DISABLE', 'read per connection: a reload applies to new connections');
  t.equal(tls?.secureContext(), ctx);
});

t.test('destination modes for auto-mTLS: shared labels, endpoint port, cached per cluster', async (t) => {
  const c = compilers();
  let current = snapshot(1, [pa('DISABLE', 'shop')]);
  const modeOf = destinationModes(() => current, c.peerAuthentication, 'istio-system');
  const cluster = (ports: number[], labels: Record<string, string>[]): Cluster => ({
    name: 'outbound|80||r.shop.svc.cluster.local',
    host: 'r.shop.svc.cluster.local',
    port: 80,
    subset: '',
    endpoints: ports.map((port, i) => ({
      id: `10.0.0.${i}:${port}`,
      address: `10.0.0.${i}`,
      port,
      weight: 1,
      labels: labels[i] ?? {},
    })),
    serviceFqdn: 'r.shop.svc.cluster.local',
    serviceName: 'r',
    serviceNamespace: 'shop',
  });
  const a = cluster(
    [9080, 9080],
    [
      { app: 'r', version: 'v1' },
      { app: 'r', version: 'v2' },
    ],
  );
  t.equal(modeOf(a), 'DISABLE');
  t.same(c.calls.pa, [[{ namespace: 'shop', labels: { app: 'r' } }, 9080]]);
  t.equal(modeOf(a), 'DISABLE');
  t.equal(c.calls.pa.length, 1, 'once per cluster object');
  modeOf(cluster([9080, 9081], []));
  t.same(
    c.calls.pa[1],
    [{ namespace: 'shop', labels: {} }, 80],
    'endpoints disagree on the port: the service port',
  );
  current = snapshot(2);
  t.equal(
    modeOf(cluster([1], [])),
    'PERMISSIVE',
    'no PeerAuthentication at all: PERMISSIVE without compiling',
  );
  t.equal(c.calls.pa.length, 2);
  t.same(sharedLabels([]), {});
});
