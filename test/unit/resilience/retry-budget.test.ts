import t from 'tap';
import { RetryBudget } from '../../../src/resilience/retry-budget.ts';

function clock(start = 0): { now: () => number; advance: (ms: number) => void } {
  let now = start;
  return { now: () => now, advance: (ms) => (now += ms) };
}

function drain(b: RetryBudget): number {
  let n = 0;
  while (b.tryWithdraw()) n++;
  return n;
}

t.test('floor: minRetriesPerSecond × ttl retries with no traffic at all', async (t) => {
  const c = clock(1_000_000);
  const b = new RetryBudget(c.now);
  t.equal(b.available(), 100, '10/s over 10 s');
  t.equal(drain(b), 100);
  t.same(b.stats(), { requests: 0, retries: 100, exhausted: 1 });
  t.notOk(b.tryWithdraw());
  t.equal(b.stats().exhausted, 2, 'every refused withdrawal is counted');
});

t.test('ratio: 20 % of requests on top of the floor', async (t) => {
  const c = clock();
  const b = new RetryBudget(c.now, { minRetriesPerSecond: 0 });
  t.notOk(b.tryWithdraw(), 'no floor, no requests: nothing');
  for (let i = 0; i < 100; i++) b.recordRequest();
  t.equal(drain(b), 20);
  for (let i = 0; i < 4; i++) b.recordRequest();
  t.notOk(b.tryWithdraw(), '0.8 of a retry is not enough');
  b.recordRequest();
  t.ok(b.tryWithdraw(), '105 requests allow 21 retries');
  t.same(b.stats(), { requests: 105, retries: 21, exhausted: 3 });

  const both = new RetryBudget(c.now, { retryRatio: 0.5, minRetriesPerSecond: 1, ttlMs: 5000 });
  for (let i = 0; i < 10; i++) both.recordRequest();
  t.equal(drain(both), 10, '0.5 × 10 + 1/s × 5 s');
});

t.test('window expiry with the injected clock', async (t) => {
  const c = clock();
  const b = new RetryBudget(c.now, { minRetriesPerSecond: 0 }); // 10 slots of 1 s
  for (let i = 0; i < 50; i++) b.recordRequest(); // t = 0
  c.advance(5000);
  for (let i = 0; i < 50; i++) b.recordRequest(); // t = 5 s
  t.equal(drain(b), 20, '100 requests in the window');
  c.advance(4999);
  t.equal(b.available(), 0, 't = 9.999 s: everything still counts');
  c.advance(1);
  t.equal(b.available(), 0, 't = 10 s: the first 50 requests left, 10 of 20 retries did not');
  c.advance(5000);
  t.equal(b.available(), 0, 't = 15 s: the rest left as well');
  for (let i = 0; i < 10; i++) b.recordRequest();
  t.equal(drain(b), 2);
  c.advance(60_000);
  t.equal(b.available(), 0, 'a long gap clears the window');
  for (let i = 0; i < 5; i++) b.recordRequest();
  t.equal(drain(b), 1);
});

t.test('retries made leave the window too', async (t) => {
  const c = clock();
  const b = new RetryBudget(c.now, { minRetriesPerSecond: 1, ttlMs: 2000, slots: 2 });
  t.equal(drain(b), 2, 'floor of 1/s over 2 s');
  c.advance(1000);
  t.equal(b.available(), 0, 'retries still in the window');
  c.advance(1000);
  t.equal(b.available(), 2, 'old retries expired');
  c.advance(-5000);
  t.ok(b.tryWithdraw(), 'a clock that steps back keeps counting into the newest bucket');
  t.equal(b.available(), 1);
});

t.test('option defaults and clamping', async (t) => {
  const b = new RetryBudget(() => 0, { retryRatio: -1, minRetriesPerSecond: -1, ttlMs: 0, slots: 0 });
  t.equal(b.retryRatio, 0);
  t.equal(b.minRetriesPerSecond, 0);
  t.equal(b.ttlMs, 10_000);
  t.notOk(b.tryWithdraw());
});

t.test('float ratios do not lose a retry to rounding', async (t) => {
  const b = new RetryBudget(() => 0, { retryRatio: 0.57, minRetriesPerSecond: 0 });
  for (let i = 0; i < 100; i++) b.recordRequest();
  t.equal(drain(b), 57);
});
