import type { HeaderList } from '../listener/listener-types.ts';
import type { UpstreamFailure } from '../upstream/upstream-types.ts';
import { backoffDelayMs, type RandomSource } from './backoff.ts';
import type { CompiledRetryPolicy } from './retry-policy.ts';

/**
 * Whether a failed try is retried (spec §2.5 "Retry execution", §8 items 13–15). Pure apart from the
 * budget withdrawal, which happens last and only when every other check allows the retry.
 */

/** How one try ended, as far as retrying is concerned. */
export type TryOutcome =
  /**
   * The try failed without a response from the upstream. `bytesSent` is false when nothing of the
   * request (not even the head) was written, which is what `reset-before-request` looks at.
   */
  | { readonly kind: 'failure'; readonly failure: UpstreamFailure; readonly bytesSent: boolean }
  /** The per-try timeout fired before response headers. */
  | { readonly kind: 'per-try-timeout' }
  /** The circuit breaker refused the try (`UO`). Never retried. */
  | { readonly kind: 'overflow' }
  /** Response headers the upstream actually sent (never a local reply standing in for a failure). */
  | { readonly kind: 'response'; readonly status: number; readonly headers: HeaderList };

/** Something that grants or refuses retries, e.g. a `RetryBudget`. */
export interface RetryGate {
  /** Takes one retry; false when none is available. */
  tryWithdraw(): boolean;
}

export interface RetryState {
  /** Tries made so far, including the one that just ended (≥ 1). */
  readonly attemptsMade: number;
  /** False when the request body can no longer be replayed (it outgrew the replay buffer). */
  readonly bodyReplayable: boolean;
  /** Clock reading (ms) now; only compared with `deadlineMs`. */
  readonly nowMs: number;
  /** When the route timeout fires (same clock as `nowMs`); undefined when there is no route timeout. */
  readonly deadlineMs?: number;
  /** Draws the back-off jitter. */
  readonly random: RandomSource;
  /** Retry budget (and/or the cluster's `maxRetries`); consulted last. Undefined: unlimited. */
  readonly budget?: RetryGate;
}

/**
 * Why no retry is made.
 * - `not-retriable`: retries are disabled, the outcome matches no `retryOn` condition, or it can never
 *   be retried (overflow, `x-envoy-overloaded`). Return the failure as it is.
 * - `exhausted`: the outcome is retriable but no retries are left. The caller adds `URX`.
 * - `body-not-replayable`: the body outgrew the replay buffer.
 * - `deadline`: the next try could not start before the route deadline.
 * - `budget`: the retry budget (or concurrent-retry limit) refused.
 */
export type RetryStopReason = 'not-retriable' | 'exhausted' | 'body-not-replayable' | 'deadline' | 'budget';

export type RetryVerdict =
  | { readonly kind: 'retry'; readonly retryNumber: number; readonly delayMs: number }
  | { readonly kind: 'stop'; readonly reason: RetryStopReason };

const GRPC_STATUS = 'grpc-status';
const RATE_LIMITED = 'x-envoy-ratelimited';
const OVERLOADED = 'x-envoy-overloaded';

function findHeader(headers: HeaderList, name: string): string | undefined {
  for (let i = 0; i + 1 < headers.length; i += 2) {
    if (headers[i] === name) return headers[i + 1];
  }
  return undefined;
}

function failureMatches(policy: CompiledRetryPolicy, failure: UpstreamFailure, bytesSent: boolean): boolean {
  const on = policy.conditions;
  // Any reset-like failure (connect, disconnect, timeout, protocol error) counts as a "5xx".
  if (on.has('5xx') || on.has('gateway-error') || on.has('reset')) return true;
  if (!bytesSent && on.has('reset-before-request')) return true;
  // `timeout` is a connect timeout, which Envoy reports as a connection failure.
  if ((failure === 'connect' || failure === 'timeout') && on.has('connect-failure')) return true;
  return false;
}

function responseMatches(policy: CompiledRetryPolicy, status: number, headers: HeaderList): boolean {
  const on = policy.conditions;
  // Never retry a response the upstream marked as overloaded.
  if (findHeader(headers, OVERLOADED) !== undefined) return false;
  // A rate-limited response is retried only under `envoy-ratelimited`, whatever else it matches.
  if (findHeader(headers, RATE_LIMITED) !== undefined) return on.has('envoy-ratelimited');
  if (on.has('5xx') && status >= 500 && status <= 599) return true;
  if (on.has('gateway-error') && (status === 502 || status === 503 || status === 504)) return true;
  if (on.has('retriable-4xx') && status === 409) return true;
  if (on.has('retriable-status-codes') && policy.retriableStatusCodes.has(status)) return true;
  if (on.has('retriable-headers')) {
    for (const name of policy.retriableHeaders) if (findHeader(headers, name) !== undefined) return true;
  }
  if (policy.retriableGrpcCodes.size > 0) {
    const grpc = findHeader(headers, GRPC_STATUS);
    if (grpc !== undefined && /^\d+$/.test(grpc.trim()) && policy.retriableGrpcCodes.has(Number(grpc))) {
      return true;
    }
  }
  return false;
}

/** Whether `outcome` matches the policy's `retryOn` conditions (ignores attempts, body, deadline, budget). */
export function matchesRetryOn(policy: CompiledRetryPolicy, outcome: TryOutcome): boolean {
  switch (outcome.kind) {
    case 'overflow':
      return false;
    case 'per-try-timeout':
      return policy.conditions.has('5xx') || policy.conditions.has('gateway-error');
    case 'failure':
      return failureMatches(policy, outcome.failure, outcome.bytesSent);
    case 'response':
      return responseMatches(policy, outcome.status, outcome.headers);
  }
}

function stop(reason: RetryStopReason): RetryVerdict {
  return { kind: 'stop', reason };
}

/**
 * Decides whether to retry after a try ended with `outcome`. Checks, in order: retries enabled and the
 * outcome retriable (`not-retriable`), retries left (`exhausted`), body replayable
 * (`body-not-replayable`), back-off ending before the deadline (`deadline`), then the budget (`budget`).
 */
export function shouldRetry(
  policy: CompiledRetryPolicy,
  outcome: TryOutcome,
  state: RetryState,
): RetryVerdict {
  if (!policy.enabled || !matchesRetryOn(policy, outcome)) return stop('not-retriable');
  const retryNumber = Math.max(1, state.attemptsMade);
  if (retryNumber > policy.attempts) return stop('exhausted');
  if (!state.bodyReplayable) return stop('body-not-replayable');
  const delayMs = backoffDelayMs(retryNumber, policy.backoffBaseMs, policy.backoffMaxMs, state.random);
  if (state.deadlineMs !== undefined && state.nowMs + delayMs >= state.deadlineMs) return stop('deadline');
  if (state.budget !== undefined && !state.budget.tryWithdraw()) return stop('budget');
  return { kind: 'retry', retryNumber, delayMs };
}
