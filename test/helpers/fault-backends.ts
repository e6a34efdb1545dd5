import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * Backends that misbehave on purpose, for the resilience end-to-end tests: fail N times then
 * succeed, always fail, hang, answer slowly, or echo. Each one counts what reached it (at the
 * request head, so a request that is never answered still counts), keeps the body length of every
 * request it read to the end, and tracks how many requests it held at once.
 */

/** What a fault backend does with one request. `n` is its 1-based number at this backend. */
export type Behavior = (n: number, req: IncomingMessage) => Action;

export type Action =
  /** Reply with the `Echo`-like JSON body (name, method, url, bodyLength), after `delayMs`. */
  | { readonly kind: 'echo'; readonly delayMs?: number }
  /** Reply with this status and a short text body, after `delayMs`. */
  | { readonly kind: 'status'; readonly status: number; readonly delayMs?: number }
  /** Accept the request (and read its body) but never answer; the socket stays open until close(). */
  | { readonly kind: 'hang' };

export interface Seen {
  readonly n: number;
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  /** Bytes of request body read (the whole body: it is recorded at its end). */
  readonly bodyLength: number;
}

export interface FaultBackend {
  readonly name: string;
  readonly port: number;
  readonly server: Server;
  /** Requests whose head arrived so far. */
  readonly count: number;
  /** Requests whose body was read to the end, in arrival order. */
  readonly seen: readonly Seen[];
  /** Requests held right now (head arrived, response not finished). */
  readonly active: number;
  /** Highest `active` so far. */
  readonly peakActive: number;
  /** Close the listener and every connection (in-flight requests are cut, like a crash). */
  close(): Promise<void>;
}

/** The JSON body of an `echo` action. */
export interface FaultEcho {
  readonly name: string;
  readonly n: number;
  readonly method: string;
  readonly url: string;
  readonly bodyLength: number;
}

/**
 * Starts a fault backend on 127.0.0.1 (port 0 unless `at.port` is given). `at.host` may name
 * another loopback address (`::1`) for a backend that a host name resolving there must reach.
 */
export async function startFaultBackend(
  name: string,
  behavior: Behavior,
  at: { readonly host?: string; readonly port?: number } = {},
): Promise<FaultBackend> {
  let count = 0;
  let active = 0;
  let peakActive = 0;
  const seen: Seen[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();

  const respond = (res: ServerResponse, status: number, body: string, type: string): void => {
    if (res.destroyed) return;
    res.writeHead(status, {
      'content-type': type,
      'content-length': Buffer.byteLength(body),
      'x-backend': name,
    });
    res.end(body);
  };

  const server = createServer((req, res) => {
    count++;
    const n = count;
    active++;
    peakActive = Math.max(peakActive, active);
    let done = false;
    const finished = (): void => {
      if (done) return;
      done = true;
      active--;
    };
    res.once('finish', finished);
    res.once('close', finished);
    const action = behavior(n, req);
    let bodyLength = 0;
    req.on('data', (c: Buffer) => {
      bodyLength += c.length;
    });
    req.on('end', () => {
      seen.push({ n, method: req.method ?? '', url: req.url ?? '', headers: req.headers, bodyLength });
      if (action.kind === 'hang') return;
      const send = (): void => {
        if (action.kind === 'echo') {
          const echo: FaultEcho = { name, n, method: req.method ?? '', url: req.url ?? '', bodyLength };
          respond(res, 200, JSON.stringify(echo), 'application/json');
        } else {
          respond(res, action.status, `${name} says ${action.status}\n`, 'text/plain');
        }
      };
      const delay = action.delayMs ?? 0;
      if (delay <= 0) {
        send();
        return;
      }
      const timer = setTimeout(() => {
        timers.delete(timer);
        send();
      }, delay);
      timers.add(timer);
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(at.port ?? 0, at.host ?? '127.0.0.1', () => {
      server.off('error', fail);
      ok();
    });
  });
  const port = (server.address() as AddressInfo).port;

  return {
    name,
    port,
    server,
    get count() {
      return count;
    },
    get seen() {
      return seen;
    },
    get active() {
      return active;
    },
    get peakActive() {
      return peakActive;
    },
    close: () =>
      new Promise<void>((ok) => {
        for (const t of timers) clearTimeout(t);
        timers.clear();
        server.close(() => ok());
        for (const s of sockets) s.destroy();
      }),
  };
}

/** `status` for the first `times` requests, then echo. */
export function failFirst(times: number, status: number): Behavior {
  return (n) => (n <= times ? { kind: 'status', status } : { kind: 'echo' });
}

/** The same status for every request. */
export function always(status: number, delayMs = 0): Behavior {
  return () => ({ kind: 'status', status, delayMs });
}

/** Never answer. */
export const hang: Behavior = () => ({ kind: 'hang' });

/** Echo every request, after `delayMs`. */
export function echo(delayMs = 0): Behavior {
  return () => ({ kind: 'echo', delayMs });
}

/** Resolves once `read()` stopped changing for `quietMs`, or after `maxMs` (returns the last value). */
export async function settled(
  read: () => number | Promise<number>,
  quietMs = 200,
  maxMs = 3000,
): Promise<number> {
  const deadline = Date.now() + maxMs;
  let last = await read();
  let since = Date.now();
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 25));
    const v = await read();
    if (v !== last) {
      last = v;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) {
      return v;
    }
  }
  return last;
}
