import t from 'tap';
import { Agent } from 'undici';
import {
  always,
  type FaultBackend,
  type FaultEcho,
  failFirst,
  hang,
  settled,
  startFaultBackend,
} from '../helpers/fault-backends.ts';
import {
  adminText,
  call,
  clusterOf,
  hasFlag,
  metricSum,
  requestsTotal,
  sleep,
} from '../helpers/mesh-client.ts';
import { serviceEntryYaml } from '../helpers/mesh-yaml.ts';
import { spawnMeshlet } from '../helpers/spawn-meshlet.ts';

/**
 * Retries, per-try and route timeouts and the replay buffer (spec §2.4 `timeout`, §2.5), through
 * the real process against real backends that fail on purpose, once per listener engine.
 */

interface Backends {
  readonly flaky: FaultBackend;
  readonly broken: FaultBackend;
  readonly hung: FaultBackend;
  readonly hungRoute: FaultBackend;
  readonly bigSink: FaultBackend;
  readonly smallSink: FaultBackend;
}

function vs(host: string, retries: string, extra = ''): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ${host} }
spec:
  hosts: [${host}]
  http:
    - route: [{ destination: { host: ${host} } }]
      retries: ${retries}${extra}
`;
}

function meshYaml(b: Backends): string {
  const retry5xx = '{ attempts: 3, retryOn: 5xx }';
  return [
    serviceEntryYaml('flaky', [{ port: b.flaky.port }]),
    vs('flaky', retry5xx),
    serviceEntryYaml('broken', [{ port: b.broken.port }]),
    vs('broken', retry5xx),
    serviceEntryYaml('hung', [{ port: b.hung.port }]),
    vs('hung', '{ attempts: 2, perTryTimeout: 100ms, retryOn: 5xx }'),
    serviceEntryYaml('hung-route', [{ port: b.hungRoute.port }]),
    vs('hung-route', '{ attempts: 2, perTryTimeout: 100ms, retryOn: 5xx }', '\n      timeout: 250ms'),
    serviceEntryYaml('big-sink', [{ port: b.bigSink.port }]),
    vs('big-sink', retry5xx),
    serviceEntryYaml('small-sink', [{ port: b.smallSink.port }]),
    vs('small-sink', retry5xx),
  ].join('---\n');
}

/** The access-log lines (JSON) written so far for `authority`. */
function accessLines(stdout: readonly string[], authority: string): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const line of stdout) {
    try {
      const rec = JSON.parse(line) as Record<string, unknown>;
      if (rec['authority'] === authority) out.push(rec);
    } catch {
      // not an access-log line
    }
  }
  return out;
}

for (const engine of ['h1', 'uws', 'node'] as const) {
  t.test(`retries and timeouts through the ${engine} engine`, async (t) => {
    const b: Backends = {
      flaky: await startFaultBackend('flaky', failFirst(2, 503)),
      broken: await startFaultBackend('broken', always(503)),
      hung: await startFaultBackend('hung', hang),
      hungRoute: await startFaultBackend('hung-route', hang),
      bigSink: await startFaultBackend('big-sink', always(503)),
      smallSink: await startFaultBackend('small-sink', always(503)),
    };
    const mesh = await spawnMeshlet(meshYaml(b), { engine, args: ['--access-log'] });
    const agent = new Agent({ connections: 8 });
    t.teardown(async () => {
      await agent.close();
      await mesh.stop();
      for (const backend of Object.values(b)) await backend.close();
    });
    t.equal(mesh.engine, engine, `the ${engine} engine serves the outbound listener`);

    t.test('503 twice then 200 with attempts 3 on 5xx: the client gets the 200', async (t) => {
      const r = await call(mesh, agent, '/once', { host: 'flaky' });
      t.equal(r.status, 200, `client status (body: ${r.text.slice(0, 120)})`);
      t.equal(b.flaky.count, 3, 'the upstream saw the first try and two retries');
      if (r.status === 200) t.equal((JSON.parse(r.text) as FaultEcho).n, 3, 'the answer is the third try');
    });

    t.test('always 503 with attempts 3: four tries, the 503 reaches the client, flagged URX', async (t) => {
      const r = await call(mesh, agent, '/always', { host: 'broken' });
      t.equal(r.status, 503);
      t.equal(b.broken.count, 4, '1 + attempts tries');
      t.match(r.text, /broken says 503/, "the upstream's own 503 body, not a local reply");
      const metrics = await adminText(mesh, agent, '/metrics');
      t.equal(
        requestsTotal(
          metrics,
          (l) =>
            l['destination_service_name'] === 'broken' &&
            l['response_code'] === '503' &&
            hasFlag(l['response_flags'], 'URX'),
        ),
        1,
        'istio_requests_total{response_code="503", response_flags∋URX} for broken',
      );
      t.equal(
        metricSum(metrics, 'meshlet_upstream_retries_total', clusterOf('broken.default.svc.cluster.local')),
        3,
        'meshlet_upstream_retries_total counts the three retries',
      );
      await sleep(50);
      const lines = accessLines(mesh.stdout, 'broken');
      t.equal(lines.length, 1, 'one access-log line');
      t.ok(
        hasFlag(String(lines[0]?.['response_flags']), 'URX'),
        `access log flags ${lines[0]?.['response_flags']}`,
      );
    });

    t.test(
      'a hanging upstream with perTryTimeout 100ms and attempts 2: three tries, then 504 UT',
      async (t) => {
        const r = await call(mesh, agent, '/hang', { host: 'hung' });
        t.equal(r.status, 504);
        t.ok(hasFlag(r.flags, 'UT'), `flags ${r.flags}`);
        t.equal(await settled(() => b.hung.count, 150, 1000), 3, 'each try timed out and was retried');
        t.ok(r.ms >= 290, `three per-try timeouts of 100 ms elapsed first (${r.ms.toFixed(0)} ms)`);
        t.ok(r.ms < 1000, `and not much more (${r.ms.toFixed(0)} ms)`);
      },
    );

    t.test('the route timeout (250ms) covers every try: 504 UT at ~250 ms', async (t) => {
      const r = await call(mesh, agent, '/hang', { host: 'hung-route' });
      t.equal(r.status, 504);
      t.ok(hasFlag(r.flags, 'UT'), `flags ${r.flags}`);
      t.match(r.text, /upstream request timeout/);
      t.ok(r.ms >= 240 && r.ms < 550, `answered at the route timeout (${r.ms.toFixed(0)} ms)`);
      const count = await settled(() => b.hungRoute.count, 150, 1000);
      t.ok(count >= 2 && count <= 3, `tries made before the deadline: ${count}`);
    });

    t.test('a 1 MiB POST is not replayed; a 1 KiB POST is, whole, each time', async (t) => {
      const big = Buffer.alloc(1024 * 1024, 0x61);
      const r = await call(mesh, agent, '/upload', { host: 'big-sink', method: 'POST', body: big });
      t.equal(r.status, 503);
      t.equal(await settled(() => b.bigSink.seen.length, 200, 1500), 1, 'the upstream saw exactly one copy');
      t.equal(b.bigSink.count, 1);
      t.equal(b.bigSink.seen[0]?.bodyLength, big.length, 'and that copy was whole');

      const small = Buffer.alloc(1024, 0x62);
      const s = await call(mesh, agent, '/upload', { host: 'small-sink', method: 'POST', body: small });
      t.equal(s.status, 503);
      t.equal(await settled(() => b.smallSink.seen.length, 200, 1500), 4, 'first try and three replays');
      t.same(
        b.smallSink.seen.map((x) => x.bodyLength),
        [1024, 1024, 1024, 1024],
        'every copy carried the whole body',
      );
      t.same(
        b.smallSink.seen.map((x) => x.method),
        ['POST', 'POST', 'POST', 'POST'],
      );
    });
  });
}
