import t from 'tap';
import { RandomPicker } from '../../../src/balancer/random-picker.ts';
import { randomIndex } from '../../../src/balancer/selection.ts';
import { ep, seededRandom, tally } from './sim-helpers.ts';

t.test('uniform within tolerance, weights ignored', async (t) => {
  const p = new RandomPicker([ep('a', 5), ep('b'), ep('c'), ep('d')], seededRandom(42));
  const n = 40_000;
  const counts = tally(Array.from({ length: n }, () => p.pick()?.id ?? ''));
  for (const id of ['a', 'b', 'c', 'd']) {
    const share = (counts[id] ?? 0) / n;
    t.ok(Math.abs(share - 0.25) < 0.01, `${id}: ${(share * 100).toFixed(2)} % ≈ 25 %`);
  }
});

t.test('empty, exclusion, adopt, feedback no-ops', async (t) => {
  t.equal(new RandomPicker([], Math.random).pick(), null);
  const p = new RandomPicker([ep('a'), ep('b'), ep('c')], seededRandom(9));
  const picks = tally(Array.from({ length: 300 }, () => p.pick(new Set(['b']))?.id ?? ''));
  t.same(Object.keys(picks).sort(), ['a', 'c']);
  t.ok(p.pick(new Set(['a', 'b', 'c'])) !== null, 'all tried: any');
  p.start(ep('a'));
  p.end(ep('a'), 1, true);
  p.adopt([ep('z')]);
  t.equal(p.pick()?.id, 'z');
  t.equal(p.endpoints.length, 1);
});

t.test('randomIndex clamps a source that returns 1 or less than 0', async (t) => {
  t.equal(
    randomIndex(() => 1, 4),
    3,
  );
  t.equal(
    randomIndex(() => -0.5, 4),
    0,
  );
  t.equal(
    randomIndex(() => 0.999, 4),
    3,
  );
});
