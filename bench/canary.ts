/**
 * `npm run canary [-- --quick] [-- --requests N --concurrency C --engine E]`: the canary walkthrough.
 *
 * Starts two loopback backends (reviews v1 and v2), meshlet (`dist/src/cli.js run`) with a
 * configuration file in a temp dir, and steady keep-alive load from in-process clients. Under that
 * load it rewrites the file (write + rename, as editors and ConfigMaps do) through the canary plan,
 * v2 at 1 %, 10 %, 50 %, 100 %; meshlet hot-reloads it. Each step waits until `/config_dump` on the
 * admin port shows the new version, then counts only requests sent after that, and prints the
 * observed split and the failed requests of the step (requests sent while the reload was pending
 * count as failures of the step too, never in the split). Exit 1 when a request failed or a split
 * is off target by more than 1 percentage point (`--quick`: by more than 5 binomial sigmas, as
 * its small windows cannot resolve 1 pp).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseReadyLine } from './ready-line.ts';

const STEPS = [1, 10, 50, 100] as const;
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = join(ROOT, 'dist/src/cli.js');

interface Options {
  readonly requests: number;
  readonly concurrency: number;
  readonly engine: string;
  readonly quick: boolean;
}

function parseArgs(argv: readonly string[]): Options | string {
  let requests: number | undefined;
  let concurrency = 16;
  let engine = 'h1';
  let quick = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--quick') quick = true;
    else if (a === '--requests' && v !== undefined) {
      requests = Number(v);
      i++;
    } else if (a === '--concurrency' && v !== undefined) {
      concurrency = Number(v);
      i++;
    } else if (a === '--engine' && v !== undefined) {
      engine = v;
      i++;
    } else return `unknown argument ${a}`;
  }
  requests ??= quick ? 1500 : 40_000;
  if (!Number.isInteger(requests) || requests < 100) return '--requests must be an integer >= 100';
  if (!Number.isInteger(concurrency) || concurrency < 1) return '--concurrency must be an integer >= 1';
  return { requests, concurrency, engine, quick };
}

function meshYaml(v1Port: number, v2Port: number, v2Weight: number): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews }
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  endpoints:
    - { address: 127.0.0.1, ports: { http: ${v1Port} }, labels: { app: reviews, version: v1 } }
    - { address: 127.0.0.1, ports: { http: ${v2Port} }, labels: { app: reviews, version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews }
spec:
  host: reviews
  subsets:
    - { name: v1, labels: { version: v1 } }
    - { name: v2, labels: { version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews }
spec:
  hosts: [reviews]
  http:
    - name: canary
      route:
        - { destination: { host: reviews, subset: v1 }, weight: ${100 - v2Weight} }
        - { destination: { host: reviews, subset: v2 }, weight: ${v2Weight} }
`;
}

async function startBackend(version: string): Promise<Server> {
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'x-reviews-version': version });
    res.end(`reviews ${version}\n`);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()));
  return server;
}

function portOf(server: Server): number {
  return (server.address() as AddressInfo).port;
}

async function startMeshlet(
  configPath: string,
  engine: string,
): Promise<{ proc: ChildProcess; outbound: number; admin: number }> {
  const proc = spawn(
    process.execPath,
    [
      CLI,
      'run',
      '--config',
      configPath,
      '--outbound-port',
      '0',
      '--inbound-port',
      '0',
      '--admin-port',
      '0',
      '--engine',
      engine,
      '--log-level',
      'info',
      // The walkthrough counts every response itself; an access log would only be discarded below.
      '--no-access-log',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return new Promise((ok, fail) => {
    let buf = '';
    const lines: string[] = [];
    const timer = setTimeout(
      () => fail(new Error(`meshlet not ready after 15 s:\n${lines.join('\n')}`)),
      15_000,
    );
    proc.once('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`meshlet exited with ${code}:\n${lines.join('\n')}`));
    });
    proc.stderr?.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lines.push(line);
        const ready = parseReadyLine(line);
        const out = ready?.listeners.find((l) => l.name === 'outbound');
        if (ready !== null && out !== undefined) {
          clearTimeout(timer);
          ok({ proc, outbound: out.port, admin: ready.admin });
        }
        nl = buf.indexOf('\n');
      }
    });
  });
}

async function configVersion(adminPort: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/config_dump`);
  const body = (await res.json()) as { version: number };
  return body.version;
}

/** Stats of one step: the split window, and failures of everything sent during the step. */
interface StepStats {
  v1: number;
  v2: number;
  failed: number;
  firstFailure?: string;
}

async function main(): Promise<number> {
  const opts = parseArgs(process.argv.slice(2));
  if (typeof opts === 'string') {
    process.stderr.write(
      `canary: ${opts}\nusage: node dist/bench/canary.js [--quick] [--requests N per step] [--concurrency C] [--engine h1|node|uws]\n`,
    );
    return 2;
  }
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-canary-'));
  const configPath = join(dir, 'mesh.yaml');
  const v1 = await startBackend('v1');
  const v2 = await startBackend('v2');
  const write = (weight: number): void => {
    const tmp = join(dir, '.mesh.yaml.tmp');
    writeFileSync(tmp, meshYaml(portOf(v1), portOf(v2), weight));
    renameSync(tmp, configPath);
  };
  write(0);
  const mesh = await startMeshlet(configPath, opts.engine).catch((e: unknown) => {
    v1.close();
    v2.close();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  });
  const agent = new Agent({ keepAlive: true, maxSockets: opts.concurrency });
  process.stdout.write(
    `canary walkthrough: meshlet (${opts.engine}) on 127.0.0.1:${mesh.outbound}, admin ${mesh.admin}; ` +
      `${opts.concurrency} keep-alive clients, ${opts.requests} counted requests per step\n`,
  );

  // The state the load clients read when they send: which step they belong to, and whether the
  // step's configuration is known to be applied (only then does the request count in the split).
  let step = -1;
  let counting = false;
  let sentInWindow = 0;
  const stats: StepStats[] = STEPS.map(() => ({ v1: 0, v2: 0, failed: 0 }));
  let preFailed = 0;
  let stop = false;
  let windowDone: (() => void) | undefined;
  let inWindowDone = 0;

  const one = (): Promise<void> =>
    new Promise((ok) => {
      const s = step;
      const counted = counting && sentInWindow < opts.requests;
      if (counted) sentInWindow++;
      const fail = (why: string): void => {
        if (s < 0) preFailed++;
        else {
          const st = stats[s] as StepStats;
          st.failed++;
          st.firstFailure ??= why;
        }
      };
      const finish = (): void => {
        if (counted) {
          inWindowDone++;
          if (inWindowDone === opts.requests) windowDone?.();
        }
        ok();
      };
      const req = request(
        {
          host: '127.0.0.1',
          port: mesh.outbound,
          path: '/reviews/1',
          headers: { host: 'reviews:9080' },
          agent,
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            const version = res.headers['x-reviews-version'];
            if (res.statusCode !== 200)
              fail(`status ${res.statusCode} ${String(res.headers['x-meshlet-flags'] ?? '')}`);
            else if (counted && s >= 0) {
              const st = stats[s] as StepStats;
              if (version === 'v1') st.v1++;
              else if (version === 'v2') st.v2++;
              else fail(`no x-reviews-version`);
            }
            finish();
          });
          res.on('error', (e) => {
            fail(e.message);
            finish();
          });
        },
      );
      req.setTimeout(10_000, () => req.destroy(new Error('request timeout (10 s)')));
      req.on('error', (e) => {
        fail(e.message);
        finish();
      });
      req.end();
    });

  const clients = Array.from({ length: opts.concurrency }, async () => {
    while (!stop) await one();
  });

  let bad = 0;
  try {
    await new Promise((r) => setTimeout(r, 300)); // load runs on v2 at 0 % first
    for (let i = 0; i < STEPS.length; i++) {
      const target = STEPS[i] as number;
      const before = await configVersion(mesh.admin);
      const t0 = performance.now();
      counting = false;
      step = i;
      write(target);
      for (;;) {
        if ((await configVersion(mesh.admin)) > before) break;
        if (performance.now() - t0 > 10_000)
          throw new Error(`step ${target} %: the reload was not applied within 10 s`);
        await new Promise((r) => setTimeout(r, 10));
      }
      const applied = performance.now() - t0;
      const done = new Promise<void>((r) => {
        windowDone = r;
      });
      sentInWindow = 0;
      inWindowDone = 0;
      const w0 = performance.now();
      counting = true;
      await done;
      const windowMs = performance.now() - w0;
      const st = stats[i] as StepStats;
      const n = st.v1 + st.v2;
      const observed = n === 0 ? 0 : (100 * st.v2) / n;
      const sigma = 100 * Math.sqrt(((target / 100) * (1 - target / 100)) / Math.max(n, 1));
      const tolerance = opts.quick ? Math.max(1, 5 * sigma) : 1;
      const ok = Math.abs(observed - target) <= tolerance && st.failed === 0 && n === opts.requests;
      if (!ok) bad++;
      process.stdout.write(
        `step ${i + 1}/4: v2 target ${String(target).padStart(3)} %  observed ${observed.toFixed(2).padStart(6)} %  ` +
          `(v1 ${st.v1}, v2 ${st.v2} of ${n})  failed ${st.failed}  ` +
          `reload applied in ${applied.toFixed(0)} ms, window ${(windowMs / 1000).toFixed(1)} s ` +
          `(${((n / windowMs) * 1000).toFixed(0)} req/s)  ${ok ? 'ok' : `NOT OK (tolerance ${tolerance.toFixed(2)} pp)`}` +
          `${st.firstFailure === undefined ? '' : `  first failure: ${st.firstFailure}`}\n`,
      );
    }
  } finally {
    stop = true;
    await Promise.all(clients);
    agent.destroy();
    mesh.proc.kill('SIGTERM');
    await new Promise((r) => mesh.proc.once('exit', r));
    v1.close();
    v2.close();
    v1.closeAllConnections();
    v2.closeAllConnections();
    rmSync(dir, { recursive: true, force: true });
  }
  const failed = preFailed + stats.reduce((a, s) => a + s.failed, 0);
  process.stdout.write(
    `failed requests: ${failed}\n${bad === 0 && failed === 0 ? 'canary walkthrough: ok' : 'canary walkthrough: FAILED'}\n`,
  );
  return bad === 0 && failed === 0 ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`canary: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  },
);
