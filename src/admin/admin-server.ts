import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { SnapshotStore } from '../config/snapshot-store.ts';
import type { Listener } from '../listener/listener-types.ts';
import type { MeshMetrics } from '../telemetry/metrics.ts';

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
  readonly draining: () => boolean;
  readonly version: string;
  readonly startedAt: Date;
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
  'GET  /ready        200 once the configuration is compiled and every listener is bound',
  'GET  /live         200 while the process runs',
  'GET  /metrics      Prometheus exposition (Istio standard metrics, meshlet_*)',
  'GET  /config_dump  the active resources, version and hash (JSON)',
  'GET  /clusters     clusters and their endpoints (JSON)',
  'GET  /listeners    bound listeners, ports and engines (JSON)',
  'POST /reload       re-read the configuration now',
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

async function handle(req: IncomingMessage, res: ServerResponse, deps: AdminDeps): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://admin');
  const route = `${req.method ?? 'GET'} ${url.pathname}`;
  switch (route) {
    case 'GET /':
      send(res, 200, 'text/plain', `meshlet ${deps.version} admin\n\n${ENDPOINTS.join('\n')}\n`);
      return;
    case 'GET /live':
      send(res, 200, 'text/plain', 'live\n');
      return;
    case 'GET /ready': {
      if (deps.draining()) send(res, 503, 'text/plain', 'draining\n');
      else if (deps.ready()) send(res, 200, 'text/plain', 'ready\n');
      else send(res, 503, 'text/plain', 'not ready: configuration or listeners not up yet\n');
      return;
    }
    case 'GET /metrics':
      send(res, 200, deps.metrics.contentType, await deps.metrics.exposition());
      return;
    case 'GET /config_dump': {
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
        resources: s.bundle.documents,
      });
      return;
    }
    case 'GET /clusters': {
      const store = deps.store();
      const clusters = store === null ? [] : [...store.current.routes.clusters.values()];
      json(
        res,
        200,
        clusters.map((c) => ({
          name: c.name,
          service: c.serviceFqdn,
          endpoints: c.endpoints.map((e) => ({ address: e.id, weight: e.weight, labels: e.labels })),
        })),
      );
      return;
    }
    case 'GET /listeners':
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
      );
      return;
    case 'POST /reload': {
      const outcome = await deps.reload();
      json(res, outcome.result === 'rejected' ? 400 : 200, outcome);
      return;
    }
    default:
      if (url.pathname === '/reload') send(res, 405, 'text/plain', 'use POST /reload\n');
      else send(res, 404, 'text/plain', `unknown admin endpoint ${url.pathname}; GET / lists them\n`);
  }
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function json(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, 'application/json', `${JSON.stringify(value, null, 2)}\n`);
}
