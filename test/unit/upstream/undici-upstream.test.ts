import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import t, { type Test } from 'tap';
import type { BodyStream, HeaderList } from '../../../src/listener/listener-types.ts';
import { createUndiciUpstream } from '../../../src/upstream/undici-upstream.ts';
import type { UpstreamCall, UpstreamFailure, UpstreamTarget } from '../../../src/upstream/upstream-types.ts';
import { blackholePort } from './blackhole-port.ts';
import { closedPort, GeneratedBody, httpServer, netServer, request, roundTrip } from './upstream-harness.ts';

function values(headers: HeaderList, name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === name) out.push(headers[i + 1]!);
  return out;
}

async function rawServer(t: Test, onSocket: (socket: Socket) => void): Promise<UpstreamTarget> {
  return (await netServer(t, onSocket)).target;
}

function client(t: Test): ReturnType<typeof createUndiciUpstream> {
  const c = createUndiciUpstream({ connectTimeoutMs: 2000 });
  t.teardown(() => c.close());
  return c;
}

/** A BodyStream with fixed chunks, delivered on attach. */
function fixedBody(...chunks: string[]): BodyStream & { attached: boolean } {
  const body = {
    attached: false,
    onData(cb: (chunk: Buffer, last: boolean) => void): void {
      body.attached = true;
      chunks.forEach((c, i) => {
        cb(Buffer.from(c), i === chunks.length - 1);
      });
    },
    pause(): void {},
    resume(): void {},
  };
  return body;
}

t.test('GET round trip: headers both ways, repeated headers kept, hop-by-hop removed', async (t) => {
  let seen: string[] = [];
  const { target } = await httpServer(t, (req, res) => {
    seen = req.rawHeaders;
    res.setHeader('x-multi', ['1', '2']);
    res.setHeader('Connection', 'keep-alive, X-Hop');
    res.setHeader('X-Hop', 'secret');
    res.setHeader('Keep-Alive', 'timeout=5');
    res.setHeader('Content-Type', 'text/plain');
    res.end('hello');
  });
  const c = client(t);
  const o = await roundTrip(
    c,
    target,
    request({ path: '/a?b=1', headers: ['host', 'svc:80', 'x-rep', 'a', 'x-rep', 'b', 'accept', '*/*'] }),
  );
  t.equal(o.error, null);
  t.equal(o.status, 200);
  t.equal(o.body.toString(), 'hello');
  t.same(values(o.headers, 'x-multi'), ['1', '2']);
  t.same(values(o.headers, 'content-type'), ['text/plain']);
  t.same(values(o.headers, 'content-length'), ['5']);
  t.same(values(o.headers, 'connection'), []);
  t.same(values(o.headers, 'keep-alive'), []);
  t.same(values(o.headers, 'x-hop'), [], 'header named in Connection removed');
  for (let i = 0; i < o.headers.length; i += 2) t.equal(o.headers[i], o.headers[i]!.toLowerCase());
  const lower = seen.map((v, i) => (i % 2 === 0 ? v.toLowerCase() : v));
  t.same(values(lower, 'x-rep'), ['a', 'b'], 'repeated request headers reach the upstream');
  t.same(values(lower, 'host'), ['svc:80']);
});

t.test('POST with a body and content-length', async (t) => {
  const { target } = await httpServer(t, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      res.setHeader('x-got-length', String(req.headers['content-length']));
      res.end(Buffer.concat(chunks).toString().toUpperCase());
    });
  });
  const c = client(t);
  const o = await roundTrip(
    c,
    target,
    request({
      method: 'POST',
      headers: ['host', 'svc', 'content-length', '11'],
      body: fixedBody('hello', ' world'),
    }),
  );
  t.equal(o.status, 200);
  t.equal(o.body.toString(), 'HELLO WORLD');
  t.same(values(o.headers, 'x-got-length'), ['11']);
});

t.test('POST without content-length goes chunked', async (t) => {
  const { target } = await httpServer(t, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => res.end(`${req.headers['transfer-encoding']}:${Buffer.concat(chunks).toString()}`));
  });
  const o = await roundTrip(client(t), target, request({ method: 'POST', body: new GeneratedBody(10, 4) }));
  t.equal(o.body.toString(), 'chunked:aaaaaaaaaa');
});

t.test('chunked response without content-length', async (t) => {
  const { target } = await httpServer(t, (_req, res) => {
    res.write('part1-');
    setTimeout(() => res.end('part2'), 10);
  });
  const o = await roundTrip(client(t), target, request());
  t.equal(o.body.toString(), 'part1-part2');
  t.same(values(o.headers, 'transfer-encoding'), [], 'transfer-encoding removed');
  t.same(values(o.headers, 'content-length'), []);
});

t.test('HEAD, 204 and 304 have no body', async (t) => {
  const { target } = await httpServer(t, (req, res) => {
    if (req.url === '/204') {
      res.statusCode = 204;
      res.end();
    } else if (req.url === '/304') {
      res.statusCode = 304;
      res.setHeader('etag', '"x"');
      res.end();
    } else {
      res.setHeader('content-length', '42');
      res.end();
    }
  });
  const c = client(t);
  const head = await roundTrip(c, target, request({ method: 'HEAD' }));
  t.equal(head.status, 200);
  t.ok(head.ended);
  t.equal(head.body.length, 0);
  t.same(values(head.headers, 'content-length'), ['42'], 'HEAD keeps content-length');
  const nc = await roundTrip(c, target, request({ path: '/204' }));
  t.equal(nc.status, 204);
  t.equal(nc.body.length, 0);
  const nm = await roundTrip(c, target, request({ path: '/304' }));
  t.equal(nm.status, 304);
  t.same(values(nm.headers, 'etag'), ['"x"']);
  t.equal(nm.body.length, 0);
});

t.test('expectContinue: body is sent without Expect (proxy answers 100 itself)', async (t) => {
  let sawExpect: string | undefined = 'unset';
  const { server, target } = await httpServer(t, (req, res) => {
    sawExpect = req.headers.expect;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => res.end(Buffer.concat(chunks)));
  });
  server.on('checkContinue', () => t.fail('upstream must not see Expect'));
  const o = await roundTrip(
    client(t),
    target,
    request({
      method: 'PUT',
      headers: ['host', 'svc', 'content-length', '4'],
      body: fixedBody('data'),
      expectContinue: true,
    }),
  );
  t.equal(o.status, 200);
  t.equal(o.body.toString(), 'data');
  t.equal(sawExpect, undefined);
});

t.test('connection refused → connect, body never attached', async (t) => {
  const target = await rawServer(t, () => {});
  const port = target.port;
  // Find a closed port: open and close a server.
  const unused = await closedPort();
  t.not(unused, port);
  const body = fixedBody('x');
  const o = await roundTrip(
    client(t),
    { address: '127.0.0.1', port: unused },
    request({ method: 'POST', body, headers: ['host', 'svc', 'content-length', '1'] }),
  );
  t.equal(o.error?.failure, 'connect');
  t.equal(o.error?.afterHeaders, false);
  t.match(o.error?.detail, /ECONNREFUSED/);
  t.equal(body.attached, false, 'a connect failure never consumed the request body');
});

t.test('server destroys the socket mid-body → reset after headers', async (t) => {
  const { target } = await httpServer(t, (_req, res) => {
    res.setHeader('content-length', '100000');
    res.write(Buffer.alloc(1000));
    setTimeout(() => res.socket?.destroy(), 20);
  });
  const o = await roundTrip(client(t), target, request());
  t.equal(o.status, 200);
  t.equal(o.error?.failure, 'reset');
  t.equal(o.error?.afterHeaders, true);
  t.equal(o.body.length, 1000);
});

t.test('server closes before headers → reset before headers', async (t) => {
  const { target } = await httpServer(t, (req) => {
    req.socket.destroy();
  });
  const o = await roundTrip(client(t), target, request());
  t.equal(o.error?.failure, 'reset');
  t.equal(o.error?.afterHeaders, false);
});

t.test('raw server closing after reading the request → reset before headers', async (t) => {
  const target = await rawServer(t, (s) => {
    s.once('data', () => s.end());
  });
  const o = await roundTrip(client(t), target, request());
  t.equal(o.error?.failure, 'reset');
  t.equal(o.error?.afterHeaders, false);
});

t.test('invalid response bytes → protocol', async (t) => {
  const target = await rawServer(t, (s) => {
    s.once('data', () => s.write('HTTP/1.1 abc NOPE\r\nthis is not http\r\n\r\n'));
  });
  const o = await roundTrip(client(t), target, request());
  t.equal(o.error?.failure, 'protocol');
  t.equal(o.error?.afterHeaders, false);
  t.match(o.error?.detail, /HTTP\/1\.1 protocol/);
});

t.test('keep-alive: two sequential requests share one connection', async (t) => {
  const { target, connections } = await httpServer(t, (_req, res) => res.end('ok'));
  const c = client(t);
  const a = await roundTrip(c, target, request());
  // undici frees a connection one event-loop turn after a response (setImmediate); a request sent
  // in that same turn would open a second connection. A real next request arrives later.
  await new Promise((r) => setTimeout(r, 5));
  const b = await roundTrip(c, target, request({ method: 'POST', body: fixedBody('x') }));
  t.equal(a.body.toString(), 'ok');
  t.equal(b.body.toString(), 'ok');
  t.equal(connections(), 1);
  t.same(c.endpoints(), [`127.0.0.1:${target.port}`]);
  c.retain(new Set());
  t.same(c.endpoints(), [], 'retain drops pools not listed');
});

t.test('abort() stops all callbacks', async (t) => {
  let serverRes: ServerResponse | null = null;
  const { target } = await httpServer(t, (_req, res) => {
    serverRes = res;
    res.write('first');
  });
  const c = client(t);
  let calls = 0;
  let call: UpstreamCall | null = null;
  await new Promise<void>((resolve) => {
    call = c.send(target, request(), {
      onHeaders() {
        calls++;
        resolve();
      },
      onData() {
        calls++;
        return true;
      },
      onEnd() {
        calls++;
      },
      onError() {
        calls++;
      },
    });
  });
  const before = calls;
  (call as UpstreamCall | null)?.abort();
  (serverRes as ServerResponse | null)?.end('more');
  await new Promise((r) => setTimeout(r, 50));
  t.ok(calls <= before + 1, 'at most the data chunk already in flight before abort');
  const after = calls;
  await new Promise((r) => setTimeout(r, 50));
  t.equal(calls, after, 'nothing after abort');

  // Abort before the request is even on a socket.
  let late = 0;
  const early = c.send(target, request(), {
    onHeaders: () => late++,
    onData: () => {
      late++;
      return true;
    },
    onEnd: () => late++,
    onError: () => late++,
  });
  early.abort();
  await new Promise((r) => setTimeout(r, 50));
  t.equal(late, 0);
});

t.test('send never throws and reports errors asynchronously', async (t) => {
  const c = client(t);
  let sync = true;
  const o = await new Promise<{ failure: UpstreamFailure; sync: boolean }>((resolve) => {
    c.send({ address: '127.0.0.1', port: 1 }, request({ headers: ['host', 'a', 'bad header', 'x'] }), {
      onHeaders() {},
      onData: () => true,
      onEnd() {},
      onError: (failure) => resolve({ failure, sync }),
    });
    sync = false;
  });
  t.equal(o.sync, false);
  t.equal(o.failure, 'protocol');
});

// ---- per-request connection policy and requestWritten ----

/** Every `onError` call of one attempt, with `requestWritten`. */
interface Failure {
  failure: UpstreamFailure;
  afterHeaders: boolean;
  detail: string;
  written: boolean | undefined;
}

function sendRecording(
  c: ReturnType<typeof createUndiciUpstream>,
  target: UpstreamTarget,
  req: ReturnType<typeof request>,
): { errors: Failure[]; ended: () => boolean; settled: Promise<void> } {
  const errors: Failure[] = [];
  let ended = false;
  let settle: () => void = () => {};
  const settled = new Promise<void>((r) => {
    settle = r;
  });
  c.send(target, req, {
    onHeaders() {},
    onData: () => true,
    onEnd() {
      ended = true;
      settle();
    },
    onError(failure, afterHeaders, detail, written) {
      errors.push({ failure, afterHeaders, detail, written });
      settle();
    },
  });
  return { errors, ended: () => ended, settled };
}

t.test('pool.connectTimeoutMs: the request times out before the client default', async (t) => {
  const port = await blackholePort(t);
  const c = createUndiciUpstream({ connectTimeoutMs: 700 });
  t.teardown(() => c.close());
  const body = fixedBody('x');
  const started = Date.now();
  const r = sendRecording(
    c,
    { address: '127.0.0.1', port },
    request({
      method: 'POST',
      body,
      headers: ['host', 'svc', 'content-length', '1'],
      pool: { connectTimeoutMs: 150 },
    }),
  );
  await r.settled;
  const took = Date.now() - started;
  t.same(r.errors, [
    { failure: 'timeout', afterHeaders: false, detail: 'connect timeout after 150 ms', written: false },
  ]);
  t.ok(took >= 130 && took < 600, `failed after ${took} ms (client default 700)`);
  t.equal(body.attached, false, 'body not consumed');
  // undici's own connect timeout fires later for the same request: nothing more reaches the handler.
  await new Promise((resolve) => setTimeout(resolve, 800));
  t.equal(r.errors.length, 1, 'one callback only');
  t.notOk(r.ended());
});

t.test('pool.connectTimeoutMs is stopped once the request is on a socket', async (t) => {
  const { target } = await httpServer(t, (_req, res) => setTimeout(() => res.end('late but fine'), 150));
  const c = client(t);
  const r = sendRecording(c, target, request({ pool: { connectTimeoutMs: 50 } }));
  await r.settled;
  t.same(r.errors, [], 'a slow response is not a connect timeout');
  t.ok(r.ended());
});

t.test(
  'pool.maxRequestsPerConnection 1 → no keep-alive (connection: close, a socket per request)',
  async (t) => {
    const seen: Array<string | undefined> = [];
    const { target, connections } = await httpServer(t, (req, res) => {
      seen.push(req.headers.connection);
      res.end('ok');
    });
    const c = client(t);
    for (let i = 0; i < 3; i++) {
      const o = await roundTrip(c, target, request({ pool: { maxRequestsPerConnection: 1 } }));
      t.equal(o.body.toString(), 'ok');
      await new Promise((r) => setTimeout(r, 5));
    }
    t.equal(connections(), 3);
    t.same(seen, ['close', 'close', 'close']);
    // Larger limits are not applied by this client (see the file header): keep-alive as usual.
    for (let i = 0; i < 3; i++) {
      await roundTrip(c, target, request({ pool: { maxRequestsPerConnection: 2 } }));
      await new Promise((r) => setTimeout(r, 5));
    }
    t.equal(connections(), 4, 'three requests on one new connection');
    // HEAD keeps undici's own reset when there is no policy limit of 1.
    const head = await roundTrip(
      c,
      target,
      request({ method: 'HEAD', pool: { maxRequestsPerConnection: 3 } }),
    );
    t.equal(head.status, 200);
    t.equal(seen.at(-1), 'close', 'HEAD still closes (no reset: false sent)');
  },
);

t.test('requestWritten: false on connection refused, true on a reset after the request', async (t) => {
  const c = client(t);
  const refused = sendRecording(c, { address: '127.0.0.1', port: await closedPort() }, request());
  await refused.settled;
  t.equal(refused.errors[0]?.failure, 'connect');
  t.equal(refused.errors[0]?.written, false);
  let received = '';
  const target = await rawServer(t, (s) => {
    s.once('data', (b: Buffer) => {
      received = b.toString('latin1');
      s.resetAndDestroy();
    });
  });
  const reset = sendRecording(c, target, request({ path: '/got-it' }));
  await reset.settled;
  t.match(received, /^GET \/got-it HTTP\/1\.1/, 'the server received the request');
  t.equal(reset.errors[0]?.failure, 'reset');
  t.equal(reset.errors[0]?.written, true);
  // A port undici cannot build an origin from: refused before any socket.
  const bad = sendRecording(c, { address: '127.0.0.1', port: 70000 }, request());
  await bad.settled;
  t.equal(bad.errors[0]?.written, false, `nothing written (${bad.errors[0]?.detail})`);
});
