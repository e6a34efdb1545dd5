/**
 * `Proxy.accessLog` and the access-log flags: where the log goes, in which format, and which
 * requests it keeps. On by default (JSON lines on stdout), as operators of Envoy-based meshes expect.
 *
 *     accessLog: false                       # off
 *     accessLog:
 *       path: /var/log/meshlet/access.log    # '-' or absent: stdout
 *       format: text                         # json (default) or Envoy's default text line
 *       filter: {minStatus: 500, sampling: 10}
 *
 * `filter.minStatus`: log only responses with at least this status; requests with no response
 * (status 0) or with a response flag are always logged, they are what an operator looks for.
 * `filter.sampling`: percentage (0–100) of the requests that pass `minStatus` which are logged.
 */
import { dirname, isAbsolute, resolve } from 'node:path';
import type { View } from './yaml-view.ts';

export type AccessLogFormat = 'json' | 'text';

export interface AccessLogFilterSpec {
  readonly minStatus?: number;
  readonly sampling?: number;
}

/** `Proxy.accessLog` as validated (paths absolute). */
export interface AccessLogSpec {
  readonly enabled?: boolean;
  /** Absolute path, or '-' for stdout. */
  readonly path?: string;
  readonly format?: AccessLogFormat;
  readonly filter?: AccessLogFilterSpec;
}

/** The access-log flags of `meshlet run`. */
export interface AccessLogFlags {
  /** `--access-log [dest]`: true (stdout), false (`--no-access-log` or `off`), or a path / '-'. */
  readonly accessLog?: boolean | string;
  readonly accessLogFormat?: AccessLogFormat;
}

/** What the process runs with. */
export interface AccessLogConfig {
  readonly enabled: boolean;
  /** '-' for stdout, else an absolute file path (appended to). */
  readonly path: string;
  readonly format: AccessLogFormat;
  /** 0: no status filter. */
  readonly minStatus: number;
  /** 0–100. */
  readonly sampling: number;
}

export const ACCESS_LOG_DEFAULTS: AccessLogConfig = {
  enabled: true,
  path: '-',
  format: 'json',
  minStatus: 0,
  sampling: 100,
};

const FIELDS = ['enabled', 'path', 'format', 'filter'] as const;
const FILTER_FIELDS = ['minStatus', 'sampling'] as const;

export function parseAccessLog(view: View): AccessLogSpec | undefined {
  if (view.node === undefined) return undefined;
  if (view.typeName() === 'boolean') {
    const enabled = view.bool();
    return enabled === undefined ? undefined : { enabled };
  }
  const m = view.map();
  if (m === undefined) return undefined;
  m.checkFields(FIELDS, { strict: true });
  const enabled = m.get('enabled').bool();
  const pathView = m.get('path');
  const rawPath = pathView.string();
  let path: string | undefined;
  if (rawPath !== undefined) {
    if (rawPath === '') pathView.error('path must be a file path, or "-" for stdout');
    else path = rawPath === '-' || isAbsolute(rawPath) ? rawPath : resolve(dirname(view.ctx.file), rawPath);
  }
  const format = m.get('format').enumOf(['json', 'text'] as const);
  let filter: AccessLogFilterSpec | undefined;
  if (m.has('filter')) {
    const f = m.get('filter').map();
    if (f !== undefined) {
      f.checkFields(FILTER_FIELDS, { strict: true });
      const minStatus = f.get('minStatus').int({ min: 100, max: 599 });
      const sampling = f.get('sampling').number({ min: 0, max: 100 });
      filter = {
        ...(minStatus !== undefined ? { minStatus } : {}),
        ...(sampling !== undefined ? { sampling } : {}),
      };
    }
  }
  return {
    ...(enabled !== undefined ? { enabled } : {}),
    ...(path !== undefined ? { path } : {}),
    ...(format !== undefined ? { format } : {}),
    ...(filter !== undefined ? { filter } : {}),
  };
}

/** Flags win over the document, which wins over the defaults. A relative `--access-log` path is the working directory's. */
export function resolveAccessLog(flags: AccessLogFlags, spec: AccessLogSpec | undefined): AccessLogConfig {
  let enabled = spec?.enabled ?? ACCESS_LOG_DEFAULTS.enabled;
  let path = spec?.path ?? ACCESS_LOG_DEFAULTS.path;
  const flag = flags.accessLog;
  if (flag === true) enabled = true;
  else if (flag === false || flag === 'off') enabled = false;
  else if (typeof flag === 'string') {
    enabled = true;
    path = flag === '-' ? '-' : resolve(flag);
  }
  return {
    enabled,
    path,
    format: flags.accessLogFormat ?? spec?.format ?? ACCESS_LOG_DEFAULTS.format,
    minStatus: spec?.filter?.minStatus ?? ACCESS_LOG_DEFAULTS.minStatus,
    sampling: spec?.filter?.sampling ?? ACCESS_LOG_DEFAULTS.sampling,
  };
}
