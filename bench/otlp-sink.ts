/**
 * The OTLP/HTTP sink of the telemetry benches: `node otlp-sink.js <port>`. It accepts trace exports
 * at /v1/traces, counts their spans and answers `GET /counts` (see createOtlpSink). It runs as its
 * own process, pinned with the load generator, so parsing exports never costs the proxy's CPU.
 */
import { createOtlpSink } from './telemetry.ts';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  process.stderr.write('usage: node otlp-sink.js <port>\n');
  process.exit(2);
}

createOtlpSink().listen(port, '127.0.0.1');
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => process.exit(0));
