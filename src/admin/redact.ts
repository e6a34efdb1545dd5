/**
 * What `/config_dump` must not show: credentials written into the configuration. meshlet's own
 * configuration holds no keys (certificates and keys are files, named by path), but a `Proxy`
 * document may carry headers for the trace collector (`tracing.otlp.headers`, e.g. a bearer
 * token), and any resource may carry a field named like a credential. Their values are replaced;
 * the names stay, so an operator still sees that they are set.
 */

export const REDACTED = '[redacted]';

/** Field names whose values are credentials, wherever they appear. */
const SECRET_NAME =
  /^(authorization|proxy-authorization|cookie|x-api-key|api[-_]?key|password|passwd|secret|token|bearer|.*[-_](token|secret|password))$/i;

/** A deep copy of `value` with credential values replaced by `[redacted]`. */
export function redactSecrets(value: unknown): unknown {
  return redact(value, false);
}

/** `allValues`: every string/number value below is a credential (a header map sent to a collector). */
function redact(value: unknown, allValues: boolean): unknown {
  if (Array.isArray(value)) return value.map((v) => redact(v, allValues));
  if (value === null || typeof value !== 'object') {
    return allValues && (typeof value === 'string' || typeof value === 'number') ? REDACTED : value;
  }
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    if (SECRET_NAME.test(key) && (typeof v === 'string' || typeof v === 'number')) out[key] = REDACTED;
    // Collector headers: every value is sent as a credential might be (names are kept).
    else if (key === 'headers' && isOtlp(value)) out[key] = redact(v, true);
    else out[key] = redact(v, allValues);
  }
  return out;
}

/** The `otlp` block of `Proxy.tracing`: an object with an `endpoint` beside its `headers`. */
function isOtlp(o: object): boolean {
  return 'endpoint' in o;
}
