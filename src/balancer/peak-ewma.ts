import type { Clock } from './picker-types.ts';

export interface PeakEwmaOptions {
  /** Monotonic milliseconds. */
  readonly now: Clock;
  /** Decay time constant τ in ms. Default 10 000 (Linkerd); at least 1. */
  readonly decayMs?: number;
  /** Estimate before the first sample, in ms. Default 30 (Linkerd's DEFAULT_EWMA); at least 1, so a new endpoint never looks free. */
  readonly defaultRttMs?: number;
  /** Smallest latency a failure counts as, in ms. Default 1 000. */
  readonly penaltyFloorMs?: number;
  /** A failure counts as at least this many times the current estimate. Default 10. */
  readonly penaltyFactor?: number;
  /** Upper bound of the penalty (not of real samples), in ms. Default 10 000. */
  readonly penaltyCapMs?: number;
}

export const DEFAULT_DECAY_MS = 10_000;
export const DEFAULT_RTT_MS = 30;
export const DEFAULT_PENALTY_FLOOR_MS = 1_000;
export const DEFAULT_PENALTY_FACTOR = 10;
export const DEFAULT_PENALTY_CAP_MS = 10_000;

/**
 * Peak-sensitive exponentially weighted moving average of one endpoint's round-trip time, plus its
 * in-flight count (tower's PeakEwma as configured by Linkerd).
 *
 * - A sample above the estimate replaces it at once (peak sensitivity: slowness is believed
 *   immediately).
 * - A sample at or below it is blended by elapsed time since the previous sample:
 *   `w = exp(-elapsed/τ)`, `est = est·w + rtt·(1−w)`. The estimate therefore converges with time
 *   constant τ whatever the request rate.
 * - Staleness: while nothing is in flight, `estimate()` reads the stored value decayed toward 0 by
 *   `exp(-idle/τ)` without changing it (Linkerd's `get_at`), so an endpoint that was slow once is
 *   tried again eventually. With requests in flight there is no such decay: silence from a busy
 *   endpoint may be slowness.
 * - Failures: `failed` samples count as `max(rtt, penalty)` with
 *   `penalty = min(cap, max(floor, factor × estimate))` (defaults 1 s, 10×, 10 s). A 5xx/429 answered
 *   in 2 ms would otherwise look like the fastest endpoint and draw traffic (Linkerd's load biaser
 *   substitutes a fixed 5 s). The floor puts a failing endpoint above any healthy one with normal
 *   latencies; the factor keeps the penalty above the norm for services that are slow anyway; the
 *   cap stops repeated failures from compounding (10× of an already penalised estimate) into an
 *   estimate that takes minutes to decay after the endpoint recovers.
 */
export class PeakEwma {
  private readonly now: Clock;
  private readonly decayMs: number;
  private readonly penaltyFloorMs: number;
  private readonly penaltyFactor: number;
  private readonly penaltyCapMs: number;
  private est: number;
  private stamp: number;
  private pending = 0;

  constructor(options: PeakEwmaOptions) {
    this.now = options.now;
    this.decayMs = Math.max(1, options.decayMs ?? DEFAULT_DECAY_MS);
    this.est = Math.max(1, options.defaultRttMs ?? DEFAULT_RTT_MS);
    this.penaltyFloorMs = options.penaltyFloorMs ?? DEFAULT_PENALTY_FLOOR_MS;
    this.penaltyFactor = options.penaltyFactor ?? DEFAULT_PENALTY_FACTOR;
    this.penaltyCapMs = Math.max(this.penaltyFloorMs, options.penaltyCapMs ?? DEFAULT_PENALTY_CAP_MS);
    this.stamp = this.now();
  }

  /** Requests sent and not yet ended. */
  get inFlight(): number {
    return this.pending;
  }

  /** The stored estimate (ms) as of the last sample, without staleness decay. */
  get storedEstimate(): number {
    return this.est;
  }

  /** Current RTT estimate in ms (decayed toward 0 while idle, see the class comment). */
  estimate(): number {
    if (this.pending > 0) return this.est;
    const idle = this.now() - this.stamp;
    return idle > 0 ? this.est * Math.exp(-idle / this.decayMs) : this.est;
  }

  /** `estimate × (inFlight + 1)`: each outstanding request adds one more RTT of expected wait. */
  cost(): number {
    return this.estimate() * (this.pending + 1);
  }

  /** The latency a failure counts as, given the current estimate. */
  penaltyMs(): number {
    return Math.min(this.penaltyCapMs, Math.max(this.penaltyFloorMs, this.penaltyFactor * this.est));
  }

  start(): void {
    this.pending++;
  }

  /** A request ended after `rttMs`; `failed` for 5xx, 429 or connect errors. */
  end(rttMs: number, failed: boolean): void {
    if (this.pending > 0) this.pending--;
    this.observe(failed ? Math.max(rttMs, this.penaltyMs()) : rttMs);
  }

  /** Feed one RTT sample (ms) without touching the in-flight count. */
  observe(rttMs: number): void {
    const rtt = Number.isFinite(rttMs) ? Math.max(rttMs, 0) : 0;
    const now = this.now();
    if (rtt > this.est) {
      this.est = rtt;
    } else {
      const elapsed = now - this.stamp;
      if (elapsed > 0) {
        const w = Math.exp(-elapsed / this.decayMs);
        this.est = this.est * w + rtt * (1 - w);
      }
    }
    if (now > this.stamp) this.stamp = now;
  }
}
