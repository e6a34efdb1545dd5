/**
 * Envoy's fully jittered exponential back-off (spec §2.5, anchors §2.3). Before retry N (1-based) the
 * delay is uniform in [0, (2^N − 1)·base), capped at `maxMs` (10·base for route retries).
 *
 * Like Envoy, the exponent stops growing once (2^N − 1)·base exceeds the cap, so late retries draw from
 * a fixed range and land on the cap with a fixed probability (base 25 ms, cap 250 ms: the range stops at
 * 375 ms, so a third of the draws from retry 4 on are exactly 250 ms). Every delay is a whole number of ms.
 */

/** A source of uniform numbers in [0, 1), e.g. `Math.random`. Injected so tests are deterministic. */
export type RandomSource = () => number;

/** Upper bound (exclusive) of the draw before retry `retryNumber`, before the cap is applied. */
export function backoffRangeMs(retryNumber: number, baseMs: number, maxMs: number): number {
  let range = baseMs;
  // (2^n − 1)·base for n = 1, 2, … stopping at retryNumber or at the first value above the cap.
  for (let n = 2; n <= retryNumber && range <= maxMs; n++) range = (2 ** n - 1) * baseMs;
  return range;
}

/** Delay in ms before retry `retryNumber` (1 = the first retry). */
export function backoffDelayMs(
  retryNumber: number,
  baseMs: number,
  maxMs: number,
  random: RandomSource,
): number {
  if (retryNumber < 1 || baseMs <= 0) return 0;
  const range = backoffRangeMs(retryNumber, baseMs, maxMs);
  let r = random();
  if (!(r >= 0)) r = 0;
  else if (r >= 1) r = 0.9999999999999999;
  const delay = Math.floor(r * range);
  return Math.min(delay, Math.floor(maxMs));
}
