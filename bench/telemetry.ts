/**
 * What a bench needs to run meshlet with its telemetry off or fully on, and to check that the
 * telemetry really worked during a measurement:
 * - the flags for each choice (every bench that starts meshlet must pick one, since the access log
 *   is on by default and would otherwise be part of every figure);
 * - a loopback OTLP/HTTP sink that accepts trace exports and counts spans (`bench/otlp-sink.ts` runs
 *   it as a child process on the load CPU, so that it never takes the proxy's CPU);
 * - Prometheus-style scrapes of the admin port during a run;
 * - counting (then emptying) the access-log file between rounds, so a long run does not fill the disk.
 */
import { createReadStream, existsSync, truncateSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { freePort, type HttpResult, httpGet, type Processes, type Started, waitUntil } from './procs.ts';

/** meshlet's telemetry in a bench: off, or everything the cost goal covers. */
export type MeshletTelemetry =
  | { readonly mode: 'off' }
  | {
      readonly mode: 'full';
      /** JSON access log appended to this file. */
      readonly accessLogPath: string;
      /** OTLP/HTTP traces endpoint (the sink's `/v1/traces`). */
      readonly tracingEndpoint: string;
      /** 0–100: share of new traces recorded. */
      readonly samplingPercent: number;
    };

export const TELEMETRY_OFF: MeshletTelemetry = { mode: 'off' };

/** The path the OTLP/HTTP exporter posts to. */
export const OTLP_TRACES_PATH = '/v1/traces';

/**
 * How long a scrape may take. Under full load the admin port answers late; a scrape that gives up
 * early would report a failure that Prometheus (10 s by default) would not see.
 */
export const SCRAPE_TIMEOUT_MS = 5000;

/** The admin paths a full-telemetry run scrapes, once per second each. */
export const SCRAPE_PATHS = ['/metrics', '/stats'] as const;

/** The `meshlet run` flags for a telemetry choice. Off: no access log, and no tracing flag, so no tracer. */
export function telemetryArgs(t: MeshletTelemetry): string[] {
  if (t.mode === 'off') return ['--no-access-log'];
  return [
    '--access-log',
    t.accessLogPath,
    '--access-log-format',
    'json',
    '--tracing-endpoint',
    t.tracingEndpoint,
    '--tracing-sampling',
    String(t.samplingPercent),
  ];
}

/** One line saying what a telemetry choice means, for the bench output. */
export function describeTelemetry(t: MeshletTelemetry): string {
  if (t.mode === 'off') return 'telemetry off: --no-access-log, no tracing (metrics are always recorded)';
  return `full telemetry: JSON access log to a file, tracing at ${t.samplingPercent} % to a loopback OTLP sink, /metrics and /stats scraped every second`;
}

// ---- the OTLP sink ----

/** What the sink received so far. */
export interface SinkCounts {
  /** Export requests answered 200. */
  readonly posts: number;
  readonly spans: number;
  /** Request body bytes of those exports. */
  readonly bytes: number;
  /** Requests it could not read as OTLP JSON (answered 400), or that were not a POST to /v1/traces (404). */
  readonly rejected: number;
}

/** Spans in one OTLP/JSON `ExportTraceServiceRequest`; undefined when it is not one. */
export function countOtlpSpans(body: unknown): number | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const resourceSpans = (body as { resourceSpans?: unknown }).resourceSpans;
  if (!Array.isArray(resourceSpans)) return undefined;
  let n = 0;
  for (const rs of resourceSpans) {
    const scopeSpans = (rs as { scopeSpans?: unknown } | null)?.scopeSpans;
    if (!Array.isArray(scopeSpans)) continue;
    for (const ss of scopeSpans) {
      const spans = (ss as { spans?: unknown } | null)?.spans;
      if (Array.isArray(spans)) n += spans.length;
    }
  }
  return n;
}

/**
 * A node:http server that takes OTLP/HTTP JSON trace exports at `/v1/traces` (answering 200 with an
 * empty partial success, like a collector) and answers `GET /counts` with {@link SinkCounts} as JSON.
 */
export function createOtlpSink(): Server {
  let posts = 0;
  let spans = 0;
  let bytes = 0;
  let rejected = 0;
  const answer = (res: ServerResponse, status: number, body: string): void => {
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  return createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.method === 'GET' && req.url === '/counts') {
      answer(res, 200, JSON.stringify({ posts, spans, bytes, rejected } satisfies SinkCounts));
      return;
    }
    if (req.method !== 'POST' || req.url?.split('?')[0] !== OTLP_TRACES_PATH) {
      req.resume();
      rejected++;
      answer(res, 404, '{}');
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      let n: number | undefined;
      try {
        n = countOtlpSpans(JSON.parse(raw.toString('utf8')));
      } catch {
        n = undefined;
      }
      if (n === undefined) {
        rejected++;
        answer(res, 400, '{"message":"not OTLP/JSON"}');
        return;
      }
      posts++;
      spans += n;
      bytes += raw.length;
      answer(res, 200, '{"partialSuccess":{}}');
    });
  });
}

export interface RunningSink {
  readonly port: number;
  /** The URL for `--tracing-endpoint`. */
  readonly endpoint: string;
  readonly proc: Started;
  counts(): Promise<SinkCounts>;
}

/** Parses the sink's `GET /counts` answer. */
export function parseSinkCounts(res: HttpResult): SinkCounts {
  if (res.status !== 200) throw new Error(`the OTLP sink answered ${res.status}`);
  const v = JSON.parse(res.body.toString('utf8')) as Partial<Record<keyof SinkCounts, unknown>>;
  const num = (x: unknown): number => (typeof x === 'number' ? x : Number.NaN);
  return { posts: num(v.posts), spans: num(v.spans), bytes: num(v.bytes), rejected: num(v.rejected) };
}

/** Starts `otlp-sink.js` (next to this module once built) as a child on `cpu`; resolves once it answers. */
export async function startOtlpSink(
  procs: Processes,
  ports: Set<number>,
  cpu: number | undefined,
  readyTimeoutMs: number,
): Promise<RunningSink> {
  const port = await freePort(ports);
  const script = new URL('./otlp-sink.js', import.meta.url).pathname;
  const proc = procs.spawn('otlp-sink', process.execPath, [script, String(port)], { cpu });
  const counts = async (): Promise<SinkCounts> =>
    parseSinkCounts(await httpGet(port, '/counts', `127.0.0.1:${port}`, 1000));
  const failure = await waitUntil(async () => (await counts()).posts >= 0, proc, readyTimeoutMs);
  if (failure !== undefined) {
    await procs.stop(proc);
    throw new Error(`the OTLP sink did not start: ${failure}`);
  }
  return { port, endpoint: `http://127.0.0.1:${port}${OTLP_TRACES_PATH}`, proc, counts };
}

/** The full-telemetry choice for a meshlet whose access log goes to `dir`. */
export function fullTelemetry(dir: string, sink: { readonly endpoint: string }): MeshletTelemetry {
  return {
    mode: 'full',
    accessLogPath: join(dir, 'access.log'),
    tracingEndpoint: sink.endpoint,
    samplingPercent: 1,
  };
}

// ---- scrapes ----

export interface ScrapeTally {
  readonly path: string;
  /** Scrapes by HTTP status; 0 for those that failed without an answer (refused, timeout). */
  readonly statuses: ReadonlyMap<number, number>;
  /** Body bytes of the 200 answers. */
  readonly bytes: number;
}

export type Get = (port: number, path: string, host: string, timeoutMs: number) => Promise<HttpResult>;

/** Calls `tick` every `ms` until the returned function is called. */
export type Every = (tick: () => void, ms: number) => () => void;

const every: Every = (tick, ms) => {
  const timer = setInterval(tick, ms);
  return () => clearInterval(timer);
};

export interface Scrapes {
  /** Stops scraping; resolves once the scrapes in flight are done. */
  stop(): Promise<ScrapeTally[]>;
}

/**
 * Scrapes each of `paths` on the admin port every `intervalMs`, the first time one interval after
 * the start (as Prometheus does), one connection per scrape. A scrape still running when the next
 * is due is not doubled: that path skips the tick.
 */
export function startScrapes(
  adminPort: number,
  paths: readonly string[],
  intervalMs: number,
  get: Get = httpGet,
  schedule: Every = every,
): Scrapes {
  const tallies = paths.map((path) => ({ path, statuses: new Map<number, number>(), bytes: 0 }));
  const inFlight = new Map<string, Promise<void>>();
  const once = (t: (typeof tallies)[number]): void => {
    if (inFlight.has(t.path)) return;
    const p = get(adminPort, t.path, `127.0.0.1:${adminPort}`, SCRAPE_TIMEOUT_MS).then(
      (res) => {
        t.statuses.set(res.status, (t.statuses.get(res.status) ?? 0) + 1);
        if (res.status === 200) t.bytes += res.body.length;
      },
      () => {
        t.statuses.set(0, (t.statuses.get(0) ?? 0) + 1);
      },
    );
    inFlight.set(
      t.path,
      p.finally(() => inFlight.delete(t.path)),
    );
  };
  const cancel = schedule(() => {
    for (const t of tallies) once(t);
  }, intervalMs);
  return {
    async stop() {
      cancel();
      await Promise.all([...inFlight.values()]);
      return tallies.map((t) => ({ path: t.path, statuses: new Map(t.statuses), bytes: t.bytes }));
    },
  };
}

/** Adds the counts of `b` to `a` (same paths in the same order). */
export function mergeScrapes(a: readonly ScrapeTally[], b: readonly ScrapeTally[]): ScrapeTally[] {
  if (a.length === 0) return [...b];
  return a.map((t, i) => {
    const other = b[i];
    if (other === undefined) return t;
    const statuses = new Map(t.statuses);
    for (const [s, n] of other.statuses) statuses.set(s, (statuses.get(s) ?? 0) + n);
    return { path: t.path, statuses, bytes: t.bytes + other.bytes };
  });
}

/** `/metrics 20 × 200 (38.1 KB each); /stats 19 × 200, 1 × failed`. */
export function formatScrapes(tallies: readonly ScrapeTally[]): string {
  if (tallies.length === 0) return 'no scrapes';
  return tallies
    .map((t) => {
      const ok = t.statuses.get(200) ?? 0;
      const parts = [...t.statuses.entries()]
        .sort((x, y) => x[0] - y[0])
        .map(([s, n]) => `${n} × ${s === 0 ? 'failed' : s}`);
      const size = ok > 0 ? ` (${(t.bytes / ok / 1024).toFixed(1)} KB each)` : '';
      return `${t.path} ${parts.length === 0 ? 'none' : parts.join(', ')}${size}`;
    })
    .join('; ');
}

// ---- the access-log file ----

export interface LogTally {
  readonly lines: number;
  readonly bytes: number;
}

/** Lines and bytes of `path` (0 and 0 when it does not exist), read as a stream. */
export async function countLines(path: string): Promise<LogTally> {
  if (!existsSync(path)) return { lines: 0, bytes: 0 };
  let lines = 0;
  let bytes = 0;
  for await (const chunk of createReadStream(path)) {
    const b = chunk as Buffer;
    bytes += b.length;
    for (let i = b.indexOf(10); i !== -1; i = b.indexOf(10, i + 1)) lines++;
  }
  return { lines, bytes };
}

/**
 * Counts what the access log holds, then empties it, so that the next count is the next round's
 * alone and the disk does not fill. meshlet appends (O_APPEND), so its next line lands at the new end.
 */
export async function takeAccessLog(path: string): Promise<LogTally> {
  const tally = await countLines(path);
  if (tally.bytes > 0) truncateSync(path, 0);
  return tally;
}
