/**
 * DestinationRule validation and normalization (spec §3). Traffic-policy components are checked
 * against the Istio schema and kept as plain data, durations converted to milliseconds (see the
 * convention next to `TrafficPolicy` in resource-types.ts).
 */
import { type Plain, readObject, type Schema } from './plain-schema.ts';
import type { DestinationRuleSpec, Subset, TrafficPolicy } from './resource-types.ts';
import { parseExpandedHost, parseSelector, type Scope, stringListOrEmpty } from './validate-common.ts';
import type { MapView, View } from './yaml-view.ts';

const oneOf =
  (keys: readonly string[], required: boolean, what: string) =>
  (m: MapView): void => {
    const present = m.exclusive(keys, what);
    if (required && present.length === 0) m.error(`${what}: one of ${keys.join(', ')} is required`);
  };

const requireFields =
  (keys: readonly string[]) =>
  (m: MapView): void => {
    for (const k of keys) m.get(k).require(k);
  };

const isPrime = (n: number): boolean => {
  if (n < 2) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
};

const CONSISTENT_HASH: Schema = {
  object: {
    httpHeaderName: 'string',
    httpCookie: {
      object: {
        name: 'string',
        path: 'string',
        ttl: 'duration0',
        attributes: { list: { object: { name: 'string', value: 'string' }, check: requireFields(['name']) } },
      },
      check: requireFields(['name']),
    },
    useSourceIp: 'bool',
    httpQueryParameterName: 'string',
    ringHash: { object: { minimumRingSize: 'uint' } },
    maglev: {
      object: { tableSize: 'uint' },
      check: (m) => {
        const v = m.get('tableSize');
        const n = v.node?.toJSON();
        if (typeof n === 'number' && n !== 0 && (!isPrime(n) || n >= 5000011)) {
          v.error('maglev tableSize must be a prime number below 5000011');
        }
      },
    },
    minimumRingSize: 'uint',
  },
  check: (m) => {
    oneOf(
      ['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName'],
      true,
      'consistentHash hash key',
    )(m);
    oneOf(['ringHash', 'maglev'], false, 'consistentHash algorithm')(m);
    if (m.has('minimumRingSize') && (m.has('ringHash') || m.has('maglev'))) {
      m.get('minimumRingSize').error('minimumRingSize cannot be used together with ringHash or maglev');
    }
  },
};

const DISTRIBUTE: Schema = {
  list: { object: { from: 'string', to: { map: { int: [0, 100] } } } },
};

const LOAD_BALANCER: Schema = {
  object: {
    simple: { enum: ['UNSPECIFIED', 'LEAST_CONN', 'RANDOM', 'PASSTHROUGH', 'ROUND_ROBIN', 'LEAST_REQUEST'] },
    consistentHash: CONSISTENT_HASH,
    localityLbSetting: {
      object: {
        distribute: DISTRIBUTE,
        failover: { list: { object: { from: 'string', to: 'string' } } },
        failoverPriority: { list: 'string' },
        enabled: 'bool',
      },
    },
    warmupDurationSecs: 'duration',
    warmup: {
      object: { duration: 'duration', minimumPercent: 'number', aggression: 'number' },
      check: requireFields(['duration']),
    },
  },
  check: (m) => {
    oneOf(['simple', 'consistentHash'], false, 'loadBalancer policy')(m);
    oneOf(['warmupDurationSecs', 'warmup'], false, 'loadBalancer warmup')(m);
  },
};

const TCP_KEEPALIVE: Schema = { object: { probes: 'uint', time: 'duration', interval: 'duration' } };

const CONNECTION_POOL: Schema = {
  object: {
    tcp: {
      object: {
        maxConnections: { int: [0, 2147483647] },
        connectTimeout: 'duration',
        tcpKeepalive: TCP_KEEPALIVE,
        maxConnectionDuration: 'duration',
        idleTimeout: 'duration0',
      },
    },
    http: {
      object: {
        http1MaxPendingRequests: { int: [0, 2147483647] },
        http2MaxRequests: { int: [0, 2147483647] },
        maxRequestsPerConnection: { int: [0, 2147483647] },
        maxRetries: { int: [0, 2147483647] },
        idleTimeout: 'duration0',
        h2UpgradePolicy: { enum: ['DEFAULT', 'DO_NOT_UPGRADE', 'UPGRADE'] },
        useClientProtocol: 'bool',
        maxConcurrentStreams: { int: [0, 2147483647] },
        http2KeepAlive: { object: { interval: 'duration', timeout: 'duration' } },
      },
    },
  },
};

const OUTLIER_DETECTION: Schema = {
  object: {
    consecutiveErrors: { int: [0, 2147483647] },
    consecutiveLocalOriginFailures: 'uint',
    consecutiveGatewayErrors: 'uint',
    consecutive5xxErrors: 'uint',
    splitExternalLocalOriginErrors: 'bool',
    interval: 'duration',
    baseEjectionTime: 'duration',
    maxEjectionPercent: { int: [0, 100] },
    minHealthPercent: { int: [0, 100] },
    outlierDetectionHttpErrorCodes: { list: { int: [100, 599] } },
  },
};

const TLS_MODES = ['DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL'] as const;

const CLIENT_TLS: Schema = {
  object: {
    mode: { enum: TLS_MODES },
    clientCertificate: 'string',
    privateKey: 'string',
    caCertificates: 'string',
    credentialName: 'string',
    subjectAltNames: { list: 'string' },
    sni: 'string',
    insecureSkipVerify: 'bool',
    caCrl: 'string',
  },
  check: (m) => {
    const mode = m.get('mode').node?.toJSON();
    if (mode === 'MUTUAL' && !m.has('credentialName')) {
      for (const k of ['clientCertificate', 'privateKey']) {
        if (!m.has(k)) m.get(k).error(`${k} is required for mode MUTUAL (or set credentialName)`);
      }
    }
    if (mode === 'ISTIO_MUTUAL') {
      for (const k of ['clientCertificate', 'privateKey', 'caCertificates', 'credentialName', 'caCrl']) {
        if (m.has(k)) m.get(k).error(`${k} must not be set with mode ISTIO_MUTUAL`);
      }
    }
  },
};

const COMPONENTS = {
  loadBalancer: LOAD_BALANCER,
  connectionPool: CONNECTION_POOL,
  outlierDetection: OUTLIER_DETECTION,
  tls: CLIENT_TLS,
} as const;

type ComponentName = keyof typeof COMPONENTS;
const COMPONENT_NAMES = Object.keys(COMPONENTS) as ComponentName[];

type Components = { -readonly [K in ComponentName]?: Readonly<Record<string, unknown>> };

/** Validated now, acted on by later work: each present component is a warning naming it. */
const NOT_ACTED_ON: Readonly<
  Record<ComponentName, (value: Readonly<Record<string, unknown>>) => string | null>
> = {
  loadBalancer: () =>
    'loadBalancer is validated but not acted on yet; endpoints are balanced by weighted round robin',
  connectionPool: () =>
    'connectionPool is validated but not acted on yet; no connection or request limits apply',
  outlierDetection: () => 'outlierDetection is validated but not acted on yet; no endpoint is ejected',
  tls: (value) =>
    value['mode'] === undefined || value['mode'] === 'DISABLE'
      ? null
      : `tls mode ${String(value['mode'])} is not implemented yet: meshlet sends plaintext to this destination`,
};

function readComponents(m: MapView): Components {
  const out: Components = {};
  for (const name of COMPONENT_NAMES) {
    const schema = COMPONENTS[name];
    const view = m.get(name);
    if (!view.present) continue;
    const mm = view.map();
    if (mm === undefined || typeof schema === 'string' || !('object' in schema)) continue;
    const value: Record<string, Plain> = readObject(mm, schema);
    out[name] = value;
    const warning = NOT_ACTED_ON[name](value);
    if (warning !== null) view.warn(warning);
  }
  return out;
}

function parseTrafficPolicy(view: View): TrafficPolicy | undefined {
  const m = view.map();
  if (m === undefined) return undefined;
  m.checkFields([...COMPONENT_NAMES, 'portLevelSettings'], {
    notImplemented: {
      tunnel: 'tunnel is not implemented; ignored',
      proxyProtocol: 'proxyProtocol is not implemented; ignored',
      retryBudget: 'retryBudget is not implemented yet; ignored',
    },
  });
  const top = readComponents(m);
  const portLevelSettings: Array<TrafficPolicy['portLevelSettings'][number]> = [];
  for (const item of m.get('portLevelSettings').list() ?? []) {
    const pm = item.map();
    if (pm === undefined) continue;
    pm.checkFields([...COMPONENT_NAMES, 'port']);
    const portView = pm.get('port');
    let port: number | undefined;
    if (portView.require('port')) {
      const portMap = portView.map();
      if (portMap !== undefined) {
        portMap.checkFields(['number']);
        const num = portMap.get('number');
        if (num.require('port.number')) port = num.port();
      }
    }
    const components = readComponents(pm);
    if (port === undefined) continue;
    if (portLevelSettings.some((e) => e.port === port)) {
      portView.error(`duplicate portLevelSettings entry for port ${port}`);
      continue;
    }
    portLevelSettings.push({ port, ...components });
  }
  return { ...top, portLevelSettings };
}

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export function validateDestinationRule(spec: MapView, scope: Scope): DestinationRuleSpec | undefined {
  spec.checkFields(['host', 'trafficPolicy', 'subsets', 'exportTo', 'workloadSelector']);
  const hostView = spec.get('host');
  const host = hostView.require('host') ? parseExpandedHost(hostView, scope, true) : undefined;
  const trafficPolicy = spec.has('trafficPolicy') ? parseTrafficPolicy(spec.get('trafficPolicy')) : undefined;
  const subsets: Subset[] = [];
  for (const item of spec.get('subsets').list() ?? []) {
    const sm = item.map();
    if (sm === undefined) {
      if (!item.present) item.error('subset must not be empty');
      continue;
    }
    sm.checkFields(['name', 'labels', 'trafficPolicy']);
    const nameView = sm.get('name');
    const name = nameView.require('subset name') ? nameView.string() : undefined;
    if (name === undefined) continue;
    if (!DNS_LABEL.test(name)) {
      nameView.error(`subset name "${name}" must be a DNS label (lowercase letters, digits and "-")`);
      continue;
    }
    if (subsets.some((s) => s.name === name)) {
      nameView.error(`duplicate subset name "${name}"`);
      continue;
    }
    const labels = sm.get('labels').stringMap() ?? {};
    const tp = sm.has('trafficPolicy') ? parseTrafficPolicy(sm.get('trafficPolicy')) : undefined;
    subsets.push({ name, labels, ...(tp !== undefined ? { trafficPolicy: tp } : {}) });
  }
  const exportTo = stringListOrEmpty(spec, 'exportTo');
  const workloadSelector = spec.has('workloadSelector')
    ? parseSelector(spec.get('workloadSelector'), 'matchLabels')
    : undefined;
  if (host === undefined) return undefined;
  return {
    host,
    subsets,
    ...(trafficPolicy !== undefined ? { trafficPolicy } : {}),
    exportTo,
    ...(workloadSelector !== undefined ? { workloadSelector } : {}),
  };
}
