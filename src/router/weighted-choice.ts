/**
 * Weighted destination choice (§2.4, §8 item 3) as a cumulative table built once. A single entry
 * ignores its weight (even 0) and needs no random draw. With several, weight-0 entries are dropped
 * and the rest are relative weights.
 */

export interface WeightedTable<T> {
  readonly items: readonly T[];
  /** Running sums of the weights, same length as `items`. */
  readonly cumulative: readonly number[];
  readonly total: number;
}

export function buildWeightedTable<T>(
  entries: readonly { readonly item: T; readonly weight: number }[],
): WeightedTable<T> {
  if (entries.length === 1) {
    return Object.freeze({
      items: Object.freeze([entries[0]!.item]),
      cumulative: Object.freeze([1]),
      total: 1,
    });
  }
  let kept = entries.filter((e) => e.weight > 0);
  // Validation requires Σw > 0; should it be 0 anyway, split evenly rather than fail.
  if (kept.length === 0) kept = entries.map((e) => ({ item: e.item, weight: 1 }));
  const cumulative: number[] = [];
  let total = 0;
  for (const e of kept) {
    total += e.weight;
    cumulative.push(total);
  }
  return Object.freeze({
    items: Object.freeze(kept.map((e) => e.item)),
    cumulative: Object.freeze(cumulative),
    total,
  });
}

/** Picks one item; draws `random()` once, and only when there is a real choice. */
export function pickWeighted<T>(table: WeightedTable<T>, random: () => number): T {
  const items = table.items;
  if (items.length === 1) return items[0]!;
  const r = random() * table.total;
  const cumulative = table.cumulative;
  for (let i = 0; i < cumulative.length; i++) {
    if (r < cumulative[i]!) return items[i]!;
  }
  return items[items.length - 1]!;
}
