import t from 'tap';
import {
  DEFAULTS,
  MAX_TIMER_MS,
  parseHostPort,
  resolveSettings,
} from '../../../src/config/runtime-settings.ts';
import {
  DEFAULT_MIN_RETRIES_PER_SECOND,
  DEFAULT_RETRY_BUDGET_TTL_MS,
  DEFAULT_RETRY_RATIO,
} from '../../../src/resilience/retry-budget.ts';

t.test('defaults without a Proxy document', async (t) => {
  const s = resolveSettings({}, null);
  t.same(s.retryBudget, { retryRatio: 0.2, minRetriesPerSecond: 10, ttlMs: 10_000 });
  t.same(
    s.retryBudget,
    {
      retryRatio: DEFAULT_RETRY_RATIO,
      minRetriesPerSecond: DEFAULT_MIN_RETRIES_PER_SECOND,
      ttlMs: DEFAULT_RETRY_BUDGET_TTL_MS,
    },
    'the retry budget defaults are the budget module’s own',
  );
  t.equal(s.dnsRefreshRateMs, 30_000);
  t.equal(DEFAULTS.dnsRefreshRateMs, 30_000);
  t.equal(s.engine, 'h1');
  t.equal(s.outboundPort, 15001);
  t.equal(s.drainTimeoutMs, 10_000);
  t.equal(s.app, null);
});

t.test('the Proxy document fills retryBudget field by field, and dnsRefreshRate', async (t) => {
  const s = resolveSettings(
    {},
    { retryBudget: { retryRatio: 0.5, ttl: 60_000 }, dnsRefreshRate: 5000, drainTimeoutMs: 1000 },
  );
  t.same(s.retryBudget, { retryRatio: 0.5, minRetriesPerSecond: 10, ttlMs: 60_000 });
  t.equal(s.dnsRefreshRateMs, 5000);
  t.equal(s.drainTimeoutMs, 1000);
  const zero = resolveSettings({}, { retryBudget: { retryRatio: 0, minRetriesPerSecond: 0 } });
  t.same(
    zero.retryBudget,
    { retryRatio: 0, minRetriesPerSecond: 0, ttlMs: 10_000 },
    'explicit zeros are kept, not replaced by defaults',
  );
});

t.test('flags override the Proxy document', async (t) => {
  const s = resolveSettings(
    { outboundPort: 0, app: '9000', drainTimeoutMs: 5 },
    { outboundPort: 16001, app: '10.0.0.1:80', drainTimeoutMs: 1000 },
  );
  t.equal(s.outboundPort, 0);
  t.same(s.app, { host: '127.0.0.1', port: 9000 });
  t.equal(s.drainTimeoutMs, 5);
  t.throws(() => resolveSettings({ app: 'nope' }, null), /--app must be HOST:PORT/);
});

t.test('parseHostPort', async (t) => {
  t.same(parseHostPort('[::1]:8080'), { host: '::1', port: 8080 });
  t.same(parseHostPort('app:80'), { host: 'app', port: 80 });
  t.equal(parseHostPort('app:0'), null);
  t.equal(parseHostPort('app:65536'), null);
  t.equal(parseHostPort('app'), null);
});

t.test('MAX_TIMER_MS is the largest delay Node.js timers honour', async (t) => {
  t.equal(MAX_TIMER_MS, 2 ** 31 - 1);
  // One more and Node fires the timer after 1 ms (with a TimeoutOverflowWarning): the reason for the cap.
  const warnings: string[] = [];
  const onWarning = (w: Error): void => {
    warnings.push(w.name);
  };
  process.on('warning', onWarning);
  t.teardown(() => {
    process.off('warning', onWarning);
  });
  const fired = await new Promise<boolean>((resolve) => {
    const overflow = setTimeout(() => resolve(true), MAX_TIMER_MS + 1);
    setTimeout(() => {
      clearTimeout(overflow);
      resolve(false);
    }, 200);
  });
  t.equal(fired, true, 'a timer one past the limit fires at once');
  const held = await new Promise<boolean>((resolve) => {
    const ok = setTimeout(() => resolve(true), MAX_TIMER_MS);
    setTimeout(() => {
      clearTimeout(ok);
      resolve(false);
    }, 50);
  });
  t.equal(held, false, 'a timer at the limit waits');
  await new Promise((r) => setImmediate(r));
  t.ok(warnings.includes('TimeoutOverflowWarning'));
});
