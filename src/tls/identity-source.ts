/**
 * Where a workload's certificate comes from (`IdentitySource`, identity-types.ts):
 *
 * - `createIssuingIdentity`: the proxy holds the CA and issues its own short-lived certificate in
 *   memory (the private key is never written anywhere), renewed at 70 % of its lifetime like
 *   Linkerd's proxy, retried with back-off when issuing fails;
 * - `createFileIdentity`: certificate, key and trust bundle written by someone else (cert-manager,
 *   SPIRE, `meshlet ca issue`), watched and reloaded; a bad update is reported and the previous
 *   material kept.
 *
 * Both answer `current() === null` once their certificate has expired: peers would refuse it anyway,
 * and `/ready` should say so.
 */
import { X509Certificate } from 'node:crypto';
import {
  existsSync,
  type FSWatcher,
  mkdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  watch,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { IdentitySource, SpiffeId, WorkloadCertificate } from './identity-types.ts';
import {
  type CaMaterial,
  caFromPem,
  DEFAULT_CERT_TTL_MS,
  issueWorkloadCertificate,
  type KeyType,
  PemError,
  splitPemCertificates,
  workloadCertificateFromPem,
} from './pki.ts';

/** Timer functions, injectable so that tests drive renewals without waiting. */
export type SetTimer = (fn: () => void, ms: number) => unknown;
export type ClearTimer = (handle: unknown) => void;

const defaultSetTimer: SetTimer = (fn, ms) => setTimeout(fn, ms).unref();
const defaultClearTimer: ClearTimer = (h) => clearTimeout(h as NodeJS.Timeout);

/** Renew at this fraction of a certificate's lifetime. */
export const RENEW_AT = 0.7;
/** Renewal delay bounds: at least 1 s (a nearly expired CA must not make a busy loop), at most 24 h. */
export const MIN_REFRESH_MS = 1000;
export const MAX_REFRESH_MS = 24 * 3600_000;
/** Retry back-off after a failed issuance: 0.5 s doubling up to 30 s. */
export const RETRY_MIN_MS = 500;
export const RETRY_MAX_MS = 30_000;

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The certificates of several PEM texts, each once, in order. */
function joinBundles(...texts: string[]): string {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const text of texts) {
    for (const block of splitPemCertificates(text)) {
      const norm = block.replace(/\s+/g, '');
      if (seen.has(norm)) continue;
      seen.add(norm);
      out.push(block);
    }
  }
  return out.join('');
}

/** Listener bookkeeping shared by both sources; a throwing listener does not stop the others. */
class Listeners {
  private readonly list: Array<() => void> = [];
  private readonly onError: (err: Error) => void;
  constructor(onError: (err: Error) => void) {
    this.onError = onError;
  }
  add(fn: () => void): void {
    this.list.push(fn);
  }
  fire(): void {
    for (const fn of this.list) {
      try {
        fn();
      } catch (err) {
        this.onError(err instanceof Error ? err : new Error(String(err)));
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// File layouts (`meshlet ca init` / `meshlet ca issue`) and CA files

/** What `meshlet ca init` writes. */
export const CA_FILES = { cert: 'ca.crt', key: 'ca.key' } as const;
/** What `meshlet ca issue` writes: the layout an `identity: {kind: files}` reads. */
export const WORKLOAD_FILES = { cert: 'cert.pem', key: 'key.pem', bundle: 'ca.pem' } as const;

export interface OutputFile {
  readonly name: string;
  readonly data: string;
  /** Private keys: mode 0600, created exclusively. */
  readonly secret: boolean;
}

/**
 * Writes files into `dir` (created if needed). Without `force`, refuses (before writing anything)
 * when one of them exists, so a CA key is never overwritten by mistake. With `force` the old file
 * is removed first, so that a recreated key gets mode 0600 even if the old file was readable.
 * Returns the paths written.
 */
export function writeOutputFiles(dir: string, files: readonly OutputFile[], force: boolean): string[] {
  const paths = files.map((f) => join(dir, f.name));
  if (!force) {
    const existing = paths.filter((p) => existsSync(p));
    if (existing.length > 0) {
      throw new Error(
        `${existing.join(', ')} already exist${existing.length === 1 ? 's' : ''}; pass --force to replace`,
      );
    }
  }
  mkdirSync(dir, { recursive: true });
  files.forEach((f, i) => {
    const path = paths[i]!;
    if (force) rmSync(path, { force: true });
    try {
      writeFileSync(path, f.data, { mode: f.secret ? 0o600 : 0o644, flag: 'wx' });
    } catch (err) {
      throw new Error(`cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? message(err)}`);
    }
  });
  return paths;
}

/**
 * Reads a CA (certificate and key files, as `meshlet ca init` writes them). Errors name the file:
 * unreadable, not PEM, not a CA, expired, or a key that does not belong to the certificate.
 */
export function loadCaFiles(certFile: string, keyFile: string, trustDomain?: string): CaMaterial {
  const certPem = readNamed(certFile, 'CA certificate');
  const keyPem = readNamed(keyFile, 'CA key');
  try {
    return caFromPem(certPem, keyPem, trustDomain);
  } catch (err) {
    throw new Error(describePemError(err, { certificate: certFile, key: keyFile }));
  }
}

function readNamed(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(`cannot read ${what} ${file}: ${code ?? message(err)}`);
  }
}

function describePemError(err: unknown, files: { certificate: string; key: string }): string {
  if (err instanceof PemError) {
    if (err.subject === 'certificate') return `${files.certificate}: ${err.message}`;
    if (err.subject === 'key') return `${files.key}: ${err.message}`;
    return `${files.key} and ${files.certificate}: ${err.message}`;
  }
  return `${files.certificate}: ${message(err)}`;
}

// ---------------------------------------------------------------------------------------------
// Issuing identity

export interface IssuingIdentityOptions {
  readonly caCertPem: string;
  readonly caKeyPem: string;
  /** Extra trust anchors besides the CA (anchor rotation), PEM. */
  readonly trustBundlePem?: string;
  readonly spiffe: SpiffeId;
  /** Certificate lifetime (default 24 h). */
  readonly ttlMs?: number;
  readonly keyType?: KeyType;
  /** Milliseconds since the epoch (default Date.now). */
  readonly clock?: () => number;
  readonly setTimer?: SetTimer;
  readonly clearTimer?: ClearTimer;
  /** Random bytes for serial numbers (default crypto.randomBytes). */
  readonly random?: (size: number) => Buffer;
  /** Issuing failures (each attempt) and listener errors. */
  readonly onError?: (err: Error) => void;
}

export interface IssuingIdentity extends IdentitySource {
  /** When the next renewal (or retry) is due, ms since the epoch; null when none is scheduled. */
  readonly nextRenewalAt: number | null;
}

/**
 * Issues a certificate at once (asynchronously) and renews it at 70 % of its lifetime. Throws at
 * creation when the CA itself is unusable (not a CA, key mismatch, expired): that is a
 * configuration error, not something a retry fixes.
 */
export function createIssuingIdentity(o: IssuingIdentityOptions): IssuingIdentity {
  const clock = o.clock ?? Date.now;
  const setTimer = o.setTimer ?? defaultSetTimer;
  const clearTimer = o.clearTimer ?? defaultClearTimer;
  const onError = o.onError ?? ((): void => {});
  const ttlMs = o.ttlMs ?? DEFAULT_CERT_TTL_MS;
  const ca = caFromPem(o.caCertPem, o.caKeyPem, o.spiffe.trustDomain, clock());
  const bundle = joinBundles(ca.certPem, o.trustBundlePem ?? '');
  const listeners = new Listeners(onError);

  let cert: WorkloadCertificate | null = null;
  let rotations = 0;
  let lastError: string | null = null;
  let closed = false;
  let timer: unknown;
  let nextAt: number | null = null;
  let retryMs = RETRY_MIN_MS;

  const schedule = (delay: number): void => {
    nextAt = clock() + delay;
    timer = setTimer(() => {
      timer = undefined;
      nextAt = null;
      void issue();
    }, delay);
  };

  const issue = async (): Promise<void> => {
    const issuedAt = clock();
    let next: WorkloadCertificate;
    try {
      next = await issueWorkloadCertificate(ca, o.spiffe, {
        ttlMs,
        now: () => issuedAt,
        ...(o.keyType !== undefined && { keyType: o.keyType }),
        ...(o.random !== undefined && { random: o.random }),
      });
    } catch (err) {
      if (closed) return;
      lastError = `issuing a certificate for ${o.spiffe.uri} failed: ${message(err)}`;
      onError(new Error(lastError));
      schedule(retryMs);
      retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
      return;
    }
    if (closed) return;
    if (cert !== null) rotations++;
    cert = next;
    lastError = null;
    retryMs = RETRY_MIN_MS;
    // 70 % of the lifetime as issued (notBefore is back-dated for clock skew, so measure from now).
    const lifetime = next.notAfter.getTime() - issuedAt;
    schedule(Math.min(MAX_REFRESH_MS, Math.max(MIN_REFRESH_MS, Math.floor(lifetime * RENEW_AT))));
    listeners.fire();
  };

  void issue();

  return {
    current(): WorkloadCertificate | null {
      return cert !== null && cert.notAfter.getTime() > clock() ? cert : null;
    },
    trustBundlePem: () => bundle,
    onChange(fn: () => void): void {
      listeners.add(fn);
    },
    get rotations(): number {
      return rotations;
    },
    get lastError(): string | null {
      return lastError;
    },
    get nextRenewalAt(): number | null {
      return nextAt;
    },
    close(): void {
      closed = true;
      if (timer !== undefined) clearTimer(timer);
      timer = undefined;
      nextAt = null;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// File identity

export interface FileIdentityOptions {
  readonly certFile: string;
  readonly keyFile: string;
  readonly trustBundleFile: string;
  /** Watch the files and reload on change (default true). */
  readonly watch?: boolean;
  /** Quiet time after a change before reloading (default 200 ms). */
  readonly debounceMs?: number;
  /** Period of the fallback check of the files' identity (default 1000 ms). */
  readonly pollMs?: number;
  readonly clock?: () => number;
  /** Load and reload failures, and listener errors. */
  readonly onError?: (err: Error) => void;
}

interface FileMaterial {
  readonly cert: WorkloadCertificate;
  readonly bundle: string;
}

/** Reads and checks the three files; throws an Error naming the file at fault. */
function readMaterial(o: FileIdentityOptions, now: number): FileMaterial {
  const chain = readNamed(o.certFile, 'certificate');
  const key = readNamed(o.keyFile, 'key');
  const bundleText = readNamed(o.trustBundleFile, 'trust bundle');
  let cert: WorkloadCertificate;
  try {
    cert = workloadCertificateFromPem(chain, key, now);
  } catch (err) {
    throw new Error(describePemError(err, { certificate: o.certFile, key: o.keyFile }));
  }
  const bundle = joinBundles(bundleText);
  if (bundle === '') throw new Error(`${o.trustBundleFile}: no PEM certificate in the trust bundle`);
  for (const block of splitPemCertificates(bundle)) {
    try {
      // Parsing is enough to catch truncated or corrupt anchors before TLS does, with a file name.
      new X509Certificate(block);
    } catch (err) {
      throw new Error(`${o.trustBundleFile}: a certificate of the trust bundle is invalid (${message(err)})`);
    }
  }
  return { cert, bundle };
}

/** Identity of what `readFileSync(path)` would read: follows symlinks (Kubernetes `..data` swaps). */
function fileSignature(path: string): string {
  try {
    const st = statSync(path);
    return `${realpathSync(path)}|${st.ino}|${st.size}|${st.mtimeMs}`;
  } catch (err) {
    return `unreadable:${(err as NodeJS.ErrnoException).code ?? 'error'}`;
  }
}

/**
 * Reads the files now (synchronously: a proxy starting with files knows at once whether it has an
 * identity) and, with `watch`, reloads when they change. Watching follows the approach of the
 * configuration watcher (src/config/watch-config.ts): the *directories* are watched, because
 * editors and Kubernetes Secret volumes replace files by renaming (`cert.pem -> ..data/cert.pem`,
 * with `..data` swapped atomically to a new timestamped folder); events are debounced, and a poll
 * of each file's real path, inode, size and mtime catches what fs.watch misses.
 */
export function createFileIdentity(o: FileIdentityOptions): IdentitySource {
  const clock = o.clock ?? Date.now;
  const onError = o.onError ?? ((): void => {});
  const debounceMs = o.debounceMs ?? 200;
  const pollMs = o.pollMs ?? 1000;
  const files = [o.certFile, o.keyFile, o.trustBundleFile].map((f) => resolve(f));
  const listeners = new Listeners(onError);

  let material: FileMaterial | null = null;
  let rotations = 0;
  let lastError: string | null = null;
  let closed = false;

  const signatures = (): string => files.map(fileSignature).join('\n');
  let lastSignature = signatures();

  const load = (): void => {
    let next: FileMaterial;
    try {
      next = readMaterial(o, clock());
    } catch (err) {
      lastError = message(err);
      onError(new Error(lastError));
      return;
    }
    lastError = null;
    const prev = material;
    const certChanged =
      prev === null ||
      prev.cert.certChainPem !== next.cert.certChainPem ||
      prev.cert.keyPem !== next.cert.keyPem;
    const bundleChanged = prev === null || prev.bundle !== next.bundle;
    if (!certChanged && !bundleChanged) return;
    if (prev !== null && certChanged) rotations++;
    // Keep the previous certificate object when only the bundle changed: caches keyed on it
    // (secure contexts) then rebuild only for the bundle.
    material = certChanged || prev === null ? next : { cert: prev.cert, bundle: next.bundle };
    listeners.fire();
  };

  load();

  const watchers: FSWatcher[] = [];
  let debounce: NodeJS.Timeout | undefined;
  let poll: NodeJS.Timeout | undefined;

  if (o.watch !== false) {
    const reload = (): void => {
      debounce = undefined;
      if (closed) return;
      lastSignature = signatures();
      load();
    };
    const schedule = (): void => {
      if (closed) return;
      if (debounce !== undefined) clearTimeout(debounce);
      debounce = setTimeout(reload, debounceMs);
      debounce.unref();
    };
    const dirs = new Map<string, Set<string>>();
    for (const f of files) {
      const names = dirs.get(dirname(f)) ?? new Set<string>();
      names.add(basename(f));
      dirs.set(dirname(f), names);
    }
    for (const [dir, names] of dirs) {
      try {
        const w = watch(dir, { persistent: false }, (_event, name) => {
          const n = typeof name === 'string' ? name : null;
          // `..data` and the timestamped `..2026_…` folders of a Secret volume, or one of our files.
          if (n === null || n.startsWith('..') || names.has(n)) schedule();
        });
        w.on('error', () => {
          // The directory went away or the watch broke: the poll below still sees changes.
          w.close();
        });
        watchers.push(w);
      } catch {
        // No watch on this directory (missing, or not supported): the poll covers it.
      }
    }
    poll = setInterval(() => {
      if (closed) return;
      const now = signatures();
      if (now !== lastSignature) {
        lastSignature = now;
        schedule();
      }
    }, pollMs);
    poll.unref();
  }

  return {
    current(): WorkloadCertificate | null {
      const cert = material?.cert ?? null;
      return cert !== null && cert.notAfter.getTime() > clock() ? cert : null;
    },
    trustBundlePem: () => material?.bundle ?? '',
    onChange(fn: () => void): void {
      listeners.add(fn);
    },
    get rotations(): number {
      return rotations;
    },
    get lastError(): string | null {
      if (lastError === null && material !== null && material.cert.notAfter.getTime() <= clock()) {
        return `${o.certFile}: the certificate expired at ${material.cert.notAfter.toISOString()}`;
      }
      return lastError;
    },
    close(): void {
      closed = true;
      if (debounce !== undefined) clearTimeout(debounce);
      if (poll !== undefined) clearInterval(poll);
      for (const w of watchers) w.close();
      watchers.length = 0;
    },
  };
}
