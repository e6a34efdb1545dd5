import type { Duplex } from 'node:stream';
import t from 'tap';
import type { Origination, SecurityEvent } from '../../../src/pipeline/pipeline-types.ts';
import { UPGRADE_OVER_TLS_REASON } from '../../../src/pipeline/upgrade-stage.ts';
import type { Cluster, Endpoint } from '../../../src/router/route-types.ts';
import type { UpstreamTls } from '../../../src/tls/identity-types.ts';
import { cluster, forward, request, respond, Sink, settle, setup } from './pipeline-harness.ts';

/** Outbound mTLS origination on the request path: targets, failures, retries, mirrors, labels. */

const SERVER = 'spiffe://cluster.local/ns/default/sa/svc';
const OWN = 'spiffe://cluster.local/ns/default/sa/caller';

const mutual = (poolKey = 'k1'): UpstreamTls => ({
  poolKey,
  certChainPem: 'CERT',
  keyPem: 'KEY',
  caPem: 'CA',
  servername: 'outbound_.80_._.svc.default.svc.cluster.local',
  alpn: ['istio-http/1.1', 'istio'],
  expectedSans: [SERVER],
});

function originSetup(
  originate: (cluster: Cluster, endpoint: Endpoint) => Origination,
  script: Parameters<typeof setup>[1] = (call) => respond(call, 200, 'ok'),
  c: Cluster = cluster('svc', 1, 2),
) {
  const events: SecurityEvent[] = [];
  const asked: string[] = [];
  const h = setup(() => forward(c), script, {
    deps: {
      originate: (cl, e) => {
        asked.push(`${cl.name} ${e.id}`);
        return originate(cl, e);
      },
      spiffeId: () => OWN,
      onSecurityEvent: (e) => events.push(e),
    },
  });
  return { ...h, events, asked, c };
}

t.test('plaintext: the endpoint itself is the target', async (t) => {
  const { pipeline, calls, c, asked } = originSetup(() => undefined);
  pipeline.outbound(request('/p'), new Sink());
  await settle();
  t.equal(calls[0]?.to, c.endpoints[0], 'no new object per request');
  t.equal(calls[0]?.to.tls, undefined);
  t.same(asked, [`${c.name} 127.0.0.1:1`]);
});

t.test('mTLS: the attempt carries the TLS settings; the target object is kept while they are', async (t) => {
  let tls = mutual('k1');
  const { pipeline, calls } = originSetup(() => tls, undefined, cluster('svc', 1));
  pipeline.outbound(request('/p'), new Sink());
  pipeline.outbound(request('/p'), new Sink());
  await settle();
  t.equal(calls[0]?.to.tls, tls);
  t.same([calls[0]?.to.address, calls[0]?.to.port], ['127.0.0.1', 1]);
  t.equal(calls[1]?.to, calls[0]?.to, 'same settings: same target');
  tls = mutual('k2');
  pipeline.outbound(request('/p'), new Sink());
  await settle();
  t.equal(calls[2]?.to.tls, tls, 'rotated settings: new target');
  t.not(calls[2]?.to, calls[0]?.to);
});

t.test('no workload certificate: UF with the reason, retried, the endpoints not blamed', async (t) => {
  const { pipeline, calls, registry, c, events, logged, asked, time } = originSetup(() => ({
    error: 'no workload certificate available yet',
  }));
  const res = new Sink();
  pipeline.outbound(request('/p'), res);
  await time.advance(5000);
  t.equal(res.status, 503);
  t.equal(res.header('x-meshlet-flags'), 'UF,URX', 'a connection failure, retried until the retries ran out');
  t.match(
    res.body,
    /reset reason: connection failure, transport failure reason: no workload certificate available yet/,
  );
  t.equal(calls.length, 0, 'nothing was sent');
  t.equal(asked.length, 3, 'the first try and the two default retries');
  const state = registry.get(c);
  t.same([state.started, state.ended], [[], []], 'no load feedback and no outlier count');
  t.equal(state.releases, 1, 'the admission slot is given back');
  t.equal(events.length, 3);
  t.match(events[0], {
    kind: 'upstream-tls',
    cluster: c.name,
    reason: 'no workload certificate available yet',
  });
  await settle();
  t.match(logged[0], {
    response_code: 503,
    response_flags: 'UF,URX',
    upstream_transport_failure_reason: 'no workload certificate available yet',
  });
});

t.test('a TLS connect failure keeps the client reason; a retry that succeeds answers normally', async (t) => {
  const detail = `server identity spiffe://cluster.local/ns/default/sa/evil does not match expected ${SERVER}`;
  const { pipeline, calls, events, registry, c, time } = originSetup(
    () => mutual(),
    (call) => {
      if (call.index === 0) call.h.onError('connect', false, detail, false);
      else respond(call, 200, 'ok');
    },
  );
  const res = new Sink();
  pipeline.outbound(request('/p'), res);
  await time.advance(5000);
  t.equal(res.status, 200);
  t.equal(calls.length, 2);
  t.same(
    events.map((e) => e.kind === 'upstream-tls' && e.reason),
    [detail],
  );
  t.match(
    registry.get(c).ended[0],
    { result: { failure: 'connect' } },
    'a server with the wrong identity is blamed',
  );
});

t.test('a TLS connect failure with no retry left: 503 UF naming the reason', async (t) => {
  const { pipeline, time } = originSetup(
    () => mutual(),
    (call) => call.h.onError('connect', false, 'certificate has expired', false),
  );
  const res = new Sink();
  pipeline.outbound(request('/p'), res);
  await time.advance(5000);
  t.equal(res.status, 503);
  t.match(res.body, /transport failure reason: certificate has expired/);
});

t.test('a plaintext connect failure keeps the plain body', async (t) => {
  const { pipeline, events, time } = originSetup(
    () => undefined,
    (call) => call.h.onError('connect', false, 'ECONNREFUSED', false),
  );
  const res = new Sink();
  pipeline.outbound(request('/p'), res);
  await time.advance(5000);
  t.equal(res.status, 503);
  t.notMatch(res.body, /transport failure/);
  t.same(events, []);
});

t.test('source-side labels: our principal and the server one when mTLS', async (t) => {
  const { pipeline, metrics } = originSetup(() => mutual(), undefined, cluster('svc', 1));
  pipeline.outbound(request('/p'), new Sink());
  await settle();
  const text = await metrics.exposition();
  t.match(text, new RegExp(`source_principal="${OWN}"`));
  t.match(text, new RegExp(`destination_principal="${SERVER}"`));
  t.match(text, /connection_security_policy="unknown"/, 'always unknown on the client side');
});

t.test('source-side labels: several expected SANs or SIMPLE TLS', async (t) => {
  const several: UpstreamTls = {
    ...mutual(),
    expectedSans: [SERVER, 'spiffe://cluster.local/ns/default/sa/b'],
  };
  const simple: UpstreamTls = { poolKey: 's', expectedSans: ['api.example.com'] };
  const a = originSetup(() => several, undefined, cluster('a', 1));
  a.pipeline.outbound(request('/p'), new Sink());
  const b = originSetup(() => simple, undefined, cluster('b', 1));
  b.pipeline.outbound(request('/p'), new Sink());
  await settle();
  t.match(
    await a.metrics.exposition(),
    /source_principal="spiffe:[^"]*",[^}]*destination_principal="unknown"/,
  );
  t.match(await b.metrics.exposition(), /source_principal="unknown",[^}]*destination_principal="unknown"/);
});

t.test('mirrors originate like the primary; without a certificate the copy fails', async (t) => {
  const mirrorCluster = cluster('shadow', 7);
  const primary = cluster('svc', 1);
  const events: SecurityEvent[] = [];
  const h = setup(
    () => forward(primary, { mirrorClusters: [{ cluster: mirrorCluster, fraction: 1 }] }),
    (call) => respond(call, 200),
    {
      random: [0],
      deps: {
        originate: (cl) => (cl === mirrorCluster ? { error: 'no certificate' } : mutual()),
        onSecurityEvent: (e) => events.push(e),
      },
    },
  );
  const res = new Sink();
  h.pipeline.outbound(request('/p'), res);
  await settle();
  t.equal(res.status, 200);
  t.same(
    h.calls.map((c) => c.target),
    ['127.0.0.1:1'],
    'only the primary went out',
  );
  t.equal(h.calls[0]?.to.tls?.poolKey, 'k1');
  t.equal(h.stats.mirrorsFailed, 1);
  t.same(h.registry.get(mirrorCluster).started, [], 'the mirror endpoint is not blamed');
});

t.test('mirror copies carry TLS too', async (t) => {
  const mirrorCluster = cluster('shadow', 7);
  const h = setup(
    () => forward(cluster('svc', 1), { mirrorClusters: [{ cluster: mirrorCluster, fraction: 1 }] }),
    (call) => respond(call, 200),
    { random: [0], deps: { originate: () => mutual('m') } },
  );
  h.pipeline.outbound(request('/p'), new Sink());
  await settle();
  t.same(
    h.calls.map((c) => [c.target, c.to.tls?.poolKey]),
    [
      ['127.0.0.1:1', 'm'],
      ['127.0.0.1:7', 'm'],
    ],
  );
});

t.test('upgrades are refused rather than sent in the clear to an mTLS endpoint', async (t) => {
  let written = '';
  const socket = {
    end(data?: string | Buffer) {
      written += data === undefined ? '' : data.toString();
    },
  } as unknown as Duplex;
  const headers = ['host', 'svc', 'connection', 'upgrade', 'upgrade', 'websocket'];
  const tlsSetup = originSetup(() => mutual());
  tlsSetup.pipeline.upgrade('source')(request('/ws', {}, headers), socket, Buffer.alloc(0));
  t.match(written, /^HTTP\/1\.1 503 [\s\S]*x-meshlet-flags: UF\r\n/);
  t.match(written, new RegExp(UPGRADE_OVER_TLS_REASON.replace(/[()/]/g, '\\$&')));
  written = '';
  const noCert = originSetup(() => ({ error: 'no workload certificate' }));
  noCert.pipeline.upgrade('source')(request('/ws', {}, headers), socket, Buffer.alloc(0));
  t.match(written, /transport failure reason: no workload certificate/);
});
