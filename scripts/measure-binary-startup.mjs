#!/usr/bin/env node
/**
 * Start-up time of meshlet: milliseconds from spawn to the "meshlet ready" log line, median of N runs
 * (default 5), for the single executable (dist/meshlet-<platform>-<arch>, `npm run build:binary`)
 * and for `node dist/src/cli.js`, on each engine given (default h1 and uws), ports 0 everywhere.
 *   node scripts/measure-binary-startup.mjs [runs] [engine...]
 * Prints the executable's size first.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const runs = Number(process.argv[2] ?? 5);
const engines = process.argv.length > 3 ? process.argv.slice(3) : ['h1', 'uws'];
const exe = join(root, 'dist', `meshlet-${process.platform}-${process.arch}`);
const dir = mkdtempSync(join(tmpdir(), 'meshlet-startup-'));
const config = join(dir, 'mesh.yaml');
writeFileSync(
  config,
  `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: echo, namespace: default }
spec:
  hosts: [echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 80, name: http, protocol: HTTP }]
  endpoints: [{ address: 127.0.0.1, ports: { http: 9 } }]
`,
);

function once(cmd, args) {
  return new Promise((ok, fail) => {
    const t0 = process.hrtime.bigint();
    const proc = spawn(cmd, args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    let buf = '';
    let ready = false;
    proc.stderr.on('data', (d) => {
      buf += d.toString();
      if (!ready && buf.includes('"meshlet ready"')) {
        ready = true;
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        proc.once('exit', () => ok(ms));
        proc.kill('SIGTERM');
      }
    });
    proc.once('exit', (code) => ready || fail(new Error(`exited with ${code} before ready:\n${buf}`)));
  });
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
process.stdout.write(`${exe}: ${statSync(exe).size} bytes (${(statSync(exe).size / 2 ** 20).toFixed(1)} MiB)\n`);
const ports = ['--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0'];
for (const engine of engines) {
  const run = ['run', '--config', config, ...ports, '--engine', engine];
  for (const [label, cmd, args] of [
    ['executable', exe, run],
    ['node dist/src/cli.js', process.execPath, [join(root, 'dist/src/cli.js'), ...run]],
  ]) {
    const times = [];
    for (let i = 0; i < runs; i++) times.push(await once(cmd, args));
    process.stdout.write(
      `${label} --engine ${engine}: median ${median(times).toFixed(0)} ms to "meshlet ready" (${times.map((x) => x.toFixed(0)).join(', ')})\n`,
    );
  }
}
rmSync(dir, { recursive: true, force: true });
