import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseReadyLine } from '../../bench/ready-line.ts';

/** The repository root, from this file's location (test/helpers/). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** The built CLI: e2e tests run the real process, built by `npm test` before tap starts. */
export const CLI = join(REPO_ROOT, 'dist/src/cli.js');
/** shared/ sits beside the repository (in CI too). */
export const SHARED = resolve(REPO_ROOT, '../shared');

export interface Meshlet {
  readonly proc: ChildProcess;
  readonly outboundPort: number;
  readonly inboundPort: number;
  readonly adminPort: number;
  readonly engine: string;
  readonly configPath: string;
  /** Every stderr line so far. */
  readonly logs: string[];
  /** Every stdout line so far (the access log). */
  readonly stdout: string[];
  /** Resolves with the exit code once the process ended. */
  readonly exited: Promise<number | null>;
  url(path?: string): string;
  admin(path: string): string;
  /** Replace the configuration file's contents. */
  writeConfig(yaml: string): void;
  /** SIGTERM (or the given signal) and wait for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface SpawnOptions {
  readonly engine?: 'h1' | 'uws' | 'node';
  readonly args?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
}

/**
 * The `run` flags every test start uses: all three ports 0 (the chosen ones are in the "meshlet
 * ready" log line) and the listener engine.
 */
export function onFreePorts(engine: string): string[] {
  return ['--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--engine', engine];
}

/** Writes `yaml` to a temp file and starts `meshlet run` on free ports; resolves when it logs "meshlet ready". */
export async function spawnMeshlet(yaml: string, opts: SpawnOptions = {}): Promise<Meshlet> {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-e2e-'));
  const configPath = join(dir, 'mesh.yaml');
  writeFileSync(configPath, yaml);
  const proc = spawn(
    process.execPath,
    [CLI, 'run', '--config', configPath, ...onFreePorts(opts.engine ?? 'uws'), ...(opts.args ?? [])],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } },
  );
  const logs: string[] = [];
  const stdout: string[] = [];
  let outBuf = '';
  proc.stdout?.on('data', (d: Buffer) => {
    outBuf += d.toString();
    const lines = outBuf.split('\n');
    outBuf = lines.pop() ?? '';
    stdout.push(...lines);
  });
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const ready = new Promise<{ outbound: number; inbound: number; admin: number; engine: string }>(
    (ok, fail) => {
      let buf = '';
      const timer = setTimeout(
        () => fail(new Error(`meshlet not ready after 15 s:\n${logs.join('\n')}`)),
        15_000,
      );
      proc.stderr?.on('data', (d: Buffer) => {
        buf += d.toString();
        let nl = buf.indexOf('\n');
        while (nl >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          logs.push(line);
          const ready = parseReadyLine(line);
          if (ready !== null) {
            clearTimeout(timer);
            const out = ready.listeners.find((l) => l.name === 'outbound');
            const inb = ready.listeners.find((l) => l.name === 'inbound');
            ok({
              outbound: out?.port ?? 0,
              inbound: inb?.port ?? 0,
              admin: ready.admin,
              engine: out?.engine ?? '',
            });
          }
          nl = buf.indexOf('\n');
        }
      });
      void exited.then((code) => {
        clearTimeout(timer);
        fail(new Error(`meshlet exited with ${code} before ready:\n${logs.join('\n')}`));
      });
    },
  );
  const ports = await ready;
  return {
    proc,
    outboundPort: ports.outbound,
    inboundPort: ports.inbound,
    adminPort: ports.admin,
    engine: ports.engine,
    configPath,
    logs,
    stdout,
    exited,
    url: (path = '/') => `http://127.0.0.1:${ports.outbound}${path}`,
    admin: (path) => `http://127.0.0.1:${ports.admin}${path}`,
    writeConfig: (text) => writeFileSync(configPath, text),
    stop: async (signal = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
}

/** Runs the CLI to completion (for `validate`, `--help`…). */
export function runCli(
  args: readonly string[],
): Promise<{ readonly code: number | null; readonly stdout: string; readonly stderr: string }> {
  return new Promise((ok) => {
    const proc = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    proc.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    proc.once('exit', (code) => ok({ code, stdout, stderr }));
  });
}
