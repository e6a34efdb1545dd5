import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What an echo backend saw, returned as its JSON body. */
export interface Echo {
  readonly name: string;
  readonly method: string;
  readonly url: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly bodyLength: number;
}

export interface Backend {
  readonly name: string;
  readonly port: number;
  readonly server: Server;
  /** Requests served so far. */
  count: number;
  close(): Promise<void>;
}

/**
 * A real HTTP/1.1 server on 127.0.0.1 (port 0) answering every request with an `Echo` of it.
 * `handler` may take over a request instead (return true when it did).
 */
export async function startEchoBackend(
  name: string,
  handler?: (req: IncomingMessage, res: import('node:http').ServerResponse) => boolean,
): Promise<Backend> {
  const backend: { count: number } = { count: 0 };
  const server = createServer((req, res) => {
    backend.count++;
    if (handler?.(req, res) === true) return;
    let bodyLength = 0;
    req.on('data', (c: Buffer) => {
      bodyLength += c.length;
    });
    req.on('end', () => {
      const echo: Echo = {
        name,
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        bodyLength,
      };
      const body = JSON.stringify(echo);
      res.writeHead(200, { 'content-type': 'application/json', 'x-backend': name });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()));
  const port = (server.address() as AddressInfo).port;
  return Object.assign(backend, {
    name,
    port,
    server,
    close: () =>
      new Promise<void>((ok) => {
        server.close(() => ok());
        server.closeAllConnections();
      }),
  });
}

/** A port that nothing listens on (bound, then released). */
export async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', () => ok()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((ok) => s.close(() => ok()));
  return port;
}
