import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import t from 'tap';
import { startEchoBackend } from '../helpers/backends.ts';
import { serviceEntryYaml } from '../helpers/mesh-yaml.ts';
import { spawnMeshlet } from '../helpers/spawn-meshlet.ts';

/**
 * Bodies stream through the real process with backpressure: a 1 GiB upload and a 1 GiB download
 * pass while meshlet's resident memory stays flat, and a client that stops reading makes meshlet
 * stop reading from the upstream instead of buffering.
 */

const GiB = 1024 * 1024 * 1024;
const CHUNK = Buffer.alloc(1024 * 1024, 120);
const RSS_BUDGET = 160 * 1024 * 1024;

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? 0 : Number(m[1]) * 1024;
}

/** Samples a process's RSS every 50 ms until stopped; returns the peak. */
function sampleRss(pid: number): { stop(): number } {
  let peak = rssOf(pid);
  const timer = setInterval(() => {
    peak = Math.max(peak, rssOf(pid));
  }, 50);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, rssOf(pid));
    },
  };
}

const yaml = (port: number): string => serviceEntryYaml('blob', [{ port }]);

/** Writes `total` bytes honoring backpressure. */
function pump(out: NodeJS.WritableStream, total: number, done: () => void): void {
  let sent = 0;
  const go = (): void => {
    while (sent < total) {
      sent += CHUNK.length;
      if (!out.write(CHUNK)) {
        out.once('drain', go);
        return;
      }
    }
    done();
  };
  go();
}

for (const engine of ['h1', 'uws', 'node'] as const) {
  t.test(`1 GiB bodies through the ${engine} engine with flat memory`, async (t) => {
    const backend = await startEchoBackend('blob', (req, res) => {
      if (req.url === '/download') {
        const total = Number(req.headers['x-size']);
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
        pump(res, total, () => res.end());
        return true;
      }
      return false; // uploads: the echo handler counts the body
    });
    const mesh = await spawnMeshlet(yaml(backend.port), { engine });
    t.teardown(async () => {
      await mesh.stop();
      await backend.close();
    });
    const pid = mesh.proc.pid!;
    const baseline = rssOf(pid);

    t.test('upload', async (t) => {
      const rss = sampleRss(pid);
      const result = await new Promise<{ status: number; body: string }>((ok, fail) => {
        const req = httpRequest(
          {
            host: '127.0.0.1',
            port: mesh.outboundPort,
            method: 'POST',
            path: '/upload',
            headers: { host: 'blob' },
          },
          (res) => {
            let body = '';
            res.on('data', (d: Buffer) => {
              body += d.toString();
            });
            res.on('end', () => ok({ status: res.statusCode ?? 0, body }));
          },
        );
        req.on('error', fail);
        pump(req, GiB, () => req.end());
      });
      const peak = rss.stop();
      t.equal(result.status, 200);
      t.equal(
        (JSON.parse(result.body) as { bodyLength: number }).bodyLength,
        GiB,
        'every byte arrived upstream',
      );
      t.ok(
        peak - baseline < RSS_BUDGET,
        `RSS grew ${((peak - baseline) / 1048576).toFixed(0)} MiB (budget 160 MiB)`,
      );
    });

    t.test('download', async (t) => {
      const rss = sampleRss(pid);
      const received = await new Promise<number>((ok, fail) => {
        const req = httpRequest(
          {
            host: '127.0.0.1',
            port: mesh.outboundPort,
            path: '/download',
            headers: { host: 'blob', 'x-size': String(GiB) },
          },
          (res) => {
            let n = 0;
            res.on('data', (d: Buffer) => {
              n += d.length;
            });
            res.on('end', () => ok(n));
          },
        );
        req.on('error', fail);
        req.end();
      });
      const peak = rss.stop();
      t.equal(received, GiB, 'every byte arrived downstream');
      t.ok(
        peak - baseline < RSS_BUDGET,
        `RSS grew ${((peak - baseline) / 1048576).toFixed(0)} MiB (budget 160 MiB)`,
      );
    });

    t.test('a client that stops reading does not make meshlet buffer the response', async (t) => {
      const size = 512 * 1024 * 1024;
      const rss = sampleRss(pid);
      const received = await new Promise<number>((ok, fail) => {
        const req = httpRequest(
          {
            host: '127.0.0.1',
            port: mesh.outboundPort,
            path: '/download',
            headers: { host: 'blob', 'x-size': String(size) },
          },
          (res: IncomingMessage) => {
            let n = 0;
            res.pause();
            // Read nothing for 1.5 s while the upstream could send 512 MiB.
            setTimeout(() => {
              res.on('data', (d: Buffer) => {
                n += d.length;
              });
              res.on('end', () => ok(n));
              res.resume();
            }, 1500);
          },
        );
        req.on('error', fail);
        req.end();
      });
      const peak = rss.stop();
      t.equal(received, size);
      t.ok(
        peak - baseline < RSS_BUDGET,
        `RSS grew ${((peak - baseline) / 1048576).toFixed(0)} MiB while the client was stalled`,
      );
    });
  });
}
