import { createServer, type Server } from 'node:http';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve } from '../cli.ts';
import type { EngineName } from '../listener/listener-types.ts';
import { embeddedDemoConfigPath } from '../sea-assets.ts';

/**
 * `npm start`: the demo mesh. Three `reviews` backends (v1, v2, v3) on loopback aliases answer
 * who they are; meshlet routes to them with the embedded configuration `config-examples/demo.yaml`.
 */
export const DEMO_BACKENDS = [
  { version: 'v1', host: '127.0.0.11', port: 9080 },
  { version: 'v2', host: '127.0.0.12', port: 9080 },
  { version: 'v3', host: '127.0.0.13', port: 9080 },
] as const;

export function demoConfigPath(): string {
  // Inside the single executable the file travels as an embedded asset.
  const embedded = embeddedDemoConfigPath();
  if (embedded !== null) return embedded;
  // dist/src/demo/demo.js and src/demo/demo.ts both sit three levels below the package root.
  const here = dirname(fileURLToPath(import.meta.url));
  const root = here.includes(`${'/dist/'}`) ? resolve(here, '../../..') : resolve(here, '../..');
  return resolve(root, 'config-examples/demo.yaml');
}

export async function startDemoBackends(): Promise<Server[]> {
  const servers: Server[] = [];
  for (const b of DEMO_BACKENDS) {
    const server = createServer((req, res) => {
      req.resume();
      const body = `reviews ${b.version} (${b.host}:${b.port}) answered ${req.method} ${req.url}\n`;
      res.writeHead(200, { 'content-type': 'text/plain', 'x-reviews-version': b.version });
      res.end(body);
    });
    await new Promise<void>((ok, fail) => {
      server.once('error', fail);
      server.listen(b.port, b.host, () => ok());
    });
    servers.push(server);
  }
  return servers;
}

export async function runDemo(o: {
  outboundPort?: number;
  adminPort?: number;
  engine?: EngineName;
}): Promise<void> {
  await startDemoBackends();
  const proxy = await serve(demoConfigPath(), {
    logLevel: 'warn',
    inboundPort: 0,
    ...(o.outboundPort !== undefined && { outboundPort: o.outboundPort }),
    ...(o.adminPort !== undefined && { adminPort: o.adminPort }),
    ...(o.engine !== undefined && { engine: o.engine }),
  });
  const out = proxy.listeners.find((l) => l.name === 'outbound');
  const p = out?.port ?? 15001;
  process.stdout.write(
    [
      `meshlet demo: outbound listener on 127.0.0.1:${p} (${out?.engine ?? '?'} engine), admin on 127.0.0.1:${proxy.adminPort}`,
      'reviews v1, v2, v3 listen on 127.0.0.11-13:9080. Try:',
      '',
      '  # weighted split: about 80 % v1, 20 % v3',
      `  for i in $(seq 10); do curl -s -H 'Host: reviews:9080' http://127.0.0.1:${p}/reviews/1; done`,
      '',
      '  # header-matched route: end-user jason always reaches v2',
      `  curl -s -H 'Host: reviews:9080' -H 'end-user: jason' http://127.0.0.1:${p}/reviews/1`,
      '',
      '  # as an HTTP proxy (absolute-form), the way HTTP_PROXY clients call',
      `  curl -s -x http://127.0.0.1:${p} http://reviews:9080/reviews/2`,
      '',
      '  # the Istio metrics of those requests',
      `  curl -s http://127.0.0.1:${proxy.adminPort}/metrics | grep istio_requests_total`,
      '',
      '  # live percentiles per service',
      `  curl -s http://127.0.0.1:${proxy.adminPort}/stats?pretty`,
      `  # the dashboard: open http://127.0.0.1:${proxy.adminPort}/ in a browser`,
      '',
      'Every request also prints one JSON access-log line below.',
      'Ctrl-C stops it.',
      '',
    ].join('\n'),
  );
}
