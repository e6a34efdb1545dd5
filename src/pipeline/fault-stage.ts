/**
 * Fault injection (spec §2.4 `fault`): a delay, then an abort, each drawn independently with its own
 * percentage. An aborted request never reaches admission or the upstream (no retries, no outlier
 * impact); a delayed one continues to the router stage, whose route timeout starts after the delay.
 */
import type { HTTPFault } from '../config/resource-types.ts';
import { LOCAL_REPLIES } from '../errors/local-reply.ts';
import { guarded } from './attempt-loop.ts';
import type { Exchange } from './exchange.ts';

/**
 * Applies the route's fault. Returns false when neither draw fired (the caller continues at once);
 * true when the fault took the request over: an abort answered it, or `resume` runs after the delay.
 */
export function applyFault(ex: Exchange, fault: HTTPFault, resume: () => void): boolean {
  const { deps, timers } = ex.owner;
  const random = deps.random;
  // Draw both decisions up front: they are independent (spec §2.4).
  const delay = fault.delay !== undefined && random() < fault.delay.fraction ? fault.delay.fixedDelayMs : -1;
  const abort = fault.abort !== undefined && random() < fault.abort.fraction ? fault.abort : undefined;
  if (delay < 0 && abort === undefined) return false;
  const act = (): void => {
    if (ex.finished) return;
    if (abort === undefined) {
      resume();
      return;
    }
    deps.stats.faultsAborted++;
    if (abort.grpcStatus !== undefined) {
      // A gRPC abort is an HTTP 200 carrying the status in headers (trailers-only response).
      ex.addFlag('FI');
      ex.status = 200;
      ex.headersSent = true;
      ex.res.writeHead(200, [
        'content-type',
        'application/grpc',
        'grpc-status',
        grpcCode(abort.grpcStatus),
        'grpc-message',
        'fault filter abort',
        'content-length',
        '0',
      ]);
      ex.res.end();
      ex.finish();
      return;
    }
    ex.reply({ ...LOCAL_REPLIES.faultAbort, status: abort.httpStatus ?? 500 });
  };
  if (delay >= 0) {
    deps.stats.faultsDelayed++;
    ex.addFlag('DI');
    ex.waited = true;
    ex.timer = timers.start(() => {
      ex.timer = null;
      guarded(ex, act);
    }, delay);
    return true;
  }
  act();
  return true;
}

const GRPC_CODES: Readonly<Record<string, string>> = {
  OK: '0',
  CANCELLED: '1',
  UNKNOWN: '2',
  INVALID_ARGUMENT: '3',
  DEADLINE_EXCEEDED: '4',
  NOT_FOUND: '5',
  ALREADY_EXISTS: '6',
  PERMISSION_DENIED: '7',
  RESOURCE_EXHAUSTED: '8',
  FAILED_PRECONDITION: '9',
  ABORTED: '10',
  OUT_OF_RANGE: '11',
  UNIMPLEMENTED: '12',
  INTERNAL: '13',
  UNAVAILABLE: '14',
  DATA_LOSS: '15',
  UNAUTHENTICATED: '16',
};

function grpcCode(name: string): string {
  return GRPC_CODES[name] ?? '2';
}
