import { once } from 'node:events';
import { createServer, request as httpRequest, type IncomingMessage } from 'node:http';
import { type AddressInfo, createServer as createNetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import t, { type Test } from 'tap';
import type { UpgradeHandler } from '../../../src/listener/listener-types.ts';
import type { RouteDecision } from '../../../src/router/route-types.ts';
import { cluster, forward, request, setup } from './pipeline-harness.ts';

/** Upgrade requests: routed like any request, the endpoint chosen by the cluster's balancer. */

/** A socket stand-in that records what a refusal writes. */
function refusedSocket(): { socket: Duplex; written: () => string } {
  let written = '';
  const socket = {
    end(data?: string | Buffer) {
      written += data === undefined ? '' : data.toString();
    },
  };
  return { socket: socket as unknown as Duplex, written: () => written };
}

const upgradeHeaders = ['host', 'svc', 'connection', 'upgrade', 'upgrade', 'websocket'];

/** A node:http front whose upgrade requests go to `handler`; resolves its port. */
async function frontFor(t: Test, handler: UpgradeHandler): Promise<number> {
  const front = createServer((_req, res) => res.end());
  front.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const headers = req.rawHeaders.map((v, i) => (i % 2 === 0 ? v.toLowerCase() : v));
    handler(request(req.url ?? '/', {}, headers), socket, head);
  });
  front.listen(0, '127.0.0.1');
  await once(front, 'listening');
  t.teardown(() => {
    front.closeAllConnections();
    front.close();
  });
  return (front.address() as AddressInfo).port;
}

/** Sends an upgrade request to `port`; resolves with the upgrade or the plain response (5 s bound). */
function upgradeAt(port: number): Promise<{ status: number; socket: Socket | null }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      path: '/ws',
      headers: { Host: 'svc', Connection: 'Upgrade', Upgrade: 'websocket' },
    });
    const timer = setTimeout(() => req.destroy(new Error('no answer within 5 s')), 5000);
    req.on('upgrade', (res: IncomingMessage, socket: Socket) => {
      clearTimeout(timer);
      resolve({ status: res.statusCode ?? 0, socket });
    });
    req.on('response', (res: IncomingMessage) => {
      clearTimeout(timer);
      res.resume();
      resolve({ status: res.statusCode ?? 0, socket: null });
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('refusals: no Host, no route, no cluster, no endpoint, a local route, no app', async (t) => {
  const cases: [string, () => RouteDecision, 'source' | 'destination', string[], RegExp][] = [
    ['no host', () => forward(cluster('svc', 1)), 'source', [], /^HTTP\/1\.1 400 /],
    [
      'no route',
      () => ({
        kind: 'noRoute',
        status: 404,
        reason: 'no route matched',
        serviceFqdn: 'a',
        serviceName: 'a',
      }),
      'source',
      upgradeHeaders,
      /^HTTP\/1\.1 404 [\s\S]*no route/,
    ],
    [
      'no cluster',
      () => ({ kind: 'noCluster', clusterName: 'c', reason: 'no subset v9', routeName: 'r' }),
      'source',
      upgradeHeaders,
      /^HTTP\/1\.1 503 [\s\S]*cluster not found/,
    ],
    [
      'no endpoint',
      () => forward(cluster('svc')),
      'source',
      upgradeHeaders,
      /^HTTP\/1\.1 503 [\s\S]*no healthy upstream/,
    ],
    [
      'a redirect',
      () => ({ kind: 'redirect', routeName: 'r', responseHeaders: [], status: 301, location: '/x' }),
      'source',
      upgradeHeaders,
      /^HTTP\/1\.1 400 [\s\S]*cannot be upgraded/,
    ],
    [
      'inbound without --app',
      () => forward(cluster('svc', 1)),
      'destination',
      upgradeHeaders,
      /^HTTP\/1\.1 503 /,
    ],
  ];
  for (const [name, route, reporter, headers, expected] of cases) {
    const { pipeline } = setup(route, () => {});
    const { socket, written } = refusedSocket();
    pipeline.upgrade(reporter)(request('/ws', {}, headers), socket, Buffer.alloc(0));
    t.match(written(), expected, name);
  }
});

t.test('a forwarded upgrade goes to the endpoint the balancer picked, with the route edits', async (t) => {
  const heads: string[] = [];
  const upstream = createNetServer((socket: Socket) => {
    socket.once('data', (chunk: Buffer) => {
      heads.push(chunk.toString('latin1'));
      socket.write('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n');
    });
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  const upstreamPort = (upstream.address() as AddressInfo).port;
  const c = cluster('svc', upstreamPort);
  const { pipeline, registry } = setup(
    () =>
      forward(c, {
        path: '/rewritten',
        authority: 'svc.internal',
        requestHeaders: [{ set: [['x-edit', 'yes']], add: [], remove: [] }],
      }),
    () => {},
  );
  t.teardown(() => upstream.close());
  const answer = await upgradeAt(await frontFor(t, pipeline.upgrade('source')));
  answer.socket?.destroy();
  t.equal(answer.status, 101);
  t.match(heads[0], /^GET \/rewritten HTTP\/1\.1\r\n/);
  t.match(heads[0], /\r\nhost: svc\.internal\r\n/);
  t.match(heads[0], /\r\nx-edit: yes\r\n/);
  const picks = registry.get(c).picks;
  t.equal(picks.length, 1);
  t.equal(picks[0]?.ctx.path, '/ws', 'the balancer sees the path the client sent');
});

t.test('a passthrough upgrade whose host refuses the connection gets 503', async (t) => {
  const probe = createNetServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const closed = (probe.address() as AddressInfo).port;
  probe.close();
  await once(probe, 'close');
  const { pipeline } = setup(
    () => ({ kind: 'passthrough', host: '127.0.0.1', port: closed }),
    () => {},
  );
  const answer = await upgradeAt(await frontFor(t, pipeline.upgrade('source')));
  t.same([answer.status, answer.socket], [503, null]);
});
