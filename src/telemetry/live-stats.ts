/**
 * Live request rate, error rate and latency percentiles over sliding windows, per destination
 * service and per route, for admin `/stats` (the shape is in live-stats-types.ts).
 *
 * Each tracked key (reporter + service, reporter + route + service) owns a ring of one-second
 * slots; a slot holds a request count, an error count and an HDR histogram of that second's
 * latencies. Recording touches only the slot of the current second (one `recordValue` plus two
 * additions per key); a slot left over from an earlier lap of the ring is cleared when time first
 * moves into it again. The windows are merged from the slots only when a snapshot is asked for, so
 * the request path never pays for reading.
 */
import { Int32Histogram } from 'hdr-histogram-js';
import type {
  RecentError,
  RouteStats,
  ServiceStats,
  StatsSnapshot,
  WindowStats,
} from './live-stats-types.ts';
import { type ObservedRequest, type RequestObserver, upstreamHostOf } from './observed-request.ts';

/**
 * Latencies are recorded in units of 10 µs: sub-millisecond latencies stay resolved, and a
 * histogram's counts array (which grows with the largest value it has seen) stays about three
 * times smaller than in microseconds.
 */
const UNITS_PER_MS = 100;
/** Longer latencies are recorded as this (one hour): a bound on how far a histogram can grow. */
const MAX_UNITS = 3_600_000 * UNITS_PER_MS;
/** The longest window, in seconds. */
const MAX_WINDOW = 60;
/**
 * Slots per ring: a few more than the longest window, so that a second that has just left a window
 * is still intact when the next read subtracts it from that window's running sums (reads at most
 * RING - MAX_WINDOW seconds apart update incrementally; reads further apart sum afresh).
 */
const RING = 64;
const RECENT_ERRORS = 50;

export interface LiveStatsOptions {
  /** Monotonic clock in ms (the pipeline's `now`): which second a request lands in. */
  readonly now: () => number;
  /** Wall clock in ms (`Date.now`), for the times shown in the snapshot. */
  readonly wallClock?: () => number;
  /** Window lengths in seconds, each at most 60 (default [10, 60]). */
  readonly windows?: readonly number[];
  /** At most this many (reporter, service) keys are tracked (default 256). */
  readonly maxServices?: number;
  /** At most this many (reporter, route, service) keys are tracked (default 256). */
  readonly maxRoutes?: number;
}

/** One second of one key. */
interface Slot {
  /** The second (`floor(now / 1000)`) the counts belong to; -1: never used. */
  second: number;
  requests: number;
  errors: number;
  /** Allocated on the slot's first request, then reused lap after lap. */
  histogram: Int32Histogram | null;
}

/** Per-index histogram sums over the complete seconds of one window (kept between reads). */
interface WindowSums {
  counts: Float64Array;
  /** Indexes below this may be non-zero. */
  used: number;
}

class Series {
  readonly slots: Slot[] = [];
  /**
   * The current second at the last read: `sums[k]` then held the seconds of window k before it
   * (the complete ones; the current second's slot is added at each read). -1: never read.
   */
  readSecond = -1;
  /** The newest second a request was recorded in (-1: none yet): idle keys are let go. */
  last = -1;
  /** One per window, in ascending window order; created on the first read. */
  sums: WindowSums[] = [];

  constructor() {
    for (let i = 0; i < RING; i++) this.slots.push({ second: -1, requests: 0, errors: 0, histogram: null });
  }

  slotOf(second: number): Slot {
    return this.slots[((second % RING) + RING) % RING] as Slot;
  }

  record(second: number, units: number, error: boolean): void {
    const slot = this.slots[second % RING] as Slot;
    if (slot.second !== second) {
      slot.second = second;
      slot.requests = 0;
      slot.errors = 0;
      slot.histogram?.reset();
    }
    this.last = second;
    slot.requests++;
    if (error) slot.errors++;
    let h = slot.histogram;
    if (h === null) {
      h = newHistogram();
      slot.histogram = h;
    }
    h.recordValue(units);
  }
}

function newHistogram(): Int32Histogram {
  // Starts tiny and grows to the largest latency recorded. Two significant digits (values within
  // 1 %) are plenty for a live view and keep each histogram about four times smaller than three:
  // a busy key holds 64 of them.
  const h = new Int32Histogram(1, 2, 2);
  h.autoResize = true;
  return h;
}

interface ServiceEntry {
  readonly reporter: 'source' | 'destination';
  readonly service: string;
  readonly serviceName: string;
  readonly series: Series;
}

interface RouteEntry {
  readonly reporter: 'source' | 'destination';
  readonly route: string;
  readonly service: string;
  readonly series: Series;
}

/** A recent error as recorded: formatted only when a snapshot is taken. */
interface ErrorRecord {
  at: number;
  reporter: 'source' | 'destination';
  method: string;
  authority: string;
  path: string;
  status: number;
  flags: string;
  durationMs: number;
  upstreamHost: string;
  service: string;
}

/** Responses with status ≥ 500, or none at all, are errors (live-stats-types.ts). */
export function isError(code: number): boolean {
  return code >= 500 || code === 0;
}

export class LiveStats implements RequestObserver {
  private readonly now: () => number;
  private readonly wallClock: () => number;
  private readonly windows: readonly number[];
  private readonly maxServices: number;
  private readonly maxRoutes: number;
  private readonly startedAt: number;
  /** Per reporter: service FQDN → entry. Two maps instead of a joined key: no string per request. */
  private readonly services = {
    source: new Map<string, ServiceEntry>(),
    destination: new Map<string, ServiceEntry>(),
  };
  /** Per reporter: route name → service FQDN → entry. */
  private readonly routes = {
    source: new Map<string, Map<string, RouteEntry>>(),
    destination: new Map<string, Map<string, RouteEntry>>(),
  };
  private serviceCount = 0;
  /** The second of the last sweep for idle keys made because a cap was reached (one a second). */
  private sweptAt = -1;
  private routeCount = 0;
  /** Requests whose service or route was not tracked because the key cap was reached. */
  untrackedServices = 0;
  untrackedRoutes = 0;
  private readonly errors: ErrorRecord[] = [];
  /** Index the next error goes to in `errors` (a ring once it holds RECENT_ERRORS). */
  private errorNext = 0;
  /** Maps counts-array indexes to values: every histogram here shares the same index layout. */
  private readonly layout = newHistogram();
  /** `windows`, shortest first: each window's slots are a prefix of the next one's. */
  private readonly ascending: readonly number[];

  constructor(options: LiveStatsOptions) {
    this.now = options.now;
    this.wallClock = options.wallClock ?? Date.now;
    this.windows = options.windows ?? [10, 60];
    for (const w of this.windows)
      if (!Number.isInteger(w) || w < 1 || w > MAX_WINDOW)
        throw new Error(`window ${w}s: must be 1-${MAX_WINDOW} s`);
    this.ascending = [...new Set(this.windows)].sort((a, b) => a - b);
    this.maxServices = options.maxServices ?? 256;
    this.maxRoutes = options.maxRoutes ?? 256;
    this.startedAt = this.now();
  }

  observe(r: ObservedRequest, durationMs: number, code: number): void {
    const second = Math.floor(this.now() / 1000);
    let units = Math.round(durationMs * UNITS_PER_MS);
    if (!(units >= 0)) units = 0;
    else if (units > MAX_UNITS) units = MAX_UNITS;
    const error = isError(code);
    const reporter = r.reporter;
    const fqdn = r.peer.serviceFqdn;
    const byService = this.services[reporter];
    let service = byService.get(fqdn);
    if (service === undefined && this.serviceCount >= this.maxServices) this.sweepOnce(second);
    if (service === undefined && this.serviceCount < this.maxServices) {
      service = { reporter, service: fqdn, serviceName: r.peer.serviceName, series: new Series() };
      byService.set(fqdn, service);
      this.serviceCount++;
    }
    if (service === undefined) this.untrackedServices++;
    else service.series.record(second, units, error);
    const routeName = r.routeName;
    if (routeName !== '') {
      const byRoute = this.routes[reporter];
      let perService = byRoute.get(routeName);
      let route = perService?.get(fqdn);
      if (route === undefined && this.routeCount >= this.maxRoutes) this.sweepOnce(second);
      if (route === undefined && this.routeCount < this.maxRoutes) {
        if (perService === undefined) {
          perService = new Map();
          byRoute.set(routeName, perService);
        }
        route = { reporter, route: routeName, service: fqdn, series: new Series() };
        perService.set(fqdn, route);
        this.routeCount++;
      }
      if (route === undefined) this.untrackedRoutes++;
      else route.series.record(second, units, error);
    }
    if (error) this.recordError(r, durationMs, code);
  }

  /**
   * Lets go of the keys with no request in the whole ring (more than a minute): every window of
   * theirs is empty, and a service that is gone (a reload, passthrough hosts coming and going) must
   * neither show forever nor hold a place under the cap.
   */
  private sweep(second: number): void {
    const idle = (series: Series): boolean => series.last <= second - RING;
    for (const byService of [this.services.source, this.services.destination])
      for (const [fqdn, e] of byService)
        if (idle(e.series)) {
          byService.delete(fqdn);
          this.serviceCount--;
        }
    for (const byRoute of [this.routes.source, this.routes.destination])
      for (const [name, perService] of byRoute) {
        for (const [fqdn, e] of perService)
          if (idle(e.series)) {
            perService.delete(fqdn);
            this.routeCount--;
          }
        if (perService.size === 0) byRoute.delete(name);
      }
  }

  /** A sweep when a cap stops a new key, at most once a second (a flood of new keys stays cheap). */
  private sweepOnce(second: number): void {
    if (this.sweptAt === second) return;
    this.sweptAt = second;
    this.sweep(second);
  }

  private recordError(r: ObservedRequest, durationMs: number, code: number): void {
    const upstreamHost = upstreamHostOf(r);
    const record: ErrorRecord = {
      at: this.wallClock(),
      reporter: r.reporter,
      method: r.req.method,
      authority: r.authority,
      path: r.originalPath,
      status: code,
      flags: r.flags === '' ? '-' : r.flags,
      durationMs,
      upstreamHost,
      service: r.peer.serviceFqdn,
    };
    this.errors[this.errorNext] = record;
    this.errorNext = (this.errorNext + 1) % RECENT_ERRORS;
  }

  /** The `/stats` JSON. Merges the slots of every window: cost grows with the tracked keys. */
  snapshot(): StatsSnapshot {
    const now = this.now();
    this.sweep(Math.floor(now / 1000));
    const services: ServiceStats[] = [];
    for (const byService of [this.services.source, this.services.destination])
      for (const e of byService.values())
        services.push({
          reporter: e.reporter,
          service: e.service,
          service_name: e.serviceName,
          windows: this.windowsOf(e.series, now),
        });
    const routes: RouteStats[] = [];
    for (const byRoute of [this.routes.source, this.routes.destination])
      for (const perService of byRoute.values())
        for (const e of perService.values())
          routes.push({
            reporter: e.reporter,
            route: e.route,
            service: e.service,
            windows: this.windowsOf(e.series, now),
          });
    return {
      time: new Date(this.wallClock()).toISOString(),
      uptime_s: Math.round((now - this.startedAt) / 10) / 100,
      windows: this.windows,
      services,
      routes,
      recent_errors: this.recentErrors(),
    };
  }

  /** Keys tracked now, and requests left out because a cap was reached. */
  keys(): { services: number; routes: number; untrackedServices: number; untrackedRoutes: number } {
    return {
      services: this.serviceCount,
      routes: this.routeCount,
      untrackedServices: this.untrackedServices,
      untrackedRoutes: this.untrackedRoutes,
    };
  }

  private recentErrors(): RecentError[] {
    const out: RecentError[] = [];
    const n = this.errors.length;
    for (let i = 1; i <= n; i++) {
      const e = this.errors[(this.errorNext - i + n) % n] as ErrorRecord;
      out.push({
        time: new Date(e.at).toISOString(),
        reporter: e.reporter,
        method: e.method,
        authority: e.authority,
        path: e.path,
        status: e.status,
        flags: e.flags,
        duration_ms: round3(e.durationMs),
        upstream_host: e.upstreamHost,
        service: e.service,
      });
    }
    return out;
  }

  /**
   * Every window of one key. Each window keeps running per-index sums of its complete seconds
   * between reads: a read adds the seconds completed since the last one and subtracts those that
   * left, a few slots' worth of plain typed-array arithmetic, instead of summing up to 60 slots
   * again (the library's own `add` walks a whole counts array through method calls per slot; that
   * was most of the cost of /stats). Counts, errors and the maximum come from the slots directly.
   * Rates divide by the time the window really covers: the current second only as far as it has
   * gone, and at most the uptime (at least one second, so a fresh start shows no absurd rates).
   */
  private windowsOf(series: Series, now: number): Record<string, WindowStats> {
    const current = Math.floor(now / 1000);
    const ascending = this.ascending;
    const longest = ascending[ascending.length - 1] ?? 0;
    if (series.sums.length !== ascending.length)
      series.sums = ascending.map(() => ({ counts: new Float64Array(0), used: 0 }));
    const gap = current - series.readSecond;
    if (series.readSecond < 0 || gap < 0 || gap > RING - longest) {
      for (let k = 0; k < ascending.length; k++) {
        const sums = series.sums[k] as WindowSums;
        sums.counts.fill(0, 0, sums.used);
        sums.used = 0;
        const w = ascending[k] as number;
        for (let second = current - w + 1; second < current; second++) addSlot(sums, series, second, 1);
      }
    } else if (gap > 0) {
      for (let k = 0; k < ascending.length; k++) {
        const sums = series.sums[k] as WindowSums;
        const w = ascending[k] as number;
        const prev = series.readSecond;
        // Seconds that were current or ahead at the last read and are complete now …
        for (let second = Math.max(prev, current - w + 1); second < current; second++)
          addSlot(sums, series, second, 1);
        // … and those that have left the window since (still intact: gap ≤ RING - longest).
        for (let second = prev - w + 1; second <= Math.min(prev - 1, current - w); second++)
          addSlot(sums, series, second, -1);
      }
    }
    series.readSecond = current;

    const out: Record<string, WindowStats> = {};
    const uptime = (now - this.startedAt) / 1000;
    const into = (now - current * 1000) / 1000;
    const now0 = series.slotOf(current);
    const live = now0.second === current && now0.histogram !== null ? now0.histogram : null;
    let requests = 0;
    let errors = 0;
    let highest = 0;
    let next = 0;
    for (let age = 0; age < longest; age++) {
      const slot = series.slotOf(current - age);
      if (slot.second === current - age && slot.requests > 0) {
        requests += slot.requests;
        errors += slot.errors;
        const h = slot.histogram;
        if (h !== null && h.maxValue > highest) highest = h.maxValue;
      }
      while (next < ascending.length && ascending[next] === age + 1) {
        const seconds = age + 1;
        const covered = Math.max(1, Math.min(seconds - 1 + into, uptime));
        const sums = series.sums[next] as WindowSums;
        out[`${seconds}s`] = this.read(sums, live, requests, errors, highest, seconds, covered);
        next++;
      }
    }
    // In the order the windows were given.
    const ordered: Record<string, WindowStats> = {};
    for (const w of this.windows) {
      const stats = out[`${w}s`];
      if (stats !== undefined) ordered[`${w}s`] = stats;
    }
    return ordered;
  }

  /** One window's figures from its complete seconds' sums plus the current second's slot. */
  private read(
    sums: WindowSums,
    live: Int32Histogram | null,
    requests: number,
    errors: number,
    highest: number,
    seconds: number,
    covered: number,
  ): WindowStats {
    const counts = sums.counts;
    const liveCounts = live === null ? null : live._counts;
    const liveUsed = live === null ? 0 : usedLength(live);
    const used = Math.max(sums.used, liveUsed);
    // Every request of the window is one count: the total is the request count.
    const total = requests;
    let p50 = 0;
    let p90 = 0;
    let p99 = 0;
    let p999 = 0;
    if (total > 0) {
      // HDR's rank for a percentile: the count at or below which it lies, rounded, at least 1.
      const rank = (p: number): number => Math.max(1, Math.floor((p / 100) * total + 0.5));
      const r50 = rank(50);
      const r90 = rank(90);
      const r99 = rank(99);
      const r999 = rank(99.9);
      let seen = 0;
      for (let i = 0; i < used && seen < r999; i++) {
        let c = i < sums.used ? (counts[i] as number) : 0;
        if (liveCounts !== null && i < liveUsed) c += liveCounts[i] as number;
        if (c === 0) continue;
        const before = seen;
        seen += c;
        if (seen < r50) continue;
        const value = this.valueAt(i);
        if (before < r50) p50 = value;
        if (before < r90 && seen >= r90) p90 = value;
        if (before < r99 && seen >= r99) p99 = value;
        if (seen >= r999) p999 = value;
      }
    }
    // The slots' own maxima: exact, where the summed counts only know the bucket. A percentile is
    // the top of its bucket, which can pass the largest value recorded: it is capped there.
    const max = total === 0 ? 0 : round3(highest / UNITS_PER_MS);
    return {
      seconds,
      requests,
      rps: round3(requests / covered),
      errors,
      error_rate: requests === 0 ? 0 : round3(errors / requests),
      p50_ms: Math.min(p50, max),
      p90_ms: Math.min(p90, max),
      p99_ms: Math.min(p99, max),
      p999_ms: Math.min(p999, max),
      max_ms: max,
    };
  }

  /** The value (ms) a counts index stands for: the highest equivalent one, as HDR reports. */
  private valueAt(index: number): number {
    const l = this.layout;
    return round3(l.highestEquivalentValue(l.valueFromIndex(index)) / UNITS_PER_MS);
  }
}

/** How much of a histogram's counts array can be non-zero: up to the index of its maximum. */
function usedLength(h: Int32Histogram): number {
  return h.maxValue === 0 ? 0 : Math.min(h._counts.length, h.countsArrayIndex(h.maxValue) + 1);
}

/** Adds (sign 1) or subtracts (sign -1) one second's histogram to a window's sums. */
function addSlot(sums: WindowSums, series: Series, second: number, sign: 1 | -1): void {
  const slot = series.slotOf(second);
  const h = slot.histogram;
  if (slot.second !== second || slot.requests === 0 || h === null) return;
  const top = usedLength(h);
  if (top > sums.counts.length) {
    const grown = new Float64Array(Math.max(top, sums.counts.length * 2, 1024));
    grown.set(sums.counts);
    sums.counts = grown;
  }
  const counts = sums.counts;
  const from = h._counts;
  for (let i = 0; i < top; i++) counts[i] = (counts[i] as number) + sign * (from[i] as number);
  if (top > sums.used) sums.used = top;
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
