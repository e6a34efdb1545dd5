import { once } from 'node:events';
import { createServer, request as httpRequest, type IncomingMessage } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import t, { type Test } from 'tap';
import { prepareUpstreamHeaders } from '../../../src/upstream/forward-headers.ts';
import { openUpgradeTunnel } from '../../../src/upstream/upgrade-tunnel.ts';
import type { UpstreamFailure, UpstreamTarget } from '../../../src/upstream/upstream-types.ts';
import { closedPort, netServer } from './upstream-harness.ts';

/** A raw upstream: reads the request head, lets `respond` answer; records heads and socket closes. */
async function rawUpstream(
  t: Test,
  respond: (socket: Socket, head: string, rest: Buffer) => void,
): Promise<{ target: UpstreamTarget; heads: string[]; closed: () => number }> {
  const heads: string[] = [];
  const served = await netServer(t, (socket) => {
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      socket.off('data', onData);
      const head = buf.toString('latin1', 0, end);
      heads.push(head);
      respond(socket, head, buf.subarray(end + 4));
    };
    socket.on('data', onData);
  });
  return { target: served.target, heads, closed: () => served.connections() - served.open() };
}

/** The proxy side: a node:http server whose 'upgrade' event opens a tunnel to `target`. */
async function front(
  t: Test,
  target: UpstreamTarget,
  failures: { failure: UpstreamFailure; detail: string }[],
): Promise<number> {
  const server = createServer((_req, res) => res.end('plain'));
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const lower = req.rawHeaders.map((v, i) => (i % 2 === 0 ? v.toLowerCase() : v));
    const prepared = prepareUpstreamHeaders(lower, {
      authority: 'echo.default:80',
      remoteAddress: '127.0.0.1',
      scheme: 'http',
      requestId: 'rid',
    });
    openUpgradeTunnel(
      target,
      {
        method: req.method ?? 'GET',
        path: req.url ?? '/',
        headers: prepared.headers,
        body: null,
        expectContinue: false,
      },
      socket,
      head,
      (failure, detail) => {
        failures.push({ failure, detail });
        socket.end('HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
      },
      { connectTimeoutMs: 2000 },
    );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return (server.address() as AddressInfo).port;
}

function upgradeRequest(port: number): ReturnType<typeof httpRequest> {
  return httpRequest({
    host: '127.0.0.1',
    port,
    path: '/ws?x=1',
    headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Key': 'abc' },
  });
}

t.test('101 then bytes echo both ways', async (t) => {
  const up = await rawUpstream(t, (socket, _head, rest) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
    if (rest.length > 0) socket.write(rest);
    socket.pipe(socket);
  });
  const failures: { failure: UpstreamFailure; detail: string }[] = [];
  const port = await front(t, up.target, failures);
  const req = upgradeRequest(port);
  req.end();
  const [res, socket] = (await once(req, 'upgrade')) as [IncomingMessage, Socket, Buffer];
  t.equal(res.statusCode, 101);
  t.equal(res.headers.upgrade, 'websocket');
  socket.write('ping');
  const [echo] = (await once(socket, 'data')) as [Buffer];
  t.equal(echo.toString(), 'ping');
  socket.write('pong');
  const [echo2] = (await once(socket, 'data')) as [Buffer];
  t.equal(echo2.toString(), 'pong');

  const head = up.heads[0] ?? '';
  t.match(head, /^GET \/ws\?x=1 HTTP\/1\.1\r\n/);
  t.match(head, /\r\nhost: echo\.default:80/);
  t.match(head, /\r\nconnection: upgrade/);
  t.match(head, /\r\nupgrade: websocket/);
  t.match(head, /\r\nsec-websocket-key: abc/);
  t.match(head, /\r\nx-forwarded-for: 127\.0\.0\.1/);
  t.same(failures, []);

  // Client closes: the upstream side is closed too.
  socket.end();
  await once(socket, 'close');
  for (let i = 0; i < 50 && up.closed() === 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(up.closed(), 1, 'upstream connection closed after the client left');
});

t.test('upstream closing the tunnel ends the client', async (t) => {
  const up = await rawUpstream(t, (socket) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nbye');
    socket.end();
  });
  const port = await front(t, up.target, []);
  const req = upgradeRequest(port);
  req.end();
  const [res, socket, head] = (await once(req, 'upgrade')) as [IncomingMessage, Socket, Buffer];
  t.equal(res.statusCode, 101);
  const chunks: Buffer[] = [head];
  socket.on('data', (c: Buffer) => chunks.push(c));
  await once(socket, 'end');
  t.equal(Buffer.concat(chunks).toString(), 'bye');
  socket.destroy();
});

t.test('a non-101 answer is relayed as is, then the connection closes', async (t) => {
  const up = await rawUpstream(t, (socket) => {
    socket.write('HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 6\r\n\r\nno ws!');
  });
  const failures: { failure: UpstreamFailure; detail: string }[] = [];
  const port = await front(t, up.target, failures);
  const req = upgradeRequest(port);
  req.end();
  const [res] = (await once(req, 'response')) as [IncomingMessage];
  t.equal(res.statusCode, 403);
  let body = '';
  res.on('data', (c: Buffer) => {
    body += c.toString();
  });
  await once(res, 'end');
  t.equal(body, 'no ws!');
  for (let i = 0; i < 50 && up.closed() === 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(up.closed(), 1, 'upstream connection closed');
  t.same(failures, []);
});

t.test('connect refused → onFailure(connect) before anything is written to the client', async (t) => {
  const unused = await closedPort();
  const failures: { failure: UpstreamFailure; detail: string }[] = [];
  const port = await front(t, { address: '127.0.0.1', port: unused }, failures);
  const req = upgradeRequest(port);
  req.end();
  const [res] = (await once(req, 'response')) as [IncomingMessage];
  t.equal(res.statusCode, 503, 'the caller could answer: nothing had been written');
  res.resume();
  t.equal(failures.length, 1);
  t.equal(failures[0]?.failure, 'connect');
  t.match(failures[0]?.detail, /ECONNREFUSED/);
});

t.test('upstream closing before a response → onFailure(reset); garbage → protocol', async (t) => {
  const closing = await rawUpstream(t, (socket) => socket.destroy());
  const failures: { failure: UpstreamFailure; detail: string }[] = [];
  const port = await front(t, closing.target, failures);
  const req = upgradeRequest(port);
  req.end();
  const [res] = (await once(req, 'response')) as [IncomingMessage];
  t.equal(res.statusCode, 503);
  res.resume();
  t.equal(failures[0]?.failure, 'reset');

  const garbage = await rawUpstream(t, (socket) => socket.write('SSH-2.0-OpenSSH\r\n\r\n'));
  const failures2: { failure: UpstreamFailure; detail: string }[] = [];
  const port2 = await front(t, garbage.target, failures2);
  const req2 = upgradeRequest(port2);
  req2.end();
  const [res2] = (await once(req2, 'response')) as [IncomingMessage];
  t.equal(res2.statusCode, 503);
  res2.resume();
  t.equal(failures2[0]?.failure, 'protocol');
});
