/**
 * A typed, position-aware view over the YAML AST of one document.
 *
 * Validators read fields through `View`/`MapView`; every accessor checks the type and, on a
 * mismatch, records a `ConfigIssue` at the offending node's `file:line:col` with the field path
 * (`spec.http[0].match[1].uri.regex`) and returns `undefined`, so validation goes on and every
 * problem of a file is collected.
 */
import { isAlias, isMap, isPair, isScalar, isSeq, type LineCounter, type Node, type YAMLMap } from 'yaml';
import { parseDuration } from './durations.ts';
import type { ConfigIssue, SourcePos } from './resource-types.ts';

type Severity = ConfigIssue['severity'];

/** Issue sink plus position mapping for one document. */
export class DocContext {
  readonly file: string;
  readonly lineCounter: LineCounter;
  readonly issues: ConfigIssue[];
  /** `Kind namespace/name`, or `document N` before the kind is known. */
  label: string;
  private readonly resolveAlias: (node: Node) => Node | undefined;

  constructor(
    file: string,
    lineCounter: LineCounter,
    issues: ConfigIssue[],
    label: string,
    resolveAlias: (node: Node) => Node | undefined,
  ) {
    this.file = file;
    this.lineCounter = lineCounter;
    this.issues = issues;
    this.label = label;
    this.resolveAlias = resolveAlias;
  }

  posAt(offset: number): SourcePos {
    const { line, col } = this.lineCounter.linePos(offset);
    return { file: this.file, line, col };
  }

  report(severity: Severity, offset: number, path: string, message: string): void {
    const full = path === '' ? this.label : `${this.label}: ${path}`;
    this.issues.push({ severity, pos: this.posAt(offset), path: full, message });
  }

  deref(node: Node): Node | undefined {
    return isAlias(node) ? this.resolveAlias(node) : node;
  }
}

function childKeyPath(path: string, key: string): string {
  const seg = /^[A-Za-z_$@][\w$@-]*$/.test(key) ? key : JSON.stringify(key);
  if (path === '') return seg.startsWith('"') ? `[${seg}]` : seg;
  return seg.startsWith('"') ? `${path}[${seg}]` : `${path}.${seg}`;
}

export type TypeName = 'map' | 'list' | 'string' | 'number' | 'boolean' | 'null' | 'missing';

export interface NumberRange {
  readonly min?: number;
  readonly max?: number;
}

/** One value in the document (possibly missing). */
export class View {
  readonly ctx: DocContext;
  /** Undefined when the field is absent. */
  readonly node: Node | undefined;
  readonly path: string;
  /** Offset used for messages when the node is missing (the parent's start). */
  private readonly fallbackOffset: number;

  constructor(ctx: DocContext, node: Node | null | undefined, path: string, fallbackOffset: number) {
    this.ctx = ctx;
    this.node = node == null ? undefined : ctx.deref(node);
    this.path = path;
    this.fallbackOffset = fallbackOffset;
  }

  get offset(): number {
    return this.node?.range?.[0] ?? this.fallbackOffset;
  }

  pos(): SourcePos {
    return this.ctx.posAt(this.offset);
  }

  /** Absent, or an explicit `null`/`~`/empty value (proto JSON treats null as unset). */
  get present(): boolean {
    return this.typeName() !== 'missing' && this.typeName() !== 'null';
  }

  typeName(): TypeName {
    const n = this.node;
    if (n === undefined) return 'missing';
    if (isMap(n)) return 'map';
    if (isSeq(n)) return 'list';
    if (isScalar(n)) {
      const v = n.value;
      if (v === null || v === undefined) return 'null';
      if (typeof v === 'string') return 'string';
      if (typeof v === 'number' || typeof v === 'bigint') return 'number';
      if (typeof v === 'boolean') return 'boolean';
    }
    return 'string';
  }

  error(message: string): void {
    this.ctx.report('error', this.offset, this.path, message);
  }

  warn(message: string): void {
    this.ctx.report('warning', this.offset, this.path, message);
  }

  private wrongType(expected: string): undefined {
    this.error(`expected ${expected}, got ${this.typeName()}`);
    return undefined;
  }

  private scalarValue(): unknown {
    const n = this.node;
    return n !== undefined && isScalar(n) ? n.value : undefined;
  }

  /** Error when absent. Returns whether present. */
  require(what = 'field'): boolean {
    if (this.present) return true;
    this.error(`${what} is required`);
    return false;
  }

  string(): string | undefined {
    if (!this.present) return undefined;
    if (this.typeName() !== 'string') return this.wrongType('string');
    return String(this.scalarValue());
  }

  bool(): boolean | undefined {
    if (!this.present) return undefined;
    if (this.typeName() !== 'boolean') return this.wrongType('boolean (true or false)');
    return this.scalarValue() === true;
  }

  number(range: NumberRange = {}): number | undefined {
    if (!this.present) return undefined;
    if (this.typeName() !== 'number') return this.wrongType('number');
    const v = Number(this.scalarValue());
    return this.checkRange(v, range);
  }

  int(range: NumberRange = {}): number | undefined {
    if (!this.present) return undefined;
    if (this.typeName() !== 'number') return this.wrongType('integer');
    const v = Number(this.scalarValue());
    if (!Number.isInteger(v)) {
      this.error(`expected integer, got ${v}`);
      return undefined;
    }
    return this.checkRange(v, range);
  }

  port(allowZero = false): number | undefined {
    const p = this.int();
    if (p === undefined) return undefined;
    if (p < (allowZero ? 0 : 1) || p > 65535) {
      this.error(`port number ${p} is out of range (${allowZero ? 0 : 1}-65535)`);
      return undefined;
    }
    return p;
  }

  private checkRange(v: number, range: NumberRange): number | undefined {
    if (!Number.isFinite(v)) {
      this.error(`expected a finite number, got ${v}`);
      return undefined;
    }
    if (range.min !== undefined && v < range.min) {
      this.error(`value ${v} is below the minimum ${range.min}`);
      return undefined;
    }
    if (range.max !== undefined && v > range.max) {
      this.error(`value ${v} is above the maximum ${range.max}`);
      return undefined;
    }
    return v;
  }

  /** One of the given string values (case-sensitive, as protobuf enums are). */
  enumOf<const T extends string>(values: readonly T[]): T | undefined {
    const s = this.string();
    if (s === undefined) return undefined;
    const found = values.find((v) => v === s);
    if (found === undefined) {
      this.error(`invalid value "${s}"; expected one of ${values.join(', ')}`);
      return undefined;
    }
    return found;
  }

  /**
   * A Go duration string converted to milliseconds. `minMs` (e.g. 1 for "MUST be >=1ms")
   * rejects smaller values; `allowZero` accepts exactly 0 even with `minMs`.
   */
  duration(opts: { readonly minMs?: number; readonly allowZero?: boolean } = {}): number | undefined {
    if (!this.present) return undefined;
    if (this.typeName() !== 'string') return this.wrongType('duration string such as "5s"');
    const r = parseDuration(String(this.scalarValue()));
    if (!r.ok) {
      this.error(r.message);
      return undefined;
    }
    if (r.ms < 0) {
      this.error(`duration must not be negative`);
      return undefined;
    }
    if (opts.allowZero === true && r.ms === 0) return 0;
    if (opts.minMs !== undefined && r.ms < opts.minMs) {
      this.error(`duration must be at least ${opts.minMs}ms`);
      return undefined;
    }
    return r.ms;
  }

  map(): MapView | undefined {
    if (!this.present) return undefined;
    const n = this.node;
    if (n === undefined || !isMap(n)) return this.wrongType('map');
    return new MapView(this.ctx, n, this.path);
  }

  list(): View[] | undefined {
    if (!this.present) return undefined;
    const n = this.node;
    if (n === undefined || !isSeq(n)) return this.wrongType('list');
    const start = this.offset;
    return n.items.map((item, i) => {
      const node = isPair(item) ? undefined : (item as Node | null);
      return new View(this.ctx, node, `${this.path}[${i}]`, start);
    });
  }

  stringList(): string[] | undefined {
    const items = this.list();
    if (items === undefined) return undefined;
    const out: string[] = [];
    for (const item of items) {
      const s = item.string();
      if (s !== undefined) out.push(s);
      else if (!item.present) item.error('expected string, got null');
    }
    return out;
  }

  /** `map<string, string>` such as labels; keys kept as written. */
  stringMap(): Record<string, string> | undefined {
    const m = this.map();
    if (m === undefined) return undefined;
    const out: Record<string, string> = {};
    for (const { key, value } of m.entries()) {
      const s = value.string();
      if (s !== undefined) out[key] = s;
      else if (!value.present) out[key] = '';
    }
    return out;
  }
}

export interface MapEntry {
  readonly key: string;
  readonly keyOffset: number;
  readonly value: View;
}

/** A YAML mapping with string keys. */
export class MapView {
  readonly ctx: DocContext;
  readonly node: YAMLMap;
  readonly path: string;
  private readonly byKey = new Map<string, MapEntry>();
  private readonly ordered: MapEntry[] = [];

  constructor(ctx: DocContext, node: YAMLMap, path: string) {
    this.ctx = ctx;
    this.node = node;
    this.path = path;
    const start = node.range?.[0] ?? 0;
    for (const pair of node.items) {
      const keyNode = pair.key as Node | null;
      const keyOffset = keyNode?.range?.[0] ?? start;
      let key: string;
      if (keyNode !== null && isScalar(keyNode)) key = String(keyNode.value);
      else {
        ctx.report('error', keyNode?.range?.[0] ?? start, path, 'map keys must be scalars');
        continue;
      }
      const value = new View(ctx, pair.value as Node | null, childKeyPath(path, key), keyOffset);
      const entry = { key, keyOffset, value };
      this.ordered.push(entry);
      if (!this.byKey.has(key)) this.byKey.set(key, entry);
    }
  }

  get offset(): number {
    return this.node.range?.[0] ?? 0;
  }

  /** The field's view; absent fields point at this map for messages. */
  get(key: string): View {
    const e = this.byKey.get(key);
    return e?.value ?? new View(this.ctx, undefined, childKeyPath(this.path, key), this.offset);
  }

  /** Present and not null. */
  has(key: string): boolean {
    return this.get(key).present;
  }

  keys(): string[] {
    return this.ordered.map((e) => e.key);
  }

  entries(): readonly MapEntry[] {
    return this.ordered;
  }

  error(message: string): void {
    this.ctx.report('error', this.offset, this.path, message);
  }

  warn(message: string): void {
    this.ctx.report('warning', this.offset, this.path, message);
  }

  /**
   * Reports keys outside `known` ("unknown field", warning by default, error when strict) and
   * keys listed in `notImplemented` (a warning naming the field, with the given reason).
   */
  checkFields(
    known: readonly string[],
    opts: { readonly strict?: boolean; readonly notImplemented?: Readonly<Record<string, string>> } = {},
  ): void {
    for (const { key, keyOffset, value } of this.ordered) {
      const reason = opts.notImplemented?.[key];
      if (reason !== undefined) {
        if (value.present) this.ctx.report('warning', keyOffset, value.path, reason);
        continue;
      }
      if (!known.includes(key)) {
        this.ctx.report(
          opts.strict === true ? 'error' : 'warning',
          keyOffset,
          value.path,
          opts.strict === true ? 'unknown field' : 'unknown field; ignored',
        );
      }
    }
  }

  /** Errors when more than one of `keys` is present; returns the present ones. */
  exclusive(keys: readonly string[], what?: string): string[] {
    const present = keys.filter((k) => this.has(k));
    if (present.length > 1) {
      this.get(present[1] ?? '').error(
        `${present.join(' and ')} are mutually exclusive${what === undefined ? '' : ` (${what})`}`,
      );
    }
    return present;
  }
}
