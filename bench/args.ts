/** Command-line flags of `npm run bench`. */
import { parseArgs } from 'node:util';
import { TARGET_NAMES, type TargetName } from './proxies.ts';

export interface BenchOptions {
  readonly durationSec: number;
  readonly rounds: number;
  readonly connections: number;
  readonly warmupSec: number;
  readonly targets: readonly TargetName[];
  readonly json: string | undefined;
  readonly markdown: string | undefined;
  readonly meshletCli: string | undefined;
}

export const USAGE = `usage: npm run bench -- [options]

  --duration <s>       seconds per wrk round (default 5)
  --rounds <n>         rounds per target, alternating across targets (default 3)
  --connections <n>    keep-alive connections (default 50)
  --warmup <s>         warm-up seconds per target before its first round (default 1; 0 = none)
  --targets <list>     comma-separated, in run order (default ${TARGET_NAMES.join(',')})
  --json <file>        also write the results as JSON
  --markdown <file>    also write the results as Markdown (for bench/RESULTS.md)
  --meshlet-cli <path> meshlet entry point (default dist/src/cli.js in the current directory)
  -h, --help           this text
`;

export type ParsedArgs =
  | { readonly ok: true; readonly options: BenchOptions }
  | { readonly ok: false; readonly message: string };

function int(
  name: string,
  raw: string | undefined,
  fallback: number,
  min: number,
  max: number,
): number | string {
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw)) return `--${name} must be a whole number, got "${raw}"`;
  const n = Number(raw);
  if (n < min || n > max) return `--${name} must be between ${min} and ${max}, got ${n}`;
  return n;
}

/** Parse argv (without node and the script). `message` is empty when help was asked for. */
export function parseBenchArgs(argv: readonly string[]): ParsedArgs {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        duration: { type: 'string' },
        rounds: { type: 'string' },
        connections: { type: 'string' },
        warmup: { type: 'string' },
        targets: { type: 'string' },
        json: { type: 'string' },
        markdown: { type: 'string' },
        'meshlet-cli': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    return { ok: false, message: err instanceof Error ? err.message : String(err) };
  }
  if (values['help'] === true) return { ok: false, message: '' };
  const str = (k: string): string | undefined => {
    const v = values[k];
    return typeof v === 'string' ? v : undefined;
  };
  const durationSec = int('duration', str('duration'), 5, 1, 600);
  const rounds = int('rounds', str('rounds'), 3, 1, 50);
  const connections = int('connections', str('connections'), 50, 1, 10_000);
  const warmupSec = int('warmup', str('warmup'), 1, 0, 60);
  for (const v of [durationSec, rounds, connections, warmupSec]) {
    if (typeof v === 'string') return { ok: false, message: v };
  }
  const targets: TargetName[] = [];
  for (const raw of (str('targets') ?? TARGET_NAMES.join(',')).split(',')) {
    const name = raw.trim();
    if (name === '') continue;
    const known = TARGET_NAMES.find((t) => t === name);
    if (known === undefined) {
      return { ok: false, message: `unknown target "${name}" (known: ${TARGET_NAMES.join(', ')})` };
    }
    if (!targets.includes(known)) targets.push(known);
  }
  if (targets.length === 0) return { ok: false, message: '--targets is empty' };
  return {
    ok: true,
    options: {
      durationSec: Number(durationSec),
      rounds: Number(rounds),
      connections: Number(connections),
      warmupSec: Number(warmupSec),
      targets,
      json: str('json'),
      markdown: str('markdown'),
      meshletCli: str('meshlet-cli'),
    },
  };
}
