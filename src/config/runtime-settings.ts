import type { EngineName } from '../listener/listener-types.ts';
import type { LogLevel } from '../telemetry/logger.ts';
import type { ProxySpec } from './resource-types.ts';

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
  readonly accessLog: boolean;
}

/** Flags as given on the command line; absent means "not given". */
export interface SettingFlags {
  readonly outboundPort?: number;
  readonly inboundPort?: number;
  readonly adminPort?: number;
  readonly app?: string;
  readonly namespace?: string;
  readonly logLevel?: LogLevel;
  readonly engine?: EngineName;
  readonly drainTimeoutMs?: number;
  readonly accessLog?: boolean;
}

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
} as const;

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
    throw new Error(`--app must be HOST:PORT, got ${JSON.stringify(appText)}`);
  }
  const labels = p.labels ?? {};
  return {
    mode: p.mode ?? 'sidecar',
    namespace: flags.namespace ?? p.namespace ?? DEFAULTS.namespace,
    domainSuffix: p.domainSuffix ?? DEFAULTS.domainSuffix,
    workloadName: p.workloadName ?? labels['app'] ?? 'meshlet',
    labels,
    outboundHost: '127.0.0.1',
    outboundPort: flags.outboundPort ?? p.outboundPort ?? DEFAULTS.outboundPort,
    inboundHost: '0.0.0.0',
    inboundPort: flags.inboundPort ?? p.inboundPort ?? DEFAULTS.inboundPort,
    adminHost: '127.0.0.1',
    adminPort: flags.adminPort ?? p.adminPort ?? DEFAULTS.adminPort,
    app,
    engine: flags.engine ?? p.engine ?? DEFAULTS.engine,
    logLevel: flags.logLevel ?? p.logLevel ?? 'info',
    outboundTrafficPolicy: p.outboundTrafficPolicy ?? 'ALLOW_ANY',
    drainTimeoutMs: flags.drainTimeoutMs ?? p.drainTimeoutMs ?? DEFAULTS.drainTimeoutMs,
    accessLog: flags.accessLog ?? p.accessLog ?? false,
  };
}
