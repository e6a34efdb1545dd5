/**
 * The DNS resolver (src/upstream/dns-resolver.ts) with an injected lookup, clock and timers: first
 * resolution and notification, refresh with and without a change, failures keeping the last good set,
 * TTL-driven refresh, one lookup at a time, refreshNow, close; and the default lookup on `localhost`.
 */
import t, { type Test } from 'tap';
import {
  createDnsResolver,
  type DnsResolverOptions,
  type LookupAddress,
} from '../../../src/upstream/dns-resolver.ts';

interface FakeTimer {
  fn: () => void;
  ms: number;
  active: boolean;
}

/** Timers that run only when a test fires them. */
class Timers {
  readonly all: FakeTimer[] = [];
  readonly set = (fn: () => void, ms: number): unknown => {
    const timer = { fn, ms, active: true };
    this.all.push(timer);
    return timer;
  };
  readonly clear = (handle: unknown): void => {
    (handle as FakeTimer).active = false;
  };
  pending(): FakeTimer[] {
    return this.all.filter((x) => x.active);
  }
  /** Fires every active timer once. */
  fire(): void {
    for (const timer of this.pending()) {
      timer.active = false;
      timer.fn();
    }
  }
}

type Answer = LookupAddress[] | Error;

/** A lookup answering from `answers` (per host, the current answer), counting calls. */
class FakeDns {
  readonly answers = new Map<string, Answer>();
  readonly calls: string[] = [];
  /** When set, lookups wait for `release()`. */
  hold = false;
  private readonly waiting: Array<() => void> = [];
  readonly lookup = async (host: string): Promise<LookupAddress[]> => {
    this.calls.push(host);
    if (this.hold) await new Promise<void>((r) => this.waiting.push(r));
    const answer = this.answers.get(host);
    if (answer === undefined) throw Object.assign(new Error(`ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    if (answer instanceof Error) throw answer;
    return answer;
  };
  release(): void {
    this.hold = false;
    for (const r of this.waiting.splice(0)) r();
  }
}

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

function setup(t: Test, extra: Partial<DnsResolverOptions> = {}) {
  const timers = new Timers();
  const dns = new FakeDns();
  const changes: string[] = [];
  const errors: Array<{ host: string; message: string }> = [];
  let now = 1000;
  const resolver = createDnsResolver({
    lookup: dns.lookup,
    refreshMs: 30_000,
    minRefreshMs: 5_000,
    clock: () => now,
    setTimer: timers.set,
    clearTimer: timers.clear,
    onError: (host, err) => errors.push({ host, message: err instanceof Error ? err.message : String(err) }),
    ...extra,
  });
  resolver.onChange((host) => changes.push(host));
  t.teardown(() => resolver.close());
  return {
    timers,
    dns,
    changes,
    errors,
    resolver,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

const a = (...addresses: string[]): LookupAddress[] => addresses.map((address) => ({ address }));

t.test('first call: undefined, then the sorted set and one onChange', async (t) => {
  const { dns, changes, resolver, timers } = setup(t);
  dns.answers.set('svc.example', a('10.0.0.2', '10.0.0.1', '10.0.0.2'));
  t.equal(resolver.addresses('svc.example'), undefined, 'not resolved yet');
  t.equal(resolver.addresses('svc.example'), undefined, 'still resolving');
  t.same(dns.calls, ['svc.example'], 'one lookup for both calls');
  await flush();
  const first = resolver.addresses('svc.example');
  t.same(first, ['10.0.0.1', '10.0.0.2'], 'sorted, duplicates removed');
  t.ok(Object.isFrozen(first));
  t.same(changes, ['svc.example']);
  t.equal(resolver.addresses('svc.example'), first, 'the same array while unchanged');
  t.same(
    timers.pending().map((x) => x.ms),
    [30_000],
    'next lookup after refreshMs',
  );
});

t.test('refresh: an unchanged set (any order) is silent; a changed set notifies', async (t) => {
  const { dns, changes, resolver, timers } = setup(t);
  dns.answers.set('h', a('10.0.0.1', '10.0.0.2'));
  resolver.addresses('h');
  await flush();
  const first = resolver.addresses('h');
  dns.answers.set('h', a('10.0.0.2', '10.0.0.1'));
  timers.fire();
  await flush();
  t.equal(dns.calls.length, 2, 're-resolved on the timer');
  t.same(changes, ['h'], 'no onChange for the same set');
  t.equal(resolver.addresses('h'), first, 'same array kept');
  dns.answers.set('h', a('10.0.0.3'));
  timers.fire();
  await flush();
  t.same(changes, ['h', 'h'], 'onChange for the new set');
  t.same(resolver.addresses('h'), ['10.0.0.3']);
  t.equal(timers.pending().length, 1, 'still one timer for the host');
});

t.test('a failed lookup keeps the last good set, reports it, and retries sooner', async (t) => {
  const { dns, changes, errors, resolver, timers } = setup(t);
  dns.answers.set('h', a('10.0.0.1'));
  resolver.addresses('h');
  await flush();
  dns.answers.set('h', new Error('SERVFAIL'));
  timers.fire();
  await flush();
  t.same(resolver.addresses('h'), ['10.0.0.1'], 'last good set kept');
  t.same(errors, [{ host: 'h', message: 'SERVFAIL' }]);
  t.same(changes, ['h'], 'no onChange on failure');
  t.same(
    timers.pending().map((x) => x.ms),
    [5_000],
    'retried after min(refreshMs, minRefreshMs)',
  );
  dns.answers.set('h', []);
  timers.fire();
  await flush();
  t.same(resolver.addresses('h'), ['10.0.0.1'], 'an empty answer is a failure too');
  t.equal(errors.length, 2);
  t.match(errors[1]?.message, /no addresses/);
  dns.answers.set('h', a('10.0.0.9'));
  timers.fire();
  await flush();
  t.same(resolver.addresses('h'), ['10.0.0.9'], 'recovered');
  t.same(changes, ['h', 'h']);
});

t.test('a host that never resolved stays undefined and keeps being tried', async (t) => {
  const { dns, changes, errors, resolver, timers } = setup(t);
  t.equal(resolver.addresses('missing'), undefined);
  await flush();
  t.equal(resolver.addresses('missing'), undefined);
  t.equal(errors[0]?.host, 'missing');
  t.same(changes, []);
  dns.answers.set('missing', a('10.1.1.1'));
  timers.fire();
  await flush();
  t.same(resolver.addresses('missing'), ['10.1.1.1']);
  t.same(changes, ['missing'], 'first resolution notifies');
});

t.test('TTLs from the lookup set the refresh, floored at minRefreshMs', async (t) => {
  const { dns, resolver, timers } = setup(t);
  dns.answers.set('ttl', [
    { address: '10.0.0.1', ttl: 60 },
    { address: '10.0.0.2', ttl: 12 },
  ]);
  dns.answers.set('short', [{ address: '10.0.0.3', ttl: 0 }]);
  resolver.addresses('ttl');
  resolver.addresses('short');
  await flush();
  t.same(
    timers
      .pending()
      .map((x) => x.ms)
      .sort((x, y) => x - y),
    [5_000, 12_000],
    'smallest TTL (12 s); TTL 0 → the 5 s floor',
  );
});

t.test('the next lookup is timed from the start of the previous one', async (t) => {
  const { dns, resolver, timers, advance } = setup(t);
  dns.answers.set('slow', a('10.0.0.1'));
  dns.hold = true;
  resolver.addresses('slow');
  advance(700);
  dns.release();
  await flush();
  t.same(
    timers.pending().map((x) => x.ms),
    [30_000 - 700],
  );
});

t.test('one lookup per host at a time; refreshNow re-resolves every host and waits', async (t) => {
  const { dns, changes, resolver, timers } = setup(t);
  dns.answers.set('x', a('10.0.0.1'));
  dns.answers.set('y', a('10.0.0.2'));
  dns.hold = true;
  resolver.addresses('x');
  resolver.addresses('y');
  let refreshed = false;
  const refresh = resolver.refreshNow().then(() => {
    refreshed = true;
  });
  await flush();
  t.same(dns.calls, ['x', 'y'], 'refreshNow joined the lookups in flight');
  t.notOk(refreshed, 'refreshNow waits for them');
  dns.release();
  await refresh;
  t.same(changes.sort(), ['x', 'y']);
  t.equal(timers.pending().length, 2);
  dns.answers.set('y', a('10.0.0.5'));
  await resolver.refreshNow();
  t.same(dns.calls, ['x', 'y', 'x', 'y'], 'refreshNow started new lookups');
  t.same(resolver.addresses('y'), ['10.0.0.5']);
  t.equal(timers.pending().length, 2, 'their timers were replaced, not added');
});

t.test('an IP literal is its own set: no lookup, no timer', async (t) => {
  const { dns, changes, resolver, timers } = setup(t);
  t.same(resolver.addresses('10.9.9.9'), ['10.9.9.9']);
  t.same(resolver.addresses('::1'), ['::1']);
  await resolver.refreshNow();
  t.same(dns.calls, []);
  t.same(changes, []);
  t.equal(timers.pending().length, 0);
});

t.test('a listener that throws does not stop the others; its error is reported', async (t) => {
  const { dns, changes, errors, resolver } = setup(t);
  const order: string[] = [];
  resolver.onChange(() => {
    order.push('thrower');
    throw new Error('listener broke');
  });
  resolver.onChange(() => order.push('after'));
  dns.answers.set('h', a('10.0.0.1'));
  resolver.addresses('h');
  await flush();
  t.same(changes, ['h']);
  t.same(order, ['thrower', 'after']);
  t.same(errors, [{ host: 'h', message: 'listener broke' }]);
});

t.test('close stops the timers and ignores lookups still running', async (t) => {
  const { dns, changes, resolver, timers } = setup(t);
  dns.answers.set('a', a('10.0.0.1'));
  dns.answers.set('b', a('10.0.0.2'));
  resolver.addresses('a');
  await flush();
  t.equal(timers.pending().length, 1);
  dns.hold = true;
  resolver.addresses('b');
  resolver.close();
  t.equal(timers.pending().length, 0, 'timer cleared');
  dns.release();
  await flush();
  t.same(changes, ['a'], 'the answer after close is ignored');
  t.equal(timers.pending().length, 0, 'nothing rescheduled');
  await resolver.refreshNow();
  t.same(dns.calls, ['a', 'b'], 'refreshNow after close looks nothing up');
});

t.test('invalid refresh settings fall back to the defaults', async (t) => {
  const { dns, resolver, timers } = setup(t, { refreshMs: 0, minRefreshMs: Number.NaN });
  dns.answers.set('h', a('10.0.0.1'));
  resolver.addresses('h');
  await flush();
  t.same(
    timers.pending().map((x) => x.ms),
    [30_000],
  );
  dns.answers.set('h', new Error('down'));
  timers.fire();
  await flush();
  t.same(
    timers.pending().map((x) => x.ms),
    [5_000],
  );
});

t.test('default lookup and timers: localhost resolves through the system resolver', async (t) => {
  const resolver = createDnsResolver({ refreshMs: 60_000 });
  t.teardown(() => resolver.close());
  const changed = new Promise<string>((resolve) => resolver.onChange(resolve));
  t.equal(resolver.addresses('localhost'), undefined);
  const host = await Promise.race([
    changed,
    new Promise<string>((r) => setTimeout(() => r('timed out'), 5_000).unref()),
  ]);
  t.equal(host, 'localhost');
  const addresses = resolver.addresses('localhost') ?? [];
  t.ok(
    addresses.includes('127.0.0.1') || addresses.includes('::1'),
    `loopback among ${addresses.join(', ')}`,
  );
  // The refresh timer is unref'd: this test file ends without waiting 60 s for it.
});
