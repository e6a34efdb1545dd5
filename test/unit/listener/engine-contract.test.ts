/**
 * The engine-neutral contract, run against every engine with raw TCP clients so the wire bytes
 * (status line, framing, close) are what is checked.
 */
import { createHash } from 'node:crypto';
import { connect } from 'node:net';
import t, { type Test } from 'tap';
import type {
  EngineName,
  IncomingRequest,
  Listener,
  RequestHandler,
  ResponseSink,
  UpgradeHandler,
} from '../../../src/listener/listener-types.ts';
import { startListener } from '../../../src/listener/start-listener.ts';
import { header, RawConn, rawRequest } from './raw-http.ts';

const H = 'Host: test.local\r\n';

interface Captured {
  req: IncomingRequest;
  res: ResponseSink;
}

async function withListener(
  t: Test,
  engine: EngineName,
  handler: RequestHandler,
  onUpgrade?: UpgradeHandler,
): Promise<Listener> {
  const l = await startListener({
    engine,
    host: '127.0.0.1',
    port: 0,
    handler,
    name: 'test',
    ...(onUpgrade === undefined ? {} : { onUpgrade }),
  });
  t.teardown(() => l.close());
  return l;
}

/** Collects a whole request body (or '' when there is none). */
function readBody(req: IncomingRequest): Promise<Buffer> {
  return new Promise((resolve) => {
    if (req.body === null) {
      resolve(Buffer.alloc(0));
      return;
    }
    const parts: Buffer[] = [];
    req.body.onData((chunk, last) => {
      parts.push(chunk);
      if (last) resolve(Buffer.concat(parts));
    });
  });
}

function pattern(n: number, offset = 0): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i + offset) % 251;
  return b;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

for (const engine of ['uws', 'node', 'h1'] as const) {
  t.test(`${engine} engine`, async (t) => {
    t.test('port 0 binds a real port; engine and request metadata', async (t) => {
      let seen: IncomingRequest | null = null;
      const l = await withListener(t, engine, (req, res) => {
        seen = req;
        res.end(Buffer.from('ok'));
      });
      t.equal(l.engine, engine);
      t.ok(l.port > 0 && l.port < 65536, `port ${l.port}`);
      const r = await rawRequest(l.port, `GET /m HTTP/1.1\r\n${H}\r\n`, { responses: 1 });
      t.equal(r.responses[0]?.status, 200);
      const req = seen as IncomingRequest | null;
      t.equal(req?.engine, engine);
      t.equal(req?.remoteAddress, '127.0.0.1');
      t.equal(req?.localPort, l.port);
      t.equal(req?.secure, false);
      t.equal(req?.body, null, 'no body without content-length or transfer-encoding');
    });

    t.test('headers in wire order, lowercased, repeats preserved; method and target intact', async (t) => {
      let seen: IncomingRequest | null = null;
      const l = await withListener(t, engine, (req, res) => {
        seen = req;
        res.end();
      });
      const r = await rawRequest(
        l.port,
        `PATCH /a/b%20c?x=1&y=%2F&x=2 HTTP/1.1\r\nX-First: 1\r\nHost: test.local\r\nX-Rep: a\r\nACCEPT: */*\r\nx-rep: b\r\nX-Sp:  padded value \r\n\r\n`,
        { responses: 1 },
      );
      t.equal(r.responses[0]?.status, 200);
      const req = seen as IncomingRequest | null;
      t.equal(req?.method, 'PATCH');
      t.equal(req?.target, '/a/b%20c?x=1&y=%2F&x=2');
      t.same(req?.headers, [
        'x-first',
        '1',
        'host',
        'test.local',
        'x-rep',
        'a',
        'accept',
        '*/*',
        'x-rep',
        'b',
        'x-sp',
        'padded value',
      ]);
    });

    t.test('absolute-form request-target', async (t) => {
      let seen: IncomingRequest | null = null;
      const l = await withListener(t, engine, (req, res) => {
        seen = req;
        res.end();
      });
      const r = await rawRequest(
        l.port,
        `GET http://example.com:8080/p?q=1 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n`,
        {
          responses: 1,
        },
      );
      if (engine !== 'uws') {
        t.equal(r.responses[0]?.status, 200);
        t.equal(
          (seen as IncomingRequest | null)?.target,
          'http://example.com:8080/p?q=1',
          'full target preserved',
        );
      } else {
        // uWS's parser only accepts origin-form; it answers 505 itself and closes (documented gap).
        t.equal(r.responses[0]?.status, 505, 'uWS refuses absolute-form before the handler');
        t.ok(r.closed);
        t.equal(seen, null, 'handler not called');
      }
    });

    t.test('reason phrases on the status line', async (t) => {
      const l = await withListener(t, engine, (req, res) => {
        const code = Number(req.target.slice(1));
        res.writeHead(code, ['content-length', '0']);
        res.end();
      });
      for (const [code, line] of [
        [200, 'HTTP/1.1 200 OK'],
        [404, 'HTTP/1.1 404 Not Found'],
        [503, 'HTTP/1.1 503 Service Unavailable'],
        [299, 'HTTP/1.1 299 Success'],
        [599, 'HTTP/1.1 599 Server Error'],
      ] as const) {
        const r = await rawRequest(l.port, `GET /${code} HTTP/1.1\r\n${H}\r\n`, { responses: 1 });
        t.equal(r.responses[0]?.statusLine, line);
      }
    });

    t.test('known length: content-length written once, body intact', async (t) => {
      const l = await withListener(t, engine, (_req, res) => {
        res.writeHead(201, ['content-type', 'text/plain', 'content-length', '6', 'x-b', '1']);
        res.write(Buffer.from('abc'));
        res.end(Buffer.from('def'));
      });
      const r = await rawRequest(l.port, `GET / HTTP/1.1\r\n${H}\r\n`, { responses: 1 });
      const resp = r.responses[0];
      t.equal(resp?.status, 201);
      t.equal(resp?.headers.filter((h, i) => i % 2 === 0 && h === 'content-length').length, 1);
      t.equal(resp?.chunked, false);
      t.equal(resp?.body.toString(), 'abcdef');
      t.equal(resp === undefined ? undefined : header(resp, 'x-b'), '1');
    });

    t.test('chunked response when there is no content-length', async (t) => {
      const l = await withListener(t, engine, (_req, res) => {
        res.writeHead(200, ['x-a', '1']);
        res.write(Buffer.from('abc'));
        setTimeout(() => {
          res.write(Buffer.from('def'));
          res.end(Buffer.from('g'));
        }, 20);
      });
      const r = await rawRequest(l.port, `GET / HTTP/1.1\r\n${H}\r\n`, { responses: 1 });
      t.equal(r.responses[0]?.chunked, true);
      t.equal(r.responses[0]?.body.toString(), 'abcdefg');
    });

    t.test('HEAD keeps content-length and sends no body; connection stays usable', async (t) => {
      const l = await withListener(t, engine, (req, res) => {
        if (req.method === 'HEAD') {
          res.writeHead(200, ['content-length', '1234', 'x-h', '1']);
          res.write(Buffer.from('must not be sent'));
          res.end();
        } else {
          res.end(Buffer.from('second'));
        }
      });
      const c = new RawConn(l.port);
      t.teardown(() => c.destroy());
      c.write(`HEAD /h HTTP/1.1\r\n${H}\r\n`);
      const [head] = await c.responses(1, [true]);
      t.equal(head?.status, 200);
      t.equal(head === undefined ? undefined : header(head, 'content-length'), '1234');
      c.write(`GET /x HTTP/1.1\r\n${H}\r\n`);
      const rs = await c.responses(2, [true, false]);
      t.equal(rs[1]?.status, 200, 'next response parses right after the HEAD response');
      t.equal(rs[1]?.body.toString(), 'second');
    });

    t.test('204 and 304 carry no body', async (t) => {
      const l = await withListener(t, engine, (req, res) => {
        if (req.target === '/204') {
          res.writeHead(204, ['content-length', '5', 'x-a', '1']);
          res.end(Buffer.from('nope!'));
        } else if (req.target === '/304') {
          res.writeHead(304, ['etag', '"v1"']);
          res.end(Buffer.from('nope!'));
        } else res.end(Buffer.from('tail'));
      });
      const c = new RawConn(l.port);
      t.teardown(() => c.destroy());
      c.write(`GET /204 HTTP/1.1\r\n${H}\r\n`);
      await c.responses(1);
      c.write(`GET /304 HTTP/1.1\r\n${H}\r\n`);
      await c.responses(2);
      c.write(`GET /x HTTP/1.1\r\n${H}\r\n`);
      const rs = await c.responses(3);
      t.equal(rs[0]?.status, 204);
      t.equal(
        rs[0] === undefined ? undefined : header(rs[0], 'content-length'),
        undefined,
        'no content-length on 204',
      );
      t.equal(rs[1]?.status, 304);
      t.equal(rs[1] === undefined ? undefined : header(rs[1], 'etag'), '"v1"');
      t.equal(rs[2]?.body.toString(), 'tail', 'no stray body bytes before the next response');
    });

    t.test('end(chunk, true) closes the connection', async (t) => {
      const l = await withListener(t, engine, (_req, res) => {
        res.writeHead(200, ['content-type', 'text/plain']);
        res.end(Buffer.from('bye'), true);
      });
      const r = await rawRequest(l.port, `GET / HTTP/1.1\r\n${H}\r\n`);
      t.equal(r.responses[0]?.body.toString(), 'bye');
      t.equal(r.responses[0] === undefined ? undefined : header(r.responses[0], 'connection'), 'close');
      t.ok(r.closed, 'server closed the connection');
      t.notOk(r.timedOut);
    });

    t.test('destroy() cuts the connection mid-body', async (t) => {
      const l = await withListener(t, engine, (_req, res) => {
        res.writeHead(200, ['content-length', '100']);
        res.write(Buffer.from('0123456789'));
        setTimeout(() => res.destroy(), 30);
      });
      const r = await rawRequest(l.port, `GET / HTTP/1.1\r\n${H}\r\n`);
      t.ok(r.closed);
      t.equal(r.responses.length, 0, 'the response never completes');
      t.match(r.data.toString('latin1'), /0123456789$/);
      t.equal(l.inFlight(), 0);
    });

    t.test('onAborted fires when the client disconnects; inFlight counts', async (t) => {
      let aborted = false;
      let sink: ResponseSink | null = null;
      const l = await withListener(t, engine, (_req, res) => {
        sink = res;
        res.onAborted(() => {
          aborted = true;
        });
      });
      const c = new RawConn(l.port);
      c.write(`GET /slow HTTP/1.1\r\n${H}\r\n`);
      while (sink === null) await sleep(5);
      t.equal(l.inFlight(), 1);
      c.destroy();
      for (let i = 0; i < 100 && !aborted; i++) await sleep(10);
      t.ok(aborted, 'onAborted fired');
      t.equal((sink as ResponseSink | null)?.aborted, true);
      t.equal(l.inFlight(), 0);
      // Later calls are ignored, never thrown.
      (sink as ResponseSink | null)?.writeHead(200, []);
      t.equal((sink as ResponseSink | null)?.write(Buffer.from('x')), true);
      (sink as ResponseSink | null)?.end(Buffer.from('x'));
    });

    for (const known of [false, true]) {
      t.test(
        `response backpressure to a slow reader (${known ? 'content-length' : 'chunked'})`,
        async (t) => {
          const total = 16 * 1024 * 1024;
          const chunk = 64 * 1024;
          let falses = 0;
          let writables = 0;
          const l = await withListener(t, engine, (_req, res) => {
            res.writeHead(200, known ? ['content-length', String(total)] : []);
            let sent = 0;
            const pump = (): void => {
              while (sent < total) {
                const n = Math.min(chunk, total - sent);
                const ok = res.write(pattern(n, sent));
                sent += n;
                if (!ok) {
                  falses++;
                  return;
                }
              }
              res.end();
            };
            res.onWritable(() => {
              writables++;
              pump();
            });
            pump();
          });
          const c = new RawConn(l.port);
          t.teardown(() => c.destroy());
          c.socket.pause();
          c.write(`GET /big HTTP/1.1\r\n${H}\r\n`);
          await sleep(300);
          t.ok(falses > 0, `write returned false (${falses}x) while the client did not read`);
          c.socket.resume();
          const [resp] = await c.responses(1, [], 20000);
          t.ok(writables > 0, `onWritable fired (${writables}x)`);
          t.equal(resp?.body.length, total);
          t.equal(resp?.chunked, !known);
          const expect = createHash('sha1').update(pattern(total)).digest('hex');
          t.equal(
            createHash('sha1')
              .update(resp?.body ?? Buffer.alloc(0))
              .digest('hex'),
            expect,
            'body intact',
          );
        },
      );
    }

    t.test('request body: buffered before attach, pause/resume, copies kept intact', async (t) => {
      const captured: Captured[] = [];
      const l = await withListener(t, engine, (req, res) => {
        captured.push({ req, res });
      });
      const c = new RawConn(l.port);
      t.teardown(() => c.destroy());
      c.write(`POST /up HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n`);
      while (captured.length === 0) await sleep(5);
      const { req, res } = captured[0] as Captured;
      t.not(req.body, null);
      await sleep(50); // chunk arrives before anyone attached
      const got: string[] = [];
      let lastSeen = false;
      req.body?.onData((chunk, last) => {
        got.push(chunk.toString());
        if (last) lastSeen = true;
      });
      await sleep(20);
      t.same(got, ['hello'], 'buffered chunk delivered on attach');
      req.body?.pause();
      c.write('6\r\n world\r\n');
      await sleep(100);
      t.same(got, ['hello'], 'nothing delivered while paused');
      req.body?.resume();
      await sleep(50);
      t.same(got.join(''), 'hello world', 'delivered after resume');
      c.write('0\r\n\r\n');
      for (let i = 0; i < 100 && !lastSeen; i++) await sleep(5);
      t.ok(lastSeen, 'last chunk flagged');
      res.end(Buffer.from(got.join('')));
      const [resp] = await c.responses(1);
      t.equal(resp?.body.toString(), 'hello world');
    });

    t.test('request body with content-length, large, streamed', async (t) => {
      const size = 4 * 1024 * 1024;
      const l = await withListener(t, engine, (req, res) => {
        void readBody(req).then((b) => res.end(Buffer.from(createHash('sha1').update(b).digest('hex'))));
      });
      const body = pattern(size);
      const r = await rawRequest(
        l.port,
        Buffer.concat([Buffer.from(`PUT /b HTTP/1.1\r\n${H}Content-Length: ${size}\r\n\r\n`), body]),
        { responses: 1, timeoutMs: 10000 },
      );
      t.equal(r.responses[0]?.body.toString(), createHash('sha1').update(body).digest('hex'));
    });

    t.test('Expect: 100-continue reaches the handler; the client does not hang', async (t) => {
      let expectHeader: string | undefined;
      const l = await withListener(t, engine, (req, res) => {
        expectHeader = req.headers[req.headers.indexOf('expect') + 1];
        void readBody(req).then((b) => res.end(b));
      });
      const c = new RawConn(l.port);
      t.teardown(() => c.destroy());
      c.write(`POST /e HTTP/1.1\r\n${H}Content-Length: 4\r\nExpect: 100-continue\r\n\r\n`);
      const got100 = await c.until(
        (b) => b.toString('latin1').startsWith('HTTP/1.1 100 Continue\r\n\r\n'),
        2000,
      );
      t.ok(got100, '100 Continue sent');
      c.write('ping');
      const ok = await c.until((b) => b.toString('latin1').endsWith('ping'), 2000);
      t.ok(ok, 'final response carries the body');
      t.equal(expectHeader, '100-continue');
    });

    t.test('malformed framing is refused with 400 DPE and a close', async (t) => {
      let called = 0;
      const l = await withListener(t, engine, (_req, res) => {
        called++;
        res.end();
      });
      const r = await rawRequest(l.port, `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip\r\n\r\n`);
      t.equal(r.responses[0]?.status, 400);
      t.equal(r.responses[0] === undefined ? undefined : header(r.responses[0], 'x-meshlet-flags'), 'DPE');
      t.match(r.responses[0]?.body.toString() ?? '', /^malformed request: .+\n$/);
      t.ok(r.closed);
      // With a request pipelined behind it, nothing reaches the handler either. (uWS then answers
      // with its own 400 for the whole batch: uWS drops the replies of a read batch that ends in a
      // parse error.)
      const r2 = await rawRequest(
        l.port,
        `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip\r\n\r\nGET /smuggled HTTP/1.1\r\n${H}\r\n`,
      );
      t.equal(r2.responses[0]?.status, 400);
      t.equal(r2.responses.length, 1);
      t.ok(r2.closed);
      t.equal(called, 0);
    });

    t.test('HTTP/1.1 without Host is refused', async (t) => {
      let called = 0;
      const l = await withListener(t, engine, (_req, res) => {
        called++;
        res.end();
      });
      const r = await rawRequest(l.port, 'GET / HTTP/1.1\r\nX-A: 1\r\n\r\n');
      t.equal(r.responses[0]?.status, 400);
      t.ok(r.closed);
      t.equal(called, 0);
    });

    t.test('upgrade requests without onUpgrade: 501 and close', async (t) => {
      let called = 0;
      const l = await withListener(t, engine, (_req, res) => {
        called++;
        res.end();
      });
      const r = await rawRequest(
        l.port,
        `GET /ws HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
      );
      t.equal(r.responses[0]?.status, 501);
      t.ok(r.closed);
      t.equal(called, 0);
    });

    t.test('upgrade requests with onUpgrade', async (t) => {
      let upgraded: IncomingRequest | null = null;
      const l = await withListener(
        t,
        engine,
        (_req, res) => res.end(),
        (req, socket, head) => {
          upgraded = req;
          socket.end(
            `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n${head.toString()}`,
          );
        },
      );
      const r = await rawRequest(
        l.port,
        // uWS would parse bytes after the head as a next request (and answer 505): none for uws. node
        // and h1 hand them over as `head`.
        `GET /ws HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: echo\r\n\r\n${engine === 'uws' ? '' : 'early'}`,
      );
      if (engine !== 'uws') {
        t.match(r.data.toString(), /^HTTP\/1\.1 101 Switching Protocols\r\n[\s\S]*\r\n\r\nearly$/);
        t.equal((upgraded as IncomingRequest | null)?.target, '/ws');
      } else {
        t.equal(r.responses[0]?.status, 501);
        t.match(r.responses[0]?.body.toString() ?? '', /--engine node/);
        t.equal(upgraded, null);
      }
    });

    t.test(
      'connection counts: active while open, total since start, upgraded ones until closed',
      async (t) => {
        const tunnels: import('node:stream').Duplex[] = [];
        const l = await withListener(
          t,
          engine,
          (_req, res) => res.end(Buffer.from('ok')),
          (_req, socket) => {
            tunnels.push(socket);
            socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n');
          },
        );
        /** Polls until the count is reached (closes are seen asynchronously), at most 2 s. */
        const settle = async (want: number): Promise<number> => {
          for (let i = 0; i < 200 && l.connectionsActive() !== want; i++) await sleep(10);
          return l.connectionsActive();
        };
        t.equal(l.connectionsActive(), 0);
        t.equal(l.connectionsTotal(), 0);
        const a = new RawConn(l.port);
        const b = new RawConn(l.port);
        t.teardown(() => {
          a.destroy();
          b.destroy();
        });
        a.write(`GET /a HTTP/1.1\r\n${H}\r\n`);
        b.write(`GET /b HTTP/1.1\r\n${H}\r\n`);
        await a.responses(1);
        await b.responses(1);
        t.equal(await settle(2), 2, 'two keep-alive connections open');
        t.equal(l.connectionsTotal(), 2);
        a.destroy();
        t.equal(await settle(1), 1, 'a closed connection is counted out');
        if (engine !== 'uws') {
          const u = new RawConn(l.port);
          t.teardown(() => u.destroy());
          u.write(`GET /ws HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: echo\r\n\r\n`);
          await u.until((buf) => buf.includes('\r\n\r\n'));
          t.equal(await settle(2), 2, 'an upgraded connection still counts');
          for (const s of tunnels) s.destroy();
          t.equal(await settle(1), 1, 'and is counted out when the tunnel closes');
        }
        b.destroy();
        t.equal(await settle(0), 0);
        t.equal(l.connectionsTotal(), engine === 'uws' ? 2 : 3, 'the total never goes down');
      },
    );

    t.test('stopAccepting: in-flight request finishes, new connections are refused', async (t) => {
      const waiting: ResponseSink[] = [];
      const l = await withListener(t, engine, (_req, res) => {
        waiting.push(res);
      });
      const idle = new RawConn(l.port);
      t.teardown(() => idle.destroy());
      idle.write(`GET /idle HTTP/1.1\r\n${H}\r\n`);
      while (waiting.length === 0) await sleep(5);
      (waiting.shift() as ResponseSink).end(Buffer.from('idle done'));
      await idle.responses(1);
      const busy = new RawConn(l.port);
      t.teardown(() => busy.destroy());
      busy.write(`GET /busy HTTP/1.1\r\n${H}\r\n`);
      while (waiting.length === 0) await sleep(5);
      t.equal(l.inFlight(), 1);
      l.stopAccepting();
      const refused = await new Promise<string>((resolve) => {
        const s = connect({ port: l.port, host: '127.0.0.1' });
        s.on('connect', () => {
          s.destroy();
          resolve('connected');
        });
        s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
      });
      t.equal(refused, 'ECONNREFUSED', 'new connections are refused');
      if (engine !== 'uws') t.ok(await idle.waitClosed(), 'idle keep-alive connection closed');
      await sleep(50);
      const sink = waiting.shift() as ResponseSink;
      sink.writeHead(200, ['content-type', 'text/plain']);
      sink.end(Buffer.from('finished'));
      const [resp] = await busy.responses(1);
      t.equal(resp?.body.toString(), 'finished', 'in-flight request completed');
      t.equal(resp === undefined ? undefined : header(resp, 'connection'), 'close');
      t.ok(await busy.waitClosed(), 'connection closed after the response');
      t.equal(l.inFlight(), 0);
    });
  });
}

t.test('engine uws falls back to node when the addon cannot load', async (t) => {
  process.env['MESHLET_DISABLE_UWS'] = '1';
  t.teardown(() => {
    delete process.env['MESHLET_DISABLE_UWS'];
  });
  const l = await startListener({
    engine: 'uws',
    host: '127.0.0.1',
    port: 0,
    name: 'fallback',
    handler: (req, res) => res.end(Buffer.from(req.engine)),
  });
  t.teardown(() => l.close());
  t.equal(l.engine, 'node');
  const r = await rawRequest(l.port, `GET / HTTP/1.1\r\n${H}\r\n`, { responses: 1 });
  t.equal(r.responses[0]?.body.toString(), 'node');
});

for (const host of ['::1', '0.0.0.0']) {
  t.test(`listens on ${host}`, async (t) => {
    for (const engine of ['uws', 'node', 'h1'] as const) {
      const l = await startListener({
        engine,
        host,
        port: 0,
        name: 'h',
        handler: (req, res) => res.end(Buffer.from(req.remoteAddress)),
      });
      const r = await rawRequest(l.port, `GET / HTTP/1.1\r\n${H}\r\n`, {
        responses: 1,
        host: host === '::1' ? '::1' : '127.0.0.1',
      });
      t.equal(
        r.responses[0]?.body.toString(),
        host === '::1' ? '::1' : '127.0.0.1',
        `${engine} peer address`,
      );
      l.close();
    }
  });
}
