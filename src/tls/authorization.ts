/**
 * AuthorizationPolicy (spec §6): which policies apply to a workload, and a compiled decision per
 * request. Everything about the policies (value forms, CIDR lists, templates, reason strings,
 * decision objects) is worked out once in `compileAuthorizer`; `check` only reads the request.
 *
 * Decisions follow Istio's order: AUDIT rules mark, then any DENY rule match denies, then with no
 * ALLOW policy the request is allowed, with some ALLOW rule matching it is allowed, otherwise it is
 * denied. CUSTOM is rejected by the loader. Choices where the spec leaves room:
 * - `remoteIpBlocks` and `remote.ip` use the first `X-Forwarded-For` entry when the header is
 *   present, else the peer IP. The header comes from the caller, so these fields are only as
 *   trustworthy as whoever set it; `ipBlocks` / `source.ip` always see the real peer address.
 * - `principals` (and `source.principal`) written with the trust domain `cluster.local` stand for
 *   the mesh's own trust domain, as Istio treats `cluster.local` as an alias of the local one.
 * - `serviceAccounts` (and `source.serviceAccount`) `ns/sa` or `sa` match the principal
 *   `<trustDomain>/ns/<ns>/sa/<sa>` exactly: an identity from another trust domain never matches.
 * - `request.headers[...]` values: `*` means present (even empty), as Istio builds a presence
 *   matcher for it; repeated headers are joined with `,` before matching, as Envoy does. The
 *   pseudo-headers `:authority`, `:method` and `:path` read the request's host, method and target.
 * - A path that cannot be normalized (it holds `%00`) is denied with `path_normalization_failed`
 *   when any applicable rule looks at paths (Envoy rejects such a request before authorization).
 * - Dry-run policies are evaluated as if they were enforced together with the enforced ones;
 *   `dryRunDenied` is set when that would deny a request the enforced policies allow.
 * - A rule that cannot be evaluated (unknown `when` key, bad CIDR, port or path template, a `when`
 *   without values) is dropped and reported in `warnings`, as Istio drops it: an ALLOW policy
 *   loses that access, a DENY policy loses that denial. The policy itself still applies (an ALLOW
 *   policy whose rules were all dropped allows nothing).
 * The inbound request path is HTTP, so the TCP-only semantics (§6.3, dropping HTTP-only fields)
 * are not implemented here.
 */
import { BlockList } from 'node:net';
import type {
  AuthorizationPolicySpec,
  AuthzCondition,
  AuthzOperation,
  AuthzRule,
  AuthzSource,
  Resource,
} from '../config/resource-types.ts';
import { labelsSelect } from '../router/labels.ts';
import { normalizePath } from './path-normalize.ts';
import type { Authorizer, AuthzDecision, AuthzRequest, WorkloadSelectorInput } from './policy-types.ts';

type Policy = Resource<AuthorizationPolicySpec>;

export interface CompiledAuthorizer extends Authorizer {
  /** `ns/name` of every applicable policy, in evaluation order. */
  readonly policies: readonly string[];
  /** Rules dropped because they cannot be evaluated, one line each (for the load log). */
  readonly warnings: readonly string[];
}

/**
 * Policies that apply to `workload` (spec §6.1): those of its namespace and of the root namespace
 * whose selector is a subset of its labels (or that have none); `targetRef(s)` policies are for
 * waypoints and gateways and never apply to a sidecar. In load order.
 */
export function applicableAuthorizationPolicies(
  policies: readonly Policy[],
  workload: WorkloadSelectorInput,
  rootNamespace: string,
): Policy[] {
  return policies
    .filter((p) => {
      if (p.spec.hasTargetRefs) return false;
      const ns = p.meta.namespace;
      if (ns !== workload.namespace && ns !== rootNamespace) return false;
      return p.spec.selector === undefined || labelsSelect(p.spec.selector, workload.labels);
    })
    .sort((a, b) => a.meta.order - b.meta.order);
}

export function compileAuthorizer(
  policies: readonly Policy[],
  workload: WorkloadSelectorInput,
  rootNamespace: string,
  trustDomain: string,
): CompiledAuthorizer {
  const applicable = applicableAuthorizationPolicies(policies, workload, rootNamespace);
  const warnings: string[] = [];
  const sets = { allow: [], deny: [], audit: [], dryAllow: [], dryDeny: [] } as Record<
    'allow' | 'deny' | 'audit' | 'dryAllow' | 'dryDeny',
    CompiledRule[]
  >;
  let allowPolicies = 0;
  let dryAllowPolicies = 0;
  let needsPath = false;
  for (const p of applicable) {
    const { action, dryRun } = p.spec;
    if (action === 'ALLOW') {
      if (dryRun) dryAllowPolicies++;
      else allowPolicies++;
    }
    // A dry-run AUDIT policy marks nothing: auditing is its only effect.
    if (action === 'AUDIT' && dryRun) continue;
    const target =
      action === 'AUDIT'
        ? sets.audit
        : action === 'DENY'
          ? dryRun
            ? sets.dryDeny
            : sets.deny
          : dryRun
            ? sets.dryAllow
            : sets.allow;
    p.spec.rules.forEach((rule, i) => {
      const id = `${p.meta.namespace}-${p.meta.name}-rule[${i}]`;
      const ctx: RuleContext = { policyNamespace: p.meta.namespace, trustDomain, usesPath: false };
      try {
        const test = compileRule(rule, ctx);
        needsPath ||= ctx.usesPath;
        const allowed = action === 'ALLOW';
        const reason = allowed ? `allowed_by[${id}]` : `rbac_access_denied_matched_policy[${id}]`;
        target.push({ id, test, reason, decisions: decisionPair(allowed, reason) });
      } catch (err) {
        if (!(err instanceof RuleError)) throw err;
        warnings.push(
          `AuthorizationPolicy ${p.meta.namespace}/${p.meta.name}: rules[${i}] dropped: ${err.message}`,
        );
      }
    });
  }

  const { allow, deny, audit, dryAllow, dryDeny } = sets;
  const hasDryRun = dryDeny.length > 0 || dryAllowPolicies > 0;
  const view = new RequestView();

  /** Why the dry-run policies, if enforced, would deny a request the enforced ones allow. */
  function dryRunVerdict(allowedByRule: boolean): string | undefined {
    for (const r of dryDeny) if (r.test(view)) return r.reason;
    // An enforced ALLOW rule already matched: adding ALLOW policies cannot take that away.
    if (dryAllowPolicies === 0 || allowedByRule) return undefined;
    for (const r of dryAllow) if (r.test(view)) return undefined;
    return DENIED_NONE_REASON;
  }

  return {
    empty: applicable.length === 0,
    policies: applicable.map((p) => `${p.meta.namespace}/${p.meta.name}`),
    warnings,
    check(req: AuthzRequest): AuthzDecision {
      view.reset(req);
      if (needsPath && view.path() === undefined) return PATH_INVALID;
      let audited: 0 | 1 = 0;
      for (const r of audit) {
        if (r.test(view)) {
          audited = 1;
          break;
        }
      }
      for (const r of deny) if (r.test(view)) return r.decisions[audited];
      let decision: AuthzDecision;
      let allowedByRule = false;
      if (allowPolicies === 0) {
        decision = NO_ALLOW_POLICY[audited];
      } else {
        decision = DENIED_NONE[audited];
        for (const r of allow) {
          if (r.test(view)) {
            decision = r.decisions[audited];
            allowedByRule = true;
            break;
          }
        }
      }
      if (!hasDryRun || !decision.allowed) return decision;
      const dryRunDenied = dryRunVerdict(allowedByRule);
      return dryRunDenied === undefined ? decision : { ...decision, dryRunDenied };
    },
  };
}

// ---- decisions ------------------------------------------------------------------------------

type DecisionPair = readonly [AuthzDecision, AuthzDecision];

/** The decision without and with the audit mark, built once so `check` allocates nothing. */
function decisionPair(allowed: boolean, reason: string): DecisionPair {
  return [
    Object.freeze({ allowed, reason, audited: false }),
    Object.freeze({ allowed, reason, audited: true }),
  ];
}

const DENIED_NONE_REASON = 'rbac_access_denied_matched_policy[none]';
const DENIED_NONE = decisionPair(false, DENIED_NONE_REASON);
const NO_ALLOW_POLICY = decisionPair(true, 'no_allow_policy');
/** Envoy's response detail for a path it cannot normalize. */
const PATH_INVALID: AuthzDecision = Object.freeze({
  allowed: false,
  reason: 'path_normalization_failed',
  audited: false,
});

interface CompiledRule {
  readonly id: string;
  readonly test: Pred;
  readonly reason: string;
  readonly decisions: DecisionPair;
}

// ---- the request as the matchers see it ------------------------------------------------------

/**
 * One request's derived values, each computed at most once and only when a matcher asks. An
 * authorizer owns one view and reuses it: `check` is synchronous, so it never holds two requests.
 */
class RequestView {
  req!: AuthzRequest;
  private pathState: 0 | 1 = 0;
  private normalized: string | undefined;
  private hostLower: string | undefined;
  private remote: string | undefined;

  reset(req: AuthzRequest): void {
    this.req = req;
    this.pathState = 0;
    this.normalized = undefined;
    this.hostLower = undefined;
    this.remote = undefined;
  }

  /** Normalized path without query; undefined when the path is invalid. */
  path(): string | undefined {
    if (this.pathState === 0) {
      this.pathState = 1;
      this.normalized = normalizePath(this.req.path) ?? undefined;
    }
    return this.normalized;
  }

  host(): string {
    if (this.hostLower === undefined) this.hostLower = this.req.host.toLowerCase();
    return this.hostLower;
  }

  /** First X-Forwarded-For entry, else the peer IP. */
  remoteIp(): string {
    if (this.remote === undefined) {
      const xff = firstHeader(this.req.headers, 'x-forwarded-for');
      let first = '';
      if (xff !== undefined) {
        const comma = xff.indexOf(',');
        first = (comma < 0 ? xff : xff.slice(0, comma)).trim();
      }
      this.remote = first === '' ? this.req.sourceIp : first;
    }
    return this.remote;
  }
}

function firstHeader(headers: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < headers.length; i += 2) if (headers[i] === name) return headers[i + 1];
  return undefined;
}

/** All values of a header joined with `,` (Envoy's view of a repeated header); undefined if absent. */
function joinedHeader(headers: readonly string[], name: string): string | undefined {
  let value: string | undefined;
  for (let i = 0; i + 1 < headers.length; i += 2) {
    if (headers[i] === name) {
      const v = headers[i + 1]!;
      value = value === undefined ? v : `${value},${v}`;
    }
  }
  return value;
}

// ---- matchers -------------------------------------------------------------------------------

type Pred = (v: RequestView) => boolean;
/** Reads one attribute of the request; undefined means the request has none (plaintext, no SNI…). */
type Getter = (v: RequestView) => string | undefined;
type Test = (s: string) => boolean;

class RuleError extends Error {}

interface RuleContext {
  readonly policyNamespace: string;
  readonly trustDomain: string;
  usesPath: boolean;
}

const TRUE: Pred = () => true;
const NOTHING: Getter = () => undefined;

/**
 * A positive field matches when the attribute exists and some value matches; its `not` form when
 * the attribute is missing or no value matches. That single rule gives the plaintext semantics
 * (identity fields never match, `not…` identity fields always do), the absent-header semantics and
 * the no-JWT semantics.
 */
function field(get: Getter, test: Test, negate: boolean): Pred {
  if (negate) {
    return (v) => {
      const x = get(v);
      return x === undefined || !test(x);
    };
  }
  return (v) => {
    const x = get(v);
    return x !== undefined && test(x);
  };
}

function allOf(preds: readonly Pred[]): Pred {
  if (preds.length === 0) return TRUE;
  if (preds.length === 1) return preds[0]!;
  if (preds.length === 2) {
    const [a, b] = preds as [Pred, Pred];
    return (v) => a(v) && b(v);
  }
  return (v) => {
    for (const p of preds) if (!p(v)) return false;
    return true;
  };
}

/** Any of the alternatives; an empty list does not constrain (absent `from` / `to`). */
function anyOf(preds: readonly Pred[]): Pred {
  if (preds.length === 0) return TRUE;
  if (preds.length === 1) return preds[0]!;
  return (v) => {
    for (const p of preds) if (p(v)) return true;
    return false;
  };
}

/**
 * The value forms of §6.3, in Istio's order: `*` (present and non-empty, or merely present with
 * `starMatchesEmpty`), `*suffix`, `prefix*`, else exact. With `fold` the values are lowercased and
 * the caller lowercases the input.
 */
function valueTest(values: readonly string[], fold = false, starMatchesEmpty = false): Test {
  const exact = new Set<string>();
  const prefixes: string[] = [];
  const suffixes: string[] = [];
  let star = false;
  for (const raw of values) {
    const value = fold ? raw.toLowerCase() : raw;
    if (value === '*') star = true;
    else if (value.startsWith('*')) suffixes.push(value.slice(1));
    else if (value.endsWith('*')) prefixes.push(value.slice(0, -1));
    else exact.add(value);
  }
  if (star && starMatchesEmpty) return () => true;
  if (prefixes.length === 0 && suffixes.length === 0) {
    if (star) return (s) => s.length > 0;
    if (exact.size === 1) {
      const [only] = exact as Set<string>;
      return (s) => s === only;
    }
    return (s) => exact.has(s);
  }
  return (s) => {
    if (star && s.length > 0) return true;
    if (exact.has(s)) return true;
    for (const p of prefixes) if (s.startsWith(p)) return true;
    for (const x of suffixes) if (s.endsWith(x)) return true;
    return false;
  };
}

/** IPs and CIDRs (§6.3 ipBlocks), IPv4 and IPv6, checked with a prebuilt `BlockList`. */
function ipTest(values: readonly string[]): Test {
  const list = new BlockList();
  for (const value of values) {
    const slash = value.indexOf('/');
    const address = slash < 0 ? value : value.slice(0, slash);
    const family = address.includes(':') ? 'ipv6' : 'ipv4';
    try {
      if (slash < 0) {
        list.addAddress(address, family);
      } else {
        const bitsText = value.slice(slash + 1);
        if (!/^\d{1,3}$/.test(bitsText)) throw new Error('bad prefix length');
        list.addSubnet(address, Number(bitsText), family);
      }
    } catch {
      throw new RuleError(`invalid IP or CIDR "${value}"`);
    }
  }
  return (ip) => list.check(ip, ip.includes(':') ? 'ipv6' : 'ipv4');
}

function portSet(values: readonly string[]): ReadonlySet<number> {
  const ports = new Set<number>();
  for (const value of values) {
    const n = /^\d{1,5}$/.test(value) ? Number(value) : Number.NaN;
    if (!(n >= 1 && n <= 65535)) throw new RuleError(`invalid port "${value}"`);
    ports.add(n);
  }
  return ports;
}

function portField(values: readonly string[], negate: boolean): Pred {
  const ports = portSet(values);
  return negate ? (v) => !ports.has(v.req.port) : (v) => ports.has(v.req.port);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/**
 * `namespaces`: the SPIFFE id must contain `/ns/<value>/`, a `*` anywhere in the value matching
 * any run of characters, like the regex Istio builds from it.
 */
function namespaceTest(values: readonly string[]): Test {
  const needles: string[] = [];
  const patterns: RegExp[] = [];
  for (const value of values) {
    if (value.includes('*')) {
      patterns.push(new RegExp(`/ns/${value.split('*').map(escapeRegExp).join('.*')}/`));
    } else {
      needles.push(`/ns/${value}/`);
    }
  }
  return (id) => {
    for (const n of needles) if (id.includes(n)) return true;
    for (const p of patterns) if (p.test(id)) return true;
    return false;
  };
}

/** `cluster.local/…` in a principal means the mesh's own trust domain (Istio's alias). */
function aliasPrincipal(value: string, trustDomain: string): string {
  const slash = value.indexOf('/');
  if (slash > 0 && value.slice(0, slash) === 'cluster.local') return trustDomain + value.slice(slash);
  return value;
}

function principalTest(values: readonly string[], ctx: RuleContext): Test {
  return valueTest(values.map((v) => aliasPrincipal(v, ctx.trustDomain)));
}

/** `ns/sa` or `sa` (the policy's namespace) as exact principals in the mesh's trust domain. */
function serviceAccountTest(values: readonly string[], ctx: RuleContext): Test {
  const principals = new Set<string>();
  for (const value of values) {
    const parts = value.split('/');
    const [ns, sa] = parts.length === 1 ? [ctx.policyNamespace, parts[0]!] : parts;
    if (parts.length > 2 || !ns || !sa || value.includes('*')) {
      throw new RuleError(`invalid service account "${value}" (want "ns/sa" or "sa", no wildcards)`);
    }
    principals.add(`${ctx.trustDomain}/ns/${ns}/sa/${sa}`);
  }
  return (p) => principals.has(p);
}

// Envoy's URI-template characters: the RFC 3986 pchar set without `*`.
const TEMPLATE_CHAR = "[A-Za-z0-9\\-._~%!$&'()+,;:@=]";

/**
 * A `paths` template (§6.3): `{*}` is one non-empty segment, `{**}` any run of segments (possibly
 * none, so `/a/{**}` matches `/a/` and `/a/b/c` but not `/a`) and must be the last operator; an
 * operator fills its whole segment. Compiled to an anchored RegExp once.
 */
function compileTemplate(template: string): RegExp {
  if (!template.startsWith('/')) throw new RuleError(`path template "${template}" must start with "/"`);
  let source = '';
  let sawMulti = false;
  for (const segment of template.slice(1).split('/')) {
    source += '/';
    if (segment === '{*}' || segment === '{**}') {
      if (sawMulti) throw new RuleError(`path template "${template}": {**} must be the last operator`);
      sawMulti = segment === '{**}';
      source += sawMulti ? `(?:${TEMPLATE_CHAR}|/)*` : `${TEMPLATE_CHAR}+`;
    } else if (/[{}*]/.test(segment)) {
      throw new RuleError(`path template "${template}": an operator must fill its segment, no bare *`);
    } else {
      source += escapeRegExp(segment);
    }
  }
  return new RegExp(`^${source}$`);
}

function pathTest(values: readonly string[]): Test {
  const templates: RegExp[] = [];
  const plain: string[] = [];
  for (const value of values) {
    if (value.includes('{*}') || value.includes('{**}')) templates.push(compileTemplate(value));
    else plain.push(value);
  }
  if (templates.length === 0) return valueTest(plain);
  const other = plain.length === 0 ? () => false : valueTest(plain);
  return (path) => {
    for (const t of templates) if (t.test(path)) return true;
    return other(path);
  };
}

// ---- rules ----------------------------------------------------------------------------------

const principalOf: Getter = (v) => v.req.peer?.principal;
const spiffeIdOf: Getter = (v) => v.req.peer?.spiffeId;
const trustDomainOf: Getter = (v) => v.req.peer?.trustDomain;
const sourceIpOf: Getter = (v) => v.req.sourceIp;
const remoteIpOf: Getter = (v) => v.remoteIp();
const destinationIpOf: Getter = (v) => v.req.destinationIp;
const hostOf: Getter = (v) => v.host();
const methodOf: Getter = (v) => v.req.method;
const pathOf: Getter = (v) => v.path();
const sniOf: Getter = (v) => v.req.sni;

/** A field's list when it is set and not empty (an empty list is unset, as in Istio's protos). */
function listed(values: readonly string[] | undefined): values is readonly string[] {
  return values !== undefined && values.length > 0;
}

function pushField(
  preds: Pred[],
  values: readonly string[] | undefined,
  negate: boolean,
  get: Getter,
  test: (values: readonly string[]) => Test,
): void {
  if (listed(values)) preds.push(field(get, test(values), negate));
}

function compileSource(s: AuthzSource, ctx: RuleContext): Pred {
  const preds: Pred[] = [];
  const principals = (vs: readonly string[]) => principalTest(vs, ctx);
  const serviceAccounts = (vs: readonly string[]) => serviceAccountTest(vs, ctx);
  const plain = (vs: readonly string[]) => valueTest(vs);
  pushField(preds, s.principals, false, principalOf, principals);
  pushField(preds, s.notPrincipals, true, principalOf, principals);
  pushField(preds, s.namespaces, false, spiffeIdOf, namespaceTest);
  pushField(preds, s.notNamespaces, true, spiffeIdOf, namespaceTest);
  pushField(preds, s.serviceAccounts, false, principalOf, serviceAccounts);
  pushField(preds, s.notServiceAccounts, true, principalOf, serviceAccounts);
  pushField(preds, s.trustDomains, false, trustDomainOf, plain);
  pushField(preds, s.notTrustDomains, true, trustDomainOf, plain);
  pushField(preds, s.ipBlocks, false, sourceIpOf, ipTest);
  pushField(preds, s.notIpBlocks, true, sourceIpOf, ipTest);
  pushField(preds, s.remoteIpBlocks, false, remoteIpOf, ipTest);
  pushField(preds, s.notRemoteIpBlocks, true, remoteIpOf, ipTest);
  // meshlet validates no JWT: there is never a request principal.
  pushField(preds, s.requestPrincipals, false, NOTHING, plain);
  pushField(preds, s.notRequestPrincipals, true, NOTHING, plain);
  return allOf(preds);
}

function compileOperation(o: AuthzOperation, ctx: RuleContext): Pred {
  const preds: Pred[] = [];
  const hosts = (vs: readonly string[]) => valueTest(vs, true);
  const plain = (vs: readonly string[]) => valueTest(vs);
  pushField(preds, o.hosts, false, hostOf, hosts);
  pushField(preds, o.notHosts, true, hostOf, hosts);
  if (listed(o.ports)) preds.push(portField(o.ports, false));
  if (listed(o.notPorts)) preds.push(portField(o.notPorts, true));
  pushField(preds, o.methods, false, methodOf, plain);
  pushField(preds, o.notMethods, true, methodOf, plain);
  if (listed(o.paths) || listed(o.notPaths)) ctx.usesPath = true;
  pushField(preds, o.paths, false, pathOf, pathTest);
  pushField(preds, o.notPaths, true, pathOf, pathTest);
  return allOf(preds);
}

const JWT_KEYS = new Set(['request.auth.principal', 'request.auth.audiences', 'request.auth.presenter']);

/** Getter and value test of a `when` key. */
function conditionKey(
  key: string,
  ctx: RuleContext,
): { get: Getter; test: (values: readonly string[]) => Test } | { port: true } {
  const plain = (vs: readonly string[]) => valueTest(vs);
  if (key.startsWith('request.headers[') && key.endsWith(']') && key.length > 'request.headers[]'.length) {
    const name = key.slice('request.headers['.length, -1).toLowerCase();
    const headerValues = (vs: readonly string[]) => valueTest(vs, false, true);
    if (name === ':authority') return { get: (v) => v.req.host, test: headerValues };
    if (name === ':method') return { get: methodOf, test: headerValues };
    if (name === ':path') return { get: (v) => v.req.path, test: headerValues };
    return { get: (v) => joinedHeader(v.req.headers, name), test: headerValues };
  }
  switch (key) {
    case 'source.ip':
      return { get: sourceIpOf, test: ipTest };
    case 'remote.ip':
      return { get: remoteIpOf, test: ipTest };
    case 'destination.ip':
      return { get: destinationIpOf, test: ipTest };
    case 'destination.port':
      return { port: true };
    case 'source.namespace':
      return { get: spiffeIdOf, test: namespaceTest };
    case 'source.principal':
      return { get: principalOf, test: (vs) => principalTest(vs, ctx) };
    case 'source.serviceAccount':
      return { get: principalOf, test: (vs) => serviceAccountTest(vs, ctx) };
    case 'source.trustDomain':
      return { get: trustDomainOf, test: plain };
    case 'connection.sni':
      return { get: sniOf, test: plain };
  }
  if (JWT_KEYS.has(key) || /^request\.auth\.claims\[[^\]]+\](\[[^\]]+\])*$/.test(key)) {
    return { get: NOTHING, test: plain };
  }
  // Envoy filter metadata: meshlet runs no such filter, so the metadata is never there. As with
  // JWT keys, `values` never match and `notValues` always do (ignoring the condition would widen
  // an ALLOW rule).
  if (key.startsWith('experimental.envoy.filters.')) return { get: NOTHING, test: plain };
  throw new RuleError(`unknown when key "${key}"`);
}

function compileCondition(c: AuthzCondition, ctx: RuleContext): Pred {
  const kind = conditionKey(c.key, ctx);
  if (!listed(c.values) && !listed(c.notValues)) {
    throw new RuleError(`when key "${c.key}" has neither values nor notValues`);
  }
  const preds: Pred[] = [];
  if ('port' in kind) {
    if (listed(c.values)) preds.push(portField(c.values, false));
    if (listed(c.notValues)) preds.push(portField(c.notValues, true));
  } else {
    pushField(preds, c.values, false, kind.get, kind.test);
    pushField(preds, c.notValues, true, kind.get, kind.test);
  }
  return allOf(preds);
}

/** `from`: any source; `to`: any operation; `when`: every condition (spec §6.3). */
function compileRule(rule: AuthzRule, ctx: RuleContext): Pred {
  const from = anyOf(rule.from.map((s) => compileSource(s, ctx)));
  const to = anyOf(rule.to.map((o) => compileOperation(o, ctx)));
  const when = allOf(rule.when.map((c) => compileCondition(c, ctx)));
  return allOf([from, to, when].filter((p) => p !== TRUE));
}
