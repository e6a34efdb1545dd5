import { connect } from 'node:net';
import t from 'tap';
import { Agent, request } from 'undici';
import { type Echo, startEchoBackend } from '../helpers/backends.ts';
import { serviceEntryYaml } from '../helpers/mesh-yaml.ts';
import { spawnMeshlet } from '../helpers/spawn-meshlet.ts';

/** Hot reload under load, a rejected reload, and SIGTERM drain, on the real process. */

function yamlTo(subset: string, v1: number, v2: number): string {
  return `${serviceEntryYaml('app', [
    { port: v1, labels: { version: 'v1' } },
    { port: v2, labels: { version: 'v2' } },
  ])}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: app }
spec:
  host: app
  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: app }
spec:
  hosts: [app]
  http:
    - route: [{ destination: { host: app, subset: ${subset} } }]
`;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

for (const engine of ['h1', 'uws', 'node'] as const) {
  t.test(`reloads on the ${engine} engine`, async (t) => {
    const v1 = await startEchoBackend('v1');
    const v2 = await startEchoBackend('v2');
    const mesh = await spawnMeshlet(yamlTo('v1', v1.port, v2.port), { engine });
    const agent = new Agent({ connections: 16 });
    t.teardown(async () => {
      await agent.close();
      await mesh.stop();
      await v1.close();
      await v2.close();
    });
    const get = async (): Promise<{ status: number; name: string }> => {
      const res = await request(mesh.url('/x'), { dispatcher: agent, headers: { host: 'app' } });
      const text = await res.body.text();
      return {
        status: res.statusCode,
        name: res.statusCode === 200 ? (JSON.parse(text) as Echo).name : text,
      };
    };

    t.test('a file change switches routing under load without one failed request', async (t) => {
      const seen: string[] = [];
      const failures: string[] = [];
      let stop = false;
      const worker = async (): Promise<void> => {
        while (!stop) {
          try {
            const r = await get();
            if (r.status === 200) seen.push(r.name);
            else failures.push(`${r.status} ${r.name}`);
          } catch (err) {
            failures.push(String(err));
          }
        }
      };
      const workers = Array.from({ length: 8 }, () => worker());
      await sleep(300);
      mesh.writeConfig(yamlTo('v2', v1.port, v2.port));
      // The watcher picks the change up; wait until v2 answers (bounded).
      const deadline = Date.now() + 5000;
      while (seen.at(-1) !== 'v2' && Date.now() < deadline) await sleep(50);
      await sleep(300);
      stop = true;
      await Promise.all(workers);
      t.same(failures, [], 'no request failed during the reload');
      t.ok(seen.length > 50, `${seen.length} requests served during the test`);
      t.equal(seen[0], 'v1', 'served by v1 before');
      t.equal(seen.at(-1), 'v2', 'served by v2 after');
      const firstV2 = seen.indexOf('v2');
      t.notOk(seen.slice(firstV2).includes('v1'), 'once switched, no request goes back to v1');
      const dump = (await (await request(mesh.admin('/config_dump'), { dispatcher: agent })).body.json()) as {
        version: number;
      };
      t.ok(dump.version >= 2, `config_dump shows version ${dump.version}`);
    });

    t.test('an invalid file is rejected, counted, and the old routes keep serving', async (t) => {
      mesh.writeConfig(
        `${yamlTo('v2', v1.port, v2.port)}\n---\nkind: VirtualService\napiVersion: networking.istio.io/v1\nmetadata: { name: broken }\nspec:\n  hosts: [app2]\n  http:\n    - route: [{ destination: { host: app2 }, weight: -5 }]\n`,
      );
      const res = await request(mesh.admin('/reload'), { dispatcher: agent, method: 'POST' });
      t.equal(res.statusCode, 400, 'POST /reload reports the rejection');
      const body = (await res.body.json()) as { result: string; errors: string[] };
      t.equal(body.result, 'rejected');
      t.match(body.errors.join('\n'), /mesh\.yaml:\d+:\d+/, 'the error names file:line:col');
      const r = await get();
      t.same(r, { status: 200, name: 'v2' }, 'still served by the previous configuration');
      const metrics = await (await request(mesh.admin('/metrics'), { dispatcher: agent })).body.text();
      t.match(metrics, /meshlet_config_reloads_total\{result="rejected"\} [1-9]/);
      t.match(mesh.logs.join('\n'), /configuration rejected/);
    });

    t.test('a changed Proxy document is applied on restart only, and the reload says so', async (t) => {
      mesh.writeConfig(
        `${yamlTo('v2', v1.port, v2.port)}\n---\napiVersion: meshlet.dev/v1alpha1\nkind: Proxy\nmetadata: { name: sidecar }\nspec:\n  drainTimeout: 3s\n`,
      );
      const res = await request(mesh.admin('/reload'), { dispatcher: agent, method: 'POST' });
      t.equal(res.statusCode, 200);
      const body = (await res.body.json()) as { result: string; warnings: string[] };
      t.equal(body.result, 'applied', 'the routing resources apply');
      t.match(
        body.warnings.join('\n'),
        /mesh\.yaml:\d+: Proxy sidecar: differs from the Proxy document meshlet started with; its settings take effect on restart/,
      );
      t.match(mesh.logs.join('\n'), /take effect on restart/, 'logged too');
    });

    t.test('SIGHUP reloads', async (t) => {
      mesh.writeConfig(yamlTo('v1', v1.port, v2.port));
      mesh.proc.kill('SIGHUP');
      const deadline = Date.now() + 5000;
      let last = '';
      while (last !== 'v1' && Date.now() < deadline) {
        last = (await get()).name;
        await sleep(50);
      }
      t.equal(last, 'v1');
    });
  });

  t.test(`SIGTERM drains in-flight requests on the ${engine} engine`, async (t) => {
    const slow = await startEchoBackend('slow', (_req, res) => {
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('finished after drain started');
      }, 800);
      return true;
    });
    const mesh = await spawnMeshlet(yamlTo('v1', slow.port, slow.port), { engine });
    t.teardown(async () => {
      await mesh.stop();
      await slow.close();
    });
    const inFlight = request(mesh.url('/slow'), { headers: { host: 'app' } });
    await sleep(200);
    mesh.proc.kill('SIGTERM');
    const res = await inFlight;
    t.equal(res.statusCode, 200);
    t.equal(await res.body.text(), 'finished after drain started');
    t.equal(await mesh.exited, 0, 'exit code 0 after the drain');
    const refused = await new Promise<boolean>((ok) => {
      const s = connect(mesh.outboundPort, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        ok(false);
      });
      s.once('error', () => ok(true));
    });
    t.ok(refused, 'the listener is closed');
  });
}
