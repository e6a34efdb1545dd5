/**
 * meshlet's start-up line (`"msg":"meshlet ready"` on stderr, see src/main.ts): the ports it chose.
 * Read by the canary walkthrough and by the tests' process helper, which start meshlet with port 0.
 */
export interface ReadyLine {
  readonly admin: number;
  readonly listeners: readonly { readonly name: string; readonly port: number; readonly engine: string }[];
}

/** The ready line's ports, or null for any other line (including lines that are not JSON). */
export function parseReadyLine(line: string): ReadyLine | null {
  let rec: { msg?: unknown; admin?: { port?: unknown }; listeners?: unknown };
  try {
    rec = JSON.parse(line) as typeof rec;
  } catch {
    return null;
  }
  if (rec === null || typeof rec !== 'object' || rec.msg !== 'meshlet ready') return null;
  if (typeof rec.admin?.port !== 'number' || !Array.isArray(rec.listeners)) return null;
  return { admin: rec.admin.port, listeners: rec.listeners as ReadyLine['listeners'] };
}
