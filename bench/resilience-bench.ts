/**
 * `npm run bench:resilience`: what the resilience features do under load, and what they cost.
 *
 *   a. One of three endpoints answers 50 ms late: the share of requests it receives under the default
 *      balancer (P2C + peak EWMA) and under `simple: ROUND_ROBIN` (goal: < 10 % vs ~33 %).
 *   b. One of three endpoints is killed under steady load: the client error rate with the default
 *      retry policy (goal: < 0.1 %) and with `retries: {attempts: 0}` for contrast.
 *   c. Overhead: req/s and proxy CPU per request of a plain route (no retries, round robin) against
 *      a route with retries (attempts 2 on 5xx,connect-failure), outlier detection and the default
 *      EWMA balancer, same three backends, same meshlet process (goal: cost < 5 %).
 *
 * Each figure is a median over alternating rounds (the order of the compared modes flips every
 * round), so a burst of noise on this shared 2-core machine spreads over both. Like `npm run bench`,
 * wrk and the backends run on the first allowed CPU and meshlet alone on the second (taskset).
 * The backends of (a) and (b) are node:http servers inside this process, so that their request
 * counts are plain numbers and (b) can kill one at a chosen moment (listener closed and every
 * connection destroyed, which is what a crashed process looks like from the proxy); (c) uses three
 * of the nginx backend of `npm run bench` (node:http when nginx is missing).
 *
 *   npm run bench:resilience -- [--rounds 3] [--duration 3] [--connections 50] [--engine h1]
 *                               [--kill-duration 8] [--kill-at 3] [--slow-ms 50] [--only a,b,c]
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { BODY, staticServiceEntry } from './configs.ts';
import { sample, usage } from './cpu.ts';
import { parseSideBenchOptions, type SideBenchOptions } from './options.ts';
import { capture, httpGet, Processes, type Started, waitUntil } from './procs.ts';
import { findExecutable, launchMeshlet, type Pinning, startBackend } from './proxies.ts';
import { formatRps, median } from './report.ts';
import { cleanUpOnExit, detectPinning, optionsOrUsage, printSections, runMain } from './side-bench.ts';
import { TELEMETRY_OFF } from './telemetry.ts';
import { runWrk, type WrkResult, wrkCommandLine } from './wrk.ts';

const USAGE = `usage: npm run bench:resilience -- [options]
  --rounds <n>          alternating rounds per comparison (default 3)
  --duration <s>        wrk run length for (a) and (c) (default 3)
  --connections <n>     keep-alive connections (default 50)
  --engine <e>          meshlet listener engine: h1, uws, node (default h1)
  --kill-duration <s>   wrk run length for (b) (default 8)
  --kill-at <s>         when (b) kills an endpoint, from the start of the run (default 3)
  --slow-ms <ms>        extra latency of the slow endpoint in (a) (default 50)
  --only <list>         which measurements, comma-separated from a,b,c (default a,b,c)
  --markdown <file>     also write the tables as Markdown
  --meshlet-cli <path>  the meshlet entry point (default dist/src/cli.js)
`;

type Options = SideBenchOptions<'h1' | 'uws' | 'node', 'killDurationSec' | 'killAtSec' | 'slowMs'>;

function parseOptions(argv: string[]): Options | string {
  return parseSideBenchOptions(argv, {
    duration: '3',
    engines: ['h1', 'uws', 'node'],
    badEngine: (engine) => `unknown engine ${engine}`,
    measurements: ['a', 'b', 'c'],
    ints: {
      killDurationSec: { flag: 'kill-duration', default: '8', min: 2 },
      killAtSec: { flag: 'kill-at', default: '3', min: 1 },
      slowMs: { flag: 'slow-ms', default: '50', min: 1 },
    },
    check: (n) =>
      n.killAtSec >= n.killDurationSec ? '--kill-at must be less than --kill-duration' : undefined,
  });
}

const out = (line = ''): void => {
  process.stdout.write(`${line}\n`);
};

// ---- backends inside this process ----

interface CountingBackend {
  readonly port: number;
  /** Requests received so far. */
  readonly count: () => number;
  /** Close the listener and destroy every connection, in-flight requests included. */
  kill(): void;
}

async function countingBackend(delayMs: number): Promise<CountingBackend> {
  let count = 0;
  const body = Buffer.from(BODY);
  const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    count++;
    req.resume();
    const send = (): void => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
      res.end(body);
    };
    if (delayMs > 0) setTimeout(send, delayMs);
    else send();
  });
  server.maxRequestsPerSocket = 0;
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()));
  return {
    port: (server.address() as AddressInfo).port,
    count: () => count,
    kill: () => {
      server.close();
      server.closeAllConnections();
    },
  };
}

// ---- meshlet ----

function serviceEntry(name: string, ports: readonly number[]): string {
  const endpoints = ports.map((port) => ({ port }));
  return `${staticServiceEntry(name, endpoints)}---\n`;
}

function routeWithRetries(name: string, retries: string): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ${name} }
spec:
  hosts: [${name}]
  http:
    - route: [{ destination: { host: ${name} } }]
      retries: ${retries}
---
`;
}

function trafficPolicy(name: string, policy: string): string {
  return `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ${name} }
spec:
  host: ${name}
  trafficPolicy: ${policy}
---
`;
}

interface Context {
  readonly procs: Processes;
  readonly opts: Options;
  readonly pinning: Pinning | undefined;
  readonly ports: Set<number>;
}

interface RunningMeshlet {
  readonly port: number;
  readonly proc: Started;
}

/** Starts meshlet on the proxy CPU with `yaml`; resolves once every host in `hosts` answers 200. */
async function startMeshlet(ctx: Context, yaml: string, hosts: readonly string[]): Promise<RunningMeshlet> {
  const launched = await launchMeshlet({
    procs: ctx.procs,
    ports: ctx.ports,
    cli: ctx.opts.meshletCli,
    engine: ctx.opts.engine,
    cpu: ctx.pinning?.proxyCpu,
    name: 'meshlet',
    configName: 'resilience.yaml',
    yaml,
    // The figures compare resilience settings; an access log would add the same cost to both sides.
    telemetry: TELEMETRY_OFF,
  });
  const { outbound, proc } = launched;
  const probe = async (host: string): Promise<boolean> => {
    const res = await httpGet(outbound, '/', host, 1000);
    if (res.status !== 200) throw new Error(`${host}/ answered ${res.status}`);
    return true;
  };
  let failure = launched.notReady;
  for (const host of hosts) {
    if (failure !== undefined) break;
    failure = await waitUntil(() => probe(host), proc, 3000);
  }
  if (failure !== undefined) {
    await ctx.procs.stop(proc);
    throw new Error(`meshlet did not start: ${failure}`);
  }
  return { port: outbound, proc };
}

function wrk(ctx: Context, port: number, host: string, durationSec: number): Promise<WrkResult> {
  return runWrk(ctx.procs, {
    url: `http://127.0.0.1:${port}/`,
    host,
    connections: ctx.opts.connections,
    durationSec,
    cpu: ctx.pinning?.loadCpu,
  });
}

/** Both modes once per round, the order flipped every round. */
function orderFor<A, B>(round: number, modes: readonly [A, B]): ReadonlyArray<A | B> {
  return round % 2 === 1 ? modes : [modes[1], modes[0]];
}

const pct = (x: number, digits = 1): string => `${(x * 100).toFixed(digits)} %`;

// ---- a. slow endpoint share ----

async function slowShare(ctx: Context): Promise<string[]> {
  const { opts } = ctx;
  const backends = [await countingBackend(0), await countingBackend(0), await countingBackend(opts.slowMs)];
  const slow = backends[2] as CountingBackend;
  const ports = backends.map((b) => b.port);
  const yaml =
    serviceEntry('lb-default', ports) +
    serviceEntry('lb-round-robin', ports) +
    trafficPolicy('lb-round-robin', '{ loadBalancer: { simple: ROUND_ROBIN } }');
  const modes = [
    { label: 'default (P2C + peak EWMA)', host: 'lb-default' },
    { label: 'ROUND_ROBIN', host: 'lb-round-robin' },
  ] as const;
  const mesh = await startMeshlet(ctx, yaml, ['lb-default', 'lb-round-robin']);
  const shares = new Map<string, number[]>();
  const rps = new Map<string, number[]>();
  try {
    for (const m of modes) await wrk(ctx, mesh.port, m.host, 1);
    for (let round = 1; round <= opts.rounds; round++) {
      for (const m of orderFor(round, modes)) {
        const before = backends.map((b) => b.count());
        const w = await wrk(ctx, mesh.port, m.host, opts.durationSec);
        const delta = backends.map((b, i) => b.count() - (before[i] ?? 0));
        const total = delta.reduce((s, d) => s + d, 0);
        const share = total === 0 ? Number.NaN : (slow.count() - (before[2] ?? 0)) / total;
        shares.set(m.label, [...(shares.get(m.label) ?? []), share]);
        rps.set(m.label, [...(rps.get(m.label) ?? []), w.requestsPerSec]);
        out(
          `(a) round ${round}/${opts.rounds} ${m.label.padEnd(26)} slow share ${pct(share).padStart(7)}  ${formatRps(w.requestsPerSec)} req/s${errorsNote(w)}`,
        );
      }
    }
  } finally {
    await ctx.procs.stop(mesh.proc);
    for (const b of backends) b.kill();
  }
  const lines = [
    `**(a) share of requests sent to the slow endpoint** (1 of 3 endpoints answers ${opts.slowMs} ms late; ${opts.connections} connections, ${opts.rounds} × ${opts.durationSec} s per balancer)`,
    '',
    '| balancer | slow endpoint share (median) | per round | req/s (median) |',
    '|---|---:|---|---:|',
  ];
  for (const m of modes) {
    const s = shares.get(m.label) ?? [];
    lines.push(
      `| ${m.label} | ${pct(median(s))} | ${s.map((x) => pct(x)).join(' / ')} | ${formatRps(median(rps.get(m.label) ?? []))} |`,
    );
  }
  return lines;
}

function errorsNote(w: WrkResult): string {
  return w.non2xx + w.socketErrors > 0 ? `  (non-2xx ${w.non2xx}, socket errors ${w.socketErrors})` : '';
}

// ---- b. killing an endpoint under load ----

async function killOne(ctx: Context): Promise<string[]> {
  const { opts } = ctx;
  const modes = [
    { label: 'default retry policy', retries: undefined },
    { label: 'retries: {attempts: 0}', retries: '{ attempts: 0 }' },
  ] as const;
  const rates = new Map<string, number[]>();
  const detail = new Map<string, string[]>();
  for (let round = 1; round <= opts.rounds; round++) {
    for (const m of orderFor(round, modes)) {
      const backends = [await countingBackend(0), await countingBackend(0), await countingBackend(0)];
      const yaml =
        serviceEntry(
          'victims',
          backends.map((b) => b.port),
        ) + (m.retries === undefined ? '' : routeWithRetries('victims', m.retries));
      const mesh = await startMeshlet(ctx, yaml, ['victims']);
      let timer: NodeJS.Timeout | undefined;
      try {
        timer = setTimeout(() => backends[0]?.kill(), opts.killAtSec * 1000);
        const w = await wrk(ctx, mesh.port, 'victims', opts.killDurationSec);
        const errors = w.non2xx + w.socketErrors;
        const rate = w.requests === 0 ? Number.NaN : errors / w.requests;
        rates.set(m.label, [...(rates.get(m.label) ?? []), rate]);
        detail.set(m.label, [...(detail.get(m.label) ?? []), `${errors}/${w.requests}`]);
        out(
          `(b) round ${round}/${opts.rounds} ${m.label.padEnd(24)} errors ${errors} of ${w.requests} (${pct(rate, 3)}; non-2xx ${w.non2xx}, socket ${w.socketErrors})`,
        );
      } finally {
        clearTimeout(timer);
        await ctx.procs.stop(mesh.proc);
        for (const b of backends) b.kill();
      }
    }
  }
  const lines = [
    `**(b) client error rate when 1 of 3 endpoints is killed** (${opts.killDurationSec} s of load with ${opts.connections} connections, kill at ${opts.killAtSec} s; errors = non-2xx + socket errors seen by wrk)`,
    '',
    '| retries | error rate (median) | errors / requests per round |',
    '|---|---:|---|',
  ];
  for (const m of modes) {
    lines.push(
      `| ${m.label} | ${pct(median(rates.get(m.label) ?? []), 3)} | ${(detail.get(m.label) ?? []).join(' / ')} |`,
    );
  }
  return lines;
}

// ---- c. overhead ----

async function overhead(ctx: Context): Promise<string[]> {
  const { opts, procs } = ctx;
  // Three backends, so that both balancers really choose (P2C with one endpoint has nothing to compare).
  const backends: Array<Awaited<ReturnType<typeof startBackend>>> = [];
  for (let i = 0; i < 3; i++) {
    backends.push(
      await startBackend({
        procs,
        pinning: ctx.pinning,
        ports: ctx.ports,
        nginxBin: findExecutable('nginx'),
        haproxyBin: undefined,
        meshletCli: opts.meshletCli,
        repoRoot: process.cwd(),
      }),
    );
  }
  const ports = backends.map((b) => b.port);
  const yaml =
    serviceEntry('plain', ports) +
    routeWithRetries('plain', '{ attempts: 0 }') +
    trafficPolicy('plain', '{ loadBalancer: { simple: ROUND_ROBIN } }') +
    serviceEntry('resilient', ports) +
    routeWithRetries('resilient', '{ attempts: 2, retryOn: "5xx,connect-failure" }') +
    trafficPolicy(
      'resilient',
      '{ outlierDetection: { consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s } }',
    );
  const modes = [
    { label: 'plain (no retries, ROUND_ROBIN)', host: 'plain' },
    { label: 'retries + outlierDetection + P2C/EWMA', host: 'resilient' },
  ] as const;
  const mesh = await startMeshlet(ctx, yaml, ['plain', 'resilient']);
  const ticksPerSec = Number((await capture('getconf', ['CLK_TCK'])) ?? '') || 100;
  const rps = new Map<string, number[]>();
  const cpu = new Map<string, number[]>();
  try {
    for (const m of modes) await wrk(ctx, mesh.port, m.host, 1);
    for (let round = 1; round <= opts.rounds; round++) {
      for (const m of orderFor(round, modes)) {
        const before = sample(mesh.proc.child.pid, ctx.pinning?.proxyCpu);
        const w = await wrk(ctx, mesh.port, m.host, opts.durationSec);
        const after = sample(mesh.proc.child.pid, ctx.pinning?.proxyCpu);
        const u = usage(before, after, w.requests, ticksPerSec);
        rps.set(m.label, [...(rps.get(m.label) ?? []), w.requestsPerSec]);
        if (u.usPerRequest !== undefined) cpu.set(m.label, [...(cpu.get(m.label) ?? []), u.usPerRequest]);
        out(
          `(c) round ${round}/${opts.rounds} ${m.label.padEnd(38)} ${formatRps(w.requestsPerSec).padStart(8)} req/s  ${u.usPerRequest?.toFixed(1) ?? '?'} µs CPU/req${errorsNote(w)}`,
        );
      }
    }
  } finally {
    await procs.stop(mesh.proc);
    for (const b of backends) await procs.stop(b.proc);
  }
  const [plain, resilient] = modes.map((m) => m.label) as [string, string];
  // Both routes ran once per round, so index i of each list is the same round: compare within rounds.
  const perRound = (m: Map<string, number[]>): number[] =>
    (m.get(resilient) ?? []).map((r, i) => r / (m.get(plain)?.[i] ?? Number.NaN));
  const ratio = median(perRound(rps));
  const cpuRatio = median(perRound(cpu));
  const lines = [
    `**(c) overhead of the resilience features** (3 backends: ${backends[0]?.kind ?? '?'}; ${opts.connections} connections, ${opts.rounds} × ${opts.durationSec} s per route, same meshlet process)`,
    '',
    '| route | req/s (median) | per round | CPU µs/req (median) |',
    '|---|---:|---|---:|',
  ];
  for (const m of modes) {
    const r = rps.get(m.label) ?? [];
    const c = cpu.get(m.label) ?? [];
    lines.push(
      `| ${m.label} | ${formatRps(median(r))} | ${r.map(formatRps).join(' / ')} | ${c.length === 0 ? '—' : median(c).toFixed(1)} |`,
    );
  }
  lines.push(
    '',
    `req/s ratio resilient ÷ plain (median of per-round ratios): **${ratio.toFixed(3)}** (cost ${pct(1 - ratio)}); CPU µs/req ratio (median of per-round ratios): **${Number.isNaN(cpuRatio) ? '—' : cpuRatio.toFixed(3)}**`,
  );
  return lines;
}

// ---- main ----

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const parsed = optionsOrUsage('bench:resilience', parseOptions(argv), USAGE);
  if (typeof parsed === 'number') return parsed;
  if (findExecutable('wrk') === undefined) {
    process.stderr.write('bench:resilience: wrk is required (e.g. apt-get install wrk); nothing was run.\n');
    return 2;
  }
  const procs = new Processes();
  cleanUpOnExit(procs);
  const pinning = await detectPinning();
  // The in-process backends run on the load CPU with wrk, as the nginx backend of `npm run bench` does.
  if (pinning !== undefined) await capture('taskset', ['-apc', String(pinning.loadCpu), String(process.pid)]);
  const ctx: Context = { procs, opts: parsed, pinning, ports: new Set() };
  const command = `npm run bench:resilience${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`;
  out(`command: ${command}`);
  out(
    `pinning: ${pinning === undefined ? 'none' : `wrk + backends on CPU ${pinning.loadCpu}, meshlet alone on CPU ${pinning.proxyCpu}`}; engine ${parsed.engine}`,
  );
  out(
    `wrk: ${wrkCommandLine({ url: 'http://127.0.0.1:<port>/', host: '<service>', connections: parsed.connections, durationSec: parsed.durationSec, cpu: pinning?.loadCpu })}`,
  );
  const sections: string[][] = [];
  try {
    if (parsed.only.has('a')) sections.push(await slowShare(ctx));
    if (parsed.only.has('b')) sections.push(await killOne(ctx));
    if (parsed.only.has('c')) sections.push(await overhead(ctx));
  } finally {
    await procs.cleanup();
  }
  printSections(sections, parsed.markdown, out);
  return 0;
}

runMain('bench:resilience', main);
