import type { Endpoint } from '../router/route-types.ts';
import { fnv1a32, hashKey, mix32 } from './key-hash.ts';
import type { HashPicker } from './picker-types.ts';
import { effectiveExclude } from './selection.ts';

/*
 * Istio `consistentHash` (§3.4): `ringHash{minimumRingSize}` (the default) and `maglev{tableSize}`.
 * Both tables are built once from an endpoint list and are immutable; a new list means a new table.
 * Input hashes are unsigned 32-bit integers, normally `hashKey(headerValue)` and the like.
 */

export const DEFAULT_MINIMUM_RING_SIZE = 1024;
/** 2^17 points (1 MiB of ring): full 1024 points per endpoint up to 128 endpoints, a build under ~40 ms. */
export const DEFAULT_MAXIMUM_RING_SIZE = 1 << 17;
export const DEFAULT_MAGLEV_TABLE_SIZE = 65_537;
/** Istio: the Maglev table size must be prime and below this. */
export const MAGLEV_TABLE_SIZE_LIMIT = 5_000_011;

export interface RingHashOptions {
  /** Entries per endpoint of the lightest weight; the ring has at least this many. Default 1024. */
  readonly minimumRingSize?: number;
  /** Upper bound on ring entries; past it every endpoint's share is scaled down. Default 2^17. */
  readonly maximumRingSize?: number;
}

/**
 * Ring hash (Karger et al.). Every endpoint puts `round(minimumRingSize × weight / smallest weight)`
 * points on a 32-bit ring at `hashKey("<id>_<i>")`; a hash belongs to the first point at or after it
 * (wrapping).
 *
 * Sizing differs from Envoy on purpose. Envoy scales the ring so that it holds about
 * `minimumRingSize` entries in total, which makes each host's entry count depend on how many hosts
 * there are: when one of 10 leaves, the other nine go from 103 to 114 entries each and those new
 * points take keys from each other, so ~19 % of keys move instead of ~10 %. Here an endpoint's points
 * depend only on its own id and weight, so removing one moves only the keys it owned (≈1/N, what
 * Istio promises), and the 1024 points per endpoint give a tighter spread (≈3 % standard deviation
 * of load). The price is N × 1024 entries (8 bytes each; a build takes ~3 ms for 10 endpoints),
 * bounded by `maximumRingSize`: past 128 equal endpoints each gets `2^17 / N` points, rounded, so
 * counts again depend on N and a removal moves about 2/N of keys (still far below Envoy's sizing).
 */
export class RingHash implements HashPicker {
  readonly endpoints: readonly Endpoint[];
  /** Sorted point hashes. */
  private readonly points: Uint32Array;
  /** `owners[k]` is the index in `endpoints` of the endpoint at `points[k]`. */
  private readonly owners: Uint32Array;

  constructor(endpoints: readonly Endpoint[], options: RingHashOptions = {}) {
    this.endpoints = endpoints;
    const n = endpoints.length;
    if (n > 1 << 20) throw new RangeError(`ring hash: too many endpoints (${n})`);
    const minimum = Math.max(1, Math.floor(options.minimumRingSize ?? DEFAULT_MINIMUM_RING_SIZE));
    const maximum = Math.max(minimum, Math.floor(options.maximumRingSize ?? DEFAULT_MAXIMUM_RING_SIZE));
    let lightest = Number.POSITIVE_INFINITY;
    let totalWeight = 0;
    for (const e of endpoints) {
      const w = weightOf(e);
      if (w < lightest) lightest = w;
      totalWeight += w;
    }
    let perUnit = minimum;
    if (n > 0 && (totalWeight / lightest) * perUnit > maximum) perUnit = maximum / (totalWeight / lightest);
    const counts = endpoints.map((e) => Math.max(1, Math.round((perUnit * weightOf(e)) / lightest)));
    let size = 0;
    for (const c of counts) size += c;
    // Sort (hash, owner) pairs as one number: hash · 2^20 + owner < 2^52, exact in a double.
    const packed = new Float64Array(size);
    let k = 0;
    for (let i = 0; i < n; i++) {
      const id = endpoints[i]!.id;
      const count = counts[i]!;
      for (let j = 0; j < count; j++) packed[k++] = hashKey(`${id}_${j}`) * 0x100000 + i;
    }
    packed.sort();
    this.points = new Uint32Array(size);
    this.owners = new Uint32Array(size);
    for (let m = 0; m < size; m++) {
      const v = packed[m]!;
      const owner = v % 0x100000;
      this.owners[m] = owner;
      this.points[m] = (v - owner) / 0x100000;
    }
  }

  /** Number of points on the ring. */
  get size(): number {
    return this.points.length;
  }

  pick(hash: number, exclude?: ReadonlySet<string>): Endpoint | null {
    const size = this.points.length;
    if (size === 0) return null;
    const h = hash >>> 0;
    // First point ≥ h.
    let lo = 0;
    let hi = size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.points[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    let at = lo === size ? 0 : lo;
    const skip = effectiveExclude(this.endpoints, exclude);
    if (skip !== undefined) {
      // Walk clockwise to the next endpoint not tried yet; one remains, so this ends within a lap.
      for (let step = 0; step < size && skip.has(this.endpoints[this.owners[at]!]!.id); step++) {
        at = at + 1 === size ? 0 : at + 1;
      }
    }
    return this.endpoints[this.owners[at]!] ?? null;
  }
}

/** Endpoint weights are ≥ 1 by contract; anything else counts as 1. */
function weightOf(e: Endpoint): number {
  return e.weight > 0 ? e.weight : 1;
}

export interface MaglevOptions {
  /** Lookup table size M; must be prime and below 5 000 011. Default 65 537. */
  readonly tableSize?: number;
}

export function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}

/**
 * Maglev hashing (Eisenbud et al., NSDI 2016). Each endpoint walks its own permutation of the M
 * table slots, `offset + j·skip (mod M)` with `offset`, `skip` from its id; endpoints take turns
 * claiming their next free slot until the table is full, so shares differ by at most one slot.
 * Weights: per round an endpoint earns `weight / heaviest weight` turns (the heaviest claims one
 * slot every round). A lookup is `table[hash mod M]`. When one endpoint leaves, its slots are
 * re-dealt and only a few others change hands (slightly more than 1/N of keys move in total).
 */
export class Maglev implements HashPicker {
  readonly endpoints: readonly Endpoint[];
  readonly tableSize: number;
  /** Slot → index in `endpoints`. */
  private readonly table: Uint8Array | Uint16Array | Uint32Array;

  constructor(endpoints: readonly Endpoint[], options: MaglevOptions = {}) {
    const m = options.tableSize ?? DEFAULT_MAGLEV_TABLE_SIZE;
    if (!isPrime(m) || m >= MAGLEV_TABLE_SIZE_LIMIT) {
      throw new RangeError(`maglev: tableSize must be a prime below ${MAGLEV_TABLE_SIZE_LIMIT}, got ${m}`);
    }
    this.endpoints = endpoints;
    this.tableSize = m;
    const n = endpoints.length;
    // The largest value of the element type marks an empty slot.
    const table = n < 0xff ? new Uint8Array(m) : n < 0xffff ? new Uint16Array(m) : new Uint32Array(m);
    const empty = n < 0xff ? 0xff : n < 0xffff ? 0xffff : 0xffffffff;
    this.table = table;
    if (n === 0) return;
    table.fill(empty);
    const pos = new Float64Array(n);
    const step = new Float64Array(n);
    const rate = new Float64Array(n);
    const credit = new Float64Array(n);
    let heaviest = 0;
    for (const e of endpoints) if (weightOf(e) > heaviest) heaviest = weightOf(e);
    for (let i = 0; i < n; i++) {
      const e = endpoints[i]!;
      const base = fnv1a32(e.id);
      pos[i] = mix32(base) % m;
      step[i] = (mix32(base ^ 0x9e3779b9) % (m - 1)) + 1;
      rate[i] = weightOf(e) / heaviest;
    }
    let filled = 0;
    for (;;) {
      for (let i = 0; i < n; i++) {
        const c = credit[i]! + rate[i]!;
        if (c < 1) {
          credit[i] = c;
          continue;
        }
        credit[i] = c - 1;
        let slot = pos[i]!;
        const s = step[i]!;
        while (table[slot] !== empty) {
          slot += s;
          if (slot >= m) slot -= m;
        }
        table[slot] = i;
        slot += s;
        pos[i] = slot >= m ? slot - m : slot;
        if (++filled === m) return;
      }
    }
  }

  pick(hash: number, exclude?: ReadonlySet<string>): Endpoint | null {
    const n = this.endpoints.length;
    if (n === 0) return null;
    const m = this.tableSize;
    let slot = (hash >>> 0) % m;
    const skip = effectiveExclude(this.endpoints, exclude);
    if (skip !== undefined) {
      // Probe the following slots (owned by effectively random endpoints) for one not tried yet;
      // if the remaining endpoints own no slot at all (tiny weights), stay with the owner.
      const first = slot;
      for (let probe = 0; probe < m; probe++) {
        const at = (first + probe) % m;
        if (!skip.has(this.endpoints[this.table[at]!]!.id)) {
          slot = at;
          break;
        }
      }
    }
    return this.endpoints[this.table[slot]!] ?? null;
  }

  /** Slots owned per endpoint index (for tests and `/clusters`). */
  slotCounts(): number[] {
    const counts = new Array<number>(this.endpoints.length).fill(0);
    for (const owner of this.table) counts[owner] = (counts[owner] ?? 0) + 1;
    return counts;
  }
}
