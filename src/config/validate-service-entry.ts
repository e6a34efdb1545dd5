/**
 * ServiceEntry validation and normalization (spec §1). Every resolution is acted on: STATIC uses the
 * endpoints as written, DNS and DNS_ROUND_ROBIN resolve the endpoint addresses (or the host) and
 * refresh them, NONE and DYNAMIC_DNS forward to the host the request names.
 */
import { checkHostName, isCidr, isIpAddress, isWildcardHost } from './host-names.ts';
import type { ServiceEntrySpec, ServicePort, WorkloadEntry } from './resource-types.ts';
import { type Scope, stringListOrEmpty } from './validate-common.ts';
import type { MapView, View } from './yaml-view.ts';

const SE_FIELDS = [
  'hosts',
  'addresses',
  'ports',
  'location',
  'resolution',
  'endpoints',
  'workloadSelector',
  'exportTo',
  'subjectAltNames',
] as const;

const ENDPOINT_FIELDS = [
  'address',
  'ports',
  'labels',
  'network',
  'locality',
  'weight',
  'serviceAccount',
] as const;

const LOCATIONS = ['MESH_EXTERNAL', 'MESH_INTERNAL'] as const;
const RESOLUTIONS = ['NONE', 'STATIC', 'DNS', 'DNS_ROUND_ROBIN', 'DYNAMIC_DNS'] as const;

const KNOWN_PROTOCOLS = new Set([
  'HTTP',
  'HTTPS',
  'GRPC',
  'GRPC-WEB',
  'HTTP2',
  'HTTP_PROXY',
  'TLS',
  'TCP',
  'MONGO',
  'MYSQL',
  'REDIS',
  'UDP',
]);

const HTTP_OR_TLS = new Set(['HTTP', 'HTTPS', 'GRPC', 'GRPC-WEB', 'HTTP2', 'HTTP_PROXY', 'TLS']);

const FQDN = /^(?=.{1,255}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?$/i;

export function validateServiceEntry(spec: MapView, _scope: Scope): ServiceEntrySpec | undefined {
  spec.checkFields(SE_FIELDS, {
    notImplemented: {
      workloadSelector:
        'workloadSelector is not implemented (there are no pods or WorkloadEntries to select); ignored',
    },
  });
  let ok = true;

  const hostsView = spec.get('hosts');
  const hosts: string[] = [];
  const hostItems = hostsView.list();
  if (hostItems === undefined || hostItems.length === 0) {
    hostsView.error('at least one host is required');
    ok = false;
  } else if (hostItems.length > 256) {
    hostsView.error('at most 256 hosts are allowed');
    ok = false;
  }
  for (const item of hostItems ?? []) {
    const raw = item.string();
    if (raw === undefined) {
      ok = false;
      continue;
    }
    const host = raw.trim().toLowerCase();
    const problem = host === '*' ? 'bare "*" is not a valid ServiceEntry host' : checkHostName(host, false);
    if (problem !== null) {
      item.error(`invalid host "${raw}": ${problem}`);
      ok = false;
    } else if (hosts.includes(host)) {
      item.warn(`duplicate host "${host}"`);
    } else hosts.push(host);
  }

  // An invalid enum is reported by enumOf; the loader drops a document that has any error.
  const location = spec.get('location').enumOf(LOCATIONS) ?? 'MESH_EXTERNAL';
  const resolution = spec.get('resolution').enumOf(RESOLUTIONS) ?? 'NONE';

  const addresses: string[] = [];
  for (const item of spec.get('addresses').list() ?? []) {
    const a = item.string();
    if (a === undefined) {
      ok = false;
      continue;
    }
    if (isIpAddress(a)) addresses.push(a);
    else if (isCidr(a)) {
      if (resolution !== 'NONE' && resolution !== 'STATIC') {
        item.error(`CIDR address "${a}" is only allowed with resolution NONE or STATIC`);
        ok = false;
      } else addresses.push(a);
    } else {
      item.error(`invalid address "${a}": expected an IP address or a CIDR range`);
      ok = false;
    }
  }

  const ports: ServicePort[] = [];
  const portsView = spec.get('ports');
  const portItems = portsView.list();
  if (portItems === undefined || portItems.length === 0) {
    if (!spec.has('workloadSelector')) {
      portsView.error('at least one port is required');
      ok = false;
    }
  }
  for (const item of portItems ?? []) {
    const p = parsePort(item);
    if (p === undefined) {
      ok = false;
      continue;
    }
    if (ports.some((q) => q.number === p.number)) {
      item.error(`port number ${p.number} is not unique`);
      ok = false;
      continue;
    }
    if (ports.some((q) => q.name === p.name)) {
      item.error(`port name "${p.name}" is not unique`);
      ok = false;
      continue;
    }
    ports.push(p);
  }
  if (resolution !== 'NONE' && hosts.length > 1 && ports.some((p) => !HTTP_OR_TLS.has(p.protocol))) {
    portsView.error(
      'multiple hosts with non-HTTP, non-TLS ports are only allowed with resolution NONE (a TCP port cannot tell the hosts apart)',
    );
    ok = false;
  }

  const endpoints: WorkloadEntry[] = [];
  const endpointsView = spec.get('endpoints');
  const endpointItems = endpointsView.list();
  if (endpointItems !== undefined && endpointItems.length > 0) {
    if (spec.has('workloadSelector')) {
      endpointsView.error('endpoints and workloadSelector are mutually exclusive');
      ok = false;
    }
    if (resolution === 'NONE') {
      endpointsView.error(
        'endpoints are not allowed with resolution NONE (the default); set resolution to STATIC or DNS',
      );
      ok = false;
    }
    if (resolution === 'DNS_ROUND_ROBIN' && endpointItems.length > 1) {
      endpointsView.error('resolution DNS_ROUND_ROBIN allows at most one endpoint');
      ok = false;
    }
    if (resolution === 'DYNAMIC_DNS') {
      endpointsView.error('endpoints are not allowed with resolution DYNAMIC_DNS');
      ok = false;
    }
  }
  const portNames = new Set(ports.map((p) => p.name));
  for (const item of endpointItems ?? []) {
    const e = parseEndpoint(item, resolution, portNames, portItems !== undefined);
    if (e === undefined) ok = false;
    else endpoints.push(e);
  }
  if (resolution === 'DNS' && (endpointItems === undefined || endpointItems.length === 0)) {
    for (const h of hosts) {
      if (isWildcardHost(h)) {
        hostsView.error(`host "${h}" is a wildcard: resolution DNS without endpoints needs resolvable hosts`);
        ok = false;
      }
    }
  }
  if (resolution === 'DNS_ROUND_ROBIN' && (endpointItems === undefined || endpointItems.length === 0)) {
    // A warning, not an error as for DNS: the resource is still usable as a name. But a wildcard
    // names no address, so the resolver has nothing to look up and requests find no endpoint.
    for (const h of hosts) {
      if (isWildcardHost(h)) {
        hostsView.warn(
          `host "${h}" is a wildcard: resolution DNS_ROUND_ROBIN without endpoints has no name to resolve, so it has no endpoints`,
        );
      }
    }
  }
  if (resolution === 'DYNAMIC_DNS' && hosts.some((h) => !isWildcardHost(h))) {
    hostsView.error('resolution DYNAMIC_DNS requires wildcard hosts');
    ok = false;
  }

  const exportTo = stringListOrEmpty(spec, 'exportTo');
  const subjectAltNames = stringListOrEmpty(spec, 'subjectAltNames');
  if (!ok) return undefined;
  return { hosts, addresses, ports, location, resolution, endpoints, exportTo, subjectAltNames };
}

function parsePort(view: View): ServicePort | undefined {
  const m = view.map();
  if (m === undefined) {
    if (!view.present) view.error('port must not be empty');
    return undefined;
  }
  m.checkFields(['number', 'protocol', 'name', 'targetPort']);
  const numView = m.get('number');
  const number = numView.require('port number') ? numView.port() : undefined;
  const nameView = m.get('name');
  const name = nameView.require('port name') ? nameView.string() : undefined;
  if (name === '') nameView.error('port name must not be empty');
  const protocolView = m.get('protocol');
  const protocol = (protocolView.string() ?? '').toUpperCase();
  if (protocol !== '' && !KNOWN_PROTOCOLS.has(protocol)) {
    protocolView.warn(`unsupported protocol "${protocol}"; traffic on this port is treated as TCP`);
  }
  const tpView = m.get('targetPort');
  const targetPort = tpView.port();
  if (number === undefined || name === undefined || name === '') return undefined;
  if (tpView.present && targetPort === undefined) return undefined;
  return { number, protocol, name, ...(targetPort !== undefined ? { targetPort } : {}) };
}

function parseEndpoint(
  view: View,
  resolution: ServiceEntrySpec['resolution'],
  portNames: ReadonlySet<string>,
  portsKnown: boolean,
): WorkloadEntry | undefined {
  const m = view.map();
  if (m === undefined) {
    if (!view.present) view.error('endpoint must not be empty');
    return undefined;
  }
  m.checkFields(ENDPOINT_FIELDS, {
    notImplemented: { network: 'network is not implemented (single network); ignored' },
  });
  let ok = true;
  const addrView = m.get('address');
  const address = addrView.require('address') ? addrView.string() : undefined;
  if (address === undefined) ok = false;
  else if (address.startsWith('unix://')) {
    if (!address.startsWith('unix:///')) {
      addrView.error(`unix socket address "${address}" must be absolute (unix:///path)`);
      ok = false;
    }
  } else if (resolution === 'STATIC') {
    if (!isIpAddress(address)) {
      addrView.error(`address "${address}" must be an IP address or unix:// path with resolution STATIC`);
      ok = false;
    }
  } else if (resolution === 'DNS' || resolution === 'DNS_ROUND_ROBIN') {
    if (!isIpAddress(address) && !FQDN.test(address)) {
      addrView.error(`address "${address}" must be an IP address or a DNS name`);
      ok = false;
    }
  }
  const ports: Record<string, number> = {};
  const pm = m.get('ports').map();
  for (const { key, value } of pm?.entries() ?? []) {
    const n = value.port();
    if (n === undefined) {
      ok = false;
      continue;
    }
    if (portsKnown && !portNames.has(key)) {
      value.error(`port name "${key}" is not the name of a port of this ServiceEntry`);
      ok = false;
      continue;
    }
    ports[key] = n;
  }
  const labels = m.get('labels').stringMap() ?? {};
  const weightView = m.get('weight');
  const weight = weightView.int({ min: 0, max: 4294967295 });
  if (weightView.present && weight === undefined) ok = false;
  const locality = m.get('locality').string();
  const network = m.get('network').string();
  const serviceAccount = m.get('serviceAccount').string();
  if (!ok || address === undefined) return undefined;
  return {
    address,
    ports,
    labels,
    weight: weight === undefined || weight === 0 ? 1 : weight,
    ...(locality !== undefined && locality !== '' ? { locality } : {}),
    ...(network !== undefined && network !== '' ? { network } : {}),
    ...(serviceAccount !== undefined && serviceAccount !== '' ? { serviceAccount } : {}),
  };
}
