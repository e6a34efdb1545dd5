/**
 * Files that travel inside the single executable as SEA assets (scripts/build-binary.mjs), for code
 * that needs a file path. Outside a single executable every function here returns null.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as sea from 'node:sea';

/** The asset key of config-examples/demo.yaml. */
export const DEMO_ASSET = 'demo.yaml';

/**
 * Inside the executable: config-examples/demo.yaml written to a private temporary folder (removed at
 * exit), so `meshlet demo` runs without the repository. Null elsewhere.
 */
export function embeddedDemoConfigPath(
  inSea: boolean = sea.isSea(),
  getAsset: (key: string, encoding: string) => string = sea.getAsset,
): string | null {
  if (!inSea) return null;
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-demo-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'demo.yaml');
  writeFileSync(file, getAsset(DEMO_ASSET, 'utf8'));
  return file;
}
