/**
 * Workload identity contracts (issue 4): SPIFFE ids, the certificate material a proxy serves and
 * originates mTLS with, where it comes from, and what the inbound side learns about a caller.
 * Rooms: tls/ produces identities and decisions; listener/ attaches a `PeerIdentity` to requests;
 * upstream/ originates TLS with an `UpstreamTls`; pipeline/ and main.ts wire them.
 */

/** `spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>`, split. */
export interface SpiffeId {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  /** The whole URI, `spiffe://…`. */
  readonly uri: string;
}

/** The identity of a caller that presented a verified client certificate (inbound mTLS). */
export interface PeerIdentity {
  /** The certificate's URI SAN, `spiffe://cluster.local/ns/default/sa/productpage`. */
  readonly spiffeId: string;
  /** Istio's principal form (no `spiffe://`): `cluster.local/ns/default/sa/productpage`. */
  readonly principal: string;
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

/** A workload certificate ready to serve: PEM chain (leaf first), its key, and its validity. */
export interface WorkloadCertificate {
  /** Leaf first, then intermediates (not the root). */
  readonly certChainPem: string;
  /** PKCS#8 PEM. Held in memory when issued in-process; never written to disk by meshlet. */
  readonly keyPem: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly spiffe: SpiffeId;
}

/**
 * Where a workload's certificate and trust bundle come from: issued in-process from a CA (short
 * lived, renewed at 70 % of its lifetime) or files managed by someone else (cert-manager, SPIRE),
 * watched and reloaded.
 */
export interface IdentitySource {
  /** The current certificate, or null until one is available (then `/ready` stays 503). */
  current(): WorkloadCertificate | null;
  /** Trust anchors, PEM, possibly several roots (anchor rotation). '' until loaded. */
  trustBundlePem(): string;
  /** Called after the certificate or the bundle changed (rotation, file update). */
  onChange(listener: () => void): void;
  /** Rotations so far (certificates after the first), for `meshlet_certificate_rotations_total`. */
  readonly rotations: number;
  /** Last error while issuing or reading (null when fine), for logs and `/ready`. */
  readonly lastError: string | null;
  close(): void;
}

/** Server-side mTLS mode of an inbound port (PeerAuthentication, spec §5). */
export type MtlsMode = 'STRICT' | 'PERMISSIVE' | 'DISABLE';

/**
 * TLS origination for one upstream attempt. The upstream client pools connections per endpoint and
 * `poolKey`, so connections with different identities or settings never mix; a rotated client
 * certificate gives a new `poolKey`, so existing connections drain while new ones use the new one.
 */
export interface UpstreamTls {
  /** Distinguishes pools of the same endpoint (mode, client identity version, expected SANs). */
  readonly poolKey: string;
  /** Client certificate chain and key (ISTIO_MUTUAL, MUTUAL); absent for SIMPLE. */
  readonly certChainPem?: string;
  readonly keyPem?: string;
  /** Trust anchors to verify the server with; absent: the system store (SIMPLE without caCertificates). */
  readonly caPem?: string;
  /** SNI to send; absent: none. */
  readonly servername?: string;
  /** ALPN protocols to offer (ISTIO_MUTUAL: `istio-http/1.1`, `istio`). */
  readonly alpn?: readonly string[];
  /**
   * The server certificate must carry one of these URI or DNS SANs (exact); empty: chain check only.
   * A mismatch fails the attempt as a connect failure with the reason in `detail`.
   */
  readonly expectedSans: readonly string[];
  /** Skip all verification (DR `insecureSkipVerify`). */
  readonly insecureSkipVerify?: boolean;
}
