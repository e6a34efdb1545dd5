/**
 * Watches the configuration file or folder and calls `onChange` (debounced) when it may have
 * changed. Robust to:
 * - in-place writes;
 * - editors that write a temporary file and rename it over the original (the watched inode goes
 *   away, so the *directory* is watched, not the file);
 * - Kubernetes ConfigMap volumes, which update by atomically swapping the `..data` symlink
 *   (`cfg.yaml -> ..data/cfg.yaml`, `..data -> ..2026_xx`): the swap is a rename inside the
 *   watched directory.
 * As a fallback (fs.watch can miss events, e.g. on some network or overlay file systems, or when
 * the file is a symlink into another directory), the real path, inode, size and mtime of the
 * target are polled about once a second; that costs a few stat calls.
 */
import { type FSWatcher, readdirSync, realpathSync, statSync, watch } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

export interface WatchOptions {
  /** Quiet time before `onChange` is called (default 200 ms). */
  readonly debounceMs?: number;
  /** Polling period of the fallback check (default 1000 ms). */
  readonly pollMs?: number;
}

export interface ConfigWatcher {
  close(): void;
}

const CONFIG_NAME = /\.ya?ml$/i;

function fileSignature(path: string): string {
  const st = statSync(path);
  return `${realpathSync(path)}|${st.ino}|${st.size}|${st.mtimeMs}`;
}

/** A string that changes whenever the configuration that `loadConfig` would read changes. */
function signature(target: string): string {
  try {
    const st = statSync(target);
    if (!st.isDirectory()) return fileSignature(target);
    const parts: string[] = [];
    for (const name of readdirSync(target).sort()) {
      if (name.startsWith('.') || !CONFIG_NAME.test(name)) continue;
      try {
        parts.push(`${name}=${fileSignature(join(target, name))}`);
      } catch (err) {
        parts.push(`${name}=${(err as NodeJS.ErrnoException).code ?? 'error'}`);
      }
    }
    return parts.join('\n');
  } catch (err) {
    return `unreadable:${(err as NodeJS.ErrnoException).code ?? 'error'}`;
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

export function watchConfig(path: string, onChange: () => void, opts: WatchOptions = {}): ConfigWatcher {
  const target = resolve(path);
  const debounceMs = opts.debounceMs ?? 200;
  const pollMs = opts.pollMs ?? 1000;
  const folderMode = isDirectory(target);
  const watchDir = folderMode ? target : dirname(target);
  const fileName = basename(target);

  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let last = signature(target);
  let watcher: FSWatcher | undefined;

  const fire = (): void => {
    timer = undefined;
    if (closed) return;
    last = signature(target);
    onChange();
  };

  const schedule = (): void => {
    if (closed) return;
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(fire, debounceMs);
  };

  const relevant = (name: string | null): boolean => {
    if (name === null) return true;
    // `..data` and the timestamped `..2026_…` folders of a ConfigMap volume.
    if (name.startsWith('..')) return true;
    return folderMode ? CONFIG_NAME.test(name) && !name.startsWith('.') : name === fileName;
  };

  const startWatcher = (): void => {
    if (closed || watcher !== undefined) return;
    try {
      const w = watch(watchDir, { persistent: true }, (_event, name) => {
        if (relevant(typeof name === 'string' ? name : null)) schedule();
      });
      w.on('error', () => {
        // The directory went away (or the watch broke): fall back to polling, retry later.
        w.close();
        if (watcher === w) watcher = undefined;
        schedule();
      });
      watcher = w;
    } catch {
      watcher = undefined;
    }
  };

  startWatcher();

  const poll = setInterval(() => {
    if (closed) return;
    if (watcher === undefined) startWatcher();
    const now = signature(target);
    if (now !== last) {
      last = now;
      schedule();
    }
  }, pollMs);
  poll.unref();

  return {
    close(): void {
      closed = true;
      if (timer !== undefined) clearTimeout(timer);
      clearInterval(poll);
      watcher?.close();
      watcher = undefined;
    },
  };
}
