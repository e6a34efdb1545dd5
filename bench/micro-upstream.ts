/**
 * Micro-benchmark of the upstream clients alone: undici `dispatch` (src/upstream/undici-upstream.ts)
 * against the lean HTTP/1.1 client (src/upstream/h1-client.ts), same requests, same handler.
 *
 * The backend is a raw `net` server in a child process answering every request head with a fixed
 * nginx-like response (64-byte body). With `taskset` available the backend runs on CPU 0 and this
 * process on CPU 1 (the design's "Performance budget" split). Rounds alternate between the clients;
 * each round runs `--sequential` requests one after another, then `--requests` with `--inflight` (50)
 * in flight. Printed per client and phase: median req/s and median CPU µs per request of this process
 * (`process.cpuUsage`, user + system), which preemption disturbs less than req/s.
 *
 *   npx tsc -p . && node dist/bench/micro-upstream.js [--rounds 7] [--requests 50000] [--sequential 10000]
 *
 * or without a build, through tap's TypeScript loader:
 *
 *   node --import=./node_modules/@tapjs/typescript/dist/esm/import.mjs bench/micro-upstream.ts
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import type { HeaderList } from '../src/listener/listener-types.ts';
import { createH1Upstream } from '../src/upstream/h1-client.ts';
import { createUndiciUpstream } from '../src/upstream/undici-upstream.ts';
import type {
  UpstreamClient,
  UpstreamFailure,
  UpstreamHandler,
  UpstreamRequest,
  UpstreamTarget,
} from '../src/upstream/upstream-types.ts';
import { BODY } from './configs.ts';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '7' },
    requests: { type: 'string', default: '50000' },
    sequential: { type: 'string', default: '10000' },
    inflight: { type: 'string', default: '50' },
  },
});
const ROUNDS = Number(values.rounds);
const REQUESTS = Number(values.requests);
const SEQUENTIAL = Number(values.sequential);
const INFLIGHT = Number(values.inflight);

/** The backend: counts request heads (GET, no body) and answers each with the same bytes. */
const BACKEND = `
const net = require('node:net');
const body = ${JSON.stringify(BODY)};
const response = Buffer.from('HTTP/1.1 200 OK\\r\\nServer: nginx/1.22.1\\r\\nDate: Sat, 29 Nov 2025 16:00:00 GMT\\r\\n' +
  'Content-Type: text/plain\\r\\nContent-Length: ' + body.length + '\\r\\nConnection: keep-alive\\r\\n\\r\\n' + body, 'latin1');
const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  let tail = '';
  socket.on('data', (b) => {
    const text = tail + b.toString('latin1');
    let n = 0, at = 0;
    for (;;) { const i = text.indexOf('\\r\\n\\r\\n', at); if (i === -1) break; n++; at = i + 4; }
    tail = text.slice(at);
    if (n === 1) socket.write(response);
    else if (n > 1) socket.write(Buffer.concat(Array(n).fill(response)));
  });
  socket.on('error', () => {});
});
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
`;

function hasTaskset(): boolean {
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function startBackend(pin: boolean): Promise<{ child: ChildProcess; port: number }> {
  const args = ['-e', BACKEND];
  const child = pin
    ? spawn('taskset', ['-c', '0', process.execPath, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
    : spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const [chunk] = (await once(child.stdout!, 'data')) as [Buffer];
  return { child, port: Number(chunk.toString().trim()) };
}

/** What the proxy sends upstream for a typical request (after prepareUpstreamHeaders). */
function requestFor(i: number): UpstreamRequest {
  const headers: HeaderList = [
    'host',
    'bench-backend',
    'user-agent',
    'wrk',
    'accept',
    '*/*',
    'x-forwarded-for',
    '127.0.0.1',
    'x-forwarded-proto',
    'http',
    'x-request-id',
    `bench-${i}`,
  ];
  return { method: 'GET', path: '/', headers, body: null, expectContinue: false };
}

/** One handler object per request, like the pipeline's. */
class Exchange implements UpstreamHandler {
  bytes = 0;
  private readonly done: (ok: boolean) => void;
  constructor(done: (ok: boolean) => void) {
    this.done = done;
  }
  onHeaders(status: number, _headers: HeaderList): void {
    if (status !== 200) this.done(false);
  }
  onData(chunk: Buffer): boolean {
    this.bytes += chunk.length;
    return true;
  }
  onEnd(): void {
    this.done(this.bytes === 64);
  }
  onError(failure: UpstreamFailure, _afterHeaders: boolean, detail: string): void {
    process.stderr.write(`request failed: ${failure} ${detail}\n`);
    this.done(false);
  }
}

interface Sample {
  readonly reqPerSec: number;
  readonly cpuUsPerReq: number;
}

function measure(
  total: number,
  inflight: number,
  client: UpstreamClient,
  target: UpstreamTarget,
): Promise<Sample> {
  return new Promise((resolve, reject) => {
    let started = 0;
    let finished = 0;
    let failed = 0;
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const onDone = (ok: boolean): void => {
      if (!ok) failed++;
      finished++;
      if (finished === total) {
        const ns = Number(process.hrtime.bigint() - t0);
        const cpu = process.cpuUsage(cpu0);
        if (failed > 0) reject(new Error(`${failed} requests failed`));
        else resolve({ reqPerSec: total / (ns / 1e9), cpuUsPerReq: (cpu.user + cpu.system) / total });
        return;
      }
      if (started < total) start();
    };
    const start = (): void => {
      const i = started++;
      client.send(target, requestFor(i), new Exchange(onDone));
    };
    for (let i = 0; i < inflight && started < total; i++) start();
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function main(): Promise<void> {
  const pin = hasTaskset();
  if (pin) execFileSync('taskset', ['-cp', '1', String(process.pid)], { stdio: 'ignore' });
  const backend = await startBackend(pin);
  const target: UpstreamTarget = { address: '127.0.0.1', port: backend.port };
  const undici = createUndiciUpstream();
  const h1 = createH1Upstream({ fallback: createUndiciUpstream() });
  const clients: Array<[string, UpstreamClient]> = [
    ['undici', undici],
    ['h1', h1],
  ];
  const results = new Map<string, Sample[]>();
  const record = (key: string, s: Sample): void => {
    const list = results.get(key) ?? [];
    list.push(s);
    results.set(key, list);
  };

  process.stdout.write(
    `micro-upstream: ${ROUNDS} rounds, ${SEQUENTIAL} sequential + ${REQUESTS} with ${INFLIGHT} in flight, ` +
      `64-byte responses, ${pin ? 'backend on CPU 0, clients on CPU 1' : 'no taskset: unpinned'}, node ${process.version}\n`,
  );
  // Warm-up (JIT, connections), not recorded.
  for (const [, c] of clients) {
    await measure(Math.min(5000, SEQUENTIAL), 1, c, target);
    await measure(Math.min(20000, REQUESTS), INFLIGHT, c, target);
  }
  for (let r = 0; r < ROUNDS; r++) {
    // Alternate which client goes first.
    const order = r % 2 === 0 ? clients : [...clients].reverse();
    for (const [name, c] of order) {
      record(`${name} sequential`, await measure(SEQUENTIAL, 1, c, target));
      record(`${name} ${INFLIGHT} in flight`, await measure(REQUESTS, INFLIGHT, c, target));
    }
  }

  const rows: string[] = [];
  for (const [key, samples] of results) {
    const rps = median(samples.map((s) => s.reqPerSec));
    const cpu = median(samples.map((s) => s.cpuUsPerReq));
    rows.push(
      `${key.padEnd(24)} ${Math.round(rps).toString().padStart(8)} req/s  ${cpu.toFixed(2).padStart(7)} µs CPU/req`,
    );
  }
  process.stdout.write(`${rows.join('\n')}\n`);
  for (const phase of ['sequential', `${INFLIGHT} in flight`]) {
    const u = results.get(`undici ${phase}`)!;
    const h = results.get(`h1 ${phase}`)!;
    const ratio = median(h.map((s) => s.reqPerSec)) / median(u.map((s) => s.reqPerSec));
    const cpuRatio = median(h.map((s) => s.cpuUsPerReq)) / median(u.map((s) => s.cpuUsPerReq));
    process.stdout.write(
      `h1 / undici, ${phase}: ${ratio.toFixed(2)}× req/s, ${cpuRatio.toFixed(2)}× CPU per request\n`,
    );
  }

  await Promise.all([undici.close(), h1.close()]);
  backend.child.kill();
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
