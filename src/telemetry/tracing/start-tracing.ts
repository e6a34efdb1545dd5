/**
 * Builds the tracer and its exporter from `RuntimeSettings.tracing` (main.ts wiring): pooled random
 * ids, `Math.random` for the sampling draw, the HTTP transport to the configured collector, the
 * two export counters on the metrics registry, and a rate-limited log of failed exports.
 */
import type { Registry } from 'prom-client';
import type { TracingConfig } from '../../config/validate-tracing.ts';
import type { Logger } from '../logger.ts';
import { httpTransport, OtlpExporter } from './otlp-exporter.ts';
import { PooledIds } from './span-ids.ts';
import { MeshTracer } from './tracer.ts';

export interface Tracing {
  readonly tracer: MeshTracer;
  readonly exporter: OtlpExporter;
}

/** At most one log line about failed exports per this many ms (a down collector must not flood). */
const LOG_EVERY_MS = 10_000;

export function startTracing(
  config: TracingConfig,
  registry: Registry,
  now: () => number,
  logger: Logger,
): Tracing {
  let lastLog = Number.NEGATIVE_INFINITY;
  let held = 0;
  const exporter = new OtlpExporter({
    transport: httpTransport(config.endpoint, config.headers),
    resource: { serviceName: config.serviceName },
    // Span times are taken on the monotonic clock; one offset, taken now, makes them Unix times.
    unixOffsetMs: Date.now() - now(),
    maxBatchSize: config.maxBatchSize,
    flushIntervalMs: config.flushIntervalMs,
    maxQueueSize: config.maxQueueSize,
    registry,
    onError: (reason, detail, spans) => {
      const t = now();
      if (t - lastLog < LOG_EVERY_MS) {
        held += spans;
        return;
      }
      lastLog = t;
      logger.log('warn', 'trace export failed; spans dropped', {
        reason,
        detail,
        spans: spans + held,
        endpoint: config.endpoint,
      });
      held = 0;
    },
  });
  const tracer = new MeshTracer({
    samplingPercent: config.samplingPercent,
    random: Math.random,
    ids: new PooledIds(),
    now,
    sink: (span) => exporter.enqueue(span),
  });
  return { tracer, exporter };
}
