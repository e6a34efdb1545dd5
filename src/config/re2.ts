/**
 * RE2 → JavaScript RegExp translator (spec §0.3).
 *
 * Istio regexes are RE2 and always match the whole input. JS RegExp differs in syntax and
 * semantics, so the pattern is tokenized and re-emitted for a JS RegExp with the `u` flag:
 * - the result is anchored as `^(?:…)$` (full match) unless `anchor: false` is asked for;
 * - leading flag groups `(?i)`, `(?s)`, `(?m)`, `(?is)`… become JS flags;
 * - `(?P<name>…)` → `(?<name>…)`; `\A` → start of text, `\z` → end of text;
 * - `.` → `[^\n]` (RE2 excludes only `\n`), `\s` → RE2's ASCII set `[\t\n\f\r ]`;
 * - POSIX classes `[[:alpha:]]`, Unicode classes `\pL`, `\p{Greek}`, `\Q…\E` literals, octal and
 *   `\x{…}` escapes are translated;
 * - what RE2 does not have is rejected with a clear message: backreferences (`\1`), lookaround
 *   (`(?=`, `(?!`, `(?<=`, `(?<!`), atomic groups (`(?>`), possessive quantifiers (`*+`), `\Z`;
 * - patterns longer than 1024 characters and empty patterns are rejected.
 */

export type Re2Result =
  | { readonly ok: true; readonly re: RegExp }
  | { readonly ok: false; readonly message: string };

export interface Re2Options {
  /** Wrap as a full match (default true). */
  readonly anchor?: boolean;
  /** Extra JS flags, e.g. `g` for replace-all. */
  readonly extraFlags?: string;
}

export const RE2_MAX_LENGTH = 1024;

class Re2Error extends Error {}

const POSIX: Readonly<Record<string, string>> = {
  alnum: '0-9A-Za-z',
  alpha: 'A-Za-z',
  ascii: '\\x00-\\x7F',
  blank: '\\t ',
  cntrl: '\\x00-\\x1F\\x7F',
  digit: '0-9',
  graph: '!-~',
  lower: 'a-z',
  print: ' -~',
  punct: '!-\\/:-@\\[-`{-~',
  space: '\\t\\n\\v\\f\\r ',
  upper: 'A-Z',
  word: '0-9A-Za-z_',
  xdigit: '0-9A-Fa-f',
};

const SYNTAX = new Set('^$\\.*+?()[]{}|/'.split(''));

/** Emits one literal code point so that it is valid in a JS `u` pattern, in or out of a class. */
function lit(ch: string, inClass = false): string {
  if (SYNTAX.has(ch) || (inClass && ch === '-')) return `\\${ch}`;
  const cp = ch.codePointAt(0) ?? 0;
  if (cp < 0x20 || cp === 0x7f) return `\\x${cp.toString(16).padStart(2, '0')}`;
  return ch;
}

function unicodeClass(name: string, negated: boolean): string {
  let n = name;
  let neg = negated;
  if (n.startsWith('^')) {
    neg = !neg;
    n = n.slice(1);
  }
  if (n === 'Any') return neg ? '[^\\s\\S]' : '[\\s\\S]';
  if (!/^[A-Za-z_]+$/.test(n)) throw new Re2Error(`invalid Unicode class name "${name}"`);
  const body = /^[A-Z][a-z]?$/.test(n) ? n : `Script=${n}`;
  return `\\${neg ? 'P' : 'p'}{${body}}`;
}

interface Flags {
  i: boolean;
  s: boolean;
  m: boolean;
}

class Translator {
  private pos = 0;
  private readonly chars: string[];
  private readonly flags: Flags;
  constructor(src: string, flags: Flags) {
    this.chars = Array.from(src);
    this.flags = flags;
  }

  private peek(offset = 0): string | undefined {
    return this.chars[this.pos + offset];
  }

  private fail(msg: string): never {
    throw new Re2Error(msg);
  }

  /** Reads an escape after the backslash; `inClass` changes the output form. */
  private escape(inClass: boolean): string {
    const c = this.chars[this.pos++];
    if (c === undefined) this.fail('trailing backslash at end of pattern');
    switch (c) {
      case 'a':
        return '\\x07';
      case 'f':
        return '\\f';
      case 't':
        return '\\t';
      case 'n':
        return '\\n';
      case 'r':
        return '\\r';
      case 'v':
        return '\\v';
      case 'd':
      case 'D':
      case 'w':
      case 'W':
        return `\\${c}`;
      case 's':
        return inClass ? '\\t\\n\\f\\r ' : '[\\t\\n\\f\\r ]';
      case 'S':
        return inClass ? '\\S' : '[^\\t\\n\\f\\r ]';
      case 'b':
      case 'B':
        if (inClass) this.fail(`\\${c} is not allowed inside a character class`);
        return `\\${c}`;
      case 'A':
        if (inClass) this.fail('\\A is not allowed inside a character class');
        return this.flags.m ? '(?<![\\s\\S])' : '^';
      case 'z':
        if (inClass) this.fail('\\z is not allowed inside a character class');
        return this.flags.m ? '(?![\\s\\S])' : '$';
      case 'Z':
        return this.fail('\\Z is not supported by RE2 (use \\z)');
      case 'C':
        return this.fail('\\C (any byte) is not supported');
      case 'Q': {
        let out = '';
        while (this.pos < this.chars.length) {
          if (this.peek() === '\\' && this.peek(1) === 'E') {
            this.pos += 2;
            return out;
          }
          out += lit(this.chars[this.pos++] ?? '', inClass);
        }
        return out;
      }
      case 'E':
        return '';
      case 'x': {
        if (this.peek() === '{') {
          const end = this.chars.indexOf('}', this.pos);
          if (end < 0) this.fail('unterminated \\x{...} escape');
          const hex = this.chars.slice(this.pos + 1, end).join('');
          if (!/^[0-9A-Fa-f]{1,6}$/.test(hex) || Number.parseInt(hex, 16) > 0x10ffff) {
            this.fail(`invalid escape \\x{${hex}}`);
          }
          this.pos = end + 1;
          return `\\u{${hex}}`;
        }
        const hex = `${this.peek() ?? ''}${this.peek(1) ?? ''}`;
        if (!/^[0-9A-Fa-f]{2}$/.test(hex)) this.fail('invalid \\x escape (need two hex digits or \\x{...})');
        this.pos += 2;
        return `\\x${hex}`;
      }
      case 'p':
      case 'P': {
        let name: string;
        if (this.peek() === '{') {
          const end = this.chars.indexOf('}', this.pos);
          if (end < 0) this.fail('unterminated \\p{...} class');
          name = this.chars.slice(this.pos + 1, end).join('');
          this.pos = end + 1;
        } else {
          name = this.chars[this.pos++] ?? '';
        }
        return unicodeClass(name, c === 'P');
      }
      case '0': {
        let oct = '';
        while (oct.length < 2 && /[0-7]/.test(this.peek() ?? '')) oct += this.chars[this.pos++];
        return `\\x${Number.parseInt(oct === '' ? '0' : oct, 8)
          .toString(16)
          .padStart(2, '0')}`;
      }
      default:
        break;
    }
    if (/[1-9]/.test(c)) {
      return this.fail(`backreference \\${c} is not supported (RE2 has no backreferences)`);
    }
    if (/[!-/:-@[-`{-~]/.test(c)) return lit(c, inClass);
    return this.fail(`invalid escape sequence \\${c}`);
  }

  private charClass(): string {
    // `[` already consumed.
    let out = '[';
    if (this.peek() === '^') {
      out += '^';
      this.pos++;
    }
    let first = true;
    for (;;) {
      const c = this.peek();
      if (c === undefined) this.fail('missing closing ] in character class');
      if (c === ']' && !first) {
        this.pos++;
        break;
      }
      first = false;
      if (c === '[' && this.peek(1) === ':') {
        const rest = this.chars.slice(this.pos).join('');
        const m = /^\[:(\^?)([a-z]+):\]/.exec(rest);
        if (m) {
          const set = POSIX[m[2] ?? ''];
          if (set === undefined) this.fail(`invalid POSIX class [:${m[2]}:]`);
          if (m[1] === '^') this.fail(`negated POSIX class [:^${m[2]}:] is not supported`);
          out += set;
          this.pos += m[0].length;
          continue;
        }
      }
      if (c === '\\') {
        this.pos++;
        out += this.escape(true);
        continue;
      }
      this.pos++;
      // `-` between two class items is a range; first or last it is a literal.
      if (c === '-' && !out.endsWith('[') && !out.endsWith('[^') && this.peek() !== ']') out += '-';
      else out += lit(c, true);
    }
    if (out === '[' || out === '[^') this.fail('empty character class');
    return `${out}]`;
  }

  private group(): string {
    // `(` already consumed.
    if (this.peek() !== '?') return '(';
    const rest = this.chars.slice(this.pos, this.pos + 4).join('');
    if (rest.startsWith('?:')) {
      this.pos += 2;
      return '(?:';
    }
    if (
      rest.startsWith('?P<') ||
      (rest.startsWith('?<') && !rest.startsWith('?<=') && !rest.startsWith('?<!'))
    ) {
      this.pos += rest.startsWith('?P<') ? 3 : 2;
      let name = '';
      while (this.peek() !== undefined && this.peek() !== '>') name += this.chars[this.pos++];
      if (this.peek() !== '>') this.fail('unterminated group name');
      this.pos++;
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) this.fail(`invalid group name "${name}"`);
      return `(?<${name}>`;
    }
    if (rest.startsWith('?=') || rest.startsWith('?!') || rest.startsWith('?<=') || rest.startsWith('?<!')) {
      const kind = rest.startsWith('?<') ? 'lookbehind' : 'lookahead';
      return this.fail(
        `${kind} (${`(${rest.slice(0, rest.startsWith('?<') ? 3 : 2)}`}) is not supported by RE2`,
      );
    }
    if (rest.startsWith('?>')) return this.fail('atomic groups (?>...) are not supported by RE2');
    if (rest.startsWith('?#')) return this.fail('comments (?#...) are not supported by RE2');
    return this.fail(
      'inline flags are only supported at the start of the pattern, e.g. (?i)abc; (?flags:...) groups are not supported',
    );
  }

  private quantifierFollows(): boolean {
    const c = this.peek();
    if (c === '*' || c === '+' || c === '?') return true;
    if (c === '{') return this.repeatAt(this.pos) !== null;
    return false;
  }

  /** Parses `{n}`, `{n,}`, `{n,m}` at the current position without consuming; null if literal. */
  private repeatAt(at: number): { text: string; len: number } | null {
    const rest = this.chars.slice(at, at + 16).join('');
    const m = /^\{(\d+)(,(\d*))?\}/.exec(rest);
    if (!m) return null;
    const min = Number(m[1]);
    const max = m[3] === undefined || m[3] === '' ? min : Number(m[3]);
    if (min > 1000 || max > 1000) this.fail('bad repetition: counts above 1000 are not allowed');
    if (m[2] !== undefined && m[3] !== '' && max < min) this.fail(`bad repetition range ${m[0]}`);
    return { text: m[0], len: m[0].length };
  }

  translate(): string {
    let out = '';
    let canRepeat = false;
    while (this.pos < this.chars.length) {
      const c = this.chars[this.pos++] ?? '';
      switch (c) {
        case '\\': {
          const e = this.escape(false);
          out += e;
          canRepeat = e !== '' && e !== '^' && e !== '$' && !e.startsWith('(?') && !/^\\[bB]$/.test(e);
          break;
        }
        case '[':
          out += this.charClass();
          canRepeat = true;
          break;
        case '(':
          out += this.group();
          canRepeat = false;
          break;
        case ')':
          out += ')';
          canRepeat = true;
          break;
        case '|':
          out += '|';
          canRepeat = false;
          break;
        case '.':
          out += this.flags.s ? '[\\s\\S]' : '[^\\n]';
          canRepeat = true;
          break;
        case '^':
          out += this.flags.m ? '(?:^)' : '^';
          canRepeat = false;
          break;
        case '$':
          out += this.flags.m ? '(?:$)' : '$';
          canRepeat = false;
          break;
        case '*':
        case '+':
        case '?':
        case '{': {
          let q: string = c;
          if (c === '{') {
            const r = this.repeatAt(this.pos - 1);
            if (r === null) {
              // RE2 treats a `{` that does not start a repetition as a literal.
              out += '\\{';
              canRepeat = true;
              break;
            }
            q = r.text;
            this.pos += r.len - 1;
          }
          if (!canRepeat) this.fail(`missing argument to repetition operator ${q}`);
          if (this.peek() === '?') {
            q += '?';
            this.pos++;
          } else if (this.peek() === '+') {
            this.fail(`possessive quantifier ${q}+ is not supported by RE2`);
          }
          if (this.quantifierFollows()) this.fail(`bad repetition operator ${q}${this.peek() ?? ''}`);
          out += q;
          canRepeat = false;
          break;
        }
        case '}':
          out += '\\}';
          canRepeat = true;
          break;
        default:
          out += lit(c);
          canRepeat = true;
      }
    }
    return out;
  }
}

/** Compiles an RE2 pattern to a JS RegExp. Never throws. */
export function compileRe2(src: string, options: Re2Options = {}): Re2Result {
  if (src === '') return { ok: false, message: 'empty regex' };
  if (src.length > RE2_MAX_LENGTH) {
    return { ok: false, message: `regex is longer than ${RE2_MAX_LENGTH} characters (${src.length})` };
  }
  const flags: Flags = { i: false, s: false, m: false };
  let body = src;
  for (;;) {
    const m = /^\(\?([a-zA-Z]+)\)/.exec(body);
    if (!m) break;
    for (const f of m[1] ?? '') {
      if (f === 'i' || f === 's' || f === 'm') flags[f] = true;
      else if (f === 'U') return { ok: false, message: 'the (?U) ungreedy flag is not supported' };
      else return { ok: false, message: `unknown flag "${f}" in (?${m[1]})` };
    }
    body = body.slice(m[0].length);
  }
  let translated: string;
  try {
    translated = new Translator(body, flags).translate();
  } catch (err) {
    if (err instanceof Re2Error) return { ok: false, message: `invalid regex: ${err.message}` };
    throw err;
  }
  const anchor = options.anchor ?? true;
  let source = translated;
  if (anchor) {
    source = flags.m ? `(?<![\\s\\S])(?:${translated})(?![\\s\\S])` : `^(?:${translated})$`;
  }
  const jsFlags = `u${flags.i ? 'i' : ''}${flags.s ? 's' : ''}${flags.m ? 'm' : ''}${options.extraFlags ?? ''}`;
  try {
    return { ok: true, re: new RegExp(source, jsFlags) };
  } catch (err) {
    return { ok: false, message: `invalid regex: ${(err as Error).message}` };
  }
}
