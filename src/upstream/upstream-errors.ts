/**
 * Error text and the failure class of errors before a request went out, the same for both upstream
 * clients (the lean `h1-client.ts` and `undici-upstream.ts`).
 */
import type { UpstreamFailure } from './upstream-types.ts';

/** The `code` of a Node or undici error (`ECONNREFUSED`, `UND_ERR_SOCKET`, …), or ''. */
export function errorCode(err: unknown): string {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string')
    return err.code;
  return '';
}

/** `code: message`, or the message alone when there is no code: the `detail` of `onError`. */
export function errorDetail(err: unknown): string {
  const code = errorCode(err);
  const message = err instanceof Error ? err.message : String(err);
  return code === '' ? message : `${code}: ${message}`;
}

/** An error before the request was written: nothing reached the upstream. */
export function failureBeforeSend(code: string): UpstreamFailure {
  return code === 'ETIMEDOUT' ? 'timeout' : 'connect';
}
