import t from 'tap';
import type { ObservedRequest } from '../../../src/telemetry/observed-request.ts';
import {
  matches,
  parseTapQuery,
  Tap,
  type TapFilter,
  type TapSink,
  type TapSummary,
} from '../../../src/telemetry/tap.ts';
import { observed } from '../../helpers/observed-request.ts';

/** The tap tests' request: the shared one with the values these tests read. */
function request(over: Partial<ObservedRequest> = {}): ObservedRequest {
  return observed(
    {
      bytesSent: 10,
      authority: 'Reviews:9080',
      path: '/r/1',
      routeName: '',
      requestId: 'id-1',
      endpoint: { id: '10.0.0.1:9080', labels: {} },
      cluster: { name: 'outbound|9080||reviews.default.svc.cluster.local' },
      rttMs: 1,
      ...over,
    },
    { headers: [] },
  );
}

class FakeSink implements TapSink {
  chunks: string[] = [];
  ended = false;
  pending = 0;
  write(chunk: string): void {
    if (this.ended) throw new Error('write after end');
    this.chunks.push(chunk);
  }
  buffered(): number {
    return this.pending;
  }
  end(): void {
    this.ended = true;
  }
  events(): TapSummary[] {
    return this.chunks.filter((c) => c.startsWith('data: ')).map((c) => JSON.parse(c.slice(6)) as TapSummary);
  }
}

function filterOf(query: string): { filter: TapFilter; limit: number } {
  const parsed = parseTapQuery(new URLSearchParams(query));
  if ('error' in parsed) throw new Error(parsed.error);
  return parsed;
}

t.test('parseTapQuery', async (t) => {
  t.same(filterOf(''), { filter: {}, limit: Number.POSITIVE_INFINITY });
  t.same(filterOf('authority=Reviews:9080&path_prefix=/x&method=post&status=5xx&reporter=source&limit=2'), {
    filter: {
      authority: 'reviews:9080',
      pathPrefix: '/x',
      method: 'POST',
      statusClass: 5,
      reporter: 'source',
    },
    limit: 2,
  });
  t.same(filterOf('status=404').filter, { status: 404 });
  for (const [q, why] of [
    ['status=abc', /status abc/],
    ['reporter=both', /reporter both/],
    ['limit=0', /limit 0/],
    ['limit=-1', /limit -1/],
    ['pathprefix=/x', /unknown tap parameter pathprefix/],
  ] as const) {
    const r = parseTapQuery(new URLSearchParams(q));
    t.ok('error' in r && why.test(r.error), q);
  }
});

t.test('filters', async (t) => {
  const r = request();
  const ok = (q: string, code = 200, req = r): boolean => matches(filterOf(q).filter, req, code);
  t.ok(ok(''));
  t.ok(ok('authority=reviews:9080'), 'authority ignores case');
  t.notOk(ok('authority=reviews'), 'authority is exact');
  t.ok(ok('path_prefix=/rev'));
  t.notOk(ok('path_prefix=/r/'), 'the path as the client sent it, not the rewritten one');
  t.ok(ok('method=get'));
  t.notOk(ok('method=POST'));
  t.ok(ok('status=503', 503));
  t.notOk(ok('status=503', 504));
  t.ok(ok('status=5xx', 504));
  t.notOk(ok('status=5xx', 404));
  t.ok(ok('status=4xx', 404));
  t.notOk(ok('status=5xx', 0), 'no response is not 5xx');
  t.ok(ok('status=0', 0));
  t.ok(ok('reporter=source'));
  t.notOk(ok('reporter=destination'));
  t.ok(ok('method=GET&status=2xx&path_prefix=/reviews/1'));
  t.notOk(ok('method=GET&status=2xx&path_prefix=/reviews/2'), 'every given filter must match');
});

t.test('fan-out: each subscriber gets what matches its filter, one JSON event each', async (t) => {
  const tap = new Tap({ wallClock: () => Date.UTC(2026, 0, 1), heartbeatMs: 0 });
  const all = new FakeSink();
  const errors = new FakeSink();
  const x = new FakeSink();
  tap.subscribe(filterOf('').filter, all);
  tap.subscribe(filterOf('status=5xx').filter, errors);
  tap.subscribe(filterOf('path_prefix=/x').filter, x);
  t.equal(tap.subscriberCount, 3);
  tap.observe(request(), 1.23456, 200);
  tap.observe(request({ originalPath: '/x/1', flags: 'UF,URX', routeName: 'r1' }), 2, 503);
  tap.observe(request({ endpoint: null, target: { address: '127.0.0.1', port: 8080 }, cluster: null }), 3, 0);
  t.equal(all.events().length, 3);
  t.same(
    errors.events().map((e) => e.status),
    [503],
  );
  t.same(
    x.events().map((e) => e.path),
    ['/x/1'],
  );
  t.same(all.events()[0], {
    time: '2026-01-01T00:00:00.000Z',
    reporter: 'source',
    method: 'GET',
    authority: 'Reviews:9080',
    path: '/reviews/1?x=1',
    status: 200,
    flags: '-',
    duration_ms: 1.235,
    upstream_host: '10.0.0.1:9080',
    upstream_cluster: 'outbound|9080||reviews.default.svc.cluster.local',
    request_id: 'id-1',
    route_name: '-',
    bytes_received: 3,
    bytes_sent: 10,
  });
  t.match(all.events()[1], { flags: 'UF,URX', route_name: 'r1' });
  t.match(all.events()[2], { upstream_host: '127.0.0.1:8080', upstream_cluster: '-', status: 0 });
  t.ok(
    all.chunks.every((c) => /^data: \{.*\}\n\n$/s.test(c) && !c.slice(6, -2).includes('\n')),
    'one line of JSON per event',
  );
});

t.test('limit ends the stream after N events; close unsubscribes', async (t) => {
  const tap = new Tap({ heartbeatMs: 0 });
  const two = new FakeSink();
  tap.subscribe({}, two, 2);
  const other = new FakeSink();
  const sub = tap.subscribe({}, other);
  tap.observe(request(), 1, 200);
  sub?.close();
  sub?.close();
  t.equal(tap.subscriberCount, 1);
  tap.observe(request(), 1, 200);
  tap.observe(request(), 1, 200);
  t.equal(two.events().length, 2);
  t.ok(two.ended);
  t.equal(other.events().length, 1, 'nothing after close');
  t.notOk(other.ended, 'closing is the caller’s business');
  t.equal(tap.subscriberCount, 0);
});

t.test('at most maxSubscribers', async (t) => {
  const tap = new Tap({ maxSubscribers: 2, heartbeatMs: 0 });
  const a = tap.subscribe({}, new FakeSink());
  t.ok(tap.subscribe({}, new FakeSink()));
  t.equal(tap.subscribe({}, new FakeSink()), null);
  a?.close();
  t.ok(tap.subscribe({}, new FakeSink()), 'room again');
});

t.test('a slow subscriber is dropped with a last event; the others go on', async (t) => {
  const tap = new Tap({ maxBufferedBytes: 1000, heartbeatMs: 0 });
  const slow = new FakeSink();
  const fast = new FakeSink();
  tap.subscribe({}, slow);
  tap.subscribe({}, fast);
  tap.observe(request(), 1, 200);
  slow.pending = 1001;
  tap.observe(request(), 1, 200);
  tap.observe(request(), 1, 200);
  t.equal(slow.events().length, 1);
  t.match(slow.chunks.at(-1), /^event: dropped\ndata: \{"reason":"subscriber too slow.*\}\n\n$/);
  t.ok(slow.ended);
  t.equal(fast.events().length, 3);
  t.equal(tap.subscriberCount, 1);
  t.equal(tap.dropped, 1);
});

t.test('a sink that throws does not reach the request path', async (t) => {
  const tap = new Tap({ heartbeatMs: 0 });
  const broken: TapSink = {
    write: () => {
      throw new Error('socket gone');
    },
    buffered: () => 0,
    end: () => {
      throw new Error('socket gone');
    },
  };
  tap.subscribe({}, broken, 1);
  t.doesNotThrow(() => tap.observe(request(), 1, 200));
  t.equal(tap.subscriberCount, 0);
});

t.test('heartbeat comments while subscribed, none after', async (t) => {
  const tap = new Tap({ heartbeatMs: 10 });
  const sink = new FakeSink();
  const sub = tap.subscribe({}, sink);
  await new Promise((r) => setTimeout(r, 45));
  const beats = sink.chunks.filter((c) => c === ': heartbeat\n\n').length;
  t.ok(beats >= 2, `${beats} heartbeats`);
  sub?.close();
  const n = sink.chunks.length;
  await new Promise((r) => setTimeout(r, 30));
  t.equal(sink.chunks.length, n);
  tap.subscribe({}, sink);
  tap.close();
  t.ok(sink.ended);
  t.equal(tap.subscriberCount, 0);
});

t.test('no subscriber: observe does nothing', async (t) => {
  const tap = new Tap();
  // A request whose fields would throw if read proves nothing but the length is looked at.
  const poisoned = new Proxy(request(), {
    get: () => {
      throw new Error('read');
    },
  });
  t.doesNotThrow(() => tap.observe(poisoned, 1, 200));
});
