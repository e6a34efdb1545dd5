import t from 'tap';
import {
  matchesRetryOn,
  type RetryGate,
  type RetryState,
  shouldRetry,
  type TryOutcome,
} from '../../../src/resilience/retry-decision.ts';
import {
  compileRetryPolicy,
  DEFAULT_RETRY_ON,
  DEFAULT_RETRY_POLICY,
} from '../../../src/resilience/retry-policy.ts';

const response = (status: number, ...headers: string[]): TryOutcome => ({
  kind: 'response',
  status,
  headers,
});

const OUTCOMES: Record<string, TryOutcome> = {
  'connect-refused': { kind: 'failure', failure: 'connect', bytesSent: false },
  'connect-timeout': { kind: 'failure', failure: 'timeout', bytesSent: false },
  'reset-before-request': { kind: 'failure', failure: 'reset', bytesSent: false },
  'reset-after-send': { kind: 'failure', failure: 'reset', bytesSent: true },
  'protocol-error': { kind: 'failure', failure: 'protocol', bytesSent: true },
  'per-try-timeout': { kind: 'per-try-timeout' },
  overflow: { kind: 'overflow' },
  '200': response(200),
  '404': response(404),
  '409': response(409),
  '429': response(429),
  '500': response(500),
  '501': response(501),
  '502': response(502),
  '503': response(503),
  '504': response(504),
  '503-ratelimited': response(503, 'x-envoy-ratelimited', 'true'),
  '429-ratelimited': response(429, 'x-envoy-ratelimited', 'true'),
  '503-overloaded': response(503, 'x-envoy-overloaded', 'true'),
  'grpc-1': response(200, 'content-type', 'application/grpc', 'grpc-status', '1'),
  'grpc-2': response(200, 'content-type', 'application/grpc', 'grpc-status', '2'),
  'grpc-4': response(200, 'grpc-status', '4'),
  'grpc-8': response(200, 'grpc-status', '8'),
  'grpc-13': response(200, 'grpc-status', '13'),
  'grpc-14': response(200, 'grpc-status', '14'),
  'grpc-14-junk': response(200, 'grpc-status', '14x'),
};

const ALL_FAILURES = ['connect-refused', 'connect-timeout', 'reset-before-request', 'reset-after-send'];

/** Which outcomes each lone `retryOn` token retries. Everything not listed is not retried. */
const TABLE: Record<string, string[]> = {
  '5xx': [...ALL_FAILURES, 'protocol-error', 'per-try-timeout', '500', '501', '502', '503', '504'],
  'gateway-error': [...ALL_FAILURES, 'protocol-error', 'per-try-timeout', '502', '503', '504'],
  reset: [...ALL_FAILURES, 'protocol-error'],
  'reset-before-request': ['connect-refused', 'connect-timeout', 'reset-before-request'],
  'connect-failure': ['connect-refused', 'connect-timeout'],
  // HTTP/1.1 upstreams have no REFUSED_STREAM; nothing maps to it yet.
  'refused-stream': [],
  'retriable-4xx': ['409'],
  'retriable-status-codes': [],
  '503': ['503'],
  '409,429': ['409', '429'],
  // Istio cannot configure the header list, so this never matches.
  'retriable-headers': [],
  'envoy-ratelimited': ['503-ratelimited', '429-ratelimited'],
  'http3-post-connect-failure': [],
  cancelled: ['grpc-1'],
  'deadline-exceeded': ['grpc-4'],
  'resource-exhausted': ['grpc-8'],
  internal: ['grpc-13'],
  unavailable: ['grpc-14'],
};

const fresh = (over: Partial<RetryState> = {}): RetryState => ({
  attemptsMade: 1,
  bodyReplayable: true,
  nowMs: 0,
  random: () => 0.5,
  ...over,
});

t.test('every token against every outcome', async (t) => {
  for (const [token, retried] of Object.entries(TABLE)) {
    const policy = compileRetryPolicy({ attempts: 1, retryOn: token });
    for (const [name, outcome] of Object.entries(OUTCOMES)) {
      const want = retried.includes(name);
      const v = shouldRetry(policy, outcome, fresh());
      t.equal(v.kind, want ? 'retry' : 'stop', `${token} / ${name}`);
      if (!want) t.same(v, { kind: 'stop', reason: 'not-retriable' });
      t.equal(matchesRetryOn(policy, outcome), want);
    }
  }
});

t.test('default policy: connect failures and gRPC unavailable/cancelled only', async (t) => {
  const p = DEFAULT_RETRY_POLICY;
  const retried = ['connect-refused', 'connect-timeout', 'grpc-1', 'grpc-14'];
  for (const [name, outcome] of Object.entries(OUTCOMES)) {
    t.equal(shouldRetry(p, outcome, fresh()).kind, retried.includes(name) ? 'retry' : 'stop', name);
  }
  t.same(shouldRetry(p, OUTCOMES['503']!, fresh()), { kind: 'stop', reason: 'not-retriable' }, '503 not');
});

t.test('overflow is never retried, whatever retryOn says', async (t) => {
  const p = compileRetryPolicy({
    attempts: 5,
    retryOn: '5xx,gateway-error,reset,reset-before-request,connect-failure,refused-stream,503',
  });
  t.same(shouldRetry(p, { kind: 'overflow' }, fresh()), { kind: 'stop', reason: 'not-retriable' });
});

t.test('a numeric code matches only what the upstream sent; a local reset is not a "503"', async (t) => {
  const p = compileRetryPolicy({ attempts: 2, retryOn: '503' });
  t.equal(shouldRetry(p, OUTCOMES['503']!, fresh()).kind, 'retry', 'upstream 503');
  for (const name of [...ALL_FAILURES, 'protocol-error', 'per-try-timeout']) {
    t.equal(shouldRetry(p, OUTCOMES[name]!, fresh()).kind, 'stop', `${name} is not a 503`);
  }
  const withReset = compileRetryPolicy({ attempts: 2, retryOn: '503,reset' });
  t.equal(shouldRetry(withReset, OUTCOMES['reset-after-send']!, fresh()).kind, 'retry', 'matched by reset');
});

t.test('per-try timeout retried only under 5xx or gateway-error', async (t) => {
  const timeout: TryOutcome = { kind: 'per-try-timeout' };
  for (const retryOn of ['5xx', 'gateway-error', 'reset,5xx']) {
    t.equal(shouldRetry(compileRetryPolicy({ attempts: 1, retryOn }), timeout, fresh()).kind, 'retry');
  }
  for (const retryOn of ['reset', 'connect-failure', '504', 'retriable-status-codes,504', DEFAULT_RETRY_ON]) {
    t.equal(
      shouldRetry(compileRetryPolicy({ attempts: 1, retryOn }), timeout, fresh()).kind,
      'stop',
      retryOn,
    );
  }
});

t.test('response headers: overloaded never, ratelimited only under envoy-ratelimited', async (t) => {
  const both = compileRetryPolicy({ attempts: 1, retryOn: '5xx,envoy-ratelimited' });
  t.equal(shouldRetry(both, OUTCOMES['503-overloaded']!, fresh()).kind, 'stop');
  t.equal(
    shouldRetry(both, response(503, 'x-envoy-overloaded', 'true', 'x-envoy-ratelimited', 'true'), fresh())
      .kind,
    'stop',
    'overloaded wins over ratelimited',
  );
  t.equal(shouldRetry(both, OUTCOMES['503-ratelimited']!, fresh()).kind, 'retry');
  const only5xx = compileRetryPolicy({ attempts: 1, retryOn: '5xx' });
  t.equal(shouldRetry(only5xx, OUTCOMES['503-ratelimited']!, fresh()).kind, 'stop', 'not even as a 5xx');
  const grpc = compileRetryPolicy({ attempts: 1, retryOn: 'unavailable' });
  t.equal(shouldRetry(grpc, response(200, 'grpc-status', ' 14 '), fresh()).kind, 'retry', 'value trimmed');
  t.equal(shouldRetry(grpc, response(200, 'grpc-status', ''), fresh()).kind, 'stop');
  t.equal(shouldRetry(grpc, response(200, 'grpc-statuss', '14'), fresh()).kind, 'stop');
});

t.test('retries exhausted after `attempts` retries; caller adds URX', async (t) => {
  const p = compileRetryPolicy({ attempts: 2, retryOn: 'connect-failure' });
  const o = OUTCOMES['connect-refused']!;
  t.match(shouldRetry(p, o, fresh({ attemptsMade: 1 })), { kind: 'retry', retryNumber: 1 });
  t.match(shouldRetry(p, o, fresh({ attemptsMade: 2 })), { kind: 'retry', retryNumber: 2 });
  t.same(shouldRetry(p, o, fresh({ attemptsMade: 3 })), { kind: 'stop', reason: 'exhausted' });
  t.same(
    shouldRetry(p, OUTCOMES['503']!, fresh({ attemptsMade: 3 })),
    { kind: 'stop', reason: 'not-retriable' },
    'a non-retriable outcome is not "exhausted" (no URX)',
  );
  const off = compileRetryPolicy({ attempts: 0, retryOn: 'connect-failure' });
  t.same(shouldRetry(off, o, fresh()), { kind: 'stop', reason: 'not-retriable' }, 'disabled: no URX');
});

t.test('body not replayable', async (t) => {
  const p = compileRetryPolicy({ attempts: 1, retryOn: '5xx' });
  const o = OUTCOMES['500']!;
  t.same(shouldRetry(p, o, fresh({ bodyReplayable: false })), {
    kind: 'stop',
    reason: 'body-not-replayable',
  });
  t.same(
    shouldRetry(p, o, fresh({ bodyReplayable: false, attemptsMade: 2 })),
    { kind: 'stop', reason: 'exhausted' },
    'exhausted is reported first',
  );
});

t.test('back-off delay comes from the injected random; deadline check', async (t) => {
  const p = compileRetryPolicy({ attempts: 3, retryOn: '5xx' });
  const o = OUTCOMES['502']!;
  t.same(shouldRetry(p, o, fresh({ attemptsMade: 2, random: () => 0.5 })), {
    kind: 'retry',
    retryNumber: 2,
    delayMs: 37,
  });
  t.same(shouldRetry(p, o, fresh({ random: () => 0.99 })), { kind: 'retry', retryNumber: 1, delayMs: 24 });
  t.same(
    shouldRetry(p, o, fresh({ nowMs: 1000, deadlineMs: 1010, random: () => 0.99 })),
    { kind: 'stop', reason: 'deadline' },
    'back-off of 24ms ends after the deadline',
  );
  t.same(
    shouldRetry(p, o, fresh({ nowMs: 1000, deadlineMs: 1024, random: () => 0.99 })),
    { kind: 'stop', reason: 'deadline' },
    'starting exactly at the deadline is too late',
  );
  t.match(shouldRetry(p, o, fresh({ nowMs: 1000, deadlineMs: 1025, random: () => 0.99 })), { kind: 'retry' });
  t.match(shouldRetry(p, o, fresh({ nowMs: 1000, deadlineMs: 1001, random: () => 0 })), { kind: 'retry' });
});

t.test('budget is consulted last and only when everything else allows the retry', async (t) => {
  let calls = 0;
  let allow = false;
  const budget: RetryGate = {
    tryWithdraw: () => {
      calls++;
      return allow;
    },
  };
  const p = compileRetryPolicy({ attempts: 1, retryOn: '5xx' });
  const o = OUTCOMES['500']!;
  t.same(shouldRetry(p, o, fresh({ budget })), { kind: 'stop', reason: 'budget' });
  t.equal(calls, 1);
  shouldRetry(p, OUTCOMES['200']!, fresh({ budget }));
  shouldRetry(p, o, fresh({ budget, attemptsMade: 2 }));
  shouldRetry(p, o, fresh({ budget, bodyReplayable: false }));
  shouldRetry(p, o, fresh({ budget, nowMs: 10, deadlineMs: 5 }));
  t.equal(calls, 1, 'no withdrawal for non-retriable, exhausted, unreplayable or late tries');
  allow = true;
  t.match(shouldRetry(p, o, fresh({ budget })), { kind: 'retry' });
  t.equal(calls, 2);
});

t.test('attemptsMade below 1 is treated as the first try', async (t) => {
  const p = compileRetryPolicy({ attempts: 1, retryOn: '5xx' });
  t.match(shouldRetry(p, OUTCOMES['500']!, fresh({ attemptsMade: 0 })), { kind: 'retry', retryNumber: 1 });
});
