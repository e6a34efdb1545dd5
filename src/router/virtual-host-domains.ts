/**
 * The domains a virtual host answers to (§2.2 step 2): the host itself, the ServiceEntry
 * `addresses`, and for `<name>.<ns>.svc.<domainSuffix>` the Kubernetes short forms: `name`,
 * `name.ns`, `name.ns.svc` in the proxy's own namespace, only `name.ns`, `name.ns.svc` elsewhere.
 * Ports are never part of a domain: virtual-host selection ignores the Host header's port.
 */

export interface DomainContext {
  readonly namespace: string;
  readonly domainSuffix: string;
}

export function virtualHostDomains(host: string, addresses: readonly string[], ctx: DomainContext): string[] {
  const domains = [host];
  const svcSuffix = `.svc.${ctx.domainSuffix}`;
  if (host.endsWith(svcSuffix)) {
    const head = host.slice(0, host.length - svcSuffix.length);
    const dot = head.indexOf('.');
    if (dot > 0 && dot === head.lastIndexOf('.') && dot < head.length - 1) {
      const name = head.slice(0, dot);
      const ns = head.slice(dot + 1);
      if (name !== '*' && ns === ctx.namespace) domains.push(name);
      domains.push(head, `${head}.svc`);
    }
  }
  for (const address of addresses) {
    // CIDR ranges are for TCP attribution, not Host matching.
    if (address.includes('/')) continue;
    domains.push(address.includes(':') && !address.startsWith('[') ? `[${address}]` : address.toLowerCase());
  }
  return domains;
}
