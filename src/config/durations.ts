/**
 * Go `time.ParseDuration` syntax, as Istio uses for every Duration field: a sequence of decimal
 * numbers, each with an optional fraction and a unit (`ns`, `us`/`µs`/`μs`, `ms`, `s`, `m`, `h`),
 * optionally signed, e.g. `1h`, `1m30s`, `500ms`, `1.5s`, `10us`. A bare `0` is allowed.
 */

export type DurationResult =
  | { readonly ok: true; readonly ms: number }
  | { readonly ok: false; readonly message: string };

const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const PART = /^(\d*)(?:\.(\d*))?([a-zµμ]+)/;

/** Parses a Go duration string into milliseconds (may be fractional, may be negative). */
export function parseDuration(text: string): DurationResult {
  const bad = (why: string): DurationResult => ({
    ok: false,
    message: `invalid duration "${text}": ${why} (use Go syntax such as 1h, 1m30s, 500ms, 1.5s)`,
  });
  let s = text.trim();
  if (s === '') return bad('empty');
  let sign = 1;
  if (s[0] === '-' || s[0] === '+') {
    if (s[0] === '-') sign = -1;
    s = s.slice(1);
  }
  if (s === '0') return { ok: true, ms: 0 };
  if (s === '') return bad('no number');
  let total = 0;
  while (s !== '') {
    const m = PART.exec(s);
    if (!m) return bad(/^[\d.]+$/.test(s) ? 'missing unit' : 'unexpected characters');
    const whole = m[1] ?? '';
    const frac = m[2];
    const unit = m[3] ?? '';
    if (whole === '' && (frac === undefined || frac === '')) return bad('missing number');
    const factor = UNIT_MS[unit];
    if (factor === undefined) return bad(`unknown unit "${unit}"`);
    const value = Number(`${whole === '' ? '0' : whole}.${frac ?? '0'}`);
    total += value * factor;
    s = s.slice(m[0].length);
  }
  if (!Number.isFinite(total)) return bad('out of range');
  return { ok: true, ms: sign * total };
}
