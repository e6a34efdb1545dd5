import t from 'tap';
import { P2cPicker } from '../../../src/balancer/p2c-picker.ts';
import type { Picker } from '../../../src/balancer/picker-types.ts';
import { RoundRobinPicker } from '../../../src/balancer/round-robin.ts';
import type { Endpoint } from '../../../src/router/route-types.ts';
import { ep, manualClock, seededRandom, sequence, tally } from './sim-helpers.ts';

t.test('empty, single, and the cheaper of two candidates', async (t) => {
  const clock = manualClock();
  t.equal(new P2cPicker([], { now: clock.now, random: Math.random }).pick(), null);
  const one = new P2cPicker([ep('only')], { now: clock.now, random: Math.random });
  t.equal(one.pick()?.id, 'only');

  const a = ep('a');
  const b = ep('b');
  const c = ep('c');
  // random 0 → index 0; random 0.5 over the remaining 2 → index 1, shifted past 0 → 2.
  const p = new P2cPicker([a, b, c], { now: clock.now, random: sequence(0, 0.5) });
  t.equal(p.pick()?.id, 'a', 'equal cost: the first drawn wins');
  p.start(a);
  t.equal(p.pick()?.id, 'c', 'a has a request in flight: c is cheaper');
  p.start(c);
  p.start(c);
  t.equal(p.pick()?.id, 'a', 'now a (30 × 2) beats c (30 × 3)');
  p.end(c, 5, false);
  p.end(c, 5, false);
  clock.advance(10_000);
  p.end(a, 200, false);
  t.equal(p.pick()?.id, 'c', 'a became slow (peak 200 ms)');
  t.equal(p.stateOf('a')?.storedEstimate, 200);
  t.equal(p.stateOf('zzz'), undefined);
  p.start(ep('zzz'));
  p.end(ep('zzz'), 1, false);
  t.pass('feedback for an unknown endpoint is ignored');
});

t.test('two distinct candidates, weights divide the cost', async (t) => {
  const clock = manualClock();
  const random = seededRandom(7);
  const seen = new Set<string>();
  const p = new P2cPicker([ep('a'), ep('b')], { now: clock.now, random });
  // With two endpoints both are always candidates: the cheaper one must always win.
  p.start(ep('a'));
  for (let i = 0; i < 50; i++) seen.add(p.pick()?.id ?? '');
  t.same([...seen], ['b'], 'never the more loaded one of a pair');

  const w = new P2cPicker([ep('light', 1), ep('heavy', 4)], { now: clock.now, random });
  for (let i = 0; i < 3; i++) w.start(ep('heavy'));
  t.equal(w.pick()?.id, 'heavy', 'heavy: 30 × 4 / 4 = 30 ≤ light: 30');
  w.start(ep('heavy'));
  t.equal(w.pick()?.id, 'light', 'heavy: 30 × 5 / 4 > 30');
});

t.test('exclusion skips tried endpoints while others remain', async (t) => {
  const clock = manualClock();
  const p = new P2cPicker([ep('a'), ep('b'), ep('c'), ep('d')], { now: clock.now, random: seededRandom(3) });
  const picks: string[] = [];
  for (let i = 0; i < 200; i++) picks.push(p.pick(new Set(['a', 'c']))?.id ?? '');
  t.same(Object.keys(tally(picks)).sort(), ['b', 'd'], 'only b and d');
  for (let i = 0; i < 20; i++) t.equal(p.pick(new Set(['a', 'b', 'c']))?.id, 'd', 'one left: that one');
  const all = new Set<string>();
  for (let i = 0; i < 200; i++) all.add(p.pick(new Set(['a', 'b', 'c', 'd']))?.id ?? '');
  t.equal(all.size, 4, 'all tried: choose among all again');
  t.not(p.pick(new Set(['x'])), null, 'unknown ids in the set change nothing');
  t.not(p.pick(new Set()), null);
});

t.test('state survives adopt with the same ids; removed endpoints are forgotten', async (t) => {
  const clock = manualClock();
  const p = new P2cPicker([ep('a'), ep('b'), ep('c')], { now: clock.now, random: seededRandom(1) });
  p.start(ep('a'));
  p.end(ep('a'), 500, false);
  p.start(ep('b'));
  const aState = p.stateOf('a');
  p.adopt([ep('b'), ep('a'), ep('d')]);
  t.equal(p.stateOf('a'), aState, 'same state object for a');
  t.equal(p.stateOf('a')?.storedEstimate, 500, 'EWMA kept');
  t.equal(p.stateOf('b')?.inFlight, 1, 'in-flight kept');
  t.equal(p.stateOf('c'), undefined, 'c dropped');
  t.equal(p.stateOf('d')?.storedEstimate, 30, 'd starts at the default');
  t.same(
    p.endpoints.map((e) => e.id),
    ['b', 'a', 'd'],
  );
  p.end(ep('b'), 10, false);
  t.equal(p.stateOf('b')?.inFlight, 0, 'a request started before adopt ends against the kept state');
  p.start(ep('d'));
  const picks = tally(Array.from({ length: 100 }, () => p.pick()?.id ?? ''));
  t.equal(picks['a'], undefined, 'the slow endpoint is not picked after adopt');
  // Pick-by-index stays aligned with the new order.
  t.ok((picks['b'] ?? 0) > 0);
});

/**
 * Open-loop simulation on a manual clock: a request arrives every `gapMs`, goes to the picked
 * endpoint, and completes after that endpoint's latency ± 20 % (drawn from the seeded source);
 * completions due before an arrival are delivered first, in time order.
 */
function simulate(
  makePicker: (now: () => number) => Picker,
  latencyMs: Readonly<Record<string, number>>,
  picks: number,
  gapMs: number,
): Record<string, number> {
  const clock = manualClock();
  const picker = makePicker(clock.now);
  const jitter = seededRandom(99);
  const pending: { at: number; endpoint: Endpoint; rtt: number }[] = [];
  const counts: Record<string, number> = {};
  for (let i = 0; i < picks; i++) {
    const arrival = i * gapMs;
    pending.sort((x, y) => x.at - y.at);
    while (pending.length > 0 && pending[0]!.at <= arrival) {
      const done = pending.shift()!;
      clock.set(done.at);
      picker.end(done.endpoint, done.rtt, false);
    }
    clock.set(arrival);
    const e = picker.pick();
    if (e === null) throw new Error('no endpoint');
    counts[e.id] = (counts[e.id] ?? 0) + 1;
    picker.start(e);
    const rtt = latencyMs[e.id]! * (0.8 + 0.4 * jitter());
    pending.push({ at: arrival + rtt, endpoint: e, rtt });
  }
  return counts;
}

t.test('P2C over peak-EWMA avoids an endpoint 50 ms slower; round robin sends it a third', async (t) => {
  const endpoints = [ep('fast-1'), ep('fast-2'), ep('slow')];
  const latency = { 'fast-1': 10, 'fast-2': 10, slow: 60 };
  const picks = 10_000;
  const gapMs = 5;

  const p2cCounts = simulate(
    (now) => new P2cPicker(endpoints, { now, random: seededRandom(2024) }),
    latency,
    picks,
    gapMs,
  );
  const rrCounts = simulate(() => new RoundRobinPicker(endpoints), latency, picks, gapMs);

  const share = (c: Record<string, number>) => (c['slow'] ?? 0) / picks;
  t.comment(
    `slow endpoint share over ${picks} picks (one every ${gapMs} ms, 10/10/60 ms ±20 %): ` +
      `P2C+PeakEWMA ${(share(p2cCounts) * 100).toFixed(2)} %, RoundRobin ${(share(rrCounts) * 100).toFixed(2)} %`,
  );
  t.comment(`P2C picks ${JSON.stringify(p2cCounts)}; RoundRobin picks ${JSON.stringify(rrCounts)}`);
  t.ok(share(p2cCounts) < 0.1, 'P2C: under 10 % to the slow endpoint');
  t.ok(Math.abs(share(rrCounts) - 1 / 3) < 0.001, 'round robin: a third');
  t.ok(
    Math.abs((p2cCounts['fast-1'] ?? 0) - (p2cCounts['fast-2'] ?? 0)) < picks * 0.1,
    'the two fast endpoints share the rest about evenly',
  );

  // Under heavier load the fast endpoints queue up (cost = RTT × (in flight + 1)) and the slow one
  // earns a share again: the balancer trades latency against load rather than shunning it.
  const busy = simulate(
    (now) => new P2cPicker(endpoints, { now, random: seededRandom(2024) }),
    latency,
    picks,
    1,
  );
  t.comment(
    `same at one request per ms: P2C+PeakEWMA ${(share(busy) * 100).toFixed(2)} % to the slow endpoint`,
  );
  t.ok(share(busy) > share(p2cCounts) && share(busy) < 1 / 3, 'more than when idle, still under a third');
});

t.test('a fast-failing endpoint does not attract traffic', async (t) => {
  const clock = manualClock();
  const endpoints = [ep('ok-1'), ep('ok-2'), ep('broken')];
  const p = new P2cPicker(endpoints, { now: clock.now, random: seededRandom(5) });
  const counts: Record<string, number> = {};
  for (let i = 0; i < 2_000; i++) {
    clock.advance(5);
    const e = p.pick()!;
    counts[e.id] = (counts[e.id] ?? 0) + 1;
    p.start(e);
    // Sequential for simplicity: ok endpoints answer in 20 ms, broken one fails in 1 ms.
    if (e.id === 'broken') p.end(e, 1, true);
    else p.end(e, 20, false);
  }
  const broken = (counts['broken'] ?? 0) / 2_000;
  t.comment(`share to an endpoint failing in 1 ms: ${(broken * 100).toFixed(2)} %`);
  t.ok(broken < 0.02, 'the 1 ms 503s count as a penalty, not as speed');
});
