/**
 * Virtual-host lookup by Host (§2.2 step 2): exact domains in a Map, then `*.suffix` domains most
 * specific first, then `*`. The Host's port is not part of the domain; it only picks the port's
 * route list inside the virtual host, and a host without that port falls through to the next
 * candidate, as a separate route configuration per listener port would.
 */
import type { PortRoutes, VirtualHost } from './compiled-route.ts';
import { isWildcardHost, wildcardSuffix } from './host-pattern.ts';

export interface VirtualHostIndex {
  /**
   * The route list for a lowercase host (no port) and the authority's port, if any. A virtual host
   * found for a Host without a port uses its own default port.
   */
  find(host: string, explicitPort: number | undefined): PortRoutes | undefined;
}

interface WildcardDomain {
  readonly suffix: string;
  readonly vhost: VirtualHost;
}

/** Builds the index from (domain, virtual host) pairs; the first pair for a domain wins. */
export function buildVirtualHostIndex(domains: Iterable<readonly [string, VirtualHost]>): VirtualHostIndex {
  const exact = new Map<string, VirtualHost>();
  const wildcardList: WildcardDomain[] = [];
  for (const [domain, vhost] of domains) {
    if (isWildcardHost(domain)) {
      const suffix = wildcardSuffix(domain);
      if (!wildcardList.some((w) => w.suffix === suffix)) wildcardList.push(Object.freeze({ suffix, vhost }));
    } else if (!exact.has(domain)) {
      exact.set(domain, vhost);
    }
  }
  // Longest suffix first (stable for equal lengths); `*` (suffix '') sorts last.
  const wildcards = Object.freeze(wildcardList.sort((a, b) => b.suffix.length - a.suffix.length));

  return Object.freeze({
    find(host: string, explicitPort: number | undefined): PortRoutes | undefined {
      const hit = exact.get(host);
      if (hit !== undefined) {
        const routes = hit.routesByPort.get(explicitPort ?? hit.defaultPort);
        if (routes !== undefined) return routes;
      }
      for (let i = 0; i < wildcards.length; i++) {
        const w = wildcards[i]!;
        if (host.length > w.suffix.length && host.endsWith(w.suffix)) {
          const routes = w.vhost.routesByPort.get(explicitPort ?? w.vhost.defaultPort);
          if (routes !== undefined) return routes;
        }
      }
      return undefined;
    },
  });
}
