import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { REPO_ROOT } from './spawn-meshlet.ts';

/** The config-examples/ folder of the repository. */
export const EXAMPLES_DIR = join(REPO_ROOT, 'config-examples');

/**
 * An example file of config-examples/ with its ServiceEntry endpoints moved to loopback test
 * backends: every endpoint whose address is a key of `ports` becomes 127.0.0.1 on that port
 * (the examples use fixed demo addresses, 127.0.0.11-13:9080). Throws when an address of `ports`
 * is not in the file, so a changed example cannot silently test nothing.
 */
export function localizeExample(file: string, ports: Readonly<Record<string, number>>): string {
  const text = readFileSync(join(EXAMPLES_DIR, file), 'utf8');
  const seen = new Set<string>();
  const docs = parseAllDocuments(text);
  const out: string[] = [];
  for (const doc of docs) {
    if (!('toJS' in doc)) throw new Error(`${file}: unparsable document`);
    const res = doc.toJS() as {
      kind?: string;
      spec?: { endpoints?: Array<{ address: string; ports?: Record<string, number> }> };
    } | null;
    if (res?.kind === 'ServiceEntry') {
      for (const ep of res.spec?.endpoints ?? []) {
        const port = ports[ep.address];
        if (port === undefined) continue;
        seen.add(ep.address);
        ep.address = '127.0.0.1';
        ep.ports = { http: port };
      }
    }
    out.push(JSON.stringify(res));
  }
  for (const addr of Object.keys(ports)) {
    if (!seen.has(addr)) throw new Error(`${file}: no ServiceEntry endpoint ${addr}`);
  }
  return out.join('\n---\n');
}
