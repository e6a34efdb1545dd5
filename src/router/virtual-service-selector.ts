/**
 * Which VirtualService governs a host (§2.1): VirtualServices bound to gateways other than `mesh`
 * are skipped; for a host, a VS naming it exactly wins, else the VS with the most specific
 * wildcard host covering it; among equals the first in load order wins.
 */
import type { Resource, VirtualServiceSpec } from '../config/resource-types.ts';
import { hostCoveredBy, isWildcardHost } from './host-pattern.ts';
import { inLoadOrder } from './service-registry.ts';

export interface VirtualServiceSelector {
  forHost(host: string): Resource<VirtualServiceSpec> | undefined;
  /** Every VS host (as written) with the VS that owns it, in load order. */
  readonly ownedHosts: ReadonlyMap<string, Resource<VirtualServiceSpec>>;
}

export function appliesToSidecars(vs: Resource<VirtualServiceSpec>): boolean {
  return vs.spec.gateways.length === 0 || vs.spec.gateways.includes('mesh');
}

export function buildVirtualServiceSelector(
  virtualServices: readonly Resource<VirtualServiceSpec>[],
): VirtualServiceSelector {
  const byHost = new Map<string, Resource<VirtualServiceSpec>>();
  for (const vs of inLoadOrder(virtualServices)) {
    if (!appliesToSidecars(vs)) continue;
    for (const host of vs.spec.hosts) if (!byHost.has(host)) byHost.set(host, vs);
  }
  const wildcards = [...byHost.entries()]
    .filter(([host]) => isWildcardHost(host))
    .sort(([a], [b]) => b.length - a.length);
  return Object.freeze({
    ownedHosts: byHost,
    forHost(host: string): Resource<VirtualServiceSpec> | undefined {
      const exact = byHost.get(host);
      if (exact !== undefined) return exact;
      return wildcards.find(([pattern]) => hostCoveredBy(host, pattern))?.[1];
    },
  });
}
