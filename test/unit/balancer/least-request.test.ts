import t from 'tap';
import { LeastRequestPicker } from '../../../src/balancer/least-request.ts';
import { ep, seededRandom, sequence, tally } from './sim-helpers.ts';

t.test('equal weights: P2C on active requests', async (t) => {
  t.equal(new LeastRequestPicker([], { random: Math.random }).pick(), null);
  t.equal(new LeastRequestPicker([ep('x')], { random: Math.random }).pick()?.id, 'x');
  // 0 → a; 0.5 of the other two → c.
  const p = new LeastRequestPicker([ep('a'), ep('b'), ep('c')], { random: sequence(0, 0.5) });
  t.equal(p.pick()?.id, 'a', 'tie: the first drawn');
  p.start(ep('a'));
  t.equal(p.activeOf('a'), 1);
  t.equal(p.pick()?.id, 'c', 'fewer active wins');
  p.start(ep('c'));
  p.start(ep('c'));
  t.equal(p.pick()?.id, 'a');
  p.end(ep('c'), 10, true);
  p.end(ep('c'), 10, false);
  p.end(ep('c'), 10, false);
  t.equal(p.activeOf('c'), 0, 'never negative');
  t.equal(p.activeOf('nope'), 0);
  p.start(ep('nope'));
  p.end(ep('nope'), 1, false);
});

t.test('equal weights: a backed-up endpoint is avoided, idle ones share evenly', async (t) => {
  const p = new LeastRequestPicker([ep('a'), ep('b'), ep('c'), ep('d')], { random: seededRandom(11) });
  for (let i = 0; i < 5; i++) p.start(ep('a'));
  const counts = tally(Array.from({ length: 4000 }, () => p.pick()?.id ?? ''));
  t.equal(counts['a'], undefined, 'a (5 active) loses every pair it is in');
  for (const id of ['b', 'c', 'd']) {
    t.ok(Math.abs((counts[id] ?? 0) / 4000 - 1 / 3) < 0.03, `${id} ≈ a third (${counts[id]})`);
  }
});

t.test('unequal weights: smooth weighted selection by w / (active + 1)', async (t) => {
  const p = new LeastRequestPicker([ep('a', 3), ep('b', 1)], { random: seededRandom(1) });
  const idle = tally(Array.from({ length: 400 }, () => p.pick()?.id ?? ''));
  t.same(idle, { a: 300, b: 100 }, 'no load: exactly the weights');
  for (let i = 0; i < 2; i++) p.start(ep('a'));
  // a: 3 / 3 = 1, b: 1 / 1 = 1 → even.
  const loaded = tally(Array.from({ length: 400 }, () => p.pick()?.id ?? ''));
  t.same(loaded, { a: 200, b: 200 }, 'a with two active: effective weight 1, same as b');

  const biased = new LeastRequestPicker([ep('a', 4), ep('b', 1)], {
    random: seededRandom(1),
    activeRequestBias: 2,
  });
  biased.start(ep('a'));
  // a: 4 / 2² = 1, b: 1.
  t.same(tally(Array.from({ length: 100 }, () => biased.pick()?.id ?? '')), { a: 50, b: 50 }, 'bias 2');

  const ex = new LeastRequestPicker([ep('a', 2), ep('b', 1), ep('c', 1)], { random: seededRandom(1) });
  const picks = tally(Array.from({ length: 300 }, () => ex.pick(new Set(['a']))?.id ?? ''));
  t.same(picks, { b: 150, c: 150 }, 'exclusion');
  t.equal(ex.pick(new Set(['a', 'b']))?.id, 'c');
});

t.test('active counts survive adopt; weights are re-read', async (t) => {
  const p = new LeastRequestPicker([ep('a'), ep('b')], { random: seededRandom(4) });
  p.start(ep('a'));
  p.adopt([ep('a'), ep('b'), ep('c')]);
  t.equal(p.activeOf('a'), 1);
  t.equal(p.endpoints.length, 3);
  p.adopt([ep('a', 2), ep('c')]);
  t.equal(p.activeOf('b'), 0, 'b forgotten');
  // a: 2 / 2 = 1, c: 1 / 1 → even under the weighted scheduler.
  t.same(tally(Array.from({ length: 10 }, () => p.pick()?.id ?? '')), { a: 5, c: 5 });
});
