/**
 * meshlet's `Tracer` (see ../trace-types.ts): reads the caller's trace context, decides sampling,
 * gives every upstream attempt its own trace context, and records spans for sampled requests.
 *
 * Span model (README, Tracing):
 * - one request span per request, kind SERVER on both sides: inbound it serves the peer's call,
 *   outbound it serves the application's call into its sidecar (the hop app → sidecar). Its parent
 *   is the caller's span. Name: `<METHOD> <destination service>` (the service FQDN, or the
 *   authority's host when the destination is not a known service): low cardinality, no paths.
 * - one CLIENT span per upstream attempt, child of the request span, named Envoy's way
 *   `router <cluster> egress`: retries are sibling client spans with their own span ids, and each
 *   attempt's `traceparent` names its own client span as the parent.
 *
 * Cost: a request that is not sampled makes no span objects. When it came with a context (or a
 * decision) its trace headers pass through untouched (`start` answers null); when it starts the
 * trace here, its attempts carry a `traceparent` with flags 00 so that the next proxies honour the
 * decision instead of drawing again.
 */
import type { HeaderList } from '../../listener/listener-types.ts';
import type { ObservedRequest } from '../observed-request.ts';
import type { ExchangeTrace, Tracer } from '../trace-types.ts';
import { Sampler } from './sampler.ts';
import type { IdSource } from './span-ids.ts';
import { type AttributeValue, SPAN_KIND_CLIENT, SPAN_KIND_SERVER, type SpanRecord } from './span-record.ts';
import {
  B3_NONE,
  type B3Form,
  formatTraceparent,
  isTraceHeader,
  readContext,
  withContext,
} from './trace-context.ts';

export interface TracerOptions {
  /** 0–100: share of requests without a caller decision that are recorded. */
  readonly samplingPercent: number;
  /** Uniform in [0, 1): the sampling draw. */
  readonly random: () => number;
  readonly ids: IdSource;
  /** The pipeline's monotonic clock (ms): attempt start and end. */
  readonly now: () => number;
  /** Takes each finished span (the exporter's queue); must not throw. */
  readonly sink: (span: SpanRecord) => void;
  /**
   * Give a trace that starts here and is not sampled a `traceparent` with flags 00 (default true);
   * false leaves such requests' headers alone.
   */
  readonly propagateUnsampled?: boolean;
}

export class MeshTracer implements Tracer {
  readonly ids: IdSource;
  readonly now: () => number;
  readonly sink: (span: SpanRecord) => void;
  private readonly sampler: Sampler;
  private readonly propagateUnsampled: boolean;

  constructor(o: TracerOptions) {
    this.ids = o.ids;
    this.now = o.now;
    this.sink = o.sink;
    this.sampler = new Sampler(o.samplingPercent, o.random);
    this.propagateUnsampled = o.propagateUnsampled ?? true;
  }

  start(headers: HeaderList, reporter: 'source' | 'destination', startedAt: number): ExchangeTrace | null {
    const ctx = readContext(headers);
    if (!this.sampler.sampled(ctx === null ? null : ctx.sampled)) {
      // The caller's context (or decision) travels on as it came; only a trace that starts here
      // needs one, so that the next hops follow this decision.
      if (ctx !== null || !this.propagateUnsampled) return null;
      return new UnsampledRoot(formatTraceparent(this.ids.traceId(), this.ids.spanId(), false));
    }
    if (ctx === null || ctx.traceId === '') {
      return new SampledTrace(
        this,
        reporter,
        startedAt,
        this.ids.traceId(),
        '',
        ctx?.debug ?? false,
        '',
        ctx?.b3 ?? B3_NONE,
      );
    }
    return new SampledTrace(
      this,
      reporter,
      startedAt,
      ctx.traceId,
      ctx.parentId,
      ctx.debug,
      ctx.tracestate,
      ctx.b3,
    );
  }
}

/** A trace that starts here, not sampled: one `traceparent` (flags 00) for every attempt. */
class UnsampledRoot implements ExchangeTrace {
  private readonly traceparent: string;

  constructor(traceparent: string) {
    this.traceparent = traceparent;
  }

  attemptStarted(headers: HeaderList): HeaderList {
    const out: string[] = [];
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!;
      // An invalid trace header the caller sent is replaced, not passed on beside ours.
      if (!isTraceHeader(name)) out.push(name, headers[i + 1]!);
    }
    out.push('traceparent', this.traceparent);
    return out;
  }

  attemptEnded(): void {}

  finished(): void {}
}

/** The open attempt of a sampled request. */
interface OpenAttempt {
  readonly spanId: string;
  readonly startMs: number;
  /** Which try this is (1 = first). */
  readonly number: number;
  readonly peerAddress: string;
  readonly peerPort: number;
  readonly cluster: string;
}

/** The authority's host (without port; IPv6 brackets kept off). */
export function hostOf(authority: string): string {
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    return end < 0 ? authority : authority.slice(1, end);
  }
  const colon = authority.lastIndexOf(':');
  return colon < 0 ? authority : authority.slice(0, colon);
}

/** The path without its query (`url.path`). */
function pathOnly(path: string): string {
  const q = path.indexOf('?');
  return q < 0 ? path : path.slice(0, q);
}

/** `host:port` of an endpoint id, split. */
function splitHostPort(id: string): { host: string; port: number } {
  const colon = id.lastIndexOf(':');
  if (colon < 0) return { host: id, port: 0 };
  const host = id.slice(0, colon);
  return {
    host: host.startsWith('[') ? host.slice(1, -1) : host,
    port: Number.parseInt(id.slice(colon + 1), 10) || 0,
  };
}

/** The cluster name an attempt span reports: the routed cluster, else Envoy's names for the others. */
function clusterName(r: ObservedRequest): string {
  if (r.cluster !== null) return r.cluster.name;
  if (r.reporter === 'destination') return `inbound|${r.target?.port ?? 0}||`;
  return 'PassthroughCluster';
}

class SampledTrace implements ExchangeTrace {
  private readonly tracer: MeshTracer;
  private readonly reporter: 'source' | 'destination';
  private readonly startedAt: number;
  private readonly traceId: string;
  /** The request span. */
  private readonly spanId: string;
  /** The caller's span ('' when the trace starts here). */
  private readonly parentId: string;
  private readonly debug: boolean;
  private readonly tracestate: string;
  private readonly b3: B3Form;
  private open: OpenAttempt | null = null;
  private readonly attempts: SpanRecord[] = [];

  constructor(
    tracer: MeshTracer,
    reporter: 'source' | 'destination',
    startedAt: number,
    traceId: string,
    parentId: string,
    debug: boolean,
    tracestate: string,
    b3: B3Form,
  ) {
    this.tracer = tracer;
    this.reporter = reporter;
    this.startedAt = startedAt;
    this.traceId = traceId;
    this.spanId = tracer.ids.spanId();
    this.parentId = parentId;
    this.debug = debug;
    this.tracestate = tracestate;
    this.b3 = b3;
  }

  attemptStarted(headers: HeaderList, r: ObservedRequest): HeaderList {
    // An attempt that was never ended (not expected) is closed now rather than lost.
    if (this.open !== null) this.closeAttempt(r, 'abandoned', this.tracer.now());
    const spanId = this.tracer.ids.spanId();
    const where =
      r.endpoint !== null
        ? splitHostPort(r.endpoint.id)
        : r.target !== null
          ? { host: r.target.address, port: r.target.port }
          : { host: '', port: 0 };
    this.open = {
      spanId,
      startMs: this.tracer.now(),
      number: this.attempts.length + 1,
      peerAddress: where.host,
      peerPort: where.port,
      cluster: clusterName(r),
    };
    return withContext(
      headers,
      this.traceId,
      spanId,
      this.spanId,
      true,
      this.debug,
      this.tracestate,
      this.b3,
    );
  }

  attemptEnded(r: ObservedRequest, failure: string | null): void {
    const now = this.tracer.now();
    if (this.open === null) {
      // An attempt that failed before sending (no certificate to originate mTLS): a zero-length span.
      this.open = {
        spanId: this.tracer.ids.spanId(),
        startMs: now,
        number: this.attempts.length + 1,
        peerAddress: r.endpoint === null ? (r.target?.address ?? '') : splitHostPort(r.endpoint.id).host,
        peerPort: r.endpoint === null ? (r.target?.port ?? 0) : splitHostPort(r.endpoint.id).port,
        cluster: clusterName(r),
      };
    }
    this.closeAttempt(r, failure, now);
  }

  private closeAttempt(r: ObservedRequest, failure: string | null, endMs: number): void {
    const a = this.open!;
    this.open = null;
    const status = failure === null ? r.upstreamStatus : 0;
    const attrs: AttributeValue[] = [
      'http.request.method',
      r.req.method,
      'url.path',
      pathOnly(r.path),
      'server.address',
      hostOf(r.authority),
      'network.peer.address',
      a.peerAddress,
      'network.peer.port',
      a.peerPort,
      'upstream_cluster',
      a.cluster,
    ];
    if (status > 0) attrs.push('http.response.status_code', status);
    if (a.number > 1) attrs.push('http.request.resend_count', a.number - 1);
    let error: string | null = null;
    if (failure !== null) {
      error = failure;
      attrs.push('error.type', failure);
    } else if (status >= 500) {
      error = `upstream answered ${status}`;
      attrs.push('error.type', String(status));
    }
    this.attempts.push({
      traceId: this.traceId,
      spanId: a.spanId,
      parentSpanId: this.spanId,
      name: `router ${a.cluster} egress`,
      kind: SPAN_KIND_CLIENT,
      startMs: a.startMs,
      endMs: Math.max(a.startMs, endMs),
      attributes: attrs,
      error,
    });
  }

  finished(r: ObservedRequest, durationMs: number, code: number): void {
    const endMs = this.startedAt + durationMs;
    if (this.open !== null) this.closeAttempt(r, 'unfinished', endMs);
    const service = r.peer.serviceFqdn !== 'unknown' ? r.peer.serviceFqdn : hostOf(r.authority);
    const attrs: AttributeValue[] = [
      'http.request.method',
      r.req.method,
      'url.path',
      pathOnly(r.originalPath),
      'server.address',
      hostOf(r.authority),
      'network.peer.address',
      r.req.remoteAddress,
      'upstream_cluster',
      r.cluster?.name ?? (r.reporter === 'destination' ? clusterName(r) : '-'),
      'response_flags',
      r.flags === '' ? '-' : r.flags,
      'guid:x-request-id',
      r.requestId,
      'meshlet.reporter',
      this.reporter,
    ];
    if (code > 0) attrs.push('http.response.status_code', code);
    if (r.routeName !== '') attrs.push('route_name', r.routeName);
    let error: string | null = null;
    if (code === 0 || code >= 500) {
      const why = r.flags !== '' ? r.flags : r.details !== '' ? r.details : code === 0 ? 'no response' : '';
      error = why === '' ? `status ${code}` : `status ${code}: ${why}`;
      attrs.push('error.type', code === 0 ? 'no_response' : String(code));
    }
    const sink = this.tracer.sink;
    sink({
      traceId: this.traceId,
      spanId: this.spanId,
      parentSpanId: this.parentId,
      name: `${r.req.method} ${service}`,
      kind: SPAN_KIND_SERVER,
      startMs: this.startedAt,
      endMs: Math.max(this.startedAt, endMs),
      attributes: attrs,
      error,
    });
    for (const a of this.attempts) {
      // The request span encloses its attempts: a late clock read never puts one outside it.
      if (a.endMs > endMs) a.endMs = Math.max(a.startMs, endMs);
      sink(a);
    }
    this.attempts.length = 0;
  }
}
