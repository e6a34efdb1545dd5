import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { serviceEntryYaml } from '../helpers/mesh-yaml.ts';
import { SHARED, spawnMeshlet } from '../helpers/spawn-meshlet.ts';
import { type DesyncCase, loadDesyncCases } from '../unit/listener/conformance-cases.ts';
import { DEVIATION_LIST } from '../unit/listener/conformance-deviations.ts';
import { rawRequest } from '../unit/listener/raw-http.ts';

/**
 * The http-desync-guardian corpus sent through the real meshlet process to a real node:http
 * backend. Whatever an engine does with a case, the backend must never see a request the client
 * did not send as its own (request smuggling), nor more than one request per case; Ambiguous and
 * Severe cases are refused or reach the backend as exactly one request; Compliant cases reach it
 * (except where the listener's conformance test documents a stricter refusal for that engine).
 */

interface Seen {
  readonly caseId: string | undefined;
  readonly method: string;
  readonly url: string;
  bodyBytes: number;
}

/** Adds `Host` (when absent) and a case marker right after the request line. */
function tagged(c: DesyncCase, index: number): Buffer {
  const eol = c.raw.indexOf('\r\n');
  const line = eol < 0 ? c.raw : c.raw.subarray(0, eol + 2);
  const rest = eol < 0 ? Buffer.alloc(0) : c.raw.subarray(eol + 2);
  const hasHost = /^host:/im.test(c.raw.toString('latin1'));
  const extra = `${hasHost ? '' : 'Host: backend\r\n'}x-case: ${index}\r\n`;
  return Buffer.concat([line, Buffer.from(extra, 'latin1'), rest]);
}

for (const engine of ['h1', 'node', 'uws'] as const) {
  t.test(`desync corpus through meshlet (${engine} engine)`, async (t) => {
    const seen: Seen[] = [];
    const backend = createServer((req: IncomingMessage, res) => {
      const s: Seen = {
        caseId: req.headers['x-case'] as string | undefined,
        method: req.method ?? '',
        url: req.url ?? '',
        bodyBytes: 0,
      };
      seen.push(s);
      req.on('data', (d: Buffer) => {
        s.bodyBytes += d.length;
      });
      req.on('end', () => res.end('ok'));
    });
    await new Promise<void>((ok) => backend.listen(0, '127.0.0.1', () => ok()));
    const port = (backend.address() as AddressInfo).port;
    const mesh = await spawnMeshlet(
      serviceEntryYaml('backend', [{ port }], { hosts: ['backend.default.svc.cluster.local', 'localhost'] }),
      { engine },
    );
    t.teardown(async () => {
      await mesh.stop();
      await new Promise<void>((ok) => {
        backend.close(() => ok());
        backend.closeAllConnections();
      });
    });

    const cases = loadDesyncCases(SHARED);
    t.equal(cases.length, 159, 'the whole corpus');
    const documented = new Set(DEVIATION_LIST.filter(([e]) => e === engine).map(([, id]) => id));
    const results: Array<{ c: DesyncCase; index: number; status: string }> = [];
    // Bounded concurrency: stalled cases wait for their timeout in parallel.
    const queue = cases.map((c, index) => ({ c, index }));
    const worker = async (): Promise<void> => {
      for (let job = queue.shift(); job !== undefined; job = queue.shift()) {
        const r = await rawRequest(mesh.outboundPort, tagged(job.c, job.index), {
          timeoutMs: 1500,
          idleMs: 300,
        });
        results.push({ c: job.c, index: job.index, status: r.responses[0]?.status?.toString() ?? '-' });
      }
    };
    await Promise.all(Array.from({ length: 24 }, () => worker()));
    await new Promise((r) => setTimeout(r, 200));

    t.same(
      seen.filter((s) => s.caseId === undefined).map((s) => `${s.method} ${s.url}`),
      [],
      'the backend never received a request the client did not send as its own (no smuggling)',
    );
    const perCase = new Map<string, number>();
    for (const s of seen) perCase.set(s.caseId ?? '', (perCase.get(s.caseId ?? '') ?? 0) + 1);
    t.same(
      [...perCase.entries()].filter(([, n]) => n > 1),
      [],
      'at most one upstream request per case',
    );
    const forwarded = new Set(seen.map((s) => Number(s.caseId)));
    const compliantRefused: string[] = [];
    for (const { c, index, status } of results) {
      if (c.tier !== 'Compliant') continue;
      if (forwarded.has(index)) continue;
      if (documented.has(`desync [${c.tier}] ${c.id}`)) continue;
      compliantRefused.push(`${c.id}: client saw ${status}`);
    }
    t.same(
      compliantRefused,
      [],
      'every Compliant case reaches the backend unless the listener documents why not',
    );
    const refusedOrOne = results.filter(({ c }) => c.tier === 'Severe' || c.tier === 'Ambiguous');
    t.ok(refusedOrOne.length === 116, `${refusedOrOne.length} Ambiguous/Severe cases checked`);
    t.comment(
      `${engine}: ${forwarded.size} of 159 cases reached the backend; ` +
        `${results.filter((r) => r.status === '400').length} answered 400`,
    );
  });
}
