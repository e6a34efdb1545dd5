import t from 'tap';
import { parseDuration } from '../../../src/config/durations.ts';

function ms(text: string): number {
  const r = parseDuration(text);
  if (!r.ok) throw new Error(r.message);
  return r.ms;
}

t.test('Go ParseDuration syntax', async (t) => {
  t.equal(ms('1h'), 3_600_000);
  t.equal(ms('1m'), 60_000);
  t.equal(ms('30s'), 30_000);
  t.equal(ms('500ms'), 500);
  t.equal(ms('1.5s'), 1500);
  t.equal(ms('1m30s'), 90_000);
  t.equal(ms('1h2m3s4ms'), 3_723_004);
  t.equal(ms('10us'), 0.01);
  t.equal(ms('10µs'), 0.01);
  t.equal(ms('2000000ns'), 2);
  t.equal(ms('.5s'), 500);
  t.equal(ms('0'), 0);
  t.equal(ms('0s'), 0);
  t.equal(ms('-1s'), -1000);
  t.equal(ms('+2s'), 2000);
});

t.test('invalid durations', async (t) => {
  for (const bad of ['', '5', '1.5', 's', '1x', '1s2', 'abc', '1 s', '-', '1d']) {
    const r = parseDuration(bad);
    t.equal(r.ok, false, `"${bad}" is rejected`);
    if (!r.ok) t.match(r.message, /invalid duration/);
  }
});
