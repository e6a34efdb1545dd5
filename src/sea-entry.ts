/**
 * Entry point of the single executable (`npm run build:binary` bundles this file into one CommonJS
 * script): the uWebSockets.js hook first, then the CLI exactly as `dist/src/cli.js` runs it. Import
 * order matters: ES modules evaluate in import order, so the hook is in place before the CLI starts.
 */
import './sea-uws-hook.ts';
import './cli.ts';
