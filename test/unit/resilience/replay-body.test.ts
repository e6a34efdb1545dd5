import t from 'tap';
import type { BodyStream } from '../../../src/listener/listener-types.ts';
import { DEFAULT_REPLAY_LIMIT_BYTES, ReplayBody } from '../../../src/resilience/replay-body.ts';

/** A downstream body driven by the test. */
class FakeSource implements BodyStream {
  cb: ((chunk: Buffer, last: boolean) => void) | null = null;
  paused = false;
  pauses = 0;
  resumes = 0;
  onData(cb: (chunk: Buffer, last: boolean) => void): void {
    if (this.cb !== null) throw new Error('second consumer');
    this.cb = cb;
  }
  pause(): void {
    this.paused = true;
    this.pauses++;
  }
  resume(): void {
    this.paused = false;
    this.resumes++;
  }
  send(data: string | Buffer, last = false): void {
    if (this.cb === null) throw new Error('no consumer');
    this.cb(typeof data === 'string' ? Buffer.from(data) : data, last);
  }
}

/** Collects what a consumer receives. */
class Sink {
  chunks: Buffer[] = [];
  lasts: boolean[] = [];
  constructor(stream: BodyStream, onChunk?: (s: Sink) => void) {
    stream.onData((chunk, last) => {
      this.chunks.push(chunk);
      this.lasts.push(last);
      onChunk?.(this);
    });
  }
  get text(): string {
    return Buffer.concat(this.chunks).toString();
  }
  get ended(): boolean {
    return this.lasts.at(-1) === true;
  }
}

/** Lets queued microtasks (kept-chunk delivery) run; no timers involved. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

t.test('a small body passes through and replays byte-exact, as often as needed', async (t) => {
  const src = new FakeSource();
  const body = new ReplayBody(src);
  t.equal(body.limitBytes, DEFAULT_REPLAY_LIMIT_BYTES);
  t.equal(src.cb, null, 'the source is attached only when the first try attaches');
  const first = new Sink(body);
  t.not(src.cb, null);
  const binary = Buffer.from([0, 255, 13, 10, 128, 1]);
  src.send('hello ');
  src.send(binary);
  src.send('world', false);
  src.send(Buffer.alloc(0), true);
  t.equal(first.chunks.length, 4, 'live chunks go straight through, synchronously');
  t.same(first.lasts, [false, false, false, true]);
  t.ok(body.replayable);
  t.ok(body.complete);
  t.equal(body.receivedBytes, 17);
  const expected = Buffer.concat([Buffer.from('hello '), binary, Buffer.from('world')]);
  for (let i = 1; i <= 3; i++) {
    const again = new Sink(body.replay());
    t.equal(again.chunks.length, 0, 'kept chunks arrive from a microtask, not inside onData');
    await settle();
    t.ok(Buffer.concat(again.chunks).equals(expected), `replay ${i} is byte-exact`);
    t.same(again.lasts, [false, false, false, true], 'same chunking and end marker');
  }
  t.equal(body.replayCount, 3);
  t.equal(src.pauses, 0, 'an ended source is never paused');
});

t.test('a body over the limit is not replayable', async (t) => {
  const src = new FakeSource();
  const body = new ReplayBody(src, 10);
  const first = new Sink(body);
  src.send('12345');
  src.send('67890');
  t.ok(body.replayable, 'exactly at the limit: still replayable');
  src.send('x');
  t.notOk(body.replayable, 'one byte over: not replayable');
  src.send('yz', true);
  t.notOk(body.replayable, 'and it stays so');
  t.equal(first.text, '1234567890xyz', 'the first try still gets the whole body');
  t.ok(first.ended);
  t.throws(() => body.replay(), /not replayable/);
});

t.test('backpressure: pausing the wrapper pauses the source', async (t) => {
  const src = new FakeSource();
  const body = new ReplayBody(src);
  const first = new Sink(body);
  src.send('a');
  body.pause();
  t.ok(src.paused, 'source paused');
  t.equal(src.pauses, 1);
  body.pause();
  t.equal(src.pauses, 1, 'pause is idempotent');
  src.send('b'); // an engine may still hand over a chunk after pause
  t.equal(first.text, 'a', 'held back while paused');
  body.resume();
  t.ok(src.paused, 'the source stays paused until the held chunk is delivered');
  await settle();
  t.equal(first.text, 'ab');
  t.notOk(src.paused, 'source resumed once the held chunk was delivered');
  src.send('c', true);
  t.equal(first.text, 'abc');
  t.ok(first.ended);
});

t.test('a consumer that pauses inside its callback gets the rest after resume', async (t) => {
  const src = new FakeSource();
  const body = new ReplayBody(src);
  new Sink(body);
  for (const c of ['1', '2', '3']) src.send(c);
  src.send('4', true);
  const stream = body.replay();
  const sink = new Sink(stream, (s) => {
    if (s.chunks.length === 2) stream.pause();
  });
  await settle();
  t.equal(sink.text, '12', 'stopped at the pause');
  stream.resume();
  t.equal(sink.text, '12', 'delivery resumes from a microtask');
  await settle();
  t.equal(sink.text, '1234');
  t.ok(sink.ended);
});

t.test('retry before the body ended: kept bytes first, then the live rest', async (t) => {
  const src = new FakeSource();
  const body = new ReplayBody(src);
  const first = new Sink(body);
  src.send('ab');
  const second = body.replay();
  t.ok(src.paused, 'source paused between tries (no consumer yet)');
  src.send('cd'); // arrives during back-off: kept, not delivered to the old try
  t.equal(first.text, 'ab', 'the detached first try gets nothing more');
  body.resume();
  body.pause();
  t.ok(src.paused, 'the detached stream no longer controls the source');
  const sink = new Sink(second);
  t.ok(src.paused, 'still paused while kept chunks are pending');
  await settle();
  t.equal(sink.text, 'abcd');
  t.notOk(src.paused, 'source resumed once caught up');
  src.send('ef', true);
  t.equal(sink.text, 'abcdef');
  t.ok(sink.ended);
  const third = new Sink(body.replay());
  await settle();
  t.equal(third.text, 'abcdef', 'the live part was kept as well');
  t.ok(third.ended);
});

t.test('retry before the first try read anything', async (t) => {
  const src = new FakeSource();
  const body = new ReplayBody(src);
  const second = body.replay(); // e.g. connect failure before the body was attached
  t.equal(src.cb, null, 'source not attached yet');
  body.onData(() => t.fail('the stale first stream never receives data'));
  t.equal(src.cb, null, 'a detached stream does not attach the source');
  const sink = new Sink(second);
  t.not(src.cb, null, 'the retry attaches the source');
  src.send('x');
  src.send('y', true);
  t.equal(sink.text, 'xy');
  t.ok(sink.ended);
});

t.test('outgrowing the limit during a retry keeps the retry streaming', async (t) => {
  const src = new FakeSource();
  const body = new ReplayBody(src, 4);
  new Sink(body);
  src.send('abc');
  const sink = new Sink(body.replay());
  await settle();
  src.send('defgh');
  src.send('', true);
  t.notOk(body.replayable);
  t.equal(sink.text, 'abcdefgh');
  t.ok(sink.ended);
});

t.test('release drops the copy; a stream takes one consumer', async (t) => {
  const src = new FakeSource();
  const body = new ReplayBody(src);
  new Sink(body);
  src.send('abc', true);
  body.release();
  t.notOk(body.replayable);
  t.throws(() => body.replay());
  const other = new ReplayBody(new FakeSource());
  const r = other.replay();
  r.onData(() => {});
  t.throws(() => r.onData(() => {}), /already has a consumer/);
  r.pause();
  r.pause();
  r.resume();
  r.resume();
  t.pass('pause/resume are idempotent');
});
