import type { Endpoint } from '../router/route-types.ts';

/** Milliseconds on a monotonic clock (e.g. `performance.now`); injected so tests control time. */
export type Clock = () => number;

/** Uniform random numbers in [0, 1) (e.g. `Math.random`); injected so tests are deterministic. */
export type RandomSource = () => number;

/**
 * Feedback from the request path: `start` when a request is sent to an endpoint, `end` exactly once
 * per `start` when it completes. `rttMs` is the time to the response head (Linkerd measures at the
 * first response frame); `failed` is true for 5xx, 429, connect errors, resets and timeouts.
 * Pickers that do not use load (round robin, random) ignore both.
 */
export interface LoadFeedback {
  start(endpoint: Endpoint): void;
  end(endpoint: Endpoint, rttMs: number, failed: boolean): void;
}

/** Chooses one endpoint of a cluster per request attempt. */
export interface Picker extends LoadFeedback {
  /** The endpoint list the picker currently chooses from. */
  readonly endpoints: readonly Endpoint[];
  /**
   * Take over the endpoint list of a newer configuration snapshot. RoundRobinPicker requires an
   * equal list (same ids, weights and order); the load-aware pickers accept any list and keep their
   * per-endpoint state by `Endpoint.id`, dropping the state of endpoints that left.
   */
  adopt(endpoints: readonly Endpoint[]): void;
  /**
   * Next endpoint, or null when the set is empty. `exclude` holds ids already tried (retries): they
   * are skipped while other endpoints remain.
   */
  pick(exclude?: ReadonlySet<string>): Endpoint | null;
}

/** Consistent-hash selection (Istio `consistentHash`): the same hash always maps to the same endpoint. */
export interface HashPicker {
  readonly endpoints: readonly Endpoint[];
  /**
   * The endpoint owning `hash` (an unsigned 32-bit integer, see `hashKey`), or null when the set is
   * empty. `exclude` (retries): walk on from the owner to the next endpoint not yet tried, while one remains.
   */
  pick(hash: number, exclude?: ReadonlySet<string>): Endpoint | null;
}
