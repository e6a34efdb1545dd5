import { spawn } from 'node:child_process';
import t from 'tap';
import { Agent, request } from 'undici';
import { CLI } from '../helpers/spawn-meshlet.ts';

/** `npm start` runs `meshlet demo`: the curl lines it prints must show what the README says. */

t.test('the demo mesh answers the README curl lines', async (t) => {
  const proc = spawn(process.execPath, [CLI, 'demo', '--outbound-port', '0', '--admin-port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
  t.teardown(async () => {
    proc.kill('SIGTERM');
    await exited;
  });
  let out = '';
  let err = '';
  proc.stderr.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const banner = await new Promise<string>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`no demo banner after 15 s\n${out}\n${err}`)), 15_000);
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Ctrl-C stops it.')) {
        clearTimeout(timer);
        ok(out);
      }
    });
    void exited.then((code) => fail(new Error(`demo exited with ${code}\n${out}\n${err}`)));
  });
  const port = Number(/outbound listener on 127\.0\.0\.1:(\d+) \(h1 engine\)/.exec(banner)?.[1]);
  const admin = Number(/admin on 127\.0\.0\.1:(\d+)/.exec(banner)?.[1]);
  t.ok(port > 0 && admin > 0, 'banner names the ports and the default engine');
  t.match(banner, /curl -s -H 'Host: reviews:9080' -H 'end-user: jason'/);

  const agent = new Agent();
  t.teardown(() => agent.close());
  const get = async (headers: Record<string, string>): Promise<string> =>
    (await request(`http://127.0.0.1:${port}/reviews/1`, { dispatcher: agent, headers })).body.text();

  const counts: Record<string, number> = {};
  for (let i = 0; i < 100; i++) {
    const v = /reviews (v\d)/.exec(await get({ host: 'reviews:9080' }))?.[1] ?? '?';
    counts[v] = (counts[v] ?? 0) + 1;
  }
  t.same(Object.keys(counts).sort(), ['v1', 'v3'], 'the split reaches v1 and v3 only');
  t.ok((counts['v1'] ?? 0) > 60, `about 80 % v1 (${counts['v1']} of 100)`);
  for (let i = 0; i < 5; i++)
    t.match(await get({ host: 'reviews:9080', 'end-user': 'jason' }), /^reviews v2 /);
  const proxied = await agent.request({
    origin: `http://127.0.0.1:${port}`,
    path: 'http://reviews:9080/reviews/2',
    method: 'GET',
  });
  t.match(await proxied.body.text(), /^reviews v[13] .* GET \/reviews\/2/, 'absolute-form (curl -x) works');
  const metrics = await (
    await request(`http://127.0.0.1:${admin}/metrics`, { dispatcher: agent })
  ).body.text();
  t.match(metrics, /istio_requests_total\{reporter="source",source_workload="productpage"/);
});
