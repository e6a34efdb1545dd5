/**
 * A pipeline under test: a fake route table, a fake cluster registry whose states record every call,
 * a scripted upstream client, manual timers on a manual clock, and a recording response sink.
 * The subject is the pipeline; the fakes only keep the contracts of the interfaces they stand for.
 */
import type {
  Admission,
  AttemptResult,
  ClusterRegistry,
  ClusterState,
  ClusterStatus,
  Pick,
  PickContext,
  RetryRefusal,
} from '../../../src/balancer/cluster-types.ts';
import type { ConfigBundle } from '../../../src/config/resource-types.ts';
import { SnapshotStore } from '../../../src/config/snapshot-store.ts';
import type {
  BodyStream,
  HeaderList,
  IncomingRequest,
  ResponseSink,
} from '../../../src/listener/listener-types.ts';
import type { PipelineDeps, TimerHandle, Timers } from '../../../src/pipeline/pipeline-types.ts';
import { ProxyPipeline } from '../../../src/pipeline/proxy-pipeline.ts';
import type { Cluster, Endpoint, RouteDecision, RouteTable } from '../../../src/router/route-types.ts';
import { AccessLog, type AccessLogEntry } from '../../../src/telemetry/access-log.ts';
import { MeshMetrics } from '../../../src/telemetry/metrics.ts';
import { ResilienceStats } from '../../../src/telemetry/resilience-stats.ts';
import type {
  UpstreamCall,
  UpstreamClient,
  UpstreamHandler,
  UpstreamRequest,
  UpstreamTarget,
} from '../../../src/upstream/upstream-types.ts';

export class Sink implements ResponseSink {
  aborted = false;
  status = 0;
  headers: HeaderList = [];
  body = '';
  ended = false;
  closed = false;
  destroyed = false;
  private abortedCb: (() => void) | null = null;
  onAborted(cb: () => void): void {
    this.abortedCb = cb;
  }
  onWritable(): void {}
  writeHead(status: number, headers: HeaderList): void {
    this.status = status;
    this.headers = headers;
  }
  write(chunk: Buffer): boolean {
    this.body += chunk.toString();
    return true;
  }
  end(chunk?: Buffer, close?: boolean): void {
    if (chunk !== undefined) this.body += chunk.toString();
    this.ended = true;
    this.closed = close === true;
  }
  destroy(): void {
    this.destroyed = true;
  }
  header(name: string): string | undefined {
    const i = this.headers.indexOf(name);
    return i < 0 ? undefined : this.headers[i + 1];
  }
  /** The client goes away. */
  abort(): void {
    this.aborted = true;
    this.abortedCb?.();
  }
}

/** Timers on a clock that only moves when told to. */
export class ManualTime implements Timers {
  now = 0;
  private seq = 0;
  private pending: { at: number; seq: number; fn: () => void; handle: TimerHandle }[] = [];

  start(fn: () => void, ms: number): TimerHandle {
    const handle = {};
    this.pending.push({ at: this.now + ms, seq: this.seq++, fn, handle });
    return handle;
  }

  cancel(handle: TimerHandle): void {
    this.pending = this.pending.filter((p) => p.handle !== handle);
  }

  /** Timers waiting, as delays from now. */
  waiting(): number[] {
    return this.pending.map((p) => p.at - this.now).sort((a, b) => a - b);
  }

  /** Moves the clock by `ms`, running due timers in order and letting microtasks run after each. */
  async advance(ms: number): Promise<void> {
    const target = this.now + ms;
    for (;;) {
      await settle();
      let next: (typeof this.pending)[number] | undefined;
      for (const p of this.pending) {
        if (
          p.at <= target &&
          (next === undefined || p.at < next.at || (p.at === next.at && p.seq < next.seq))
        )
          next = p;
      }
      if (next === undefined) break;
      this.pending = this.pending.filter((p) => p !== next);
      this.now = next.at;
      next.fn();
    }
    this.now = target;
    await settle();
  }
}

/** Lets queued microtasks and immediates run. */
export async function settle(rounds = 3): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((r) => setImmediate(r));
}

/** A ClusterState that records calls; its behavior is set per test through public fields. */
export class FakeClusterState implements ClusterState {
  readonly name: string;
  consistentHash = false;
  connection: ClusterState['connection'] = undefined;
  endpoints: readonly Endpoint[];
  /** What `admit` answers. */
  admitMode: 'granted' | 'queued' | 'overflow' = 'granted';
  /** The `onGranted` of a queued admission. */
  onGranted: (() => void) | null = null;
  /** What `tryRetry` answers. */
  refusal: RetryRefusal | null = null;
  /** Consistent-hash stand-in: always the first endpoint not excluded. Otherwise round robin. */
  sticky = false;
  /** Set-Cookie value every pick carries. */
  cookie: string | undefined = undefined;
  /** Every `pick` call: the excluded ids (undefined when none were given) and the id chosen. */
  readonly picks: { exclude: string[] | undefined; chosen: string | null; ctx: PickContext }[] = [];
  readonly started: string[] = [];
  readonly ended: { id: string; result: AttemptResult }[] = [];
  admits = 0;
  cancels = 0;
  releases = 0;
  requests = 0;
  retryAsks = 0;
  retriesEnded = 0;
  private next = 0;

  constructor(name: string, endpoints: readonly Endpoint[]) {
    this.name = name;
    this.endpoints = endpoints;
  }

  pick(ctx: PickContext, exclude?: ReadonlySet<string>): Pick | null {
    const all = this.endpoints;
    const allowed = all.filter((e) => exclude === undefined || !exclude.has(e.id));
    const from = allowed.length > 0 ? allowed : all;
    let chosen: Endpoint | undefined;
    if (this.sticky) chosen = from[0];
    else if (from.length > 0) chosen = from[this.next++ % from.length];
    this.picks.push({
      exclude: exclude === undefined ? undefined : [...exclude],
      chosen: chosen?.id ?? null,
      ctx,
    });
    if (chosen === undefined) return null;
    return this.cookie === undefined ? { endpoint: chosen } : { endpoint: chosen, setCookie: this.cookie };
  }

  attemptStarted(endpoint: Endpoint): void {
    this.started.push(endpoint.id);
  }

  attemptEnded(endpoint: Endpoint, result: AttemptResult): void {
    this.ended.push({ id: endpoint.id, result });
  }

  admit(onGranted: () => void): Admission {
    this.admits++;
    if (this.admitMode === 'queued') {
      this.onGranted = onGranted;
      return {
        kind: 'queued',
        cancel: () => {
          this.cancels++;
        },
      };
    }
    return { kind: this.admitMode };
  }

  release(): void {
    this.releases++;
  }

  recordRequest(): void {
    this.requests++;
  }

  tryRetry(): RetryRefusal | null {
    this.retryAsks++;
    return this.refusal;
  }

  retryEnded(): void {
    this.retriesEnded++;
  }

  status(): ClusterStatus {
    throw new Error('not used by the pipeline');
  }
}

export class FakeRegistry implements ClusterRegistry {
  readonly states = new Map<string, FakeClusterState>();

  get(cluster: Cluster): FakeClusterState {
    let s = this.states.get(cluster.name);
    if (s === undefined) {
      s = new FakeClusterState(cluster.name, cluster.endpoints);
      this.states.set(cluster.name, s);
    }
    return s;
  }

  retain(): void {}

  all(): Iterable<ClusterState> {
    return this.states.values();
  }

  close(): void {}
}

/** One `send` the upstream client received. */
export interface SentCall {
  readonly index: number;
  readonly target: string;
  /** The target object as the client received it (its `tls` among others). */
  readonly to: UpstreamTarget;
  readonly req: UpstreamRequest;
  /** The handler, muted once the call was aborted (the client promises no callback after abort). */
  readonly h: UpstreamHandler;
  aborted: boolean;
  /** The request body as the upstream read it (filled when the script calls `readBody`). */
  body: string;
  bodyEnded: boolean;
}

/** What the upstream does with each call (run in a microtask after `send`). */
export type Script = (call: SentCall) => void;

/** Reads the whole request body of a call into `call.body`. */
export function readBody(call: SentCall, then?: () => void): void {
  const body = call.req.body;
  if (body === null) {
    call.bodyEnded = true;
    then?.();
    return;
  }
  body.onData((chunk, last) => {
    call.body += chunk.toString();
    if (last) {
      call.bodyEnded = true;
      then?.();
    }
  });
}

export function respond(call: SentCall, status: number, body = '', headers: HeaderList = []): void {
  call.h.onHeaders(status, ['content-length', String(body.length), ...headers]);
  if (body !== '') call.h.onData(Buffer.from(body));
  call.h.onEnd();
}

/** A request body that delivers `chunks` from a microtask once a consumer attached. */
export function bodyOf(...chunks: string[]): BodyStream {
  let cb: ((chunk: Buffer, last: boolean) => void) | null = null;
  return {
    onData(c) {
      cb = c;
      queueMicrotask(() => {
        for (let i = 0; i < chunks.length; i++) cb?.(Buffer.from(chunks[i]!), i === chunks.length - 1);
      });
    },
    pause() {},
    resume() {},
  };
}

export const request = (
  target: string,
  extra: Partial<IncomingRequest> = {},
  headers: HeaderList = ['host', 'svc'],
): IncomingRequest => ({
  engine: 'h1',
  method: 'GET',
  target,
  headers,
  remoteAddress: '10.1.2.3',
  localPort: 15001,
  secure: false,
  body: null,
  ...extra,
});

export const cluster = (name: string, ...ports: number[]): Cluster => ({
  name: `outbound|80||${name}.default.svc.cluster.local`,
  host: `${name}.default.svc.cluster.local`,
  port: 80,
  subset: '',
  endpoints: ports.map((p) => ({
    id: `127.0.0.1:${p}`,
    address: '127.0.0.1',
    port: p,
    weight: 1,
    labels: {},
  })),
  serviceFqdn: `${name}.default.svc.cluster.local`,
  serviceName: name,
  serviceNamespace: 'default',
});

export type Forward = Extract<RouteDecision, { kind: 'forward' }>;

export const forward = (c: Cluster, extra: Partial<Forward> = {}): RouteDecision => ({
  kind: 'forward',
  cluster: c,
  routeName: 'default/svc',
  responseHeaders: [],
  path: '/p',
  authority: 'svc',
  requestHeaders: [],
  mirrors: [],
  mirrorClusters: [],
  ...extra,
});

export interface SetupOptions {
  /** Random draws in order (cycled); default always 0.5. */
  readonly random?: readonly number[];
  readonly app?: UpstreamTarget | null;
  /** Extra pipeline dependencies (security: inbound workload, origination, events). */
  readonly deps?: Partial<PipelineDeps>;
}

export function setup(route: () => RouteDecision, script: Script, opts: SetupOptions = {}) {
  const time = new ManualTime();
  const calls: SentCall[] = [];
  const bugs: unknown[] = [];
  const logged: AccessLogEntry[] = [];
  const upstream: UpstreamClient = {
    send(target, req, handler): UpstreamCall {
      const call: SentCall = {
        index: calls.length,
        target: `${target.address}:${target.port}`,
        to: target,
        req,
        aborted: false,
        body: '',
        bodyEnded: false,
        h: {
          onHeaders: (s, hs) => {
            if (!call.aborted) handler.onHeaders(s, hs);
          },
          onData: (c) => (call.aborted ? true : handler.onData(c)),
          onEnd: () => {
            if (!call.aborted) handler.onEnd();
          },
          onError: (f, a, d, w) => {
            if (!call.aborted) handler.onError(f, a, d, w);
          },
        },
      };
      calls.push(call);
      queueMicrotask(() => script(call));
      return {
        resume() {},
        abort() {
          call.aborted = true;
        },
      };
    },
    close: async () => {},
  };
  const routes: RouteTable = { route, clusters: new Map() };
  const store = new SnapshotStore({
    version: 1,
    hash: 'h',
    loadedAt: new Date(0),
    bundle: {} as ConfigBundle,
    routes,
    outboundTrafficPolicy: 'ALLOW_ANY',
  });
  const metrics = new MeshMetrics();
  const registry = new FakeRegistry();
  const stats = new ResilienceStats();
  const draws = opts.random ?? [0.5];
  let draw = 0;
  const accessLog = new AccessLog((text) => {
    for (const line of text.trim().split('\n')) logged.push(JSON.parse(line) as AccessLogEntry);
  });
  const pipeline = new ProxyPipeline({
    store,
    upstream,
    clusters: registry,
    stats,
    metrics,
    identity: {
      workload: 'w',
      namespace: 'default',
      app: 'w',
      version: 'v1',
      canonicalService: 'w',
      canonicalRevision: 'v1',
      cluster: 'unknown',
    },
    observers: [accessLog],
    random: () => draws[draw++ % draws.length]!,
    now: () => time.now,
    timers: time,
    requestId: () => 'rid',
    app: opts.app ?? null,
    namespace: 'default',
    onBug: (e) => bugs.push(e),
    ...opts.deps,
  });
  return { pipeline, calls, bugs, metrics, registry, stats, time, logged, store };
}
