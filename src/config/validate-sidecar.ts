/**
 * Sidecar validation (spec §4). Only `outboundTrafficPolicy.mode` and `workloadSelector` are
 * acted on; the other fields are checked for shape and reported as not implemented.
 */
import type { SidecarSpec } from './resource-types.ts';
import { parseSelector, type Scope } from './validate-common.ts';
import type { MapView } from './yaml-view.ts';

const MODES = ['REGISTRY_ONLY', 'ALLOW_ANY'] as const;

export function validateSidecar(spec: MapView, _scope: Scope): SidecarSpec | undefined {
  spec.checkFields(['workloadSelector', 'outboundTrafficPolicy'], {
    notImplemented: {
      ingress: 'ingress listeners are not implemented yet; ignored (inbound traffic goes to --app)',
      egress: 'egress scoping is not implemented yet; ignored (every host in the configuration is visible)',
      inboundConnectionPool: 'inboundConnectionPool is not implemented yet; ignored',
    },
  });
  for (const item of spec.get('egress').list() ?? []) {
    const hosts = item.map()?.get('hosts');
    if (hosts?.require('hosts') === true) hosts.stringList();
  }
  const workloadSelector = spec.has('workloadSelector')
    ? parseSelector(spec.get('workloadSelector'), 'labels')
    : undefined;
  let outboundTrafficPolicy: SidecarSpec['outboundTrafficPolicy'];
  const otpView = spec.get('outboundTrafficPolicy');
  if (otpView.present || otpView.typeName() === 'null') {
    // A present block without `mode` means REGISTRY_ONLY (the enum's zero value, spec §4.3).
    outboundTrafficPolicy = 'REGISTRY_ONLY';
    const m = otpView.map();
    if (m !== undefined) {
      m.checkFields(['mode'], { notImplemented: { egressProxy: 'egressProxy is not implemented; ignored' } });
      outboundTrafficPolicy = m.get('mode').enumOf(MODES) ?? 'REGISTRY_ONLY';
    }
  }
  return {
    ...(outboundTrafficPolicy !== undefined ? { outboundTrafficPolicy } : {}),
    ...(workloadSelector !== undefined ? { workloadSelector } : {}),
  };
}
