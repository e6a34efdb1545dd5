import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from './spawn-meshlet.ts';

/**
 * The mesh CA and workload certificates made by meshlet's own CLI (`meshlet ca init|issue`), the
 * way an operator would make them, for the zero-trust end-to-end tests.
 */

export interface MeshCa {
  readonly dir: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly certPem: string;
}

export interface IssuedCert {
  readonly dir: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly certPem: string;
  readonly keyPem: string;
}

/** The file of `dir` whose contents pass `test`, by name order; throws naming what is there. */
function pick(dir: string, what: string, test: (name: string, text: string) => boolean): string {
  const names = readdirSync(dir).sort();
  for (const name of names) {
    const file = join(dir, name);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    if (test(name, text)) return file;
  }
  throw new Error(`no ${what} in ${dir} (files: ${names.join(', ')})`);
}

const isKey = (_: string, text: string): boolean => text.includes('PRIVATE KEY-----');
const isCert = (_: string, text: string): boolean => text.includes('-----BEGIN CERTIFICATE-----');

/** `meshlet ca init --trust-domain <td> --out <dir>`. */
export async function caInit(dir: string, trustDomain = 'cluster.local'): Promise<MeshCa> {
  const r = await runCli(['ca', 'init', '--trust-domain', trustDomain, '--out', dir]);
  if (r.code !== 0) throw new Error(`meshlet ca init exited ${r.code}: ${r.stderr}${r.stdout}`);
  const keyFile = pick(dir, 'CA key', isKey);
  const certFile = pick(dir, 'CA certificate', isCert);
  return { dir, certFile, keyFile, certPem: readFileSync(certFile, 'utf8') };
}

/**
 * `meshlet ca issue --ca <ca dir> --namespace <ns> --service-account <sa> --out <dir>`: a
 * workload certificate with the URI SAN `spiffe://<td>/ns/<ns>/sa/<sa>`.
 */
export async function caIssue(ca: MeshCa, sa: string, outDir: string, ns = 'default'): Promise<IssuedCert> {
  const r = await runCli([
    'ca',
    'issue',
    '--ca',
    ca.dir,
    '--namespace',
    ns,
    '--service-account',
    sa,
    '--out',
    outDir,
  ]);
  if (r.code !== 0) throw new Error(`meshlet ca issue exited ${r.code}: ${r.stderr}${r.stdout}`);
  const keyFile = pick(outDir, 'workload key', isKey);
  // The workload certificate, not a copy of the root that may be written beside it.
  const certFile = pick(
    outDir,
    'workload certificate',
    (name, text) => isCert(name, text) && !/(^|[-_.])(ca|root|bundle|trust)/i.test(name),
  );
  return {
    dir: outDir,
    certFile,
    keyFile,
    certPem: readFileSync(certFile, 'utf8'),
    keyPem: readFileSync(keyFile, 'utf8'),
  };
}
