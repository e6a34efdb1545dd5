import t from 'tap';
import { PeakEwma } from '../../../src/balancer/peak-ewma.ts';
import { manualClock } from './sim-helpers.ts';

t.test('starts at the default RTT (30 ms), cost scales with in-flight', async (t) => {
  const clock = manualClock();
  const e = new PeakEwma({ now: clock.now });
  t.equal(e.estimate(), 30);
  t.equal(e.cost(), 30);
  e.start();
  e.start();
  t.equal(e.inFlight, 2);
  t.equal(e.cost(), 90, '30 × (2 + 1)');
  clock.advance(60_000);
  t.equal(e.estimate(), 30, 'no staleness decay while requests are in flight');
  e.end(30, false);
  t.equal(e.inFlight, 1);
  t.equal(e.cost(), 60);
  e.end(30, false);
  e.end(30, false);
  t.equal(e.inFlight, 0, 'an extra end does not go negative');
  t.equal(new PeakEwma({ now: clock.now, defaultRttMs: 0 }).estimate(), 1, 'seed at least 1 ms');
});

t.test('below the estimate: decays exponentially by elapsed time', async (t) => {
  const clock = manualClock();
  const e = new PeakEwma({ now: clock.now });
  e.observe(100);
  t.equal(e.storedEstimate, 100, 'peak');
  clock.advance(10_000);
  e.observe(20);
  const w = Math.exp(-1);
  t.ok(Math.abs(e.storedEstimate - (100 * w + 20 * (1 - w))) < 1e-9, 'after one τ: 100·e⁻¹ + 20·(1−e⁻¹)');
  t.ok(Math.abs(e.storedEstimate - 49.43) < 0.01, `≈ 49.43 (${e.storedEstimate.toFixed(3)})`);
  const before = e.storedEstimate;
  e.observe(0);
  t.equal(e.storedEstimate, before, 'a sample at the same instant has weight 0');
  clock.advance(1);
  e.observe(0);
  t.ok(
    e.storedEstimate < before && e.storedEstimate > before * 0.9999,
    'a sample 1 ms later moves it a little',
  );
  e.observe(Number.NaN);
  e.observe(-5);
  t.ok(e.storedEstimate > 0, 'non-finite and negative samples count as 0 and do not corrupt it');
});

t.test('configurable τ', async (t) => {
  const clock = manualClock();
  const e = new PeakEwma({ now: clock.now, decayMs: 1_000, defaultRttMs: 50 });
  clock.advance(1_000);
  e.start();
  e.end(10, false);
  t.ok(Math.abs(e.storedEstimate - (50 * Math.exp(-1) + 10 * (1 - Math.exp(-1)))) < 1e-9);
});

t.test('peak sensitivity: a slow sample raises the estimate at once', async (t) => {
  const clock = manualClock();
  const e = new PeakEwma({ now: clock.now });
  for (let i = 0; i < 100; i++) {
    clock.advance(100);
    e.observe(10);
  }
  t.ok(e.storedEstimate < 20, `settled towards 10 ms (${e.storedEstimate.toFixed(2)})`);
  clock.advance(1);
  e.observe(250);
  t.equal(e.storedEstimate, 250, 'one slow sample is believed immediately');
});

t.test('staleness: an idle estimate decays toward 0 without being changed', async (t) => {
  const clock = manualClock();
  const e = new PeakEwma({ now: clock.now });
  e.observe(60);
  clock.advance(10_000);
  t.ok(Math.abs(e.estimate() - 60 * Math.exp(-1)) < 1e-9, 'read decayed by e⁻¹ after one idle τ');
  t.equal(e.storedEstimate, 60, 'stored value untouched');
  e.start();
  t.equal(e.estimate(), 60, 'once a request is in flight the stored value counts again');
});

t.test(
  'failure penalty: max(1 s, 10 × estimate), capped at 10 s, and never below the real RTT',
  async (t) => {
    const clock = manualClock();
    const e = new PeakEwma({ now: clock.now });
    t.equal(e.penaltyMs(), 1_000, '10 × 30 ms < 1 s floor');
    e.start();
    e.end(2, true);
    t.equal(e.storedEstimate, 1_000, 'a 2 ms 503 counts as 1 s');
    t.equal(e.penaltyMs(), 10_000, '10 × 1 s');
    e.end(2, true);
    t.equal(e.storedEstimate, 10_000, 'the cap stops escalation');
    e.end(2, true);
    t.equal(e.storedEstimate, 10_000);
    e.end(15_000, true);
    t.equal(e.storedEstimate, 15_000, 'a timeout longer than the penalty counts as itself');

    const slow = new PeakEwma({ now: clock.now, defaultRttMs: 400 });
    t.equal(slow.penaltyMs(), 4_000, 'a slow service: 10 × 400 ms');
    const tuned = new PeakEwma({
      now: clock.now,
      penaltyFloorMs: 500,
      penaltyFactor: 2,
      penaltyCapMs: 100,
    });
    t.equal(tuned.penaltyMs(), 500, 'cap below the floor is raised to the floor');
  },
);
