/**
 * Host-name patterns (§0.4): a literal name, `*.suffix` (any number of labels before the suffix),
 * or a bare `*`. Names are already lowercase when they reach the router.
 */

/** True for `*` and `*.suffix`. */
export function isWildcardHost(host: string): boolean {
  return host.charCodeAt(0) === 42; // '*'
}

/** `*.example.com` → `.example.com`; `*` → ''. Only meaningful for wildcard hosts. */
export function wildcardSuffix(host: string): string {
  return host.slice(1);
}

/**
 * Whether `host` is covered by `pattern` (Istio `SubsetOf`): a literal pattern covers only itself;
 * `*.example.com` covers `a.example.com`, `a.b.example.com` and `*.a.example.com`, not `example.com`;
 * `*` covers everything. A wildcard is never covered by a literal.
 */
export function hostCoveredBy(host: string, pattern: string): boolean {
  if (!isWildcardHost(pattern)) return host === pattern;
  const suffix = wildcardSuffix(pattern);
  if (suffix === '') return true;
  if (isWildcardHost(host)) return wildcardSuffix(host).endsWith(suffix);
  return host.length > suffix.length && host.endsWith(suffix);
}

/** The first DNS label, for `destination_service_name`. */
export function firstLabel(host: string): string {
  const dot = host.indexOf('.');
  return dot < 0 ? host : host.slice(0, dot);
}
