/**
 * Response conformance of the lean HTTP/1.1 client (src/upstream/h1-client.ts) against llhttp's
 * response vectors in shared/conformance/llhttp/response/*.md.
 *
 * The markdown is read by the listener's reader (test/unit/listener/conformance-cases.ts, in its
 * `response` mode), imported, not copied. It does not record the status code; that is read from the
 * raw bytes at each message's start.
 *
 * Two runs over every case:
 * - socket: a `net` server on 127.0.0.1 answers the client's request with the raw bytes and closes;
 *   the client's handler calls are recorded;
 * - parser: the same bytes fed one byte per call into `H1ResponseParser` (every split point), with a
 *   consumer that pauses after every body slice, then EOF.
 *
 * Judging (the "final" message is the first with a status ≥ 200 or 101; 1xx before it are skipped):
 * - llhttp completed the final message: exactly its status, headers (lowercase names, OWS trimmed,
 *   hop-by-hop removed like `cleanResponseHeaders`) and body, then `onEnd`. What llhttp does with
 *   bytes after it (a next response, `Data after Connection: close`) is not the client's business: it
 *   drops the connection.
 * - llhttp completed the head and the input ended mid-body: `onEnd` with exactly the body (a body
 *   delimited by the close), or `reset` after the head with a prefix of it, never more.
 * - llhttp refused the head (strict mode): a `protocol` failure before any head. Refused in the body:
 *   the head as expected, then `protocol`, and only a prefix of the body.
 * - `response-lenient-*` vectors show what llhttp does only with a lenient flag: refusing them
 *   (`protocol`) is the strict outcome; accepting one passes only with exactly the lenient result.
 * - `skipBody` (llhttp told to skip the body) is what a response to HEAD looks like: sent as HEAD.
 * Nothing is skipped. Where the client is stricter than llhttp the case is in DEVIATIONS with the
 * reason and the outcome, which is asserted; an unlisted difference fails, and so does a listed one
 * that stopped happening.
 */
import { once } from 'node:events';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import type { HeaderList } from '../../../src/listener/listener-types.ts';
import { cleanResponseHeaders } from '../../../src/upstream/forward-headers.ts';
import { createH1Upstream } from '../../../src/upstream/h1-client.ts';
import { H1ResponseParser } from '../../../src/upstream/h1-response-parser.ts';
import type { UpstreamClient } from '../../../src/upstream/upstream-types.ts';
import { type ExpectedMessage, type LlhttpCase, loadLlhttpCases } from '../listener/conformance-cases.ts';
import { newOutcome, type Outcome, recordInto } from './upstream-harness.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const sharedDir = path.resolve(repoRoot, '../shared');
const CASE_TIMEOUT_MS = 3000;

/** Where the client is deliberately stricter than llhttp's default mode. Outcome: a `protocol` failure. */
const DEVIATIONS: Record<string, string> = {
  'sample: RTSP response':
    'not HTTP: only HTTP/1.0 and HTTP/1.1 status lines are accepted from an HTTP upstream',
  'sample: ICE response':
    'not HTTP: only HTTP/1.0 and HTTP/1.1 status lines are accepted from an HTTP upstream',
  'sample: HTTP version 0.9':
    'HTTP/0.9 has no status line; a status line claiming 0.9 is refused (only 1.0 and 1.1 are accepted)',
  'transfer-encoding: `chunked` before other transfer-encoding':
    'llhttp reads such a body until the close; the proxy strips Transfer-Encoding (hop-by-hop) so it could ' +
    'not pass the still-encoded body on faithfully: codings other than exactly `chunked` are refused',
  'transfer-encoding: multiple transfer-encoding where chunked is not the last one':
    'same: Transfer-Encoding other than one `chunked` is refused (RFC 9112 §6.3 lets a recipient treat it as faulty framing)',
  'transfer-encoding: `chunkedchunked` transfer-encoding does not enable chunked enconding':
    'same: an unknown coding is refused rather than read until the close',
  'connection: HTTP 101 response with Upgrade and Content-Length header':
    'the lean client never sends an upgrade request (those go to the fallback), so a 101 is an invalid answer',
  'connection: HTTP 101 response with Upgrade and Transfer-Encoding header':
    'the lean client never sends an upgrade request (those go to the fallback), so a 101 is an invalid answer',
};

function statusOf(c: LlhttpCase, m: ExpectedMessage): number {
  const line = c.raw.subarray(m.begin, m.begin + 64).toString('latin1');
  const match = /^[A-Z]+\/\d\.\d (\d{3})/.exec(line);
  return match === null ? 0 : Number(match[1]);
}

function trimOws(s: string): string {
  return s.replace(/^[ \t]+|[ \t]+$/g, '');
}

type Expectation =
  | { kind: 'complete' | 'open' | 'refuse-body'; status: number; headers: HeaderList; body: Buffer }
  | { kind: 'refuse-head' };

function expectation(c: LlhttpCase): Expectation {
  const final = c.messages.find((m) => {
    const s = statusOf(c, m);
    return s >= 200 || s === 101;
  });
  if (final === undefined || !final.headersComplete) return { kind: 'refuse-head' };
  const raw: HeaderList = [];
  for (const [name, value] of final.headers) raw.push(name.toLowerCase(), trimOws(value));
  const fields = {
    status: statusOf(c, final),
    headers: cleanResponseHeaders(raw),
    body: final.body,
  };
  if (final.messageComplete) return { kind: 'complete', ...fields };
  if (c.error !== null && !c.upgrade) return { kind: 'refuse-body', ...fields };
  return { kind: 'open', ...fields };
}

function isPrefix(a: Buffer, of: Buffer): boolean {
  return a.length <= of.length && of.subarray(0, a.length).equals(a);
}

/** Null when the outcome is acceptable for the expectation, else why not. */
function judge(e: Expectation, o: Outcome): string | null {
  if (e.kind === 'refuse-head') {
    if (o.error?.failure === 'protocol' && !o.error.afterHeaders && o.status === 0) return null;
    return 'llhttp refuses this head: expected a protocol failure before any head';
  }
  if (o.status !== e.status) return `status ${o.status}, expected ${e.status}`;
  if (JSON.stringify(o.headers) !== JSON.stringify(e.headers)) {
    return `headers ${JSON.stringify(o.headers)}, expected ${JSON.stringify(e.headers)}`;
  }
  if (o.ended && o.error === null) {
    if (e.kind === 'refuse-body') return 'llhttp refuses this body: the response must not complete';
    return o.body.equals(e.body) ? null : `body ${JSON.stringify(o.body.toString('latin1'))} misframed`;
  }
  if (o.error === null) return 'neither onEnd nor onError';
  if (!o.error.afterHeaders) return 'failure reported as before the head, but the head was delivered';
  if (!isPrefix(o.body, e.body)) return `body ${JSON.stringify(o.body.toString('latin1'))} is not a prefix`;
  if (e.kind === 'refuse-body')
    return o.error.failure === 'protocol' ? null : `${o.error.failure}, expected protocol`;
  if (e.kind === 'open') return o.error.failure === 'reset' ? null : `${o.error.failure}, expected reset`;
  return `failed (${o.error.failure}: ${o.error.detail}) where llhttp completed the response`;
}

function isLenient(c: LlhttpCase): boolean {
  return c.type.startsWith('response-lenient');
}

/** Checks one outcome of one case; returns a one-line summary for the report. */
function check(tt: Test, c: LlhttpCase, o: Outcome, mode: string): string {
  const e = expectation(c);
  const problem = judge(e, o);
  const refused = o.error?.failure === 'protocol' && !o.error.afterHeaders && o.status === 0;
  const deviation = DEVIATIONS[c.id];
  if (deviation !== undefined) {
    tt.ok(refused, `${mode}: listed deviation, refused with protocol (${deviation})`);
    tt.not(problem, null, `${mode}: the listed deviation still differs from llhttp`);
    return 'deviation';
  }
  if (isLenient(c)) {
    tt.ok(
      problem === null || refused,
      `${mode}: lenient vector: strict refusal or exactly llhttp's lenient result`,
    );
    return refused ? 'refused (strict)' : 'accepted as llhttp lenient';
  }
  tt.equal(
    problem,
    null,
    `${mode}: ${e.kind}${o.error === null ? '' : ` / ${o.error.failure}: ${o.error.detail}`}`,
  );
  return e.kind;
}

// ---- socket run ----

async function rawServer(cases: LlhttpCase[]): Promise<{ port: number; close: () => void }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let head = '';
    const onData = (b: Buffer): void => {
      head += b.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      const index = Number(/^[A-Z]+ \/case\/(\d+) /.exec(head)?.[1] ?? -1);
      const c = cases[index];
      if (c === undefined) {
        socket.destroy();
        return;
      }
      socket.end(c.raw);
    };
    socket.on('data', onData);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

const noFallback: UpstreamClient = {
  send() {
    throw new Error('the fallback must not be used for an IP target');
  },
  close: async () => {},
};

function viaSocket(port: number, index: number, c: LlhttpCase): Promise<Outcome> {
  const client = createH1Upstream({ fallback: noFallback });
  const o = newOutcome();
  const chunks: Buffer[] = [];
  return new Promise<Outcome>((resolve) => {
    const timer = setTimeout(() => {
      call.abort();
      o.error = { failure: 'reset', afterHeaders: o.status !== 0, detail: 'TEST TIMEOUT' };
      finish();
    }, CASE_TIMEOUT_MS);
    const finish = (): void => {
      clearTimeout(timer);
      o.body = Buffer.concat(chunks);
      client.close().then(() => resolve(o));
    };
    const call = client.send(
      { address: '127.0.0.1', port },
      {
        method: c.notApplicable === null ? 'GET' : 'HEAD',
        path: `/case/${index}`,
        headers: ['host', 'conformance.test'],
        body: null,
        expectContinue: false,
      },
      recordInto(o, chunks, finish),
    );
  });
}

// ---- parser run ----

/** Feeds the parser directly; pauses after every body slice. */
class FeedParser extends H1ResponseParser {
  readonly o = newOutcome();
  private readonly chunks: Buffer[] = [];

  constructor(head: boolean) {
    super();
    this.resetParser(head);
  }

  feedAll(raw: Buffer): Outcome {
    for (let i = 0; i < raw.length && !this.done; i++) {
      this.execute(raw.subarray(i, i + 1));
      while (this.parserSuspended && !this.done) this.resumeParser();
    }
    if (!this.done && !this.executeEof()) {
      this.done = true;
      this.o.error = { failure: 'reset', afterHeaders: this.headDelivered, detail: 'EOF' };
    }
    this.o.body = Buffer.concat(this.chunks);
    return this.o;
  }

  protected onHead(status: number, headers: HeaderList): void {
    this.o.status = status;
    this.o.headers = headers;
  }

  protected onBody(chunk: Buffer): boolean {
    this.chunks.push(Buffer.from(chunk));
    return false;
  }

  protected onComplete(): void {
    this.done = true;
    this.o.ended = true;
  }

  protected onParseError(detail: string): void {
    this.done = true;
    this.o.error = { failure: 'protocol', afterHeaders: this.headDelivered, detail };
  }
}

// ---- the run ----

const cases = loadLlhttpCases(sharedDir, 'response');

t.ok(cases.length >= 60, `${cases.length} response cases loaded`);
t.ok(
  cases.every((c) => c.type.startsWith('response')),
  'every case is a response vector',
);
for (const id of Object.keys(DEVIATIONS)) {
  t.ok(
    cases.some((c) => c.id === id),
    `listed deviation exists: ${id}`,
  );
}

const report: string[] = [];

t.test('socket: the client against a raw server sending each vector', async (t) => {
  const server = await rawServer(cases);
  t.teardown(server.close);
  for (const [index, c] of cases.entries()) {
    await t.test(c.id, async (tt) => {
      const o = await viaSocket(server.port, index, c);
      const verdict = check(tt, c, o, 'socket');
      report.push(`${c.id}: ${verdict}${o.error === null ? '' : ` (${o.error.failure}: ${o.error.detail})`}`);
    });
  }
});

t.test('parser: each vector fed one byte at a time, consumer pausing after every slice', async (t) => {
  for (const c of cases) {
    t.test(c.id, async (tt) => {
      const o = new FeedParser(c.notApplicable !== null).feedAll(c.raw);
      check(tt, c, o, 'bytewise');
    });
  }
});

t.teardown(() => {
  if (process.env['H1_CONFORMANCE_REPORT'] === '1') for (const line of report) console.error(line);
});
