import type { BodyStream } from '../listener/listener-types.ts';

/**
 * A request body that can be sent again (spec §2.5: retries need the body buffered; anchors §1.5:
 * Linkerd's 64 KiB replay limit). `ReplayBody` wraps the downstream `BodyStream` and is itself the
 * `BodyStream` for the first try: chunks pass straight through and are also kept, up to `limitBytes`.
 * Once more than `limitBytes` went through, the copy is dropped and `replayable` turns false for good.
 *
 * `replay()` hands out a fresh `BodyStream` for the next try. It replays the kept chunks from the start,
 * then continues with live chunks when the downstream body has not ended yet (a try may fail before it
 * read everything, or before it read anything). Only the newest stream receives data: `replay()`
 * detaches the previous one, and nothing reaches it afterwards.
 *
 * Backpressure follows the `BodyStream` contract. The source is paused while the current stream is
 * paused, has kept chunks still to deliver, or has no consumer attached yet (between tries, so a body
 * arriving during back-off does not fill the buffer). Kept chunks are delivered from a microtask after
 * `onData`/`resume`, like the engines deliver chunks that arrived before a consumer attached.
 */

/** Linkerd's replay limit: bodies over 64 KiB are never retried. */
export const DEFAULT_REPLAY_LIMIT_BYTES = 64 * 1024;

interface Entry {
  readonly chunk: Buffer;
  readonly last: boolean;
}

type ChunkCallback = (chunk: Buffer, last: boolean) => void;

export class ReplayBody implements BodyStream {
  readonly limitBytes: number;
  private readonly source: BodyStream;
  /** Kept chunks, in order, as the source delivered them; null once the body outgrew the limit. */
  private kept: Entry[] | null = [];
  private total = 0;
  private ended = false;
  private sourceAttached = false;
  private sourcePaused = false;
  private readonly first: ReplayStream;
  private current: ReplayStream;
  private replays = 0;

  constructor(source: BodyStream, limitBytes: number = DEFAULT_REPLAY_LIMIT_BYTES) {
    this.source = source;
    this.limitBytes = limitBytes;
    this.first = new ReplayStream(this, []);
    this.current = this.first;
  }

  /** True while every byte that went through is kept, so the body can be sent again. */
  get replayable(): boolean {
    return this.kept !== null;
  }

  /** Bytes received from the downstream body so far. */
  get receivedBytes(): number {
    return this.total;
  }

  /** True once the downstream body delivered its last chunk. */
  get complete(): boolean {
    return this.ended;
  }

  /** How many replay streams were handed out. */
  get replayCount(): number {
    return this.replays;
  }

  onData(cb: ChunkCallback): void {
    this.first.onData(cb);
  }

  pause(): void {
    this.first.pause();
  }

  resume(): void {
    this.first.resume();
  }

  /** A fresh stream for the next try, from the first byte. Throws when the body is not replayable. */
  replay(): BodyStream {
    if (this.kept === null) throw new Error('request body is not replayable');
    this.current.detach();
    const next = new ReplayStream(this, this.kept.slice());
    this.current = next;
    this.replays++;
    this.update();
    return next;
  }

  /** Drops the kept copy once no further try can happen (frees the memory); `replayable` turns false. */
  release(): void {
    this.kept = null;
  }

  /** @internal Attaches to the source once, when the current stream gets its consumer. */
  attachSource(stream: ReplayStream): void {
    if (stream !== this.current || this.sourceAttached) return;
    this.sourceAttached = true;
    this.source.onData((chunk, last) => this.onSourceChunk(chunk, last));
  }

  /** @internal Pauses or resumes the source to match what the current stream can take. */
  update(): void {
    if (!this.sourceAttached || this.ended) return;
    const want = this.current.wantsMore();
    if (want && this.sourcePaused) {
      this.sourcePaused = false;
      this.source.resume();
    } else if (!want && !this.sourcePaused) {
      this.sourcePaused = true;
      this.source.pause();
    }
  }

  private onSourceChunk(chunk: Buffer, last: boolean): void {
    if (last) this.ended = true;
    this.total += chunk.length;
    if (this.kept !== null) {
      if (this.total > this.limitBytes) this.kept = null;
      else this.kept.push({ chunk, last });
    }
    this.current.push({ chunk, last });
  }
}

/** One try's view of the body. */
class ReplayStream implements BodyStream {
  private readonly owner: ReplayBody;
  private cb: ChunkCallback | null = null;
  private queue: Entry[];
  private head = 0;
  private paused = false;
  private detached = false;
  private drainScheduled = false;

  constructor(owner: ReplayBody, queue: Entry[]) {
    this.owner = owner;
    this.queue = queue;
  }

  onData(cb: ChunkCallback): void {
    if (this.cb !== null) throw new Error('request body already has a consumer');
    this.cb = cb;
    if (this.detached) return;
    this.owner.attachSource(this);
    this.scheduleDrain();
    this.owner.update();
  }

  pause(): void {
    if (this.detached || this.paused) return;
    this.paused = true;
    this.owner.update();
  }

  resume(): void {
    if (this.detached || !this.paused) return;
    this.paused = false;
    this.scheduleDrain();
    this.owner.update();
  }

  /** Consumer attached, not paused and nothing queued: live chunks can go straight through. */
  wantsMore(): boolean {
    return this.cb !== null && !this.paused && !this.detached && this.head === this.queue.length;
  }

  detach(): void {
    this.detached = true;
    this.queue = [];
    this.head = 0;
  }

  push(entry: Entry): void {
    if (this.detached) return;
    const cb = this.cb;
    if (cb !== null && this.wantsMore()) {
      cb(entry.chunk, entry.last);
      return;
    }
    this.queue.push(entry);
    this.scheduleDrain();
    this.owner.update();
  }

  private scheduleDrain(): void {
    if (this.drainScheduled || this.head === this.queue.length) return;
    this.drainScheduled = true;
    queueMicrotask(() => this.drain());
  }

  private drain(): void {
    this.drainScheduled = false;
    const cb = this.cb;
    if (cb === null) return;
    while (!this.paused && !this.detached && this.head < this.queue.length) {
      const e = this.queue[this.head++]!;
      cb(e.chunk, e.last);
    }
    if (this.head === this.queue.length && !this.detached) {
      this.queue = [];
      this.head = 0;
    }
    this.owner.update();
  }
}
