import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Echo } from './backends.ts';
import type { Meshlet } from './spawn-meshlet.ts';

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
export function tempDir(t: { teardown(fn: () => void): void }, prefix = 'meshlet-zt-'): string {
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
