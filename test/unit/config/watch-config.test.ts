import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { watchConfig } from '../../../src/config/watch-config.ts';

const TIMEOUT_MS = 5000;

async function tempDir(t: Tap): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-watch-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}
type Tap = { teardown(fn: () => unknown): void };

const settle = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Starts a watcher and returns a function that waits (bounded) for the next onChange. */
function watchFor(t: Tap, path: string): { next(): Promise<boolean>; count(): number } {
  let fired = 0;
  let waiter: (() => void) | undefined;
  const w = watchConfig(
    path,
    () => {
      fired++;
      waiter?.();
    },
    { debounceMs: 50 },
  );
  t.teardown(() => w.close());
  return {
    count: () => fired,
    next: () => {
      const before = fired;
      return new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), TIMEOUT_MS);
        waiter = () => {
          if (fired > before) {
            clearTimeout(timer);
            resolve(true);
          }
        };
      });
    },
  };
}

t.test('in-place write of a watched file', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'mesh.yaml');
  await writeFile(file, 'a: 1\n');
  const w = watchFor(t, file);
  await settle(100);
  const p = w.next();
  await writeFile(file, 'a: 2\n');
  t.ok(await p, 'onChange fired');
});

t.test('editor-style replace via rename', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'mesh.yaml');
  await writeFile(file, 'a: 1\n');
  const w = watchFor(t, file);
  await settle(100);
  const p = w.next();
  await writeFile(join(dir, '.mesh.yaml.swp'), 'a: 2\n');
  await rename(join(dir, '.mesh.yaml.swp'), file);
  t.ok(await p, 'onChange fired after the rename');
  // And it keeps working on the new inode.
  const p2 = w.next();
  await writeFile(file, 'a: 3\n');
  t.ok(await p2, 'onChange fired again after a later write');
});

t.test('ConfigMap-style ..data symlink swap (file path and folder path)', async (t) => {
  for (const mode of ['file', 'folder'] as const) {
    const dir = await tempDir(t);
    await mkdir(join(dir, '..2026_a'));
    await writeFile(join(dir, '..2026_a', 'cfg.yaml'), 'a: 1\n');
    await symlink('..2026_a', join(dir, '..data'));
    await symlink('..data/cfg.yaml', join(dir, 'cfg.yaml'));
    const w = watchFor(t, mode === 'file' ? join(dir, 'cfg.yaml') : dir);
    await settle(100);
    const p = w.next();
    await mkdir(join(dir, '..2026_b'));
    await writeFile(join(dir, '..2026_b', 'cfg.yaml'), 'a: 2\n');
    await symlink('..2026_b', join(dir, '..data_tmp'));
    await rename(join(dir, '..data_tmp'), join(dir, '..data'));
    await rm(join(dir, '..2026_a'), { recursive: true });
    t.ok(await p, `onChange fired (${mode})`);
  }
});

t.test('a new file in a watched folder; changes are debounced', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'a.yaml'), 'a: 1\n');
  const w = watchFor(t, dir);
  await settle(100);
  const p = w.next();
  await writeFile(join(dir, 'b.yaml'), 'b: 1\n');
  await writeFile(join(dir, 'b.yaml'), 'b: 2\n');
  await writeFile(join(dir, 'a.yaml'), 'a: 2\n');
  t.ok(await p);
  await settle(300);
  t.equal(w.count(), 1, 'a burst of writes gives one onChange');
});

t.test('the poll fallback sees a change of the symlink target outside the folder', async (t) => {
  const dir = await tempDir(t);
  const other = await tempDir(t);
  await writeFile(join(other, 'real.yaml'), 'a: 1\n');
  await symlink(join(other, 'real.yaml'), join(dir, 'mesh.yaml'));
  const w = watchFor(t, join(dir, 'mesh.yaml'));
  await settle(100);
  const p = w.next();
  await writeFile(join(other, 'real.yaml'), 'a: 22\n');
  t.ok(await p, 'onChange fired (by polling, within ~1 s)');
});

t.test('close stops notifications', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'mesh.yaml');
  await writeFile(file, 'a: 1\n');
  let fired = 0;
  const w = watchConfig(file, () => fired++, { debounceMs: 20 });
  w.close();
  await writeFile(file, 'a: 2\n');
  await settle(200);
  t.equal(fired, 0);
});
