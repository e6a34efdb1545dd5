import t from 'tap';
import { BalancerRegistry } from '../../../src/balancer/round-robin.ts';
import type { ConfigBundle } from '../../../src/config/resource-types.ts';
import { SnapshotStore } from '../../../src/config/snapshot-store.ts';
import type { HeaderList, IncomingRequest, ResponseSink } from '../../../src/listener/listener-types.ts';
import { ProxyPipeline } from '../../../src/pipeline/proxy-pipeline.ts';
import type { Cluster, RouteDecision, RouteTable } from '../../../src/router/route-types.ts';
import { MeshMetrics } from '../../../src/telemetry/metrics.ts';
import type {
  UpstreamCall,
  UpstreamClient,
  UpstreamHandler,
  UpstreamRequest,
  UpstreamTarget,
} from '../../../src/upstream/upstream-types.ts';

/** The pipeline with a fake route table, a scripted upstream and a recording response sink. */

class Sink implements ResponseSink {
  aborted = false;
  status = 0;
  headers: HeaderList = [];
  body = '';
  ended = false;
  closed = false;
  destroyed = false;
  onAborted(): void {}
  onWritable(): void {}
  writeHead(status: number, headers: HeaderList): void {
    this.status = status;
    this.headers = headers;
  }
  write(chunk: Buffer): boolean {
    this.body += chunk.toString();
    return true;
  }
  end(chunk?: Buffer, close?: boolean): void {
    if (chunk !== undefined) this.body += chunk.toString();
    this.ended = true;
    this.closed = close === true;
  }
  destroy(): void {
    this.destroyed = true;
  }
  header(name: string): string | undefined {
    const i = this.headers.indexOf(name);
    return i < 0 ? undefined : this.headers[i + 1];
  }
}

type Script = (target: UpstreamTarget, req: UpstreamRequest, h: UpstreamHandler) => void;

function setup(route: () => RouteDecision, script: Script) {
  const sent: string[] = [];
  const bugs: unknown[] = [];
  const upstream: UpstreamClient = {
    send(target, req, h): UpstreamCall {
      sent.push(`${target.address}:${target.port}`);
      queueMicrotask(() => script(target, req, h));
      return { resume() {}, abort() {} };
    },
    close: async () => {},
  };
  const routes: RouteTable = { route, clusters: new Map() };
  const store = new SnapshotStore({
    version: 1,
    hash: 'h',
    loadedAt: new Date(0),
    bundle: {} as ConfigBundle,
    routes,
    outboundTrafficPolicy: 'ALLOW_ANY',
  });
  const metrics = new MeshMetrics();
  const pipeline = new ProxyPipeline({
    store,
    upstream,
    balancers: new BalancerRegistry(),
    metrics,
    identity: {
      workload: 'w',
      namespace: 'default',
      app: 'w',
      version: 'v1',
      canonicalService: 'w',
      canonicalRevision: 'v1',
      cluster: 'unknown',
    },
    accessLog: null,
    random: () => 0.5,
    now: () => 0,
    requestId: () => 'rid',
    app: null,
    namespace: 'default',
    onBug: (e) => bugs.push(e),
  });
  return { pipeline, sent, bugs, metrics };
}

const request = (target: string, headers: HeaderList = ['host', 'svc']): IncomingRequest => ({
  engine: 'h1',
  method: 'GET',
  target,
  headers,
  remoteAddress: '10.1.2.3',
  localPort: 15001,
  secure: false,
  body: null,
});

const cluster = (...ports: number[]): Cluster => ({
  name: 'outbound|80||svc.default.svc.cluster.local',
  host: 'svc.default.svc.cluster.local',
  port: 80,
  subset: '',
  endpoints: ports.map((p) => ({
    id: `127.0.0.1:${p}`,
    address: '127.0.0.1',
    port: p,
    weight: 1,
    labels: {},
  })),
  serviceFqdn: 'svc.default.svc.cluster.local',
  serviceName: 'svc',
  serviceNamespace: 'default',
});

const forward = (
  c: Cluster,
  extra: Partial<Extract<RouteDecision, { kind: 'forward' }>> = {},
): RouteDecision => ({
  kind: 'forward',
  cluster: c,
  routeName: 'default/svc',
  responseHeaders: [],
  path: '/p',
  authority: 'svc',
  requestHeaders: [],
  mirrors: [],
  mirrorClusters: [],
  ...extra,
});

const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

t.test('no Host and no absolute-form target: 400 DPE and close', async (t) => {
  const { pipeline } = setup(
    () => forward(cluster(1)),
    () => {},
  );
  const res = new Sink();
  pipeline.outbound(request('/x', []), res);
  t.equal(res.status, 400);
  t.equal(res.header('x-meshlet-flags'), 'DPE');
  t.ok(res.closed, 'connection closed');
});

t.test('connect failures retry on other endpoints, then 503 UF,URX', async (t) => {
  const { pipeline, sent, metrics } = setup(
    () => forward(cluster(1, 2, 3)),
    (_t, _r, h) => h.onError('connect', false, 'refused'),
  );
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  for (let i = 0; i < 5; i++) await settle();
  t.same(sent, ['127.0.0.1:1', '127.0.0.1:2', '127.0.0.1:3'], 'three attempts, each on another endpoint');
  t.equal(res.status, 503);
  t.equal(res.header('x-meshlet-flags'), 'UF,URX');
  t.match(await metrics.exposition(), /response_code="503"[^}]*response_flags="UF,URX"/);
});

t.test('a route with retries off makes one attempt', async (t) => {
  const { pipeline, sent } = setup(
    () => forward(cluster(1, 2), { retries: { attempts: 0, retryOn: '' } }),
    (_t, _r, h) => h.onError('connect', false, 'refused'),
  );
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  for (let i = 0; i < 3; i++) await settle();
  t.same(sent, ['127.0.0.1:1']);
  t.equal(res.header('x-meshlet-flags'), 'UF');
});

t.test('reset after the headers cuts the stream and flags UC', async (t) => {
  const { pipeline, metrics } = setup(
    () => forward(cluster(1)),
    (_t, _r, h) => {
      h.onHeaders(200, ['content-length', '10']);
      h.onData(Buffer.from('abc'));
      h.onError('reset', true, 'reset');
    },
  );
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  await settle();
  t.equal(res.status, 200);
  t.ok(res.destroyed, 'stream cut');
  t.notOk(res.ended);
  t.match(await metrics.exposition(), /response_code="200"[^}]*response_flags="UC"/);
});

t.test('reset before headers: 503 UC; invalid response: 502 UPE', async (t) => {
  for (const [failure, status, flag] of [
    ['reset', 503, 'UC'],
    ['protocol', 502, 'UPE'],
  ] as const) {
    const { pipeline } = setup(
      () => forward(cluster(1)),
      (_t, _r, h) => h.onError(failure, false, failure),
    );
    const res = new Sink();
    pipeline.outbound(request('/x'), res);
    await settle();
    t.same([res.status, res.header('x-meshlet-flags')], [status, flag]);
  }
});

t.test('gRPC abort answers 200 with grpc-status', async (t) => {
  const { pipeline, sent } = setup(
    () => forward(cluster(1), { fault: { abort: { grpcStatus: 'UNAVAILABLE', fraction: 1 } } }),
    () => {},
  );
  const res = new Sink();
  pipeline.outbound(request('/x'), res);
  t.equal(res.status, 200);
  t.equal(res.header('grpc-status'), '14');
  t.same(sent, [], 'an aborted request never goes upstream');
});

t.test('a bug on the request path answers 500 and is reported, not thrown', async (t) => {
  const { pipeline, bugs } = setup(
    () => {
      throw new Error('boom');
    },
    () => {},
  );
  const res = new Sink();
  t.doesNotThrow(() => pipeline.outbound(request('/x'), res));
  t.equal(res.status, 500);
  t.equal(bugs.length, 1);
  t.equal(pipeline.inFlight, 0, 'the exchange is finished');
});

t.test('forwarded headers: request edits, x-forwarded-*, request id, original path', async (t) => {
  let got: UpstreamRequest | null = null;
  const { pipeline } = setup(
    () =>
      forward(cluster(1), {
        path: '/v2/p',
        originalPath: '/p',
        requestHeaders: [{ set: [['x-set', 'yes']], add: [], remove: ['x-drop'] }],
        responseHeaders: [{ set: [['x-resp', 'r']], add: [], remove: [] }],
      }),
    (_t, req, h) => {
      got = req;
      h.onHeaders(201, ['content-length', '2']);
      h.onData(Buffer.from('ok'));
      h.onEnd();
    },
  );
  const res = new Sink();
  pipeline.outbound(request('/p', ['host', 'svc', 'x-drop', '1', 'connection', 'keep-alive']), res);
  await settle();
  const r = got as UpstreamRequest | null;
  t.equal(r?.path, '/v2/p');
  const h = r?.headers ?? [];
  const value = (n: string): string | undefined => {
    const i = h.indexOf(n);
    return i < 0 ? undefined : h[i + 1];
  };
  t.equal(value('x-set'), 'yes');
  t.equal(value('x-drop'), undefined);
  t.equal(value('connection'), undefined, 'hop-by-hop removed');
  t.equal(value('x-forwarded-for'), '10.1.2.3');
  t.equal(value('x-forwarded-proto'), 'http');
  t.equal(value('x-request-id'), 'rid');
  t.equal(value('x-envoy-original-path'), '/p');
  t.same([res.status, res.body, res.header('x-resp')], [201, 'ok', 'r']);
});
