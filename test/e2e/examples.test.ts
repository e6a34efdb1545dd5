import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import t from 'tap';
import { startEchoBackend } from '../helpers/backends.ts';
import { EXAMPLES_DIR, localizeExample } from '../helpers/example-yaml.ts';
import { REPO_ROOT, runCli, spawnMeshlet } from '../helpers/spawn-meshlet.ts';

const USE_CASES = [
  'canary.yaml',
  'ab-header-routing.yaml',
  'retries-timeouts.yaml',
  'circuit-breaker.yaml',
  'fault-injection.yaml',
  'sidecar-mtls.yaml',
  'node-mode.yaml',
];

interface Reply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

function get(port: number, headers: Record<string, string>, agent: Agent): Promise<Reply> {
  return new Promise((ok, fail) => {
    const req = request({ host: '127.0.0.1', port, path: '/reviews/1', headers, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => ok({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', fail);
    req.end();
  });
}

t.test('every file in config-examples/ passes meshlet validate', async (t) => {
  const files = readdirSync(EXAMPLES_DIR).filter((f) => /\.ya?ml$/.test(f));
  for (const f of USE_CASES) t.ok(files.includes(f), `${f} exists`);
  const results = await Promise.all(files.map((f) => runCli(['validate', join(EXAMPLES_DIR, f)])));
  files.forEach((f, i) => {
    const r = results[i];
    t.equal(r?.code, 0, `${f}: ${r?.stdout}${r?.stderr}`);
    t.match(r?.stdout ?? '', /valid: \d+ resource\(s\), 0 error\(s\), 0 warning\(s\)/, `${f} has no warning`);
  });
});

t.test('canary.yaml end to end: 1000 requests split 90/10', async (t) => {
  const v1 = await startEchoBackend('v1');
  const v2 = await startEchoBackend('v2');
  const mesh = await spawnMeshlet(
    localizeExample('canary.yaml', { '127.0.0.11': v1.port, '127.0.0.12': v2.port }),
    { engine: 'h1' },
  );
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  t.teardown(async () => {
    agent.destroy();
    await mesh.stop();
    await v1.close();
    await v2.close();
  });
  const N = 1000;
  let next = 0;
  const statuses: number[] = [];
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < N) {
        next++;
        const r = await get(mesh.outboundPort, { host: 'reviews:9080' }, agent);
        statuses.push(r.status);
      }
    }),
  );
  t.equal(statuses.length, N);
  t.equal(statuses.filter((s) => s !== 200).length, 0, 'no failed request');
  t.equal(v1.count + v2.count, N, 'every request reached a backend once');
  // binomial sigma at 10 % over 1000 is 9.5 requests; 45 is 4.7 sigma
  t.ok(Math.abs(v2.count - 100) <= 45, `v2 got ${v2.count} of ${N} (target 100 ± 45)`);
});

t.test('fault-injection.yaml end to end: delay, abort, partial abort, untouched', async (t) => {
  const v1 = await startEchoBackend('v1');
  const mesh = await spawnMeshlet(localizeExample('fault-injection.yaml', { '127.0.0.11': v1.port }), {
    engine: 'h1',
  });
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  t.teardown(async () => {
    agent.destroy();
    await mesh.stop();
    await v1.close();
  });
  const host = 'reviews:9080';

  const plain = await get(mesh.outboundPort, { host }, agent);
  t.equal(plain.status, 200);
  t.equal(plain.headers['x-backend'], 'v1');

  const before = v1.count;
  const abort = await get(mesh.outboundPort, { host, 'x-fault': 'abort' }, agent);
  t.equal(abort.status, 503);
  t.equal(abort.body, 'fault filter abort\n');
  t.equal(abort.headers['x-meshlet-flags'], 'FI');
  t.equal(v1.count, before, 'the backend never saw the aborted request');

  const started = performance.now();
  const delayed = await get(mesh.outboundPort, { host, 'x-fault': 'delay' }, agent);
  const elapsed = performance.now() - started;
  t.equal(delayed.status, 200);
  t.ok(elapsed >= 950 && elapsed < 3000, `delayed by ~1 s (${elapsed.toFixed(0)} ms)`);
  const quick = performance.now();
  await get(mesh.outboundPort, { host }, agent);
  t.ok(performance.now() - quick < 500, 'a request without x-fault is not delayed');

  const flaky = await Promise.all(
    Array.from({ length: 200 }, () => get(mesh.outboundPort, { host, 'x-fault': 'flaky' }, agent)),
  );
  const aborted = flaky.filter((r) => r.status === 500).length;
  t.equal(flaky.filter((r) => r.status !== 500 && r.status !== 200).length, 0, 'only 200 or 500');
  // binomial sigma at 50 % over 200 is 7.1; 35 is 4.9 sigma
  t.ok(Math.abs(aborted - 100) <= 35, `flaky: ${aborted} of 200 aborted with 500 (target 100 ± 35)`);
});

t.test('the canary walkthrough (npm run canary -- --quick): four steps, 0 failed requests', async (t) => {
  const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((ok) => {
    const child = execFile(
      process.execPath,
      [join(REPO_ROOT, 'dist/bench/canary.js'), '--quick', '--requests', '1000'],
      { timeout: 30_000 },
      (_err, stdout, stderr) => ok({ code: child.exitCode, stdout, stderr }),
    );
  });
  t.equal(r.code, 0, `exit 0\n${r.stdout}${r.stderr}`);
  const steps = [
    ...r.stdout.matchAll(/^step (\d)\/4: v2 target +(\d+) % +observed +([\d.]+) % .* failed (\d+) /gm),
  ];
  t.same(
    steps.map((m) => [m[1], m[2]]),
    [
      ['1', '1'],
      ['2', '10'],
      ['3', '50'],
      ['4', '100'],
    ],
    'the four steps are printed in order',
  );
  for (const m of steps) t.equal(m[4], '0', `step ${m[1]}: 0 failed`);
  t.equal(steps[3]?.[3], '100.00', 'at the last step every request reaches v2');
  t.match(r.stdout, /^failed requests: 0$/m);
});
