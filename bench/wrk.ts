/** Running wrk and reading its `--latency` report. */
import type { Processes } from './procs.ts';

export interface WrkResult {
  readonly requestsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly requests: number;
  /** connect + read + write + timeout socket errors. */
  readonly socketErrors: number;
  readonly non2xx: number;
}

const UNIT_MS: Readonly<Record<string, number>> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `353.00us` → 0.353 (milliseconds). Returns undefined for anything else. */
export function parseWrkDuration(text: string): number | undefined {
  const m = /^([0-9]+(?:\.[0-9]+)?)(us|ms|s|m|h)$/.exec(text.trim());
  if (m === null) return undefined;
  const factor = UNIT_MS[m[2] ?? ''];
  return factor === undefined ? undefined : Number(m[1]) * factor;
}

/** Parse wrk's text report (run with `--latency`). Throws when the figures we need are missing. */
export function parseWrkOutput(text: string): WrkResult {
  const rps = /^Requests\/sec:\s+([0-9.]+)/m.exec(text);
  if (rps === null) throw new Error('wrk output has no "Requests/sec:" line');
  const percentile = (p: string): number => {
    const m = new RegExp(`^\\s*${p}%\\s+(\\S+)\\s*$`, 'm').exec(text);
    const v = m === null ? undefined : parseWrkDuration(m[1] ?? '');
    if (v === undefined) throw new Error(`wrk output has no ${p}% latency (was --latency given?)`);
    return v;
  };
  const requests = /^\s*(\d+) requests in /m.exec(text);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const socketErrors =
    sock === null ? 0 : [sock[1], sock[2], sock[3], sock[4]].reduce((sum, v) => sum + Number(v ?? 0), 0);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(text);
  return {
    requestsPerSec: Number(rps[1]),
    p50Ms: percentile('50'),
    p99Ms: percentile('99'),
    requests: requests === null ? 0 : Number(requests[1]),
    socketErrors,
    non2xx: non2xx === null ? 0 : Number(non2xx[1]),
  };
}

export interface WrkRun {
  readonly url: string;
  readonly host: string;
  readonly connections: number;
  readonly durationSec: number;
  /** Pin wrk to this CPU; undefined = unpinned. */
  readonly cpu: number | undefined;
}

export function wrkArgs(run: WrkRun): string[] {
  return [
    '-t1',
    `-c${run.connections}`,
    `-d${run.durationSec}s`,
    '--latency',
    '--timeout',
    '2s',
    '-H',
    `Host: ${run.host}`,
    run.url,
  ];
}

/** The command line as a shell user would type it, for the report. */
export function wrkCommandLine(run: WrkRun): string {
  const args = wrkArgs(run).map((a) => (/^[\w./:=,@-]+$/.test(a) ? a : `'${a}'`));
  const pin = run.cpu === undefined ? '' : `taskset -c ${run.cpu} `;
  return `${pin}wrk ${args.join(' ')}`;
}

/** Run wrk once (bounded: duration + 15 s) and parse its report. */
export async function runWrk(procs: Processes, run: WrkRun): Promise<WrkResult> {
  const p = procs.spawn('wrk', 'wrk', wrkArgs(run), { cpu: run.cpu });
  const limitMs = (run.durationSec + 15) * 1000;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), limitMs);
  });
  const outcome = await Promise.race([p.exited, timedOut]);
  clearTimeout(timer);
  if (outcome === 'timeout') {
    await procs.stop(p, 500);
    throw new Error(`wrk did not finish within ${limitMs / 1000} s`);
  }
  if (outcome !== 'code 0') throw new Error(`wrk exited with ${outcome}: ${p.outputTail().slice(-300)}`);
  return parseWrkOutput(p.outputTail());
}
