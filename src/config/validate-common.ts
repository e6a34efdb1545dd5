/**
 * Pieces shared by the per-kind validators: the naming scope of a resource, hosts, destinations,
 * percentages and header edits.
 */
import { checkHostName, expandHost, isIpAddress } from './host-names.ts';
import type { Destination, HeaderEdits, HeaderOps } from './resource-types.ts';
import type { MapView, View } from './yaml-view.ts';

/** What a validator needs to know about the resource it validates. */
export interface Scope {
  /** Namespace of the resource (metadata.namespace or the default). */
  readonly namespace: string;
  readonly domainSuffix: string;
}

/**
 * Parses a host that is subject to short-name expansion (VS hosts, Destination.host, DR host).
 * Returns the expanded, lowercased host, or undefined after reporting.
 */
export function parseExpandedHost(view: View, scope: Scope, allowBareWildcard: boolean): string | undefined {
  const raw = view.string();
  if (raw === undefined) return undefined;
  const host = expandHost(raw, scope.namespace, scope.domainSuffix);
  if (isIpAddress(host)) return host;
  const problem = checkHostName(host, allowBareWildcard);
  if (problem !== null) {
    view.error(`invalid host "${raw}": ${problem}`);
    return undefined;
  }
  return host;
}

const DESTINATION_FIELDS = ['host', 'subset', 'port'] as const;

/** `Destination` with its host expanded in the scope of the referencing resource. */
export function parseDestination(view: View, scope: Scope): Destination | undefined {
  if (!view.require('destination')) return undefined;
  const m = view.map();
  if (m === undefined) return undefined;
  m.checkFields(DESTINATION_FIELDS);
  const hostView = m.get('host');
  if (!hostView.require('destination host')) return undefined;
  const host = parseExpandedHost(hostView, scope, false);
  const subset = m.get('subset').string();
  let port: number | undefined;
  const portMap = m.get('port').map();
  if (portMap !== undefined) {
    portMap.checkFields(['number']);
    const num = portMap.get('number');
    if (num.require('port.number')) port = num.port();
  }
  if (host === undefined) return undefined;
  return {
    host,
    ...(subset !== undefined && subset !== '' ? { subset } : {}),
    ...(port !== undefined ? { port } : {}),
  };
}

/**
 * `Percent {value}`, 0–100, as a fraction at per-million resolution
 * (`Math.floor(value*10000)/1e6`). Values in (0, 0.0001) are rejected as Istio does.
 */
export function parsePercent(view: View): number | undefined {
  const m = view.map();
  if (m === undefined) return undefined;
  m.checkFields(['value']);
  const v = m.get('value');
  if (!v.present) return 0;
  const value = v.number({ min: 0, max: 100 });
  if (value === undefined) return undefined;
  if (value > 0 && value < 0.0001) {
    v.error('percentage must be 0 or at least 0.0001');
    return undefined;
  }
  return Math.floor(value * 10000) / 1e6;
}

/** Deprecated integer percent fields (`percent`, `mirrorPercent`). */
export function parseIntPercent(view: View): number | undefined {
  const v = view.int({ min: 0, max: 100 });
  return v === undefined ? undefined : Math.floor(v * 10000) / 1e6;
}

const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function parseHeaderOps(view: View): HeaderOps | undefined {
  const m = view.map();
  if (m === undefined) return undefined;
  m.checkFields(['set', 'add', 'remove']);
  const pairs = (key: 'set' | 'add'): Array<readonly [string, string]> => {
    const out: Array<readonly [string, string]> = [];
    const mm = m.get(key).map();
    if (mm === undefined) return out;
    for (const { key: name, value } of mm.entries()) {
      const lower = name.toLowerCase();
      if (!HEADER_NAME.test(lower.startsWith(':') ? lower.slice(1) : lower)) {
        value.error(`invalid header name "${name}"`);
        continue;
      }
      const s = value.present ? value.string() : '';
      if (s !== undefined) out.push([lower, s]);
    }
    return out;
  };
  const set = pairs('set');
  const add = pairs('add');
  const removeView = m.get('remove');
  const remove: string[] = [];
  const items = removeView.list();
  for (const item of items ?? []) {
    const s = item.string();
    if (s === undefined) continue;
    if (!HEADER_NAME.test(s.startsWith(':') ? s.slice(1) : s)) item.error(`invalid header name "${s}"`);
    else remove.push(s.toLowerCase());
  }
  return { set, add, remove };
}

/** `Headers {request, response}` with lowercase names. */
export function parseHeaderEdits(view: View): HeaderEdits | undefined {
  const m = view.map();
  if (m === undefined) return undefined;
  m.checkFields(['request', 'response']);
  const request = m.has('request') ? parseHeaderOps(m.get('request')) : undefined;
  const response = m.has('response') ? parseHeaderOps(m.get('response')) : undefined;
  return {
    ...(request !== undefined ? { request } : {}),
    ...(response !== undefined ? { response } : {}),
  };
}

/** `{labels: map}` (Sidecar, ServiceEntry) or `{matchLabels: map}` (DR) selectors. */
export function parseSelector(view: View, key: 'labels' | 'matchLabels'): Record<string, string> | undefined {
  const m = view.map();
  if (m === undefined) return undefined;
  m.checkFields([key]);
  return m.get(key).stringMap() ?? {};
}

/** A list of strings where absent means empty. */
export function stringListOrEmpty(m: MapView, key: string): string[] {
  return m.get(key).stringList() ?? [];
}

/** Kubernetes label name part: alphanumeric at both ends, `-`, `_`, `.` inside, at most 63. */
const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;
/** A DNS-1123 subdomain (without its 253-character limit). */
export const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** SPIFFE trust domain characters (lower-case letters, digits, `.`, `_`, `-`), at most 255. */
export const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;

/** A Kubernetes service account name (DNS-1123 subdomain); also a valid SPIFFE path segment. */
export function isServiceAccountName(sa: string): boolean {
  return sa.length <= 253 && DNS_SUBDOMAIN.test(sa);
}

/** Why `key` is not a Kubernetes label key (`[prefix/]name`), or null when it is one. */
export function labelKeyProblem(key: string): string | null {
  if (key === '') return 'empty key';
  if (key.includes('*')) return 'wildcards are not supported';
  const slash = key.indexOf('/');
  const prefix = slash < 0 ? undefined : key.slice(0, slash);
  const name = slash < 0 ? key : key.slice(slash + 1);
  if (prefix !== undefined && (prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) {
    return 'the prefix before "/" must be a DNS subdomain';
  }
  if (!LABEL_NAME.test(name)) {
    return 'the name must be at most 63 letters, digits, "-", "_" or "." and start and end with a letter or digit';
  }
  return null;
}

/** Why `value` is not a Kubernetes label value, or null when it is one. */
export function labelValueProblem(value: string): string | null {
  if (value.includes('*')) return 'wildcards are not supported';
  if (!LABEL_VALUE.test(value)) {
    return 'a label value is at most 63 letters, digits, "-", "_" or "." starting and ending with a letter or digit';
  }
  return null;
}

/**
 * The `selector: {matchLabels}` of PeerAuthentication and AuthorizationPolicy, checked as Istio's
 * workload selector validation does (no empty key, no wildcard, valid label syntax). An empty
 * selector selects every workload, exactly like no selector, so it comes back as undefined: the
 * precedence code then sees one shape for "namespace-wide" (spec §5.2), not two.
 *
 * Returns the labels, null for a valid selector that selects everything, undefined after an error.
 */
export function parseWorkloadSelector(view: View): Record<string, string> | null | undefined {
  if (!view.present) return null;
  const m = view.map();
  if (m === undefined) return undefined;
  m.checkFields(['matchLabels']);
  const labelsView = m.get('matchLabels');
  const labels = labelsView.map();
  if (labels === undefined) {
    if (labelsView.typeName() === 'missing' || labelsView.typeName() === 'null') {
      m.warn('selector has no matchLabels: it selects every workload, as if there were no selector');
      return null;
    }
    return undefined;
  }
  const out: Record<string, string> = {};
  let ok = true;
  for (const { key, value } of labels.entries()) {
    const keyProblem = labelKeyProblem(key);
    if (keyProblem !== null) {
      value.error(`invalid selector label "${key}": ${keyProblem}`);
      ok = false;
      continue;
    }
    const s = value.present ? value.string() : '';
    if (s === undefined) {
      ok = false;
      continue;
    }
    const valueProblem = labelValueProblem(s);
    if (valueProblem !== null) {
      value.error(`invalid selector value "${s}" for "${key}": ${valueProblem}`);
      ok = false;
      continue;
    }
    out[key] = s;
  }
  if (!ok) return undefined;
  if (Object.keys(out).length === 0) {
    labelsView.warn('matchLabels is empty: the selector selects every workload, as if there were none');
    return null;
  }
  return out;
}
