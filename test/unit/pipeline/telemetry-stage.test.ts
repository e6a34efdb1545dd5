import t from 'tap';
import type { Cluster } from '../../../src/router/route-types.ts';
import {
  bodyOf,
  cluster,
  forward,
  readBody,
  request,
  respond,
  Sink,
  settle,
  setup,
} from './pipeline-harness.ts';

/** The metrics part of the telemetry stage: which series a finished exchange lands in, and what it adds. */

/** `svc` with one endpoint on `port` carrying `labels` (a new object each call, as a reload makes). */
function labelled(port: number, labels: Record<string, string>, name = 'svc'): Cluster {
  const c = cluster(name, port);
  const [e] = c.endpoints;
  return { ...c, endpoints: e === undefined ? [] : [{ ...e, labels }] };
}

function samples(text: string, metric: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(`${metric}{`));
}

t.test('request and response body bytes land in the byte histograms of the same series', async (t) => {
  const c = labelled(9, { app: 'svc', version: 'v1' });
  const { pipeline, metrics } = setup(
    () => forward(c),
    (call) => readBody(call, () => respond(call, 200, 'response-body')),
  );
  const res = new Sink();
  pipeline.outbound(request('/p', { method: 'POST', body: bodyOf('12345', '678') }), res);
  await settle(6);
  t.equal(res.status, 200);
  const text = await metrics.exposition();
  t.match(samples(text, 'istio_request_bytes_sum').join('\n'), /destination_version="v1"[^}]*\} 8$/);
  t.match(samples(text, 'istio_response_bytes_sum').join('\n'), /destination_version="v1"[^}]*\} 13$/);
  t.match(samples(text, 'istio_request_bytes_bucket').join('\n'), /le="5"\} 0\n[^\n]*le="10"\} 1/);
});

t.test('an endpoint relabelled by a reload (same address) counts under its new labels', async (t) => {
  let c = labelled(9, { app: 'svc', version: 'v1' });
  const { pipeline, metrics } = setup(
    () => forward(c),
    (call) => respond(call, call.index === 2 ? 503 : 200, 'x'),
  );
  const send = async (): Promise<void> => {
    pipeline.outbound(request('/p'), new Sink());
    await settle(6);
  };
  await send();
  // The same endpoint id (127.0.0.1:9) with another version label, in a new cluster object.
  c = { ...labelled(9, { app: 'svc', version: 'v2' }), name: 'outbound|80||svc.default.svc.cluster.local#2' };
  await send();
  await send();
  const lines = samples(await metrics.exposition(), 'istio_requests_total');
  t.equal(lines.filter((l) => l.includes('destination_version="v1"')).length, 1);
  t.match(lines.join('\n'), /destination_version="v1"[^}]*response_code="200"[^}]*\} 1/);
  t.match(lines.join('\n'), /destination_version="v2"[^}]*response_code="200"[^}]*\} 1/);
  t.match(lines.join('\n'), /destination_version="v2"[^}]*response_code="503"[^}]*\} 1/);
});

t.test('two endpoints with the same labels share one series', async (t) => {
  const c = cluster('svc', 1, 2);
  const { pipeline, metrics, calls } = setup(
    () => forward(c),
    (call) => respond(call, 200, 'x'),
  );
  for (let i = 0; i < 4; i++) {
    pipeline.outbound(request('/p'), new Sink());
    await settle(6);
  }
  t.same(new Set(calls.map((x) => x.target)), new Set(['127.0.0.1:1', '127.0.0.1:2']), 'both endpoints used');
  const lines = samples(await metrics.exposition(), 'istio_requests_total');
  t.equal(lines.length, 1, 'one label set');
  t.match(lines[0], / 4$/);
});
