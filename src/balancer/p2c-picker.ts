import type { Endpoint } from '../router/route-types.ts';
import { PeakEwma, type PeakEwmaOptions } from './peak-ewma.ts';
import type { Picker, RandomSource } from './picker-types.ts';
import { countNotIn, effectiveExclude, nthNotIn, reconcileStates, twoDistinct } from './selection.ts';

export interface P2cPickerOptions extends PeakEwmaOptions {
  readonly random: RandomSource;
}

/**
 * Power of two choices over peak-EWMA load (Linkerd's balancer): draw two distinct endpoints at
 * random and send to the one with the lower `cost / weight`, where cost = RTT estimate × (in flight + 1).
 * Per-endpoint state lives in a Map keyed by `Endpoint.id`, so it survives `adopt` of a new list.
 */
export class P2cPicker implements Picker {
  private readonly options: P2cPickerOptions;
  private readonly random: RandomSource;
  private readonly byId = new Map<string, PeakEwma>();
  private current: readonly Endpoint[] = [];
  /** Aligned with `current`, so `pick` does no Map lookups. */
  private states: PeakEwma[] = [];

  constructor(endpoints: readonly Endpoint[], options: P2cPickerOptions) {
    this.options = options;
    this.random = options.random;
    this.adopt(endpoints);
  }

  get endpoints(): readonly Endpoint[] {
    return this.current;
  }

  /** Take over a new endpoint list: state is kept for ids still present, dropped for the others. */
  adopt(endpoints: readonly Endpoint[]): void {
    this.states = reconcileStates(this.byId, endpoints, () => new PeakEwma(this.options));
    this.current = endpoints;
  }

  /** The load state of one endpoint (for `/clusters` and tests), or undefined when unknown. */
  stateOf(id: string): PeakEwma | undefined {
    return this.byId.get(id);
  }

  pick(exclude?: ReadonlySet<string>): Endpoint | null {
    const list = this.current;
    const n = list.length;
    if (n === 0) return null;
    if (n === 1) return list[0] ?? null;
    const skip = effectiveExclude(list, exclude);
    const count = countNotIn(list, skip);
    if (count === 1) return list[nthNotIn(list, skip, 0)] ?? null;
    const [i, j] = twoDistinct(this.random, list, skip, count);
    const ei = list[i]!;
    const ej = list[j]!;
    const ci = this.states[i]!.cost() / ei.weight;
    const cj = this.states[j]!.cost() / ej.weight;
    return cj < ci ? ej : ei;
  }

  start(endpoint: Endpoint): void {
    this.byId.get(endpoint.id)?.start();
  }

  end(endpoint: Endpoint, rttMs: number, failed: boolean): void {
    this.byId.get(endpoint.id)?.end(rttMs, failed);
  }
}
