/**
 * VirtualService validation and normalization (spec §2, §8).
 */
import { DEFAULT_RETRY_ON, parseRetryOn } from '../resilience/retry-policy.ts';
import { compileRe2 } from './re2.ts';
import type {
  HTTPDirectResponse,
  HTTPFault,
  HTTPMatchRequest,
  HTTPMirror,
  HTTPRedirect,
  HTTPRetry,
  HTTPRewrite,
  HTTPRoute,
  HTTPRouteDestination,
  StringMatch,
  VirtualServiceSpec,
} from './resource-types.ts';
import { capTimerMs, MAX_TIMER_MS } from './runtime-settings.ts';
import { parseStringMatch, parseStringMatchMap } from './string-match.ts';
import {
  parseDestination,
  parseExpandedHost,
  parseHeaderEdits,
  parseIntPercent,
  parsePercent,
  type Scope,
  stringListOrEmpty,
} from './validate-common.ts';
import type { MapView, View } from './yaml-view.ts';

const VS_FIELDS = ['hosts', 'gateways', 'http', 'tls', 'tcp', 'exportTo', 'delegate'] as const;

const ROUTE_FIELDS = [
  'name',
  'match',
  'route',
  'redirect',
  'directResponse',
  'delegate',
  'rewrite',
  'timeout',
  'retries',
  'fault',
  'mirror',
  'mirrorPercentage',
  'mirrorPercent',
  'mirrors',
  'corsPolicy',
  'headers',
] as const;

const MATCH_FIELDS = [
  'name',
  'uri',
  'scheme',
  'method',
  'authority',
  'headers',
  'withoutHeaders',
  'queryParams',
  'ignoreUriCase',
  'port',
  'sourceLabels',
  'sourceNamespace',
  'gateways',
  'statPrefix',
] as const;

const GRPC_CODES = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
] as const;

const REDIRECT_CODES = [301, 302, 303, 307, 308];

export function validateVirtualService(spec: MapView, scope: Scope): VirtualServiceSpec | undefined {
  spec.checkFields(VS_FIELDS, {
    notImplemented: {
      tls: 'tls routes are not implemented yet; ignored (TLS traffic is forwarded as opaque TCP)',
      tcp: 'tcp routes are not implemented yet; ignored',
    },
  });
  let ok = true;
  if (spec.has('delegate')) {
    spec
      .get('delegate')
      .error('delegate is not supported (root/delegate VirtualServices are a gateway feature)');
    ok = false;
  }

  const gateways = stringListOrEmpty(spec, 'gateways');
  const boundToMesh = gateways.length === 0 || gateways.includes('mesh');
  if (!boundToMesh) {
    spec
      .get('gateways')
      .warn(
        'gateways does not include "mesh": this VirtualService does not apply to sidecars and is skipped',
      );
  }

  const hostsView = spec.get('hosts');
  const hosts: string[] = [];
  const hostItems = hostsView.list();
  if (hostItems === undefined || hostItems.length === 0) {
    if (hostsView.present || !spec.has('delegate')) hostsView.error('at least one host is required');
    ok = false;
  } else {
    for (const item of hostItems) {
      const host = parseExpandedHost(item, scope, true);
      if (host === undefined) {
        ok = false;
        continue;
      }
      if (host === '*' && boundToMesh) {
        item.error('"*" alone is not allowed as a host of a VirtualService bound to the mesh (sidecars)');
        ok = false;
        continue;
      }
      if (hosts.includes(host)) {
        item.error(`duplicate host "${host}"`);
        ok = false;
        continue;
      }
      hosts.push(host);
    }
  }

  const http: HTTPRoute[] = [];
  const httpItems = spec.get('http').list() ?? [];
  for (const item of httpItems) {
    const route = parseHttpRoute(item, scope);
    if (route === undefined) ok = false;
    else http.push(route);
  }
  const tlsCount = spec.get('tls').list()?.length ?? 0;
  const tcpCount = spec.get('tcp').list()?.length ?? 0;
  if (httpItems.length === 0 && tlsCount === 0 && tcpCount === 0 && !spec.has('delegate')) {
    spec.error('http, tcp or tls must be provided in a VirtualService');
    ok = false;
  }
  const exportTo = stringListOrEmpty(spec, 'exportTo');
  if (!ok) return undefined;
  return { hosts, gateways, http, exportTo };
}

function parseHttpRoute(view: View, scope: Scope): HTTPRoute | undefined {
  const m = view.map();
  if (m === undefined) {
    if (!view.present) view.error('http route must not be empty');
    return undefined;
  }
  m.checkFields(ROUTE_FIELDS, {
    notImplemented: {
      corsPolicy: 'corsPolicy is not implemented yet; kept but not applied',
    },
  });
  let ok = true;
  const fail = (v: View | MapView, msg: string): void => {
    v.error(msg);
    ok = false;
  };

  if (m.has('delegate')) fail(m.get('delegate'), 'delegate is not supported');
  const actions = ['route', 'redirect', 'directResponse'].filter((k) => m.has(k));
  if (actions.length === 0 && !m.has('delegate')) {
    fail(m, 'exactly one of route, redirect or directResponse is required');
  } else if (actions.length > 1) {
    fail(m.get(actions[1] ?? ''), `${actions.join(' and ')} are mutually exclusive`);
  }
  const isLocal = m.has('redirect') || m.has('directResponse');
  if (isLocal) {
    const which = m.has('redirect') ? 'redirect' : 'directResponse';
    for (const k of ['rewrite', 'fault']) {
      if (m.has(k)) fail(m.get(k), `${k} cannot be used together with ${which}`);
    }
  }
  if (m.has('mirror') && m.has('mirrors'))
    fail(m.get('mirrors'), 'mirror and mirrors are mutually exclusive');
  if (m.has('mirrors') && (m.has('mirrorPercentage') || m.has('mirrorPercent'))) {
    fail(m.get('mirrors'), 'mirrorPercentage cannot be used with mirrors (set percentage on each entry)');
  }

  const name = m.get('name').string();

  // match
  const match: HTTPMatchRequest[] = [];
  const matchItems = m.get('match').list();
  for (const item of matchItems ?? []) {
    const mr = parseMatch(item);
    if (mr === undefined) ok = false;
    else match.push(mr);
  }

  // route
  const route: HTTPRouteDestination[] = [];
  const routeView = m.get('route');
  const routeItems = routeView.list();
  if (routeItems !== undefined) {
    if (routeItems.length === 0 && actions.length === 1 && actions[0] === 'route') {
      fail(routeView, 'route must have at least one destination');
    }
    let total = 0;
    for (const item of routeItems) {
      const rd = parseRouteDestination(item, scope);
      if (rd === undefined) ok = false;
      else {
        route.push(rd);
        total += rd.weight;
      }
    }
    if (routeItems.length > 1 && route.length === routeItems.length && total <= 0) {
      fail(routeView, 'total weight of the destinations must be greater than 0');
    }
  }

  const redirect = m.has('redirect') ? parseRedirect(m.get('redirect'), match) : undefined;
  if (m.has('redirect') && redirect === undefined) ok = false;
  const directResponse = m.has('directResponse') ? parseDirectResponse(m.get('directResponse')) : undefined;
  if (m.has('directResponse') && directResponse === undefined) ok = false;
  const rewrite = m.has('rewrite') ? parseRewrite(m.get('rewrite')) : undefined;
  if (m.has('rewrite') && rewrite === undefined) ok = false;
  const headers = m.has('headers') ? parseHeaderEdits(m.get('headers')) : undefined;

  const timeoutView = m.get('timeout');
  const timeoutRaw = timeoutView.duration({ minMs: 1, allowZero: true });
  if (timeoutView.present && timeoutRaw === undefined) ok = false;
  const timeoutMs = timeoutRaw === undefined ? undefined : capTimerMs(timeoutView, timeoutRaw);

  const retries = m.has('retries') ? parseRetries(m.get('retries')) : undefined;
  if (m.has('retries') && retries === undefined) ok = false;
  const fault = m.has('fault') ? parseFault(m.get('fault')) : undefined;
  if (m.has('fault') && fault === undefined) ok = false;

  // mirrors
  const mirrors: HTTPMirror[] = [];
  if (m.has('mirror')) {
    const destination = parseDestination(m.get('mirror'), scope);
    let fraction: number | undefined = 1;
    if (m.has('mirrorPercentage')) fraction = parsePercent(m.get('mirrorPercentage'));
    else if (m.has('mirrorPercent')) fraction = parseIntPercent(m.get('mirrorPercent'));
    if (destination === undefined || fraction === undefined) ok = false;
    else mirrors.push({ destination, fraction });
  } else if (m.has('mirrorPercentage') || m.has('mirrorPercent')) {
    m.get(m.has('mirrorPercentage') ? 'mirrorPercentage' : 'mirrorPercent').warn(
      'mirror percentage without mirror has no effect',
    );
  }
  for (const item of m.get('mirrors').list() ?? []) {
    const mm = item.map();
    if (mm === undefined) {
      ok = false;
      continue;
    }
    mm.checkFields(['destination', 'percentage']);
    const destination = parseDestination(mm.get('destination'), scope);
    const fraction = mm.has('percentage') ? parsePercent(mm.get('percentage')) : 1;
    if (destination === undefined || fraction === undefined) ok = false;
    else mirrors.push({ destination, fraction });
  }

  const corsView = m.get('corsPolicy');
  let corsPolicy: unknown;
  if (corsView.present) {
    if (corsView.map() === undefined) ok = false;
    else corsPolicy = corsView.node?.toJSON();
  }

  if (!ok) return undefined;
  return {
    ...(name !== undefined ? { name } : {}),
    match,
    route,
    ...(redirect !== undefined ? { redirect } : {}),
    ...(directResponse !== undefined ? { directResponse } : {}),
    ...(rewrite !== undefined ? { rewrite } : {}),
    ...(headers !== undefined ? { headers } : {}),
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    ...(retries !== undefined ? { retries } : {}),
    ...(fault !== undefined ? { fault } : {}),
    mirrors,
    ...(corsPolicy !== undefined ? { corsPolicy } : {}),
  };
}

function parseMatch(view: View): HTTPMatchRequest | undefined {
  if (!view.present) {
    view.warn('empty match is treated as a catch-all (matches every request)');
    return { headers: {}, withoutHeaders: {}, queryParams: {}, ignoreUriCase: false };
  }
  const m = view.map();
  if (m === undefined) return undefined;
  m.checkFields(MATCH_FIELDS, {
    notImplemented: { statPrefix: 'statPrefix is not implemented; ignored' },
  });
  if (m.keys().length === 0) {
    m.warn('empty match {} is treated as a catch-all (matches every request)');
  }
  let ok = true;
  const sm = (key: string, allowEmptyPrefix: boolean): StringMatch | undefined => {
    const v = m.get(key);
    if (!v.present) return undefined;
    const r = parseStringMatch(v, { allowEmptyPrefix });
    if (r === undefined) ok = false;
    return r;
  };
  const uri = sm('uri', true);
  const scheme = sm('scheme', false);
  const method = sm('method', false);
  const authority = sm('authority', false);

  const headers = parseStringMatchMap(m.get('headers'), true) ?? {};
  for (const key of Object.keys(headers)) {
    if (key === 'uri' || key === 'scheme' || key === 'method' || key === 'authority') {
      m.get('headers').warn(`header "${key}" is ignored in headers matching (use the ${key} field)`);
      delete headers[key];
    } else if (key.startsWith('@request.auth.claims')) {
      m.get('headers').error(`"${key}": JWT claim matching is not supported (needs RequestAuthentication)`);
      ok = false;
    }
  }
  const withoutHeaders = parseStringMatchMap(m.get('withoutHeaders'), true) ?? {};
  const queryParams = parseStringMatchMap(m.get('queryParams'), false) ?? {};
  const ignoreUriCase = m.get('ignoreUriCase').bool() ?? false;
  const portView = m.get('port');
  const port = portView.present ? portView.port() : undefined;
  if (portView.present && port === undefined) ok = false;
  const sourceLabels = m.get('sourceLabels').stringMap();
  const sourceNamespace = m.get('sourceNamespace').string();
  const gateways = m.get('gateways').stringList();
  const name = m.get('name').string();
  if (!ok) return undefined;
  return {
    ...(name !== undefined ? { name } : {}),
    ...(uri !== undefined ? { uri } : {}),
    ...(scheme !== undefined ? { scheme } : {}),
    ...(method !== undefined ? { method } : {}),
    ...(authority !== undefined ? { authority } : {}),
    headers,
    withoutHeaders,
    queryParams,
    ignoreUriCase,
    ...(port !== undefined ? { port } : {}),
    ...(sourceLabels !== undefined ? { sourceLabels } : {}),
    ...(sourceNamespace !== undefined ? { sourceNamespace } : {}),
    ...(gateways !== undefined ? { gateways } : {}),
  };
}

function parseRouteDestination(view: View, scope: Scope): HTTPRouteDestination | undefined {
  const m = view.map();
  if (m === undefined) {
    if (!view.present) view.error('route destination must not be empty');
    return undefined;
  }
  m.checkFields(['destination', 'weight', 'headers']);
  const destination = parseDestination(m.get('destination'), scope);
  const weightView = m.get('weight');
  const weight = weightView.int({ min: 0, max: 2147483647 });
  const headers = m.has('headers') ? parseHeaderEdits(m.get('headers')) : undefined;
  if (destination === undefined || (weightView.present && weight === undefined)) return undefined;
  return { destination, weight: weight ?? 0, ...(headers !== undefined ? { headers } : {}) };
}

function parseRedirect(view: View, match: readonly HTTPMatchRequest[]): HTTPRedirect | undefined {
  const m = view.map();
  if (m === undefined) return undefined;
  m.checkFields(['uri', 'authority', 'port', 'derivePort', 'scheme', 'redirectCode', 'prefixRewrite']);
  let ok = true;
  if (m.exclusive(['uri', 'prefixRewrite']).length > 1) ok = false;
  if (m.exclusive(['port', 'derivePort']).length > 1) ok = false;
  if (!['uri', 'authority', 'port', 'derivePort', 'scheme', 'prefixRewrite'].some((k) => m.has(k))) {
    m.error('redirect must set at least one of uri, prefixRewrite, authority, scheme or port');
    ok = false;
  }
  const uri = m.get('uri').string();
  const prefixRewrite = m.get('prefixRewrite').string();
  if (prefixRewrite !== undefined && match.some((mr) => mr.uri !== undefined && mr.uri.kind !== 'prefix')) {
    m.get('prefixRewrite').error('prefixRewrite requires every uri match of the rule to be a prefix match');
    ok = false;
  }
  const authority = m.get('authority').string();
  const scheme = m.get('scheme').string();
  const portView = m.get('port');
  const port = portView.port();
  if (portView.present && port === undefined) ok = false;
  const derivePortView = m.get('derivePort');
  const derivePort = derivePortView.enumOf(['FROM_PROTOCOL_DEFAULT', 'FROM_REQUEST_PORT'] as const);
  if (derivePortView.present && derivePort === undefined) ok = false;
  const codeView = m.get('redirectCode');
  let redirectCode = codeView.int() ?? 0;
  if (codeView.present && codeView.typeName() !== 'number') ok = false;
  if (redirectCode === 0) redirectCode = 301;
  else if (!REDIRECT_CODES.includes(redirectCode)) {
    codeView.error(`redirectCode ${redirectCode} is invalid; expected one of ${REDIRECT_CODES.join(', ')}`);
    ok = false;
  }
  if (!ok) return undefined;
  return {
    ...(uri !== undefined ? { uri } : {}),
    ...(prefixRewrite !== undefined ? { prefixRewrite } : {}),
    ...(authority !== undefined ? { authority } : {}),
    ...(scheme !== undefined ? { scheme } : {}),
    ...(port !== undefined ? { port } : {}),
    ...(derivePort !== undefined ? { derivePort } : {}),
    redirectCode,
  };
}

function parseDirectResponse(view: View): HTTPDirectResponse | undefined {
  const m = view.map();
  if (m === undefined) return undefined;
  m.checkFields(['status', 'body']);
  const statusView = m.get('status');
  if (!statusView.require('status')) return undefined;
  const status = statusView.int({ min: 200, max: 599 });
  let body: Buffer | undefined;
  let ok = status !== undefined;
  const bodyMap = m.get('body').map();
  if (bodyMap !== undefined) {
    bodyMap.checkFields(['string', 'bytes']);
    const present = bodyMap.exclusive(['string', 'bytes']);
    if (present.length > 1) ok = false;
    else if (present[0] === 'string') {
      const s = bodyMap.get('string').string();
      if (s === undefined) ok = false;
      else body = Buffer.from(s, 'utf8');
    } else if (present[0] === 'bytes') {
      const b = bodyMap.get('bytes');
      const s = b.string();
      if (s === undefined) ok = false;
      else if (!/^[A-Za-z0-9+/\s]*={0,2}\s*$/.test(s)) {
        b.error('bytes must be base64');
        ok = false;
      } else body = Buffer.from(s, 'base64');
    } else {
      bodyMap.error('body must set string or bytes');
      ok = false;
    }
  }
  if (!ok || status === undefined) return undefined;
  return { status, ...(body !== undefined ? { body } : {}) };
}

/** RE2 `\1` group references → JS replacement `$1`; a literal `$` → `$$`. */
function toJsReplacement(rewrite: string): string {
  let out = '';
  for (let i = 0; i < rewrite.length; i++) {
    const c = rewrite[i];
    const next = rewrite[i + 1];
    if (c === '\\' && next !== undefined && /\d/.test(next)) {
      out += `$${next}`;
      i++;
    } else if (c === '\\' && next === '\\') {
      out += '\\';
      i++;
    } else if (c === '$') out += '$$';
    else out += c;
  }
  return out;
}

function parseRewrite(view: View): HTTPRewrite | undefined {
  const m = view.map();
  if (m === undefined) return undefined;
  m.checkFields(['uri', 'uriRegexRewrite', 'authority']);
  let ok = true;
  if (m.exclusive(['uri', 'uriRegexRewrite']).length > 1) ok = false;
  if (!m.has('uri') && !m.has('uriRegexRewrite') && !m.has('authority')) {
    m.error('rewrite must set at least one of uri, uriRegexRewrite or authority');
    ok = false;
  }
  const uri = m.get('uri').string();
  const authority = m.get('authority').string();
  let uriRegexRewrite: HTTPRewrite['uriRegexRewrite'];
  const rr = m.get('uriRegexRewrite').map();
  if (rr !== undefined) {
    rr.checkFields(['match', 'rewrite']);
    const matchView = rr.get('match');
    const rewriteView = rr.get('rewrite');
    const src = matchView.require('match') ? matchView.string() : undefined;
    const rewrite = rewriteView.require('rewrite') ? rewriteView.string() : undefined;
    if (src !== undefined && rewrite !== undefined) {
      const compiled = compileRe2(src, { anchor: false, extraFlags: 'g' });
      if (!compiled.ok) {
        matchView.error(compiled.message);
        ok = false;
      } else uriRegexRewrite = { match: compiled.re, rewrite: toJsReplacement(rewrite) };
    } else ok = false;
  }
  if (!ok) return undefined;
  return {
    ...(uri !== undefined ? { uri } : {}),
    ...(uriRegexRewrite !== undefined ? { uriRegexRewrite } : {}),
    ...(authority !== undefined ? { authority } : {}),
  };
}

function parseRetries(view: View): HTTPRetry | undefined {
  const m = view.map();
  if (m === undefined) return undefined;
  m.checkFields([
    'attempts',
    'perTryTimeout',
    'retryOn',
    'retryRemoteLocalities',
    'retryIgnorePreviousHosts',
    'backoff',
  ]);
  let ok = true;
  const attemptsView = m.get('attempts');
  const attempts = attemptsView.int({ min: 0 });
  if (attemptsView.present && attempts === undefined) ok = false;
  const perTryView = m.get('perTryTimeout');
  const perTryRaw = perTryView.duration({ minMs: 1 });
  if (perTryView.present && perTryRaw === undefined) ok = false;
  const perTryTimeoutMs = perTryRaw === undefined ? undefined : capTimerMs(perTryView, perTryRaw);
  const backoffView = m.get('backoff');
  const backoffRaw = backoffView.duration({ minMs: 1 });
  if (backoffView.present && backoffRaw === undefined) ok = false;
  // Back-off waits up to 10 × the base (spec §2.5), so the base is capped at a tenth of a timer.
  const backoffMs =
    backoffRaw === undefined ? undefined : capTimerMs(backoffView, backoffRaw, Math.floor(MAX_TIMER_MS / 10));
  const retryOnView = m.get('retryOn');
  let retryOn = retryOnView.string();
  if (retryOn !== undefined) {
    // One vocabulary for retryOn: the tokens the retry policy understands are the valid ones.
    for (const token of parseRetryOn(retryOn).ignoredTokens) {
      retryOnView.error(`invalid retryOn policy "${token}"`);
      ok = false;
    }
    if (retryOn.trim() === '') retryOn = undefined;
  } else if (retryOnView.present) ok = false;
  const remoteView = m.get('retryRemoteLocalities');
  const retryRemoteLocalities = remoteView.bool();
  if (retryRemoteLocalities === true) {
    remoteView.warn(
      'retryRemoteLocalities is not acted on (meshlet has no localities); retries choose among all endpoints',
    );
  }
  const retryIgnorePreviousHosts = m.get('retryIgnorePreviousHosts').bool();
  if (!ok) return undefined;
  return {
    attempts: attempts ?? 0,
    retryOn: retryOn ?? DEFAULT_RETRY_ON,
    ...(perTryTimeoutMs !== undefined ? { perTryTimeoutMs } : {}),
    ...(retryRemoteLocalities !== undefined ? { retryRemoteLocalities } : {}),
    ...(retryIgnorePreviousHosts !== undefined ? { retryIgnorePreviousHosts } : {}),
    ...(backoffMs !== undefined ? { backoffMs } : {}),
  };
}

/** `percentage` if present, else the deprecated int `percent`, else 0 (spec §8 item 1). */
function faultFraction(m: MapView): number | undefined {
  if (m.has('percentage')) return parsePercent(m.get('percentage'));
  if (m.has('percent')) return parseIntPercent(m.get('percent'));
  return 0;
}

function parseFault(view: View): HTTPFault | undefined {
  const m = view.map();
  if (m === undefined) return undefined;
  m.checkFields(['delay', 'abort']);
  let ok = true;
  if (!m.has('delay') && !m.has('abort')) {
    m.error('fault must set delay or abort');
    return undefined;
  }
  let delay: HTTPFault['delay'];
  const dm = m.get('delay').map();
  if (dm !== undefined) {
    dm.checkFields(['fixedDelay', 'percentage', 'percent', 'exponentialDelay']);
    if (dm.has('exponentialDelay')) {
      dm.get('exponentialDelay').error('exponentialDelay is not supported');
      ok = false;
    }
    const fd = dm.get('fixedDelay');
    const fixedDelayRaw = fd.require('fixedDelay') ? fd.duration({ minMs: 1 }) : undefined;
    const fixedDelayMs = fixedDelayRaw === undefined ? undefined : capTimerMs(fd, fixedDelayRaw);
    const fraction = faultFraction(dm);
    if (fixedDelayMs === undefined || fraction === undefined) ok = false;
    else delay = { fixedDelayMs, fraction };
  }
  let abort: HTTPFault['abort'];
  const am = m.get('abort').map();
  if (am !== undefined) {
    am.checkFields(['httpStatus', 'grpcStatus', 'http2Error', 'percentage', 'percent']);
    if (am.has('http2Error')) {
      am.get('http2Error').error('http2Error aborts are not supported');
      ok = false;
    }
    const kinds = am.exclusive(['httpStatus', 'grpcStatus', 'http2Error']);
    if (kinds.length > 1) ok = false;
    if (kinds.length === 0) {
      am.error('abort must set httpStatus or grpcStatus');
      ok = false;
    }
    const hsView = am.get('httpStatus');
    const httpStatus = hsView.int({ min: 200, max: 599 });
    if (hsView.present && httpStatus === undefined) ok = false;
    const gsView = am.get('grpcStatus');
    const grpcStatus = gsView.enumOf(GRPC_CODES);
    if (gsView.present && grpcStatus === undefined) ok = false;
    const fraction = faultFraction(am);
    if (fraction === undefined) ok = false;
    else {
      abort = {
        ...(httpStatus !== undefined ? { httpStatus } : {}),
        ...(grpcStatus !== undefined ? { grpcStatus } : {}),
        fraction,
      };
    }
  }
  if (!ok) return undefined;
  return { ...(delay !== undefined ? { delay } : {}), ...(abort !== undefined ? { abort } : {}) };
}
