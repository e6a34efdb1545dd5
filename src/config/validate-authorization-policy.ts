/**
 * AuthorizationPolicy validation (spec §6), with the checks of Istio's own validation plus the
 * value syntax the matcher relies on.
 *
 * What is checked, as Istio's validation does:
 * - at most one of `selector`, `targetRef`, `targetRefs`; `provider` only with CUSTOM;
 * - `from: []` / `to: []` are errors, every `from[]` needs a non-empty `source`, every `to[]` a
 *   non-empty `operation`; no empty string in any list;
 * - `ipBlocks`/`notIpBlocks`/`remoteIpBlocks`/`notRemoteIpBlocks` and the IP `when` keys are IPs or
 *   CIDRs; `ports`/`notPorts` and `destination.port` are port numbers written as strings;
 * - `serviceAccounts`/`notServiceAccounts`: `ns/sa` or `sa`, no wildcard, at most 16 each, never
 *   together with principals or namespaces (either polarity);
 * - `when[].key` is one of the supported keys (`request.headers[name]` and
 *   `request.auth.claims[a][b]` need their brackets), and each condition has values or notValues;
 * - `paths` templates: `{*}` is one segment, `{**}` any number and no operator may follow it, no
 *   other character shares a segment with an operator, no bare `*` in a template, literal segments
 *   are RFC 3986 path characters.
 * Beyond Istio, the value syntax is enforced: a `*` may only stand alone, or once at the start
 * (suffix match) or at the end (prefix match). Istio reads `a*b` as the exact string "a*b" and
 * `*a*` as the suffix "a*", which is never what the author meant of an access rule.
 * (`namespaces` are the exception: Istio turns every `*` in them into "anything", so they may sit
 * anywhere; the rest of a namespace value must be namespace characters.)
 *
 * What is an error because it would change security if meshlet went on without it (design.md):
 * - `action: CUSTOM` (and so `provider`): meshlet has no external authorizer. Istio fails closed
 *   for a CUSTOM policy it cannot serve; loading the file and skipping the policy would fail open.
 * - any unknown field inside the spec, a rule, a source, an operation or a condition. meshlet
 *   cannot tell a typo (`notPrincipal`) from a field of a newer Istio it does not implement, and
 *   ignoring either changes who may call: a dropped field in a DENY rule makes it match less, in an
 *   ALLOW rule more. (PeerAuthentication and the networking kinds warn about unknown fields.)
 * - an unknown `when` key (Istio drops the whole rule, which silently loses a DENY).
 *
 * What loads with a warning:
 * - JWT fields (`requestPrincipals`, `notRequestPrincipals`, `request.auth.*` keys): meshlet
 *   validates no JWT, so a request never has a request principal, exactly as in Istio when no
 *   RequestAuthentication applies. Positive matches never match (an ALLOW rule needing a JWT allows
 *   nothing, a DENY rule needing one denies nothing that Istio would deny without a token), negative
 *   ones always match (`notRequestPrincipals: ["*"]` denies every request). Never wider than Istio.
 * - `experimental.envoy.filters.*` keys: raw Envoy dynamic metadata, which nothing in meshlet sets,
 *   so it is always absent (`values` never match, `notValues` always match), as in an Envoy without
 *   the filter that would set it.
 * - `targetRef`/`targetRefs`: they attach the policy to a waypoint or a gateway; a sidecar skips
 *   such a policy in Istio too (`hasTargetRefs` tells the authorizer to skip it).
 * - `methods` values that are not upper case (methods match case-sensitively, so `get` never
 *   matches a GET).
 */
import { BlockList, isIP } from 'node:net';
import { isCidr, isIpAddress } from './host-names.ts';
import type {
  AuthorizationPolicySpec,
  AuthzCondition,
  AuthzOperation,
  AuthzRule,
  AuthzSource,
} from './resource-types.ts';
import { parseWorkloadSelector, type Scope } from './validate-common.ts';
import type { MapView, View } from './yaml-view.ts';

type Writable<T> = { -readonly [K in keyof T]: T[K] };

/** How the values of one field are checked. */
type ValueKind =
  /** exact / prefix* / *suffix / `*` */
  | 'value'
  /** like `value`, and not upper case is suspicious */
  | 'method'
  /** `*` anywhere (Istio makes it a regex `.*`), otherwise namespace characters */
  | 'namespace'
  /** `ns/sa` or `sa`, no wildcard */
  | 'serviceAccount'
  | 'ip'
  | 'port'
  /** value syntax, or a path template with `{*}` / `{**}` */
  | 'path';

const SOURCE_FIELDS: Readonly<Record<keyof AuthzSource, ValueKind>> = {
  principals: 'value',
  notPrincipals: 'value',
  requestPrincipals: 'value',
  notRequestPrincipals: 'value',
  namespaces: 'namespace',
  notNamespaces: 'namespace',
  serviceAccounts: 'serviceAccount',
  notServiceAccounts: 'serviceAccount',
  trustDomains: 'value',
  notTrustDomains: 'value',
  ipBlocks: 'ip',
  notIpBlocks: 'ip',
  remoteIpBlocks: 'ip',
  notRemoteIpBlocks: 'ip',
};

const OPERATION_FIELDS: Readonly<Record<keyof AuthzOperation, ValueKind>> = {
  hosts: 'value',
  notHosts: 'value',
  ports: 'port',
  notPorts: 'port',
  methods: 'method',
  notMethods: 'method',
  paths: 'path',
  notPaths: 'path',
};

/** Istio's limit per list. */
const MAX_SERVICE_ACCOUNTS = 16;

const JWT_NOTE =
  'meshlet does not validate JWTs, so a request never has a request principal (as in Istio when no RequestAuthentication applies)';

/** Why `value` breaks the `exact | prefix* | *suffix | *` syntax, or null. */
function starProblem(value: string): string | null {
  if (value === '*') return null;
  const stars = value.split('*').length - 1;
  if (stars === 0) return null;
  if (stars === 1 && (value.startsWith('*') || value.endsWith('*'))) return null;
  return `"${value}": "*" may only be the whole value, or once at the start (suffix match) or at the end (prefix match)`;
}

const NAMESPACE_VALUE = /^[a-z0-9*-]+$/;
const SA_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const NS_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** True when `value` is an IP address or a CIDR block (`net.BlockList` is the matcher's parser too). */
export function isIpOrCidr(value: string): boolean {
  // A zone (`fe80::1%eth0`) names an interface of one host; Go's parser (Istio's) refuses it.
  if (value.includes('%')) return false;
  const slash = value.indexOf('/');
  if (slash < 0) return isIpAddress(value);
  if (!isCidr(value)) return false;
  const addr = value.slice(0, slash);
  const prefix = Number(value.slice(slash + 1));
  const family = isIP(addr);
  try {
    new BlockList().addSubnet(addr, prefix, family === 4 ? 'ipv4' : 'ipv6');
    return true;
  } catch {
    return false;
  }
}

const TEMPLATE_ONE = '{*}';
const TEMPLATE_ANY = '{**}';
/** RFC 3986 `pchar` without `*` (a bare `*` would read as an operator next to `{*}`). */
const PATH_LITERAL = /^([A-Za-z0-9\-._~!$&'()+,;=:@]|%[0-9A-Fa-f]{2})+$/;

/** Why a `paths` template is invalid (Istio's and Envoy's template rules), or null. */
export function pathTemplateProblem(path: string): string | null {
  if (!path.startsWith('/')) return `path template "${path}" must start with "/"`;
  let sawAny = false;
  const segments = path.replace(/^\/+|\/+$/g, '').split('/');
  for (const segment of segments) {
    if (segment === TEMPLATE_ONE || segment === TEMPLATE_ANY) {
      if (sawAny) return `path template "${path}": {**} must be the last operator`;
      if (segment === TEMPLATE_ANY) sawAny = true;
      continue;
    }
    if (/[{}]/.test(segment)) {
      return `path template "${path}": "{" and "}" may only appear as a whole {*} or {**} segment`;
    }
    if (segment.includes('*')) {
      return `path template "${path}": a bare "*" cannot be mixed with {*} or {**}`;
    }
    if (segment !== '' && !PATH_LITERAL.test(segment)) {
      return `path template "${path}": segment "${segment}" has characters that are not allowed in a path`;
    }
  }
  return null;
}

/** Checks one value of a field of kind `kind`; reports at `item` and returns whether it is valid. */
function checkValue(item: View, value: string, kind: ValueKind, field: string): boolean {
  if (value === '') {
    item.error(`empty value not allowed in ${field}`);
    return false;
  }
  let problem: string | null = null;
  switch (kind) {
    case 'value':
    case 'method':
      problem = starProblem(value);
      if (problem === null && kind === 'method' && value !== value.toUpperCase()) {
        item.warn(
          `methods match case-sensitively: "${value}" does not match the upper-case method names clients send`,
        );
      }
      break;
    case 'namespace':
      if (!NAMESPACE_VALUE.test(value)) {
        problem = `namespace "${value}" may only hold lowercase letters, digits, "-" and "*"`;
      }
      break;
    case 'serviceAccount': {
      const parts = value.split('/');
      if (value.includes('*')) problem = `wildcards are not supported in ${field} ("${value}")`;
      else if (parts.length > 2)
        problem = `${field} "${value}" must be "namespace/serviceaccount" or "serviceaccount"`;
      else {
        const sa = parts[parts.length - 1] ?? '';
        const ns = parts.length === 2 ? (parts[0] ?? '') : undefined;
        if (ns !== undefined && !NS_NAME.test(ns)) problem = `"${ns}" in "${value}" is not a namespace name`;
        else if (!SA_NAME.test(sa)) problem = `"${sa}" in "${value}" is not a service account name`;
      }
      break;
    }
    case 'ip':
      if (!isIpOrCidr(value)) problem = `"${value}" is not an IP address or CIDR block`;
      break;
    case 'port':
      if (!/^\d{1,5}$/.test(value) || Number(value) > 65535) {
        problem = `"${value}" is not a port number (0-65535, written as a string)`;
      }
      break;
    case 'path':
      problem =
        value.includes(TEMPLATE_ONE) || value.includes(TEMPLATE_ANY)
          ? pathTemplateProblem(value)
          : starProblem(value);
      break;
  }
  if (problem !== null) {
    item.error(problem);
    return false;
  }
  return true;
}

/** A list read from the YAML: `ok` false after an error; `values` absent when not set. */
interface ReadList {
  readonly ok: boolean;
  readonly values?: string[];
}

/**
 * The string list at `key`, each value checked with `check`. Absent, null and `[]` are all "not
 * set" (proto3 repeated fields cannot tell them apart).
 */
function readList(m: MapView, key: string, check: (item: View, value: string) => boolean): ReadList {
  const view = m.get(key);
  if (!view.present) return { ok: true };
  const items = view.list();
  if (items === undefined) return { ok: false };
  const out: string[] = [];
  let ok = true;
  for (const item of items) {
    const s = item.string();
    if (s === undefined) {
      if (!item.present) item.error('expected string, got null');
      ok = false;
    } else if (check(item, s)) out.push(s);
    else ok = false;
  }
  return out.length === 0 ? { ok } : { ok, values: out };
}

function parseSource(view: View): AuthzSource | undefined {
  const m = view.map();
  if (m === undefined) {
    if (!view.present) view.error('`from.source` must not be empty');
    return undefined;
  }
  m.checkFields(Object.keys(SOURCE_FIELDS), { strict: true });
  const source: Writable<AuthzSource> = {};
  let ok = true;
  let any = false;
  for (const [key, kind] of Object.entries(SOURCE_FIELDS) as Array<[keyof AuthzSource, ValueKind]>) {
    const { ok: valid, values } = readList(m, key, (item, v) => checkValue(item, v, kind, key));
    if (!valid) ok = false;
    if (values === undefined) continue;
    any = true;
    source[key] = values;
    const fieldView = m.get(key);
    if (key === 'requestPrincipals') {
      fieldView.warn(`${JWT_NOTE}: requestPrincipals never match`);
    } else if (key === 'notRequestPrincipals') {
      fieldView.warn(`${JWT_NOTE}: notRequestPrincipals always match`);
    }
  }
  for (const key of ['serviceAccounts', 'notServiceAccounts'] as const) {
    const values = source[key];
    if (values === undefined) continue;
    if (values.length > MAX_SERVICE_ACCOUNTS) {
      m.get(key).error(`at most ${MAX_SERVICE_ACCOUNTS} ${key} are allowed, got ${values.length}`);
      ok = false;
    }
    const mixed = (['principals', 'notPrincipals', 'namespaces', 'notNamespaces'] as const).filter(
      (k) => source[k] !== undefined,
    );
    if (mixed.length > 0) {
      m.get(key).error(`${key} cannot be combined with ${mixed.join(' or ')} in one source`);
      ok = false;
    }
  }
  if (!ok) return undefined;
  if (!any) {
    m.error('`from.source` must not be empty');
    return undefined;
  }
  return source;
}

function parseOperation(view: View): AuthzOperation | undefined {
  const m = view.map();
  if (m === undefined) {
    if (!view.present) view.error('`to.operation` must not be empty');
    return undefined;
  }
  m.checkFields(Object.keys(OPERATION_FIELDS), { strict: true });
  const operation: Writable<AuthzOperation> = {};
  let ok = true;
  let any = false;
  for (const [key, kind] of Object.entries(OPERATION_FIELDS) as Array<[keyof AuthzOperation, ValueKind]>) {
    const { ok: valid, values } = readList(m, key, (item, v) => checkValue(item, v, kind, key));
    if (!valid) ok = false;
    if (values === undefined) continue;
    any = true;
    operation[key] = values;
  }
  if (!ok) return undefined;
  if (!any) {
    m.error('`to.operation` must not be empty');
    return undefined;
  }
  return operation;
}

/** How the values of a `when` key are checked, and what to warn; a string is the error. */
type KeyRule = { readonly kind: ValueKind; readonly warn?: string; readonly allowEmpty?: boolean } | string;

const PLAIN_KEYS: Readonly<Record<string, ValueKind>> = {
  'source.ip': 'ip',
  'remote.ip': 'ip',
  'destination.ip': 'ip',
  'destination.port': 'port',
  'source.namespace': 'namespace',
  'source.principal': 'value',
  'source.serviceAccount': 'serviceAccount',
  'source.trustDomain': 'value',
  'connection.sni': 'value',
};

const JWT_KEYS = new Set(['request.auth.principal', 'request.auth.audiences', 'request.auth.presenter']);

/** A header name, or an HTTP/2-style pseudo-header (`:authority`, `:method`, `:path`) as Envoy matches them. */
const HEADER_NAME = /^:?[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** The rule for a `when` key (spec §6.3 table). */
export function conditionKeyRule(key: string): KeyRule {
  const plain = PLAIN_KEYS[key];
  if (plain !== undefined) return { kind: plain };
  const jwtWarn = `${JWT_NOTE}: "${key}" values never match and notValues always match`;
  if (JWT_KEYS.has(key)) return { kind: 'value', warn: jwtWarn };
  if (key.startsWith('request.headers[')) {
    const name = /^request\.headers\[([^\]]+)\]$/.exec(key)?.[1];
    if (name === undefined || !HEADER_NAME.test(name)) {
      return `bad key "${key}": expected request.headers[<header name>]`;
    }
    // An empty header value is a real value to match (`exact: ""` in Envoy's terms).
    return { kind: 'value', allowEmpty: true };
  }
  if (key.startsWith('request.auth.claims[')) {
    if (!/^request\.auth\.claims(\[[^\][]+\])+$/.test(key)) {
      return `bad key "${key}": expected request.auth.claims[<claim>] or request.auth.claims[<a>][<b>]`;
    }
    return { kind: 'value', warn: jwtWarn };
  }
  if (key.startsWith('experimental.envoy.filters.')) {
    return {
      kind: 'value',
      warn: `"${key}" reads Envoy dynamic metadata that nothing in meshlet sets: it is always absent, so values never match and notValues always match (as in Envoy without the filter that sets it)`,
    };
  }
  return (
    `unsupported key "${key}"; supported: request.headers[<name>], ${Object.keys(PLAIN_KEYS).join(', ')}, ` +
    'request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[<claim>], ' +
    'experimental.envoy.filters.*'
  );
}

function parseCondition(view: View): AuthzCondition | undefined {
  const m = view.map();
  if (m === undefined) {
    if (!view.present) view.error('a `when` condition must not be empty');
    return undefined;
  }
  m.checkFields(['key', 'values', 'notValues'], { strict: true });
  const keyView = m.get('key');
  if (!keyView.require('key')) return undefined;
  const key = keyView.string();
  if (key === undefined) return undefined;
  const rule = conditionKeyRule(key);
  if (typeof rule === 'string') {
    keyView.error(rule);
    return undefined;
  }
  const read = (field: 'values' | 'notValues'): ReadList =>
    readList(m, field, (item, v) =>
      v === '' && rule.allowEmpty === true ? true : checkValue(item, v, rule.kind, `${field} of ${key}`),
    );
  const values = read('values');
  const notValues = read('notValues');
  if (!values.ok || !notValues.ok) return undefined;
  if (values.values === undefined && notValues.values === undefined) {
    m.error(`at least one of values or notValues must be set for key ${key}`);
    return undefined;
  }
  if (rule.warn !== undefined) keyView.warn(rule.warn);
  return {
    key,
    ...(values.values !== undefined ? { values: values.values } : {}),
    ...(notValues.values !== undefined ? { notValues: notValues.values } : {}),
  };
}

/**
 * A list of rule parts (`from`, `to`, `when`): absent is empty; `from: []` and `to: []` are errors
 * as in Istio (an author who wrote the key meant to restrict something).
 */
function parseParts<T>(
  m: MapView,
  key: 'from' | 'to' | 'when',
  parse: (item: View) => T | undefined,
): T[] | undefined {
  const view = m.get(key);
  const items = view.list();
  if (items === undefined) return view.present ? undefined : [];
  if (items.length === 0 && key !== 'when') {
    view.error(`\`${key}\` must not be an empty list (leave it out to match every request)`);
    return undefined;
  }
  const out: T[] = [];
  let ok = true;
  for (const item of items) {
    const v = parse(item);
    if (v === undefined) ok = false;
    else out.push(v);
  }
  return ok ? out : undefined;
}

function parseFrom(item: View): AuthzSource | undefined {
  const m = item.map();
  if (m === undefined) {
    if (!item.present) item.error('`from` entries must not be null');
    return undefined;
  }
  m.checkFields(['source'], { strict: true });
  return parseSource(m.get('source'));
}

function parseTo(item: View): AuthzOperation | undefined {
  const m = item.map();
  if (m === undefined) {
    if (!item.present) item.error('`to` entries must not be null');
    return undefined;
  }
  m.checkFields(['operation'], { strict: true });
  return parseOperation(m.get('operation'));
}

function parseRule(view: View): AuthzRule | undefined {
  const m = view.map();
  if (m === undefined) {
    // `- {}` is a rule that matches every request; a null item is not a rule at all.
    if (!view.present) view.error('a rule must not be null (write {} for a rule that matches every request)');
    return undefined;
  }
  m.checkFields(['from', 'to', 'when'], { strict: true });
  const from = parseParts(m, 'from', parseFrom);
  const to = parseParts(m, 'to', parseTo);
  const when = parseParts(m, 'when', parseCondition);
  if (from === undefined || to === undefined || when === undefined) return undefined;
  return { from, to, when };
}

const TARGET_REF_FIELDS = ['group', 'kind', 'name', 'namespace'];

function checkTargetRef(view: View): boolean {
  const m = view.map();
  if (m === undefined) {
    if (!view.present) view.error('targetRef must not be null');
    return false;
  }
  m.checkFields(TARGET_REF_FIELDS, { strict: true });
  let ok = true;
  for (const k of ['kind', 'name']) {
    const v = m.get(k);
    if (!v.require(k) || v.string() === undefined) ok = false;
  }
  for (const k of ['group', 'namespace']) if (m.get(k).present && m.get(k).string() === undefined) ok = false;
  return ok;
}

/** `istio.io/dry-run`: Go's `strconv.ParseBool` forms, as Istio parses it. */
const DRY_RUN = 'istio.io/dry-run';
const TRUE_FORMS = ['1', 't', 'T', 'TRUE', 'true', 'True'];
const FALSE_FORMS = ['0', 'f', 'F', 'FALSE', 'false', 'False'];

function parseDryRun(annotations: View): boolean | undefined {
  const m = annotations.typeName() === 'map' ? annotations.map() : undefined;
  const v = m?.get(DRY_RUN);
  if (v === undefined || !v.present) return false;
  // A non-string value was reported by the metadata reader already (annotations are strings).
  if (v.typeName() !== 'string') return undefined;
  const s = String(v.string());
  if (TRUE_FORMS.includes(s)) return true;
  if (FALSE_FORMS.includes(s)) return false;
  v.error(`${DRY_RUN} must be "true" or "false", got "${s}"`);
  return undefined;
}

/**
 * Validates and normalizes an AuthorizationPolicy. `annotations` is the `metadata.annotations`
 * view (for `istio.io/dry-run`, reported at its own position).
 */
export function validateAuthorizationPolicy(
  spec: MapView | undefined,
  _scope: Scope,
  annotations: View,
): AuthorizationPolicySpec | undefined {
  const dryRun = parseDryRun(annotations);
  if (spec === undefined) {
    // No spec is the empty spec: an ALLOW policy without rules, "allow nothing" (spec §6.2).
    return dryRun === undefined ? undefined : { hasTargetRefs: false, action: 'ALLOW', rules: [], dryRun };
  }
  spec.checkFields(['selector', 'targetRef', 'targetRefs', 'action', 'provider', 'rules'], { strict: true });
  let ok = dryRun !== undefined;

  // `targetRefs: []` is no targetRefs (a proto3 repeated field), so it does not clash with a selector.
  const attachKeys = ['selector', 'targetRef', 'targetRefs'].filter(
    (k) => !(k === 'targetRefs' && spec.get(k).typeName() === 'list' && spec.get(k).list()?.length === 0),
  );
  const present = spec.exclusive(attachKeys, 'a policy attaches one way');
  if (present.length > 1) ok = false;
  const selector = parseWorkloadSelector(spec.get('selector'));
  if (selector === undefined) ok = false;

  let hasTargetRefs = false;
  if (spec.has('targetRef')) {
    hasTargetRefs = true;
    if (!checkTargetRef(spec.get('targetRef'))) ok = false;
  }
  const refs = spec.get('targetRefs').list();
  if (refs !== undefined && refs.length > 0) {
    hasTargetRefs = true;
    for (const ref of refs) if (!checkTargetRef(ref)) ok = false;
  } else if (spec.has('targetRefs') && refs === undefined) ok = false;
  if (hasTargetRefs) {
    spec
      .get(spec.has('targetRef') ? 'targetRef' : 'targetRefs')
      .warn(
        'targetRef(s) attach this policy to a waypoint or gateway; like an Istio sidecar, meshlet does not apply it to its workloads',
      );
  }

  const actionView = spec.get('action');
  const action = actionView.present
    ? actionView.enumOf(['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'] as const)
    : 'ALLOW';
  if (action === undefined) ok = false;
  if (action === 'CUSTOM') {
    actionView.error(
      'action CUSTOM (ext-authz) is not supported: meshlet has no external authorizer, and skipping the policy would let through what it is meant to check',
    );
    ok = false;
  }
  const providerView = spec.get('provider');
  if (providerView.present) {
    const pm = providerView.map();
    if (pm !== undefined) pm.checkFields(['name'], { strict: true });
    if (action !== 'CUSTOM') {
      providerView.error('provider is only allowed with action CUSTOM');
      ok = false;
    }
  }

  const rules: AuthzRule[] = [];
  const rulesView = spec.get('rules');
  const items = rulesView.list();
  if (items === undefined && rulesView.present) ok = false;
  for (const item of items ?? []) {
    const rule = parseRule(item);
    if (rule === undefined) ok = false;
    else rules.push(rule);
  }

  if (!ok || action === undefined || action === 'CUSTOM' || dryRun === undefined) return undefined;
  return {
    ...(selector !== null && selector !== undefined ? { selector } : {}),
    hasTargetRefs,
    action,
    rules,
    dryRun,
  };
}
