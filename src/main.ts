import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { performance } from 'node:perf_hooks';
import { type AdminDeps, type ReloadOutcome, startAdminServer } from './admin/admin-server.ts';
import { createClusterRegistry } from './balancer/cluster-registry.ts';
import type { ClusterRegistry } from './balancer/cluster-types.ts';
import { formatIssue } from './config/format-issue.ts';
import { loadConfig } from './config/load-config.ts';
import type { ConfigBundle, ConfigIssue } from './config/resource-types.ts';
import {
  outboundPolicyOf,
  type ResolvedIdentity,
  type RuntimeSettings,
  resolveSettings,
  type SettingFlags,
} from './config/runtime-settings.ts';
import { type Snapshot, SnapshotStore } from './config/snapshot-store.ts';
import { watchConfig } from './config/watch-config.ts';
import type { InboundTls, Listener } from './listener/listener-types.ts';
import { type StartedListener, startListener } from './listener/start-listener.ts';
import type { SecurityEvent } from './pipeline/pipeline-types.ts';
import { ProxyPipeline } from './pipeline/proxy-pipeline.ts';
import { destinationModes, type PolicyCompilers, WorkloadSecurity } from './pipeline/workload-security.ts';
import { compileRoutes } from './router/compile-routes.ts';
import { createAccessLog, reopenLogged } from './telemetry/access-log.ts';
import { LiveStats } from './telemetry/live-stats.ts';
import { createLogger, type Logger } from './telemetry/logger.ts';
import { canonicalOf, MeshMetrics, type WorkloadIdentity } from './telemetry/metrics.ts';
import { ResilienceStats } from './telemetry/resilience-stats.ts';
import { Tap } from './telemetry/tap.ts';
import { startTracing } from './telemetry/tracing/start-tracing.ts';
import { compileAuthorizer } from './tls/authorization.ts';
import { createFileIdentity, createIssuingIdentity, loadCaFiles } from './tls/identity-source.ts';
import type { IdentitySource, SpiffeId, WorkloadCertificate } from './tls/identity-types.ts';
import { createOrigination, type OriginationIdentity } from './tls/origination.ts';
import { compilePeerAuthentication } from './tls/peer-authentication.ts';
import type { CaMaterial } from './tls/pki.ts';
import { inboundSecureContext } from './tls/secure-context.ts';
import { spiffeId } from './tls/spiffe.ts';
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
  /**
   * Admin `POST /shutdown`: the CLI stops the process as on SIGTERM (drain, exit 0). Without it the
   * proxy shuts down and the process is left to its owner.
   */
  readonly onShutdownRequest?: () => void;
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

function compileSnapshot(bundle: ConfigBundle, settings: RuntimeSettings, version: number): Snapshot {
  const outboundTrafficPolicy = outboundPolicyOf(bundle, settings).policy;
  const routes = compileRoutes(bundle, {
    namespace: settings.namespace,
    domainSuffix: settings.domainSuffix,
    proxyLabels: settings.labels,
    outboundTrafficPolicy,
    random: Math.random,
  });
  return { version, hash: bundle.hash, loadedAt: new Date(), bundle, routes, outboundTrafficPolicy };
}

/**
 * Compiles every served workload's policies for `snapshot` and logs what applies (once per load).
 * Throws when a compiler does.
 */
function prepareSecurity(snapshot: Snapshot, workloads: readonly WorkloadSecurity[], logger: Logger): void {
  for (const w of workloads) {
    const report = w.prepare(snapshot);
    if (report.mode !== 'PERMISSIVE' || report.policies.length > 0) {
      logger.log('info', 'workload security', {
        workload: w.name,
        mtls_mode: report.mode,
        authorization_policies: report.policies,
      });
    }
    for (const issue of report.warnings)
      logger.log('warn', 'security configuration', { workload: w.name, issue });
  }
}

/** Compile-time problems that do not stop serving (e.g. a mirror to a missing host): logged once per load. */
function logRouteWarnings(snapshot: Snapshot, logger: Logger): void {
  for (const w of snapshot.routes.warnings ?? []) logger.log('warn', 'configuration warning', { issue: w });
}

function identityOf(
  name: string,
  namespace: string,
  labels: Readonly<Record<string, string>>,
): WorkloadIdentity {
  const canonical = canonicalOf(labels, name);
  return {
    workload: name,
    namespace,
    app: labels['app'] ?? 'unknown',
    version: labels['version'] ?? 'unknown',
    canonicalService: canonical.service,
    canonicalRevision: canonical.revision,
    cluster: 'unknown',
  };
}

/** One certificate the process holds: for whom, and where it comes from. */
interface IdentityHolder {
  /** The SPIFFE id the certificate is for (files: the configured one until the files are read). */
  readonly spiffeId: string;
  readonly source: IdentitySource;
  current(): WorkloadCertificate | null;
  readonly rotations: number;
}

/**
 * Creates the identity sources of the process: issuing ones share a CA loaded once per CA file pair
 * (node mode issues one certificate per workload from it), files ones read their own files.
 * Rotations and errors are logged. A CA that cannot be loaded throws (a configuration error).
 */
class Identities {
  readonly holders: IdentityHolder[] = [];
  private readonly cas = new Map<string, CaMaterial>();
  private readonly trustDomain: string;
  private readonly logger: Logger;

  constructor(trustDomain: string, logger: Logger) {
    this.trustDomain = trustDomain;
    this.logger = logger;
  }

  create(settings: ResolvedIdentity, id: SpiffeId): IdentitySource {
    const onError = (err: Error): void =>
      this.logger.log('warn', 'workload certificate problem', { spiffe_id: id.uri, error: err.message });
    let source: IdentitySource;
    if (settings.kind === 'ca') {
      const key = `${settings.caCertFile}\n${settings.caKeyFile}`;
      let ca = this.cas.get(key);
      if (ca === undefined) {
        ca = loadCaFiles(settings.caCertFile, settings.caKeyFile, this.trustDomain);
        this.cas.set(key, ca);
      }
      const extra =
        settings.trustBundleFile === undefined ? '' : readFileSync(settings.trustBundleFile, 'utf8');
      source = createIssuingIdentity({
        caCertPem: ca.certPem,
        caKeyPem: ca.keyPem,
        ...(extra === '' ? {} : { trustBundlePem: extra }),
        spiffe: id,
        ttlMs: settings.certTtl,
        onError,
      });
    } else {
      source = createFileIdentity({
        certFile: settings.certFile,
        keyFile: settings.keyFile,
        trustBundleFile: settings.trustBundleFile,
        watch: true,
        onError,
      });
    }
    const holder: IdentityHolder = {
      spiffeId: id.uri,
      source,
      current: () => source.current(),
      get rotations() {
        return source.rotations;
      },
    };
    source.onChange(() => {
      const cert = source.current();
      this.logger.log(
        'info',
        holder.rotations === 0 ? 'workload certificate ready' : 'workload certificate rotated',
        {
          spiffe_id: cert?.spiffe.uri ?? id.uri,
          not_after: cert?.notAfter.toISOString() ?? null,
          rotations: holder.rotations,
        },
      );
      if (cert !== null && cert.spiffe.uri !== id.uri)
        this.logger.log('warn', 'the certificate names another identity than the configuration', {
          configured: id.uri,
          certificate: cert.spiffe.uri,
        });
    });
    this.holders.push(holder);
    return source;
  }

  /** Why `/ready` waits: the first identity without a certificate, or null. */
  missing(): string | null {
    for (const h of this.holders) {
      if (h.source.current() === null) {
        const why = h.source.lastError;
        return `no workload certificate yet for ${h.spiffeId}${why === null ? '' : ` (${why})`}`;
      }
    }
    return null;
  }

  close(): void {
    for (const h of this.holders) h.source.close();
  }
}

/**
 * What origination reads per decision: the same object until the certificate or the bundle changes,
 * then a new one with a new version (which renews the origination module's cached answers).
 */
function originationIdentity(source: IdentitySource | null): () => OriginationIdentity {
  let state: OriginationIdentity = { cert: null, bundlePem: '', version: 0 };
  return () => {
    if (source === null) return state;
    const cert = source.current();
    const bundlePem = source.trustBundlePem();
    if (cert !== state.cert || bundlePem !== state.bundlePem)
      state = { cert, bundlePem, version: state.version + 1 };
    return state;
  };
}

/**
 * Log lines for security events, at most one per kind and reason every 10 s (a denied client in a
 * loop must not flood the log); the count of lines held back goes with the next one.
 */
function securityLog(logger: Logger, now: () => number): (e: SecurityEvent) => void {
  const last = new Map<string, { at: number; held: number }>();
  return (e) => {
    const key = e.kind === 'upstream-tls' ? `${e.kind}|${e.cluster}|${e.reason}` : `${e.kind}|${e.workload}`;
    const t = now();
    const seen = last.get(key);
    if (seen !== undefined && t - seen.at < 10_000) {
      seen.held++;
      return;
    }
    if (last.size > 1000) last.clear();
    last.set(key, { at: t, held: 0 });
    const held = seen?.held ?? 0;
    const more = held > 0 ? { similar_events_not_logged: held } : {};
    switch (e.kind) {
      case 'authz-denied':
        logger.log('info', 'request denied by AuthorizationPolicy', { ...e, ...more });
        return;
      case 'authz-dry-run-denied':
        logger.log('info', 'dry-run AuthorizationPolicy would deny this request (not enforced)', {
          ...e,
          ...more,
        });
        return;
      case 'strict-plaintext':
        logger.log('warn', 'plaintext request to a STRICT mTLS workload refused', { ...e, ...more });
        return;
      case 'upstream-tls':
        logger.log('warn', 'TLS origination failed (UF)', { ...e, ...more });
        return;
    }
  };
}

export async function runProxy(options: RunOptions): Promise<RunningProxy> {
  const loadOptions = options.flags.namespace === undefined ? {} : { namespace: options.flags.namespace };
  const bundle = await loadConfig(options.configPath, loadOptions);
  if (bundle.issues.some((i) => i.severity === 'error')) throw new InvalidConfigError(bundle.issues);
  const settings = resolveSettings(options.flags, bundle.proxy?.spec ?? null);
  const startProxySpec = JSON.stringify(bundle.proxy?.spec ?? null);
  const logger = createLogger(settings.logLevel);
  for (const issue of bundle.issues)
    logger.log('warn', 'configuration warning', { issue: formatIssue(issue) });

  const metrics = new MeshMetrics();
  // The access log opens its file first: a path that cannot be opened stops the start-up (exit 1).
  const accessLog = settings.accessLog.enabled
    ? createAccessLog(settings.accessLog, { registry: metrics.registry, logger })
    : null;
  // SIGUSR1 reopens the access-log file by its path (after logrotate moved it away), as in Envoy.
  const reopenAccessLog = (): void => {
    if (accessLog !== null) void reopenLogged(accessLog, settings.accessLog.path, logger);
  };
  if (accessLog !== null && settings.accessLog.path !== '-') process.on('SIGUSR1', reopenAccessLog);
  const now = (): number => performance.now();

  // Identity: the proxy's own (sidecar: its workload's; node mode: the outbound side's), and in
  // node mode one per workload. No identity configured: no mTLS at all (see README, Zero trust).
  const identities = new Identities(settings.trustDomain, logger);
  const ownId = spiffeId(settings.trustDomain, settings.namespace, settings.serviceAccount);
  const ownSource = settings.identity === null ? null : identities.create(settings.identity, ownId);
  const compilers: PolicyCompilers = {
    authorizer: compileAuthorizer,
    peerAuthentication: compilePeerAuthentication,
    rootNamespace: settings.rootNamespace,
    trustDomain: settings.trustDomain,
  };
  const workloadSecurity = (
    name: string,
    namespace: string,
    labels: Readonly<Record<string, string>>,
    app: { readonly host: string; readonly port: number } | null,
    source: IdentitySource | null,
    id: SpiffeId,
  ): WorkloadSecurity =>
    new WorkloadSecurity({
      name,
      namespace,
      labels,
      app: app === null ? null : { address: app.host, port: app.port },
      identity: identityOf(name, namespace, labels),
      source,
      spiffeId: source === null ? null : id.uri,
      compilers,
      ...(source === null ? {} : { secureContext: inboundSecureContext(source) }),
    });
  const sidecar = workloadSecurity(
    settings.workloadName,
    settings.namespace,
    settings.labels,
    settings.app,
    ownSource,
    ownId,
  );
  const nodeWorkloads =
    settings.mode === 'node'
      ? settings.workloads.map((w) => {
          const id = spiffeId(settings.trustDomain, w.namespace, w.serviceAccount);
          const source = w.identity === null ? null : identities.create(w.identity, id);
          return { spec: w, security: workloadSecurity(w.name, w.namespace, w.labels, w.app, source, id) };
        })
      : [];
  const served: readonly WorkloadSecurity[] =
    settings.mode === 'node' ? nodeWorkloads.map((w) => w.security) : [sidecar];

  const first = compileSnapshot(bundle, settings, 1);
  prepareSecurity(first, served, logger);
  const store = new SnapshotStore(first);
  logRouteWarnings(store.current, logger);
  // TLS origination (DestinationRule tls, auto-mTLS) with the proxy's own certificate. Without an
  // identity auto-mTLS is off (endpoints labelled for mTLS get plaintext, as a mesh without mTLS
  // would send), and ISTIO_MUTUAL destinations fail UF saying there is no certificate.
  const origination = createOrigination({
    trustDomain: settings.trustDomain,
    identity: originationIdentity(ownSource),
    destinationMode: destinationModes(() => store.current, compilePeerAuthentication, settings.rootNamespace),
    autoMtls: ownSource !== null,
  });
  const preloadTls = (snapshot: Snapshot): void => {
    origination.refreshFiles();
    for (const problem of origination.preload(snapshot.routes.clusters.values()))
      logger.log('warn', 'TLS origination files', { issue: problem });
  };
  preloadTls(first);
  // The lean HTTP/1.1 client carries plain requests to IP endpoints; undici takes the rest
  // (host names, Expect: 100-continue, upgrades).
  const upstream = createH1Upstream({ fallback: createUndiciUpstream({}) });
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
  // Tracing (settings.tracing null: no collector, trace headers pass through as they are).
  const tracing =
    settings.tracing === null ? null : startTracing(settings.tracing, metrics.registry, now, logger);
  const stats = new ResilienceStats();
  // Live percentiles for /stats and the /tap stream: observers after the access log.
  const liveStats = new LiveStats({ now });
  const tap = new Tap();
  metrics.attachResilience(() => clusters.all(), stats);
  const pipeline = new ProxyPipeline({
    store,
    upstream,
    clusters,
    stats,
    metrics,
    identity: sidecar.identity,
    observers: [...(accessLog === null ? [] : [accessLog]), liveStats, tap],
    ...(tracing === null ? {} : { tracer: tracing.tracer }),
    random: Math.random,
    now,
    requestId: randomUUID,
    app: sidecar.app,
    namespace: settings.namespace,
    onBug: (err) =>
      logger.log('error', 'internal error on the request path', {
        error: err instanceof Error ? (err.stack ?? err.message) : String(err),
      }),
    inboundWorkload: sidecar,
    originate: (cluster, endpoint) => origination.originationFor(cluster, endpoint),
    spiffeId: () => (ownSource === null ? null : (ownSource.current()?.spiffe.uri ?? ownId.uri)),
    onSecurityEvent: securityLog(logger, now),
  });
  metrics.attachIdentities(() => identities.holders);
  const tlsListeners: StartedListener[] = [];
  metrics.attachListeners(() => tlsListeners);
  const apps = served.flatMap((w) => (w.app === null ? [] : [`${w.app.address}:${w.app.port}`]));
  store.onSwap((next) => {
    // Per-endpoint state survives a reload for endpoints that are still there; the rest is let go.
    clusters.retain(new Set(next.routes.clusters.keys()));
    // Upstream pools are kept for every endpoint of the new configuration, for the addresses the
    // cluster states resolved DNS hosts to, and for the local application.
    const endpoints = new Set<string>();
    for (const c of next.routes.clusters.values()) for (const e of c.endpoints) endpoints.add(e.id);
    for (const state of clusters.all()) for (const e of state.endpoints) endpoints.add(e.id);
    for (const app of apps) endpoints.add(app);
    upstream.retain(endpoints);
  });

  let ready = false;
  let draining = false;
  const listeners: Listener[] = [];
  metrics.attachListenerConnections(() => listeners);

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
      // Policies are compiled before the swap, so the first request under them pays nothing and
      // a policy the compiler cannot take leaves the previous configuration serving.
      prepareSecurity(snapshot, served, logger);
    } catch (err) {
      metrics.reload('rejected');
      const message = `compile failed: ${err instanceof Error ? err.message : String(err)}`;
      logger.log('error', 'configuration rejected; the previous configuration keeps serving', {
        issues: [message],
      });
      return { result: 'rejected', errors: [message] };
    }
    store.swap(snapshot);
    preloadTls(snapshot);
    metrics.reload('applied');
    logRouteWarnings(snapshot, logger);
    const warnings = next.issues.map(formatIssue);
    // The Proxy document is this process's bootstrap (ports, engine, identity, access log, tracing,
    // retry budget...): resolved once at start-up. Say so when a reload changes it, instead of
    // letting an operator believe the change applied.
    if (JSON.stringify(next.proxy?.spec ?? null) !== startProxySpec) {
      warnings.push(
        `${next.proxy === null ? 'Proxy' : `${next.proxy.meta.pos.file}:${next.proxy.meta.pos.line}: Proxy ${next.proxy.meta.name}`}: differs from the Proxy document meshlet started with; its settings take effect on restart (the routing and security resources were applied)`,
      );
    }
    for (const w of warnings) logger.log('warn', 'configuration warning', { issue: w });
    logger.log('info', 'configuration applied', { version: snapshot.version, hash: snapshot.hash });
    return { result: 'applied', version: snapshot.version, hash: snapshot.hash, warnings };
  };
  // Reloads run one at a time, in the order they were asked for.
  const reload = (): Promise<ReloadOutcome> => {
    reloading = reloading.then(reloadNow, reloadNow);
    return reloading;
  };

  // Admin POST /drain: the shutdown's first step without the rest; the process keeps running.
  const drain = (): void => {
    if (draining) return;
    draining = true;
    for (const l of listeners) l.stopAccepting();
    logger.log('info', 'draining (admin /drain): new connections are refused, in-flight requests finish');
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
    notReadyReason: () => identities.missing(),
    stats: liveStats,
    tap,
    logger,
    drain,
    shutdown: () => {
      if (options.onShutdownRequest !== undefined) options.onShutdownRequest();
      else void shutdown();
    },
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
  const fallbacks = new Map<string, string>();
  const inbound = async (
    name: string,
    host: string,
    port: number,
    handler: ReturnType<ProxyPipeline['inboundFor']>,
    onUpgrade: ReturnType<ProxyPipeline['upgradeFor']>,
    tls: InboundTls | undefined,
  ): Promise<void> => {
    const l = await startListener({
      engine: settings.engine,
      host,
      port,
      handler,
      onUpgrade,
      name,
      ...(tls === undefined ? {} : { tls }),
    });
    if (l.fallbackReason !== null) fallbacks.set(l.name, l.fallbackReason);
    listeners.push(l);
    if (tls !== undefined) tlsListeners.push(l);
  };
  if (settings.mode === 'node') {
    // One inbound listener per workload, each with its own application, identity and policies.
    for (const { spec, security } of nodeWorkloads) {
      await inbound(
        `inbound-${spec.name}`,
        spec.inboundHost,
        spec.inboundPort,
        pipeline.inboundFor(security),
        pipeline.upgradeFor(security),
        security.inboundTls(() => store.current),
      );
    }
  } else {
    await inbound(
      'inbound',
      settings.inboundHost,
      settings.inboundPort,
      pipeline.inbound,
      pipeline.upgrade('destination'),
      sidecar.inboundTls(() => store.current),
    );
  }
  for (const l of listeners) {
    if (l.engine !== settings.engine) {
      const why = fallbacks.get(l.name);
      logger.log(
        'warn',
        `engine ${settings.engine} is not available; listener ${l.name} is served by ${l.engine}`,
        why === undefined ? {} : { reason: why },
      );
    }
  }
  ready = true;
  // "ready" here means started: every listener is bound. `/ready` also waits for the certificates,
  // which the line says when they are not there yet.
  const waiting = identities.missing();
  logger.log('info', 'meshlet ready', {
    ...(waiting === null ? {} : { waiting_for: waiting }),
    version: VERSION,
    config: options.configPath,
    config_version: store.current.version,
    admin: { host: settings.adminHost, port: admin.port },
    listeners: listeners.map((l) => ({ name: l.name, host: l.host, port: l.port, engine: l.engine })),
    identities: identities.holders.map((h) => h.spiffeId),
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
    // The spans of the drained requests go to the collector before the process ends (bounded wait).
    await tracing?.exporter.shutdown(2000);
    for (const l of listeners) l.close();
    clusters.close();
    resolver.close();
    identities.close();
    await upstream.close();
    // Every request has finished: what the access log still holds is written before the exit.
    process.off('SIGUSR1', reopenAccessLog);
    await accessLog?.close();
    tap.close();
    await new Promise<void>((r) => {
      admin.server.close(() => r());
      admin.server.closeAllConnections();
    });
    return { drained };
  };

  return { settings, listeners, adminPort: admin.port, logger, clusters, stats, reload, shutdown };
}
