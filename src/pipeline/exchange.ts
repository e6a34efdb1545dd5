import type { ClusterState, PickContext } from '../balancer/cluster-types.ts';
import type { HeaderOps } from '../config/resource-types.ts';
import { LOCAL_REPLIES, type LocalReply, sendLocalReply } from '../errors/local-reply.ts';
import type { BodyStream, HeaderList, IncomingRequest, ResponseSink } from '../listener/listener-types.ts';
import type { ReplayBody } from '../resilience/replay-body.ts';
import type { RetryGate } from '../resilience/retry-decision.ts';
import { type CompiledRetryPolicy, NO_RETRY_POLICY } from '../resilience/retry-policy.ts';
import type { Cluster, Endpoint } from '../router/route-types.ts';
import type { PeerDescription } from '../telemetry/metrics.ts';
import type { ObservedRequest } from '../telemetry/observed-request.ts';
import type { ExchangeTrace } from '../telemetry/trace-types.ts';
import type { UpstreamTls } from '../tls/identity-types.ts';
import type {
  UpstreamCall,
  UpstreamFailure,
  UpstreamHandler,
  UpstreamTarget,
} from '../upstream/upstream-types.ts';
import { closeAttempt, onAttemptEnd, onAttemptError, onAttemptHeaders } from './attempt-loop.ts';
import type { MirrorCopy } from './mirror-stage.ts';
import type { ExchangeOwner, InboundWorkload, TimerHandle } from './pipeline-types.ts';

export const PASSTHROUGH_PEER: PeerDescription = {
  serviceFqdn: 'unknown',
  serviceName: 'PassthroughCluster',
  serviceNamespace: 'unknown',
};

/** Where the request stands with the cluster's connection-pool admission. */
export const ADMISSION_NONE = 0;
/** Waiting in the pending queue: `queued.cancel()` when the exchange ends first. */
export const ADMISSION_QUEUED = 1;
/** A slot is held: `release()` exactly once when the exchange ends. */
export const ADMISSION_HELD = 2;

/**
 * State of one request from accept to the end of its response: one shape for every request, so the
 * stages read and write plain fields. It is also the upstream handler of the current attempt (the
 * attempt loop ignores callbacks of attempts it abandoned: the client promises none after `abort`)
 * and the retry gate handed to `shouldRetry`.
 */
export class Exchange implements UpstreamHandler, RetryGate, ObservedRequest {
  readonly owner: ExchangeOwner;
  readonly req: IncomingRequest;
  readonly res: ResponseSink;
  readonly reporter: 'source' | 'destination';
  readonly startedAt: number;

  // ---- the response as the client sees it ----
  status = 0;
  /** Envoy response flags, comma-joined ('' when none). */
  flags = '';
  headersSent = false;
  finished = false;
  bytesSent = 0;
  /** Request body bytes read from the client (counted as they pass to the upstream). */
  bytesReceived = 0;
  /** The request's trace (tracing on, see telemetry/trace-types.ts), else null. */
  trace: ExchangeTrace | null = null;

  // ---- what the router decided ----
  cluster: Cluster | null = null;
  peer: PeerDescription = PASSTHROUGH_PEER;
  authority = '';
  /** Path sent upstream (after rewrites); what the access log shows. */
  path = '';
  /** Path as the client sent it (what consistent hashing reads). */
  originalPath = '';
  routeName = '';
  requestId = '';
  responseEdits: readonly HeaderOps[] = [];
  /** Inbound: the workload this request is for (its application, identity and policies). */
  workload: InboundWorkload | null = null;
  /** Why the proxy answered itself without a flag (RBAC denial): `response_code_details`. */
  details = '';

  // ---- the request as every attempt sends it ----
  upstreamHeaders: HeaderList = [];
  expectContinue = false;
  /** The body the first try sends (the request's own, or a wrapper that keeps a copy). */
  body: BodyStream | null = null;
  /** Set when the body may have to be sent again (retries enabled and the request has a body). */
  replay: ReplayBody | null = null;
  /** The cluster's state; null when the request goes to a fixed target (inbound app, passthrough). */
  state: ClusterState | null = null;
  /** The fixed target when `state` is null. */
  target: UpstreamTarget | null = null;
  policy: CompiledRetryPolicy = NO_RETRY_POLICY;
  /** What a consistent-hash balancer hashes; made on the first pick. */
  pickContext: PickContext | null = null;
  /** Copies for mirror clusters that wait for the request body (null when none). */
  mirror: MirrorCopy | null = null;

  // ---- timers ----
  /** The fault delay, then the route timeout. */
  timer: TimerHandle | null = null;
  /** When the route timeout fires (clock of `deps.now`), or -1 without one. */
  deadlineMs = -1;
  /** The per-try timeout of the current attempt, or the back-off before the next one. */
  tryTimer: TimerHandle | null = null;

  // ---- connection-pool admission ----
  admission = ADMISSION_NONE;
  queued: { cancel(): void } | null = null;

  // ---- attempts ----
  /** The request waited before its first attempt (fault delay, admission queue). */
  waited = false;
  /** Upstream attempts started so far. */
  attempts = 0;
  /**
   * Endpoints already tried by this request, which retries avoid. Made on the first retry that
   * avoids previous hosts: until then `endpoint` is the only one.
   */
  tried: Set<string> | null = null;
  /** Endpoint of the current (or last) attempt; null for fixed targets. */
  endpoint: Endpoint | null = null;
  call: UpstreamCall | null = null;
  /** Bumped per attempt, so a timer of an earlier attempt recognises it is stale. */
  attemptSeq = 0;
  /** Between `attemptStarted` and `attemptEnded` of the current attempt. */
  attemptOpen = false;
  attemptStartedAt = 0;
  /** Status the upstream sent for the current attempt (0 before its headers). */
  upstreamStatus = 0;
  /** Time from the attempt's start to its response headers. */
  rttMs = 0;
  /** A retry slot was taken from the cluster for the next attempt, which has not started yet. */
  retryPending = false;
  /** The current attempt is a retry holding a slot: `retryEnded()` when it ends. */
  attemptIsRetry = false;
  /** A `Set-Cookie` value the balancer made up (consistent hash on a cookie with a TTL). */
  setCookie: string | null = null;
  /** TLS the current (or last) attempt originated; undefined for plaintext. */
  upstreamTls: UpstreamTls | undefined = undefined;
  /**
   * The current attempt failed before reaching the endpoint for a reason of this proxy's own (no
   * workload certificate to originate mTLS with): the endpoint is not blamed for it.
   */
  localFailure = false;
  /** Why the last TLS origination failed (`upstream_transport_failure_reason`), '' when none did. */
  tlsFailure = '';

  constructor(
    owner: ExchangeOwner,
    req: IncomingRequest,
    res: ResponseSink,
    reporter: 'source' | 'destination',
  ) {
    this.owner = owner;
    this.req = req;
    this.res = res;
    this.reporter = reporter;
    this.startedAt = owner.deps.now();
  }

  // ---- UpstreamHandler: the current attempt (see attempt-loop.ts) ----

  // A bug in these must not escape into the upstream client: it answers 500 for this request only.

  onHeaders(status: number, headers: HeaderList): void {
    if (this.finished) return;
    try {
      onAttemptHeaders(this, status, headers);
    } catch (err) {
      this.internalError(err);
    }
  }

  onData(chunk: Buffer): boolean {
    if (this.finished) return true;
    this.bytesSent += chunk.length;
    return this.res.write(chunk);
  }

  onEnd(): void {
    if (this.finished) return;
    try {
      onAttemptEnd(this);
    } catch (err) {
      this.internalError(err);
    }
  }

  onError(failure: UpstreamFailure, afterHeaders: boolean, detail: string, requestWritten?: boolean): void {
    if (this.finished) return;
    try {
      // A connection failure on a TLS attempt is where a handshake or server identity failure shows
      // (the client reports both as `connect`): its reason is kept for the log and the reply.
      if (failure === 'connect' && this.upstreamTls !== undefined) this.noteTlsFailure(detail);
      onAttemptError(this, failure, afterHeaders, requestWritten !== false);
    } catch (err) {
      this.internalError(err);
    }
  }

  /** Keeps the reason a TLS origination failed and reports it (rate-limited by the receiver). */
  noteTlsFailure(reason: string): void {
    this.tlsFailure = reason;
    this.owner.deps.onSecurityEvent?.({
      kind: 'upstream-tls',
      cluster: this.cluster?.name ?? '-',
      endpoint: this.endpoint?.id ?? '-',
      reason,
    });
  }

  // ---- RetryGate: the cluster's retry budget and concurrent-retry limit ----

  /** Given to `shouldRetry` only when the exchange has a cluster state (see attempt-loop.ts). */
  tryWithdraw(): boolean {
    if (this.state?.tryRetry() !== null) return false;
    this.retryPending = true;
    return true;
  }

  // ---- local replies and the end of the exchange ----

  addFlag(flag: string): void {
    this.flags = this.flags === '' ? flag : `${this.flags},${flag}`;
  }

  reply(r: LocalReply, extra: HeaderList = [], close = false): void {
    if (this.finished) return;
    this.status = r.status;
    if (r.flags !== '') this.addFlag(r.flags);
    this.headersSent = true;
    // The flag header carries every flag of the exchange (e.g. `DI,UT` after a fault delay).
    // The reply's body counts as sent, as Envoy counts it (`bytes_sent`, `istio_response_bytes`).
    this.bytesSent = sendLocalReply(
      this.res,
      this.flags === r.flags ? r : { ...r, flags: this.flags },
      extra,
      close,
    );
    this.finish();
  }

  /**
   * A bug of ours surfaced while serving this request: answer 500 (or cut the stream if the status
   * is out), report it, and keep serving everyone else instead of letting it take the process down.
   */
  internalError(err: unknown): void {
    this.owner.deps.onBug(err);
    if (this.headersSent) {
      this.res.destroy();
      this.finish();
    } else {
      this.reply(LOCAL_REPLIES.internalError);
    }
  }

  /** The client went away before the end. */
  onClientGone(): void {
    if (this.finished) return;
    this.addFlag('DC');
    this.finish();
  }

  cancelTryTimer(): void {
    if (this.tryTimer !== null) {
      this.owner.timers.cancel(this.tryTimer);
      this.tryTimer = null;
    }
  }

  /**
   * The one way an exchange ends, whatever ended it: stops its timers, closes an attempt still open,
   * gives back what it holds in the cluster (admission slot or queue place, retry slot), and hands
   * the exchange to telemetry. Each of these happens exactly once because `finished` guards it.
   */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    const timers = this.owner.timers;
    if (this.timer !== null) {
      timers.cancel(this.timer);
      this.timer = null;
    }
    this.cancelTryTimer();
    if (this.attemptOpen) {
      // Ended from outside the attempt (client gone, route timeout, internal error).
      this.call?.abort();
      closeAttempt(this, null);
    }
    this.call = null;
    const state = this.state;
    if (state !== null) {
      if (this.retryPending) {
        this.retryPending = false;
        state.retryEnded();
      }
      if (this.admission === ADMISSION_HELD) state.release();
      else if (this.admission === ADMISSION_QUEUED) this.queued?.cancel();
      this.admission = ADMISSION_NONE;
      this.queued = null;
    }
    this.replay?.release();
    this.mirror?.abandon();
    this.owner.finished(this);
  }
}

/**
 * The client's request body as every attempt reads it, counting the bytes for `bytesReceived`
 * (`istio_request_bytes`, the access log). Only requests with a body pay for it.
 */
export class CountedBody implements BodyStream {
  private readonly source: BodyStream;
  private readonly ex: Exchange;

  constructor(source: BodyStream, ex: Exchange) {
    this.source = source;
    this.ex = ex;
  }

  onData(cb: (chunk: Buffer, last: boolean) => void): void {
    const ex = this.ex;
    this.source.onData((chunk, last) => {
      ex.bytesReceived += chunk.length;
      cb(chunk, last);
    });
  }

  pause(): void {
    this.source.pause();
  }

  resume(): void {
    this.source.resume();
  }
}
