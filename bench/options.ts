/**
 * The command-line flags the side benches (`bench:resilience`, `bench:mtls`) share: --rounds,
 * --duration, --connections, --engine, --only, --markdown, --meshlet-cli and --help, plus each
 * bench's own integer flags.
 */
import { resolve } from 'node:path';
import { type ParseArgsConfig, parseArgs } from 'node:util';

/** An integer flag of one bench: its default (as typed on the command line) and its minimum. */
export interface IntFlag {
  readonly flag: string;
  readonly default: string;
  readonly min: number;
}

export interface SideBenchSpec<E extends string, K extends string> {
  /** Default of --duration, in seconds. */
  readonly duration: string;
  /** The engines --engine takes (the first is the default) and the message for any other. */
  readonly engines: readonly [E, ...E[]];
  readonly badEngine: (engine: string) => string;
  /** The measurements --only takes (all of them by default). */
  readonly measurements: readonly string[];
  /** The bench's own integer flags, by the option field they fill. */
  readonly ints: Readonly<Record<K, IntFlag>>;
  /** A check across the integer flags, run before --engine's: a message when they do not fit. */
  readonly check?: (n: Readonly<Record<K, number>>) => string | undefined;
}

export type SideBenchOptions<E extends string, K extends string> = {
  readonly rounds: number;
  readonly durationSec: number;
  readonly connections: number;
  readonly engine: E;
  readonly only: ReadonlySet<string>;
  readonly markdown: string | undefined;
  readonly meshletCli: string;
} & { readonly [k in K]: number };

/** The parsed options, '' for --help, or the message of the first bad flag. */
export function parseSideBenchOptions<E extends string, K extends string>(
  argv: string[],
  spec: SideBenchSpec<E, K>,
): SideBenchOptions<E, K> | string {
  const own = Object.values<IntFlag>(spec.ints);
  const options: ParseArgsConfig['options'] = {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: spec.duration },
    connections: { type: 'string', default: '50' },
    engine: { type: 'string', default: spec.engines[0] },
    ...Object.fromEntries(own.map((f) => [f.flag, { type: 'string', default: f.default } as const])),
    only: { type: 'string', default: spec.measurements.join(',') },
    markdown: { type: 'string' },
    'meshlet-cli': { type: 'string', default: 'dist/src/cli.js' },
    help: { type: 'boolean', default: false },
  };
  const values = parseArgs({ args: argv, options }).values as Record<string, string | boolean | undefined>;
  if (values['help'] === true) return '';
  const text = (flag: string): string => String(values[flag]);
  const int = (flag: string, min: number): number | string => {
    const n = Number(text(flag));
    return Number.isInteger(n) && n >= min ? n : `--${flag} must be an integer ≥ ${min}, not ${text(flag)}`;
  };
  const fields: Record<string, number | string> = {
    rounds: int('rounds', 1),
    durationSec: int('duration', 1),
    connections: int('connections', 1),
  };
  for (const [key, f] of Object.entries<IntFlag>(spec.ints)) fields[key] = int(f.flag, f.min);
  for (const v of Object.values(fields)) if (typeof v === 'string') return v;
  const mismatch = spec.check?.(fields as Record<K, number>);
  if (mismatch !== undefined) return mismatch;
  const engine = text('engine');
  if (!(spec.engines as readonly string[]).includes(engine)) return spec.badEngine(engine);
  const only = new Set(
    text('only')
      .split(',')
      .map((s) => s.trim()),
  );
  for (const o of only)
    if (!spec.measurements.includes(o)) return `--only takes ${spec.measurements.join(', ')}; not ${o}`;
  return {
    ...(fields as Record<string, number>),
    engine: engine as E,
    only,
    markdown: values['markdown'] as string | undefined,
    meshletCli: resolve(text('meshlet-cli')),
  } as unknown as SideBenchOptions<E, K>;
}

/**
 * Removes `--name <value>` (or `--name=value`) from `argv`, for a bench's string flag that the shared
 * parser does not know. `value` is undefined when the flag is absent; an error when it has no value.
 */
export function takeStringFlag(
  argv: readonly string[],
  name: string,
): { readonly value: string | undefined; readonly rest: string[] } | string {
  const flag = `--${name}`;
  const rest: string[] = [];
  let value: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a.startsWith(`${flag}=`)) value = a.slice(flag.length + 1);
    else if (a === flag) {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) return `${flag} needs a value`;
      value = next;
      i++;
    } else rest.push(a);
  }
  if (value === '') return `${flag} needs a value`;
  return { value, rest };
}
