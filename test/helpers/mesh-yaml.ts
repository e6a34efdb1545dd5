/** YAML builders for the end-to-end tests: the ServiceEntry every test needs, written once. */

export interface LoopbackEndpoint {
  /** Port of a backend on 127.0.0.1. */
  readonly port: number;
  readonly labels?: Readonly<Record<string, string>>;
  /** Endpoint address; default 127.0.0.1. A host name needs `resolution: 'DNS'`. */
  readonly address?: string;
}

/**
 * A STATIC, MESH_INTERNAL ServiceEntry `name` in `default` with one HTTP port (default 80) and
 * loopback endpoints. `hosts` defaults to the FQDN of `name`.
 */
export function serviceEntryYaml(
  name: string,
  endpoints: readonly LoopbackEndpoint[],
  opts: {
    readonly servicePort?: number;
    readonly hosts?: readonly string[];
    /** Default STATIC. */
    readonly resolution?: 'STATIC' | 'DNS' | 'DNS_ROUND_ROBIN';
  } = {},
): string {
  const hosts = opts.hosts ?? [`${name}.default.svc.cluster.local`];
  const eps = endpoints.map((e) => {
    const labels = e.labels === undefined ? '' : `, labels: ${JSON.stringify(e.labels)}`;
    return `    - { address: ${e.address ?? '127.0.0.1'}, ports: { http: ${e.port} }${labels} }`;
  });
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name}, namespace: default }
spec:
  hosts: [${hosts.join(', ')}]
  location: MESH_INTERNAL
  resolution: ${opts.resolution ?? 'STATIC'}
  ports: [{ number: ${opts.servicePort ?? 80}, name: http, protocol: HTTP }]
  endpoints:
${eps.join('\n')}
`;
}
