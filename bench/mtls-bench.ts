/**
 * `npm run bench:mtls`: what mTLS costs between two meshlet sidecars.
 *
 *   a. Keep-alive req/s through the two-sidecar chain wrk → meshlet A (outbound) → meshlet B
 *      (inbound, PERMISSIVE) → nginx, with A reaching B in plaintext (`bench-plain`) and over
 *      auto-mTLS (`bench-mtls`): the same two processes, the same connections count, only the Host
 *      differs (goal: mTLS ≥ 0.8× plaintext). CPU per request is A's plus B's.
 *   b. New connections per second against a meshlet inbound port, each one a full mTLS handshake
 *      with a client certificate plus one request (meshlet C, STRICT), next to the same loop in
 *      plaintext against B's inbound port; the server's CPU per connection is the handshake cost.
 *
 * Pinning as in `npm run bench`: wrk, nginx and this process (which runs the connection load of b)
 * on the first allowed CPU; the meshlets on the second. Both sidecars of (a) share that core, so
 * (a)'s absolute req/s is about half a one-hop figure; the ratio is what it measures. Each figure
 * is a median over alternating rounds (the order of the compared modes flips every round).
 *
 *   npm run bench:mtls -- [--rounds 3] [--duration 5] [--connections 50] [--engine h1]
 *                         [--hs-duration 3] [--hs-concurrency 8] [--only a,b] [--markdown FILE]
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { BODY } from './configs.ts';
import { type CpuSample, sample, usage } from './cpu.ts';
import { connectionLoad } from './handshake-load.ts';
import {
  type CaFiles,
  clientSidecarYaml,
  MTLS_HOST,
  PLAIN_HOST,
  pemFilesIn,
  serverSidecarYaml,
} from './mtls-configs.ts';
import { parseSideBenchOptions, type SideBenchOptions } from './options.ts';
import { capture, freePort, httpGet, Processes, type Started, waitUntil } from './procs.ts';
import { findExecutable, launchMeshlet, type Pinning, READY_TIMEOUT_MS, startBackend } from './proxies.ts';
import { formatRps, median } from './report.ts';
import { cleanUpOnExit, detectPinning, optionsOrUsage, printSections, runMain } from './side-bench.ts';
import { TELEMETRY_OFF } from './telemetry.ts';
import { runWrk, type WrkResult, wrkCommandLine } from './wrk.ts';

const USAGE = `usage: npm run bench:mtls -- [options]
  --rounds <n>           alternating rounds per comparison (default 3)
  --duration <s>         wrk run length for (a) (default 5)
  --connections <n>      keep-alive connections for (a) (default 50)
  --engine <e>           meshlet listener engine: h1 or node (default h1; uws has no TLS)
  --hs-duration <s>      length of one new-connection run for (b) (default 3)
  --hs-concurrency <n>   connections opened at once in (b) (default 8)
  --only <list>          which measurements, comma-separated from a,b (default a,b)
  --markdown <file>      also write the tables as Markdown
  --meshlet-cli <path>   the meshlet entry point (default dist/src/cli.js)
`;

type Options = SideBenchOptions<'h1' | 'node', 'hsDurationSec' | 'hsConcurrency'>;

function parseOptions(argv: string[]): Options | string {
  return parseSideBenchOptions(argv, {
    duration: '5',
    engines: ['h1', 'node'],
    badEngine: (engine) => `--engine takes h1 or node (uws has no TLS), not ${engine}`,
    measurements: ['a', 'b'],
    ints: {
      hsDurationSec: { flag: 'hs-duration', default: '3', min: 1 },
      hsConcurrency: { flag: 'hs-concurrency', default: '8', min: 1 },
    },
  });
}

const out = (line = ''): void => {
  process.stdout.write(`${line}\n`);
};

interface Context {
  readonly procs: Processes;
  readonly opts: Options;
  readonly pinning: Pinning | undefined;
  readonly ports: Set<number>;
  readonly ca: CaFiles;
  /** Where \`meshlet ca init\` wrote the CA (what \`meshlet ca issue --ca\` takes). */
  readonly caDir: string;
  readonly backendPort: number;
  readonly ticksPerSec: number;
}

interface RunningMeshlet {
  readonly outbound: number;
  readonly inbound: number;
  readonly admin: number;
  readonly proc: Started;
}

/** `meshlet <args>` to completion (the `ca` subcommands), throwing with its output on failure. */
function meshletCli(cli: string, args: readonly string[]): Promise<void> {
  return new Promise((ok, fail) => {
    execFile(process.execPath, [cli, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err === null) ok();
      else fail(new Error(`meshlet ${args.join(' ')} failed: ${stderr}${stdout}`));
    });
  });
}

/** Starts meshlet on the proxy CPU; resolves once `/ready` answers 200 (the certificate is issued). */
async function startMeshlet(
  ctx: Context,
  name: string,
  yaml: string,
  app: number | undefined,
): Promise<RunningMeshlet> {
  const { outbound, inbound, admin, proc, notReady } = await launchMeshlet({
    procs: ctx.procs,
    ports: ctx.ports,
    cli: ctx.opts.meshletCli,
    engine: ctx.opts.engine,
    cpu: ctx.pinning?.proxyCpu,
    name,
    configName: `${name}.yaml`,
    yaml,
    // Like nginx and HAProxy in `npm run bench`: no access log, so the ratios isolate TLS.
    telemetry: TELEMETRY_OFF,
    extraArgs: app === undefined ? [] : ['--app', `127.0.0.1:${app}`],
  });
  if (notReady !== undefined) {
    await ctx.procs.stop(proc);
    throw new Error(`${name} did not start: ${notReady}`);
  }
  return { outbound, inbound, admin, proc };
}

/** Waits until `host` answers the backend's body through `port` (the whole chain is up). */
async function waitForRoute(port: number, host: string, proc: Started): Promise<void> {
  const failure = await waitUntil(
    async () => {
      const res = await httpGet(port, '/', host, 1000);
      if (res.status !== 200 || !res.body.equals(Buffer.from(BODY)))
        throw new Error(`${host} answered ${res.status}: ${res.body.toString().slice(0, 120)}`);
      return true;
    },
    proc,
    5000,
  );
  if (failure !== undefined) throw new Error(`route ${host}: ${failure}`);
}

/** CPU ticks of several process groups at once, as one sample. */
function sampleAll(procs: readonly Started[], cpu: number | undefined): CpuSample {
  const parts = procs.map((p) => sample(p.child.pid, undefined));
  const ticks = parts.map((p) => p.proxyTicks);
  const base = sample(undefined, cpu);
  return {
    at: base.at,
    proxyTicks: ticks.includes(undefined) ? undefined : ticks.reduce((s, t) => (s ?? 0) + (t ?? 0), 0),
    cpu: base.cpu,
  };
}

/** The median of shares as a percentage, '—' without samples. */
function pct(values: readonly number[] | undefined): string {
  return values === undefined || values.length === 0 ? '—' : `${Math.round(median(values) * 100)} %`;
}

function orderFor<T>(round: number, modes: readonly T[]): readonly T[] {
  return round % 2 === 1 ? modes : [...modes].reverse();
}

function errorsNote(w: WrkResult): string {
  return w.non2xx + w.socketErrors > 0 ? `  (non-2xx ${w.non2xx}, socket errors ${w.socketErrors})` : '';
}

/** Per-round ratios of `b` to `a` (index i of each list is the same round), then their median. */
function medianRatio(a: readonly number[], b: readonly number[]): number {
  return median(b.map((x, i) => x / (a[i] ?? Number.NaN)));
}

// ---- a. keep-alive through two sidecars ----

async function keepAlive(ctx: Context): Promise<string[]> {
  const { opts } = ctx;
  const server = await startMeshlet(
    ctx,
    'sidecar-b',
    serverSidecarYaml(ctx.ca, 'PERMISSIVE'),
    ctx.backendPort,
  );
  const client = await startMeshlet(ctx, 'sidecar-a', clientSidecarYaml(ctx.ca, server.inbound), undefined);
  const modes = [
    { label: 'plaintext A → B', host: PLAIN_HOST },
    { label: 'mTLS A → B (auto-mTLS)', host: MTLS_HOST },
  ] as const;
  const rps = new Map<string, number[]>();
  const cpu = new Map<string, number[]>();
  const p99 = new Map<string, number[]>();
  const busy = new Map<string, number[]>();
  const other = new Map<string, number[]>();
  try {
    for (const m of modes) await waitForRoute(client.outbound, m.host, client.proc);
    const wrk = (host: string, durationSec: number): Promise<WrkResult> =>
      runWrk(ctx.procs, {
        url: `http://127.0.0.1:${client.outbound}/`,
        host,
        connections: opts.connections,
        durationSec,
        cpu: ctx.pinning?.loadCpu,
      });
    for (const m of modes) await wrk(m.host, 1);
    for (let round = 1; round <= opts.rounds; round++) {
      for (const m of orderFor(round, modes)) {
        const before = sampleAll([client.proc, server.proc], ctx.pinning?.proxyCpu);
        const w = await wrk(m.host, opts.durationSec);
        const after = sampleAll([client.proc, server.proc], ctx.pinning?.proxyCpu);
        const u = usage(before, after, w.requests, ctx.ticksPerSec);
        rps.set(m.label, [...(rps.get(m.label) ?? []), w.requestsPerSec]);
        p99.set(m.label, [...(p99.get(m.label) ?? []), w.p99Ms]);
        if (u.proxyCores !== undefined) busy.set(m.label, [...(busy.get(m.label) ?? []), u.proxyCores]);
        if (u.otherOnProxyCpu !== undefined)
          other.set(m.label, [...(other.get(m.label) ?? []), u.otherOnProxyCpu]);
        if (u.usPerRequest !== undefined) cpu.set(m.label, [...(cpu.get(m.label) ?? []), u.usPerRequest]);
        out(
          `(a) round ${round}/${opts.rounds} ${m.label.padEnd(24)} ${formatRps(w.requestsPerSec).padStart(8)} req/s  p99 ${w.p99Ms.toFixed(2)} ms  ${u.usPerRequest?.toFixed(1) ?? '?'} µs CPU/req (A+B)${errorsNote(w)}`,
        );
      }
    }
  } finally {
    await ctx.procs.stop(client.proc);
    await ctx.procs.stop(server.proc);
  }
  const [plain, mtls] = modes.map((m) => m.label) as [string, string];
  const ratio = medianRatio(rps.get(plain) ?? [], rps.get(mtls) ?? []);
  const cpuRatio = medianRatio(cpu.get(plain) ?? [], cpu.get(mtls) ?? []);
  const lines = [
    `**(a) keep-alive req/s through two sidecars** (wrk → A outbound → B inbound → nginx; ${opts.connections} connections, ${opts.rounds} × ${opts.durationSec} s per mode, engine ${opts.engine}, both sidecars on one core)`,
    '',
    '| A → B | req/s (median) | per round | p99 (median) | CPU µs/req, A+B (median) | A+B CPU | other load on their CPU |',
    '|---|---:|---|---:|---:|---:|---:|',
  ];
  for (const m of modes) {
    const r = rps.get(m.label) ?? [];
    const c = cpu.get(m.label) ?? [];
    lines.push(
      `| ${m.label} | ${formatRps(median(r))} | ${r.map(formatRps).join(' / ')} | ${median(p99.get(m.label) ?? []).toFixed(2)} ms | ${c.length === 0 ? '—' : median(c).toFixed(1)} | ${pct(busy.get(m.label))} | ${pct(other.get(m.label))} |`,
    );
  }
  lines.push(
    '',
    `req/s ratio mTLS ÷ plaintext (median of per-round ratios): **${ratio.toFixed(3)}** (goal ≥ 0.8); CPU µs/req ratio: **${Number.isNaN(cpuRatio) ? '—' : cpuRatio.toFixed(3)}**`,
  );
  return lines;
}

// ---- b. new connections ----

/** `meshlet ca issue` for `serviceAccount` into a fresh temp dir; the PEM files it wrote. */
async function issue(ctx: Context, serviceAccount: string): Promise<{ certFile: string; keyFile: string }> {
  const dir = ctx.procs.tempDir();
  await meshletCli(ctx.opts.meshletCli, [
    'ca',
    'issue',
    '--ca',
    ctx.caDir,
    '--namespace',
    'default',
    '--service-account',
    serviceAccount,
    '--out',
    dir,
  ]);
  return pemFilesIn(dir, 'workload');
}

/** The bare node:tls server of the reference row, on the proxy CPU; resolves once it completes a connection. */
async function startReference(
  ctx: Context,
  clientPem: { certPem: string; keyPem: string },
): Promise<{ port: number; proc: Started }> {
  const files = await issue(ctx, 'bench-reference');
  const port = await freePort(ctx.ports);
  const script = new URL('./tls-reference-server.js', import.meta.url).pathname;
  const proc = ctx.procs.spawn(
    'tls-reference',
    process.execPath,
    [script, String(port), files.certFile, files.keyFile, ctx.ca.certFile],
    { cpu: ctx.pinning?.proxyCpu },
  );
  const failure = await waitUntil(
    async () => {
      const r = await connectionLoad({ port, durationMs: 1, concurrency: 1, tls: clientPem });
      if (r.completed === 0) throw new Error(r.errorSamples.join('; ') || 'no connection completed');
      return true;
    },
    proc,
    READY_TIMEOUT_MS,
  );
  if (failure !== undefined) {
    await ctx.procs.stop(proc);
    throw new Error(`the reference TLS server did not start: ${failure}`);
  }
  return { port, proc };
}

async function handshakes(ctx: Context): Promise<string[]> {
  const { opts } = ctx;
  const clientFiles = await issue(ctx, 'bench-load');
  const clientPem = {
    certPem: readFileSync(clientFiles.certFile, 'utf8'),
    keyPem: readFileSync(clientFiles.keyFile, 'utf8'),
  };
  const started: Started[] = [];
  const modes: Array<{ label: string; port: number; proc: Started; tls: typeof clientPem | undefined }> = [];
  const rates = new Map<string, number[]>();
  const cpu = new Map<string, number[]>();
  const busy = new Map<string, number[]>();
  let errorNotes = '';
  try {
    const plain = await startMeshlet(
      ctx,
      'server-plain',
      serverSidecarYaml(ctx.ca, 'PERMISSIVE'),
      ctx.backendPort,
    );
    started.push(plain.proc);
    const strict = await startMeshlet(
      ctx,
      'server-strict',
      serverSidecarYaml(ctx.ca, 'STRICT'),
      ctx.backendPort,
    );
    started.push(strict.proc);
    const reference = await startReference(ctx, clientPem);
    started.push(reference.proc);
    modes.push(
      {
        label: 'meshlet, plaintext (PERMISSIVE port)',
        port: plain.inbound,
        proc: plain.proc,
        tls: undefined,
      },
      { label: 'meshlet, mTLS (STRICT port)', port: strict.inbound, proc: strict.proc, tls: clientPem },
      {
        label: 'bare node:tls server, mTLS (reference)',
        port: reference.port,
        proc: reference.proc,
        tls: clientPem,
      },
    );
    for (const m of modes) {
      const warm = await connectionLoad({
        port: m.port,
        durationMs: 500,
        concurrency: opts.hsConcurrency,
        ...(m.tls !== undefined ? { tls: m.tls } : {}),
      });
      if (warm.completed === 0)
        throw new Error(`${m.label}: no connection completed (${warm.errorSamples.join('; ')})`);
    }
    for (let round = 1; round <= opts.rounds; round++) {
      for (const m of orderFor(round, modes)) {
        const before = sampleAll([m.proc], ctx.pinning?.proxyCpu);
        const r = await connectionLoad({
          port: m.port,
          durationMs: opts.hsDurationSec * 1000,
          concurrency: opts.hsConcurrency,
          ...(m.tls !== undefined ? { tls: m.tls } : {}),
        });
        const after = sampleAll([m.proc], ctx.pinning?.proxyCpu);
        const u = usage(before, after, r.completed, ctx.ticksPerSec);
        rates.set(m.label, [...(rates.get(m.label) ?? []), r.perSecond]);
        if (u.usPerRequest !== undefined) cpu.set(m.label, [...(cpu.get(m.label) ?? []), u.usPerRequest]);
        if (u.proxyCores !== undefined) busy.set(m.label, [...(busy.get(m.label) ?? []), u.proxyCores]);
        if (r.errors > 0) errorNotes += ` ${m.label}: ${r.errors} errors (${r.errorSamples.join('; ')}).`;
        out(
          `(b) round ${round}/${opts.rounds} ${m.label.padEnd(40)} ${r.perSecond.toFixed(0).padStart(6)} conn/s  ${u.usPerRequest?.toFixed(0) ?? '?'} µs server CPU/conn  server CPU ${Math.round((u.proxyCores ?? 0) * 100)} %${r.errors > 0 ? `  errors ${r.errors}` : ''}`,
        );
      }
    }
  } finally {
    for (const p of started) await ctx.procs.stop(p);
  }
  const lines = [
    `**(b) new connections per second against an inbound port** (each: connect, handshake, one GET, close; ${opts.hsConcurrency} at once from a Node tls client on the load CPU, no session resumption; ${opts.rounds} × ${opts.hsDurationSec} s per mode, engine ${opts.engine})`,
    '',
    '| server | conn/s (median) | per round | server CPU µs/conn (median) | server CPU busy (median) |',
    '|---|---:|---|---:|---:|',
  ];
  for (const m of modes) {
    const r = rates.get(m.label) ?? [];
    const c = cpu.get(m.label) ?? [];
    const b = busy.get(m.label) ?? [];
    lines.push(
      `| ${m.label} | ${median(r).toFixed(0)} | ${r.map((x) => x.toFixed(0)).join(' / ')} | ${c.length === 0 ? '—' : median(c).toFixed(0)} | ${b.length === 0 ? '—' : `${Math.round(median(b) * 100)} %`} |`,
    );
  }
  const us = (label: string | undefined): number => median(cpu.get(label ?? '') ?? []);
  const [plainUs, mtlsUs, refUs] = [us(modes[0]?.label), us(modes[1]?.label), us(modes[2]?.label)];
  const fmt = (x: number): string => (Number.isNaN(x) ? '—' : x.toFixed(0));
  lines.push(
    '',
    `A meshlet core at 100 % would complete about **${fmt(1e6 / mtlsUs)} new mTLS connections/s** (1,000,000 ÷ server CPU µs/conn; the measured rate is lower when the client, on the other core, is the bottleneck: see "server CPU busy"). The handshake costs meshlet about **${fmt(mtlsUs - plainUs)} µs** of CPU over a plaintext connection; a bare node:tls server spends **${fmt(refUs)} µs** per mTLS connection.${errorNotes === '' ? '' : ` Errors:${errorNotes}`}`,
  );
  return lines;
}

// ---- main ----

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const parsed = optionsOrUsage('bench:mtls', parseOptions(argv), USAGE);
  if (typeof parsed === 'number') return parsed;
  if (parsed.only.has('a') && findExecutable('wrk') === undefined) {
    process.stderr.write(
      'bench:mtls: wrk is required for (a) (e.g. apt-get install wrk); nothing was run.\n',
    );
    return 2;
  }
  const procs = new Processes();
  cleanUpOnExit(procs);
  const pinning = await detectPinning();
  // The connection load of (b) runs in this process: it belongs on the load CPU with wrk.
  if (pinning !== undefined) await capture('taskset', ['-apc', String(pinning.loadCpu), String(process.pid)]);
  const command = `npm run bench:mtls${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`;
  out(`command: ${command}`);
  out(
    `pinning: ${pinning === undefined ? 'none' : `wrk + nginx + the connection load on CPU ${pinning.loadCpu}, the meshlets on CPU ${pinning.proxyCpu}`}; engine ${parsed.engine}`,
  );
  out(
    `wrk: ${wrkCommandLine({ url: 'http://127.0.0.1:<port>/', host: '<bench-plain|bench-mtls>', connections: parsed.connections, durationSec: parsed.durationSec, cpu: pinning?.loadCpu })}`,
  );
  const sections: string[][] = [];
  try {
    const ports = new Set<number>();
    const caDir = procs.tempDir();
    await meshletCli(parsed.meshletCli, ['ca', 'init', '--trust-domain', 'cluster.local', '--out', caDir]);
    const ca = pemFilesIn(caDir, 'ca');
    const backend = await startBackend({
      procs,
      pinning,
      ports,
      nginxBin: findExecutable('nginx'),
      haproxyBin: undefined,
      meshletCli: parsed.meshletCli,
      repoRoot: process.cwd(),
    });
    out(`backend: ${backend.kind} on 127.0.0.1:${backend.port}`);
    const ctx: Context = {
      procs,
      opts: parsed,
      pinning,
      ports,
      ca,
      caDir,
      backendPort: backend.port,
      ticksPerSec: Number((await capture('getconf', ['CLK_TCK'])) ?? '') || 100,
    };
    if (parsed.only.has('a')) sections.push(await keepAlive(ctx));
    if (parsed.only.has('b')) sections.push(await handshakes(ctx));
  } finally {
    await procs.cleanup();
  }
  printSections(sections, parsed.markdown, out);
  return 0;
}

runMain('bench:mtls', main);
