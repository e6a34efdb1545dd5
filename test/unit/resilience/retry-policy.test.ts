import t from 'tap';
import {
  compileRetryPolicy,
  DEFAULT_INBOUND_RETRY_POLICY,
  DEFAULT_RETRY_ON,
  DEFAULT_RETRY_POLICY,
  NO_RETRY_POLICY,
  parseRetryOn,
} from '../../../src/resilience/retry-policy.ts';

t.test('retryOn tokens: trimmed, empty ones skipped, conditions kept', async (t) => {
  const p = parseRetryOn(' 5xx ,, gateway-error,reset ,  , unavailable,');
  t.same([...p.conditions], ['5xx', 'gateway-error', 'reset', 'unavailable']);
  t.same([...p.retriableStatusCodes], []);
  t.same(p.ignoredTokens, []);
  t.same([...parseRetryOn('').conditions], [], 'empty string: no conditions');
  t.same([...parseRetryOn(' , ').conditions], []);
});

t.test('every HTTP and gRPC token is recognized', async (t) => {
  const all = [
    '5xx',
    'gateway-error',
    'reset',
    'reset-before-request',
    'connect-failure',
    'refused-stream',
    'retriable-4xx',
    'retriable-status-codes',
    'retriable-headers',
    'envoy-ratelimited',
    'http3-post-connect-failure',
    'cancelled',
    'deadline-exceeded',
    'resource-exhausted',
    'internal',
    'unavailable',
  ];
  const p = parseRetryOn(all.join(','));
  t.same([...p.conditions].sort(), [...all].sort());
  t.same(p.ignoredTokens, []);
});

t.test('numeric tokens become retriable status codes and add retriable-status-codes', async (t) => {
  const p = parseRetryOn('503,reset, 409 ');
  t.same([...p.retriableStatusCodes].sort(), [409, 503]);
  t.ok(p.conditions.has('retriable-status-codes'), 'added automatically');
  t.ok(p.conditions.has('reset'));
  t.equal(p.conditions.size, 2);
  t.same([...parseRetryOn('0503').retriableStatusCodes], [503], 'parsed like Go strconv.Atoi');
});

t.test(
  'unknown tokens, including non-standard codes, are ignored (the validator rejects them)',
  async (t) => {
    const p = parseRetryOn('555,bogus,5XX,503,-1,1e3');
    t.same([...p.retriableStatusCodes], [503]);
    t.same(p.ignoredTokens, ['555', 'bogus', '5XX', '-1', '1e3'], 'tokens are case-sensitive');
    t.same([...p.conditions], ['retriable-status-codes']);
    const policy = compileRetryPolicy({ attempts: 3, retryOn: '555' });
    t.same([...policy.retriableStatusCodes], [], 'a lone 555 gives no status code');
    t.notOk(policy.conditions.has('retriable-status-codes'));
    t.same(policy.ignoredTokens, ['555']);
  },
);

t.test('default policy when retries is undefined (Istio ≥ 1.24)', async (t) => {
  const p = compileRetryPolicy(undefined);
  t.equal(p.enabled, true);
  t.equal(p.attempts, 2);
  t.same([...p.conditions].sort(), [
    'cancelled',
    'connect-failure',
    'refused-stream',
    'retriable-status-codes',
    'unavailable',
  ]);
  t.equal(p.retriableStatusCodes.size, 0, 'empty code list: a 503 is not retried');
  t.same(
    [...p.retriableGrpcCodes].sort((a, b) => a - b),
    [1, 14],
  );
  t.equal(p.backoffBaseMs, 25);
  t.equal(p.backoffMaxMs, 250);
  t.equal(p.perTryTimeoutMs, undefined, 'no per-try timeout');
  t.equal(p.retryIgnorePreviousHosts, undefined, 'previous-hosts default decided by the caller (LB)');
  t.equal(p.retryRemoteLocalities, false);
  t.equal(p.hostSelectionMaxAttempts, 5);
  t.same(DEFAULT_RETRY_POLICY, p);
  t.same(compileRetryPolicy({ attempts: 2, retryOn: DEFAULT_RETRY_ON }), p, 'same as the defaulted block');
});

t.test('attempts <= 0 disables retries', async (t) => {
  for (const attempts of [0, -1]) {
    const p = compileRetryPolicy({ attempts, retryOn: '5xx' });
    t.equal(p.enabled, false, `attempts ${attempts}`);
    t.equal(p.attempts, 0);
  }
  t.equal(NO_RETRY_POLICY.enabled, false);
});

t.test('explicit fields: backoff, perTryTimeout, previous hosts, localities', async (t) => {
  const p = compileRetryPolicy({
    attempts: 4,
    retryOn: 'gateway-error',
    backoffMs: 100,
    perTryTimeoutMs: 2000,
    retryIgnorePreviousHosts: false,
    retryRemoteLocalities: true,
  });
  t.equal(p.attempts, 4);
  t.equal(p.backoffBaseMs, 100);
  t.equal(p.backoffMaxMs, 1000, 'cap is 10 × base');
  t.equal(p.perTryTimeoutMs, 2000);
  t.equal(p.retryIgnorePreviousHosts, false);
  t.equal(p.retryRemoteLocalities, true);
  const zeroes = compileRetryPolicy({ attempts: 1, retryOn: '5xx', backoffMs: 0, perTryTimeoutMs: 0 });
  t.equal(zeroes.backoffBaseMs, 25, 'a non-positive backoff falls back to 25ms');
  t.notOk('perTryTimeoutMs' in zeroes, 'a zero per-try timeout means none');
});

t.test('inbound default: 2 retries on reset-before-request only', async (t) => {
  t.equal(DEFAULT_INBOUND_RETRY_POLICY.attempts, 2);
  t.same([...DEFAULT_INBOUND_RETRY_POLICY.conditions], ['reset-before-request']);
});
