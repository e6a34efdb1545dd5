/**
 * Where access-log lines go: batched in memory and written asynchronously, at most one write in
 * flight, so the request path only encodes its line into a buffer. A batch goes out when it reaches
 * `batchBytes` or when `schedule` says (the file sink: 10 ms after its first line), so a busy proxy
 * makes a few large writes rather than one per event-loop turn: each write is a round trip through
 * libuv's thread pool, which costs more than the bytes. When the destination cannot keep up (the
 * backlog passes `maxBacklogBytes`), new lines are dropped and counted instead of growing memory
 * without bound.
 *
 * Each line is encoded as UTF-8 straight into a preallocated slab, which is handed to the writer as
 * it is: no array of strings to join and no second copy into a new buffer per batch (that saved
 * about a third of the line's cost, measured). Two slabs take turns: one is filled while the other
 * is written.
 */
import { close, open, write } from 'node:fs';

/** Writes one batch; `done` once it is all written (or failed). The buffer is reused after `done`. */
export interface BatchWriter {
  write(data: Buffer, done: (err: Error | null) => void): void;
  /** Start writing to a freshly opened file (rotation); no-op for stdout. */
  reopen(): Promise<void>;
  /** Release the file; called once, when no write is in flight. */
  close(): Promise<void>;
}

export interface SinkOptions {
  /** Pending plus in-flight bytes above which new lines are dropped (default 4 MiB). */
  readonly maxBacklogBytes?: number;
  /** A batch this large is written at once instead of when `schedule` runs (default 64 KiB). */
  readonly batchBytes?: number;
  /**
   * Runs the flush of a batch smaller than `batchBytes` later: default `setImmediate` (after the
   * current event-loop turn); `createAccessLog` waits 10 ms.
   */
  readonly schedule?: (fn: () => void) => void;
  /** A write failed: its lines are lost (counted as dropped, reason `write_error`). */
  readonly onError?: (err: Error) => void;
}

const NEWLINE = 10;

export class AccessLogSink {
  /** Lines dropped because the backlog was full. */
  droppedBacklog = 0;
  /** Lines lost in failed writes. */
  droppedWriteError = 0;
  /** Lines handed to the writer and written. */
  written = 0;

  private readonly writer: BatchWriter;
  private readonly maxBacklog: number;
  private readonly batchBytes: number;
  private readonly slabSize: number;
  private readonly schedule: (fn: () => void) => void;
  private readonly onError: (err: Error) => void;
  /** The slab being filled (allocated on the first line) and how much of it is used. */
  private slab: Buffer | null = null;
  private fill = 0;
  /** Filled slabs waiting for a write, oldest first (only when lines outgrow a slab during a write). */
  private full: Buffer[] = [];
  private fullBytes = 0;
  /** Lines in `full` and `slab`. */
  private pendingLines = 0;
  /** The slab of the write in flight, and a written one kept for the next batch. */
  private inFlightSlab: Buffer | null = null;
  private spare: Buffer | null = null;
  private inFlightBytes = 0;
  private inFlightLines = 0;
  private writing = false;
  private scheduled = false;
  private closed = false;
  private idleWaiters: Array<() => void> = [];
  private readonly flushNow = (): void => {
    this.scheduled = false;
    this.startWrite();
  };

  constructor(writer: BatchWriter, options: SinkOptions = {}) {
    this.writer = writer;
    this.maxBacklog = options.maxBacklogBytes ?? 4 * 1024 * 1024;
    this.batchBytes = options.batchBytes ?? 64 * 1024;
    // Room for a whole batch plus what arrives while the previous one is written.
    this.slabSize = Math.max(2 * this.batchBytes, 16 * 1024);
    this.schedule = options.schedule ?? setImmediate;
    this.onError = options.onError ?? (() => {});
  }

  get dropped(): number {
    return this.droppedBacklog + this.droppedWriteError;
  }

  private get pendingBytes(): number {
    return this.fullBytes + this.fill;
  }

  /** Bytes waiting for or in a write. */
  get backlogBytes(): number {
    return this.pendingBytes + this.inFlightBytes;
  }

  /** Queues one line (without its newline). False when it was dropped. */
  push(line: string): boolean {
    // UTF-8 takes at most 3 bytes per UTF-16 unit; the check uses the ASCII size, what lines are.
    if (this.closed || this.pendingBytes + this.inFlightBytes + line.length + 1 > this.maxBacklog) {
      this.droppedBacklog++;
      return false;
    }
    const most = line.length * 3 + 1;
    let slab = this.slab;
    if (slab === null || slab.length - this.fill < most) slab = this.nextSlab(most);
    this.fill += slab.write(line, this.fill);
    slab[this.fill++] = NEWLINE;
    this.pendingLines++;
    if (this.writing) return true;
    if (this.pendingBytes >= this.batchBytes) this.startWrite();
    else if (!this.scheduled) {
      this.scheduled = true;
      this.schedule(this.flushNow);
    }
    return true;
  }

  /** Retires the slab being filled (its lines wait in `full`) and starts one with `room` bytes. */
  private nextSlab(room: number): Buffer {
    if (this.slab !== null && this.fill > 0) {
      this.full.push(this.slab.subarray(0, this.fill));
      this.fullBytes += this.fill;
    }
    const slab = room <= this.slabSize ? this.freshSlab() : Buffer.allocUnsafeSlow(room);
    this.slab = slab;
    this.fill = 0;
    return slab;
  }

  private freshSlab(): Buffer {
    const spare = this.spare;
    if (spare !== null) {
      this.spare = null;
      return spare;
    }
    return Buffer.allocUnsafeSlow(this.slabSize);
  }

  private startWrite(): void {
    if (this.writing) return;
    if (this.pendingLines === 0) {
      this.settleIdle();
      return;
    }
    let data: Buffer;
    const slab = this.slab as Buffer;
    if (this.full.length === 0) {
      // The common case: the slab itself goes out, and the next lines fill the other one.
      data = slab.subarray(0, this.fill);
      this.inFlightSlab = slab;
      this.slab = null;
    } else {
      // Lines outgrew a slab while a write was in flight: one copy of them all (a slow destination).
      if (this.fill > 0) this.full.push(slab.subarray(0, this.fill));
      data = Buffer.concat(this.full);
      this.full = [];
      this.fullBytes = 0;
      this.inFlightSlab = null;
    }
    this.inFlightBytes = data.length;
    this.inFlightLines = this.pendingLines;
    this.fill = 0;
    this.pendingLines = 0;
    this.writing = true;
    this.writer.write(data, this.written_);
  }

  private readonly written_ = (err: Error | null): void => {
    if (err === null) this.written += this.inFlightLines;
    else {
      this.droppedWriteError += this.inFlightLines;
      this.onError(err);
    }
    const done = this.inFlightSlab;
    if (done !== null && done.length === this.slabSize && this.slab !== done) this.spare = done;
    this.inFlightSlab = null;
    this.writing = false;
    this.inFlightBytes = 0;
    this.inFlightLines = 0;
    // What arrived during the write goes now when it is a full batch or someone waits for it
    // (shutdown); otherwise it waits like any batch, to grow.
    if (this.pendingBytes >= this.batchBytes || this.idleWaiters.length > 0 || this.pendingLines === 0)
      this.startWrite();
    else if (!this.scheduled) {
      this.scheduled = true;
      this.schedule(this.flushNow);
    }
  };

  private settleIdle(): void {
    if (this.idleWaiters.length === 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  /** Resolves once everything queued so far is written (or failed). */
  flush(): Promise<void> {
    if (!this.writing && this.pendingLines === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.idleWaiters.push(resolve);
      if (!this.writing) this.startWrite();
    });
  }

  /** Writes what is queued, then closes the destination; later lines are dropped. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    this.slab = null;
    this.spare = null;
    await this.writer.close();
  }

  reopen(): Promise<void> {
    return this.writer.reopen();
  }
}

/** How a file descriptor writer does I/O (node:fs; tests replace it). */
export interface FdIo {
  write(
    fd: number,
    buf: Buffer,
    offset: number,
    length: number,
    cb: (err: NodeJS.ErrnoException | null, written: number) => void,
  ): void;
  open(path: string, cb: (err: NodeJS.ErrnoException | null, fd: number) => void): void;
  close(fd: number, cb: (err: NodeJS.ErrnoException | null) => void): void;
  /** Waits before retrying a write the descriptor refused for now (EAGAIN). */
  retryLater(fn: () => void): void;
}

const NODE_IO: FdIo = {
  write: (fd, buf, offset, length, cb) => write(fd, buf, offset, length, null, cb),
  open: (path, cb) => open(path, 'a', 0o644, cb),
  close: (fd, cb) => close(fd, cb),
  retryLater: (fn) => setTimeout(fn, 10),
};

/**
 * Writes batches to a file descriptor through the thread pool (`fs.write`), never blocking the event
 * loop, even when stdout is a pipe whose reader is slow (Node's own `process.stdout` writes pipes
 * synchronously). Partial writes continue where they stopped; a non-blocking descriptor that is full
 * (EAGAIN) is retried after a short wait.
 */
export class FdWriter implements BatchWriter {
  private fd: number;
  /** The file to reopen on rotation; null for stdout. */
  private readonly path: string | null;
  private readonly io: FdIo;
  private busy = false;
  /** A descriptor opened by `reopen` while a write was in flight: used from the next write on. */
  private nextFd = -1;

  constructor(fd: number, path: string | null, io: FdIo = NODE_IO) {
    this.fd = fd;
    this.path = path;
    this.io = io;
  }

  write(buf: Buffer, done: (err: Error | null) => void): void {
    this.busy = true;
    const step = (offset: number): void => {
      this.io.write(this.fd, buf, offset, buf.length - offset, (err, n) => {
        if (err !== null) {
          if (err.code === 'EAGAIN') {
            this.io.retryLater(() => step(offset));
            return;
          }
          this.finish(done, err);
          return;
        }
        if (offset + n < buf.length) step(offset + n);
        else this.finish(done, null);
      });
    };
    step(0);
  }

  private finish(done: (err: Error | null) => void, err: Error | null): void {
    this.busy = false;
    if (this.nextFd >= 0) this.swap();
    done(err);
  }

  private swap(): void {
    const old = this.fd;
    this.fd = this.nextFd;
    this.nextFd = -1;
    this.io.close(old, () => {});
  }

  reopen(): Promise<void> {
    const path = this.path;
    if (path === null) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.io.open(path, (err, fd) => {
        if (err !== null) {
          reject(err);
          return;
        }
        if (this.nextFd >= 0) this.io.close(this.nextFd, () => {});
        this.nextFd = fd;
        if (!this.busy) this.swap();
        resolve();
      });
    });
  }

  close(): Promise<void> {
    if (this.path === null) return Promise.resolve();
    const fds = this.nextFd >= 0 ? [this.fd, this.nextFd] : [this.fd];
    this.nextFd = -1;
    return Promise.all(
      fds.map((fd) => new Promise<void>((resolve) => this.io.close(fd, () => resolve()))),
    ).then(() => undefined);
  }
}

/** Hands each batch to a function (tests, embedders): written when the function returns. */
export class CallbackWriter implements BatchWriter {
  private readonly fn: (text: string) => void;

  constructor(fn: (text: string) => void) {
    this.fn = fn;
  }

  write(data: Buffer, done: (err: Error | null) => void): void {
    try {
      this.fn(data.toString('utf8'));
      done(null);
    } catch (err) {
      done(err instanceof Error ? err : new Error(String(err)));
    }
  }

  reopen(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
