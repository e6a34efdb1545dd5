/**
 * CPU accounting from /proc (Linux), to make the numbers readable on a noisy machine:
 * - how much CPU the measured proxy used (all processes of its group, e.g. nginx master + worker);
 * - its CPU cost per request, which preemption by other work disturbs much less than req/s;
 * - how busy its CPU was with other work during the round.
 * Everything returns undefined where /proc is not available.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Fields after the `(comm)` of /proc/<pid>/stat, starting at field 3 (state). */
function statFields(text: string): string[] | undefined {
  const close = text.lastIndexOf(')');
  return close < 0 ? undefined : text.slice(close + 2).split(' ');
}

/** utime + stime (clock ticks) of every process whose process group is `pgid`. */
export function groupCpuTicks(pgid: number, procRoot = '/proc'): number | undefined {
  let entries: string[];
  try {
    entries = readdirSync(procRoot);
  } catch {
    return undefined;
  }
  let total = 0;
  let found = false;
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let text: string;
    try {
      text = readFileSync(`${procRoot}/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    const f = statFields(text);
    // f[2] is field 5 (pgrp); f[11], f[12] are fields 14, 15 (utime, stime).
    if (f === undefined || Number(f[2]) !== pgid) continue;
    total += Number(f[11] ?? 0) + Number(f[12] ?? 0);
    found = true;
  }
  return found ? total : undefined;
}

export interface CpuTimes {
  readonly busy: number;
  readonly total: number;
}

/** Busy and total ticks of one CPU from /proc/stat. */
export function parseProcStat(text: string, cpu: number): CpuTimes | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`cpu${cpu} `));
  if (line === undefined) return undefined;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user).
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: total - idle, total };
}

export function cpuTimes(cpu: number, path = '/proc/stat'): CpuTimes | undefined {
  try {
    return parseProcStat(readFileSync(path, 'utf8'), cpu);
  } catch {
    return undefined;
  }
}

export interface CpuSample {
  readonly at: number;
  readonly proxyTicks: number | undefined;
  readonly cpu: CpuTimes | undefined;
}

export interface CpuUsage {
  /** Proxy CPU time ÷ wall time (1 = one full core). */
  readonly proxyCores?: number;
  /** Proxy CPU microseconds per request. */
  readonly usPerRequest?: number;
  /** Share of the proxy's CPU spent on anything but the proxy (other processes, interrupts). */
  readonly otherOnProxyCpu?: number;
}

export function sample(pgid: number | undefined, cpu: number | undefined): CpuSample {
  return {
    at: Date.now(),
    proxyTicks: pgid === undefined ? undefined : groupCpuTicks(pgid),
    cpu: cpu === undefined ? undefined : cpuTimes(cpu),
  };
}

/** What happened between two samples, for a round that served `requests` requests. */
export function usage(before: CpuSample, after: CpuSample, requests: number, ticksPerSec: number): CpuUsage {
  const wallSec = (after.at - before.at) / 1000;
  const out: { proxyCores?: number; usPerRequest?: number; otherOnProxyCpu?: number } = {};
  let proxyTicks: number | undefined;
  if (before.proxyTicks !== undefined && after.proxyTicks !== undefined && wallSec > 0) {
    proxyTicks = after.proxyTicks - before.proxyTicks;
    out.proxyCores = proxyTicks / ticksPerSec / wallSec;
    if (requests > 0) out.usPerRequest = ((proxyTicks / ticksPerSec) * 1e6) / requests;
  }
  if (before.cpu !== undefined && after.cpu !== undefined) {
    const total = after.cpu.total - before.cpu.total;
    const busy = after.cpu.busy - before.cpu.busy;
    if (total > 0) out.otherOnProxyCpu = Math.max(0, (busy - (proxyTicks ?? 0)) / total);
  }
  return out;
}
