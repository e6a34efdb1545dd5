/**
 * Splitting a `Host` / `:authority` value into host and port without allocating an object.
 * IPv6 literals keep their brackets (`[::1]:8080` → host `[::1]`).
 */

/** Index where the host part ends (the `:` before the port, or the length). */
export function authorityHostEnd(authority: string): number {
  if (authority.charCodeAt(0) === 91) {
    // '[': IPv6 literal
    const close = authority.indexOf(']');
    return close < 0 ? authority.length : close + 1;
  }
  // lastIndexOf(':') without the runtime call (hosts are short).
  for (let i = authority.length - 1; i >= 0; i--) if (authority.charCodeAt(i) === 58) return i;
  return authority.length;
}

/** The port after `hostEnd`, or undefined when absent or not a valid port number. */
export function authorityPort(authority: string, hostEnd: number): number | undefined {
  if (hostEnd >= authority.length - 1 || authority.charCodeAt(hostEnd) !== 58) return undefined;
  let port = 0;
  for (let i = hostEnd + 1; i < authority.length; i++) {
    const c = authority.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return undefined;
    port = port * 10 + c;
    if (port > 65535) return undefined;
  }
  return port === 0 ? undefined : port;
}

/** Lowercase host without the port. */
export function authorityHost(authority: string, hostEnd: number): string {
  const host = hostEnd === authority.length ? authority : authority.slice(0, hostEnd);
  return host.toLowerCase();
}
