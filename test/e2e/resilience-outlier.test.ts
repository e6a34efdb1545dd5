import { performance } from 'node:perf_hooks';
import t from 'tap';
import { Agent } from 'undici';
import { always, echo, type FaultBackend, startFaultBackend } from '../helpers/fault-backends.ts';
import { adminText, call, clusterOf, metricSum, sleep } from '../helpers/mesh-client.ts';
import { serviceEntryYaml } from '../helpers/mesh-yaml.ts';
import { type Meshlet, spawnMeshlet } from '../helpers/spawn-meshlet.ts';

/**
 * Outlier detection (spec §3.6), through the real process, once per listener engine. The
 * DestinationRules pick ROUND_ROBIN so that a failing endpoint keeps its share of traffic until it
 * is ejected: under the default P2C + peak-EWMA balancer a failing endpoint is already avoided,
 * which would hide whether ejection (or its absence) is what kept traffic away.
 */

function meshYaml(od: readonly FaultBackend[], gw: readonly FaultBackend[]): string {
  return `${serviceEntryYaml(
    'od',
    od.map((b) => ({ port: b.port })),
  )}---
${serviceEntryYaml(
  'gw',
  gw.map((b) => ({ port: b.port })),
)}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: od }
spec:
  host: od
  trafficPolicy:
    loadBalancer: { simple: ROUND_ROBIN }
    outlierDetection: { consecutive5xxErrors: 3, interval: 100ms, baseEjectionTime: 1s, maxEjectionPercent: 100 }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: gw }
spec:
  host: gw
  trafficPolicy:
    loadBalancer: { simple: ROUND_ROBIN }
    outlierDetection:
      consecutiveGatewayErrors: 2
      consecutive5xxErrors: 0
      interval: 100ms
      baseEjectionTime: 30s
      maxEjectionPercent: 100
`;
}

interface EndpointView {
  readonly address: string;
  readonly ejected: boolean;
  readonly times_ejected: number;
}

/** The `/clusters` entry of the endpoint on `port` in the cluster of service `fqdn`, if listed. */
async function endpointState(
  mesh: Meshlet,
  agent: Agent,
  fqdn: string,
  port: number,
): Promise<EndpointView | undefined> {
  const clusters = JSON.parse(await adminText(mesh, agent, '/clusters')) as Array<{
    service: string;
    endpoints: EndpointView[];
  }>;
  return clusters.find((c) => c.service === fqdn)?.endpoints.find((e) => e.address.endsWith(`:${port}`));
}

for (const engine of ['h1', 'uws', 'node'] as const) {
  t.test(`outlier detection through the ${engine} engine`, async (t) => {
    const od = [
      await startFaultBackend('od-good-1', echo()),
      await startFaultBackend('od-good-2', echo()),
      await startFaultBackend('od-bad', always(500)),
    ];
    const gw = [
      await startFaultBackend('gw-500', always(500)),
      await startFaultBackend('gw-503', always(503)),
      await startFaultBackend('gw-ok', echo()),
    ];
    const mesh = await spawnMeshlet(meshYaml(od, gw), { engine });
    const agent = new Agent({ connections: 4 });
    t.teardown(async () => {
      await agent.close();
      await mesh.stop();
      for (const b of [...od, ...gw]) await b.close();
    });
    t.equal(mesh.engine, engine, `the ${engine} engine serves the outbound listener`);

    t.test(
      'three consecutive 500s eject the endpoint for baseEjectionTime (1 s), then it is back',
      async (t) => {
        const bad = od[2] as FaultBackend;
        let sent = 0;
        while (bad.count < 3 && sent < 30) {
          await call(mesh, agent, '/', { host: 'od' });
          sent++;
        }
        const ejectedAt = performance.now();
        t.equal(bad.count, 3, `the failing endpoint was hit 3 times within ${sent} requests (round robin)`);
        const state = await endpointState(mesh, agent, 'od.default.svc.cluster.local', bad.port);
        t.equal(state?.ejected, true, `/clusters shows it ejected: ${JSON.stringify(state)}`);
        t.equal(
          metricSum(
            await adminText(mesh, agent, '/metrics'),
            'meshlet_outlier_ejections_total',
            clusterOf('od.default.svc.cluster.local'),
          ),
          1,
          'meshlet_outlier_ejections_total counts it',
        );

        // While ejected (1 s minus what already passed): no traffic at all.
        const during: number[] = [];
        while (performance.now() - ejectedAt < 700) {
          during.push((await call(mesh, agent, '/', { host: 'od' })).status);
          await sleep(5);
        }
        t.equal(
          bad.count,
          3,
          `no request reached it while ejected (${during.length} requests sent meanwhile)`,
        );
        t.ok(
          during.length > 10 && during.every((s) => s === 200),
          `every one of them was served by a healthy endpoint (${during.length})`,
        );

        // After baseEjectionTime (checked at each 100 ms interval) it gets traffic again.
        let backAfter = -1;
        while (performance.now() - ejectedAt < 3000) {
          await call(mesh, agent, '/', { host: 'od' });
          if (bad.count > 3) {
            backAfter = performance.now() - ejectedAt;
            break;
          }
          await sleep(10);
        }
        t.ok(
          backAfter >= 900 && backAfter < 2000,
          `it received traffic again ${backAfter.toFixed(0)} ms after the ejection (expected ~1000-1100 ms)`,
        );
      },
    );

    t.test('consecutiveGatewayErrors 2 with consecutive5xxErrors 0: 503s eject, 500s never do', async (t) => {
      const [e500, e503, ok] = gw as [FaultBackend, FaultBackend, FaultBackend];
      const statuses: number[] = [];
      for (let i = 0; i < 60; i++) statuses.push((await call(mesh, agent, '/', { host: 'gw' })).status);
      t.equal(e503.count, 2, 'the 503 endpoint was ejected after its second consecutive 503');
      t.ok(e500.count >= 25, `the 500 endpoint kept receiving traffic: ${e500.count} of 60`);
      t.ok(ok.count >= 25, `the healthy one took the rest: ${ok.count} of 60`);
      t.ok(statuses.slice(-10).includes(500), 'still answering 500s at the end');
      const s503 = await endpointState(mesh, agent, 'gw.default.svc.cluster.local', e503.port);
      const s500 = await endpointState(mesh, agent, 'gw.default.svc.cluster.local', e500.port);
      t.equal(s503?.ejected, true, `/clusters: the 503 endpoint is ejected (${JSON.stringify(s503)})`);
      t.same(
        [s500?.ejected, s500?.times_ejected],
        [false, 0],
        `/clusters: the 500 endpoint never was (${JSON.stringify(s500)})`,
      );
    });
  });
}
