/**
 * A finished span as the tracer hands it to the exporter, and its OTLP/JSON form
 * (`ExportTraceServiceRequest`, opentelemetry-proto's JSON mapping: hex ids, times in Unix
 * nanoseconds as decimal strings, enums as integers, typed attribute values). The JSON is built at
 * export time, off the request path.
 */

/** OTLP `Span.SpanKind`. */
export const SPAN_KIND_INTERNAL = 1;
export const SPAN_KIND_SERVER = 2;
export const SPAN_KIND_CLIENT = 3;

/** OTLP `Status.StatusCode`. */
export const STATUS_UNSET = 0;
export const STATUS_ERROR = 2;

export type AttributeValue = string | number | boolean;

export interface SpanRecord {
  readonly traceId: string;
  readonly spanId: string;
  /** '' for a root span. */
  readonly parentSpanId: string;
  readonly name: string;
  readonly kind: number;
  /** The pipeline's monotonic clock, ms. */
  readonly startMs: number;
  endMs: number;
  /** Flat `[key, value, key, value, …]`: one array per span instead of one object per attribute. */
  readonly attributes: AttributeValue[];
  /** Null: status unset; else the span failed and this says why (status ERROR). */
  readonly error: string | null;
}

/**
 * Unix nanoseconds, as the decimal string OTLP/JSON wants for fixed64. Milliseconds since 1970
 * times 10^6 is beyond 2^53, so the whole milliseconds and the fraction are joined as integers.
 */
export function unixNanos(unixMs: number): string {
  const whole = Math.floor(unixMs);
  let frac = Math.round((unixMs - whole) * 1e6);
  let ms = whole;
  if (frac >= 1e6) {
    ms += 1;
    frac -= 1e6;
  }
  return (BigInt(ms) * 1_000_000n + BigInt(frac)).toString();
}

interface OtlpAnyValue {
  readonly stringValue?: string;
  readonly intValue?: string;
  readonly doubleValue?: number;
  readonly boolValue?: boolean;
}

export interface OtlpKeyValue {
  readonly key: string;
  readonly value: OtlpAnyValue;
}

function anyValue(v: AttributeValue): OtlpAnyValue {
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  // int64 is a decimal string in the JSON mapping.
  return Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v };
}

export function otlpAttributes(flat: readonly AttributeValue[]): OtlpKeyValue[] {
  const out: OtlpKeyValue[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2)
    out.push({ key: String(flat[i]), value: anyValue(flat[i + 1]!) });
  return out;
}

export interface OtlpResource {
  readonly serviceName: string;
  /** Further resource attributes, flat like a span's. */
  readonly attributes?: readonly AttributeValue[];
}

/**
 * One `ExportTraceServiceRequest` body. `unixOffsetMs`: what to add to the monotonic clock to get
 * Unix milliseconds (taken once when the tracer starts).
 */
export function exportRequestJson(
  spans: readonly SpanRecord[],
  resource: OtlpResource,
  unixOffsetMs: number,
  scope: { readonly name: string; readonly version: string },
): string {
  const body = {
    resourceSpans: [
      {
        resource: {
          attributes: otlpAttributes(['service.name', resource.serviceName, ...(resource.attributes ?? [])]),
        },
        scopeSpans: [
          {
            scope,
            spans: spans.map((s) => ({
              traceId: s.traceId,
              spanId: s.spanId,
              ...(s.parentSpanId === '' ? {} : { parentSpanId: s.parentSpanId }),
              name: s.name,
              kind: s.kind,
              startTimeUnixNano: unixNanos(s.startMs + unixOffsetMs),
              endTimeUnixNano: unixNanos(s.endMs + unixOffsetMs),
              attributes: otlpAttributes(s.attributes),
              status: s.error === null ? { code: STATUS_UNSET } : { code: STATUS_ERROR, message: s.error },
            })),
          },
        ],
      },
    ],
  };
  return JSON.stringify(body);
}
