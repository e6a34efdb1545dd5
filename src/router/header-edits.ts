/**
 * Header edits (§2.6): compile-time ordering of route- and destination-level edits, turning
 * `host` / `:authority` edits into an authority rewrite, and the runtime `applyHeaderOps`.
 */
import type { HeaderEdits, HeaderOps, HTTPRewrite } from '../config/resource-types.ts';
import type { HeaderList } from '../listener/listener-types.ts';

/** HeaderOps without pseudo-headers and `host`, plus the authority such edits asked for. */
interface SplitOps {
  readonly ops: HeaderOps | undefined;
  readonly authority: string | undefined;
}

function isAuthorityName(name: string): boolean {
  return name === 'host' || name === ':authority';
}

function editable(name: string): boolean {
  return name.charCodeAt(0) !== 58 && name !== 'host'; // ':'
}

/** Drops what cannot be edited as a header; `set` of host/:authority wins over `add`. */
function splitOps(ops: HeaderOps | undefined, isRequest: boolean): SplitOps {
  if (ops === undefined) return { ops: undefined, authority: undefined };
  let authority: string | undefined;
  if (isRequest) {
    for (const [name, value] of ops.add)
      if (isAuthorityName(name) && authority === undefined) authority = value;
    let fromSet: string | undefined;
    for (const [name, value] of ops.set) if (isAuthorityName(name)) fromSet = value;
    if (fromSet !== undefined) authority = fromSet;
  }
  const set = ops.set.filter(([name]) => editable(name));
  const add = ops.add.filter(([name]) => editable(name));
  const remove = ops.remove.filter(editable);
  if (set.length === 0 && add.length === 0 && remove.length === 0) return { ops: undefined, authority };
  return { ops: Object.freeze({ set, add, remove }), authority };
}

export interface HeaderPlan {
  /** Request edits in application order. */
  readonly request: readonly HeaderOps[];
  /** Response edits in application order. */
  readonly response: readonly HeaderOps[];
  /** Authority to send upstream, or undefined to keep the request's. */
  readonly authority: string | undefined;
}

function present(list: readonly (HeaderOps | undefined)[]): readonly HeaderOps[] {
  return Object.freeze(list.filter((o): o is HeaderOps => o !== undefined));
}

/**
 * The edits for one destination of a rule. Single destination: route-level then destination-level.
 * Weighted: the chosen destination's first, then route-level (so the route level wins).
 * Authority: `rewrite.authority`, else a route-level host edit, else a destination-level one.
 */
export function planHeaderEdits(
  routeEdits: HeaderEdits | undefined,
  destinationEdits: HeaderEdits | undefined,
  rewrite: HTTPRewrite | undefined,
  weighted: boolean,
): HeaderPlan {
  const routeReq = splitOps(routeEdits?.request, true);
  const destReq = splitOps(destinationEdits?.request, true);
  const routeRes = splitOps(routeEdits?.response, false).ops;
  const destRes = splitOps(destinationEdits?.response, false).ops;
  return Object.freeze({
    request: weighted ? present([destReq.ops, routeReq.ops]) : present([routeReq.ops, destReq.ops]),
    response: weighted ? present([destRes, routeRes]) : present([routeRes, destRes]),
    authority: rewrite?.authority ?? routeReq.authority ?? destReq.authority,
  });
}

/** Route-level response edits only: for redirects and direct responses. */
export function routeResponseEdits(routeEdits: HeaderEdits | undefined): readonly HeaderOps[] {
  return present([splitOps(routeEdits?.response, false).ops]);
}

/**
 * Applies edits to a flat header list and returns a new list (the input is not changed). For each
 * HeaderOps in order: remove, then set (the first occurrence takes the value, later ones go; a new
 * header is appended), then add (append).
 */
export function applyHeaderOps(headers: HeaderList, ops: readonly HeaderOps[]): HeaderList {
  let out = headers.slice();
  for (const op of ops) {
    if (op.remove.length > 0) out = without(out, op.remove);
    for (const [name, value] of op.set) {
      let found = false;
      for (let i = 0; i < out.length; i += 2) {
        if (out[i] !== name) continue;
        if (!found) {
          out[i + 1] = value;
          found = true;
        } else {
          out.splice(i, 2);
          i -= 2;
        }
      }
      if (!found) out.push(name, value);
    }
    for (const [name, value] of op.add) out.push(name, value);
  }
  return out;
}

function without(headers: HeaderList, names: readonly string[]): HeaderList {
  const out: HeaderList = [];
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!;
    if (!names.includes(name)) out.push(name, headers[i + 1]!);
  }
  return out;
}
