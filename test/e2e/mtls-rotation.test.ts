import { X509Certificate } from 'node:crypto';
import { mkdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { Agent } from 'undici';
import { caInit } from '../helpers/mesh-ca.ts';
import { adminText, call, metricSum, sleep } from '../helpers/mesh-client.ts';
import { type LeafMaterial, makeLeaf } from '../helpers/openssl-pki.ts';
import { tlsExchange } from '../helpers/tls-clients.ts';
import { echoApp, echoOf, eventually, spawnReady, tempDir, xfccOf } from '../helpers/zt-mesh.ts';
import { docs, meshServiceYaml, peerAuthenticationYaml, proxyYaml, spiffe } from '../helpers/zt-yaml.ts';

/**
 * Workload certificates rotated under steady load cause no failed request (issue 4). Sidecar A
 * calls sidecar B (STRICT) for ~7 s; meanwhile both certificates are replaced every ~1.2 s the way
 * a Kubernetes Secret volume (cert-manager, SPIRE helpers) replaces them: a new timestamped folder,
 * then the `..data` symlink swapped atomically. A opens a new connection to B every 20 requests
 * (DestinationRule `maxRequestsPerConnection`), so new handshakes keep happening with the rotated
 * certificates on both sides while the connections already open keep serving.
 *
 * Why files and not in-memory issuing with a short `certTtl`: configuration validation keeps
 * `certTtl` at 1 minute or more, so an issuing proxy renews after 42 s at the soonest; the file
 * source runs the same rotation path (new certificate, new secure contexts, new pool key) at the
 * pace a test can afford.
 */

const B_HOST = 'b.default.svc.cluster.local';
const LOAD_MS = 7000;
const ROTATE_EVERY_MS = 1200;
const CONCURRENCY = 8;

/** A folder laid out like a mounted Secret: `cert.pem -> ..data/cert.pem`, `..data -> ..<n>`. */
class SecretVolume {
  #version = 0;
  readonly dir: string;
  readonly caPem: string;
  constructor(dir: string, caPem: string) {
    this.dir = dir;
    this.caPem = caPem;
    mkdirSync(dir, { recursive: true });
  }
  get certFile(): string {
    return join(this.dir, 'cert.pem');
  }
  get keyFile(): string {
    return join(this.dir, 'key.pem');
  }
  get bundleFile(): string {
    return join(this.dir, 'ca.pem');
  }
  publish(leaf: LeafMaterial): void {
    const version = `..v${++this.#version}`;
    mkdirSync(join(this.dir, version));
    writeFileSync(join(this.dir, version, 'cert.pem'), leaf.certPem);
    writeFileSync(join(this.dir, version, 'key.pem'), leaf.keyPem, { mode: 0o600 });
    writeFileSync(join(this.dir, version, 'ca.pem'), this.caPem);
    symlinkSync(version, join(this.dir, '..data_tmp'));
    renameSync(join(this.dir, '..data_tmp'), join(this.dir, '..data'));
    if (this.#version === 1) {
      for (const f of ['cert.pem', 'key.pem', 'ca.pem']) symlinkSync(join('..data', f), join(this.dir, f));
    }
  }
}

function maxRequestsPerConnection(host: string, n: number): string {
  return `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ${host}, namespace: default }
spec:
  host: ${host}
  trafficPolicy:
    connectionPool:
      http: { maxRequestsPerConnection: ${n} }
`;
}

function rotations(metrics: string): number {
  return metricSum(metrics, 'meshlet_certificate_rotations_total');
}

t.test('certificates rotated under steady load: no failed request', async (t) => {
  const dir = tempDir(t);
  const ca = await caInit(join(dir, 'ca'));
  const rounds = Math.ceil(LOAD_MS / ROTATE_EVERY_MS) + 1;
  // Made up front, so that a rotation under load is only a symlink swap.
  const leaves = async (sa: string): Promise<LeafMaterial[]> =>
    Promise.all(
      Array.from({ length: rounds }, (_, i) =>
        makeLeaf(ca, join(dir, 'leaves'), `${sa}-${i}`, { uri: spiffe(sa) }),
      ),
    );
  const [aLeaves, bLeaves, probeCert] = await Promise.all([
    leaves('a'),
    leaves('b'),
    makeLeaf(ca, dir, 'probe', { uri: spiffe('probe') }),
  ]);
  const volA = new SecretVolume(join(dir, 'secret-a'), ca.certPem);
  const volB = new SecretVolume(join(dir, 'secret-b'), ca.certPem);
  volA.publish(aLeaves[0] as LeafMaterial);
  volB.publish(bLeaves[0] as LeafMaterial);
  const files = (v: SecretVolume) =>
    ({ kind: 'files', certFile: v.certFile, keyFile: v.keyFile, trustBundleFile: v.bundleFile }) as const;

  const app = await echoApp(t, 'b');
  const b = await spawnReady(
    t,
    docs(
      proxyYaml({ serviceAccount: 'b', identity: files(volB) }),
      peerAuthenticationYaml('default', 'STRICT'),
    ),
    { engine: 'h1', args: ['--app', `127.0.0.1:${app.port}`] },
  );
  const a = await spawnReady(
    t,
    docs(
      proxyYaml({ serviceAccount: 'a', identity: files(volA) }),
      meshServiceYaml('b', [{ port: b.inboundPort, serviceAccount: 'b' }]),
      maxRequestsPerConnection(B_HOST, 20),
    ),
    { engine: 'h1' },
  );
  const agent = new Agent({ connections: CONCURRENCY });
  t.teardown(() => agent.close());
  const probe = { certPem: probeCert.certPem, keyPem: probeCert.keyPem };
  const first = await tlsExchange(b.inboundPort, { cert: probe });
  t.match(first.serverSan, `URI:${spiffe('b')}`);
  const before = {
    a: rotations(await adminText(a, agent, '/metrics')),
    b: rotations(await adminText(b, agent, '/metrics')),
  };

  let ok = 0;
  const failures: string[] = [];
  const deadline = Date.now() + LOAD_MS;
  const worker = async (w: number): Promise<void> => {
    for (let i = 0; Date.now() < deadline; i++) {
      const res = await call(a, agent, `/load/${w}/${i}`, { host: B_HOST, timeoutMs: 3000 });
      if (res.status === 200 && xfccOf(echoOf(res.text)).includes(`URI=${spiffe('a')}`)) ok++;
      else failures.push(`${res.status} ${res.flags} ${res.text.slice(0, 400)}`);
    }
  };
  const rotator = async (): Promise<number> => {
    let n = 0;
    while (Date.now() + ROTATE_EVERY_MS < deadline) {
      await sleep(ROTATE_EVERY_MS / 2);
      volA.publish(aLeaves[++n] as LeafMaterial);
      await sleep(ROTATE_EVERY_MS / 2);
      volB.publish(bLeaves[n] as LeafMaterial);
    }
    return n;
  };
  const [published] = await Promise.all([
    rotator(),
    ...Array.from({ length: CONCURRENCY }, (_, w) => worker(w)),
  ]);
  t.same(
    failures.slice(0, 10),
    [],
    `no failed request out of ${ok + failures.length} (${failures.length} failed)`,
  );
  if (failures.length > 0) {
    const notable = (logs: readonly string[]): string =>
      logs
        .filter((l) => !l.includes('"level":"info"'))
        .slice(0, 10)
        .join('\n');
    t.comment(`sidecar A's warnings:\n${notable(a.logs)}\nsidecar B's warnings:\n${notable(b.logs)}`);
  }
  t.ok(ok > 200, `steady load: ${ok} requests in ${LOAD_MS} ms`);

  const grewBy = async (m: typeof a, from: number): Promise<number> =>
    rotations(await adminText(m, agent, '/metrics')) - from;
  // The last swap may still be in the watcher's debounce: give it a moment.
  await eventually(
    async () => (await grewBy(a, before.a)) >= published && (await grewBy(b, before.b)) >= published,
    3000,
  );
  t.ok((await grewBy(a, before.a)) >= 3, `A rotated ${await grewBy(a, before.a)} times (${published} swaps)`);
  t.ok((await grewBy(b, before.b)) >= 3, `B rotated ${await grewBy(b, before.b)} times (${published} swaps)`);
  const last = await tlsExchange(b.inboundPort, { cert: probe });
  t.match(last.serverSan, `URI:${spiffe('b')}`, 'B still serves its identity');
  t.not(last.fingerprint, first.fingerprint, 'with a new certificate');
  t.equal(last.fingerprint, fingerprintOf(bLeaves[published] as LeafMaterial), 'the last one published');
});

function fingerprintOf(leaf: LeafMaterial): string {
  return new X509Certificate(leaf.certPem).fingerprint256;
}
