/**
 * Compiles a ConfigBundle into the immutable RouteTable: registry, clusters, and one virtual host
 * per service (and per VirtualService host without a service), indexed by domain. Per request,
 * `route()` parses the authority and path once, does one Map lookup (a suffix scan only on a
 * miss) and walks that host's own route list.
 */
import { authorityHost, authorityHostEnd, authorityPort } from './authority.ts';
import { buildClusters } from './build-clusters.ts';
import { buildDefaultRoutes, buildVirtualServiceRoutes, type RouteBuildContext } from './build-route-list.ts';
import type {
  CompiledRoute,
  ForwardDecision,
  ForwardTemplate,
  PortRoutes,
  VirtualHost,
} from './compiled-route.ts';
import { buildDestinationRuleIndex } from './destination-rule-index.ts';
import { firstLabel } from './host-pattern.ts';
import { matchesRequest } from './match-request.ts';
import { redirectLocation } from './redirect.ts';
import { rewritePath } from './rewrite.ts';
import type { Cluster, CompileOptions, CompileRoutes, RouteDecision, RouteInput } from './route-types.ts';
import { buildServiceRegistry } from './service-registry.ts';
import { virtualHostDomains } from './virtual-host-domains.ts';
import { buildVirtualHostIndex } from './virtual-host-index.ts';
import { buildVirtualServiceSelector } from './virtual-service-selector.ts';
import { pickWeighted } from './weighted-choice.ts';

/** Port of a VirtualService host that has no registry service (§2.1). */
const VS_ONLY_PORT = 80;
const DEFAULT_HTTP_PORT = 80;

export const compileRoutes: CompileRoutes = (bundle, options) => {
  const registry = buildServiceRegistry(bundle.serviceEntries);
  const clusters = buildClusters(
    registry,
    buildDestinationRuleIndex(bundle.destinationRules, options.proxyLabels),
  );
  const ctx: RouteBuildContext = { registry, clusters, options, warnings: new Set() };
  const selector = buildVirtualServiceSelector(bundle.virtualServices);

  // Every virtual host's own name is registered before any alias, so a real FQDN always beats a
  // short form or address of another service.
  const primary: (readonly [string, VirtualHost])[] = [];
  const aliases: (readonly [string, VirtualHost])[] = [];
  const register = (host: string, addresses: readonly string[], vhost: VirtualHost): void => {
    const [own, ...rest] = virtualHostDomains(host, addresses, options);
    primary.push([own ?? host, vhost]);
    for (const alias of rest) aliases.push([alias, vhost]);
  };

  for (const service of registry.values()) {
    const vs = selector.forHost(service.host);
    const routesByPort = new Map<number, PortRoutes>();
    for (const port of service.ports.keys()) {
      const routes =
        vs === undefined ? buildDefaultRoutes(service, port, ctx) : buildVirtualServiceRoutes(vs, port, ctx);
      routesByPort.set(port, portRoutes(service.host, port, routes));
    }
    const onlyPort = service.ports.size === 1 ? service.ports.keys().next().value : undefined;
    register(service.host, service.addresses, {
      host: service.host,
      defaultPort: onlyPort ?? DEFAULT_HTTP_PORT,
      routesByPort,
    });
  }
  for (const [host, vs] of selector.ownedHosts) {
    if (registry.has(host)) continue;
    const routes = buildVirtualServiceRoutes(vs, VS_ONLY_PORT, ctx);
    register(host, [], {
      host,
      defaultPort: VS_ONLY_PORT,
      routesByPort: new Map([[VS_ONLY_PORT, portRoutes(host, VS_ONLY_PORT, routes)]]),
    });
  }

  const index = buildVirtualHostIndex([...primary, ...aliases]);
  return Object.freeze({
    clusters: clusters as ReadonlyMap<string, Cluster>,
    warnings: Object.freeze([...ctx.warnings]),
    route(input: RouteInput): RouteDecision {
      const authority = input.authority;
      const hostEnd = authorityHostEnd(authority);
      const host = authorityHost(authority, hostEnd);
      const explicitPort = authorityPort(authority, hostEnd);
      const portRoutes = index.find(host, explicitPort);
      if (portRoutes === undefined) return unknownHost(host, explicitPort ?? DEFAULT_HTTP_PORT, options);
      const path = input.path;
      const queryStart = path.indexOf('?');
      const pathOnly = queryStart < 0 ? path : path.slice(0, queryStart);
      const routes = portRoutes.routes;
      for (let i = 0; i < routes.length; i++) {
        const route = routes[i]!;
        if (route.match === undefined || matchesRequest(route.match, input, pathOnly, queryStart)) {
          return decide(route, input, host, portRoutes.port, queryStart, options);
        }
      }
      return portRoutes.notFound;
    },
  });
};

function portRoutes(host: string, port: number, routes: readonly CompiledRoute[]): PortRoutes {
  const notFound: RouteDecision = Object.freeze({
    kind: 'noRoute',
    status: 404,
    reason: 'no route matched',
    serviceFqdn: host,
    serviceName: firstLabel(host),
  });
  return Object.freeze({ port, routes: Object.freeze(routes), notFound });
}

function decide(
  route: CompiledRoute,
  input: RouteInput,
  host: string,
  port: number,
  queryStart: number,
  options: CompileOptions,
): RouteDecision {
  const action = route.action;
  switch (action.kind) {
    case 'forward': {
      const target = pickWeighted(action.targets, options.random);
      if (target.kind === 'noCluster') return target.decision;
      const path = rewritePath(action.pathRewrite, input.path, queryStart);
      return forwardDecision(target.template, path, target.authority ?? input.authority, input.path);
    }
    case 'redirect':
      return {
        kind: 'redirect',
        routeName: action.routeName,
        responseHeaders: action.responseHeaders,
        status: action.plan.status,
        location: redirectLocation(action.plan, input.scheme, input.authority, input.path, queryStart, port),
      };
    case 'direct':
      return action.decision;
    case 'passthrough':
      return { kind: 'passthrough', host, port };
  }
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * Builds the decision field by field: an object spread of the template costs several times more
 * per request. Optional fields are added only when the route has them.
 */
function forwardDecision(
  t: ForwardTemplate,
  path: string,
  authority: string,
  originalPath: string,
): ForwardDecision {
  const d: Mutable<ForwardDecision> = {
    kind: 'forward',
    routeName: t.routeName,
    responseHeaders: t.responseHeaders,
    cluster: t.cluster,
    path,
    authority,
    requestHeaders: t.requestHeaders,
    mirrors: t.mirrors,
    mirrorClusters: t.mirrorClusters,
  };
  if (path !== originalPath) d.originalPath = originalPath;
  if (t.timeoutMs !== undefined) d.timeoutMs = t.timeoutMs;
  if (t.retries !== undefined) d.retries = t.retries;
  if (t.fault !== undefined) d.fault = t.fault;
  return d;
}

/** A host no virtual host answers to (§4.3). */
function unknownHost(host: string, port: number, options: CompileOptions): RouteDecision {
  if (options.outboundTrafficPolicy === 'ALLOW_ANY') return { kind: 'passthrough', host, port };
  return {
    kind: 'noRoute',
    status: 502,
    reason: 'unknown host under REGISTRY_ONLY',
    serviceFqdn: host,
    serviceName: 'BlackHoleCluster',
  };
}
