/**
 * Keeps the Dockerfile honest without a Docker engine: parses it, builds the runtime stage's file
 * set into a temp folder the way the image would hold it (the build stage's `npm run build` is the
 * one `npm test` ran; its `npm prune --omit=dev` is the production closure of package-lock.json;
 * its uWebSockets.js pruning keeps only this platform's addon), then runs the image's ENTRYPOINT
 * and CMD from that folder and its HEALTHCHECK against the running process.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import t from 'tap';
import { VERSION } from '../../src/version.ts';
import { startEchoBackend } from '../helpers/backends.ts';
import { serviceEntryYaml } from '../helpers/mesh-yaml.ts';
import { onFreePorts, REPO_ROOT } from '../helpers/spawn-meshlet.ts';

interface Instruction {
  readonly op: string;
  readonly args: string;
}
interface Stage {
  readonly from: string;
  readonly name: string;
  readonly body: Instruction[];
}

/** Dockerfile → stages of instructions (comments dropped, `\` continuations joined). */
export function parseDockerfile(text: string): Stage[] {
  const logical: string[] = [];
  let cur = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (cur === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.startsWith('#')) continue;
    if (line.endsWith('\\')) {
      cur += `${line.slice(0, -1)} `;
      continue;
    }
    logical.push(cur + line);
    cur = '';
  }
  const stages: Stage[] = [];
  for (const l of logical) {
    const m = /^(\S+)\s*(.*)$/.exec(l);
    if (m === null) continue;
    const op = (m[1] ?? '').toUpperCase();
    const args = m[2] ?? '';
    if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      stages.push({ from: f?.[1] ?? args, name: f?.[2] ?? String(stages.length), body: [] });
    } else stages.at(-1)?.body.push({ op, args });
  }
  return stages;
}

/** `["a", "b"]` (exec form) → argv; the shell form is refused: the image has no reason for it. */
function execForm(args: string): string[] {
  const v: unknown = JSON.parse(args);
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw new Error(`not exec form: ${args}`);
  return v as string[];
}

interface Copy {
  readonly from: string | null;
  readonly sources: string[];
  readonly dest: string;
}
function copies(stage: Stage): Copy[] {
  return stage.body
    .filter((i) => i.op === 'COPY')
    .map((i) => {
      const words = i.args.split(/\s+/);
      const flags = words.filter((w) => w.startsWith('--'));
      const paths = words.filter((w) => !w.startsWith('--'));
      const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length) ?? null;
      return { from, sources: paths.slice(0, -1), dest: paths.at(-1) ?? '' };
    });
}

function workdir(stage: Stage): string {
  const w = stage.body.filter((i) => i.op === 'WORKDIR').at(-1)?.args;
  if (w === undefined) throw new Error(`stage ${stage.name} has no WORKDIR`);
  return w.endsWith('/') ? w : `${w}/`;
}

/** Packages `npm prune --omit=dev` keeps: every non-dev entry of package-lock.json's packages. */
function productionClosure(): string[] {
  const lock = JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean; optional?: boolean }>;
  };
  return Object.entries(lock.packages)
    .filter(([path, p]) => path !== '' && p.dev !== true && existsSync(join(REPO_ROOT, path)))
    .map(([path]) => path);
}

const UWS_ADDON = `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;

const dockerfile = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
const stages = parseDockerfile(dockerfile);
const build = stages[0];
const runtime = stages.at(-1);
if (build === undefined || runtime === undefined || stages.length < 2)
  throw new Error('Dockerfile is not multi-stage');
const buildDir = workdir(build);
const appDir = workdir(runtime);
const image = mkdtempSync(join(tmpdir(), 'meshlet-image-'));
t.teardown(() => rmSync(image, { recursive: true, force: true }));

t.test('the Dockerfile: multi-stage, LTS build stage, slim non-root runtime', async (t) => {
  t.match(build.from, /^node:(22|24)-/, 'build stage on a current Node LTS image');
  t.match(runtime.from, /^(node:(22|24)-trixie-slim|gcr\.io\/distroless\/nodejs(22|24)-debian13)/);
  t.match(runtime.from, /trixie|debian13/, 'Debian 13 runtime: uWebSockets.js binaries need glibc >= 2.38');
  const runs = build.body.filter((i) => i.op === 'RUN').map((i) => i.args);
  for (const step of [/\bnpm ci\b/, /\bnpm run build\b/, /\bnpm prune --omit=dev\b/]) {
    t.ok(
      runs.some((r) => step.test(r)),
      `build stage runs ${step.source}`,
    );
  }
  t.ok(
    runs.some(
      (r) =>
        r.includes("find node_modules/uWebSockets.js -name 'uws_*.node'") &&
        r.includes('process.platform + "_" + process.arch + "_" + process.versions.modules'),
    ),
    'build stage keeps only the uWebSockets.js addon of its platform, arch and ABI (as copied below)',
  );
  t.notOk(
    runtime.body.some((i) => i.op === 'RUN' && /\bnpm\b/.test(i.args)),
    'no npm step in the runtime stage',
  );
  const user = runtime.body.filter((i) => i.op === 'USER').at(-1)?.args;
  t.ok(user !== undefined && user !== 'root' && user !== '0', `runtime user ${user} is not root`);
  const exposed = runtime.body
    .filter((i) => i.op === 'EXPOSE')
    .flatMap((i) => i.args.split(/\s+/))
    .sort();
  t.same(exposed, ['15000', '15001', '15006']);
  // Every context source of every stage exists and is not excluded by .dockerignore.
  const ignored = readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  for (const stage of stages) {
    for (const c of copies(stage).filter((c) => c.from === null)) {
      for (const src of c.sources) {
        t.ok(existsSync(join(REPO_ROOT, src)), `context file ${src} exists`);
        t.notOk(
          ignored.some((p) => src === p || src.startsWith(`${p}/`)),
          `${src} is not in .dockerignore`,
        );
      }
    }
  }
});

t.test('the runtime file set: every COPY source exists after the build', async (t) => {
  for (const c of copies(runtime)) {
    for (const src of c.sources) {
      let rel: string;
      if (c.from === null) rel = src;
      else {
        t.equal(c.from, build.name, `${src} comes from the build stage`);
        t.ok(src.startsWith(buildDir), `${src} is under the build WORKDIR ${buildDir}`);
        rel = src.slice(buildDir.length);
      }
      const dest = c.dest.startsWith('/') ? c.dest : appDir + c.dest.replace(/^\.\//, '');
      t.ok(dest.startsWith(appDir), `${dest} lands under ${appDir}`);
      const target = join(image, dest.slice(appDir.length));
      const into = c.dest.endsWith('/') ? join(target, basename(rel)) : target;
      if (rel === 'node_modules') {
        // The build stage's `npm prune --omit=dev` plus its uWebSockets.js pruning.
        const kept = productionClosure();
        t.ok(kept.length > 0, `${kept.length} production packages`);
        for (const pkg of kept) {
          cpSync(join(REPO_ROOT, pkg), join(into, pkg.slice('node_modules/'.length)), {
            recursive: true,
            filter: (p) => !/[/\\]uws_[^/\\]*\.node$/.test(p) || basename(p) === UWS_ADDON,
          });
        }
        t.ok(existsSync(join(into, 'uWebSockets.js', UWS_ADDON)), `${UWS_ADDON} kept`);
        t.notOk(existsSync(join(into, 'typescript')), 'no dev dependency');
        continue;
      }
      t.ok(existsSync(join(REPO_ROOT, rel)), `${rel} exists after npm run build`);
      mkdirSync(dirname(into), { recursive: true });
      cpSync(join(REPO_ROOT, rel), into, { recursive: true });
    }
  }
  t.ok(statSync(join(image, 'dist/src/cli.js')).isFile());
  const pkg = JSON.parse(readFileSync(join(image, 'package.json'), 'utf8')) as { type?: string };
  t.equal(pkg.type, 'module', 'package.json in the image marks dist/ as ES modules');
  t.notOk(existsSync(join(image, 'src')), 'no TypeScript sources in the image');
  t.notOk(existsSync(join(image, 'dist/test')), 'no compiled tests in the image');
});

const entrypoint = execForm(runtime.body.find((i) => i.op === 'ENTRYPOINT')?.args ?? 'null');
const cmd = execForm(runtime.body.find((i) => i.op === 'CMD')?.args ?? 'null');
const healthArgs = /^(?:--\S+\s+)*CMD\s+(\[.*\])$/.exec(
  runtime.body.find((i) => i.op === 'HEALTHCHECK')?.args ?? '',
);
const healthcheck = execForm(healthArgs?.[1] ?? 'null');

/** Runs argv (argv[0] `node` is this Node) in the image folder, as the container would. */
function inImage(argv: readonly string[], env: Record<string, string> = {}): ChildProcess {
  const [bin, ...rest] = argv;
  if (bin !== 'node') throw new Error(`expected node, got ${bin}`);
  // A minimal environment, like a container's: nothing from this checkout leaks in (NODE_PATH…).
  return spawn(process.execPath, rest, {
    cwd: image,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env['PATH'] ?? '', NODE_ENV: 'production', ...env },
  });
}
function complete(proc: ChildProcess): Promise<{ code: number | null; out: string }> {
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((ok) => proc.once('exit', (code) => ok({ code, out })));
}

t.test('ENTRYPOINT runs from the image folder: --version and validate', async (t) => {
  t.same(entrypoint, ['node', 'dist/src/cli.js']);
  t.same(cmd, ['run', '--config', '/etc/meshlet/config.yaml']);
  const v = await complete(inImage([...entrypoint, '--version']));
  t.equal(v.code, 0, v.out);
  t.equal(v.out.trim(), VERSION);
  const ok = await complete(inImage([...entrypoint, 'validate', 'config-examples/demo.yaml']));
  t.equal(ok.code, 0, ok.out);
  const bad = join(image, 'bad.yaml');
  writeFileSync(
    bad,
    'apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: { name: x }\nspec: { hosts: 7 }\n',
  );
  const invalid = await complete(inImage([...entrypoint, 'validate', bad]));
  t.equal(invalid.code, 2, 'an invalid file exits 2');
});

t.test('CMD serves from the image folder; HEALTHCHECK follows /ready', async (t) => {
  t.same(healthcheck.slice(0, 1), ['node']);
  const backend = await startEchoBackend('echo');
  t.teardown(() => backend.close());
  // The config mount /etc/meshlet/config.yaml becomes a temp file; ports 0 instead of 15001/15006/15000.
  const config = join(image, 'mesh.yaml');
  writeFileSync(config, serviceEntryYaml('echo', [{ port: backend.port }]));
  const argv = cmd.map((a) => (a === '/etc/meshlet/config.yaml' ? config : a));
  const proc = inImage([...entrypoint, ...argv, ...onFreePorts('uws')]);
  const exited = complete(proc);
  t.teardown(() => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
  });
  const ready = await new Promise<{ admin: number; outbound: number; engine: string }>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error('not ready in 10 s')), 10_000);
    let buf = '';
    proc.stderr?.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.includes('"meshlet ready"')) continue;
        const rec = JSON.parse(line) as {
          admin: { port: number };
          listeners: Array<{ name: string; port: number; engine: string }>;
        };
        const out = rec.listeners.find((l) => l.name === 'outbound');
        clearTimeout(timer);
        ok({ admin: rec.admin.port, outbound: out?.port ?? 0, engine: out?.engine ?? '' });
      }
    });
    void exited.then((r) => fail(new Error(`exited ${r.code}: ${r.out}`)));
  });
  t.equal(ready.engine, 'uws', 'the pruned uWebSockets.js keeps the addon this Node loads');
  const reply = await new Promise<{ status: number; body: string }>((ok, fail) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: ready.outbound,
        path: '/x',
        headers: { host: 'echo.default.svc.cluster.local' },
      },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => ok({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', fail);
    req.end();
  });
  t.equal(reply.status, 200, 'proxies a request');
  t.match(reply.body, /"name":"echo"/);
  const env = { MESHLET_ADMIN_PORT: String(ready.admin) };
  const healthy = await complete(inImage(healthcheck, env));
  t.equal(healthy.code, 0, `healthy while /ready is 200 ${healthy.out}`);
  proc.kill('SIGTERM');
  t.equal((await exited).code, 0, 'SIGTERM stops cleanly');
  const down = await complete(inImage(healthcheck, env));
  t.equal(down.code, 1, 'unhealthy when the admin port does not answer');
});
