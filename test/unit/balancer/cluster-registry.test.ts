import t from 'tap';
import { createClusterRegistry } from '../../../src/balancer/cluster-registry.ts';
import type { Endpoint } from '../../../src/router/route-types.ts';
import { cluster, ctx, fakeResolver, ipEp, manualTimers } from './cluster-helpers.ts';
import { manualClock, seededRandom } from './sim-helpers.ts';

const three = [ipEp(1), ipEp(2), ipEp(3)];
const withOd = { outlierDetection: { interval: 500 } };

function registry(extra: { resolver?: ReturnType<typeof fakeResolver> } = {}) {
  const clock = manualClock(100);
  const timers = manualTimers();
  const r = createClusterRegistry({
    clock: clock.now,
    random: seededRandom(5),
    setInterval: timers.setInterval,
    ...extra,
  });
  return { r, clock, timers };
}

t.test('fast path: the same Cluster object returns the same state without work', async (t) => {
  const { r } = registry();
  const a = cluster(three);
  const b = cluster([ipEp(7)], undefined, 'outbound|80||other');
  const sa = r.get(a);
  t.equal(r.get(a), sa);
  const sb = r.get(b);
  t.not(sb, sa);
  t.equal(r.get(a), sa, 'back to the first by name');
  t.equal(r.get(b), sb);
  t.same(
    [...r.all()].map((s) => s.name),
    [a.name, b.name],
  );

  // Reading the endpoints on the fast path would show a tampered list: it is never looked at.
  const tampered = cluster(three);
  const st = r.get(tampered);
  t.equal(st, sa, 'same name: same state');
  (tampered as { endpoints: readonly Endpoint[] }).endpoints = [ipEp(9)];
  t.same(
    r.get(tampered).endpoints.map((e) => e.id),
    three.map((e) => e.id),
    'the same object is not compared again',
  );
});

t.test('a new Cluster object updates the state in place, keeping per-endpoint state by id', async (t) => {
  const { r, clock } = registry();
  const first = r.get(cluster(three));
  clock.advance(50);
  const e2 = first.endpoints[1]!;
  first.attemptStarted(e2);
  first.attemptEnded(e2, { rttMs: 250, status: 200, failure: null });
  first.recordRequest();
  const second = r.get(cluster([ipEp(2), ipEp(4)]));
  t.equal(second, first, 'the same state object');
  t.same(
    second.endpoints.map((e) => e.id),
    ['10.0.0.2:8080', '10.0.0.4:8080'],
  );
  const s = second.status();
  t.equal(s.endpoints[0]!.ewmaMs, 250, 'EWMA of an endpoint that stayed survives');
  t.equal(s.counters.requests, 1, 'counters survive');
  t.equal(second.pick(ctx(), new Set(['10.0.0.2:8080']))!.endpoint.id, '10.0.0.4:8080');
});

t.test('retain drops other clusters and stops their timers; close stops the rest', async (t) => {
  const { r, timers } = registry();
  const a = cluster(three, withOd, 'outbound|1||a');
  const b = cluster(three, withOd, 'outbound|2||b');
  const c = cluster(three, undefined, 'outbound|3||c');
  const sa = r.get(a);
  r.get(b);
  r.get(c);
  t.same(timers.live(), [{ ms: 500 }, { ms: 500 }], 'one sweep per cluster with outlier detection');
  r.retain(new Set(['outbound|1||a', 'outbound|3||c']));
  t.same(timers.live(), [{ ms: 500 }]);
  t.same(
    [...r.all()].map((s) => s.name),
    ['outbound|1||a', 'outbound|3||c'],
  );
  t.not(r.get(b), sa, 'a dropped cluster comes back as a new state');
  t.same(timers.live(), [{ ms: 500 }, { ms: 500 }]);
  // The fast-path field must not hand out a dropped state.
  r.retain(new Set(['outbound|1||a']));
  const fresh = r.get(b);
  t.equal(fresh.status().counters.requests, 0);
  t.same(
    [...r.all()].map((s) => s.name),
    ['outbound|1||a', 'outbound|2||b'],
  );
  r.close();
  t.same(timers.live(), [], 'close stops every timer');
});

t.test('the last-object field is cleared when its cluster is dropped', async (t) => {
  const { r } = registry();
  const a = cluster(three);
  const sa = r.get(a);
  sa.recordRequest();
  r.retain(new Set());
  const again = r.get(a);
  t.not(again, sa, 'the same Cluster object after retain gets a fresh state');
  t.equal(again.status().counters.requests, 0);
  t.same([...r.all()].length, 1, 'and the registry holds it');
});

t.test('DNS changes reach the clusters that use the host', async (t) => {
  const resolver = fakeResolver();
  const { r } = registry({ resolver });
  const dnsEp: Endpoint = { id: 'db.example:5432', address: 'db.example', port: 5432, weight: 1, labels: {} };
  const db = r.get(cluster([dnsEp], undefined, 'outbound|5432||db.example'));
  const other = r.get(cluster(three, undefined, 'outbound|8080||other'));
  t.same(
    db.endpoints.map((e) => e.id),
    ['db.example:5432'],
  );
  resolver.set('db.example', ['192.0.2.10']);
  t.same(
    db.endpoints.map((e) => e.id),
    ['192.0.2.10:5432'],
    'the registry forwarded the change',
  );
  t.same(
    other.endpoints.map((e) => e.id),
    three.map((e) => e.id),
  );
  t.same(db.pick(ctx())?.endpoint.address, '192.0.2.10');
});

t.test('default timers are real intervals that do not hold the process', async (t) => {
  const r = createClusterRegistry({ clock: () => performance.now(), random: Math.random });
  const s = r.get(cluster(three, withOd));
  t.equal(s.status().endpoints.length, 3);
  r.close();
  t.pass('closed without waiting on the interval');
});
