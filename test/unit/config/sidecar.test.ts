import t from 'tap';
import { parseConfigText } from '../../../src/config/load-config.ts';
import type { ConfigBundle } from '../../../src/config/resource-types.ts';

function load(spec: string): ConfigBundle {
  const text = `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
${spec}`;
  return parseConfigText([{ name: 'sc.yaml', text }], {});
}

t.test('outboundTrafficPolicy: absent, present without mode, explicit', async (t) => {
  t.same(load('spec: {}\n').sidecars[0]?.spec, {});
  t.same(load('').sidecars[0]?.spec, {}, 'a Sidecar without spec is valid');
  t.same(load('spec:\n  outboundTrafficPolicy: {}\n').sidecars[0]?.spec, {
    outboundTrafficPolicy: 'REGISTRY_ONLY',
  });
  t.same(load('spec:\n  outboundTrafficPolicy:\n').sidecars[0]?.spec, {
    outboundTrafficPolicy: 'REGISTRY_ONLY',
  });
  t.same(load('spec:\n  outboundTrafficPolicy: {mode: ALLOW_ANY}\n').sidecars[0]?.spec, {
    outboundTrafficPolicy: 'ALLOW_ANY',
  });
  const bad = load('spec:\n  outboundTrafficPolicy: {mode: allow_any}\n');
  t.match(bad.issues[0]?.message, /invalid value "allow_any"/);
  t.equal(bad.sidecars.length, 0);
});

t.test('workloadSelector kept; ingress and egress warn', async (t) => {
  const b = load(`spec:
  workloadSelector: {labels: {app: reviews}}
  egress: [{hosts: ["./*", "istio-system/*"]}]
  ingress: [{port: {number: 9080, protocol: HTTP, name: http}, defaultEndpoint: 127.0.0.1:8080}]
`);
  t.same(
    b.issues.map((i) => `${i.severity} ${i.path}`),
    ['warning Sidecar shop/default: spec.egress', 'warning Sidecar shop/default: spec.ingress'],
  );
  t.same(b.sidecars[0]?.spec, { workloadSelector: { app: 'reviews' } });
  const noHosts = load('spec:\n  egress: [{port: {number: 80}}]\n');
  t.match(noHosts.issues.find((i) => i.severity === 'error')?.message, /hosts is required/);
});
