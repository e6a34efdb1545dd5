import t from 'tap';
import { isPrime, Maglev, RingHash } from '../../../src/balancer/consistent-hash.ts';
import { hashKey } from '../../../src/balancer/key-hash.ts';
import type { HashPicker } from '../../../src/balancer/picker-types.ts';
import type { Endpoint } from '../../../src/router/route-types.ts';
import { ep, tally } from './sim-helpers.ts';

const N = 10;
const KEYS = 50_000;
const endpoints = Array.from({ length: N }, (_, i) => ep(`10.0.0.${i + 1}:8080`));
const keyHashes = Array.from({ length: KEYS }, (_, i) => hashKey(`session-${i}`));

type Build = (endpoints: readonly Endpoint[]) => HashPicker;
const kinds: readonly [string, Build, number][] = [
  ['ring hash', (e) => new RingHash(e), 0.2],
  ['maglev', (e) => new Maglev(e), 0.05],
];

for (const [name, build, tolerance] of kinds) {
  t.test(`${name}: same key → same endpoint, also in a table built again`, async (t) => {
    const a = build(endpoints);
    const b = build(endpoints.map((e) => ({ ...e })));
    for (const h of keyHashes.slice(0, 2_000)) {
      const x = a.pick(h)?.id;
      if (x !== a.pick(h)?.id || x !== b.pick(h)?.id) {
        t.fail(`unstable for ${h}`);
        return;
      }
    }
    t.pass('2 000 keys stable');
    t.equal(build([]).pick(123), null, 'empty set');
    t.equal(build([ep('solo')]).pick(hashKey('anything'))?.id, 'solo');
  });

  t.test(`${name}: distribution within ±${tolerance * 100} % of 1/N`, async (t) => {
    const table = build(endpoints);
    const counts = tally(keyHashes.map((h) => table.pick(h)?.id ?? ''));
    const shares = endpoints.map((e) => (counts[e.id] ?? 0) / KEYS);
    t.comment(`${name} shares: ${shares.map((s) => (s * 100).toFixed(1)).join(' ')} %`);
    for (const s of shares) t.ok(Math.abs(s * N - 1) <= tolerance, `${(s * 100).toFixed(2)} %`);
  });

  t.test(`${name}: removing one of ${N} endpoints moves ≈1/N of keys`, async (t) => {
    const before = build(endpoints);
    const removed = endpoints[3]!;
    const after = build(endpoints.filter((e) => e !== removed));
    let moved = 0;
    let movedFromOthers = 0;
    for (const h of keyHashes) {
      const was = before.pick(h)!.id;
      const now = after.pick(h)!.id;
      if (was !== now) {
        moved++;
        if (was !== removed.id) movedFromOthers++;
      }
      if (now === removed.id) t.fail('removed endpoint still picked');
    }
    const fraction = moved / KEYS;
    t.comment(
      `${name}: ${(fraction * 100).toFixed(2)} % of keys moved (1/N = ${100 / N} %), ` +
        `${movedFromOthers} of them from endpoints that stayed`,
    );
    t.ok(fraction <= 1.5 / N, `moved ≤ 1.5/N (${(fraction * 100).toFixed(2)} %)`);
    t.ok(fraction >= 0.5 / N, 'and the removed endpoint’s keys did move');
  });

  t.test(`${name}: exclusion walks on to an endpoint not tried yet`, async (t) => {
    const table = build(endpoints);
    for (const h of keyHashes.slice(0, 200)) {
      const first = table.pick(h)!;
      const second = table.pick(h, new Set([first.id]))!;
      t.not(second.id, first.id) || t.bailout();
      t.equal(table.pick(h, new Set([first.id]))?.id, second.id, 'deterministic');
      const third = table.pick(h, new Set([first.id, second.id]))!;
      t.ok(third.id !== first.id && third.id !== second.id);
    }
    const h = keyHashes[0]!;
    t.equal(
      table.pick(h, new Set(endpoints.map((e) => e.id)))?.id,
      table.pick(h)?.id,
      'all tried: the owner',
    );
  });
}

t.test('ring hash: sizing and weights', async (t) => {
  const ring = new RingHash(endpoints);
  t.equal(ring.size, N * 1024, '1024 points per endpoint');
  t.equal(new RingHash([ep('a')], { minimumRingSize: 16 }).size, 16);
  const weighted = new RingHash([ep('a', 1), ep('b', 3)], { minimumRingSize: 256 });
  t.equal(weighted.size, 256 * 4);
  const counts = tally(keyHashes.map((h) => weighted.pick(h)?.id ?? ''));
  t.ok(Math.abs((counts['b'] ?? 0) / KEYS - 0.75) < 0.05, `weight 3 of 4 gets ≈75 % (${counts['b']})`);
  const capped = new RingHash(endpoints, { maximumRingSize: 2_000 });
  t.ok(capped.size <= 2_000 + N, `capped (${capped.size})`);
  t.equal(new RingHash([ep('a', 0)], { minimumRingSize: 4 }).size, 4, 'weight 0 counts as 1');
  // Hash above every point wraps to the first.
  t.not(ring.pick(0xffffffff), null);
  t.equal(ring.pick(0xffffffff)?.id, ring.pick(0)?.id, 'wraps around');
});

t.test('maglev: table, weights, validation', async (t) => {
  t.throws(() => new Maglev(endpoints, { tableSize: 65_536 }), RangeError, 'not prime');
  t.throws(() => new Maglev(endpoints, { tableSize: 5_000_011 }), RangeError, 'too large');
  const m = new Maglev(endpoints);
  t.equal(m.tableSize, 65_537);
  const slots = m.slotCounts();
  t.ok(Math.max(...slots) - Math.min(...slots) <= 1, `slots differ by at most one: ${slots.join(' ')}`);
  const small = new Maglev([ep('a', 1), ep('b', 3)], { tableSize: 1_009 });
  const [a, b] = small.slotCounts();
  t.ok(Math.abs(b! / 1_009 - 0.75) < 0.01, `weight 3 of 4 owns ≈75 % of slots (${a}/${b})`);
  t.equal(m.pick(65_537)?.id, m.pick(0)?.id, 'hash mod M');
  const many = Array.from({ length: 300 }, (_, i) => ep(`h${i}`));
  const wide = new Maglev(many, { tableSize: 3_001 });
  t.equal(
    wide.slotCounts().reduce((x, y) => x + y, 0),
    3_001,
    'more than 255 endpoints: 16-bit table, fully filled',
  );
  t.ok(isPrime(2) && isPrime(65_537) && !isPrime(1) && !isPrime(9) && !isPrime(2.5));
});

t.test('ring hash past the size cap: removing one of 200 moves ≈2/N', async (t) => {
  const many = Array.from({ length: 200 }, (_, i) => ep(`10.2.0.${i}:80`));
  const before = new RingHash(many);
  const after = new RingHash(many.filter((_, i) => i !== 17));
  t.ok(before.size <= 1 << 17, `capped at 2^17 (${before.size})`);
  let moved = 0;
  for (const h of keyHashes) if (before.pick(h)!.id !== after.pick(h)!.id) moved++;
  t.comment(`ring hash, 200 endpoints: ${((moved / KEYS) * 100).toFixed(2)} % moved (1/N = 0.5 %)`);
  // Each of the others goes from 655 to 659 points, and those new points take keys too.
  t.ok(moved / KEYS <= 2.5 / 200, 'at most 2.5/N');
});
