/**
 * DestinationRule validation and normalization (spec §3). Traffic-policy components are checked
 * against the Istio schema and kept as plain data, durations converted to milliseconds (see the
 * convention next to `TrafficPolicy` in resource-types.ts).
 *
 * meshlet acts on `loadBalancer` (simple and consistentHash), `connectionPool` and
 * `outlierDetection`; the few sub-fields it does not act on are warnings naming the field (see
 * `AFTER_SCHEMA`). Values that would break the runtime (a header or cookie name that is not a
 * token, a cookie path that would split the Set-Cookie line, a ring Envoy would refuse) are errors;
 * durations that become timers are capped at what a Node.js timer can wait, with a warning.
 *
 * `tls` is acted on (mTLS and TLS origination): the certificate, key and CA paths are resolved
 * against the folder of the configuration file. A file that cannot be read when the configuration
 * is loaded is a warning naming the field and the path, not an error: Istio's own samples name
 * files that live in the proxy's container (`se-example.yaml`), and secrets are often mounted after
 * the configuration. Connections to that destination then fail (`UF`, the reason logged) until the
 * file is there.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { type Plain, readObject, type Schema } from './plain-schema.ts';
import type { DestinationRuleSpec, Subset, TrafficPolicy } from './resource-types.ts';
import { capTimerMs } from './runtime-settings.ts';
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

/** RFC 9110 token: what a header name, a cookie name (RFC 6265) and a cookie attribute name are. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** RFC 6265 path-value / extension-av: printable ASCII (space to "~") except ";". */
const COOKIE_AV = /^[ -:<-~]*$/;
const TOKEN_CHARS = "letters, digits and !#$%&'*+-.^_`|~";

/** Errors unless the string at `key` (when it is one) is an RFC 9110 token. */
const tokenField =
  (key: string, what: string) =>
  (m: MapView): void => {
    const v = m.get(key);
    if (v.typeName() !== 'string') return;
    const s = String(v.node?.toJSON());
    if (!TOKEN.test(s)) v.error(`${what} "${s}" is not a valid ${what} (a token: ${TOKEN_CHARS})`);
  };

/** Errors when the string at `key` would end the Set-Cookie attribute it is written into. */
const cookieAttributeValue =
  (key: string, what: string) =>
  (m: MapView): void => {
    const v = m.get(key);
    if (v.typeName() !== 'string') return;
    if (!COOKIE_AV.test(String(v.node?.toJSON()))) {
      v.error(`${what} must be printable ASCII without ";" (it is written into Set-Cookie)`);
    }
  };

/** Envoy's upper bound for `minimum_ring_size` (8M entries): Envoy refuses a larger ring. */
const MAX_RING_SIZE = 8_388_608;

const ringSize = (key: string) => (m: MapView) => {
  const v = m.get(key);
  const n = v.node?.toJSON();
  if (typeof n === 'number' && n > MAX_RING_SIZE) {
    v.error(`${key} ${n} is above ${MAX_RING_SIZE}, the largest ring Envoy builds`);
  }
};

const CONSISTENT_HASH: Schema = {
  object: {
    httpHeaderName: 'string',
    httpCookie: {
      object: {
        name: 'string',
        path: 'string',
        ttl: 'duration0',
        attributes: {
          list: {
            object: { name: 'string', value: 'string' },
            check: (m) => {
              requireFields(['name'])(m);
              tokenField('name', 'cookie attribute name')(m);
              cookieAttributeValue('value', 'cookie attribute value')(m);
            },
          },
        },
      },
      check: (m) => {
        requireFields(['name'])(m);
        tokenField('name', 'cookie name')(m);
        cookieAttributeValue('path', 'cookie path')(m);
      },
    },
    useSourceIp: 'bool',
    httpQueryParameterName: 'string',
    ringHash: { object: { minimumRingSize: 'uint' }, check: ringSize('minimumRingSize') },
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
    tokenField('httpHeaderName', 'header name')(m);
    const query = m.get('httpQueryParameterName');
    if (query.typeName() === 'string' && query.node?.toJSON() === '') {
      query.error('httpQueryParameterName must not be empty');
    }
    ringSize('minimumRingSize')(m);
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
    // Istio accepts credentialName instead of the files; meshlet reads no Kubernetes secret, so the
    // files are the only way to present a client certificate.
    if (mode === 'MUTUAL') {
      for (const k of ['clientCertificate', 'privateKey']) {
        if (!m.has(k))
          m.get(k).error(`${k} is required for mode MUTUAL (meshlet does not read credentialName)`);
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

type Mutable = Record<string, Plain>;

/** The sub-map at `key` when it is one (type errors were reported by the schema already). */
function child(m: MapView, key: string): MapView | undefined {
  const v = m.get(key);
  return v.typeName() === 'map' ? v.map() : undefined;
}

/** The validated object at `key` of `value`, for in-place normalization. */
function childValue(value: Mutable, key: string): Mutable | undefined {
  const v = value[key];
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Mutable) : undefined;
}

const HTTP11_UPSTREAM = 'meshlet speaks HTTP/1.1 to upstreams';

/**
 * Per component: warnings for the sub-fields meshlet validates but does not act on, and the
 * normalizations the consumers rely on. `m` is the component's map, `value` what the schema read.
 */
const AFTER_SCHEMA: Readonly<Record<ComponentName, (m: MapView, value: Mutable) => void>> = {
  loadBalancer: (m, value) => {
    if (value['simple'] === 'PASSTHROUGH') {
      m.get('simple').warn(
        'simple: PASSTHROUGH is not supported; the default P2C + peak-EWMA balancer is used',
      );
    }
    const locality = childValue(value, 'localityLbSetting');
    if (locality !== undefined && locality['enabled'] !== false) {
      m.get('localityLbSetting').warn(
        'localityLbSetting is not acted on (meshlet has no localities); every endpoint is treated alike',
      );
    }
    for (const key of ['warmup', 'warmupDurationSecs']) {
      if (value[key] !== undefined) {
        m.get(key).warn(`${key} is not implemented; a new endpoint gets its full share of traffic at once`);
      }
    }
    const hash = childValue(value, 'consistentHash');
    const hm = child(m, 'consistentHash');
    if (hash === undefined || hm === undefined) return;
    // Header names are matched lowercase on the request path.
    const header = hash['httpHeaderName'];
    if (typeof header === 'string') hash['httpHeaderName'] = header.toLowerCase();
    // Zero is the protobuf "unset": the balancer's default size applies (Istio does the same).
    if (hash['minimumRingSize'] === 0) delete hash['minimumRingSize'];
    const ring = childValue(hash, 'ringHash');
    if (ring?.['minimumRingSize'] === 0) delete ring['minimumRingSize'];
    const maglev = childValue(hash, 'maglev');
    if (maglev?.['tableSize'] === 0) delete maglev['tableSize'];
  },
  connectionPool: (m, value) => {
    const tcp = childValue(value, 'tcp');
    const tm = child(m, 'tcp');
    if (tcp !== undefined && tm !== undefined) {
      if (tcp['tcpKeepalive'] !== undefined) {
        tm.get('tcpKeepalive').warn(
          'tcpKeepalive is not implemented; upstream sockets keep the operating system keep-alive settings',
        );
      }
      if (tcp['maxConnectionDuration'] !== undefined) {
        tm.get('maxConnectionDuration').warn(
          'maxConnectionDuration is not implemented; upstream connections are not closed for their age',
        );
      }
      capTimers(tm, tcp, ['connectTimeout', 'idleTimeout']);
    }
    const http = childValue(value, 'http');
    const hm = child(m, 'http');
    if (http !== undefined && hm !== undefined) {
      if (http['h2UpgradePolicy'] === 'UPGRADE') {
        hm.get('h2UpgradePolicy').warn(`h2UpgradePolicy: UPGRADE is not supported; ${HTTP11_UPSTREAM}`);
      }
      if (http['useClientProtocol'] === true) {
        hm.get('useClientProtocol').warn(
          `useClientProtocol is not supported; ${HTTP11_UPSTREAM} whatever the client spoke`,
        );
      }
      for (const key of ['maxConcurrentStreams', 'http2KeepAlive']) {
        if (http[key] !== undefined) hm.get(key).warn(`${key} applies to HTTP/2 only; ${HTTP11_UPSTREAM}`);
      }
      capTimers(hm, http, ['idleTimeout']);
    }
  },
  outlierDetection: (m, value) => {
    if (value['consecutiveErrors'] !== undefined) {
      m.get('consecutiveErrors').warn(
        'consecutiveErrors is deprecated and ignored (as Istio does); use consecutive5xxErrors or consecutiveGatewayErrors',
      );
    }
    capTimers(m, value, ['interval', 'baseEjectionTime']);
  },
  tls: (m, value) => {
    if (value['credentialName'] !== undefined) {
      m.get('credentialName').warn(
        'credentialName names a Kubernetes secret (read by gateways); meshlet reads no secrets and ignores it: use clientCertificate, privateKey and caCertificates',
      );
    }
    if (value['caCrl'] !== undefined) {
      m.get('caCrl').warn(
        'caCrl is not checked: meshlet consults no revocation list, so a revoked server certificate is accepted',
      );
    }
    // With ISTIO_MUTUAL these fields are errors already (the mesh identity is used).
    for (const key of value['mode'] === 'ISTIO_MUTUAL' ? [] : TLS_FILES) {
      const path = value[key];
      if (typeof path !== 'string') continue;
      const abs = checkedFile(m.get(key), key, path);
      if (abs === undefined) delete value[key];
      else value[key] = abs;
    }
  },
};

const TLS_FILES = ['clientCertificate', 'privateKey', 'caCertificates'] as const;

/**
 * The absolute path of a TLS file named at `view`, resolved against the folder of the file that
 * names it; a warning names the field and the path when it cannot be read now.
 */
function checkedFile(view: View, field: string, path: string): string | undefined {
  if (path === '') {
    view.error(`${field} must not be empty`);
    return undefined;
  }
  const abs = isAbsolute(path) ? path : resolve(dirname(resolve(view.ctx.file)), path);
  let problem: string | null = null;
  try {
    if (!statSync(abs).isFile()) problem = 'is not a file';
    else accessSync(abs, constants.R_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    problem =
      code === 'ENOENT' || code === 'ENOTDIR' ? 'does not exist' : `cannot be read (${code ?? String(err)})`;
  }
  if (problem !== null) {
    view.warn(
      `${field} file ${abs} ${problem}; connections to this destination fail (UF) until it can be read`,
    );
  }
  return abs;
}

/** Durations that become timers are capped at what a Node.js timer can hold (with a warning). */
function capTimers(m: MapView, value: Mutable, keys: readonly string[]): void {
  for (const key of keys) {
    const ms = value[key];
    if (typeof ms === 'number') value[key] = capTimerMs(m.get(key), ms);
  }
}

function readComponents(m: MapView): Components {
  const out: Components = {};
  for (const name of COMPONENT_NAMES) {
    const schema = COMPONENTS[name];
    const view = m.get(name);
    if (!view.present) continue;
    const mm = view.map();
    if (mm === undefined || typeof schema === 'string' || !('object' in schema)) continue;
    const value: Mutable = readObject(mm, schema);
    AFTER_SCHEMA[name](mm, value);
    out[name] = value;
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
      retryBudget:
        "retryBudget (Istio's) is not implemented; ignored. meshlet applies the retryBudget of its Proxy document (spec.retryBudget) to every cluster",
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
