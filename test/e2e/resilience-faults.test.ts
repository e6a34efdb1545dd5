import t from 'tap';
import { Agent } from 'undici';
import { deadPort } from '../helpers/backends.ts';
import { echo, type FaultBackend, settled, startFaultBackend } from '../helpers/fault-backends.ts';
import { adminText, call, hasFlag, metricSum, pool, requestsTotal } from '../helpers/mesh-client.ts';
import { serviceEntryYaml } from '../helpers/mesh-yaml.ts';
import { spawnMeshlet } from '../helpers/spawn-meshlet.ts';

/**
 * Fault injection (abort, delay by percentage) and mirroring (spec §2.4), through the real process,
 * once per listener engine. The percentages are checked statistically: a share drawn from n
 * independent requests at probability p is within 4 standard deviations (4·√(p(1−p)/n)) of p
 * except about once in 16 000 runs.
 */

const DELAY_REQUESTS = 1000;
const MIRROR_REQUESTS = 400;
/** How late the slow mirror answers; the primary answers in a few ms. */
const SLOW_MIRROR_MS = 1000;

/** 4σ of a binomial share. */
function tolerance(p: number, n: number): number {
  return 4 * Math.sqrt((p * (1 - p)) / n);
}

function meshYaml(faulty: number, primary: number, shadow: number, slowShadow: number, dead: number): string {
  return `${serviceEntryYaml('faulty', [{ port: faulty }])}---
${serviceEntryYaml('primary', [{ port: primary }])}---
${serviceEntryYaml('shadow', [{ port: shadow }])}---
${serviceEntryYaml('shadow-slow', [{ port: slowShadow }])}---
${serviceEntryYaml('shadow-dead', [{ port: dead }])}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: faulty }
spec:
  hosts: [faulty]
  http:
    - match: [{ uri: { prefix: /abort } }]
      fault: { abort: { httpStatus: 418, percentage: { value: 100 } } }
      route: [{ destination: { host: faulty } }]
    - match: [{ uri: { prefix: /delay } }]
      fault: { delay: { fixedDelay: 50ms, percentage: { value: 50 } } }
      route: [{ destination: { host: faulty } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: primary }
spec:
  hosts: [primary]
  http:
    - match: [{ uri: { prefix: /half } }]
      route: [{ destination: { host: primary } }]
      mirror: { host: shadow }
      mirrorPercentage: { value: 50 }
    - match: [{ uri: { prefix: /to-dead } }]
      route: [{ destination: { host: primary } }]
      mirror: { host: shadow-dead }
    - match: [{ uri: { prefix: /to-slow } }]
      route: [{ destination: { host: primary } }]
      mirror: { host: shadow-slow }
    - route: [{ destination: { host: primary } }]
`;
}

for (const engine of ['h1', 'uws', 'node'] as const) {
  t.test(`faults and mirroring through the ${engine} engine`, async (t) => {
    const backends: FaultBackend[] = [];
    const start = async (name: string, delayMs = 0): Promise<FaultBackend> => {
      const b = await startFaultBackend(name, echo(delayMs));
      backends.push(b);
      return b;
    };
    const faulty = await start('faulty');
    const primary = await start('primary');
    const shadow = await start('shadow');
    const slowShadow = await start('shadow-slow', SLOW_MIRROR_MS);
    const mesh = await spawnMeshlet(
      meshYaml(faulty.port, primary.port, shadow.port, slowShadow.port, await deadPort()),
      { engine },
    );
    const agent = new Agent({ connections: 32 });
    t.teardown(async () => {
      await agent.close();
      await mesh.stop();
      for (const b of backends) await b.close();
    });
    t.equal(mesh.engine, engine, `the ${engine} engine serves the outbound listener`);

    t.test('a 100 % abort answers 418 FI and never goes upstream', async (t) => {
      const answers = await pool(5, 5, () => call(mesh, agent, '/abort', { host: 'faulty' }));
      t.same(
        answers.map((a) => [a.status, a.flags, a.text]),
        Array(5).fill([418, 'FI', 'fault filter abort\n']),
      );
      t.equal(faulty.count, 0, 'the upstream saw nothing');
      const metrics = await adminText(mesh, agent, '/metrics');
      t.equal(
        requestsTotal(
          metrics,
          (l) =>
            l['destination_service_name'] === 'faulty' &&
            l['response_code'] === '418' &&
            hasFlag(l['response_flags'], 'FI'),
        ),
        5,
        'istio_requests_total{response_code="418", response_flags="FI"}',
      );
      t.equal(
        metricSum(metrics, 'meshlet_faults_injected_total', (l) => l['kind'] === 'abort'),
        5,
        'meshlet_faults_injected_total{kind="abort"}',
      );
    });

    t.test(`a 50 % delay of 50 ms delays about half of ${DELAY_REQUESTS} requests`, async (t) => {
      const answers = await pool(DELAY_REQUESTS, 20, () => call(mesh, agent, '/delay', { host: 'faulty' }));
      t.equal(answers.filter((a) => a.status === 200).length, DELAY_REQUESTS, 'every request answered 200');
      const tol = tolerance(0.5, DELAY_REQUESTS);
      const slowShare = answers.filter((a) => a.ms >= 50).length / DELAY_REQUESTS;
      t.ok(
        Math.abs(slowShare - 0.5) <= tol,
        `share of requests taking ≥ 50 ms: ${(slowShare * 100).toFixed(1)} % (50 ± ${(tol * 100).toFixed(1)} %)`,
      );
      const metrics = await adminText(mesh, agent, '/metrics');
      const delayed = requestsTotal(
        metrics,
        (l) => l['destination_service_name'] === 'faulty' && hasFlag(l['response_flags'], 'DI'),
      );
      t.ok(
        Math.abs(delayed / DELAY_REQUESTS - 0.5) <= tol,
        `share flagged DI in the metrics: ${delayed} of ${DELAY_REQUESTS}`,
      );
      t.equal(faulty.count, DELAY_REQUESTS, 'a delay still goes upstream');
    });

    t.test(`mirrorPercentage 50: about half of ${MIRROR_REQUESTS} requests are copied`, async (t) => {
      const answers = await pool(MIRROR_REQUESTS, 10, () => call(mesh, agent, '/half', { host: 'primary' }));
      t.equal(
        answers.filter((a) => a.status === 200 && a.headers['x-backend'] === 'primary').length,
        MIRROR_REQUESTS,
        "the client always gets the primary's response",
      );
      const copies = await settled(() => shadow.count, 300, 3000);
      const tol = tolerance(0.5, MIRROR_REQUESTS);
      t.ok(
        Math.abs(copies / MIRROR_REQUESTS - 0.5) <= tol,
        `the mirror saw ${copies} of ${MIRROR_REQUESTS} (50 ± ${(tol * 100).toFixed(1)} %)`,
      );
      t.equal(primary.count, MIRROR_REQUESTS, 'the primary saw every request once');
      t.ok(
        shadow.seen.length > 0 && shadow.seen.every((s) => s.url === '/half' && s.method === 'GET'),
        'the copies carry the same path',
      );
    });

    t.test('a mirror that is down or slow does not touch the primary responses', async (t) => {
      const plain = await pool(20, 4, () => call(mesh, agent, '/plain', { host: 'primary' }));
      const toDead = await pool(20, 4, () => call(mesh, agent, '/to-dead', { host: 'primary' }));
      const toSlow = await pool(20, 4, () => call(mesh, agent, '/to-slow', { host: 'primary' }));
      for (const [name, answers] of [
        ['no mirror', plain],
        ['mirror on a closed port', toDead],
        [`mirror answering after ${SLOW_MIRROR_MS} ms`, toSlow],
      ] as const) {
        t.same(
          answers.map((a) => [a.status, a.headers['x-backend']]),
          Array(20).fill([200, 'primary']),
          `${name}: every answer is the primary's 200`,
        );
        const worst = Math.max(...answers.map((a) => a.ms));
        t.ok(
          worst < SLOW_MIRROR_MS / 2,
          `${name}: slowest answer ${worst.toFixed(0)} ms (the slow mirror takes ${SLOW_MIRROR_MS} ms)`,
        );
      }
      t.equal(
        await settled(() => slowShadow.count, 200, 2000),
        20,
        'the slow mirror did receive a copy of each request',
      );
      const failed = await settled(
        async () =>
          metricSum(
            await adminText(mesh, agent, '/metrics'),
            'meshlet_mirror_requests_total',
            (l) => l['result'] === 'failed',
          ),
        200,
        2000,
      );
      t.equal(failed, 20, 'each copy to the closed port was tried, and counted as failed');
    });
  });
}
