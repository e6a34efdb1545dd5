/**
 * The path AuthorizationPolicy `paths` / `notPaths` compare against (spec §6.3): the request target
 * without query and fragment, normalized the way Istio's default `pathNormalization: BASE` has
 * Envoy do it before the RBAC filter runs.
 *
 * BASE, as implemented here:
 * - `\` is a path separator (Istio's BASE converts backslashes to forward slashes);
 * - a percent-escape of an unreserved character (ALPHA, DIGIT, `-`, `.`, `_`, `~`) is decoded, in
 *   either hex case, so `%2e%2e` is a `..` segment and `%61` is `a`; every other escape is kept
 *   exactly as written (`%2F` stays `%2F`, `%5c` stays `%5c`: BASE does not decode slashes);
 * - dot segments are removed per RFC 3986 §5.2.4 (`/a/./b` → `/a/b`, `/a/b/../c` → `/a/c`,
 *   `/../a` → `/a`, `/a/..` → `/`); a trailing `.` or `..` leaves a trailing slash;
 * - a path that does not start with `/` gets one; an absolute-form target
 *   (`http://host/p`) is reduced to its path;
 * - duplicate slashes are kept (merging them is the optional MERGE_SLASHES mode, not BASE);
 * - a path holding `%00` is invalid (Envoy rejects such a request before any filter): the result
 *   is null and the authorizer fails closed.
 * Not done: escaping characters a URL canonicalizer would escape (spaces, `"`, `{`…): the HTTP/1.1
 * codec already rejects most of them in a request target, and the rest are compared as received.
 */

const SLASH = 0x2f;
const BACKSLASH = 0x5c;
const DOT = 0x2e;
const PERCENT = 0x25;

/** The request target without its query string and fragment, normalized (BASE), or null if invalid. */
export function normalizePath(target: string): string | null {
  let end = target.length;
  const q = target.indexOf('?');
  if (q >= 0) end = q;
  const h = target.indexOf('#');
  if (h >= 0 && h < end) end = h;
  let start = 0;
  if (target.charCodeAt(0) !== SLASH) {
    // Absolute form: keep what follows the authority.
    const scheme = target.indexOf('://');
    if (scheme > 0 && scheme < end) {
      const slash = target.indexOf('/', scheme + 3);
      start = slash < 0 || slash >= end ? end : slash;
    }
  }
  const path = start === 0 && end === target.length ? target : target.slice(start, end);
  // Nearly every real path is already normal: check without allocating.
  if (isAlreadyNormal(path)) return path;
  const decoded = decodeForBase(path);
  if (decoded === null) return null;
  return removeDotSegments(decoded);
}

/** Starts with `/` and holds no `%`, no `\` and no `.`/`..` segment. */
function isAlreadyNormal(path: string): boolean {
  const n = path.length;
  if (n === 0 || path.charCodeAt(0) !== SLASH) return false;
  for (let i = 0; i < n; i++) {
    const c = path.charCodeAt(i);
    if (c === PERCENT || c === BACKSLASH) return false;
    if (c === DOT && path.charCodeAt(i - 1) === SLASH) {
      // `/.` starts a dot segment when followed by the end, `/`, or `./`/`.` + end.
      const next = i + 1 < n ? path.charCodeAt(i + 1) : SLASH;
      if (next === SLASH) return false;
      if (next === DOT) {
        const after = i + 2 < n ? path.charCodeAt(i + 2) : SLASH;
        if (after === SLASH) return false;
      }
    }
  }
  return true;
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return -1;
}

function isUnreserved(c: number): boolean {
  return (
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x30 && c <= 0x39) ||
    c === 0x2d ||
    c === DOT ||
    c === 0x5f ||
    c === 0x7e
  );
}

/** Backslashes to slashes and unreserved escapes decoded; null when the path holds `%00`. */
function decodeForBase(path: string): string | null {
  let out = '';
  let copied = 0;
  const n = path.length;
  for (let i = 0; i < n; i++) {
    const c = path.charCodeAt(i);
    if (c === BACKSLASH) {
      out += `${path.slice(copied, i)}/`;
      copied = i + 1;
    } else if (c === PERCENT && i + 2 < n) {
      const hi = hexValue(path.charCodeAt(i + 1));
      const lo = hexValue(path.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) continue;
      const byte = hi * 16 + lo;
      if (byte === 0) return null;
      if (isUnreserved(byte)) {
        out += path.slice(copied, i) + String.fromCharCode(byte);
        copied = i + 3;
        i += 2;
      }
    }
  }
  out += path.slice(copied);
  return out.charCodeAt(0) === SLASH ? out : `/${out}`;
}

/** RFC 3986 §5.2.4 on a path that starts with `/`. */
function removeDotSegments(path: string): string {
  const segments = path.slice(1).split('/');
  const out: string[] = [];
  const last = segments.length - 1;
  for (let i = 0; i <= last; i++) {
    const segment = segments[i]!;
    if (segment === '.' || segment === '..') {
      if (segment === '..') out.pop();
      // A path ending in a dot segment names a directory: keep its trailing slash.
      if (i === last) out.push('');
      continue;
    }
    out.push(segment);
  }
  return `/${out.join('/')}`;
}
