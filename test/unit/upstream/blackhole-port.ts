/**
 * A loopback port where a TCP connect never completes, for connect-timeout tests. Node always accepts
 * on a listening socket, so a python3 child holds a listener with a backlog of 0 that never accepts;
 * sockets are connected to it until one does not complete within 150 ms: the accept queue is then
 * full and the kernel drops further SYNs (the connect hangs until the client gives up). The child and
 * the filler sockets are cleaned up at teardown. A missing python3 fails the test (it is not skipped).
 */
import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import type { Test } from 'tap';

export async function blackholePort(t: Test): Promise<number> {
  const py = spawn(
    'python3',
    [
      '-c',
      'import socket,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)',
    ],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  const fillers: Socket[] = [];
  t.teardown(() => {
    for (const s of fillers) s.destroy();
    py.kill();
  });
  const port = await new Promise<number>((resolve, reject) => {
    py.on('error', (err) => reject(new Error(`python3 is needed to hold a non-accepting listener: ${err}`)));
    py.stdout.once('data', (b: Buffer) => resolve(Number(b.toString().trim())));
  });
  for (let i = 0; i < 16; i++) {
    const s = connect({ host: '127.0.0.1', port });
    s.on('error', () => {});
    fillers.push(s);
    const connected = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 150);
      s.once('connect', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    if (!connected) return port;
  }
  throw new Error('the listener kept accepting connections: no black hole');
}
