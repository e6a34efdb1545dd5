import t from 'tap';
import { AdmissionControl } from '../../../src/balancer/admission.ts';

/** Lets queued microtasks (the hand-over of a released slot) run. */
const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

t.test('unlimited by default: always granted', async (t) => {
  const a = new AdmissionControl();
  for (let i = 0; i < 1000; i++) t.equal(a.admit(() => t.fail('never queued')).kind, 'granted');
  t.equal(a.active, 1000);
  for (let i = 0; i < 1000; i++) a.release();
  t.equal(a.active, 0);
  a.release();
  t.equal(a.active, 0, 'an extra release does not go negative');
});

t.test('granted up to the limit, then queued FIFO, then overflow', async (t) => {
  const a = new AdmissionControl({ maxActive: 2, maxPending: 2 });
  const order: string[] = [];
  t.equal(a.admit(() => order.push('g1')).kind, 'granted');
  t.equal(a.admit(() => order.push('g2')).kind, 'granted');
  t.equal(a.admit(() => order.push('q1')).kind, 'queued');
  t.equal(a.admit(() => order.push('q2')).kind, 'queued');
  t.equal(a.admit(() => order.push('x')).kind, 'overflow');
  t.equal(a.active, 2);
  t.equal(a.pending, 2);
  t.equal(a.overflows, 1);
  t.equal(a.queuedTotal, 2);

  a.release();
  t.same(order, [], 'the hand-over runs in a microtask, not inside release()');
  t.equal(a.active, 2, 'the slot went to q1');
  t.equal(a.pending, 1);
  await flush();
  t.same(order, ['q1']);
  t.equal(a.admit(() => order.push('q3')).kind, 'queued', 'room in the queue again');
  a.release();
  a.release();
  await flush();
  t.same(order, ['q1', 'q2', 'q3'], 'first in, first out');
  t.equal(a.active, 2);
  a.release();
  a.release();
  t.equal(a.active, 0);
  t.equal(a.pending, 0);
});

t.test('cancel removes a queued request; a cancelled hand-over passes the slot on', async (t) => {
  const a = new AdmissionControl({ maxActive: 1, maxPending: 10 });
  const order: string[] = [];
  t.equal(a.admit(() => order.push('g')).kind, 'granted');
  const q1 = a.admit(() => order.push('q1'));
  const q2 = a.admit(() => order.push('q2'));
  const q3 = a.admit(() => order.push('q3'));
  const q4 = a.admit(() => order.push('q4'));
  if (q2.kind !== 'queued' || q1.kind !== 'queued' || q4.kind !== 'queued' || q3.kind !== 'queued') {
    t.fail('expected queued');
    return;
  }
  q2.cancel();
  q4.cancel();
  q4.cancel();
  t.equal(a.pending, 2, 'q1 and q3 wait');
  a.release();
  // q1 owns the slot now; it gives up before its callback ran: the slot goes on to q3.
  q1.cancel();
  await flush();
  t.same(order, ['q3']);
  t.equal(a.active, 1);
  t.equal(a.pending, 0);
  q3.cancel();
  t.same(order, ['q3'], 'cancel after the grant ran changes nothing');
  a.release();
  t.equal(a.active, 0);
});

t.test(
  'new limits: a raised limit admits waiting requests, a lowered one lets active ones finish',
  async (t) => {
    const a = new AdmissionControl({ maxActive: 1, maxPending: 5 });
    const order: string[] = [];
    a.admit(() => order.push('g'));
    a.admit(() => order.push('q1'));
    a.admit(() => order.push('q2'));
    a.admit(() => order.push('q3'));
    a.setLimits({ maxActive: 3, maxPending: 5 });
    await flush();
    t.same(order, ['q1', 'q2'], 'two more slots');
    t.equal(a.active, 3);
    t.equal(a.pending, 1);
    a.setLimits({ maxActive: 1, maxPending: 0 });
    t.equal(a.admit(() => order.push('x')).kind, 'overflow', 'no queue room any more');
    t.equal(a.pending, 1, 'requests already waiting are not evicted');
    a.release();
    a.release();
    await flush();
    t.same(order, ['q1', 'q2'], 'still two over the lowered limit: no hand-over yet');
    t.equal(a.active, 1);
    a.release();
    await flush();
    t.same(order, ['q1', 'q2', 'q3'], 'q3 gets the slot once below the limit');
    t.equal(a.active, 1);
  },
);
