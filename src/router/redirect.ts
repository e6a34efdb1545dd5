/**
 * `redirect` (§2.4): the Location header. The path part replaces the whole path (`uri`, keeping
 * the query unless `uri` has its own `?`) or only the matched prefix (`prefixRewrite`); the
 * authority is replaced as written or kept; a port that is the default of the scheme is left out.
 */
import type { HTTPRedirect, StringMatch } from '../config/resource-types.ts';
import { authorityHostEnd } from './authority.ts';
import { matchedPartRewrite, type PathRewrite, rewritePath } from './rewrite.ts';

export interface RedirectPlan {
  readonly status: number;
  readonly path: PathRewrite;
  readonly scheme: string | undefined;
  readonly authority: string | undefined;
  /** Explicit port; undefined with `portFromRequest` false means none. */
  readonly port: number | undefined;
  readonly portFromRequest: boolean;
}

export function compileRedirect(redirect: HTTPRedirect, uri: StringMatch | undefined): RedirectPlan {
  let path: PathRewrite = { kind: 'none' };
  if (redirect.uri !== undefined) {
    path = redirect.uri.includes('?')
      ? { kind: 'pathAndQuery', replacement: redirect.uri }
      : { kind: 'whole', replacement: redirect.uri };
  } else if (redirect.prefixRewrite !== undefined) {
    path = matchedPartRewrite(redirect.prefixRewrite, uri);
  }
  return Object.freeze({
    status: redirect.redirectCode,
    path,
    scheme: redirect.scheme,
    authority: redirect.authority,
    port: redirect.port,
    portFromRequest: redirect.port === undefined && redirect.derivePort === 'FROM_REQUEST_PORT',
  });
}

function isDefaultPort(scheme: string, port: string): boolean {
  return (scheme === 'http' && port === '80') || (scheme === 'https' && port === '443');
}

/**
 * Builds the Location. `requestPort` is the port the request is routed on (for
 * `derivePort: FROM_REQUEST_PORT`); `queryStart` is the index of `?` in `path`, or -1.
 */
export function redirectLocation(
  plan: RedirectPlan,
  scheme: string,
  authority: string,
  path: string,
  queryStart: number,
  requestPort: number,
): string {
  const newScheme = plan.scheme ?? scheme;
  const newPort = plan.port ?? (plan.portFromRequest ? requestPort : undefined);
  let host: string;
  if (plan.authority !== undefined) {
    host = newPort === undefined ? plan.authority : plan.authority.slice(0, authorityHostEnd(plan.authority));
  } else {
    const end = authorityHostEnd(authority);
    host = authority;
    if (end < authority.length) {
      const oldPort = authority.slice(end + 1);
      // A new port replaces the old one; on a scheme change the old scheme's default port goes.
      if (newPort !== undefined || (newScheme !== scheme && isDefaultPort(scheme, oldPort))) {
        host = authority.slice(0, end);
      }
    }
  }
  const portPart = newPort === undefined || isDefaultPort(newScheme, String(newPort)) ? '' : `:${newPort}`;
  return `${newScheme}://${host}${portPart}${rewritePath(plan.path, path, queryStart)}`;
}
