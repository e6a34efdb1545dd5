/**
 * StringMatch (`{exact|prefix|regex}`, spec §0.3) parsing.
 */
import { compileRe2 } from './re2.ts';
import type { StringMatch } from './resource-types.ts';
import type { View } from './yaml-view.ts';

export interface StringMatchOptions {
  /** `prefix: ""` is accepted (only for `uri`). */
  readonly allowEmptyPrefix?: boolean;
  /** `{}` and the legacy `regex: "*"` mean "present" (headers, withoutHeaders, queryParams). */
  readonly allowPresent?: boolean;
}

const KEYS = ['exact', 'prefix', 'regex'] as const;

/** Parses one StringMatch; reports problems and returns undefined when invalid. */
export function parseStringMatch(view: View, opts: StringMatchOptions = {}): StringMatch | undefined {
  if (!view.present) {
    if (opts.allowPresent === true && view.typeName() === 'null') return { kind: 'present' };
    return undefined;
  }
  const m = view.map();
  if (m === undefined) return undefined;
  m.checkFields(KEYS);
  const present = KEYS.filter((k) => m.has(k));
  if (present.length === 0) {
    if (opts.allowPresent === true) return { kind: 'present' };
    m.error('exactly one of exact, prefix or regex is required');
    return undefined;
  }
  if (present.length > 1) {
    m.get(present[1] ?? '').error(
      `exactly one of exact, prefix or regex is allowed, got ${present.join(', ')}`,
    );
    return undefined;
  }
  const key = present[0] ?? 'exact';
  const field = m.get(key);
  const value = field.string();
  if (value === undefined) return undefined;
  switch (key) {
    case 'exact':
      return { kind: 'exact', value };
    case 'prefix':
      if (value === '' && opts.allowEmptyPrefix !== true) {
        field.error('empty prefix is only allowed for uri');
        return undefined;
      }
      return { kind: 'prefix', value };
    case 'regex': {
      if (value === '*' && opts.allowPresent === true) return { kind: 'present' };
      const r = compileRe2(value);
      if (!r.ok) {
        field.error(r.message);
        return undefined;
      }
      return { kind: 'regex', source: value, re: r.re };
    }
  }
}

/**
 * Parses a `map<name, StringMatch>` (headers, withoutHeaders, queryParams).
 * `lowercaseKeys` for header names.
 */
export function parseStringMatchMap(
  view: View,
  lowercaseKeys: boolean,
): Record<string, StringMatch> | undefined {
  if (!view.present) return undefined;
  const m = view.map();
  if (m === undefined) return undefined;
  const out: Record<string, StringMatch> = {};
  for (const { key, value } of m.entries()) {
    if (key === '') {
      value.error('name must not be empty');
      continue;
    }
    const sm = parseStringMatch(value, { allowPresent: true });
    if (sm !== undefined) out[lowercaseKeys ? key.toLowerCase() : key] = sm;
  }
  return out;
}
