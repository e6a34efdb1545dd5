/**
 * The JSON of admin `/stats`: live request rate, error rate and latency percentiles over sliding
 * windows, per destination service and per route, plus the most recent errors. The dashboard and
 * operators' scripts read this shape; fields are only ever added.
 */

/** One sliding window (the last `seconds` seconds, whole seconds, the current one included). */
export interface WindowStats {
  readonly seconds: number;
  readonly requests: number;
  /** Requests per second over the window. */
  readonly rps: number;
  /** Responses with status ≥ 500, or no response at all (status 0). */
  readonly errors: number;
  /** errors / requests, 0 when there were no requests. */
  readonly error_rate: number;
  /** Latency percentiles in milliseconds (0 when there were no requests). */
  readonly p50_ms: number;
  readonly p90_ms: number;
  readonly p99_ms: number;
  readonly p999_ms: number;
  readonly max_ms: number;
}

/** A destination service as this proxy reported it (outbound: `source`; inbound: `destination`). */
export interface ServiceStats {
  readonly reporter: 'source' | 'destination';
  /** `destination_service` (the FQDN), as in the metrics. */
  readonly service: string;
  /** `destination_service_name`. */
  readonly service_name: string;
  /** Keyed by window length: "10s", "60s". */
  readonly windows: Readonly<Record<string, WindowStats>>;
}

/** A VirtualService route (requests with a route name only). */
export interface RouteStats {
  readonly reporter: 'source' | 'destination';
  readonly route: string;
  readonly service: string;
  readonly windows: Readonly<Record<string, WindowStats>>;
}

export interface RecentError {
  /** ISO time the response ended. */
  readonly time: string;
  readonly reporter: 'source' | 'destination';
  readonly method: string;
  readonly authority: string;
  readonly path: string;
  /** 0: no response head. */
  readonly status: number;
  /** Envoy response flags, '-' when none. */
  readonly flags: string;
  readonly duration_ms: number;
  /** Endpoint of the last attempt, '-' when none. */
  readonly upstream_host: string;
  readonly service: string;
}

export interface StatsSnapshot {
  /** ISO time of this snapshot. */
  readonly time: string;
  readonly uptime_s: number;
  /** Window lengths in seconds, e.g. [10, 60]. */
  readonly windows: readonly number[];
  readonly services: readonly ServiceStats[];
  readonly routes: readonly RouteStats[];
  /** Newest first, at most 50. */
  readonly recent_errors: readonly RecentError[];
}
