import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { type Backend, deadPort, startEchoBackend } from '../helpers/backends.ts';
import { serviceEntryYaml } from '../helpers/mesh-yaml.ts';
import { type Meshlet, onFreePorts, runCli, spawnMeshlet } from '../helpers/spawn-meshlet.ts';

/**
 * The real meshlet writing its access log: Envoy's text line to a file (flags over the Proxy
 * document), rotation on SIGUSR1, JSON on stdout by default with a status filter from the Proxy
 * document, and a start-up error for a file whose directory is missing.
 */

function meshYaml(okPort: number, dead: number, proxy: string): string {
  return `${serviceEntryYaml('svc', [{ port: okPort }])}---
${serviceEntryYaml('dead', [{ port: dead }])}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: svc }
spec:
  hosts: [svc]
  http:
    - name: ok-route
      match: [{ uri: { prefix: /ok } }]
      route: [{ destination: { host: svc } }]
---
apiVersion: meshlet.dev/v1alpha1
kind: Proxy
metadata: { name: p }
spec:
${proxy}`;
}

interface Sent {
  readonly status: number;
  readonly flags: string;
  readonly bodyBytes: number;
}

/** Sends one GET through the outbound listener with fixed client headers; `id` becomes x-request-id. */
async function send(mesh: Meshlet, path: string, host: string, id: string): Promise<Sent> {
  const res = await request(mesh.url(path), {
    headers: {
      host,
      'x-request-id': id,
      'user-agent': 'e2e "agent" é',
      'x-forwarded-for': '10.1.2.3',
    },
  });
  const body = Buffer.from(await res.body.arrayBuffer());
  const flags = res.headers['x-meshlet-flags'];
  return { status: res.statusCode, flags: typeof flags === 'string' ? flags : '-', bodyBytes: body.length };
}

async function waitFor(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 3000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const ISO = String.raw`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`;
const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

let backend: Backend;
let dead: number;
t.before(async () => {
  backend = await startEchoBackend('svc');
  dead = await deadPort();
});
t.teardown(() => backend.close());

t.test(
  '--access-log FILE --access-log-format text: one Envoy line per request; SIGUSR1 reopens',
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'meshlet-access-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'access.log');
    // The document asks for JSON in another file: the flags win.
    const mesh = await spawnMeshlet(
      meshYaml(backend.port, dead, '  accessLog: { path: ./from-document.log, format: json }\n'),
      { engine: 'h1', args: ['--access-log', file, '--access-log-format', 'text'] },
    );
    t.teardown(() => mesh.stop());
    const before = Date.now();
    const ok = await send(mesh, '/ok/1?a=b', 'svc', 'rid-200');
    const nr = await send(mesh, '/missing', 'svc', 'rid-404');
    const uf = await send(mesh, '/ok/2', 'dead', 'rid-503');
    t.same(
      [ok.status, nr.status, nr.flags, uf.status],
      [200, 404, 'NR', 503],
      'the three answers the log must show',
    );
    t.match(uf.flags, /^UF/);
    const read = (): string[] =>
      existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(0, -1) : [];
    await waitFor(() => read().length >= 3, 'three lines in the file');
    const lines = read();
    t.equal(lines.length, 3);
    const tail = `"10.1.2.3" "e2e \\"agent\\" é"`;
    // Local replies (NR, UF) count their body as sent, as Envoy does.
    const localBytes = (n: number): string => String(n);
    const expected = [
      `^\\[(${ISO})\\] "GET /ok/1\\?a=b HTTP/1.1" 200 - 0 ${ok.bodyBytes} \\d+ \\d+ ${esc(tail)} "rid-200" "svc" "127.0.0.1:${backend.port}"$`,
      `^\\[(${ISO})\\] "GET /missing HTTP/1.1" 404 NR 0 ${localBytes(nr.bodyBytes)} \\d+ - ${esc(tail)} "rid-404" "svc" "-"$`,
      `^\\[(${ISO})\\] "GET /ok/2 HTTP/1.1" 503 ${esc(uf.flags)} 0 ${localBytes(uf.bodyBytes)} \\d+ - ${esc(tail)} "rid-503" "dead" "127.0.0.1:${dead}"$`,
    ];
    for (const [i, pattern] of expected.entries()) {
      const m = new RegExp(pattern).exec(lines[i] ?? '');
      t.ok(m, `line ${i + 1}: ${lines[i]}`);
      const start = Date.parse(m?.[1] ?? '');
      t.ok(start >= before - 1000 && start <= Date.now(), 'start time is the request start, UTC');
    }
    t.notOk(
      existsSync(join(dirname(mesh.configPath), 'from-document.log')),
      "the document's file is not opened",
    );
    t.same(mesh.stdout, [], 'nothing on stdout');

    // Rotation: move the file away, SIGUSR1, the next line goes to a new file at the same path.
    renameSync(file, `${file}.1`);
    mesh.proc.kill('SIGUSR1');
    await waitFor(() => mesh.logs.some((l) => l.includes('access log reopened')), 'the reopen log line');
    await send(mesh, '/ok/3', 'svc', 'rid-after');
    await waitFor(() => read().length === 1, 'a line in the new file');
    t.match(read()[0], /"GET \/ok\/3 HTTP\/1.1" 200 .* "rid-after" /);
    t.equal(readFileSync(`${file}.1`, 'utf8').split('\n').length, 4, 'the rotated file kept its three lines');
    t.notOk(
      mesh.logs.some((l) => /debugger/i.test(l)),
      'SIGUSR1 did not start the inspector',
    );
    const metrics = await (await request(mesh.admin('/metrics'))).body.text();
    t.match(metrics, /meshlet_access_log_dropped_total\{reason="backlog"\} 0/);
    // SIGTERM right after a response: the line is in the file once the process has exited.
    await send(mesh, '/ok/last', 'svc', 'rid-last');
    t.equal(await mesh.stop(), 0);
    t.match(read().at(-1), /"GET \/ok\/last HTTP\/1.1" 200 .* "rid-last" /);
  },
);

t.test('default: JSON lines on stdout; a filter in the Proxy document keeps 4xx and 5xx', async (t) => {
  const mesh = await spawnMeshlet(
    meshYaml(backend.port, dead, '  accessLog: { filter: { minStatus: 400 } }\n'),
    {
      engine: 'h1',
    },
  );
  t.teardown(() => mesh.stop());
  await send(mesh, '/ok/1', 'svc', 'rid-200');
  const nr = await send(mesh, '/missing?q=%C3%A9', 'svc', 'rid-404');
  const uf = await send(mesh, '/ok/2', 'dead', 'rid-503');
  const lines = (): Array<Record<string, unknown>> =>
    mesh.stdout.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  await waitFor(() => lines().length >= 2, 'two JSON lines');
  await new Promise((r) => setTimeout(r, 100));
  const [first, second, ...rest] = lines();
  t.same(rest, [], 'the 200 is filtered out');
  t.same(Object.keys(first ?? {}), [
    'start_time',
    'method',
    'path',
    'protocol',
    'response_code',
    'response_flags',
    'response_code_details',
    'bytes_received',
    'bytes_sent',
    'duration',
    'upstream_service_time',
    'upstream_host',
    'upstream_cluster',
    'x_forwarded_for',
    'user_agent',
    'request_id',
    'authority',
    'route_name',
    'downstream_remote_address',
    'downstream_peer_uri_san',
    'upstream_transport_failure_reason',
    'requested_server_name',
    'reporter',
    'attempts',
  ]);
  t.match(first, {
    method: 'GET',
    path: '/missing?q=%C3%A9',
    protocol: 'HTTP/1.1',
    response_code: 404,
    response_flags: 'NR',
    bytes_received: 0,
    upstream_service_time: '-',
    upstream_host: '-',
    upstream_cluster: '-',
    x_forwarded_for: '10.1.2.3',
    user_agent: 'e2e "agent" é',
    request_id: 'rid-404',
    authority: 'svc',
    route_name: '-',
    downstream_remote_address: '127.0.0.1',
    downstream_peer_uri_san: '-',
    reporter: 'source',
    attempts: 0,
  });
  t.match(second, {
    path: '/ok/2',
    response_code: 503,
    response_flags: uf.flags,
    upstream_host: `127.0.0.1:${dead}`,
    upstream_cluster: 'outbound|80||dead.default.svc.cluster.local',
    route_name: '-',
    request_id: 'rid-503',
  });
  t.ok(Number(second?.['attempts']) >= 1);
  t.equal(Number(first?.['bytes_sent']), nr.bodyBytes, 'a local reply counts its body as sent');
});

t.test('an access-log file whose directory is missing stops the start-up, naming it (exit 1)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-access-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'mesh.yaml');
  writeFileSync(config, serviceEntryYaml('svc', [{ port: backend.port }]));
  const path = join(dir, 'no-such-dir', 'access.log');
  const r = await runCli(['run', '--config', config, ...onFreePorts('h1'), '--access-log', path]);
  t.equal(r.code, 1);
  t.match(
    r.stderr,
    `cannot open the access log ${path}: its directory ${join(dir, 'no-such-dir')} does not exist`,
  );
});
