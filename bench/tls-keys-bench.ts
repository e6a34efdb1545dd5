/**
 * `npm run bench:tls-keys`: which key type the mesh PKI should use (src/tls/pki.ts).
 *
 * For each key type (the CA and the workload certificates of a row share it) it measures:
 *   - key generation: median time of one `generateKeyPair` (native, on the thread pool);
 *   - issuance: median time of one workload certificate, key generation included;
 *   - new mTLS handshakes per second: a `tls.createServer` with `requestCert` on loopback and a
 *     client making fresh connections with its client certificate (no session resumption), one at
 *     a time and `--concurrency` at a time, with TLS 1.3 and TLS 1.2. A handshake counts once the
 *     server has verified the client certificate and sent a byte back, so both sides did all their
 *     work. The server runs in a child process of its own, so that
 *   - the server's CPU time per handshake can be read from that process alone (`process.cpuUsage`
 *     before and after each run). Wall-clock rates depend on whatever else the machine is doing;
 *     CPU per handshake much less, and it is what bounds a proxy: 1 s / (CPU per handshake) is
 *     the handshakes per second one core can serve. The client's CPU per handshake (this process)
 *     is printed too: a sidecar pays both, the client side on outbound, the server side on inbound.
 *
 * Figures are medians over alternating rounds (the order of key types flips every round), so a burst
 * of noise on a shared machine spreads over all of them.
 *
 *   npm run bench:tls-keys -- [--rounds 3] [--duration 2] [--concurrency 16]
 *                             [--types ec-p256,rsa-2048,rsa-3072,ed25519] [--markdown FILE]
 */

import { type ChildProcess, fork } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { connect, createSecureContext, createServer, type SecureVersion } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  createRootCa,
  generateKeyPair,
  issueWorkloadCertificate,
  KEY_TYPES,
  type KeyType,
} from '../src/tls/pki.ts';
import { spiffeId } from '../src/tls/spiffe.ts';
import { median } from './report.ts';

const USAGE = `usage: npm run bench:tls-keys -- [options]
  --rounds <n>        alternating rounds (default 3)
  --duration <s>      seconds per handshake measurement (default 2)
  --concurrency <n>   connections in flight for the concurrent figure (default 16)
  --types <list>      key types, comma-separated (default ${KEY_TYPES.join(',')})
  --samples <n>       key generations / issuances timed per type and round (default 10)
  --markdown <file>   also write the table as Markdown
`;

const VERSIONS: readonly SecureVersion[] = ['TLSv1.3', 'TLSv1.2'];

/** What the client side runs against a server. */
interface ClientJob {
  readonly port: number;
  readonly certPem: string;
  readonly keyPem: string;
  readonly caPem: string;
  readonly version: SecureVersion;
  readonly concurrency: number;
  readonly durationMs: number;
}

interface ClientResult {
  readonly handshakes: number;
  readonly errors: number;
  readonly firstError: string | null;
  readonly elapsedMs: number;
}

// ---------------------------------------------------------------------------------------------
// Client: fresh connections, one secure context reused (as a proxy's upstream would).

async function runClientJob(job: ClientJob): Promise<ClientResult> {
  const secureContext = createSecureContext({
    cert: job.certPem,
    key: job.keyPem,
    ca: job.caPem,
    minVersion: job.version,
    maxVersion: job.version,
  });
  let handshakes = 0;
  let errors = 0;
  let firstError: string | null = null;
  const one = (): Promise<void> =>
    new Promise((done) => {
      const socket = connect({
        host: '127.0.0.1',
        port: job.port,
        secureContext,
        // The chain is verified; the name check is about SPIFFE ids, not host names.
        checkServerIdentity: () => undefined,
      });
      socket.once('data', () => {
        handshakes++;
        socket.destroy();
        done();
      });
      socket.once('error', (err) => {
        errors++;
        firstError ??= err.message;
        socket.destroy();
        done();
      });
    });
  const start = performance.now();
  const deadline = start + job.durationMs;
  await Promise.all(
    Array.from({ length: job.concurrency }, async () => {
      // Stop after the first errors pile up: a key type the TLS stack refuses fails every time.
      while (performance.now() < deadline && errors < 20) await one();
    }),
  );
  return { handshakes, errors, firstError, elapsedMs: performance.now() - start };
}

// ---------------------------------------------------------------------------------------------
// Server: a child process (`--role server`) driven over IPC.

type ServerRequest =
  | {
      readonly kind: 'listen';
      readonly certPem: string;
      readonly keyPem: string;
      readonly caPem: string;
      readonly version: SecureVersion;
    }
  | { readonly kind: 'cpu' }
  | { readonly kind: 'close' };

type ServerReply =
  | { readonly kind: 'port'; readonly port: number }
  | { readonly kind: 'cpu'; readonly us: number };

function serverRole(): void {
  let server: ReturnType<typeof createServer> | undefined;
  const reply = (r: ServerReply): void => {
    process.send?.(r);
  };
  process.on('message', (req: ServerRequest) => {
    if (req.kind === 'cpu') {
      const u = process.cpuUsage();
      reply({ kind: 'cpu', us: u.user + u.system });
      return;
    }
    if (req.kind === 'close') {
      server?.close();
      process.disconnect();
      return;
    }
    server?.close();
    const s = createServer(
      {
        cert: req.certPem,
        key: req.keyPem,
        ca: req.caPem,
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: req.version,
        maxVersion: req.version,
      },
      (socket) => {
        // Reached only after the client certificate verified: one byte tells the client so.
        socket.on('error', () => socket.destroy());
        socket.end('k');
      },
    );
    s.on('tlsClientError', () => {});
    server = s;
    s.listen(0, '127.0.0.1', () => reply({ kind: 'port', port: (s.address() as AddressInfo).port }));
  });
}

// ---------------------------------------------------------------------------------------------
// Main thread

interface Options {
  readonly rounds: number;
  readonly durationMs: number;
  readonly concurrency: number;
  readonly types: readonly KeyType[];
  readonly samples: number;
  readonly markdown: string | undefined;
}

function parseOptions(argv: readonly string[]): Options | string {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      rounds: { type: 'string' },
      duration: { type: 'string' },
      concurrency: { type: 'string' },
      types: { type: 'string' },
      samples: { type: 'string' },
      markdown: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) return '';
  const int = (name: string, raw: string | undefined, fallback: number, max: number): number => {
    if (raw === undefined) return fallback;
    if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > max) {
      throw new Error(`--${name} must be a whole number 1-${max}, got "${raw}"`);
    }
    return Number(raw);
  };
  const types = (values.types ?? KEY_TYPES.join(',')).split(',').map((s) => s.trim());
  for (const t of types) {
    if (!(KEY_TYPES as readonly string[]).includes(t)) {
      throw new Error(`--types: unknown key type "${t}" (known: ${KEY_TYPES.join(', ')})`);
    }
  }
  return {
    rounds: int('rounds', values.rounds, 3, 50),
    durationMs: int('duration', values.duration, 2, 600) * 1000,
    concurrency: int('concurrency', values.concurrency, 16, 1000),
    types: types as KeyType[],
    samples: int('samples', values.samples, 10, 1000),
    markdown: values.markdown,
  };
}

interface Material {
  readonly caPem: string;
  readonly server: { readonly certPem: string; readonly keyPem: string };
  readonly client: { readonly certPem: string; readonly keyPem: string };
  readonly certBytes: number;
}

async function material(type: KeyType): Promise<Material> {
  const ca = await createRootCa({ trustDomain: 'cluster.local', keyType: type });
  const server = await issueWorkloadCertificate(ca, spiffeId('cluster.local', 'default', 'server'), {
    keyType: type,
  });
  const client = await issueWorkloadCertificate(ca, spiffeId('cluster.local', 'default', 'client'), {
    keyType: type,
  });
  return {
    caPem: ca.certPem,
    server: { certPem: server.certChainPem, keyPem: server.keyPem },
    client: { certPem: client.certChainPem, keyPem: client.keyPem },
    certBytes: Buffer.byteLength(server.certChainPem),
  };
}

async function timeEach(n: number, fn: () => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    out.push(performance.now() - t0);
  }
  return out;
}

/** One request to the server process and its reply. */
function ask(child: ChildProcess, req: ServerRequest): Promise<ServerReply> {
  return new Promise((ok, fail) => {
    const onExit = (): void => fail(new Error('the server process exited'));
    child.once('exit', onExit);
    child.once('message', (r: ServerReply) => {
      child.off('exit', onExit);
      ok(r);
    });
    child.send(req);
  });
}

async function serverCpuUs(child: ChildProcess): Promise<number> {
  const r = await ask(child, { kind: 'cpu' });
  if (r.kind !== 'cpu') throw new Error('unexpected reply from the server process');
  return r.us;
}

interface Rate {
  readonly perSec: number;
  readonly serverUs: number;
  readonly clientUs: number;
}

/** Handshakes per second and CPU per handshake against the server process, or an error text. */
async function handshakeRate(
  child: ChildProcess,
  m: Material,
  version: SecureVersion,
  concurrency: number,
  durationMs: number,
): Promise<Rate | string> {
  const listening = await ask(child, {
    kind: 'listen',
    certPem: m.server.certPem,
    keyPem: m.server.keyPem,
    caPem: m.caPem,
    version,
  });
  if (listening.kind !== 'port') throw new Error('unexpected reply from the server process');
  const cpuBefore = await serverCpuUs(child);
  const clientBefore = process.cpuUsage();
  const r = await runClientJob({
    port: listening.port,
    certPem: m.client.certPem,
    keyPem: m.client.keyPem,
    caPem: m.caPem,
    version,
    concurrency,
    durationMs,
  });
  const client = process.cpuUsage(clientBefore);
  const cpuAfter = await serverCpuUs(child);
  if (r.handshakes === 0) return `failed: ${r.firstError ?? 'no handshake'}`;
  return {
    perSec: (r.handshakes / r.elapsedMs) * 1000,
    serverUs: (cpuAfter - cpuBefore) / r.handshakes,
    clientUs: (client.user + client.system) / r.handshakes,
  };
}

interface Row {
  readonly type: KeyType;
  readonly keygenMs: number[];
  readonly issueMs: number[];
  certBytes: number;
  /** `${version} c${concurrency}` → per-round rates. */
  readonly rates: Map<string, number[]>;
  /** TLS version → per-round server / client CPU µs per handshake (all concurrencies). */
  readonly serverUs: Map<SecureVersion, number[]>;
  readonly clientUs: Map<SecureVersion, number[]>;
  readonly failures: Map<string, string>;
}

const combos = (o: Options): Array<{ version: SecureVersion; concurrency: number; key: string }> =>
  VERSIONS.flatMap((version) =>
    [1, o.concurrency].map((concurrency) => ({ version, concurrency, key: `${version} c${concurrency}` })),
  );

function fmt(v: number, digits = 0): string {
  return Number.isNaN(v) ? 'n/a' : v.toFixed(digits);
}

function table(o: Options, rows: readonly Row[]): { text: string; markdown: string } {
  const cs = combos(o);
  const short = (v: SecureVersion): string => v.replace('TLSv', 'TLS ');
  const head = [
    'key type',
    'keygen ms',
    'issue ms',
    'cert bytes',
    ...cs.map((c) => `${short(c.version)} ${c.concurrency === 1 ? 'seq' : `x${c.concurrency}`} /s`),
    ...VERSIONS.flatMap((v) => [`${short(v)} server µs`, `${short(v)} client µs`]),
  ];
  const body = rows.map((r) => [
    r.type,
    fmt(median(r.keygenMs), 2),
    fmt(median(r.issueMs), 2),
    String(r.certBytes),
    ...cs.map((c) => (r.failures.has(c.key) ? 'failed' : fmt(median(r.rates.get(c.key) ?? [])))),
    ...VERSIONS.flatMap((v) => [fmt(median(r.serverUs.get(v) ?? [])), fmt(median(r.clientUs.get(v) ?? []))]),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  const failures = rows.flatMap((r) => [...r.failures].map(([k, why]) => `${r.type} ${k}: ${why}`));
  const text = [line(head), ...body.map(line), ...failures].join('\n');
  const markdown = [
    `| ${head.join(' | ')} |`,
    `| ${head.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`,
    ...body.map((b) => `| ${b.join(' | ')} |`),
    ...failures.map((f) => `\n${f}`),
  ].join('\n');
  return { text, markdown };
}

const loadText = (): string =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

function push<K>(map: Map<K, number[]>, key: K, value: number): void {
  map.set(key, [...(map.get(key) ?? []), value]);
}

async function main(): Promise<void> {
  let o: Options | string;
  try {
    o = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
    process.exit(2);
  }
  if (typeof o === 'string') {
    process.stdout.write(USAGE);
    return;
  }
  const opts = o;
  process.stderr.write(
    `tls-keys: ${availableParallelism()} CPU(s) (${cpus()[0]?.model ?? 'unknown'}), Node ${process.version}, ` +
      `OpenSSL ${process.versions.openssl}, load average ${loadText()}; ` +
      `${opts.rounds} round(s) of ${opts.durationMs / 1000} s per figure\n`,
  );
  const child = fork(fileURLToPath(import.meta.url), ['--role', 'server'], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  try {
    const rows = new Map<KeyType, Row>();
    const materials = new Map<KeyType, Material>();
    const cas = new Map<KeyType, Awaited<ReturnType<typeof createRootCa>>>();
    for (const type of opts.types) {
      const m = await material(type);
      materials.set(type, m);
      cas.set(type, await createRootCa({ trustDomain: 'cluster.local', keyType: type }));
      rows.set(type, {
        type,
        keygenMs: [],
        issueMs: [],
        certBytes: m.certBytes,
        rates: new Map(),
        serverUs: new Map(),
        clientUs: new Map(),
        failures: new Map(),
      });
    }
    const id = spiffeId('cluster.local', 'default', 'bench');

    for (let round = 0; round < opts.rounds; round++) {
      const order = round % 2 === 0 ? [...opts.types] : [...opts.types].reverse();
      for (const type of order) {
        const row = rows.get(type)!;
        const m = materials.get(type)!;
        const ca = cas.get(type)!;
        row.keygenMs.push(...(await timeEach(opts.samples, () => generateKeyPair(type))));
        row.issueMs.push(
          ...(await timeEach(opts.samples, () => issueWorkloadCertificate(ca, id, { keyType: type }))),
        );
        for (const c of combos(opts)) {
          if (row.failures.has(c.key)) continue;
          const rate = await handshakeRate(child, m, c.version, c.concurrency, opts.durationMs);
          if (typeof rate === 'string') {
            row.failures.set(c.key, rate);
          } else {
            push(row.rates, c.key, rate.perSec);
            push(row.serverUs, c.version, rate.serverUs);
            push(row.clientUs, c.version, rate.clientUs);
          }
          process.stderr.write(
            `  round ${round + 1} ${type} ${c.key}: ${
              typeof rate === 'string'
                ? rate
                : `${fmt(rate.perSec)}/s, server ${fmt(rate.serverUs)} µs, client ${fmt(rate.clientUs)} µs`
            }\n`,
          );
        }
      }
    }
    // Other processes on the machine skew handshake rates; say how busy it was.
    process.stderr.write(`load average at the end: ${loadText()}\n`);
    const { text, markdown } = table(opts, [...rows.values()]);
    process.stdout.write(
      `\nnew mTLS handshakes per second (medians over ${opts.rounds} alternating rounds; seq = one at a time, ` +
        `x${opts.concurrency} = ${opts.concurrency} in flight), CPU per handshake of the server process and of ` +
        `the client (median over both concurrencies and all rounds); keygen and issue: median ms\n\n${text}\n`,
    );
    if (opts.markdown !== undefined) writeFileSync(opts.markdown, `${markdown}\n`);
  } finally {
    if (child.connected) child.send({ kind: 'close' } satisfies ServerRequest);
  }
}

if (process.argv.includes('--role')) {
  serverRole();
} else {
  main().catch((err: unknown) => {
    process.stderr.write(
      `tls-keys bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  });
}
