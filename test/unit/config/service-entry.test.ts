import t from 'tap';
import { parseConfigText } from '../../../src/config/load-config.ts';
import type { ConfigBundle } from '../../../src/config/resource-types.ts';

function load(spec: string): ConfigBundle {
  const text = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: se}
spec:
${spec}`;
  return parseConfigText([{ name: 'se.yaml', text }], {});
}
const msgs = (b: ConfigBundle, severity = 'error') =>
  b.issues
    .filter((i) => i.severity === severity)
    .map((e) => `${e.path.replace('ServiceEntry default/se: ', '')} | ${e.message}`);

t.test('defaults: MESH_EXTERNAL, NONE, protocol upper-cased, endpoint weight 0 → 1', async (t) => {
  const b = load(`  hosts: [API.Example.com]
  ports: [{number: 443, name: https, protocol: https}]
`);
  t.same(msgs(b), []);
  t.same(b.serviceEntries[0]?.spec, {
    hosts: ['api.example.com'],
    addresses: [],
    ports: [{ number: 443, protocol: 'HTTPS', name: 'https' }],
    location: 'MESH_EXTERNAL',
    resolution: 'NONE',
    endpoints: [],
    exportTo: [],
    subjectAltNames: [],
  });
  const s = load(`  hosts: [weighted.static.svc.cluster.local]
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 8080}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
  - address: 3.3.3.3
    locality: a
  - address: 2.2.2.2
    weight: 8
    labels: {version: v1, security.istio.io/tlsMode: istio}
    ports: {http: 9090}
    serviceAccount: reviews
  - address: unix:///var/run/example/socket
`);
  t.same(msgs(s), []);
  const spec = s.serviceEntries[0]?.spec;
  t.same(
    spec?.endpoints.map((e) => e.weight),
    [1, 8, 1],
  );
  t.same(spec?.endpoints[1], {
    address: '2.2.2.2',
    ports: { http: 9090 },
    labels: { version: 'v1', 'security.istio.io/tlsMode': 'istio' },
    weight: 8,
    serviceAccount: 'reviews',
  });
  t.equal(spec?.endpoints[0]?.locality, 'a');
  t.equal(spec?.ports[0]?.targetPort, 8080);
  t.equal(spec?.location, 'MESH_INTERNAL');
});

t.test('endpoint rules', async (t) => {
  const b = load(`  hosts: [a.example.com]
  ports: [{number: 80, name: http}]
  endpoints: [{address: 1.2.3.4}]
`);
  t.same(msgs(b), [
    'spec.endpoints | endpoints are not allowed with resolution NONE (the default); set resolution to STATIC or DNS',
  ]);
  const s = load(`  hosts: [a.example.com]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints:
  - address: us.foo.bar.com
  - address: 10.0.0.1
    ports: {https: 8443}
  - address: unix://relative
  - {}
`);
  t.same(msgs(s), [
    'spec.endpoints[0].address | address "us.foo.bar.com" must be an IP address or unix:// path with resolution STATIC',
    'spec.endpoints[1].ports.https | port name "https" is not the name of a port of this ServiceEntry',
    'spec.endpoints[2].address | unix socket address "unix://relative" must be absolute (unix:///path)',
    'spec.endpoints[3].address | address is required',
  ]);
  const dns = load(`  hosts: [foo.bar.com]
  ports: [{number: 8000, name: http, protocol: HTTP}]
  resolution: DNS
  endpoints: [{address: us.foo.bar.com, ports: {http: 8080}}, {address: "bad host!"}]
`);
  t.same(msgs(dns), ['spec.endpoints[1].address | address "bad host!" must be an IP address or a DNS name']);
});

t.test('hosts, ports and addresses', async (t) => {
  const b = load(`  hosts: ["*", "a.*.com"]
  addresses: [10.0.0.0/8, 1.2.3.4, nope]
  resolution: DNS
  ports:
  - {number: 80, name: http}
  - {number: 80, name: http2}
  - {number: 81, name: http}
  - {number: 0, name: zero}
  - {name: nonum}
  location: SOMEWHERE
`);
  t.same(msgs(b), [
    'spec.hosts[0] | invalid host "*": bare "*" is not a valid ServiceEntry host',
    'spec.hosts[1] | invalid host "a.*.com": a wildcard is only allowed as the leading "*." label',
    'spec.addresses[0] | CIDR address "10.0.0.0/8" is only allowed with resolution NONE or STATIC',
    'spec.addresses[2] | invalid address "nope": expected an IP address or a CIDR range',
    'spec.ports[1] | port number 80 is not unique',
    'spec.ports[2] | port name "http" is not unique',
    'spec.ports[3].number | port number 0 is out of range (1-65535)',
    'spec.ports[4].number | port number is required',
    'spec.location | invalid value "SOMEWHERE"; expected one of MESH_EXTERNAL, MESH_INTERNAL',
  ]);
  const multi = load(`  hosts: [a.example.com, b.example.com]
  ports: [{number: 3306, name: mysql, protocol: MYSQL}]
  resolution: DNS
`);
  t.match(msgs(multi)[0], /multiple hosts with non-HTTP, non-TLS ports/);
  const none = load(`  hosts: [a.example.com, b.example.com]
  ports: [{number: 3306, name: mysql, protocol: MYSQL}]
`);
  t.same(msgs(none), [], 'allowed with resolution NONE');
  const missing = load(`  ports: []\n`);
  t.same(msgs(missing), [
    'spec.hosts | at least one host is required',
    'spec.ports | at least one port is required',
  ]);
});

t.test('not implemented and unknown protocol fields warn', async (t) => {
  const b = load(`  hosts: [a.example.com]
  ports: [{number: 80, name: http, protocol: QUIC}]
  workloadSelector: {labels: {app: a}}
`);
  t.same(msgs(b), []);
  t.same(msgs(b, 'warning'), [
    'spec.ports[0].protocol | unsupported protocol "QUIC"; traffic on this port is treated as TCP',
    'spec.workloadSelector | workloadSelector is not implemented (there are no pods or WorkloadEntries to select); ignored',
  ]);
});

t.test('DNS resolutions: wildcard hosts without endpoints', async (t) => {
  const dns = load(`  hosts: ["*.example.com"]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
`);
  t.same(msgs(dns), [
    'spec.hosts | host "*.example.com" is a wildcard: resolution DNS without endpoints needs resolvable hosts',
  ]);
  const rr = load(`  hosts: ["*.example.com", api.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS_ROUND_ROBIN
`);
  t.same(msgs(rr), []);
  t.same(msgs(rr, 'warning'), [
    'spec.hosts | host "*.example.com" is a wildcard: resolution DNS_ROUND_ROBIN without endpoints has no name to resolve, so it has no endpoints',
  ]);
  t.equal(rr.serviceEntries.length, 1, 'kept: the other host resolves');
  const rrEndpoint = load(`  hosts: ["*.example.com"]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS_ROUND_ROBIN
  endpoints: [{address: lb.example.com}]
`);
  t.same(rrEndpoint.issues, [], 'with an endpoint there is a name to resolve');
  const dynamic = load(`  hosts: ["*.example.com"]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DYNAMIC_DNS
`);
  t.same(dynamic.issues, [], 'DYNAMIC_DNS is served by forwarding to the host each request names');
  t.equal(dynamic.serviceEntries[0]?.spec.resolution, 'DYNAMIC_DNS');
});
