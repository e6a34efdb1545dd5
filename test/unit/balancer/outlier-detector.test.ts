import t from 'tap';
import {
  OutlierDetector,
  type OutlierDetectorOptions,
  type OutlierResult,
} from '../../../src/balancer/outlier-detector.ts';
import type { OutlierDetectionSettings } from '../../../src/config/resource-types.ts';
import { manualClock } from './sim-helpers.ts';

const status = (code: number): OutlierResult => ({ kind: 'response', status: code });
const LOCAL: OutlierResult = { kind: 'local-failure' };
const hosts = (n: number): string[] => Array.from({ length: n }, (_, i) => `h${i}`);

/** A detector over `ids` with a manual clock and an onChange counter. */
function setup(settings: OutlierDetectionSettings, ids: readonly string[] = hosts(10)) {
  const clock = manualClock(1_000);
  const changes = { count: 0 };
  const options: OutlierDetectorOptions = {
    clock: clock.now,
    onChange: () => {
      changes.count++;
    },
  };
  const d = new OutlierDetector(settings, options);
  d.setEndpoints(ids);
  const feed = (id: string, ...results: OutlierResult[]): void => {
    for (const r of results) d.report(id, r);
  };
  return { d, clock, changes, feed };
}

const times = (n: number, r: OutlierResult): OutlierResult[] => Array.from({ length: n }, () => r);

t.test('effective defaults and explicit values', async (t) => {
  const { d } = setup({});
  t.equal(d.intervalMs, 10_000);
  t.equal(d.minHealthPercent, 0, 'panic mode off by default');
  t.equal(d.maxEjectionPercent, 10);
  t.equal(d.endpointCount, 10);
  t.equal(d.ejectedCount, 0);
  t.equal(d.totalEjections, 0);

  const custom = setup({ interval: 2_000, minHealthPercent: 40, maxEjectionPercent: 60 }).d;
  t.equal(custom.intervalMs, 2_000);
  t.equal(custom.minHealthPercent, 40);
  t.equal(custom.maxEjectionPercent, 60);

  const zeros = setup({ interval: 0, baseEjectionTime: 0, maxEjectionPercent: 0 });
  t.equal(zeros.d.intervalMs, 10_000, 'a non-positive interval falls back to the default');
  t.equal(zeros.d.maxEjectionPercent, 10, 'Istio passes 0 as unset: Envoy default 10 %');
  zeros.feed('h0', ...times(5, status(500)));
  t.equal(zeros.d.status('h0').ejectedUntilMs, 1_000 + 30_000, 'a non-positive base falls back to 30 s');
});

t.test('consecutive 5xx: unset means 5, a success in between resets, 0 disables', async (t) => {
  const { d, changes, feed } = setup({});
  feed('h0', ...times(4, status(503)));
  t.equal(d.isEjected('h0'), false, 'four errors are not enough');
  t.equal(d.status('h0').consecutive5xx, 4);
  feed('h0', status(200));
  t.equal(d.status('h0').consecutive5xx, 0, 'a 2xx resets');
  feed('h0', ...times(4, status(500)), status(404));
  t.equal(d.status('h0').consecutive5xx, 0, 'a 4xx is not an error and resets');
  feed('h0', ...times(4, status(599)), status(302));
  t.equal(d.status('h0').consecutive5xx, 0, 'a 3xx resets');
  t.equal(changes.count, 0);

  feed('h0', status(500), status(501), status(502), status(550), status(599));
  t.equal(d.isEjected('h0'), true, 'five consecutive 5xx eject');
  t.equal(d.isEjected('h1'), false);
  t.equal(d.ejectedCount, 1);
  t.equal(d.totalEjections, 1);
  t.equal(changes.count, 1, 'onChange on ejection');
  t.same(d.status('h0'), {
    ejectedUntilMs: 31_000,
    timesEjected: 1,
    consecutive5xx: 0,
    consecutiveGatewayErrors: 0,
    consecutiveLocalOriginFailures: 0,
  });

  const off = setup({ consecutive5xxErrors: 0 });
  off.feed('h0', ...times(50, status(500)), ...times(50, LOCAL));
  t.equal(off.d.isEjected('h0'), false, 'consecutive5xxErrors 0 turns the detector off');
  t.equal(off.d.totalEjections, 0);

  const three = setup({ consecutive5xxErrors: 3 });
  three.feed('h1', ...times(3, status(500)));
  t.equal(three.d.isEjected('h1'), true, 'an explicit threshold');
});

t.test('gateway-only policy: 502/503/504 eject, a 500 never counts and breaks the run', async (t) => {
  const { d, feed } = setup({
    consecutive5xxErrors: 0,
    consecutiveGatewayErrors: 3,
    maxEjectionPercent: 100,
  });
  feed('h0', ...times(40, status(500)));
  t.equal(d.isEjected('h0'), false, 'a 500 never ejects under a gateway-only policy');
  t.equal(d.status('h0').consecutiveGatewayErrors, 0);

  feed('h1', status(502), status(503), status(500), status(504), status(502));
  t.equal(d.isEjected('h1'), false, 'the 500 broke the run of gateway errors');
  t.equal(d.status('h1').consecutiveGatewayErrors, 2);
  feed('h1', status(503));
  t.equal(d.isEjected('h1'), true, 'three gateway errors in a row');

  feed('h2', status(502), status(200), status(502), status(504));
  t.equal(d.isEjected('h2'), false, 'a success resets the gateway counter');
  feed('h2', LOCAL);
  t.equal(d.isEjected('h2'), true, 'a local-origin failure counts as a gateway error when not split');

  const unset = setup({});
  unset.feed('h0', ...times(4, status(503)), status(200), ...times(4, status(503)));
  t.equal(unset.d.isEjected('h0'), false, 'consecutiveGatewayErrors unset is off');
  const zero = setup({ consecutive5xxErrors: 0, consecutiveGatewayErrors: 0 });
  zero.feed('h0', ...times(30, status(503)));
  t.equal(zero.d.isEjected('h0'), false, 'consecutiveGatewayErrors 0 is off');

  const both = setup({ consecutive5xxErrors: 5, consecutiveGatewayErrors: 2 });
  both.feed('h0', status(503), status(504));
  t.equal(both.d.isEjected('h0'), true, 'the gateway detector fires before the 5xx one');
  t.equal(both.d.status('h0').consecutive5xx, 0, 'ejection resets every counter');
});

t.test('local-origin failures, not split: they count toward the 5xx counter', async (t) => {
  const { d, feed } = setup({ maxEjectionPercent: 100 });
  feed('h0', LOCAL, status(500), LOCAL, status(503));
  t.equal(d.status('h0').consecutive5xx, 4);
  t.equal(d.status('h0').consecutiveLocalOriginFailures, 0, 'the separate counter is unused');
  feed('h0', LOCAL);
  t.equal(d.isEjected('h0'), true);

  feed('h1', ...times(4, LOCAL), status(204), ...times(4, LOCAL));
  t.equal(d.isEjected('h1'), false, 'a success resets');
  feed('h1', LOCAL);
  t.equal(d.isEjected('h1'), true, 'five local failures in a row eject');
});

t.test('local-origin failures, split: a counter of their own', async (t) => {
  const { d, feed } = setup({ splitExternalLocalOriginErrors: true });
  feed('h0', ...times(4, status(500)), LOCAL, LOCAL);
  t.equal(d.isEjected('h0'), false);
  t.same(
    [d.status('h0').consecutive5xx, d.status('h0').consecutiveLocalOriginFailures],
    [4, 2],
    'local failures neither count toward nor reset the 5xx counter',
  );
  feed('h0', status(500));
  t.equal(d.isEjected('h0'), true, 'the fifth upstream 5xx ejects');

  feed('h1', ...times(4, LOCAL), status(503));
  t.same(
    [d.status('h1').consecutive5xx, d.status('h1').consecutiveLocalOriginFailures],
    [1, 0],
    'any response, even a 5xx, resets the local-origin counter',
  );
  feed('h1', ...times(4, LOCAL));
  t.equal(d.isEjected('h1'), false);
  d.update({ splitExternalLocalOriginErrors: true, maxEjectionPercent: 100 });
  feed('h1', LOCAL);
  t.equal(d.isEjected('h1'), true, 'consecutiveLocalOriginFailures defaults to 5');

  const two = setup({ splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 2 });
  two.feed('h0', LOCAL, LOCAL);
  t.equal(two.d.isEjected('h0'), true, 'an explicit local-origin threshold');

  const gw = setup({
    splitExternalLocalOriginErrors: true,
    consecutiveGatewayErrors: 2,
    consecutive5xxErrors: 0,
  });
  gw.feed('h0', status(502), LOCAL, LOCAL);
  t.equal(gw.d.isEjected('h0'), false, 'split: local failures do not feed the gateway counter');
  gw.feed('h0', status(504));
  t.equal(gw.d.isEjected('h0'), true);

  const off = setup({ splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 0 });
  off.feed('h0', ...times(30, LOCAL));
  t.equal(off.d.isEjected('h0'), false, 'consecutiveLocalOriginFailures 0 is off');

  const notSplit = setup({ consecutiveLocalOriginFailures: 1 });
  notSplit.feed('h0', LOCAL);
  t.equal(notSplit.d.isEjected('h0'), false, 'consecutiveLocalOriginFailures is unused without the split');
});

t.test('outlierDetectionHttpErrorCodes: only the listed statuses are errors', async (t) => {
  const { d, feed } = setup({ consecutive5xxErrors: 3, outlierDetectionHttpErrorCodes: [503, 429] });
  feed('h0', status(503), status(503), status(500));
  t.equal(d.status('h0').consecutive5xx, 0, 'an unlisted 500 is not an error and resets');
  feed('h0', status(429), status(503));
  t.equal(d.isEjected('h0'), false);
  feed('h0', status(429));
  t.equal(d.isEjected('h0'), true, 'a listed 429 counts');
  feed('h1', LOCAL, LOCAL);
  t.equal(d.status('h1').consecutive5xx, 2, 'local failures are not filtered by the list');

  const gw = setup({
    consecutive5xxErrors: 0,
    consecutiveGatewayErrors: 2,
    outlierDetectionHttpErrorCodes: [500, 503],
  });
  gw.feed('h0', status(500), status(500), status(500));
  t.equal(gw.d.isEjected('h0'), false, 'a listed 500 still is no gateway error');
  gw.feed('h0', status(503), status(502));
  t.equal(gw.d.status('h0').consecutiveGatewayErrors, 0, 'an unlisted 502 is not an error');
  gw.feed('h0', status(503), status(503));
  t.equal(gw.d.isEjected('h0'), true);

  const empty = setup({ consecutive5xxErrors: 2, outlierDetectionHttpErrorCodes: [] });
  empty.feed('h0', status(500), status(500));
  t.equal(empty.d.isEjected('h0'), true, 'an empty list keeps the 500–599 range');
});

t.test('ejection time is base × times ejected, capped at max(300 s, base)', async (t) => {
  const { d, clock, feed } = setup({ consecutive5xxErrors: 1, baseEjectionTime: 100_000 });
  const lengths: number[] = [];
  const multipliers: number[] = [];
  for (let i = 0; i < 6; i++) {
    const start = clock.now();
    feed('h0', status(500));
    const until = d.status('h0').ejectedUntilMs;
    if (until === null) throw new Error('expected an ejection');
    lengths.push(until - start);
    multipliers.push(d.status('h0').timesEjected);
    clock.set(until); // back at once: no healthy interval, no decay
    d.sweep();
  }
  t.same(lengths, [100_000, 200_000, 300_000, 300_000, 300_000, 300_000], 'capped at 300 s');
  t.same(multipliers, [1, 2, 3, 4, 4, 4], 'the multiplier stops one step past the cap');
  t.equal(d.totalEjections, 6);

  const big = setup({ consecutive5xxErrors: 1, baseEjectionTime: 400_000 });
  big.feed('h0', status(500));
  t.equal(big.d.status('h0').ejectedUntilMs, 1_000 + 400_000);
  big.clock.advance(400_000);
  big.feed('h0', status(500));
  t.equal(big.d.status('h0').ejectedUntilMs, 401_000 + 400_000, 'a base above 300 s is the cap itself');
  t.equal(big.d.status('h0').timesEjected, 2);

  const dflt = setup({ consecutive5xxErrors: 1 });
  dflt.feed('h0', status(500));
  t.equal(dflt.d.status('h0').ejectedUntilMs, 31_000, 'base defaults to 30 s');
  dflt.clock.set(31_000);
  dflt.feed('h0', status(500));
  t.equal(dflt.d.status('h0').ejectedUntilMs, 91_000, 'second ejection in a row: 60 s');
});

t.test('the multiplier decays by one per healthy interval', async (t) => {
  const { d, clock, feed } = setup({ consecutive5xxErrors: 1, interval: 10_000 });
  feed('h0', status(500));
  clock.set(31_000);
  feed('h0', status(500)); // back and at once out again: multiplier 2, 60 s
  t.equal(d.status('h0').timesEjected, 2);
  clock.set(61_000);
  d.sweep();
  t.equal(d.status('h0').timesEjected, 2, 'no decay while ejected');
  clock.set(91_000);
  d.sweep();
  t.equal(d.status('h0').timesEjected, 2, 'returned this sweep: not healthy for an interval yet');
  clock.set(100_999);
  d.sweep();
  t.equal(d.status('h0').timesEjected, 2, 'still short of one interval since the return');
  clock.set(101_000);
  d.sweep();
  t.equal(d.status('h0').timesEjected, 1, 'one interval healthy');
  feed('h0', status(500));
  t.equal(d.status('h0').ejectedUntilMs, 101_000 + 60_000, 'ejected again: multiplier 1 + 1');
  clock.set(161_000 + 10_000);
  d.sweep();
  t.equal(d.status('h0').timesEjected, 1, 'returned at 161 s, healthy for an interval by 171 s');
  clock.advance(10_000);
  d.sweep();
  t.equal(d.status('h0').timesEjected, 0);
  clock.advance(10_000);
  d.sweep();
  t.equal(d.status('h0').timesEjected, 0, 'never below 0');
  feed('h0', status(500));
  t.equal(d.status('h0').ejectedUntilMs, clock.now() + 30_000, 'back to the base time');
  t.equal(d.status('h1').timesEjected, 0, 'hosts never ejected keep 0');
});

t.test('maxEjectionPercent: at least one host, otherwise floor(n × pct / 100)', async (t) => {
  const three = setup({}, ['a', 'b', 'c']);
  three.feed('a', ...times(5, status(500)));
  t.equal(three.d.isEjected('a'), true, '10 % of 3 hosts is below 1, yet one host can be ejected');
  three.feed('b', ...times(5, status(500)));
  t.equal(three.d.isEjected('b'), false, 'a second one cannot');
  t.equal(three.d.status('b').consecutive5xx, 0, 'the refused host has its counter reset');
  t.equal(three.changes.count, 1);
  three.clock.set(31_000);
  three.feed('b', ...times(4, status(500)));
  t.equal(three.d.isEjected('b'), false, 'it needs N fresh errors, not one more');
  three.feed('b', status(500));
  t.equal(three.d.isEjected('b'), true, 'a is back, so b can go');
  t.equal(three.d.ejectedCount, 1);

  const limit = (n: number, pct: number): number => {
    const { d, feed } = setup({ consecutive5xxErrors: 1, maxEjectionPercent: pct }, hosts(n));
    for (const id of hosts(n)) feed(id, status(500));
    return d.ejectedCount;
  };
  t.equal(limit(10, 10), 1, '10 % of 10');
  t.equal(limit(20, 10), 2, '10 % of 20');
  t.equal(limit(29, 10), 2, '10 % of 29 rounds down');
  t.equal(limit(3, 50), 1, '50 % of 3 rounds down');
  t.equal(limit(3, 67), 2, '67 % of 3');
  t.equal(limit(3, 100), 3, '100 %: every host');
  t.equal(limit(1, 10), 1, 'a single host can be ejected');

  const twoTrips = setup({ consecutive5xxErrors: 1, consecutiveGatewayErrors: 1 }, ['a', 'b']);
  twoTrips.feed('a', status(503));
  twoTrips.feed('b', status(503));
  t.same(
    [twoTrips.d.status('b').consecutive5xx, twoTrips.d.status('b').consecutiveGatewayErrors],
    [0, 0],
    'every tripped counter is reset when the ejection is refused',
  );
  const partial = setup({ consecutive5xxErrors: 3, consecutiveGatewayErrors: 1 }, ['a', 'b']);
  partial.feed('a', status(503));
  partial.feed('b', status(500), status(503));
  t.same(
    [partial.d.status('b').consecutive5xx, partial.d.status('b').consecutiveGatewayErrors],
    [2, 0],
    'a counter that did not trip keeps its count',
  );
  const local = setup({ splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 2 }, [
    'a',
    'b',
  ]);
  local.feed('a', LOCAL, LOCAL);
  local.feed('b', LOCAL, LOCAL);
  t.equal(local.d.isEjected('b'), false);
  t.equal(local.d.status('b').consecutiveLocalOriginFailures, 0, 'a refused local-origin trip resets too');
});

t.test('return when the time is over: isEjected false without a sweep, sweep fires onChange', async (t) => {
  const { d, clock, changes, feed } = setup({});
  feed('h0', ...times(5, status(500)));
  t.equal(changes.count, 1);
  clock.set(30_999);
  t.equal(d.isEjected('h0'), true, 'one ms before the end');
  t.equal(d.ejectedCount, 1);
  d.sweep();
  t.equal(changes.count, 1, 'a sweep before the end changes nothing');
  clock.set(31_000);
  t.equal(d.isEjected('h0'), false, 'back at the end time, before any sweep');
  t.equal(d.ejectedCount, 0);
  t.equal(d.status('h0').ejectedUntilMs, null);
  t.equal(changes.count, 1, 'no onChange until the sweep');
  clock.set(35_000);
  d.sweep();
  t.equal(changes.count, 2, 'the sweep cleans up and notifies once');
  d.sweep();
  t.equal(changes.count, 2, 'and only once');
  t.equal(d.status('h0').timesEjected, 1);
  clock.set(41_000);
  d.sweep();
  t.equal(d.status('h0').timesEjected, 0, 'the return counts from the end time, not from the sweep');
});

t.test('reports while ejected are ignored; a report after the end time settles the return', async (t) => {
  const { d, clock, changes, feed } = setup({ consecutive5xxErrors: 2, maxEjectionPercent: 100 }, ['a', 'b']);
  feed('a', status(500), status(500));
  feed('a', ...times(10, status(500)), ...times(10, LOCAL));
  t.equal(d.status('a').consecutive5xx, 0, 'in-flight results after the ejection do not count');
  t.equal(d.totalEjections, 1);
  t.equal(d.status('a').ejectedUntilMs, 31_000, 'nor extend the ejection');

  clock.set(31_000);
  feed('a', status(500));
  t.equal(changes.count, 2, 'the first report after the end time records the return');
  t.equal(d.status('a').consecutive5xx, 1, 'and counts normally');
  d.sweep();
  t.equal(changes.count, 2, 'nothing left for the sweep');
  feed('a', status(500));
  t.equal(d.isEjected('a'), true);
  t.equal(d.status('a').ejectedUntilMs, 31_000 + 60_000);
  t.equal(changes.count, 3);

  const limited = setup({ consecutive5xxErrors: 1 }, ['a', 'b']);
  limited.feed('a', status(500));
  limited.clock.set(31_000);
  limited.feed('b', status(500));
  t.equal(limited.d.isEjected('b'), true, 'an ejection whose time is over does not count against the limit');
  t.equal(limited.d.ejectedCount, 1);
});

t.test('state survives setEndpoints and update; dropped ids are forgotten', async (t) => {
  const { d, feed, clock } = setup({ maxEjectionPercent: 100 }, ['a', 'b', 'c']);
  feed('a', ...times(5, status(500)));
  feed('b', ...times(3, status(500)));
  d.setEndpoints(['c', 'b', 'a', 'd']);
  d.update({ maxEjectionPercent: 100, interval: 5_000 });
  t.equal(d.isEjected('a'), true, 'ejection kept across a new endpoint list and new settings');
  t.equal(d.status('b').consecutive5xx, 3, 'counters kept');
  t.equal(d.intervalMs, 5_000, 'new settings apply');
  t.equal(d.endpointCount, 4);
  d.update({ maxEjectionPercent: 100, consecutive5xxErrors: 3 });
  feed('b', status(500));
  t.equal(d.isEjected('b'), true, 'a lowered threshold applies to the kept count');
  t.equal(d.ejectedCount, 2);

  d.setEndpoints(['b', 'c', 'd']);
  t.equal(d.isEjected('a'), false, 'a left: its ejection is gone');
  t.equal(d.ejectedCount, 1);
  t.same(d.status('a'), {
    ejectedUntilMs: null,
    timesEjected: 0,
    consecutive5xx: 0,
    consecutiveGatewayErrors: 0,
    consecutiveLocalOriginFailures: 0,
  });
  feed('a', ...times(10, status(500)));
  t.equal(d.isEjected('a'), false, 'reports for unknown ids are ignored');
  d.setEndpoints(['a', 'b', 'c', 'd']);
  t.equal(d.status('a').timesEjected, 0, 'an id that comes back starts fresh');
  t.equal(d.isEjected('b'), true);

  d.setEndpoints([]);
  t.equal(d.ejectedCount, 0);
  t.equal(d.isEjected('b'), false);
  clock.advance(1_000_000);
  d.sweep();
  t.equal(d.totalEjections, 2, 'the lifetime count is kept');
});

t.test('works without onChange', async (t) => {
  const clock = manualClock();
  const d = new OutlierDetector({ consecutive5xxErrors: 1 }, { clock: clock.now });
  d.setEndpoints(['a', 'a', 'b']);
  t.equal(d.endpointCount, 2, 'duplicate ids are one endpoint');
  d.report('a', status(500));
  t.equal(d.isEjected('a'), true);
  clock.advance(30_000);
  d.sweep();
  t.equal(d.isEjected('a'), false);
});
