/**
 * mTLS origination on the request path (spec §3.7): turns the endpoint an attempt picked into the
 * upstream target the client connects to, with the TLS settings the origination module decided
 * (DestinationRule `tls`, or auto-mTLS for endpoints labelled `security.istio.io/tlsMode: istio`).
 *
 * A plaintext endpoint is its own target (no allocation). A TLS target is made once per endpoint
 * and TLS settings, and kept until either changes: the origination module returns the same settings
 * object until the certificate rotates or the configuration is reloaded, so a steady stream of
 * requests allocates nothing here.
 */
import type { Cluster, Endpoint } from '../router/route-types.ts';
import type { UpstreamTls } from '../tls/identity-types.ts';
import type { UpstreamTarget } from '../upstream/upstream-types.ts';
import { originationError, type PipelineDeps } from './pipeline-types.ts';

interface CachedTarget {
  readonly tls: UpstreamTls;
  readonly target: UpstreamTarget;
}

/** The TLS target last made per endpoint object (endpoints go with their snapshot). */
const tlsTargets = new WeakMap<Endpoint, CachedTarget>();

/**
 * The target of an attempt to `endpoint` of `cluster` (its `tls` set when TLS is originated), or,
 * as a string, why TLS cannot be originated now. A plaintext endpoint is returned as it is.
 */
export function attemptTarget(
  deps: PipelineDeps,
  cluster: Cluster,
  endpoint: Endpoint,
): UpstreamTarget | string {
  const originate = deps.originate;
  if (originate === undefined) return endpoint;
  const o = originate(cluster, endpoint);
  if (o === undefined) return endpoint;
  const error = originationError(o);
  if (error !== null) return error;
  const tls = o as UpstreamTls;
  const cached = tlsTargets.get(endpoint);
  if (cached !== undefined && cached.tls === tls) return cached.target;
  const target: UpstreamTarget = { address: endpoint.address, port: endpoint.port, tls };
  tlsTargets.set(endpoint, { tls, target });
  return target;
}

/**
 * The principal labels of an mTLS attempt (spec §7.2, client side): the server's identity is the one
 * SAN it had to present when exactly one was expected (the client checked it), else unknown.
 * Empty string when the attempt carried no client certificate (plaintext or SIMPLE TLS).
 */
export function upstreamPrincipal(tls: UpstreamTls | undefined): string {
  if (tls === undefined || tls.certChainPem === undefined) return '';
  const sans = tls.expectedSans;
  const only = sans.length === 1 ? sans[0] : undefined;
  return only?.startsWith('spiffe://') === true ? only : 'unknown';
}
