import type { HTTPRetry } from '../config/resource-types.ts';

/**
 * A route's `retries` block compiled once per snapshot (spec §2.5): the `retryOn` string parsed into
 * conditions and status codes, Istio's defaults filled in. Read-only; shared by every request on the route.
 */

/** HTTP `retryOn` conditions. */
export type HttpRetryCondition =
  | '5xx'
  | 'gateway-error'
  | 'reset'
  | 'reset-before-request'
  | 'connect-failure'
  | 'refused-stream'
  | 'retriable-4xx'
  | 'retriable-status-codes'
  | 'retriable-headers'
  | 'envoy-ratelimited'
  | 'http3-post-connect-failure';

/** gRPC `retryOn` conditions, matched against `grpc-status` in the response headers only. */
export type GrpcRetryCondition =
  | 'cancelled'
  | 'deadline-exceeded'
  | 'resource-exhausted'
  | 'internal'
  | 'unavailable';

export type RetryCondition = HttpRetryCondition | GrpcRetryCondition;

/** gRPC status code of each gRPC condition. */
export const GRPC_RETRY_CODES: Readonly<Record<GrpcRetryCondition, number>> = {
  cancelled: 1,
  'deadline-exceeded': 4,
  'resource-exhausted': 8,
  internal: 13,
  unavailable: 14,
};

const HTTP_CONDITIONS: ReadonlySet<string> = new Set<HttpRetryCondition>([
  '5xx',
  'gateway-error',
  'reset',
  'reset-before-request',
  'connect-failure',
  'refused-stream',
  'retriable-4xx',
  'retriable-status-codes',
  'retriable-headers',
  'envoy-ratelimited',
  'http3-post-connect-failure',
]);

/** Codes with a Go `http.StatusText` (what Istio accepts as a numeric `retryOn` token). */
const KNOWN_STATUS_CODES: ReadonlySet<number> = new Set([
  100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307,
  308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 418, 421,
  422, 423, 424, 425, 426, 428, 429, 431, 451, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511,
]);

/** Istio's default `retryOn` (also what the validator fills in when `retries` has no `retryOn`). */
export const DEFAULT_RETRY_ON = 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes';
/** Retries of Istio's default policy. */
export const DEFAULT_RETRY_ATTEMPTS = 2;
/** Inbound (server-side) default: 2 retries on `reset-before-request` only (spec §2.5). */
export const DEFAULT_INBOUND_RETRY_ON = 'reset-before-request';
/** Base back-off interval when `backoff` is unset. */
export const DEFAULT_BACKOFF_BASE_MS = 25;
/** The back-off cap is this many times the base (Envoy). */
export const BACKOFF_CAP_FACTOR = 10;
/** Envoy's `host_selection_retry_max_attempts` as Istio sets it. */
export const HOST_SELECTION_MAX_ATTEMPTS = 5;

export interface CompiledRetryPolicy {
  /** False when `attempts <= 0`: nothing is retried, and no `URX` is ever added. */
  readonly enabled: boolean;
  /** Retries (not tries): at most `1 + attempts` upstream tries. 0 when disabled. */
  readonly attempts: number;
  /** Per-try limit; undefined means each try is bounded only by the route timeout. */
  readonly perTryTimeoutMs?: number;
  /** Parsed conditions. A numeric token adds `retriable-status-codes`. */
  readonly conditions: ReadonlySet<RetryCondition>;
  /** Status codes from numeric tokens; only upstream-sent responses match them. May be empty. */
  readonly retriableStatusCodes: ReadonlySet<number>;
  /** gRPC status codes of the gRPC conditions present. */
  readonly retriableGrpcCodes: ReadonlySet<number>;
  /**
   * Header names (lowercase) for `retriable-headers`. Istio offers no field to configure them, so this is
   * always empty and `retriable-headers` never matches; kept so the decision code reads like Envoy's.
   */
  readonly retriableHeaders: readonly string[];
  /**
   * Tokens that were neither a condition nor a known status code, in order. The config validator
   * rejects such tokens before a policy is compiled, so this is normally empty; here they are ignored.
   */
  readonly ignoredTokens: readonly string[];
  readonly backoffBaseMs: number;
  /** `BACKOFF_CAP_FACTOR × backoffBaseMs`. */
  readonly backoffMaxMs: number;
  /**
   * `retryIgnorePreviousHosts` as configured. Undefined means the default: on, except for a destination
   * with consistent-hash load balancing (the caller knows the LB; the policy does not).
   */
  readonly retryIgnorePreviousHosts?: boolean;
  readonly retryRemoteLocalities: boolean;
  /** How often a retry may re-pick to avoid previous hosts. */
  readonly hostSelectionMaxAttempts: number;
}

export interface ParsedRetryOn {
  readonly conditions: ReadonlySet<RetryCondition>;
  readonly retriableStatusCodes: ReadonlySet<number>;
  readonly ignoredTokens: readonly string[];
}

/**
 * Parses a `retryOn` string: tokens split on `,`, trimmed, empty ones skipped. Numeric tokens with a
 * known status text become retriable status codes (and add `retriable-status-codes`). Unknown tokens,
 * including non-standard numbers such as `555`, are ignored and reported in `ignoredTokens`.
 */
export function parseRetryOn(retryOn: string): ParsedRetryOn {
  const conditions = new Set<RetryCondition>();
  const retriableStatusCodes = new Set<number>();
  const ignoredTokens: string[] = [];
  for (const raw of retryOn.split(',')) {
    const token = raw.trim();
    if (token === '') continue;
    if (HTTP_CONDITIONS.has(token) || Object.hasOwn(GRPC_RETRY_CODES, token)) {
      conditions.add(token as RetryCondition);
    } else if (/^\d+$/.test(token) && KNOWN_STATUS_CODES.has(Number(token))) {
      retriableStatusCodes.add(Number(token));
    } else {
      ignoredTokens.push(token);
    }
  }
  if (retriableStatusCodes.size > 0) conditions.add('retriable-status-codes');
  return { conditions, retriableStatusCodes, ignoredTokens };
}

function grpcCodesOf(conditions: ReadonlySet<RetryCondition>): Set<number> {
  const codes = new Set<number>();
  for (const [name, code] of Object.entries(GRPC_RETRY_CODES)) {
    if (conditions.has(name as GrpcRetryCondition)) codes.add(code);
  }
  return codes;
}

/**
 * Compiles a route's `retries`. Undefined gives Istio's default outbound policy: 2 retries on
 * `connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes` with an empty code list
 * (so a 503 is not retried; Istio ≥ 1.24). `attempts <= 0` disables retries, the default included.
 */
export function compileRetryPolicy(retry: HTTPRetry | undefined): CompiledRetryPolicy {
  const r: HTTPRetry = retry ?? { attempts: DEFAULT_RETRY_ATTEMPTS, retryOn: DEFAULT_RETRY_ON };
  const parsed = parseRetryOn(r.retryOn);
  const enabled = r.attempts > 0;
  const base = r.backoffMs !== undefined && r.backoffMs > 0 ? r.backoffMs : DEFAULT_BACKOFF_BASE_MS;
  return {
    enabled,
    attempts: enabled ? Math.floor(r.attempts) : 0,
    ...(r.perTryTimeoutMs !== undefined && r.perTryTimeoutMs > 0
      ? { perTryTimeoutMs: r.perTryTimeoutMs }
      : {}),
    conditions: parsed.conditions,
    retriableStatusCodes: parsed.retriableStatusCodes,
    retriableGrpcCodes: grpcCodesOf(parsed.conditions),
    retriableHeaders: [],
    ignoredTokens: parsed.ignoredTokens,
    backoffBaseMs: base,
    backoffMaxMs: BACKOFF_CAP_FACTOR * base,
    ...(r.retryIgnorePreviousHosts !== undefined
      ? { retryIgnorePreviousHosts: r.retryIgnorePreviousHosts }
      : {}),
    retryRemoteLocalities: r.retryRemoteLocalities ?? false,
    hostSelectionMaxAttempts: HOST_SELECTION_MAX_ATTEMPTS,
  };
}

/** Istio's default outbound policy (routes without `retries`, default routes of services without a VS). */
export const DEFAULT_RETRY_POLICY: CompiledRetryPolicy = compileRetryPolicy(undefined);

/** Inbound default: 2 retries on `reset-before-request` (not used on gRPC ports). */
export const DEFAULT_INBOUND_RETRY_POLICY: CompiledRetryPolicy = compileRetryPolicy({
  attempts: DEFAULT_RETRY_ATTEMPTS,
  retryOn: DEFAULT_INBOUND_RETRY_ON,
});

/** No retries at all (e.g. the ALLOW_ANY passthrough route). */
export const NO_RETRY_POLICY: CompiledRetryPolicy = compileRetryPolicy({ attempts: 0, retryOn: '' });
