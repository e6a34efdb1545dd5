/**
 * `meshlet explain`: how the outbound listener would handle one request, worked out from the
 * configuration alone (no listener, no socket, no DNS query).
 *
 * The verdict always comes from the real router: the configuration is compiled by `compileRoutes`
 * with the options `main.ts` gives it, and every decision shown (destination, rewritten path,
 * redirect location, header edits, timeout, retries, fault, mirrors) is a `RouteTable.route()`
 * answer. What the router does not report is *why*: which virtual host and VirtualService the host
 * reached, and which rule conditions failed. For that this module walks the same rule list with the
 * same matcher (`matchesRequest`) and, beside it, a "why not" evaluator that calls the same
 * StringMatch code (`stringMatches`, `uriMatches`) once per condition. Both walks are checked
 * against each other and against `route()`; any disagreement is reported in `problems` (a test
 * keeps it empty over the Istio samples and the examples).
 *
 * Weighted destinations: the table is compiled with a random source this module controls, and
 * `route()` is asked once per destination with a draw in the middle of that destination's share,
 * so each destination's decision is the router's own.
 */
import { isIP } from 'node:net';
import { poolLimits } from '../balancer/cluster-types.ts';
import {
  DEFAULT_BASE_EJECTION_MS,
  DEFAULT_CONSECUTIVE_5XX,
  DEFAULT_CONSECUTIVE_LOCAL_ORIGIN_FAILURES,
  DEFAULT_INTERVAL_MS,
  DEFAULT_MAX_EJECTION_MS,
  DEFAULT_MAX_EJECTION_PERCENT,
} from '../balancer/outlier-detector.ts';
import type {
  ConfigBundle,
  DestinationRuleSpec,
  HeaderOps,
  HTTPMatchRequest,
  HTTPRoute,
  Resource,
  StringMatch,
  TrafficPolicy,
  VirtualServiceSpec,
} from '../config/resource-types.ts';
import { outboundPolicyOf, type RuntimeSettings } from '../config/runtime-settings.ts';
import type { Snapshot } from '../config/snapshot-store.ts';
import { isFieldValue, isTargetText, isToken, trimOws } from '../listener/http-syntax.ts';
import type { HeaderList } from '../listener/listener-types.ts';
import { parseRequestTarget } from '../pipeline/request-target.ts';
import { destinationModes } from '../pipeline/workload-security.ts';
import { compileRetryPolicy, DEFAULT_RETRY_ON } from '../resilience/retry-policy.ts';
import {
  createOrigination,
  ISTIO_ALPN,
  isOriginationError,
  type OriginationIdentity,
} from '../tls/origination.ts';
import { compilePeerAuthentication } from '../tls/peer-authentication.ts';
import { spiffeId } from '../tls/spiffe.ts';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../upstream/upstream-types.ts';
import { authorityHost, authorityHostEnd, authorityPort } from './authority.ts';
import { clusterName } from './build-clusters.ts';
import { matchAppliesToProxy } from './build-route-list.ts';
import { compileRoutes } from './compile-routes.ts';
import { buildDestinationRuleIndex } from './destination-rule-index.ts';
import { hostCoveredBy, isWildcardHost, wildcardSuffix } from './host-pattern.ts';
import { labelsSelect } from './labels.ts';
import {
  type CompiledMatch,
  compileMatch,
  headerValue,
  matchesRequest,
  queryParamValue,
  stringMatches,
  uriMatches,
} from './match-request.ts';
import type { Cluster, CompileOptions, RouteDecision, RouteInput, RouteTable } from './route-types.ts';
import { buildServiceRegistry, inLoadOrder, type ServiceRecord } from './service-registry.ts';
import { virtualHostDomains } from './virtual-host-domains.ts';
import { appliesToSidecars, buildVirtualServiceSelector } from './virtual-service-selector.ts';
import { buildWeightedTable } from './weighted-choice.ts';

// ---- the request --------------------------------------------------------------------------------

export interface ExplainedRequest {
  readonly method: string;
  readonly url: string;
  /** `host[:port]` the router sees. */
  readonly authority: string;
  /** `url` (absolute-form, as HTTP_PROXY clients send) or `host header` (origin-form + Host). */
  readonly authoritySource: 'url' | 'host header';
  /** Lowercase host without the port, and the port when the authority names one. */
  readonly host: string;
  readonly port: number | null;
  /** Origin-form path with its query, as the router sees it. */
  readonly path: string;
  readonly scheme: string;
  /** Lowercase names, in order (the Host header included). */
  readonly headers: readonly (readonly [string, string])[];
}

export type RequestResult =
  | { readonly ok: true; readonly request: ExplainedRequest; readonly input: RouteInput }
  | { readonly ok: false; readonly error: string };

/** Parses one `-H 'name: value'`; a string is the error. */
export function parseHeaderArg(text: string): readonly [string, string] | string {
  const colon = text.indexOf(':');
  if (colon < 0) return `-H ${JSON.stringify(text)}: expected 'name: value'`;
  const name = text.slice(0, colon);
  const value = trimOws(text.slice(colon + 1));
  if (!isToken(name)) return `-H ${JSON.stringify(text)}: ${JSON.stringify(name)} is not a valid header name`;
  if (!isFieldValue(value)) return `-H ${JSON.stringify(text)}: the value holds control characters`;
  return [name.toLowerCase(), value];
}

/**
 * The request as the outbound listener would see it. Without `-H host` it is the absolute-form
 * request an HTTP_PROXY client sends (`GET http://reviews:9080/x`, with `Host` the URL's
 * authority); with `-H host: …` it is the origin-form request `curl -H 'Host: …' URL` sends to the
 * listener, so that Host is the authority, as it would be for a real request.
 */
export function buildRequest(method: string, url: string, headerArgs: readonly string[]): RequestResult {
  if (!isToken(method)) return { ok: false, error: `${JSON.stringify(method)} is not a valid HTTP method` };
  const absolute = isTargetText(url) ? parseRequestTarget(url, []) : null;
  if (absolute === null || absolute.scheme === null || absolute.authority === '' || !URL.canParse(url)) {
    return {
      ok: false,
      error: `${JSON.stringify(url)} is not an absolute http:// or https:// URL (e.g. http://reviews:9080/reviews/1)`,
    };
  }
  const headers: [string, string][] = [];
  for (const arg of headerArgs) {
    const h = parseHeaderArg(arg);
    if (typeof h === 'string') return { ok: false, error: h };
    headers.push([h[0], h[1]]);
  }
  const hosts = headers.filter(([n]) => n === 'host');
  if (hosts.length > 1)
    return { ok: false, error: 'more than one Host header (a real request would be refused)' };
  const hostHeader = hosts[0]?.[1];
  if (hostHeader === '') return { ok: false, error: 'empty Host header' };
  let authority: string;
  let path: string;
  let scheme: string;
  if (hostHeader === undefined) {
    authority = absolute.authority;
    path = absolute.path;
    scheme = absolute.scheme;
    headers.unshift(['host', authority]);
  } else {
    authority = hostHeader;
    path = absolute.path;
    // The listener is plaintext: an origin-form request reaching it is http.
    scheme = 'http';
  }
  const list: HeaderList = [];
  for (const [n, v] of headers) list.push(n, v);
  const hostEnd = authorityHostEnd(authority);
  const request: ExplainedRequest = {
    method,
    url,
    authority,
    authoritySource: hostHeader === undefined ? 'url' : 'host header',
    host: authorityHost(authority, hostEnd),
    port: authorityPort(authority, hostEnd) ?? null,
    path,
    scheme,
    headers,
  };
  return { ok: true, request, input: { method, authority, path, scheme, headers: list } };
}

// ---- why a condition holds or fails -------------------------------------------------------------

export interface ConditionResult {
  /** `header end-user: exact "jason"`. */
  readonly condition: string;
  readonly held: boolean;
  /** `request has no end-user header`. */
  readonly reason: string;
}

const q = (s: string): string => JSON.stringify(s);

export function describeStringMatch(m: StringMatch): string {
  switch (m.kind) {
    case 'exact':
      return `exact ${q(m.value)}`;
    case 'prefix':
      return `prefix ${q(m.value)}`;
    case 'regex':
      // The pattern as written: JSON quoting would double every backslash.
      return `regex "${m.source}"`;
    case 'present':
      return 'present';
  }
}

/** Why `value` (called `what`) satisfies `m` or not; `held` is `stringMatches`' verdict. */
function valueReason(m: StringMatch, what: string, value: string, held: boolean): string {
  switch (m.kind) {
    case 'exact':
      return held ? `${what} is ${q(value)}` : `${what} is ${q(value)}, not ${q(m.value)}`;
    case 'prefix':
      return `${what} ${q(value)} ${held ? 'starts' : 'does not start'} with it`;
    case 'regex':
      return `${what} ${q(value)} ${held ? 'matches' : 'does not match'} it`;
    case 'present':
      return `${what} is present`;
  }
}

/**
 * Every condition of one match entry, each evaluated with the router's own StringMatch code, in the
 * order `matchesRequest` checks them.
 */
export function evaluateConditions(
  m: CompiledMatch,
  input: RouteInput,
  pathOnly: string,
  queryStart: number,
): ConditionResult[] {
  const out: ConditionResult[] = [];
  if (m.uri !== undefined) {
    const uri = m.uri;
    const held = uriMatches(uri, m.ignoreUriCase, input.path, pathOnly);
    const caseNote =
      m.ignoreUriCase && (uri.kind === 'exact' || uri.kind === 'prefix') ? ' (ignoring case)' : '';
    // Prefixes look at the raw path with its query, exact and regex at the path alone.
    const seen = uri.kind === 'prefix' ? input.path : pathOnly;
    out.push({
      condition: `uri ${describeStringMatch(uri)}${caseNote}`,
      held,
      reason: valueReason(uri, 'path', seen, held),
    });
  }
  const plain = (name: string, sm: StringMatch | undefined, value: string): void => {
    if (sm === undefined) return;
    const held = stringMatches(sm, value);
    out.push({
      condition: `${name} ${describeStringMatch(sm)}`,
      held,
      reason: valueReason(sm, name, value, held),
    });
  };
  plain('method', m.method, input.method);
  plain('scheme', m.scheme, input.scheme);
  plain('authority', m.authority, input.authority);
  for (const c of m.headers) {
    const value = headerValue(input.headers, c.name);
    const condition = `header ${c.name}: ${describeStringMatch(c.match)}`;
    if (value === undefined) {
      out.push({ condition, held: false, reason: `request has no ${c.name} header` });
    } else {
      const held = stringMatches(c.match, value);
      out.push({ condition, held, reason: valueReason(c.match, c.name, value, held) });
    }
  }
  for (const c of m.withoutHeaders) {
    const value = headerValue(input.headers, c.name);
    const condition = `withoutHeaders ${c.name}: ${describeStringMatch(c.match)}`;
    if (c.match.kind === 'present') {
      out.push({
        condition,
        held: value === undefined,
        reason: value === undefined ? `request has no ${c.name} header` : `request has a ${c.name} header`,
      });
    } else {
      // An absent header is tested as '' (the router does the same).
      const matched = stringMatches(c.match, value ?? '');
      const shown = value === undefined ? `${c.name} (absent, tested as "")` : c.name;
      const why = valueReason(c.match, shown, value ?? '', matched);
      out.push({
        condition,
        held: !matched,
        reason: matched ? `${why}, which withoutHeaders excludes` : why,
      });
    }
  }
  for (const c of m.queryParams) {
    const value = queryParamValue(input.path, queryStart, c.name);
    const condition = `query ${c.name}: ${describeStringMatch(c.match)}`;
    if (value === undefined) {
      out.push({ condition, held: false, reason: `query has no ${c.name} parameter` });
    } else {
      const held = stringMatches(c.match, value);
      out.push({ condition, held, reason: valueReason(c.match, `query ${c.name}`, value, held) });
    }
  }
  return out;
}

/** Why a match entry does not exist on this proxy and port (build-time selectors, §2.2 step 4). */
function notOnThisProxy(m: HTTPMatchRequest, port: number, options: CompileOptions): string {
  if (m.port !== undefined && m.port !== 0 && m.port !== port)
    return `port ${m.port} (this route list is port ${port})`;
  if (m.gateways !== undefined && m.gateways.length > 0)
    return `gateways ${m.gateways.join(', ')} do not include mesh`;
  if (m.sourceLabels !== undefined && !labelsSelect(m.sourceLabels, options.proxyLabels))
    return `sourceLabels ${labelText(m.sourceLabels)} do not select this proxy (labels ${labelText(options.proxyLabels) || 'none'})`;
  return `sourceNamespace ${m.sourceNamespace ?? ''} is not this proxy's namespace ${options.namespace}`;
}

function labelText(labels: Readonly<Record<string, string>>): string {
  return Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

// ---- the explanation ----------------------------------------------------------------------------

export interface MatchExplanation {
  readonly index: number;
  readonly name: string | null;
  /** False when a build-time selector leaves the entry out on this proxy (`skipped` says why). */
  readonly onThisProxy: boolean;
  readonly skipped: string | null;
  readonly matched: boolean;
  readonly conditions: readonly ConditionResult[];
}

export interface RuleExplanation {
  readonly index: number;
  readonly name: string | null;
  /** A rule without `match` takes every request. */
  readonly catchAll: boolean;
  /** Match entries the rule has (entries after the matching one are not evaluated). */
  readonly matchCount: number;
  readonly matched: boolean;
  readonly matches: readonly MatchExplanation[];
}

export interface VirtualHostExplanation {
  /** The service FQDN (or the VirtualService host without a service). */
  readonly host: string;
  /** The port whose route list is used. */
  readonly port: number;
  readonly portFrom: 'authority' | 'service default';
  /** The domain the request host reached. */
  readonly domain: string;
  readonly domainKind: 'name' | 'short name' | 'address' | 'wildcard';
  /** False for a VirtualService host that no ServiceEntry declares. */
  readonly service: boolean;
}

export interface VirtualServiceExplanation {
  readonly name: string;
  readonly namespace: string;
  readonly hosts: readonly string[];
  /** `exact host reviews.default.svc.cluster.local` or `wildcard host *.example.com`. */
  readonly why: string;
  /** Other VirtualServices that name the host but do not govern it, with why. */
  readonly notChosen: readonly {
    readonly name: string;
    readonly namespace: string;
    readonly reason: string;
  }[];
}

export interface EndpointExplanation {
  readonly address: string;
  readonly port: number;
  readonly weight: number;
  readonly labels: Readonly<Record<string, string>>;
  readonly serviceAccount: string | null;
  /** The address is a host name that DNS resolves when the proxy runs. */
  readonly dns: boolean;
  /** `plaintext`, `ISTIO_MUTUAL (...)`, `SIMPLE (...)`, `MUTUAL (...)` or `fails (UF): reason`. */
  readonly tls: string;
}

export interface ClusterExplanation {
  readonly name: string;
  readonly service: string;
  readonly serviceNamespace: string;
  readonly location: string;
  readonly resolution: string;
  readonly endpoints: readonly EndpointExplanation[];
  /** The DestinationRule(s) merged for the host, `namespace/name`, and the host they name. */
  readonly destinationRule: { readonly host: string; readonly rules: readonly string[] } | null;
  readonly loadBalancer: string;
  readonly connectionPool: Readonly<Record<string, string>>;
  /** Null: outlier detection is off (no `outlierDetection` in the effective policy). */
  readonly outlierDetection: Readonly<Record<string, string>> | null;
  /** The cluster's TLS mode and why. */
  readonly tls: string;
}

export interface DestinationExplanation {
  readonly cluster: string;
  readonly weight: number;
  /** Share of requests in percent. */
  readonly probability: number;
  /** Set when the cluster does not exist: the router answers 503 NC. */
  readonly missing: string | null;
  /** Authority sent upstream. */
  readonly authority: string | null;
  readonly requestHeaders: readonly string[];
  readonly responseHeaders: readonly string[];
  readonly details: ClusterExplanation | null;
}

export interface RetryExplanation {
  readonly source: 'route' | 'Istio default';
  readonly attempts: number;
  readonly perTryTimeoutMs: number | null;
  readonly retryOn: string;
  readonly backoffBaseMs: number;
}

export type ActionExplanation =
  | {
      readonly kind: 'forward';
      readonly routeName: string;
      readonly upstreamPath: string;
      readonly rewritten: boolean;
      readonly destinations: readonly DestinationExplanation[];
      /** Destinations with weight 0 next to weighted ones: never chosen. */
      readonly neverChosen: readonly string[];
      readonly timeoutMs: number | null;
      readonly retries: RetryExplanation;
      readonly fault: readonly string[];
      readonly mirrors: readonly string[];
    }
  | {
      readonly kind: 'redirect';
      readonly routeName: string;
      readonly status: number;
      readonly location: string;
      readonly responseHeaders: readonly string[];
    }
  | {
      readonly kind: 'direct';
      readonly routeName: string;
      readonly status: number;
      readonly body: string | null;
      readonly responseHeaders: readonly string[];
    }
  | { readonly kind: 'passthrough'; readonly target: string; readonly why: string }
  | { readonly kind: 'noRoute'; readonly status: number; readonly flag: 'NR'; readonly why: string }
  | {
      readonly kind: 'noCluster';
      readonly status: 503;
      readonly flag: 'NC';
      readonly cluster: string;
      readonly why: string;
    };

export interface Explanation {
  readonly request: ExplainedRequest;
  readonly namespace: string;
  readonly outboundTrafficPolicy: 'ALLOW_ANY' | 'REGISTRY_ONLY';
  readonly outboundTrafficPolicyFrom: string;
  /** Null: no virtual host answers to the host. */
  readonly virtualHost: VirtualHostExplanation | null;
  /** Null: no VirtualService governs the host (default route), or no virtual host. */
  readonly virtualService: VirtualServiceExplanation | null;
  readonly rules: readonly RuleExplanation[];
  readonly action: ActionExplanation;
  readonly notes: readonly string[];
  /** Disagreements between this explanation and `route()`: always empty unless there is a bug. */
  readonly problems: readonly string[];
}

interface HostEntry {
  readonly host: string;
  readonly defaultPort: number;
  readonly ports: ReadonlySet<number>;
  readonly service: ServiceRecord | undefined;
  readonly vs: Resource<VirtualServiceSpec> | undefined;
}

interface DomainHit {
  readonly entry: HostEntry;
  readonly domain: string;
  readonly kind: VirtualHostExplanation['domainKind'];
}

/**
 * The virtual hosts and their domains, registered in the order `compileRoutes` registers them
 * (every own name first, then aliases; the first registration of a domain wins), and the same
 * lookup as `buildVirtualHostIndex`, reporting which domain answered.
 */
function hostIndex(bundle: ConfigBundle, options: CompileOptions) {
  const registry = buildServiceRegistry(bundle.serviceEntries);
  const selector = buildVirtualServiceSelector(bundle.virtualServices);
  const primary: DomainHit[] = [];
  const aliases: DomainHit[] = [];
  const register = (entry: HostEntry, addresses: readonly string[]): void => {
    const [own, ...rest] = virtualHostDomains(entry.host, addresses, options);
    const addressSet = new Set(
      addresses.map((a) => (a.includes(':') && !a.startsWith('[') ? `[${a}]` : a.toLowerCase())),
    );
    primary.push({
      entry,
      domain: own ?? entry.host,
      kind: isWildcardHost(entry.host) ? 'wildcard' : 'name',
    });
    for (const alias of rest)
      aliases.push({ entry, domain: alias, kind: addressSet.has(alias) ? 'address' : 'short name' });
  };
  for (const service of registry.values()) {
    const ports = new Set(service.ports.keys());
    const only = service.ports.size === 1 ? service.ports.keys().next().value : undefined;
    register(
      { host: service.host, defaultPort: only ?? 80, ports, service, vs: selector.forHost(service.host) },
      service.addresses,
    );
  }
  for (const [host, vs] of selector.ownedHosts) {
    if (registry.has(host)) continue;
    register({ host, defaultPort: 80, ports: new Set([80]), service: undefined, vs }, []);
  }
  const exact = new Map<string, DomainHit>();
  const wildcards: { suffix: string; hit: DomainHit }[] = [];
  for (const hit of [...primary, ...aliases]) {
    if (isWildcardHost(hit.domain)) {
      const suffix = wildcardSuffix(hit.domain);
      if (!wildcards.some((w) => w.suffix === suffix))
        wildcards.push({ suffix, hit: { ...hit, kind: 'wildcard' } });
    } else if (!exact.has(hit.domain)) {
      exact.set(hit.domain, hit);
    }
  }
  wildcards.sort((a, b) => b.suffix.length - a.suffix.length);
  const find = (
    host: string,
    explicitPort: number | undefined,
  ):
    | { readonly hit: DomainHit; readonly port: number; readonly skipped: string[] }
    | { readonly skipped: string[] } => {
    const skipped: string[] = [];
    const tryHit = (hit: DomainHit) => {
      const port = explicitPort ?? hit.entry.defaultPort;
      if (hit.entry.ports.has(port)) return { hit, port, skipped };
      skipped.push(`${hit.domain} (${hit.entry.host}) has no port ${port}`);
      return undefined;
    };
    const e = exact.get(host);
    if (e !== undefined) {
      const r = tryHit(e);
      if (r !== undefined) return r;
    }
    for (const w of wildcards) {
      if (host.length > w.suffix.length && host.endsWith(w.suffix)) {
        const r = tryHit(w.hit);
        if (r !== undefined) return r;
      }
    }
    return { skipped };
  };
  return { registry, find };
}

/** Why `vs` governs `host`, and the other VirtualServices naming it that do not. */
function explainVirtualService(
  bundle: ConfigBundle,
  host: string,
  vs: Resource<VirtualServiceSpec>,
): VirtualServiceExplanation {
  const exactHost = vs.spec.hosts.includes(host);
  const pattern = exactHost
    ? host
    : (vs.spec.hosts.filter((h) => hostCoveredBy(host, h)).sort((a, b) => b.length - a.length)[0] ?? '');
  const notChosen: { name: string; namespace: string; reason: string }[] = [];
  for (const other of inLoadOrder(bundle.virtualServices)) {
    if (other === vs) continue;
    const covering = other.spec.hosts.filter((h) => hostCoveredBy(host, h));
    if (covering.length === 0) continue;
    const id = { name: other.meta.name, namespace: other.meta.namespace };
    if (!appliesToSidecars(other)) {
      notChosen.push({ ...id, reason: `bound to gateways ${other.spec.gateways.join(', ')}, not mesh` });
    } else if (covering.includes(host) && exactHost) {
      notChosen.push({ ...id, reason: 'also names the host; the first in load order wins' });
    } else if (exactHost) {
      notChosen.push({ ...id, reason: `wildcard ${covering.join(', ')} loses to the exact host` });
    } else {
      notChosen.push({ ...id, reason: `${covering.join(', ')} is less specific or later in load order` });
    }
  }
  return {
    name: vs.meta.name,
    namespace: vs.meta.namespace,
    hosts: vs.spec.hosts,
    why: exactHost ? `names the host exactly (${host})` : `wildcard host ${pattern} covers ${host}`,
    notChosen,
  };
}

/** The rule walk of `route()`, with the reasons. Returns the matched rule (or undefined). */
function walkRules(
  vs: Resource<VirtualServiceSpec>,
  port: number,
  input: RouteInput,
  options: CompileOptions,
): {
  readonly rules: RuleExplanation[];
  readonly matched: HTTPRoute | undefined;
  readonly problems: string[];
} {
  const path = input.path;
  const queryStart = path.indexOf('?');
  const pathOnly = queryStart < 0 ? path : path.slice(0, queryStart);
  const rules: RuleExplanation[] = [];
  const problems: string[] = [];
  for (const [index, rule] of vs.spec.http.entries()) {
    const name = rule.name ?? null;
    if (rule.match.length === 0) {
      rules.push({ index, name, catchAll: true, matchCount: 0, matched: true, matches: [] });
      return { rules, matched: rule, problems };
    }
    const matches: MatchExplanation[] = [];
    let matched = false;
    for (const [mi, m] of rule.match.entries()) {
      const mName = m.name ?? null;
      if (!matchAppliesToProxy(m, port, options)) {
        matches.push({
          index: mi,
          name: mName,
          onThisProxy: false,
          skipped: notOnThisProxy(m, port, options),
          matched: false,
          conditions: [],
        });
        continue;
      }
      const compiled = compileMatch(m);
      // The verdict is the router's matcher; the conditions only explain it.
      const verdict = matchesRequest(compiled, input, pathOnly, queryStart);
      const conditions = evaluateConditions(compiled, input, pathOnly, queryStart);
      const all = conditions.every((c) => c.held);
      if (all !== verdict) {
        problems.push(
          `rule ${index} match ${mi}: the router says ${verdict ? 'match' : 'no match'} but the conditions say otherwise`,
        );
      }
      matches.push({
        index: mi,
        name: mName,
        onThisProxy: true,
        skipped: null,
        matched: verdict,
        conditions,
      });
      // The route list ends at a catch-all entry (isCatchAllMatch), but such an entry always
      // matches, so stopping at the first match stops there too.
      if (verdict) {
        matched = true;
        break;
      }
    }
    rules.push({ index, name, catchAll: false, matchCount: rule.match.length, matched, matches });
    if (matched) return { rules, matched: rule, problems };
  }
  return { rules, matched: undefined, problems };
}

function headerOpsText(ops: readonly HeaderOps[]): string[] {
  const out: string[] = [];
  for (const o of ops) {
    for (const [n, v] of o.set) out.push(`set ${n}: ${v}`);
    for (const [n, v] of o.add) out.push(`add ${n}: ${v}`);
    for (const n of o.remove) out.push(`remove ${n}`);
  }
  return out;
}

const pct = (fraction: number): string => `${Math.round(fraction * 10000) / 100} %`;

function msText(ms: number | undefined): string {
  if (ms === undefined) return 'none';
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

function limitText(n: number): string {
  return n === Infinity ? 'unlimited' : String(n);
}

function loadBalancerText(policy: TrafficPolicy | undefined): string {
  const lb = policy?.loadBalancer;
  const ch = lb?.consistentHash;
  if (ch !== undefined) {
    const key =
      ch.httpHeaderName !== undefined
        ? `header ${ch.httpHeaderName}`
        : ch.httpCookie !== undefined
          ? `cookie ${ch.httpCookie.name}`
          : ch.httpQueryParameterName !== undefined
            ? `query parameter ${ch.httpQueryParameterName}`
            : 'source IP';
    return ch.maglev !== undefined
      ? `MAGLEV consistent hash on ${key}`
      : `RING_HASH consistent hash on ${key}`;
  }
  switch (lb?.simple) {
    case 'LEAST_REQUEST':
    case 'LEAST_CONN':
      return 'LEAST_REQUEST';
    case 'ROUND_ROBIN':
      return 'ROUND_ROBIN';
    case 'RANDOM':
      return 'RANDOM';
    default:
      return lb?.simple === undefined
        ? 'P2C + peak-EWMA (meshlet default)'
        : `P2C + peak-EWMA (${lb.simple} is served by meshlet's default)`;
  }
}

function connectionPoolText(policy: TrafficPolicy | undefined): Record<string, string> {
  const pool = policy?.connectionPool;
  const limits = poolLimits(pool);
  return {
    maxConnections: limitText(limits.maxConnections),
    http1MaxPendingRequests: limitText(limits.maxPending),
    http2MaxRequests: limitText(limits.maxRequests),
    maxRetries: limitText(limits.maxRetries),
    connectTimeout: msText(pool?.tcp?.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT_MS),
    maxRequestsPerConnection:
      pool?.http?.maxRequestsPerConnection === undefined || pool.http.maxRequestsPerConnection <= 0
        ? 'unlimited'
        : String(pool.http.maxRequestsPerConnection),
    idleTimeout: msText(pool?.http?.idleTimeout ?? pool?.tcp?.idleTimeout),
  };
}

/** The outlier detector's effective settings, defaults filled in as `outlier-detector.ts` fills them. */
function outlierText(policy: TrafficPolicy | undefined): Record<string, string> | null {
  const s = policy?.outlierDetection;
  if (s === undefined) return null;
  const positiveOr = (v: number | undefined, d: number): number => (v !== undefined && v > 0 ? v : d);
  const split = s.splitExternalLocalOriginErrors === true;
  const base = positiveOr(s.baseEjectionTime, DEFAULT_BASE_EJECTION_MS);
  const codes = s.outlierDetectionHttpErrorCodes;
  const off = (n: number): string => (n === 0 ? '0 (off)' : String(n));
  return {
    consecutive5xxErrors: off(s.consecutive5xxErrors ?? DEFAULT_CONSECUTIVE_5XX),
    consecutiveGatewayErrors: off(s.consecutiveGatewayErrors ?? 0),
    consecutiveLocalOriginFailures: split
      ? off(s.consecutiveLocalOriginFailures ?? DEFAULT_CONSECUTIVE_LOCAL_ORIGIN_FAILURES)
      : 'counted with the others (splitExternalLocalOriginErrors off)',
    errorCodes: codes !== undefined && codes.length > 0 ? codes.join(',') : '500-599',
    interval: msText(positiveOr(s.interval, DEFAULT_INTERVAL_MS)),
    baseEjectionTime: msText(base),
    maxEjectionTime: msText(Math.max(DEFAULT_MAX_EJECTION_MS, base)),
    maxEjectionPercent: `${positiveOr(s.maxEjectionPercent, DEFAULT_MAX_EJECTION_PERCENT)} %`,
    minHealthPercent:
      s.minHealthPercent === undefined || s.minHealthPercent === 0
        ? '0 (panic mode off)'
        : `${s.minHealthPercent} %`,
  };
}

/** Builds the per-cluster explainer: DR lookup and the real TLS origination decision. */
function clusterExplainer(
  bundle: ConfigBundle,
  settings: RuntimeSettings,
  table: RouteTable,
  registry: ReadonlyMap<string, ServiceRecord>,
) {
  const drIndex = buildDestinationRuleIndex(bundle.destinationRules, settings.labels);
  const snapshot: Snapshot = {
    version: 1,
    hash: bundle.hash,
    loadedAt: new Date(0),
    bundle,
    routes: table,
    outboundTrafficPolicy: outboundPolicyOf(bundle, settings).policy,
  };
  const modeOf = destinationModes(() => snapshot, compilePeerAuthentication, settings.rootNamespace);
  // Without an identity the proxy turns auto-mTLS off and ISTIO_MUTUAL fails for want of a
  // certificate; with one, only its presence matters here (explain reads no key material).
  const hasIdentity = settings.identity !== null;
  const id: OriginationIdentity = hasIdentity
    ? {
        cert: {
          certChainPem: '',
          keyPem: '',
          notBefore: new Date(0),
          notAfter: new Date(0),
          spiffe: spiffeId(settings.trustDomain, settings.namespace, settings.serviceAccount),
        },
        bundlePem: '(trust bundle)',
        version: 1,
      }
    : { cert: null, bundlePem: '', version: 1 };
  const origination = createOrigination({
    trustDomain: settings.trustDomain,
    identity: () => id,
    destinationMode: modeOf,
    autoMtls: hasIdentity,
  });

  const drOf = (host: string): ClusterExplanation['destinationRule'] => {
    const merged = drIndex.forHost(host);
    if (merged === undefined) return null;
    const rules = inLoadOrder(bundle.destinationRules)
      .filter(
        (dr: Resource<DestinationRuleSpec>) =>
          dr.spec.host === merged.host &&
          (dr.spec.workloadSelector === undefined || labelsSelect(dr.spec.workloadSelector, settings.labels)),
      )
      .map((dr) => `${dr.meta.namespace}/${dr.meta.name}`);
    return { host: merged.host, rules };
  };

  const tlsModeText = (cluster: Cluster): string => {
    const record = cluster.trafficPolicy?.tls;
    if (record !== undefined) {
      const mode = record['mode'];
      const m = mode === 'SIMPLE' || mode === 'MUTUAL' || mode === 'ISTIO_MUTUAL' ? mode : 'DISABLE';
      return `${m} (DestinationRule tls)`;
    }
    if (!hasIdentity) return 'plaintext: auto-mTLS is off (this proxy has no workload identity)';
    if (cluster.location !== 'MESH_INTERNAL')
      return 'plaintext: auto-mTLS never applies to MESH_EXTERNAL services';
    const mode = modeOf(cluster);
    if (mode === 'DISABLE') return "plaintext: the destination's PeerAuthentication mode is DISABLE";
    return `auto-mTLS: ISTIO_MUTUAL to endpoints labelled security.istio.io/tlsMode=istio (or with a serviceAccount), plaintext to others (destination PeerAuthentication ${mode ?? 'PERMISSIVE'})`;
  };

  const endpointTls = (cluster: Cluster, e: Cluster['endpoints'][number]): string => {
    const r = origination.originationFor(cluster, e);
    if (r === undefined) return 'plaintext';
    if (isOriginationError(r)) return `fails (UF): ${r.error}`;
    const sans = r.expectedSans.length === 0 ? 'any mesh identity' : r.expectedSans.join(' ');
    if (r.alpn === ISTIO_ALPN) return `ISTIO_MUTUAL (SNI ${r.servername ?? ''}, expects ${sans})`;
    const mode = r.certChainPem !== undefined ? 'MUTUAL' : 'SIMPLE';
    const verify = r.insecureSkipVerify === true ? 'not verified (insecureSkipVerify)' : `expects ${sans}`;
    return `${mode} (SNI ${r.servername ?? 'none'}, ${verify})`;
  };

  return (cluster: Cluster): ClusterExplanation => {
    const service = registry.get(cluster.host);
    const dnsResolved = service?.resolution === 'DNS' || service?.resolution === 'DNS_ROUND_ROBIN';
    return {
      name: cluster.name,
      service: cluster.host,
      serviceNamespace: cluster.serviceNamespace,
      location: cluster.location ?? 'MESH_EXTERNAL',
      resolution: service?.resolution ?? 'NONE',
      endpoints: cluster.endpoints.map((e) => ({
        address: e.address,
        port: e.port,
        weight: e.weight,
        labels: e.labels,
        serviceAccount: e.serviceAccount ?? null,
        dns: dnsResolved && !e.address.startsWith('unix://') && isIP(e.address) === 0,
        tls: endpointTls(cluster, e),
      })),
      destinationRule: drOf(cluster.host),
      loadBalancer: loadBalancerText(cluster.trafficPolicy),
      connectionPool: connectionPoolText(cluster.trafficPolicy),
      outlierDetection: outlierText(cluster.trafficPolicy),
      tls: tlsModeText(cluster),
    };
  };
}

function faultText(d: Extract<RouteDecision, { kind: 'forward' }>): string[] {
  const f = d.fault;
  if (f === undefined) return [];
  const out: string[] = [];
  if (f.delay !== undefined)
    out.push(`delay ${msText(f.delay.fixedDelayMs)} for ${pct(f.delay.fraction)} of requests`);
  if (f.abort !== undefined) {
    const what =
      f.abort.httpStatus !== undefined ? `HTTP ${f.abort.httpStatus}` : `gRPC ${f.abort.grpcStatus ?? ''}`;
    out.push(`abort with ${what} for ${pct(f.abort.fraction)} of requests`);
  }
  return out;
}

function mirrorText(d: Extract<RouteDecision, { kind: 'forward' }>): string[] {
  return d.mirrors.map((m) => {
    const name = clusterName(m.destination.port ?? 0, m.destination.subset ?? '', m.destination.host);
    const resolved = d.mirrorClusters.some((c) => c.cluster.name === name);
    const note = resolved
      ? ''
      : m.fraction === 0
        ? ' (fraction 0: never sent)'
        : ' (does not exist: no copy is sent)';
    return `${name} for ${pct(m.fraction)} of requests${note}`;
  });
}

function retryExplanation(d: Extract<RouteDecision, { kind: 'forward' }>): RetryExplanation {
  const p = compileRetryPolicy(d.retries);
  return {
    source: d.retries === undefined ? 'Istio default' : 'route',
    attempts: p.attempts,
    perTryTimeoutMs: p.perTryTimeoutMs ?? null,
    retryOn: d.retries?.retryOn ?? DEFAULT_RETRY_ON,
    backoffBaseMs: p.backoffBaseMs,
  };
}

/**
 * Explains how the outbound listener would handle `input`. `bundle` must be valid (no errors);
 * `settings` as `resolveSettings` gives them for this configuration.
 */
export function explain(
  bundle: ConfigBundle,
  settings: RuntimeSettings,
  request: ExplainedRequest,
  input: RouteInput,
): Explanation {
  const { policy, from } = outboundPolicyOf(bundle, settings);
  let draw = 0;
  const options: CompileOptions = {
    namespace: settings.namespace,
    domainSuffix: settings.domainSuffix,
    proxyLabels: settings.labels,
    outboundTrafficPolicy: policy,
    random: () => draw,
  };
  const table = compileRoutes(bundle, options);
  const { registry, find } = hostIndex(bundle, options);
  const describe = clusterExplainer(bundle, settings, table, registry);
  const notes: string[] = [];
  const problems: string[] = [];
  if (
    bundle.sidecars.length > 0 ||
    bundle.virtualServices.some((v) => v.spec.exportTo.length > 0) ||
    bundle.serviceEntries.some((s) => s.spec.exportTo.length > 0)
  ) {
    notes.push(
      'Sidecar egress and exportTo are not applied by meshlet: every host in the configuration is visible',
    );
  }

  const first = table.route(input);
  const base = {
    request,
    namespace: settings.namespace,
    outboundTrafficPolicy: policy,
    outboundTrafficPolicyFrom: from,
  };
  const hostEnd = authorityHostEnd(input.authority);
  const explicitPort = authorityPort(input.authority, hostEnd);
  const found = find(request.host, explicitPort);
  for (const s of found.skipped) notes.push(`virtual host ${s}: looking further`);

  if (!('hit' in found)) {
    const action: ActionExplanation =
      policy === 'ALLOW_ANY'
        ? {
            kind: 'passthrough',
            target: `${request.host}:${explicitPort ?? 80}`,
            why: `no service or VirtualService answers to ${request.host}; outboundTrafficPolicy ALLOW_ANY forwards to the named host and port`,
          }
        : {
            kind: 'noRoute',
            status: 502,
            flag: 'NR',
            why: `no service or VirtualService answers to ${request.host}; outboundTrafficPolicy REGISTRY_ONLY refuses unknown hosts (BlackHoleCluster)`,
          };
    check(first, action, problems);
    return { ...base, virtualHost: null, virtualService: null, rules: [], action, notes, problems };
  }

  const { hit, port } = found;
  const entry = hit.entry;
  const virtualHost: VirtualHostExplanation = {
    host: entry.host,
    port,
    portFrom: explicitPort === undefined ? 'service default' : 'authority',
    domain: hit.domain,
    domainKind: hit.kind,
    service: entry.service !== undefined,
  };
  const vs = entry.vs;
  if (vs === undefined) {
    // A service without a VirtualService: one default route (§2.2 step 6).
    const svc = entry.service;
    let action: ActionExplanation;
    if (
      svc !== undefined &&
      isWildcardHost(svc.host) &&
      (svc.resolution === 'NONE' || svc.resolution === 'DYNAMIC_DNS')
    ) {
      action = {
        kind: 'passthrough',
        target: `${request.host}:${port}`,
        why: `wildcard service ${svc.host} (resolution ${svc.resolution}) has no address of its own: forwarded to the requested host`,
      };
      check(first, action, problems);
    } else {
      action = forwardAction(first, [{ index: 0, weight: 100, share: 1 }], () => first, describe, problems, [
        clusterName(port, '', entry.host),
      ]);
      notes.push(
        `no VirtualService for ${entry.host}: the default route to ${clusterName(port, '', entry.host)}`,
      );
    }
    return { ...base, virtualHost, virtualService: null, rules: [], action, notes, problems };
  }

  const virtualService = explainVirtualService(bundle, entry.host, vs);
  const walk = walkRules(vs, port, input, options);
  problems.push(...walk.problems);
  const rule = walk.matched;
  const routeName = `${vs.meta.namespace}/${vs.meta.name}`;
  let action: ActionExplanation;
  if (rule === undefined) {
    action = {
      kind: 'noRoute',
      status: 404,
      flag: 'NR',
      why: `no rule of VirtualService ${routeName} matched on port ${port}`,
    };
    check(first, action, problems);
  } else if (rule.redirect !== undefined || rule.directResponse !== undefined) {
    action =
      first.kind === 'redirect'
        ? {
            kind: 'redirect',
            routeName,
            status: first.status,
            location: first.location,
            responseHeaders: headerOpsText(first.responseHeaders),
          }
        : first.kind === 'direct'
          ? {
              kind: 'direct',
              routeName,
              status: first.status,
              body: first.body === null ? null : first.body.toString('utf8'),
              responseHeaders: headerOpsText(first.responseHeaders),
            }
          : { kind: 'noRoute', status: 404, flag: 'NR', why: 'the router disagrees (see problems)' };
    if (first.kind !== (rule.redirect !== undefined ? 'redirect' : 'direct')) {
      problems.push(
        `the matched rule is a ${rule.redirect !== undefined ? 'redirect' : 'direct response'} but route() answered ${first.kind}`,
      );
    }
  } else {
    const table2 = buildWeightedTable(rule.route.map((d, i) => ({ item: i, weight: d.weight })));
    let prev = 0;
    const picks = table2.items.map((i, k) => {
      const cum = table2.cumulative[k] ?? 0;
      const pick = {
        index: i,
        // A lone destination takes everything, whatever its weight says (Istio reads it as 100).
        weight: rule.route.length === 1 ? 100 : (rule.route[i]?.weight ?? 0),
        share: cum - prev,
        mid: (prev + cum) / 2 / table2.total,
      };
      prev = cum;
      return pick;
    });
    const expected = rule.route.map((d) => {
      const p = destinationPortOf(d.destination.port, d.destination.host, port, registry);
      return clusterName(p, d.destination.subset ?? '', d.destination.host);
    });
    action = forwardAction(
      first,
      picks,
      (k) => {
        draw = picks[k]?.mid ?? 0;
        return table.route(input);
      },
      describe,
      problems,
      expected,
    );
    const never = expected.filter((_name, i) => !table2.items.includes(i));
    if (action.kind === 'forward' && never.length > 0) action = { ...action, neverChosen: never };
    if (action.kind === 'forward' && action.routeName !== routeName) {
      problems.push(`route() names route ${action.routeName}, explain found ${routeName}`);
    }
  }
  return { ...base, virtualHost, virtualService, rules: walk.rules, action, notes, problems };
}

/** Destination port as build-route-list resolves it: explicit, else the service's only port, else the listener's. */
function destinationPortOf(
  explicit: number | undefined,
  host: string,
  listenerPort: number,
  registry: ReadonlyMap<string, ServiceRecord>,
): number {
  if (explicit !== undefined && explicit !== 0) return explicit;
  const service = registry.get(host);
  if (service !== undefined && service.ports.size === 1)
    return service.ports.keys().next().value ?? listenerPort;
  return listenerPort;
}

/**
 * A forward (or missing-cluster) action from the router's own decisions, one per destination:
 * `decide(k)` asks `route()` with a draw inside destination k's share.
 */
function forwardAction(
  first: RouteDecision,
  picks: readonly { readonly index: number; readonly weight: number; readonly share: number }[],
  decide: (k: number) => RouteDecision,
  describe: (c: Cluster) => ClusterExplanation,
  problems: string[],
  expected: readonly string[],
): ActionExplanation {
  const total = picks.reduce((s, p) => s + p.share, 0);
  const destinations: DestinationExplanation[] = [];
  let shared: Extract<RouteDecision, { kind: 'forward' }> | undefined;
  let missing: Extract<RouteDecision, { kind: 'noCluster' }> | undefined;
  for (const [k, p] of picks.entries()) {
    const d = picks.length === 1 ? first : decide(k);
    const want = expected[p.index] ?? '';
    const probability = Math.round((p.share / total) * 10000) / 100;
    if (d.kind === 'forward') {
      shared ??= d;
      if (d.cluster.name !== want)
        problems.push(`route() chose ${d.cluster.name} where explain expected ${want}`);
      destinations.push({
        cluster: d.cluster.name,
        weight: p.weight,
        probability,
        missing: null,
        authority: d.authority,
        requestHeaders: headerOpsText(d.requestHeaders),
        responseHeaders: headerOpsText(d.responseHeaders),
        details: describe(d.cluster),
      });
    } else if (d.kind === 'noCluster') {
      missing ??= d;
      if (d.clusterName !== want)
        problems.push(`route() chose ${d.clusterName} where explain expected ${want}`);
      destinations.push({
        cluster: d.clusterName,
        weight: p.weight,
        probability,
        missing: d.reason,
        authority: null,
        requestHeaders: [],
        responseHeaders: [],
        details: null,
      });
    } else {
      problems.push(`route() answered ${d.kind} where explain expected a destination`);
    }
  }
  if (shared === undefined) {
    return {
      kind: 'noCluster',
      status: 503,
      flag: 'NC',
      cluster: missing?.clusterName ?? '',
      why: missing?.reason ?? 'no destination',
    };
  }
  return {
    kind: 'forward',
    routeName: shared.routeName,
    upstreamPath: shared.path,
    rewritten: shared.originalPath !== undefined,
    destinations,
    neverChosen: [],
    timeoutMs: shared.timeoutMs ?? null,
    retries: retryExplanation(shared),
    fault: faultText(shared),
    mirrors: mirrorText(shared),
  };
}

/** Records a disagreement between an explained local answer and the router's decision. */
function check(d: RouteDecision, action: ActionExplanation, problems: string[]): void {
  if (action.kind === 'passthrough' && d.kind === 'passthrough') {
    if (`${d.host}:${d.port}` !== action.target)
      problems.push(`route() passes through to ${d.host}:${d.port}, explain says ${action.target}`);
    return;
  }
  if (action.kind === 'noRoute' && d.kind === 'noRoute') {
    if (d.status !== action.status)
      problems.push(`route() answers ${d.status}, explain says ${action.status}`);
    return;
  }
  problems.push(`route() answered ${d.kind}, explain says ${action.kind}`);
}
