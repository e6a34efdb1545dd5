/**
 * The service registry (§0.6, §1.2): every (host, port) of every ServiceEntry, with the endpoints
 * that back it.
 */
import type { Resource, ServiceEntrySpec, ServicePort, WorkloadEntry } from '../config/resource-types.ts';
import { isWildcardHost } from './host-pattern.ts';
import type { Endpoint } from './route-types.ts';

export interface ServicePortRecord {
  readonly port: ServicePort;
  /** Endpoints for this port, in ServiceEntry order. */
  readonly endpoints: readonly Endpoint[];
}

export interface ServiceRecord {
  /** FQDN or `*.suffix`, lowercase. */
  readonly host: string;
  /** Namespace of the (first) ServiceEntry that declares the host. */
  readonly namespace: string;
  readonly addresses: readonly string[];
  readonly resolution: ServiceEntrySpec['resolution'];
  /** Service ports by number, in declaration order. */
  readonly ports: ReadonlyMap<number, ServicePortRecord>;
  /** `location` of the (first) ServiceEntry: auto-mTLS never applies to MESH_EXTERNAL (spec §3.7). */
  readonly location: ServiceEntrySpec['location'];
  /** `subjectAltNames` of the (first) ServiceEntry: server identities expected by mTLS origination. */
  readonly subjectAltNames: readonly string[];
}

/** Resources in load order (a stable sort, so equal orders keep their array order). */
export function inLoadOrder<S>(resources: readonly Resource<S>[]): Resource<S>[] {
  return [...resources].sort((a, b) => a.meta.order - b.meta.order);
}

/**
 * Builds the registry. Several ServiceEntries may name the same host: their ports are merged and,
 * for a port declared twice, the first entry in load order wins.
 */
export function buildServiceRegistry(
  serviceEntries: readonly Resource<ServiceEntrySpec>[],
): ReadonlyMap<string, ServiceRecord> {
  const registry = new Map<string, { record: ServiceRecord; ports: Map<number, ServicePortRecord> }>();
  for (const se of inLoadOrder(serviceEntries)) {
    for (const host of se.spec.hosts) {
      let entry = registry.get(host);
      if (entry === undefined) {
        const ports = new Map<number, ServicePortRecord>();
        entry = {
          ports,
          record: {
            host,
            namespace: se.meta.namespace,
            addresses: se.spec.addresses,
            resolution: se.spec.resolution,
            ports,
            location: se.spec.location,
            subjectAltNames: se.spec.subjectAltNames,
          },
        };
        registry.set(host, entry);
      }
      for (const port of se.spec.ports) {
        if (entry.ports.has(port.number)) continue;
        entry.ports.set(port.number, { port, endpoints: endpointsFor(se.spec, host, port) });
      }
    }
  }
  const out = new Map<string, ServiceRecord>();
  for (const [host, entry] of registry) out.set(host, entry.record);
  return out;
}

function endpointsFor(spec: ServiceEntrySpec, host: string, port: ServicePort): Endpoint[] {
  if (spec.endpoints.length > 0) return spec.endpoints.map((we) => toEndpoint(we, port));
  // No endpoint list: DNS resolves the host itself; NONE passes through to host:port. A wildcard
  // host names no single address, so such a cluster has no endpoints of its own.
  if (isWildcardHost(host)) return [];
  if (spec.resolution === 'STATIC') return [];
  return [{ id: `${host}:${port.number}`, address: host, port: port.number, weight: 1, labels: {} }];
}

function toEndpoint(we: WorkloadEntry, port: ServicePort): Endpoint {
  const unix = we.address.startsWith('unix://');
  const target = unix ? 0 : (we.ports[port.name] ?? port.targetPort ?? port.number);
  const endpoint: Endpoint = {
    id: unix ? we.address : `${we.address}:${target}`,
    address: we.address,
    port: target,
    weight: Math.max(1, we.weight),
    labels: we.labels,
    // The identity the endpoint's server certificate must carry under ISTIO_MUTUAL (spec §3.7).
    ...(we.serviceAccount === undefined ? {} : { serviceAccount: we.serviceAccount }),
  };
  return endpoint;
}
