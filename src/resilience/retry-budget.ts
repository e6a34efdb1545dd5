/**
 * A Linkerd-style retry budget (anchors §1.5): over a sliding window of `ttlMs`, retries are allowed
 * while `retries ≤ retryRatio × requests + minRetriesPerSecond × ttl seconds`. The second term is the
 * floor that keeps low-traffic services retrying (Finagle/Linkerd's reserve). Only original requests
 * are recorded as requests; retries are recorded by a successful `tryWithdraw()`.
 *
 * The window is a ring of `slots` buckets (default 10, so 1 s each for the 10 s default), so counts
 * leave the window one bucket at a time. Memory and work per call are O(slots) at most, independent of
 * the request rate. The clock is injected.
 */

/** Milliseconds from any fixed origin, non-decreasing (e.g. `performance.now`). */
export type Clock = () => number;

export interface RetryBudgetOptions {
  /** Extra load retries may add, as a fraction of requests. Default 0.2. */
  readonly retryRatio?: number;
  /** Retries always allowed per second, whatever the traffic. Default 10. */
  readonly minRetriesPerSecond?: number;
  /** Window length. Default 10 000 ms. */
  readonly ttlMs?: number;
  /** Buckets in the window. Default 10. */
  readonly slots?: number;
}

export const DEFAULT_RETRY_RATIO = 0.2;
export const DEFAULT_MIN_RETRIES_PER_SECOND = 10;
export const DEFAULT_RETRY_BUDGET_TTL_MS = 10_000;
const DEFAULT_SLOTS = 10;

export interface RetryBudgetStats {
  /** Requests recorded over the budget's lifetime. */
  readonly requests: number;
  /** Retries granted over the budget's lifetime. */
  readonly retries: number;
  /** Withdrawals refused because the budget was exhausted (for metrics). */
  readonly exhausted: number;
}

export class RetryBudget {
  readonly retryRatio: number;
  readonly minRetriesPerSecond: number;
  readonly ttlMs: number;
  private readonly clock: Clock;
  private readonly slotMs: number;
  private readonly reqSlots: Float64Array;
  private readonly retrySlots: Float64Array;
  /** Absolute bucket number (floor(now / slotMs)) of the newest bucket. */
  private head: number;
  private windowRequests = 0;
  private windowRetries = 0;
  private totalRequests = 0;
  private totalRetries = 0;
  private totalExhausted = 0;

  constructor(clock: Clock, options: RetryBudgetOptions = {}) {
    this.clock = clock;
    this.retryRatio = Math.max(0, options.retryRatio ?? DEFAULT_RETRY_RATIO);
    this.minRetriesPerSecond = Math.max(0, options.minRetriesPerSecond ?? DEFAULT_MIN_RETRIES_PER_SECOND);
    this.ttlMs =
      options.ttlMs !== undefined && options.ttlMs > 0 ? options.ttlMs : DEFAULT_RETRY_BUDGET_TTL_MS;
    const slots = Math.max(1, Math.floor(options.slots ?? DEFAULT_SLOTS));
    this.slotMs = this.ttlMs / slots;
    this.reqSlots = new Float64Array(slots);
    this.retrySlots = new Float64Array(slots);
    this.head = Math.floor(clock() / this.slotMs);
  }

  /** Counts one original request (not a retry). */
  recordRequest(): void {
    const i = this.advance();
    this.reqSlots[i]! += 1;
    this.windowRequests++;
    this.totalRequests++;
  }

  /** Takes one retry when the budget allows it; otherwise counts an exhausted withdrawal. */
  tryWithdraw(): boolean {
    const i = this.advance();
    // The epsilon keeps ratios such as 0.57 × 100 (= 56.99999999999999) from losing a retry.
    if (this.windowRetries + 1 > this.allowance() + 1e-9) {
      this.totalExhausted++;
      return false;
    }
    this.retrySlots[i]! += 1;
    this.windowRetries++;
    this.totalRetries++;
    return true;
  }

  /** Retries still available in the current window (may be fractional). */
  available(): number {
    this.advance();
    return Math.max(0, this.allowance() - this.windowRetries);
  }

  stats(): RetryBudgetStats {
    return { requests: this.totalRequests, retries: this.totalRetries, exhausted: this.totalExhausted };
  }

  private allowance(): number {
    return this.retryRatio * this.windowRequests + (this.minRetriesPerSecond * this.ttlMs) / 1000;
  }

  /** Moves the window to now, dropping buckets that left it; returns the current bucket's index. */
  private advance(): number {
    const n = this.reqSlots.length;
    const now = Math.floor(this.clock() / this.slotMs);
    if (now > this.head) {
      const steps = Math.min(now - this.head, n);
      for (let s = 1; s <= steps; s++) {
        const i = mod(this.head + s, n);
        this.windowRequests -= this.reqSlots[i]!;
        this.windowRetries -= this.retrySlots[i]!;
        this.reqSlots[i] = 0;
        this.retrySlots[i] = 0;
      }
      this.head = now;
    }
    // A clock that went backwards keeps counting into the newest bucket.
    return mod(this.head, n);
  }
}

function mod(a: number, n: number): number {
  return ((a % n) + n) % n;
}
