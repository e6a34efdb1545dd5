/**
 * The outbound TLS decision (src/tls/origination.ts): auto-mTLS by endpoint label and service
 * account, MESH_EXTERNAL, the destination's DISABLE mode, DR modes (DISABLE, `tls: {}`,
 * ISTIO_MUTUAL, SIMPLE, MUTUAL), the SNI / ALPN / expected-SAN choice, the missing-certificate and
 * unreadable-file errors, caching per cluster object / endpoint / identity version, interning,
 * targets, preload and refreshFiles.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { TrafficPolicy } from '../../../src/config/resource-types.ts';
import type { Cluster, Endpoint } from '../../../src/router/route-types.ts';
import type { MtlsMode, UpstreamTls, WorkloadCertificate } from '../../../src/tls/identity-types.ts';
import {
  createOrigination,
  ISTIO_ALPN,
  isOriginationError,
  type OriginationIdentity,
  type OriginationOptions,
  type OriginationResult,
} from '../../../src/tls/origination.ts';

const HOST = 'reviews.default.svc.cluster.local';

function cert(serial: string): WorkloadCertificate {
  return {
    certChainPem: `CHAIN-${serial}`,
    keyPem: `KEY-${serial}`,
    notBefore: new Date(0),
    notAfter: new Date(86_400_000),
    spiffe: {
      trustDomain: 'cluster.local',
      namespace: 'default',
      serviceAccount: 'productpage',
      uri: 'spiffe://cluster.local/ns/default/sa/productpage',
    },
  };
}

function endpoint(address: string, labels: Record<string, string> = {}, serviceAccount?: string): Endpoint {
  return {
    id: `${address}:9080`,
    address,
    port: 9080,
    weight: 1,
    labels,
    ...(serviceAccount === undefined ? {} : { serviceAccount }),
  };
}

const MESH = { 'security.istio.io/tlsMode': 'istio' };

function cluster(overrides: Partial<Cluster> & { tls?: Record<string, unknown> } = {}): Cluster {
  const { tls, ...rest } = overrides;
  const trafficPolicy: TrafficPolicy | undefined =
    tls === undefined ? undefined : { tls, portLevelSettings: [] };
  return {
    name: `outbound|9080|${rest.subset ?? ''}|${HOST}`,
    host: HOST,
    port: 9080,
    subset: '',
    endpoints: [],
    location: 'MESH_INTERNAL',
    serviceFqdn: HOST,
    serviceName: 'reviews',
    serviceNamespace: 'bookinfo',
    ...(trafficPolicy === undefined ? {} : { trafficPolicy }),
    ...rest,
  };
}

/** An identity source whose state the test changes. */
class FakeIdentity {
  state: OriginationIdentity = { cert: cert('1'), bundlePem: 'BUNDLE', version: 1 };
  calls = 0;
  readonly fn = (): OriginationIdentity => {
    this.calls++;
    return this.state;
  };
  rotate(serial: string): void {
    this.state = { cert: cert(serial), bundlePem: this.state.bundlePem, version: this.state.version + 1 };
  }
}

function setup(extra: Partial<OriginationOptions> = {}) {
  const identity = new FakeIdentity();
  const files = new Map<string, string>([
    ['/etc/ca.pem', 'CA-PEM'],
    ['/etc/client.pem', 'CLIENT-PEM'],
    ['/etc/client.key', 'CLIENT-KEY'],
  ]);
  const reads: string[] = [];
  const o = createOrigination({
    trustDomain: 'cluster.local',
    identity: identity.fn,
    readFile: (path) => {
      reads.push(path);
      const content = files.get(path);
      if (content === undefined) throw new Error(`ENOENT: no such file or directory, open '${path}'`);
      return content;
    },
    ...extra,
  });
  return { o, identity, files, reads };
}

function tlsOf(r: OriginationResult): UpstreamTls {
  if (r === undefined || isOriginationError(r)) throw new Error(`expected TLS, got ${JSON.stringify(r)}`);
  return r;
}

t.test(
  'auto-mTLS: ISTIO_MUTUAL for endpoints labelled tlsMode istio in a MESH_INTERNAL cluster',
  async (t) => {
    const { o } = setup();
    const c = cluster();
    const tls = tlsOf(o.originationFor(c, endpoint('10.0.0.1', MESH, 'reviews')));
    t.equal(tls.certChainPem, 'CHAIN-1');
    t.equal(tls.keyPem, 'KEY-1');
    t.equal(tls.caPem, 'BUNDLE');
    t.equal(tls.servername, `outbound_.9080_._.${HOST}`);
    t.same(tls.alpn, ['istio-http/1.1', 'istio']);
    t.equal(tls.alpn, ISTIO_ALPN);
    t.same(tls.expectedSans, ['spiffe://cluster.local/ns/bookinfo/sa/reviews'], 'namespace of the service');
    t.equal(tls.insecureSkipVerify, undefined);
    t.match(tls.poolKey, /^ISTIO_MUTUAL\|v1\|/);
    t.equal(o.originationFor(c, endpoint('10.0.0.2')), undefined, 'no label, no service account: plaintext');
    t.equal(
      o.originationFor(c, endpoint('10.0.0.3', { 'security.istio.io/tlsMode': 'disabled' }, 'reviews')),
      undefined,
      'a tlsMode label other than istio: plaintext, service account or not',
    );
    const bySa = tlsOf(o.originationFor(c, endpoint('10.0.0.4', {}, 'reviews')));
    t.same(
      bySa.expectedSans,
      ['spiffe://cluster.local/ns/bookinfo/sa/reviews'],
      'a service account alone counts',
    );
    const noSa = tlsOf(o.originationFor(c, endpoint('10.0.0.5', MESH)));
    t.same(noSa.expectedSans, [], 'labelled without a service account: chain only');
  },
);

t.test(
  'auto-mTLS never applies to MESH_EXTERNAL, an unknown location, or a DISABLE destination',
  async (t) => {
    const ep = endpoint('10.0.0.1', MESH, 'reviews');
    const { o } = setup();
    t.equal(o.originationFor(cluster({ location: 'MESH_EXTERNAL' }), ep), undefined);
    const { location: _, ...noLocation } = cluster();
    t.equal(o.originationFor(noLocation, ep), undefined, 'absent location means MESH_EXTERNAL');
    const modes = new Map<Cluster, MtlsMode | undefined>();
    const asked: string[] = [];
    const withModes = setup({
      destinationMode: (c) => {
        asked.push(c.name);
        return modes.get(c);
      },
    });
    const disabled = cluster();
    const permissive = cluster();
    const unknown = cluster();
    modes.set(disabled, 'DISABLE');
    modes.set(permissive, 'PERMISSIVE');
    t.equal(withModes.o.originationFor(disabled, ep), undefined, 'DISABLE at the destination: plaintext');
    t.ok(tlsOf(withModes.o.originationFor(permissive, ep)), 'PERMISSIVE: mTLS');
    t.ok(tlsOf(withModes.o.originationFor(unknown, ep)), 'unknown: mTLS');
    withModes.o.originationFor(disabled, ep);
    withModes.o.originationFor(permissive, endpoint('10.0.0.9', MESH));
    t.equal(asked.length, 3, 'asked once per cluster');
    const off = setup({ autoMtls: false });
    t.equal(off.o.originationFor(cluster(), ep), undefined, 'enableAutoMtls off');
    t.ok(
      tlsOf(off.o.originationFor(cluster({ tls: { mode: 'ISTIO_MUTUAL' } }), ep)),
      'explicit ISTIO_MUTUAL still',
    );
  },
);

t.test('DR DISABLE and a tls block without mode are plaintext, even for mesh endpoints', async (t) => {
  const { o } = setup();
  const ep = endpoint('10.0.0.1', MESH, 'reviews');
  t.equal(o.originationFor(cluster({ tls: { mode: 'DISABLE' } }), ep), undefined);
  t.equal(o.originationFor(cluster({ tls: {} }), ep), undefined);
  t.equal(o.originationFor(cluster({ tls: { sni: 'x' } }), ep), undefined);
});

t.test('DR ISTIO_MUTUAL: every endpoint, MESH_EXTERNAL too; SNI with subset; SAN precedence', async (t) => {
  const { o } = setup();
  const plainEp = endpoint('10.0.0.1');
  const v2 = cluster({ subset: 'v2', location: 'MESH_EXTERNAL', tls: { mode: 'ISTIO_MUTUAL' } });
  const a = tlsOf(o.originationFor(v2, plainEp));
  t.equal(a.servername, `outbound_.9080_.v2_.${HOST}`);
  t.same(a.expectedSans, []);
  const se = cluster({
    subjectAltNames: ['spiffe://cluster.local/ns/x/sa/se'],
    tls: { mode: 'ISTIO_MUTUAL' },
  });
  t.same(
    tlsOf(o.originationFor(se, endpoint('10.0.0.2', {}, 'ignored'))).expectedSans,
    ['spiffe://cluster.local/ns/x/sa/se'],
    'the ServiceEntry names win over the endpoint service account',
  );
  const dr = cluster({
    subjectAltNames: ['spiffe://cluster.local/ns/x/sa/se'],
    tls: { mode: 'ISTIO_MUTUAL', subjectAltNames: ['spiffe://cluster.local/ns/x/sa/dr'], sni: 'custom.sni' },
  });
  const d = tlsOf(o.originationFor(dr, endpoint('10.0.0.3', {}, 'ignored')));
  t.same(d.expectedSans, ['spiffe://cluster.local/ns/x/sa/dr'], 'the DR names win over all');
  t.equal(d.servername, 'custom.sni', 'the DR sni wins');
  const insecure = cluster({ tls: { mode: 'ISTIO_MUTUAL', insecureSkipVerify: true } });
  t.equal(
    tlsOf(o.originationFor(insecure, plainEp)).insecureSkipVerify,
    undefined,
    'mesh identity always checked',
  );
});

t.test('ISTIO_MUTUAL without a certificate or a bundle: an error value for the pipeline', async (t) => {
  const { o, identity } = setup();
  const c = cluster();
  const ep = endpoint('10.0.0.1', MESH, 'reviews');
  identity.state = { cert: null, bundlePem: 'BUNDLE', version: 7 };
  const r = o.originationFor(c, ep);
  t.same(r, { error: 'no workload certificate' });
  t.ok(isOriginationError(r));
  t.same(o.targetFor(c, ep), { error: 'no workload certificate' });
  identity.state = { cert: cert('2'), bundlePem: '', version: 8 };
  t.same(o.originationFor(c, ep), { error: 'no trust bundle' });
  identity.state = { cert: cert('2'), bundlePem: 'BUNDLE', version: 9 };
  t.equal(tlsOf(o.originationFor(c, ep)).certChainPem, 'CHAIN-2', 'the certificate, once there, is used');
});

t.test('SIMPLE: anchors from the file (read once), SNI and expected name from the host', async (t) => {
  const { o, reads } = setup();
  const ep = endpoint('10.0.0.1');
  const c = cluster({ location: 'MESH_EXTERNAL', tls: { mode: 'SIMPLE', caCertificates: '/etc/ca.pem' } });
  const tls = tlsOf(o.originationFor(c, ep));
  t.equal(tls.caPem, 'CA-PEM');
  t.equal(tls.servername, HOST);
  t.same(tls.expectedSans, [HOST]);
  t.equal(tls.certChainPem, undefined);
  t.equal(tls.keyPem, undefined);
  t.equal(tls.alpn, undefined);
  t.equal(o.originationFor(c, endpoint('10.0.0.2')), tls, 'the same object for every endpoint');
  t.equal(
    o.originationFor(cluster({ tls: { mode: 'SIMPLE', caCertificates: '/etc/ca.pem' } }), ep),
    tls,
    'interned',
  );
  t.same(reads, ['/etc/ca.pem'], 'read once');

  const system = tlsOf(o.originationFor(cluster({ tls: { mode: 'SIMPLE' } }), ep));
  t.equal(system.caPem, undefined, 'no caCertificates: the system store');
  const sni = tlsOf(o.originationFor(cluster({ tls: { mode: 'SIMPLE', sni: 'api.example.com' } }), ep));
  t.equal(sni.servername, 'api.example.com');
  t.same(sni.expectedSans, ['api.example.com'], 'the name sent is the name checked');
  const seSans = tlsOf(
    o.originationFor(cluster({ subjectAltNames: ['se.example'], tls: { mode: 'SIMPLE' } }), ep),
  );
  t.same(seSans.expectedSans, ['se.example']);
  const drSans = tlsOf(
    o.originationFor(
      cluster({ subjectAltNames: ['se.example'], tls: { mode: 'SIMPLE', subjectAltNames: ['dr.example'] } }),
      ep,
    ),
  );
  t.same(drSans.expectedSans, ['dr.example']);
  const wildcard = tlsOf(o.originationFor(cluster({ host: '*.example.com', tls: { mode: 'SIMPLE' } }), ep));
  t.equal(wildcard.servername, undefined, 'a wildcard host sends no SNI');
  t.same(wildcard.expectedSans, [], 'and checks the chain only');
  const ip = tlsOf(o.originationFor(cluster({ host: '192.0.2.1', tls: { mode: 'SIMPLE' } }), ep));
  t.equal(ip.servername, undefined);
  t.same(ip.expectedSans, []);
  const insecure = tlsOf(
    o.originationFor(cluster({ tls: { mode: 'SIMPLE', insecureSkipVerify: true } }), ep),
  );
  t.equal(insecure.insecureSkipVerify, true);
  t.not(insecure.poolKey, system.poolKey, 'insecure connections are pooled apart');
});

t.test('MUTUAL: client certificate and key files; missing or unreadable files are errors', async (t) => {
  const { o, files, reads } = setup();
  const ep = endpoint('10.0.0.1');
  const mutual = {
    mode: 'MUTUAL',
    clientCertificate: '/etc/client.pem',
    privateKey: '/etc/client.key',
    caCertificates: '/etc/ca.pem',
  };
  const tls = tlsOf(o.originationFor(cluster({ tls: mutual }), ep));
  t.equal(tls.certChainPem, 'CLIENT-PEM');
  t.equal(tls.keyPem, 'CLIENT-KEY');
  t.equal(tls.caPem, 'CA-PEM');
  t.same(o.originationFor(cluster({ tls: { mode: 'MUTUAL', credentialName: 'secret' } }), ep), {
    error: 'tls mode MUTUAL needs clientCertificate and privateKey files (credentialName is for gateways)',
  });
  const missing = o.originationFor(cluster({ tls: { ...mutual, privateKey: '/nope.key' } }), ep);
  t.ok(isOriginationError(missing));
  t.match(missing, { error: /^privateKey: cannot read \/nope\.key: ENOENT/ });
  t.match(o.originationFor(cluster({ tls: { ...mutual, clientCertificate: '/nope.pem' } }), ep), {
    error: /^clientCertificate: cannot read \/nope\.pem/,
  });
  t.match(o.originationFor(cluster({ tls: { mode: 'SIMPLE', caCertificates: '/nope.ca' } }), ep), {
    error: /^caCertificates: cannot read \/nope\.ca/,
  });
  const before = reads.length;
  o.originationFor(cluster({ tls: { ...mutual, privateKey: '/nope.key' } }), ep);
  t.equal(reads.length, before, 'a failed read is not retried per request');

  // refreshFiles: files are read again, a changed file gives a new pool key.
  files.set('/etc/client.pem', 'CLIENT-PEM-2');
  const same = cluster({ tls: mutual });
  t.equal(tlsOf(o.originationFor(same, ep)).certChainPem, 'CLIENT-PEM', 'cached until refreshFiles');
  o.refreshFiles();
  const fresh = tlsOf(o.originationFor(same, ep));
  t.equal(fresh.certChainPem, 'CLIENT-PEM-2');
  t.not(fresh.poolKey, tls.poolKey);
});

t.test('answers are cached per cluster object, endpoint and identity version', async (t) => {
  const { o, identity } = setup();
  const c = cluster();
  const ep = endpoint('10.0.0.1', MESH, 'reviews');
  const first = tlsOf(o.originationFor(c, ep));
  t.equal(o.originationFor(c, ep), first, 'the same object on repeated calls');
  t.equal(o.originationFor(c, endpoint('10.0.0.2', MESH, 'reviews')), first, 'shared by equal settings');
  t.not(
    o.originationFor(c, endpoint('10.0.0.3', MESH, 'ratings')),
    first,
    'another identity, another object',
  );
  const calls = identity.calls;
  o.originationFor(c, ep);
  t.equal(identity.calls, calls + 1, 'identity() is asked once per decision');
  identity.rotate('2');
  const rotated = tlsOf(o.originationFor(c, ep));
  t.not(rotated, first);
  t.equal(rotated.certChainPem, 'CHAIN-2');
  t.not(rotated.poolKey, first.poolKey, 'a rotation gives a new pool key');
  t.match(rotated.poolKey, /^ISTIO_MUTUAL\|v2\|/);
  t.equal(o.originationFor(c, ep), rotated);
});

t.test('targetFor: the endpoint itself for plaintext, a cached TLS target, or the error', async (t) => {
  const { o } = setup();
  const c = cluster();
  const plainEp = endpoint('10.0.0.1');
  t.equal(o.targetFor(c, plainEp), plainEp);
  const sameIdOther = endpoint('10.0.0.1');
  t.equal(o.targetFor(c, sameIdOther), sameIdOther, 'the caller’s own endpoint object');
  const meshEp = endpoint('10.0.0.2', MESH, 'reviews');
  const target = o.targetFor(c, meshEp);
  if (isOriginationError(target)) throw new Error('unexpected error');
  t.equal(target.address, '10.0.0.2');
  t.equal(target.port, 9080);
  t.equal(target.tls, o.originationFor(c, meshEp));
  t.equal(o.targetFor(c, meshEp), target, 'cached');
  const simple = cluster({ tls: { mode: 'SIMPLE' } });
  const s1 = o.targetFor(simple, plainEp);
  t.equal(o.targetFor(simple, plainEp), s1, 'cached for endpoint-independent TLS too');
  t.not(o.targetFor(simple, meshEp), s1, 'one target per endpoint');
  const external = cluster({ location: 'MESH_EXTERNAL' });
  t.equal(o.targetFor(external, meshEp), meshEp);
  t.same(o.targetFor(cluster({ tls: { mode: 'SIMPLE', caCertificates: '/nope' } }), plainEp), {
    error: "caCertificates: cannot read /nope: ENOENT: no such file or directory, open '/nope'",
  });
});

t.test('preload reads the files of SIMPLE/MUTUAL clusters ahead of traffic and lists problems', async (t) => {
  const { o, reads } = setup();
  const good = cluster({ tls: { mode: 'SIMPLE', caCertificates: '/etc/ca.pem' } });
  const bad = cluster({
    name: 'outbound|443||bad',
    tls: { mode: 'MUTUAL', clientCertificate: '/x', privateKey: '/y' },
  });
  const problems = o.preload([good, bad, cluster(), cluster({ tls: { mode: 'ISTIO_MUTUAL' } })]);
  t.same(reads, ['/etc/ca.pem', '/x']);
  t.equal(problems.length, 1);
  t.match(problems[0], /^outbound\|443\|\|bad: clientCertificate: cannot read \/x/);
  o.originationFor(good, endpoint('10.0.0.1'));
  t.same(reads, ['/etc/ca.pem', '/x'], 'no read on the request path afterwards');
});

t.test('per-cluster endpoint answers are bounded under endpoint churn', async (t) => {
  const { o } = setup();
  const c = cluster();
  const first = endpoint('10.0.0.1', MESH, 'reviews');
  const a = o.targetFor(c, first);
  for (let i = 0; i < 8200; i++) o.originationFor(c, endpoint(`10.1.${i >> 8}.${i & 255}`, MESH, 'reviews'));
  const b = o.targetFor(c, first);
  t.not(b, a, 'the cache was cleared once full, so the target was made again');
  t.same(b, a, 'with the same content');
});

t.test('files are read from disk by default', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-origination-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'ca.pem'), 'ON-DISK');
  const o = createOrigination({ trustDomain: 'cluster.local', identity: new FakeIdentity().fn });
  const tls = tlsOf(
    o.originationFor(
      cluster({ tls: { mode: 'SIMPLE', caCertificates: join(dir, 'ca.pem') } }),
      endpoint('10.0.0.1'),
    ),
  );
  t.equal(tls.caPem, 'ON-DISK');
  t.match(
    o.originationFor(
      cluster({ tls: { mode: 'SIMPLE', caCertificates: join(dir, 'none.pem') } }),
      endpoint('10.0.0.1'),
    ),
    {
      error: /^caCertificates: cannot read .*none\.pem: ENOENT/,
    },
  );
});
