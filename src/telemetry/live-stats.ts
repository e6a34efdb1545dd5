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
import type { ObservedRequest, RequestObserver } from './observed-request.ts';

/**
 * Latencies are recorded in units of 10 µs: sub-millisecond latencies stay resolved, and a
 * histogram's counts array (which grows with the largest value it has seen) stays about three
 * times smaller than in microseconds.
 */
const UNITS_PER_MS = 100;
/** Longer latencies are recorded as this (one hour): a bound on how far a histogram can grow. */
const MAX_UNITS = 3_600_000 * UNITS_PER_MS;
const SLOTS = 60;
const RECENT_ERRORS = 50;

export interface LiveStatsOptions {
  /** Monotonic clock in ms (the pipeline's `now`): which second a request lands in. */
  readonly now: () => number;
  /** Wall clock in ms (`Date.now`), for the times shown in the snapshot. */
  readonly wallClock?: () => number;
  /** Window lengths in seconds, each at most 60 (default [10, 60]). */
  readonly windows?: readonly number[];
  /** At most this many (reporter, service) keys are tracked (default 1000). */
  readonly maxServices?: number;
  /** At most this many (reporter, route, service) keys are tracked (default 1000). */
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

class Series {
  readonly slots: Slot[] = [];

  constructor() {
    for (let i = 0; i < SLOTS; i++) this.slots.push({ second: -1, requests: 0, errors: 0, histogram: null });
  }

  record(second: number, units: number, error: boolean): void {
    const slot = this.slots[second % SLOTS] as Slot;
    if (slot.second !== second) {
      slot.second = second;
      slot.requests = 0;
      slot.errors = 0;
      slot.histogram?.reset();
    }
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
  // Starts tiny and grows to the largest latency recorded (3 significant digits).
  const h = new Int32Histogram(1, 2, 3);
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
  private routeCount = 0;
  /** Requests whose service or route was not tracked because the key cap was reached. */
  untrackedServices = 0;
  untrackedRoutes = 0;
  private readonly errors: ErrorRecord[] = [];
  /** Index the next error goes to in `errors` (a ring once it holds RECENT_ERRORS). */
  private errorNext = 0;
  /** Reused for every window merge. */
  private readonly scratch = newHistogram();

  constructor(options: LiveStatsOptions) {
    this.now = options.now;
    this.wallClock = options.wallClock ?? Date.now;
    this.windows = options.windows ?? [10, 60];
    for (const w of this.windows)
      if (!Number.isInteger(w) || w < 1 || w > SLOTS) throw new Error(`window ${w}s: must be 1-${SLOTS} s`);
    this.maxServices = options.maxServices ?? 1000;
    this.maxRoutes = options.maxRoutes ?? 1000;
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

  private recordError(r: ObservedRequest, durationMs: number, code: number): void {
    const upstreamHost = r.endpoint?.id ?? (r.target === null ? '-' : `${r.target.address}:${r.target.port}`);
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

  private windowsOf(series: Series, now: number): Record<string, WindowStats> {
    const out: Record<string, WindowStats> = {};
    for (const w of this.windows) out[`${w}s`] = this.window(series, now, w);
    return out;
  }

  /**
   * The last `seconds` whole seconds, the current one included. The rate divides by the time the
   * window really covers: the current second only counts as far as it has gone, and a window
   * longer than the uptime only counts the uptime (at least one second, so a fresh start does not
   * show absurd rates).
   */
  private window(series: Series, now: number, seconds: number): WindowStats {
    const current = Math.floor(now / 1000);
    const oldest = current - seconds + 1;
    const h = this.scratch;
    h.reset();
    let requests = 0;
    let errors = 0;
    for (const slot of series.slots) {
      if (slot.second < oldest || slot.second > current || slot.requests === 0) continue;
      requests += slot.requests;
      errors += slot.errors;
      if (slot.histogram !== null) h.add(slot.histogram);
    }
    const covered = Math.max(
      1,
      Math.min(seconds - 1 + (now - current * 1000) / 1000, (now - this.startedAt) / 1000),
    );
    const at = (p: number): number => (requests === 0 ? 0 : round3(h.getValueAtPercentile(p) / UNITS_PER_MS));
    return {
      seconds,
      requests,
      rps: round3(requests / covered),
      errors,
      error_rate: requests === 0 ? 0 : round3(errors / requests),
      p50_ms: at(50),
      p90_ms: at(90),
      p99_ms: at(99),
      p999_ms: at(99.9),
      max_ms: requests === 0 ? 0 : round3(h.maxValue / UNITS_PER_MS),
    };
  }
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
