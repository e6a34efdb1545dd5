import { performance } from 'node:perf_hooks';
import { type Agent, request } from 'undici';
import type { Meshlet } from './spawn-meshlet.ts';

/** A client for end-to-end tests that need timings, flags and metric counts, not only bodies. */

export interface Answer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly text: string;
  /** `x-meshlet-flags` (local replies only), '' when absent. */
  readonly flags: string;
  /** Wall time from sending to the end of the body, in ms. */
  readonly ms: number;
}

export interface CallInit {
  readonly host: string;
  readonly method?: 'GET' | 'POST' | 'PUT';
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: Buffer | string;
  /** Give up after this long (headers, then body); default 5000 ms. */
  readonly timeoutMs?: number;
}

/**
 * One request to the outbound listener; the whole body is read. A request that fails or takes
 * longer than `timeoutMs` comes back as status 0 with the error in `text`, so one hung exchange
 * fails its own assertions instead of the whole file's timeout.
 */
export async function call(mesh: Meshlet, agent: Agent, path: string, init: CallInit): Promise<Answer> {
  const start = performance.now();
  const timeout = init.timeoutMs ?? 5000;
  let res: Awaited<ReturnType<typeof request>>;
  let text: string;
  try {
    res = await request(mesh.url(path), {
      dispatcher: agent,
      method: init.method ?? 'GET',
      headers: { host: init.host, ...init.headers },
      headersTimeout: timeout,
      bodyTimeout: timeout,
      ...(init.body !== undefined && { body: init.body }),
    });
    text = await res.body.text();
  } catch (err) {
    return { status: 0, headers: {}, text: String(err), flags: '', ms: performance.now() - start };
  }
  const flags = res.headers['x-meshlet-flags'];
  return {
    status: res.statusCode,
    headers: res.headers,
    text,
    flags: typeof flags === 'string' ? flags : '',
    ms: performance.now() - start,
  };
}

/** Runs `task(i)` for i in [0, n) with at most `concurrency` running at once; results in order. */
export async function pool<T>(n: number, concurrency: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const out = new Array<T>(n);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      out[i] = await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, concurrency) }, worker));
  return out;
}

/** GET on the admin port. */
export async function adminText(mesh: Meshlet, agent: Agent, path: string): Promise<string> {
  const res = await request(mesh.admin(path), { dispatcher: agent });
  return res.body.text();
}

/** Labels of one Prometheus sample line, or null when `line` is not a sample of `metric`. */
export function sampleOf(
  line: string,
  metric: string,
): { labels: Record<string, string>; value: number } | null {
  if (!line.startsWith(`${metric}{`)) return null;
  const close = line.lastIndexOf('}');
  if (close < 0) return null;
  const labels: Record<string, string> = {};
  const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  const body = line.slice(metric.length + 1, close);
  for (let m = re.exec(body); m !== null; m = re.exec(body)) labels[m[1] ?? ''] = m[2] ?? '';
  return { labels, value: Number(line.slice(close + 1).trim()) };
}

/** Sum of the samples of `metric` whose labels pass `where` (0 when there are none). */
export function metricSum(
  exposition: string,
  metric: string,
  where: (labels: Record<string, string>) => boolean = () => true,
): number {
  let sum = 0;
  for (const line of exposition.split('\n')) {
    const s = sampleOf(line, metric);
    if (s !== null && where(s.labels)) sum += s.value;
  }
  return sum;
}

/** Sum of `istio_requests_total` samples whose labels pass `where`. */
export function requestsTotal(
  exposition: string,
  where: (labels: Record<string, string>) => boolean,
): number {
  return metricSum(exposition, 'istio_requests_total', where);
}

/** True for the `cluster_name` label of any cluster of service `fqdn` (`outbound|port|subset|fqdn`). */
export function clusterOf(fqdn: string): (labels: Record<string, string>) => boolean {
  return (l) => (l['cluster_name'] ?? '').endsWith(`|${fqdn}`);
}

/** True when the comma-separated Envoy flag list `flags` contains `flag`. */
export function hasFlag(flags: string | undefined, flag: string): boolean {
  return (flags ?? '').split(',').includes(flag);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
