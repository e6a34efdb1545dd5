/**
 * Host name helpers (spec §0.4): lowercasing, short-name expansion relative to the namespace of
 * the resource that names the host, and shape checks.
 */
import { isIP } from 'node:net';

export const DEFAULT_DOMAIN_SUFFIX = 'cluster.local';

/** True for `*` and `*.suffix`. */
export function isWildcardHost(host: string): boolean {
  return host === '*' || host.startsWith('*.');
}

/**
 * Expands a host as Istio does: a name without `.` that is not `*` and not an IP becomes
 * `<name>.<namespace>.svc.<domainSuffix>`; `namespace` is the namespace of the referencing
 * resource (not of the target service). Always lowercased.
 */
export function expandHost(name: string, namespace: string, domainSuffix: string): string {
  const host = name.trim().toLowerCase();
  if (host === '' || host === '*' || host.includes('.') || isIP(host) !== 0) return host;
  // `[::1]`-style literals and IPv6 without dots are IPs too.
  if (host.includes(':')) return host;
  return `${host}.${namespace.toLowerCase()}.svc.${domainSuffix.toLowerCase()}`;
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * Checks the shape of a (lowercased) host name: an FQDN or short name made of DNS labels,
 * optionally starting with a `*.` wildcard, or a bare `*`. Returns an error message or null.
 */
export function checkHostName(host: string, allowBareWildcard: boolean): string | null {
  if (host === '') return 'host must not be empty';
  if (host === '*') return allowBareWildcard ? null : 'bare "*" is not allowed here';
  if (host.length > 255) return 'host name is longer than 255 characters';
  let rest = host;
  if (rest.startsWith('*.')) rest = rest.slice(2);
  if (rest.includes('*')) return 'a wildcard is only allowed as the leading "*." label';
  const labels = rest.endsWith('.') ? rest.slice(0, -1).split('.') : rest.split('.');
  for (const label of labels) {
    if (!LABEL.test(label)) return `"${label}" is not a valid DNS label`;
  }
  return null;
}

/** True when the text is an IPv4 or IPv6 address (no CIDR). */
export function isIpAddress(text: string): boolean {
  return isIP(text) !== 0;
}

/** True for `a.b.c.d/n` or `ipv6/n` with a prefix length in range. */
export function isCidr(text: string): boolean {
  const slash = text.indexOf('/');
  if (slash < 0) return false;
  const ip = text.slice(0, slash);
  const bits = text.slice(slash + 1);
  const family = isIP(ip);
  if (family === 0 || !/^\d{1,3}$/.test(bits)) return false;
  const n = Number(bits);
  return family === 4 ? n <= 32 : n <= 128;
}
