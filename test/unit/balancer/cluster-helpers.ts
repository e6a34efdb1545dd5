import type { HostResolver } from '../../../src/balancer/cluster-registry.ts';
import type { PickContext } from '../../../src/balancer/cluster-types.ts';
import type { TrafficPolicy } from '../../../src/config/resource-types.ts';
import type { Cluster, Endpoint } from '../../../src/router/route-types.ts';

export const NAME = 'outbound|8080||svc.default.svc.cluster.local';

/** An IP endpoint `10.0.0.<n>:8080`. */
export function ipEp(n: number, weight = 1, labels: Record<string, string> = {}): Endpoint {
  return { id: `10.0.0.${n}:8080`, address: `10.0.0.${n}`, port: 8080, weight, labels };
}

/** A cluster; `policy` is the effective traffic policy (portLevelSettings filled in). */
export function cluster(
  endpoints: readonly Endpoint[],
  policy?: Omit<TrafficPolicy, 'portLevelSettings'>,
  name = NAME,
): Cluster {
  return {
    name,
    host: 'svc.default.svc.cluster.local',
    port: 8080,
    subset: '',
    endpoints,
    ...(policy === undefined ? {} : { trafficPolicy: { ...policy, portLevelSettings: [] } }),
    serviceFqdn: 'svc.default.svc.cluster.local',
    serviceName: 'svc',
    serviceNamespace: 'default',
  };
}

export function ctx(headers: string[] = [], path = '/', remoteAddress = '192.0.2.1'): PickContext {
  return { headers, path, remoteAddress };
}

/** setInterval stand-in: `tick()` runs every live timer once. */
export function manualTimers(): {
  setInterval: (fn: () => void, ms: number) => { cancel(): void };
  tick: () => void;
  live: () => { ms: number }[];
  created: () => number;
} {
  const timers: { fn: () => void; ms: number; cancelled: boolean }[] = [];
  return {
    setInterval: (fn, ms) => {
      const timer = { fn, ms, cancelled: false };
      timers.push(timer);
      return {
        cancel: () => {
          timer.cancelled = true;
        },
      };
    },
    tick: () => {
      for (const timer of timers) if (!timer.cancelled) timer.fn();
    },
    live: () => timers.filter((x) => !x.cancelled).map((x) => ({ ms: x.ms })),
    created: () => timers.length,
  };
}

/** A HostResolver whose answers tests set by hand. */
export function fakeResolver(): HostResolver & {
  set: (host: string, addresses: readonly string[]) => void;
  asked: string[];
} {
  const answers = new Map<string, readonly string[]>();
  const listeners: ((host: string) => void)[] = [];
  const asked: string[] = [];
  return {
    asked,
    addresses(host) {
      asked.push(host);
      return answers.get(host);
    },
    onChange(listener) {
      listeners.push(listener);
    },
    set(host, addresses) {
      answers.set(host, addresses);
      for (const l of listeners) l(host);
    },
  };
}
