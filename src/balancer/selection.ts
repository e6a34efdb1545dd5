import type { Endpoint } from '../router/route-types.ts';
import type { RandomSource } from './picker-types.ts';

/** A uniform index in [0, n) from a source in [0, 1); safe against a source that returns 1. */
export function randomIndex(random: RandomSource, n: number): number {
  const i = Math.floor(random() * n);
  return i >= n ? n - 1 : Math.max(i, 0);
}

/**
 * The retry exclusion that applies to `list`: `exclude` when it removes some endpoints but leaves
 * at least one, otherwise undefined (nothing excluded, or everything tried: choose among all again).
 */
export function effectiveExclude(
  list: readonly Endpoint[],
  exclude: ReadonlySet<string> | undefined,
): ReadonlySet<string> | undefined {
  if (exclude === undefined || exclude.size === 0) return undefined;
  const left = countNotIn(list, exclude);
  return left === 0 || left === list.length ? undefined : exclude;
}

/** How many endpoints of `list` are not in `skip`. */
export function countNotIn(list: readonly Endpoint[], skip: ReadonlySet<string> | undefined): number {
  if (skip === undefined) return list.length;
  let n = 0;
  for (const e of list) if (!skip.has(e.id)) n++;
  return n;
}

/** Index in `list` of the k-th (0-based) endpoint not in `skip`; k itself when nothing is skipped. */
export function nthNotIn(
  list: readonly Endpoint[],
  skip: ReadonlySet<string> | undefined,
  k: number,
): number {
  if (skip === undefined) return k;
  for (let i = 0; i < list.length; i++) {
    if (skip.has(list[i]!.id)) continue;
    if (k === 0) return i;
    k--;
  }
  return -1;
}

/** Two distinct uniform indices into `list` among the endpoints not in `skip` (needs at least two). */
export function twoDistinct(
  random: RandomSource,
  list: readonly Endpoint[],
  skip: ReadonlySet<string> | undefined,
  count: number,
): readonly [number, number] {
  const a = randomIndex(random, count);
  let b = randomIndex(random, count - 1);
  if (b >= a) b++;
  return [nthNotIn(list, skip, a), nthNotIn(list, skip, b)];
}

/**
 * Per-endpoint state across endpoint lists: returns the states in `endpoints` order, keeping the
 * state of ids still present, creating it for new ids, and dropping it for ids that left.
 */
export function reconcileStates<S>(
  byId: Map<string, S>,
  endpoints: readonly Endpoint[],
  create: () => S,
): S[] {
  const states: S[] = [];
  const seen = new Set<string>();
  for (const e of endpoints) {
    let s = byId.get(e.id);
    if (s === undefined) {
      s = create();
      byId.set(e.id, s);
    }
    states.push(s);
    seen.add(e.id);
  }
  for (const id of byId.keys()) if (!seen.has(id)) byId.delete(id);
  return states;
}
