/**
 * What the h1 engine does beyond the engine contract: the reasons it exists (absolute-form targets,
 * header names with `_`), pipelining, HTTP/1.0, limits, CONNECT, upgrade handoff, timeouts, and its
 * parser fed byte by byte.
 */
import { connect } from 'node:net';
import t, { type Test } from 'tap';
import { type H1Tuning, listenH1 } from '../../../src/listener/h1-engine.ts';
import {
  CHUNK_DATA,
  CHUNK_DONE,
  CHUNK_ERROR,
  ChunkedDecoder,
  HEAD_ERROR,
  HEAD_INCOMPLETE,
  HeadParser,
} from '../../../src/listener/h1-request-parser.ts';
import type {
  IncomingRequest,
  Listener,
  RequestHandler,
  ResponseSink,
  UpgradeHandler,
} from '../../../src/listener/listener-types.ts';
import { header, RawConn, rawRequest } from './raw-http.ts';

const H = 'Host: test.local\r\n';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function h1(
  t: Test,
  handler: RequestHandler,
  extra: { onUpgrade?: UpgradeHandler; tuning?: H1Tuning } = {},
): Promise<Listener> {
  const l = await listenH1(
    {
      engine: 'h1',
      host: '127.0.0.1',
      port: 0,
      name: 'h1-test',
      handler,
      ...(extra.onUpgrade === undefined ? {} : { onUpgrade: extra.onUpgrade }),
    },
    extra.tuning ?? {},
  );
  t.teardown(() => l.close());
  return l;
}

function echoTarget(req: IncomingRequest, res: ResponseSink): void {
  res.writeHead(200, ['content-type', 'text/plain']);
  res.end(Buffer.from(req.target));
}

t.test('absolute-form target reaches the handler unchanged', async (t) => {
  const seen: IncomingRequest[] = [];
  const l = await h1(t, (req, res) => {
    seen.push(req);
    echoTarget(req, res);
  });
  const r = await rawRequest(
    l.port,
    'GET http://reviews.default.svc:9080/p/q?x=1&y=%2F HTTP/1.1\r\nHost: reviews.default.svc:9080\r\n\r\n',
    { responses: 1 },
  );
  t.equal(r.responses[0]?.status, 200);
  t.equal(seen[0]?.target, 'http://reviews.default.svc:9080/p/q?x=1&y=%2F');
  t.equal(seen[0]?.engine, 'h1');
  // Without a path, as HTTP_PROXY clients send for the root.
  const r2 = await rawRequest(l.port, 'GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n', {
    responses: 1,
  });
  t.equal(r2.responses[0]?.body.toString(), 'http://example.com');
  // Authority-form outside CONNECT, asterisk-form outside OPTIONS: refused.
  const r3 = await rawRequest(l.port, `GET example.com:80 HTTP/1.1\r\n${H}\r\n`);
  t.equal(r3.responses[0]?.status, 400);
  t.ok(r3.closed);
  const r4 = await rawRequest(l.port, `OPTIONS * HTTP/1.1\r\n${H}\r\n`, { responses: 1 });
  t.equal(r4.responses[0]?.body.toString(), '*');
});

t.test('header names with _ and . reach the handler', async (t) => {
  let seen: IncomingRequest | null = null;
  const l = await h1(t, (req, res) => {
    seen = req;
    res.end();
  });
  const r = await rawRequest(
    l.port,
    `GET / HTTP/1.1\r\n${H}X_Api_Key: s3cr3t\r\nx.trace: 1\r\nX-Obs: caf\xe9\r\n\r\n`,
    { responses: 1 },
  );
  t.equal(r.responses[0]?.status, 200);
  t.same((seen as IncomingRequest | null)?.headers, [
    'host',
    'test.local',
    'x_api_key',
    's3cr3t',
    'x.trace',
    '1',
    'x-obs',
    'caf\xe9',
  ]);
});

t.test('pipelined requests run one at a time and are answered in order', async (t) => {
  const order: string[] = [];
  let active = 0;
  let maxActive = 0;
  const l = await h1(t, (req, res) => {
    active++;
    maxActive = Math.max(maxActive, active);
    order.push(req.target);
    // Later requests answer sooner: order must still hold.
    const delay = 40 - Number(req.target.slice(1)) * 10;
    setTimeout(() => {
      active--;
      echoTarget(req, res);
    }, delay);
  });
  const r = await rawRequest(
    l.port,
    `GET /0 HTTP/1.1\r\n${H}\r\nGET /1 HTTP/1.1\r\n${H}\r\nPOST /2 HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\n${H}\r\n`,
    { responses: 4 },
  );
  t.same(
    r.responses.map((x) => x.body.toString()),
    ['/0', '/1', '/2', '/3'],
  );
  t.same(order, ['/0', '/1', '/2', '/3']);
  t.equal(maxActive, 1, 'never two requests of one connection at the handler');
  t.notOk(r.closed);
});

t.test('a long pipeline (beyond the 64 KiB read bound) is answered completely and in order', async (t) => {
  const l = await h1(t, (req, res) => {
    if (req.target.endsWith('0')) setImmediate(() => echoTarget(req, res));
    else echoTarget(req, res);
  });
  const n = 3000;
  let batch = '';
  for (let i = 0; i < n; i++) batch += `GET /${i} HTTP/1.1\r\n${H}X-Pad: ${'p'.repeat(20)}\r\n\r\n`;
  t.ok(batch.length > 128 * 1024, `${batch.length} bytes pipelined`);
  const r = await rawRequest(l.port, batch, { responses: n, timeoutMs: 10000 });
  t.equal(r.responses.length, n);
  t.ok(
    r.responses.every((x, i) => x.body.toString() === `/${i}`),
    'in order',
  );
});

t.test('the body is read and dropped when the handler answers without reading it', async (t) => {
  const l = await h1(t, echoTarget);
  const body = 'x'.repeat(200_000);
  const r = await rawRequest(
    l.port,
    `POST /a HTTP/1.1\r\n${H}Content-Length: ${body.length}\r\n\r\n${body}GET /b HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\nGET /c HTTP/1.1\r\n${H}\r\n`,
    { responses: 3, timeoutMs: 5000 },
  );
  t.same(
    r.responses.map((x) => x.body.toString()),
    ['/a', '/b', '/c'],
  );
});

t.test('chunked request body with extensions and trailers arrives intact', async (t) => {
  const l = await h1(t, (req, res) => {
    const parts: Buffer[] = [];
    req.body?.onData((chunk, last) => {
      parts.push(chunk);
      if (last) res.end(Buffer.concat(parts));
    });
  });
  const r = await rawRequest(
    l.port,
    `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5;a=b;c="q\\"x"\r\nhello\r\nA\r\n 012345678\r\n0\r\nX-T: 1\r\nY-T: 2\r\n\r\n`,
    { responses: 1 },
  );
  t.equal(r.responses[0]?.body.toString(), 'hello 012345678');
  t.notOk(r.closed);
});

t.test('HTTP/1.0: closes after the response unless keep-alive was asked', async (t) => {
  const l = await h1(t, (req, res) => {
    if (req.target === '/stream') {
      res.writeHead(200, []);
      res.write(Buffer.from('ab'));
      setTimeout(() => res.end(Buffer.from('cd')), 10);
      return;
    }
    echoTarget(req, res);
  });
  const r = await rawRequest(l.port, 'GET /plain HTTP/1.0\r\n\r\n');
  t.equal(r.responses[0]?.status, 200, 'no Host needed');
  t.equal(r.responses[0]?.body.toString(), '/plain');
  t.equal(r.responses[0] === undefined ? undefined : header(r.responses[0], 'connection'), 'close');
  t.ok(r.closed, 'closed after the response');

  const c = new RawConn(l.port);
  t.teardown(() => c.destroy());
  c.write('GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
  const [first] = await c.responses(1);
  t.equal(first === undefined ? undefined : header(first, 'connection'), 'keep-alive');
  c.write('GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
  t.ok(await c.waitClosed(), 'unknown length on HTTP/1.0: close-delimited');
  const rs = await c.responses(2);
  t.equal(rs[1]?.body.toString(), 'abcd');
  t.equal(rs[1]?.untilClose, true);
  t.equal(rs[1] === undefined ? undefined : header(rs[1], 'transfer-encoding'), undefined);
});

t.test('Connection: close from the client: response says so, connection closes, rest unread', async (t) => {
  let calls = 0;
  const l = await h1(t, (req, res) => {
    calls++;
    echoTarget(req, res);
  });
  const r = await rawRequest(
    l.port,
    `GET /a HTTP/1.1\r\n${H}Connection: close\r\n\r\nGET /b HTTP/1.1\r\n${H}\r\n`,
  );
  t.equal(r.responses.length, 1);
  t.equal(r.responses[0] === undefined ? undefined : header(r.responses[0], 'connection'), 'close');
  t.ok(r.closed);
  t.equal(calls, 1);
});

t.test('limits and refusals', async (t) => {
  let calls = 0;
  const l = await h1(t, (req, res) => {
    calls++;
    echoTarget(req, res);
  });
  const big = await rawRequest(l.port, `GET / HTTP/1.1\r\n${H}X-Big: ${'b'.repeat(70 * 1024)}\r\n\r\n`);
  t.equal(big.responses[0]?.status, 431);
  t.equal(big.responses[0] === undefined ? undefined : header(big.responses[0], 'x-meshlet-flags'), 'DPE');
  t.ok(big.closed);
  // Many small fields add up too; the head never has to complete for the 431.
  let many = `GET / HTTP/1.1\r\n${H}`;
  for (let i = 0; i < 4000; i++) many += `X-F${i}: 0123456789\r\n`;
  const big2 = await rawRequest(l.port, many);
  t.equal(big2.responses[0]?.status, 431);

  const connectReq = await rawRequest(
    l.port,
    'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n',
  );
  t.equal(connectReq.responses[0]?.status, 501);
  t.ok(connectReq.closed);

  const unknown = await rawRequest(l.port, `BREW /pot HTTP/1.1\r\n${H}\r\n`);
  t.equal(unknown.responses[0]?.status, 501);
  t.ok(unknown.closed);

  const v2 = await rawRequest(l.port, `GET / HTTP/2.0\r\n${H}\r\n`);
  t.equal(v2.responses[0]?.status, 505);

  const fold = await rawRequest(l.port, `GET / HTTP/1.1\r\n${H}X-A: 1\r\n  folded\r\n\r\n`);
  t.equal(fold.responses[0]?.status, 400);
  t.match(fold.responses[0]?.body.toString() ?? '', /obsolete line folding/);

  const bareLf = await rawRequest(l.port, `GET / HTTP/1.1\nHost: x\n\n`);
  t.equal(bareLf.responses[0]?.status, 400);
  t.equal(calls, 0, 'nothing reached the handler');
});

t.test('malformed chunked body after the handler started: 400, onAborted, close', async (t) => {
  let aborted = false;
  const got: string[] = [];
  const l = await h1(t, (req, res) => {
    res.onAborted(() => {
      aborted = true;
    });
    req.body?.onData((chunk) => got.push(chunk.toString()));
  });
  const r = await rawRequest(
    l.port,
    `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n`,
  );
  t.equal(r.responses[0]?.status, 400);
  t.ok(r.closed);
  t.ok(aborted, 'the handler learns the request is gone');
  t.same(got, ['abc']);
  t.equal(l.inFlight(), 0);
});

t.test('Expect: 100-continue answered with a final response: the connection closes', async (t) => {
  const l = await h1(t, (_req, res) => {
    res.writeHead(413, ['content-length', '0']);
    res.end();
  });
  const r = await rawRequest(
    l.port,
    `PUT / HTTP/1.1\r\n${H}Content-Length: 100\r\nExpect: 100-continue\r\n\r\n`,
  );
  t.equal(r.responses[0]?.status, 413);
  t.notMatch(r.data.toString(), /100 Continue/, 'no 100 when the handler never read the body');
  t.ok(r.closed, 'the client may never send the body: no guessing where the next request starts');
});

t.test('upgrade: the socket and the bytes read after the head go to onUpgrade', async (t) => {
  let upgraded: IncomingRequest | null = null;
  let handlerCalls = 0;
  const l = await h1(
    t,
    (req, res) => {
      handlerCalls++;
      echoTarget(req, res);
    },
    {
      onUpgrade: (req, socket, head) => {
        upgraded = req;
        // The new owner starts reading later (as a tunnel does after connecting upstream).
        setTimeout(() => {
          socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n`);
          socket.write(head);
          socket.on('data', (d: Buffer) => socket.write(d));
          socket.on('end', () => socket.end());
        }, 30);
      },
    },
  );
  const c = new RawConn(l.port);
  t.teardown(() => c.destroy());
  // A plain request first, then the upgrade, with tunnel bytes in the same packet.
  c.write(
    `GET /first HTTP/1.1\r\n${H}\r\nGET /ws HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: echo\r\n\r\nearly`,
  );
  await sleep(10);
  c.write('-late');
  const ok = await c.until((b) => b.toString().endsWith('early-late'), 2000);
  t.ok(ok, 'buffered and later bytes reach the new owner, in order');
  t.match(c.data().toString(), /^HTTP\/1\.1 200 OK[\s\S]*\/firstHTTP\/1\.1 101 Switching Protocols/);
  t.equal((upgraded as IncomingRequest | null)?.target, '/ws');
  t.equal((upgraded as IncomingRequest | null)?.body, null);
  t.equal(handlerCalls, 1);
  l.close();
  await sleep(20);
  c.write('!');
  t.ok(
    await c.until((b) => b.toString().endsWith('!'), 1000),
    'close() leaves upgraded sockets to their owner',
  );
});

t.test('timeouts: idle keep-alive and slow head', async (t) => {
  const l = await h1(t, echoTarget, { tuning: { idleTimeoutMs: 200, headTimeoutMs: 200 } });
  const idle = new RawConn(l.port);
  t.teardown(() => idle.destroy());
  idle.write(`GET /a HTTP/1.1\r\n${H}\r\n`);
  await idle.responses(1);
  const t0 = Date.now();
  t.ok(await idle.waitClosed(2000), 'idle connection closed');
  const idleMs = Date.now() - t0;
  t.ok(idleMs >= 100 && idleMs < 1000, `after ${idleMs} ms`);

  const slow = new RawConn(l.port);
  t.teardown(() => slow.destroy());
  const t1 = Date.now();
  slow.write('GET /slow HTTP/1.1\r\nHost: x\r\n');
  // Trickle bytes: activity must not extend the head deadline.
  const trickle = setInterval(() => slow.write('X-A: 1\r\n'), 30);
  t.teardown(() => clearInterval(trickle));
  t.ok(await slow.waitClosed(2000), 'slow head cut');
  clearInterval(trickle);
  const slowMs = Date.now() - t1;
  t.ok(slowMs >= 100 && slowMs < 1000, `after ${slowMs} ms`);
  t.match(slow.data().toString(), /^HTTP\/1\.1 408 /);

  // A busy request is not cut by either timeout.
  const waiting: ResponseSink[] = [];
  const l2 = await h1(t, (_req, res) => waiting.push(res), {
    tuning: { idleTimeoutMs: 100, headTimeoutMs: 100 },
  });
  const busy = new RawConn(l2.port);
  t.teardown(() => busy.destroy());
  busy.write(`GET /busy HTTP/1.1\r\n${H}\r\n`);
  await sleep(400);
  t.notOk(busy.closed, 'in-flight request kept');
  waiting[0]?.end(Buffer.from('done'));
  const [resp] = await busy.responses(1);
  t.equal(resp?.body.toString(), 'done');
});

t.test('stopAccepting closes idle keep-alive connections at once', async (t) => {
  const l = await h1(t, echoTarget);
  const c = new RawConn(l.port);
  t.teardown(() => c.destroy());
  c.write(`GET /a HTTP/1.1\r\n${H}\r\n`);
  await c.responses(1);
  l.stopAccepting();
  t.ok(await c.waitClosed(500));
  const refused = await new Promise<string>((resolve) => {
    const s = connect({ port: l.port, host: '127.0.0.1' });
    s.on('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
  });
  t.equal(refused, 'ECONNREFUSED');
});

t.test('response framing details', async (t) => {
  const l = await h1(t, (req, res) => {
    switch (req.target) {
      case '/hop':
        res.writeHead(200, [
          'connection',
          'keep-alive',
          'keep-alive',
          'timeout=5',
          'transfer-encoding',
          'chunked',
          'x-ok',
          '1',
          'bad name',
          'x',
          'x-bad-value',
          'a\r\nb',
        ]);
        res.end(Buffer.from('hop'));
        return;
      case '/short':
        res.writeHead(200, ['content-length', '10']);
        res.end(Buffer.from('abc'));
        return;
      case '/long':
        res.writeHead(200, ['content-length', '3']);
        res.write(Buffer.from('abcdef'));
        res.end(Buffer.from('ghi'));
        return;
      default:
        res.writeHead(200, ['content-type', 'text/event-stream']);
    }
  });
  const hop = await rawRequest(l.port, `GET /hop HTTP/1.1\r\n${H}\r\n`, { responses: 1 });
  const resp = hop.responses[0];
  const headers = resp?.headers ?? [];
  const at = headers.indexOf('date');
  t.match(
    headers[at + 1],
    /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/,
    'a Date is added (IMF-fixdate)',
  );
  t.same(
    headers.filter((_, i) => i !== at && i !== at + 1),
    ['x-ok', '1', 'content-length', '3'],
    'framing and invalid fields dropped',
  );
  t.equal(resp?.body.toString(), 'hop');

  const short = await rawRequest(l.port, `GET /short HTTP/1.1\r\n${H}\r\n`);
  t.ok(short.closed, 'fewer bytes than content-length: cut');
  t.equal(short.responses.length, 0);

  const long = await rawRequest(l.port, `GET /long HTTP/1.1\r\n${H}\r\nGET /long HTTP/1.1\r\n${H}\r\n`, {
    responses: 2,
  });
  t.same(
    long.responses.map((x) => x.body.toString()),
    ['abc', 'abc'],
    'extra bytes beyond content-length dropped; framing intact',
  );

  // A head with no body in the same tick still goes out (event streams).
  const c = new RawConn(l.port);
  t.teardown(() => c.destroy());
  c.write(`GET /events HTTP/1.1\r\n${H}\r\n`);
  t.ok(
    await c.until((b) =>
      /^HTTP\/1\.1 200 OK\r\n[\s\S]*transfer-encoding: chunked\r\n\r\n$/.test(b.toString()),
    ),
    'head flushed',
  );
});

// ---- the parser, byte by byte ----------------------------------------------------------------

function feedHead(bytes: Buffer, step: number): { result: number; parser: HeadParser } {
  const p = new HeadParser();
  let buf = Buffer.alloc(0);
  let result = HEAD_INCOMPLETE;
  for (let i = 0; i < bytes.length && result === HEAD_INCOMPLETE; i += step) {
    buf = Buffer.concat([buf, bytes.subarray(i, i + step)]);
    result = p.parse(buf);
  }
  return { result, parser: p };
}

t.test('head parser: same result whole and byte by byte', async (t) => {
  const raw = Buffer.from(
    `\r\nPOST http://h:1/p?q HTTP/1.1\r\nHost: h:1\r\nX_Y:  v  \r\nEmpty:\r\nConnection: keep-alive, Upgrade\r\nExpect: 100-Continue\r\n\r\nBODY`,
    'latin1',
  );
  for (const step of [raw.length, 1, 3]) {
    const { result, parser } = feedHead(raw, step);
    t.equal(result, raw.length - 4, `step ${step}: head ends before the body`);
    t.equal(parser.method, 'POST');
    t.equal(parser.target, 'http://h:1/p?q');
    t.equal(parser.form, 'absolute');
    t.same(parser.headers, [
      'host',
      'h:1',
      'x_y',
      'v',
      'empty',
      '',
      'connection',
      'keep-alive, Upgrade',
      'expect',
      '100-Continue',
    ]);
    t.ok(parser.keepAlive);
    t.ok(parser.expectContinue);
  }
  for (const [bad, status] of [
    ['GET / HTTP/1.1\r\nA: 1\rB: 2\r\n\r\n', 400],
    ['GET / HTTP/1.1\r\nA : 1\r\n\r\n', 400],
    ['GET / HTTP/1.1\r\nA: \x001\r\n\r\n', 400],
    ['GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n', 400],
    ['GET / HTTP/3.0\r\n\r\n', 505],
    ['GET  / HTTP/1.1\r\n\r\n', 400],
  ] as const) {
    for (const step of [1, 1000]) {
      const { result, parser } = feedHead(Buffer.from(bad, 'latin1'), step);
      t.equal(result, HEAD_ERROR, `${JSON.stringify(bad)} step ${step}`);
      t.equal(parser.errorStatus, status);
    }
  }
});

t.test('chunked decoder: byte by byte', async (t) => {
  const raw = Buffer.from(
    '4;x="a;b"\r\nWiki\r\n5\r\npedia\r\ne\r\n in\r\n\r\nchunks.\r\n0\r\nT: 1\r\n\r\nNEXT',
  );
  const dec = new ChunkedDecoder();
  const out: Buffer[] = [];
  let done = -1;
  for (let i = 0; i < raw.length && done === -1; i++) {
    const one = raw.subarray(i, i + 1);
    let pos = 0;
    while (pos < one.length) {
      pos = dec.step(one, pos);
      if (dec.event === CHUNK_DATA) out.push(one.subarray(dec.dataStart, dec.dataEnd));
      else if (dec.event === CHUNK_DONE) {
        done = i + 1;
        break;
      } else if (dec.event === CHUNK_ERROR) t.fail(dec.errorText);
    }
  }
  t.equal(Buffer.concat(out).toString(), 'Wikipedia in\r\n\r\nchunks.');
  t.equal(raw.subarray(done).toString(), 'NEXT');
  for (const bad of [
    '5 \r\nhello\r\n',
    '5;\r\n',
    '5\r\nhelloX\r\n',
    'fffffffffffffff\r\n',
    '0\r\nbad trailer\r\n\r\n',
  ]) {
    const d = new ChunkedDecoder();
    const b = Buffer.from(bad);
    let pos = 0;
    while (pos < b.length && d.event !== CHUNK_ERROR) pos = d.step(b, pos);
    t.equal(d.event, CHUNK_ERROR, JSON.stringify(bad));
  }
});
