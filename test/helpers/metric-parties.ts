/** The two sides of the metrics tests' requests: this proxy (productpage v1) and the reviews service. */
import type { PeerDescription, WorkloadIdentity } from '../../src/telemetry/metrics.ts';

export const PRODUCTPAGE: WorkloadIdentity = {
  workload: 'productpage',
  namespace: 'default',
  app: 'productpage',
  version: 'v1',
  canonicalService: 'productpage',
  canonicalRevision: 'v1',
  cluster: 'unknown',
};

export const REVIEWS: PeerDescription = {
  serviceFqdn: 'reviews.default.svc.cluster.local',
  serviceName: 'reviews',
  serviceNamespace: 'default',
};
