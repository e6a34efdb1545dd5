/**
 * The attempt loop: everything between the router's decision and the response head (spec §2.4
 * `timeout`, §2.5, §3.5). In order:
 *
 *   route timeout   started here, at the router stage (after any fault delay); it bounds admission,
 *                   every attempt and every back-off, and the response body (as in Envoy, the stream
 *                   is cut when the timer fires after the head went out).
 *   admission       the cluster's connection-pool limits, once per request before the first attempt:
 *                   overflow → 503 UO at once, never retried; queued → wait for a slot.
 *   attempt         pick an endpoint (avoiding the ones tried when the policy says so), send, and
 *                   start the per-try timer when the policy has one (it stops at the response head).
 *   retry decision  after each failure, per-try timeout or upstream response: `shouldRetry` decides;
 *                   a retry waits out its back-off on a timer, then picks again. A retry whose
 *                   back-off would end past the route deadline is not made: a failure or response
 *                   goes back as it is, a per-try timeout waits for the route timeout (504 UT).
 *                   `URX` is added when the outcome was retriable and the retries ran out.
 *
 * A route without a per-try timeout, route timeout or pool limits starts no timer and makes no
 * closure here: the plain request costs a pick, an admission count and the load feedback.
 * Every callback a timer runs is guarded: a bug answers 500 for that request, never crashes the process.
 */
import type { AttemptResult, ClusterState, PickContext } from '../balancer/cluster-types.ts';
import type { HTTPRetry } from '../config/resource-types.ts';
import {
  LOCAL_REPLIES,
  type LocalReply,
  retriesExhausted,
  transportFailureReply,
} from '../errors/local-reply.ts';
import type { HeaderList } from '../listener/listener-types.ts';
import { ReplayBody } from '../resilience/replay-body.ts';
import {
  matchesRetryOn,
  type RetryState,
  type RetryVerdict,
  shouldRetry,
  type TryOutcome,
} from '../resilience/retry-decision.ts';
import {
  type CompiledRetryPolicy,
  compileRetryPolicy,
  DEFAULT_RETRY_POLICY,
} from '../resilience/retry-policy.ts';
import { applyHeaderOps } from '../router/header-edits.ts';
import type { Cluster } from '../router/route-types.ts';
import { prepareUpstreamHeaders } from '../upstream/forward-headers.ts';
import type { UpstreamFailure, UpstreamRequest, UpstreamTarget } from '../upstream/upstream-types.ts';
import { ADMISSION_HELD, ADMISSION_QUEUED, CountedBody, type Exchange } from './exchange.ts';
import { attemptTarget } from './origination-stage.ts';
import { headerValue } from './request-target.ts';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** Compiled policies, one per `HTTPRetry` object of a snapshot (they go with their snapshot). */
const compiledPolicies = new WeakMap<HTTPRetry, CompiledRetryPolicy>();

/** The policy of a forwarded route: its own `retries`, compiled once, else Istio's default. */
export function retryPolicyFor(retries: HTTPRetry | undefined): CompiledRetryPolicy {
  if (retries === undefined) return DEFAULT_RETRY_POLICY;
  let policy = compiledPolicies.get(retries);
  if (policy === undefined) {
    policy = compileRetryPolicy(retries);
    compiledPolicies.set(retries, policy);
  }
  return policy;
}

/**
 * Whether the cluster's connection pool can make a request wait (a finite `maxConnections` or
 * `http2MaxRequests`, spec §3.5). Without such a limit admission always grants at once, so the
 * request needs no callback to be resumed with.
 */
export function poolCanQueue(cluster: Cluster): boolean {
  const pool = cluster.trafficPolicy?.connectionPool;
  if (pool === undefined) return false;
  const conns = pool.tcp?.maxConnections;
  const active = pool.http?.http2MaxRequests;
  return (conns !== undefined && conns > 0) || (active !== undefined && active > 0);
}

/**
 * Fills in what every attempt sends: the request id, the upstream headers (hop-by-hop removed,
 * forwarding headers added) and the body. `headers`: the request's own, or after route edits.
 */
export function prepareRequest(ex: Exchange, headers: HeaderList): void {
  const req = ex.req;
  if (ex.requestId === '') {
    ex.requestId = headerValue(req.headers, 'x-request-id') ?? ex.owner.deps.requestId();
  }
  const prepared = prepareUpstreamHeaders(headers, {
    authority: ex.authority,
    remoteAddress: req.remoteAddress,
    scheme: req.secure ? 'https' : 'http',
    requestId: ex.requestId,
  });
  ex.upstreamHeaders = prepared.headers;
  ex.expectContinue = prepared.expectContinue;
  ex.body = req.body === null ? null : new CountedBody(req.body, ex);
}

/**
 * Keeps the request body replayable when a retry may have to send it again: only with retries
 * enabled and a body (up to 64 KiB; a larger body is sent once, spec §2.5). Runs after the mirror
 * tap is in place, so the source is read once for the primary, its retries and the mirrors.
 */
export function keepBodyForRetries(ex: Exchange): void {
  if (!ex.policy.enabled || ex.body === null) return;
  ex.replay = new ReplayBody(ex.body);
  ex.body = ex.replay;
}

/** What a consistent-hash balancer hashes: the request as the client sent it. */
export function pickContextOf(ex: Exchange): PickContext {
  let ctx = ex.pickContext;
  if (ctx === null) {
    // The original path, not the rewritten one: hashing follows what the client asked for.
    const req = ex.req;
    ctx = { headers: req.headers, path: ex.originalPath, remoteAddress: req.remoteAddress };
    ex.pickContext = ctx;
  }
  return ctx;
}

const NEVER_QUEUED = (): void => {};

/** Starts the loop for a prepared exchange: route timeout, admission, first attempt. */
export function startAttempts(ex: Exchange, timeoutMs: number | undefined): void {
  const owner = ex.owner;
  if (timeoutMs !== undefined && timeoutMs > 0) {
    ex.deadlineMs = owner.deps.now() + timeoutMs;
    ex.timer = owner.timers.start(() => guarded(ex, onRouteTimeout), timeoutMs);
  }
  const state = ex.state;
  if (state !== null && !admit(ex, state)) return;
  attempt(ex);
}

/** Asks the cluster for a slot; true when the first attempt may start now. */
function admit(ex: Exchange, state: ClusterState): boolean {
  const canQueue = ex.cluster !== null && poolCanQueue(ex.cluster);
  let admission = state.admit(canQueue ? () => guarded(ex, onAdmitted) : NEVER_QUEUED);
  if (admission.kind === 'queued' && !canQueue) {
    // The cluster got limits from a reload after this request read its snapshot: wait for real.
    admission.cancel();
    admission = state.admit(() => guarded(ex, onAdmitted));
  }
  switch (admission.kind) {
    case 'granted':
      ex.admission = ADMISSION_HELD;
      state.recordRequest();
      return true;
    case 'queued':
      ex.admission = ADMISSION_QUEUED;
      ex.waited = true;
      ex.queued = admission;
      return false;
    case 'overflow':
      ex.reply(LOCAL_REPLIES.overflow);
      return false;
  }
}

/** A queued request got its slot. */
function onAdmitted(ex: Exchange): void {
  ex.queued = null;
  ex.admission = ADMISSION_HELD;
  ex.state?.recordRequest();
  attempt(ex);
}

/** One attempt: pick (cluster) or take the fixed target, then send. */
export function attempt(ex: Exchange): void {
  const { deps, timers } = ex.owner;
  const state = ex.state;
  let target: UpstreamTarget;
  /** Why TLS cannot be originated for this attempt (no workload certificate), else null. */
  let cannotOriginate: string | null = null;
  if (state !== null) {
    const pick = state.pick(pickContextOf(ex), ex.attempts > 0 ? excludeOnRetry(ex, state) : undefined);
    if (pick === null) {
      ex.reply(LOCAL_REPLIES.noHealthyUpstream);
      return;
    }
    const endpoint = pick.endpoint;
    ex.endpoint = endpoint;
    ex.tried?.add(endpoint.id);
    if (pick.setCookie !== undefined) ex.setCookie = pick.setCookie;
    const to = attemptTarget(deps, ex.cluster!, endpoint);
    if (typeof to !== 'string') {
      target = to;
      ex.upstreamTls = to.tls;
      ex.localFailure = false;
      state.attemptStarted(endpoint);
    } else {
      // Not the endpoint's fault: it takes no load feedback and no outlier count for this attempt.
      target = endpoint;
      ex.upstreamTls = undefined;
      ex.localFailure = true;
      cannotOriginate = to;
    }
  } else {
    // Without a cluster state the stage that routed the request set the fixed target.
    target = ex.target!;
  }
  ex.attempts++;
  ex.attemptOpen = true;
  ex.attemptIsRetry = ex.retryPending;
  ex.retryPending = false;
  ex.upstreamStatus = 0;
  // A first attempt made right away starts when the request arrived (a few µs of routing earlier):
  // one clock read fewer on every request. After a wait (fault delay, admission queue) or for a
  // retry, the clock is read.
  ex.attemptStartedAt = ex.attempts === 1 && !ex.waited ? ex.startedAt : deps.now();
  const seq = ++ex.attemptSeq;
  // The attempt's client span: its trace context goes in this attempt's headers.
  const headers = ex.trace === null ? ex.upstreamHeaders : ex.trace.attemptStarted(ex.upstreamHeaders, ex);
  if (cannotOriginate !== null) {
    // Fails as a connection failure that sent nothing (UF, retried like one), reason in the log.
    ex.noteTlsFailure(cannotOriginate);
    onAttemptError(ex, 'connect', false, false);
    return;
  }
  const perTry = ex.policy.perTryTimeoutMs;
  if (perTry !== undefined) ex.tryTimer = timers.start(() => onPerTryTimeout(ex, seq), perTry);
  const replay = ex.replay;
  const request: Mutable<UpstreamRequest> = {
    method: ex.req.method,
    path: ex.path,
    headers,
    body: ex.attempts > 1 && replay !== null ? replay.replay() : ex.body,
    expectContinue: ex.expectContinue,
  };
  const pool = state?.connection;
  if (pool !== undefined) request.pool = pool;
  const call = deps.upstream.send(target, request, ex);
  // A client may settle the attempt inside `send`; such a call is over (or was abandoned for a retry).
  if (ex.attemptSeq === seq && ex.attemptOpen) ex.call = call;
  else call.abort();
}

/** Ids a retry must avoid: the hosts tried so far, unless the policy (or consistent hashing) keeps them. */
function excludeOnRetry(ex: Exchange, state: ClusterState): ReadonlySet<string> | undefined {
  const avoid = ex.policy.retryIgnorePreviousHosts ?? !state.consistentHash;
  if (!avoid) return undefined;
  if (ex.tried === null) {
    ex.tried = new Set();
    if (ex.endpoint !== null) ex.tried.add(ex.endpoint.id);
  }
  return ex.tried;
}

/**
 * Ends the current attempt for the cluster, exactly once: load feedback and outlier bookkeeping
 * (`attemptEnded`), and the retry slot it held. `failure` null: the upstream answered (or the
 * client left); the status is the upstream's own, 0 when it sent none.
 */
export function closeAttempt(ex: Exchange, failure: AttemptResult['failure']): void {
  if (!ex.attemptOpen) return;
  ex.attemptOpen = false;
  ex.call = null;
  ex.trace?.attemptEnded(ex, failure);
  const state = ex.state;
  if (state === null) return;
  const status = ex.upstreamStatus;
  const endpoint = ex.endpoint;
  if (endpoint !== null && !ex.localFailure) {
    const rttMs = status > 0 ? ex.rttMs : ex.owner.deps.now() - ex.attemptStartedAt;
    state.attemptEnded(endpoint, { rttMs, status, failure });
  }
  if (ex.attemptIsRetry) {
    ex.attemptIsRetry = false;
    state.retryEnded();
  }
}

const NOT_RETRIABLE: RetryVerdict = { kind: 'stop', reason: 'not-retriable' };

/** Asks the policy about the outcome of the attempt that just ended. */
function decide(ex: Exchange, outcome: TryOutcome): RetryVerdict {
  // Most outcomes (every plain 2xx under the default policy) match no `retryOn` condition: answered
  // before the retry state is built and the clock read. `shouldRetry` makes the same check first.
  if (!matchesRetryOn(ex.policy, outcome)) return NOT_RETRIABLE;
  const deps = ex.owner.deps;
  const replay = ex.replay;
  const state: Mutable<RetryState> = {
    attemptsMade: ex.attempts,
    bodyReplayable: ex.req.body === null || replay?.replayable === true,
    // The clock is only compared with the deadline: not read without one.
    nowMs: ex.deadlineMs >= 0 ? deps.now() : 0,
    random: deps.random,
  };
  if (ex.deadlineMs >= 0) state.deadlineMs = ex.deadlineMs;
  if (ex.state !== null) state.budget = ex;
  return shouldRetry(ex.policy, outcome, state);
}

/** Waits out the back-off, then makes the next attempt. */
function retryAfter(ex: Exchange, delayMs: number): void {
  ex.tryTimer = ex.owner.timers.start(() => {
    ex.tryTimer = null;
    guarded(ex, attempt);
  }, delayMs);
}

/** The response head of the current attempt: retried, or passed on to the client. */
export function onAttemptHeaders(ex: Exchange, status: number, headers: HeaderList): void {
  ex.cancelTryTimer();
  ex.upstreamStatus = status;
  ex.rttMs = ex.owner.deps.now() - ex.attemptStartedAt;
  if (ex.policy.enabled) {
    const verdict = decide(ex, { kind: 'response', status, headers });
    if (verdict.kind === 'retry') {
      // The client never sees this response: drop it (and its body) and go again.
      ex.call?.abort();
      closeAttempt(ex, null);
      retryAfter(ex, verdict.delayMs);
      return;
    }
    if (verdict.reason === 'exhausted') ex.addFlag('URX');
  }
  // No further try can happen: the kept copy of the request body is not needed any more.
  ex.replay?.release();
  let out = ex.responseEdits.length === 0 ? headers : applyHeaderOps(headers, ex.responseEdits);
  if (ex.setCookie !== null) out = out.concat('set-cookie', ex.setCookie);
  ex.status = status;
  ex.headersSent = true;
  ex.res.writeHead(status, out);
}

/** The response of the current attempt ended: the exchange is done. */
export function onAttemptEnd(ex: Exchange): void {
  closeAttempt(ex, null);
  ex.res.end();
  ex.finish();
}

/** The current attempt failed. `requestWritten`: some of the request reached the upstream. */
export function onAttemptError(
  ex: Exchange,
  failure: UpstreamFailure,
  afterHeaders: boolean,
  requestWritten: boolean,
): void {
  ex.cancelTryTimer();
  closeAttempt(ex, failure);
  if (afterHeaders || ex.headersSent) {
    // The status is already on the wire: the only honest signal left is to cut the stream.
    ex.addFlag('UC');
    ex.res.destroy();
    ex.finish();
    return;
  }
  const verdict = decide(ex, { kind: 'failure', failure, bytesSent: requestWritten });
  if (verdict.kind === 'retry') {
    retryAfter(ex, verdict.delayMs);
    return;
  }
  // A TLS failure says why in the body, as Envoy's `transport failure reason` does.
  const r =
    ex.tlsFailure !== '' && failure === 'connect'
      ? transportFailureReply(ex.tlsFailure)
      : failureReply(failure);
  ex.reply(verdict.reason === 'exhausted' ? retriesExhausted(r) : r);
}

/** The local reply for an upstream failure before any response head (connect and timeout: 503 UF). */
export function failureReply(failure: UpstreamFailure): LocalReply {
  switch (failure) {
    case 'connect':
    case 'timeout':
      return LOCAL_REPLIES.connectFailure;
    case 'reset':
      return LOCAL_REPLIES.upstreamReset;
    case 'protocol':
      return LOCAL_REPLIES.upstreamProtocolError;
  }
}

const PER_TRY_TIMEOUT: TryOutcome = { kind: 'per-try-timeout' };

/** The per-try timer of attempt `seq` fired before its response head. */
function onPerTryTimeout(ex: Exchange, seq: number): void {
  if (ex.finished || ex.attemptSeq !== seq || !ex.attemptOpen) return;
  ex.tryTimer = null;
  try {
    ex.call?.abort();
    closeAttempt(ex, 'per-try-timeout');
    const verdict = decide(ex, PER_TRY_TIMEOUT);
    if (verdict.kind === 'retry') {
      retryAfter(ex, verdict.delayMs);
      return;
    }
    // No retry fits before the route deadline: the answer is the route timeout's own 504 UT, given
    // when that timer fires, so a timed-out request never ends before the configured timeout.
    if (verdict.reason === 'deadline') return;
    const r = LOCAL_REPLIES.routeTimeout;
    ex.reply(verdict.reason === 'exhausted' ? retriesExhausted(r) : r);
  } catch (err) {
    ex.internalError(err);
  }
}

/** The route timeout fired: whatever is under way stops. */
function onRouteTimeout(ex: Exchange): void {
  ex.timer = null;
  if (ex.attemptOpen) {
    ex.call?.abort();
    // Before the response head this is a timeout of the attempt (outlier detection counts it).
    closeAttempt(ex, ex.upstreamStatus === 0 ? 'per-try-timeout' : null);
  }
  if (ex.headersSent) {
    ex.addFlag('UT');
    ex.res.destroy();
    ex.finish();
  } else {
    ex.reply(LOCAL_REPLIES.routeTimeout);
  }
}

/** Runs a stage step from a timer or a callback: a bug answers 500 for this request only. */
export function guarded(ex: Exchange, step: (ex: Exchange) => void): void {
  if (ex.finished) return;
  try {
    step(ex);
  } catch (err) {
    ex.internalError(err);
  }
}
