/**
 * Inside the single executable (`npm run build:binary`), `require('uWebSockets.js')` cannot reach
 * node_modules: the addon travels as the SEA asset `uws.node`. This hook answers that one request
 * by writing the asset to a private temporary file (a fresh 0700 folder), loading it with
 * `process.dlopen` and deleting the file and folder at once (the loaded library stays mapped).
 * It runs only when the uws engine is asked for, so the default engine never pays for it. When the
 * addon cannot load, the error says so and the listener falls back to the node engine, as it does
 * outside the executable. Outside a single executable this module does nothing.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import Module from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as sea from 'node:sea';

/** The asset key that scripts/build-binary.mjs gives the addon. */
export const UWS_ASSET = 'uws.node';
const UWS_REQUEST = 'uWebSockets.js';

type Load = (request: string, parent: unknown, isMain: boolean) => unknown;

/** Loads the embedded addon into a fresh module object; throws with the reason when it cannot. */
export function loadEmbeddedUws(getAsset: (key: string) => ArrayBuffer = sea.getAsset): unknown {
  let bytes: ArrayBuffer;
  try {
    bytes = getAsset(UWS_ASSET);
  } catch (err) {
    throw new Error(`the executable carries no uWebSockets.js addon (${errorText(err)})`);
  }
  let dir: string | undefined;
  try {
    dir = mkdtempSync(join(tmpdir(), 'meshlet-uws-'));
    const file = join(dir, 'uws.node');
    writeFileSync(file, new Uint8Array(bytes), { mode: 0o500 });
    const mod = { exports: {} as unknown };
    process.dlopen(mod, file);
    return mod.exports;
  } catch (err) {
    throw new Error(`the uWebSockets.js addon embedded in the executable could not load: ${errorText(err)}`);
  } finally {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  }
}

function errorText(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n')[0] ?? text;
}

/** Routes `require('uWebSockets.js')` to the embedded addon (once; later calls get the same result). */
export function installUwsHook(load: () => unknown = loadEmbeddedUws): void {
  const mod = Module as unknown as { _load: Load };
  const original = mod._load;
  let result: { ok: true; value: unknown } | { ok: false; error: unknown } | undefined;
  mod._load = function hooked(this: unknown, request, parent, isMain) {
    if (request !== UWS_REQUEST) return original.call(this, request, parent, isMain);
    if (result === undefined) {
      try {
        result = { ok: true, value: load() };
      } catch (error) {
        result = { ok: false, error };
      }
    }
    if (result.ok) return result.value;
    throw result.error;
  };
}

if (sea.isSea()) installUwsHook();
