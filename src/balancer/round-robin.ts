import type { Endpoint } from '../router/route-types.ts';
import type { Picker } from './picker-types.ts';

/**
 * Smooth weighted round robin (the nginx algorithm): every pick adds each endpoint's weight to its
 * running score, takes the highest score and subtracts the total. Over any window of Σweights
 * picks each endpoint is chosen exactly `weight` times, interleaved rather than in bursts.
 */
export class RoundRobinPicker implements Picker {
  private current: readonly Endpoint[];
  private readonly scores: Float64Array;
  private readonly total: number;

  constructor(endpoints: readonly Endpoint[]) {
    this.current = endpoints;
    this.scores = new Float64Array(endpoints.length);
    let total = 0;
    for (const e of endpoints) total += e.weight;
    this.total = total;
  }

  get endpoints(): readonly Endpoint[] {
    return this.current;
  }

  /** Take over an equal endpoint list (same ids and weights, same order) from a newer snapshot. */
  adopt(endpoints: readonly Endpoint[]): void {
    this.current = endpoints;
  }

  /** Next endpoint, or null when the set is empty. `exclude` skips endpoints already tried, when others remain. */
  pick(exclude?: ReadonlySet<string>): Endpoint | null {
    const list = this.current;
    const n = list.length;
    if (n === 0) return null;
    if (n === 1) return list[0] ?? null;
    let best = -1;
    let bestScore = Number.NEGATIVE_INFINITY;
    let total = this.total;
    for (let i = 0; i < n; i++) {
      const e = list[i]!;
      if (exclude?.has(e.id) === true) {
        total -= e.weight;
        continue;
      }
      const s = this.scores[i]! + e.weight;
      this.scores[i] = s;
      if (s > bestScore) {
        bestScore = s;
        best = i;
      }
    }
    if (best < 0) return list[0] ?? null;
    this.scores[best] = this.scores[best]! - total;
    return list[best] ?? null;
  }

  /** Round robin ignores load. */
  start(_endpoint: Endpoint): void {}

  end(_endpoint: Endpoint, _rttMs: number, _failed: boolean): void {}
}
