import t from 'tap';
import { Agent } from 'undici';
import { echo, settled, startFaultBackend } from '../helpers/fault-backends.ts';
import {
  adminText,
  call,
  clusterOf,
  hasFlag,
  metricSum,
  pool,
  requestsTotal,
} from '../helpers/mesh-client.ts';
import { serviceEntryYaml } from '../helpers/mesh-yaml.ts';
import { spawnMeshlet } from '../helpers/spawn-meshlet.ts';

/**
 * Connection-pool limits (circuit breaking, spec §3.5), through the real process, once per listener
 * engine: one request active, one waiting, the rest refused at once with 503 UO and
 * `x-envoy-overloaded: true`, and never retried (spec §2.5: overflow is not retried).
 */

const UPSTREAM_DELAY_MS = 400;
const CONCURRENT = 5;

function limited(name: string, port: number, pool: string): string {
  return `${serviceEntryYaml(name, [{ port }])}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ${name} }
spec:
  host: ${name}
  trafficPolicy:
    connectionPool: ${pool}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ${name} }
spec:
  hosts: [${name}]
  http:
    - route: [{ destination: { host: ${name} } }]
      retries: { attempts: 3, retryOn: "5xx,reset,connect-failure" }
`;
}

for (const engine of ['h1', 'uws', 'node'] as const) {
  t.test(`connection-pool limits through the ${engine} engine`, async (t) => {
    const byRequests = await startFaultBackend('by-requests', echo(UPSTREAM_DELAY_MS));
    const byConnections = await startFaultBackend('by-connections', echo(UPSTREAM_DELAY_MS));
    const mesh = await spawnMeshlet(
      [
        limited(
          'by-requests',
          byRequests.port,
          '{ http: { http2MaxRequests: 1, http1MaxPendingRequests: 1 } }',
        ),
        limited(
          'by-connections',
          byConnections.port,
          '{ tcp: { maxConnections: 1 }, http: { http1MaxPendingRequests: 1 } }',
        ),
      ].join('---\n'),
      { engine },
    );
    // One connection per request, so the five really are concurrent at the proxy.
    const agent = new Agent({ connections: CONCURRENT * 2, pipelining: 1 });
    t.teardown(async () => {
      await agent.close();
      await mesh.stop();
      await byRequests.close();
      await byConnections.close();
    });
    t.equal(mesh.engine, engine, `the ${engine} engine serves the outbound listener`);

    for (const [host, backend, limit] of [
      ['by-requests', byRequests, 'http2MaxRequests 1'],
      ['by-connections', byConnections, 'tcp.maxConnections 1'],
    ] as const) {
      t.test(`${limit}, 1 pending: ${CONCURRENT} concurrent requests to a slow upstream`, async (t) => {
        const answers = await pool(CONCURRENT, CONCURRENT, () => call(mesh, agent, '/', { host }));
        const refused = answers.filter((a) => a.status === 503);
        const served = answers.filter((a) => a.status === 200);
        t.ok(refused.length >= CONCURRENT - 2, `at least ${CONCURRENT - 2} refused (${refused.length})`);
        t.equal(
          served.length + refused.length,
          CONCURRENT,
          `the others served: ${answers.map((a) => a.status)}`,
        );
        for (const r of refused) {
          t.equal(r.headers['x-envoy-overloaded'], 'true', 'x-envoy-overloaded: true');
          t.ok(hasFlag(r.flags, 'UO'), `flag UO (${r.flags})`);
          t.ok(
            r.ms < UPSTREAM_DELAY_MS / 2,
            `refused at once (${r.ms.toFixed(0)} ms; the upstream takes ${UPSTREAM_DELAY_MS} ms)`,
          );
        }
        t.equal(backend.peakActive, 1, 'the upstream never held more than one request at a time');
        t.equal(
          await settled(() => backend.count, 300, 2000),
          served.length,
          'the upstream saw only the served requests: overflow was not retried',
        );
        const metrics = await adminText(mesh, agent, '/metrics');
        t.equal(
          requestsTotal(
            metrics,
            (l) =>
              l['destination_service_name'] === host &&
              l['response_code'] === '503' &&
              hasFlag(l['response_flags'], 'UO'),
          ),
          refused.length,
          'istio_requests_total{response_code="503", response_flags="UO"}',
        );
        t.equal(
          metricSum(
            metrics,
            'meshlet_upstream_overflow_total',
            clusterOf(`${host}.default.svc.cluster.local`),
          ),
          refused.length,
          'meshlet_upstream_overflow_total',
        );
      });
    }
  });
}
