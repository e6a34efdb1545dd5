/**
 * What the side benches (`bench:resilience`, `bench:mtls`) do around their measurements: pick the
 * CPUs, clean up their processes however they end, and print (and optionally save) the tables.
 */
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { capture, type Processes, parseCpuList } from './procs.ts';
import { findExecutable, type Pinning } from './proxies.ts';

/** The first two CPUs this process may run on (load, proxy); undefined without taskset or two CPUs. */
export async function detectPinning(): Promise<Pinning | undefined> {
  if (findExecutable('taskset') === undefined) return undefined;
  const affinity = (await capture('taskset', ['-pc', String(process.pid)])) ?? '';
  const list = parseCpuList(affinity.split(':').at(-1) ?? '');
  const allowed = list.length > 0 ? list : [...Array(availableParallelism()).keys()];
  const [loadCpu, proxyCpu] = allowed;
  return loadCpu === undefined || proxyCpu === undefined ? undefined : { loadCpu, proxyCpu };
}

/** Stops every process of `procs` when this process exits, also on SIGINT, SIGTERM and SIGHUP. */
export function cleanUpOnExit(procs: Processes): void {
  process.on('exit', () => procs.cleanupSync());
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      procs.cleanupSync();
      process.exit(130);
    });
  }
}

/** Prints the sections (tables) after a blank line and, with `markdown`, writes them there too. */
export function printSections(
  sections: readonly (readonly string[])[],
  markdown: string | undefined,
  out: (line?: string) => void,
): void {
  const text = sections.map((s) => s.join('\n')).join('\n\n');
  out('');
  out(text);
  if (markdown !== undefined) {
    writeFileSync(markdown, `${text}\n`);
    out(`\nwrote ${markdown}`);
  }
}

/**
 * The parsed options, or the exit code once `usage` is printed: 0 for --help ('' from the parser),
 * 2 after the message of a bad flag.
 */
export function optionsOrUsage<T>(bench: string, parsed: T | string, usage: string): T | number {
  if (typeof parsed !== 'string') return parsed;
  if (parsed !== '') process.stderr.write(`${bench}: ${parsed}\n\n`);
  process.stderr.write(usage);
  return parsed === '' ? 0 : 2;
}

/** Runs `main` and exits with its code, or with 1 after printing what it threw. */
export function runMain(bench: string, main: () => Promise<number>): void {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`${bench}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
