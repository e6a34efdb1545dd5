/**
 * Host-name resolution for DNS ServiceEntry endpoints (spec §1.2 "DNS": every address a name resolves
 * to becomes an endpoint, re-resolved periodically). The balancer asks `addresses(host)` when it builds
 * a cluster's endpoint list and rebuilds it when `onChange` says a host's set changed; requests then go
 * to IP endpoints (the lean h1 path), never through a per-request lookup.
 *
 * - The first `addresses(host)` starts a lookup and returns undefined; when it succeeds the listeners
 *   are told (`onChange(host)`), and later calls return the cached set: deduplicated, sorted, frozen,
 *   and the same array object until the set changes (so callers may compare by identity). An IP
 *   literal is its own set at once: no lookup, no timer, no `onChange`.
 * - Every host ever asked for is re-resolved on its own timer. The default lookup is
 *   `dns.promises.lookup(host, { all: true })` (the system resolver, so `/etc/hosts` applies and
 *   `localhost` works), which does not report TTLs: it is re-run every `refreshMs` (default 30 s, the
 *   default of Proxy `dnsRefreshRate`; Envoy's `dns_refresh_rate` is 5 s). A lookup that does report
 *   TTLs (an injected one) is re-run after the smallest TTL instead, as Istio's `respect_dns_ttl` does,
 *   but never sooner than `minRefreshMs` (default 5 s) after the previous one started.
 * - A failed lookup (an error, or an empty answer) keeps the last good set, is reported to `onError`,
 *   and is tried again after `min(refreshMs, minRefreshMs)`, so a host that did not resolve at start
 *   does not wait a whole refresh period. Listeners hear only of real changes of the sorted set.
 * - Hosts are never forgotten while the resolver lives (one timer and a few strings each): callers
 *   may ask for a host once, when a configuration is compiled, and must still hear of its changes;
 *   a host dropped from the configuration keeps being refreshed until `close()`. Configurations name
 *   few DNS hosts, so this stays small.
 * - One lookup per host at a time; `refreshNow()` re-resolves every known host at once and resolves
 *   when all are done (it never rejects). Timers are unref'd; `close()` stops them and ignores the
 *   answers of lookups still running.
 * - A listener that throws does not stop the others; its error goes to `onError` with the host.
 */
import { promises as dns } from 'node:dns';
import { isIP } from 'node:net';

/**
 * What the balancer's cluster registry needs from a resolver. Structurally the same as the interface
 * declared in `src/balancer/cluster-registry.ts` (declared here too so upstream/ does not depend on
 * balancer/).
 */
export interface HostResolver {
  /** Cached addresses for `host` (stable, sorted order), or undefined when not resolved yet (starts resolving it). */
  addresses(host: string): readonly string[] | undefined;
  /** Registers the listener called after a host's address set changed (or was first resolved). */
  onChange(listener: (host: string) => void): void;
}

/** One answer record; `ttl` in seconds when the lookup knows it. */
export interface LookupAddress {
  readonly address: string;
  readonly ttl?: number;
}

export type Lookup = (host: string) => Promise<ReadonlyArray<LookupAddress>>;

export interface DnsResolverOptions {
  /** Default: `dns.promises.lookup(host, { all: true })` (no TTLs). */
  readonly lookup?: Lookup;
  /** Re-resolution period when the lookup reports no TTL, ms. Default 30 000. */
  readonly refreshMs?: number | undefined;
  /** Shortest time between two lookups of one host (TTL floor, failure retry), ms. Default 5 000. */
  readonly minRefreshMs?: number | undefined;
  /** Monotonic ms; the next lookup is timed from when the previous one started. Default `performance.now`. */
  readonly clock?: () => number;
  /** Default: an unref'd `setTimeout`. */
  readonly setTimer?: (fn: () => void, ms: number) => unknown;
  /** Default: `clearTimeout`. */
  readonly clearTimer?: (handle: unknown) => void;
  /** A failed lookup (the last good set is kept), or a listener that threw. */
  readonly onError?: (host: string, err: unknown) => void;
}

export type DnsResolver = HostResolver & {
  /** Stops every timer; lookups still running are ignored when they finish. */
  close(): void;
  /** Re-resolves every known host now; resolves when all lookups are done. Never rejects. */
  refreshNow(): Promise<void>;
};

export const DEFAULT_DNS_REFRESH_MS = 30_000;
export const DEFAULT_DNS_MIN_REFRESH_MS = 5_000;
/** Node fires longer delays after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Per host: the last good set, its timer and the lookup in flight. */
interface HostEntry {
  readonly host: string;
  /** Last good set; undefined until the first successful lookup. */
  addresses: readonly string[] | undefined;
  timer: unknown;
  hasTimer: boolean;
  /** The lookup running now, or null. */
  running: Promise<void> | null;
}

async function systemLookup(host: string): Promise<ReadonlyArray<LookupAddress>> {
  return dns.lookup(host, { all: true });
}

function defaultSetTimer(fn: () => void, ms: number): unknown {
  const timer = setTimeout(fn, ms);
  timer.unref();
  return timer;
}

function defaultClearTimer(handle: unknown): void {
  clearTimeout(handle as NodeJS.Timeout);
}

export function createDnsResolver(options: DnsResolverOptions = {}): DnsResolver {
  const lookup = options.lookup ?? systemLookup;
  const refreshMs = positive(options.refreshMs, DEFAULT_DNS_REFRESH_MS);
  const minRefreshMs = positive(options.minRefreshMs, DEFAULT_DNS_MIN_REFRESH_MS);
  const clock = options.clock ?? (() => performance.now());
  const setTimer = options.setTimer ?? defaultSetTimer;
  const clearTimer = options.clearTimer ?? defaultClearTimer;
  const onError = options.onError;
  const hosts = new Map<string, HostEntry>();
  const listeners: Array<(host: string) => void> = [];
  let closed = false;

  const report = (host: string, err: unknown): void => {
    if (onError === undefined) return;
    try {
      onError(host, err);
    } catch {
      // The error sink itself failed: nothing sensible is left to tell.
    }
  };

  const notify = (host: string): void => {
    for (const listener of listeners) {
      try {
        listener(host);
      } catch (err) {
        report(host, err);
      }
    }
  };

  const schedule = (entry: HostEntry, delayMs: number): void => {
    if (closed) return;
    cancel(entry);
    entry.hasTimer = true;
    entry.timer = setTimer(
      () => {
        entry.hasTimer = false;
        void resolve(entry);
      },
      Math.min(Math.max(0, delayMs), MAX_TIMER_MS),
    );
  };

  const cancel = (entry: HostEntry): void => {
    if (entry.hasTimer) {
      entry.hasTimer = false;
      clearTimer(entry.timer);
    }
  };

  /** One lookup of `entry.host`; the returned promise never rejects. */
  const resolve = (entry: HostEntry): Promise<void> => {
    if (entry.running !== null) return entry.running;
    if (closed) return Promise.resolve();
    cancel(entry);
    const started = clock();
    const run = (async () => {
      let next: number;
      try {
        const answer = await lookup(entry.host);
        if (closed) return;
        const fresh = addressSet(answer);
        if (fresh.length === 0) throw new Error(`no addresses for ${entry.host}`);
        next = Math.max(minRefreshMs, refreshAfter(answer, refreshMs));
        if (entry.addresses === undefined || !sameSet(entry.addresses, fresh)) {
          entry.addresses = fresh;
          notify(entry.host);
        }
      } catch (err) {
        if (closed) return;
        report(entry.host, err);
        next = Math.min(refreshMs, minRefreshMs);
      } finally {
        entry.running = null;
      }
      // Timed from the start of this lookup, so slow lookups do not stretch the period.
      schedule(entry, started + next - clock());
    })();
    entry.running = run;
    return run;
  };

  return {
    addresses(host: string): readonly string[] | undefined {
      const entry = hosts.get(host);
      if (entry !== undefined) return entry.addresses;
      if (isIP(host) !== 0) {
        const self: HostEntry = {
          host,
          addresses: Object.freeze([host]),
          timer: null,
          hasTimer: false,
          running: null,
        };
        hosts.set(host, self);
        return self.addresses;
      }
      const fresh: HostEntry = { host, addresses: undefined, timer: null, hasTimer: false, running: null };
      hosts.set(host, fresh);
      void resolve(fresh);
      return undefined;
    },

    onChange(listener: (host: string) => void): void {
      listeners.push(listener);
    },

    async refreshNow(): Promise<void> {
      const runs: Promise<void>[] = [];
      for (const entry of hosts.values()) {
        if (isIP(entry.host) === 0) runs.push(resolve(entry));
      }
      await Promise.all(runs);
    },

    close(): void {
      closed = true;
      for (const entry of hosts.values()) cancel(entry);
    },
  };
}

function positive(value: number | undefined, fallback: number): number {
  return value !== undefined && Number.isFinite(value) && value > 0 ? value : fallback;
}

/** Deduplicated, sorted, frozen addresses of an answer. */
function addressSet(answer: ReadonlyArray<LookupAddress>): readonly string[] {
  const unique = [...new Set(answer.map((a) => a.address))];
  unique.sort();
  return Object.freeze(unique);
}

/** The smallest TTL of the answer in ms, or `fallbackMs` when no record has one. */
function refreshAfter(answer: ReadonlyArray<LookupAddress>, fallbackMs: number): number {
  let min = Infinity;
  for (const record of answer) {
    if (record.ttl !== undefined && Number.isFinite(record.ttl) && record.ttl >= 0 && record.ttl < min) {
      min = record.ttl;
    }
  }
  return min === Infinity ? fallbackMs : min * 1000;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
