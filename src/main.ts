import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import { performance } from 'node:perf_hooks';
import { type AdminDeps, type ReloadOutcome, startAdminServer } from './admin/admin-server.ts';
import { createClusterRegistry } from './balancer/cluster-registry.ts';
import type { ClusterRegistry } from './balancer/cluster-types.ts';
import { formatIssue } from './config/format-issue.ts';
import { loadConfig } from './config/load-config.ts';
import type { ConfigBundle, ConfigIssue } from './config/resource-types.ts';
import { type RuntimeSettings, resolveSettings, type SettingFlags } from './config/runtime-settings.ts';
import { type Snapshot, SnapshotStore } from './config/snapshot-store.ts';
import { watchConfig } from './config/watch-config.ts';
import type { Listener } from './listener/listener-types.ts';
import { startListener } from './listener/start-listener.ts';
import { ProxyPipeline } from './pipeline/proxy-pipeline.ts';
import { compileRoutes } from './router/compile-routes.ts';
import { AccessLog } from './telemetry/access-log.ts';
import { createLogger, type Logger } from './telemetry/logger.ts';
import { canonicalOf, MeshMetrics, type WorkloadIdentity } from './telemetry/metrics.ts';
import { ResilienceStats } from './telemetry/resilience-stats.ts';
import { createDnsResolver } from './upstream/dns-resolver.ts';
import { createH1Upstream } from './upstream/h1-client.ts';
import { createUndiciUpstream } from './upstream/undici-upstream.ts';
import { VERSION } from './version.ts';

/** Thrown when the configuration at start-up is invalid: the CLI prints the issues and exits 2. */
export class InvalidConfigError extends Error {
  readonly issues: readonly ConfigIssue[];

  constructor(issues: readonly ConfigIssue[]) {
    super(`invalid configuration: ${issues.filter((i) => i.severity === 'error').length} error(s)`);
    this.issues = issues;
  }
}

export interface RunOptions {
  readonly configPath: string;
  readonly flags: SettingFlags;
  /** Watch the configuration file or folder for changes (default true). */
  readonly watch?: boolean;
}

export interface RunningProxy {
  readonly settings: RuntimeSettings;
  readonly listeners: readonly Listener[];
  readonly adminPort: number;
  readonly logger: Logger;
  /** Per-cluster live state (balancer, outlier detection, admission, retry budget). */
  readonly clusters: ClusterRegistry;
  /** Fault and mirror counters of the request path. */
  readonly stats: ResilienceStats;
  reload(): Promise<ReloadOutcome>;
  /** Stop accepting, finish in-flight requests (bounded by the drain timeout), close everything. */
  shutdown(): Promise<{ readonly drained: boolean }>;
}

/** Outbound traffic policy: a Sidecar in the proxy's namespace wins over the Proxy document (spec §4.1, §4.3). */
function outboundPolicyOf(bundle: ConfigBundle, settings: RuntimeSettings): 'ALLOW_ANY' | 'REGISTRY_ONLY' {
  for (const sc of bundle.sidecars) {
    if (sc.meta.namespace === settings.namespace && sc.spec.outboundTrafficPolicy !== undefined) {
      return sc.spec.outboundTrafficPolicy;
    }
  }
  return settings.outboundTrafficPolicy;
}

function compileSnapshot(bundle: ConfigBundle, settings: RuntimeSettings, version: number): Snapshot {
  const outboundTrafficPolicy = outboundPolicyOf(bundle, settings);
  const routes = compileRoutes(bundle, {
    namespace: settings.namespace,
    domainSuffix: settings.domainSuffix,
    proxyLabels: settings.labels,
    outboundTrafficPolicy,
    random: Math.random,
  });
  return { version, hash: bundle.hash, loadedAt: new Date(), bundle, routes, outboundTrafficPolicy };
}

/** Compile-time problems that do not stop serving (e.g. a mirror to a missing host): logged once per load. */
function logRouteWarnings(snapshot: Snapshot, logger: Logger): void {
  for (const w of snapshot.routes.warnings ?? []) logger.log('warn', 'configuration warning', { issue: w });
}

function identityOf(settings: RuntimeSettings): WorkloadIdentity {
  const canonical = canonicalOf(settings.labels, settings.workloadName);
  return {
    workload: settings.workloadName,
    namespace: settings.namespace,
    app: settings.labels['app'] ?? 'unknown',
    version: settings.labels['version'] ?? 'unknown',
    canonicalService: canonical.service,
    canonicalRevision: canonical.revision,
    cluster: 'unknown',
  };
}

export async function runProxy(options: RunOptions): Promise<RunningProxy> {
  const loadOptions = options.flags.namespace === undefined ? {} : { namespace: options.flags.namespace };
  const bundle = await loadConfig(options.configPath, loadOptions);
  if (bundle.issues.some((i) => i.severity === 'error')) throw new InvalidConfigError(bundle.issues);
  const settings = resolveSettings(options.flags, bundle.proxy?.spec ?? null);
  const logger = createLogger(settings.logLevel);
  for (const issue of bundle.issues)
    logger.log('warn', 'configuration warning', { issue: formatIssue(issue) });

  const metrics = new MeshMetrics();
  const store = new SnapshotStore(compileSnapshot(bundle, settings, 1));
  logRouteWarnings(store.current, logger);
  // The lean HTTP/1.1 client carries plain requests to IP endpoints; undici takes the rest
  // (host names, Expect: 100-continue, upgrades).
  const upstream = createH1Upstream({ fallback: createUndiciUpstream({}) });
  const now = (): number => performance.now();
  // ServiceEntry hosts with resolution DNS become the addresses they resolve to, refreshed in the
  // background; the request path only ever reads the cached set.
  const resolver = createDnsResolver({
    refreshMs: settings.dnsRefreshRateMs,
    clock: now,
    onError: (host, err) =>
      logger.log('warn', 'DNS lookup failed; the last addresses are kept', {
        host,
        error: err instanceof Error ? err.message : String(err),
      }),
  });
  const clusters = createClusterRegistry({
    clock: now,
    random: Math.random,
    retryBudget: settings.retryBudget,
    resolver,
    connections: (id) => upstream.connections(id),
  });
  const stats = new ResilienceStats();
  metrics.attachResilience(() => clusters.all(), stats);
  const pipeline = new ProxyPipeline({
    store,
    upstream,
    clusters,
    stats,
    metrics,
    identity: identityOf(settings),
    accessLog: settings.accessLog ? new AccessLog() : null,
    random: Math.random,
    now,
    requestId: randomUUID,
    app: settings.app === null ? null : { address: settings.app.host, port: settings.app.port },
    namespace: settings.namespace,
    onBug: (err) =>
      logger.log('error', 'internal error on the request path', {
        error: err instanceof Error ? (err.stack ?? err.message) : String(err),
      }),
  });
  store.onSwap((next) => {
    // Per-endpoint state survives a reload for endpoints that are still there; the rest is let go.
    clusters.retain(new Set(next.routes.clusters.keys()));
    // Upstream pools are kept for every endpoint of the new configuration, for the addresses the
    // cluster states resolved DNS hosts to, and for the local application.
    const endpoints = new Set<string>();
    for (const c of next.routes.clusters.values()) for (const e of c.endpoints) endpoints.add(e.id);
    for (const state of clusters.all()) for (const e of state.endpoints) endpoints.add(e.id);
    if (settings.app !== null) endpoints.add(`${settings.app.host}:${settings.app.port}`);
    upstream.retain(endpoints);
  });

  let ready = false;
  let draining = false;
  const listeners: Listener[] = [];

  let reloading: Promise<ReloadOutcome> = Promise.resolve({
    result: 'unchanged',
    version: 1,
    hash: bundle.hash,
  });
  const reloadNow = async (): Promise<ReloadOutcome> => {
    const next = await loadConfig(options.configPath, loadOptions);
    const errors = next.issues.filter((i) => i.severity === 'error');
    if (errors.length > 0) {
      metrics.reload('rejected');
      const lines = errors.map(formatIssue);
      logger.log('error', 'configuration rejected; the previous configuration keeps serving', {
        issues: lines,
      });
      return { result: 'rejected', errors: lines };
    }
    const current = store.current;
    if (next.hash === current.hash) {
      metrics.reload('unchanged');
      return { result: 'unchanged', version: current.version, hash: current.hash };
    }
    let snapshot: Snapshot;
    try {
      snapshot = compileSnapshot(next, settings, current.version + 1);
    } catch (err) {
      metrics.reload('rejected');
      const message = `compile failed: ${err instanceof Error ? err.message : String(err)}`;
      logger.log('error', 'configuration rejected; the previous configuration keeps serving', {
        issues: [message],
      });
      return { result: 'rejected', errors: [message] };
    }
    store.swap(snapshot);
    metrics.reload('applied');
    logRouteWarnings(snapshot, logger);
    const warnings = next.issues.map(formatIssue);
    for (const w of warnings) logger.log('warn', 'configuration warning', { issue: w });
    logger.log('info', 'configuration applied', { version: snapshot.version, hash: snapshot.hash });
    return { result: 'applied', version: snapshot.version, hash: snapshot.hash, warnings };
  };
  // Reloads run one at a time, in the order they were asked for.
  const reload = (): Promise<ReloadOutcome> => {
    reloading = reloading.then(reloadNow, reloadNow);
    return reloading;
  };

  const adminDeps: AdminDeps = {
    store: () => store,
    listeners: () => listeners,
    metrics,
    reload,
    ready: () => ready,
    draining: () => draining,
    version: VERSION,
    startedAt: new Date(),
    clusters: () => clusters.all(),
    now,
  };
  const admin: { server: Server; port: number } = await startAdminServer(
    settings.adminHost,
    settings.adminPort,
    adminDeps,
  );

  listeners.push(
    await startListener({
      engine: settings.engine,
      host: settings.outboundHost,
      port: settings.outboundPort,
      handler: pipeline.outbound,
      onUpgrade: pipeline.upgrade('source'),
      name: 'outbound',
    }),
  );
  listeners.push(
    await startListener({
      engine: settings.engine,
      host: settings.inboundHost,
      port: settings.inboundPort,
      handler: pipeline.inbound,
      onUpgrade: pipeline.upgrade('destination'),
      name: 'inbound',
    }),
  );
  for (const l of listeners) {
    if (l.engine !== settings.engine) {
      logger.log(
        'warn',
        `engine ${settings.engine} is not available; listener ${l.name} is served by ${l.engine}`,
      );
    }
  }
  ready = true;
  logger.log('info', 'meshlet ready', {
    version: VERSION,
    config: options.configPath,
    config_version: store.current.version,
    admin: { host: settings.adminHost, port: admin.port },
    listeners: listeners.map((l) => ({ name: l.name, host: l.host, port: l.port, engine: l.engine })),
  });

  const watcher =
    options.watch === false
      ? null
      : watchConfig(options.configPath, () => {
          logger.log('info', 'configuration changed on disk; reloading');
          void reload();
        });

  const shutdown = async (): Promise<{ drained: boolean }> => {
    draining = true;
    watcher?.close();
    for (const l of listeners) l.stopAccepting();
    const deadline = performance.now() + settings.drainTimeoutMs;
    while (pipeline.inFlight > 0 && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const drained = pipeline.inFlight === 0;
    logger.log(
      drained ? 'info' : 'warn',
      drained ? 'drained' : 'drain timeout; closing with requests in flight',
      {
        in_flight: pipeline.inFlight,
      },
    );
    for (const l of listeners) l.close();
    clusters.close();
    resolver.close();
    await upstream.close();
    await new Promise<void>((r) => {
      admin.server.close(() => r());
      admin.server.closeAllConnections();
    });
    return { drained };
  };

  return { settings, listeners, adminPort: admin.port, logger, clusters, stats, reload, shutdown };
}
