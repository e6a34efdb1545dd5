import type { Endpoint } from '../router/route-types.ts';
import type { Picker, RandomSource } from './picker-types.ts';
import { countNotIn, effectiveExclude, nthNotIn, reconcileStates, twoDistinct } from './selection.ts';

export interface LeastRequestOptions {
  readonly random: RandomSource;
  /** Envoy's `active_request_bias`: effective weight is `w / (active + 1)^bias`. Default 1. */
  readonly activeRequestBias?: number;
}

/**
 * Envoy's LEAST_REQUEST (Istio's default policy).
 *
 * - All weights equal: power of two choices on active requests (`choice_count` 2): two distinct
 *   random endpoints, the one with fewer requests in flight wins; a tie keeps the first drawn.
 * - Unequal weights: weighted selection with effective weight `w / (active + 1)^bias`, scheduled
 *   like Envoy's EDF by smooth weighted round robin over the effective weights of the moment
 *   (deterministic and interleaved; an endpoint's share falls as its requests pile up).
 *
 * Active counts live in a Map keyed by `Endpoint.id` and survive `adopt`.
 */
export class LeastRequestPicker implements Picker {
  private readonly random: RandomSource;
  private readonly bias: number;
  private readonly byId = new Map<string, { active: number; score: number }>();
  private current: readonly Endpoint[] = [];
  private states: { active: number; score: number }[] = [];
  private equalWeights = true;

  constructor(endpoints: readonly Endpoint[], options: LeastRequestOptions) {
    this.random = options.random;
    this.bias = options.activeRequestBias ?? 1;
    this.adopt(endpoints);
  }

  get endpoints(): readonly Endpoint[] {
    return this.current;
  }

  adopt(endpoints: readonly Endpoint[]): void {
    this.states = reconcileStates(this.byId, endpoints, () => ({ active: 0, score: 0 }));
    this.current = endpoints;
    const w0 = endpoints[0]?.weight;
    this.equalWeights = endpoints.every((e) => e.weight === w0);
  }

  /** Requests in flight to an endpoint (0 when unknown). */
  activeOf(id: string): number {
    return this.byId.get(id)?.active ?? 0;
  }

  pick(exclude?: ReadonlySet<string>): Endpoint | null {
    const list = this.current;
    const n = list.length;
    if (n === 0) return null;
    if (n === 1) return list[0] ?? null;
    const skip = effectiveExclude(list, exclude);
    const count = countNotIn(list, skip);
    if (count === 1) return list[nthNotIn(list, skip, 0)] ?? null;
    if (!this.equalWeights) return this.pickWeighted(list, skip);
    const [i, j] = twoDistinct(this.random, list, skip, count);
    return this.states[j]!.active < this.states[i]!.active ? list[j]! : list[i]!;
  }

  private pickWeighted(list: readonly Endpoint[], skip: ReadonlySet<string> | undefined): Endpoint | null {
    let best = -1;
    let bestScore = Number.NEGATIVE_INFINITY;
    let total = 0;
    for (let i = 0; i < list.length; i++) {
      const e = list[i]!;
      if (skip?.has(e.id) === true) continue;
      const s = this.states[i]!;
      const w = this.bias === 1 ? e.weight / (s.active + 1) : e.weight / (s.active + 1) ** this.bias;
      total += w;
      s.score += w;
      if (s.score > bestScore) {
        bestScore = s.score;
        best = i;
      }
    }
    this.states[best]!.score -= total;
    return list[best] ?? null;
  }

  start(endpoint: Endpoint): void {
    const s = this.byId.get(endpoint.id);
    if (s !== undefined) s.active++;
  }

  end(endpoint: Endpoint, _rttMs: number, _failed: boolean): void {
    const s = this.byId.get(endpoint.id);
    if (s !== undefined && s.active > 0) s.active--;
  }
}
