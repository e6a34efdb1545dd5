/**
 * The end-to-end tests' view of `test-certs.ts` (where the openssl logic lives): a CA written to
 * `dir/ca.crt|.key`, and leaves shaped like meshlet's own workload certificates (no common name, a
 * critical URI SAN), signed by any CA, e.g. the mesh CA written by `meshlet ca init`.
 */
import { type CertFiles, makeCa as makeTestCa, makeLeaf as makeTestLeaf } from './test-certs.ts';

export type CaMaterial = CertFiles & { readonly dir: string };
export type LeafMaterial = CertFiles;

/** A self-signed root CA (P-256) in `dir/ca.crt|.key`. */
export async function makeCa(dir: string, commonName: string): Promise<CaMaterial> {
  const ca = await makeTestCa(dir, 'ca', { subject: `/O=meshlet-test/CN=${commonName}` });
  return { ...ca, dir };
}

/** A workload certificate with the URI SAN `uri`, written to `outDir/<name>.crt|.key`. */
export function makeLeaf(
  ca: { readonly certFile: string; readonly keyFile: string },
  outDir: string,
  name: string,
  opts: { readonly uri: string; readonly notBefore?: Date; readonly notAfter?: Date },
): Promise<LeafMaterial> {
  return makeTestLeaf(ca, outDir, name, { ...opts, subject: '/O=meshlet-test', sanCritical: true });
}
