/**
 * `meshlet.dev/v1alpha1` `Proxy`: this process's bootstrap. It is our own kind, so validation
 * is strict: an unknown field is an error.
 */
import type { ProxySpec } from './resource-types.ts';
import type { MapView } from './yaml-view.ts';

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
] as const;

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
  const drainTimeoutMs = spec.get('drainTimeout').duration({ minMs: 0 });
  const accessLog = spec.get('accessLog').bool();
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
  };
}
