/**
 * Connection-pool admission (Istio `connectionPool`, Envoy circuit breakers) for one cluster.
 *
 * meshlet's upstream speaks HTTP/1.1 with one request per connection at a time, so the busy
 * connections of a cluster are exactly its active requests: `maxConnections` and `http2MaxRequests`
 * both bound the same number and the smaller one applies. Idle keep-alive connections in the pool
 * are not counted; they hold no request, and the upstream client closes them on its own terms.
 *
 * Over the active limit a request waits, first in first out, in a pending queue of at most
 * `maxPending` entries (`http1MaxPendingRequests`); when that is full too it overflows (503 UO at
 * once, never retried). The defaults are unlimited, and then `admit` is one comparison and an
 * increment.
 */
import type { Admission } from './cluster-types.ts';

const GRANTED: Admission = Object.freeze({ kind: 'granted' });
const OVERFLOW: Admission = Object.freeze({ kind: 'overflow' });

/** A queued request; doubles as the `queued` admission handed to the caller (its `cancel`). */
class Waiter {
  readonly kind = 'queued';
  /** queued → (granting →) done, or cancelled. */
  state: 'queued' | 'granting' | 'done' | 'cancelled' = 'queued';
  prev: Waiter | null = null;
  next: Waiter | null = null;
  private readonly owner: AdmissionControl;
  readonly onGranted: () => void;

  constructor(owner: AdmissionControl, onGranted: () => void) {
    this.owner = owner;
    this.onGranted = onGranted;
  }

  cancel(): void {
    this.owner.cancelWaiter(this);
  }
}

export interface AdmissionLimits {
  /** Concurrent requests holding a slot (≥ 1, or Infinity). */
  readonly maxActive: number;
  /** Requests that may wait for a slot (≥ 0, or Infinity). */
  readonly maxPending: number;
}

export class AdmissionControl {
  private maxActive: number;
  private maxPending: number;
  private activeCount = 0;
  private pendingCount = 0;
  /** The pending queue, a doubly linked list so `cancel` removes an entry in O(1). */
  private head: Waiter | null = null;
  private tail: Waiter | null = null;
  /** Requests refused with `overflow` (monotonic). */
  overflows = 0;
  /** Requests that had to wait in the queue (monotonic). */
  queuedTotal = 0;

  constructor(limits: AdmissionLimits = { maxActive: Infinity, maxPending: Infinity }) {
    this.maxActive = Math.max(1, limits.maxActive);
    this.maxPending = Math.max(0, limits.maxPending);
  }

  /** Requests holding a slot (including slots handed to a queued request whose callback is due). */
  get active(): number {
    return this.activeCount;
  }

  /** Requests waiting in the queue. */
  get pending(): number {
    return this.pendingCount;
  }

  /**
   * New limits from a reloaded policy. Requests already holding slots keep them (the active count
   * may stay above a lowered limit until they finish); a raised limit lets queued requests in now.
   * A lowered `maxPending` does not evict requests already waiting.
   */
  setLimits(limits: AdmissionLimits): void {
    this.maxActive = Math.max(1, limits.maxActive);
    this.maxPending = Math.max(0, limits.maxPending);
    while (this.head !== null && this.activeCount < this.maxActive) {
      this.activeCount++;
      this.grantHead();
    }
  }

  /**
   * A slot now (`granted`), a place in the queue (`queued`: `onGranted` runs later with the slot
   * held, unless `cancel()` came first), or `overflow`.
   */
  admit(onGranted: () => void): Admission {
    if (this.activeCount < this.maxActive) {
      this.activeCount++;
      return GRANTED;
    }
    if (this.pendingCount >= this.maxPending) {
      this.overflows++;
      return OVERFLOW;
    }
    const w = new Waiter(this, onGranted);
    w.prev = this.tail;
    if (this.tail === null) this.head = w;
    else this.tail.next = w;
    this.tail = w;
    this.pendingCount++;
    this.queuedTotal++;
    return w;
  }

  /**
   * Gives back a slot. When a request is waiting, the slot passes straight to the oldest one and
   * its `onGranted` runs in a microtask, not inside this call: `release` is called from the end of
   * another request, and a synchronous hand-over would run the next request's whole start (and,
   * if that fails at once, its release and the next one's start …) down the same stack.
   */
  release(): void {
    if (this.head !== null && this.activeCount <= this.maxActive) {
      this.grantHead();
      return;
    }
    if (this.activeCount > 0) this.activeCount--;
  }

  /** `cancel()` of a queued admission: leaves the queue, or gives up a slot handed over but not yet used. */
  cancelWaiter(w: Waiter): void {
    if (w.state === 'queued') {
      this.unlink(w);
      w.state = 'cancelled';
    } else if (w.state === 'granting') {
      // The slot was already transferred to this request; pass it on when the microtask runs.
      w.state = 'cancelled';
    }
  }

  /** Dequeues the oldest waiter; the slot the caller accounted for becomes its. */
  private grantHead(): void {
    const w = this.head!;
    this.unlink(w);
    w.state = 'granting';
    queueMicrotask(() => {
      if (w.state === 'cancelled') {
        this.release();
        return;
      }
      w.state = 'done';
      w.onGranted();
    });
  }

  private unlink(w: Waiter): void {
    if (w.prev === null) this.head = w.next;
    else w.prev.next = w.next;
    if (w.next === null) this.tail = w.prev;
    else w.next.prev = w.prev;
    w.prev = null;
    w.next = null;
    this.pendingCount--;
  }
}
