import type { ConfigIssue } from './resource-types.ts';

/** `file:line:col: error|warning: <path>: <message>` (the path part is left out when empty). */
export function formatIssue(i: ConfigIssue): string {
  const where = `${i.pos.file}:${i.pos.line}:${i.pos.col}`;
  return i.path === ''
    ? `${where}: ${i.severity}: ${i.message}`
    : `${where}: ${i.severity}: ${i.path}: ${i.message}`;
}
