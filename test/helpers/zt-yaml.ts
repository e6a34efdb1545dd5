/**
 * YAML builders for the zero-trust end-to-end tests (issue 4): the Proxy bootstrap with an
 * identity, mesh ServiceEntries whose endpoints are other sidecars' inbound ports, and the
 * security.istio.io policies. The Proxy `identity` shape lives here only, so that a change of the
 * YAML shape is a one-place edit.
 */

/** Where a test proxy's identity comes from (the YAML of Proxy `identity`). */
export type IdentityYaml =
  /** Issue in memory from the CA files `meshlet ca init` wrote; `certTtl` as a duration (`3s`). */
  | {
      readonly kind: 'ca';
      readonly caCertFile: string;
      readonly caKeyFile: string;
      readonly certTtl?: string;
    }
  /** Externally managed files, watched. */
  | {
      readonly kind: 'files';
      readonly certFile: string;
      readonly keyFile: string;
      readonly trustBundleFile: string;
    };

/** The `identity:` block, indented for a place under `spec:` (`indent` spaces). */
export function identityYaml(id: IdentityYaml, indent = 2): string {
  const pad = ' '.repeat(indent);
  if (id.kind === 'ca') {
    const ttl = id.certTtl === undefined ? '' : `\n${pad}    certTtl: ${id.certTtl}`;
    return `${pad}identity:\n${pad}  ca:\n${pad}    certFile: ${id.caCertFile}\n${pad}    keyFile: ${id.caKeyFile}${ttl}\n`;
  }
  return `${pad}identity:\n${pad}  files:\n${pad}    certFile: ${id.certFile}\n${pad}    keyFile: ${id.keyFile}\n${pad}    trustBundleFile: ${id.trustBundleFile}\n`;
}

export interface WorkloadYaml {
  readonly name: string;
  readonly serviceAccount: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly inboundPort: number;
  /** `HOST:PORT`. */
  readonly app: string;
}

export interface ProxyYaml {
  readonly namespace?: string;
  readonly serviceAccount?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly identity?: IdentityYaml;
  readonly mode?: 'sidecar' | 'node';
  readonly workloads?: readonly WorkloadYaml[];
}

/** A `meshlet.dev/v1alpha1` Proxy document. */
export function proxyYaml(p: ProxyYaml): string {
  const lines = ['apiVersion: meshlet.dev/v1alpha1', 'kind: Proxy', 'metadata: { name: proxy }', 'spec:'];
  if (p.mode !== undefined) lines.push(`  mode: ${p.mode}`);
  lines.push(`  namespace: ${p.namespace ?? 'default'}`);
  if (p.serviceAccount !== undefined) lines.push(`  serviceAccount: ${p.serviceAccount}`);
  if (p.labels !== undefined) lines.push(`  labels: ${JSON.stringify(p.labels)}`);
  let text = `${lines.join('\n')}\n`;
  if (p.identity !== undefined) text += identityYaml(p.identity);
  if (p.workloads !== undefined) {
    text += '  workloads:\n';
    for (const w of p.workloads) {
      text += `    - name: ${w.name}\n      serviceAccount: ${w.serviceAccount}\n      inboundPort: ${w.inboundPort}\n      app: ${w.app}\n`;
      if (w.labels !== undefined) text += `      labels: ${JSON.stringify(w.labels)}\n`;
    }
  }
  return text;
}

export interface MeshEndpoint {
  /** Port on 127.0.0.1 (a sidecar's inbound port, or an app). */
  readonly port: number;
  /** Labels the endpoint `security.istio.io/tlsMode: istio` (auto-mTLS); default true. */
  readonly istio?: boolean;
  /** WorkloadEntry `serviceAccount`: the identity the server must present. */
  readonly serviceAccount?: string;
}

/**
 * A STATIC, MESH_INTERNAL ServiceEntry `<name>.default.svc.cluster.local` on port 80 whose
 * endpoints are loopback ports, labelled for auto-mTLS unless `istio: false`.
 */
export function meshServiceYaml(
  name: string,
  endpoints: readonly MeshEndpoint[],
  opts: { readonly subjectAltNames?: readonly string[] } = {},
): string {
  const eps = endpoints.map((e) => {
    const labels = e.istio === false ? '' : `, labels: { security.istio.io/tlsMode: istio }`;
    const sa = e.serviceAccount === undefined ? '' : `, serviceAccount: ${e.serviceAccount}`;
    return `    - { address: 127.0.0.1, ports: { http: ${e.port} }${labels}${sa} }`;
  });
  const sans =
    opts.subjectAltNames === undefined ? '' : `  subjectAltNames: [${opts.subjectAltNames.join(', ')}]\n`;
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name}, namespace: default }
spec:
  hosts: [${name}.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 80, name: http, protocol: HTTP }]
${sans}  endpoints:
${eps.join('\n')}
`;
}

/** A PeerAuthentication (`namespace` default: default; no selector = namespace-wide). */
export function peerAuthenticationYaml(
  name: string,
  mode: 'STRICT' | 'PERMISSIVE' | 'DISABLE',
  opts: { readonly namespace?: string; readonly selector?: Readonly<Record<string, string>> } = {},
): string {
  const selector =
    opts.selector === undefined ? '' : `  selector:\n    matchLabels: ${JSON.stringify(opts.selector)}\n`;
  return `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: ${name}, namespace: ${opts.namespace ?? 'default'} }
spec:
${selector}  mtls:
    mode: ${mode}
`;
}

/** An AuthorizationPolicy in `default` with the given `rules` (YAML, indented under `spec:`). */
export function authorizationPolicyYaml(
  name: string,
  action: 'ALLOW' | 'DENY' | 'AUDIT',
  rules: string,
  opts: { readonly selector?: Readonly<Record<string, string>> } = {},
): string {
  const selector =
    opts.selector === undefined ? '' : `  selector:\n    matchLabels: ${JSON.stringify(opts.selector)}\n`;
  return `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: default }
spec:
${selector}  action: ${action}
  rules:
${rules}`;
}

/** Documents joined into one multi-document stream. */
export function docs(...parts: readonly string[]): string {
  return parts.map((p) => p.trimEnd()).join('\n---\n');
}

/** `spiffe://cluster.local/ns/<ns>/sa/<sa>`. */
export function spiffe(sa: string, ns = 'default'): string {
  return `spiffe://cluster.local/ns/${ns}/sa/${sa}`;
}
