/**
 * Request conformance of the listener engines (uws, node, h1) against shared/conformance (README.md there):
 * llhttp's request vectors and http-desync-guardian's classification cases, sent as raw bytes to a
 * fresh listener whose handler echoes what it received.
 *
 * Expectations:
 * - llhttp `request` cases llhttp accepts: every message whose head llhttp completed reaches the
 *   handler with method, target, header values and (when complete) body intact; a message whose
 *   body never completed must not complete at the handler either.
 * - llhttp cases llhttp refuses: at most the messages llhttp completed before the error reach the
 *   handler (intact), the failing one never completes, and the connection closes.
 * - CONNECT / Upgrade (llhttp pauses): the messages before reach the handler; the upgrade request
 *   does not (no onUpgrade here): a local reply and a close.
 * - `request-lenient-*` cases are valid only for a lenient parser: refusing them (close, nothing
 *   beyond the messages before) passes; accepting one is a deviation that must be listed.
 * - desync-guardian Compliant: exactly one request, intact. Acceptable: that, or a 400 and a close.
 *   Ambiguous / Severe: a 400 (any 4xx) and a close with no handler call, or exactly one request
 *   whose framing the handler sees unambiguously (normalized).
 *
 * Adaptations, because the corpora predate them: both engines refuse an HTTP/1.1 request without
 * Host (RFC 9112 §3.2), which most vectors lack, so a `Host: conformance.test` line is inserted after
 * each HTTP/1.1 request line (the expected headers start with it). Desync cases have no body: a
 * chunked terminator or Content-Length bytes are appended when the head declares one exactly.
 *
 * Where an engine differs and the engine cannot fix it (uWS's native parser answers first), the
 * case is listed in DEVIATIONS with the reason and the exact observed outcome, which is asserted.
 */
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import type { EngineName, HeaderList } from '../../../src/listener/listener-types.ts';
import { startListener } from '../../../src/listener/start-listener.ts';
import {
  type DesyncCase,
  type ExpectedMessage,
  type LlhttpCase,
  loadDesyncCases,
  loadLlhttpCases,
} from './conformance-cases.ts';
import { DEVIATION_LIST, REASONS } from './conformance-deviations.ts';
import { rawRequest } from './raw-http.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const sharedDir = path.resolve(repoRoot, '../shared');

const HOST_LINE = Buffer.from('Host: conformance.test\r\n');
const CASE_TIMEOUT_MS = 1500;
const IDLE_MS = 150;
const CONCURRENCY = 24;

interface Seen {
  method: string;
  target: string;
  headers: HeaderList;
  /** Null until the body completed. */
  body: Buffer | null;
}

interface Observed {
  calls: Seen[];
  statuses: number[];
  closed: boolean;
  /** Compact form, asserted for listed deviations. */
  signature: string;
}

async function observe(engine: EngineName, bytes: Buffer): Promise<Observed> {
  const calls: Seen[] = [];
  const listener = await startListener({
    engine,
    host: '127.0.0.1',
    port: 0,
    name: 'conformance',
    handler: (req, res) => {
      const seen: Seen = { method: req.method, target: req.target, headers: [...req.headers], body: null };
      calls.push(seen);
      res.onAborted(() => {});
      const reply = (): void => {
        res.writeHead(200, ['content-type', 'application/json']);
        res.end(Buffer.from(JSON.stringify({ method: seen.method, target: seen.target })));
      };
      if (req.body === null) {
        seen.body = Buffer.alloc(0);
        reply();
        return;
      }
      const parts: Buffer[] = [];
      req.body.onData((chunk, last) => {
        parts.push(chunk);
        if (last) {
          seen.body = Buffer.concat(parts);
          reply();
        }
      });
    },
  });
  try {
    const r = await rawRequest(listener.port, bytes, { timeoutMs: CASE_TIMEOUT_MS, idleMs: IDLE_MS });
    // Status lines as sent, even when a body is cut short.
    const statuses = [...r.data.toString('latin1').matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
    const state = r.closed ? 'closed' : 'open';
    const done = calls.filter((c) => c.body !== null).length;
    return {
      calls,
      statuses,
      closed: r.closed,
      signature: `calls=${calls.length} complete=${done} status=${statuses.join('/') || '-'} ${state}`,
    };
  } finally {
    listener.close();
  }
}

function trimOws(s: string): string {
  return s.replace(/^[ \t]+|[ \t]+$/g, '');
}

function expectedHeaders(m: ExpectedMessage, injected: boolean): string[] {
  const out: string[] = injected ? ['host', 'conformance.test'] : [];
  for (const [k, v] of m.headers) out.push(k.toLowerCase(), trimOws(v));
  return out;
}

function sameHead(seen: Seen, method: string, target: string, headers: string[]): string | null {
  if (seen.method !== method) return `method ${JSON.stringify(seen.method)} != ${JSON.stringify(method)}`;
  if (seen.target !== target) return `target ${JSON.stringify(seen.target)} != ${JSON.stringify(target)}`;
  const got = seen.headers.map((h, i) => (i % 2 === 1 ? trimOws(h) : h));
  if (JSON.stringify(got) !== JSON.stringify(headers)) {
    return `headers ${JSON.stringify(got)} != ${JSON.stringify(headers)}`;
  }
  return null;
}

/** The request as the handler saw it has exactly one reading of its length. */
function unambiguous(seen: Seen): string | null {
  let cl = 0;
  let te: string | null = null;
  for (let i = 0; i < seen.headers.length; i += 2) {
    const name = seen.headers[i] as string;
    const value = trimOws(seen.headers[i + 1] as string);
    const squashed = name.replace(/[^a-z]/g, '');
    if (name === 'content-length') {
      cl++;
      if (!/^\d+$/.test(value)) return `content-length ${JSON.stringify(value)}`;
    } else if (name === 'transfer-encoding') {
      te = te === null ? value : `${te},${value}`;
    } else if (squashed === 'contentlength' || squashed === 'transferencoding') {
      return `look-alike header ${JSON.stringify(name)}`;
    }
  }
  if (cl > 1) return 'several content-length';
  if (te !== null) {
    const codings = te.split(',').map((c) => c.trim().toLowerCase());
    if (codings[codings.length - 1] !== 'chunked' || codings.filter((c) => c === 'chunked').length !== 1) {
      return `transfer-encoding ${JSON.stringify(te)}`;
    }
    if (cl > 0) return 'both transfer-encoding and content-length';
  }
  return null;
}

// ---- llhttp -------------------------------------------------------------------------------------

interface Prepared {
  bytes: Buffer;
  /** Per expected message: whether a Host line was inserted. */
  injected: boolean[];
}

function prepareLlhttp(c: LlhttpCase): Prepared {
  const inserts: number[] = [];
  const injected = c.messages.map((m) => {
    if (m.version !== '1.1' || m.headers.some(([k]) => k.toLowerCase() === 'host')) return false;
    const eol = c.raw.indexOf('\r\n', m.begin);
    if (eol === -1) return false;
    const line = c.raw.subarray(m.begin, eol).toString('latin1');
    if (!/^\S+ \S+ HTTP\/1\.1$/.test(line)) return false;
    inserts.push(eol + 2);
    return true;
  });
  const parts: Buffer[] = [];
  let from = 0;
  for (const at of inserts) {
    parts.push(c.raw.subarray(from, at), HOST_LINE);
    from = at;
  }
  parts.push(c.raw.subarray(from));
  return { bytes: Buffer.concat(parts), injected };
}

type Verdict = { ok: true; note: string } | { ok: false; why: string };

/** Each handler call must match the message llhttp parsed at the same position. */
function matchCalls(c: LlhttpCase, p: Prepared, o: Observed, allowed: number): string | null {
  if (o.calls.length > allowed)
    return `${o.calls.length} requests reached the handler, at most ${allowed} allowed`;
  for (let i = 0; i < o.calls.length; i++) {
    const m = c.messages[i] as ExpectedMessage;
    const seen = o.calls[i] as Seen;
    const diff = sameHead(seen, m.method, m.url, expectedHeaders(m, p.injected[i] === true));
    if (diff !== null) return `message ${i}: ${diff}`;
    if (m.messageComplete) {
      if (seen.body !== null && !seen.body.equals(m.body)) {
        return `message ${i}: body ${JSON.stringify(seen.body.toString('latin1'))} != ${JSON.stringify(m.body.toString('latin1'))}`;
      }
    } else if (seen.body !== null) {
      return `message ${i}: body completed at the handler though llhttp never completed it`;
    }
  }
  return null;
}

function judgeLlhttp(c: LlhttpCase, p: Prepared, o: Observed): Verdict {
  const heads = c.messages.filter((m) => m.headersComplete).length;
  const strictOk = c.type === 'request' || c.type === 'request-finish';
  if (c.error === null && strictOk) {
    const diff = matchCalls(c, p, o, heads);
    if (diff !== null) return { ok: false, why: diff };
    if (o.calls.length !== heads)
      return { ok: false, why: `${o.calls.length} of ${heads} requests reached the handler` };
    for (let i = 0; i < heads; i++) {
      if ((c.messages[i] as ExpectedMessage).messageComplete && (o.calls[i] as Seen).body === null) {
        return { ok: false, why: `message ${i}: body did not complete at the handler` };
      }
    }
    return { ok: true, note: 'accepted intact' };
  }
  if (c.upgrade) {
    const before = Math.max(0, heads - 1);
    const diff = matchCalls(c, p, o, before);
    if (diff !== null) return { ok: false, why: diff };
    if (o.calls.length !== before)
      return { ok: false, why: `${o.calls.length} of ${before} requests before the upgrade` };
    if (!o.closed) return { ok: false, why: 'connection left open after the upgrade request' };
    return { ok: true, note: `upgrade refused (${o.statuses.at(-1) ?? 'no reply'})` };
  }
  // Refused by llhttp, or valid only for a lenient parser: a prefix of llhttp's messages may reach
  // the handler intact (the one at fault never completes), then the connection must close.
  const diff = matchCalls(c, p, o, heads);
  if (diff !== null) return { ok: false, why: c.error === null ? `lenient reading accepted: ${diff}` : diff };
  if (
    c.error === null &&
    heads > 0 &&
    o.calls.length === heads &&
    o.calls.every((x) => x.body !== null) &&
    !o.statuses.some((s) => s >= 400) &&
    !o.closed
  ) {
    return { ok: false, why: 'lenient-only input accepted as a whole' };
  }
  if (!o.closed) return { ok: false, why: 'connection left open' };
  const reject = o.statuses.find((s) => s >= 400);
  return { ok: true, note: reject === undefined ? 'closed' : `refused ${reject}` };
}

// ---- desync-guardian ----------------------------------------------------------------------------

interface PreparedDesync {
  bytes: Buffer;
  injected: boolean;
  method: string;
  target: string;
  headers: string[];
  body: Buffer;
}

function prepareDesync(c: DesyncCase): PreparedDesync {
  const text = c.raw.toString('latin1');
  const headEnd = text.indexOf('\r\n\r\n');
  const head = headEnd === -1 ? text : text.slice(0, headEnd);
  const lines = head.split('\r\n');
  const requestLine = lines[0] ?? '';
  const [method = '', target = ''] = requestLine.split(' ');
  const headers: string[] = [];
  let body = Buffer.alloc(0);
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon);
    const value = trimOws(line.slice(colon + 1));
    headers.push(name.toLowerCase(), value);
    if (/^transfer-encoding$/i.test(name) && /chunked/i.test(value)) body = Buffer.from('0\r\n\r\n');
    else if (/^content-length$/i.test(name) && /^\d{1,7}$/.test(value) && body.length === 0) {
      body = Buffer.alloc(Number(value), 'x');
    }
  }
  const injected = / HTTP\/1\.1$/.test(requestLine) && !/\r\nhost:/i.test(head);
  const eol = c.raw.indexOf('\r\n');
  const bytes = injected
    ? Buffer.concat([c.raw.subarray(0, eol + 2), HOST_LINE, c.raw.subarray(eol + 2), body])
    : Buffer.concat([c.raw, body]);
  if (injected) headers.unshift('host', 'conformance.test');
  const isChunked = body.length === 5 && body.toString() === '0\r\n\r\n';
  return { bytes, injected, method, target, headers, body: isChunked ? Buffer.alloc(0) : body };
}

function judgeDesync(c: DesyncCase, p: PreparedDesync, o: Observed): Verdict {
  const refused =
    o.calls.length === 0 && o.closed && (o.statuses.length === 0 || (o.statuses[0] ?? 0) >= 400);
  if (c.tier === 'Compliant') {
    if (o.calls.length !== 1) return { ok: false, why: `${o.calls.length} requests reached the handler` };
    const seen = o.calls[0] as Seen;
    const diff = sameHead(seen, p.method, p.target, p.headers);
    if (diff !== null) return { ok: false, why: diff };
    if (seen.body === null || !seen.body.equals(p.body)) return { ok: false, why: 'body not intact' };
    return { ok: true, note: 'accepted intact' };
  }
  if (refused) return { ok: true, note: `refused ${o.statuses[0] ?? '(closed)'}` };
  if (o.calls.length !== 1) return { ok: false, why: `${o.calls.length} requests reached the handler` };
  const seen = o.calls[0] as Seen;
  const problem = unambiguous(seen);
  if (problem !== null) return { ok: false, why: `forwarded ambiguously: ${problem}` };
  if (seen.body === null) return { ok: false, why: 'accepted but the body never completed' };
  return { ok: true, note: 'normalized to one unambiguous request' };
}

// ---- listed deviations --------------------------------------------------------------------------

interface Deviation {
  readonly signature: string;
  readonly reason: string;
}

/** `${engine} ${case id}` → what the engine does instead, and why it cannot be fixed in the engine. */
const DEVIATIONS = new Map<string, Deviation>(
  DEVIATION_LIST.map(([engine, id, signature, reason]) => [
    `${engine} ${id}`,
    { signature, reason: REASONS[reason] },
  ]),
);

// ---- run ----------------------------------------------------------------------------------------

async function pool<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: n }, worker));
}

interface Row {
  id: string;
  bytes: Buffer;
  judge: (o: Observed) => Verdict;
}

if (!existsSync(path.join(sharedDir, 'conformance'))) {
  t.fail(`conformance corpora not found at ${sharedDir}/conformance`);
} else {
  const rows: Row[] = [];
  const skipped: string[] = [];
  for (const c of loadLlhttpCases(sharedDir, 'request')) {
    if (c.notApplicable !== null) {
      skipped.push(`llhttp ${c.id}: ${c.notApplicable}`);
      continue;
    }
    const p = prepareLlhttp(c);
    rows.push({ id: `llhttp ${c.id}`, bytes: p.bytes, judge: (o) => judgeLlhttp(c, p, o) });
  }
  for (const c of loadDesyncCases(sharedDir)) {
    const p = prepareDesync(c);
    rows.push({ id: `desync [${c.tier}] ${c.id}`, bytes: p.bytes, judge: (o) => judgeDesync(c, p, o) });
  }

  t.test('vectors that do not apply to a server socket', async (t) => {
    t.same(skipped, [
      'llhttp content-length: Content-Length reset when no body is received: parser told to skip the body (skipBody)',
    ]);
  });

  for (const engine of ['uws', 'node', 'h1'] as const) {
    t.test(`${engine}: request conformance`, async (t) => {
      const results = new Map<string, { o: Observed; v: Verdict }>();
      await pool(rows, CONCURRENCY, async (row) => {
        const o = await observe(engine, row.bytes);
        results.set(row.id, { o, v: row.judge(o) });
      });
      let pass = 0;
      let deviations = 0;
      for (const row of rows) {
        const r = results.get(row.id);
        if (r === undefined) continue;
        const listed = DEVIATIONS.get(`${engine} ${row.id}`);
        if (r.v.ok) {
          pass++;
          t.equal(
            listed,
            undefined,
            `${row.id}: ${r.v.note}${listed === undefined ? '' : ' (listed as deviation: remove it)'}`,
          );
          continue;
        }
        if (listed === undefined) {
          t.fail(`${row.id}: ${r.v.why} [${r.o.signature}]`);
          continue;
        }
        deviations++;
        t.equal(r.o.signature, listed.signature, `${row.id}: known deviation (${listed.reason})`);
      }
      t.comment(`${engine}: ${rows.length} cases, ${pass} pass, ${deviations} listed deviations`);
      const dump = process.env['MESHLET_CONFORMANCE_DUMP'];
      if (dump !== undefined) {
        const failing = rows.flatMap((row) => {
          const r = results.get(row.id);
          return r === undefined || r.v.ok ? [] : [{ id: row.id, why: r.v.why, signature: r.o.signature }];
        });
        writeFileSync(`${dump}.${engine}.json`, JSON.stringify(failing, null, 1));
      }
    });
  }
}
