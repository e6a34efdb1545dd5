/** Medians, ratios to nginx, and the text / Markdown / JSON report. */
import type { CpuUsage } from './cpu.ts';
import type { TargetName } from './proxies.ts';
import type { WrkResult } from './wrk.ts';

/** One wrk round plus what /proc said about the proxy's CPU meanwhile. */
export type RoundResult = WrkResult & CpuUsage;

export interface Medians {
  readonly requestsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly usPerRequest?: number;
  readonly proxyCores?: number;
  readonly otherOnProxyCpu?: number;
}

export interface TargetReport {
  readonly name: TargetName;
  /** `skipped`: never started; `failed`: started but no round succeeded. */
  readonly status: 'measured' | 'skipped' | 'failed';
  readonly reason?: string;
  /** Successful rounds, in order. */
  readonly rounds: readonly RoundResult[];
  /** One line per failed round. */
  readonly roundErrors: readonly string[];
  readonly median?: Medians;
  /** req/s ÷ nginx req/s (higher is better). */
  readonly rpsRatio?: number;
  /** p99 ÷ nginx p99 (lower is better). */
  readonly p99Ratio?: number;
  /** Things that make the figures suspect: non-2xx responses, socket errors. */
  readonly warnings: readonly string[];
  /** Facts about the run worth a line under the table (e.g. what the telemetry exported). */
  readonly notes?: readonly string[];
}

export interface MachineFacts {
  readonly cpus: number;
  readonly cpuModel: string;
  readonly kernel: string;
  readonly node: string;
  readonly nginx: string;
  readonly haproxy: string;
  readonly wrk: string;
  readonly pinning: string;
  readonly backend: string;
  /** 1-minute load average before the bench started anything: other work on a shared machine. */
  readonly loadBefore: number;
}

export interface BenchReport {
  readonly date: string;
  readonly command: string;
  readonly wrkCommand: string;
  readonly settings: {
    readonly durationSec: number;
    readonly rounds: number;
    readonly connections: number;
    readonly warmupSec: number;
  };
  readonly machine: MachineFacts;
  /** How the meshlet targets ran their telemetry (access log, tracing), since it changes their cost. */
  readonly telemetry?: string;
  readonly targets: readonly TargetReport[];
}

/** Median; the mean of the two middle values for an even count. NaN for an empty list. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const hi = sorted[mid] ?? Number.NaN;
  return sorted.length % 2 === 1 ? hi : ((sorted[mid - 1] ?? Number.NaN) + hi) / 2;
}

/** Each metric's median across rounds, taken independently. */
export function medians(rounds: readonly RoundResult[]): Medians | undefined {
  if (rounds.length === 0) return undefined;
  const optional = (pick: (r: RoundResult) => number | undefined): number | undefined => {
    const values = rounds.map(pick).filter((v): v is number => v !== undefined);
    return values.length === 0 ? undefined : median(values);
  };
  const usPerRequest = optional((r) => r.usPerRequest);
  const proxyCores = optional((r) => r.proxyCores);
  const otherOnProxyCpu = optional((r) => r.otherOnProxyCpu);
  return {
    requestsPerSec: median(rounds.map((r) => r.requestsPerSec)),
    p50Ms: median(rounds.map((r) => r.p50Ms)),
    p99Ms: median(rounds.map((r) => r.p99Ms)),
    ...(usPerRequest === undefined ? {} : { usPerRequest }),
    ...(proxyCores === undefined ? {} : { proxyCores }),
    ...(otherOnProxyCpu === undefined ? {} : { otherOnProxyCpu }),
  };
}

/** Build one target's report from its rounds. */
export function summarizeTarget(
  name: TargetName,
  rounds: readonly RoundResult[],
  roundErrors: readonly string[],
): TargetReport {
  const warnings: string[] = [];
  const non2xx = rounds.reduce((s, r) => s + r.non2xx, 0);
  const sockErr = rounds.reduce((s, r) => s + r.socketErrors, 0);
  if (non2xx > 0)
    warnings.push(`${non2xx} non-2xx/3xx responses: req/s counts error answers, figures not valid`);
  if (sockErr > 0) warnings.push(`${sockErr} socket errors (connect/read/write/timeout)`);
  const m = medians(rounds);
  if (m === undefined) {
    return {
      name,
      status: 'failed',
      reason: roundErrors.at(-1) ?? 'no round succeeded',
      rounds,
      roundErrors,
      warnings,
    };
  }
  return { name, status: 'measured', rounds, roundErrors, median: m, warnings };
}

/** Add the ratios to the nginx row (when nginx was measured). */
export function withRatios(targets: readonly TargetReport[]): TargetReport[] {
  const base = targets.find((t) => t.name === 'nginx')?.median;
  return targets.map((t) =>
    base === undefined || t.median === undefined
      ? t
      : {
          ...t,
          rpsRatio: t.median.requestsPerSec / base.requestsPerSec,
          p99Ratio: t.median.p99Ms / base.p99Ms,
        },
  );
}

export function formatRps(rps: number): string {
  return Math.round(rps).toLocaleString('en-US');
}

/** Milliseconds as wrk would print them: µs below 1 ms. */
export function formatLatency(ms: number): string {
  if (ms < 1) return `${Math.round(ms * 1000)} µs`;
  if (ms < 1000) return `${ms.toFixed(2)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

export function formatRatio(r: number | undefined): string {
  return r === undefined ? '—' : `${r.toFixed(2)}×`;
}

const HEADERS = [
  'target',
  'req/s (median)',
  'p50',
  'p99',
  'req/s ÷ nginx',
  'p99 ÷ nginx',
  'CPU µs/req',
  'proxy CPU',
  'other load on its CPU',
  'req/s per round',
];

const pct = (v: number | undefined): string => (v === undefined ? '—' : `${Math.round(v * 100)} %`);

function rows(report: BenchReport): string[][] {
  return report.targets.map((t) => {
    if (t.median === undefined) {
      return [t.name, t.status === 'skipped' ? 'skipped' : 'failed', ...HEADERS.slice(2).map(() => '—')];
    }
    const flag = t.warnings.length > 0 ? ' (!)' : '';
    return [
      t.name,
      `${formatRps(t.median.requestsPerSec)}${flag}`,
      formatLatency(t.median.p50Ms),
      formatLatency(t.median.p99Ms),
      formatRatio(t.rpsRatio),
      formatRatio(t.p99Ratio),
      t.median.usPerRequest === undefined ? '—' : t.median.usPerRequest.toFixed(1),
      pct(t.median.proxyCores),
      pct(t.median.otherOnProxyCpu),
      t.rounds.map((r) => formatRps(r.requestsPerSec)).join(' / '),
    ];
  });
}

function machineLines(report: BenchReport): string[] {
  const m = report.machine;
  const s = report.settings;
  return [
    `date: ${report.date}`,
    `machine: ${m.cpus} CPUs (${m.cpuModel}), Linux ${m.kernel}`,
    `versions: node ${m.node}; ${m.nginx}; ${m.haproxy}; ${m.wrk}`,
    `pinning: ${m.pinning}`,
    `load average before the run: ${m.loadBefore.toFixed(2)}${m.loadBefore >= 0.5 ? ' (other work was running: expect noise)' : ''}`,
    `backend: ${m.backend}, 64-byte body`,
    ...(report.telemetry === undefined ? [] : [`telemetry: ${report.telemetry}`]),
    `load: ${s.connections} keep-alive connections, ${s.rounds} alternating rounds of ${s.durationSec} s, ${s.warmupSec} s warm-up per target`,
    `command: ${report.command}`,
    `wrk: ${report.wrkCommand}`,
  ];
}

function noteLines(report: BenchReport): string[] {
  const out: string[] = [];
  for (const t of report.targets) {
    if (t.status !== 'measured') out.push(`${t.name}: ${t.status} (${t.reason ?? 'unknown reason'})`);
    for (const e of t.roundErrors) if (t.status === 'measured') out.push(`${t.name}: a round failed: ${e}`);
    for (const w of t.warnings) out.push(`${t.name}: ${w}`);
    for (const n of t.notes ?? []) out.push(`${t.name}: ${n}`);
  }
  return out;
}

export function formatText(report: BenchReport): string {
  const table = [HEADERS, ...rows(report)];
  const widths = HEADERS.map((_, i) => Math.max(...table.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string =>
    r
      .map((cell, i) =>
        i === 0 || i === r.length - 1 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0),
      )
      .join('  ')
      .trimEnd();
  const out = [
    ...machineLines(report),
    '',
    line(table[0] ?? []),
    widths.map((w) => '-'.repeat(w)).join('  '),
    ...table.slice(1).map(line),
  ];
  const notes = noteLines(report);
  if (notes.length > 0) out.push('', ...notes);
  out.push('', 'Medians of alternating rounds; the machine is noisy: compare ratios, not absolute numbers.');
  return `${out.join('\n')}\n`;
}

export function formatMarkdown(report: BenchReport): string {
  const cell = (s: string): string => s.replace(/\|/g, '\\|');
  const out = [
    ...machineLines(report).map((l) => {
      const i = l.indexOf(': ');
      return `- **${l.slice(0, i)}**: ${l.startsWith('command') || l.startsWith('wrk') ? `\`${l.slice(i + 2)}\`` : l.slice(i + 2)}`;
    }),
    '',
    `| ${HEADERS.join(' | ')} |`,
    `|${HEADERS.map((_, i) => (i === 0 || i === HEADERS.length - 1 ? '---' : '---:')).join('|')}|`,
    ...rows(report).map((r) => `| ${r.map(cell).join(' | ')} |`),
  ];
  const notes = noteLines(report);
  if (notes.length > 0) out.push('', ...notes.map((n) => `- ${n}`));
  return `${out.join('\n')}\n`;
}
