import type { Endpoint } from '../router/route-types.ts';
import type { Picker, RandomSource } from './picker-types.ts';
import { countNotIn, effectiveExclude, nthNotIn, randomIndex } from './selection.ts';

/** Istio RANDOM: uniform over the endpoints (weights ignored); stateless, so `adopt` takes any list. */
export class RandomPicker implements Picker {
  private readonly random: RandomSource;
  private current: readonly Endpoint[];

  constructor(endpoints: readonly Endpoint[], random: RandomSource) {
    this.current = endpoints;
    this.random = random;
  }

  get endpoints(): readonly Endpoint[] {
    return this.current;
  }

  adopt(endpoints: readonly Endpoint[]): void {
    this.current = endpoints;
  }

  pick(exclude?: ReadonlySet<string>): Endpoint | null {
    const list = this.current;
    if (list.length === 0) return null;
    const skip = effectiveExclude(list, exclude);
    return list[nthNotIn(list, skip, randomIndex(this.random, countNotIn(list, skip)))] ?? null;
  }

  start(_endpoint: Endpoint): void {}

  end(_endpoint: Endpoint, _rttMs: number, _failed: boolean): void {}
}
