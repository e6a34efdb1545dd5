/**
 * Batched, asynchronous span export over OTLP/HTTP with JSON encoding. The request path only pushes
 * a finished span onto a bounded queue; a timer (one per batch, not per request) or a full batch
 * sends the queue to the collector, one request at a time. Beyond `maxQueueSize` spans are dropped
 * and counted; an export that fails with 429, 503 or a connection error is tried once more after a
 * back-off, then dropped and counted.
 */
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Counter, type Registry } from 'prom-client';
import { VERSION } from '../../version.ts';
import { exportRequestJson, type OtlpResource, type SpanRecord } from './span-record.ts';

/** Sends one JSON body; resolves with the HTTP status, rejects when the collector was not reached. */
export type Transport = (body: string) => Promise<number>;

export interface ExportTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const REAL_TIMERS: ExportTimers = {
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    // Export never keeps the process alive: shutdown flushes explicitly.
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export type DropReason = 'queue_full' | 'export_failed' | 'rejected';

export interface ExporterOptions {
  readonly transport: Transport;
  readonly resource: OtlpResource;
  /** Unix ms minus the monotonic clock (`performance.timeOrigin` for `performance.now`). */
  readonly unixOffsetMs: number;
  readonly maxBatchSize: number;
  readonly flushIntervalMs: number;
  readonly maxQueueSize: number;
  /** Wait before the one retry of a failed export (default 1000 ms). */
  readonly retryBackoffMs?: number;
  /** Where the two counters are registered (MeshMetrics.registry); absent: not exposed. */
  readonly registry?: Registry;
  readonly timers?: ExportTimers;
  /** Told about failed exports (the caller rate-limits its log). */
  readonly onError?: (reason: DropReason, detail: string, spans: number) => void;
}

export class OtlpExporter {
  private readonly o: ExporterOptions;
  private readonly timers: ExportTimers;
  private queue: SpanRecord[] = [];
  private timer: unknown = null;
  /** The export in progress (at most one), so batches reach the collector in order. */
  private inFlight: Promise<void> | null = null;
  private readonly exportedCounter: Counter;
  private readonly droppedCounter: Counter<'reason'>;
  /** Plain tallies for tests and `/stats`-like readers. */
  exported = 0;
  readonly dropped: Record<DropReason, number> = { queue_full: 0, export_failed: 0, rejected: 0 };
  private closed = false;

  constructor(o: ExporterOptions) {
    this.o = o;
    this.timers = o.timers ?? REAL_TIMERS;
    const registers = o.registry === undefined ? [] : [o.registry];
    this.exportedCounter = new Counter({
      name: 'meshlet_trace_spans_exported_total',
      help: 'Spans the OTLP collector accepted',
      registers,
    });
    this.droppedCounter = new Counter({
      name: 'meshlet_trace_spans_dropped_total',
      help: 'Spans not exported: queue_full (the queue was at maxQueueSize), export_failed (the collector could not be reached or was overloaded, after one retry), rejected (it refused the batch)',
      labelNames: ['reason'],
      registers,
    });
  }

  /** Spans waiting for export. */
  get queued(): number {
    return this.queue.length;
  }

  /** Queues one finished span (request path: constant time, never throws). */
  enqueue(span: SpanRecord): void {
    if (this.queue.length >= this.o.maxQueueSize) {
      this.drop('queue_full', 1);
      return;
    }
    this.queue.push(span);
    if (this.queue.length >= this.o.maxBatchSize) {
      if (this.inFlight === null) this.sendNow();
    } else if (this.timer === null && this.inFlight === null) {
      this.timer = this.timers.setTimeout(() => {
        this.timer = null;
        this.sendNow();
      }, this.o.flushIntervalMs);
    }
  }

  private drop(reason: DropReason, n: number): void {
    this.dropped[reason] += n;
    this.droppedCounter.inc({ reason }, n);
  }

  /** Starts exporting the head of the queue unless an export is running. */
  private sendNow(): void {
    if (this.timer !== null) {
      this.timers.clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.inFlight !== null || this.queue.length === 0) return;
    const batch =
      this.queue.length <= this.o.maxBatchSize ? this.queue : this.queue.slice(0, this.o.maxBatchSize);
    this.queue = batch === this.queue ? [] : this.queue.slice(this.o.maxBatchSize);
    this.inFlight = this.exportBatch(batch).then(() => {
      this.inFlight = null;
      // More arrived meanwhile: a full batch goes at once, a partial one waits for the interval.
      if (this.queue.length >= this.o.maxBatchSize || (this.closed && this.queue.length > 0)) this.sendNow();
      else if (this.queue.length > 0 && this.timer === null)
        this.timer = this.timers.setTimeout(() => {
          this.timer = null;
          this.sendNow();
        }, this.o.flushIntervalMs);
    });
  }

  private async exportBatch(batch: SpanRecord[]): Promise<void> {
    let body: string;
    try {
      body = exportRequestJson(batch, this.o.resource, this.o.unixOffsetMs, {
        name: 'meshlet',
        version: VERSION,
      });
    } catch (err) {
      this.drop('rejected', batch.length);
      this.o.onError?.('rejected', err instanceof Error ? err.message : String(err), batch.length);
      return;
    }
    for (let attempt = 0; attempt < 2; attempt++) {
      let outcome: { retriable: boolean; detail: string };
      try {
        const status = await this.o.transport(body);
        if (status >= 200 && status < 300) {
          this.exported += batch.length;
          this.exportedCounter.inc(batch.length);
          return;
        }
        outcome = {
          retriable: status === 429 || status === 503 || status === 502 || status === 504,
          detail: `HTTP ${status}`,
        };
      } catch (err) {
        outcome = { retriable: true, detail: err instanceof Error ? err.message : String(err) };
      }
      if (!outcome.retriable) {
        this.drop('rejected', batch.length);
        this.o.onError?.('rejected', outcome.detail, batch.length);
        return;
      }
      if (attempt === 0 && !this.closed) {
        await new Promise<void>((r) => this.timers.setTimeout(r, this.o.retryBackoffMs ?? 1000));
        continue;
      }
      this.drop('export_failed', batch.length);
      this.o.onError?.('export_failed', outcome.detail, batch.length);
      return;
    }
  }

  /**
   * Sends everything queued and waits for it, at most `timeoutMs`; later spans are dropped. Used on
   * shutdown. Resolves true when everything queued was handled in time.
   */
  async shutdown(timeoutMs: number): Promise<boolean> {
    this.closed = true;
    let timer: unknown = null;
    const expired = new Promise<false>((r) => {
      timer = this.timers.setTimeout(() => r(false), timeoutMs);
    });
    const drained = (async (): Promise<true> => {
      this.sendNow();
      while (this.inFlight !== null) await this.inFlight;
      return true;
    })();
    const done = await Promise.race([drained, expired]);
    this.timers.clearTimeout(timer);
    return done;
  }
}

/**
 * The real transport: POST with `Content-Type: application/json` over a keep-alive agent, with a
 * bounded time per request. `headers`: extra headers from the configuration (authorization).
 */
export function httpTransport(
  endpoint: string,
  headers: Readonly<Record<string, string>>,
  timeoutMs = 10_000,
): Transport {
  const url = new URL(endpoint);
  const https = url.protocol === 'https:';
  const agent = https
    ? new HttpsAgent({ keepAlive: true, maxSockets: 2 })
    : new HttpAgent({ keepAlive: true, maxSockets: 2 });
  const send = https ? httpsRequest : httpRequest;
  return (body) =>
    new Promise<number>((resolve, reject) => {
      const req = send(
        url,
        {
          method: 'POST',
          agent,
          headers: {
            ...headers,
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          },
          timeout: timeoutMs,
        },
        (res) => {
          // The body (an ExportTraceServiceResponse, maybe with partial_success) is not needed.
          res.resume();
          res.once('end', () => resolve(res.statusCode ?? 0));
          res.once('error', reject);
        },
      );
      req.once('timeout', () => req.destroy(new Error(`no answer from ${url.host} in ${timeoutMs} ms`)));
      req.once('error', reject);
      req.end(body);
    });
}
