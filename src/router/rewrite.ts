/**
 * `rewrite.uri` and `rewrite.uriRegexRewrite` (§2.4, §8 item 10). `rewrite.uri` replaces only the
 * part of the path that the route matched, so the plan is compiled per match entry.
 */
import type { HTTPRewrite, StringMatch } from '../config/resource-types.ts';

export type PathRewrite =
  | { readonly kind: 'none' }
  /** Replace the first `length` characters (the matched prefix) of the raw path; rest and query kept. */
  | { readonly kind: 'prefix'; readonly length: number; readonly replacement: string }
  /** Replace the whole path without its query string; the query is kept. */
  | { readonly kind: 'whole'; readonly replacement: string }
  /** Replace the path and the query string (a redirect `uri` with its own `?`). */
  | { readonly kind: 'pathAndQuery'; readonly replacement: string }
  /** Substitute every match of `re` (global) in the path without its query string. */
  | { readonly kind: 'regex'; readonly re: RegExp; readonly replacement: string };

const NO_REWRITE: PathRewrite = Object.freeze({ kind: 'none' });

/** How a replacement string replaces the matched part, given the match entry's uri condition. */
export function matchedPartRewrite(replacement: string, uri: StringMatch | undefined): PathRewrite {
  if (uri === undefined || uri.kind === 'present') {
    // No uri condition: the implicit match is prefix `/`.
    return Object.freeze({ kind: 'prefix', length: 1, replacement });
  }
  if (uri.kind === 'prefix') return Object.freeze({ kind: 'prefix', length: uri.value.length, replacement });
  return Object.freeze({ kind: 'whole', replacement });
}

export function compilePathRewrite(
  rewrite: HTTPRewrite | undefined,
  uri: StringMatch | undefined,
): PathRewrite {
  if (rewrite === undefined) return NO_REWRITE;
  if (rewrite.uri !== undefined) return matchedPartRewrite(rewrite.uri, uri);
  const regex = rewrite.uriRegexRewrite;
  if (regex !== undefined) {
    const re = regex.match.global ? regex.match : new RegExp(regex.match.source, `${regex.match.flags}g`);
    return Object.freeze({ kind: 'regex', re, replacement: regex.rewrite });
  }
  return NO_REWRITE;
}

/** The rewritten path (query kept). `queryStart` is the index of `?` in `path`, or -1. */
export function rewritePath(plan: PathRewrite, path: string, queryStart: number): string {
  switch (plan.kind) {
    case 'none':
      return path;
    case 'prefix':
      // With ignoreUriCase the matched prefix is replaced by its length, whatever its case.
      return plan.replacement + path.slice(Math.min(plan.length, path.length));
    case 'whole':
      return queryStart < 0 ? plan.replacement : plan.replacement + path.slice(queryStart);
    case 'pathAndQuery':
      return plan.replacement;
    case 'regex': {
      if (queryStart < 0) return path.replace(plan.re, plan.replacement);
      return path.slice(0, queryStart).replace(plan.re, plan.replacement) + path.slice(queryStart);
    }
  }
}
