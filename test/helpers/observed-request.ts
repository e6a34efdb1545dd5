/**
 * A finished request as the telemetry stage hands it to observers (access log, tap, tracer tests):
 * a plain outbound request to reviews, 200, one attempt; `extra` and `req` override fields.
 */
import type { ObservedRequest } from '../../src/telemetry/observed-request.ts';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

export function observed(
  extra: Partial<Mutable<ObservedRequest>> = {},
  req: Partial<Mutable<ObservedRequest['req']>> = {},
): ObservedRequest {
  return {
    reporter: 'source',
    req: {
      method: 'GET',
      headers: ['host', 'reviews', 'user-agent', 'curl/8.5.0', 'x-forwarded-for', '10.0.0.9'],
      remoteAddress: '127.0.0.1',
      localPort: 15001,
      secure: false,
      ...req,
    },
    startedAt: 0,
    status: 200,
    flags: '',
    bytesSent: 12,
    bytesReceived: 3,
    authority: 'reviews',
    path: '/v2/reviews/1',
    originalPath: '/reviews/1?x=1',
    routeName: 'r1',
    requestId: 'rid-1',
    details: '',
    tlsFailure: '',
    peer: {
      serviceFqdn: 'reviews.default.svc.cluster.local',
      serviceName: 'reviews',
      serviceNamespace: 'default',
    },
    endpoint: { id: '127.0.0.11:9080', labels: {} },
    target: null,
    cluster: { name: 'outbound|9080|v1|reviews.default.svc.cluster.local' },
    attempts: 1,
    upstreamStatus: 200,
    rttMs: 4.7,
    ...extra,
  };
}

/** 2026-11-29T20:51:31.250Z */
export const WALL = Date.UTC(2026, 10, 29, 20, 51, 31, 250);
