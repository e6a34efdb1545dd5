import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { Agent, request } from 'undici';
import { type FaultBackend, startFaultBackend } from '../helpers/fault-backends.ts';
import { call, sleep } from '../helpers/mesh-client.ts';
import { serviceEntryYaml } from '../helpers/mesh-yaml.ts';
import { type Meshlet, spawnMeshlet } from '../helpers/spawn-meshlet.ts';

/**
 * Tracing through the real process: a small OTLP/HTTP collector on loopback receives the spans, a
 * backend records the trace headers each try carried and fails the first try of /flaky, so the
 * retry shows as a second client span.
 */

interface OtlpValue {
  readonly stringValue?: string;
  readonly intValue?: string;
}

interface OtlpSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId?: string;
  readonly name: string;
  readonly kind: number;
  readonly startTimeUnixNano: string;
  readonly endTimeUnixNano: string;
  readonly attributes: ReadonlyArray<{ readonly key: string; readonly value: OtlpValue }>;
  readonly status: { readonly code: number; readonly message?: string };
}

interface Collected {
  readonly serviceName: string;
  readonly span: OtlpSpan;
}

interface Collector {
  readonly url: string;
  readonly spans: Collected[];
  readonly contentTypes: string[];
  close(): Promise<void>;
}

async function startCollector(): Promise<Collector> {
  const spans: Collected[] = [];
  const contentTypes: string[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString();
    });
    req.on('end', () => {
      contentTypes.push(`${req.method} ${req.url} ${req.headers['content-type']}`);
      const parsed = JSON.parse(body) as {
        resourceSpans: Array<{
          resource: { attributes: Array<{ key: string; value: OtlpValue }> };
          scopeSpans: Array<{ spans: OtlpSpan[] }>;
        }>;
      };
      for (const rs of parsed.resourceSpans) {
        const name = rs.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue ?? '';
        for (const ss of rs.scopeSpans) for (const span of ss.spans) spans.push({ serviceName: name, span });
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/v1/traces`,
    spans,
    contentTypes,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

const CALLER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';
const REVIEWS = 'reviews.default.svc.cluster.local';

function meshYaml(backend: FaultBackend): string {
  return [
    `apiVersion: meshlet.dev/v1alpha1
kind: Proxy
metadata: { name: productpage }
spec:
  labels: { app: productpage, version: v1 }
  app: 127.0.0.1:${backend.port}
  tracing:
    serviceName: productpage
    flushInterval: 50ms
`,
    serviceEntryYaml('reviews', [{ port: backend.port }], { servicePort: 9080 }),
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews }
spec:
  hosts: [reviews]
  http:
    - name: reviews-route
      route: [{ destination: { host: reviews } }]
      retries: { attempts: 2, retryOn: 5xx }
`,
  ].join('---\n');
}

/** The spans of one trace, once `count` of them arrived (or after 5 s). */
async function spansOf(c: Collector, traceId: string, count: number): Promise<OtlpSpan[]> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const found = c.spans.filter((s) => s.span.traceId === traceId).map((s) => s.span);
    if (found.length >= count || Date.now() > deadline) return found;
    await sleep(20);
  }
}

function attr(s: OtlpSpan, key: string): string | undefined {
  const v = s.attributes.find((a) => a.key === key)?.value;
  return v?.stringValue ?? v?.intValue;
}

function one(h: IncomingMessage['headers'][string]): string {
  return Array.isArray(h) ? h.join('|') : (h ?? '');
}

/** The headers each try of `path` carried at the backend, in order. */
function triesOf(backend: FaultBackend, path: string): Array<IncomingMessage['headers']> {
  return backend.seen.filter((s) => s.url === path).map((s) => s.headers);
}

t.test('tracing end to end', async (t) => {
  const collector = await startCollector();
  const flakyTries = new Map<string, number>();
  const backend = await startFaultBackend('reviews', (_n, req) => {
    // The first try of each /flaky path fails; the retry succeeds.
    const url = req.url ?? '';
    if (!url.startsWith('/flaky')) return { kind: 'echo' };
    const n = (flakyTries.get(url) ?? 0) + 1;
    flakyTries.set(url, n);
    return n === 1 ? { kind: 'status', status: 503 } : { kind: 'echo' };
  });
  const agent = new Agent({ connections: 4 });
  const meshes: Meshlet[] = [];
  t.teardown(async () => {
    await agent.close();
    for (const m of meshes) await m.stop();
    await backend.close();
    await collector.close();
  });
  const start = (sampling: string): Promise<Meshlet> =>
    spawnMeshlet(meshYaml(backend), {
      engine: 'h1',
      args: ['--tracing-endpoint', collector.url, '--tracing-sampling', sampling, '--no-access-log'],
    });
  const mesh = await start('100');
  meshes.push(mesh);

  t.test('a W3C caller and a retry: one server span, two sibling client spans', async (t) => {
    const r = await call(mesh, agent, '/flaky/1?q=1', {
      host: 'reviews:9080',
      headers: { traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01`, tracestate: 'vendor=x' },
    });
    t.equal(r.status, 200, r.text);
    const spans = await spansOf(collector, CALLER_TRACE, 3);
    t.equal(spans.length, 3, 'request span and two attempt spans');
    const server = spans.find((s) => s.kind === 2);
    const clients = spans
      .filter((s) => s.kind === 3)
      .sort((a, b) => (BigInt(a.startTimeUnixNano) < BigInt(b.startTimeUnixNano) ? -1 : 1));
    if (server === undefined || clients.length !== 2) return;
    t.equal(server.parentSpanId, CALLER_SPAN, "the request span continues the caller's trace");
    t.equal(server.name, `GET ${REVIEWS}`);
    t.equal(attr(server, 'http.request.method'), 'GET');
    t.equal(attr(server, 'url.path'), '/flaky/1');
    t.equal(attr(server, 'server.address'), 'reviews');
    t.equal(attr(server, 'http.response.status_code'), '200');
    t.equal(attr(server, 'upstream_cluster'), `outbound|9080||${REVIEWS}`);
    t.equal(attr(server, 'network.peer.address'), '127.0.0.1');
    t.equal(server.status.code, 0);
    const [first, second] = clients as [OtlpSpan, OtlpSpan];
    t.not(first.spanId, second.spanId, 'each try has its own span id');
    for (const c of clients) {
      t.equal(c.parentSpanId, server.spanId, 'attempts are children of the request span');
      t.equal(c.name, `router outbound|9080||${REVIEWS} egress`);
      t.ok(
        BigInt(c.startTimeUnixNano) >= BigInt(server.startTimeUnixNano),
        'attempt starts inside the request',
      );
      t.ok(BigInt(c.endTimeUnixNano) <= BigInt(server.endTimeUnixNano), 'attempt ends inside the request');
      t.ok(BigInt(c.endTimeUnixNano) >= BigInt(c.startTimeUnixNano));
    }
    t.ok(
      BigInt(second.startTimeUnixNano) >= BigInt(first.endTimeUnixNano),
      'the retry follows the first try',
    );
    t.equal(attr(first, 'http.response.status_code'), '503');
    t.equal(first.status.code, 2, 'the 503 try is an error');
    t.equal(attr(second, 'http.response.status_code'), '200');
    t.equal(attr(second, 'http.request.resend_count'), '1');
    t.equal(attr(first, 'network.peer.port'), String(backend.port));
    const tries = triesOf(backend, '/flaky/1?q=1');
    t.equal(tries.length, 2);
    t.same(
      tries.map((h) => one(h['traceparent'])),
      [`00-${CALLER_TRACE}-${first.spanId}-01`, `00-${CALLER_TRACE}-${second.spanId}-01`],
      "each try's traceparent names its own client span",
    );
    t.same(
      tries.map((h) => one(h['tracestate'])),
      ['vendor=x', 'vendor=x'],
      'tracestate passed on unchanged',
    );
    // Wall-clock sanity: the span is from now, not from the monotonic clock's origin.
    const startMs = Number(BigInt(server.startTimeUnixNano) / 1_000_000n);
    t.ok(Math.abs(startMs - Date.now()) < 60_000, 'start time is Unix time');
    t.equal(collector.spans.find((s) => s.span.traceId === CALLER_TRACE)?.serviceName, 'productpage');
    t.match(collector.contentTypes[0], /^POST \/v1\/traces application\/json/);
  });

  t.test('a B3 multi-header caller gets B3 back, and W3C', async (t) => {
    const r = await call(mesh, agent, '/b3', {
      host: 'reviews:9080',
      headers: { 'x-b3-traceid': CALLER_SPAN, 'x-b3-spanid': CALLER_SPAN, 'x-b3-sampled': '1' },
    });
    t.equal(r.status, 200);
    const trace = `0000000000000000${CALLER_SPAN}`;
    const spans = await spansOf(collector, trace, 2);
    const server = spans.find((s) => s.kind === 2);
    const client = spans.find((s) => s.kind === 3);
    if (server === undefined || client === undefined) {
      t.fail('spans missing');
      return;
    }
    t.equal(server.parentSpanId, CALLER_SPAN);
    const [h] = triesOf(backend, '/b3') as [IncomingMessage['headers']];
    t.equal(one(h['x-b3-traceid']), CALLER_SPAN, 'the 64-bit id goes on as 64 bits');
    t.equal(one(h['x-b3-spanid']), client.spanId);
    t.equal(one(h['x-b3-parentspanid']), server.spanId);
    t.equal(one(h['x-b3-sampled']), '1');
    t.equal(one(h['traceparent']), `00-${trace}-${client.spanId}-01`);
  });

  t.test('a B3 single-header caller; a request without context starts a trace', async (t) => {
    await call(mesh, agent, '/single', {
      host: 'reviews:9080',
      headers: { b3: `${CALLER_TRACE.replace('4', '5')}-${CALLER_SPAN}-1` },
    });
    const [h] = triesOf(backend, '/single') as [IncomingMessage['headers']];
    t.match(one(h['b3']), new RegExp(`^${CALLER_TRACE.replace('4', '5')}-[0-9a-f]{16}-1-[0-9a-f]{16}$`));
    t.equal(h['x-b3-traceid'], undefined, 'single in, single out');
    await call(mesh, agent, '/root', { host: 'reviews:9080' });
    const [root] = triesOf(backend, '/root') as [IncomingMessage['headers']];
    const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(one(root['traceparent']));
    t.ok(m, 'a new sampled trace');
    const spans = await spansOf(collector, m?.[1] ?? '', 2);
    t.equal(spans.find((s) => s.kind === 2)?.parentSpanId ?? '', '', 'the request span is the root');
    t.equal(spans.find((s) => s.kind === 3)?.spanId, m?.[2]);
  });

  t.test('inbound: the request span serves the peer, the attempt goes to the application', async (t) => {
    const trace = '11111111111111111111111111111111';
    const res = await request(`http://127.0.0.1:${mesh.inboundPort}/inbound`, {
      dispatcher: agent,
      headers: { host: 'productpage:9080', traceparent: `00-${trace}-${CALLER_SPAN}-01` },
    });
    await res.body.text();
    t.equal(res.statusCode, 200);
    const spans = await spansOf(collector, trace, 2);
    const server = spans.find((s) => s.kind === 2);
    const client = spans.find((s) => s.kind === 3);
    if (server === undefined || client === undefined) {
      t.fail('spans missing');
      return;
    }
    t.equal(attr(server, 'meshlet.reporter'), 'destination');
    t.equal(server.parentSpanId, CALLER_SPAN);
    t.equal(client.parentSpanId, server.spanId);
    t.equal(client.name, `router inbound|${backend.port}|| egress`);
    t.equal(server.name, 'GET productpage', "the request's host names the span");
    const [h] = triesOf(backend, '/inbound') as [IncomingMessage['headers']];
    t.equal(one(h['traceparent']), `00-${trace}-${client.spanId}-01`);
  });

  t.test('sampling 0: nothing exported unless the caller sampled', async (t) => {
    const quiet = await start('0');
    meshes.push(quiet);
    const before = collector.spans.length;
    await call(quiet, agent, '/unsampled', { host: 'reviews:9080' });
    const [h] = triesOf(backend, '/unsampled') as [IncomingMessage['headers']];
    const m = /^00-([0-9a-f]{32})-[0-9a-f]{16}-00$/.exec(one(h['traceparent']));
    t.ok(m, 'the decision goes downstream: traceparent with flags 00');
    const sampledTrace = 'abcdef0123456789abcdef0123456789';
    await call(quiet, agent, '/sampled', {
      host: 'reviews:9080',
      headers: { traceparent: `00-${sampledTrace}-${CALLER_SPAN}-01` },
    });
    const spans = await spansOf(collector, sampledTrace, 2);
    t.equal(spans.length, 2, 'a sampled caller is traced at 0 %');
    // Batches leave in order: once the later request's spans are in, the earlier would be too.
    t.equal(
      collector.spans.slice(before).filter((s) => s.span.traceId === m?.[1]).length,
      0,
      'the unsampled request exported nothing',
    );
    t.equal(collector.spans.length - before, 2);
    const metrics = await (await fetch(quiet.admin('/metrics'))).text();
    t.match(metrics, /meshlet_trace_spans_exported_total 2/);
  });
});
