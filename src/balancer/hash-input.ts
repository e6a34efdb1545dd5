/**
 * The hash input of an Istio `consistentHash` policy (spec §3.4): which part of a request decides
 * its endpoint. A policy is compiled once per cluster policy; per request, `hash(ctx)` reads one
 * header, cookie, query parameter or the peer address and hashes it with `hashKey`.
 *
 * When the input is missing the caller picks a random endpoint (§3.4), except for an `httpCookie`
 * policy with a `ttl`: then `issue()` makes up a cookie value, and the caller hashes on it and
 * sends the cookie back with `Set-Cookie` so the client's next requests stick to that endpoint.
 */
import type { ConsistentHashSettings } from '../config/resource-types.ts';
import type { HeaderList } from '../listener/listener-types.ts';
import type { PickContext } from './cluster-types.ts';
import { hashKey } from './key-hash.ts';
import type { RandomSource } from './picker-types.ts';

/** `hash(ctx)` result when the request carries no hash input. Real hashes are unsigned 32-bit. */
export const NO_HASH = -1;

/** A cookie value made up for a request that had none. */
export interface IssuedCookie {
  /** `hashKey` of the made-up value. */
  readonly hash: number;
  /** The whole `Set-Cookie` header value. */
  readonly setCookie: string;
}

export interface HashInput {
  /** `httpHeaderName`, `httpCookie`, `useSourceIp` or `httpQueryParameterName` (for `/clusters` and tests). */
  readonly kind: 'header' | 'cookie' | 'source-ip' | 'query';
  /** The request's hash (unsigned 32-bit), or `NO_HASH` when the input is missing. */
  hash(ctx: PickContext): number;
  /**
   * Only for an `httpCookie` policy with `ttl`: a fresh cookie value and its `Set-Cookie` line;
   * null for every other policy (the caller then picks a random endpoint).
   */
  issue(): IssuedCookie | null;
}

/**
 * Compiles the hash-input part of `settings`. Returns null when none of the four keys is set (the
 * validator requires exactly one; a policy without one behaves like a missing input: random).
 * `random` feeds made-up cookie values.
 */
export function compileHashInput(settings: ConsistentHashSettings, random: RandomSource): HashInput | null {
  if (settings.httpHeaderName !== undefined) return headerInput(settings.httpHeaderName.toLowerCase());
  if (settings.httpCookie !== undefined) return cookieInput(settings.httpCookie, random);
  if (settings.useSourceIp === true) return sourceIpInput();
  if (settings.httpQueryParameterName !== undefined) return queryInput(settings.httpQueryParameterName);
  return null;
}

const noIssue = (): null => null;

function headerInput(name: string): HashInput {
  return {
    kind: 'header',
    hash(ctx) {
      const value = headerValue(ctx.headers, name);
      return value === undefined ? NO_HASH : hashKey(value);
    },
    issue: noIssue,
  };
}

/** All values of header `name` joined with ',' (the list form of a repeated field), or undefined. */
export function headerValue(headers: HeaderList, name: string): string | undefined {
  let value: string | undefined;
  for (let i = 0; i + 1 < headers.length; i += 2) {
    if (headers[i] !== name) continue;
    const v = headers[i + 1]!;
    value = value === undefined ? v : `${value},${v}`;
  }
  return value;
}

function sourceIpInput(): HashInput {
  return {
    kind: 'source-ip',
    hash(ctx) {
      const ip = ctx.remoteAddress;
      if (ip === '') return NO_HASH;
      // A dual-stack listener reports IPv4 peers as `::ffff:a.b.c.d`; hash the plain IPv4 form so
      // the same client maps to the same endpoint on either kind of listener.
      return hashKey(ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip);
    },
    issue: noIssue,
  };
}

function queryInput(name: string): HashInput {
  return {
    kind: 'query',
    hash(ctx) {
      const value = queryValue(ctx.path, name);
      return value === undefined ? NO_HASH : hashKey(value);
    },
    issue: noIssue,
  };
}

/**
 * The first value of query parameter `name` in `path`, percent-decoded ('+' read as a space, as
 * HTML forms encode it), or undefined when absent. Parameter names are compared after decoding too.
 * A malformed escape leaves that name or value as sent rather than failing the request.
 */
export function queryValue(path: string, name: string): string | undefined {
  const q = path.indexOf('?');
  if (q < 0) return undefined;
  let end = path.indexOf('#', q);
  if (end < 0) end = path.length;
  let start = q + 1;
  while (start <= end) {
    let amp = path.indexOf('&', start);
    if (amp < 0 || amp > end) amp = end;
    if (amp > start) {
      const eq = path.indexOf('=', start);
      const nameEnd = eq >= 0 && eq < amp ? eq : amp;
      if (decodeComponent(path.slice(start, nameEnd)) === name) {
        return nameEnd === amp ? '' : decodeComponent(path.slice(nameEnd + 1, amp));
      }
    }
    start = amp + 1;
  }
  return undefined;
}

function decodeComponent(s: string): string {
  const plain = s.includes('+') ? s.replaceAll('+', ' ') : s;
  if (!plain.includes('%')) return plain;
  try {
    return decodeURIComponent(plain);
  } catch {
    return plain;
  }
}

function cookieInput(
  cookie: NonNullable<ConsistentHashSettings['httpCookie']>,
  random: RandomSource,
): HashInput {
  const name = cookie.name;
  const ttl = cookie.ttl;
  // The fixed part of Set-Cookie is built once; only the value changes per issued cookie.
  let suffix = '';
  if (cookie.path !== undefined && cookie.path !== '') suffix += `; Path=${cookie.path}`;
  // ttl 0 is a session cookie (no Max-Age). A sub-second ttl rounds up: Max-Age=0 would delete it.
  if (ttl !== undefined && ttl > 0) suffix += `; Max-Age=${Math.ceil(ttl / 1000)}`;
  suffix += '; HttpOnly';
  for (const a of cookie.attributes ?? [])
    suffix += a.value === undefined ? `; ${a.name}` : `; ${a.name}=${a.value}`;
  return {
    kind: 'cookie',
    hash(ctx) {
      const value = cookieValue(ctx.headers, name);
      return value === undefined ? NO_HASH : hashKey(value);
    },
    issue:
      ttl === undefined
        ? noIssue
        : () => {
            const value = randomHex(random, 16);
            return { hash: hashKey(value), setCookie: `${name}=${value}${suffix}` };
          },
  };
}

/**
 * The value of cookie `name` from the request's `cookie` header(s) (`a=1; b=2`, possibly several
 * header lines), first occurrence; surrounding double quotes are removed (RFC 6265 allows them).
 */
export function cookieValue(headers: HeaderList, name: string): string | undefined {
  for (let i = 0; i + 1 < headers.length; i += 2) {
    if (headers[i] !== 'cookie') continue;
    const line = headers[i + 1]!;
    let start = 0;
    while (start < line.length) {
      let semi = line.indexOf(';', start);
      if (semi < 0) semi = line.length;
      const eq = line.indexOf('=', start);
      if (eq >= 0 && eq < semi && line.slice(start, eq).trim() === name) {
        let value = line.slice(eq + 1, semi).trim();
        if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
        return value;
      }
      start = semi + 1;
    }
  }
  return undefined;
}

/** `bytes` random bytes from `random` as lowercase hex. */
function randomHex(random: RandomSource, bytes: number): string {
  let s = '';
  for (let i = 0; i < bytes; i++) {
    const b = Math.min(255, Math.max(0, Math.floor(random() * 256)));
    s += (b < 16 ? '0' : '') + b.toString(16);
  }
  return s;
}
