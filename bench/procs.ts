/**
 * Child processes, temp dirs, ports and polling for the benchmark.
 *
 * Every child is spawned in its own process group (`detached: true`) so that a proxy's workers
 * (nginx master + worker) die with it: cleanup signals the whole group by the id we spawned.
 * Cleanup is idempotent and runs on normal exit, on errors and on SIGINT/SIGTERM/SIGHUP.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const TAIL_BYTES = 4096;

export interface Started {
  readonly name: string;
  readonly child: ChildProcess;
  /** Resolves with the exit code (or the signal name) once the process has exited. */
  readonly exited: Promise<string>;
  /** True once the process has exited. */
  hasExited(): boolean;
  /** The last few KB of stdout+stderr, for error messages. */
  outputTail(): string;
}

export interface SpawnOptions {
  /** Pin to this CPU with `taskset -c`; undefined = unpinned. */
  readonly cpu?: number | undefined;
  readonly cwd?: string;
  /**
   * `ignore` sends the child's stdout to /dev/null: for meshlet, whose stdout is the access log and
   * whose own log goes to stderr. A piped stdout is always drained (its tail kept for error
   * messages), so a chatty child never blocks on a full pipe either way.
   */
  readonly stdout?: 'pipe' | 'ignore';
}

/** Everything the benchmark started, so that one call can stop it all. */
export class Processes {
  readonly #running = new Set<Started>();
  readonly #dirs = new Set<string>();
  #cleaned = false;

  /** True once cleanup has begun (Ctrl-C, error or normal end): start nothing new, report nothing. */
  get closed(): boolean {
    return this.#cleaned;
  }

  /** A fresh temp dir, removed on cleanup. World-readable so an nginx worker running as `nobody` can enter it. */
  tempDir(): string {
    const dir = mkdtempSync(join(tmpdir(), 'meshlet-bench-'));
    chmodSync(dir, 0o755);
    this.#dirs.add(dir);
    return dir;
  }

  spawn(name: string, command: string, args: readonly string[], opts: SpawnOptions = {}): Started {
    if (this.#cleaned) throw new Error(`cannot start ${name}: already cleaning up`);
    const [cmd, argv] =
      opts.cpu === undefined ? [command, [...args]] : ['taskset', ['-c', String(opts.cpu), command, ...args]];
    const child = spawn(cmd, argv, {
      detached: true,
      stdio: ['ignore', opts.stdout ?? 'pipe', 'pipe'],
      ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
    });
    let tail = '';
    const keep = (chunk: Buffer): void => {
      tail = (tail + chunk.toString('utf8')).slice(-TAIL_BYTES);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    let done = false;
    const exited = new Promise<string>((resolve) => {
      child.once('error', (err) => {
        done = true;
        tail += `\nspawn error: ${err.message}`;
        resolve('spawn-error');
      });
      child.once('close', (code, signal) => {
        done = true;
        resolve(code === null ? String(signal) : `code ${code}`);
      });
    });
    const started: Started = {
      name,
      child,
      exited,
      hasExited: () => done,
      outputTail: () => tail.trim(),
    };
    this.#running.add(started);
    void exited.then(() => this.#running.delete(started));
    return started;
  }

  /** Stop one process (its whole group): SIGTERM, then SIGKILL after `graceMs`. */
  async stop(p: Started, graceMs = 3000): Promise<void> {
    if (p.hasExited()) return;
    signalGroup(p.child, 'SIGTERM');
    const timer = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), graceMs).unref());
    if ((await Promise.race([p.exited, timer])) === 'timeout') {
      signalGroup(p.child, 'SIGKILL');
      await Promise.race([p.exited, new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
    }
  }

  /** Stop everything and remove the temp dirs. Safe to call more than once. */
  async cleanup(): Promise<void> {
    this.#cleaned = true;
    await Promise.all([...this.#running].map((p) => this.stop(p)));
    this.#removeDirs();
  }

  /** Last resort for `process.on('exit')`: synchronous SIGKILL of whatever is left. */
  cleanupSync(): void {
    this.#cleaned = true;
    for (const p of this.#running) {
      if (!p.hasExited()) signalGroup(p.child, 'SIGKILL');
    }
    this.#removeDirs();
  }

  #removeDirs(): void {
    for (const dir of this.#dirs) {
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        // best effort
      }
      this.#dirs.delete(dir);
    }
  }
}

function signalGroup(child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, sig);
  } catch {
    try {
      child.kill(sig);
    } catch {
      // already gone
    }
  }
}

/** A free TCP port on 127.0.0.1 (bind to port 0, read it, close). Distinct from those in `taken`. */
export async function freePort(taken: Set<number>): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const addr = srv.address();
        const p = typeof addr === 'object' && addr !== null ? addr.port : 0;
        srv.close(() => resolve(p));
      });
    });
    if (port > 0 && !taken.has(port)) {
      taken.add(port);
      return port;
    }
  }
  throw new Error('could not find a free loopback port');
}

export interface HttpResult {
  readonly status: number;
  readonly body: Buffer;
}

/** One GET on loopback with a hard timeout; a fresh connection each time. */
export function httpGet(port: number, path: string, host: string, timeoutMs: number): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, method: 'GET', headers: { host }, agent: false, timeout: timeoutMs },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Poll `probe` until it returns true, the process exits, or `timeoutMs` passes.
 * Returns undefined on success, otherwise the reason.
 */
export async function waitUntil(
  probe: () => Promise<boolean>,
  proc: Started | undefined,
  timeoutMs: number,
): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  let last = 'not ready';
  while (Date.now() < deadline) {
    if (proc?.hasExited()) {
      return `exited (${await proc.exited}) during startup${formatTail(proc.outputTail())}`;
    }
    try {
      if (await probe()) return undefined;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await sleep(100);
  }
  return `not ready after ${timeoutMs / 1000} s (last: ${last})${formatTail(proc?.outputTail() ?? '')}`;
}

export function formatTail(tail: string): string {
  if (tail === '') return '';
  const lines = tail.split('\n').slice(-3).join(' | ');
  return `; output: ${lines}`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Run a short command and return stdout+stderr, or undefined if it cannot be run. */
export function capture(
  command: string,
  args: readonly string[],
  timeoutMs = 5000,
): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(command, [...args], { timeout: timeoutMs }, (err, stdout, stderr) => {
      const text = `${stdout}${stderr}`.trim();
      // Some tools (`wrk -v`) exit non-zero after printing their version.
      if (err !== null && (err as NodeJS.ErrnoException).code === 'ENOENT') resolve(undefined);
      else resolve(text === '' && err !== null ? undefined : text);
    });
  });
}

/** Parse a Linux CPU list such as `0-3,6,8-9`. */
export function parseCpuList(text: string): number[] {
  const out: number[] = [];
  for (const part of text.trim().split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (m === null) continue;
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    for (let c = lo; c <= hi; c++) out.push(c);
  }
  return out;
}
