/**
 * What the three listener engines (uws, node, h1) share per request: the `IncomingRequest` they hand
 * to the handler, and the engine-neutral half of a `ResponseSink`: the `onAborted` / `onWritable`
 * callbacks, the drain flag, and finishing an exchange exactly once (with the listener's in-flight
 * count). How a response is framed and written stays in each engine.
 */
import type { PeerIdentity } from '../tls/identity-types.ts';
import type { ConnectionTls } from './inbound-tls.ts';
import type { BodyStream, EngineName, HeaderList, IncomingRequest } from './listener-types.ts';

const EMPTY = Buffer.alloc(0);

/**
 * The request as every engine hands it to the handler. `peer` and `sni` are declared fields, so every
 * instance has the same shape whether the connection is TLS or not (they stay undefined on
 * plaintext).
 */
export class EngineIncoming implements IncomingRequest {
  readonly engine: EngineName;
  readonly secure: boolean;
  readonly peer?: PeerIdentity;
  readonly sni?: string;
  readonly method: string;
  readonly target: string;
  readonly headers: HeaderList;
  readonly remoteAddress: string;
  readonly localPort: number;
  readonly body: BodyStream | null;
  constructor(
    engine: EngineName,
    method: string,
    target: string,
    headers: HeaderList,
    remoteAddress: string,
    localPort: number,
    body: BodyStream | null,
    security: ConnectionTls | null = null,
  ) {
    this.engine = engine;
    this.secure = security !== null;
    if (security !== null) {
      if (security.peer !== null) this.peer = security.peer;
      if (security.sni !== null) this.sni = security.sni;
    }
    this.method = method;
    this.target = target;
    this.headers = headers;
    this.remoteAddress = remoteAddress;
    this.localPort = localPort;
    this.body = body;
  }
}

/** The part of a listener's state an exchange keeps up to date. */
export interface InFlightCount {
  inFlight: number;
}

/**
 * Callback and lifecycle bookkeeping of a `ResponseSink`. An exchange finishes once, either completed
 * (`finish(false)`) or aborted / cut (`finish(true)`); either way it leaves the listener's in-flight
 * count. The first callback of each kind is kept in a field; lists are allocated only for more.
 */
export abstract class ExchangeBase<S extends InFlightCount> {
  /** True once the client went away or the response was destroyed. */
  aborted = false;
  /** No more output: completed, destroyed or aborted. */
  finished = false;
  /** A `write` returned false; `drained` calls the `onWritable` callbacks once it clears. */
  protected needDrain = false;
  /** The first `onAborted` / `onWritable` callback; more (rare) go to the lists. */
  private abortCb: (() => void) | null = null;
  private writableCb: (() => void) | null = null;
  private abortCbs: Array<() => void> | null = null;
  private writableCbs: Array<() => void> | null = null;
  protected readonly state: S;

  constructor(state: S) {
    this.state = state;
  }

  onAborted(cb: () => void): void {
    if (this.aborted) {
      queueMicrotask(cb);
      return;
    }
    if (this.finished) return;
    if (this.abortCb === null) this.abortCb = cb;
    else if (this.abortCbs === null) this.abortCbs = [cb];
    else this.abortCbs.push(cb);
  }

  onWritable(cb: () => void): void {
    if (this.writableCb === null) this.writableCb = cb;
    else if (this.writableCbs === null) this.writableCbs = [cb];
    else this.writableCbs.push(cb);
  }

  /** The engine's output drained: `onWritable` callbacks run if a write had returned false. */
  drained(): void {
    if (!this.needDrain || this.finished) return;
    this.needDrain = false;
    const first = this.writableCb;
    if (first !== null) first();
    const cbs = this.writableCbs;
    if (cbs !== null) for (const cb of cbs) cb();
  }

  /**
   * Marks the exchange finished (and `aborted` when it was cut or the client went away) and takes it
   * out of the in-flight count. False, with nothing changed, when it had finished already.
   */
  protected finish(aborted: boolean): boolean {
    if (this.finished) return false;
    if (aborted) this.aborted = true;
    this.finished = true;
    this.state.inFlight--;
    return true;
  }

  /** The client went away before the end: finishes as aborted and runs the `onAborted` callbacks. */
  protected clientGone(): void {
    if (!this.finish(true)) return;
    const first = this.abortCb;
    const cbs = this.abortCbs;
    this.abortCb = null;
    this.abortCbs = null;
    if (first !== null) first();
    if (cbs !== null) for (const cb of cbs) cb();
  }
}

/** `chunk` cut to what is left of a declared Content-Length (`declared` -1: no limit). */
export function clampToLength(chunk: Buffer, declared: number, written: number): Buffer {
  if (declared === -1) return chunk;
  const room = declared - written;
  if (room >= chunk.length) return chunk;
  return room <= 0 ? EMPTY : chunk.subarray(0, room);
}
