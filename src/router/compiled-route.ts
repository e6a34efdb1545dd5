/**
 * The compiled form of routes and virtual hosts: immutable data built once per configuration and
 * walked per request. Internal to the router.
 */
import type { HeaderOps } from '../config/resource-types.ts';
import type { CompiledMatch } from './match-request.ts';
import type { RedirectPlan } from './redirect.ts';
import type { PathRewrite } from './rewrite.ts';
import type { RouteDecision } from './route-types.ts';
import type { WeightedTable } from './weighted-choice.ts';

export type ForwardDecision = Extract<RouteDecision, { kind: 'forward' }>;

/** Everything of a forward decision that does not depend on the request. */
export type ForwardTemplate = Omit<ForwardDecision, 'path' | 'authority' | 'originalPath'>;

/** One destination of a rule, resolved at compile time. */
export type ForwardTarget =
  | {
      readonly kind: 'cluster';
      readonly template: ForwardTemplate;
      /** Authority rewrite (rewrite.authority or a host header edit), else undefined. */
      readonly authority: string | undefined;
    }
  /** The host or subset does not exist: the decision is fixed. */
  | { readonly kind: 'noCluster'; readonly decision: RouteDecision };

export type CompiledAction =
  | {
      readonly kind: 'forward';
      readonly targets: WeightedTable<ForwardTarget>;
      readonly pathRewrite: PathRewrite;
    }
  | {
      readonly kind: 'redirect';
      readonly plan: RedirectPlan;
      readonly routeName: string;
      readonly responseHeaders: readonly HeaderOps[];
    }
  /** A direct response never depends on the request: the decision is shared. */
  | { readonly kind: 'direct'; readonly decision: RouteDecision }
  /** Forward to the requested host:port (a wildcard service with no address of its own). */
  | { readonly kind: 'passthrough' };

export interface CompiledRoute {
  /** Undefined: a rule without `match`, which takes every request. */
  readonly match: CompiledMatch | undefined;
  readonly action: CompiledAction;
}

/** The route list of one virtual host on one port. */
export interface PortRoutes {
  readonly port: number;
  readonly routes: readonly CompiledRoute[];
  /** 404 NR when no route matches. */
  readonly notFound: RouteDecision;
}

export interface VirtualHost {
  /** The service FQDN (or the VirtualService host when there is no service). */
  readonly host: string;
  /** The port used when the authority has none: the service's only port, else 80. */
  readonly defaultPort: number;
  readonly routesByPort: ReadonlyMap<number, PortRoutes>;
}
