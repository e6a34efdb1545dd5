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
 *     work. The client runs in a worker thread, so on a 2-core machine the server has a core of its
 *     own, as a proxy would.
 *
 * Figures are medians over alternating rounds (the order of key types flips every round), so a burst
 * of noise on a shared machine spreads over all of them.
 *
 *   npm run bench:tls-keys -- [--rounds 3] [--duration 2] [--concurrency 16]
 *                             [--types ec-p256,rsa-2048,rsa-3072,ed25519] [--markdown FILE]
 */
import { writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { connect, createSecureContext, createServer, type SecureVersion } from 'node:tls';
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker } from 'node:worker_threads';
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

/** What the main thread asks the client worker to do. */
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
// Client worker: fresh connections, one secure context reused (as a proxy's upstream would).

async function runClientJob(job: ClientJob): Promise<ClientResult> {
  const secureContext = createSecureContext({ cert: job.certPem, key: job.keyPem, ca: job.caPem });
  let handshakes = 0;
  let errors = 0;
  let firstError: string | null = null;
  const one = (): Promise<void> =>
    new Promise((done) => {
      const socket = connect({
        host: '127.0.0.1',
        port: job.port,
        secureContext,
        minVersion: job.version,
        maxVersion: job.version,
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

if (!isMainThread) {
  parentPort?.on('message', (job: ClientJob) => {
    void runClientJob(job).then((r) => parentPort?.postMessage(r));
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

function ask(worker: Worker, job: ClientJob): Promise<ClientResult> {
  return new Promise((ok, fail) => {
    const onError = (err: Error): void => fail(err);
    worker.once('error', onError);
    worker.once('message', (r: ClientResult) => {
      worker.off('error', onError);
      ok(r);
    });
    worker.postMessage(job);
  });
}

/** Handshakes per second against a fresh server with this material, or an error text. */
async function handshakeRate(
  worker: Worker,
  m: Material,
  version: SecureVersion,
  concurrency: number,
  durationMs: number,
): Promise<number | string> {
  const server = createServer(
    {
      cert: m.server.certPem,
      key: m.server.keyPem,
      ca: m.caPem,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: version,
      maxVersion: version,
    },
    (socket) => {
      // Reached only after the client certificate verified: one byte tells the client so.
      socket.on('error', () => socket.destroy());
      socket.end('k');
    },
  );
  server.on('tlsClientError', () => {});
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  try {
    const { port } = server.address() as AddressInfo;
    const r = await ask(worker, {
      port,
      certPem: m.client.certPem,
      keyPem: m.client.keyPem,
      caPem: m.caPem,
      version,
      concurrency,
      durationMs,
    });
    if (r.handshakes === 0) return `failed: ${r.firstError ?? 'no handshake'}`;
    return (r.handshakes / r.elapsedMs) * 1000;
  } finally {
    await new Promise<void>((ok) => server.close(() => ok()));
  }
}

interface Row {
  readonly type: KeyType;
  readonly keygenMs: number[];
  readonly issueMs: number[];
  certBytes: number;
  /** `${version} c${concurrency}` → per-round rates. */
  readonly rates: Map<string, number[]>;
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
  const head = [
    'key type',
    'keygen ms',
    'issue ms',
    'cert bytes',
    ...cs.map(
      (c) => `${c.version.replace('TLSv', 'TLS ')} ${c.concurrency === 1 ? 'seq' : `x${c.concurrency}`}`,
    ),
  ];
  const body = rows.map((r) => [
    r.type,
    fmt(median(r.keygenMs), 2),
    fmt(median(r.issueMs), 2),
    String(r.certBytes),
    ...cs.map((c) => r.failures.get(c.key) ?? fmt(median(r.rates.get(c.key) ?? []))),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  const text = [line(head), ...body.map(line)].join('\n');
  const markdown = [
    `| ${head.join(' | ')} |`,
    `| ${head.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`,
    ...body.map((b) => `| ${b.join(' | ')} |`),
  ].join('\n');
  return { text, markdown };
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
      `OpenSSL ${process.versions.openssl}, load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}; ${opts.rounds} round(s) of ${opts.durationMs / 1000} s per figure\n`,
  );
  const worker = new Worker(new URL(import.meta.url));
  worker.unref();
  const rows = new Map<KeyType, Row>();
  const materials = new Map<KeyType, Material>();
  for (const type of opts.types) {
    const m = await material(type);
    materials.set(type, m);
    rows.set(type, {
      type,
      keygenMs: [],
      issueMs: [],
      certBytes: m.certBytes,
      rates: new Map(),
      failures: new Map(),
    });
  }
  const ca = new Map<KeyType, Awaited<ReturnType<typeof createRootCa>>>();
  for (const type of opts.types)
    ca.set(type, await createRootCa({ trustDomain: 'cluster.local', keyType: type }));
  const id = spiffeId('cluster.local', 'default', 'bench');

  for (let round = 0; round < opts.rounds; round++) {
    const order = round % 2 === 0 ? [...opts.types] : [...opts.types].reverse();
    for (const type of order) {
      const row = rows.get(type)!;
      const m = materials.get(type)!;
      row.keygenMs.push(...(await timeEach(opts.samples, () => generateKeyPair(type))));
      row.issueMs.push(
        ...(await timeEach(opts.samples, () =>
          issueWorkloadCertificate(ca.get(type)!, id, { keyType: type }),
        )),
      );
      for (const c of combos(opts)) {
        if (row.failures.has(c.key)) continue;
        const rate = await handshakeRate(worker, m, c.version, c.concurrency, opts.durationMs);
        if (typeof rate === 'string') row.failures.set(c.key, rate);
        else row.rates.set(c.key, [...(row.rates.get(c.key) ?? []), rate]);
        process.stderr.write(
          `  round ${round + 1} ${type} ${c.key}: ${typeof rate === 'string' ? rate : fmt(rate)}\n`,
        );
      }
    }
  }
  await worker.terminate();
  // Other processes on the machine skew handshake rates; say how busy it was.
  process.stderr.write(
    `load average at the end: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}\n`,
  );
  const { text, markdown } = table(opts, [...rows.values()]);
  process.stdout.write(
    `\nnew mTLS handshakes per second (medians over ${opts.rounds} alternating rounds; seq = one at a time, ` +
      `x${opts.concurrency} = ${opts.concurrency} in flight); keygen and issue: median ms\n\n${text}\n`,
  );
  if (opts.markdown !== undefined) writeFileSync(opts.markdown, `${markdown}\n`);
}

if (isMainThread) {
  main().catch((err: unknown) => {
    process.stderr.write(
      `tls-keys bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  });
}
