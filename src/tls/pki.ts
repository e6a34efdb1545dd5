/**
 * The mesh PKI: a root CA and short-lived workload certificates (X.509-SVIDs) whose only name is
 * the URI SAN `spiffe://<td>/ns/<ns>/sa/<sa>`.
 *
 * Division of labour: node-forge's ASN.1 module writes the certificate structure (DER), Node's
 * crypto generates keys and signs. node-forge can only sign with RSA in pure JavaScript (tens of ms
 * of blocked event loop per signature, seconds to generate a 2048-bit key), while Node's
 * `generateKeyPair` and callback-style `sign` run natively on the libuv thread pool, for any key
 * type. Certificates are read back with Node's `X509Certificate`.
 *
 * Key type: ECDSA P-256 by default, as Linkerd does. Measured with `npm run bench:tls-keys -- --rounds 5
 * --duration 2 --samples 5` (2-core AMD EPYC, Node 20.20 / OpenSSL 3.0.19, on a shared machine at load
 * average about 7), CPU of the server process per new mTLS handshake with TLS 1.3 (TLS 1.2 in
 * brackets), the client side paying about as much again:
 *
 *   P-256 1554 µs (1307), RSA-2048 1553 µs (1347), RSA-3072 3392 µs (3098), Ed25519 1365 µs (1188)
 *
 * In Node most of a handshake is fixed cost (OpenSSL 3.0, sockets); the signatures themselves differ
 * more (`openssl speed` here: RSA-2048 sign 253 µs / verify 14 µs, P-256 19 / 61 µs) but each side
 * makes one signature and two verifications, so P-256 and RSA-2048 come out even and RSA-3072
 * doubles the cost. What decides is the rest: generating a P-256 key takes 0.1 ms against 170 ms for
 * RSA-2048 (550 ms for RSA-3072) at every issuance, and the certificate is about half the size (680
 * against 1216 bytes on every handshake). Ed25519 was about 12 % cheaper in that run, within the
 * noise of a busy machine, and is not what Istio or Linkerd peers expect, so it is offered
 * (`keyType`) but not the default; so is RSA, for peers that need it.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPair as cryptoGenerateKeyPair,
  type KeyObject,
  randomBytes,
  sign,
  X509Certificate,
} from 'node:crypto';
import forge from 'node-forge';
import type { SpiffeId, WorkloadCertificate } from './identity-types.ts';
import { parseSpiffeUri, peerIdentityFromCertificate, spiffeId } from './spiffe.ts';

export type KeyType = 'ec-p256' | 'rsa-2048' | 'rsa-3072' | 'ed25519';
export const KEY_TYPES: readonly KeyType[] = ['ec-p256', 'rsa-2048', 'rsa-3072', 'ed25519'];
export const DEFAULT_KEY_TYPE: KeyType = 'ec-p256';

/** Root CA lifetime: 10 years, what Linkerd recommends for trust anchors. */
export const DEFAULT_CA_VALIDITY_MS = 10 * 365 * 24 * 3600_000;
/** Workload certificate lifetime: 24 h (Istio's and Linkerd's default). */
export const DEFAULT_CERT_TTL_MS = 24 * 3600_000;
/** notBefore is set this far back so that peers whose clocks lag a little accept a fresh certificate. */
export const CLOCK_SKEW_MS = 60_000;

/** A CA able to sign: its certificate (PEM and parsed), its private key, and its trust domain. */
export interface CaMaterial {
  readonly certPem: string;
  readonly keyPem: string;
  readonly cert: X509Certificate;
  readonly key: KeyObject;
  readonly trustDomain: string;
}

export interface PkiClock {
  /** Milliseconds since the epoch (default Date.now). */
  readonly now?: () => number;
  /** Random bytes for serial numbers (default crypto.randomBytes). */
  readonly random?: (size: number) => Buffer;
}

export interface CreateCaOptions extends PkiClock {
  readonly trustDomain: string;
  readonly keyType?: KeyType;
  readonly validityMs?: number;
}

export interface IssueOptions extends PkiClock {
  readonly ttlMs?: number;
  readonly keyType?: KeyType;
}

// ---------------------------------------------------------------------------------------------
// Keys and signatures (Node crypto)

/** A new key pair, generated off the event loop. */
export function generateKeyPair(type: KeyType = DEFAULT_KEY_TYPE): Promise<KeyObject> {
  return new Promise((ok, fail) => {
    const done = (err: Error | null, _pub: KeyObject, priv: KeyObject): void => {
      if (err) fail(err);
      else ok(priv);
    };
    switch (type) {
      case 'ec-p256':
        cryptoGenerateKeyPair('ec', { namedCurve: 'prime256v1' }, done);
        break;
      case 'rsa-2048':
        cryptoGenerateKeyPair('rsa', { modulusLength: 2048 }, done);
        break;
      case 'rsa-3072':
        cryptoGenerateKeyPair('rsa', { modulusLength: 3072 }, done);
        break;
      case 'ed25519':
        cryptoGenerateKeyPair('ed25519', undefined, done);
        break;
    }
  });
}

interface SignatureScheme {
  /** Digest for crypto.sign, null for Ed25519 (it hashes internally). */
  readonly digest: string | null;
  readonly oid: string;
  /** RSA AlgorithmIdentifiers carry an explicit NULL parameter; ECDSA and Ed25519 none. */
  readonly nullParams: boolean;
}

/** The signature algorithm a CA key signs with. */
function signatureScheme(key: KeyObject): SignatureScheme {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return { digest: 'sha256', oid: '1.2.840.113549.1.1.11', nullParams: true };
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === 'prime256v1') return { digest: 'sha256', oid: '1.2.840.10045.4.3.2', nullParams: false };
      if (curve === 'secp384r1') return { digest: 'sha384', oid: '1.2.840.10045.4.3.3', nullParams: false };
      throw new Error(`unsupported CA key curve ${curve ?? '(unknown)'} (P-256 or P-384 expected)`);
    }
    case 'ed25519':
      return { digest: null, oid: '1.3.101.112', nullParams: false };
    default:
      throw new Error(`unsupported CA key type ${key.asymmetricKeyType ?? '(unknown)'}`);
  }
}

function signAsync(scheme: SignatureScheme, data: Buffer, key: KeyObject): Promise<Buffer> {
  return new Promise((ok, fail) => {
    // The callback form runs on the thread pool; ECDSA signatures come out DER-encoded, as X.509 wants.
    sign(scheme.digest, data, key, (err, sig) => (err ? fail(err) : ok(sig)));
  });
}

// ---------------------------------------------------------------------------------------------
// DER building (node-forge ASN.1)

const { asn1 } = forge;
type Asn1 = forge.asn1.Asn1;
const U = asn1.Class.UNIVERSAL;
const T = asn1.Type;

const bin = (b: Buffer): string => b.toString('binary');
const seq = (items: Asn1[]): Asn1 => asn1.create(U, T.SEQUENCE, true, items);
const oid = (id: string): Asn1 => asn1.create(U, T.OID, false, asn1.oidToDer(id).getBytes());
const octets = (bytes: string): Asn1 => asn1.create(U, T.OCTETSTRING, false, bytes);
const bool = (v: boolean): Asn1 => asn1.create(U, T.BOOLEAN, false, String.fromCharCode(v ? 0xff : 0));
const explicit = (tag: number, inner: Asn1): Asn1 =>
  asn1.create(asn1.Class.CONTEXT_SPECIFIC, tag, true, [inner]);
const toDer = (node: Asn1): Buffer => Buffer.from(asn1.toDer(node).getBytes(), 'binary');
const fromDer = (der: Buffer): Asn1 => asn1.fromDer(forge.util.createBuffer(bin(der)));

/** RFC 5280 §4.1.2.5: UTCTime until 2049, GeneralizedTime from 2050. */
function time(d: Date): Asn1 {
  return d.getUTCFullYear() < 2050
    ? asn1.create(U, T.UTCTIME, false, asn1.dateToUtcTime(d))
    : asn1.create(U, T.GENERALIZEDTIME, false, asn1.dateToGeneralizedTime(d));
}

/** O=…, CN=… as UTF8Strings, one attribute per RDN. */
function distinguishedName(attrs: ReadonlyArray<readonly [string, string]>): Asn1 {
  return seq(
    attrs.map(([id, value]) =>
      asn1.create(U, T.SET, true, [
        seq([oid(id), asn1.create(U, T.UTF8, false, forge.util.encodeUtf8(value))]),
      ]),
    ),
  );
}

function extension(id: string, critical: boolean, value: Asn1): Asn1 {
  return seq([oid(id), ...(critical ? [bool(true)] : []), octets(asn1.toDer(value).getBytes())]);
}

/** KeyUsage BIT STRING from bit numbers (0 = digitalSignature … 6 = cRLSign), minimal DER. */
function keyUsage(bits: readonly number[]): Asn1 {
  let byte = 0;
  for (const b of bits) byte |= 0x80 >> b;
  const unused = 7 - Math.max(...bits);
  return asn1.create(U, T.BITSTRING, false, String.fromCharCode(unused, byte));
}

const OID = {
  organization: '2.5.4.10',
  commonName: '2.5.4.3',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

/** GeneralNames with one uniformResourceIdentifier ([6] IA5String). */
function uriSan(uri: string): Asn1 {
  return seq([asn1.create(asn1.Class.CONTEXT_SPECIFIC, 6, false, uri)]);
}

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
function keyIdentifier(spkiDer: Buffer): Buffer {
  const bits = (fromDer(spkiDer).value as Asn1[])[1];
  // forge decodes a BIT STRING that holds DER (an RSA key) into children and keeps the raw bytes
  // in `bitStringContents`; an EC or Ed25519 point stays a plain byte string.
  const raw = bits !== undefined && 'bitStringContents' in bits ? bits.bitStringContents : bits?.value;
  if (typeof raw !== 'string') throw new Error('malformed public key');
  return createHash('sha1')
    .update(Buffer.from(raw.slice(1), 'binary'))
    .digest();
}

/** 16 random bytes as a positive, minimally encoded INTEGER (RFC 5280 allows up to 20 octets). */
function serialNumber(random: (n: number) => Buffer): Asn1 {
  const bytes = Buffer.from(random(16));
  bytes[0] = bytes[0]! & 0x7f || 0x01;
  return asn1.create(U, T.INTEGER, false, bin(bytes));
}

function algorithmIdentifier(scheme: SignatureScheme): Asn1 {
  return seq([oid(scheme.oid), ...(scheme.nullParams ? [asn1.create(U, T.NULL, false, '')] : [])]);
}

interface TbsInput {
  readonly serial: Asn1;
  readonly scheme: SignatureScheme;
  readonly issuer: Asn1;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly subject: Asn1;
  readonly spkiDer: Buffer;
  readonly extensions: Asn1[];
}

async function signCertificate(tbs: TbsInput, signer: KeyObject): Promise<string> {
  const tbsNode = seq([
    explicit(0, asn1.create(U, T.INTEGER, false, String.fromCharCode(2))), // v3
    tbs.serial,
    algorithmIdentifier(tbs.scheme),
    tbs.issuer,
    seq([time(tbs.notBefore), time(tbs.notAfter)]),
    tbs.subject,
    fromDer(tbs.spkiDer),
    explicit(3, seq(tbs.extensions)),
  ]);
  const tbsDer = toDer(tbsNode);
  const signature = await signAsync(tbs.scheme, tbsDer, signer);
  const cert = seq([
    fromDer(tbsDer),
    algorithmIdentifier(tbs.scheme),
    asn1.create(U, T.BITSTRING, false, `\x00${bin(signature)}`),
  ]);
  return derToPem(toDer(cert));
}

// ---------------------------------------------------------------------------------------------
// PEM

export function derToPem(der: Buffer, label = 'CERTIFICATE'): string {
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN ${label}-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END ${label}-----\n`;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** The PEM certificate blocks of a file or bundle, in order (text between blocks is ignored). */
export function splitPemCertificates(text: string): string[] {
  return (text.match(PEM_CERT) ?? []).map((block) => `${block}\n`);
}

// ---------------------------------------------------------------------------------------------
// Reading the CA's own fields back (subject bytes and key identifier, for the leaves it signs)

function tbsFields(cert: X509Certificate): Asn1[] {
  const root = fromDer(cert.raw).value as Asn1[];
  const tbs = root[0]?.value;
  if (!Array.isArray(tbs)) throw new Error('malformed certificate');
  // A v1 certificate has no [0] version field: align the indices on a v3 layout.
  const first = tbs[0];
  return first !== undefined && first.tagClass === asn1.Class.CONTEXT_SPECIFIC ? tbs : [first!, ...tbs];
}

/** The subject Name as encoded in the certificate: the issuer field of leaves must match it. */
function subjectName(cert: X509Certificate): Asn1 {
  const subject = tbsFields(cert)[5];
  if (subject === undefined) throw new Error('malformed certificate: no subject');
  return subject;
}

/** The certificate's subjectKeyIdentifier, or null when it has none. */
function subjectKeyIdentifier(cert: X509Certificate): Buffer | null {
  for (const field of tbsFields(cert).slice(7)) {
    if (field.tagClass !== asn1.Class.CONTEXT_SPECIFIC || field.type !== 3) continue;
    const exts = (field.value as Asn1[])[0]?.value as Asn1[] | undefined;
    for (const ext of exts ?? []) {
      const parts = ext.value as Asn1[];
      const id = parts[0]?.value;
      if (typeof id !== 'string' || asn1.derToOid(id) !== OID.subjectKeyIdentifier) continue;
      const inner = parts[parts.length - 1]?.value;
      if (typeof inner !== 'string') return null;
      const ski = fromDer(Buffer.from(inner, 'binary')).value;
      return typeof ski === 'string' ? Buffer.from(ski, 'binary') : null;
    }
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// CA and workload certificates

function clockOf(o: PkiClock): { now: number; random: (n: number) => Buffer } {
  return { now: (o.now ?? Date.now)(), random: o.random ?? randomBytes };
}

/** A self-signed root: CA:true, keyCertSign+cRLSign, O=meshlet, CN=`<td> root`, URI SAN `spiffe://<td>`. */
export async function createRootCa(o: CreateCaOptions): Promise<CaMaterial> {
  spiffeId(o.trustDomain, 'x', 'x'); // validates the trust domain, with a clear error
  const { now, random } = clockOf(o);
  const key = await generateKeyPair(o.keyType ?? DEFAULT_KEY_TYPE);
  const spkiDer = publicSpki(key);
  const name = distinguishedName([
    [OID.organization, 'meshlet'],
    [OID.commonName, `${o.trustDomain} root`],
  ]);
  const ski = keyIdentifier(spkiDer);
  const certPem = await signCertificate(
    {
      serial: serialNumber(random),
      scheme: signatureScheme(key),
      issuer: name,
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter: new Date(now + (o.validityMs ?? DEFAULT_CA_VALIDITY_MS)),
      subject: name,
      spkiDer,
      extensions: [
        extension(OID.basicConstraints, true, seq([bool(true)])),
        extension(OID.keyUsage, true, keyUsage([5, 6])),
        extension(OID.subjectKeyIdentifier, false, octets(bin(ski))),
        extension(OID.subjectAltName, false, uriSan(`spiffe://${o.trustDomain}`)),
      ],
    },
    key,
  );
  return caFromPem(certPem, privateKeyPem(key));
}

/** SubjectPublicKeyInfo (DER) of a private key's public half. */
function publicSpki(key: KeyObject): Buffer {
  return createPublicKey(key).export({ type: 'spki', format: 'der' });
}

function privateKeyPem(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

/**
 * A workload certificate for `spiffe`, signed by `ca`: empty subject and a critical URI SAN (the
 * SPIFFE X.509-SVID shape), digitalSignature (+ keyEncipherment for RSA keys, the only ones that
 * can encipher), serverAuth+clientAuth, notBefore a minute back, notAfter = now + ttl but never
 * past the CA's own expiry. A CA that is not self-signed (an intermediate) is appended to the chain.
 */
export async function issueWorkloadCertificate(
  ca: CaMaterial,
  spiffe: SpiffeId,
  o: IssueOptions = {},
): Promise<WorkloadCertificate> {
  const { now, random } = clockOf(o);
  const ttl = o.ttlMs ?? DEFAULT_CERT_TTL_MS;
  if (!(ttl > 0)) throw new RangeError(`certificate ttl must be positive (got ${ttl} ms)`);
  const keyType = o.keyType ?? DEFAULT_KEY_TYPE;
  const key = await generateKeyPair(keyType);
  const spkiDer = publicSpki(key);
  const caNotAfter = new Date(ca.cert.validTo).getTime();
  const notBefore = new Date(now - CLOCK_SKEW_MS);
  const notAfter = new Date(Math.min(now + ttl, caNotAfter));
  const caKeyId = subjectKeyIdentifier(ca.cert);
  const usage = keyType.startsWith('rsa') ? [0, 2] : [0];
  const leafPem = await signCertificate(
    {
      serial: serialNumber(random),
      scheme: signatureScheme(ca.key),
      issuer: subjectName(ca.cert),
      notBefore,
      notAfter,
      subject: seq([]),
      spkiDer,
      extensions: [
        extension(OID.keyUsage, true, keyUsage(usage)),
        extension(OID.extKeyUsage, false, seq([oid(OID.serverAuth), oid(OID.clientAuth)])),
        extension(OID.basicConstraints, true, seq([])),
        ...(caKeyId === null
          ? []
          : [
              extension(
                OID.authorityKeyIdentifier,
                false,
                seq([asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, false, bin(caKeyId))]),
              ),
            ]),
        extension(OID.subjectAltName, true, uriSan(spiffe.uri)),
      ],
    },
    ca.key,
  );
  const selfSigned = ca.cert.checkIssued(ca.cert);
  // The certificate's own dates are what peers check; read them back rather than trust our inputs
  // (X.509 times have one-second precision).
  const parsed = new X509Certificate(leafPem);
  return {
    certChainPem: selfSigned ? leafPem : leafPem + ca.certPem,
    keyPem: privateKeyPem(key),
    notBefore: new Date(parsed.validFrom),
    notAfter: new Date(parsed.validTo),
    spiffe,
  };
}

/** The trust domain a CA certificate is for: its `spiffe://td` URI SAN, else a CN `<td> root`. */
export function caTrustDomain(cert: X509Certificate): string | null {
  const san = cert.subjectAltName ?? '';
  const m = /(?:^|, )URI:spiffe:\/\/([a-z0-9._-]+)\/?(?:, |$)/.exec(san);
  if (m?.[1] !== undefined) return m[1];
  const cn = /(?:^|\n)CN=([a-z0-9._-]+) root(?:\n|$)/.exec(cert.subject);
  return cn?.[1] ?? null;
}

/** Which input a PEM problem is about, so that callers can name the right file. */
export type PemSubject = 'certificate' | 'key' | 'pair';

export class PemError extends Error {
  readonly subject: PemSubject;
  constructor(message: string, subject: PemSubject) {
    super(message);
    this.name = 'PemError';
    this.subject = subject;
  }
}

function firstCertificate(text: string): { pem: string; cert: X509Certificate; all: string[] } {
  const all = splitPemCertificates(text);
  const pem = all[0];
  if (pem === undefined) throw new PemError('no PEM certificate found', 'certificate');
  try {
    return { pem, cert: new X509Certificate(pem), all };
  } catch (err) {
    throw new PemError(
      `not a valid certificate (${err instanceof Error ? err.message : String(err)})`,
      'certificate',
    );
  }
}

function privateKey(text: string): KeyObject {
  try {
    return createPrivateKey(text);
  } catch (err) {
    throw new PemError(`not a PEM private key (${err instanceof Error ? err.message : String(err)})`, 'key');
  }
}

/**
 * A CA from PEM text: the first certificate of `certPem` must be a CA (basicConstraints CA:true),
 * valid at `now`, whose public key matches `keyPem`. The trust domain is `trustDomain` when given,
 * else read from the certificate. Throws a PemError saying which condition failed.
 */
export function caFromPem(
  certPem: string,
  keyPem: string,
  trustDomain?: string,
  now = Date.now(),
): CaMaterial {
  const { pem, cert } = firstCertificate(certPem);
  if (!cert.ca) {
    throw new PemError(
      `certificate "${(cert.subject ?? '').replace(/\n/g, ', ')}" is not a CA (CA:FALSE)`,
      'certificate',
    );
  }
  const notAfter = new Date(cert.validTo);
  if (notAfter.getTime() <= now) {
    throw new PemError(`the CA certificate expired at ${notAfter.toISOString()}`, 'certificate');
  }
  const key = privateKey(keyPem);
  if (!cert.checkPrivateKey(key))
    throw new PemError('the private key does not match the CA certificate', 'pair');
  try {
    signatureScheme(key);
  } catch (err) {
    throw new PemError(err instanceof Error ? err.message : String(err), 'key');
  }
  const td = trustDomain ?? caTrustDomain(cert);
  if (td === null) {
    throw new PemError(
      'cannot tell the trust domain from the CA certificate (no spiffe:// URI SAN)',
      'certificate',
    );
  }
  try {
    spiffeId(td, 'x', 'x');
  } catch (err) {
    throw new PemError(err instanceof Error ? err.message : String(err), 'certificate');
  }
  return { certPem: pem, keyPem: privateKeyPem(key), cert, key, trustDomain: td };
}

/**
 * A workload certificate from PEM made by someone else (cert-manager, SPIRE, `meshlet ca issue`):
 * the leaf (first certificate; the rest is its chain) must hold exactly one workload SPIFFE id,
 * match the key, and be valid at `now`. Throws a PemError saying which check failed.
 */
export function workloadCertificateFromPem(
  chainPem: string,
  keyPem: string,
  now = Date.now(),
): WorkloadCertificate {
  const { cert: leaf, all } = firstCertificate(chainPem);
  const key = privateKey(keyPem);
  if (!leaf.checkPrivateKey(key))
    throw new PemError('the private key does not match the certificate', 'pair');
  const peer = peerIdentityFromCertificate(leaf);
  const id = peer === null ? null : parseSpiffeUri(peer.spiffeId);
  if (id === null) {
    throw new PemError('the certificate has no single spiffe://<td>/ns/<ns>/sa/<sa> URI SAN', 'certificate');
  }
  const notBefore = new Date(leaf.validFrom);
  const notAfter = new Date(leaf.validTo);
  if (notAfter.getTime() <= now) {
    throw new PemError(`the certificate expired at ${notAfter.toISOString()}`, 'certificate');
  }
  if (notBefore.getTime() > now + CLOCK_SKEW_MS) {
    throw new PemError(`the certificate is not valid before ${notBefore.toISOString()}`, 'certificate');
  }
  return { certChainPem: all.join(''), keyPem: privateKeyPem(key), notBefore, notAfter, spiffe: id };
}
