#!/usr/bin/env node
/**
 * `npm run build:binary`: dist/meshlet-linux-x64 (name from the platform and arch of this node), one
 * file that runs without Node or node_modules, built offline from the local node (Node's single
 * executable applications):
 *   1. esbuild bundles dist/src/sea-entry.js (run `npm run build` first; the npm script does) and
 *      every dependency into one CommonJS script, the only kind a single executable runs;
 *   2. `node --experimental-sea-config` turns it into a blob, with the uWebSockets.js addon for this
 *      node's platform/arch/ABI as the asset `uws.node` (src/sea-uws-hook.ts loads it from there);
 *   3. postject injects the blob into a copy of process.execPath.
 * Prints the output path, its size and the time taken.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { inject } from 'postject';

const started = Date.now();
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const entry = join(root, 'dist/src/sea-entry.js');
if (!existsSync(entry)) throw new Error(`${entry} is missing: run npm run build first`);
const work = join(root, 'dist/sea');
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });

const bundle = join(work, 'meshlet.cjs');
await build({
  entryPoints: [entry],
  outfile: bundle,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: `node${process.versions.node.split('.')[0]}`,
  // ESM code reads import.meta.url (createRequire, paths); in the executable it is the executable's URL.
  define: { 'import.meta.url': '__meshlet_import_meta_url' },
  banner: { js: 'var __meshlet_import_meta_url = require("node:url").pathToFileURL(__filename).href;' },
  // Loaded at run time through the hook (src/sea-uws-hook.ts), never bundled.
  external: ['uWebSockets.js'],
  logLevel: 'warning',
  legalComments: 'none',
});

const addonName = `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
const addon = join(root, 'node_modules/uWebSockets.js', addonName);
if (!existsSync(addon)) throw new Error(`${addon} is missing: no uWebSockets.js build for this node`);

const blob = join(work, 'meshlet.blob');
const seaConfig = join(work, 'sea-config.json');
writeFileSync(
  seaConfig,
  JSON.stringify({
    main: bundle,
    output: blob,
    disableExperimentalSEAWarning: true,
    useCodeCache: true,
    // Keys: src/sea-uws-hook.ts (UWS_ASSET) and src/sea-assets.ts (DEMO_ASSET).
    assets: { 'uws.node': addon, 'demo.yaml': join(root, 'config-examples/demo.yaml') },
  }),
);
execFileSync(process.execPath, ['--experimental-sea-config', seaConfig], { stdio: 'inherit' });

const out = join(root, 'dist', `meshlet-${process.platform}-${process.arch}`);
rmSync(out, { force: true });
copyFileSync(process.execPath, out);
chmodSync(out, 0o755);
await inject(out, 'NODE_SEA_BLOB', readFileSync(blob), {
  sentinelFuse: 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2',
});
rmSync(work, { recursive: true, force: true });

const mib = (statSync(out).size / 2 ** 20).toFixed(1);
process.stdout.write(`${out}: ${mib} MiB, built in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
