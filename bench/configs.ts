/**
 * Generated configurations for the backend and the proxies. Pure functions (tested in
 * test/unit/bench/), so what each target runs with is easy to read in one place.
 *
 * Everything listens on 127.0.0.1 only; every path nginx might write to lives in the temp dir.
 */

/** The response body every request gets: exactly 64 bytes. */
export const BODY = '0123456789abcdef'.repeat(4);

/** The Host header wrk sends to every target (meshlet routes on it; the others ignore it). */
export const BENCH_HOST = 'bench-backend';

/** Temp-path directives of optional nginx modules; dropped when this nginx build lacks the module. */
export const OPTIONAL_NGINX_TEMP_PATHS = ['fastcgi_temp_path', 'uwsgi_temp_path', 'scgi_temp_path'] as const;

export interface NginxConfOptions {
  readonly dir: string;
  /** Directives from OPTIONAL_NGINX_TEMP_PATHS to leave out. */
  readonly omit?: ReadonlySet<string>;
}

function nginxFrame(opts: NginxConfOptions, httpBody: string): string {
  const { dir } = opts;
  const optional = OPTIONAL_NGINX_TEMP_PATHS.filter((d) => opts.omit?.has(d) !== true)
    .map((d) => `  ${d} ${dir}/${d.replace('_temp_path', '')};\n`)
    .join('');
  return `daemon off;
master_process on;
worker_processes 1;
pid ${dir}/nginx.pid;
lock_file ${dir}/nginx.lock;
error_log ${dir}/error.log warn;
events {
  worker_connections 4096;
}
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
${optional}  # wrk and the proxies keep their connections for the whole run.
  keepalive_requests 10000000;
  keepalive_timeout 75s;
${httpBody}}
`;
}

/** The backend: answers everything with 200 and BODY. */
export function nginxBackendConf(opts: NginxConfOptions, port: number): string {
  return nginxFrame(
    opts,
    `  server {
    listen 127.0.0.1:${port};
    location / {
      default_type text/plain;
      return 200 "${BODY}";
    }
  }
`,
  );
}

/** nginx as a reverse proxy with a keep-alive upstream pool. */
export function nginxProxyConf(opts: NginxConfOptions, port: number, backendPort: number): string {
  return nginxFrame(
    opts,
    `  upstream bench_backend {
    server 127.0.0.1:${backendPort};
    keepalive 64;
    keepalive_requests 10000000;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://bench_backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
`,
  );
}

/** HAProxy in HTTP mode, one thread, reusing server-side connections. */
export function haproxyConf(port: number, backendPort: number): string {
  return `global
  nbthread 1
  maxconn 4096

defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 75s

frontend bench_in
  bind 127.0.0.1:${port}
  default_backend bench_backend

backend bench_backend
  server backend1 127.0.0.1:${backendPort}
`;
}

/** The Istio config meshlet runs with: one STATIC ServiceEntry pointing at the backend. */
export function meshletServiceEntry(backendPort: number): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: bench-backend
  namespace: default
spec:
  hosts:
    - bench-backend.default.svc.cluster.local
  ports:
    - number: 80
      name: http
      protocol: HTTP
  resolution: STATIC
  location: MESH_INTERNAL
  endpoints:
    - address: 127.0.0.1
      ports:
        http: ${backendPort}
`;
}

/** One endpoint of {@link staticServiceEntry}: its port on 127.0.0.1 and any further fields (`, labels: …`). */
export interface StaticEndpoint {
  readonly port: number;
  readonly extra?: string;
}

/** A STATIC, MESH_INTERNAL ServiceEntry `name` (host `name.default.svc.cluster.local`, port 80) on 127.0.0.1. */
export function staticServiceEntry(name: string, endpoints: readonly StaticEndpoint[]): string {
  const eps = endpoints.map(
    (e) => `    - { address: 127.0.0.1, ports: { http: ${e.port} }${e.extra ?? ''} }`,
  );
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name}, namespace: default }
spec:
  hosts: [${name}.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 80, name: http, protocol: HTTP }]
  endpoints:
${eps.join('\n')}
`;
}
