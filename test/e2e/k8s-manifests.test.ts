// deploy/kubernetes: every manifest document validates against the Kubernetes schema
// (kubernetes-models: kubectl --dry-run=client needs an API server for discovery, so it cannot
// check offline), the mesh configuration inside every ConfigMap passes `meshlet validate`, and the
// sidecar/node wiring the README promises is really in the manifests.
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { DaemonSet, Deployment } from 'kubernetes-models/apps/v1';
import { ConfigMap, Namespace, Service, ServiceAccount } from 'kubernetes-models/v1';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { parseAllDocuments } from 'yaml';
import { type Echo, startEchoBackend } from '../helpers/backends.ts';
import { REPO_ROOT, runCli, spawnMeshlet } from '../helpers/spawn-meshlet.ts';

const K8S = join(REPO_ROOT, 'deploy/kubernetes');

// One validator per kind the manifests use; a kind missing here fails the test, so a new kind
// cannot slip through unchecked.
const VALIDATORS: Readonly<Record<string, (doc: unknown) => void>> = {
  'v1/ConfigMap': (d) => new ConfigMap(d as never).validate(),
  'v1/Namespace': (d) => new Namespace(d as never).validate(),
  'v1/Service': (d) => new Service(d as never).validate(),
  'v1/ServiceAccount': (d) => new ServiceAccount(d as never).validate(),
  'apps/v1/Deployment': (d) => new Deployment(d as never).validate(),
  'apps/v1/DaemonSet': (d) => new DaemonSet(d as never).validate(),
};

// biome-ignore lint/suspicious/noExplicitAny: manifests are free-form YAML, inspected field by field
type Doc = Record<string, any>;

function yamlFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...yamlFiles(p));
    else if (/\.ya?ml$/.test(name)) out.push(p);
  }
  return out;
}

function loadDocs(file: string): Doc[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  const out: Doc[] = [];
  for (const d of Array.isArray(docs) ? docs : [docs]) {
    if (d.errors.length > 0) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
    const v = d.toJS() as Doc | null;
    if (v !== null) out.push(v);
  }
  return out;
}

/** Throws with the schema error when a document is not a valid object of its kind. */
function validateK8s(doc: Doc): void {
  const key = `${doc.apiVersion}/${doc.kind}`;
  const validate = VALIDATORS[key];
  if (validate === undefined) throw new Error(`no schema validator for ${key}`);
  validate(doc);
}

const files = yamlFiles(K8S);
const all = files.map((f) => ({ file: relative(K8S, f), docs: loadDocs(f) }));
const docsIn = (dir: string): Doc[] => all.filter((f) => f.file.startsWith(`${dir}/`)).flatMap((f) => f.docs);

t.test('the three examples are there', async (t) => {
  for (const dir of ['sidecar', 'node', 'bookinfo']) t.ok(docsIn(dir).length > 0, `${dir}/ has manifests`);
});

t.test('every manifest document validates against the Kubernetes schema', async (t) => {
  for (const { file, docs } of all) {
    for (const doc of docs) {
      t.doesNotThrow(() => validateK8s(doc), `${file}: ${doc.kind} ${doc.metadata?.name}`);
    }
  }
});

t.test('the schema check rejects what kubectl would reject', async (t) => {
  const dep = structuredClone(docsIn('sidecar').find((d) => d.kind === 'Deployment')) as Doc;
  dep.spec.template.spec.containers[0].ports[0].containerPort = 'nine';
  t.throws(() => validateK8s(dep), /containerPort/);
  const noImage = structuredClone(docsIn('node').find((d) => d.kind === 'DaemonSet')) as Doc;
  noImage.spec.template.spec.containers[0].name = undefined;
  t.throws(() => validateK8s(JSON.parse(JSON.stringify(noImage))), /name/);
  t.throws(
    () => validateK8s({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x' } }),
    /no schema validator/,
  );
});

t.test('the mesh configuration in every ConfigMap passes meshlet validate', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-k8s-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const meshFiles: string[] = [];
  for (const { file, docs } of all) {
    for (const doc of docs.filter((d) => d.kind === 'ConfigMap')) {
      for (const [key, text] of Object.entries(doc.data as Record<string, string>)) {
        if (!/\.ya?ml$/.test(key)) continue;
        const p = join(dir, `${doc.metadata.name}-${key}`);
        writeFileSync(p, text);
        meshFiles.push(p);
        const r = await runCli(['validate', p]);
        t.equal(r.code, 0, `${file}: ConfigMap ${doc.metadata.name} ${key}: ${r.stdout}${r.stderr}`);
        t.match(r.stdout, /0 error\(s\), 0 warning\(s\)/, `${doc.metadata.name}: no warnings`);
      }
    }
  }
  t.equal(meshFiles.length, 3, 'one mesh configuration per example');
  // The same extraction of a broken configuration fails, so the check above can fail.
  const broken = join(dir, 'broken.yaml');
  writeFileSync(broken, readFileSync(meshFiles[0] as string, 'utf8').replace(/number: 9080/, 'number: nine'));
  t.equal((await runCli(['validate', broken])).code, 2);
});

/** The meshlet container of a pod template, and checks every sidecar example shares. */
function checkMeshletContainer(t: Test, owner: string, pod: Doc, configMaps: Doc[]): Doc {
  const meshlet = (pod.spec.containers as Doc[]).find((c) => c.name === 'meshlet');
  t.ok(meshlet, `${owner}: has a meshlet container`);
  if (meshlet === undefined) return {};
  t.equal(meshlet.image, 'meshlet:0.1.0', `${owner}: image`);
  const args = meshlet.args as string[];
  t.equal(args[0], 'run', `${owner}: run`);
  const config = args[args.indexOf('--config') + 1] as string;
  const mount = (meshlet.volumeMounts as Doc[]).find((m) => config.startsWith(`${m.mountPath}/`));
  t.ok(mount, `${owner}: --config ${config} is inside a mounted volume`);
  t.equal(
    mount?.subPath,
    undefined,
    `${owner}: directory mount, no subPath (ConfigMap updates reach meshlet)`,
  );
  const volume = (pod.spec.volumes as Doc[]).find((v) => v.name === mount?.name);
  const cm = configMaps.find((c) => c.metadata.name === volume?.configMap?.name);
  t.ok(cm, `${owner}: the config volume is a ConfigMap of the same example`);
  t.ok(
    cm?.data?.[config.slice(`${mount?.mountPath}/`.length)],
    `${owner}: the ConfigMap has the key --config reads`,
  );
  t.ok(meshlet.readinessProbe, `${owner}: readiness probe`);
  t.ok(meshlet.livenessProbe, `${owner}: liveness probe`);
  t.ok(meshlet.resources?.requests && meshlet.resources?.limits, `${owner}: requests and limits`);
  const sc = { ...pod.spec.securityContext, ...meshlet.securityContext };
  t.equal(sc.runAsNonRoot, true, `${owner}: non-root`);
  t.equal(sc.readOnlyRootFilesystem, true, `${owner}: read-only root filesystem`);
  t.equal(sc.allowPrivilegeEscalation, false, `${owner}: no privilege escalation`);
  const ann = pod.metadata.annotations ?? {};
  t.same(
    [ann['prometheus.io/scrape'], ann['prometheus.io/port'], ann['prometheus.io/path']],
    ['true', '15000', '/metrics'],
    `${owner}: Prometheus scrape annotations`,
  );
  return meshlet;
}

/** An httpGet probe on the admin port (15000) asking `path`; `host` undefined means the pod IP. */
function probeReaches(probe: Doc | undefined, path: string, host: string | undefined): boolean {
  const get = probe?.httpGet as Doc | undefined;
  if (get === undefined || probe?.exec !== undefined) return false;
  return get.host === host && get.port === 15000 && get.path === path;
}

/** The value after `flag` in the args, or undefined. */
function flagValue(args: string[], flag: string): string | undefined {
  const i = args.indexOf(flag);
  return i < 0 ? undefined : args[i + 1];
}

t.test(
  'sidecar and bookinfo pods: app behind HTTP_PROXY, meshlet probed, scraped, locked down',
  async (t) => {
    for (const dir of ['sidecar', 'bookinfo']) {
      const docs = docsIn(dir);
      const configMaps = docs.filter((d) => d.kind === 'ConfigMap');
      const deployments = docs.filter((d) => d.kind === 'Deployment');
      t.ok(deployments.length > 0, `${dir}: deployments`);
      for (const d of deployments) {
        const owner = `${dir}/${d.metadata.name}`;
        const pod = d.spec.template;
        t.ok(pod.spec.hostNetwork !== true, `${owner}: own network namespace`);
        const meshlet = checkMeshletContainer(t, owner, pod, configMaps);
        // kubelet probes and Prometheus come from outside the pod: the admin port must listen on
        // the pod IP, and the probes are httpGet without a host (kubelet uses the pod IP).
        t.equal(
          flagValue(meshlet.args as string[], '--admin-host'),
          '0.0.0.0',
          `${owner}: --admin-host 0.0.0.0 (probes and scrape annotations reach the admin port)`,
        );
        t.ok(
          probeReaches(meshlet.readinessProbe, '/ready', undefined),
          `${owner}: readiness httpGet pod IP :15000/ready`,
        );
        t.ok(
          probeReaches(meshlet.livenessProbe, '/live', undefined),
          `${owner}: liveness httpGet pod IP :15000/live`,
        );
        const apps = (pod.spec.containers as Doc[]).filter((c) => c.name !== 'meshlet');
        t.equal(apps.length, 1, `${owner}: one app container`);
        const env = (apps[0]?.env ?? []) as Doc[];
        t.equal(
          env.find((e) => e.name === 'HTTP_PROXY')?.value,
          'http://127.0.0.1:15001',
          `${owner}: HTTP_PROXY`,
        );
        const sa = docs.find(
          (x) => x.kind === 'ServiceAccount' && x.metadata.name === pod.spec.serviceAccountName,
        );
        t.ok(sa, `${owner}: its ServiceAccount is in the example`);
        // Some Service selects this pod and sends its traffic to the meshlet inbound port.
        const labels = pod.metadata.labels as Record<string, string>;
        const svc = docs.find(
          (x) =>
            x.kind === 'Service' &&
            Object.entries(x.spec.selector as Record<string, string>).every(([k, v]) => labels[k] === v),
        );
        t.equal(svc?.spec.ports[0].targetPort, 15006, `${owner}: a Service targets the inbound port`);
      }
    }
    const dep = docsIn('sidecar').find((d) => d.kind === 'Deployment') as Doc;
    const meshlet = (dep.spec.template.spec.containers as Doc[]).find((c) => c.name === 'meshlet') as Doc;
    const idDir = (meshlet.args as string[])[(meshlet.args as string[]).indexOf('--identity-dir') + 1];
    t.equal(idDir, '/var/run/secrets/meshlet', 'sidecar: identity files from --identity-dir');
    const idMount = (meshlet.volumeMounts as Doc[]).find((m) => m.mountPath === idDir);
    const idVolume = (dep.spec.template.spec.volumes as Doc[]).find((v) => v.name === idMount?.name);
    t.ok(idVolume?.secret?.secretName, 'sidecar: the identity directory is a Secret');
  },
);

t.test('node DaemonSet: mode node, host network, probes on the node loopback', async (t) => {
  const docs = docsIn('node');
  const ds = docs.find((d) => d.kind === 'DaemonSet') as Doc;
  t.ok(ds, 'a DaemonSet');
  const pod = ds.spec.template;
  t.equal(pod.spec.hostNetwork, true, 'hostNetwork (the outbound listener is the node loopback)');
  t.equal(pod.spec.dnsPolicy, 'ClusterFirstWithHostNet', 'cluster DNS with hostNetwork');
  const meshlet = checkMeshletContainer(
    t,
    'node',
    pod,
    docs.filter((d) => d.kind === 'ConfigMap'),
  );
  t.ok(probeReaches(meshlet.readinessProbe, '/ready', '127.0.0.1'), 'readiness GET 127.0.0.1:15000/ready');
  t.ok(probeReaches(meshlet.livenessProbe, '/live', '127.0.0.1'), 'liveness GET 127.0.0.1:15000/live');
  const cm = docs.find((d) => d.kind === 'ConfigMap') as Doc;
  const proxy = loadYamlDocs(cm.data['config.yaml']).find((d) => d.kind === 'Proxy') as Doc;
  t.equal(proxy.spec.mode, 'node', 'Proxy mode: node');
  const inbound = (proxy.spec.workloads as Doc[]).map((w) => w.inboundPort).sort();
  const exposed = (meshlet.ports as Doc[]).map((p) => p.containerPort).sort();
  t.same(exposed, inbound, 'every workload inbound port is a container port');
});

function loadYamlDocs(text: string): Doc[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as Doc | null)
    .filter((d): d is Doc => d !== null);
}

t.test(
  'bookinfo mesh routes as Istio samples say (cluster DNS names swapped for loopback backends)',
  async (t) => {
    const cm = docsIn('bookinfo').find((d) => d.kind === 'ConfigMap') as Doc;
    let yaml = cm.data['mesh.yaml'] as string;
    const backends = new Map<string, number>();
    for (const name of ['reviews-v1', 'reviews-v2', 'reviews-v3', 'details']) {
      const b = await startEchoBackend(name);
      t.teardown(() => b.close());
      backends.set(name, b.port);
    }
    // Each endpoint `address: <svc>.default.svc.cluster.local` + `http: 9080` becomes 127.0.0.1:<port>.
    yaml = yaml.replace(
      /address: ([a-z0-9-]+)\.default\.svc\.cluster\.local\n(\s+)ports:\n(\s+)http: 9080/g,
      (_m, svc: string, i1: string, i2: string) =>
        `address: 127.0.0.1\n${i1}ports:\n${i2}http: ${backends.get(svc) ?? 9}`,
    );
    t.notMatch(yaml, /address: [a-z-]+\.default\.svc/, 'every endpoint replaced');
    const m = await spawnMeshlet(yaml, { engine: 'h1' });
    t.teardown(() => m.stop());
    const call = async (host: string, headers: Record<string, string> = {}): Promise<string> => {
      const r = await request(m.url('/x'), { headers: { host, ...headers } });
      return ((await r.body.json()) as Echo).name;
    };
    t.equal(await call('reviews:9080'), 'reviews-v3', 'reviews: everyone else gets v3');
    t.equal(await call('reviews:9080', { 'end-user': 'jason' }), 'reviews-v2', 'reviews: jason gets v2');
    t.equal(await call('details:9080'), 'details', 'details: v1');
  },
);
