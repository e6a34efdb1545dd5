import t from 'tap';
import { buildWeightedTable, pickWeighted } from '../../../src/router/weighted-choice.ts';

t.test('single entry: weight ignored, no draw', async (t) => {
  const table = buildWeightedTable([{ item: 'a', weight: 0 }]);
  t.equal(
    pickWeighted(table, () => {
      throw new Error('drawn');
    }),
    'a',
  );
});

t.test('relative weights, zero weights dropped', async (t) => {
  const table = buildWeightedTable([
    { item: 'a', weight: 1 },
    { item: 'z', weight: 0 },
    { item: 'b', weight: 3 },
  ]);
  t.same(table.items, ['a', 'b']);
  t.same(table.cumulative, [1, 4]);
  t.equal(
    pickWeighted(table, () => 0.2499),
    'a',
  );
  t.equal(
    pickWeighted(table, () => 0.25),
    'b',
  );
  t.equal(
    pickWeighted(table, () => 0.999999),
    'b',
  );
});

t.test('all weights zero (invalid config): split evenly instead of failing', async (t) => {
  const table = buildWeightedTable([
    { item: 'a', weight: 0 },
    { item: 'b', weight: 0 },
  ]);
  t.equal(
    pickWeighted(table, () => 0.4),
    'a',
  );
  t.equal(
    pickWeighted(table, () => 0.6),
    'b',
  );
});
