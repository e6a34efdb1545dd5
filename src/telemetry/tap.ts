/**
 * The tap: a live stream of finished-request summaries for admin `/tap` (server-sent events).
 * Each subscriber gives a filter; a request matching it becomes one `data: {json}` event.
 *
 * With nobody subscribed, observing costs one length check. With subscribers, a request that
 * matches at least one filter is serialised once and the same text is written to each. The tap
 * never waits for a subscriber: one whose unsent output grows past a bound is dropped (it gets a
 * last `event: dropped`), so a stalled client can neither slow requests nor hold unbounded memory.
 */
import { type ObservedRequest, type RequestObserver, upstreamHostOf } from './observed-request.ts';

/** Where a subscriber's events go (the admin server wraps an HTTP response in this). */
export interface TapSink {
  write(chunk: string): void;
  /** Bytes written but not handed to the network yet. */
  buffered(): number;
  /** No more events: finish the stream. */
  end(): void;
}

/** What a subscriber wants to see; absent fields match everything. */
export interface TapFilter {
  /** Exact, compared in lowercase. */
  readonly authority?: string;
  readonly pathPrefix?: string;
  /** Exact (methods are case-sensitive; the parser uppercases what it is given). */
  readonly method?: string;
  /** An exact status code. */
  readonly status?: number;
  /** A status class: 5 for `5xx`, 4 for `4xx`… */
  readonly statusClass?: number;
  readonly reporter?: 'source' | 'destination';
}

/** One event's JSON. */
export interface TapSummary {
  /** ISO time the response ended. */
  readonly time: string;
  readonly reporter: 'source' | 'destination';
  readonly method: string;
  readonly authority: string;
  /** The path as the client sent it, with its query. */
  readonly path: string;
  /** As the client saw it (0: no response head). */
  readonly status: number;
  /** Envoy response flags, '-' when none. */
  readonly flags: string;
  readonly duration_ms: number;
  /** Endpoint or fixed target of the last attempt, '-' when none. */
  readonly upstream_host: string;
  readonly upstream_cluster: string;
  readonly request_id: string;
  readonly route_name: string;
  readonly bytes_received: number;
  readonly bytes_sent: number;
}

export interface TapOptions {
  /** Wall clock in ms (default `Date.now`). */
  readonly wallClock?: () => number;
  /** Default 16. */
  readonly maxSubscribers?: number;
  /** A subscriber with more unsent bytes than this is dropped (default 1 MiB). */
  readonly maxBufferedBytes?: number;
  /** A comment line this often keeps idle streams open through proxies (default 15 s; 0: none). */
  readonly heartbeatMs?: number;
}

export interface TapSubscription {
  /** The client went away: forget it (idempotent). */
  close(): void;
}

interface Subscriber {
  readonly filter: TapFilter;
  readonly sink: TapSink;
  /** Events left before the stream ends (Infinity: no limit). */
  remaining: number;
  closed: boolean;
}

export const TAP_FILTER_PARAMS = ['authority', 'path_prefix', 'method', 'status', 'reporter', 'limit'];

/**
 * The filter and event limit of a `/tap` query (`authority`, `path_prefix`, `method`, `status`:
 * a code or a class like `5xx`, `reporter`: source or destination, `limit`), or what is wrong.
 */
export function parseTapQuery(
  params: URLSearchParams,
): { readonly filter: TapFilter; readonly limit: number } | { readonly error: string } {
  for (const key of params.keys())
    if (!TAP_FILTER_PARAMS.includes(key))
      return { error: `unknown tap parameter ${key}; use ${TAP_FILTER_PARAMS.join(', ')}` };
  const filter: {
    -readonly [K in keyof TapFilter]: TapFilter[K];
  } = {};
  const authority = params.get('authority');
  if (authority !== null) filter.authority = authority.toLowerCase();
  const prefix = params.get('path_prefix');
  if (prefix !== null) filter.pathPrefix = prefix;
  const method = params.get('method');
  if (method !== null) filter.method = method.toUpperCase();
  const status = params.get('status');
  if (status !== null) {
    const s = status.toLowerCase();
    if (/^[1-5]xx$/.test(s)) filter.statusClass = Number(s[0]);
    else if (/^\d{1,3}$/.test(s)) filter.status = Number(s);
    else return { error: `status ${status}: use a code (503) or a class (5xx)` };
  }
  const reporter = params.get('reporter');
  if (reporter !== null) {
    if (reporter !== 'source' && reporter !== 'destination')
      return { error: `reporter ${reporter}: use source or destination` };
    filter.reporter = reporter;
  }
  let limit = Number.POSITIVE_INFINITY;
  const l = params.get('limit');
  if (l !== null) {
    if (!/^\d{1,9}$/.test(l) || Number(l) === 0) return { error: `limit ${l}: use a positive count` };
    limit = Number(l);
  }
  return { filter, limit };
}

export function matches(f: TapFilter, r: ObservedRequest, code: number): boolean {
  if (f.reporter !== undefined && r.reporter !== f.reporter) return false;
  if (f.method !== undefined && r.req.method !== f.method) return false;
  if (f.status !== undefined && code !== f.status) return false;
  if (f.statusClass !== undefined && Math.floor(code / 100) !== f.statusClass) return false;
  if (f.pathPrefix !== undefined && !r.originalPath.startsWith(f.pathPrefix)) return false;
  if (f.authority !== undefined) {
    const a = r.authority;
    if (a.length !== f.authority.length || a.toLowerCase() !== f.authority) return false;
  }
  return true;
}

export class Tap implements RequestObserver {
  /** Replaced, never mutated, so that a walk over it survives subscribers leaving mid-walk. */
  private subscribers: readonly Subscriber[] = [];
  private readonly wallClock: () => number;
  private readonly maxSubscribers: number;
  private readonly maxBufferedBytes: number;
  private readonly heartbeatMs: number;
  private heartbeat: ReturnType<typeof setInterval> | null = null;
  /** Subscribers dropped for being too slow, since start. */
  dropped = 0;

  constructor(options: TapOptions = {}) {
    this.wallClock = options.wallClock ?? Date.now;
    this.maxSubscribers = options.maxSubscribers ?? 16;
    this.maxBufferedBytes = options.maxBufferedBytes ?? 1024 * 1024;
    this.heartbeatMs = options.heartbeatMs ?? 15_000;
  }

  get subscriberCount(): number {
    return this.subscribers.length;
  }

  /** Adds a subscriber; null when there are already as many as allowed. */
  subscribe(filter: TapFilter, sink: TapSink, limit = Number.POSITIVE_INFINITY): TapSubscription | null {
    if (this.subscribers.length >= this.maxSubscribers) return null;
    const sub: Subscriber = { filter, sink, remaining: limit, closed: false };
    this.subscribers = [...this.subscribers, sub];
    if (this.heartbeat === null && this.heartbeatMs > 0) {
      this.heartbeat = setInterval(() => this.beat(), this.heartbeatMs);
      this.heartbeat.unref();
    }
    return { close: () => this.remove(sub) };
  }

  observe(r: ObservedRequest, durationMs: number, code: number): void {
    const subs = this.subscribers;
    if (subs.length === 0) return;
    let event: string | null = null;
    for (const sub of subs) {
      if (sub.closed || !matches(sub.filter, r, code)) continue;
      if (event === null) event = `data: ${JSON.stringify(this.summary(r, durationMs, code))}\n\n`;
      this.send(sub, event);
    }
  }

  /** Ends every stream (shutdown). */
  close(): void {
    for (const sub of this.subscribers) {
      this.remove(sub);
      safely(() => sub.sink.end());
    }
  }

  private send(sub: Subscriber, event: string): void {
    if (sub.sink.buffered() > this.maxBufferedBytes) {
      this.dropped++;
      this.remove(sub);
      const why = JSON.stringify({
        reason: `subscriber too slow: more than ${this.maxBufferedBytes} bytes not sent`,
      });
      safely(() => {
        sub.sink.write(`event: dropped\ndata: ${why}\n\n`);
        sub.sink.end();
      });
      return;
    }
    safely(() => sub.sink.write(event));
    if (--sub.remaining <= 0) {
      this.remove(sub);
      safely(() => sub.sink.end());
    }
  }

  private summary(r: ObservedRequest, durationMs: number, code: number): TapSummary {
    return {
      time: new Date(this.wallClock()).toISOString(),
      reporter: r.reporter,
      method: r.req.method,
      authority: r.authority,
      path: r.originalPath,
      status: code,
      flags: r.flags === '' ? '-' : r.flags,
      duration_ms: Math.round(durationMs * 1000) / 1000,
      upstream_host: upstreamHostOf(r),
      upstream_cluster: r.cluster?.name ?? '-',
      request_id: r.requestId,
      route_name: r.routeName === '' ? '-' : r.routeName,
      bytes_received: r.bytesReceived,
      bytes_sent: r.bytesSent,
    };
  }

  private beat(): void {
    for (const sub of this.subscribers) safely(() => sub.sink.write(': heartbeat\n\n'));
  }

  private remove(sub: Subscriber): void {
    if (sub.closed) return;
    sub.closed = true;
    this.subscribers = this.subscribers.filter((s) => s !== sub);
    if (this.subscribers.length === 0 && this.heartbeat !== null) {
      clearInterval(this.heartbeat);
      this.heartbeat = null;
    }
  }
}

/** A subscriber's broken stream must not become the request path's exception. */
function safely(fn: () => void): void {
  try {
    fn();
  } catch {
    // the admin server notices the closed connection and unsubscribes it
  }
}
