import t from 'tap';
import { backoffDelayMs, backoffRangeMs } from '../../../src/resilience/backoff.ts';

/** Deterministic uniform numbers in [0, 1) (mulberry32). */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

t.test('Envoy examples with base 25ms: 0–24, 0–74, 0–174, never over 250', async (t) => {
  const hi = () => 0.9999999999999999;
  t.equal(backoffDelayMs(1, 25, 250, hi), 24);
  t.equal(backoffDelayMs(2, 25, 250, hi), 74);
  t.equal(backoffDelayMs(3, 25, 250, hi), 174);
  t.equal(backoffDelayMs(4, 25, 250, hi), 250, 'capped');
  t.equal(backoffDelayMs(40, 25, 250, hi), 250, 'no overflow for large N');
  for (const n of [1, 2, 3, 4, 10])
    t.equal(
      backoffDelayMs(n, 25, 250, () => 0),
      0,
      `retry ${n} can be 0`,
    );
});

t.test('range grows as (2^N − 1)·base until it passes the cap, then stays', async (t) => {
  t.same(
    [1, 2, 3, 4, 5, 6].map((n) => backoffRangeMs(n, 25, 250)),
    [25, 75, 175, 375, 375, 375],
  );
  t.same(
    [1, 2, 3, 4, 5].map((n) => backoffRangeMs(n, 100, 1000)),
    [100, 300, 700, 1500, 1500],
  );
});

t.test('many draws: each within [0, (2^N − 1)·base) and ≤ 10·base', async (t) => {
  const random = seeded(42);
  for (const base of [1, 25, 100]) {
    const cap = 10 * base;
    for (let n = 1; n <= 8; n++) {
      const bound = (2 ** n - 1) * base;
      let min = Number.POSITIVE_INFINITY;
      let max = Number.NEGATIVE_INFINITY;
      let bad = 0;
      for (let i = 0; i < 2000; i++) {
        const d = backoffDelayMs(n, base, cap, random);
        if (!(d >= 0 && d < bound && d <= cap && Number.isInteger(d))) bad++;
        min = Math.min(min, d);
        max = Math.max(max, d);
      }
      t.equal(bad, 0, `base ${base}, retry ${n}: all in bounds`);
      // The draws spread over the range: near both ends.
      const top = Math.min(bound, cap);
      t.ok(min <= top * 0.05, `base ${base}, retry ${n}: low draws (min ${min})`);
      t.ok(max >= Math.min(top - 1, top * 0.95), `base ${base}, retry ${n}: high draws (max ${max})`);
    }
  }
});

t.test('roughly uniform for the first retry', async (t) => {
  const random = seeded(7);
  const buckets = [0, 0, 0, 0, 0];
  for (let i = 0; i < 10_000; i++) buckets[Math.floor(backoffDelayMs(1, 25, 250, random) / 5)]! += 1;
  for (const b of buckets) t.ok(b > 1700 && b < 2300, `bucket count ${b} ≈ 2000`);
});

t.test('degenerate inputs', async (t) => {
  t.equal(
    backoffDelayMs(0, 25, 250, () => 0.5),
    0,
    'retry 0: no wait',
  );
  t.equal(
    backoffDelayMs(1, 0, 0, () => 0.5),
    0,
    'base 0: no wait',
  );
  t.equal(
    backoffDelayMs(1, 25, 250, () => 1),
    24,
    'a random of 1 stays below the bound',
  );
  t.equal(
    backoffDelayMs(1, 25, 250, () => -3),
    0,
  );
  t.equal(
    backoffDelayMs(1, 25, 250, () => Number.NaN),
    0,
  );
});
