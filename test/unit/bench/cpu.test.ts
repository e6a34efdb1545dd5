import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { type CpuSample, groupCpuTicks, parseProcStat, sample, usage } from '../../../bench/cpu.ts';

t.test('per-CPU busy and total ticks', async (t) => {
  const stat =
    'cpu  10 0 10 100 0 0 0 0 0 0\ncpu0 1 2 3 40 5 6 7 8 9 10\ncpu1 10 0 20 70 0 0 0 0 0 0\nintr 1\n';
  t.same(parseProcStat(stat, 0), { busy: 1 + 2 + 3 + 6 + 7 + 8, total: 72 });
  t.same(parseProcStat(stat, 1), { busy: 30, total: 100 });
  t.equal(parseProcStat(stat, 2), undefined);
});

t.test('CPU ticks of a process group, from a fake /proc', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'bench-proc-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const proc = (pid: number, comm: string, pgrp: number, utime: number, stime: number): void => {
    mkdirSync(join(root, String(pid)));
    // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime …
    writeFileSync(
      join(root, String(pid), 'stat'),
      `${pid} (${comm}) S 1 ${pgrp} ${pgrp} 0 -1 0 0 0 0 0 ${utime} ${stime} 0 0\n`,
    );
  };
  proc(100, 'nginx', 100, 5, 7);
  proc(101, 'nginx: worker (x) y', 100, 200, 300);
  proc(200, 'other', 200, 1000, 1000);
  mkdirSync(join(root, 'self'));
  t.equal(groupCpuTicks(100, root), 512);
  t.equal(groupCpuTicks(999, root), undefined);
  t.equal(groupCpuTicks(100, join(root, 'missing')), undefined);
});

t.test('usage between two samples', async (t) => {
  const before: CpuSample = { at: 0, proxyTicks: 1000, cpu: { busy: 1000, total: 2000 } };
  const after: CpuSample = { at: 5000, proxyTicks: 1450, cpu: { busy: 1500, total: 2500 } };
  const u = usage(before, after, 100_000, 100);
  t.equal(u.proxyCores, 0.9);
  t.equal(u.usPerRequest, 45);
  t.equal(u.otherOnProxyCpu, 0.1);
  t.same(
    usage(
      { at: 0, proxyTicks: undefined, cpu: undefined },
      { at: 1, proxyTicks: undefined, cpu: undefined },
      5,
      100,
    ),
    {},
  );
  const live = sample(process.pid, 0);
  t.ok(live.at > 0);
});
