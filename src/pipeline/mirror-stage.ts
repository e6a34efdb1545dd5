/**
 * Traffic mirroring (spec §2.4 `mirror`, `mirrors[]`): a copy of the request goes, fire and forget,
 * to each mirror cluster whose percentage draw hits. The copy carries the primary's method, path and
 * upstream headers, Host unchanged (Istio ≥ 1.28); its response is read and thrown away. Nothing a
 * mirror does reaches the primary: failures only count in `stats.mirrorsFailed`.
 *
 * Bodies: a bodiless request is copied at once (right after the primary's first attempt left). For a
 * request with a body, the tap keeps a copy of the chunks while they stream to the primary and sends
 * the mirrors once the body ended; a body over 64 KiB is not mirrored (`stats.mirrorsSkipped`), nor is
 * one the primary stopped reading before its end. The copy never pauses or delays the primary's body.
 */
import type { ClusterState, PickContext } from '../balancer/cluster-types.ts';
import type { BodyStream, HeaderList } from '../listener/listener-types.ts';
import type { Cluster, Endpoint, MirrorTarget } from '../router/route-types.ts';
import type {
  UpstreamCall,
  UpstreamFailure,
  UpstreamHandler,
  UpstreamRequest,
} from '../upstream/upstream-types.ts';
import { pickContextOf } from './attempt-loop.ts';
import type { Exchange } from './exchange.ts';
import { attemptTarget } from './origination-stage.ts';
import type { PipelineDeps, TimerHandle, Timers } from './pipeline-types.ts';

/** The largest request body that is mirrored (the same bound as the retry replay buffer). */
export const MIRROR_BODY_LIMIT_BYTES = 64 * 1024;

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** The request as every copy sends it. */
interface MirrorRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: HeaderList;
  readonly ctx: PickContext;
  /** The route timeout, which bounds each copy too; undefined: none. */
  readonly timeoutMs: number | undefined;
}

/**
 * Draws, per mirror, whether this request is copied (`random() < fraction`). Returns null when no
 * draw hit. Call after the upstream request is prepared (headers, path).
 */
export function drawMirrors(
  ex: Exchange,
  targets: readonly MirrorTarget[],
  timeoutMs: number | undefined,
): MirrorCopy | null {
  const random = ex.owner.deps.random;
  let chosen: MirrorTarget[] | null = null;
  for (const m of targets) {
    if (random() < m.fraction) {
      chosen ??= [];
      chosen.push(m);
    }
  }
  if (chosen === null) return null;
  return new MirrorCopy(ex.owner.deps, ex.owner.timers, chosen, {
    method: ex.req.method,
    path: ex.path,
    headers: ex.upstreamHeaders,
    ctx: pickContextOf(ex),
    timeoutMs,
  });
}

/** The copies of one request: waits for the body when there is one, then sends one copy per target. */
export class MirrorCopy {
  private readonly deps: PipelineDeps;
  private readonly timers: Timers;
  private readonly targets: readonly MirrorTarget[];
  private readonly request: MirrorRequest;
  /** Body chunks kept so far; null once the body outgrew the limit. */
  private chunks: Buffer[] | null = [];
  private bytes = 0;
  /** The last chunk was kept. */
  private complete = false;
  /** Sent, skipped or abandoned: nothing more happens. */
  private settled = false;

  constructor(deps: PipelineDeps, timers: Timers, targets: readonly MirrorTarget[], request: MirrorRequest) {
    this.deps = deps;
    this.timers = timers;
    this.targets = targets;
    this.request = request;
  }

  /** A bodiless request: the copies go now. */
  sendNow(): void {
    if (this.settled) return;
    this.settled = true;
    this.send(null);
  }

  /** Wraps the request body so the chunks the primary reads are kept for the copies. */
  tap(source: BodyStream): BodyStream {
    return new MirrorTap(source, this);
  }

  /** @internal A chunk is about to go to the primary: keep it (or give up past the limit). */
  keep(chunk: Buffer, last: boolean): void {
    if (this.settled) return;
    const chunks = this.chunks;
    if (chunks === null) return;
    this.bytes += chunk.length;
    if (this.bytes > MIRROR_BODY_LIMIT_BYTES) {
      this.chunks = null;
      this.skip();
      return;
    }
    chunks.push(chunk);
    if (last) this.complete = true;
  }

  /** @internal The last chunk went to the primary: the copies leave now. */
  bodyEnded(): void {
    if (this.settled || !this.complete || this.chunks === null) return;
    this.settled = true;
    this.send(this.chunks);
  }

  /**
   * The primary exchange ended. A body that never ended cannot be copied whole: skipped. (One that
   * did end is sent by `bodyEnded`, which runs right after the primary took the last chunk.)
   */
  abandon(): void {
    if (!this.settled && !this.complete) this.skip();
  }

  private skip(): void {
    this.settled = true;
    this.deps.stats.mirrorsSkipped += this.targets.length;
  }

  private send(body: readonly Buffer[] | null): void {
    for (const target of this.targets) {
      try {
        new MirrorAttempt(
          this.deps,
          this.timers,
          target.cluster,
          this.deps.clusters.get(target.cluster),
          this.request,
          body,
        ).start();
      } catch (err) {
        // A bug in a copy must not reach the primary: count it, report it, carry on.
        this.deps.stats.mirrorsFailed++;
        this.deps.onBug(err);
      }
    }
  }
}

/**
 * Passes the body through to the primary, keeping each chunk for the copy first; the copies are
 * sent after the primary took the last chunk, so the primary's body never waits for them.
 */
class MirrorTap implements BodyStream {
  private readonly source: BodyStream;
  private readonly copy: MirrorCopy;

  constructor(source: BodyStream, copy: MirrorCopy) {
    this.source = source;
    this.copy = copy;
  }

  onData(cb: (chunk: Buffer, last: boolean) => void): void {
    this.source.onData((chunk, last) => {
      this.copy.keep(chunk, last);
      cb(chunk, last);
      if (last) this.copy.bodyEnded();
    });
  }

  pause(): void {
    this.source.pause();
  }

  resume(): void {
    this.source.resume();
  }
}

/** One copy to one mirror cluster: admission, pick, send, read and drop the response. */
class MirrorAttempt implements UpstreamHandler {
  private readonly deps: PipelineDeps;
  private readonly timers: Timers;
  private readonly cluster: Cluster;
  private readonly state: ClusterState;
  private readonly request: MirrorRequest;
  private readonly body: readonly Buffer[] | null;
  private endpoint: Endpoint | null = null;
  private call: UpstreamCall | null = null;
  private queued: { cancel(): void } | null = null;
  private timer: TimerHandle | null = null;
  private admitted = false;
  private done = false;
  private startedAt = 0;
  private status = 0;
  private rttMs = 0;

  constructor(
    deps: PipelineDeps,
    timers: Timers,
    cluster: Cluster,
    state: ClusterState,
    request: MirrorRequest,
    body: readonly Buffer[] | null,
  ) {
    this.deps = deps;
    this.timers = timers;
    this.cluster = cluster;
    this.state = state;
    this.request = request;
    this.body = body;
  }

  start(): void {
    const timeoutMs = this.request.timeoutMs;
    if (timeoutMs !== undefined && timeoutMs > 0) {
      this.timer = this.timers.start(() => {
        this.timer = null;
        this.fail('per-try-timeout');
      }, timeoutMs);
    }
    const admission = this.state.admit(() => {
      this.queued = null;
      this.admitted = true;
      if (this.done) this.state.release();
      else this.go();
    });
    switch (admission.kind) {
      case 'granted':
        this.admitted = true;
        this.go();
        return;
      case 'queued':
        this.queued = admission;
        return;
      case 'overflow':
        this.fail(null);
        return;
    }
  }

  private go(): void {
    const pick = this.state.pick(this.request.ctx);
    if (pick === null) {
      this.fail(null);
      return;
    }
    // Copies originate mTLS like the primary; without a certificate the copy fails (counted), and
    // the endpoint, which did nothing wrong, gets no feedback.
    const to = attemptTarget(this.deps, this.cluster, pick.endpoint);
    if (typeof to === 'string') {
      this.fail(null);
      return;
    }
    const endpoint = pick.endpoint;
    this.endpoint = endpoint;
    this.state.attemptStarted(endpoint);
    this.startedAt = this.deps.now();
    this.deps.stats.mirrorsSent++;
    const request: Mutable<UpstreamRequest> = {
      method: this.request.method,
      path: this.request.path,
      headers: this.request.headers,
      body: this.body === null ? null : new BufferedBody(this.body),
      expectContinue: false,
    };
    if (this.state.connection !== undefined) request.pool = this.state.connection;
    const call = this.deps.upstream.send(to, request, this);
    if (this.done) call.abort();
    else this.call = call;
  }

  onHeaders(status: number): void {
    this.status = status;
    this.rttMs = this.deps.now() - this.startedAt;
  }

  onData(): boolean {
    return true;
  }

  onEnd(): void {
    this.end(null);
  }

  onError(failure: UpstreamFailure): void {
    this.fail(failure);
  }

  /** The copy failed (or was given up): counted, never reported to anyone else. */
  private fail(failure: UpstreamFailure | 'per-try-timeout' | null): void {
    if (this.done) return;
    this.deps.stats.mirrorsFailed++;
    this.call?.abort();
    this.end(failure);
  }

  private end(failure: UpstreamFailure | 'per-try-timeout' | null): void {
    if (this.done) return;
    this.done = true;
    this.call = null;
    if (this.timer !== null) {
      this.timers.cancel(this.timer);
      this.timer = null;
    }
    this.queued?.cancel();
    this.queued = null;
    const endpoint = this.endpoint;
    if (endpoint !== null) {
      const rttMs = this.status > 0 ? this.rttMs : this.deps.now() - this.startedAt;
      this.state.attemptEnded(endpoint, { rttMs, status: this.status, failure });
    }
    if (this.admitted) this.state.release();
  }
}

/** A complete body in memory as a `BodyStream`, delivered from a microtask like an engine's. */
class BufferedBody implements BodyStream {
  private readonly chunks: readonly Buffer[];
  private next = 0;
  private cb: ((chunk: Buffer, last: boolean) => void) | null = null;
  private paused = false;
  private scheduled = false;

  constructor(chunks: readonly Buffer[]) {
    this.chunks = chunks.length === 0 ? [Buffer.alloc(0)] : chunks;
  }

  onData(cb: (chunk: Buffer, last: boolean) => void): void {
    this.cb = cb;
    this.schedule();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled || this.cb === null || this.next >= this.chunks.length) return;
    this.scheduled = true;
    queueMicrotask(() => this.flush());
  }

  private flush(): void {
    this.scheduled = false;
    const cb = this.cb;
    const chunks = this.chunks;
    while (cb !== null && !this.paused && this.next < chunks.length) {
      const chunk = chunks[this.next++]!;
      cb(chunk, this.next === chunks.length);
    }
  }
}
