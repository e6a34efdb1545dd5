/**
 * Clusters (§0.6): `outbound|<port>|<subset>|<host>` for every service port, once without a subset
 * and once per subset of the host's DestinationRule, each with its effective traffic policy.
 */
import type { Subset } from '../config/resource-types.ts';
import type { DestinationRuleIndex } from './destination-rule-index.ts';
import { firstLabel } from './host-pattern.ts';
import { labelsSelect } from './labels.ts';
import type { Cluster, Endpoint } from './route-types.ts';
import type { ServiceRecord } from './service-registry.ts';
import { effectiveTrafficPolicy } from './traffic-policy.ts';

export function clusterName(port: number, subset: string, host: string): string {
  return `outbound|${port}|${subset}|${host}`;
}

export function buildClusters(
  registry: ReadonlyMap<string, ServiceRecord>,
  destinationRules: DestinationRuleIndex,
): Map<string, Cluster> {
  const clusters = new Map<string, Cluster>();
  for (const service of registry.values()) {
    const dr = destinationRules.forHost(service.host);
    for (const { port, endpoints } of service.ports.values()) {
      const add = (subset: Subset | undefined, selected: readonly Endpoint[]): void => {
        const subsetName = subset?.name ?? '';
        const name = clusterName(port.number, subsetName, service.host);
        const policy = effectiveTrafficPolicy(dr?.trafficPolicy, subset, port.number);
        const cluster: Cluster = {
          name,
          host: service.host,
          port: port.number,
          subset: subsetName,
          endpoints: Object.freeze(selected),
          serviceFqdn: service.host,
          serviceName: firstLabel(service.host),
          serviceNamespace: service.namespace,
          location: service.location,
          ...(service.subjectAltNames.length === 0 ? {} : { subjectAltNames: service.subjectAltNames }),
          ...(policy === undefined ? {} : { trafficPolicy: policy }),
        };
        clusters.set(name, Object.freeze(cluster));
      };
      add(undefined, endpoints);
      if (dr === undefined) continue;
      for (const subset of dr.subsets.values()) {
        add(
          subset,
          endpoints.filter((e) => labelsSelect(subset.labels, e.labels)),
        );
      }
    }
  }
  return clusters;
}
