import t from 'tap';
import type { Picker } from '../../../src/balancer/picker-types.ts';
import { RoundRobinPicker } from '../../../src/balancer/round-robin.ts';
import type { Endpoint } from '../../../src/router/route-types.ts';

const ep = (id: string, weight = 1): Endpoint => ({ id, address: id, port: 80, weight, labels: {} });

t.test('smooth weighted round robin: exact shares, interleaved', async (t) => {
  const p = new RoundRobinPicker([ep('a', 5), ep('b', 1), ep('c', 1)]);
  const picks = Array.from({ length: 7 }, () => p.pick()?.id);
  t.same(picks, ['a', 'a', 'b', 'a', 'c', 'a', 'a'], 'nginx order for 5:1:1');
  const counts: Record<string, number> = {};
  for (let i = 0; i < 700; i++) {
    const id = p.pick()?.id ?? '';
    counts[id] = (counts[id] ?? 0) + 1;
  }
  t.same(counts, { a: 500, b: 100, c: 100 });
});

t.test('empty set, single endpoint, exclusion', async (t) => {
  t.equal(new RoundRobinPicker([]).pick(), null);
  const one = new RoundRobinPicker([ep('only')]);
  t.equal(
    one.pick(new Set(['only']))?.id,
    'only',
    'with nothing else left, a tried endpoint is picked again',
  );
  const p = new RoundRobinPicker([ep('a'), ep('b'), ep('c')]);
  for (let i = 0; i < 6; i++) t.not(p.pick(new Set(['b']))?.id, 'b', 'excluded endpoint skipped');
  t.equal(p.pick(new Set(['a', 'b', 'c']))?.id, 'a', 'all excluded: fall back to the first');
});

t.test('RoundRobinPicker is a Picker whose load feedback changes nothing', async (t) => {
  const p: Picker = new RoundRobinPicker([ep('a'), ep('b')]);
  p.start(ep('a'));
  p.end(ep('a'), 5_000, true);
  t.same(
    Array.from({ length: 4 }, () => p.pick()?.id),
    ['a', 'b', 'a', 'b'],
  );
});
