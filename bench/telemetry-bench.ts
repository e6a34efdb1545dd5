/**
 * `npm run bench:telemetry`: what full telemetry costs meshlet, side by side against the same backend.
 *
 * Two meshlet processes with the same configuration, both alone on the proxy CPU:
 * - `meshlet (telemetry off)`: `--no-access-log`, no tracing;
 * - `meshlet (full telemetry)`: the JSON access log to a file in a temp dir, tracing at 1 % to a
 *   loopback OTLP/HTTP sink (a child process on the load CPU that counts spans), and `/metrics` and
 *   `/stats` scraped once per second during its rounds, as Prometheus and a dashboard would.
 * Metrics are recorded by both (meshlet cannot turn them off); only the full one is scraped.
 *
 * Rounds alternate (the order flips every round) and every figure is a median; the cost is the median
 * of the per-round ratios full ÷ off, so noise that hits one round hits both sides. wrk, the nginx
 * backend, the sink and this process (the scrapes) share the load CPU, as in `npm run bench`. The
 * goal of issue 5: full telemetry costs at most 10 % of req/s.
 *
 * After the measurement it checks what the full process exported (access-log lines per request,
 * spans received, scrape answers): a figure measured while a part did not work says so.
 * `--cpu-prof <dir>` also runs the full process under `node --cpu-prof` and prints the telemetry's
 * share of its CPU and the top functions (the profile stays in <dir>).
 */
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BENCH_HOST, BODY, meshletServiceEntry } from './configs.ts';
import { sample, usage } from './cpu.ts';
import { type CpuProfile, formatProfile, formatProfileDiff, summarizeProfile } from './cpu-profile.ts';
import { parseSideBenchOptions, type SideBenchOptions, takeStringFlag } from './options.ts';
import { capture, httpGet, Processes, type Started, sleep, waitUntil } from './procs.ts';
import { findExecutable, launchMeshlet, type Pinning, READY_TIMEOUT_MS, startBackend } from './proxies.ts';
import { formatLatency, formatRps, median } from './report.ts';
import { cleanUpOnExit, detectPinning, optionsOrUsage, printSections, runMain } from './side-bench.ts';
import {
  describeTelemetry,
  formatScrapes,
  fullTelemetry,
  type MeshletTelemetry,
  mergeScrapes,
  SCRAPE_PATHS,
  type ScrapeTally,
  startOtlpSink,
  startScrapes,
  TELEMETRY_OFF,
  takeAccessLog,
} from './telemetry.ts';
import { runWrk, type WrkResult, wrkCommandLine } from './wrk.ts';

const USAGE = `usage: npm run bench:telemetry -- [options]
  --rounds <n>          alternating rounds (default 3)
  --duration <s>        wrk run length (default 4)
  --connections <n>     keep-alive connections (default 50)
  --engine <e>          meshlet listener engine: h1, uws, node (default h1)
  --warmup <s>          one unrecorded wrk run per process first (default 1; 0 = none)
  --markdown <file>     also write the tables as Markdown
  --meshlet-cli <path>  the meshlet entry point (default dist/src/cli.js)
  --cpu-prof <dir>      run the full-telemetry process under node --cpu-prof, profile into <dir>
`;

type Options = SideBenchOptions<'h1' | 'uws' | 'node', 'warmupSec'>;

/** The goal of issue 5: full telemetry keeps at least this share of the req/s. */
const GOAL = 0.9;

const out = (line = ''): void => {
  process.stdout.write(`${line}\n`);
};

interface Side {
  readonly label: string;
  readonly telemetry: MeshletTelemetry;
  readonly proc: Started;
  readonly port: number;
  readonly admin: number;
  readonly rounds: Array<WrkResult & { usPerRequest?: number; otherOnProxyCpu?: number }>;
}

async function startSide(
  procs: Processes,
  ports: Set<number>,
  opts: Options,
  pinning: Pinning | undefined,
  label: string,
  telemetry: MeshletTelemetry,
  backendPort: number,
  nodeArgs: readonly string[],
): Promise<Side> {
  const l = await launchMeshlet({
    procs,
    ports,
    cli: opts.meshletCli,
    engine: opts.engine,
    cpu: pinning?.proxyCpu,
    cwd: process.cwd(),
    name: label,
    configName: 'bench-backend.yaml',
    yaml: meshletServiceEntry(backendPort),
    telemetry,
    nodeArgs,
  });
  const failure =
    l.notReady ??
    (await waitUntil(
      async () => {
        const res = await httpGet(l.outbound, '/', BENCH_HOST, 1000);
        if (res.status !== 200 || !res.body.equals(Buffer.from(BODY)))
          throw new Error(`GET / answered ${res.status}`);
        return true;
      },
      l.proc,
      3000,
    ));
  if (failure !== undefined) throw new Error(`${label} did not start: ${failure}`);
  return { label, telemetry, proc: l.proc, port: l.outbound, admin: l.admin, rounds: [] };
}

const pct = (x: number, digits = 1): string => `${(x * 100).toFixed(digits)} %`;
const med = (xs: readonly (number | undefined)[]): number =>
  median(xs.filter((x): x is number => x !== undefined && !Number.isNaN(x)));

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const prof = takeStringFlag(argv, 'cpu-prof');
  const parsed = optionsOrUsage(
    'bench:telemetry',
    typeof prof === 'string'
      ? prof
      : parseSideBenchOptions(prof.rest, {
          duration: '4',
          engines: ['h1', 'uws', 'node'],
          badEngine: (engine) => `unknown engine ${engine}`,
          measurements: ['cost'],
          ints: { warmupSec: { flag: 'warmup', default: '1', min: 0 } },
        }),
    USAGE,
  );
  if (typeof parsed === 'number') return parsed;
  const opts: Options = parsed;
  const profDir = typeof prof === 'string' || prof.value === undefined ? undefined : resolve(prof.value);
  if (findExecutable('wrk') === undefined) {
    process.stderr.write('bench:telemetry: wrk is required (e.g. apt-get install wrk); nothing was run.\n');
    return 2;
  }
  const procs = new Processes();
  cleanUpOnExit(procs);
  const pinning = await detectPinning();
  // The scrapes run in this process: on the load CPU, with wrk, the backend and the sink.
  if (pinning !== undefined) await capture('taskset', ['-apc', String(pinning.loadCpu), String(process.pid)]);
  const ports = new Set<number>();
  const command = `npm run bench:telemetry${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`;
  out(`command: ${command}`);
  out(
    `pinning: ${pinning === undefined ? 'none' : `wrk, backend, OTLP sink and scrapes on CPU ${pinning.loadCpu}; both meshlets on CPU ${pinning.proxyCpu} (one loaded at a time)`}; engine ${opts.engine}`,
  );
  const ticksPerSec = Number((await capture('getconf', ['CLK_TCK'])) ?? '') || 100;
  const sections: string[][] = [];
  try {
    const backend = await startBackend({
      procs,
      pinning,
      ports,
      nginxBin: findExecutable('nginx'),
      haproxyBin: undefined,
      meshletCli: opts.meshletCli,
      repoRoot: process.cwd(),
    });
    out(`backend: ${backend.kind} on 127.0.0.1:${backend.port}`);
    const sink = await startOtlpSink(procs, ports, pinning?.loadCpu, READY_TIMEOUT_MS);
    const full = fullTelemetry(procs.tempDir(), sink);
    if (profDir !== undefined) mkdirSync(profDir, { recursive: true });
    const sides = [
      await startSide(
        procs,
        ports,
        opts,
        pinning,
        'meshlet (telemetry off)',
        TELEMETRY_OFF,
        backend.port,
        profDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', profDir],
      ),
      await startSide(
        procs,
        ports,
        opts,
        pinning,
        'meshlet (full telemetry)',
        full,
        backend.port,
        profDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', profDir],
      ),
    ] as const;
    for (const s of sides) out(`${s.label}: ${describeTelemetry(s.telemetry)}`);
    const wrkRun = (port: number, durationSec: number) => ({
      url: `http://127.0.0.1:${port}/`,
      host: BENCH_HOST,
      connections: opts.connections,
      durationSec,
      cpu: pinning?.loadCpu,
    });
    out(`wrk: ${wrkCommandLine(wrkRun(0, opts.durationSec)).replace('127.0.0.1:0', '127.0.0.1:<port>')}`);

    const accessLogPath = full.mode === 'full' ? full.accessLogPath : '';
    let requestsFull = 0;
    let scrapes: ScrapeTally[] = [];
    let logLines = 0;
    let logBytes = 0;
    const takeLog = async (): Promise<void> => {
      const t = await takeAccessLog(accessLogPath);
      logLines += t.lines;
      logBytes += t.bytes;
    };
    if (opts.warmupSec > 0) {
      for (const s of sides) {
        const w = await runWrk(procs, wrkRun(s.port, opts.warmupSec));
        if (s === sides[1]) requestsFull += w.requests;
      }
      await takeLog();
    }
    // The profile's clock is CLOCK_MONOTONIC in µs, as process.hrtime's: the rounds start here.
    const roundsFromUs = Number(process.hrtime.bigint() / 1000n);
    for (let round = 1; round <= opts.rounds; round++) {
      const order = round % 2 === 1 ? sides : ([sides[1], sides[0]] as const);
      for (const s of order) {
        if (procs.closed) return 130;
        if (s.proc.hasExited())
          throw new Error(`${s.label} exited (${await s.proc.exited}) before round ${round}`);
        const scraping = s === sides[1] ? startScrapes(s.admin, SCRAPE_PATHS, 1000) : undefined;
        const before = sample(s.proc.child.pid, pinning?.proxyCpu);
        const w = await runWrk(procs, wrkRun(s.port, opts.durationSec));
        const after = sample(s.proc.child.pid, pinning?.proxyCpu);
        const u = usage(before, after, w.requests, ticksPerSec);
        s.rounds.push({ ...w, ...u });
        let extra = '';
        if (scraping !== undefined) {
          scrapes = mergeScrapes(scrapes, await scraping.stop());
          requestsFull += w.requests;
          const before = logLines;
          await takeLog();
          extra = `  access log ${((logLines - before) / Math.max(1, w.requests)).toFixed(2)} lines/req`;
        }
        const errs =
          w.non2xx + w.socketErrors > 0 ? `  (non-2xx ${w.non2xx}, socket errors ${w.socketErrors})` : '';
        out(
          `round ${round}/${opts.rounds} ${s.label.padEnd(24)} ${formatRps(w.requestsPerSec).padStart(8)} req/s  p99 ${formatLatency(w.p99Ms)}  ${u.usPerRequest?.toFixed(1) ?? '?'} µs CPU/req  other ${pct(u.otherOnProxyCpu ?? Number.NaN, 0)}${extra}${errs}`,
        );
      }
    }
    // Spans wait up to the exporter's flush interval (1 s) before they are sent.
    await sleep(1500);
    await takeLog();
    const counts = await sink
      .counts()
      .catch((err: unknown) => (err instanceof Error ? err.message : String(err)));

    const [off, on] = sides;
    const ratio = (pick: (r: Side['rounds'][number]) => number | undefined): number =>
      med(
        on.rounds.map((r, i) => {
          const a = pick(r);
          const b = off.rounds[i] === undefined ? undefined : pick(off.rounds[i] as Side['rounds'][number]);
          return a === undefined || b === undefined ? undefined : a / b;
        }),
      );
    const rpsRatio = ratio((r) => r.requestsPerSec);
    const cpuRatio = ratio((r) => r.usPerRequest);
    const lines = [
      `**Telemetry cost** (engine ${opts.engine}; ${opts.connections} connections, ${opts.rounds} alternating rounds of ${opts.durationSec} s per process; backend ${backend.kind})`,
      '',
      '| meshlet | req/s (median) | req/s per round | p50 | p99 | CPU µs/req | other load on its CPU |',
      '|---|---:|---|---:|---:|---:|---:|',
    ];
    for (const s of sides) {
      lines.push(
        `| ${s.label} | ${formatRps(med(s.rounds.map((r) => r.requestsPerSec)))} | ${s.rounds.map((r) => formatRps(r.requestsPerSec)).join(' / ')} | ${formatLatency(med(s.rounds.map((r) => r.p50Ms)))} | ${formatLatency(med(s.rounds.map((r) => r.p99Ms)))} | ${med(s.rounds.map((r) => r.usPerRequest)).toFixed(1)} | ${pct(med(s.rounds.map((r) => r.otherOnProxyCpu)), 0)} |`,
      );
    }
    const verdict = Number.isNaN(rpsRatio)
      ? 'no ratio'
      : rpsRatio >= GOAL
        ? `within the goal (cost ≤ ${pct(1 - GOAL, 0)})`
        : `**above the goal** (cost ≤ ${pct(1 - GOAL, 0)})`;
    const spans =
      typeof counts === 'string'
        ? `the OTLP sink did not answer (${counts})`
        : `${counts.spans.toLocaleString('en-US')} spans in ${counts.posts} OTLP exports (${((100 * counts.spans) / Math.max(1, requestsFull)).toFixed(2)} per 100 requests)${counts.rejected > 0 ? `, ${counts.rejected} rejected` : ''}`;
    const warnings: string[] = [];
    if (logLines < requestsFull * 0.99)
      warnings.push('the access log holds fewer lines than requests: it did not log everything');
    if (typeof counts === 'string' || counts.spans === 0)
      warnings.push('no spans reached the sink: tracing is not in this figure');
    const scrapedOk = scrapes.every((t) => (t.statuses.get(200) ?? 0) > 0 && t.statuses.size === 1);
    if (!scrapedOk) warnings.push('some scrapes did not answer 200');
    lines.push(
      '',
      `req/s full ÷ off (median of per-round ratios): **${rpsRatio.toFixed(3)}**, a cost of **${pct(1 - rpsRatio)}**: ${verdict}. CPU µs/req full ÷ off: **${cpuRatio.toFixed(3)}**.`,
      '',
      `What the full process exported: access log ${logLines.toLocaleString('en-US')} lines for ${requestsFull.toLocaleString('en-US')} requests (${(logLines / Math.max(1, requestsFull)).toFixed(2)} per request, ${(logBytes / 1e6).toFixed(1)} MB); ${spans}; scrapes ${formatScrapes(scrapes)}.`,
      ...warnings.map((w) => `Warning: ${w}.`),
    );
    sections.push(lines);

    if (profDir !== undefined) {
      // A profile is written when its process exits normally: SIGTERM lets meshlet drain and exit.
      await Promise.all(sides.map((s) => procs.stop(s.proc, 15_000)));
      const summaries = sides.map((s) => {
        const file = readdirSync(profDir)
          .filter((f) => f.endsWith('.cpuprofile') && f.includes(`.${s.proc.child.pid}.`))
          .map((f) => join(profDir, f))
          .at(-1);
        if (file === undefined) return undefined;
        const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
        const rounds = summarizeProfile(profile, roundsFromUs);
        // Should the clocks not match, the whole profile (start-up included) is better than nothing.
        const summary = rounds.samples > 0 ? rounds : summarizeProfile(profile);
        const requests = s.rounds.reduce((n, r) => n + r.requests, 0);
        return { file, summary, whole: summary !== rounds, requests };
      });
      const [offProf, onProf] = summaries;
      if (onProf === undefined) sections.push([`No .cpuprofile of ${on.label} was written to ${profDir}.`]);
      else {
        sections.push([
          `**CPU profile of meshlet (full telemetry)**, ${onProf.whole ? 'whole process, start-up included' : 'the rounds only'}: \`${onProf.file}\``,
          '',
          ...formatProfile(onProf.summary, 15),
        ]);
        if (offProf !== undefined)
          sections.push([
            `**What full telemetry adds per request** (profiles of both processes, ${offProf.whole || onProf.whole ? 'start-up included' : 'the rounds only'}; \`${offProf.file}\`)`,
            '',
            ...formatProfileDiff(
              ['off', 'full'],
              offProf.summary,
              offProf.requests,
              onProf.summary,
              onProf.requests,
              20,
            ),
          ]);
      }
    }
  } finally {
    await procs.cleanup();
  }
  printSections(sections, parsed.markdown, out);
  return 0;
}

runMain('bench:telemetry', main);
