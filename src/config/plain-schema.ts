/**
 * A small schema language for the parts of the Istio API that are validated here but kept as
 * plain data (DestinationRule traffic policies). Reading a value through a schema checks types,
 * ranges and enums, warns about unknown fields, converts Duration strings to milliseconds and
 * returns plain JSON-like data with the original key names.
 */
import type { MapView, View } from './yaml-view.ts';

export type Schema =
  | 'string'
  | 'bool'
  | 'number'
  /** int32 ≥ 0 / uint32 */
  | 'uint'
  /** A Duration that must be ≥ 1ms. */
  | 'duration'
  /** A Duration where 0 is allowed (e.g. `idleTimeout: 0s` disables, `ttl: 0s` session cookie). */
  | 'duration0'
  | { readonly int: readonly [number, number] }
  | { readonly enum: readonly string[] }
  | {
      readonly object: Readonly<Record<string, Schema>>;
      /** Extra rules (one-ofs, required fields) checked after the fields. */
      readonly check?: (m: MapView) => void;
      /** Fields known to Istio that are accepted with a warning. */
      readonly notImplemented?: Readonly<Record<string, string>>;
    }
  | { readonly list: Schema }
  | { readonly map: Schema };

export type Plain = string | number | boolean | readonly Plain[] | { readonly [k: string]: Plain };

/** Reads `view` through `schema`; undefined when absent or invalid (after reporting). */
export function readPlain(view: View, schema: Schema): Plain | undefined {
  if (!view.present) return undefined;
  if (typeof schema === 'string') {
    switch (schema) {
      case 'string':
        return view.string();
      case 'bool':
        return view.bool();
      case 'number':
        return view.number();
      case 'uint':
        return view.int({ min: 0, max: 4294967295 });
      case 'duration':
        return view.duration({ minMs: 1 });
      case 'duration0':
        return view.duration({ minMs: 1, allowZero: true });
    }
  }
  if ('int' in schema) return view.int({ min: schema.int[0], max: schema.int[1] });
  if ('enum' in schema) return view.enumOf(schema.enum);
  if ('list' in schema) {
    const items = view.list();
    if (items === undefined) return undefined;
    const out: Plain[] = [];
    for (const item of items) {
      const v = readPlain(item, schema.list);
      if (v !== undefined) out.push(v);
      else if (!item.present) item.error('list items must not be null');
    }
    return out;
  }
  if ('map' in schema) {
    const m = view.map();
    if (m === undefined) return undefined;
    const out: Record<string, Plain> = {};
    for (const { key, value } of m.entries()) {
      const v = readPlain(value, schema.map);
      if (v !== undefined) out[key] = v;
    }
    return out;
  }
  const m = view.map();
  if (m === undefined) return undefined;
  return readObject(m, schema);
}

/** Reads a map through an object schema. */
export function readObject(
  m: MapView,
  schema: {
    readonly object: Readonly<Record<string, Schema>>;
    readonly check?: (m: MapView) => void;
    readonly notImplemented?: Readonly<Record<string, string>>;
  },
): Record<string, Plain> {
  m.checkFields(
    Object.keys(schema.object),
    schema.notImplemented === undefined ? {} : { notImplemented: schema.notImplemented },
  );
  const out: Record<string, Plain> = {};
  for (const [key, fieldSchema] of Object.entries(schema.object)) {
    const v = readPlain(m.get(key), fieldSchema);
    if (v !== undefined) out[key] = v;
  }
  schema.check?.(m);
  return out;
}
