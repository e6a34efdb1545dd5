import { existsSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import t from 'tap';
import { BODY } from '../../../bench/configs.ts';
import { capture, freePort, httpGet, Processes, waitUntil } from '../../../bench/procs.ts';
import { findExecutable, type StartContext, startBackend, startTarget } from '../../../bench/proxies.ts';
import { runWrk } from '../../../bench/wrk.ts';

const node = process.execPath;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

t.test('cleanup stops the whole process group and removes temp dirs', async (t) => {
  const procs = new Processes();
  const dir = procs.tempDir();
  t.ok(existsSync(dir));
  // The child starts a grandchild in the same group and prints its pid.
  const script = `
    const { spawn } = require('node:child_process');
    const g = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    console.log('grandchild ' + g.pid);
    setInterval(() => {}, 1000);`;
  const p = procs.spawn('parent', node, ['-e', script]);
  const ok = await waitUntil(async () => /grandchild \d+/.test(p.outputTail()), p, 5000);
  t.equal(ok, undefined);
  const grandchild = Number(/grandchild (\d+)/.exec(p.outputTail())?.[1]);
  t.ok(alive(grandchild));
  await procs.cleanup();
  t.ok(p.hasExited());
  await waitUntil(async () => !alive(grandchild), undefined, 3000);
  t.notOk(alive(grandchild), 'grandchild is gone too');
  t.notOk(existsSync(dir), 'temp dir removed');
  t.throws(() => procs.spawn('late', node, ['-e', '']), /cleaning up/);
});

t.test('stop escalates to SIGKILL when SIGTERM is ignored', async (t) => {
  const procs = new Processes();
  const p = procs.spawn('stubborn', node, [
    '-e',
    "process.on('SIGTERM', () => {}); console.log('up'); setInterval(() => {}, 1000)",
  ]);
  await waitUntil(async () => p.outputTail().includes('up'), p, 5000);
  await procs.stop(p, 200);
  t.equal(await p.exited, 'SIGKILL');
  procs.cleanupSync();
});

t.test('waitUntil reports early exit and timeouts', async (t) => {
  const procs = new Processes();
  const p = procs.spawn('dies', node, ['-e', "console.error('boom'); process.exit(3)"]);
  t.match(await waitUntil(async () => false, p, 5000), /exited \(code 3\) during startup; output: boom/);
  t.match(
    await waitUntil(
      async () => {
        throw new Error('nope');
      },
      undefined,
      250,
    ),
    /not ready after 0.25 s \(last: nope\)/,
  );
  const missing = procs.spawn('missing', '/nonexistent/binary', []);
  t.equal(await missing.exited, 'spawn-error');
  await procs.cleanup();
});

t.test('ports, GET and capture', async (t) => {
  const taken = new Set<number>();
  const a = await freePort(taken);
  const b = await freePort(taken);
  t.not(a, b);
  const server = createServer((req, res) => res.end(`host=${req.headers.host}`));
  await new Promise<void>((resolve) => server.listen(a, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const r = await httpGet(a, '/', 'bench-backend', 1000);
  t.equal(r.status, 200);
  t.equal(r.body.toString(), 'host=bench-backend');
  await t.rejects(httpGet(b, '/', 'x', 500));
  t.equal(await capture('/nonexistent/binary', []), undefined);
  t.equal(await capture(node, ['-e', 'console.log("v1")']), 'v1');
  t.equal(findExecutable('definitely-not-a-binary-xyz'), undefined);
  t.ok(findExecutable('sh'));
});

/** A stand-in for the meshlet CLI: `mode` decides how it misbehaves. */
function fakeCli(dir: string, mode: 'ok' | 'no-route' | 'crash'): string {
  const path = join(dir, `fake-cli-${mode}.mjs`);
  writeFileSync(
    path,
    `import { createServer } from 'node:http';
const arg = (f) => Number(process.argv[process.argv.indexOf(f) + 1]);
if (${JSON.stringify(mode)} === 'crash') { console.error('no such command: run'); process.exit(1); }
if (process.argv[2] !== 'run' || !process.argv.includes('--config')) process.exit(9);
// What a bench must not miss: its flags, on stderr (stdout is the access log, which the bench discards).
console.error('argv ' + JSON.stringify(process.argv.slice(3)));
console.log('an access-log line nobody reads');
createServer((q, s) => s.end('ready')).listen(arg('--admin-port'), '127.0.0.1');
createServer((q, s) => {
  if (${JSON.stringify(mode)} === 'no-route' || q.headers.host !== 'bench-backend') { s.statusCode = 503; s.end(); return; }
  s.end(${JSON.stringify(BODY)});
}).listen(arg('--outbound-port'), '127.0.0.1');
`,
  );
  return path;
}

t.test('meshlet targets are skipped with a reason, or started', async (t) => {
  const procs = new Processes();
  t.teardown(() => procs.cleanup());
  const dir = procs.tempDir();
  const ctx = (meshletCli: string): StartContext => ({
    procs,
    pinning: undefined,
    ports: new Set<number>(),
    nginxBin: undefined,
    haproxyBin: undefined,
    meshletCli,
    repoRoot: dir,
  });
  t.match(await startTarget(ctx(join(dir, 'nope.js')), 'meshlet-uws', 1), {
    ok: false,
    reason: /does not exist \(meshlet CLI not built yet\)/,
  });
  t.match(await startTarget(ctx(fakeCli(dir, 'crash')), 'meshlet-uws', 1), {
    ok: false,
    reason: /exited \(code 1\) during startup; output: no such command: run/,
  });
  t.match(await startTarget(ctx(fakeCli(dir, 'no-route')), 'meshlet-node', 1), {
    ok: false,
    reason: /ready, but Host: bench-backend on the outbound port fails: .*503/,
  });
  const ok = await startTarget(ctx(fakeCli(dir, 'ok')), 'meshlet-uws', 1);
  t.match(ok, { ok: true, target: { name: 'meshlet-uws' } });
  const argvOf = (o: typeof ok): string[] => {
    const tail = o.ok ? (o.target.proc?.outputTail() ?? '') : '';
    return JSON.parse(/^argv (.*)$/m.exec(tail)?.[1] ?? '[]') as string[];
  };
  if (ok.ok) {
    t.match(argvOf(ok), ['--config', /bench-backend\.yaml$/, '--outbound-port']);
    t.ok(argvOf(ok).includes('--no-access-log'), 'a plain meshlet target runs without its access log');
    t.notOk(ok.target.proc?.outputTail().includes('access-log line'), 'stdout is not kept');
    t.equal(ok.target.telemetry, undefined);
  }
  t.match(await startTarget(ctx(fakeCli(dir, 'ok')), 'meshlet-h1-telemetry', 1), {
    ok: false,
    reason: 'no OTLP sink to export traces to',
  });
  t.match(
    await startTarget(
      {
        ...ctx(fakeCli(dir, 'ok')),
        otlpSink: () => Promise.reject(new Error('the OTLP sink did not start: exited (code 1)')),
      },
      'meshlet-h1-telemetry',
      1,
    ),
    { ok: false, reason: 'the OTLP sink did not start: exited (code 1)' },
  );
  let sinks = 0;
  const full = await startTarget(
    {
      ...ctx(fakeCli(dir, 'ok')),
      otlpSink: async () => {
        sinks++;
        return {
          port: 9,
          endpoint: 'http://127.0.0.1:9/v1/traces',
          proc: undefined as never,
          counts: async () => ({ posts: 0, spans: 0, bytes: 0, rejected: 0 }),
        };
      },
    },
    'meshlet-h1-telemetry',
    1,
  );
  t.equal(sinks, 1);
  t.match(full, {
    ok: true,
    target: { name: 'meshlet-h1-telemetry', telemetry: { accessLogPath: /access\.log$/ } },
  });
  if (full.ok) {
    const args = argvOf(full);
    t.notOk(args.includes('--no-access-log'));
    t.equal(args[args.indexOf('--access-log') + 1], full.target.telemetry?.accessLogPath);
    t.equal(args[args.indexOf('--tracing-endpoint') + 1], 'http://127.0.0.1:9/v1/traces');
    t.equal(args[args.indexOf('--tracing-sampling') + 1], '1');
    t.equal(args[args.indexOf('--engine') + 1], 'h1');
    t.type(full.target.telemetry?.admin, 'number');
  }
  t.match(await startTarget(ctx('x'), 'nginx', 1), { ok: false, reason: 'nginx is not installed' });
  t.match(await startTarget(ctx('x'), 'haproxy', 1), { ok: false, reason: 'haproxy is not installed' });
  t.match(await startTarget(ctx('x'), 'direct', 4321), { ok: true, target: { port: 4321, proc: undefined } });
});

const nginxBin = findExecutable('nginx');

t.test(
  'nginx backend, nginx and haproxy proxies, one short wrk run',
  { skip: nginxBin === undefined ? 'nginx is not installed' : false },
  async (t) => {
    if (nginxBin === undefined) return;
    const procs = new Processes();
    t.teardown(() => procs.cleanup());
    const ctx: StartContext = {
      procs,
      pinning: undefined,
      ports: new Set<number>(),
      nginxBin,
      haproxyBin: findExecutable('haproxy'),
      meshletCli: '/nonexistent',
      repoRoot: process.cwd(),
    };
    const backend = await startBackend(ctx);
    t.match(backend.kind, /^nginx/);
    const proxied = await startTarget(ctx, 'nginx', backend.port);
    t.match(proxied, { ok: true });
    if (proxied.ok)
      t.equal((await httpGet(proxied.target.port, '/x', 'bench-backend', 1000)).body.toString(), BODY);
    if (ctx.haproxyBin !== undefined) t.match(await startTarget(ctx, 'haproxy', backend.port), { ok: true });
    if (findExecutable('wrk') !== undefined && proxied.ok) {
      const r = await runWrk(procs, {
        url: `http://127.0.0.1:${proxied.target.port}/`,
        host: 'bench-backend',
        connections: 2,
        durationSec: 1,
        cpu: undefined,
      });
      t.ok(r.requestsPerSec > 0);
      t.equal(r.non2xx, 0);
    }
  },
);
