/**
 * The two access-log line formats: a JSON object with Envoy's field names, and Envoy's default text
 * line. Both are built by hand from the observed request: `JSON.stringify` of a 24-field object costs
 * several times more than concatenating strings that mostly need no escaping (see the README's
 * Access log section for the figures), and the access log runs once per request.
 */
import { type ObservedRequest, upstreamHostOf } from './observed-request.ts';

/** Formats one finished request as one line, without the newline. */
export type LineFormatter = (r: ObservedRequest, durationMs: number, code: number) => string;

/**
 * The JSON line's fields, as a parser reads them back. Strings are '-' when the value is absent,
 * as in Envoy's logs.
 */
export interface AccessLogEntry {
  readonly start_time: string;
  readonly method: string;
  /** The path (and query) as the client sent it, before any rewrite (Envoy's `X-ENVOY-ORIGINAL-PATH?:PATH`). */
  readonly path: string;
  readonly protocol: 'HTTP/1.1';
  /** 0 when the client got no response head. */
  readonly response_code: number;
  readonly response_flags: string;
  /**
   * Why the proxy answered as it did when it decided itself, Envoy's `%RESPONSE_CODE_DETAILS%`:
   * `rbac_access_denied_matched_policy[ns-name-rule[i]]` (or `[none]`) for an AuthorizationPolicy
   * denial, which has no response flag. '-' otherwise.
   */
  readonly response_code_details: string;
  readonly bytes_received: number;
  readonly bytes_sent: number;
  /** ms from the request's arrival to the end of its response (whole ms, truncated like Envoy). */
  readonly duration: number;
  /** ms from the last attempt's start to its response head, as a string like Envoy's header value; '-' when none. */
  readonly upstream_service_time: string;
  readonly upstream_host: string;
  readonly upstream_cluster: string;
  readonly x_forwarded_for: string;
  readonly user_agent: string;
  readonly request_id: string;
  readonly authority: string;
  readonly route_name: string;
  /** The client's address (without its port). */
  readonly downstream_remote_address: string;
  /** Envoy's `%DOWNSTREAM_PEER_URI_SAN%`: the caller's verified SPIFFE id (inbound mTLS), else '-'. */
  readonly downstream_peer_uri_san: string;
  /** Envoy's `%UPSTREAM_TRANSPORT_FAILURE_REASON%`: why mTLS origination failed (UF), else '-'. */
  readonly upstream_transport_failure_reason: string;
  /** Envoy's `%REQUESTED_SERVER_NAME%`: the SNI of the downstream TLS connection, else '-'. */
  readonly requested_server_name: string;
  readonly reporter: 'source' | 'destination';
  /** Upstream attempts made (0: answered locally; more than 1: retries). */
  readonly attempts: number;
}

/**
 * Envoy's `%START_TIME%` (`2026-11-29T20:51:31.123Z`) for a wall-clock time in ms. The text up to
 * the second is kept, so most lines cost a few string concatenations instead of a `Date` and
 * `toISOString`.
 */
export class StartTimeFormatter {
  private second = Number.NaN;
  private prefix = '';

  format(ms: number): string {
    const t = Math.floor(ms);
    const second = Math.floor(t / 1000);
    if (second !== this.second) {
      this.second = second;
      // "YYYY-MM-DDTHH:MM:SS." from the ISO string, whose last four characters are "mmmZ".
      const iso = new Date(second * 1000).toISOString();
      this.prefix = iso.slice(0, iso.length - 4);
    }
    const milli = t - second * 1000;
    return `${this.prefix}${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
  }
}

/**
 * Anything JSON must escape in a string (quote, backslash, control characters), and surrogates: a
 * lone one cannot be written as UTF-8, and `JSON.stringify` escapes it (pairs pass through it as
 * they are). Strings without any of these, nearly all of them, are quoted as they are.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const JSON_UNSAFE = /["\\\u0000-\u001f\ud800-\udfff]/;

/** A string known to need no escaping, as a JSON string literal. */
function quoted(s: string): string {
  return `"${s}"`;
}

/** `s` as a JSON string literal. */
export function jsonString(s: string): string {
  return JSON_UNSAFE.test(s) ? JSON.stringify(s) : `"${s}"`;
}

/**
 * What the text format escapes: quote and backslash (fields are quoted) and control characters
 * (one request must stay one line, and a terminal must not interpret anything), DEL included.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const TEXT_UNSAFE = /["\\\u0000-\u001f\u007f]/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const TEXT_UNSAFE_ALL = /["\\\u0000-\u001f\u007f]/g;

function escapeTextChar(c: string): string {
  if (c === '"') return '\\"';
  if (c === '\\') return '\\\\';
  const code = c.charCodeAt(0);
  return `\\x${code < 16 ? '0' : ''}${code.toString(16)}`;
}

/**
 * `s` for the text line: as it is unless it holds a quote, a backslash or a control character,
 * which become `\"`, `\\` and `\xHH` (Envoy writes them raw, which lets a client forge lines or
 * break the quoting). Non-ASCII text is written as UTF-8.
 */
export function textValue(s: string): string {
  return TEXT_UNSAFE.test(s) ? s.replace(TEXT_UNSAFE_ALL, escapeTextChar) : s;
}

/** The request headers the line shows, read in one pass. */
interface LoggedHeaders {
  forwardedFor: string;
  userAgent: string;
}

function readHeaders(r: ObservedRequest, out: LoggedHeaders): void {
  out.forwardedFor = '-';
  out.userAgent = '-';
  const h = r.req.headers;
  let found = 0;
  for (let i = 0; i < h.length && found < 2; i += 2) {
    const name = h[i];
    if (name === 'user-agent' && out.userAgent === '-') {
      out.userAgent = h[i + 1] as string;
      found++;
    } else if (name === 'x-forwarded-for' && out.forwardedFor === '-') {
      out.forwardedFor = h[i + 1] as string;
      found++;
    }
  }
}

/** Envoy's `X-ENVOY-ORIGINAL-PATH?:PATH`: what the client asked for, before a rewrite. */
function loggedPath(r: ObservedRequest): string {
  return r.originalPath !== '' ? r.originalPath : r.path !== '' ? r.path : '-';
}

/**
 * The cluster the request went to: the routed cluster, else the service of a fixed target (the
 * inbound application, passthrough); '-' when nothing was sent upstream (a local reply).
 */
function upstreamCluster(r: ObservedRequest): string {
  const c = r.cluster;
  if (c !== null) return c.name;
  return r.endpoint !== null || r.target !== null ? r.peer.serviceName : '-';
}

/** `upstream_service_time`: whole ms to the last attempt's response head, '-' without one. */
function serviceTime(r: ObservedRequest): string {
  return r.upstreamStatus > 0 ? String(Math.floor(r.rttMs)) : '-';
}

/**
 * Envoy's `REQ(X-REQUEST-ID)`: the id the request went upstream with, or for a local reply made
 * before any attempt (NR, RBAC) the id the client sent, when it sent one.
 */
function requestId(r: ObservedRequest): string {
  if (r.requestId !== '') return r.requestId;
  const h = r.req.headers;
  for (let i = 0; i < h.length; i += 2) if (h[i] === 'x-request-id') return h[i + 1] as string;
  return '-';
}

function orDash(s: string): string {
  return s === '' ? '-' : s;
}

/**
 * A formatter for `format` whose start times are `wallNow()` minus the request's duration (the
 * pipeline's clock is monotonic; the log needs the calendar time).
 */
export function lineFormatter(format: 'json' | 'text', wallNow: () => number = Date.now): LineFormatter {
  const times = new StartTimeFormatter();
  // Reused for every line: the header pass writes its two answers here instead of a new object.
  const headers: LoggedHeaders = { forwardedFor: '-', userAgent: '-' };
  if (format === 'text') {
    return (r, durationMs, code) => {
      readHeaders(r, headers);
      let method = r.req.method;
      let path = loggedPath(r);
      let xff = headers.forwardedFor;
      let ua = headers.userAgent;
      let id = requestId(r);
      let authority = orDash(r.authority);
      let host = upstreamHostOf(r);
      // One test over all the values; only a line that has something to escape pays per value.
      if (TEXT_UNSAFE.test(`${method}${path}${xff}${ua}${id}${authority}${host}`)) {
        method = textValue(method);
        path = textValue(path);
        xff = textValue(xff);
        ua = textValue(ua);
        id = textValue(id);
        authority = textValue(authority);
        host = textValue(host);
      }
      return `[${times.format(wallNow() - durationMs)}] "${method} ${path} HTTP/1.1" ${code} ${orDash(r.flags)} ${r.bytesReceived} ${r.bytesSent} ${Math.floor(durationMs)} ${serviceTime(r)} "${xff}" "${ua}" "${id}" "${authority}" "${host}"`;
    };
  }
  return (r, durationMs, code) => {
    readHeaders(r, headers);
    const req = r.req;
    const method = req.method;
    const path = loggedPath(r);
    const flags = orDash(r.flags);
    const details = orDash(r.details);
    const host = upstreamHostOf(r);
    const cluster = upstreamCluster(r);
    const xff = headers.forwardedFor;
    const ua = headers.userAgent;
    const id = requestId(r);
    const authority = orDash(r.authority);
    const route = orDash(r.routeName);
    const remote = orDash(req.remoteAddress);
    const san = req.peer?.spiffeId ?? '-';
    const tls = orDash(r.tlsFailure);
    const sni = req.sni ?? '-';
    // One test over the values instead of one per value: nearly every line needs no escaping at
    // all, and then each value is written between quotes as it is. Flags, the cluster name and the
    // client's IP address stay out of the test: meshlet makes them from flag letters, validated
    // host names and DNS-label subset names, and socket addresses, none of which can hold a quote,
    // a backslash or a control character.
    const safe = !JSON_UNSAFE.test(
      `${method}${path}${details}${host}${xff}${ua}${id}${authority}${route}${san}${tls}${sni}`,
    );
    const q = safe ? quoted : jsonString;
    return `{"start_time":"${times.format(wallNow() - durationMs)}","method":${q(method)},"path":${q(path)},"protocol":"HTTP/1.1","response_code":${code},"response_flags":${q(flags)},"response_code_details":${q(details)},"bytes_received":${r.bytesReceived},"bytes_sent":${r.bytesSent},"duration":${Math.floor(durationMs)},"upstream_service_time":"${serviceTime(r)}","upstream_host":${q(host)},"upstream_cluster":${q(cluster)},"x_forwarded_for":${q(xff)},"user_agent":${q(ua)},"request_id":${q(id)},"authority":${q(authority)},"route_name":${q(route)},"downstream_remote_address":${q(remote)},"downstream_peer_uri_san":${q(san)},"upstream_transport_failure_reason":${q(tls)},"requested_server_name":${q(sni)},"reporter":"${r.reporter}","attempts":${r.attempts}}`;
  };
}
