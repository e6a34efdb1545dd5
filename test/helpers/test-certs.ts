/**
 * Test certificates made at test time with the `openssl` command line in a temporary directory: a
 * mesh CA, server and client workload certificates with a SPIFFE URI SAN, a client certificate from
 * a CA the mesh does not trust, and an already-expired client certificate. openssl (not meshlet's
 * own PKI) keeps listener, origination and end-to-end tests independent of the code under test.
 * The one module of the tests that runs `openssl req` / `openssl ca` to make certificates: the
 * building blocks `makeCa` and `makeLeaf` (any signer, e.g. the mesh CA written by `meshlet ca init`,
 * since `openssl ca` signs with any key it can read) and the ready-made set of `createTestCerts`.
 *
 * Leaf keys are P-256 (fast to make, fast handshakes); CAs are P-256 unless asked otherwise. Leaves are signed with `openssl ca`, the one
 * OpenSSL 3.0 command that takes explicit start and end dates (an expired certificate needs a
 * window in the past; `x509 -days` cannot go negative).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A certificate and its key, as PEM text and as files (for `curl --cert`, `openssl s_client`). */
export interface CertFiles {
  readonly certPem: string;
  readonly keyPem: string;
  readonly certFile: string;
  readonly keyFile: string;
}

export interface LeafOptions {
  /** URI SAN, e.g. `spiffe://cluster.local/ns/default/sa/x`; absent: none. */
  readonly uri?: string;
  /** Mark the subjectAltName extension critical (as meshlet's own workload certificates do). */
  readonly sanCritical?: boolean;
  /** Default: `/O=meshlet-test/CN=<name>`. */
  readonly subject?: string;
  readonly dns?: readonly string[];
  readonly ips?: readonly string[];
  /** With `createTestCerts().issue`: which CA signs, the mesh CA (default) or the untrusted one. */
  readonly signer?: 'ca' | 'otherCa';
  /** Default: one hour ago. */
  readonly notBefore?: Date;
  /** Default: two days from now. */
  readonly notAfter?: Date;
}

export interface TestCerts {
  readonly dir: string;
  /** The mesh root: the trust bundle servers verify clients with. */
  readonly ca: CertFiles;
  /** A root nobody trusts. */
  readonly otherCa: CertFiles;
  /** Signed by `ca`, with the URI SAN plus `DNS:localhost` and `IP:127.0.0.1` (so curl can check the name). */
  serverFor(spiffe: string): Promise<CertFiles>;
  /** Signed by `ca`, with the URI SAN. */
  clientFor(spiffe: string): Promise<CertFiles>;
  /** Signed by `otherCa`. */
  otherCaClient(spiffe?: string): Promise<CertFiles>;
  /** Signed by `ca`, valid from 2000-01-01 to 2001-01-01. */
  expiredClient(spiffe?: string): Promise<CertFiles>;
  /** Any leaf. */
  issue(name: string, opts: LeafOptions): Promise<CertFiles>;
  /** Removes the directory. */
  cleanup(): void;
}

export const DEFAULT_TEST_SPIFFE = 'spiffe://cluster.local/ns/default/sa/x';

export type CaKeyType = 'P-256' | 'P-384' | 'P-521' | 'ed448';

export interface CaOptions {
  /** Default: P-256. */
  readonly key?: CaKeyType;
  /** Default: `/O=meshlet-test/CN=<name>`. */
  readonly subject?: string;
  /** Default: 3650. */
  readonly days?: number;
  /** `-addext` values; default: critical `basicConstraints=CA:TRUE` and `keyUsage=keyCertSign,cRLSign`. */
  readonly extensions?: readonly string[];
}

function openssl(args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { timeout: 15_000 }, (err, _stdout, stderr) => {
      if (err === null) resolve();
      else reject(new Error(`openssl ${args.join(' ')} failed: ${stderr || err.message}`));
    });
  });
}

/** `YYYYMMDDHHMMSSZ`, as `openssl ca -startdate/-enddate` takes it. */
export function opensslDate(d: Date): string {
  return `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
}

function files(certFile: string, keyFile: string): CertFiles {
  return {
    certFile,
    keyFile,
    certPem: readFileSync(certFile, 'utf8'),
    keyPem: readFileSync(keyFile, 'utf8'),
  };
}

const CA_EXTENSIONS = ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign'];

const newKey = (key: CaKeyType): string[] =>
  key === 'ed448' ? ['-newkey', 'ed448'] : ['-newkey', 'ec', '-pkeyopt', `ec_paramgen_curve:${key}`];

/** A self-signed root CA written to `dir/<name>.crt|.key` (`dir` is made if missing). */
export async function makeCa(dir: string, name: string, opts: CaOptions = {}): Promise<CertFiles> {
  mkdirSync(dir, { recursive: true });
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  await openssl([
    'req',
    '-x509',
    ...newKey(opts.key ?? 'P-256'),
    '-nodes',
    '-keyout',
    keyFile,
    '-out',
    certFile,
    '-days',
    String(opts.days ?? 3650),
    '-subj',
    opts.subject ?? `/O=meshlet-test/CN=${name}`,
    ...(opts.extensions ?? CA_EXTENSIONS).flatMap((ext) => ['-addext', ext]),
  ]);
  return files(certFile, keyFile);
}

/**
 * A leaf (P-256 key, usable as server and client certificate) signed by the CA whose files are
 * given, with an arbitrary validity window (so an already-expired certificate can be made on
 * purpose), written to `dir/<name>.crt|.key`.
 */
export async function makeLeaf(
  signer: { readonly certFile: string; readonly keyFile: string },
  dir: string,
  name: string,
  opts: LeafOptions,
): Promise<CertFiles> {
  // One small `openssl ca` database per leaf, so leaves can be made in parallel.
  const work = join(dir, `${name}.work`);
  mkdirSync(work, { recursive: true });
  const keyFile = join(dir, `${name}.key`);
  const certFile = join(dir, `${name}.crt`);
  const csr = join(work, 'leaf.csr');
  await openssl([
    'req',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    keyFile,
    '-out',
    csr,
    '-subj',
    opts.subject ?? `/O=meshlet-test/CN=${name}`,
  ]);
  const sans: string[] = [];
  if (opts.uri !== undefined) sans.push(`URI:${opts.uri}`);
  for (const d of opts.dns ?? []) sans.push(`DNS:${d}`);
  for (const ip of opts.ips ?? []) sans.push(`IP:${ip}`);
  writeFileSync(join(work, 'index.txt'), '');
  writeFileSync(join(work, 'serial'), `${randomBytes(8).toString('hex').toUpperCase()}\n`);
  const conf = join(work, 'ca.cnf');
  writeFileSync(
    conf,
    [
      '[ ca ]',
      'default_ca = test_ca',
      '[ test_ca ]',
      `database = ${join(work, 'index.txt')}`,
      `serial = ${join(work, 'serial')}`,
      `new_certs_dir = ${work}`,
      'default_md = sha256',
      'policy = anything',
      'unique_subject = no',
      'copy_extensions = none',
      '[ anything ]',
      'organizationName = optional',
      'commonName = optional',
      '[ leaf ]',
      'basicConstraints = critical,CA:FALSE',
      'keyUsage = critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage = serverAuth,clientAuth',
      ...(sans.length > 0
        ? [`subjectAltName = ${opts.sanCritical === true ? 'critical,' : ''}${sans.join(',')}`]
        : []),
      '',
    ].join('\n'),
  );
  await openssl([
    'ca',
    '-batch',
    '-notext',
    '-config',
    conf,
    '-extensions',
    'leaf',
    '-cert',
    signer.certFile,
    '-keyfile',
    signer.keyFile,
    '-in',
    csr,
    '-out',
    certFile,
    '-startdate',
    opensslDate(opts.notBefore ?? new Date(Date.now() - 3_600_000)),
    '-enddate',
    opensslDate(opts.notAfter ?? new Date(Date.now() + 2 * 86_400_000)),
  ]);
  return files(certFile, keyFile);
}

/** Makes the two CAs in a fresh temporary directory; leaves are made on demand. */
export async function createTestCerts(): Promise<TestCerts> {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-certs-'));
  const [ca, otherCa] = await Promise.all([makeCa(dir, 'mesh-ca'), makeCa(dir, 'other-ca')]);
  let n = 0;
  const issue = (name: string, opts: LeafOptions): Promise<CertFiles> =>
    makeLeaf(opts.signer === 'otherCa' ? otherCa : ca, dir, `${name}-${n++}`, opts);
  return {
    dir,
    ca,
    otherCa,
    issue,
    serverFor: (spiffe) => issue('server', { uri: spiffe, dns: ['localhost'], ips: ['127.0.0.1'] }),
    clientFor: (spiffe) => issue('client', { uri: spiffe }),
    otherCaClient: (spiffe = DEFAULT_TEST_SPIFFE) =>
      issue('other-client', { uri: spiffe, signer: 'otherCa' }),
    expiredClient: (spiffe = DEFAULT_TEST_SPIFFE) =>
      issue('expired-client', {
        uri: spiffe,
        notBefore: new Date('2000-01-01T00:00:00Z'),
        notAfter: new Date('2001-01-01T00:00:00Z'),
      }),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
