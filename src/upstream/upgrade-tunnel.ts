/**
 * Upgrade (WebSocket) passthrough for the node engine: a raw TCP connection to the endpoint, the
 * request head written by hand, then bytes copied both ways.
 *
 * Lifecycle:
 * 1. connect (bounded by `connectTimeoutMs`); failure → `onFailure('connect' | 'timeout')`;
 * 2. write the request line, `req.headers` (which carry `connection: upgrade` and `upgrade`) and `head`;
 * 3. read the upstream response head (at most 64 KiB). Closed or reset before it → `onFailure('reset')`,
 *    unparsable → `onFailure('protocol')`. Up to here nothing was written to `client`, so the caller
 *    answers with a local reply;
 * 4. `101`: relay the head and pipe both ways until either side closes; an error on either side
 *    destroys both. Any other status: relay the response as is (it is not an upgrade), stop reading the
 *    client, half-close upstream, and end the client when the body is complete (by Content-Length) or
 *    when the upstream closes.
 */
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { failureBeforeSend } from './upstream-errors.ts';
import type { UpstreamFailure, UpstreamRequest, UpstreamTarget } from './upstream-types.ts';

export interface UpgradeTunnelOptions {
  /** Default 10 000 (Istio's mesh `connectTimeout`). */
  readonly connectTimeoutMs?: number;
}

const MAX_RESPONSE_HEAD = 64 * 1024;
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');
const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})(?: |\r)/;
const CONTENT_LENGTH = /\r\ncontent-length:[ \t]*(\d+)[ \t]*\r\n/i;

const State = {
  connecting: 0,
  awaitingResponse: 1,
  relaying: 2,
  done: 3,
} as const;
type TunnelState = (typeof State)[keyof typeof State];

export function openUpgradeTunnel(
  target: UpstreamTarget,
  req: UpstreamRequest,
  client: Duplex,
  head: Buffer,
  onFailure: (failure: UpstreamFailure, detail: string) => void,
  opts: UpgradeTunnelOptions = {},
): void {
  const upstream: Socket = connect({ host: target.address, port: target.port });
  let state: TunnelState = State.connecting;
  let pending: Buffer[] = [];
  let pendingBytes = 0;

  const fail = (failure: UpstreamFailure, detail: string): void => {
    if (state >= State.relaying) return;
    state = State.done;
    pending = [];
    upstream.destroy();
    onFailure(failure, detail);
  };

  const onClientGone = (): void => {
    if (state === State.done) return;
    state = State.done;
    upstream.destroy();
  };

  if (client.destroyed) {
    state = State.done;
    upstream.destroy();
    return;
  }
  client.on('error', () => {
    onClientGone();
    client.destroy();
  });
  client.on('close', onClientGone);

  upstream.setNoDelay(true);
  upstream.setTimeout(opts.connectTimeoutMs ?? 10_000, () => {
    if (state === State.connecting) fail('timeout', 'connect timeout');
  });

  upstream.on('connect', () => {
    if (state !== State.connecting) return;
    state = State.awaitingResponse;
    upstream.setTimeout(0);
    upstream.write(requestHead(req), 'latin1');
    if (head.length > 0) upstream.write(head);
  });

  upstream.on('error', (err: Error & { code?: string }) => {
    if (state === State.connecting) {
      fail(failureBeforeSend(err.code ?? ''), `${err.code ?? ''} ${err.message}`.trim());
    } else if (state === State.awaitingResponse) {
      fail('reset', `${err.code ?? ''} ${err.message}`.trim());
    } else if (state === State.relaying) {
      state = State.done;
      client.destroy();
    }
  });

  upstream.on('close', () => {
    if (state < State.relaying) fail('reset', 'upstream closed before responding');
    else if (state === State.relaying) {
      state = State.done;
      client.end();
    }
  });

  const onHead = (chunk: Buffer): void => {
    if (state !== State.awaitingResponse) return;
    pending.push(chunk);
    pendingBytes += chunk.length;
    const buffered = pending.length === 1 ? chunk : Buffer.concat(pending, pendingBytes);
    const end = buffered.indexOf(HEAD_END);
    if (end === -1) {
      if (pendingBytes > MAX_RESPONSE_HEAD) fail('protocol', 'upstream response head too large');
      else pending = [buffered];
      return;
    }
    const headText = buffered.toString('latin1', 0, end + 2);
    const status = STATUS_LINE.exec(headText);
    if (status === null) {
      fail('protocol', 'invalid upstream status line');
      return;
    }
    pending = [];
    state = State.relaying;
    upstream.removeListener('data', onHead);
    client.write(buffered);
    if (status[1] === '101') {
      upstream.pipe(client);
      client.pipe(upstream);
      return;
    }
    // Not upgraded: relay this one response and close.
    upstream.end();
    const length = CONTENT_LENGTH.exec(headText);
    if (length === null) {
      upstream.pipe(client);
      return;
    }
    let remaining = Number(length[1]) - (buffered.length - end - HEAD_END.length);
    if (remaining <= 0) {
      finishPlain();
      return;
    }
    upstream.on('data', (more: Buffer) => {
      if (state !== State.relaying) return;
      remaining -= more.length;
      if (remaining <= 0) {
        client.write(remaining === 0 ? more : more.subarray(0, more.length + remaining));
        finishPlain();
      } else if (!client.write(more)) {
        upstream.pause();
        client.once('drain', () => upstream.resume());
      }
    });
  };

  const finishPlain = (): void => {
    state = State.done;
    client.end();
    upstream.destroy();
  };

  upstream.on('data', onHead);
}

function requestHead(req: UpstreamRequest): string {
  let text = `${req.method} ${req.path} HTTP/1.1\r\n`;
  const h = req.headers;
  for (let i = 0; i + 1 < h.length; i += 2) text += `${h[i]}: ${h[i + 1]}\r\n`;
  return `${text}\r\n`;
}
