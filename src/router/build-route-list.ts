/**
 * Turning a VirtualService into the route list of one virtual host on one port (§2.2 steps 3–4),
 * with every destination resolved to its cluster, and the default route of a service without one.
 */
import type {
  Destination,
  HTTPMatchRequest,
  HTTPMirror,
  HTTPRoute,
  HTTPRouteDestination,
  Resource,
  VirtualServiceSpec,
} from '../config/resource-types.ts';
import { clusterName } from './build-clusters.ts';
import type { CompiledAction, CompiledRoute, ForwardTarget, ForwardTemplate } from './compiled-route.ts';
import { planHeaderEdits, routeResponseEdits } from './header-edits.ts';
import { isWildcardHost } from './host-pattern.ts';
import { labelsSelect } from './labels.ts';
import { compileMatch, isCatchAllMatch } from './match-request.ts';
import { compileRedirect } from './redirect.ts';
import { compilePathRewrite } from './rewrite.ts';
import type { Cluster, CompileOptions, MirrorTarget, RouteDecision } from './route-types.ts';
import type { ServiceRecord } from './service-registry.ts';
import { buildWeightedTable } from './weighted-choice.ts';

export interface RouteBuildContext {
  readonly registry: ReadonlyMap<string, ServiceRecord>;
  readonly clusters: ReadonlyMap<string, Cluster>;
  readonly options: CompileOptions;
  /** Collects non-fatal problems (a Set: a rule with several destinations or matches reports once). */
  readonly warnings: Set<string>;
}

const NO_MIRRORS: readonly HTTPMirror[] = Object.freeze([]);
const NO_MIRROR_CLUSTERS: readonly MirrorTarget[] = Object.freeze([]);
const NO_EDITS: ForwardTemplate['requestHeaders'] = Object.freeze([]);

/**
 * Build-time selectors (§2.2 step 4): whether a match entry exists on this proxy and port.
 * Mirrors Istio: match-level gateways decide alone; otherwise sourceLabels and sourceNamespace.
 */
export function matchAppliesToProxy(
  m: HTTPMatchRequest,
  listenerPort: number,
  options: CompileOptions,
): boolean {
  if (m.port !== undefined && m.port !== 0 && m.port !== listenerPort) return false;
  if (m.gateways !== undefined && m.gateways.length > 0) return m.gateways.includes('mesh');
  if (m.sourceLabels !== undefined && !labelsSelect(m.sourceLabels, options.proxyLabels)) return false;
  if (
    m.sourceNamespace !== undefined &&
    m.sourceNamespace !== '' &&
    m.sourceNamespace !== options.namespace
  ) {
    return false;
  }
  return true;
}

/** The routes of `vs` for traffic on `listenerPort`, in order; later rules after a catch-all are gone. */
export function buildVirtualServiceRoutes(
  vs: Resource<VirtualServiceSpec>,
  listenerPort: number,
  ctx: RouteBuildContext,
): CompiledRoute[] {
  const routeName = `${vs.meta.namespace}/${vs.meta.name}`;
  const out: CompiledRoute[] = [];
  for (const rule of vs.spec.http) {
    if (rule.match.length === 0) {
      out.push({ match: undefined, action: compileAction(rule, undefined, routeName, listenerPort, ctx) });
      return out;
    }
    for (const m of rule.match) {
      if (!matchAppliesToProxy(m, listenerPort, ctx.options)) continue;
      out.push({ match: compileMatch(m), action: compileAction(rule, m, routeName, listenerPort, ctx) });
      if (isCatchAllMatch(m)) return out;
    }
  }
  return out;
}

/** A service without a VirtualService: one route to `outbound|port||host` (§2.2 step 6). */
export function buildDefaultRoutes(
  service: ServiceRecord,
  port: number,
  ctx: RouteBuildContext,
): CompiledRoute[] {
  if (
    isWildcardHost(service.host) &&
    (service.resolution === 'NONE' || service.resolution === 'DYNAMIC_DNS')
  ) {
    return [{ match: undefined, action: { kind: 'passthrough' } }];
  }
  const target = resolveTarget({ host: service.host, port }, port, '', ctx, {
    responseHeaders: NO_EDITS,
    requestHeaders: NO_EDITS,
    authority: undefined,
    rule: undefined,
  });
  return [
    {
      match: undefined,
      action: {
        kind: 'forward',
        targets: buildWeightedTable([{ item: target, weight: 1 }]),
        pathRewrite: { kind: 'none' },
      },
    },
  ];
}

function compileAction(
  rule: HTTPRoute,
  m: HTTPMatchRequest | undefined,
  routeName: string,
  listenerPort: number,
  ctx: RouteBuildContext,
): CompiledAction {
  const uri = m?.uri;
  if (rule.redirect !== undefined) {
    return Object.freeze({
      kind: 'redirect',
      plan: compileRedirect(rule.redirect, uri),
      routeName,
      responseHeaders: routeResponseEdits(rule.headers),
    });
  }
  if (rule.directResponse !== undefined) {
    const decision: RouteDecision = {
      kind: 'direct',
      routeName,
      responseHeaders: routeResponseEdits(rule.headers),
      status: rule.directResponse.status,
      body: rule.directResponse.body ?? null,
    };
    return Object.freeze({ kind: 'direct', decision: Object.freeze(decision) });
  }
  const weighted = rule.route.length > 1;
  const entries = rule.route.map((d: HTTPRouteDestination) => {
    const plan = planHeaderEdits(rule.headers, d.headers, rule.rewrite, weighted);
    const item = resolveTarget(d.destination, listenerPort, routeName, ctx, {
      requestHeaders: plan.request,
      responseHeaders: plan.response,
      authority: plan.authority,
      rule,
    });
    return { item, weight: d.weight };
  });
  return Object.freeze({
    kind: 'forward',
    targets: buildWeightedTable(entries),
    pathRewrite: compilePathRewrite(rule.rewrite, uri),
  });
}

interface TargetExtras {
  readonly requestHeaders: ForwardTemplate['requestHeaders'];
  readonly responseHeaders: ForwardTemplate['responseHeaders'];
  readonly authority: string | undefined;
  /** The rule for timeout, retries, fault and mirrors; undefined for the default route. */
  readonly rule: HTTPRoute | undefined;
}

/** Destination port: explicit, else the destination service's only port, else the listener port. */
function destinationPort(d: Destination, listenerPort: number, ctx: RouteBuildContext): number {
  if (d.port !== undefined && d.port !== 0) return d.port;
  const service = ctx.registry.get(d.host);
  if (service !== undefined && service.ports.size === 1)
    return service.ports.keys().next().value ?? listenerPort;
  return listenerPort;
}

function resolveTarget(
  d: Destination,
  listenerPort: number,
  routeName: string,
  ctx: RouteBuildContext,
  extras: TargetExtras,
): ForwardTarget {
  const port = destinationPort(d, listenerPort, ctx);
  const subset = d.subset ?? '';
  const name = clusterName(port, subset, d.host);
  const cluster = ctx.clusters.get(name);
  if (cluster === undefined) {
    const reason = missingReason(d.host, port, subset, ctx);
    const decision: RouteDecision = { kind: 'noCluster', clusterName: name, reason, routeName };
    return Object.freeze({ kind: 'noCluster', decision: Object.freeze(decision) });
  }
  const rule = extras.rule;
  const mirrors =
    rule === undefined || rule.mirrors.length === 0 ? NO_MIRRORS : resolveMirrors(rule.mirrors, port, ctx);
  const template: {
    -readonly [K in keyof ForwardTemplate]: ForwardTemplate[K];
  } = {
    kind: 'forward',
    routeName,
    responseHeaders: extras.responseHeaders,
    cluster,
    requestHeaders: extras.requestHeaders,
    mirrors,
    mirrorClusters: mirrors.length === 0 ? NO_MIRROR_CLUSTERS : mirrorClusters(mirrors, routeName, ctx),
  };
  if (rule?.timeoutMs !== undefined && rule.timeoutMs > 0) template.timeoutMs = rule.timeoutMs;
  if (rule?.retries !== undefined) template.retries = rule.retries;
  if (rule?.fault !== undefined) template.fault = rule.fault;
  return Object.freeze({ kind: 'cluster', template: Object.freeze(template), authority: extras.authority });
}

/**
 * Mirrors with the destination port filled in, so the cluster name is known without the registry.
 * A mirror without a port goes to its service's only port, else to the primary destination's port
 * (`primaryPort`): a copy of traffic for port 9080 goes to 9080 on the mirror service.
 */
function resolveMirrors(
  mirrors: readonly HTTPMirror[],
  primaryPort: number,
  ctx: RouteBuildContext,
): readonly HTTPMirror[] {
  return Object.freeze(
    mirrors.map((m) =>
      Object.freeze({
        destination: Object.freeze({
          ...m.destination,
          port: destinationPort(m.destination, primaryPort, ctx),
        }),
        fraction: m.fraction,
      }),
    ),
  );
}

/**
 * The clusters of resolved mirrors. A mirror to a host, port or subset that does not exist sends no
 * copy (mirroring must never affect the primary, so it is not an error) and leaves a warning.
 * A mirror with fraction 0 never sends anything and is left out.
 */
function mirrorClusters(
  mirrors: readonly HTTPMirror[],
  routeName: string,
  ctx: RouteBuildContext,
): readonly MirrorTarget[] {
  const out: MirrorTarget[] = [];
  for (const m of mirrors) {
    const d = m.destination;
    const port = d.port ?? 0;
    const subset = d.subset ?? '';
    const cluster = ctx.clusters.get(clusterName(port, subset, d.host));
    if (cluster === undefined) {
      ctx.warnings.add(
        `route ${routeName === '' ? '(default)' : routeName}: mirror ${clusterName(port, subset, d.host)} ` +
          `does not exist (${missingReason(d.host, port, subset, ctx)}); no copy is sent`,
      );
      continue;
    }
    if (m.fraction > 0) out.push(Object.freeze({ cluster, fraction: m.fraction }));
  }
  return out.length === 0 ? NO_MIRROR_CLUSTERS : Object.freeze(out);
}

function missingReason(host: string, port: number, subset: string, ctx: RouteBuildContext): string {
  const service = ctx.registry.get(host);
  if (service === undefined) return `no service ${host}`;
  if (!service.ports.has(port)) return `service ${host} has no port ${port}`;
  return `no subset ${subset} for ${host}`;
}
