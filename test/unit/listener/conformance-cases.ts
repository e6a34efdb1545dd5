/**
 * Loads the HTTP/1.1 corpora in shared/conformance (see its README.md) into cases the conformance
 * tests can send over a socket:
 *
 * - llhttp `request/*.md` (the listener's test) or `response/*.md` (the upstream client's test):
 *   parsed from the markdown, not from llhttp-cases.json, whose `raw` lost the final CRLF of many
 *   inputs. Each test is a `meta` comment, an `http` block (the input, with
 *   `\r`, `\n`, `\t`, `\f`, `\xHH` and octal escapes, `\` line continuations, newlines sent as CRLF)
 *   and a `log` block: the parser's callbacks, from which the expected messages (method, url,
 *   headers, body, how far each got) are rebuilt.
 * - http-desync-guardian: desync-guardian-cases.json (`raw_approx`, tier, reason).
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

export interface ExpectedMessage {
  method: string;
  url: string;
  version: string;
  /** Header names as sent (not lowercased), values as llhttp spans them (OWS not trimmed at the end). */
  headers: Array<[string, string]>;
  body: Buffer;
  headersComplete: boolean;
  messageComplete: boolean;
  /** Byte offset of `message begin` in the raw input. */
  begin: number;
}

export interface LlhttpCase {
  readonly id: string;
  readonly file: string;
  readonly title: string;
  readonly type: string;
  readonly raw: Buffer;
  readonly messages: ExpectedMessage[];
  /** `error code=… reason="…"` from the log, or null when llhttp accepted everything. */
  readonly error: string | null;
  /** llhttp paused on CONNECT or an upgrade: the rest belongs to another protocol. */
  readonly upgrade: boolean;
  /**
   * Why the vector does not apply to a server socket (`skipBody`: the parser was told to skip a
   * body, as for the response to HEAD), or null.
   */
  readonly notApplicable: string | null;
}

export interface DesyncCase {
  readonly id: string;
  readonly name: string;
  readonly tier: 'Compliant' | 'Acceptable' | 'Ambiguous' | 'Severe';
  readonly reason: string;
  readonly raw: Buffer;
}

/** Characters up to 0xFF as single bytes (the corpora mean bytes), anything beyond as UTF-8. */
export function toBytes(s: string): Buffer {
  const parts: number[] = [];
  for (const ch of s) {
    const c = ch.codePointAt(0) as number;
    if (c <= 0xff) parts.push(c);
    else for (const b of Buffer.from(ch, 'utf8')) parts.push(b);
  }
  return Buffer.from(parts);
}

function decodeHttpBlock(lines: string[]): Buffer {
  let s = lines.join('\n');
  s = s.replace(/\\\r?\n/g, '');
  s = s.replace(/\r\n|\r|\n/g, '\r\n');
  s = s.replace(/\\r/g, '\r').replace(/\\n/g, '\n').replace(/\\t/g, '\t').replace(/\\f/g, '\f');
  s = s.replace(/\\x([0-9a-fA-F]{2})/g, (_m, h: string) => String.fromCharCode(Number.parseInt(h, 16)));
  s = s.replace(/\\([0-7]{1,3})/g, (_m, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
  return toBytes(s);
}

/**
 * The log prints spans between quotes without escaping them; only tab, form feed, CR, LF are escaped.
 * A span of one CR or LF byte is printed bare, without quotes: `span[body]=cr`, `span[body]=lf`.
 */
function unquoteSpan(line: string): string {
  const bare = /\]=(cr|lf)\s*$/.exec(line);
  if (bare !== null) return bare[1] === 'cr' ? '\r' : '\n';
  const start = line.indexOf('="');
  const text = line.slice(start + 2, line.lastIndexOf('"'));
  return text.replace(/\\t/g, '\t').replace(/\\f/g, '\f').replace(/\\r/g, '\r').replace(/\\n/g, '\n');
}

function parseLog(lines: string[]): { messages: ExpectedMessage[]; error: string | null; upgrade: boolean } {
  const messages: ExpectedMessage[] = [];
  let cur: ExpectedMessage | null = null;
  let field = '';
  let value = '';
  let error: string | null = null;
  let upgrade = false;
  for (const line of lines) {
    const off = Number(/^off=(\d+)/.exec(line)?.[1] ?? '0');
    if (line.includes(' message begin')) {
      cur = {
        method: '',
        url: '',
        version: '',
        headers: [],
        body: Buffer.alloc(0),
        headersComplete: false,
        messageComplete: false,
        begin: off,
      };
      messages.push(cur);
      field = '';
      value = '';
      continue;
    }
    if (cur === null) {
      if (line.includes(' error ')) error = line.slice(line.indexOf('error ') + 6);
      continue;
    }
    const span = /span\[([a-z_]+)\]/.exec(line)?.[1];
    if (span !== undefined) {
      const text = unquoteSpan(line);
      if (span === 'method') cur.method += text;
      else if (span === 'url') cur.url += text;
      else if (span === 'version') cur.version += text;
      // Fields after the head are chunked trailers, which the engines do not expose.
      else if (span === 'header_field' && !cur.headersComplete) field += text;
      else if (span === 'header_value' && !cur.headersComplete) value += text;
      else if (span === 'body') cur.body = Buffer.concat([cur.body, toBytes(text)]);
      continue;
    }
    if (line.endsWith(' header_value complete') && !cur.headersComplete) {
      cur.headers.push([field, value]);
      field = '';
      value = '';
    } else if (line.includes(' headers complete')) {
      if (field !== '') cur.headers.push([field, value]);
      field = '';
      value = '';
      cur.headersComplete = true;
    } else if (line.endsWith(' message complete')) {
      cur.messageComplete = true;
    } else if (line.includes(' error ')) {
      error = line.slice(line.indexOf('error ') + 6);
      if (/Pause on (CONNECT|PRI)?\/?Upgrade/.test(error)) upgrade = true;
    }
  }
  return { messages, error, upgrade };
}

/** The llhttp vectors of `shared/conformance/llhttp/<mode>/*.md`. */
export function loadLlhttpCases(sharedDir: string, mode: 'request' | 'response'): LlhttpCase[] {
  const dir = path.join(sharedDir, 'conformance', 'llhttp', mode);
  const out: LlhttpCase[] = [];
  const seen = new Map<string, number>();
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith('.md'))
    .sort()) {
    const lines = readFileSync(path.join(dir, file), 'utf8').split('\n');
    let title = '';
    let meta: Record<string, unknown> | null = null;
    let http: string[] | null = null;
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i] as string;
      const heading = /^#{2,4}\s+(.*)$/.exec(line);
      if (heading !== null) {
        title = (heading[1] as string).trim();
        continue;
      }
      const m = /^<!--\s*meta=(.*)-->\s*$/.exec(line);
      if (m !== null) {
        meta = JSON.parse(m[1] as string) as Record<string, unknown>;
        continue;
      }
      if (line.startsWith('```http') || line.startsWith('```log')) {
        const block: string[] = [];
        let j = i + 1;
        while (j < lines.length && !(lines[j] as string).startsWith('```')) block.push(lines[j++] as string);
        i = j;
        if (line.startsWith('```http')) {
          http = block;
          continue;
        }
        if (http === null || meta === null) continue;
        const base = `${file.replace(/\.md$/, '')}: ${title}`;
        const n = (seen.get(base) ?? 0) + 1;
        seen.set(base, n);
        const parsed = parseLog(block);
        out.push({
          id: n === 1 ? base : `${base} (${n})`,
          file,
          title,
          type: String(meta['type']),
          raw: decodeHttpBlock(http),
          ...parsed,
          notApplicable: meta['skipBody'] === true ? 'parser told to skip the body (skipBody)' : null,
        });
        http = null;
        meta = null;
      }
    }
  }
  return out;
}

interface DesyncJson {
  source: string;
  name: string;
  tier: DesyncCase['tier'];
  reason: string;
  raw_approx: string;
}

export function loadDesyncCases(sharedDir: string): DesyncCase[] {
  const list = JSON.parse(
    readFileSync(path.join(sharedDir, 'conformance', 'desync-guardian-cases.json'), 'utf8'),
  ) as DesyncJson[];
  const seen = new Map<string, number>();
  return list.map((c) => {
    const base = `${path.basename(c.source, '.yaml')}: ${c.name}`;
    const n = (seen.get(base) ?? 0) + 1;
    seen.set(base, n);
    return {
      id: n === 1 ? base : `${base} (${n})`,
      name: c.name,
      tier: c.tier,
      reason: c.reason,
      raw: toBytes(c.raw_approx),
    };
  });
}
