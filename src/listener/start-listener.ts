/**
 * Starts a listener on the requested engine. `uws` falls back to `node` when the native addon
 * cannot load, and to `h1` when the listener terminates TLS (uWebSockets.js, as built here, gives
 * no access to the client certificate, so it cannot tell who the caller is). The returned `engine`
 * says which one serves and `fallbackReason` why it differs; the caller logs it.
 * `h1` (net sockets, meshlet's own codec) needs nothing native and always starts.
 */
import { listenH1 } from './h1-engine.ts';
import type { InboundTlsCounters, TlsAwareListener } from './inbound-tls.ts';
import type { Listener, ListenOptions } from './listener-types.ts';
import { listenNode } from './node-engine.ts';
import { listenUws, loadUws, uwsLoadFailure } from './uws-engine.ts';

/** A started listener: the contract, its TLS counters (0 without TLS), and why its engine differs. */
export interface StartedListener extends Listener, InboundTlsCounters {
  /** Why `engine` is not the engine asked for; null when it is. */
  readonly fallbackReason: string | null;
}

export const UWS_TLS_FALLBACK =
  'uWebSockets.js gives no access to the client certificate here, so listeners that terminate mTLS run on h1';

function started(
  l: Listener,
  counters: InboundTlsCounters | null,
  fallbackReason: string | null,
): StartedListener {
  return {
    name: l.name,
    engine: l.engine,
    host: l.host,
    port: l.port,
    stopAccepting: () => l.stopAccepting(),
    inFlight: () => l.inFlight(),
    connectionsActive: () => l.connectionsActive(),
    connectionsTotal: () => l.connectionsTotal(),
    close: () => l.close(),
    tlsHandshakeErrors: () => (counters === null ? 0 : counters.tlsHandshakeErrors()),
    plaintextRefused: () => (counters === null ? 0 : counters.plaintextRefused()),
    fallbackReason,
  };
}

function withCounters(l: TlsAwareListener, fallbackReason: string | null): StartedListener {
  return started(l, l, fallbackReason);
}

export async function startListener(opts: ListenOptions): Promise<StartedListener> {
  if (opts.engine === 'h1') return withCounters(await listenH1(opts), null);
  if (opts.engine === 'uws') {
    if (opts.tls !== undefined)
      return withCounters(await listenH1({ ...opts, engine: 'h1' }), UWS_TLS_FALLBACK);
    const uws = loadUws();
    if (uws !== null) return started(await listenUws(uws, opts), null, null);
    const reason = uwsLoadFailure() ?? 'the uWebSockets.js addon did not load';
    return withCounters(await listenNode({ ...opts, engine: 'node' }), reason);
  }
  return withCounters(await listenNode(opts), null);
}

/** Why the uws engine is unavailable (null when it loaded, or was never asked for). */
export function uwsUnavailableReason(): string | null {
  return uwsLoadFailure();
}
