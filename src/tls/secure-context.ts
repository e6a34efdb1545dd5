/**
 * TLS secure contexts for a workload certificate, built once per certificate (and trust bundle),
 * not per connection: parsing PEM and loading a CA store costs far more than a handshake's share.
 * A rotation gives a new `WorkloadCertificate` object, hence new contexts; connections already
 * open keep the context they were made with.
 *
 * Settings: TLS 1.2 minimum (TLS 1.3 is negotiated whenever the peer has it, Node's default
 * maximum); Node's default cipher suites and groups. Whether client certificates are requested is
 * a server option (`requestCert`), not part of the context.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { IdentitySource, UpstreamTls, WorkloadCertificate } from './identity-types.ts';

export const MIN_TLS_VERSION = 'TLSv1.2';
/** ALPN offered by ISTIO_MUTUAL origination (what Istio's sidecars offer for HTTP/1.1). */
export const ISTIO_ALPN: readonly string[] = ['istio-http/1.1', 'istio'];

interface Cached {
  readonly bundle: string;
  readonly ctx: SecureContext;
}

const serverCache = new WeakMap<WorkloadCertificate, Cached>();
const clientCache = new WeakMap<WorkloadCertificate, Cached>();
const fingerprints = new WeakMap<WorkloadCertificate, string>();

function build(cert: WorkloadCertificate, bundlePem: string, server: boolean): SecureContext {
  return createSecureContext({
    cert: cert.certChainPem,
    key: cert.keyPem,
    // An empty bundle would silently mean "Node's built-in public roots": never for the mesh.
    ca: bundlePem === '' ? [] : bundlePem,
    minVersion: MIN_TLS_VERSION,
    // A server that asks for client certificates needs a session id context, or OpenSSL refuses
    // to resume a session ("session id context uninitialized": the client gets an internal-error
    // alert). The inbound listener wraps sockets itself (no tls.Server sets one), so it is here.
    ...(server ? { sessionIdContext: 'meshlet-inbound' } : {}),
  });
}

function cached(
  cache: WeakMap<WorkloadCertificate, Cached>,
  cert: WorkloadCertificate,
  bundlePem: string,
): SecureContext {
  const hit = cache.get(cert);
  // The same bundle string object is handed out until it changes, so this compare is cheap.
  if (hit !== undefined && hit.bundle === bundlePem) return hit.ctx;
  const ctx = build(cert, bundlePem, cache === serverCache);
  cache.set(cert, { bundle: bundlePem, ctx });
  return ctx;
}

/** Server side of inbound mTLS: this workload's certificate, peers verified against `bundlePem`. */
export function serverSecureContext(cert: WorkloadCertificate, bundlePem: string): SecureContext {
  return cached(serverCache, cert, bundlePem);
}

/** Client side of mTLS origination: presents `cert`, verifies servers against `bundlePem`. */
export function clientSecureContext(cert: WorkloadCertificate, bundlePem: string): SecureContext {
  return cached(clientCache, cert, bundlePem);
}

/**
 * For `InboundTls.secureContext`: the current certificate's server context, or null while the
 * source has none (then TLS connections are refused).
 */
export function inboundSecureContext(source: IdentitySource): () => SecureContext | null {
  return () => {
    const cert = source.current();
    return cert === null ? null : serverSecureContext(cert, source.trustBundlePem());
  };
}

/** A short, stable id of a certificate (SHA-256 of the leaf, 16 hex digits), for pool keys and logs. */
export function certificateFingerprint(cert: WorkloadCertificate): string {
  let fp = fingerprints.get(cert);
  if (fp === undefined) {
    fp = new X509Certificate(cert.certChainPem).fingerprint256.replace(/:/g, '').slice(0, 16).toLowerCase();
    fingerprints.set(cert, fp);
  }
  return fp;
}

let lastBundle = '';
let lastBundleHash = createHash('sha256').update('').digest('hex').slice(0, 16);

/** Bundle hash, memoized for the one bundle a process normally has (this runs per upstream attempt). */
function bundleHash(text: string): string {
  if (text !== lastBundle) {
    lastBundle = text;
    lastBundleHash = createHash('sha256').update(text).digest('hex').slice(0, 16);
  }
  return lastBundleHash;
}

export interface IstioMutualOptions {
  /** The server must present one of these SANs (`spiffe://…`); empty: chain check only. */
  readonly expectedSans: readonly string[];
  readonly servername?: string;
}

/**
 * `UpstreamTls` for ISTIO_MUTUAL / auto-mTLS with this workload's identity. The pool key changes
 * with the certificate (rotation), the trust bundle and the expected SANs, so connections made
 * with different identities or expectations never share a pool.
 */
export function istioMutualTls(
  cert: WorkloadCertificate,
  bundlePem: string,
  o: IstioMutualOptions,
): UpstreamTls {
  const sans = [...o.expectedSans];
  return {
    poolKey: `istio|${certificateFingerprint(cert)}|${bundleHash(bundlePem)}|${sans.join(',')}|${o.servername ?? ''}`,
    certChainPem: cert.certChainPem,
    keyPem: cert.keyPem,
    caPem: bundlePem,
    alpn: ISTIO_ALPN,
    expectedSans: sans,
    ...(o.servername !== undefined && { servername: o.servername }),
  };
}
