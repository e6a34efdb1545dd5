/**
 * `Proxy.tracing` and the tracing flags. Tracing is on when a collector is configured; without one
 * meshlet still passes trace headers through unchanged (they are ordinary request headers).
 *
 *     tracing:
 *       otlp:
 *         endpoint: http://otel-collector.observability:4318/v1/traces   # OTLP/HTTP (JSON)
 *         headers: {authorization: "Bearer …"}
 *       randomSamplingPercentage: 1      # Istio's name and default; the caller's decision wins
 *       serviceName: reviews             # default: the workload name
 *       maxBatchSize: 512                # spans per export request
 *       flushInterval: 1s                # how long a span may wait for a batch
 *       maxQueueSize: 4096               # spans kept while the collector is slow; beyond, dropped and counted
 */
import type { View } from './yaml-view.ts';

export interface TracingSpec {
  readonly otlp?: { readonly endpoint: string; readonly headers?: Readonly<Record<string, string>> };
  readonly randomSamplingPercentage?: number;
  readonly serviceName?: string;
  readonly maxBatchSize?: number;
  readonly flushIntervalMs?: number;
  readonly maxQueueSize?: number;
}

/** The tracing flags of `meshlet run`. */
export interface TracingFlags {
  /** `--tracing-endpoint URL`: the OTLP/HTTP traces endpoint. */
  readonly tracingEndpoint?: string;
  /** `--tracing-sampling PCT`: 0–100. */
  readonly tracingSampling?: number;
}

/** What the process runs with; null in `RuntimeSettings` when no collector is configured. */
export interface TracingConfig {
  /** Full URL of the OTLP/HTTP traces endpoint (`…/v1/traces`). */
  readonly endpoint: string;
  readonly headers: Readonly<Record<string, string>>;
  /** 0–100: share of new traces (no sampling decision from the caller) that are recorded. */
  readonly samplingPercent: number;
  /** `service.name` of the exported resource. */
  readonly serviceName: string;
  readonly maxBatchSize: number;
  readonly flushIntervalMs: number;
  readonly maxQueueSize: number;
}

export const TRACING_DEFAULTS = {
  samplingPercent: 1,
  maxBatchSize: 512,
  flushIntervalMs: 1000,
  maxQueueSize: 4096,
} as const;

const FIELDS = [
  'otlp',
  'randomSamplingPercentage',
  'serviceName',
  'maxBatchSize',
  'flushInterval',
  'maxQueueSize',
] as const;
const OTLP_FIELDS = ['endpoint', 'headers'] as const;

/** An http(s) URL, else the reason it is not one. */
export function endpointProblem(text: string): string | null {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return `"${text}" is not a URL`;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `"${text}" must be an http or https URL`;
  return null;
}

/** An HTTP header name (RFC 9110 token). */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Headers the exporter sets itself: a configured one would break the request. */
const RESERVED_HEADERS = new Set([
  'content-type',
  'content-length',
  'host',
  'transfer-encoding',
  'connection',
]);

/**
 * `otlp.headers` (e.g. an authorization token for the collector): names must be header tokens the
 * exporter does not set itself, values must not hold CR, LF or NUL, so every export request can be
 * sent as configured.
 */
function exportHeaders(view: View): Record<string, string> | undefined {
  const headers = view.stringMap();
  if (headers === undefined) return undefined;
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!TOKEN.test(name)) view.error(`header name "${name}" is not a valid HTTP header name`);
    else if (RESERVED_HEADERS.has(name.toLowerCase())) view.error(`header "${name}" is set by the exporter`);
    else if (/[\r\n\0]/.test(value)) view.error(`header "${name}" has a value with CR, LF or NUL`);
    else out[name] = value;
  }
  return out;
}

export function parseTracing(view: View): TracingSpec | undefined {
  const m = view.map();
  if (m === undefined) return undefined;
  m.checkFields(FIELDS, { strict: true });
  let otlp: TracingSpec['otlp'];
  if (m.has('otlp')) {
    const o = m.get('otlp').map();
    if (o !== undefined) {
      o.checkFields(OTLP_FIELDS, { strict: true });
      const epView = o.get('endpoint');
      if (epView.require('endpoint')) {
        const endpoint = epView.string();
        const problem = endpoint === undefined ? null : endpointProblem(endpoint);
        if (problem !== null) epView.error(problem);
        const headers = exportHeaders(o.get('headers'));
        if (endpoint !== undefined && problem === null)
          otlp = { endpoint, ...(headers !== undefined ? { headers } : {}) };
      }
    }
  }
  const randomSamplingPercentage = m.get('randomSamplingPercentage').number({ min: 0, max: 100 });
  const serviceView = m.get('serviceName');
  let serviceName = serviceView.string();
  if (serviceName !== undefined && serviceName.trim() === '') {
    serviceView.error('serviceName must not be empty');
    serviceName = undefined;
  }
  const maxBatchSize = m.get('maxBatchSize').int({ min: 1, max: 65536 });
  const flushIntervalMs = m.get('flushInterval').duration({ minMs: 1 });
  const maxQueueSize = m.get('maxQueueSize').int({ min: 1, max: 1_000_000 });
  return {
    ...(otlp !== undefined ? { otlp } : {}),
    ...(randomSamplingPercentage !== undefined ? { randomSamplingPercentage } : {}),
    ...(serviceName !== undefined ? { serviceName } : {}),
    ...(maxBatchSize !== undefined ? { maxBatchSize } : {}),
    ...(flushIntervalMs !== undefined ? { flushIntervalMs } : {}),
    ...(maxQueueSize !== undefined ? { maxQueueSize } : {}),
  };
}

/** Flags win over the document. Null: no collector, so no spans are recorded. */
export function resolveTracing(
  flags: TracingFlags,
  spec: TracingSpec | undefined,
  workloadName: string,
): TracingConfig | null {
  const endpoint = flags.tracingEndpoint ?? spec?.otlp?.endpoint;
  if (endpoint === undefined) return null;
  return {
    endpoint,
    headers: spec?.otlp?.headers ?? {},
    samplingPercent:
      flags.tracingSampling ?? spec?.randomSamplingPercentage ?? TRACING_DEFAULTS.samplingPercent,
    serviceName: spec?.serviceName ?? workloadName,
    maxBatchSize: spec?.maxBatchSize ?? TRACING_DEFAULTS.maxBatchSize,
    flushIntervalMs: spec?.flushIntervalMs ?? TRACING_DEFAULTS.flushIntervalMs,
    maxQueueSize: spec?.maxQueueSize ?? TRACING_DEFAULTS.maxQueueSize,
  };
}
