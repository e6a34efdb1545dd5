/**
 * PeerAuthentication validation (spec §5.1), with the checks of Istio's own validation:
 * `portLevelMtls` only together with a non-empty selector, not empty when present, no port 0.
 *
 * Normalized for the precedence code (spec §5.2):
 * - an empty selector (`selector: {}` or `matchLabels: {}`) is returned as no selector, because it
 *   selects every workload and so is the namespace-wide (or mesh-wide) policy;
 * - `mode` is always set: an absent `mtls` or `mtls.mode` is `UNSET` (inherit), as the enum's zero
 *   value is;
 * - `portLevelMtls` keys are numbers, whether the YAML wrote them as `9090:` or `"9090":`; a port
 *   entry without `mode` is `UNSET` (inherit from the workload level).
 *
 * Unknown fields are warnings, as for the networking kinds (Kubernetes prunes them the same way).
 */
import type { PeerAuthenticationMode, PeerAuthenticationSpec } from './resource-types.ts';
import { parseWorkloadSelector, type Scope } from './validate-common.ts';
import type { MapView, View } from './yaml-view.ts';

const MODES = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'] as const;

/** `{mode}` (a MutualTLS message); absent or null mode is UNSET. Undefined after an error. */
function parseMtls(view: View): PeerAuthenticationMode | undefined {
  if (!view.present) return 'UNSET';
  const m = view.map();
  if (m === undefined) return undefined;
  m.checkFields(['mode']);
  const modeView = m.get('mode');
  if (!modeView.present) return 'UNSET';
  return modeView.enumOf(MODES);
}

export function validatePeerAuthentication(spec: MapView, _scope: Scope): PeerAuthenticationSpec | undefined {
  spec.checkFields(['selector', 'mtls', 'portLevelMtls']);
  const parsedSelector = parseWorkloadSelector(spec.get('selector'));
  const selector = parsedSelector ?? undefined;
  const mode = parseMtls(spec.get('mtls'));

  const portLevelMtls = new Map<number, PeerAuthenticationMode>();
  const portsView = spec.get('portLevelMtls');
  const ports = portsView.map();
  if (ports !== undefined) {
    if (ports.entries().length === 0) {
      portsView.error('portLevelMtls, if present, must have at least one port');
    } else if (parsedSelector === null) {
      // Istio's validation: a mesh- or namespace-wide policy cannot set port-level modes, because a
      // workload port only means something for the workloads a selector picks.
      portsView.error(
        'portLevelMtls is only allowed with a selector (a namespace- or mesh-wide PeerAuthentication cannot set port-level modes)',
      );
    }
    for (const { key, value } of ports.entries()) {
      const port = /^\d{1,5}$/.test(key) ? Number(key) : Number.NaN;
      if (!(port >= 1 && port <= 65535)) {
        value.error(`portLevelMtls key "${key}" must be a workload port number (1-65535)`);
        continue;
      }
      if (portLevelMtls.has(port)) {
        value.error(`duplicate portLevelMtls entry for port ${port}`);
        continue;
      }
      if (!value.present) {
        value.error(`portLevelMtls entry for port ${port} must be a map with a mode`);
        continue;
      }
      const portMode = parseMtls(value);
      if (portMode !== undefined) portLevelMtls.set(port, portMode);
    }
  }
  if (mode === undefined || parsedSelector === undefined) return undefined;
  return { ...(selector !== undefined ? { selector } : {}), mode, portLevelMtls };
}
