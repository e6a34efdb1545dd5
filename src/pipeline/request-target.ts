import type { HeaderList } from '../listener/listener-types.ts';

/** The authority and origin-form path of a request, from an absolute-form target or the Host header. */
export interface RequestTarget {
  /** `host[:port]` as sent (lowercased host part is left to the router, which compares case-insensitively). */
  readonly authority: string;
  /** Origin-form path with query. */
  readonly path: string;
  /** Scheme of an absolute-form target, else null. */
  readonly scheme: string | null;
}

/** First value of a header (names are lowercase in a HeaderList), or undefined. */
export function headerValue(headers: HeaderList, name: string): string | undefined {
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === name) return headers[i + 1];
  return undefined;
}

/**
 * `GET http://reviews:9080/x?y` (what `HTTP_PROXY` clients send) or `GET /x?y` + `Host: reviews:9080`.
 * An absolute-form target wins over the Host header (RFC 9112 §3.2.2). Returns null when there is
 * no authority at all, or the target is neither form.
 */
export function parseRequestTarget(target: string, headers: HeaderList): RequestTarget | null {
  if (target.charCodeAt(0) === 47 /* '/' */) {
    const host = headerValue(headers, 'host');
    if (host === undefined || host === '') return null;
    return { authority: host, path: target, scheme: null };
  }
  const m = /^(https?):\/\/([^/?#]+)([^#]*)/i.exec(target);
  if (m === null) {
    // `OPTIONS *` and authority-form (CONNECT) are not proxied here.
    return null;
  }
  const rest = m[3] ?? '';
  const path = rest === '' ? '/' : rest.charCodeAt(0) === 63 /* '?' */ ? `/${rest}` : rest;
  return { authority: m[2] ?? '', path, scheme: (m[1] ?? 'http').toLowerCase() };
}

/** Splits `host[:port]` (and `[v6]:port`). Port is null when absent or malformed. */
export function splitAuthority(authority: string): { readonly host: string; readonly port: number | null } {
  if (authority.charCodeAt(0) === 91 /* '[' */) {
    const end = authority.indexOf(']');
    const host = authority.slice(1, end < 0 ? undefined : end);
    const rest = end < 0 ? '' : authority.slice(end + 1);
    return { host, port: rest.startsWith(':') ? portOf(rest.slice(1)) : null };
  }
  const colon = authority.lastIndexOf(':');
  if (colon < 0) return { host: authority, port: null };
  return { host: authority.slice(0, colon), port: portOf(authority.slice(colon + 1)) };
}

function portOf(text: string): number | null {
  if (!/^\d{1,5}$/.test(text)) return null;
  const n = Number(text);
  return n >= 1 && n <= 65535 ? n : null;
}
