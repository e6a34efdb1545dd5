import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import type { ClusterState, ClusterStatus, EndpointStatus } from '../balancer/cluster-types.ts';
import type { SnapshotStore } from '../config/snapshot-store.ts';
import type { Listener } from '../listener/listener-types.ts';
import type { Cluster } from '../router/route-types.ts';
import type { StatsSnapshot } from '../telemetry/live-stats-types.ts';
import { LOG_LEVELS, type Logger, type LogLevel } from '../telemetry/logger.ts';
import type { MeshMetrics } from '../telemetry/metrics.ts';
import { parseTapQuery, type Tap } from '../telemetry/tap.ts';
import { DASHBOARD_HTML } from './dashboard.ts';
import { redactSecrets } from './redact.ts';

/**
 * The admin port (loopback by default). It observes the proxy and never sits on the request path:
 * it reads the snapshot store, the listeners and the metrics registry, and can ask for a reload.
 */
export interface AdminDeps {
  readonly store: () => SnapshotStore | null;
  readonly listeners: () => readonly Listener[];
  readonly metrics: MeshMetrics;
  /** Runs a reload now; resolves to what happened. */
  readonly reload: () => Promise<ReloadOutcome>;
  /** True once the configuration is compiled and every listener is bound. */
  readonly ready: () => boolean;
  /**
   * Why the proxy cannot serve yet although it is up (e.g. `no workload certificate yet: …`), or
   * null when nothing else holds it back. `/ready` stays 503 with this reason while it is set.
   */
  readonly notReadyReason?: () => string | null;
  readonly draining: () => boolean;
  readonly version: string;
  readonly startedAt: Date;
  /**
   * The live cluster states (`ClusterRegistry.all`), for the per-endpoint state of `/clusters`.
   * Without it `/clusters` shows the configured clusters only, with zeroed live fields.
   */
  readonly clusters?: () => Iterable<ClusterState>;
  /**
   * The monotonic clock the cluster states use (ms; default `performance.now`), so that ejection
   * deadlines can be shown relative to now.
   */
  readonly now?: () => number;
  /** Live percentiles for `/stats` (without it `/stats` answers 501). */
  readonly stats?: { snapshot(): StatsSnapshot };
  /** The request stream of `/tap` (without it `/tap` answers 501). */
  readonly tap?: Tap;
  /** The process logger, whose level `/logging` reads and changes. */
  readonly logger?: Logger;
  /**
   * `POST /drain`: stop accepting new connections on every listener and report draining, while
   * in-flight requests finish and the process keeps running. Called once per request; must be
   * idempotent.
   */
  readonly drain?: () => void;
  /** `POST /shutdown`: stop as SIGTERM does (drain, then exit 0). Called after the reply is sent. */
  readonly shutdown?: () => void;
}

export type ReloadOutcome =
  | {
      readonly result: 'applied';
      readonly version: number;
      readonly hash: string;
      readonly warnings: readonly string[];
    }
  | { readonly result: 'unchanged'; readonly version: number; readonly hash: string }
  | { readonly result: 'rejected'; readonly errors: readonly string[] };

const ENDPOINTS = [
  'GET  /             the dashboard (HTML)',
  'GET  /help         this list',
  'GET  /ready        200 once the configuration is compiled, every listener is bound and (with an identity) a certificate is held; 503 while draining',
  'GET  /live         200 while the process runs',
  'GET  /metrics      Prometheus exposition (Istio standard metrics, meshlet_*)',
  'GET  /stats        live rate, error rate and p50/p90/p99/p99.9 per service and route over 10 s and 60 s, recent errors (JSON; ?pretty)',
  'GET  /tap          live stream of finished requests (server-sent events); filters: authority, path_prefix, method, status (503 or 5xx), reporter; limit=N',
  'GET  /config_dump  the active resources, version and hash (JSON)',
  'GET  /clusters     clusters, endpoints and their live state (JSON; ?format=text: one line per value)',
  'GET  /listeners    bound listeners, ports and engines (JSON)',
  'GET  /logging      the current log level (JSON)',
  'POST /logging      ?level=debug|info|warn|error: change the log level now (loopback only)',
  'POST /reload       re-read the configuration now (loopback only)',
  'POST /drain        stop accepting new connections, /ready 503, in-flight requests finish; the process stays up (loopback only)',
  'POST /shutdown     drain and exit 0, as SIGTERM (loopback only)',
];

export async function startAdminServer(
  host: string,
  port: number,
  deps: AdminDeps,
): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    handle(req, res, deps).catch((err: unknown) => {
      if (!res.headersSent) send(res, 500, 'text/plain', `admin error: ${String(err)}\n`);
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const bound = typeof address === 'object' && address !== null ? address.port : port;
  return { server, port: bound };
}

/**
 * True for loopback peers: 127.0.0.0/8, ::1 and IPv4-mapped 127.x. The state-changing endpoints
 * (reload, logging, drain, shutdown) answer only these, also when the admin port is bound to every
 * address for probes and scrapes from outside.
 */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  if (address === '::1') return true;
  const v4 = address.toLowerCase().startsWith('::ffff:') ? address.slice(7) : address;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

type Handler = (req: IncomingMessage, res: ServerResponse, url: URL, deps: AdminDeps) => Promise<void> | void;

/** Per path, per method. A known path asked with another method gets 405 with `Allow`. */
const ROUTES: ReadonlyMap<string, Readonly<Record<string, Handler>>> = new Map<
  string,
  Readonly<Record<string, Handler>>
>([
  ['/', { GET: (_q, res) => send(res, 200, 'text/html; charset=utf-8', DASHBOARD_HTML) }],
  [
    '/help',
    {
      GET: (_q, res, _u, deps) =>
        send(res, 200, 'text/plain', `meshlet ${deps.version} admin\n\n${ENDPOINTS.join('\n')}\n`),
    },
  ],
  ['/live', { GET: (_q, res) => send(res, 200, 'text/plain', 'live\n') }],
  ['/ready', { GET: (_q, res, _u, deps) => ready(res, deps) }],
  [
    '/metrics',
    {
      GET: async (_q, res, _u, deps) =>
        send(res, 200, deps.metrics.contentType, await deps.metrics.exposition()),
    },
  ],
  ['/config_dump', { GET: (_q, res, _u, deps) => configDump(res, deps) }],
  ['/clusters', { GET: (_q, res, url, deps) => clusters(res, url, deps) }],
  [
    '/listeners',
    {
      GET: (_q, res, _u, deps) =>
        json(
          res,
          200,
          deps.listeners().map((l) => ({
            name: l.name,
            host: l.host,
            port: l.port,
            engine: l.engine,
            in_flight: l.inFlight(),
          })),
        ),
    },
  ],
  ['/stats', { GET: (_q, res, url, deps) => stats(res, url, deps) }],
  ['/tap', { GET: (req, res, url, deps) => tap(req, res, url, deps) }],
  [
    '/logging',
    {
      GET: (_q, res, _u, deps) => logging(res, null, deps),
      POST: (req, res, url, deps) => {
        if (guard(req, res)) logging(res, url, deps);
      },
    },
  ],
  [
    '/reload',
    {
      POST: async (req, res, _u, deps) => {
        if (!guard(req, res)) return;
        const outcome = await deps.reload();
        json(res, outcome.result === 'rejected' ? 400 : 200, outcome);
      },
    },
  ],
  [
    '/drain',
    {
      POST: (req, res, _u, deps) => {
        if (!guard(req, res)) return;
        if (deps.drain === undefined) {
          send(res, 501, 'text/plain', 'drain is not available in this process\n');
          return;
        }
        const already = deps.draining();
        deps.drain();
        send(
          res,
          200,
          'text/plain',
          already
            ? 'already draining\n'
            : 'draining: new connections are refused, in-flight requests finish, /ready answers 503; the process keeps running\n',
        );
      },
    },
  ],
  [
    '/shutdown',
    {
      POST: (req, res, _u, deps) => {
        if (!guard(req, res)) return;
        const shutdown = deps.shutdown;
        if (shutdown === undefined) {
          send(res, 501, 'text/plain', 'shutdown is not available in this process\n');
          return;
        }
        // The reply goes out first: the shutdown closes this server and its connections.
        res.once('finish', () =>
          setImmediate(() => {
            try {
              shutdown();
            } catch (err) {
              // Asked before the process finished starting: say so rather than crash.
              deps.logger?.log('error', 'admin /shutdown failed', { error: String(err) });
            }
          }),
        );
        send(res, 202, 'text/plain', 'shutting down: draining, then exit\n');
      },
    },
  ],
]);

async function handle(req: IncomingMessage, res: ServerResponse, deps: AdminDeps): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://admin');
  const methods = ROUTES.get(url.pathname);
  if (methods === undefined) {
    send(res, 404, 'text/plain', `unknown admin endpoint ${url.pathname}; GET /help lists them\n`);
    return;
  }
  const handler = methods[req.method ?? 'GET'];
  if (handler === undefined) {
    const allow = Object.keys(methods).join(', ');
    res.setHeader('allow', allow);
    send(res, 405, 'text/plain', `${req.method ?? ''} ${url.pathname} is not allowed; use ${allow}\n`);
    return;
  }
  await handler(req, res, url, deps);
}

/**
 * Lets a state-changing request through, or answers 403 saying why: only loopback callers may
 * change the process, and a browser page of another origin may not (a cross-site form POST to
 * 127.0.0.1 would otherwise reach these endpoints from any site the operator visits).
 */
function guard(req: IncomingMessage, res: ServerResponse): boolean {
  const from = req.socket.remoteAddress;
  const what = `${req.method ?? ''} ${new URL(req.url ?? '/', 'http://admin').pathname}`;
  if (!isLoopback(from)) {
    send(
      res,
      403,
      'text/plain',
      `forbidden: ${what} is only accepted from loopback (127.0.0.0/8, ::1); this request came from ${from ?? 'an unknown address'}\n`,
    );
    return false;
  }
  // DNS rebinding: a page of a name that resolves to 127.0.0.1 is same-origin with itself, so the
  // Origin check alone passes it; such a request names that domain in Host. Loopback callers that
  // mean to reach the admin port name it by address (curl, probes) or as localhost (port-forward).
  const hostName = hostNameOf(req.headers.host ?? '');
  if (hostName !== 'localhost' && isIP(hostName) === 0) {
    send(
      res,
      403,
      'text/plain',
      `forbidden: ${what} must name the admin port by IP address or localhost (Host: ${req.headers.host ?? ''})\n`,
    );
    return false;
  }
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== `http://${req.headers.host ?? ''}`) {
    send(res, 403, 'text/plain', `forbidden: ${what} from a page of another origin (${origin})\n`);
    return false;
  }
  return true;
}

/** The host of a Host header value, without port or IPv6 brackets, lower-cased. */
function hostNameOf(host: string): string {
  const h = host.toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end < 0 ? h : h.slice(1, end);
  }
  const colon = h.lastIndexOf(':');
  return colon < 0 ? h : h.slice(0, colon);
}

function ready(res: ServerResponse, deps: AdminDeps): void {
  const reason = deps.notReadyReason?.() ?? null;
  if (deps.draining()) send(res, 503, 'text/plain', 'draining\n');
  else if (!deps.ready()) send(res, 503, 'text/plain', 'not ready: configuration or listeners not up yet\n');
  else if (reason !== null) send(res, 503, 'text/plain', `not ready: ${reason}\n`);
  else send(res, 200, 'text/plain', 'ready\n');
}

function configDump(res: ServerResponse, deps: AdminDeps): void {
  const store = deps.store();
  if (store === null) {
    send(res, 503, 'text/plain', 'no configuration loaded yet\n');
    return;
  }
  const s = store.current;
  json(res, 200, {
    version: s.version,
    hash: s.hash,
    loaded_at: s.loadedAt.toISOString(),
    files: s.bundle.files,
    outbound_traffic_policy: s.outboundTrafficPolicy,
    warnings: s.bundle.issues.filter((i) => i.severity === 'warning').length,
    // Credentials in the configuration (collector headers, fields named like secrets) are replaced.
    resources: redactSecrets(s.bundle.documents),
  });
}

function clusters(res: ServerResponse, url: URL, deps: AdminDeps): void {
  const format = url.searchParams.get('format') ?? 'json';
  if (format !== 'json' && format !== 'text') {
    send(res, 400, 'text/plain', `unknown format ${format}; use json or text\n`);
    return;
  }
  const store = deps.store();
  const view = clustersView(
    store === null ? [] : store.current.routes.clusters.values(),
    deps.clusters?.() ?? [],
    (deps.now ?? (() => performance.now()))(),
  );
  if (format === 'text') send(res, 200, 'text/plain', clustersText(view));
  else json(res, 200, view);
}

function stats(res: ServerResponse, url: URL, deps: AdminDeps): void {
  if (deps.stats === undefined) {
    send(res, 501, 'text/plain', 'live stats are not available in this process\n');
    return;
  }
  const snapshot = deps.stats.snapshot();
  const body = url.searchParams.has('pretty') ? JSON.stringify(snapshot, null, 2) : JSON.stringify(snapshot);
  send(res, 200, 'application/json', `${body}\n`);
}

function tap(req: IncomingMessage, res: ServerResponse, url: URL, deps: AdminDeps): void {
  if (deps.tap === undefined) {
    send(res, 501, 'text/plain', 'the tap is not available in this process\n');
    return;
  }
  const query = parseTapQuery(url.searchParams);
  if ('error' in query) {
    send(res, 400, 'text/plain', `${query.error}\n`);
    return;
  }
  let ended = false;
  const sub = deps.tap.subscribe(
    query.filter,
    {
      write: (chunk) => {
        res.write(chunk);
      },
      // What the response holds plus what its socket has not sent yet.
      buffered: () => res.writableLength,
      end: () => {
        if (ended) return;
        ended = true;
        res.end();
        // A client that stopped reading never takes the rest: let its connection go.
        setTimeout(() => res.destroy(), 5000).unref();
      },
    },
    query.limit,
  );
  if (sub === null) {
    send(res, 503, 'text/plain', 'too many tap subscribers; try again later\n');
    return;
  }
  res.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    'x-accel-buffering': 'no',
  });
  // A first comment sends the head now, so a client sees the stream open before any request.
  res.write(': meshlet tap\n\n');
  res.once('close', () => sub.close());
  req.once('close', () => sub.close());
}

function logging(res: ServerResponse, url: URL | null, deps: AdminDeps): void {
  const logger = deps.logger;
  if (logger === undefined) {
    send(res, 501, 'text/plain', 'the logger is not available in this process\n');
    return;
  }
  if (url === null) {
    json(res, 200, { level: logger.level, levels: LOG_LEVELS });
    return;
  }
  const level = url.searchParams.get('level');
  if (level === null || !(LOG_LEVELS as readonly string[]).includes(level)) {
    send(res, 400, 'text/plain', `level=${level ?? ''}: use ?level=${LOG_LEVELS.join('|')}\n`);
    return;
  }
  const previous = logger.level;
  logger.level = level as LogLevel;
  // Logged at the higher of the two levels, so the line shows under both settings.
  const at =
    LOG_LEVELS.indexOf(previous) > LOG_LEVELS.indexOf(level as LogLevel) ? previous : (level as LogLevel);
  logger.log(at, 'log level changed', { from: previous, to: level });
  json(res, 200, { level, previous });
}

/** The counters of one cluster in `/clusters` (monotonic while the cluster is configured). */
export interface ClusterCountersView {
  readonly requests: number;
  readonly retries: number;
  readonly retry_budget_exhausted: number;
  readonly retry_overflow: number;
  readonly overflows: number;
  readonly ejections: number;
  readonly pending_queued: number;
}

/** One endpoint in `/clusters`. */
export interface EndpointView {
  /** `address:port` (the endpoint id). */
  readonly address: string;
  readonly weight: number;
  readonly labels: Readonly<Record<string, string>>;
  /** Peak-EWMA estimate in ms; null when the balancer keeps none or the cluster was never used. */
  readonly ewma_ms: number | null;
  readonly in_flight: number;
  readonly ejected: boolean;
  /** Ms from now until the ejection ends, or null when not ejected. */
  readonly ejected_until: number | null;
  readonly times_ejected: number;
  readonly consecutive_5xx: number;
  readonly consecutive_gateway_errors: number;
  readonly consecutive_local_origin_failures: number;
  /** Open upstream connections, or null when the upstream client does not report them. */
  readonly connections: number | null;
}

/** One cluster in `/clusters`. */
export interface ClusterView {
  readonly name: string;
  readonly service: string;
  /** The balancer in use (`P2C_PEAK_EWMA`, `ROUND_ROBIN`…); null until the cluster is first used. */
  readonly load_balancer: string | null;
  readonly active: number;
  readonly pending: number;
  readonly panic: boolean;
  readonly counters: ClusterCountersView;
  readonly endpoints: readonly EndpointView[];
}

const ZERO_COUNTERS: ClusterCountersView = {
  requests: 0,
  retries: 0,
  retry_budget_exhausted: 0,
  retry_overflow: 0,
  overflows: 0,
  ejections: 0,
  pending_queued: 0,
};

/**
 * The `/clusters` view: every cluster of the configuration, merged with its live state when one
 * exists (a cluster gets one when it is first used). Endpoints are the configured ones, with their
 * live state matched by id, followed by live endpoints the configuration does not list as such
 * (addresses resolved from DNS names, or endpoints of a previous configuration that the state has
 * not let go of yet), so that nothing the balancer may pick is hidden. `now` is the monotonic clock
 * of the states, in ms.
 */
export function clustersView(
  configured: Iterable<Cluster>,
  states: Iterable<ClusterState>,
  now: number,
): ClusterView[] {
  const live = new Map<string, ClusterStatus>();
  for (const state of states) live.set(state.name, state.status());
  const view: ClusterView[] = [];
  for (const c of configured) {
    const status = live.get(c.name);
    const byId = new Map<string, EndpointStatus>();
    if (status !== undefined) for (const e of status.endpoints) byId.set(e.id, e);
    const endpoints: EndpointView[] = [];
    for (const e of c.endpoints) {
      const s = byId.get(e.id);
      byId.delete(e.id);
      endpoints.push(endpointView(e.id, e.weight, e.labels, s, now));
    }
    for (const s of byId.values()) endpoints.push(endpointView(s.id, s.weight, {}, s, now));
    view.push({
      name: c.name,
      service: c.serviceFqdn,
      load_balancer: status?.loadBalancer ?? null,
      active: status?.active ?? 0,
      pending: status?.pending ?? 0,
      panic: status?.panic ?? false,
      counters:
        status === undefined
          ? ZERO_COUNTERS
          : {
              requests: status.counters.requests,
              retries: status.counters.retries,
              retry_budget_exhausted: status.counters.retryBudgetExhausted,
              retry_overflow: status.counters.retryOverflow,
              overflows: status.counters.overflows,
              ejections: status.counters.ejections,
              pending_queued: status.counters.pendingQueued,
            },
      endpoints,
    });
  }
  return view;
}

function endpointView(
  address: string,
  weight: number,
  labels: Readonly<Record<string, string>>,
  s: EndpointStatus | undefined,
  now: number,
): EndpointView {
  if (s === undefined)
    return {
      address,
      weight,
      labels,
      ewma_ms: null,
      in_flight: 0,
      ejected: false,
      ejected_until: null,
      times_ejected: 0,
      consecutive_5xx: 0,
      consecutive_gateway_errors: 0,
      consecutive_local_origin_failures: 0,
      connections: null,
    };
  // An endpoint is back from the moment its ejection time is over, even while the state still
  // holds the past deadline (it clears it at its next outlier-detection sweep).
  const until = s.ejectedUntilMs !== null && s.ejectedUntilMs > now ? s.ejectedUntilMs : null;
  return {
    address,
    weight: s.weight,
    labels,
    ewma_ms: s.ewmaMs === null ? null : Math.round(s.ewmaMs * 1000) / 1000,
    in_flight: s.inFlight,
    ejected: until !== null,
    // Rounded up: an endpoint with time left never shows 0.
    ejected_until: until === null ? null : Math.ceil(until - now),
    times_ejected: s.timesEjected,
    consecutive_5xx: s.consecutive5xx,
    consecutive_gateway_errors: s.consecutiveGatewayErrors,
    consecutive_local_origin_failures: s.consecutiveLocalOriginFailures,
    connections: s.connections,
  };
}

/**
 * `/clusters?format=text`, in the manner of Envoy's `/clusters`: one `cluster::field::value` line
 * per cluster value and one `cluster::endpoint::field::value` line per endpoint value, easy to grep.
 */
export function clustersText(view: readonly ClusterView[]): string {
  const lines: string[] = [];
  for (const c of view) {
    const n = c.name;
    lines.push(`${n}::service::${c.service}`);
    lines.push(`${n}::load_balancer::${c.load_balancer ?? '-'}`);
    lines.push(`${n}::active::${c.active}`, `${n}::pending::${c.pending}`, `${n}::panic::${c.panic}`);
    for (const [k, v] of Object.entries(c.counters)) lines.push(`${n}::${k}::${v}`);
    for (const e of c.endpoints) {
      const p = `${n}::${e.address}`;
      const labels = Object.entries(e.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(',');
      lines.push(`${p}::weight::${e.weight}`, `${p}::labels::${labels}`);
      for (const [k, v] of Object.entries(e)) {
        if (k === 'address' || k === 'weight' || k === 'labels') continue;
        lines.push(`${p}::${k}::${v === null ? '-' : String(v)}`);
      }
    }
  }
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function json(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, 'application/json', `${JSON.stringify(value, null, 2)}\n`);
}
