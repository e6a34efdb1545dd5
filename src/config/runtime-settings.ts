import { isAbsolute, join, resolve } from 'node:path';
import type { EngineName } from '../listener/listener-types.ts';
import {
  DEFAULT_MIN_RETRIES_PER_SECOND,
  DEFAULT_RETRY_BUDGET_TTL_MS,
  DEFAULT_RETRY_RATIO,
} from '../resilience/retry-budget.ts';
import type { LogLevel } from '../telemetry/logger.ts';
import type { ConfigBundle, IdentitySettings, ProxySpec } from './resource-types.ts';
import { type AccessLogConfig, type AccessLogFlags, resolveAccessLog } from './validate-access-log.ts';
import { isServiceAccountName, TRUST_DOMAIN } from './validate-common.ts';
import { resolveTracing, type TracingConfig, type TracingFlags } from './validate-tracing.ts';
import type { View } from './yaml-view.ts';

/**
 * The settings this process runs with: command-line flags override the `Proxy` document, which
 * overrides the defaults of the design's process contract. Listener ports and the engine are
 * fixed at start-up; a reload that changes them is logged and takes effect on restart.
 */
export interface RuntimeSettings {
  readonly mode: 'sidecar' | 'node';
  readonly namespace: string;
  readonly domainSuffix: string;
  readonly workloadName: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly outboundHost: string;
  readonly outboundPort: number;
  readonly inboundHost: string;
  readonly inboundPort: number;
  readonly adminHost: string;
  readonly adminPort: number;
  /** The local application for inbound traffic, or null. */
  readonly app: { readonly host: string; readonly port: number } | null;
  readonly engine: EngineName;
  readonly logLevel: LogLevel;
  readonly outboundTrafficPolicy: 'ALLOW_ANY' | 'REGISTRY_ONLY';
  readonly drainTimeoutMs: number;
  readonly accessLog: AccessLogConfig;
  /** Span export and sampling; null when no collector is configured (headers pass through). */
  readonly tracing: TracingConfig | null;
  /** The Linkerd-style retry budget every cluster gets (one budget per cluster, these settings). */
  readonly retryBudget: RetryBudgetSettings;
  /** How often DNS-resolved ServiceEntry hosts are resolved again. */
  readonly dnsRefreshRateMs: number;
  /** SPIFFE trust domain of this mesh (`spiffe://<trustDomain>/ns/...`). */
  readonly trustDomain: string;
  /** Namespace whose PeerAuthentication/AuthorizationPolicy apply mesh-wide. */
  readonly rootNamespace: string;
  /** This workload's service account (sidecar mode; in node mode, the identity of the proxy itself). */
  readonly serviceAccount: string;
  /**
   * Where the workload certificate comes from, paths absolute and `certTtl` filled in; null: no
   * identity (plaintext only, PERMISSIVE inbound).
   */
  readonly identity: ResolvedIdentity | null;
  /** Node mode: the workloads served, every field filled. Empty in sidecar mode. */
  readonly workloads: readonly RuntimeWorkload[];
}

/** `IdentitySettings` with every default applied (a `ca` identity always has `certTtl`). */
export type ResolvedIdentity =
  | (Extract<IdentitySettings, { kind: 'ca' }> & { readonly certTtl: number })
  | Extract<IdentitySettings, { kind: 'files' }>;

/** One workload of a node-mode proxy, as it runs. */
export interface RuntimeWorkload {
  readonly name: string;
  /** The workload's namespace, else the proxy's. */
  readonly namespace: string;
  /** The workload's service account, else `default` (Kubernetes' default account). */
  readonly serviceAccount: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly inboundHost: string;
  /** 0: pick a free port. */
  readonly inboundPort: number;
  readonly app: { readonly host: string; readonly port: number };
  /** The workload's own identity, else the proxy's (a `ca` then issues one certificate per workload). */
  readonly identity: ResolvedIdentity | null;
}

/** What `new RetryBudget(clock, settings)` takes, every field filled. */
export interface RetryBudgetSettings {
  readonly retryRatio: number;
  readonly minRetriesPerSecond: number;
  readonly ttlMs: number;
}

/** Flags as given on the command line; absent means "not given". */
export interface SettingFlags extends AccessLogFlags, TracingFlags {
  readonly outboundPort?: number;
  readonly inboundPort?: number;
  readonly adminPort?: number;
  readonly adminHost?: string;
  readonly app?: string;
  readonly namespace?: string;
  readonly logLevel?: LogLevel;
  readonly engine?: EngineName;
  readonly drainTimeoutMs?: number;
  readonly trustDomain?: string;
  readonly serviceAccount?: string;
  /**
   * A folder holding `cert.pem`, `key.pem` and `ca.pem` (the trust bundle), managed outside meshlet:
   * the `files` identity; wins over the Proxy document's `identity`. Relative to the working directory.
   */
  readonly identityDir?: string;
}

/** File names inside `--identity-dir`. */
export const IDENTITY_DIR_FILES = {
  certFile: 'cert.pem',
  keyFile: 'key.pem',
  trustBundleFile: 'ca.pem',
} as const;

export const DEFAULTS = {
  outboundPort: 15001,
  inboundPort: 15006,
  adminPort: 15000,
  namespace: 'default',
  domainSuffix: 'cluster.local',
  drainTimeoutMs: 10_000,
  /**
   * h1 (node:net sockets with meshlet's own strict HTTP/1.1 codec), not uws: the uWebSockets.js
   * build we can load answers absolute-form requests (HTTP_PROXY clients) with 505 and silently
   * stalls on valid header names such as `x_api_key`. h1 passes the same conformance corpus as
   * node:http and is as fast as uws in `npm run bench`.
   */
  engine: 'h1',
  retryBudget: {
    retryRatio: DEFAULT_RETRY_RATIO,
    minRetriesPerSecond: DEFAULT_MIN_RETRIES_PER_SECOND,
    ttlMs: DEFAULT_RETRY_BUDGET_TTL_MS,
  },
  /**
   * 30 s: between Envoy's fixed 5 s dns_refresh_rate and Istio's 60 s mesh default. Endpoints behind
   * DNS rarely move faster, and a refresh is a lookup per host whatever the traffic.
   */
  dnsRefreshRateMs: 30_000,
  trustDomain: 'cluster.local',
  rootNamespace: 'istio-system',
  serviceAccount: 'default',
  /** Workload certificate lifetime when the proxy issues its own (Istio's default, 24 h). */
  certTtlMs: 86_400_000,
} as const;

/**
 * A setting that cannot be used (a malformed flag, flags that clash with the document): the CLI
 * exits 2 for it, like an invalid configuration.
 */
export class SettingsError extends Error {
  override readonly name = 'SettingsError';
}

/** Parses `HOST:PORT` (or `[v6]:PORT`, or a bare port meaning 127.0.0.1). Returns null when malformed. */
export function parseHostPort(value: string): { readonly host: string; readonly port: number } | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value) ?? /^()()(\d{1,5})$/.exec(value);
  if (m === null) return null;
  const port = Number(m[3]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return null;
  const host =
    m[1] !== undefined && m[1] !== '' ? m[1] : m[2] !== undefined && m[2] !== '' ? m[2] : '127.0.0.1';
  return { host, port };
}

export function resolveSettings(flags: SettingFlags, proxy: ProxySpec | null): RuntimeSettings {
  const p: ProxySpec = proxy ?? {};
  const appText = flags.app ?? p.app;
  const app = appText === undefined ? null : parseHostPort(appText);
  if (appText !== undefined && app === null) {
    throw new SettingsError(`--app must be HOST:PORT, got ${JSON.stringify(appText)}`);
  }
  // The document's values were validated by the loader; flags are checked here, by the same rules.
  if (flags.trustDomain !== undefined && !TRUST_DOMAIN.test(flags.trustDomain)) {
    throw new SettingsError(
      `--trust-domain must be a SPIFFE trust domain (lower-case letters, digits, ".", "_" and "-"), got ${JSON.stringify(flags.trustDomain)}`,
    );
  }
  if (flags.serviceAccount !== undefined && !isServiceAccountName(flags.serviceAccount)) {
    throw new SettingsError(
      `--service-account must be a Kubernetes service account name, got ${JSON.stringify(flags.serviceAccount)}`,
    );
  }
  const labels = p.labels ?? {};
  const namespace = flags.namespace ?? p.namespace ?? DEFAULTS.namespace;
  const identity = resolveIdentity(flags.identityDir, p.identity);
  const workloadName = p.workloadName ?? labels['app'] ?? 'meshlet';
  const workloads = (p.workloads ?? []).map((w): RuntimeWorkload => {
    const wApp = parseHostPort(w.app);
    // The validator checked the shape; a bare port would have been refused there.
    if (wApp === null)
      throw new SettingsError(`workload ${w.name}: app must be HOST:PORT, got ${JSON.stringify(w.app)}`);
    return {
      name: w.name,
      namespace: w.namespace ?? namespace,
      serviceAccount: w.serviceAccount ?? DEFAULTS.serviceAccount,
      labels: w.labels ?? {},
      inboundHost: '0.0.0.0',
      inboundPort: w.inboundPort,
      app: wApp,
      identity: w.identity === undefined ? identity : resolveIdentity(undefined, w.identity),
    };
  });
  const outboundPort = flags.outboundPort ?? p.outboundPort ?? DEFAULTS.outboundPort;
  const adminPort = flags.adminPort ?? p.adminPort ?? DEFAULTS.adminPort;
  // The Proxy document was checked against its own ports; flags may move them onto a workload's.
  for (const w of workloads) {
    if (w.inboundPort !== 0 && (w.inboundPort === outboundPort || w.inboundPort === adminPort)) {
      throw new SettingsError(
        `workload ${w.name}: inboundPort ${w.inboundPort} is also the ${w.inboundPort === outboundPort ? 'outbound' : 'admin'} port`,
      );
    }
  }
  // A certificate names one service account: workloads sharing one set of files would all present
  // the same identity (the validator says the same about the document's identity.files).
  const sharing = (p.workloads ?? []).filter((w) => w.identity === undefined);
  if (identity?.kind === 'files' && workloads.length > 1 && sharing.length > 0) {
    throw new SettingsError(
      `workloads ${sharing.map((w) => w.name).join(', ')} would share one certificate from ${identity.certFile}; give each workload its own identity.files, or use identity.ca`,
    );
  }
  return {
    mode: p.mode ?? 'sidecar',
    namespace,
    domainSuffix: p.domainSuffix ?? DEFAULTS.domainSuffix,
    workloadName,
    labels,
    outboundHost: '127.0.0.1',
    outboundPort,
    inboundHost: '0.0.0.0',
    inboundPort: flags.inboundPort ?? p.inboundPort ?? DEFAULTS.inboundPort,
    adminHost: flags.adminHost ?? p.adminHost ?? '127.0.0.1',
    adminPort,
    app,
    engine: flags.engine ?? p.engine ?? DEFAULTS.engine,
    logLevel: flags.logLevel ?? p.logLevel ?? 'info',
    outboundTrafficPolicy: p.outboundTrafficPolicy ?? 'ALLOW_ANY',
    drainTimeoutMs: flags.drainTimeoutMs ?? p.drainTimeoutMs ?? DEFAULTS.drainTimeoutMs,
    accessLog: resolveAccessLog(flags, p.accessLog),
    tracing: resolveTracing(flags, p.tracing, workloadName),
    retryBudget: {
      retryRatio: p.retryBudget?.retryRatio ?? DEFAULTS.retryBudget.retryRatio,
      minRetriesPerSecond: p.retryBudget?.minRetriesPerSecond ?? DEFAULTS.retryBudget.minRetriesPerSecond,
      ttlMs: p.retryBudget?.ttl ?? DEFAULTS.retryBudget.ttlMs,
    },
    dnsRefreshRateMs: p.dnsRefreshRate ?? DEFAULTS.dnsRefreshRateMs,
    trustDomain: flags.trustDomain ?? p.trustDomain ?? DEFAULTS.trustDomain,
    rootNamespace: p.rootNamespace ?? DEFAULTS.rootNamespace,
    serviceAccount: flags.serviceAccount ?? p.serviceAccount ?? DEFAULTS.serviceAccount,
    identity,
    workloads,
  };
}

/**
 * `--identity-dir` wins over the document; paths from the document are already absolute (the loader
 * resolved them against the configuration file's folder), and `certTtl` gets its default.
 */
function resolveIdentity(
  dir: string | undefined,
  fromDoc: IdentitySettings | undefined,
): ResolvedIdentity | null {
  if (dir !== undefined) {
    const base = resolve(dir);
    return {
      kind: 'files',
      certFile: join(base, IDENTITY_DIR_FILES.certFile),
      keyFile: join(base, IDENTITY_DIR_FILES.keyFile),
      trustBundleFile: join(base, IDENTITY_DIR_FILES.trustBundleFile),
    };
  }
  if (fromDoc === undefined) return null;
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(p));
  if (fromDoc.kind === 'files') {
    return {
      kind: 'files',
      certFile: abs(fromDoc.certFile),
      keyFile: abs(fromDoc.keyFile),
      trustBundleFile: abs(fromDoc.trustBundleFile),
    };
  }
  return {
    kind: 'ca',
    caCertFile: abs(fromDoc.caCertFile),
    caKeyFile: abs(fromDoc.caKeyFile),
    ...(fromDoc.trustBundleFile !== undefined ? { trustBundleFile: abs(fromDoc.trustBundleFile) } : {}),
    certTtl: fromDoc.certTtl ?? DEFAULTS.certTtlMs,
  };
}

/**
 * The longest delay a Node.js timer holds (2^31 − 1 ms, about 24.9 days). A longer `setTimeout`
 * fires after 1 ms instead, so a configured `timeout: 720h` would time every request out at once.
 */
export const MAX_TIMER_MS = 2_147_483_647;

/**
 * Caps a validated duration that becomes a timer at `max` (default `MAX_TIMER_MS`), with a warning
 * at the field saying so; returns the value to use.
 */
export function capTimerMs(view: View, ms: number, max: number = MAX_TIMER_MS): number {
  if (ms <= max) return ms;
  view.warn(`${ms}ms is longer than meshlet's timers can wait; ${max}ms (about ${days(max)} days) is used`);
  return max;
}

const days = (ms: number): string => (ms / 86_400_000).toFixed(1);

/**
 * The outbound traffic policy and where it comes from: a Sidecar in the proxy's namespace wins over
 * the Proxy document, which wins over the default (spec §4.1, §4.3).
 */
export function outboundPolicyOf(
  bundle: ConfigBundle,
  settings: RuntimeSettings,
): { readonly policy: 'ALLOW_ANY' | 'REGISTRY_ONLY'; readonly from: string } {
  for (const sc of bundle.sidecars) {
    if (sc.meta.namespace === settings.namespace && sc.spec.outboundTrafficPolicy !== undefined) {
      return { policy: sc.spec.outboundTrafficPolicy, from: `Sidecar ${sc.meta.namespace}/${sc.meta.name}` };
    }
  }
  const fromProxy = bundle.proxy?.spec.outboundTrafficPolicy !== undefined;
  return { policy: settings.outboundTrafficPolicy, from: fromProxy ? 'Proxy document' : 'default' };
}
