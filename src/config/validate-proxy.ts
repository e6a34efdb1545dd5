import { isIP } from 'node:net';
/**
 * `meshlet.dev/v1alpha1` `Proxy`: this process's bootstrap. It is our own kind, so validation
 * is strict: an unknown field is an error, nested ones (`retryBudget.*`, `identity.*`,
 * `workloads[].*`) included.
 *
 * Identity (`identity`, and `workloads[].identity` in node mode) has one of two shapes:
 *
 *     identity:
 *       ca: {certFile: ca/cert.pem, keyFile: ca/key.pem, trustBundleFile: old-roots.pem, certTtl: 24h}
 *     identity:
 *       files: {certFile: /var/run/certs/cert.pem, keyFile: /var/run/certs/key.pem, trustBundleFile: /var/run/certs/ca.pem}
 *
 * `ca`: the proxy issues its own short-lived workload certificates from this CA, in memory.
 * `files`: certificate, key and bundle written by someone else (cert-manager, SPIRE), watched.
 * Relative paths are resolved against the directory of the configuration file that names them, so
 * a configuration folder can carry its certificates beside it. Whether the files exist is not
 * checked here: managed files may appear after start-up (the proxy stays unready until they do).
 */
import { dirname, isAbsolute, resolve } from 'node:path';
import type { IdentitySettings, ProxySpec, WorkloadSpec } from './resource-types.ts';
import { capTimerMs, DEFAULTS, parseHostPort } from './runtime-settings.ts';
import { parseAccessLog } from './validate-access-log.ts';
import {
  DNS_SUBDOMAIN,
  isServiceAccountName,
  labelKeyProblem,
  labelValueProblem,
  TRUST_DOMAIN,
} from './validate-common.ts';
import { parseTracing } from './validate-tracing.ts';
import type { MapView, View } from './yaml-view.ts';

const FIELDS = [
  'mode',
  'namespace',
  'workloadName',
  'serviceAccount',
  'labels',
  'trustDomain',
  'domainSuffix',
  'outboundPort',
  'inboundPort',
  'adminPort',
  'adminHost',
  'app',
  'engine',
  'logLevel',
  'outboundTrafficPolicy',
  'drainTimeout',
  'accessLog',
  'tracing',
  'retryBudget',
  'dnsRefreshRate',
  'rootNamespace',
  'identity',
  'workloads',
] as const;

const WORKLOAD_FIELDS = [
  'name',
  'namespace',
  'serviceAccount',
  'labels',
  'inboundPort',
  'app',
  'identity',
] as const;

const RETRY_BUDGET_FIELDS = ['retryRatio', 'minRetriesPerSecond', 'ttl'] as const;

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Workload certificate lifetimes: short is the point, but shorter than a minute is renewal churn. */
const MIN_CERT_TTL_MS = 60_000;
/** Istio's default upper bound for workload certificates (MAX_WORKLOAD_CERT_TTL, 90 days). */
const MAX_CERT_TTL_MS = 90 * 86_400_000;

export function validateProxy(spec: MapView): ProxySpec {
  spec.checkFields(FIELDS, { strict: true });
  const mode = spec.get('mode').enumOf(['sidecar', 'node'] as const);
  const nsView = spec.get('namespace');
  const namespace = nsView.string();
  if (namespace !== undefined && !DNS_LABEL.test(namespace)) {
    nsView.error(`namespace "${namespace}" must be a DNS label`);
  }
  const workloadName = spec.get('workloadName').string();
  const serviceAccount = parseServiceAccount(spec.get('serviceAccount'));
  const labels = parseLabels(spec.get('labels'));
  const tdView = spec.get('trustDomain');
  const trustDomain = tdView.string();
  if (trustDomain !== undefined && !TRUST_DOMAIN.test(trustDomain)) {
    tdView.error(
      `trustDomain "${trustDomain}" must be a SPIFFE trust domain: lower-case letters, digits, ".", "_" and "-"`,
    );
  }
  const rootView = spec.get('rootNamespace');
  const rootNamespace = rootView.string();
  if (rootNamespace !== undefined && !DNS_LABEL.test(rootNamespace)) {
    rootView.error(`rootNamespace "${rootNamespace}" must be a DNS label`);
  }
  const dsView = spec.get('domainSuffix');
  const domainSuffix = dsView.string()?.toLowerCase();
  if (domainSuffix !== undefined && !DNS_SUBDOMAIN.test(domainSuffix)) {
    dsView.error(`domainSuffix "${domainSuffix}" is not a valid domain`);
  }
  const outboundPort = spec.get('outboundPort').port(true);
  const inboundPort = spec.get('inboundPort').port(true);
  const adminPort = spec.get('adminPort').port(true);
  const adminHostView = spec.get('adminHost');
  const adminHost = adminHostView.string();
  if (adminHost !== undefined && isIP(adminHost) === 0) {
    adminHostView.error(`adminHost "${adminHost}" must be an IP address (e.g. 127.0.0.1 or 0.0.0.0)`);
  }
  const app = parseApp(spec.get('app'));
  const engine = spec.get('engine').enumOf(['h1', 'uws', 'node'] as const);
  const logLevel = spec.get('logLevel').enumOf(['debug', 'info', 'warn', 'error'] as const);
  const outboundTrafficPolicy = spec
    .get('outboundTrafficPolicy')
    .enumOf(['ALLOW_ANY', 'REGISTRY_ONLY'] as const);
  const drainView = spec.get('drainTimeout');
  const drainMs = drainView.duration({ minMs: 0 });
  const drainTimeoutMs = drainMs === undefined ? undefined : capTimerMs(drainView, drainMs);
  const accessLog = parseAccessLog(spec.get('accessLog'));
  const tracing = spec.has('tracing') ? parseTracing(spec.get('tracing')) : undefined;
  const retryBudget = spec.has('retryBudget') ? parseRetryBudget(spec.get('retryBudget')) : undefined;
  const dnsView = spec.get('dnsRefreshRate');
  const dnsMs = atLeastOneSecond(dnsView, 'dnsRefreshRate');
  const dnsRefreshRate = dnsMs === undefined ? undefined : capTimerMs(dnsView, dnsMs);
  const identity = spec.has('identity') ? parseIdentity(spec.get('identity')) : undefined;
  const workloads = spec.has('workloads')
    ? parseWorkloads(spec.get('workloads'), [
        ['outboundPort', outboundPort ?? DEFAULTS.outboundPort],
        ['adminPort', adminPort ?? DEFAULTS.adminPort],
      ])
    : undefined;
  checkMode(spec, mode, workloads, identity);
  return {
    ...(mode !== undefined ? { mode } : {}),
    ...(namespace !== undefined ? { namespace } : {}),
    ...(workloadName !== undefined ? { workloadName } : {}),
    ...(serviceAccount !== undefined ? { serviceAccount } : {}),
    ...(labels !== undefined ? { labels } : {}),
    ...(trustDomain !== undefined ? { trustDomain } : {}),
    ...(domainSuffix !== undefined ? { domainSuffix } : {}),
    ...(outboundPort !== undefined ? { outboundPort } : {}),
    ...(inboundPort !== undefined ? { inboundPort } : {}),
    ...(adminPort !== undefined ? { adminPort } : {}),
    ...(adminHost !== undefined && isIP(adminHost) !== 0 ? { adminHost } : {}),
    ...(app !== undefined ? { app } : {}),
    ...(engine !== undefined ? { engine } : {}),
    ...(logLevel !== undefined ? { logLevel } : {}),
    ...(outboundTrafficPolicy !== undefined ? { outboundTrafficPolicy } : {}),
    ...(drainTimeoutMs !== undefined ? { drainTimeoutMs } : {}),
    ...(accessLog !== undefined ? { accessLog } : {}),
    ...(tracing !== undefined ? { tracing } : {}),
    ...(retryBudget !== undefined ? { retryBudget } : {}),
    ...(dnsRefreshRate !== undefined ? { dnsRefreshRate } : {}),
    ...(rootNamespace !== undefined ? { rootNamespace } : {}),
    ...(identity !== undefined ? { identity } : {}),
    ...(workloads !== undefined ? { workloads } : {}),
  };
}

/** `HOST:PORT` with a port in 1-65535. */
function parseApp(view: View): string | undefined {
  const app = view.string();
  if (app === undefined) return undefined;
  // Only the HOST:PORT form: the bare port parseHostPort also takes is the --app flag's shorthand.
  if (!app.includes(':') || parseHostPort(app) === null) {
    view.error(`app "${app}" must be HOST:PORT`);
    return undefined;
  }
  return app;
}

function parseServiceAccount(view: View): string | undefined {
  const sa = view.string();
  if (sa === undefined) return undefined;
  if (!isServiceAccountName(sa)) {
    view.error(`serviceAccount "${sa}" must be a Kubernetes service account name (a DNS subdomain)`);
    return undefined;
  }
  return sa;
}

/** Workload labels: policies select workloads by them, so they follow Kubernetes label syntax. */
function parseLabels(view: View): Record<string, string> | undefined {
  const labels = view.stringMap();
  if (labels === undefined) return undefined;
  const m = view.map();
  for (const { key, value } of m?.entries() ?? []) {
    const problem = labelKeyProblem(key) ?? labelValueProblem(labels[key] ?? '');
    if (problem !== null) value.error(`invalid label "${key}": ${problem}`);
  }
  return labels;
}

/** A path, resolved against the directory of the file that names it. */
function parsePath(view: View, field: string): string | undefined {
  if (!view.require(field)) return undefined;
  const p = view.string();
  if (p === undefined) return undefined;
  if (p === '') {
    view.error(`${field} must not be empty`);
    return undefined;
  }
  return isAbsolute(p) ? p : resolve(dirname(resolve(view.ctx.file)), p);
}

/** `identity: {ca: {...}}` or `identity: {files: {...}}`, exactly one. */
function parseIdentity(view: View): IdentitySettings | undefined {
  const m = view.map();
  if (m === undefined) return undefined;
  m.checkFields(['ca', 'files'], { strict: true });
  const present = m.exclusive(['ca', 'files'], 'identity comes from one source');
  if (present.length === 0) {
    m.error('identity needs ca (issue certificates from a CA) or files (certificates managed outside)');
    return undefined;
  }
  if (present.length > 1) return undefined;
  if (present[0] === 'ca') {
    const ca = m.get('ca').map();
    if (ca === undefined) return undefined;
    ca.checkFields(['certFile', 'keyFile', 'trustBundleFile', 'certTtl'], { strict: true });
    const caCertFile = parsePath(ca.get('certFile'), 'certFile');
    const caKeyFile = parsePath(ca.get('keyFile'), 'keyFile');
    const bundleView = ca.get('trustBundleFile');
    const trustBundleFile = bundleView.present ? parsePath(bundleView, 'trustBundleFile') : undefined;
    const ttlView = ca.get('certTtl');
    const certTtl = ttlView.duration();
    let ttlOk = true;
    if (certTtl !== undefined && (certTtl < MIN_CERT_TTL_MS || certTtl > MAX_CERT_TTL_MS)) {
      ttlView.error('certTtl must be between 1m and 2160h (90 days)');
      ttlOk = false;
    }
    if (caCertFile === undefined || caKeyFile === undefined || !ttlOk) return undefined;
    if (bundleView.present && trustBundleFile === undefined) return undefined;
    return {
      kind: 'ca',
      caCertFile,
      caKeyFile,
      ...(trustBundleFile !== undefined ? { trustBundleFile } : {}),
      ...(certTtl !== undefined ? { certTtl } : {}),
    };
  }
  const files = m.get('files').map();
  if (files === undefined) return undefined;
  files.checkFields(['certFile', 'keyFile', 'trustBundleFile'], { strict: true });
  const certFile = parsePath(files.get('certFile'), 'certFile');
  const keyFile = parsePath(files.get('keyFile'), 'keyFile');
  const trustBundleFile = parsePath(files.get('trustBundleFile'), 'trustBundleFile');
  if (certFile === undefined || keyFile === undefined || trustBundleFile === undefined) return undefined;
  return { kind: 'files', certFile, keyFile, trustBundleFile };
}

/**
 * Node mode's `workloads[]`. Names and non-zero inbound ports are unique, and an inbound port may
 * not be the outbound or admin port (0 means "pick one", so several zeros do not clash).
 */
function parseWorkloads(
  view: View,
  reserved: ReadonlyArray<readonly [string, number]>,
): WorkloadSpec[] | undefined {
  const items = view.list();
  if (items === undefined) return undefined;
  const out: WorkloadSpec[] = [];
  const names = new Set<string>();
  const ports = new Map<number, string>();
  let ok = true;
  for (const item of items) {
    const m = item.map();
    if (m === undefined) {
      if (!item.present) item.error('a workload must not be null');
      ok = false;
      continue;
    }
    m.checkFields(WORKLOAD_FIELDS, { strict: true });
    const nameView = m.get('name');
    let name = nameView.require('name') ? nameView.string() : undefined;
    if (name !== undefined && !DNS_SUBDOMAIN.test(name)) {
      nameView.error(`workload name "${name}" must be a lowercase DNS name`);
      name = undefined;
    } else if (name !== undefined && names.has(name)) {
      nameView.error(`duplicate workload name "${name}"`);
      name = undefined;
    }
    if (name !== undefined) names.add(name);
    const nsView = m.get('namespace');
    const namespace = nsView.string();
    if (namespace !== undefined && !DNS_LABEL.test(namespace)) {
      nsView.error(`namespace "${namespace}" must be a DNS label`);
    }
    const serviceAccount = parseServiceAccount(m.get('serviceAccount'));
    const labels = parseLabels(m.get('labels'));
    const portView = m.get('inboundPort');
    let inboundPort = portView.require('inboundPort') ? portView.port(true) : undefined;
    if (inboundPort !== undefined && inboundPort !== 0) {
      const clash = reserved.find(([, p]) => p === inboundPort)?.[0] ?? ports.get(inboundPort);
      if (clash !== undefined) {
        portView.error(`inboundPort ${inboundPort} is already used by ${clash}`);
        inboundPort = undefined;
      } else ports.set(inboundPort, `workload ${name ?? '?'}`);
    }
    const appView = m.get('app');
    const app = appView.require('app') ? parseApp(appView) : undefined;
    const identity = m.has('identity') ? parseIdentity(m.get('identity')) : undefined;
    if (name === undefined || inboundPort === undefined || app === undefined) {
      ok = false;
      continue;
    }
    out.push({
      name,
      ...(namespace !== undefined ? { namespace } : {}),
      ...(serviceAccount !== undefined ? { serviceAccount } : {}),
      ...(labels !== undefined ? { labels } : {}),
      inboundPort,
      app,
      ...(identity !== undefined ? { identity } : {}),
    });
  }
  return ok ? out : undefined;
}

/**
 * Sidecar mode serves one workload (the Proxy's own `app`, `inboundPort`, `serviceAccount`); node
 * mode serves `workloads[]` and needs at least one.
 */
function checkMode(
  spec: MapView,
  mode: ProxySpec['mode'],
  workloads: readonly WorkloadSpec[] | undefined,
  identity: IdentitySettings | undefined,
): void {
  const workloadsView = spec.get('workloads');
  if (mode !== 'node') {
    if (workloadsView.present) {
      workloadsView.error('workloads are only used with mode: node; a sidecar serves one workload (its app)');
    }
    return;
  }
  if (!workloadsView.present || workloadsView.list()?.length === 0) {
    (workloadsView.present ? workloadsView : spec.get('mode')).error(
      'mode: node needs workloads (each with a name, an inboundPort and an app)',
    );
    return;
  }
  for (const key of ['app', 'inboundPort'] as const) {
    if (spec.has(key)) {
      spec.get(key).warn(`${key} is not used in node mode: each workload has its own`);
    }
  }
  // A certificate names one service account. Several workloads sharing one set of files would all
  // present the same identity, and a policy allowing one of them would allow them all.
  if (identity?.kind === 'files' && workloads !== undefined) {
    const items = workloadsView.list() ?? [];
    workloads.forEach((w, i) => {
      if (w.identity === undefined && workloads.length > 1) {
        (items[i] ?? workloadsView).error(
          `workload ${w.name} needs its own identity: the Proxy's identity.files holds one certificate (one service account); give each workload identity.files, or use identity.ca to issue one per workload`,
        );
      }
    });
  }
}

/**
 * `retryBudget {retryRatio, minRetriesPerSecond, ttl}` (Linkerd's budget; absent fields take the
 * defaults in runtime-settings.ts). `retryRatio` is at most 1: retries may at most double the load
 * on a cluster, which is already far beyond what a budget is for (Linkerd's default is 0.2).
 */
function parseRetryBudget(view: View): NonNullable<ProxySpec['retryBudget']> | undefined {
  const m = view.map();
  if (m === undefined) return undefined;
  m.checkFields(RETRY_BUDGET_FIELDS, { strict: true });
  const retryRatio = m.get('retryRatio').number({ min: 0, max: 1 });
  const minRetriesPerSecond = m.get('minRetriesPerSecond').int({ min: 0, max: 4294967295 });
  const ttl = atLeastOneSecond(m.get('ttl'), 'ttl');
  return {
    ...(retryRatio !== undefined ? { retryRatio } : {}),
    ...(minRetriesPerSecond !== undefined ? { minRetriesPerSecond } : {}),
    ...(ttl !== undefined ? { ttl } : {}),
  };
}

/**
 * A duration of at least one second, in ms. Shorter retry-budget windows make the per-second floor
 * a fraction of a retry, and shorter DNS refreshes turn into a lookup storm.
 */
function atLeastOneSecond(view: View, name: string): number | undefined {
  const ms = view.duration();
  if (ms === undefined) return undefined;
  if (ms < 1000) {
    view.error(`${name} must be at least 1s`);
    return undefined;
  }
  return ms;
}
