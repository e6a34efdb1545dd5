import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Backend, type Echo, startEchoBackend } from './backends.ts';
import { type Meshlet, spawnMeshlet } from './spawn-meshlet.ts';

/** Small pieces shared by the zero-trust end-to-end tests. */

export interface ReadyListener {
  readonly name: string;
  readonly port: number;
  readonly engine: string;
}

/** The listeners the `meshlet ready` log line announced (node mode has one inbound per workload). */
export function readyListeners(mesh: Meshlet): readonly ReadyListener[] {
  for (const line of mesh.logs) {
    try {
      const rec = JSON.parse(line) as { msg?: string; listeners?: ReadyListener[] };
      if (rec.msg === 'meshlet ready' && rec.listeners !== undefined) return rec.listeners;
    } catch {
      // not JSON
    }
  }
  return [];
}

/** The engine serving the listener on `port`, '' when none was announced. */
export function engineOf(mesh: Meshlet, port: number): string {
  return readyListeners(mesh).find((l) => l.port === port)?.engine ?? '';
}

/** A fresh temp dir removed at teardown. */
export function tempDir(t: Teardowns, prefix = 'meshlet-zt-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The echo of an answer's body, or null when the body is not an echo (a local reply). */
export function echoOf(text: string): Echo | null {
  try {
    const v = JSON.parse(text) as Echo;
    return typeof v === 'object' && v !== null && typeof v.name === 'string' ? v : null;
  } catch {
    return null;
  }
}

/** The `x-forwarded-client-cert` header an echo backend received, '' when none. */
export function xfccOf(echo: Echo | null): string {
  const v = echo?.headers['x-forwarded-client-cert'];
  return Array.isArray(v) ? v.join(',') : (v ?? '');
}

/** Polls `probe` every 50 ms until it returns true or `timeoutMs` passed; returns the last result. */
export async function eventually(probe: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Waits until `/ready` answers 200: the `meshlet ready` log line means the listeners are up, while
 * a proxy that issues its certificate in memory may still be issuing it (and `/ready` says 503).
 */
export async function untilReady(mesh: Meshlet, timeoutMs = 10_000): Promise<void> {
  const ok = await eventually(async () => {
    try {
      const res = await fetch(mesh.admin('/ready'));
      await res.text();
      return res.status === 200;
    } catch {
      return false;
    }
  }, timeoutMs);
  if (!ok) throw new Error(`/ready is not 200 after ${timeoutMs} ms:\n${mesh.logs.slice(-5).join('\n')}`);
}

/** What the helpers below need of a tap test: somewhere to register clean-up. */
export interface Teardowns {
  teardown(fn: () => unknown): void;
}

/**
 * `spawnMeshlet`, stopped at the end of `t` (registered at once, so that a later failure in the
 * same test never leaves the process running), then `untilReady`: a proxy that holds its
 * certificate.
 */
export async function spawnReady(
  t: Teardowns,
  yaml: string,
  opts: Parameters<typeof spawnMeshlet>[1] = {},
): Promise<Meshlet> {
  const mesh = await spawnMeshlet(yaml, opts);
  t.teardown(() => mesh.stop());
  await untilReady(mesh);
  return mesh;
}

/** An echo backend closed at the end of `t`. */
export async function echoApp(t: Teardowns, name: string): Promise<Backend> {
  const app = await startEchoBackend(name);
  t.teardown(() => app.close());
  return app;
}
