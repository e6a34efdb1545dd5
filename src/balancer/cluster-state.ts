/**
 * Everything meshlet keeps about one cluster (`outbound|port|subset|host`) between requests: the
 * endpoint list after DNS, the picker its `loadBalancer` policy asks for, outlier detection and the
 * healthy list derived from it, connection-pool admission, the retry budget and counters.
 *
 * A `ClusterStateImpl` is created and updated by the registry (cluster-registry.ts); the request
 * path only sees the `ClusterState` interface of cluster-types.ts. Work happens when the
 * configuration or the health of endpoints changes (tables, healthy list, connection policy); a
 * request costs a pick and a few counter updates.
 */
import { isIP } from 'node:net';
import type {
  ConnectionPoolSettings,
  LoadBalancerSettings,
  OutlierDetectionSettings,
  TrafficPolicy,
} from '../config/resource-types.ts';
import type { RetryBudgetOptions } from '../resilience/retry-budget.ts';
import { RetryBudget } from '../resilience/retry-budget.ts';
import type { Cluster, Endpoint } from '../router/route-types.ts';
import { AdmissionControl } from './admission.ts';
import type { HostResolver } from './cluster-registry.ts';
import type {
  Admission,
  AttemptResult,
  ClusterState,
  ClusterStatus,
  ConnectionPolicy,
  EndpointStatus,
  Pick,
  PickContext,
  RetryRefusal,
} from './cluster-types.ts';
import { poolLimits } from './cluster-types.ts';
import {
  DEFAULT_MAGLEV_TABLE_SIZE,
  DEFAULT_MINIMUM_RING_SIZE,
  isPrime,
  MAGLEV_TABLE_SIZE_LIMIT,
  Maglev,
  RingHash,
} from './consistent-hash.ts';
import { compileHashInput, type HashInput, NO_HASH } from './hash-input.ts';
import { LeastRequestPicker } from './least-request.ts';
import { OutlierDetector, type OutlierResult } from './outlier-detector.ts';
import { P2cPicker } from './p2c-picker.ts';
import type { Clock, HashPicker, Picker, RandomSource } from './picker-types.ts';
import { RandomPicker } from './random-picker.ts';
import { RoundRobinPicker } from './round-robin.ts';
import { reconcileStates } from './selection.ts';

/** A repeating timer, injected so tests drive the outlier sweep by hand. */
export type IntervalTimer = (fn: () => void, ms: number) => { cancel(): void };

export interface ClusterStateOptions {
  readonly clock: Clock;
  readonly random: RandomSource;
  readonly retryBudget?: RetryBudgetOptions;
  readonly resolver?: HostResolver;
  readonly setInterval: IntervalTimer;
  readonly connections?: (endpointId: string) => number | null;
}

/** `ClusterStatus.loadBalancer` names. */
export type BalancerKind =
  | 'P2C_PEAK_EWMA'
  | 'ROUND_ROBIN'
  | 'LEAST_REQUEST'
  | 'RANDOM'
  | 'RING_HASH'
  | 'MAGLEV';

/** Envoy's `maximum_ring_size` default: a larger `minimumRingSize` is clamped to it. */
const MAX_RING_SIZE = 8 * 1024 * 1024;

const LOCAL_FAILURE: OutlierResult = Object.freeze({ kind: 'local-failure' });
/** One shared result object per status code, so reporting to the detector allocates nothing. */
const RESPONSES: OutlierResult[] = [];

function responseResult(status: number): OutlierResult {
  if (!Number.isInteger(status) || status < 0 || status > 999) return { kind: 'response', status };
  let r = RESPONSES[status];
  if (r === undefined) {
    r = Object.freeze({ kind: 'response', status });
    RESPONSES[status] = r;
  }
  return r;
}

interface EndpointRecord {
  inFlight: number;
}

export class ClusterStateImpl implements ClusterState {
  readonly name: string;
  /** The `Cluster` object this state was last updated from (the registry's fast path compares it). */
  cluster: Cluster;
  private readonly options: ClusterStateOptions;

  // Endpoints: as configured, after DNS, and the ones the picker chooses from.
  private rawSignature: string;
  private expanded: readonly Endpoint[] = [];
  private healthy: readonly Endpoint[] = [];
  private inPanic = false;
  /** Host names this cluster's endpoints resolve through DNS. */
  private hosts: ReadonlySet<string> = new Set();
  private readonly records = new Map<string, EndpointRecord>();

  // Policy, each part compared as JSON so a reload that changes one part keeps the others' state.
  private policyJson: string;
  private lbJson = '';
  private poolJson = '';
  private odJson = '';
  private kind: BalancerKind = 'P2C_PEAK_EWMA';
  private picker: Picker | null = null;
  private hashPicker: HashPicker | null = null;
  private hashInput: HashInput | null = null;
  /** Consistent hash without a hash input in the request: a random endpoint (spec §3.4). */
  private fallback: RandomPicker | null = null;
  private lbSettings: LoadBalancerSettings | undefined;

  private detector: OutlierDetector | null = null;
  private sweepTimer: { cancel(): void } | null = null;
  private sweepIntervalMs = 0;
  /** Ejections counted by detectors that were replaced or dropped. */
  private pastEjections = 0;

  private readonly admission = new AdmissionControl();
  private connectionPolicy: ConnectionPolicy | undefined;
  private maxRetries = Infinity;
  private concurrentRetries = 0;
  private readonly budget: RetryBudget;

  private requests = 0;
  private retries = 0;
  private retryBudgetExhausted = 0;
  private retryOverflow = 0;

  constructor(cluster: Cluster, options: ClusterStateOptions) {
    this.name = cluster.name;
    this.cluster = cluster;
    this.options = options;
    this.budget = new RetryBudget(options.clock, options.retryBudget);
    this.rawSignature = endpointSignature(cluster.endpoints);
    this.policyJson = policySignature(cluster.trafficPolicy);
    this.applyPolicy(cluster.trafficPolicy);
    this.setExpanded(this.expand(cluster.endpoints));
  }

  get consistentHash(): boolean {
    return this.hashPicker !== null;
  }

  get connection(): ConnectionPolicy | undefined {
    return this.connectionPolicy;
  }

  get endpoints(): readonly Endpoint[] {
    return this.expanded;
  }

  /** The endpoints the picker currently chooses from (non-ejected, or all in panic mode). */
  get healthyEndpoints(): readonly Endpoint[] {
    return this.healthy;
  }

  get loadBalancer(): BalancerKind {
    return this.kind;
  }

  /**
   * Takes over a newer `Cluster` object of the same name. Endpoints (ids, weights, labels) and the
   * policy are compared with what the state has, and only what differs is rebuilt, so per-endpoint
   * state (EWMA, in-flight counts, ejections) survives for endpoints that stayed.
   */
  update(cluster: Cluster): void {
    if (cluster === this.cluster) return;
    this.cluster = cluster;
    const policyJson = policySignature(cluster.trafficPolicy);
    if (policyJson !== this.policyJson) {
      this.policyJson = policyJson;
      this.applyPolicy(cluster.trafficPolicy);
    }
    const signature = endpointSignature(cluster.endpoints);
    if (signature !== this.rawSignature) {
      this.rawSignature = signature;
      this.setExpanded(this.expand(cluster.endpoints));
    }
  }

  /** True when `host` is one of the names this cluster's endpoints resolve through DNS. */
  usesHost(host: string): boolean {
    return this.hosts.has(host);
  }

  /** The resolver reported new addresses for a host: expand the endpoints again. */
  dnsChanged(host: string): void {
    if (this.hosts.has(host)) this.setExpanded(this.expand(this.cluster.endpoints));
  }

  /** Stops the outlier sweep. The state stays usable (a later update may start it again). */
  close(): void {
    this.sweepTimer?.cancel();
    this.sweepTimer = null;
    this.sweepIntervalMs = 0;
  }

  // ---- the request path ------------------------------------------------------------------------

  pick(ctx: PickContext, exclude?: ReadonlySet<string>): Pick | null {
    const picker = this.picker;
    if (picker !== null) {
      const endpoint = picker.pick(exclude);
      return endpoint === null ? null : { endpoint };
    }
    const table = this.hashPicker!;
    const input = this.hashInput;
    if (input !== null) {
      const hash = input.hash(ctx);
      if (hash !== NO_HASH) {
        const endpoint = table.pick(hash, exclude);
        return endpoint === null ? null : { endpoint };
      }
      const issued = input.issue();
      if (issued !== null) {
        const endpoint = table.pick(issued.hash, exclude);
        return endpoint === null ? null : { endpoint, setCookie: issued.setCookie };
      }
    }
    const endpoint = this.fallback!.pick(exclude);
    return endpoint === null ? null : { endpoint };
  }

  attemptStarted(endpoint: Endpoint): void {
    this.picker?.start(endpoint);
    const r = this.records.get(endpoint.id);
    if (r !== undefined) r.inFlight++;
  }

  attemptEnded(endpoint: Endpoint, result: AttemptResult): void {
    const local = result.failure !== null;
    const status = result.status;
    // Failures weigh on the EWMA as a penalty (see PeakEwma): a fast 503 must not look attractive.
    this.picker?.end(endpoint, result.rttMs, local || status >= 500 || status === 429);
    const r = this.records.get(endpoint.id);
    if (r !== undefined && r.inFlight > 0) r.inFlight--;
    // May call back `onChange` synchronously (an ejection), which rebuilds the healthy list.
    this.detector?.report(endpoint.id, local ? LOCAL_FAILURE : responseResult(status));
  }

  admit(onGranted: () => void): Admission {
    return this.admission.admit(onGranted);
  }

  release(): void {
    this.admission.release();
  }

  recordRequest(): void {
    this.requests++;
    this.budget.recordRequest();
  }

  tryRetry(): RetryRefusal | null {
    if (this.concurrentRetries >= this.maxRetries) {
      this.retryOverflow++;
      return 'max-retries';
    }
    if (!this.budget.tryWithdraw()) {
      this.retryBudgetExhausted++;
      return 'budget';
    }
    this.concurrentRetries++;
    this.retries++;
    return null;
  }

  retryEnded(): void {
    if (this.concurrentRetries > 0) this.concurrentRetries--;
  }

  // ---- /clusters -------------------------------------------------------------------------------

  status(): ClusterStatus {
    const p2c = this.picker instanceof P2cPicker ? this.picker : null;
    const detector = this.detector;
    const connections = this.options.connections;
    const endpoints: EndpointStatus[] = this.expanded.map((e) => {
      const od = detector?.status(e.id);
      return {
        id: e.id,
        address: e.address,
        port: e.port,
        weight: e.weight,
        ewmaMs: p2c?.stateOf(e.id)?.estimate() ?? null,
        inFlight: this.records.get(e.id)?.inFlight ?? 0,
        ejectedUntilMs: od?.ejectedUntilMs ?? null,
        timesEjected: od?.timesEjected ?? 0,
        consecutive5xx: od?.consecutive5xx ?? 0,
        consecutiveGatewayErrors: od?.consecutiveGatewayErrors ?? 0,
        consecutiveLocalOriginFailures: od?.consecutiveLocalOriginFailures ?? 0,
        connections: connections === undefined ? null : connections(e.id),
      };
    });
    return {
      name: this.name,
      loadBalancer: this.kind,
      active: this.admission.active,
      pending: this.admission.pending,
      panic: this.inPanic,
      counters: {
        requests: this.requests,
        retries: this.retries,
        retryBudgetExhausted: this.retryBudgetExhausted,
        retryOverflow: this.retryOverflow,
        overflows: this.admission.overflows,
        ejections: this.pastEjections + (detector?.totalEjections ?? 0),
        pendingQueued: this.admission.queuedTotal,
      },
      endpoints,
    };
  }

  // ---- configuration ---------------------------------------------------------------------------

  private applyPolicy(policy: TrafficPolicy | undefined): void {
    const poolJson = JSON.stringify(policy?.connectionPool ?? null);
    if (poolJson !== this.poolJson) {
      this.poolJson = poolJson;
      this.applyConnectionPool(policy?.connectionPool);
    }
    const lbJson = JSON.stringify(policy?.loadBalancer ?? null);
    if (lbJson !== this.lbJson) {
      this.lbJson = lbJson;
      this.lbSettings = policy?.loadBalancer;
      this.buildPicker();
    }
    const odJson = JSON.stringify(policy?.outlierDetection ?? null);
    if (odJson !== this.odJson) {
      this.odJson = odJson;
      this.applyOutlierDetection(policy?.outlierDetection);
    }
  }

  private applyConnectionPool(pool: ConnectionPoolSettings | undefined): void {
    const limits = poolLimits(pool);
    this.admission.setLimits({
      maxActive: Math.min(limits.maxConnections, limits.maxRequests),
      maxPending: limits.maxPending,
    });
    this.maxRetries = limits.maxRetries;
    const connectTimeoutMs = pool?.tcp?.connectTimeout;
    const maxRequestsPerConnection = pool?.http?.maxRequestsPerConnection;
    const idleTimeoutMs = pool?.http?.idleTimeout ?? pool?.tcp?.idleTimeout;
    if (
      connectTimeoutMs === undefined &&
      maxRequestsPerConnection === undefined &&
      idleTimeoutMs === undefined
    ) {
      this.connectionPolicy = undefined;
      return;
    }
    // Built once per policy change; every request of the cluster shares this object.
    this.connectionPolicy = Object.freeze({
      ...(connectTimeoutMs === undefined ? {} : { connectTimeoutMs }),
      ...(maxRequestsPerConnection === undefined ? {} : { maxRequestsPerConnection }),
      ...(idleTimeoutMs === undefined ? {} : { idleTimeoutMs }),
    });
  }

  private buildPicker(): void {
    const lb = this.lbSettings;
    const { clock, random } = this.options;
    this.picker = null;
    this.hashPicker = null;
    this.hashInput = null;
    this.fallback = null;
    const ch = lb?.consistentHash;
    if (ch !== undefined) {
      this.kind = ch.maglev !== undefined ? 'MAGLEV' : 'RING_HASH';
      this.hashInput = compileHashInput(ch, random);
      this.fallback = new RandomPicker(this.healthy, random);
      this.hashPicker = this.buildTable(this.healthy);
      return;
    }
    switch (lb?.simple) {
      case 'LEAST_REQUEST':
      case 'LEAST_CONN':
        this.kind = 'LEAST_REQUEST';
        this.picker = new LeastRequestPicker(this.healthy, { random });
        return;
      case 'ROUND_ROBIN':
        this.kind = 'ROUND_ROBIN';
        this.picker = new RoundRobinPicker(this.healthy);
        return;
      case 'RANDOM':
        this.kind = 'RANDOM';
        this.picker = new RandomPicker(this.healthy, random);
        return;
      default:
        // Absent, UNSPECIFIED and PASSTHROUGH (not supported: there is no original destination to
        // pass through to): meshlet's default, P2C over peak-EWMA. Istio's default is LEAST_REQUEST;
        // latency-aware choice is the deliberate difference (README, design).
        this.kind = 'P2C_PEAK_EWMA';
        this.picker = new P2cPicker(this.healthy, { now: clock, random });
    }
  }

  private buildTable(endpoints: readonly Endpoint[]): HashPicker {
    const ch = this.lbSettings?.consistentHash;
    if (ch?.maglev !== undefined) {
      const size = ch.maglev.tableSize;
      // The validator rejects bad sizes; should one get through, the default beats failing the cluster.
      const ok = size !== undefined && isPrime(size) && size < MAGLEV_TABLE_SIZE_LIMIT;
      return new Maglev(endpoints, { tableSize: ok ? size : DEFAULT_MAGLEV_TABLE_SIZE });
    }
    const ring = ch?.ringHash?.minimumRingSize ?? ch?.minimumRingSize ?? DEFAULT_MINIMUM_RING_SIZE;
    return new RingHash(endpoints, { minimumRingSize: Math.min(Math.max(1, ring), MAX_RING_SIZE) });
  }

  private applyOutlierDetection(settings: OutlierDetectionSettings | undefined): void {
    if (settings === undefined) {
      if (this.detector !== null) {
        this.pastEjections += this.detector.totalEjections;
        this.detector = null;
      }
      this.close();
      this.refreshHealthy();
      return;
    }
    if (this.detector === null) {
      // The detector may report a change while it is being set up; only the installed one counts.
      let detector: OutlierDetector | null = null;
      detector = new OutlierDetector(settings, {
        clock: this.options.clock,
        onChange: () => {
          if (detector !== null && this.detector === detector) this.refreshHealthy();
        },
      });
      this.detector = detector;
      detector.setEndpoints(this.expanded.map((e) => e.id));
    } else {
      this.detector.update(settings);
    }
    this.startSweep();
    this.refreshHealthy();
  }

  /** (Re)starts the periodic sweep when the detector's interval differs from the running timer's. */
  private startSweep(): void {
    const detector = this.detector;
    if (detector === null) return;
    const ms = detector.intervalMs;
    if (this.sweepTimer !== null && this.sweepIntervalMs === ms) return;
    this.sweepTimer?.cancel();
    this.sweepIntervalMs = ms;
    this.sweepTimer = this.options.setInterval(() => {
      this.detector?.sweep();
    }, ms);
  }

  // ---- endpoints -------------------------------------------------------------------------------

  /**
   * Endpoints after DNS: an address that is not an IP literal becomes one endpoint per resolved
   * address (id `ip:port`), or stays as it is until the resolver has an answer (the upstream client
   * then resolves it itself). A host resolved to no address contributes no endpoint, as Envoy's
   * STRICT_DNS cluster has no host then. Duplicates (two names, one address) are kept once.
   */
  private expand(raw: readonly Endpoint[]): readonly Endpoint[] {
    const resolver = this.options.resolver;
    if (resolver === undefined || raw.every((e) => !needsResolution(e))) {
      this.hosts = new Set();
      return raw;
    }
    const hosts = new Set<string>();
    const seen = new Set<string>();
    const out: Endpoint[] = [];
    for (const e of raw) {
      if (!needsResolution(e)) {
        if (!seen.has(e.id)) out.push(e);
        seen.add(e.id);
        continue;
      }
      hosts.add(e.address);
      const addresses = resolver.addresses(e.address);
      if (addresses === undefined) {
        if (!seen.has(e.id)) out.push(e);
        seen.add(e.id);
        continue;
      }
      for (const address of addresses) {
        const id = `${address}:${e.port}`;
        if (seen.has(id)) continue;
        seen.add(id);
        out.push(Object.freeze({ id, address, port: e.port, weight: e.weight, labels: e.labels }));
      }
    }
    this.hosts = hosts;
    return out;
  }

  private setExpanded(list: readonly Endpoint[]): void {
    if (sameList(list, this.expanded)) return;
    this.expanded = list;
    reconcileStates(this.records, list, () => ({ inFlight: 0 }));
    this.detector?.setEndpoints(list.map((e) => e.id));
    this.refreshHealthy();
  }

  /**
   * Recomputes the list the picker chooses from: the endpoints the detector has not ejected, or all
   * of them when the healthy share is under `minHealthPercent` (panic). Pickers are only touched
   * when that list really changed.
   */
  private refreshHealthy(): void {
    const all = this.expanded;
    const detector = this.detector;
    let healthy = all;
    let panic = false;
    if (detector !== null && detector.ejectedCount > 0) {
      const left = all.filter((e) => !detector.isEjected(e.id));
      if (left.length * 100 < detector.minHealthPercent * all.length) panic = true;
      else if (left.length !== all.length) healthy = left;
    }
    this.inPanic = panic;
    if (sameList(healthy, this.healthy)) return;
    this.healthy = healthy;
    this.installHealthy();
  }

  private installHealthy(): void {
    const healthy = this.healthy;
    if (this.hashPicker !== null) {
      this.hashPicker = this.buildTable(healthy);
      this.fallback?.adopt(healthy);
      return;
    }
    const picker = this.picker;
    if (picker instanceof RoundRobinPicker) {
      // Round robin keeps its rotation only for an identical list; anything else starts afresh.
      if (sameList(picker.endpoints, healthy)) picker.adopt(healthy);
      else this.picker = new RoundRobinPicker(healthy);
      return;
    }
    picker?.adopt(healthy);
  }
}

function needsResolution(e: Endpoint): boolean {
  return isIP(e.address) === 0 && !e.address.startsWith('unix://');
}

/** Same endpoints in the same order: ids, addresses, weights and label objects. */
function sameList(a: readonly Endpoint[], b: readonly Endpoint[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x === y) continue;
    if (x.id !== y.id || x.weight !== y.weight || x.address !== y.address || x.port !== y.port) return false;
    if (x.labels !== y.labels && JSON.stringify(x.labels) !== JSON.stringify(y.labels)) return false;
  }
  return true;
}

/** What an endpoint list means to the balancer and to metrics: ids, weights and labels, in order. */
export function endpointSignature(endpoints: readonly Endpoint[]): string {
  let s = '';
  for (const e of endpoints) s += `${e.id}*${e.weight}*${e.address}*${e.port}*${JSON.stringify(e.labels)}\n`;
  return s;
}

function policySignature(policy: TrafficPolicy | undefined): string {
  return policy === undefined ? '' : JSON.stringify(policy);
}
