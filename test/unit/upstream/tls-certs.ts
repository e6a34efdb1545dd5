/**
 * Certificates for the TLS origination tests, made with the `openssl` command line in a temporary
 * directory (removed at teardown): root CAs and leaves with chosen URI / DNS SANs and a chosen
 * validity window (so an expired server certificate can be made on purpose). P-256 keys: fast to
 * make and to handshake with.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';

export interface Ca {
  readonly certFile: string;
  readonly keyFile: string;
  readonly certPem: string;
}

export interface Leaf {
  readonly certFile: string;
  readonly keyFile: string;
  readonly certPem: string;
  readonly keyPem: string;
}

export interface LeafSpec {
  /** URI SANs (`spiffe://…`). */
  readonly uris?: readonly string[];
  /** DNS SANs. */
  readonly dns?: readonly string[];
  /** Default: an hour ago. */
  readonly notBefore?: Date;
  /** Default: a day from now. */
  readonly notAfter?: Date;
}

function run(args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { timeout: 15_000 }, (err, _stdout, stderr) => {
      if (err === null) resolve();
      else reject(new Error(`openssl ${args[0]} failed: ${stderr || err.message}`));
    });
  });
}

/** `YYYYMMDDHHMMSSZ`, the date form `openssl ca` takes. */
function asn1Time(d: Date): string {
  const iso = d.toISOString();
  return `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
}

/** A temporary directory for one test's certificates; removed when the test ends. */
export class CertDir {
  readonly dir: string;
  private serial = 1;

  constructor(t: Test) {
    this.dir = mkdtempSync(join(tmpdir(), 'meshlet-origination-'));
    t.teardown(() => rmSync(this.dir, { recursive: true, force: true }));
  }

  /** A self-signed root CA valid for a year around now. */
  async ca(name: string): Promise<Ca> {
    const certFile = join(this.dir, `${name}.crt`);
    const keyFile = join(this.dir, `${name}.key`);
    await run([
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
      '365',
      '-subj',
      `/O=meshlet-test/CN=${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    return { certFile, keyFile, certPem: readFileSync(certFile, 'utf8') };
  }

  /** A leaf signed by `ca`, usable as server and client certificate. */
  async leaf(ca: Ca, name: string, spec: LeafSpec): Promise<Leaf> {
    const keyFile = join(this.dir, `${name}.key`);
    const certFile = join(this.dir, `${name}.crt`);
    const csr = join(this.dir, `${name}.csr`);
    await run([
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
      `/O=meshlet-test/CN=${name}`,
    ]);
    // `openssl ca` (unlike `x509 -req` in OpenSSL 3.0) takes explicit start and end dates; it keeps a
    // small database of what it signed, one per leaf here.
    const db = join(this.dir, `${name}.db`);
    writeFileSync(db, '');
    const sans = [...(spec.uris ?? []).map((u) => `URI:${u}`), ...(spec.dns ?? []).map((d) => `DNS:${d}`)];
    const conf = join(this.dir, `${name}.cnf`);
    writeFileSync(
      conf,
      [
        '[ca]',
        'default_ca = signer',
        '[signer]',
        `database = ${db}`,
        `new_certs_dir = ${this.dir}`,
        `serial = ${join(this.dir, `${name}.serial`)}`,
        'default_md = sha256',
        'policy = any',
        'unique_subject = no',
        '[any]',
        'commonName = optional',
        'organizationName = optional',
        '[leaf]',
        'basicConstraints = critical,CA:FALSE',
        'keyUsage = critical,digitalSignature',
        'extendedKeyUsage = serverAuth,clientAuth',
        ...(sans.length > 0 ? [`subjectAltName = ${sans.join(',')}`] : []),
        '',
      ].join('\n'),
    );
    writeFileSync(join(this.dir, `${name}.serial`), `${(this.serial++).toString(16).padStart(4, '0')}\n`);
    await run([
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
      asn1Time(spec.notBefore ?? new Date(Date.now() - 3_600_000)),
      '-enddate',
      asn1Time(spec.notAfter ?? new Date(Date.now() + 86_400_000)),
    ]);
    return {
      certFile,
      keyFile,
      certPem: readFileSync(certFile, 'utf8'),
      keyPem: readFileSync(keyFile, 'utf8'),
    };
  }
}
