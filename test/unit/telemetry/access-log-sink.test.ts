import { spawn } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import {
  AccessLogSink,
  type BatchWriter,
  CallbackWriter,
  type FdIo,
  FdWriter,
} from '../../../src/telemetry/access-log-sink.ts';

/** A writer whose writes complete when the test says so. */
class ManualWriter implements BatchWriter {
  readonly batches: string[] = [];
  readonly done: Array<(err: Error | null) => void> = [];
  closed = 0;
  reopened = 0;

  write(data: Buffer, done: (err: Error | null) => void): void {
    this.batches.push(data.toString());
    this.done.push(done);
  }

  complete(err: Error | null = null): void {
    const d = this.done.shift();
    if (d === undefined) throw new Error('no write in flight');
    d(err);
  }

  async reopen(): Promise<void> {
    this.reopened++;
  }

  async close(): Promise<void> {
    this.closed++;
  }
}

/** A scheduler the test runs by hand (the event-loop turn's end). */
function manualSchedule(): { schedule: (fn: () => void) => void; run(): number } {
  let queue: Array<() => void> = [];
  return {
    schedule: (fn) => queue.push(fn),
    run() {
      const q = queue;
      queue = [];
      for (const fn of q) fn();
      return q.length;
    },
  };
}

t.test('lines go out in one write when scheduled; lines during a write wait for the next one', async (t) => {
  const w = new ManualWriter();
  const turn = manualSchedule();
  const sink = new AccessLogSink(w, { schedule: turn.schedule });
  t.ok(sink.push('a'));
  t.ok(sink.push('b'));
  t.same(w.batches, [], 'nothing written synchronously');
  t.equal(turn.run(), 1, 'one flush scheduled for the turn, not one per line');
  t.same(w.batches, ['a\nb\n']);
  sink.push('c');
  sink.push('d');
  t.equal(turn.run(), 0, 'no flush scheduled while a write is in flight');
  t.equal(sink.backlogBytes, 8, 'in flight plus pending');
  w.complete();
  t.same(w.batches, ['a\nb\n'], 'a small batch waits to grow after the write ends...');
  sink.push('e');
  t.equal(turn.run(), 1, '...for one scheduled flush');
  t.same(w.batches, ['a\nb\n', 'c\nd\ne\n']);
  w.complete();
  t.equal(turn.run(), 0, 'nothing left: nothing scheduled');
  t.equal(sink.written, 5);
  t.equal(sink.backlogBytes, 0);
  // A full batch that waited during a write goes as soon as the write ends.
  const big = new AccessLogSink(w, { schedule: turn.schedule, batchBytes: 4 });
  big.push('x');
  turn.run();
  big.push('yy');
  big.push('zz');
  w.complete();
  t.same(w.batches.slice(-2), ['x\n', 'yy\nzz\n']);
  w.complete();
});

t.test('a batch reaching batchBytes is written without waiting for the turn to end', async (t) => {
  const w = new ManualWriter();
  const turn = manualSchedule();
  const sink = new AccessLogSink(w, { schedule: turn.schedule, batchBytes: 10 });
  sink.push('12345');
  t.same(w.batches, []);
  sink.push('6789');
  t.same(w.batches, ['12345\n6789\n']);
  turn.run();
  t.equal(w.batches.length, 1, 'the scheduled flush finds nothing more');
  w.complete();
});

t.test('a slow destination: lines beyond the backlog limit are dropped and counted', async (t) => {
  const w = new ManualWriter();
  const turn = manualSchedule();
  const errors: Error[] = [];
  const sink = new AccessLogSink(w, {
    schedule: turn.schedule,
    maxBacklogBytes: 20,
    onError: (e) => errors.push(e),
  });
  sink.push('0123456789'); // 11 bytes
  turn.run();
  t.ok(sink.push('abcdefgh'), '11 + 9 = 20: still fits');
  t.notOk(sink.push('x'), 'over the limit: dropped');
  t.equal(sink.droppedBacklog, 1);
  w.complete();
  t.ok(sink.push('y'), 'room again once the write completed');
  t.equal(turn.run(), 1);
  t.same(w.batches, ['0123456789\n', 'abcdefgh\ny\n'], 'the next batch');
  w.complete(new Error('disk full'));
  t.equal(sink.droppedWriteError, 2, 'the lines of the failed write');
  sink.push('z');
  turn.run();
  t.same(w.batches[2], 'z\n', 'the next batch still goes');
  w.complete();
  t.same(
    errors.map((e) => e.message),
    ['disk full'],
  );
  t.equal(sink.dropped, 3);
  t.equal(sink.written, 2);
  turn.run();
  t.equal(w.done.length, 0);
});

t.test('flush waits for every queued line; close writes, closes once, then drops', async (t) => {
  const w = new ManualWriter();
  const turn = manualSchedule();
  const sink = new AccessLogSink(w, { schedule: turn.schedule });
  await sink.flush();
  sink.push('a');
  let flushed = false;
  const f = sink.flush().then(() => {
    flushed = true;
  });
  t.same(w.batches, ['a\n'], 'flush starts the write at once (shutdown)');
  sink.push('b');
  await Promise.resolve();
  t.notOk(flushed);
  w.complete();
  await Promise.resolve();
  t.notOk(flushed, 'b is still in flight');
  w.complete();
  await f;
  t.ok(flushed);
  sink.push('c');
  const closing = sink.close();
  t.same(w.batches, ['a\n', 'b\n', 'c\n'], 'pending lines go before the close');
  w.complete();
  await closing;
  t.equal(w.closed, 1);
  await sink.close();
  t.equal(w.closed, 1, 'closed once');
  t.notOk(sink.push('late'));
  t.equal(sink.droppedBacklog, 1);
  turn.run();
  await sink.reopen();
  t.equal(w.reopened, 1);
});

t.test('a callback writer receives each batch; a throwing one counts as a failed write', async (t) => {
  const got: string[] = [];
  const ok = new AccessLogSink(new CallbackWriter((x) => got.push(x)));
  ok.push('a');
  ok.push('b');
  await new Promise((r) => setImmediate(r));
  t.same(got, ['a\nb\n']);
  await ok.reopen();
  await ok.close();
  const errors: string[] = [];
  const bad = new AccessLogSink(
    new CallbackWriter(() => {
      throw new Error('boom');
    }),
    { onError: (e) => errors.push(e.message) },
  );
  bad.push('x');
  await bad.flush();
  t.equal(bad.droppedWriteError, 1);
  const odd = new AccessLogSink(
    new CallbackWriter(() => {
      throw 'not an error';
    }),
    { onError: (e) => errors.push(e.message) },
  );
  odd.push('y');
  await odd.flush();
  t.same(errors, ['boom', 'not an error']);
});

t.test('file writer: appends to the file, continues partial writes, retries EAGAIN', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-al-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'access.log');
  const fd = openSync(path, 'a');
  const calls: string[] = [];
  let eagain = 1;
  const retries: Array<() => void> = [];
  const real = (await import('node:fs')).write;
  const io: FdIo = {
    write(f, buf, offset, length, cb) {
      if (eagain > 0) {
        eagain--;
        calls.push('EAGAIN');
        cb(Object.assign(new Error('try again'), { code: 'EAGAIN' }), 0);
        return;
      }
      // At most 4 bytes per call: the writer must go on from where the last one stopped.
      const n = Math.min(4, length);
      calls.push(buf.subarray(offset, offset + n).toString());
      real(f, buf, offset, n, null, cb);
    },
    open: () => {},
    close: (_f, cb) => cb(null),
    retryLater: (fn) => retries.push(fn),
  };
  const w = new FdWriter(fd, path, io);
  const sink = new AccessLogSink(w);
  sink.push('héllo');
  sink.push('wörld');
  const flushed = sink.flush();
  t.same(calls, ['EAGAIN']);
  retries.shift()?.();
  await flushed;
  t.equal(readFileSync(path, 'utf8'), 'héllo\nwörld\n');
  t.ok(calls.length > 3, `split into ${calls.length - 1} writes`);
  await sink.close();
});

t.test('file writer: a write error is reported and the next batch still goes', async (t) => {
  let fail = true;
  const written: string[] = [];
  const io: FdIo = {
    write(_f, buf, offset, length, cb) {
      if (fail) {
        fail = false;
        cb(Object.assign(new Error('no space'), { code: 'ENOSPC' }), 0);
        return;
      }
      written.push(buf.subarray(offset, offset + length).toString());
      cb(null, length);
    },
    open: () => {},
    close: (_f, cb) => cb(null),
    retryLater: () => {},
  };
  const errors: string[] = [];
  const sink = new AccessLogSink(new FdWriter(9, null, io), { onError: (e) => errors.push(e.message) });
  sink.push('lost');
  await sink.flush();
  sink.push('kept');
  await sink.flush();
  t.same(written, ['kept\n']);
  t.same(errors, ['no space']);
  t.equal(sink.droppedWriteError, 1);
  await sink.reopen();
  await sink.close();
});

t.test('file writer: reopen (rotation) writes to the new file once the write in flight ended', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-al-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'access.log');
  const fs = await import('node:fs');
  const held: Array<() => void> = [];
  let hold = false;
  const closed: number[] = [];
  const io: FdIo = {
    write(f, buf, offset, length, cb) {
      const go = (): void => fs.write(f, buf, offset, length, null, cb);
      if (hold) held.push(go);
      else go();
    },
    open: (p, cb) => fs.open(p, 'a', cb),
    close: (f, cb) => {
      closed.push(f);
      fs.close(f, cb);
    },
    retryLater: (fn) => fn(),
  };
  const first = openSync(path, 'a');
  const sink = new AccessLogSink(new FdWriter(first, path, io));
  sink.push('one');
  await sink.flush();
  renameSync(path, `${path}.1`);
  hold = true;
  sink.push('two');
  const flushed = sink.flush();
  await new Promise((r) => setImmediate(r));
  await sink.reopen();
  t.same(closed, [], 'the old file stays open while a write to it is in flight');
  hold = false;
  held.shift()?.();
  await flushed;
  t.same(closed, [first], 'then it is closed');
  sink.push('three');
  await sink.flush();
  await sink.reopen();
  await sink.reopen();
  sink.push('four');
  await sink.flush();
  t.equal(
    readFileSync(`${path}.1`, 'utf8'),
    'one\ntwo\n',
    'the rotated file got the lines before the reopen',
  );
  t.equal(readFileSync(path, 'utf8'), 'three\nfour\n', 'the new file gets the rest');
  await sink.close();
  t.equal(closed.length, 4, 'every descriptor closed');
});

t.test('file writer: a reopen that cannot open the file keeps the old one', async (t) => {
  const io: FdIo = {
    write: (_f, _b, _o, length, cb) => cb(null, length),
    open: (_p, cb) => cb(Object.assign(new Error('EACCES'), { code: 'EACCES' }), -1),
    close: (_f, cb) => cb(null),
    retryLater: () => {},
  };
  const sink = new AccessLogSink(new FdWriter(7, '/nope/access.log', io));
  await t.rejects(sink.reopen(), /EACCES/);
  sink.push('still');
  await sink.flush();
  t.equal(sink.written, 1);
  await sink.close();
});

t.test('stdout writer: no reopen, never closes fd 1', async (t) => {
  const closed: number[] = [];
  const io: FdIo = {
    write: (_f, _b, _o, length, cb) => cb(null, length),
    open: () => t.fail('stdout is never reopened'),
    close: (f, cb) => {
      closed.push(f);
      cb(null);
    },
    retryLater: () => {},
  };
  const sink = new AccessLogSink(new FdWriter(1, null, io));
  await sink.reopen();
  sink.push('x');
  await sink.close();
  t.same(closed, []);
});

t.test(
  'file writer on a real non-blocking pipe: EAGAIN while the reader is away, all written after',
  async (t) => {
    // The child reads nothing for 300 ms, then everything: a 64 KiB pipe fills and fs.write says EAGAIN.
    const child = spawn('sh', ['-c', 'sleep 0.3; wc -c'], { stdio: ['pipe', 'pipe', 'ignore'] });
    let counted = '';
    child.stdout.on('data', (d: Buffer) => {
      counted += d.toString();
    });
    const exited = new Promise((r) => child.once('exit', r));
    const fd = (child.stdin as unknown as { _handle: { fd: number } })._handle.fd;
    const sink = new AccessLogSink(new FdWriter(fd, null));
    const line = 'x'.repeat(1023);
    for (let i = 0; i < 256; i++) sink.push(line);
    await sink.flush();
    t.equal(sink.written, 256, '256 KiB written through a 64 KiB pipe');
    child.stdin.end();
    await exited;
    t.equal(Number(counted.trim()), 256 * 1024);
  },
);

t.test(
  'file writer: two reopens during one write keep only the newest file; close closes both',
  async (t) => {
    const held: Array<() => void> = [];
    const opened: number[] = [];
    const closed: number[] = [];
    const writes: number[] = [];
    let next = 10;
    const io: FdIo = {
      write(f, _b, _o, length, cb) {
        writes.push(f);
        held.push(() => cb(null, length));
      },
      open: (_p, cb) => {
        opened.push(next);
        cb(null, next++);
      },
      close: (f, cb) => {
        closed.push(f);
        cb(null);
      },
      retryLater: () => {},
    };
    const sink = new AccessLogSink(new FdWriter(3, '/x/access.log', io));
    sink.push('a');
    const flushed = sink.flush();
    await sink.reopen();
    await sink.reopen();
    t.same(closed, [10], 'the first new file is closed when a newer one replaces it');
    held.shift()?.();
    await flushed;
    t.same(closed, [10, 3], 'the old file closed once its write ended');
    sink.push('b');
    const second = sink.flush();
    await sink.reopen();
    held.shift()?.();
    await second;
    t.same(writes, [3, 11], 'the second write went to the newest file');
    sink.push('c');
    const third = sink.flush();
    await sink.reopen();
    const closing = sink.close();
    held.shift()?.();
    await third;
    await closing;
    t.same(closed, [10, 3, 11, 12, 13], 'the close waits for the write, swaps, then closes the newest');
    // Straight on the writer: a reopen that completed during a write still holds two descriptors.
    const w = new FdWriter(20, '/x/access.log', io);
    w.write(Buffer.from('d\n'), () => {});
    await w.reopen();
    await w.close();
    t.same(closed.slice(5), [20, 14], 'both closed');
  },
);

t.test('slabs: lines that outgrow one during a write, a line larger than a slab, UTF-8', async (t) => {
  const w = new ManualWriter();
  const turn = manualSchedule();
  // batchBytes 8 KiB: slabs of 16 KiB.
  const sink = new AccessLogSink(w, { schedule: turn.schedule, batchBytes: 8 * 1024 });
  sink.push('first');
  turn.run();
  t.same(w.batches, ['first\n']);
  const lines = Array.from({ length: 40 }, (_, i) => `${i}:${'x'.repeat(995)}`);
  for (const l of lines) sink.push(l);
  t.equal(
    sink.backlogBytes,
    6 + lines.reduce((n, l) => n + l.length + 1, 0),
    'exact bytes, in flight and pending',
  );
  w.complete();
  t.equal(w.batches.length, 2, 'a full batch waited: it goes when the write ends');
  t.equal(w.batches[1], `${lines.join('\n')}\n`, 'every line, in order, across three slabs');
  w.complete();
  const big = 'y'.repeat(20_000);
  sink.push(big);
  t.equal(w.batches[2], `${big}\n`, 'a line larger than a slab gets one of its own');
  w.complete();
  const utf = ['é', '日本語', 'emoji 😀', 'lone \ud800'];
  for (const l of utf) sink.push(l);
  turn.run();
  t.equal(w.batches[3], 'é\n日本語\nemoji 😀\nlone \ufffd\n', 'UTF-8 (a lone surrogate becomes U+FFFD)');
  w.complete();
  for (let round = 0; round < 3; round++) {
    sink.push(`round ${round}`);
    turn.run();
    w.complete();
  }
  t.same(w.batches.slice(4), ['round 0\n', 'round 1\n', 'round 2\n'], 'reused slabs carry no old bytes');
  t.equal(sink.written, 1 + 40 + 1 + 4 + 3);
});
