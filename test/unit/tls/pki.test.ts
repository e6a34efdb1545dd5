import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import t from 'tap';
import {
  CLOCK_SKEW_MS,
  caFromPem,
  caTrustDomain,
  createRootCa,
  DEFAULT_CA_VALIDITY_MS,
  DEFAULT_CERT_TTL_MS,
  derToPem,
  generateKeyPair,
  issueWorkloadCertificate,
  PemError,
  splitPemCertificates,
  workloadCertificateFromPem,
} from '../../../src/tls/pki.ts';
import { peerIdentityFromCertificate, spiffeId } from '../../../src/tls/spiffe.ts';
import { makeCa } from '../../helpers/test-certs.ts';

/** A whole second, so that X.509's one-second precision keeps exact dates. */
const NOW = Date.UTC(2030, 0, 15, 12, 0, 0);
const fixedRandom = (n: number): Buffer => Buffer.alloc(n, 0xab);
const ID = spiffeId('cluster.local', 'default', 'reviews');

function tmp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-pki-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function opensslText(pem: string, dir: string): string {
  const f = join(dir, `c${Math.random().toString(36).slice(2)}.pem`);
  writeFileSync(f, pem);
  return execFileSync('openssl', ['x509', '-in', f, '-noout', '-text'], { encoding: 'utf8' });
}

/** openssl verify with a CA file (and optional untrusted intermediates); the current time is used. */
function opensslVerify(dir: string, caPem: string, leafPem: string, untrusted?: string): string {
  writeFileSync(join(dir, 'v-ca.pem'), caPem);
  writeFileSync(join(dir, 'v-leaf.pem'), leafPem);
  const args = ['verify', '-CAfile', join(dir, 'v-ca.pem')];
  if (untrusted !== undefined) {
    writeFileSync(join(dir, 'v-int.pem'), untrusted);
    args.push('-untrusted', join(dir, 'v-int.pem'));
  }
  return execFileSync('openssl', [...args, join(dir, 'v-leaf.pem')], { encoding: 'utf8' });
}

/** The PemError `fn` throws (fails the test when it throws nothing or something else). */
function err(fn: () => unknown): PemError {
  try {
    fn();
  } catch (e) {
    if (e instanceof PemError) return e;
    throw e;
  }
  throw new Error('no error');
}

t.test('root CA: self-signed, CA:true, keyCertSign+cRLSign, names, 10 years', async (t) => {
  const dir = tmp(t);
  const ca = await createRootCa({ trustDomain: 'cluster.local', now: () => NOW, random: fixedRandom });
  t.equal(ca.trustDomain, 'cluster.local');
  t.ok(ca.cert.ca);
  t.ok(ca.cert.checkIssued(ca.cert), 'self-issued');
  t.ok(ca.cert.verify(ca.cert.publicKey), 'self-signed');
  t.ok(ca.cert.checkPrivateKey(ca.key));
  t.equal(ca.cert.subject, 'O=meshlet\nCN=cluster.local root');
  t.equal(ca.cert.subjectAltName, 'URI:spiffe://cluster.local');
  t.equal(new Date(ca.cert.validFrom).getTime(), NOW - CLOCK_SKEW_MS);
  t.equal(new Date(ca.cert.validTo).getTime(), NOW + DEFAULT_CA_VALIDITY_MS);
  t.equal(ca.cert.serialNumber, `2B${'AB'.repeat(15)}`, 'random serial, top bit cleared');
  t.match(ca.keyPem, /^-----BEGIN PRIVATE KEY-----/, 'PKCS#8');
  const text = opensslText(ca.certPem, dir);
  t.match(text, /Basic Constraints: critical\s+CA:TRUE/);
  t.match(text, /Key Usage: critical\s+Certificate Sign, CRL Sign/);
  t.match(text, /Subject Key Identifier/);
  t.match(text, /ecdsa-with-SHA256/);
  await t.rejects(createRootCa({ trustDomain: 'Bad Domain' }), /trust domain/);
});

t.test('workload certificate: chains to the CA, SPIFFE SAN, validity, usages', async (t) => {
  const dir = tmp(t);
  const ca = await createRootCa({ trustDomain: 'cluster.local', now: () => NOW - 3600_000 });
  const w = await issueWorkloadCertificate(ca, ID, { now: () => NOW, random: fixedRandom });
  const leaf = new X509Certificate(w.certChainPem);
  t.equal(splitPemCertificates(w.certChainPem).length, 1, 'a root CA is not in the chain');
  t.ok(leaf.checkIssued(ca.cert), 'issued by the CA');
  t.ok(leaf.verify(ca.cert.publicKey), 'signed by the CA');
  t.notOk(leaf.ca);
  t.notOk(leaf.subject, 'no subject: the SPIFFE id is the name');
  t.equal(leaf.subjectAltName, `URI:${ID.uri}`);
  t.same(peerIdentityFromCertificate(leaf)?.principal, 'cluster.local/ns/default/sa/reviews');
  t.same(leaf.keyUsage?.sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'], 'serverAuth + clientAuth');
  t.equal(w.notBefore.getTime(), NOW - CLOCK_SKEW_MS);
  t.equal(w.notAfter.getTime(), NOW + DEFAULT_CERT_TTL_MS);
  t.equal(new Date(leaf.validTo).getTime(), w.notAfter.getTime());
  t.equal(w.spiffe, ID);
  t.match(w.keyPem, /^-----BEGIN PRIVATE KEY-----/);
  const text = opensslText(w.certChainPem, dir);
  t.match(text, /Key Usage: critical\s+Digital Signature\n/, 'no keyEncipherment for an EC key');
  t.match(text, /Subject Alternative Name: critical/);
  t.match(text, /Authority Key Identifier/);
  // A real-time CA and certificate, checked by openssl itself.
  const liveCa = await createRootCa({ trustDomain: 'cluster.local' });
  const now = await issueWorkloadCertificate(liveCa, ID, { ttlMs: 3600_000 });
  t.match(opensslVerify(dir, liveCa.certPem, now.certChainPem), /OK/);
  t.equal(now.notAfter.getTime() - now.notBefore.getTime(), 3600_000 + CLOCK_SKEW_MS, 'ttl honoured');
  await t.rejects(issueWorkloadCertificate(ca, ID, { ttlMs: 0 }), RangeError);
});

t.test('every key type issues certificates openssl verifies', async (t) => {
  const dir = tmp(t);
  for (const keyType of ['ec-p256', 'rsa-2048', 'rsa-3072', 'ed25519'] as const) {
    const ca = await createRootCa({ trustDomain: 'td', keyType });
    const w = await issueWorkloadCertificate(ca, spiffeId('td', 'ns', keyType), { keyType });
    t.match(opensslVerify(dir, ca.certPem, w.certChainPem), /OK/, keyType);
    const leaf = new X509Certificate(w.certChainPem);
    t.ok(leaf.verify(ca.cert.publicKey), `${keyType} signature`);
    const usage = opensslText(w.certChainPem, dir);
    if (keyType.startsWith('rsa')) t.match(usage, /Digital Signature, Key Encipherment/, keyType);
    else t.notMatch(usage, /Key Encipherment/, keyType);
  }
  // A leaf key type different from the CA's: the signature scheme follows the CA key.
  const rsaCa = await createRootCa({ trustDomain: 'td', keyType: 'rsa-2048' });
  const ecLeaf = await issueWorkloadCertificate(rsaCa, spiffeId('td', 'ns', 'x'));
  t.match(opensslText(ecLeaf.certChainPem, dir), /sha256WithRSAEncryption[\s\S]*id-ecPublicKey/);
  t.match(opensslVerify(dir, rsaCa.certPem, ecLeaf.certChainPem), /OK/);
  const key = await generateKeyPair('ed25519');
  t.equal(key.asymmetricKeyType, 'ed25519');
});

t.test('a leaf never outlives its CA', async (t) => {
  const ca = await createRootCa({ trustDomain: 'td', now: () => NOW, validityMs: 3600_000 });
  const w = await issueWorkloadCertificate(ca, spiffeId('td', 'a', 'b'), {
    now: () => NOW,
    ttlMs: 24 * 3600_000,
  });
  t.equal(w.notAfter.getTime(), NOW + 3600_000);
});

/** openssl root + intermediate (the intermediate with or without a subjectKeyIdentifier). */
function opensslIntermediate(
  dir: string,
  withSki: boolean,
): { rootPem: string; intPem: string; intKey: string } {
  const run = (args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  run([
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'root.key',
    '-out',
    'root.crt',
    '-days',
    '2',
    '-subj',
    '/CN=ext root',
  ]);
  run(['req', ...ec, '-keyout', 'int.key', '-out', 'int.csr', '-subj', '/O=ext/CN=ext intermediate']);
  writeFileSync(
    join(dir, 'int.ext'),
    `basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectAltName=URI:spiffe://ext.td\n${
      withSki ? 'subjectKeyIdentifier=hash' : 'subjectKeyIdentifier=none\nauthorityKeyIdentifier=none'
    }\n`,
  );
  run([
    'x509',
    '-req',
    '-in',
    'int.csr',
    '-CA',
    'root.crt',
    '-CAkey',
    'root.key',
    '-out',
    'int.crt',
    '-days',
    '1',
  ]);
  run(
    ['x509', '-req', '-in', 'int.csr', '-CA', 'root.crt', '-CAkey', 'root.key', '-out', 'int.crt'].concat([
      '-days',
      '1',
      '-extfile',
      'int.ext',
    ]),
  );
  return {
    rootPem: readFileSync(join(dir, 'root.crt'), 'utf8'),
    intPem: readFileSync(join(dir, 'int.crt'), 'utf8'),
    intKey: readFileSync(join(dir, 'int.key'), 'utf8'),
  };
}

t.test(
  'an intermediate CA made elsewhere: issuer name kept, chain carries it, AKI from its SKI',
  async (t) => {
    for (const withSki of [true, false]) {
      const dir = tmp(t);
      const { rootPem, intPem, intKey } = opensslIntermediate(dir, withSki);
      const ca = caFromPem(intPem, intKey);
      t.equal(ca.trustDomain, 'ext.td');
      const w = await issueWorkloadCertificate(ca, spiffeId('ext.td', 'ns', 'sa'), { ttlMs: 600_000 });
      const blocks = splitPemCertificates(w.certChainPem);
      t.equal(blocks.length, 2, 'leaf + intermediate');
      t.equal(blocks[1]?.replace(/\s/g, ''), intPem.replace(/\s/g, ''));
      const leaf = new X509Certificate(blocks[0]!);
      t.equal(leaf.issuer, 'O=ext\nCN=ext intermediate');
      t.match(opensslVerify(dir, rootPem, blocks[0]!, intPem), /OK/, `verifies (SKI ${withSki})`);
      const text = opensslText(blocks[0]!, dir);
      if (withSki) t.match(text, /Authority Key Identifier/);
      else t.notMatch(text, /Authority Key Identifier/);
    }
  },
);

t.test('caFromPem: clear errors', async (t) => {
  const dir = tmp(t);
  const ca = await createRootCa({ trustDomain: 'td' });
  const other = await createRootCa({ trustDomain: 'td' });
  const leaf = await issueWorkloadCertificate(ca, spiffeId('td', 'a', 'b'));
  t.match(
    err(() => caFromPem('', ca.keyPem)),
    { subject: 'certificate', message: /no PEM certificate/ },
  );
  t.match(
    err(() => caFromPem('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----', ca.keyPem)),
    {
      subject: 'certificate',
      message: /not a valid certificate/,
    },
  );
  t.match(
    err(() => caFromPem(leaf.certChainPem, leaf.keyPem)),
    { subject: 'certificate', message: /is not a CA/ },
  );
  t.match(
    err(() => caFromPem(ca.certPem, 'junk')),
    { subject: 'key', message: /not a PEM private key/ },
  );
  t.match(
    err(() => caFromPem(ca.certPem, other.keyPem)),
    { subject: 'pair', message: /does not match/ },
  );
  const old = await createRootCa({ trustDomain: 'td', now: () => NOW - 7200_000, validityMs: 3600_000 });
  t.match(
    err(() => caFromPem(old.certPem, old.keyPem, undefined, NOW)),
    { message: /expired at/ },
  );
  t.equal(caFromPem(ca.certPem, ca.keyPem, 'other.td').trustDomain, 'other.td', 'explicit trust domain wins');
  t.match(
    err(() => caFromPem(ca.certPem, ca.keyPem, 'Bad TD')),
    { subject: 'certificate', message: /trust domain/ },
  );

  // An openssl CA: no SAN, CN not "<td> root"; a P-521 key meshlet does not sign with.
  const p521ca = await makeCa(dir, 'p521', { key: 'P-521', subject: '/CN=Some CA', days: 1, extensions: [] });
  const [p521, p521Key] = [p521ca.certPem, p521ca.keyPem];
  t.match(
    err(() => caFromPem(p521, p521Key, 'td')),
    { subject: 'key', message: /unsupported CA key curve/ },
  );
  const p384ca = await makeCa(dir, 'p384', { key: 'P-384', subject: '/CN=Some CA', days: 1, extensions: [] });
  const [p384, p384Key] = [p384ca.certPem, p384ca.keyPem];
  t.match(
    err(() => caFromPem(p384, p384Key)),
    { subject: 'certificate', message: /cannot tell the trust domain/ },
  );
  const p384Ca = caFromPem(p384, p384Key, 'td');
  const w = await issueWorkloadCertificate(p384Ca, spiffeId('td', 'a', 'b'));
  t.match(opensslVerify(dir, p384, w.certChainPem), /OK/, 'a P-384 CA signs with SHA-384');
  const ed448ca = await makeCa(dir, 'ed448', {
    key: 'ed448',
    subject: '/CN=td root',
    days: 1,
    extensions: ['basicConstraints=critical,CA:TRUE'],
  });
  const [ed448, ed448Key] = [ed448ca.certPem, ed448ca.keyPem];
  t.match(
    err(() => caFromPem(ed448, ed448Key)),
    { subject: 'key', message: /unsupported CA key type ed448/ },
  );
});

t.test('caTrustDomain reads the spiffe SAN, else a "<td> root" common name', async (t) => {
  const dir = tmp(t);
  const ca = await createRootCa({ trustDomain: 'example.org' });
  t.equal(caTrustDomain(ca.cert), 'example.org');
  const openssl = await makeCa(dir, 'c', { subject: '/O=x/CN=mesh.local root', days: 1, extensions: [] });
  t.equal(caTrustDomain(new X509Certificate(openssl.certPem)), 'mesh.local');
  const leaf = await issueWorkloadCertificate(ca, spiffeId('example.org', 'a', 'b'));
  t.equal(caTrustDomain(new X509Certificate(leaf.certChainPem)), null, 'a workload id is not a trust domain');
});

t.test('workloadCertificateFromPem: checks and normalization', async (t) => {
  const dir = tmp(t);
  const ca = await createRootCa({ trustDomain: 'td', now: () => NOW - 3600_000 });
  const w = await issueWorkloadCertificate(ca, spiffeId('td', 'ns', 'sa'), {
    now: () => NOW,
    ttlMs: 3600_000,
  });
  const got = workloadCertificateFromPem(w.certChainPem + ca.certPem, w.keyPem, NOW);
  t.equal(got.spiffe.uri, 'spiffe://td/ns/ns/sa/sa');
  t.equal(got.notAfter.getTime(), w.notAfter.getTime());
  t.equal(splitPemCertificates(got.certChainPem).length, 2, 'chain kept');
  // A SEC1 ("EC PRIVATE KEY") file, as openssl writes by default, comes out as PKCS#8.
  execFileSync('openssl', ['ec', '-out', join(dir, 'sec1.pem')], {
    input: w.keyPem,
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  const sec1 = readFileSync(join(dir, 'sec1.pem'), 'utf8');
  t.match(sec1, /BEGIN EC PRIVATE KEY/);
  t.match(workloadCertificateFromPem(w.certChainPem, sec1, NOW).keyPem, /BEGIN PRIVATE KEY/);

  const other = await issueWorkloadCertificate(ca, spiffeId('td', 'ns', 'other'), { now: () => NOW });
  t.match(
    err(() => workloadCertificateFromPem(w.certChainPem, other.keyPem, NOW)),
    { subject: 'pair' },
  );
  t.match(
    err(() => workloadCertificateFromPem(w.certChainPem, w.keyPem, NOW + 2 * 3600_000)),
    {
      subject: 'certificate',
      message: /expired at 2030-01-15T13:00:00.000Z/,
    },
  );
  t.match(
    err(() => workloadCertificateFromPem(w.certChainPem, w.keyPem, NOW - 3600_000)),
    {
      message: /not valid before/,
    },
  );
  t.doesNotThrow(
    () => workloadCertificateFromPem(w.certChainPem, w.keyPem, NOW - CLOCK_SKEW_MS - 30_000),
    'skew',
  );
  t.match(
    err(() => workloadCertificateFromPem(ca.certPem, ca.keyPem, NOW)),
    { message: /no single spiffe/ },
  );
  t.match(
    err(() => workloadCertificateFromPem('nothing', w.keyPem, NOW)),
    { message: /no PEM certificate/ },
  );
  t.match(
    err(() => workloadCertificateFromPem(w.certChainPem, '', NOW)),
    { subject: 'key' },
  );
});

t.test('PEM helpers', async (t) => {
  const der = Buffer.alloc(100, 1);
  const pem = derToPem(der);
  t.match(
    pem,
    /^-----BEGIN CERTIFICATE-----\n(?:[A-Za-z0-9+/]{64}\n){2}[A-Za-z0-9+/=]{8}\n-----END CERTIFICATE-----\n$/,
  );
  const exact = derToPem(Buffer.alloc(48, 2), 'X');
  t.equal(exact.split('\n').length, 4, 'a body of exactly 64 characters gets no empty line');
  t.same(splitPemCertificates(`junk\n${pem}between\n${pem}`), [pem, pem]);
  t.same(splitPemCertificates('none'), []);
});
