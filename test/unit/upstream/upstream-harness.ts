/**
 * What the upstream client tests share: a request builder, a handler that records what it sees, local
 * servers on 127.0.0.1 closed at teardown, a port nobody listens on, and a request body generator.
 */
import { once } from 'node:events';
import {
  createServer,
  type IncomingMessage,
  type Server,
  type ServerOptions,
  type ServerResponse,
} from 'node:http';
import { type AddressInfo, createServer as createNetServer, type Socket } from 'node:net';
import type { Test } from 'tap';
import type { BodyStream, HeaderList } from '../../../src/listener/listener-types.ts';
import type {
  UpstreamClient,
  UpstreamFailure,
  UpstreamHandler,
  UpstreamRequest,
  UpstreamTarget,
} from '../../../src/upstream/upstream-types.ts';

export const MiB = 1024 * 1024;

/** What one attempt showed its handler. */
export interface Outcome {
  status: number;
  headers: HeaderList;
  body: Buffer;
  ended: boolean;
  error: { failure: UpstreamFailure; afterHeaders: boolean; detail: string } | null;
}

export function newOutcome(): Outcome {
  return { status: 0, headers: [], body: Buffer.alloc(0), ended: false, error: null };
}

/** A GET of `/` with `host: svc` and no body, with `overrides`. */
export function request(overrides: Partial<UpstreamRequest> = {}): UpstreamRequest {
  return {
    method: 'GET',
    path: '/',
    headers: ['host', 'svc'],
    body: null,
    expectContinue: false,
    ...overrides,
  };
}

/**
 * A handler that records into `o`: body chunks are copied into `chunks` (a client may reuse its read
 * buffers); on `onEnd` / `onError` `o.body` is their concatenation and `settled` runs.
 */
export function recordInto(o: Outcome, chunks: Buffer[], settled: () => void): UpstreamHandler {
  return {
    onHeaders(status, headers) {
      o.status = status;
      o.headers = headers;
    },
    onData(chunk) {
      chunks.push(Buffer.from(chunk));
      return true;
    },
    onEnd() {
      o.ended = true;
      o.body = Buffer.concat(chunks);
      settled();
    },
    onError(failure, afterHeaders, detail) {
      o.error = { failure, afterHeaders, detail };
      o.body = Buffer.concat(chunks);
      settled();
    },
  };
}

/** Sends one request and collects everything the handler sees. */
export function roundTrip(
  client: UpstreamClient,
  target: UpstreamTarget,
  req: UpstreamRequest,
): Promise<Outcome> {
  return new Promise((resolve) => {
    const o = newOutcome();
    client.send(
      target,
      req,
      recordInto(o, [], () => resolve(o)),
    );
  });
}

export interface Served {
  target: UpstreamTarget;
  /** Connections accepted so far. */
  connections: () => number;
  /** Connections currently open (server side). */
  open: () => number;
}

function addressOf(server: Server | ReturnType<typeof createNetServer>): UpstreamTarget {
  return { address: '127.0.0.1', port: (server.address() as AddressInfo).port };
}

/** A `net` server on 127.0.0.1; its sockets ignore errors and are destroyed at teardown. */
export async function netServer(t: Test, onSocket: (socket: Socket) => void): Promise<Served> {
  let connections = 0;
  const sockets = new Set<Socket>();
  const server = createNetServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    onSocket(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { target: addressOf(server), connections: () => connections, open: () => sockets.size };
}

/** A node:http server on 127.0.0.1, closed with all its connections at teardown. */
export async function httpServer(
  t: Test,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  options: ServerOptions = {},
): Promise<Served & { server: Server }> {
  const server = createServer(options, handler);
  let connections = 0;
  let open = 0;
  server.on('connection', (s: Socket) => {
    connections++;
    open++;
    s.on('close', () => open--);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return { server, target: addressOf(server), connections: () => connections, open: () => open };
}

/** A port on 127.0.0.1 that was just free: listened on, then closed. */
export async function closedPort(): Promise<number> {
  const probe = createNetServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = (probe.address() as AddressInfo).port;
  probe.close();
  await once(probe, 'close');
  return port;
}

/** Produces `total` bytes of `fill` in fresh `chunkSize` chunks as fast as allowed; counts pause/resume. */
export class GeneratedBody implements BodyStream {
  pauses = 0;
  resumes = 0;
  produced = 0;
  private cb: ((chunk: Buffer, last: boolean) => void) | null = null;
  private paused = false;
  private scheduled = false;
  private readonly total: number;
  private readonly chunkSize: number;
  private readonly fill: number;
  constructor(total: number, chunkSize = 64 * 1024, fill = 0x61) {
    this.total = total;
    this.chunkSize = chunkSize;
    this.fill = fill;
  }
  onData(cb: (chunk: Buffer, last: boolean) => void): void {
    this.cb = cb;
    this.schedule();
  }
  pause(): void {
    this.pauses++;
    this.paused = true;
  }
  resume(): void {
    this.resumes++;
    this.paused = false;
    this.schedule();
  }
  private schedule(): void {
    if (this.scheduled || this.cb === null) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const cb = this.cb!;
      while (!this.paused && this.produced < this.total) {
        const n = Math.min(this.chunkSize, this.total - this.produced);
        this.produced += n;
        cb(Buffer.alloc(n, this.fill), this.produced === this.total);
      }
    });
  }
}

/**
 * A node:http server answering with `size` bytes of 0x63 (Content-Length) in 64 KiB writes, waiting
 * for `drain` when a write returns false; `written()` tells how far it got (over all requests).
 */
export async function pumpingServer(
  t: Test,
  size: number,
  options: ServerOptions = {},
): Promise<Served & { written: () => number }> {
  const chunk = 64 * 1024;
  let written = 0;
  const served = await httpServer(
    t,
    (_req, res) => {
      res.setHeader('content-length', String(size));
      const pump = (): void => {
        while (written < size) {
          written += chunk;
          if (!res.write(Buffer.alloc(chunk, 0x63))) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
    },
    options,
  );
  return { ...served, written: () => written };
}
