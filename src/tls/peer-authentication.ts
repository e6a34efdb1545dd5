/**
 * The server-side mTLS mode of a workload port from PeerAuthentication (spec §5.2).
 *
 * Three levels, the most specific wins and UNSET (or no `mtls`) at any level inherits:
 *   mesh      the oldest policy in the root namespace without a selector;
 *   namespace the oldest policy in the workload's namespace (not the root) without a selector;
 *   workload  the oldest policy in the workload's namespace (not the root) whose non-empty
 *             selector is a subset of the workload's labels; only its `portLevelMtls` counts, keyed
 *             by the workload (container) port.
 * Selector policies in the root namespace are ignored, as Istio ignores them. "Oldest" is the first
 * in load order (`meta.order`): a file carries no creation timestamps. With nothing set the mode is
 * PERMISSIVE. An empty selector (`selector: {}`) selects like no selector.
 */
import type { PeerAuthenticationMode, PeerAuthenticationSpec, Resource } from '../config/resource-types.ts';
import { labelsSelect } from '../router/labels.ts';
import type { MtlsMode } from './identity-types.ts';
import type { WorkloadSelectorInput } from './policy-types.ts';

type Policy = Resource<PeerAuthenticationSpec>;

function hasSelector(p: Policy): p is Policy & { spec: { selector: Readonly<Record<string, string>> } } {
  const s = p.spec.selector;
  if (s === undefined) return false;
  for (const _ in s) return true;
  return false;
}

function older(candidate: Policy, current: Policy | undefined): boolean {
  return current === undefined || candidate.meta.order < current.meta.order;
}

/** `mode` when `level` sets one (anything but UNSET), else the inherited `mode`. */
function inherit(mode: MtlsMode, level: PeerAuthenticationMode | undefined): MtlsMode {
  return level === undefined || level === 'UNSET' ? mode : level;
}

/**
 * Resolves the levels once for a workload: the result maps a workload port to its mode with one
 * map lookup (a port without a port-level entry gets the workload's mode).
 */
export function compilePeerAuthentication(
  policies: readonly Policy[],
  workload: WorkloadSelectorInput,
  rootNamespace: string,
): (port: number) => MtlsMode {
  let mesh: Policy | undefined;
  let namespace: Policy | undefined;
  let selected: Policy | undefined;
  for (const p of policies) {
    const ns = p.meta.namespace;
    if (ns === rootNamespace) {
      if (!hasSelector(p) && older(p, mesh)) mesh = p;
    } else if (ns === workload.namespace) {
      if (!hasSelector(p)) {
        if (older(p, namespace)) namespace = p;
      } else if (labelsSelect(p.spec.selector, workload.labels) && older(p, selected)) {
        selected = p;
      }
    }
  }
  let mode: MtlsMode = 'PERMISSIVE';
  mode = inherit(mode, mesh?.spec.mode);
  mode = inherit(mode, namespace?.spec.mode);
  mode = inherit(mode, selected?.spec.mode);
  const base = mode;

  const byPort = new Map<number, MtlsMode>();
  if (selected !== undefined) {
    for (const [port, portMode] of selected.spec.portLevelMtls) {
      const resolved = inherit(base, portMode);
      if (resolved !== base) byPort.set(port, resolved);
    }
  }
  if (byPort.size === 0) return () => base;
  return (port) => byPort.get(port) ?? base;
}

/** The mode of one workload port (spec §5.2). Compile once with `compilePeerAuthentication` on hot paths. */
export function peerAuthenticationMode(
  policies: readonly Policy[],
  workload: WorkloadSelectorInput,
  port: number,
  rootNamespace: string,
): MtlsMode {
  return compilePeerAuthentication(policies, workload, rootNamespace)(port);
}
