/**
 * HTTP/1.1 syntax shared by both listener engines: reason phrases, field-name and field-value
 * checks (RFC 9110 §5.1, §5.5), and the request-framing rules of RFC 9112 §6 that the uws engine
 * has to enforce itself because uWS's native parser is more lenient than llhttp.
 */
import type { HeaderList } from './listener-types.ts';

const REASONS = new Map<number, string>([
  [100, 'Continue'],
  [101, 'Switching Protocols'],
  [102, 'Processing'],
  [103, 'Early Hints'],
  [200, 'OK'],
  [201, 'Created'],
  [202, 'Accepted'],
  [203, 'Non-Authoritative Information'],
  [204, 'No Content'],
  [205, 'Reset Content'],
  [206, 'Partial Content'],
  [207, 'Multi-Status'],
  [208, 'Already Reported'],
  [226, 'IM Used'],
  [300, 'Multiple Choices'],
  [301, 'Moved Permanently'],
  [302, 'Found'],
  [303, 'See Other'],
  [304, 'Not Modified'],
  [305, 'Use Proxy'],
  [307, 'Temporary Redirect'],
  [308, 'Permanent Redirect'],
  [400, 'Bad Request'],
  [401, 'Unauthorized'],
  [402, 'Payment Required'],
  [403, 'Forbidden'],
  [404, 'Not Found'],
  [405, 'Method Not Allowed'],
  [406, 'Not Acceptable'],
  [407, 'Proxy Authentication Required'],
  [408, 'Request Timeout'],
  [409, 'Conflict'],
  [410, 'Gone'],
  [411, 'Length Required'],
  [412, 'Precondition Failed'],
  [413, 'Content Too Large'],
  [414, 'URI Too Long'],
  [415, 'Unsupported Media Type'],
  [416, 'Range Not Satisfiable'],
  [417, 'Expectation Failed'],
  [418, "I'm a Teapot"],
  [421, 'Misdirected Request'],
  [422, 'Unprocessable Content'],
  [423, 'Locked'],
  [424, 'Failed Dependency'],
  [425, 'Too Early'],
  [426, 'Upgrade Required'],
  [428, 'Precondition Required'],
  [429, 'Too Many Requests'],
  [431, 'Request Header Fields Too Large'],
  [451, 'Unavailable For Legal Reasons'],
  [500, 'Internal Server Error'],
  [501, 'Not Implemented'],
  [502, 'Bad Gateway'],
  [503, 'Service Unavailable'],
  [504, 'Gateway Timeout'],
  [505, 'HTTP Version Not Supported'],
  [506, 'Variant Also Negotiates'],
  [507, 'Insufficient Storage'],
  [508, 'Loop Detected'],
  [510, 'Not Extended'],
  [511, 'Network Authentication Required'],
]);

const CLASS_REASONS = ['Unknown', 'Informational', 'Success', 'Redirection', 'Client Error', 'Server Error'];

/** The reason phrase for a status code; codes outside the table get their class's generic phrase. */
export function reasonPhrase(status: number): string {
  const known = REASONS.get(status);
  if (known !== undefined) return known;
  const cls = Math.floor(status / 100);
  return CLASS_REASONS[cls >= 1 && cls <= 5 ? cls : 0] ?? 'Unknown';
}

/** `200 OK`: what uWS's `writeStatus` and a raw status line take. */
export function statusLine(status: number): string {
  return `${status} ${reasonPhrase(status)}`;
}

/** Responses that never carry a body whatever their headers say (RFC 9110 §6.4.1). */
export function isBodilessStatus(status: number): boolean {
  return (status >= 100 && status < 200) || status === 204 || status === 304;
}

// tchar lookup: "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
const TCHAR = new Uint8Array(128);
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;
for (const ch of "!#$%&'*+-.^_`|~") TCHAR[ch.charCodeAt(0)] = 1;

/** RFC 9110 token (methods, field names, transfer codings). */
export function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || TCHAR[c] !== 1) return false;
  }
  return true;
}

/**
 * Brand of a header list whose names are all tokens and values all field values (see
 * `markFieldsChecked`). A property on the array itself (a WeakSet costs more than the check it
 * saves); copies (`slice`, spread) do not carry it, so an edited list is checked again.
 */
const CHECKED: unique symbol = Symbol('meshlet.fieldsChecked');
type CheckedList = HeaderList & { [CHECKED]?: true };

/**
 * Records that a strict parser produced `list` (every name passes `isToken`, every value
 * `isFieldValue`), so that an engine writing it out may skip checking it again. The list must not
 * be changed afterwards: edits make a new list, which is checked as usual.
 */
export function markFieldsChecked(list: HeaderList): HeaderList {
  (list as CheckedList)[CHECKED] = true;
  return list;
}

/** True for a list marked by `markFieldsChecked`. */
export function fieldsChecked(list: HeaderList): boolean {
  return (list as CheckedList)[CHECKED] === true;
}

/**
 * Field value without CTLs other than HTAB (so no CR, LF or NUL): what may be written out as is.
 * obs-text (0x80-0xFF) is allowed; characters beyond 0xFF (a decoder's U+FFFD) are too.
 */
export function isFieldValue(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return false;
  }
  return true;
}

/** Request-target characters: visible US-ASCII only (RFC 9112 §3.2); no controls, spaces or DEL. */
export function isTargetText(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

/** Strips optional whitespace (SP / HTAB) only: `String.prototype.trim` would also eat NBSP etc. */
export function trimOws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && (s.charCodeAt(a) === 0x20 || s.charCodeAt(a) === 0x09)) a++;
  while (b > a && (s.charCodeAt(b - 1) === 0x20 || s.charCodeAt(b - 1) === 0x09)) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

/**
 * `transfer_encoding`, `Transfer---Encoding`, `content_length`: valid tokens, so parsers pass them
 * on as unrelated fields, but some servers fold `_` into `-` and would read them as framing.
 */
function isFramingLookAlike(name: string): boolean {
  const c0 = name.charCodeAt(0);
  if ((c0 !== 0x74 && c0 !== 0x63) || name.length < 14 || name.length > 40) return false;
  if (name === 'content-length' || name === 'transfer-encoding') return false;
  let letters = '';
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 0x61 && c <= 0x7a) letters += name[i];
  }
  return letters === 'contentlength' || letters === 'transferencoding';
}

function isDigits(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

/** How the request body is framed, once the head passed `checkRequestHead`. */
export interface RequestFraming {
  /** Content-Length, or -1 when absent. */
  readonly contentLength: number;
  readonly chunked: boolean;
  /** `Connection: upgrade` with an `Upgrade` header. */
  readonly upgrade: boolean;
  /** The client sent `Connection: close`: close after the response. */
  readonly close: boolean;
  readonly hasHost: boolean;
}

/** A rejection: the one-line reason for the 400 body. */
export interface HeadProblem {
  readonly problem: string;
}

function hasToken(list: string, token: string): boolean {
  for (const part of list.split(',')) {
    if (trimOws(part).toLowerCase() === token) return true;
  }
  return false;
}

/**
 * RFC 9112 request-head rules that decide where the body ends, applied strictly: a proxy must
 * never forward a request whose length another parser could read differently.
 *
 * - field names are tokens, field values carry no CTL;
 * - at most one Content-Length, 1*DIGIT, at most 15 digits (beyond 2^53 is nonsense here);
 * - Transfer-Encoding: every coding a token, `chunked` exactly once and last (§6.3: otherwise 400);
 * - not both Transfer-Encoding and Content-Length (§6.1 allows "remove CL"; we reject instead);
 * - the method is a token, the target visible ASCII.
 */
export function checkRequestHead(
  method: string,
  target: string,
  headers: HeaderList,
): RequestFraming | HeadProblem {
  if (!isToken(method)) return { problem: 'invalid method' };
  if (!isTargetText(target)) return { problem: 'invalid request-target' };
  let contentLength = -1;
  let teSeen = false;
  let chunked = false;
  let connectionUpgrade = false;
  let upgradeHeader = false;
  let hasHost = false;
  let close = false;
  for (let i = 0; i + 1 < headers.length; i += 2) {
    const name = headers[i] as string;
    const value = headers[i + 1] as string;
    if (!isToken(name)) return { problem: 'invalid header name' };
    if (isFramingLookAlike(name)) return { problem: `header ${name} looks like a framing header` };
    if (!isFieldValue(value)) return { problem: `invalid character in header ${name}` };
    switch (name) {
      case 'content-length': {
        if (contentLength !== -1) return { problem: 'multiple content-length headers' };
        const v = trimOws(value);
        if (!isDigits(v) || v.length > 15) return { problem: 'invalid content-length' };
        contentLength = Number(v);
        break;
      }
      case 'transfer-encoding': {
        for (const raw of value.split(',')) {
          const coding = trimOws(raw);
          if (coding.length === 0) continue;
          const semi = coding.indexOf(';');
          const codingName = trimOws(semi === -1 ? coding : coding.slice(0, semi)).toLowerCase();
          if (!isToken(codingName)) return { problem: 'invalid transfer-encoding' };
          if (chunked) return { problem: 'transfer-encoding: chunked is not the final coding' };
          if (codingName === 'chunked') {
            if (semi !== -1) return { problem: 'transfer-encoding: chunked takes no parameters' };
            chunked = true;
          }
        }
        teSeen = true;
        break;
      }
      case 'connection':
        if (hasToken(value, 'upgrade')) connectionUpgrade = true;
        if (hasToken(value, 'close')) close = true;
        break;
      case 'upgrade':
        upgradeHeader = true;
        break;
      case 'host':
        if (hasHost) return { problem: 'multiple host headers' };
        hasHost = true;
        break;
    }
  }
  if (teSeen && !chunked) return { problem: 'transfer-encoding without chunked as the final coding' };
  if (teSeen && contentLength !== -1) return { problem: 'both transfer-encoding and content-length' };
  return { contentLength, chunked, upgrade: connectionUpgrade && upgradeHeader, close, hasHost };
}

export function isHeadProblem(r: RequestFraming | HeadProblem): r is HeadProblem {
  return 'problem' in r;
}

/** Whether this header list asks for an upgrade (`Connection: upgrade` and an `Upgrade` field). */
export function wantsUpgrade(headers: HeaderList): boolean {
  let conn = false;
  let up = false;
  for (let i = 0; i + 1 < headers.length; i += 2) {
    const name = headers[i];
    if (name === 'upgrade') up = true;
    else if (name === 'connection' && hasToken(headers[i + 1] as string, 'upgrade')) conn = true;
  }
  return conn && up;
}

/**
 * A complete local reply written straight to a socket (node engine, before any request object
 * exists): status line, one-line text body, `connection: close`.
 */
export function rawLocalReply(status: number, body: string, flags: string | null): string {
  const text = `${body}\n`;
  return (
    `HTTP/1.1 ${statusLine(status)}\r\n` +
    'content-type: text/plain; charset=utf-8\r\n' +
    `content-length: ${Buffer.byteLength(text)}\r\n` +
    (flags === null ? '' : `x-meshlet-flags: ${flags}\r\n`) +
    'connection: close\r\n\r\n' +
    text
  );
}

/** RFC 5952 text of an IPv6 address given as eight groups (uWS prints them all, zero-padded). */
export function compactIpv6(text: string): string {
  const groups = text.split(':');
  if (groups.length !== 8) return text;
  const nums = groups.map((g) => Number.parseInt(g, 16));
  if (nums.some((n) => Number.isNaN(n))) return text;
  // IPv4-mapped: ::ffff:a.b.c.d, as node prints it.
  if (
    nums[0] === 0 &&
    nums[1] === 0 &&
    nums[2] === 0 &&
    nums[3] === 0 &&
    nums[4] === 0 &&
    nums[5] === 0xffff
  ) {
    const hi = nums[6] as number;
    const lo = nums[7] as number;
    return `::ffff:${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (nums[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && nums[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = nums.map((n) => n.toString(16));
  if (bestStart === -1) return hex.join(':');
  const left = hex.slice(0, bestStart).join(':');
  const right = hex.slice(bestStart + bestLen).join(':');
  return `${left}::${right}`;
}
