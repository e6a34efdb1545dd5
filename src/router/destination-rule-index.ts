/**
 * Choosing the DestinationRule for a host (§3.1): the DRs naming the host exactly, otherwise those
 * with the most specific wildcard host covering it. DRs with the same host are merged (subsets
 * unioned, first name wins; the first top-level policy wins). DRs whose workloadSelector does not
 * select this proxy are ignored.
 */
import type { DestinationRuleSpec, Resource, Subset, TrafficPolicy } from '../config/resource-types.ts';
import { hostCoveredBy, isWildcardHost } from './host-pattern.ts';
import { labelsSelect } from './labels.ts';
import { inLoadOrder } from './service-registry.ts';

export interface MergedDestinationRule {
  readonly host: string;
  readonly trafficPolicy?: TrafficPolicy;
  /** Subsets by name, in declaration order. */
  readonly subsets: ReadonlyMap<string, Subset>;
}

export interface DestinationRuleIndex {
  /** The merged rule that applies to `host`, or undefined. */
  forHost(host: string): MergedDestinationRule | undefined;
}

export function buildDestinationRuleIndex(
  rules: readonly Resource<DestinationRuleSpec>[],
  proxyLabels: Readonly<Record<string, string>>,
): DestinationRuleIndex {
  const byHost = new Map<
    string,
    { host: string; trafficPolicy?: TrafficPolicy; subsets: Map<string, Subset> }
  >();
  for (const dr of inLoadOrder(rules)) {
    const selector = dr.spec.workloadSelector;
    if (selector !== undefined && !labelsSelect(selector, proxyLabels)) continue;
    let merged = byHost.get(dr.spec.host);
    if (merged === undefined) {
      merged = { host: dr.spec.host, subsets: new Map() };
      byHost.set(dr.spec.host, merged);
    }
    if (merged.trafficPolicy === undefined && dr.spec.trafficPolicy !== undefined) {
      merged.trafficPolicy = dr.spec.trafficPolicy;
    }
    for (const subset of dr.spec.subsets) {
      if (!merged.subsets.has(subset.name)) merged.subsets.set(subset.name, subset);
    }
  }
  // Most specific wildcard first: a longer pattern is more specific.
  const wildcards = [...byHost.values()]
    .filter((r) => isWildcardHost(r.host))
    .sort((a, b) => b.host.length - a.host.length);
  return {
    forHost(host: string): MergedDestinationRule | undefined {
      const exact = byHost.get(host);
      if (exact !== undefined) return exact;
      return wildcards.find((r) => hostCoveredBy(host, r.host));
    },
  };
}
