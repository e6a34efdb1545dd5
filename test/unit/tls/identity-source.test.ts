import { X509Certificate } from 'node:crypto';
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import t from 'tap';
import {
  createFileIdentity,
  createIssuingIdentity,
  loadCaFiles,
  MAX_REFRESH_MS,
  MIN_REFRESH_MS,
  RETRY_MAX_MS,
  RETRY_MIN_MS,
  writeOutputFiles,
} from '../../../src/tls/identity-source.ts';
import type { IdentitySource } from '../../../src/tls/identity-types.ts';
import {
  type CaMaterial,
  createRootCa,
  issueWorkloadCertificate,
  splitPemCertificates,
} from '../../../src/tls/pki.ts';
import { spiffeId } from '../../../src/tls/spiffe.ts';

const NOW = Date.UTC(2030, 0, 15, 12, 0, 0);
const ID = spiffeId('cluster.local', 'default', 'reviews');

function tmp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-identity-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Timers driven by the test: `advance` moves the clock and runs what fell due, in order. */
class FakeTime {
  now = NOW;
  private seq = 0;
  readonly pending = new Map<number, { at: number; fn: () => void }>();
  readonly clock = (): number => this.now;
  readonly setTimer = (fn: () => void, ms: number): unknown => {
    const id = ++this.seq;
    this.pending.set(id, { at: this.now + ms, fn });
    return id;
  };
  readonly clearTimer = (h: unknown): void => {
    this.pending.delete(h as number);
  };
  /** The delays of the pending timers, from now. */
  delays(): number[] {
    return [...this.pending.values()].map((p) => p.at - this.now);
  }
  advance(ms: number): void {
    this.now += ms;
    for (;;) {
      const due = [...this.pending.entries()]
        .filter(([, p]) => p.at <= this.now)
        .sort((a, b) => a[1].at - b[1].at);
      const first = due[0];
      if (first === undefined) return;
      this.pending.delete(first[0]);
      first[1].fn();
    }
  }
}

/** Resolves at the next onChange of `source` (a rejected promise after `ms`). */
function nextChange(source: IdentitySource, ms = 5000): Promise<void> {
  return new Promise((ok, fail) => {
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      fail(new Error(`no change within ${ms} ms (lastError: ${source.lastError})`));
    }, ms);
    source.onChange(() => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      ok();
    });
  });
}

/** Polls `cond` every 10 ms for at most `ms`. */
async function until(cond: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return cond();
}

let sharedCa: CaMaterial | undefined;
async function ca(): Promise<CaMaterial> {
  sharedCa ??= await createRootCa({ trustDomain: 'cluster.local', now: () => NOW - 3600_000 });
  return sharedCa;
}

t.test('issuing identity: first certificate, renewal at 70 %, rotations, onChange', async (t) => {
  const time = new FakeTime();
  const authority = await ca();
  const extra = (await createRootCa({ trustDomain: 'cluster.local', now: () => NOW - 1000 })).certPem;
  const errors: Error[] = [];
  const id = createIssuingIdentity({
    caCertPem: authority.certPem,
    caKeyPem: authority.keyPem,
    trustBundlePem: `${extra}${authority.certPem}`,
    spiffe: ID,
    ttlMs: 3600_000,
    clock: time.clock,
    setTimer: time.setTimer,
    clearTimer: time.clearTimer,
    onError: (e) => errors.push(e),
  });
  t.teardown(() => id.close());
  t.equal(id.current(), null, 'nothing until the first issuance finishes');
  let changes = 0;
  id.onChange(() => changes++);
  await nextChange(id);
  const first = id.current();
  t.ok(first);
  t.equal(first?.spiffe.uri, ID.uri);
  t.equal(first?.notAfter.getTime(), NOW + 3600_000);
  t.equal(id.rotations, 0, 'the first certificate is not a rotation');
  t.equal(changes, 1);
  t.equal(id.lastError, null);
  t.same(time.delays(), [0.7 * 3600_000], 'renewal due at 70 % of the lifetime');
  t.equal(id.nextRenewalAt, NOW + 0.7 * 3600_000);
  const bundle = splitPemCertificates(id.trustBundlePem());
  t.equal(bundle.length, 2, 'CA + extra anchor, the duplicate CA once');
  t.equal(new X509Certificate(bundle[0]!).fingerprint256, authority.cert.fingerprint256, 'CA first');
  const leaf = new X509Certificate(first!.certChainPem);
  t.ok(leaf.verify(authority.cert.publicKey));

  time.advance(0.7 * 3600_000 - 1);
  t.equal(id.rotations, 0, 'not yet');
  const renewed = nextChange(id);
  time.advance(1);
  await renewed;
  const second = id.current();
  t.not(second, first, 'a new certificate object');
  t.not(second?.certChainPem, first?.certChainPem);
  t.not(second?.keyPem, first?.keyPem, 'a new key each time');
  t.equal(second?.notAfter.getTime(), time.now + 3600_000);
  t.equal(id.rotations, 1);
  t.equal(changes, 2);
  t.same(time.delays(), [0.7 * 3600_000]);
  t.same(errors, []);
});

t.test('issuing identity: failures retry with back-off, success resets it', async (t) => {
  const time = new FakeTime();
  const authority = await ca();
  let failing = true;
  const errors: string[] = [];
  const id = createIssuingIdentity({
    caCertPem: authority.certPem,
    caKeyPem: authority.keyPem,
    spiffe: ID,
    clock: time.clock,
    setTimer: time.setTimer,
    clearTimer: time.clearTimer,
    // The serial number's random bytes are the one input a test can break without mocking crypto.
    random: (n) => {
      if (failing) throw new Error('no entropy');
      return Buffer.alloc(n, 7);
    },
    onError: (e) => errors.push(e.message),
  });
  t.teardown(() => id.close());
  t.ok(await until(() => errors.length === 1));
  t.match(
    id.lastError,
    /issuing a certificate for spiffe:\/\/cluster.local\/ns\/default\/sa\/reviews failed: no entropy/,
  );
  t.equal(id.current(), null);
  t.same(time.delays(), [RETRY_MIN_MS]);
  time.advance(RETRY_MIN_MS);
  t.ok(await until(() => errors.length === 2));
  t.same(time.delays(), [RETRY_MIN_MS * 2], 'doubles');
  for (let i = 0; i < 10; i++) {
    const before = errors.length;
    time.advance(time.delays()[0]!);
    t.ok(await until(() => errors.length === before + 1));
  }
  t.same(time.delays(), [RETRY_MAX_MS], 'capped');
  failing = false;
  const ok = nextChange(id);
  time.advance(RETRY_MAX_MS);
  await ok;
  t.equal(id.lastError, null);
  t.ok(id.current());
  t.equal(id.rotations, 0);
  // 70 % of what is left from the issuing moment (X.509 rounds notAfter down to the second).
  const lifetime = id.current()!.notAfter.getTime() - time.now;
  t.ok(lifetime > 24 * 3600_000 - 1000 && lifetime <= 24 * 3600_000, 'default ttl 24 h');
  t.same(time.delays(), [Math.floor(lifetime * 0.7)]);

  // A failed renewal keeps the current certificate and starts the back-off from its minimum again.
  failing = true;
  const cert = id.current();
  time.advance(time.delays()[0]!);
  t.ok(await until(() => errors.length === 13));
  t.equal(id.current(), cert, 'still served');
  t.same(time.delays(), [RETRY_MIN_MS]);
  // Expired without renewal: no certificate rather than a dead one.
  failing = false;
  id.close();
  t.same(time.delays(), [], 'close clears the timer');
  time.now = cert!.notAfter.getTime();
  t.equal(id.current(), null);
  t.equal(id.nextRenewalAt, null);
});

t.test('issuing identity: refresh delay bounds', async (t) => {
  const authority = await ca();
  for (const [ttlMs, want] of [
    [30 * 24 * 3600_000, MAX_REFRESH_MS],
    [1000, MIN_REFRESH_MS],
  ] as const) {
    const time = new FakeTime();
    const id = createIssuingIdentity({
      caCertPem: authority.certPem,
      caKeyPem: authority.keyPem,
      spiffe: ID,
      ttlMs,
      clock: time.clock,
      setTimer: time.setTimer,
      clearTimer: time.clearTimer,
    });
    await nextChange(id);
    t.same(time.delays(), [want], `ttl ${ttlMs}`);
    id.close();
  }
});

t.test('issuing identity: closed while issuing, listener errors, bad CA', async (t) => {
  const time = new FakeTime();
  const authority = await ca();
  const errors: string[] = [];
  const opts = {
    caCertPem: authority.certPem,
    caKeyPem: authority.keyPem,
    spiffe: ID,
    clock: time.clock,
    setTimer: time.setTimer,
    clearTimer: time.clearTimer,
    onError: (e: Error) => errors.push(e.message),
  };
  const closedEarly = createIssuingIdentity(opts);
  closedEarly.close();
  const other = createIssuingIdentity(opts);
  let second = 0;
  other.onChange(() => {
    throw new Error('listener bug');
  });
  other.onChange(() => second++);
  t.ok(await until(() => second === 1), 'a throwing listener does not stop the next');
  t.same(errors, ['listener bug']);
  t.equal(closedEarly.current(), null, 'the result of an issuance after close is dropped');
  t.equal(time.pending.size, 1, 'only the live source scheduled a renewal');
  other.close();

  const leaf = await issueWorkloadCertificate(authority, ID, { now: () => NOW });
  t.throws(
    () => createIssuingIdentity({ ...opts, caCertPem: leaf.certChainPem, caKeyPem: leaf.keyPem }),
    /not a CA/,
  );
});

// ---------------------------------------------------------------------------------------------
// Files

interface Written {
  readonly certFile: string;
  readonly keyFile: string;
  readonly trustBundleFile: string;
}

async function writeIdentity(
  dir: string,
  sa: string,
  opts: { ttlMs?: number; now?: number } = {},
): Promise<Written> {
  const authority = await ca();
  const w = await issueWorkloadCertificate(authority, spiffeId('cluster.local', 'default', sa), {
    ...(opts.ttlMs !== undefined && { ttlMs: opts.ttlMs }),
    now: () => opts.now ?? NOW,
  });
  mkdirSync(dir, { recursive: true });
  const files = {
    certFile: join(dir, 'cert.pem'),
    keyFile: join(dir, 'key.pem'),
    trustBundleFile: join(dir, 'ca.pem'),
  };
  writeFileSync(files.certFile, w.certChainPem);
  writeFileSync(files.keyFile, w.keyPem);
  writeFileSync(files.trustBundleFile, authority.certPem);
  return files;
}

const FAST = { debounceMs: 20, pollMs: 50 };

t.test('file identity: loads at once, reloads on change, counts rotations', async (t) => {
  const dir = tmp(t);
  const files = await writeIdentity(dir, 'one');
  const errors: string[] = [];
  const id = createFileIdentity({
    ...files,
    ...FAST,
    clock: () => NOW,
    onError: (e) => errors.push(e.message),
  });
  t.teardown(() => id.close());
  t.equal(id.current()?.spiffe.serviceAccount, 'one', 'synchronous first load');
  t.equal(id.lastError, null);
  t.equal(id.rotations, 0);
  t.equal(splitPemCertificates(id.trustBundlePem()).length, 1);

  const changed = nextChange(id);
  await writeIdentity(dir, 'two');
  await changed;
  t.equal(id.current()?.spiffe.serviceAccount, 'two');
  t.equal(id.rotations, 1);
  t.same(errors, []);

  // A bundle-only change (a second anchor) keeps the certificate object, fires onChange, no rotation.
  const cert = id.current();
  const bundleChanged = nextChange(id);
  const anchor = (await createRootCa({ trustDomain: 'cluster.local', now: () => NOW - 1000 })).certPem;
  writeFileSync(files.trustBundleFile, `${readFileSync(files.trustBundleFile, 'utf8')}${anchor}`);
  await bundleChanged;
  t.equal(id.current(), cert, 'same certificate object');
  t.equal(splitPemCertificates(id.trustBundlePem()).length, 2, 'several roots');
  t.equal(id.rotations, 1);
});

t.test('file identity: a bad update is reported naming the file, the old material kept', async (t) => {
  const dir = tmp(t);
  const files = await writeIdentity(dir, 'good');
  const errors: string[] = [];
  const id = createFileIdentity({
    ...files,
    ...FAST,
    clock: () => NOW,
    onError: (e) => errors.push(e.message),
  });
  t.teardown(() => id.close());
  const good = id.current();

  // New certificate, old key (a writer that replaces the files one by one, caught half-way).
  const other = await issueWorkloadCertificate(await ca(), spiffeId('cluster.local', 'default', 'next'), {
    now: () => NOW,
  });
  writeFileSync(files.certFile, other.certChainPem);
  t.ok(await until(() => id.lastError !== null), 'error seen');
  t.equal(
    id.lastError,
    `${files.keyFile} and ${files.certFile}: the private key does not match the certificate`,
  );
  t.equal(errors.at(-1), id.lastError, 'onError too');
  t.equal(id.current(), good, 'previous certificate kept');
  // The key arrives: recovered.
  const recovered = nextChange(id);
  writeFileSync(files.keyFile, other.keyPem);
  await recovered;
  t.equal(id.lastError, null);
  t.equal(id.current()?.spiffe.serviceAccount, 'next');
  t.equal(id.rotations, 1);

  const current = id.current();
  writeFileSync(files.trustBundleFile, 'not pem');
  t.ok(await until(() => id.lastError !== null));
  t.equal(id.lastError, `${files.trustBundleFile}: no PEM certificate in the trust bundle`);
  writeFileSync(files.trustBundleFile, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
  t.ok(await until(() => /a certificate of the trust bundle is invalid/.test(id.lastError ?? '')));
  t.match(id.lastError, files.trustBundleFile);
  rmSync(files.keyFile);
  t.ok(await until(() => /cannot read key/.test(id.lastError ?? '')));
  t.equal(id.lastError, `cannot read key ${files.keyFile}: ENOENT`);
  t.equal(id.current(), current, 'still the last good certificate');
});

t.test('file identity: missing at start, expired, not watched', async (t) => {
  const dir = tmp(t);
  const files = {
    certFile: join(dir, 'cert.pem'),
    keyFile: join(dir, 'key.pem'),
    trustBundleFile: join(dir, 'ca.pem'),
  };
  const id = createFileIdentity({ ...files, ...FAST, clock: () => NOW });
  t.teardown(() => id.close());
  t.equal(id.current(), null);
  t.equal(id.trustBundlePem(), '');
  t.equal(id.lastError, `cannot read certificate ${files.certFile}: ENOENT`);
  const loaded = nextChange(id);
  await writeIdentity(dir, 'late');
  await loaded;
  t.equal(id.current()?.spiffe.serviceAccount, 'late', 'picked up once written');
  t.equal(id.rotations, 0, 'the first certificate is not a rotation');

  // Expired on disk: refused with the date.
  const old = tmp(t);
  const oldFiles = await writeIdentity(old, 'old', { now: NOW - 7200_000, ttlMs: 3600_000 });
  const expired = createFileIdentity({ ...oldFiles, watch: false, clock: () => NOW });
  t.equal(expired.current(), null);
  t.equal(expired.lastError, `${oldFiles.certFile}: the certificate expired at 2030-01-15T11:00:00.000Z`);
  expired.close();

  // Loaded while valid, then expires in memory: no certificate, and lastError says why.
  let now = NOW;
  const live = tmp(t);
  const liveFiles = await writeIdentity(live, 'short', { now: NOW, ttlMs: 600_000 });
  const ageing = createFileIdentity({ ...liveFiles, watch: false, clock: () => now });
  t.ok(ageing.current());
  t.equal(ageing.lastError, null);
  now = NOW + 600_000;
  t.equal(ageing.current(), null);
  t.equal(ageing.lastError, `${liveFiles.certFile}: the certificate expired at 2030-01-15T12:10:00.000Z`);

  // watch: false never reloads.
  let changed = false;
  ageing.onChange(() => {
    changed = true;
  });
  await writeIdentity(live, 'other', { now: NOW });
  await new Promise((r) => setTimeout(r, 200));
  t.notOk(changed);
  ageing.close();
});

t.test('file identity: Kubernetes Secret volume swap (..data symlink renamed)', async (t) => {
  const dir = tmp(t);
  const v1 = join(dir, '..2030_01_15_12_00_00.1');
  await writeIdentity(v1, 'v1');
  symlinkSync('..2030_01_15_12_00_00.1', join(dir, '..data'));
  for (const f of ['cert.pem', 'key.pem', 'ca.pem']) symlinkSync(join('..data', f), join(dir, f));
  const files = {
    certFile: join(dir, 'cert.pem'),
    keyFile: join(dir, 'key.pem'),
    trustBundleFile: join(dir, 'ca.pem'),
  };
  // A slow poll: the directory watch must be what notices the swap.
  const id = createFileIdentity({ ...files, debounceMs: 20, pollMs: 60_000, clock: () => NOW });
  t.teardown(() => id.close());
  t.equal(id.current()?.spiffe.serviceAccount, 'v1');
  const swapped = nextChange(id);
  const v2 = join(dir, '..2030_01_15_13_00_00.2');
  await writeIdentity(v2, 'v2');
  symlinkSync('..2030_01_15_13_00_00.2', join(dir, '..data_tmp'));
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
  rmSync(v1, { recursive: true });
  await swapped;
  t.equal(id.current()?.spiffe.serviceAccount, 'v2');
  t.equal(id.rotations, 1);
  t.equal(id.lastError, null);
});

t.test('file identity: close stops watching', async (t) => {
  const dir = tmp(t);
  const files = await writeIdentity(dir, 'a');
  const id = createFileIdentity({ ...files, ...FAST, clock: () => NOW });
  let changes = 0;
  id.onChange(() => changes++);
  id.close();
  await writeIdentity(dir, 'b');
  await new Promise((r) => setTimeout(r, 200));
  t.equal(changes, 0);
  t.equal(id.current()?.spiffe.serviceAccount, 'a');
});

t.test('loadCaFiles: errors name the file', async (t) => {
  const dir = tmp(t);
  const authority = await createRootCa({ trustDomain: 'cluster.local' });
  const other = await createRootCa({ trustDomain: 'cluster.local' });
  const certFile = join(dir, 'ca.crt');
  const keyFile = join(dir, 'ca.key');
  t.throws(() => loadCaFiles(certFile, keyFile), {
    message: `cannot read CA certificate ${certFile}: ENOENT`,
  });
  writeFileSync(certFile, authority.certPem);
  t.throws(() => loadCaFiles(certFile, keyFile), { message: `cannot read CA key ${keyFile}: ENOENT` });
  writeFileSync(keyFile, other.keyPem);
  t.throws(() => loadCaFiles(certFile, keyFile), {
    message: `${keyFile} and ${certFile}: the private key does not match the CA certificate`,
  });
  writeFileSync(keyFile, 'garbage');
  t.throws(() => loadCaFiles(certFile, keyFile), {
    message: new RegExp(`^${keyFile}: not a PEM private key`),
  });
  const leaf = await issueWorkloadCertificate(authority, ID);
  writeFileSync(certFile, leaf.certChainPem);
  t.throws(() => loadCaFiles(certFile, keyFile), {
    message: new RegExp(`^${certFile}: certificate .* is not a CA`),
  });
  writeFileSync(certFile, authority.certPem);
  writeFileSync(keyFile, authority.keyPem);
  const loaded = loadCaFiles(certFile, keyFile);
  t.equal(loaded.trustDomain, 'cluster.local');
  t.equal(loadCaFiles(certFile, keyFile, 'other.td').trustDomain, 'other.td');
});

t.test('writeOutputFiles: 0600 keys, never overwrites without force', async (t) => {
  const dir = join(tmp(t), 'out');
  const files = [
    { name: 'k.pem', data: 'secret', secret: true },
    { name: 'c.pem', data: 'public', secret: false },
  ];
  t.same(writeOutputFiles(dir, files, false), [join(dir, 'k.pem'), join(dir, 'c.pem')]);
  t.equal(statSync(join(dir, 'k.pem')).mode & 0o777, 0o600);
  t.equal(statSync(join(dir, 'c.pem')).mode & 0o777, 0o644);
  writeFileSync(join(dir, 'k.pem'), 'kept');
  rmSync(join(dir, 'c.pem'));
  t.throws(() => writeOutputFiles(dir, files, false), {
    message: `${join(dir, 'k.pem')} already exists; pass --force to replace`,
  });
  t.equal(readFileSync(join(dir, 'k.pem'), 'utf8'), 'kept', 'untouched');
  t.throws(() => statSync(join(dir, 'c.pem')), 'nothing written when refusing');
  chmodSync(join(dir, 'k.pem'), 0o644);
  writeOutputFiles(dir, files, true);
  t.equal(readFileSync(join(dir, 'k.pem'), 'utf8'), 'secret');
  t.equal(statSync(join(dir, 'k.pem')).mode & 0o777, 0o600, 'a replaced key is 0600 again');
  // An unwritable place is reported with the path.
  const blocker = join(dir, 'file');
  writeFileSync(blocker, '');
  t.throws(() => writeOutputFiles(join(blocker, 'sub'), files, true), /ENOTDIR|EEXIST/);
});
