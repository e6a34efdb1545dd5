/**
 * Header rewriting between the downstream and the upstream hop: pure functions on `HeaderList`.
 *
 * Hop-by-hop decisions (RFC 9110 §7.6.1):
 * - Always removed: `connection`, `keep-alive`, `proxy-connection`, `transfer-encoding`, `upgrade`,
 *   `trailer`, `te`, and every header named in a `Connection` header.
 * - `te: trailers` is kept on requests (what Envoy does): it only says "I accept trailers", which stays
 *   true across this hop, and gRPC needs it. Any other `te` value is dropped, even though RFC 9110 asks
 *   senders to name `te` in `Connection` (so a `Connection: te` does not remove `te: trailers`).
 * - `proxy-authorization` / `proxy-authenticate` are kept: a sidecar is transparent, never consumes
 *   proxy credentials, and RFC 9110 §11.7 lets a proxy relay them to the next proxy (Envoy keeps them).
 * - `expect` is dropped (`expectContinue` reports `100-continue`): the upstream client does not send
 *   `Expect` on HTTP/1.1, so the proxy speaks for itself, like Envoy's default.
 * - Upgrade requests (`Connection: upgrade` plus `Upgrade: <proto>`) keep `connection: upgrade` and
 *   `upgrade`. `h2c` is not an upgrade we pass through: it is dropped with `http2-settings`.
 *
 * Both functions make one new array and do not allocate per header in the common case.
 */
import type { HeaderList } from '../listener/listener-types.ts';

export interface ForwardInfo {
  /** Value for `host` (the authority the route resolved to, with port when not the default). */
  readonly authority: string;
  /** Peer address of the downstream connection, appended to `x-forwarded-for`. */
  readonly remoteAddress: string;
  /** `http` or `https`, for `x-forwarded-proto`. */
  readonly scheme: string;
  /** Used for `x-request-id` when the request has none. */
  readonly requestId: string;
}

export interface PreparedHeaders {
  readonly headers: HeaderList;
  /** The request carried `Expect: 100-continue` (removed from `headers`). */
  readonly expectContinue: boolean;
  /** The `Upgrade` value when this is an upgrade request (WebSocket), else null. */
  readonly upgrade: string | null;
}

/** True for names that never cross a hop on their own (not counting names listed in `Connection`). */
export function isHopByHop(name: string): boolean {
  switch (name) {
    case 'connection':
    case 'keep-alive':
    case 'proxy-connection':
    case 'transfer-encoding':
    case 'upgrade':
    case 'trailer':
    case 'te':
      return true;
    default:
      return false;
  }
}

/**
 * Adds the lowercase tokens of one `Connection` value to `into` (created on first need) and returns it.
 * Tokens that are hop-by-hop anyway (`close`, `keep-alive`, `upgrade`, …) are not recorded, so the
 * common `connection: keep-alive` costs no allocation beyond the split.
 */
export function addConnectionTokens(value: string, into: string[] | null): string[] | null {
  if (value.indexOf(',') === -1) return addToken(value, into);
  for (const part of value.split(',')) into = addToken(part, into);
  return into;
}

function addToken(raw: string, into: string[] | null): string[] | null {
  const token = raw.trim().toLowerCase();
  if (token === '' || token === 'close' || isHopByHop(token)) return into;
  if (into === null) return [token];
  if (!into.includes(token)) into.push(token);
  return into;
}

function hasToken(value: string, token: string): boolean {
  const lower = value.toLowerCase();
  if (lower === token) return true;
  for (const part of lower.split(',')) if (part.trim() === token) return true;
  return false;
}

/** Request headers for the upstream hop. `headers` is not modified. */
export function prepareUpstreamHeaders(headers: HeaderList, info: ForwardInfo): PreparedHeaders {
  const n = headers.length;

  // Pre-scan (compares names only): Connection tokens and the upgrade decision.
  let named: string[] | null = null;
  let connectionUpgrade = false;
  let upgradeValue: string | null = null;
  for (let i = 0; i < n; i += 2) {
    const name = headers[i]!;
    if (name === 'connection') {
      const value = headers[i + 1]!;
      named = addConnectionTokens(value, named);
      if (!connectionUpgrade && hasToken(value, 'upgrade')) connectionUpgrade = true;
    } else if (name === 'upgrade' && upgradeValue === null) {
      upgradeValue = headers[i + 1]!.trim();
    }
  }
  let upgrade: string | null = null;
  if (connectionUpgrade && upgradeValue !== null && upgradeValue !== '' && !hasToken(upgradeValue, 'h2c')) {
    upgrade = upgradeValue;
  }

  const out: HeaderList = ['host', info.authority];
  let expectContinue = false;
  let xff: string | null = null;
  let hasRequestId = false;
  for (let i = 0; i < n; i += 2) {
    const name = headers[i]!;
    const value = headers[i + 1]!;
    switch (name) {
      case 'host':
      case 'x-forwarded-proto':
      case 'connection':
      case 'keep-alive':
      case 'proxy-connection':
      case 'transfer-encoding':
      case 'upgrade':
      case 'trailer':
      case 'http2-settings':
        continue;
      case 'expect':
        if (value.trim().toLowerCase() === '100-continue') expectContinue = true;
        continue;
      case 'te':
        if (value.trim().toLowerCase() === 'trailers') out.push(name, 'trailers');
        continue;
      case 'x-forwarded-for':
        xff = xff === null ? value : `${xff}, ${value}`;
        continue;
      case 'x-request-id':
        if (named?.includes(name)) continue;
        hasRequestId = true;
        break;
    }
    if (named?.includes(name)) continue;
    out.push(name, value);
  }

  if (upgrade !== null) out.push('connection', 'upgrade', 'upgrade', upgrade);
  out.push(
    'x-forwarded-for',
    xff === null ? info.remoteAddress : `${xff}, ${info.remoteAddress}`,
    'x-forwarded-proto',
    info.scheme,
  );
  if (!hasRequestId) out.push('x-request-id', info.requestId);
  return { headers: out, expectContinue, upgrade };
}

/** Response headers for the downstream hop: hop-by-hop and Connection-named headers removed. */
export function cleanResponseHeaders(headers: HeaderList): HeaderList {
  const n = headers.length;
  let named: string[] | null = null;
  for (let i = 0; i < n; i += 2) {
    if (headers[i] === 'connection') named = addConnectionTokens(headers[i + 1]!, named);
  }
  const out: HeaderList = [];
  for (let i = 0; i < n; i += 2) {
    const name = headers[i]!;
    if (isHopByHop(name) || named?.includes(name)) continue;
    out.push(name, headers[i + 1]!);
  }
  return out;
}
