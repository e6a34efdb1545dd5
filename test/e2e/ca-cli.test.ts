import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import t from 'tap';
import { createFileIdentity } from '../../src/tls/identity-source.ts';
import { runCli } from '../helpers/spawn-meshlet.ts';

function tmp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-ca-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const mode = (file: string): number => statSync(file).mode & 0o777;

function opensslVerify(caFile: string, certFile: string): Promise<{ code: number; out: string }> {
  return new Promise((ok) => {
    execFile(
      'openssl',
      ['verify', '-CAfile', caFile, certFile],
      { timeout: 10_000 },
      (err, stdout, stderr) => {
        ok({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, out: stdout + stderr });
      },
    );
  });
}

/** The JSON error line the CLI writes on stderr. */
function errorOf(stderr: string): string {
  const line = stderr.split('\n').find((l) => l.startsWith('{'));
  if (line === undefined) return stderr;
  const o = JSON.parse(line) as { msg: string; error?: string };
  return o.error === undefined ? o.msg : `${o.msg}: ${o.error}`;
}

t.test('ca init writes a root CA, the key 0600, and never overwrites it without --force', async (t) => {
  const dir = join(tmp(t), 'ca');
  const r = await runCli(['ca', 'init', '--trust-domain', 'cluster.local', '--out', dir]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, `wrote ${join(dir, 'ca.crt')}`);
  t.match(r.stdout, `wrote ${join(dir, 'ca.key')}`);
  t.equal(mode(join(dir, 'ca.key')), 0o600);
  const cert = new X509Certificate(readFileSync(join(dir, 'ca.crt')));
  t.ok(cert.ca);
  t.equal(cert.subjectAltName, 'URI:spiffe://cluster.local');
  t.ok(cert.verify(cert.publicKey), 'self-signed');
  const years = (new Date(cert.validTo).getTime() - Date.now()) / (365 * 24 * 3600_000);
  t.ok(years > 9.9 && years < 10.1, `about 10 years (${years.toFixed(2)})`);

  const key = readFileSync(join(dir, 'ca.key'), 'utf8');
  const again = await runCli(['ca', 'init', '--trust-domain', 'cluster.local', '--out', dir]);
  t.equal(again.code, 1);
  t.match(
    errorOf(again.stderr),
    `${join(dir, 'ca.key')}, ${join(dir, 'ca.crt')} already exist; pass --force`,
  );
  t.equal(readFileSync(join(dir, 'ca.key'), 'utf8'), key, 'key untouched');

  const forced = await runCli(['ca', 'init', '--trust-domain', 'example.org', '--out', dir, '--force']);
  t.equal(forced.code, 0, forced.stderr);
  t.not(readFileSync(join(dir, 'ca.key'), 'utf8'), key, 'a new key');
  t.equal(mode(join(dir, 'ca.key')), 0o600);
  t.equal(new X509Certificate(readFileSync(join(dir, 'ca.crt'))).subjectAltName, 'URI:spiffe://example.org');
});

t.test(
  'ca issue writes cert.pem, key.pem (0600), ca.pem; openssl verifies; the files identity loads them',
  async (t) => {
    const base = tmp(t);
    const ca = join(base, 'ca');
    t.equal((await runCli(['ca', 'init', '--trust-domain', 'cluster.local', '--out', ca])).code, 0);
    const out = join(base, 'reviews');
    const r = await runCli([
      'ca',
      'issue',
      '--ca',
      ca,
      '--namespace',
      'bookinfo',
      '--service-account',
      'reviews',
      '--out',
      out,
      '--ttl',
      '2h',
    ]);
    t.equal(r.code, 0, r.stderr);
    t.match(
      r.stdout,
      `wrote ${join(out, 'cert.pem')} (spiffe://cluster.local/ns/bookinfo/sa/reviews, valid until`,
    );
    t.equal(mode(join(out, 'key.pem')), 0o600);
    t.equal(
      readFileSync(join(out, 'ca.pem'), 'utf8'),
      readFileSync(join(ca, 'ca.crt'), 'utf8'),
      'bundle = the CA',
    );
    const v = await opensslVerify(join(ca, 'ca.crt'), join(out, 'cert.pem'));
    t.equal(v.code, 0, v.out);
    t.match(v.out, /cert\.pem: OK/);
    const leaf = new X509Certificate(readFileSync(join(out, 'cert.pem')));
    t.equal(leaf.subjectAltName, 'URI:spiffe://cluster.local/ns/bookinfo/sa/reviews');
    const hours = (new Date(leaf.validTo).getTime() - Date.now()) / 3600_000;
    t.ok(hours > 1.9 && hours <= 2, `--ttl 2h (${hours.toFixed(3)} h)`);

    const id = createFileIdentity({
      certFile: join(out, 'cert.pem'),
      keyFile: join(out, 'key.pem'),
      trustBundleFile: join(out, 'ca.pem'),
      watch: false,
    });
    t.equal(id.lastError, null);
    t.equal(id.current()?.spiffe.uri, 'spiffe://cluster.local/ns/bookinfo/sa/reviews');
    id.close();

    // Trust domain override, and the RSA option.
    const other = join(base, 'other');
    const o = await runCli(
      ['ca', 'issue', '--ca', ca, '--namespace', 'a', '--service-account', 'b', '--out', other].concat([
        '--trust-domain',
        'legacy.local',
        '--key-type',
        'rsa-2048',
      ]),
    );
    t.equal(o.code, 0, o.stderr);
    const otherLeaf = new X509Certificate(readFileSync(join(other, 'cert.pem')));
    t.equal(otherLeaf.subjectAltName, 'URI:spiffe://legacy.local/ns/a/sa/b');
    t.equal(otherLeaf.publicKey.asymmetricKeyType, 'rsa');
    t.equal((await opensslVerify(join(ca, 'ca.crt'), join(other, 'cert.pem'))).code, 0);

    // Issuing again into the same directory needs --force.
    const again = await runCli([
      'ca',
      'issue',
      '--ca',
      ca,
      '--namespace',
      'a',
      '--service-account',
      'b',
      '--out',
      other,
    ]);
    t.equal(again.code, 1);
    t.match(errorOf(again.stderr), 'already exist; pass --force');
  },
);

t.test('ca issue: runtime errors name the file (exit 1)', async (t) => {
  const base = tmp(t);
  const missing = await runCli(
    ['ca', 'issue', '--ca', join(base, 'nope'), '--namespace', 'a'].concat([
      '--service-account',
      'b',
      '--out',
      join(base, 'out'),
    ]),
  );
  t.equal(missing.code, 1);
  t.equal(
    errorOf(missing.stderr),
    `ca issue failed: cannot read CA certificate ${join(base, 'nope', 'ca.crt')}: ENOENT`,
  );

  const ca = join(base, 'ca');
  t.equal((await runCli(['ca', 'init', '--trust-domain', 'td', '--out', ca])).code, 0);
  const other = join(base, 'other');
  t.equal((await runCli(['ca', 'init', '--trust-domain', 'td', '--out', other])).code, 0);
  writeFileSync(join(ca, 'ca.key'), readFileSync(join(other, 'ca.key')));
  const mismatch = await runCli(
    ['ca', 'issue', '--ca', ca, '--namespace', 'a', '--service-account', 'b'].concat([
      '--out',
      join(base, 'out'),
    ]),
  );
  t.equal(mismatch.code, 1);
  t.match(
    errorOf(mismatch.stderr),
    `${join(ca, 'ca.key')} and ${join(ca, 'ca.crt')}: the private key does not match`,
  );
});

t.test('bad arguments exit 2; --help exits 0', async (t) => {
  const base = tmp(t);
  const cases: Array<[string[], RegExp]> = [
    [['ca', 'init', '--out', base], /required option '--trust-domain <domain>'/],
    [['ca', 'init', '--trust-domain', 'Bad_TD!', '--out', base], /invalid SPIFFE trust domain/],
    [['ca', 'init', '--trust-domain', 'td', '--out', base, '--validity', 'forever'], /--validity/],
    [['ca', 'init', '--trust-domain', 'td', '--out', base, '--key-type', 'dsa'], /--key-type/],
    [
      ['ca', 'issue', '--ca', base, '--namespace', 'a', '--out', base],
      /required option '--service-account <sa>'/,
    ],
    [
      [
        'ca',
        'issue',
        '--ca',
        base,
        '--namespace',
        'a/b',
        '--service-account',
        's',
        '--out',
        base,
        '--trust-domain',
        'td',
      ],
      /invalid namespace .*a\/b/,
    ],
    [
      [
        'ca',
        'issue',
        '--ca',
        base,
        '--namespace',
        'a',
        '--service-account',
        's',
        '--out',
        base,
        '--ttl',
        '0s',
      ],
      /--ttl/,
    ],
  ];
  for (const [args, want] of cases) {
    const r = await runCli(args);
    t.equal(r.code, 2, args.join(' '));
    t.match(r.stderr, want, args.join(' '));
  }
  // A namespace that cannot form a SPIFFE id with the CA's trust domain is also a bad argument.
  const ca = join(base, 'ca');
  t.equal((await runCli(['ca', 'init', '--trust-domain', 'td', '--out', ca])).code, 0);
  const bad = await runCli([
    'ca',
    'issue',
    '--ca',
    ca,
    '--namespace',
    'x',
    '--service-account',
    '..',
    '--out',
    join(base, 'o'),
  ]);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /invalid service account/);

  for (const args of [
    ['ca', '--help'],
    ['ca', 'init', '--help'],
    ['ca', 'issue', '--help'],
  ]) {
    const h = await runCli(args);
    t.equal(h.code, 0, args.join(' '));
    t.match(h.stdout, /Usage: meshlet ca/);
  }
  const issueHelp = await runCli(['ca', 'issue', '--help']);
  for (const flag of [
    '--ca',
    '--namespace',
    '--service-account',
    '--out',
    '--ttl',
    '--trust-domain',
    '--force',
  ]) {
    t.match(issueHelp.stdout, flag);
  }
});
