/**
 * Error text and the failure class of errors before a request went out, the same for both upstream
 * clients (the lean `h1-client.ts` and `undici-upstream.ts`), and the server identity check both run
 * when they originate TLS.
 */
import { splitSubjectAltNames } from '../tls/spiffe.ts';
import type { UpstreamFailure } from './upstream-types.ts';

/**
 * A connection refused by the client's own TLS checks (server identity, unusable TLS settings). Its
 * message is the whole `detail` (no code prefix); its code makes it a `connect` failure.
 */
export class UpstreamTlsError extends Error {
  readonly code = 'ERR_MESHLET_UPSTREAM_TLS';
}

/**
 * OpenSSL's certificate verification results as Node reports them (`err.code`), the ones that mean
 * "the server's certificate chain was not accepted" rather than a transport problem.
 */
const CHAIN_ERROR =
  /^(CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|INVALID_CA|PATH_LENGTH_|INVALID_PURPOSE|ERR_TLS_CERT)/;

/** The `code` of a Node or undici error (`ECONNREFUSED`, `UND_ERR_SOCKET`, …), or ''. */
export function errorCode(err: unknown): string {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string')
    return err.code;
  return '';
}

/**
 * `code: message`, or the message alone when there is no code: the `detail` of `onError`. TLS
 * failures say so in words, since "CERT_HAS_EXPIRED: certificate has expired" alone does not tell
 * an operator whose certificate it was.
 */
export function errorDetail(err: unknown): string {
  if (err instanceof UpstreamTlsError) return err.message;
  const code = errorCode(err);
  const message = err instanceof Error ? err.message : String(err);
  if (code === '') return message;
  if (CHAIN_ERROR.test(code)) return `server certificate rejected: ${message} (${code})`;
  if (code.startsWith('ERR_SSL_')) return `TLS handshake failed: ${message.trim()} (${code})`;
  return `${code}: ${message}`;
}

/** An error before the request was written: nothing reached the upstream. */
export function failureBeforeSend(code: string): UpstreamFailure {
  return code === 'ETIMEDOUT' ? 'timeout' : 'connect';
}

/**
 * A TLS alert from the server (`ERR_SSL_…ALERT…`): with TLS 1.3 the server checks our client
 * certificate after our side of the handshake is done, so its refusal arrives as an error on a
 * connection we already took as up. It still means the server's TLS layer turned the connection
 * down and its application never saw a request.
 */
export function isTlsAlert(code: string): boolean {
  return code.startsWith('ERR_SSL_') && code.includes('ALERT');
}

/**
 * Why a server certificate whose `subjectaltname` (Node's text form) is `altNames` does not carry
 * one of `expected`, or null when it does. An expected name matches a URI SAN exactly, or a DNS SAN
 * ignoring case; a wildcard DNS SAN `*.example.com` covers exactly one more label
 * (`api.example.com`, not `a.b.example.com` nor `example.com`). The text names what the server
 * presented (its URI SANs, else its DNS SANs) and what was expected.
 */
export function serverIdentityMismatch(
  altNames: string | undefined,
  expected: readonly string[],
): string | null {
  const names = altNames === undefined || altNames === '' ? [] : splitSubjectAltNames(altNames);
  const want = expected.length === 1 ? expected[0]! : `one of ${expected.join(', ')}`;
  if (names === null) return `server certificate has an unreadable subjectAltName; expected ${want}`;
  const uris: string[] = [];
  const dns: string[] = [];
  for (const [type, value] of names) {
    if (type === 'URI') uris.push(value);
    else if (type === 'DNS') dns.push(value);
  }
  for (const name of expected) {
    if (uris.includes(name)) return null;
    for (const d of dns) if (dnsNameMatches(d, name)) return null;
  }
  const presented = uris.length > 0 ? uris : dns;
  if (presented.length === 0) return `server certificate has no URI or DNS SAN; expected ${want}`;
  return `server identity ${presented.join(', ')} does not match expected ${want}`;
}

function dnsNameMatches(san: string, name: string): boolean {
  const s = san.toLowerCase();
  const n = name.toLowerCase();
  if (s === n) return true;
  if (!s.startsWith('*.') || s.length < 4) return false;
  const dot = n.indexOf('.');
  return dot > 0 && n.slice(dot) === s.slice(1);
}
