/**
 * The meshlet configurations `npm run bench:mtls` runs: a client sidecar A whose outbound reaches
 * the same server sidecar B either in plaintext (`bench-plain`) or over auto-mTLS (`bench-mtls`,
 * the endpoint labelled `security.istio.io/tlsMode: istio`), and server sidecars in front of the
 * backend. Pure functions, so that the unit tests can read what the bench runs.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { staticServiceEntry } from './configs.ts';

export const PLAIN_HOST = 'bench-plain';
export const MTLS_HOST = 'bench-mtls';

export interface CaFiles {
  readonly certFile: string;
  readonly keyFile: string;
}

/** The Proxy document of a bench sidecar with an identity issued in memory from the CA files. */
export function benchProxy(serviceAccount: string, ca: CaFiles): string {
  return `apiVersion: meshlet.dev/v1alpha1
kind: Proxy
metadata: { name: bench-${serviceAccount} }
spec:
  namespace: default
  serviceAccount: ${serviceAccount}
  identity:
    ca:
      certFile: ${ca.certFile}
      keyFile: ${ca.keyFile}
`;
}

function serviceEntry(name: string, port: number, mtls: boolean): string {
  const labels = mtls ? ', labels: { security.istio.io/tlsMode: istio }, serviceAccount: bench-server' : '';
  return staticServiceEntry(name, [{ port, extra: labels }]);
}

/** Sidecar A: both services point at B's inbound port; only `bench-mtls` is labelled for mTLS. */
export function clientSidecarYaml(ca: CaFiles, serverInboundPort: number): string {
  return [
    benchProxy('bench-client', ca),
    serviceEntry(PLAIN_HOST, serverInboundPort, false),
    serviceEntry(MTLS_HOST, serverInboundPort, true),
  ].join('---\n');
}

/** A server sidecar (`bench-server`) with a namespace-wide PeerAuthentication of `mode`. */
export function serverSidecarYaml(ca: CaFiles, mode: 'STRICT' | 'PERMISSIVE'): string {
  return `${benchProxy('bench-server', ca)}---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: default, namespace: default }
spec:
  mtls: { mode: ${mode} }
`;
}

/**
 * The key and certificate files among those `meshlet ca init` / `meshlet ca issue` wrote to `dir`
 * (found by content, so that the bench does not depend on the file names).
 */
export function pemFilesIn(
  dir: string,
  kind: 'ca' | 'workload',
): { readonly certFile: string; readonly keyFile: string } {
  // A workload directory may hold a copy of the root beside the workload certificate.
  const notIt = kind === 'ca' ? /(^|[-_.])(bundle|trust)/i : /(^|[-_.])(ca|root|bundle|trust)/i;
  let certFile: string | undefined;
  let keyFile: string | undefined;
  for (const name of readdirSync(dir).sort()) {
    const file = join(dir, name);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    if (keyFile === undefined && text.includes('PRIVATE KEY-----')) keyFile = file;
    else if (certFile === undefined && text.includes('-----BEGIN CERTIFICATE-----') && !notIt.test(name))
      certFile = file;
  }
  if (certFile === undefined || keyFile === undefined)
    throw new Error(`no certificate and key in ${dir} (${readdirSync(dir).join(', ')})`);
  return { certFile, keyFile };
}
