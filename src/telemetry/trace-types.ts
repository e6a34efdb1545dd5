/**
 * The tracing contract of the request path. The pipeline calls a `Tracer` once per request and the
 * returned `ExchangeTrace` at each upstream attempt and at the end; everything else (context
 * parsing, sampling, span ids, export) is the tracer's own business.
 */
import type { HeaderList } from '../listener/listener-types.ts';
import type { ObservedRequest } from './observed-request.ts';

export interface Tracer {
  /**
   * A request arrived: read its trace context (W3C `traceparent`/`tracestate`, B3) and decide
   * sampling. Null: nothing to do for this request (the pipeline then makes no further calls).
   */
  start(headers: HeaderList, reporter: 'source' | 'destination', startedAt: number): ExchangeTrace | null;
}

export interface ExchangeTrace {
  /**
   * An upstream attempt starts (a client span): returns the headers to send, carrying this attempt's
   * trace context. `headers` are the request's prepared upstream headers and must not be mutated.
   */
  attemptStarted(headers: HeaderList, r: ObservedRequest): HeaderList;
  /**
   * The attempt that started last ended: `failure` is null when the upstream answered
   * (`r.upstreamStatus`, 0 when the client left first), else why it failed
   * (`connect`, `reset`, `protocol`, `timeout`, `per-try-timeout`). May come without
   * `attemptStarted` (an attempt that failed before sending, e.g. no certificate to originate mTLS).
   */
  attemptEnded(r: ObservedRequest, failure: string | null): void;
  /** The request finished (the server span ends): `durationMs` and `code` as for observers. */
  finished(r: ObservedRequest, durationMs: number, code: number): void;
}
