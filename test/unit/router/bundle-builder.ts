/** Small builders for ConfigBundles in router tests: normalized resources, as the loader emits them. */
import type {
  ConfigBundle,
  DestinationRuleSpec,
  HTTPMatchRequest,
  HTTPRoute,
  HTTPRouteDestination,
  Resource,
  ServiceEntrySpec,
  ServicePort,
  StringMatch,
  Subset,
  VirtualServiceSpec,
  WorkloadEntry,
} from '../../../src/config/resource-types.ts';
import type { HeaderList } from '../../../src/listener/listener-types.ts';
import type { CompileOptions, RouteDecision, RouteInput } from '../../../src/router/route-types.ts';

let order = 0;

function meta(name: string, namespace: string) {
  return { name, namespace, annotations: {}, pos: { file: 'test.yaml', line: 1, col: 1 }, order: order++ };
}

export const exact = (value: string): StringMatch => ({ kind: 'exact', value });
export const prefix = (value: string): StringMatch => ({ kind: 'prefix', value });
export const regex = (source: string): StringMatch => ({
  kind: 'regex',
  source,
  re: new RegExp(`^(?:${source})$`),
});
export const present = (): StringMatch => ({ kind: 'present' });

export function port(number: number, name = `http-${number}`, extra: Partial<ServicePort> = {}): ServicePort {
  return { number, name, protocol: 'HTTP', ...extra };
}

export function endpoint(address: string, extra: Partial<WorkloadEntry> = {}): WorkloadEntry {
  return { address, ports: {}, labels: {}, weight: 1, ...extra };
}

export function se(
  name: string,
  hosts: string[],
  ports: ServicePort[],
  extra: Partial<ServiceEntrySpec> & { namespace?: string } = {},
): Resource<ServiceEntrySpec> {
  const { namespace = 'default', ...spec } = extra;
  return {
    meta: meta(name, namespace),
    spec: {
      hosts,
      addresses: [],
      ports,
      location: 'MESH_INTERNAL',
      resolution: 'STATIC',
      endpoints: [],
      exportTo: [],
      subjectAltNames: [],
      ...spec,
    },
  };
}

/** A `.svc.cluster.local` service with one STATIC endpoint per address. */
export function svc(
  name: string,
  namespace: string,
  ports: ServicePort[],
  addresses: string[] = ['10.0.0.1'],
) {
  return se(name, [`${name}.${namespace}.svc.cluster.local`], ports, {
    namespace,
    endpoints: addresses.map((a) => endpoint(a)),
  });
}

export function match(m: Partial<HTTPMatchRequest> = {}): HTTPMatchRequest {
  return { headers: {}, withoutHeaders: {}, queryParams: {}, ignoreUriCase: false, ...m };
}

export function dest(host: string, extra: Partial<HTTPRouteDestination['destination']> = {}, weight = 0) {
  return { destination: { host, ...extra }, weight } satisfies HTTPRouteDestination;
}

export function rule(extra: Partial<HTTPRoute> = {}): HTTPRoute {
  return { match: [], route: [], mirrors: [], ...extra };
}

export function vs(
  name: string,
  hosts: string[],
  http: HTTPRoute[],
  extra: Partial<VirtualServiceSpec> & { namespace?: string } = {},
): Resource<VirtualServiceSpec> {
  const { namespace = 'default', ...spec } = extra;
  return { meta: meta(name, namespace), spec: { hosts, gateways: [], http, exportTo: [], ...spec } };
}

export function subset(name: string, labels: Record<string, string>, extra: Partial<Subset> = {}): Subset {
  return { name, labels, ...extra };
}

export function dr(
  name: string,
  host: string,
  subsets: Subset[],
  extra: Partial<DestinationRuleSpec> & { namespace?: string } = {},
): Resource<DestinationRuleSpec> {
  const { namespace = 'default', ...spec } = extra;
  return { meta: meta(name, namespace), spec: { host, subsets, exportTo: [], ...spec } };
}

export function bundle(parts: {
  serviceEntries?: Resource<ServiceEntrySpec>[];
  virtualServices?: Resource<VirtualServiceSpec>[];
  destinationRules?: Resource<DestinationRuleSpec>[];
}): ConfigBundle {
  return {
    serviceEntries: parts.serviceEntries ?? [],
    virtualServices: parts.virtualServices ?? [],
    destinationRules: parts.destinationRules ?? [],
    sidecars: [],
    peerAuthentications: [],
    authorizationPolicies: [],
    proxy: null,
    issues: [],
    files: [],
    hash: '',
    documents: [],
  };
}

export function options(extra: Partial<CompileOptions> = {}): CompileOptions {
  return {
    namespace: 'default',
    domainSuffix: 'cluster.local',
    proxyLabels: { app: 'productpage', version: 'v1' },
    outboundTrafficPolicy: 'ALLOW_ANY',
    random: () => 0,
    ...extra,
  };
}

export function req(authority: string, path = '/', extra: Partial<RouteInput> = {}): RouteInput {
  return { method: 'GET', authority, path, scheme: 'http', headers: [], ...extra };
}

export function headers(...pairs: [string, string][]): HeaderList {
  return pairs.flat();
}

/** Deterministic PRNG (mulberry32) for weighted-choice tests. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The cluster name of a forward decision, or a short description of any other decision. */
export function target(d: RouteDecision): string {
  switch (d.kind) {
    case 'forward':
      return d.cluster.name;
    case 'passthrough':
      return `passthrough ${d.host}:${d.port}`;
    case 'noRoute':
      return `noRoute ${d.status}`;
    case 'noCluster':
      return `noCluster ${d.clusterName}`;
    case 'redirect':
      return `redirect ${d.status} ${d.location}`;
    case 'direct':
      return `direct ${d.status}`;
  }
}
