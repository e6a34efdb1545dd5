import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { embeddedDemoConfigPath } from '../../src/sea-assets.ts';
import { installUwsHook, loadEmbeddedUws } from '../../src/sea-uws-hook.ts';
import { VERSION } from '../../src/version.ts';
import { type Backend, startEchoBackend } from '../helpers/backends.ts';
import { serviceEntryYaml } from '../helpers/mesh-yaml.ts';
import { onFreePorts, REPO_ROOT } from '../helpers/spawn-meshlet.ts';

/**
 * The single executable (`npm run build:binary`): built here from the fresh `dist/` that `npm test`
 * compiles (the bundling and injection step alone, ~3 s), copied alone into an empty folder and run
 * there with an empty environment, so neither Node nor node_modules can help it.
 */

const BINARY_NAME = `meshlet-${process.platform}-${process.arch}`;

t.setTimeout(90_000);

const dir = mkdtempSync(join(tmpdir(), 'meshlet-binary-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

execFileSync(process.execPath, [join(REPO_ROOT, 'scripts/build-binary.mjs')], {
  cwd: REPO_ROOT,
  stdio: ['ignore', 'ignore', 'inherit'],
  timeout: 60_000,
});
const exe = join(dir, BINARY_NAME);
copyFileSync(join(REPO_ROOT, 'dist', BINARY_NAME), exe);
t.equal(readdirSync(dir).length, 1, 'the executable is alone in its folder');
t.ok(statSync(exe).size > 0);

/** Runs the executable in `dir` with an empty environment (no PATH, no NODE_PATH). */
function exec(args: readonly string[], env: Record<string, string> = {}): ReturnType<typeof spawnSync> {
  return spawnSync(exe, args, { cwd: dir, env, encoding: 'utf8', timeout: 15_000 });
}

interface Ready {
  readonly proc: ChildProcess;
  readonly outbound: number;
  readonly engine: string;
  readonly logs: string[];
  stop(): Promise<number | null>;
}

/** `run` on port 0 everywhere; resolves on the "meshlet ready" line with the chosen ports. */
function run(config: string, engine: string, env: Record<string, string>): Promise<Ready> {
  const proc = spawn(exe, ['run', '--config', config, ...onFreePorts(engine)], {
    cwd: dir,
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<number | null>((ok) => proc.once('exit', (code) => ok(code)));
  const stop = async (): Promise<number | null> => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    const code = await exited;
    clearTimeout(timer);
    return code;
  };
  const logs: string[] = [];
  return new Promise<Ready>((ok, fail) => {
    const timer = setTimeout(() => {
      void stop();
      fail(new Error(`not ready after 15 s:\n${logs.join('\n')}`));
    }, 15_000);
    let buf = '';
    proc.stderr?.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const line of lines) {
        logs.push(line);
        if (!line.includes('"meshlet ready"')) continue;
        const rec = JSON.parse(line) as { listeners: Array<{ name: string; port: number; engine: string }> };
        const out = rec.listeners.find((l) => l.name === 'outbound');
        clearTimeout(timer);
        ok({ proc, outbound: out?.port ?? 0, engine: out?.engine ?? '', logs, stop });
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      fail(new Error(`exited with ${code} before ready:\n${logs.join('\n')}`));
    });
  });
}

let backend: Backend;
t.before(async () => {
  backend = await startEchoBackend('echo');
});
t.teardown(() => backend.close());

t.test('--version and validate', async (t) => {
  const v = exec(['--version']);
  t.equal(v.status, 0);
  t.equal(String(v.stdout).trim(), VERSION);

  writeFileSync(join(dir, 'mesh.yaml'), serviceEntryYaml('echo', [{ port: backend.port }]));
  const ok = exec(['validate', 'mesh.yaml']);
  t.equal(ok.status, 0, String(ok.stderr));
  t.match(String(ok.stdout), /mesh\.yaml: valid: 1 resource\(s\), 0 error\(s\)/);

  writeFileSync(
    join(dir, 'bad.yaml'),
    'apiVersion: networking.istio.io/v1\nkind: VirtualService\nspec: { http: 7 }\n',
  );
  const bad = exec(['validate', 'bad.yaml']);
  t.equal(bad.status, 2);
  t.match(String(bad.stdout) + String(bad.stderr), /bad\.yaml:\d+:\d+/);
});

t.test('run proxies on the uws engine, its addon loaded from inside the executable', async (t) => {
  const privateTmp = join(dir, 'tmp');
  mkdirSync(privateTmp);
  const m = await run('mesh.yaml', 'uws', { TMPDIR: privateTmp });
  t.teardown(() => m.stop());
  t.equal(m.engine, 'uws');
  const res = await request(`http://127.0.0.1:${m.outbound}/hello`, { headers: { host: 'echo' } });
  t.equal(res.statusCode, 200);
  t.equal(res.headers['x-backend'], 'echo');
  const echo = (await res.body.json()) as { url: string };
  t.equal(echo.url, '/hello');
  t.same(readdirSync(privateTmp), [], 'the extracted addon is deleted once loaded');
  t.equal(await m.stop(), 0);
});

t.test('where the addon cannot load, the executable serves with node and says why', async (t) => {
  const m = await run('mesh.yaml', 'uws', { TMPDIR: join(dir, 'does-not-exist') });
  t.teardown(() => m.stop());
  t.equal(m.engine, 'node');
  t.match(m.logs.join('\n'), /engine uws is not available.*embedded in the executable could not load/);
  const res = await request(`http://127.0.0.1:${m.outbound}/x`, { headers: { host: 'echo' } });
  t.equal(res.statusCode, 200);
  await res.body.dump();
  t.equal(await m.stop(), 0);
});

t.test('the hook pieces, in this process', async (t) => {
  const scratch = join(dir, 'hook-tmp');
  mkdirSync(scratch);
  const savedTmp = process.env['TMPDIR'];
  process.env['TMPDIR'] = scratch;
  t.teardown(() => {
    if (savedTmp === undefined) delete process.env['TMPDIR'];
    else process.env['TMPDIR'] = savedTmp;
  });

  t.throws(
    () =>
      loadEmbeddedUws(() => {
        throw new Error('no asset');
      }),
    /carries no uWebSockets\.js addon \(no asset\)/,
  );
  t.throws(
    () => loadEmbeddedUws(() => new TextEncoder().encode('not a shared object').buffer as ArrayBuffer),
    /embedded in the executable could not load/,
  );
  const addonName = `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
  const bytes = readFileSync(join(REPO_ROOT, 'node_modules/uWebSockets.js', addonName));
  const uws = loadEmbeddedUws(() => bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  t.type((uws as Record<string, unknown>)['App'], 'function');
  t.same(readdirSync(scratch), [], 'nothing left in the temp folder');

  const req = createRequire(import.meta.url);
  let calls = 0;
  const fake = { fake: true };
  installUwsHook(() => {
    calls++;
    return fake;
  });
  t.equal(req('uWebSockets.js'), fake);
  t.equal(req('uWebSockets.js'), fake);
  t.equal(calls, 1, 'loaded once');
  t.equal(req('node:path'), req('node:path'), 'other requests pass through');
  installUwsHook(() => {
    throw new Error('cannot');
  });
  t.throws(() => req('uWebSockets.js'), /cannot/);
  t.throws(() => req('uWebSockets.js'), /cannot/, 'the failure is kept');

  t.equal(embeddedDemoConfigPath(false), null);
  const demo = embeddedDemoConfigPath(true, (key) => `# ${key}\n`);
  t.ok(demo?.startsWith(scratch));
  t.equal(readFileSync(demo ?? '', 'utf8'), '# demo.yaml\n');
});
