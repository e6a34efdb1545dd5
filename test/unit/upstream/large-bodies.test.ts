/**
 * Backpressure both ways with 64 MiB bodies: memory must stay far below the body size.
 *
 * The proof is the peak of live Buffer memory after a forced GC (`arrayBuffers`), plus how far the
 * producer got while the other side was stalled. rss is only reported: streaming 64 MiB through a
 * socket moves rss by 0–58 MiB from run to run here, even with a consumer that never pauses (freed
 * read buffers stay with the allocator), so rss cannot tell buffering from churn.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import t from 'tap';
import { createUndiciUpstream } from '../../../src/upstream/undici-upstream.ts';
import type { UpstreamCall } from '../../../src/upstream/upstream-types.ts';
import { GeneratedBody, httpServer, MiB, pumpingServer } from './upstream-harness.ts';

const SIZE = 64 * MiB;
const CHUNK = 64 * 1024;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/**
 * Every 100 ms: a full GC, then rss and `arrayBuffers` (where Buffer bytes live). Garbage would hide
 * what matters, so after a GC `arrayBuffers` is the data actually held. `stop()` returns the peak
 * growth of each over the start.
 */
function memoryWatch(): { stop: () => { rss: number; live: number } } {
  gc();
  const start = process.memoryUsage();
  let rss = start.rss;
  let live = start.arrayBuffers;
  const sample = (): void => {
    // Two collections: V8 frees ArrayBuffer memory with a concurrent sweeper that the next GC joins.
    gc();
    gc();
    const m = process.memoryUsage();
    rss = Math.max(rss, m.rss);
    live = Math.max(live, m.arrayBuffers);
  };
  const timer = setInterval(sample, 100);
  return {
    stop: () => {
      clearInterval(timer);
      sample();
      return { rss: rss - start.rss, live: live - start.arrayBuffers };
    },
  };
}

t.test('64 MiB request body to a slow reader: the BodyStream is paused, memory stays bounded', async (t) => {
  let readerStartedAt = 0;
  const { target } = await httpServer(t, (req, res) => {
    req.pause();
    let received = 0;
    setTimeout(() => {
      readerStartedAt = received;
      // Slow reader: short stalls while reading.
      req.on('data', (c: Buffer) => {
        received += c.length;
        if (received % (8 * MiB) < c.length) {
          req.pause();
          setTimeout(() => req.resume(), 20);
        }
      });
      req.resume();
    }, 300);
    req.on('end', () => res.end(String(received)));
  });
  const c = createUndiciUpstream();
  t.teardown(() => c.close());
  const body = new GeneratedBody(SIZE, CHUNK, 0x62);
  const watch = memoryWatch();
  let producedWhileStalled = 0;
  setTimeout(() => {
    producedWhileStalled = body.produced;
  }, 250);
  const answer = await new Promise<string>((resolve, reject) => {
    let text = '';
    c.send(
      target,
      {
        method: 'POST',
        path: '/upload',
        headers: ['host', 'svc', 'content-length', String(SIZE)],
        body,
        expectContinue: false,
      },
      {
        onHeaders() {},
        onData(chunk) {
          text += chunk.toString();
          return true;
        },
        onEnd: () => resolve(text),
        onError: (f, _a, d) => reject(new Error(`${f}: ${d}`)),
      },
    );
  });
  const growth = watch.stop();
  t.equal(answer, String(SIZE), 'every byte arrived');
  t.equal(readerStartedAt, 0);
  t.ok(body.pauses > 0, `BodyStream.pause called (${body.pauses}×)`);
  t.ok(body.resumes > 0, `BodyStream.resume called (${body.resumes}×)`);
  t.ok(
    producedWhileStalled < 16 * MiB,
    `while the upstream did not read, ${producedWhileStalled} bytes were produced`,
  );
  t.ok(growth.live < 16 * MiB, `live buffers peaked ${(growth.live / MiB).toFixed(1)} MiB over the start`);
  t.comment(`rss grew ${(growth.rss / MiB).toFixed(1)} MiB (reported, not asserted: see the top)`);
});

t.test(
  '64 MiB response to a consumer returning false: the upstream is paused, memory stays bounded',
  async (t) => {
    const { target, written } = await pumpingServer(t, SIZE);
    const c = createUndiciUpstream();
    t.teardown(() => c.close());
    const watch = memoryWatch();
    let received = 0;
    let pausedCount = 0;
    let writtenAtPause = -1;
    let writtenAfterStall = -1;
    await new Promise<void>((resolve, reject) => {
      let call: UpstreamCall | null = null;
      call = c.send(
        target,
        { method: 'GET', path: '/download', headers: ['host', 'svc'], body: null, expectContinue: false },
        {
          onHeaders() {},
          onData(chunk) {
            received += chunk.length;
            // Pause every 8 MiB; the first stall is long enough to see the server blocked.
            if (received % (8 * MiB) < chunk.length) {
              pausedCount++;
              const stall = pausedCount === 1 ? 300 : 10;
              if (pausedCount === 1) {
                setTimeout(() => {
                  writtenAtPause = written();
                }, 100);
              }
              setTimeout(() => {
                if (pausedCount === 1) writtenAfterStall = written();
                call?.resume();
              }, stall);
              return false;
            }
            return true;
          },
          onEnd: () => resolve(),
          onError: (f, _a, d) => reject(new Error(`${f}: ${d}`)),
        },
      );
    });
    const growth = watch.stop();
    t.equal(received, SIZE, 'every byte arrived');
    t.ok(pausedCount >= 8, `consumer paused ${pausedCount}×`);
    t.equal(writtenAfterStall, writtenAtPause, 'the server was blocked while the consumer was paused');
    t.ok(
      writtenAtPause < 32 * MiB,
      `server had written ${(writtenAtPause / MiB).toFixed(1)} MiB at the stall`,
    );
    t.ok(growth.live < 16 * MiB, `live buffers peaked ${(growth.live / MiB).toFixed(1)} MiB over the start`);
    t.comment(`rss grew ${(growth.rss / MiB).toFixed(1)} MiB (reported, not asserted: see the top)`);
  },
);
