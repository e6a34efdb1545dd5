/**
 * One `ClusterState` per cluster name, kept across configuration snapshots (see cluster-types.ts).
 *
 * `get` is on the request path. Snapshots are immutable, so the same `Cluster` object always means
 * the same configuration: the last object seen is compared first (a field, not even a map lookup),
 * then the state's own last object. Only a new object (a reload) makes the state compare endpoints
 * and policy and update itself in place.
 */
import type { RetryBudgetOptions } from '../resilience/retry-budget.ts';
import type { Cluster } from '../router/route-types.ts';
import { ClusterStateImpl, type ClusterStateOptions, type IntervalTimer } from './cluster-state.ts';
import type { ClusterRegistry, ClusterState } from './cluster-types.ts';
import type { Clock, RandomSource } from './picker-types.ts';

/**
 * Resolves endpoint addresses that are host names (a ServiceEntry with `resolution: DNS`).
 * The upstream room's DNS resolver implements it; it is defined here so the balancer does not
 * depend on that file.
 */
export interface HostResolver {
  /** Cached addresses for `host` (stable order), or undefined when not resolved yet (starts resolving it). */
  addresses(host: string): readonly string[] | undefined;
  /** Registers the listener called after a host's address set changed (or first resolved). */
  onChange(listener: (host: string) => void): void;
}

export interface ClusterRegistryOptions {
  /** Monotonic ms (performance.now in production). */
  readonly clock: Clock;
  readonly random: RandomSource;
  /** Retry budget settings (Proxy spec.retryBudget; defaults of resilience/retry-budget.ts). */
  readonly retryBudget?: RetryBudgetOptions;
  /** DNS: resolves endpoint addresses that are host names. Absent: host names are kept as they are. */
  readonly resolver?: HostResolver;
  /** Timers (outlier interval): injected so tests are deterministic; default setInterval/clearInterval with unref. */
  readonly setInterval?: (fn: () => void, ms: number) => { cancel(): void };
  /** Open connections per endpoint id for `/clusters` (the upstream client may provide it); absent → null. */
  readonly connections?: (endpointId: string) => number | null;
}

/** `setInterval` that does not keep the process alive (a sweep has nothing to do at exit). */
const unrefInterval: IntervalTimer = (fn, ms) => {
  const handle = setInterval(fn, ms);
  handle.unref();
  return { cancel: () => clearInterval(handle) };
};

class Registry implements ClusterRegistry {
  private readonly states = new Map<string, ClusterStateImpl>();
  private readonly stateOptions: ClusterStateOptions;
  private lastCluster: Cluster | null = null;
  private lastState: ClusterStateImpl | null = null;

  constructor(options: ClusterRegistryOptions) {
    this.stateOptions = {
      clock: options.clock,
      random: options.random,
      setInterval: options.setInterval ?? unrefInterval,
      ...(options.retryBudget === undefined ? {} : { retryBudget: options.retryBudget }),
      ...(options.resolver === undefined ? {} : { resolver: options.resolver }),
      ...(options.connections === undefined ? {} : { connections: options.connections }),
    };
    // One listener for the registry's lifetime; each cluster checks whether it uses the host.
    options.resolver?.onChange((host) => {
      for (const state of this.states.values()) if (state.usesHost(host)) state.dnsChanged(host);
    });
  }

  get(cluster: Cluster): ClusterState {
    if (cluster === this.lastCluster) return this.lastState!;
    let state = this.states.get(cluster.name);
    if (state === undefined) {
      state = new ClusterStateImpl(cluster, this.stateOptions);
      this.states.set(cluster.name, state);
    } else if (state.cluster !== cluster) {
      state.update(cluster);
    }
    this.lastCluster = cluster;
    this.lastState = state;
    return state;
  }

  retain(clusterNames: ReadonlySet<string>): void {
    for (const [name, state] of this.states) {
      if (clusterNames.has(name)) continue;
      state.close();
      this.states.delete(name);
      if (this.lastState === state) {
        this.lastCluster = null;
        this.lastState = null;
      }
    }
  }

  all(): Iterable<ClusterState> {
    return this.states.values();
  }

  close(): void {
    for (const state of this.states.values()) state.close();
  }
}

export function createClusterRegistry(options: ClusterRegistryOptions): ClusterRegistry {
  return new Registry(options);
}
