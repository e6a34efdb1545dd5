/**
 * Passive outlier detection for one cluster: DestinationRule `outlierDetection` with Envoy's
 * consecutive-error detectors (spec §3.6, §8 item 18; anchors §2.1). Istio turns Envoy's
 * success-rate detector off, so only the three consecutive detectors exist here:
 *
 * - `consecutive5xxErrors` (unset → 5, 0 → off): error responses; local-origin failures too unless
 *   `splitExternalLocalOriginErrors`.
 * - `consecutiveGatewayErrors` (unset or 0 → off): 502/503/504 only; local-origin failures too
 *   unless split. A 500 never counts here and breaks the run (it is a different kind of error).
 * - `consecutiveLocalOriginFailures` (unset → 5, 0 → off): only with `splitExternalLocalOriginErrors`.
 *
 * Pure and clock-injected: no timers. The owner calls `sweep()` every `intervalMs`. The detector
 * only needs endpoint ids, so it never holds endpoint objects.
 */
import type { OutlierDetectionSettings } from '../config/resource-types.ts';
import type { Clock } from './picker-types.ts';

/** How one attempt ended, classified for outlier detection. */
export type OutlierResult =
  /** The upstream sent a status. */
  | { readonly kind: 'response'; readonly status: number }
  /** Connect failure or timeout, reset, per-try timeout, protocol error: no status from the upstream. */
  | { readonly kind: 'local-failure' };

export interface EndpointOutlierStatus {
  readonly ejectedUntilMs: number | null;
  /** The current multiplier (decays by one per healthy interval). */
  readonly timesEjected: number;
  readonly consecutive5xx: number;
  readonly consecutiveGatewayErrors: number;
  readonly consecutiveLocalOriginFailures: number;
}

export interface OutlierDetectorOptions {
  /** Monotonic milliseconds. */
  readonly clock: Clock;
  /** Called whenever the ejected set changes (ejection or return), so the cluster can rebuild its healthy list. */
  readonly onChange?: () => void;
}

export const DEFAULT_CONSECUTIVE_5XX = 5;
export const DEFAULT_CONSECUTIVE_LOCAL_ORIGIN_FAILURES = 5;
export const DEFAULT_INTERVAL_MS = 10_000;
export const DEFAULT_BASE_EJECTION_MS = 30_000;
/** Envoy's `max_ejection_time` default; Istio does not expose it. */
export const DEFAULT_MAX_EJECTION_MS = 300_000;
export const DEFAULT_MAX_EJECTION_PERCENT = 10;

/** The effective settings, defaults applied. A threshold of 0 means that detector is off. */
interface Effective {
  readonly consecutive5xx: number;
  readonly consecutiveGateway: number;
  readonly consecutiveLocalOrigin: number;
  readonly split: boolean;
  /** Statuses that count as errors, or null for the default 500–599. */
  readonly errorCodes: ReadonlySet<number> | null;
  readonly intervalMs: number;
  readonly baseEjectionMs: number;
  readonly maxEjectionMs: number;
  readonly maxEjectionPercent: number;
  readonly minHealthPercent: number;
}

interface EndpointState {
  /** Set while ejected (possibly already past: see `settle`); null otherwise. */
  ejectedUntilMs: number | null;
  /** When the last ejection ended (the multiplier decays only after a healthy interval since). */
  returnedAtMs: number | null;
  timesEjected: number;
  consecutive5xx: number;
  consecutiveGateway: number;
  consecutiveLocalOrigin: number;
}

/** Durations are validated ≥ 1 ms; anything else (a hand-built settings object) falls back to the default. */
const positiveOr = (value: number | undefined, fallback: number): number =>
  value !== undefined && value > 0 ? value : fallback;

function effective(s: OutlierDetectionSettings): Effective {
  const split = s.splitExternalLocalOriginErrors === true;
  const baseEjectionMs = positiveOr(s.baseEjectionTime, DEFAULT_BASE_EJECTION_MS);
  const codes = s.outlierDetectionHttpErrorCodes;
  return {
    consecutive5xx: s.consecutive5xxErrors ?? DEFAULT_CONSECUTIVE_5XX,
    consecutiveGateway: s.consecutiveGatewayErrors ?? 0,
    // Without the split, local-origin failures feed the other two counters and this one is unused.
    consecutiveLocalOrigin: split
      ? (s.consecutiveLocalOriginFailures ?? DEFAULT_CONSECUTIVE_LOCAL_ORIGIN_FAILURES)
      : 0,
    split,
    errorCodes: codes !== undefined && codes.length > 0 ? new Set(codes) : null,
    intervalMs: positiveOr(s.interval, DEFAULT_INTERVAL_MS),
    baseEjectionMs,
    // Envoy: max_ejection_time is 300 s, or the base time when that is longer.
    maxEjectionMs: Math.max(DEFAULT_MAX_EJECTION_MS, baseEjectionMs),
    // Istio passes 0 as "unset", which leaves Envoy's default of 10 %.
    maxEjectionPercent: positiveOr(s.maxEjectionPercent, DEFAULT_MAX_EJECTION_PERCENT),
    minHealthPercent: s.minHealthPercent ?? 0,
  };
}

const isGatewayStatus = (status: number): boolean => status === 502 || status === 503 || status === 504;

/**
 * Consecutive-error outlier detector for one cluster's endpoints, keyed by endpoint id.
 *
 * Rules this implementation chose where neither Istio nor the spec pins them down:
 * - `outlierDetectionHttpErrorCodes`, when non-empty, replaces the 500–599 range: exactly the listed
 *   statuses are errors for the 5xx counter (a listed 429 counts), and the gateway counter counts the
 *   listed statuses that are also 502/503/504. Local-origin failures are not statuses and are not
 *   filtered by the list.
 * - Without the split, a local-origin failure counts toward both the 5xx and the gateway counters
 *   (Envoy maps connect failures and timeouts to 503/504). With the split, any response from the
 *   upstream (whatever its status) proves the connection works and resets the local-origin counter.
 * - A counter that reaches its threshold is reset whether or not the ejection is allowed, so a host
 *   refused by `maxEjectionPercent` needs N more errors before it is considered again (Envoy does the
 *   same). A successful ejection resets all three counters.
 * - Results reported for an ejected host (attempts still in flight when it was ejected, or panic-mode
 *   traffic) are ignored: its counters stay at zero until it returns, so it comes back with a clean
 *   slate and is not re-ejected on evidence gathered while it was out.
 * - An ejection's end time is fixed when it starts; a reload that changes `baseEjectionTime` affects
 *   later ejections only. A reload never returns or ejects a host by itself.
 */
export class OutlierDetector {
  private readonly clock: Clock;
  private readonly onChange: (() => void) | undefined;
  private cfg: Effective;
  private readonly byId = new Map<string, EndpointState>();
  /** Ids whose `ejectedUntilMs` is set (some may be past it until `settle` runs). Kept small. */
  private readonly ejected = new Set<string>();
  private ejections = 0;

  constructor(settings: OutlierDetectionSettings, options: OutlierDetectorOptions) {
    this.clock = options.clock;
    this.onChange = options.onChange;
    this.cfg = effective(settings);
  }

  /** New settings from a reload (state kept). */
  update(settings: OutlierDetectionSettings): void {
    this.cfg = effective(settings);
  }

  /**
   * The cluster's endpoint ids now: state is kept for ids still present and dropped for the others.
   * Does not call `onChange` even when an ejected id leaves: the caller is rebuilding its lists anyway.
   */
  setEndpoints(ids: readonly string[]): void {
    const keep = new Set(ids);
    for (const id of this.byId.keys()) {
      if (!keep.has(id)) {
        this.byId.delete(id);
        this.ejected.delete(id);
      }
    }
    for (const id of keep) {
      if (!this.byId.has(id)) {
        this.byId.set(id, {
          ejectedUntilMs: null,
          returnedAtMs: null,
          timesEjected: 0,
          consecutive5xx: 0,
          consecutiveGateway: 0,
          consecutiveLocalOrigin: 0,
        });
      }
    }
  }

  /** Feed one attempt result for endpoint `id` (unknown ids are ignored). May eject it, within `maxEjectionPercent`. */
  report(id: string, result: OutlierResult): void {
    const e = this.byId.get(id);
    if (e === undefined) return;
    const now = this.clock();
    let changed = false;
    if (e.ejectedUntilMs !== null) {
      if (now < e.ejectedUntilMs) return;
      this.settle(id, e);
      changed = true;
    }
    const cfg = this.cfg;
    if (result.kind === 'local-failure') {
      if (cfg.split) {
        e.consecutiveLocalOrigin++;
      } else {
        e.consecutive5xx++;
        e.consecutiveGateway++;
      }
    } else {
      const status = result.status;
      const isError = cfg.errorCodes === null ? status >= 500 && status <= 599 : cfg.errorCodes.has(status);
      if (!isError) {
        e.consecutive5xx = 0;
        e.consecutiveGateway = 0;
      } else {
        e.consecutive5xx++;
        // Another kind of error breaks a run of gateway errors (Envoy resets the counter on a 500).
        e.consecutiveGateway = isGatewayStatus(status) ? e.consecutiveGateway + 1 : 0;
      }
      e.consecutiveLocalOrigin = 0;
    }

    const tripped5xx = cfg.consecutive5xx > 0 && e.consecutive5xx >= cfg.consecutive5xx;
    const trippedGateway = cfg.consecutiveGateway > 0 && e.consecutiveGateway >= cfg.consecutiveGateway;
    const trippedLocal =
      cfg.consecutiveLocalOrigin > 0 && e.consecutiveLocalOrigin >= cfg.consecutiveLocalOrigin;
    if (tripped5xx || trippedGateway || trippedLocal) {
      if (this.mayEject(now)) {
        this.eject(id, e, now);
        changed = true;
      } else {
        if (tripped5xx) e.consecutive5xx = 0;
        if (trippedGateway) e.consecutiveGateway = 0;
        if (trippedLocal) e.consecutiveLocalOrigin = 0;
      }
    }
    if (changed) this.onChange?.();
  }

  /** True while `id` is ejected; false from the moment its ejection time is over, even before `sweep`. */
  isEjected(id: string): boolean {
    // Nearly always empty: no clock read and no map lookup on the pick path.
    if (this.ejected.size === 0) return false;
    const until = this.byId.get(id)?.ejectedUntilMs ?? null;
    return until !== null && this.clock() < until;
  }

  /** Number of ejected endpoints right now. */
  get ejectedCount(): number {
    if (this.ejected.size === 0) return 0;
    return this.countEjected(this.clock());
  }

  /** Ejections made over the detector's lifetime. */
  get totalEjections(): number {
    return this.ejections;
  }

  /** Effective interval in ms (default 10 000) for the caller's timer. */
  get intervalMs(): number {
    return this.cfg.intervalMs;
  }

  /** Effective minHealthPercent (default 0 = panic mode off): the cluster uses it for panic mode. */
  get minHealthPercent(): number {
    return this.cfg.minHealthPercent;
  }

  /** Effective maxEjectionPercent (default 10). */
  get maxEjectionPercent(): number {
    return this.cfg.maxEjectionPercent;
  }

  /** Endpoint ids known to the detector (the last `setEndpoints`). */
  get endpointCount(): number {
    return this.byId.size;
  }

  /**
   * The `interval` work, meant to run once per `intervalMs`:
   * - returns hosts whose ejection time is over (calling `onChange` once if any did);
   * - lowers by one the multiplier of every host that is not ejected and returned at least one
   *   interval ago (Envoy's decay: one step per sweep, so calling it more often decays faster).
   */
  sweep(): void {
    const now = this.clock();
    let changed = false;
    for (const id of this.ejected) {
      const e = this.byId.get(id)!;
      if (e.ejectedUntilMs !== null && now >= e.ejectedUntilMs) {
        this.settle(id, e);
        changed = true;
      }
    }
    const interval = this.cfg.intervalMs;
    for (const e of this.byId.values()) {
      if (
        e.timesEjected > 0 &&
        e.ejectedUntilMs === null &&
        e.returnedAtMs !== null &&
        now - e.returnedAtMs >= interval
      ) {
        e.timesEjected--;
      }
    }
    if (changed) this.onChange?.();
  }

  status(id: string): EndpointOutlierStatus {
    const e = this.byId.get(id);
    if (e === undefined) {
      return {
        ejectedUntilMs: null,
        timesEjected: 0,
        consecutive5xx: 0,
        consecutiveGatewayErrors: 0,
        consecutiveLocalOriginFailures: 0,
      };
    }
    const until = e.ejectedUntilMs;
    return {
      ejectedUntilMs: until !== null && this.clock() < until ? until : null,
      timesEjected: e.timesEjected,
      consecutive5xx: e.consecutive5xx,
      consecutiveGatewayErrors: e.consecutiveGateway,
      consecutiveLocalOriginFailures: e.consecutiveLocalOrigin,
    };
  }

  private countEjected(now: number): number {
    let n = 0;
    // `ejected` only holds ids of `byId` (setEndpoints removes from both).
    for (const id of this.ejected) {
      const until = this.byId.get(id)!.ejectedUntilMs;
      if (until !== null && now < until) n++;
    }
    return n;
  }

  /**
   * `maxEjectionPercent` of the known hosts may be ejected at once, and always at least one:
   * an ejection is allowed while `ejected < max(1, floor(hosts × percent / 100))`. This is Envoy's
   * "(ejected + 1) / hosts ≤ percent, or nothing is ejected yet" stated with integers.
   */
  private mayEject(now: number): boolean {
    const limit = Math.max(1, Math.floor((this.byId.size * this.cfg.maxEjectionPercent) / 100));
    return this.countEjected(now) < limit;
  }

  private eject(id: string, e: EndpointState, now: number): void {
    const { baseEjectionMs, maxEjectionMs } = this.cfg;
    // Envoy lets the multiplier grow one step past the cap, so that a single healthy interval after a
    // capped ejection does not already shorten the next one; beyond that it stops, so decay stays bounded.
    if (e.timesEjected * baseEjectionMs < maxEjectionMs + baseEjectionMs) e.timesEjected++;
    e.ejectedUntilMs = now + Math.min(baseEjectionMs * e.timesEjected, maxEjectionMs);
    e.consecutive5xx = 0;
    e.consecutiveGateway = 0;
    e.consecutiveLocalOrigin = 0;
    this.ejected.add(id);
    this.ejections++;
  }

  /** Ends an ejection whose time is over. It ended at `ejectedUntilMs`, not when noticed. */
  private settle(id: string, e: EndpointState): void {
    e.returnedAtMs = e.ejectedUntilMs;
    e.ejectedUntilMs = null;
    this.ejected.delete(id);
  }
}
