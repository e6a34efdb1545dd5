import { lookup } from 'node:dns/promises';
import t from 'tap';
import { Agent } from 'undici';
import { echo, type FaultBackend, type FaultEcho, startFaultBackend } from '../helpers/fault-backends.ts';
import { adminText, call, pool } from '../helpers/mesh-client.ts';
import { serviceEntryYaml } from '../helpers/mesh-yaml.ts';
import { spawnMeshlet } from '../helpers/spawn-meshlet.ts';

/**
 * Load balancing (spec §3.4) and DNS resolution (spec §1.2), through the real process, once per
 * listener engine: consistent hash on a header and on a cookie the proxy issues, the default
 * P2C + peak-EWMA balancer steering away from a slow endpoint, and a `resolution: DNS` endpoint.
 */

const SLOW_MS = 50;
const EWMA_REQUESTS = 300;

function meshYaml(
  hashed: readonly FaultBackend[],
  cookied: readonly FaultBackend[],
  ewma: readonly FaultBackend[],
  dnsPort: number,
): string {
  const eps = (bs: readonly FaultBackend[]): Array<{ port: number }> => bs.map((b) => ({ port: b.port }));
  return `${serviceEntryYaml('hashed', eps(hashed))}---
${serviceEntryYaml('cookied', eps(cookied))}---
${serviceEntryYaml('ewma', eps(ewma))}---
${serviceEntryYaml('dnsy', [{ address: 'localhost', port: dnsPort }], { resolution: 'DNS' })}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: hashed }
spec:
  host: hashed
  trafficPolicy:
    loadBalancer: { consistentHash: { httpHeaderName: x-user } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: cookied }
spec:
  host: cookied
  trafficPolicy:
    loadBalancer: { consistentHash: { httpCookie: { name: mesh-affinity, path: /, ttl: 60s } } }
`;
}

/** The `name=value` pair of cookie `name` in a Set-Cookie header value (string or list), if any. */
function cookiePair(header: string | string[] | undefined, name: string): string | undefined {
  for (const line of Array.isArray(header) ? header : header === undefined ? [] : [header]) {
    const first = line.split(';')[0]?.trim() ?? '';
    if (first.startsWith(`${name}=`)) return first;
  }
  return undefined;
}

for (const engine of ['h1', 'uws', 'node'] as const) {
  t.test(`load balancing and DNS through the ${engine} engine`, async (t) => {
    const backends: FaultBackend[] = [];
    const start = async (name: string, delayMs = 0, at = {}): Promise<FaultBackend> => {
      const b = await startFaultBackend(name, echo(delayMs), at);
      backends.push(b);
      return b;
    };
    const hashed = [await start('hashed-a'), await start('hashed-b'), await start('hashed-c')];
    const cookied = [await start('cookied-a'), await start('cookied-b'), await start('cookied-c')];
    const ewma = [await start('ewma-fast-a'), await start('ewma-fast-b'), await start('ewma-slow', SLOW_MS)];
    // `localhost` resolves through /etc/hosts; listen on every loopback address it gives (127.0.0.1,
    // and ::1 where the hosts file lists it), all on the same port, as one endpoint port serves all.
    const dns = await start('dns');
    for (const a of await lookup('localhost', { all: true })) {
      if (a.address !== '127.0.0.1') await start('dns', 0, { host: a.address, port: dns.port });
    }
    const dnsCount = (): number => backends.filter((b) => b.name === 'dns').reduce((s, b) => s + b.count, 0);
    const mesh = await spawnMeshlet(meshYaml(hashed, cookied, ewma, dns.port), { engine });
    const agent = new Agent({ connections: 8 });
    t.teardown(async () => {
      await agent.close();
      await mesh.stop();
      for (const b of backends) await b.close();
    });
    t.equal(mesh.engine, engine, `the ${engine} engine serves the outbound listener`);
    const nameOf = (text: string): string => {
      try {
        return (JSON.parse(text) as FaultEcho).name;
      } catch {
        return `not an echo: ${text.slice(0, 80)}`;
      }
    };

    t.test('consistentHash on x-user keeps each user on one endpoint', async (t) => {
      // 10 users over 3 endpoints: a user's requests are not every third request, so round robin
      // would spread each user over all three endpoints.
      const users = Array.from({ length: 10 }, (_, i) => `user-${i}`);
      const answers = await pool(50, 4, (i) =>
        call(mesh, agent, '/', { host: 'hashed', headers: { 'x-user': users[i % users.length] ?? '' } }),
      );
      const byUser = new Map<string, Set<string>>();
      answers.forEach((a, i) => {
        const user = users[i % users.length] ?? '';
        const seen = byUser.get(user) ?? new Set<string>();
        seen.add(a.status === 200 ? nameOf(a.text) : `status ${a.status}`);
        byUser.set(user, seen);
      });
      const spread = [...byUser]
        .filter(([, s]) => s.size !== 1)
        .map(([u, s]) => `${u}: ${[...s].join(', ')}`);
      t.same(spread, [], 'every user reached exactly one endpoint across 50 requests');
      const used = new Set([...byUser.values()].flatMap((s) => [...s]));
      t.ok(used.size >= 2, `the users are spread over the endpoints: ${[...used].join(', ')}`);
    });

    t.test('consistentHash on a cookie with ttl: the proxy issues it, then requests stick', async (t) => {
      const first = await call(mesh, agent, '/', { host: 'cookied' });
      t.equal(first.status, 200);
      const setCookie = first.headers['set-cookie'];
      const pair = cookiePair(setCookie, 'mesh-affinity');
      t.ok(pair !== undefined, `Set-Cookie issued when the cookie is absent: ${JSON.stringify(setCookie)}`);
      t.match(String(setCookie), /Max-Age=60/i, 'with Max-Age = ttl');
      t.match(String(setCookie), /Path=\//i, 'and the path');
      if (pair === undefined) return;
      const answers = await pool(20, 4, () =>
        call(mesh, agent, '/', { host: 'cookied', headers: { cookie: `other=1; ${pair}` } }),
      );
      const names = new Set(answers.map((a) => (a.status === 200 ? nameOf(a.text) : `status ${a.status}`)));
      t.same(
        [...names],
        [nameOf(first.text)],
        'every request with the cookie reached the endpoint of the first',
      );
      t.ok(
        answers.every((a) => a.headers['set-cookie'] === undefined),
        'no new cookie once the request carries one',
      );
    });

    t.test(`the default balancer (P2C + peak EWMA) avoids an endpoint ${SLOW_MS} ms slower`, async (t) => {
      const answers = await pool(EWMA_REQUESTS, 4, () => call(mesh, agent, '/', { host: 'ewma' }));
      t.equal(answers.filter((a) => a.status === 200).length, EWMA_REQUESTS, 'all answered 200');
      const slow = ewma[2] as FaultBackend;
      const share = slow.count / EWMA_REQUESTS;
      t.ok(
        share < 0.1,
        `the slow endpoint got ${slow.count} of ${EWMA_REQUESTS} (${(share * 100).toFixed(1)} %, < 10 %)`,
      );
      const clusters = JSON.parse(await adminText(mesh, agent, '/clusters')) as Array<{
        service: string;
        load_balancer: string | null;
      }>;
      t.equal(
        clusters.find((c) => c.service === 'ewma.default.svc.cluster.local')?.load_balancer,
        'P2C_PEAK_EWMA',
        '/clusters names the default balancer',
      );
    });

    t.test('resolution: DNS with endpoint address localhost reaches the backend', async (t) => {
      const answers = await pool(5, 1, () => call(mesh, agent, '/dns', { host: 'dnsy' }));
      t.same(
        answers.map((a) => [a.status, a.status === 200 ? nameOf(a.text) : a.text.slice(0, 120)]),
        Array(5).fill([200, 'dns']),
      );
      t.equal(dnsCount(), 5, 'the backend behind localhost saw them');
    });
  });
}
