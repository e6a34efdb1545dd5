/**
 * Reading a V8 `.cpuprofile` (what `node --cpu-prof` writes): self time per function and per file,
 * as shares of the busy time, and the share of the telemetry code, to say what to optimize.
 */

export interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  /** 0-based. */
  readonly lineNumber: number;
}

export interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}

export interface CpuProfile {
  /** Monotonic clock (CLOCK_MONOTONIC on Linux, the clock of `process.hrtime`), in µs. */
  readonly startTime?: number;
  readonly nodes: readonly ProfileNode[];
  /** The node id on top of the stack at each sample. */
  readonly samples: readonly number[];
  /** Microseconds since the previous sample, one per sample. */
  readonly timeDeltas: readonly number[];
}

export interface Share {
  readonly name: string;
  readonly selfUs: number;
  /** Of the busy time (everything but `(idle)`). */
  readonly share: number;
}

export interface ProfileSummary {
  readonly busyUs: number;
  /** Samples counted (after `fromUs`, idle ones included) out of all samples. */
  readonly samples: number;
  readonly totalSamples: number;
  /** Self time per function, largest first. */
  readonly frames: readonly Share[];
  /** Self time per source file (or per pseudo-frame such as `(garbage collector)`), largest first. */
  readonly files: readonly Share[];
  /**
   * Per part of the telemetry (see {@link telemetryPart}), largest first: the time with that part
   * anywhere on the stack, so what it calls (JSON.stringify, writes, allocation) counts too.
   */
  readonly telemetry: readonly Share[];
  /** The time with any telemetry code on the stack (each sample once). */
  readonly telemetryShare: number;
}

/** `file:///…/dist/src/telemetry/access-log.js` → `src/telemetry/access-log.js`; node_modules paths from the package. */
export function shortUrl(url: string): string {
  const path = url.replace(/^file:\/\//, '');
  const nm = path.lastIndexOf('/node_modules/');
  if (nm !== -1) return path.slice(nm + '/node_modules/'.length);
  const dist = path.lastIndexOf('/dist/');
  if (dist !== -1) return path.slice(dist + '/dist/'.length);
  return path;
}

/** Which part of the telemetry a file belongs to; undefined for the rest of the proxy. */
export function telemetryPart(file: string): string | undefined {
  if (file.startsWith('prom-client/')) return 'prom-client (metrics)';
  if (file.startsWith('hdr-histogram-js/')) return 'hdr-histogram-js (live stats)';
  const m = /^src\/telemetry\/([^/]+?)\.[jt]s$/.exec(file);
  return m === null ? undefined : `src/telemetry/${m[1]}`;
}

function jsName(f: CallFrame): string {
  return `${f.functionName || '(anonymous)'} ${shortUrl(f.url)}:${f.lineNumber + 1}`;
}

function ranked(m: ReadonlyMap<string, number>, busyUs: number): Share[] {
  return [...m.entries()]
    .map(([name, selfUs]) => ({ name, selfUs, share: busyUs > 0 ? selfUs / busyUs : 0 }))
    .sort((a, b) => b.selfUs - a.selfUs || a.name.localeCompare(b.name));
}

/**
 * Summarizes the samples taken at or after `fromUs` (same clock as the profile's `startTime`; all
 * samples without it), so that start-up can be left out.
 */
export function summarizeProfile(profile: CpuProfile, fromUs?: number): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  // A native function (no URL, e.g. `writeBuffer`) is named after the JavaScript function that called
  // it, since the same one serves different callers (a socket write and a file write).
  const nativeName = (id: number): string => {
    const node = byId.get(id);
    const name = node?.callFrame.functionName || '(anonymous)';
    if (name.startsWith('(')) return name;
    for (let up = parent.get(id); up !== undefined; up = parent.get(up)) {
      const caller = byId.get(up)?.callFrame;
      if (caller !== undefined && caller.url !== '') return `${name} ← ${jsName(caller)}`;
    }
    return name;
  };
  // The telemetry parts on each node's stack, computed once per node.
  const stackParts = new Map<number, readonly string[]>();
  const partsOf = (id: number): readonly string[] => {
    const known = stackParts.get(id);
    if (known !== undefined) return known;
    const node = byId.get(id);
    const up = parent.get(id);
    const above = up === undefined ? [] : partsOf(up);
    const own = node === undefined ? undefined : telemetryPart(shortUrl(node.callFrame.url));
    const list = own === undefined || above.includes(own) ? above : [...above, own];
    stackParts.set(id, list);
    return list;
  };
  const frames = new Map<string, number>();
  const files = new Map<string, number>();
  const parts = new Map<string, number>();
  let busyUs = 0;
  let telemetryUs = 0;
  let counted = 0;
  let at = profile.startTime ?? 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (fromUs !== undefined && at < fromUs) continue;
    counted++;
    const node = byId.get(profile.samples[i] ?? -1);
    const us = Math.max(0, delta);
    if (node === undefined || node.callFrame.functionName === '(idle)') continue;
    busyUs += us;
    const { functionName, url } = node.callFrame;
    const file = url === '' ? '' : shortUrl(url);
    const frame = file === '' ? nativeName(node.id) : jsName(node.callFrame);
    frames.set(frame, (frames.get(frame) ?? 0) + us);
    const fileKey = file === '' ? (functionName.startsWith('(') ? functionName : '(native)') : file;
    files.set(fileKey, (files.get(fileKey) ?? 0) + us);
    const onStack = partsOf(node.id);
    for (const part of onStack) parts.set(part, (parts.get(part) ?? 0) + us);
    if (onStack.length > 0) telemetryUs += us;
  }
  const telemetry = ranked(parts, busyUs);
  return {
    busyUs,
    samples: counted,
    totalSamples: profile.samples.length,
    frames: ranked(frames, busyUs),
    files: ranked(files, busyUs),
    telemetry,
    telemetryShare: busyUs > 0 ? telemetryUs / busyUs : 0,
  };
}

/** Markdown tables of the top `n` functions and files and the telemetry parts. */
export function formatProfile(s: ProfileSummary, n: number): string[] {
  const pct = (x: number): string => `${(x * 100).toFixed(1)} %`;
  const table = (title: string, rows: readonly Share[]): string[] => [
    `| ${title} | self time |`,
    '|---|---:|',
    ...rows.map((r) => `| \`${r.name.replace(/\|/g, '\\|')}\` | ${pct(r.share)} |`),
  ];
  return [
    `Shares of busy time (${(s.busyUs / 1e6).toFixed(1)} s busy, ${s.samples.toLocaleString('en-US')} of ${s.totalSamples.toLocaleString('en-US')} samples). Sampled on the wall clock: time the main thread waits for the CPU (taken by the thread pool writing the file, or by other processes) counts for the function it waits in.`,
    '',
    `Telemetry code (src/telemetry, prom-client, hdr-histogram-js) on the stack: **${pct(s.telemetryShare)}**, what it calls included (garbage collection is not: it shows as its own frame).`,
    '',
    ...table('telemetry part (on the stack)', s.telemetry).map((l) => l.replace('self time', 'time')),
    '',
    ...table(`top ${n} functions`, s.frames.slice(0, n)),
    '',
    ...table(`top ${n} files`, s.files.slice(0, n)),
  ];
}

export interface FrameDiff {
  readonly name: string;
  /** Self time per request, µs, in the baseline and in the compared profile. */
  readonly baseUsPerRequest: number;
  readonly usPerRequest: number;
}

/**
 * Self time per request of each function in `base` (served `baseRequests`) and in `other` (served
 * `otherRequests`), largest increase first: what the compared configuration adds per request.
 */
export function diffProfiles(
  base: ProfileSummary,
  baseRequests: number,
  other: ProfileSummary,
  otherRequests: number,
): FrameDiff[] {
  const per = (us: number, n: number): number => (n > 0 ? us / n : 0);
  const rows = new Map<string, { base: number; other: number }>();
  for (const f of base.frames) rows.set(f.name, { base: per(f.selfUs, baseRequests), other: 0 });
  for (const f of other.frames) {
    const r = rows.get(f.name) ?? { base: 0, other: 0 };
    r.other = per(f.selfUs, otherRequests);
    rows.set(f.name, r);
  }
  return [...rows.entries()]
    .map(([name, r]) => ({ name, baseUsPerRequest: r.base, usPerRequest: r.other }))
    .sort(
      (a, b) =>
        b.usPerRequest - b.baseUsPerRequest - (a.usPerRequest - a.baseUsPerRequest) ||
        a.name.localeCompare(b.name),
    );
}

/** A Markdown table of the `n` largest increases per request, after the busy time per request of each side. */
export function formatProfileDiff(
  labels: readonly [string, string],
  base: ProfileSummary,
  baseRequests: number,
  other: ProfileSummary,
  otherRequests: number,
  n: number,
): string[] {
  const us = (x: number): string => x.toFixed(2);
  const busy = (s: ProfileSummary, r: number): string => (r > 0 ? (s.busyUs / r).toFixed(1) : '—');
  const rows = diffProfiles(base, baseRequests, other, otherRequests).slice(0, n);
  return [
    `Busy time per request in the profiles: ${labels[0]} ${busy(base, baseRequests)} µs, ${labels[1]} ${busy(other, otherRequests)} µs. The ${n} functions whose self time per request grew most:`,
    '',
    `| function | ${labels[0]} µs/req | ${labels[1]} µs/req | added |`,
    '|---|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| \`${r.name.replace(/\|/g, '\\|')}\` | ${us(r.baseUsPerRequest)} | ${us(r.usPerRequest)} | ${us(r.usPerRequest - r.baseUsPerRequest)} |`,
    ),
  ];
}
