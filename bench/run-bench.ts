/**
 * `npm run bench`: wrk against a 64-byte backend, directly and through nginx, HAProxy and meshlet.
 * See bench/README.md for what the numbers mean.
 */
import { writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, release } from 'node:os';
import { resolve } from 'node:path';
import { type BenchOptions, parseBenchArgs, USAGE } from './args.ts';
import { BENCH_HOST } from './configs.ts';
import { sample, usage } from './cpu.ts';
import { capture, Processes, parseCpuList } from './procs.ts';
import {
  findExecutable,
  type Pinning,
  READY_TIMEOUT_MS,
  type RunningTarget,
  type StartContext,
  startBackend,
  startTarget,
  type TargetName,
} from './proxies.ts';
import {
  type BenchReport,
  formatLatency,
  formatMarkdown,
  formatRps,
  formatText,
  type RoundResult,
  summarizeTarget,
  type TargetReport,
  withRatios,
} from './report.ts';
import {
  describeTelemetry,
  formatScrapes,
  type LogTally,
  mergeScrapes,
  type RunningSink,
  SCRAPE_PATHS,
  type ScrapeTally,
  startOtlpSink,
  startScrapes,
  TELEMETRY_OFF,
  takeAccessLog,
} from './telemetry.ts';
import { runWrk, type WrkRun, wrkCommandLine } from './wrk.ts';

const out = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

async function detectPinning(): Promise<{ pinning: Pinning | undefined; text: string }> {
  if (findExecutable('taskset') === undefined)
    return { pinning: undefined, text: 'none (taskset not found)' };
  const affinity = (await capture('taskset', ['-pc', String(process.pid)])) ?? '';
  const list = parseCpuList(affinity.split(':').at(-1) ?? '');
  const allowed = list.length > 0 ? list : [...Array(availableParallelism()).keys()];
  const [loadCpu, proxyCpu] = allowed;
  if (loadCpu === undefined || proxyCpu === undefined) {
    return { pinning: undefined, text: `none (only ${allowed.length} CPU available)` };
  }
  return {
    pinning: { loadCpu, proxyCpu },
    text: `wrk + backend on CPU ${loadCpu}; the measured proxy alone on CPU ${proxyCpu} (taskset -c)`,
  };
}

async function version(
  bin: string | undefined,
  args: string[],
  pattern: RegExp,
  missing: string,
): Promise<string> {
  if (bin === undefined) return missing;
  const text = (await capture(bin, args)) ?? '';
  const m = pattern.exec(text);
  return m?.[1] ?? (text.split('\n')[0] || missing);
}

function shellQuote(a: string): string {
  return /^[\w./:=,@-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const parsed = parseBenchArgs(argv);
  if (!parsed.ok) {
    if (parsed.message !== '') process.stderr.write(`bench: ${parsed.message}\n\n`);
    process.stderr.write(USAGE);
    return parsed.message === '' ? 0 : 2;
  }
  const opts = parsed.options;
  const wrkBin = findExecutable('wrk');
  if (wrkBin === undefined) {
    process.stderr.write('bench: wrk is required (e.g. apt-get install wrk); nothing was run.\n');
    return 2;
  }
  const command =
    process.env['npm_lifecycle_event'] === 'bench'
      ? `npm run bench${argv.length > 0 ? ` -- ${argv.map(shellQuote).join(' ')}` : ''}`
      : ['node', process.argv[1] ?? 'run-bench.js', ...argv].map(shellQuote).join(' ');

  const procs = new Processes();
  let stopping = false;
  const onSignal = (sig: NodeJS.Signals, code: number): void => {
    if (stopping) {
      procs.cleanupSync();
      process.exit(code);
    }
    stopping = true;
    process.stderr.write(`\nbench: ${sig}, stopping everything it started…\n`);
    void procs.cleanup().finally(() => process.exit(code));
  };
  process.on('SIGINT', () => onSignal('SIGINT', 130));
  process.on('SIGTERM', () => onSignal('SIGTERM', 143));
  process.on('SIGHUP', () => onSignal('SIGHUP', 129));
  process.on('exit', () => procs.cleanupSync());

  // Every step is bounded on its own; this is the backstop for the whole run.
  const n = opts.targets.length;
  const budgetSec =
    30 +
    (n + 1) * (READY_TIMEOUT_MS / 1000 + 5) +
    n * (opts.warmupSec + 15) +
    n * opts.rounds * (opts.durationSec + 15);
  const watchdog = setTimeout(() => {
    process.stderr.write(`bench: still running after ${budgetSec} s; giving up.\n`);
    procs.cleanupSync();
    process.exit(3);
  }, budgetSec * 1000);
  watchdog.unref();

  try {
    return await bench(procs, opts, wrkBin, command);
  } catch (err) {
    // Interrupted mid-start: the signal handler is already stopping everything and will exit.
    if (procs.closed) return 130;
    throw err;
  } finally {
    clearTimeout(watchdog);
    await procs.cleanup();
  }
}

async function bench(procs: Processes, opts: BenchOptions, wrkBin: string, command: string): Promise<number> {
  const loadBefore = loadavg()[0] ?? 0;
  const { pinning, text: pinningText } = await detectPinning();
  const nginxBin = findExecutable('nginx');
  const haproxyBin = findExecutable('haproxy');
  let sink: Promise<RunningSink> | undefined;
  const ctx: StartContext = {
    procs,
    pinning,
    ports: new Set<number>(),
    nginxBin,
    haproxyBin,
    meshletCli: resolve(opts.meshletCli ?? 'dist/src/cli.js'),
    repoRoot: process.cwd(),
    // Started only when a full-telemetry target runs; on the load CPU, like wrk and the backend.
    otlpSink: () => {
      sink ??= startOtlpSink(procs, ctx.ports, pinning?.loadCpu, READY_TIMEOUT_MS);
      return sink;
    },
  };
  const [nginxV, haproxyV, wrkV] = await Promise.all([
    version(nginxBin, ['-v'], /(nginx\/\S+)/, 'nginx not installed'),
    version(haproxyBin, ['-v'], /HAProxy version (\S+)/, 'haproxy not installed'),
    version(wrkBin, ['-v'], /^(wrk \S+)/, 'wrk'),
  ]);
  out(`pinning: ${pinningText}`);
  const ticksPerSec = Number((await capture('getconf', ['CLK_TCK'])) ?? '') || 100;

  const backend = await startBackend(ctx);
  out(`backend: ${backend.kind} on 127.0.0.1:${backend.port}`);
  const telemetryText = telemetryNote(opts.targets);
  out(`telemetry: ${telemetryText}`);

  const running: RunningTarget[] = [];
  const skipped = new Map<TargetName, string>();
  for (const name of opts.targets) {
    if (procs.closed) return 130;
    const r = await startTarget(ctx, name, backend.port);
    if (r.ok) {
      running.push(r.target);
      out(`${name}: ready on 127.0.0.1:${r.target.port}`);
    } else {
      skipped.set(name, r.reason);
      out(`${name}: SKIPPED, ${r.reason}`);
    }
  }

  const wrkRun = (port: number, durationSec: number): WrkRun => ({
    url: `http://127.0.0.1:${port}/`,
    host: BENCH_HOST,
    connections: opts.connections,
    durationSec,
    cpu: pinning?.loadCpu,
  });

  const results = new Map<TargetName, RoundResult[]>();
  // What the full-telemetry targets really did: access-log lines, requests (warm-up included), scrapes.
  const evidence = new Map<TargetName, { log: LogTally; requests: number; scrapes: ScrapeTally[] }>();
  const errors = new Map<TargetName, string[]>();
  const dead = new Set<TargetName>();
  for (let round = 1; round <= opts.rounds; round++) {
    for (const t of running) {
      if (procs.closed) return 130;
      if (dead.has(t.name)) continue;
      const errs = errors.get(t.name) ?? [];
      errors.set(t.name, errs);
      if (t.proc?.hasExited() === true) {
        errs.push(`process exited (${await t.proc.exited}) before round ${round}`);
        dead.add(t.name);
        out(`round ${round}/${opts.rounds} ${t.name}: process has exited, no more rounds`);
        continue;
      }
      try {
        const seen = evidence.get(t.name) ?? { log: { lines: 0, bytes: 0 }, requests: 0, scrapes: [] };
        if (round === 1 && opts.warmupSec > 0) {
          const warm = await runWrk(procs, wrkRun(t.port, opts.warmupSec));
          seen.requests += warm.requests;
        }
        const scrapes =
          t.telemetry === undefined ? undefined : startScrapes(t.telemetry.admin, SCRAPE_PATHS, 1000);
        const before = sample(t.proc?.child.pid, t.proc === undefined ? undefined : pinning?.proxyCpu);
        const w = await runWrk(procs, wrkRun(t.port, opts.durationSec));
        const after = sample(t.proc?.child.pid, t.proc === undefined ? undefined : pinning?.proxyCpu);
        const r: RoundResult = { ...w, ...usage(before, after, w.requests, ticksPerSec) };
        if (t.telemetry !== undefined && scrapes !== undefined) {
          const log = await takeAccessLog(t.telemetry.accessLogPath);
          evidence.set(t.name, {
            log: { lines: seen.log.lines + log.lines, bytes: seen.log.bytes + log.bytes },
            requests: seen.requests + w.requests,
            scrapes: mergeScrapes(seen.scrapes, await scrapes.stop()),
          });
        }
        const list = results.get(t.name) ?? [];
        list.push(r);
        results.set(t.name, list);
        const warn =
          r.non2xx + r.socketErrors > 0 ? ` (non-2xx ${r.non2xx}, socket errors ${r.socketErrors})` : '';
        const cost =
          r.usPerRequest === undefined
            ? ''
            : `  ${r.usPerRequest.toFixed(1)} µs CPU/req, proxy ${Math.round((r.proxyCores ?? 0) * 100)} %, other ${Math.round((r.otherOnProxyCpu ?? 0) * 100)} %`;
        out(
          `round ${round}/${opts.rounds} ${t.name.padEnd(20)} ${formatRps(r.requestsPerSec).padStart(8)} req/s  p50 ${formatLatency(r.p50Ms)}  p99 ${formatLatency(r.p99Ms)}${cost}${warn}`,
        );
      } catch (err) {
        if (procs.closed) return 130;
        const msg = err instanceof Error ? err.message : String(err);
        errs.push(`round ${round}: ${msg}`);
        out(`round ${round}/${opts.rounds} ${t.name}: FAILED, ${msg}`);
      }
    }
  }

  if (procs.closed) return 130;
  const notes = await telemetryEvidence(running, evidence, sink);
  const targets: TargetReport[] = opts.targets.map((name) => {
    const reason = skipped.get(name);
    if (reason !== undefined)
      return { name, status: 'skipped', reason, rounds: [], roundErrors: [], warnings: [] };
    const summary = summarizeTarget(name, results.get(name) ?? [], errors.get(name) ?? []);
    const n = notes.get(name);
    return n === undefined ? summary : { ...summary, notes: n };
  });
  const report: BenchReport = {
    date: new Date().toISOString(),
    command,
    wrkCommand: wrkCommandLine(wrkRun(0, opts.durationSec)).replace('127.0.0.1:0', '127.0.0.1:<port>'),
    settings: {
      durationSec: opts.durationSec,
      rounds: opts.rounds,
      connections: opts.connections,
      warmupSec: opts.warmupSec,
    },
    telemetry: telemetryText,
    machine: {
      cpus: availableParallelism(),
      cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
      kernel: release(),
      node: process.version,
      nginx: nginxV,
      haproxy: haproxyV.startsWith('haproxy') ? haproxyV : `haproxy ${haproxyV}`,
      wrk: wrkV,
      pinning: pinningText,
      backend: backend.kind,
      loadBefore,
    },
    targets: withRatios(targets),
  };
  out('');
  process.stdout.write(formatText(report));
  if (opts.json !== undefined) {
    writeFileSync(opts.json, `${JSON.stringify(report, null, 2)}\n`);
    out(`wrote ${opts.json}`);
  }
  if (opts.markdown !== undefined) {
    writeFileSync(opts.markdown, formatMarkdown(report));
    out(`wrote ${opts.markdown}`);
  }
  return 0;
}

/** How the meshlet targets among `targets` run their telemetry. */
function telemetryNote(targets: readonly TargetName[]): string {
  const meshlets = targets.filter((t) => t.startsWith('meshlet-'));
  if (meshlets.length === 0) return 'no meshlet target';
  const full = meshlets.filter((t) => t.endsWith('-telemetry'));
  const off = meshlets.filter((t) => !t.endsWith('-telemetry'));
  const parts: string[] = [];
  if (off.length > 0)
    parts.push(
      `${off.join(', ')} with ${describeTelemetry(TELEMETRY_OFF)}, as nginx and HAProxy run with their access logs off`,
    );
  if (full.length > 0)
    parts.push(
      `${full.join(', ')} with ${describeTelemetry({ mode: 'full', accessLogPath: '', tracingEndpoint: '', samplingPercent: 1 })}`,
    );
  return parts.join('; ');
}

/**
 * One note per full-telemetry target saying what it really exported, so that a figure measured
 * while some telemetry did not work (nothing logged, no spans, scrapes failing) shows it.
 */
async function telemetryEvidence(
  running: readonly RunningTarget[],
  evidence: ReadonlyMap<TargetName, { log: LogTally; requests: number; scrapes: ScrapeTally[] }>,
  sink: Promise<RunningSink> | undefined,
): Promise<Map<TargetName, string[]>> {
  const notes = new Map<TargetName, string[]>();
  const full = running.filter((t) => t.telemetry !== undefined);
  if (full.length === 0) return notes;
  // Spans wait up to the exporter's flush interval (1 s) before they are sent.
  await new Promise((r) => setTimeout(r, 1500));
  let spans = 'no spans received';
  try {
    const c = sink === undefined ? undefined : await (await sink).counts();
    if (c !== undefined) spans = `${c.spans.toLocaleString('en-US')} spans in ${c.posts} OTLP exports`;
  } catch (err) {
    spans = `the OTLP sink did not answer (${err instanceof Error ? err.message : String(err)})`;
  }
  for (const t of full) {
    const e = evidence.get(t.name);
    if (e === undefined || t.telemetry === undefined) continue;
    const rest = await takeAccessLog(t.telemetry.accessLogPath);
    const lines = e.log.lines + rest.lines;
    const perReq = e.requests === 0 ? 0 : lines / e.requests;
    notes.set(t.name, [
      `access log ${lines.toLocaleString('en-US')} lines for ${e.requests.toLocaleString('en-US')} requests (${perReq.toFixed(2)} per request, ${((e.log.bytes + rest.bytes) / 1e6).toFixed(1)} MB); ${spans}${full.length > 1 ? ' (all full-telemetry targets together)' : ''}; scrapes ${formatScrapes(e.scrapes)}`,
    ]);
  }
  return notes;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
