/**
 * Trace context in request headers: W3C Trace Context (`traceparent`, `tracestate`) and Zipkin's B3
 * (multi-header `x-b3-*` and single `b3`). Parsing follows the W3C rule that an invalid
 * `traceparent` is treated as if it were absent; B3 values that do not parse are ignored the same
 * way. Formatting writes the headers one upstream attempt sends.
 */
import type { HeaderList } from '../../listener/listener-types.ts';

/** How the caller sent B3, so the proxy answers in the same form. */
export const B3_NONE = 0;
export const B3_MULTI = 1;
export const B3_SINGLE = 2;
export type B3Form = typeof B3_NONE | typeof B3_MULTI | typeof B3_SINGLE;

/** What the caller's headers said. */
export interface IncomingContext {
  /** 32 lower-case hex digits, or '' when the caller sent no usable trace id. */
  readonly traceId: string;
  /** The caller's span (16 hex digits), parent of this proxy's request span; '' when none. */
  readonly parentId: string;
  /** The caller's sampling decision: true, false, or null when it made none. */
  readonly sampled: boolean | null;
  /** B3 debug (`x-b3-flags: 1`, `b3: …-d`): sampled, and said again downstream. */
  readonly debug: boolean;
  /** `tracestate` as received (several headers joined with ','), '' when absent. */
  readonly tracestate: string;
  readonly b3: B3Form;
}

const ZERO_TRACE = '00000000000000000000000000000000';
const ZERO_SPAN = '0000000000000000';
/** Left padding that turns a 64-bit B3 trace id into a 128-bit one. */
const PAD64 = ZERO_SPAN;

/** Whether `s[from, to)` is lower-case hex only. */
function isLowerHex(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    // 0-9, a-f
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

export interface Traceparent {
  readonly traceId: string;
  readonly parentId: string;
  readonly sampled: boolean;
}

/**
 * A `traceparent` value, or null when it is invalid (W3C Trace Context level 1 §3.2: lower-case hex
 * only, version `ff` forbidden, all-zero ids forbidden; version 00 is exactly 55 characters, a later
 * version may append fields after a '-' and its first four fields are read as version 00's).
 */
export function parseTraceparent(value: string): Traceparent | null {
  if (value.length < 55) return null;
  if (!isLowerHex(value, 0, 2)) return null;
  const v0 = value.charCodeAt(0);
  const v1 = value.charCodeAt(1);
  if (v0 === 102 && v1 === 102) return null; // ff
  const isV00 = v0 === 48 && v1 === 48;
  if (isV00 ? value.length !== 55 : value.length > 55 && value.charCodeAt(55) !== 45) return null;
  if (value.charCodeAt(2) !== 45 || value.charCodeAt(35) !== 45 || value.charCodeAt(52) !== 45) return null;
  if (!isLowerHex(value, 3, 35) || !isLowerHex(value, 36, 52) || !isLowerHex(value, 53, 55)) return null;
  const traceId = value.slice(3, 35);
  const parentId = value.slice(36, 52);
  if (traceId === ZERO_TRACE || parentId === ZERO_SPAN) return null;
  const flags = Number.parseInt(value.slice(53, 55), 16);
  return { traceId, parentId, sampled: (flags & 1) === 1 };
}

/** `traceparent` for a span of this proxy (version 00). */
export function formatTraceparent(traceId: string, spanId: string, sampled: boolean): string {
  return `00-${traceId}-${spanId}${sampled ? '-01' : '-00'}`;
}

/** A B3 trace id (16 or 32 lower-case hex, not all zero) as 32 hex digits, else ''. */
function b3TraceId(s: string): string {
  if (s.length === 16) {
    if (!isLowerHex(s, 0, 16) || s === ZERO_SPAN) return '';
    return PAD64 + s;
  }
  if (s.length === 32 && isLowerHex(s, 0, 32) && s !== ZERO_TRACE) return s;
  return '';
}

/** A B3 span id (16 lower-case hex, not all zero), else ''. */
function b3SpanId(s: string): string {
  return s.length === 16 && isLowerHex(s, 0, 16) && s !== ZERO_SPAN ? s : '';
}

/** `x-b3-sampled` / the sampling field of `b3`: true, false, or null when absent or unknown. */
function b3Sampled(s: string | undefined): boolean | null {
  if (s === '1' || s === 'true') return true;
  if (s === '0' || s === 'false') return false;
  return null;
}

export interface B3Single {
  readonly traceId: string;
  readonly spanId: string;
  readonly sampled: boolean | null;
  readonly debug: boolean;
}

/**
 * A `b3` single-header value: `{traceid}-{spanid}[-{sampling}[-{parentspanid}]]` or the decision
 * alone (`0`, `1`, `d`). Null when it does not parse. A decision alone has empty ids.
 */
export function parseB3Single(value: string): B3Single | null {
  if (value.length === 1) {
    if (value === 'd') return { traceId: '', spanId: '', sampled: true, debug: true };
    const sampled = b3Sampled(value);
    return sampled === null ? null : { traceId: '', spanId: '', sampled, debug: false };
  }
  const parts = value.split('-');
  if (parts.length < 2 || parts.length > 4) return null;
  const traceId = b3TraceId(parts[0]!);
  const spanId = b3SpanId(parts[1]!);
  if (traceId === '' || spanId === '') return null;
  const flag = parts[2];
  if (parts.length === 4 && b3SpanId(parts[3]!) === '') return null;
  if (flag === undefined) return { traceId, spanId, sampled: null, debug: false };
  if (flag === 'd') return { traceId, spanId, sampled: true, debug: true };
  const sampled = flag === '1' ? true : flag === '0' ? false : undefined;
  if (sampled === undefined) return null;
  return { traceId, spanId, sampled, debug: false };
}

/**
 * The trace context of a request's headers, or null when they carry none at all (no trace id and
 * no sampling decision). One pass over the header list; a valid `traceparent` wins over B3, the
 * single `b3` header over the multi-header form.
 */
export function readContext(headers: HeaderList): IncomingContext | null {
  let traceparent: string | undefined;
  let tracestate = '';
  let b3: string | undefined;
  let b3TraceIdText: string | undefined;
  let b3SpanIdText: string | undefined;
  let b3SampledText: string | undefined;
  let b3Flags: string | undefined;
  let any = false;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!;
    const c = name.charCodeAt(0);
    // Only names starting with 't', 'b' or 'x' can be trace headers: most headers stop here.
    if (c === 116) {
      if (name === 'traceparent') {
        // A repeated traceparent is ambiguous: the W3C spec says to ignore it then.
        traceparent = traceparent === undefined ? headers[i + 1]! : '';
        any = true;
      } else if (name === 'tracestate') {
        const v = headers[i + 1]!;
        tracestate = tracestate === '' ? v : `${tracestate},${v}`;
      }
    } else if (c === 98) {
      if (name === 'b3') {
        b3 = headers[i + 1]!;
        any = true;
      }
    } else if (c === 120 && name.length > 5 && name.charCodeAt(3) === 51 && name.startsWith('x-b3-')) {
      const v = headers[i + 1]!;
      any = true;
      if (name === 'x-b3-traceid') b3TraceIdText = v;
      else if (name === 'x-b3-spanid') b3SpanIdText = v;
      else if (name === 'x-b3-sampled') b3SampledText = v;
      else if (name === 'x-b3-flags') b3Flags = v;
    }
  }
  if (!any) return null;
  const single = b3 === undefined ? null : parseB3Single(b3.trim());
  let form: B3Form = B3_NONE;
  let traceId = '';
  let parentId = '';
  let sampled: boolean | null = null;
  let debug = false;
  if (single !== null) {
    form = B3_SINGLE;
    traceId = single.traceId;
    parentId = single.spanId;
    sampled = single.sampled;
    debug = single.debug;
  } else if (b3TraceIdText !== undefined || b3SampledText !== undefined || b3Flags !== undefined) {
    const id = b3TraceIdText === undefined ? '' : b3TraceId(b3TraceIdText);
    const span = b3SpanIdText === undefined ? '' : b3SpanId(b3SpanIdText);
    debug = b3Flags === '1';
    sampled = debug ? true : b3Sampled(b3SampledText);
    if (id !== '' && span !== '') {
      traceId = id;
      parentId = span;
      form = B3_MULTI;
    } else if (sampled !== null) {
      // A decision without ids ("x-b3-sampled: 0" alone) is still a decision.
      form = B3_MULTI;
    }
  }
  const w3c = traceparent === undefined ? null : parseTraceparent(traceparent);
  if (w3c !== null) {
    traceId = w3c.traceId;
    parentId = w3c.parentId;
    sampled = w3c.sampled;
  }
  if (traceId === '' && sampled === null) return null;
  return {
    traceId,
    parentId,
    sampled,
    debug,
    // tracestate is meaningless without a valid traceparent (W3C §3.3).
    tracestate: w3c === null ? '' : tracestate,
    b3: form,
  };
}

/** Whether a header name is one of the trace headers an attempt replaces. */
export function isTraceHeader(name: string): boolean {
  const c = name.charCodeAt(0);
  if (c === 116) return name === 'traceparent' || name === 'tracestate';
  if (c === 98) return name === 'b3';
  return c === 120 && name.startsWith('x-b3-');
}

/**
 * The headers one attempt sends: `headers` without any trace header, then this attempt's context.
 * `spanId` is the attempt's client span, `parentId` the request span (B3 carries it).
 */
export function withContext(
  headers: HeaderList,
  traceId: string,
  spanId: string,
  parentId: string,
  sampled: boolean,
  debug: boolean,
  tracestate: string,
  b3: B3Form,
): HeaderList {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!;
    if (!isTraceHeader(name)) out.push(name, headers[i + 1]!);
  }
  out.push('traceparent', formatTraceparent(traceId, spanId, sampled));
  if (tracestate !== '') out.push('tracestate', tracestate);
  if (b3 !== B3_NONE) {
    // A 64-bit trace id came in as 64 bits: send it back in the same width.
    const b3Trace = traceId.startsWith(PAD64) ? traceId.slice(16) : traceId;
    if (b3 === B3_SINGLE) {
      const flag = debug ? 'd' : sampled ? '1' : '0';
      out.push('b3', `${b3Trace}-${spanId}-${flag}-${parentId}`);
    } else {
      out.push('x-b3-traceid', b3Trace, 'x-b3-spanid', spanId, 'x-b3-parentspanid', parentId);
      if (debug) out.push('x-b3-flags', '1');
      else out.push('x-b3-sampled', sampled ? '1' : '0');
    }
  }
  return out;
}
