/**
 * Behavior of the lean HTTP/1.1 client (src/upstream/h1-client.ts) against real node:http servers and
 * raw `net` servers on loopback: round trips, keep-alive reuse and its limits, chunked bodies both ways,
 * 64 MiB bodies with backpressure both ways, bodiless responses, failures and their classification,
 * abort, the stale keep-alive retry, the undici fallback; the per-request connection policy
 * (`maxRequestsPerConnection`, `idleTimeoutMs`, `connectTimeoutMs`), `requestWritten` and
 * `connections(id)`.
 */
import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type AddressInfo, createServer as createNetServer, type Socket } from 'node:net';
import t, { type Test } from 'tap';
import type { BodyStream, HeaderList } from '../../../src/listener/listener-types.ts';
import { createH1Upstream, type H1Upstream } from '../../../src/upstream/h1-client.ts';
import { createUndiciUpstream } from '../../../src/upstream/undici-upstream.ts';
import type {
  UpstreamCall,
  UpstreamClient,
  UpstreamHandler,
  UpstreamRequest,
  UpstreamTarget,
} from '../../../src/upstream/upstream-types.ts';
import { blackholePort } from './blackhole-port.ts';
import {
  closedPort,
  GeneratedBody,
  MiB,
  netServer,
  newOutcome,
  type Outcome,
  pumpingServer,
  recordInto,
  request,
  roundTrip,
  type Served,
  httpServer as serveHttp,
} from './upstream-harness.ts';

function header(headers: HeaderList, name: string): string | undefined {
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === name) return headers[i + 1];
  return undefined;
}

function httpServer(t: Test, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Served> {
  return serveHttp(t, handler, { keepAliveTimeout: 30_000 });
}

/** A raw server: `onRequest(socket, n)` for each request head (n counts requests on that socket, from 1). */
function rawServer(t: Test, onRequest: (socket: Socket, n: number, head: string) => void): Promise<Served> {
  return netServer(t, (socket) => {
    let buffered = '';
    let n = 0;
    socket.on('data', (b: Buffer) => {
      buffered += b.toString('latin1');
      for (;;) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buffered.slice(0, end + 4);
        buffered = buffered.slice(end + 4);
        onRequest(socket, ++n, head);
      }
    });
  });
}

const unusedFallback: UpstreamClient = {
  send() {
    throw new Error('fallback used');
  },
  close: async () => {},
};

function client(t: Test, opts: Partial<Parameters<typeof createH1Upstream>[0]> = {}): H1Upstream {
  const c = createH1Upstream({ fallback: unusedFallback, ...opts });
  t.teardown(() => c.close());
  return c;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
  });
}

/** A BodyStream over fixed chunks, delivered on later ticks. */
class ListBody implements BodyStream {
  pauses = 0;
  private readonly chunks: Buffer[];
  constructor(chunks: Buffer[]) {
    this.chunks = chunks;
  }
  onData(cb: (chunk: Buffer, last: boolean) => void): void {
    const all = this.chunks;
    let i = 0;
    const next = (): void => {
      const c = all[i++] ?? Buffer.alloc(0);
      cb(c, i >= all.length);
      if (i < all.length) setImmediate(next);
    };
    setImmediate(next);
  }
  pause(): void {
    this.pauses++;
  }
  resume(): void {}
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------

t.test('GET round trip: status, headers lowercased without hop-by-hop, body', async (t) => {
  let seen: IncomingMessage | null = null;
  const s = await httpServer(t, (req, res) => {
    seen = req;
    res.setHeader('X-Answer', '42');
    res.setHeader('Connection', 'keep-alive, x-private');
    res.setHeader('x-private', 'dropped');
    res.end('hello');
  });
  const o = await roundTrip(
    client(t),
    s.target,
    request({ path: '/a?b=c', headers: ['host', 'svc', 'x-in', '1'] }),
  );
  t.equal(o.status, 200);
  t.ok(o.ended);
  t.equal(o.body.toString(), 'hello');
  t.equal(header(o.headers, 'x-answer'), '42');
  t.equal(header(o.headers, 'content-length'), '5');
  t.equal(header(o.headers, 'connection'), undefined, 'connection removed');
  t.equal(header(o.headers, 'keep-alive'), undefined, 'keep-alive removed');
  t.equal(header(o.headers, 'x-private'), undefined, 'Connection-named header removed');
  const req = seen as IncomingMessage | null;
  t.equal(req?.url, '/a?b=c');
  t.equal(req?.headers['x-in'], '1');
  t.equal(req?.headers.host, 'svc');
  t.equal(req?.httpVersion, '1.1');
});

t.test('POST with content-length body; POST without body gets content-length: 0', async (t) => {
  const seen: Array<{ cl: string | undefined; te: string | undefined; body: string }> = [];
  const s = await httpServer(t, (req, res) => {
    readBody(req).then((b) => {
      seen.push({
        cl: req.headers['content-length'],
        te: req.headers['transfer-encoding'],
        body: b.toString(),
      });
      res.end(`got ${b.length}`);
    });
  });
  const c = client(t);
  const body = new ListBody([Buffer.from('abc'), Buffer.from('defg')]);
  const o = await roundTrip(
    c,
    s.target,
    request({ method: 'POST', headers: ['host', 'svc', 'content-length', '7'], body }),
  );
  t.equal(o.body.toString(), 'got 7');
  t.same(seen[0], { cl: '7', te: undefined, body: 'abcdefg' });
  const o2 = await roundTrip(c, s.target, request({ method: 'POST' }));
  t.equal(o2.body.toString(), 'got 0');
  t.same(seen[1], { cl: '0', te: undefined, body: '' });
  const o3 = await roundTrip(c, s.target, request({ method: 'DELETE' }));
  t.equal(o3.status, 200);
  t.same(seen[2], { cl: undefined, te: undefined, body: '' }, 'DELETE without body: no framing header');
  t.equal(s.connections(), 1, 'one connection for all three');
});

t.test('keep-alive: sequential requests reuse one socket', async (t) => {
  const s = await httpServer(t, (_req, res) => res.end('x'));
  const c = client(t);
  for (let i = 0; i < 20; i++) {
    const o = await roundTrip(c, s.target, request());
    t.equal(o.body.toString(), 'x');
  }
  t.equal(s.connections(), 1, 'server saw one connection');
  t.same(c.endpoints(), [`127.0.0.1:${s.target.port}`]);
});

t.test('concurrent requests open more sockets, then reuse them', async (t) => {
  const s = await httpServer(t, (_req, res) => setTimeout(() => res.end('y'), 5));
  const c = client(t);
  const round = (): Promise<Outcome[]> =>
    Promise.all(Array.from({ length: 8 }, () => roundTrip(c, s.target, request())));
  for (const o of await round()) t.equal(o.body.toString(), 'y');
  const after1 = s.connections();
  t.equal(after1, 8);
  for (const o of await round()) t.equal(o.body.toString(), 'y');
  t.equal(s.connections(), 8, 'second round reused the 8 sockets');
});

t.test('chunked request body (no content-length) and chunked response body', async (t) => {
  let te: string | undefined;
  const s = await httpServer(t, (req, res) => {
    te = req.headers['transfer-encoding'];
    readBody(req).then((b) => {
      res.write(b.subarray(0, 3));
      setTimeout(() => {
        res.write(b.subarray(3));
        res.end('!');
      }, 10);
    });
  });
  const c = client(t);
  const body = new ListBody([Buffer.from('hel'), Buffer.alloc(0), Buffer.from('lo wor'), Buffer.from('ld')]);
  const o = await roundTrip(c, s.target, request({ method: 'PUT', body }));
  t.equal(te, 'chunked');
  t.equal(o.body.toString(), 'hello world!');
  t.equal(header(o.headers, 'transfer-encoding'), undefined, 'transfer-encoding removed');
  const again = await roundTrip(
    c,
    s.target,
    request({ method: 'PUT', body: new ListBody([Buffer.from('z')]) }),
  );
  t.equal(again.body.toString(), 'z!');
  t.equal(s.connections(), 1, 'reused after a chunked exchange');
});

t.test('HEAD, 204 and 304 carry no body and keep the socket', async (t) => {
  const s = await httpServer(t, (req, res) => {
    if (req.url === '/204') {
      res.writeHead(204);
      res.end();
    } else if (req.url === '/304') {
      res.writeHead(304, { etag: '"e"' });
      res.end();
    } else {
      res.writeHead(200, { 'content-length': '100' });
      res.end(req.method === 'HEAD' ? undefined : 'x'.repeat(100));
    }
  });
  const c = client(t);
  const head = await roundTrip(c, s.target, request({ method: 'HEAD' }));
  t.equal(head.status, 200);
  t.ok(head.ended);
  t.equal(head.body.length, 0);
  t.equal(header(head.headers, 'content-length'), '100');
  const nc = await roundTrip(c, s.target, request({ path: '/204' }));
  t.equal(nc.status, 204);
  t.ok(nc.ended);
  const nm = await roundTrip(c, s.target, request({ path: '/304' }));
  t.equal(nm.status, 304);
  t.ok(nm.ended);
  const get = await roundTrip(c, s.target, request());
  t.equal(get.body.length, 100);
  t.equal(s.connections(), 1, 'all on one socket');
});

t.test('Connection: close responses are not reused; HTTP/1.0 only with keep-alive', async (t) => {
  const s = await rawServer(t, (socket, _n, head) => {
    if (head.includes('/close'))
      socket.write('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok');
    else if (head.includes('/http10-ka'))
      socket.write('HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok');
    else socket.write('HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok');
  });
  const c = client(t);
  for (let i = 0; i < 3; i++)
    t.equal((await roundTrip(c, s.target, request({ path: '/close' }))).body.toString(), 'ok');
  t.equal(s.connections(), 3, 'Connection: close: a new socket each time');
  for (let i = 0; i < 2; i++)
    t.equal((await roundTrip(c, s.target, request({ path: '/http10' }))).body.toString(), 'ok');
  t.equal(s.connections(), 5, 'HTTP/1.0 without keep-alive: a new socket each time');
  for (let i = 0; i < 3; i++)
    t.equal((await roundTrip(c, s.target, request({ path: '/http10-ka' }))).body.toString(), 'ok');
  t.equal(s.connections(), 6, 'HTTP/1.0 with keep-alive: reused');
  await sleep(20);
  t.equal(s.open(), 1, 'the non-reusable sockets were closed by the client');
});

t.test('bytes after a complete response: the socket is not reused', async (t) => {
  const s = await rawServer(t, (socket) => {
    socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA');
  });
  const c = client(t);
  const a = await roundTrip(c, s.target, request());
  t.equal(a.body.toString(), 'ok');
  const b = await roundTrip(c, s.target, request());
  t.equal(b.body.toString(), 'ok');
  t.equal(s.connections(), 2);
});

t.test('idle sockets close after keepAliveTimeoutMs, and after the server hint minus 1 s', async (t) => {
  const answer = (hint: string) => (socket: Socket) =>
    socket.write(`HTTP/1.1 200 OK\r\n${hint}Content-Length: 1\r\n\r\nk`);
  const c = client(t, { keepAliveTimeoutMs: 200 });
  const plain = await rawServer(t, answer(''));
  await roundTrip(c, plain.target, request());
  t.equal(plain.open(), 1);
  await sleep(450);
  t.equal(plain.open(), 0, 'no hint: closed by the sweep after ~200 ms');
  const hint3 = await rawServer(t, answer('Keep-Alive: timeout=3\r\n'));
  await roundTrip(c, hint3.target, request());
  await sleep(450);
  t.equal(hint3.open(), 1, 'timeout=3 keeps the socket beyond keepAliveTimeoutMs (2 s)');
  await roundTrip(c, hint3.target, request());
  t.equal(hint3.connections(), 1, 'and reuses it');
  const hint1 = await rawServer(t, answer('Keep-Alive: timeout=1\r\n'));
  await roundTrip(c, hint1.target, request());
  await roundTrip(c, hint1.target, request());
  t.equal(hint1.connections(), 2, 'timeout=1 → 1 s - 1 s = 0: never reused');
});

t.test('maxIdlePerEndpoint caps the idle sockets kept', async (t) => {
  const s = await httpServer(t, (_req, res) => setTimeout(() => res.end('m'), 5));
  const c = client(t, { maxIdlePerEndpoint: 2 });
  await Promise.all(Array.from({ length: 5 }, () => roundTrip(c, s.target, request())));
  await sleep(20);
  t.equal(s.open(), 2);
});

t.test('64 MiB request body to a slow reader: BodyStream paused, producer bounded', async (t) => {
  const SIZE = 64 * MiB;
  let received = 0;
  let readerStarted = false;
  const s = await httpServer(t, (req, res) => {
    req.pause();
    setTimeout(() => {
      readerStarted = true;
      req.on('data', (b: Buffer) => {
        received += b.length;
      });
      req.resume();
    }, 300);
    req.on('end', () => res.end(String(received)));
  });
  const c = client(t);
  const body = new GeneratedBody(SIZE);
  let producedWhileStalled = -1;
  setTimeout(() => {
    producedWhileStalled = readerStarted ? -2 : body.produced;
  }, 250);
  const o = await roundTrip(
    c,
    s.target,
    request({ method: 'POST', headers: ['host', 'svc', 'content-length', String(SIZE)], body }),
  );
  t.equal(o.body.toString(), String(SIZE), 'every byte arrived');
  t.ok(body.pauses > 0, `BodyStream.pause called ${body.pauses}×`);
  t.ok(body.resumes > 0, `BodyStream.resume called ${body.resumes}×`);
  t.ok(
    producedWhileStalled >= 0 && producedWhileStalled < 16 * MiB,
    `while the server did not read, ${(producedWhileStalled / MiB).toFixed(1)} MiB were produced`,
  );
});

t.test('64 MiB chunked request body (no content-length) arrives intact', async (t) => {
  const SIZE = 64 * MiB;
  const s = await httpServer(t, (req, res) => {
    let n = 0;
    let bad = 0;
    req.on('data', (b: Buffer) => {
      n += b.length;
      for (let i = 0; i < b.length; i += 4096) if (b[i] !== 0x61) bad++;
    });
    req.on('end', () => res.end(`${n}/${bad}/${req.headers['transfer-encoding']}`));
  });
  const body = new GeneratedBody(SIZE);
  const o = await roundTrip(client(t), s.target, request({ method: 'POST', body }));
  t.equal(o.body.toString(), `${SIZE}/0/chunked`);
});

t.test(
  '64 MiB response to a consumer returning false: the socket is paused, the server stalls',
  async (t) => {
    const SIZE = 64 * MiB;
    const s = await pumpingServer(t, SIZE, { keepAliveTimeout: 30_000 });
    const c = client(t);
    let received = 0;
    let pauses = 0;
    let writtenAtPause = -1;
    let writtenAfterStall = -2;
    await new Promise<void>((resolve, reject) => {
      const call: UpstreamCall = c.send(s.target, request(), {
        onHeaders() {},
        onData(chunk) {
          received += chunk.length;
          if (received % (8 * MiB) < chunk.length) {
            pauses++;
            const first = pauses === 1;
            if (first) setTimeout(() => (writtenAtPause = s.written()), 100);
            setTimeout(
              () => {
                if (first) writtenAfterStall = s.written();
                call.resume();
              },
              first ? 300 : 5,
            );
            return false;
          }
          return true;
        },
        onEnd: () => resolve(),
        onError: (f, _a, d) => reject(new Error(`${f}: ${d}`)),
      });
    });
    t.equal(received, SIZE, 'every byte arrived');
    t.ok(pauses >= 8, `consumer paused ${pauses}×`);
    t.equal(writtenAfterStall, writtenAtPause, 'the server made no progress while the consumer was paused');
    t.ok(
      writtenAtPause < 32 * MiB,
      `server had written ${(writtenAtPause / MiB).toFixed(1)} MiB at the stall`,
    );
  },
);

t.test('resume() called inside onData does not pause', async (t) => {
  const s = await httpServer(t, (_req, res) => {
    res.write('a');
    setTimeout(() => res.end('b'), 10);
  });
  const c = client(t);
  let call: UpstreamCall | null = null;
  const text = await new Promise<string>((resolve, reject) => {
    let got = '';
    call = c.send(s.target, request(), {
      onHeaders() {},
      onData(chunk) {
        got += chunk.toString();
        call?.resume();
        return false;
      },
      onEnd: () => resolve(got),
      onError: (f, _a, d) => reject(new Error(`${f}: ${d}`)),
    });
  });
  t.equal(text, 'ab');
});

t.test('connect refused → connect, before headers', async (t) => {
  const s = await httpServer(t, () => {});
  const port = s.target.port;
  // Find a closed port: listen, note it, close.
  const unused = await closedPort();
  t.not(unused, port);
  const o = await roundTrip(client(t), { address: '127.0.0.1', port: unused }, request());
  t.equal(o.error?.failure, 'connect');
  t.equal(o.error?.afterHeaders, false);
  t.match(o.error?.detail, /ECONNREFUSED/);
});

t.test('connect timeout → timeout', async (t) => {
  const port = await blackholePort(t);
  const c = client(t, { connectTimeoutMs: 200 });
  const started = Date.now();
  const o = await roundTrip(c, { address: '127.0.0.1', port }, request());
  t.equal(o.error?.failure, 'timeout', o.error?.detail ?? '');
  t.equal(o.error?.afterHeaders, false);
  t.ok(Date.now() - started >= 150, 'after about the connect timeout');
});

t.test('reset before headers → reset, afterHeaders false', async (t) => {
  const s = await rawServer(t, (socket) => socket.resetAndDestroy());
  const o = await roundTrip(client(t), s.target, request());
  t.equal(o.error?.failure, 'reset');
  t.equal(o.error?.afterHeaders, false);
  const s2 = await rawServer(t, (socket) => socket.end());
  const o2 = await roundTrip(client(t), s2.target, request());
  t.equal(o2.error?.failure, 'reset', 'clean close before any response byte');
  t.equal(o2.error?.afterHeaders, false);
});

t.test('reset after headers → reset, afterHeaders true, body so far delivered', async (t) => {
  const s = await rawServer(t, (socket) => {
    socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial');
    setTimeout(() => socket.resetAndDestroy(), 20);
  });
  const o = await roundTrip(client(t), s.target, request());
  t.equal(o.status, 200);
  t.equal(o.error?.failure, 'reset');
  t.equal(o.error?.afterHeaders, true);
  t.equal(o.body.toString(), 'partial');
  const s2 = await rawServer(t, (socket) => {
    socket.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
  });
  const o2 = await roundTrip(client(t), s2.target, request());
  t.equal(o2.error?.failure, 'reset', 'FIN in the middle of a chunked body');
  t.equal(o2.error?.afterHeaders, true);
  t.equal(o2.body.toString(), 'hello');
});

t.test('invalid responses → protocol', async (t) => {
  const cases: Array<[string, string, boolean]> = [
    ['garbage', 'SSH-2.0-OpenSSH\r\n\r\n', false],
    ['bad header', 'HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n', false],
    ['obs-fold', 'HTTP/1.1 200 OK\r\nA: b\r\n c\r\nContent-Length: 0\r\n\r\n', false],
    ['duplicate content-length', 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx', false],
    [
      'TE + CL',
      'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n',
      false,
    ],
    ['content-length list', 'HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\nx', false],
    ['NUL in value', 'HTTP/1.1 200 OK\r\nA: b\0c\r\nContent-Length: 0\r\n\r\n', false],
    ['bad chunk size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', true],
    ['chunk without CRLF', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\n', true],
    [
      'unsolicited 101',
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n',
      false,
    ],
    ['head too large', `HTTP/1.1 200 OK\r\nA: ${'a'.repeat(70 * 1024)}\r\n\r\n`, false],
  ];
  for (const [name, raw, afterHeaders] of cases) {
    const s = await rawServer(t, (socket) => socket.write(raw));
    const o = await roundTrip(client(t), s.target, request());
    t.equal(o.error?.failure, 'protocol', `${name}: ${o.error?.detail}`);
    t.equal(o.error?.afterHeaders, afterHeaders, `${name}: afterHeaders`);
    await sleep(10);
    t.equal(s.open(), 0, `${name}: connection closed`);
  }
});

t.test('interim 1xx responses are skipped; trailers are dropped', async (t) => {
  const s = await rawServer(t, (socket) => {
    socket.write('HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n');
    setTimeout(() => {
      socket.write(
        'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext="q;v"\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n',
      );
    }, 10);
  });
  const c = client(t);
  const o = await roundTrip(c, s.target, request());
  t.equal(o.status, 200);
  t.equal(o.body.toString(), 'abc');
  t.equal(header(o.headers, 'link'), undefined, 'no header of the interim response');
  const o2 = await roundTrip(c, s.target, request());
  t.equal(o2.body.toString(), 'abc');
  t.equal(s.connections(), 1, 'reused after trailers');
});

t.test('a response head split across many reads', async (t) => {
  const raw = 'HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 5\r\n\r\nhello';
  const s = await rawServer(t, (socket) => {
    let i = 0;
    const next = (): void => {
      if (i >= raw.length) return;
      socket.write(raw.slice(i, i + 3));
      i += 3;
      setTimeout(next, 2);
    };
    next();
  });
  const o = await roundTrip(client(t), s.target, request());
  t.equal(o.status, 200);
  t.equal(header(o.headers, 'x-a'), '1');
  t.equal(o.body.toString(), 'hello');
});

t.test('abort: socket destroyed, no callback afterwards, never reused', async (t) => {
  const s = await httpServer(t, (req, res) => {
    if (req.url === '/slow') {
      res.write('part');
      return; // never ends
    }
    res.end('fine');
  });
  const c = client(t);
  let calls = 0;
  const call = c.send(s.target, request({ path: '/slow' }), {
    onHeaders() {
      calls++;
    },
    onData() {
      calls++;
      return true;
    },
    onEnd() {
      calls += 100;
    },
    onError() {
      calls += 100;
    },
  });
  await sleep(50);
  const before = calls;
  t.equal(before, 2, 'headers and one chunk');
  call.abort();
  call.abort();
  call.resume();
  await sleep(50);
  t.equal(calls, before, 'nothing after abort');
  t.equal(s.open(), 0, 'socket closed');
  const o = await roundTrip(c, s.target, request());
  t.equal(o.body.toString(), 'fine');
  t.equal(s.connections(), 2, 'a new socket for the next request');
  // Abort while connecting: nothing at all.
  let fired = false;
  const early = c.send({ address: '127.0.0.1', port: s.target.port }, request({ path: '/slow' }), {
    onHeaders: () => (fired = true),
    onData: () => true,
    onEnd: () => (fired = true),
    onError: () => (fired = true),
  });
  early.abort();
  await sleep(50);
  t.notOk(fired);
});

t.test('stale keep-alive: a socket closed by the server under a new request is retried once', async (t) => {
  for (const mode of ['fin', 'rst'] as const) {
    // Answers the first request on a socket, then closes the socket when the second arrives.
    const s = await rawServer(t, (socket, n) => {
      if (n === 1) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      else if (mode === 'fin') socket.end();
      else socket.resetAndDestroy();
    });
    const c = client(t);
    const a = await roundTrip(c, s.target, request());
    t.equal(a.body.toString(), 'ok');
    const b = await roundTrip(c, s.target, request());
    t.equal(b.body.toString(), 'ok', `${mode}: retried transparently`);
    t.equal(b.error, null);
    t.equal(s.connections(), 2, `${mode}: on a fresh connection`);
    // The retry happens once: a server that drops every reused request still fails after one retry.
  }
});

t.test('stale keep-alive: requests with a body are not retried', async (t) => {
  const s = await rawServer(t, (socket, n) => {
    if (n === 1) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    else socket.end();
  });
  const c = client(t);
  t.equal((await roundTrip(c, s.target, request())).body.toString(), 'ok');
  const o = await roundTrip(
    c,
    s.target,
    request({
      method: 'POST',
      headers: ['host', 'svc', 'content-length', '1'],
      body: new ListBody([Buffer.from('x')]),
    }),
  );
  t.equal(o.error?.failure, 'reset');
  t.equal(o.error?.afterHeaders, false);
  t.equal(s.connections(), 1);
});

t.test('a server that closes idle sockets right after responding: every request succeeds', async (t) => {
  const s = await rawServer(t, (socket) => {
    socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    setImmediate(() => socket.end());
  });
  const c = client(t);
  for (let i = 0; i < 30; i++) {
    const o = await roundTrip(c, s.target, request());
    t.equal(o.body.toString(), 'ok');
    if (i % 3 === 0) await sleep(1);
  }
});

t.test('a response arriving before the request body is complete: socket not reused', async (t) => {
  const s = await httpServer(t, (req, res) => {
    res.end('early');
    req.resume();
  });
  const c = client(t);
  const body = new ListBody([Buffer.from('a'), Buffer.from('b'), Buffer.from('c')]);
  const o = await roundTrip(
    c,
    s.target,
    request({ method: 'POST', headers: ['host', 'svc', 'content-length', '3'], body }),
  );
  t.equal(o.body.toString(), 'early');
  await sleep(30);
  const o2 = await roundTrip(c, s.target, request());
  t.equal(o2.body.toString(), 'early');
});

t.test('request body longer or shorter than its content-length → reset', async (t) => {
  const s = await httpServer(t, (req, res) => {
    req.resume();
    req.on('end', () => res.end('x'));
  });
  const c = client(t);
  const long = await roundTrip(
    c,
    s.target,
    request({
      method: 'POST',
      headers: ['host', 'svc', 'content-length', '2'],
      body: new ListBody([Buffer.from('abc')]),
    }),
  );
  t.equal(long.error?.failure, 'reset');
  const short = await roundTrip(
    c,
    s.target,
    request({
      method: 'POST',
      headers: ['host', 'svc', 'content-length', '5'],
      body: new ListBody([Buffer.from('abc')]),
    }),
  );
  t.equal(short.error?.failure, 'reset');
});

t.test('a request head that cannot be sent → protocol, asynchronously, nothing written', async (t) => {
  const s = await httpServer(t, (_req, res) => res.end());
  const c = client(t);
  let sync = true;
  const p = roundTrip(c, s.target, request({ headers: ['host', 'svc', 'x-evil', 'a\r\nx-injected: 1'] }));
  sync = false;
  const o = await p;
  t.notOk(sync);
  t.equal(o.error?.failure, 'protocol');
  t.equal(s.connections(), 0);
  const o2 = await roundTrip(c, s.target, request({ path: '/a b' }));
  t.equal(o2.error?.failure, 'protocol');
});

/** Records which requests reach the fallback, and forwards them to a real undici client. */
function spyFallback(): { client: UpstreamClient; used: string[] } {
  const undici = createUndiciUpstream();
  const used: string[] = [];
  return {
    used,
    client: {
      send(target: UpstreamTarget, req: UpstreamRequest, handler: UpstreamHandler): UpstreamCall {
        used.push(`${target.address} ${req.path}`);
        return undici.send(target, req, handler);
      },
      close: () => undici.close(),
    },
  };
}

t.test('fallback to undici: host names, expectContinue, upgrade requests', async (t) => {
  const s = await httpServer(t, (req, res) => res.end(`via ${req.url}`));
  const spy = spyFallback();
  const c = createH1Upstream({ fallback: spy.client });
  t.teardown(() => c.close());
  const byName = await roundTrip(c, { address: 'localhost', port: s.target.port }, request({ path: '/dns' }));
  t.equal(byName.body.toString(), 'via /dns');
  const expect = await roundTrip(
    c,
    s.target,
    request({
      method: 'POST',
      path: '/expect',
      headers: ['host', 'svc', 'content-length', '1'],
      body: new ListBody([Buffer.from('x')]),
      expectContinue: true,
    }),
  );
  t.equal(expect.body.toString(), 'via /expect');
  const lean = await roundTrip(c, s.target, request({ path: '/lean' }));
  t.equal(lean.body.toString(), 'via /lean');
  t.same(spy.used, ['localhost /dns', '127.0.0.1 /expect'], 'only those went to the fallback');
  // An upgrade request is handed over as is (the fallback decides what to do with it).
  let upgraded = '';
  const stub = createH1Upstream({
    fallback: {
      send(_target, req, handler) {
        upgraded = req.path;
        queueMicrotask(() => handler.onError('protocol', false, 'stub'));
        return { resume() {}, abort() {} };
      },
      close: async () => {},
    },
  });
  await roundTrip(
    stub,
    s.target,
    request({ path: '/ws', headers: ['host', 'svc', 'connection', 'upgrade', 'upgrade', 'websocket'] }),
  );
  t.equal(upgraded, '/ws');
  await stub.close();
});

t.test(
  'close(): idle sockets closed, in-flight requests finish, the fallback is closed, then refusal',
  async (t) => {
    const s = await httpServer(t, (req, res) => {
      if (req.url === '/slow') setTimeout(() => res.end('late'), 100);
      else res.end('now');
    });
    let fallbackClosed = false;
    const c = createH1Upstream({
      fallback: {
        send() {
          throw new Error('unused');
        },
        close: async () => {
          fallbackClosed = true;
        },
      },
    });
    await roundTrip(c, s.target, request());
    const slow = roundTrip(c, s.target, request({ path: '/slow' }));
    await sleep(10);
    let closed = false;
    const closing = c.close().then(() => (closed = true));
    await sleep(20);
    t.notOk(closed, 'close waits for the request in flight');
    t.equal((await slow).body.toString(), 'late');
    await closing;
    t.ok(fallbackClosed);
    await sleep(10);
    t.equal(s.open(), 0, 'every socket closed');
    const after = await roundTrip(c, s.target, request());
    t.equal(after.error?.failure, 'connect');
  },
);

t.test('retain(): forgets endpoints not kept and closes their idle sockets', async (t) => {
  const a = await httpServer(t, (_req, res) => res.end('a'));
  const b = await httpServer(t, (_req, res) => res.end('b'));
  const c = client(t);
  await roundTrip(c, a.target, request());
  await roundTrip(c, b.target, request());
  t.equal(c.endpoints().length, 2);
  c.retain(new Set([`127.0.0.1:${a.target.port}`]));
  t.same(c.endpoints(), [`127.0.0.1:${a.target.port}`]);
  await sleep(20);
  t.equal(a.open(), 1);
  t.equal(b.open(), 0);
  t.equal(
    (await roundTrip(c, b.target, request())).body.toString(),
    'b',
    'a dropped endpoint comes back on use',
  );
});

// ---- per-request connection policy, requestWritten, connection counts ----

/** A round trip that also records `requestWritten` (undefined when the client left it out). */
function roundTripWritten(
  c: UpstreamClient,
  target: UpstreamTarget,
  req: UpstreamRequest,
): Promise<Outcome & { written: boolean | undefined }> {
  return new Promise((resolve) => {
    const o = { ...newOutcome(), written: undefined as boolean | undefined };
    const inner = recordInto(o, [], () => resolve(o));
    c.send(target, req, {
      ...inner,
      onError(failure, afterHeaders, detail, requestWritten) {
        o.written = requestWritten;
        inner.onError(failure, afterHeaders, detail, requestWritten);
      },
    });
  });
}

t.test('maxRequestsPerConnection 1: a new connection per request, connection: close sent', async (t) => {
  const seen: Array<string | undefined> = [];
  const s = await httpServer(t, (req, res) => {
    seen.push(req.headers.connection);
    res.end('one');
  });
  const c = client(t);
  const pool = { maxRequestsPerConnection: 1 };
  for (let i = 0; i < 4; i++) {
    const o = await roundTrip(c, s.target, request({ pool }));
    t.equal(o.body.toString(), 'one');
  }
  t.equal(s.connections(), 4, 'the server saw 4 connections');
  t.same(seen, ['close', 'close', 'close', 'close']);
  await sleep(20);
  t.equal(s.open(), 0, 'none kept open');
  t.equal(c.connections(`127.0.0.1:${s.target.port}`), 0);
});

t.test('maxRequestsPerConnection 2: each connection serves two requests', async (t) => {
  const seen: Array<string | undefined> = [];
  const s = await httpServer(t, (req, res) => {
    seen.push(req.headers.connection);
    res.end('two');
  });
  const c = client(t);
  const pool = { maxRequestsPerConnection: 2 };
  for (let i = 0; i < 6; i++)
    t.equal((await roundTrip(c, s.target, request({ pool }))).body.toString(), 'two');
  t.equal(s.connections(), 3, '6 requests on 3 connections');
  t.same(seen, [undefined, 'close', undefined, 'close', undefined, 'close'], 'the last one says close');
  // 0 is unlimited, like an absent policy.
  for (let i = 0; i < 3; i++)
    await roundTrip(c, s.target, request({ pool: { maxRequestsPerConnection: 0 } }));
  t.equal(s.connections(), 4, 'unlimited: one more connection for three requests');
});

t.test(
  'idleTimeoutMs shorter than the sweep: the idle socket closes on time, reuse cancels it',
  async (t) => {
    const s = await httpServer(t, (req, res) => {
      if (req.url === '/slow') setTimeout(() => res.end('slow'), 250);
      else res.end('ok');
    });
    // keepAliveTimeoutMs 4 s → sweep every 1 s; the policy's 200 ms needs a timer of its own.
    const c = client(t);
    const pool = { idleTimeoutMs: 200 };
    await roundTrip(c, s.target, request({ pool }));
    await sleep(100);
    t.equal(s.open(), 1, 'still open at 100 ms');
    // Reused before its deadline: the idle timer must not close it under the request (250 ms > 200 ms).
    const slow = await roundTrip(c, s.target, request({ path: '/slow', pool }));
    t.equal(slow.body.toString(), 'slow');
    t.equal(s.connections(), 1, 'reused');
    await sleep(120);
    t.equal(s.open(), 1, 'the new idle period started after the response');
    await sleep(200);
    t.equal(s.open(), 0, 'closed about 200 ms after going idle');
    t.equal(c.connections(`127.0.0.1:${s.target.port}`), 0);
  },
);

t.test('idleTimeoutMs above the sweep period: closed by the sweep, never late', async (t) => {
  const s = await httpServer(t, (_req, res) => res.end('ok'));
  // keepAliveTimeoutMs 2 s → sweep every 500 ms: an 800 ms idle timeout closes in [300, 800] ms.
  const c = client(t, { keepAliveTimeoutMs: 2000 });
  const started = Date.now();
  await roundTrip(c, s.target, request({ pool: { idleTimeoutMs: 800 } }));
  await sleep(200);
  t.equal(s.open(), 1, 'open at 200 ms');
  while (s.open() > 0 && Date.now() - started < 2000) await sleep(20);
  const closedAfter = Date.now() - started;
  t.equal(s.open(), 0);
  t.ok(closedAfter >= 250 && closedAfter < 1000, `closed after ${closedAfter} ms (not the 2 s default)`);
  // A policy idle timeout longer than the default does not extend it (a raw server sends no hint).
  const s2 = await rawServer(t, (socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nk'));
  const c2 = client(t, { keepAliveTimeoutMs: 200 });
  await roundTrip(c2, s2.target, request({ pool: { idleTimeoutMs: 60_000 } }));
  await sleep(450);
  t.equal(s2.open(), 0, 'the client default (200 ms) still applies');
});

t.test('connectTimeoutMs of the request replaces the client default, both ways', async (t) => {
  const port = await blackholePort(t);
  const target = { address: '127.0.0.1', port };
  const slowDefault = client(t);
  let started = Date.now();
  const short = await roundTripWritten(slowDefault, target, request({ pool: { connectTimeoutMs: 200 } }));
  let took = Date.now() - started;
  t.equal(short.error?.failure, 'timeout');
  t.equal(short.error?.detail, 'connect timeout after 200 ms');
  t.equal(short.written, false, 'nothing written');
  t.ok(took >= 180 && took < 2000, `failed after ${took} ms (client default 10 s)`);
  const fastDefault = client(t, { connectTimeoutMs: 100 });
  started = Date.now();
  const longer = await roundTripWritten(fastDefault, target, request({ pool: { connectTimeoutMs: 500 } }));
  took = Date.now() - started;
  t.equal(longer.error?.failure, 'timeout');
  t.ok(took >= 450, `waited ${took} ms, the request's 500, not the client's 100`);
  started = Date.now();
  const plain = await roundTripWritten(fastDefault, target, request());
  took = Date.now() - started;
  t.equal(plain.error?.detail, 'connect timeout after 100 ms', 'without a policy: the client default');
});

t.test('requestWritten: false on connection refused, true on a reset after the request', async (t) => {
  const c = client(t);
  const refused = await roundTripWritten(c, { address: '127.0.0.1', port: await closedPort() }, request());
  t.equal(refused.error?.failure, 'connect');
  t.equal(refused.written, false);
  let received = '';
  const s = await rawServer(t, (socket, _n, head) => {
    received = head;
    socket.resetAndDestroy();
  });
  const reset = await roundTripWritten(c, s.target, request({ path: '/got-it' }));
  t.match(received, /^GET \/got-it HTTP\/1\.1/, 'the server received the request');
  t.equal(reset.error?.failure, 'reset');
  t.equal(reset.written, true);
  const bad = await roundTripWritten(c, s.target, request({ path: '/a b' }));
  t.equal(bad.error?.failure, 'protocol');
  t.equal(bad.written, false, 'a head that could not be built was not written');
  // A reset after part of the response: written, and after headers.
  const s2 = await rawServer(t, (socket) => {
    socket.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab');
    setTimeout(() => socket.resetAndDestroy(), 10);
  });
  const cut = await roundTripWritten(c, s2.target, request());
  t.equal(cut.error?.failure, 'reset');
  t.equal(cut.error?.afterHeaders, true);
  t.equal(cut.written, true);
});

t.test('requestWritten after the stale keep-alive retry describes the fresh connection', async (t) => {
  // The server answers the first request, then closes that socket when the second request comes and
  // stops listening, so the transparent retry's connect is refused.
  const sockets = new Set<Socket>();
  const server = createNetServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    let n = 0;
    socket.on('data', () => {
      if (++n === 1) {
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      } else {
        server.close();
        socket.end();
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  const target = { address: '127.0.0.1', port: (server.address() as AddressInfo).port };
  const c = client(t);
  t.equal((await roundTrip(c, target, request())).body.toString(), 'ok');
  const o = await roundTripWritten(c, target, request());
  t.equal(o.error?.failure, 'connect', 'the retry could not connect');
  t.equal(o.written, false, 'the write on the stale socket does not count');
});

t.test('connections(id): open sockets per endpoint, connecting, busy and idle', async (t) => {
  let release: () => void = () => {};
  const gate = new Promise<void>((r) => {
    release = r;
  });
  // A raw server sends no keep-alive hint, so the client's 300 ms applies.
  const s = await rawServer(t, (socket) => {
    void gate.then(() => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone'));
  });
  const c = client(t, { keepAliveTimeoutMs: 300 });
  const id = `127.0.0.1:${s.target.port}`;
  t.equal(c.connections(id), null, 'unknown before first use');
  const pending = Array.from({ length: 3 }, () => roundTrip(c, s.target, request()));
  t.equal(c.connections(id), 3, 'counted while connecting');
  await sleep(30);
  t.equal(c.connections(id), 3, 'busy');
  release();
  await Promise.all(pending);
  t.equal(c.connections(id), 3, 'idle');
  await roundTrip(c, s.target, request());
  t.equal(c.connections(id), 3, 'a reused socket is not counted twice');
  await sleep(600);
  t.equal(c.connections(id), 0, 'closed by the idle sweep');
  t.equal(c.connections('127.0.0.1:1'), null, 'another port: unknown');
  t.equal(c.connections('nonsense'), null);
  c.retain(new Set());
  t.equal(c.connections(id), null, 'forgotten by retain');
  // An endpoint the fallback serves is not counted here.
  const spy = spyFallback();
  const viaFallback = createH1Upstream({ fallback: spy.client });
  t.teardown(() => viaFallback.close());
  await roundTrip(viaFallback, { address: 'localhost', port: s.target.port }, request());
  t.equal(viaFallback.connections(`localhost:${s.target.port}`), null);
  // A server reset drops the count too.
  const r = await rawServer(t, (socket) => socket.resetAndDestroy());
  await roundTrip(c, r.target, request());
  t.equal(c.connections(`127.0.0.1:${r.target.port}`), 0);
});

t.test('connections(id) with an IPv6 endpoint (the id splits at its last colon)', async (t) => {
  // Nobody listens there (and IPv6 may be off): the endpoint is known from the attempt either way.
  const port = await closedPort();
  const c = client(t);
  const attempt = roundTripWritten(c, { address: '::1', port }, request());
  t.equal(c.connections(`::1:${port}`), 1, 'connecting');
  const o = await attempt;
  t.equal(o.error?.failure, 'connect');
  t.equal(o.written, false);
  t.equal(c.connections(`::1:${port}`), 0, 'known, no socket left');
  t.equal(c.connections(`::2:${port}`), null);
});
