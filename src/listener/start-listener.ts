/**
 * Starts a listener on the requested engine. `uws` falls back to `node` when the native addon
 * cannot load; the returned `engine` says which one serves, and the caller logs a difference.
 * `h1` (net sockets, meshlet's own codec) needs nothing native and always starts.
 */
import { listenH1 } from './h1-engine.ts';
import type { Listener, ListenOptions } from './listener-types.ts';
import { listenNode } from './node-engine.ts';
import { listenUws, loadUws, uwsLoadFailure } from './uws-engine.ts';

export async function startListener(opts: ListenOptions): Promise<Listener> {
  if (opts.engine === 'h1') return listenH1(opts);
  if (opts.engine === 'uws') {
    const uws = loadUws();
    if (uws !== null) return listenUws(uws, opts);
  }
  return listenNode(opts);
}

/** Why the uws engine is unavailable (null when it loaded, or was never asked for). */
export function uwsUnavailableReason(): string | null {
  return uwsLoadFailure();
}
