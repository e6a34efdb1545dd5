/**
 * The effective DestinationRule policy of one cluster `(host, subset, port)` (§3.2). The four
 * components are replaced as whole objects, never merged field by field.
 */
import type {
  ConnectionPoolSettings,
  LoadBalancerSettings,
  OutlierDetectionSettings,
  Subset,
  TrafficPolicy,
} from '../config/resource-types.ts';

interface Components {
  loadBalancer: LoadBalancerSettings | undefined;
  connectionPool: ConnectionPoolSettings | undefined;
  outlierDetection: OutlierDetectionSettings | undefined;
  tls: Readonly<Record<string, unknown>> | undefined;
}

export function effectiveTrafficPolicy(
  top: TrafficPolicy | undefined,
  subset: Subset | undefined,
  port: number,
): TrafficPolicy | undefined {
  const subsetPolicy = subset?.trafficPolicy;
  if (top === undefined && subsetPolicy === undefined) return undefined;
  let p: Components = {
    loadBalancer: undefined,
    connectionPool: undefined,
    outlierDetection: undefined,
    tls: undefined,
  };
  if (top !== undefined) {
    const portLevel = top.portLevelSettings.find((e) => e.port === port);
    // A port-level entry replaces all four; what it leaves out falls back to the defaults.
    p = componentsOf(portLevel ?? top);
  }
  if (subsetPolicy !== undefined) {
    const portLevel = subsetPolicy.portLevelSettings.find((e) => e.port === port);
    if (portLevel !== undefined) {
      p = componentsOf(portLevel);
    } else {
      const t = componentsOf(subsetPolicy);
      p = {
        loadBalancer: t.loadBalancer ?? p.loadBalancer,
        connectionPool: t.connectionPool ?? p.connectionPool,
        outlierDetection: t.outlierDetection ?? p.outlierDetection,
        tls: t.tls ?? p.tls,
      };
    }
  }
  return toPolicy(p);
}

function componentsOf(source: {
  readonly loadBalancer?: LoadBalancerSettings;
  readonly connectionPool?: ConnectionPoolSettings;
  readonly outlierDetection?: OutlierDetectionSettings;
  readonly tls?: Readonly<Record<string, unknown>>;
}): Components {
  return {
    loadBalancer: source.loadBalancer,
    connectionPool: source.connectionPool,
    outlierDetection: source.outlierDetection,
    tls: source.tls,
  };
}

function toPolicy(c: Components): TrafficPolicy {
  const policy: {
    loadBalancer?: LoadBalancerSettings;
    connectionPool?: ConnectionPoolSettings;
    outlierDetection?: OutlierDetectionSettings;
    tls?: Readonly<Record<string, unknown>>;
    portLevelSettings: TrafficPolicy['portLevelSettings'];
  } = { portLevelSettings: [] };
  if (c.loadBalancer !== undefined) policy.loadBalancer = c.loadBalancer;
  if (c.connectionPool !== undefined) policy.connectionPool = c.connectionPool;
  if (c.outlierDetection !== undefined) policy.outlierDetection = c.outlierDetection;
  if (c.tls !== undefined) policy.tls = c.tls;
  return policy;
}
