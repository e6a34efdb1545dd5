/** Starting the backend and each target; a target that cannot start is skipped with a reason. */
import { accessSync, constants, existsSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import {
  BENCH_HOST,
  BODY,
  haproxyConf,
  meshletServiceEntry,
  type NginxConfOptions,
  nginxBackendConf,
  nginxProxyConf,
  OPTIONAL_NGINX_TEMP_PATHS,
} from './configs.ts';
import { capture, freePort, httpGet, type Processes, type Started, waitUntil } from './procs.ts';
import {
  fullTelemetry,
  type MeshletTelemetry,
  type RunningSink,
  TELEMETRY_OFF,
  telemetryArgs,
} from './telemetry.ts';

export const TARGET_NAMES = [
  'direct',
  'nginx',
  'haproxy',
  'meshlet-h1',
  'meshlet-h1-telemetry',
  'meshlet-uws',
  'meshlet-node',
] as const;
export type TargetName = (typeof TARGET_NAMES)[number];

export const READY_TIMEOUT_MS = 10_000;

export interface Pinning {
  /** wrk and the backend run here. */
  readonly loadCpu: number;
  /** The measured proxy runs here, alone. */
  readonly proxyCpu: number;
}

export interface RunningTarget {
  readonly name: TargetName;
  readonly port: number;
  /** undefined for `direct` (the backend itself). */
  readonly proc: Started | undefined;
  /** For a meshlet with full telemetry: its admin port (to scrape) and its access-log file. */
  readonly telemetry?: { readonly admin: number; readonly accessLogPath: string };
}

export type StartOutcome =
  | { readonly ok: true; readonly target: RunningTarget }
  | { readonly ok: false; readonly reason: string };

export interface StartContext {
  readonly procs: Processes;
  readonly pinning: Pinning | undefined;
  readonly ports: Set<number>;
  readonly nginxBin: string | undefined;
  readonly haproxyBin: string | undefined;
  readonly meshletCli: string;
  readonly repoRoot: string;
  /** The OTLP sink a full-telemetry target exports to, started on first use; absent: no such target. */
  readonly otlpSink?: () => Promise<RunningSink>;
}

/** Find an executable on PATH, also looking in the sbin directories where nginx and haproxy live. */
export function findExecutable(name: string): string | undefined {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

/** True when `port` answers GET / with 200 and exactly the backend's body. */
async function servesBody(port: number): Promise<boolean> {
  const res = await httpGet(port, '/', BENCH_HOST, 1000);
  if (res.status !== 200) throw new Error(`GET / answered ${res.status}`);
  if (!res.body.equals(Buffer.from(BODY)))
    throw new Error(`GET / body is ${res.body.length} bytes, not the backend's`);
  return true;
}

/** Write an nginx config, drop temp-path directives this build does not know, and start nginx. */
async function startNginx(
  ctx: StartContext,
  name: string,
  port: number,
  cpu: number | undefined,
  render: (opts: NginxConfOptions) => string,
): Promise<Started | string> {
  const bin = ctx.nginxBin;
  if (bin === undefined) return 'nginx not installed';
  const dir = ctx.procs.tempDir();
  const confPath = join(dir, 'nginx.conf');
  const errorLog = join(dir, 'error.log');
  const omit = new Set<string>();
  const base = ['-p', `${dir}/`, '-e', errorLog, '-c', confPath];
  for (let attempt = 0; attempt <= OPTIONAL_NGINX_TEMP_PATHS.length; attempt++) {
    writeFileSync(confPath, render({ dir, omit }));
    const test = (await capture(bin, ['-t', ...base])) ?? '';
    const unknown = OPTIONAL_NGINX_TEMP_PATHS.find((d) => test.includes(`unknown directive "${d}"`));
    if (unknown === undefined) {
      if (!test.includes('test is successful'))
        return `nginx -t failed: ${test.split('\n').slice(-2).join(' | ')}`;
      break;
    }
    omit.add(unknown);
  }
  const proc = ctx.procs.spawn(name, bin, base, { cpu });
  const failure = await waitUntil(() => servesBody(port), proc, READY_TIMEOUT_MS);
  if (failure !== undefined) {
    await ctx.procs.stop(proc);
    return failure;
  }
  return proc;
}

/** The backend: nginx when installed, else the node:http fallback. Throws when neither starts. */
export async function startBackend(
  ctx: StartContext,
): Promise<{ port: number; kind: string; proc: Started }> {
  const port = await freePort(ctx.ports);
  const cpu = ctx.pinning?.loadCpu;
  if (ctx.nginxBin !== undefined) {
    const r = await startNginx(ctx, 'backend', port, cpu, (o) => nginxBackendConf(o, port));
    if (typeof r !== 'string') return { port, kind: 'nginx (1 worker, return 200)', proc: r };
    process.stdout.write(`backend: nginx failed (${r}); falling back to node:http\n`);
  }
  const script = new URL('./node-backend.js', import.meta.url).pathname;
  const proc = ctx.procs.spawn('backend', process.execPath, [script, String(port)], { cpu });
  const failure = await waitUntil(() => servesBody(port), proc, READY_TIMEOUT_MS);
  if (failure !== undefined) throw new Error(`backend did not start: ${failure}`);
  return { port, kind: 'node:http fallback (nginx missing)', proc };
}

/** The `meshlet run` command line the bench starts (ports chosen by the caller, warnings only). */
export function meshletRunArgs(
  cli: string,
  configPath: string,
  ports: { readonly outbound: number; readonly inbound: number; readonly admin: number },
  engine: string,
): string[] {
  return [
    cli,
    'run',
    '--config',
    configPath,
    '--outbound-port',
    String(ports.outbound),
    '--inbound-port',
    String(ports.inbound),
    '--admin-port',
    String(ports.admin),
    '--engine',
    engine,
    '--log-level',
    'warn',
  ];
}

export interface MeshletLaunch {
  readonly procs: Processes;
  readonly ports: Set<number>;
  /** The meshlet entry point. */
  readonly cli: string;
  readonly engine: string;
  readonly cpu: number | undefined;
  readonly cwd?: string;
  /** The process name (in logs and errors). */
  readonly name: string;
  /** The file name of the configuration in a fresh temp directory. */
  readonly configName: string;
  readonly yaml: string;
  /**
   * Access log and tracing. Required: the access log is on by default, so a bench that did not
   * choose would measure it without saying so.
   */
  readonly telemetry: MeshletTelemetry;
  /** Flags after those of {@link meshletRunArgs} and the telemetry flags. */
  readonly extraArgs?: readonly string[];
  /** Flags for node itself, before the CLI (e.g. `--cpu-prof`). */
  readonly nodeArgs?: readonly string[];
}

export interface LaunchedMeshlet {
  readonly outbound: number;
  readonly inbound: number;
  readonly admin: number;
  readonly proc: Started;
  /** Why admin `/ready` never answered 200; undefined once it did. The caller stops `proc` on failure. */
  readonly notReady: string | undefined;
}

/** `meshlet run` on three free ports with `yaml` as its configuration, waited for until `/ready` answers 200. */
export async function launchMeshlet(l: MeshletLaunch): Promise<LaunchedMeshlet> {
  const [outbound, inbound, admin] = [
    await freePort(l.ports),
    await freePort(l.ports),
    await freePort(l.ports),
  ];
  const configPath = join(l.procs.tempDir(), l.configName);
  writeFileSync(configPath, l.yaml);
  const args = [
    ...(l.nodeArgs ?? []),
    ...meshletRunArgs(l.cli, configPath, { outbound, inbound, admin }, l.engine),
    ...telemetryArgs(l.telemetry),
    ...(l.extraArgs ?? []),
  ];
  // stdout is only the access log (meshlet logs to stderr): discarded, so it can never fill a pipe.
  const proc = l.procs.spawn(l.name, process.execPath, args, {
    cpu: l.cpu,
    stdout: 'ignore',
    ...(l.cwd === undefined ? {} : { cwd: l.cwd }),
  });
  const notReady = await waitUntil(
    async () => {
      const res = await httpGet(admin, '/ready', `127.0.0.1:${admin}`, 1000);
      if (res.status !== 200) throw new Error(`/ready answered ${res.status}`);
      return true;
    },
    proc,
    READY_TIMEOUT_MS,
  );
  return { outbound, inbound, admin, proc, notReady };
}

export async function startTarget(
  ctx: StartContext,
  name: TargetName,
  backendPort: number,
): Promise<StartOutcome> {
  const cpu = ctx.pinning?.proxyCpu;
  switch (name) {
    case 'direct':
      return { ok: true, target: { name, port: backendPort, proc: undefined } };
    case 'nginx': {
      if (ctx.nginxBin === undefined) return { ok: false, reason: 'nginx is not installed' };
      const port = await freePort(ctx.ports);
      const r = await startNginx(ctx, name, port, cpu, (o) => nginxProxyConf(o, port, backendPort));
      return typeof r === 'string' ? { ok: false, reason: r } : { ok: true, target: { name, port, proc: r } };
    }
    case 'haproxy':
      return startHaproxy(ctx, backendPort, cpu);
    case 'meshlet-h1':
      return startMeshlet(ctx, name, 'h1', backendPort, cpu, TELEMETRY_OFF);
    case 'meshlet-h1-telemetry': {
      if (ctx.otlpSink === undefined) return { ok: false, reason: 'no OTLP sink to export traces to' };
      let sink: RunningSink;
      try {
        sink = await ctx.otlpSink();
      } catch (err) {
        return { ok: false, reason: err instanceof Error ? err.message : String(err) };
      }
      return startMeshlet(ctx, name, 'h1', backendPort, cpu, fullTelemetry(ctx.procs.tempDir(), sink));
    }
    case 'meshlet-uws':
      return startMeshlet(ctx, name, 'uws', backendPort, cpu, TELEMETRY_OFF);
    case 'meshlet-node':
      return startMeshlet(ctx, name, 'node', backendPort, cpu, TELEMETRY_OFF);
  }
}

async function startHaproxy(
  ctx: StartContext,
  backendPort: number,
  cpu: number | undefined,
): Promise<StartOutcome> {
  const bin = ctx.haproxyBin;
  if (bin === undefined) return { ok: false, reason: 'haproxy is not installed' };
  const port = await freePort(ctx.ports);
  const dir = ctx.procs.tempDir();
  const confPath = join(dir, 'haproxy.cfg');
  writeFileSync(confPath, haproxyConf(port, backendPort));
  // -db: stay in the foreground, no daemon.
  const proc = ctx.procs.spawn('haproxy', bin, ['-db', '-f', confPath], { cpu, cwd: dir });
  const failure = await waitUntil(() => servesBody(port), proc, READY_TIMEOUT_MS);
  if (failure !== undefined) {
    await ctx.procs.stop(proc);
    return { ok: false, reason: failure };
  }
  return { ok: true, target: { name: 'haproxy', port, proc } };
}

async function startMeshlet(
  ctx: StartContext,
  name: TargetName,
  engine: 'h1' | 'uws' | 'node',
  backendPort: number,
  cpu: number | undefined,
  telemetry: MeshletTelemetry,
): Promise<StartOutcome> {
  if (!existsSync(ctx.meshletCli)) {
    return { ok: false, reason: `${ctx.meshletCli} does not exist (meshlet CLI not built yet)` };
  }
  const { outbound, admin, proc, notReady } = await launchMeshlet({
    procs: ctx.procs,
    ports: ctx.ports,
    cli: ctx.meshletCli,
    engine,
    cpu,
    cwd: ctx.repoRoot,
    name,
    configName: 'bench-backend.yaml',
    yaml: meshletServiceEntry(backendPort),
    telemetry,
  });
  if (notReady !== undefined) {
    await ctx.procs.stop(proc);
    return { ok: false, reason: `admin /ready: ${notReady}` };
  }
  // Ready is not enough: the route to the backend must work before we measure it.
  const noRoute = await waitUntil(() => servesBody(outbound), proc, 3000);
  if (noRoute !== undefined) {
    await ctx.procs.stop(proc);
    return { ok: false, reason: `ready, but Host: ${BENCH_HOST} on the outbound port fails: ${noRoute}` };
  }
  return {
    ok: true,
    target: {
      name,
      port: outbound,
      proc,
      ...(telemetry.mode === 'full' ? { telemetry: { admin, accessLogPath: telemetry.accessLogPath } } : {}),
    },
  };
}
