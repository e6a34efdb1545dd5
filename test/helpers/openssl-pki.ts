import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Certificates made with the `openssl` command line, for the end-to-end tests that need material
 * meshlet itself would never issue: a CA the mesh does not trust, a workload certificate that has
 * already expired, a leaf with a chosen URI SAN. Using openssl (not meshlet's own PKI) keeps these
 * tests independent of the code under test, and works whatever key type the mesh CA uses, since
 * `openssl ca` signs with any key it can read.
 */

export interface CaMaterial {
  readonly dir: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly certPem: string;
}

export interface LeafMaterial {
  readonly certFile: string;
  readonly keyFile: string;
  readonly certPem: string;
  readonly keyPem: string;
}

function openssl(args: readonly string[], cwd?: string): Promise<string> {
  return new Promise((ok, fail) => {
    execFile('openssl', args, { cwd, timeout: 10_000 }, (err, stdout, stderr) => {
      if (err !== null) fail(new Error(`openssl ${args.join(' ')} failed: ${stderr || err.message}`));
      else ok(stdout);
    });
  });
}

/** `YYYYMMDDHHMMSSZ`, the form `openssl ca -startdate/-enddate` takes. */
export function opensslDate(d: Date): string {
  return `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
}

/** A self-signed root CA (P-256) in `dir`, valid for ten years from yesterday. */
export async function makeCa(dir: string, commonName: string): Promise<CaMaterial> {
  mkdirSync(dir, { recursive: true });
  const certFile = join(dir, 'ca.crt');
  const keyFile = join(dir, 'ca.key');
  await openssl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    keyFile,
    '-out',
    certFile,
    '-days',
    '3650',
    '-subj',
    `/O=meshlet-test/CN=${commonName}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return { dir, certFile, keyFile, certPem: readFileSync(certFile, 'utf8') };
}

export interface LeafOptions {
  /** URI SAN, e.g. `spiffe://cluster.local/ns/default/sa/a`. */
  readonly uri: string;
  /** Default: one hour ago. */
  readonly notBefore?: Date;
  /** Default: one day from now. */
  readonly notAfter?: Date;
}

/**
 * A workload certificate (P-256 key) signed by the CA whose certificate and key files are given
 * (any CA: one from `makeCa`, or the mesh CA written by `meshlet ca init`), with an arbitrary
 * validity window, so that an already-expired certificate can be made on purpose. Written to
 * `outDir/<name>.crt|.key`.
 */
export async function makeLeaf(
  ca: { readonly certFile: string; readonly keyFile: string },
  outDir: string,
  name: string,
  opts: LeafOptions,
): Promise<LeafMaterial> {
  const work = join(outDir, `${name}.ca-work`);
  mkdirSync(work, { recursive: true });
  const keyFile = join(outDir, `${name}.key`);
  const certFile = join(outDir, `${name}.crt`);
  const csr = join(work, 'req.csr');
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
    `/O=meshlet-test`,
  ]);
  // `openssl ca` is the one openssl 3.0 command that takes an explicit start date; it wants a
  // small database of what it issued, kept per leaf here so that parallel calls never share one.
  writeFileSync(join(work, 'index.txt'), '');
  writeFileSync(join(work, 'serial'), `${randomSerial()}\n`);
  const conf = join(work, 'ca.cnf');
  writeFileSync(
    conf,
    `[ ca ]
default_ca = test_ca
[ test_ca ]
dir = ${work}
database = ${join(work, 'index.txt')}
serial = ${join(work, 'serial')}
new_certs_dir = ${work}
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
[ anything ]
organizationName = optional
commonName = optional
[ leaf ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = critical,URI:${opts.uri}
`,
  );
  const notBefore = opts.notBefore ?? new Date(Date.now() - 3600_000);
  const notAfter = opts.notAfter ?? new Date(Date.now() + 86_400_000);
  await openssl([
    'ca',
    '-batch',
    '-notext',
    '-config',
    conf,
    '-extensions',
    'leaf',
    '-cert',
    ca.certFile,
    '-keyfile',
    ca.keyFile,
    '-in',
    csr,
    '-out',
    certFile,
    '-startdate',
    opensslDate(notBefore),
    '-enddate',
    opensslDate(notAfter),
  ]);
  return {
    certFile,
    keyFile,
    certPem: readFileSync(certFile, 'utf8'),
    keyPem: readFileSync(keyFile, 'utf8'),
  };
}

function randomSerial(): string {
  let s = '1';
  for (let i = 0; i < 15; i++) s += Math.floor(Math.random() * 16).toString(16);
  return s.toUpperCase();
}
