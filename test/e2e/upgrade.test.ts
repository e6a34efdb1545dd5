import { connect } from 'node:net';
import t from 'tap';
import { startEchoBackend } from '../helpers/backends.ts';
import { serviceEntryYaml } from '../helpers/mesh-yaml.ts';
import { spawnMeshlet } from '../helpers/spawn-meshlet.ts';

/** WebSocket-style Upgrade passthrough through the real process (node engine), and uws's documented refusal. */

const yaml = (port: number): string => serviceEntryYaml('ws', [{ port }]);

/** Sends an upgrade request on a raw socket, then `payload` once the 101 arrived; resolves with everything read. */
function upgradeAndEcho(port: number, payload: string): Promise<string> {
  return new Promise((ok, fail) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    let sent = false;
    const timer = setTimeout(() => {
      s.destroy();
      ok(got);
    }, 3000);
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (!sent && got.includes('\r\n\r\n') && got.startsWith('HTTP/1.1 101')) {
        sent = true;
        s.write(payload);
      }
      if (got.includes(`echo:${payload}`) || (!got.startsWith('HTTP/1.1 101') && got.includes('\r\n\r\n'))) {
        setTimeout(() => {
          clearTimeout(timer);
          s.destroy();
          ok(got);
        }, 50);
      }
    });
    s.on('error', fail);
    s.write(
      'GET /chat HTTP/1.1\r\nHost: ws\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
  });
}

t.test('upgrade passthrough', async (t) => {
  const backend = await startEchoBackend('ws');
  const tunnels = new Set<import('node:stream').Duplex>();
  backend.server.on('upgrade', (req, socket) => {
    tunnels.add(socket);
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nx-seen-path: ${req.url}\r\n\r\n`,
    );
    socket.on('data', (d: Buffer) => socket.write(`echo:${d.toString()}`));
  });
  t.teardown(async () => {
    for (const s of tunnels) s.destroy();
    await backend.close();
  });

  for (const engine of ['h1', 'node'] as const) {
    t.test(`${engine} engine tunnels the upgraded connection both ways`, async (t) => {
      const mesh = await spawnMeshlet(yaml(backend.port), { engine });
      t.teardown(() => mesh.stop());
      const got = await upgradeAndEcho(mesh.outboundPort, 'hello');
      t.match(got, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
      t.match(got, /x-seen-path: \/chat/);
      t.match(got, /echo:hello/, 'bytes flow both ways after the 101');
    });

    t.test(`${engine} engine: an unknown route is refused with a local reply`, async (t) => {
      const mesh = await spawnMeshlet(
        `${yaml(backend.port)}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ws }
spec:
  hosts: [ws]
  http:
    - match: [{ uri: { prefix: /api } }]
      route: [{ destination: { host: ws } }]
`,
        { engine },
      );
      t.teardown(() => mesh.stop());
      const got = await upgradeAndEcho(mesh.outboundPort, 'x');
      t.match(got, /^HTTP\/1\.1 404 Not Found\r\n/);
      t.match(got, /x-meshlet-flags: NR/);
    });
  }

  t.test('uws engine answers 501 saying upgrades need the node engine', async (t) => {
    const mesh = await spawnMeshlet(yaml(backend.port), { engine: 'uws' });
    t.teardown(() => mesh.stop());
    const got = await upgradeAndEcho(mesh.outboundPort, 'x');
    t.match(got, /^HTTP\/1\.1 501 /);
    t.match(got, /--engine node/);
  });
});
