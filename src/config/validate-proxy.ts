/**
 * `meshlet.dev/v1alpha1` `Proxy`: this process's bootstrap. It is our own kind, so validation
 * is strict: an unknown field is an error, nested ones (`retryBudget.*`) included.
 */
import type { ProxySpec } from './resource-types.ts';
import { capTimerMs } from './runtime-settings.ts';
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
  'app',
  'engine',
  'logLevel',
  'outboundTrafficPolicy',
  'drainTimeout',
  'accessLog',
  'retryBudget',
  'dnsRefreshRate',
] as const;

const RETRY_BUDGET_FIELDS = ['retryRatio', 'minRetriesPerSecond', 'ttl'] as const;

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const DOMAIN = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;

export function validateProxy(spec: MapView): ProxySpec {
  spec.checkFields(FIELDS, { strict: true });
  const mode = spec.get('mode').enumOf(['sidecar', 'node'] as const);
  const nsView = spec.get('namespace');
  const namespace = nsView.string();
  if (namespace !== undefined && !DNS_LABEL.test(namespace)) {
    nsView.error(`namespace "${namespace}" must be a DNS label`);
  }
  const workloadName = spec.get('workloadName').string();
  const serviceAccount = spec.get('serviceAccount').string();
  const labels = spec.get('labels').stringMap();
  const trustDomain = spec.get('trustDomain').string();
  const dsView = spec.get('domainSuffix');
  const domainSuffix = dsView.string()?.toLowerCase();
  if (domainSuffix !== undefined && !DOMAIN.test(domainSuffix)) {
    dsView.error(`domainSuffix "${domainSuffix}" is not a valid domain`);
  }
  const outboundPort = spec.get('outboundPort').port(true);
  const inboundPort = spec.get('inboundPort').port(true);
  const adminPort = spec.get('adminPort').port(true);
  const appView = spec.get('app');
  const app = appView.string();
  if (app !== undefined) {
    const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+):(\d{1,5})$/.exec(app);
    const port = m === null ? Number.NaN : Number(m[2]);
    if (m === null || port < 1 || port > 65535) appView.error(`app "${app}" must be HOST:PORT`);
  }
  const engine = spec.get('engine').enumOf(['h1', 'uws', 'node'] as const);
  const logLevel = spec.get('logLevel').enumOf(['debug', 'info', 'warn', 'error'] as const);
  const outboundTrafficPolicy = spec
    .get('outboundTrafficPolicy')
    .enumOf(['ALLOW_ANY', 'REGISTRY_ONLY'] as const);
  const drainView = spec.get('drainTimeout');
  const drainMs = drainView.duration({ minMs: 0 });
  const drainTimeoutMs = drainMs === undefined ? undefined : capTimerMs(drainView, drainMs);
  const accessLog = spec.get('accessLog').bool();
  const retryBudget = spec.has('retryBudget') ? parseRetryBudget(spec.get('retryBudget')) : undefined;
  const dnsView = spec.get('dnsRefreshRate');
  const dnsMs = atLeastOneSecond(dnsView, 'dnsRefreshRate');
  const dnsRefreshRate = dnsMs === undefined ? undefined : capTimerMs(dnsView, dnsMs);
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
    ...(app !== undefined ? { app } : {}),
    ...(engine !== undefined ? { engine } : {}),
    ...(logLevel !== undefined ? { logLevel } : {}),
    ...(outboundTrafficPolicy !== undefined ? { outboundTrafficPolicy } : {}),
    ...(drainTimeoutMs !== undefined ? { drainTimeoutMs } : {}),
    ...(accessLog !== undefined ? { accessLog } : {}),
    ...(retryBudget !== undefined ? { retryBudget } : {}),
    ...(dnsRefreshRate !== undefined ? { dnsRefreshRate } : {}),
  };
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
