/**
 * Per-request matching of one HTTPMatchRequest (§2.3, §8): all conditions of an entry must hold.
 * Matchers are compiled once; evaluating one allocates nothing except when a header repeats.
 */
import type { HTTPMatchRequest, StringMatch } from '../config/resource-types.ts';
import type { HeaderList } from '../listener/listener-types.ts';
import type { RouteInput } from './route-types.ts';

export interface NamedCondition {
  readonly name: string;
  readonly match: StringMatch;
}

export interface CompiledMatch {
  readonly uri: StringMatch | undefined;
  /** Applies to uri `exact` / `prefix` only. */
  readonly ignoreUriCase: boolean;
  readonly scheme: StringMatch | undefined;
  readonly method: StringMatch | undefined;
  readonly authority: StringMatch | undefined;
  readonly headers: readonly NamedCondition[];
  readonly withoutHeaders: readonly NamedCondition[];
  readonly queryParams: readonly NamedCondition[];
}

function conditions(record: Readonly<Record<string, StringMatch>>): readonly NamedCondition[] {
  return Object.freeze(Object.entries(record).map(([name, match]) => Object.freeze({ name, match })));
}

export function compileMatch(m: HTTPMatchRequest): CompiledMatch {
  return Object.freeze({
    uri: m.uri,
    ignoreUriCase: m.ignoreUriCase,
    scheme: m.scheme,
    method: m.method,
    authority: m.authority,
    headers: conditions(m.headers),
    withoutHeaders: conditions(m.withoutHeaders),
    queryParams: conditions(m.queryParams),
  });
}

/**
 * A match that accepts every request: prefix `/` (or ''), regex `.*`, or no uri at all, with no
 * other condition. Route-list building stops after one (§2.2 step 3).
 */
export function isCatchAllMatch(m: HTTPMatchRequest): boolean {
  const uri = m.uri;
  const uriAll =
    uri === undefined ||
    (uri.kind === 'prefix' && (uri.value === '/' || uri.value === '')) ||
    (uri.kind === 'regex' && (uri.source === '.*' || uri.source === '*'));
  return (
    uriAll &&
    m.scheme === undefined &&
    m.method === undefined &&
    m.authority === undefined &&
    Object.keys(m.headers).length === 0 &&
    Object.keys(m.withoutHeaders).length === 0 &&
    Object.keys(m.queryParams).length === 0
  );
}

/**
 * Whether the request satisfies every condition. `pathOnly` is `input.path` without its query
 * string and `queryStart` the index of `?` in `input.path` (or -1): the caller parses them once.
 */
export function matchesRequest(
  m: CompiledMatch,
  input: RouteInput,
  pathOnly: string,
  queryStart: number,
): boolean {
  if (m.uri !== undefined && !uriMatches(m.uri, m.ignoreUriCase, input.path, pathOnly)) return false;
  if (m.method !== undefined && !stringMatches(m.method, input.method)) return false;
  if (m.scheme !== undefined && !stringMatches(m.scheme, input.scheme)) return false;
  if (m.authority !== undefined && !stringMatches(m.authority, input.authority)) return false;
  for (const c of m.headers) {
    const value = headerValue(input.headers, c.name);
    if (value === undefined || !stringMatches(c.match, value)) return false;
  }
  for (const c of m.withoutHeaders) {
    const value = headerValue(input.headers, c.name);
    if (c.match.kind === 'present') {
      if (value !== undefined) return false;
    } else if (stringMatches(c.match, value ?? '')) {
      return false;
    }
  }
  for (const c of m.queryParams) {
    const value = queryParamValue(input.path, queryStart, c.name);
    if (value === undefined || !stringMatches(c.match, value)) return false;
  }
  return true;
}

export function uriMatches(uri: StringMatch, ignoreCase: boolean, path: string, pathOnly: string): boolean {
  switch (uri.kind) {
    case 'exact':
      return ignoreCase ? equalsIgnoreAsciiCase(pathOnly, uri.value) : pathOnly === uri.value;
    case 'prefix':
      // A pure string prefix of the raw path, query included.
      return ignoreCase ? startsWithIgnoreAsciiCase(path, uri.value) : path.startsWith(uri.value);
    case 'regex':
      return uri.re.test(pathOnly);
    case 'present':
      return true;
  }
}

export function stringMatches(m: StringMatch, value: string): boolean {
  switch (m.kind) {
    case 'exact':
      return value === m.value;
    case 'prefix':
      return value.startsWith(m.value);
    case 'regex':
      return m.re.test(value);
    case 'present':
      return true;
  }
}

/** All values of a header joined with `,`, or undefined when absent. */
export function headerValue(headers: HeaderList, name: string): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i] !== name) continue;
    const v = headers[i + 1] ?? '';
    value = value === undefined ? v : `${value},${v}`;
  }
  return value;
}

/**
 * The raw (undecoded) value of the first occurrence of a query parameter; '' for `?key` and
 * `?key=`; undefined when absent. Names are case-sensitive.
 */
export function queryParamValue(path: string, queryStart: number, name: string): string | undefined {
  if (queryStart < 0) return undefined;
  const end = path.length;
  let i = queryStart + 1;
  while (i <= end) {
    let amp = path.indexOf('&', i);
    if (amp < 0) amp = end;
    const after = i + name.length;
    if (after <= amp && path.startsWith(name, i)) {
      if (after === amp) return '';
      if (path.charCodeAt(after) === 61) return path.slice(after + 1, amp); // '='
    }
    i = amp + 1;
  }
  return undefined;
}

function lowerAscii(c: number): number {
  return c >= 65 && c <= 90 ? c + 32 : c;
}

export function startsWithIgnoreAsciiCase(s: string, prefix: string): boolean {
  if (prefix.length > s.length) return false;
  for (let i = 0; i < prefix.length; i++) {
    if (lowerAscii(s.charCodeAt(i)) !== lowerAscii(prefix.charCodeAt(i))) return false;
  }
  return true;
}

function equalsIgnoreAsciiCase(a: string, b: string): boolean {
  return a.length === b.length && startsWithIgnoreAsciiCase(a, b);
}
