import type { Duplex } from 'node:stream';
import t from 'tap';
import type { Snapshot } from '../../../src/config/snapshot-store.ts';
import { withoutXfcc, xfccValue } from '../../../src/pipeline/authz-stage.ts';
import type { InboundPolicy, InboundWorkload, SecurityEvent } from '../../../src/pipeline/pipeline-types.ts';
import type { PeerIdentity } from '../../../src/tls/identity-types.ts';
import type { Authorizer, AuthzDecision, AuthzRequest } from '../../../src/tls/policy-types.ts';
import { cluster, forward, request, respond, Sink, settle, setup } from './pipeline-harness.ts';

/** The inbound security stages: STRICT, x-forwarded-client-cert, AuthorizationPolicy, labels. */

const CALLER: PeerIdentity = {
  spiffeId: 'spiffe://cluster.local/ns/shop/sa/productpage',
  principal: 'cluster.local/ns/shop/sa/productpage',
  trustDomain: 'cluster.local',
  namespace: 'shop',
  serviceAccount: 'productpage',
};
const OWN = 'spiffe://cluster.local/ns/default/sa/reviews';
const APP = { address: '127.0.0.1', port: 9080 };

/** An authorizer that records what it was asked and answers `decide`. */
function recordingAuthorizer(decide: (req: AuthzRequest) => AuthzDecision, empty = false) {
  const asked: AuthzRequest[] = [];
  const authorizer: Authorizer = {
    empty,
    check(req) {
      asked.push(req);
      return decide(req);
    },
  };
  return { authorizer, asked };
}

const ALLOW: AuthzDecision = { allowed: true, reason: 'allowed_by[default-a-rule[0]]', audited: false };
const DENY: AuthzDecision = {
  allowed: false,
  reason: 'rbac_access_denied_matched_policy[default-deny-rule[0]]',
  audited: false,
};

function workloadWith(
  policy: (snapshot: Snapshot) => InboundPolicy,
  extra: Partial<InboundWorkload> = {},
): InboundWorkload {
  return {
    name: 'reviews',
    app: APP,
    identity: {
      workload: 'reviews',
      namespace: 'default',
      app: 'reviews',
      version: 'v1',
      canonicalService: 'reviews',
      canonicalRevision: 'v1',
      cluster: 'unknown',
    },
    namespace: 'default',
    spiffeId: () => OWN,
    policy,
    ...extra,
  };
}

function inboundSetup(policy: (snapshot: Snapshot) => InboundPolicy, extra: Partial<InboundWorkload> = {}) {
  const events: SecurityEvent[] = [];
  const h = setup(
    () => forward(cluster('svc', 1)),
    (call) => respond(call, 200, 'app'),
    { deps: { inboundWorkload: workloadWith(policy, extra), onSecurityEvent: (e) => events.push(e) } },
  );
  return { ...h, events };
}

const mtls = (headers: string[] = ['host', 'reviews:9080']) =>
  request(
    '/r/1?x=1',
    { secure: true, peer: CALLER, sni: 'outbound_.9080_._.reviews', localPort: 15006 },
    headers,
  );

t.test('withoutXfcc: the same list when absent, every occurrence removed when present', async (t) => {
  const plain = ['host', 'a', 'x-b', '1'];
  t.equal(withoutXfcc(plain), plain, 'no copy when there is nothing to remove');
  t.same(
    withoutXfcc([
      'x-forwarded-client-cert',
      'By=evil',
      'host',
      'a',
      'x-forwarded-client-cert',
      'URI=x',
      'k',
      'v',
    ]),
    ['host', 'a', 'k', 'v'],
  );
  t.same(withoutXfcc(['host', 'a', 'x-forwarded-client-cert', 'z']), ['host', 'a']);
  t.equal(xfccValue(OWN, CALLER), `By=${OWN};URI=${CALLER.spiffeId}`);
  t.equal(xfccValue(null, CALLER), `URI=${CALLER.spiffeId}`, 'no By= without an own identity');
});

t.test('an mTLS caller: outside XFCC replaced by ours, forwarded to the workload app', async (t) => {
  const { pipeline, calls } = inboundSetup(() => ({ authorizer: null, mode: 'STRICT' }));
  const res = new Sink();
  pipeline.inbound(mtls(['host', 'reviews:9080', 'x-forwarded-client-cert', 'URI=spiffe://forged']), res);
  await settle();
  t.equal(res.status, 200);
  t.equal(calls[0]?.target, '127.0.0.1:9080');
  const sent = calls[0]?.req.headers ?? [];
  const xfcc = sent.filter((_, i) => i % 2 === 1 && sent[i - 1] === 'x-forwarded-client-cert');
  t.same(xfcc, [`By=${OWN};URI=${CALLER.spiffeId}`], 'only our header, never the forged one');
});

t.test('a plaintext caller: outside XFCC removed, none added', async (t) => {
  const { pipeline, calls } = inboundSetup(() => ({ authorizer: null, mode: 'PERMISSIVE' }));
  const req = request('/r', { localPort: 15006 }, [
    'host',
    'reviews',
    'x-forwarded-client-cert',
    'URI=spiffe://forged',
  ]);
  pipeline.inbound(req, new Sink());
  await settle();
  t.notOk(calls[0]?.req.headers.includes('x-forwarded-client-cert'));
  t.same(
    req.headers,
    ['host', 'reviews', 'x-forwarded-client-cert', 'URI=spiffe://forged'],
    'request untouched',
  );
});

t.test('STRICT: a plaintext request closes its connection and reaches nothing', async (t) => {
  const { pipeline, calls, events, logged } = inboundSetup(() => ({ authorizer: null, mode: 'STRICT' }));
  const res = new Sink();
  pipeline.inbound(request('/r', { remoteAddress: '10.9.9.9' }, ['host', 'reviews']), res);
  await settle();
  t.ok(res.destroyed, 'connection cut, no response');
  t.equal(res.status, 0);
  t.equal(calls.length, 0);
  t.same(events, [{ kind: 'strict-plaintext', workload: 'reviews', source: '10.9.9.9' }]);
  t.equal(pipeline.inFlight, 0);
  await settle();
  t.match(logged[0], { response_code: 0, response_code_details: 'plaintext_rejected_by_strict_mtls' });
  // TLS without a client certificate is not plaintext: the listener decided to serve it.
  const tlsNoCert = new Sink();
  pipeline.inbound(request('/r', { secure: true }, ['host', 'reviews']), tlsNoCert);
  await settle();
  t.equal(tlsNoCert.status, 200);
});

t.test('authorization sees the sanitized request and the workload port', async (t) => {
  const { authorizer, asked } = recordingAuthorizer(() => ALLOW);
  const { pipeline, calls } = inboundSetup(() => ({ authorizer, mode: 'PERMISSIVE' }));
  const res = new Sink();
  pipeline.inbound(
    mtls(['host', 'reviews:9080', 'x-forwarded-client-cert', 'URI=spiffe://forged', 'x-u', 'j']),
    res,
  );
  await settle();
  t.equal(res.status, 200);
  t.equal(calls.length, 1);
  t.same(asked, [
    {
      method: 'GET',
      host: 'reviews:9080',
      path: '/r/1?x=1',
      port: 9080,
      headers: ['host', 'reviews:9080', 'x-u', 'j'],
      sourceIp: '10.1.2.3',
      peer: CALLER,
      sni: 'outbound_.9080_._.reviews',
    },
  ]);
});

t.test('denied: 403 RBAC: access denied, no flag, reason in the access log, counted', async (t) => {
  const { authorizer } = recordingAuthorizer(() => DENY);
  const { pipeline, calls, logged, metrics, events } = inboundSetup(() => ({
    authorizer,
    mode: 'PERMISSIVE',
  }));
  const res = new Sink();
  pipeline.inbound(mtls(), res);
  await settle();
  t.equal(res.status, 403);
  t.equal(res.body, 'RBAC: access denied', "Envoy's body, byte for byte");
  t.equal(res.header('content-type'), 'text/plain');
  t.equal(res.header('content-length'), '19');
  t.equal(res.header('x-meshlet-flags'), undefined, 'no response flag, as Envoy');
  t.equal(calls.length, 0, 'the application never sees it');
  await settle();
  t.match(logged[0], {
    response_code: 403,
    response_flags: '-',
    response_code_details: DENY.reason,
    downstream_peer_uri_san: CALLER.spiffeId,
    requested_server_name: 'outbound_.9080_._.reviews',
    reporter: 'destination',
  });
  t.match(events, [
    { kind: 'authz-denied', workload: 'reviews', reason: DENY.reason, source: CALLER.spiffeId },
  ]);
  const text = await metrics.exposition();
  t.match(text, /meshlet_authz_denied_total\{workload="reviews"\} 1/);
  t.match(
    text,
    /istio_requests_total\{reporter="destination"[^}]*source_principal="spiffe:\/\/cluster.local\/ns\/shop\/sa\/productpage"[^}]*response_code="403",grpc_response_status="",response_flags="-",connection_security_policy="mutual_tls"\} 1/,
  );
});

t.test('denied gRPC caller: HTTP 200 with grpc-status 7, no body', async (t) => {
  const { authorizer } = recordingAuthorizer(() => DENY);
  const { pipeline } = inboundSetup(() => ({ authorizer, mode: 'PERMISSIVE' }));
  const res = new Sink();
  pipeline.inbound(mtls(['host', 'reviews', 'content-type', 'application/grpc+proto']), res);
  await settle();
  t.equal(res.status, 200);
  t.equal(res.header('grpc-status'), '7');
  t.equal(res.header('grpc-message'), 'RBAC%3A%20access%20denied');
  t.equal(res.header('content-type'), 'application/grpc');
  t.equal(res.body, '');
});

t.test('dry-run and audit: allowed, counted, the would-be denial reported', async (t) => {
  const { authorizer } = recordingAuthorizer(() => ({
    allowed: true,
    reason: 'no_allow_policy',
    audited: true,
    dryRunDenied: 'rbac_access_denied_matched_policy[default-dry-rule[0]]',
  }));
  const { pipeline, calls, metrics, events } = inboundSetup(() => ({ authorizer, mode: 'PERMISSIVE' }));
  const res = new Sink();
  pipeline.inbound(request('/r', { remoteAddress: '10.0.0.7' }, ['host', 'reviews']), res);
  await settle();
  t.equal(res.status, 200, 'never enforced');
  t.equal(calls.length, 1);
  t.match(events, [
    {
      kind: 'authz-dry-run-denied',
      reason: 'rbac_access_denied_matched_policy[default-dry-rule[0]]',
      source: '10.0.0.7',
    },
  ]);
  const text = await metrics.exposition();
  t.match(text, /meshlet_authz_dry_run_denied_total\{workload="reviews"\} 1/);
  t.match(text, /meshlet_authz_audited_total\{workload="reviews"\} 1/);
  t.notMatch(text, /meshlet_authz_denied_total\{/);
});

t.test('an empty authorizer is not asked', async (t) => {
  const { authorizer, asked } = recordingAuthorizer(() => DENY, true);
  const { pipeline } = inboundSetup(() => ({ authorizer, mode: 'PERMISSIVE' }));
  const res = new Sink();
  pipeline.inbound(request('/r', {}, ['host', 'reviews']), res);
  await settle();
  t.equal(res.status, 200);
  t.equal(asked.length, 0);
});

t.test('policies are read from the snapshot current when the request arrives', async (t) => {
  const { authorizer } = recordingAuthorizer(() => DENY);
  const bySnapshot = new Map<number, InboundPolicy>([
    [1, { authorizer: null, mode: 'PERMISSIVE' }],
    [2, { authorizer, mode: 'PERMISSIVE' }],
  ]);
  const { pipeline, store } = inboundSetup((s) => bySnapshot.get(s.version)!);
  const first = new Sink();
  pipeline.inbound(request('/r', {}, ['host', 'reviews']), first);
  store.swap({ ...store.current, version: 2 });
  const second = new Sink();
  pipeline.inbound(request('/r', {}, ['host', 'reviews']), second);
  await settle();
  t.same([first.status, second.status], [200, 403]);
});

t.test('inbound metric labels: principals, mTLS, the caller namespace from its certificate', async (t) => {
  const { pipeline, metrics } = inboundSetup(() => ({ authorizer: null, mode: 'PERMISSIVE' }));
  pipeline.inbound(mtls(), new Sink());
  pipeline.inbound(request('/r', {}, ['host', 'reviews']), new Sink());
  await settle();
  const lines = (await metrics.exposition()).split('\n').filter((l) => l.startsWith('istio_requests_total{'));
  t.equal(lines.length, 2, 'one series each');
  const secure = lines.find((l) => l.includes('mutual_tls')) ?? '';
  t.match(secure, /source_workload_namespace="shop"/);
  t.match(secure, /source_principal="spiffe:\/\/cluster.local\/ns\/shop\/sa\/productpage"/);
  t.match(secure, /destination_principal="spiffe:\/\/cluster.local\/ns\/default\/sa\/reviews"/);
  t.match(secure, /destination_workload="reviews"/);
  const plain = lines.find((l) => !l.includes('mutual_tls')) ?? '';
  t.match(plain, /source_principal="unknown"/);
  t.match(plain, /destination_principal="unknown"/);
  t.match(plain, /connection_security_policy="none"/);
});

t.test('node mode: each workload handler serves its own app with its own labels and policies', async (t) => {
  const { authorizer } = recordingAuthorizer(() => DENY);
  const { pipeline, calls, metrics } = inboundSetup(() => ({ authorizer: null, mode: 'PERMISSIVE' }));
  const ratings = workloadWith(() => ({ authorizer, mode: 'PERMISSIVE' }), {
    name: 'ratings',
    app: { address: '127.0.0.1', port: 7070 },
    namespace: 'shop',
    identity: {
      ...workloadWith(() => ({ authorizer: null, mode: 'PERMISSIVE' })).identity,
      workload: 'ratings',
    },
  });
  const details = workloadWith(() => ({ authorizer: null, mode: 'PERMISSIVE' }), {
    name: 'details',
    app: { address: '127.0.0.1', port: 6060 },
    identity: { ...ratings.identity, workload: 'details' },
  });
  const denied = new Sink();
  pipeline.inboundFor(ratings)(request('/r', {}, ['host', 'ratings']), denied);
  const served = new Sink();
  pipeline.inboundFor(details)(request('/d', {}, ['host', 'details']), served);
  await settle();
  t.equal(denied.status, 403);
  t.equal(served.status, 200);
  t.same(
    calls.map((c) => c.target),
    ['127.0.0.1:6060'],
  );
  const text = await metrics.exposition();
  t.match(text, /meshlet_authz_denied_total\{workload="ratings"\} 1/);
  t.match(text, /destination_workload="details"[^}]*response_code="200"/);
  t.match(
    text,
    /destination_workload="ratings"[^}]*destination_service_namespace="shop"[^}]*response_code="403"/,
  );
});

/** A socket stand-in that records what is written and whether it was destroyed. */
function fakeSocket() {
  const state = { written: '', destroyed: false };
  const socket = {
    end(data?: string | Buffer) {
      state.written += data === undefined ? '' : data.toString();
    },
    destroy() {
      state.destroyed = true;
    },
  };
  return { socket: socket as unknown as Duplex, state };
}

t.test('inbound upgrades pass the same checks: STRICT, authorization', async (t) => {
  const { authorizer } = recordingAuthorizer(() => DENY);
  let policy: InboundPolicy = { authorizer: null, mode: 'STRICT' };
  const { pipeline, events } = inboundSetup(() => policy);
  const upgrade = pipeline.upgrade('destination');
  const headers = ['host', 'reviews', 'connection', 'upgrade', 'upgrade', 'websocket'];
  const strict = fakeSocket();
  upgrade(request('/ws', {}, headers), strict.socket, Buffer.alloc(0));
  t.ok(strict.state.destroyed, 'plaintext under STRICT: closed');
  t.equal(strict.state.written, '');
  policy = { authorizer, mode: 'PERMISSIVE' };
  const denied = fakeSocket();
  upgrade(request('/ws', {}, headers), denied.socket, Buffer.alloc(0));
  t.match(denied.state.written, /^HTTP\/1\.1 403 Forbidden\r\n[\s\S]*RBAC: access denied\n$/);
  t.same(
    events.map((e) => e.kind),
    ['strict-plaintext', 'authz-denied'],
  );
});
