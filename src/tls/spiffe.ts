/**
 * SPIFFE ids in the one shape the mesh uses, `spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>`,
 * and the peer identity read from a certificate's URI SAN.
 *
 * Parsing is strict on purpose: an identity decides authorization, so anything that is not exactly
 * that shape (other paths, query, fragment, percent-encoding, upper-case scheme or trust domain,
 * `.`/`..` segments, port or user info) is not an identity at all. Character sets follow the SPIFFE
 * ID specification: trust domain `[a-z0-9._-]`, path segments `[a-zA-Z0-9._-]`.
 */
import type { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import type { PeerIdentity, SpiffeId } from './identity-types.ts';

const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;
/** The SPIFFE specification caps a trust domain at 255 bytes and a whole id at 2048. */
const MAX_TRUST_DOMAIN = 255;
const MAX_URI = 2048;
const PREFIX = 'spiffe://';

function validTrustDomain(td: string): boolean {
  return td.length > 0 && td.length <= MAX_TRUST_DOMAIN && TRUST_DOMAIN.test(td);
}

function validSegment(s: string): boolean {
  return SEGMENT.test(s) && s !== '.' && s !== '..';
}

/** `spiffe://td/ns/NS/sa/SA` split, or null for anything else. */
export function parseSpiffeUri(uri: string): SpiffeId | null {
  if (uri.length > MAX_URI || !uri.startsWith(PREFIX)) return null;
  const parts = uri.slice(PREFIX.length).split('/');
  if (parts.length !== 5) return null;
  const [trustDomain, nsKey, namespace, saKey, serviceAccount] = parts as [
    string,
    string,
    string,
    string,
    string,
  ];
  if (!validTrustDomain(trustDomain) || nsKey !== 'ns' || saKey !== 'sa') return null;
  if (!validSegment(namespace) || !validSegment(serviceAccount)) return null;
  return { trustDomain, namespace, serviceAccount, uri };
}

/**
 * Builds the id of a workload. Throws a RangeError naming the bad part when a component could not
 * appear in a valid id (better to fail at configuration time than to issue a certificate nobody
 * can parse back).
 */
export function spiffeUri(trustDomain: string, namespace: string, serviceAccount: string): string {
  if (!validTrustDomain(trustDomain)) {
    throw new RangeError(`invalid SPIFFE trust domain "${trustDomain}" (lower-case letters, digits, . _ -)`);
  }
  if (!validSegment(namespace)) throw new RangeError(`invalid namespace "${namespace}" for a SPIFFE id`);
  if (!validSegment(serviceAccount)) {
    throw new RangeError(`invalid service account "${serviceAccount}" for a SPIFFE id`);
  }
  return `${PREFIX}${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

/** The `SpiffeId` of a workload (validated like `spiffeUri`). */
export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): SpiffeId {
  return { trustDomain, namespace, serviceAccount, uri: spiffeUri(trustDomain, namespace, serviceAccount) };
}

export function peerIdentityFromSpiffe(id: SpiffeId): PeerIdentity {
  return {
    spiffeId: id.uri,
    principal: id.uri.slice(PREFIX.length),
    trustDomain: id.trustDomain,
    namespace: id.namespace,
    serviceAccount: id.serviceAccount,
  };
}

/**
 * Splits Node's `subjectaltname` string (`DNS:a, URI:spiffe://…, IP Address:1.2.3.4`) into
 * `[type, value]` pairs. Since Node 17.3 a value holding a comma, quote, backslash or a control
 * character is printed as a JSON string (`URI:"spiffe://a,b"`), so a naive split on ", " could let
 * a crafted name smuggle a second entry; quoted values are decoded here instead. Returns null when
 * the string is malformed (an unterminated quote), which the caller treats as "no identity".
 */
export function splitSubjectAltNames(text: string): Array<[string, string]> | null {
  const out: Array<[string, string]> = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) return null;
    const type = text.slice(i, colon);
    let j = colon + 1;
    let value: string;
    if (text[j] === '"') {
      // Find the closing quote, skipping escaped characters, then let JSON decode the escapes.
      let k = j + 1;
      while (k < text.length && text[k] !== '"') k += text[k] === '\\' ? 2 : 1;
      if (k >= text.length) return null;
      try {
        value = JSON.parse(text.slice(j, k + 1)) as string;
      } catch {
        return null;
      }
      j = k + 1;
      if (j < text.length && !text.startsWith(', ', j)) return null;
    } else {
      const sep = text.indexOf(', ', j);
      const end = sep < 0 ? text.length : sep;
      value = text.slice(j, end);
      j = end;
    }
    out.push([type, value]);
    i = j < text.length ? j + 2 : j;
  }
  return out;
}

function altNamesOf(cert: PeerCertificate | X509Certificate): string | undefined {
  // X509Certificate spells it `subjectAltName`, the TLS peer certificate object `subjectaltname`.
  if ('subjectAltName' in cert) return cert.subjectAltName;
  return (cert as PeerCertificate).subjectaltname;
}

/**
 * The peer identity of a certificate: its one `spiffe://` URI SAN, parsed strictly. Null when it
 * has none, several (ambiguous), or one that is not a workload id. Other URI SANs are ignored.
 * The caller must have verified the certificate chain; this only reads names.
 */
export function peerIdentityFromCertificate(cert: PeerCertificate | X509Certificate): PeerIdentity | null {
  const text = altNamesOf(cert);
  if (text === undefined || text === '') return null;
  const names = splitSubjectAltNames(text);
  if (names === null) return null;
  let found: string | undefined;
  for (const [type, value] of names) {
    if (type !== 'URI' || !value.toLowerCase().startsWith('spiffe:')) continue;
    if (found !== undefined) return null;
    found = value;
  }
  if (found === undefined) return null;
  const id = parseSpiffeUri(found);
  return id === null ? null : peerIdentityFromSpiffe(id);
}
