import t from 'tap';
import {
  type CpuProfile,
  diffProfiles,
  formatProfile,
  formatProfileDiff,
  shortUrl,
  summarizeProfile,
  telemetryPart,
} from '../../../bench/cpu-profile.ts';

t.test('file names as the report shows them', async (t) => {
  t.equal(shortUrl('file:///work/main/dist/src/telemetry/access-log.js'), 'src/telemetry/access-log.js');
  t.equal(
    shortUrl('file:///work/main/node_modules/prom-client/lib/counter.js'),
    'prom-client/lib/counter.js',
  );
  t.equal(shortUrl('node:internal/streams/writable'), 'node:internal/streams/writable');
  t.equal(telemetryPart('src/telemetry/access-log.js'), 'src/telemetry/access-log');
  t.equal(telemetryPart('src/telemetry/metrics.ts'), 'src/telemetry/metrics');
  t.equal(
    telemetryPart('src/telemetry/tracing/exporter.js'),
    undefined,
    'only files directly in src/telemetry',
  );
  t.equal(telemetryPart('prom-client/lib/histogram.js'), 'prom-client (metrics)');
  t.equal(telemetryPart('hdr-histogram-js/dist/index.js'), 'hdr-histogram-js (live stats)');
  t.equal(telemetryPart('src/pipeline/proxy-pipeline.js'), undefined);
});

const dist = 'file:///repo/dist/';
// root → (idle) | (garbage collector) | onData (h1-engine) → observe (access-log) → stringify (native)
//                                                          → record (metrics) → inc (prom-client)
const PROFILE: CpuProfile = {
  startTime: 1_000_000,
  nodes: [
    { id: 1, callFrame: { functionName: '(root)', url: '', lineNumber: -1 }, children: [2, 3, 4] },
    { id: 2, callFrame: { functionName: '(idle)', url: '', lineNumber: -1 } },
    { id: 3, callFrame: { functionName: '(garbage collector)', url: '', lineNumber: -1 } },
    {
      id: 4,
      callFrame: { functionName: 'onData', url: `${dist}src/listener/h1-engine.js`, lineNumber: 9 },
      children: [5, 7],
    },
    {
      id: 5,
      callFrame: { functionName: 'observe', url: `${dist}src/telemetry/access-log.js`, lineNumber: 41 },
      children: [6],
    },
    { id: 6, callFrame: { functionName: 'stringify', url: '', lineNumber: -1 } },
    {
      id: 7,
      callFrame: { functionName: '', url: `${dist}src/telemetry/metrics.js`, lineNumber: 0 },
      children: [8],
    },
    {
      id: 8,
      callFrame: {
        functionName: 'inc',
        url: 'file:///repo/node_modules/prom-client/lib/counter.js',
        lineNumber: 4,
      },
    },
  ],
  samples: [2, 2, 3, 4, 4, 4, 5, 6, 6, 7, 8, 99],
  timeDeltas: [500, 500, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100],
};

t.test('self time per function and file, and the telemetry on the stack', async (t) => {
  const s = summarizeProfile(PROFILE);
  t.equal(s.busyUs, 900, 'idle and unknown nodes left out');
  t.equal(s.samples, 12);
  t.equal(s.totalSamples, 12);
  const share = (list: readonly { name: string; share: number }[], name: string): number | undefined =>
    list.find((x) => x.name === name)?.share;
  t.equal(s.frames[0]?.name, 'onData src/listener/h1-engine.js:10');
  t.equal(share(s.frames, 'onData src/listener/h1-engine.js:10'), 300 / 900);
  t.equal(share(s.frames, 'stringify ← observe src/telemetry/access-log.js:42'), 200 / 900);
  t.equal(share(s.frames, '(anonymous) src/telemetry/metrics.js:1'), 100 / 900);
  t.equal(share(s.files, '(garbage collector)'), 100 / 900);
  t.equal(share(s.files, '(native)'), 200 / 900);
  t.equal(share(s.files, 'prom-client/lib/counter.js'), 100 / 900);
  t.same(
    s.telemetry.map((p) => [p.name, Math.round(p.selfUs)]),
    [
      ['src/telemetry/access-log', 300],
      ['src/telemetry/metrics', 200],
      ['prom-client (metrics)', 100],
    ],
  );
  t.equal(s.telemetryShare, 500 / 900, 'each sample counted once');
  const text = formatProfile(s, 2).join('\n');
  t.match(text, /Telemetry code .* on the stack: \*\*55\.6 %\*\*/);
  t.match(text, /\(0\.0 s busy, 12 of 12 samples\)/);
  t.match(text, /\| `src\/telemetry\/access-log` \| 33\.3 % \|/);
  t.match(
    text,
    /\| top 2 functions \| self time \|\n\|---\|---:\|\n\| `onData src\/listener\/h1-engine.js:10` \| 33\.3 % \|\n\| `stringify ← observe src\/telemetry\/access-log.js:42` \| 22\.2 % \|\n\n/,
  );
});

t.test('only the samples from a given time on', async (t) => {
  // Sample times: 1_000_500, 1_001_000, 1_001_100, … 1_001_900, 1_002_000.
  const late = summarizeProfile(PROFILE, 1_001_700);
  t.equal(late.samples, 4, 'the samples at 1_001_700 and after');
  t.equal(late.totalSamples, 12);
  t.equal(late.busyUs, 300, 'the unknown node is not busy time');
  t.same(
    late.frames.map((f) => f.name),
    [
      '(anonymous) src/telemetry/metrics.js:1',
      'inc prom-client/lib/counter.js:5',
      'stringify ← observe src/telemetry/access-log.js:42',
    ],
  );
  t.equal(late.telemetryShare, 1, 'stringify runs under the access log');
  t.equal(summarizeProfile(PROFILE, 2_000_000).samples, 0);
  const noStart = summarizeProfile({ ...PROFILE, startTime: undefined as never }, 700);
  t.equal(noStart.samples, 11, 'without startTime the clock starts at 0');
});

t.test('an empty profile', async (t) => {
  const s = summarizeProfile({ nodes: [], samples: [], timeDeltas: [] });
  t.equal(s.busyUs, 0);
  t.equal(s.telemetryShare, 0);
  t.same(s.frames, []);
  const one = summarizeProfile({
    nodes: [{ id: 1, callFrame: { functionName: '', url: '', lineNumber: 0 } }],
    samples: [1],
    timeDeltas: [0],
  });
  t.same(one.frames, [{ name: '(anonymous)', selfUs: 0, share: 0 }]);
  t.same(one.files, [{ name: '(native)', selfUs: 0, share: 0 }]);
  const orphan = summarizeProfile({
    nodes: [{ id: 1, callFrame: { functionName: 'close', url: '', lineNumber: -1 } }],
    samples: [1],
    timeDeltas: [5],
  });
  t.same(orphan.frames, [{ name: 'close', selfUs: 5, share: 1 }], 'a native without a JavaScript caller');
});

t.test('what one profile adds per request over another', async (t) => {
  // From 1_001_200: onData 300, observe 100, stringify 200, metrics 100, inc 100 (no GC).
  const base = summarizeProfile(PROFILE, 1_001_200);
  const other = summarizeProfile(PROFILE); // the same plus (garbage collector) 100
  const d = diffProfiles(base, 100, other, 50);
  t.same(d[0], { name: 'onData src/listener/h1-engine.js:10', baseUsPerRequest: 3, usPerRequest: 6 });
  t.same(
    d[1],
    { name: '(garbage collector)', baseUsPerRequest: 0, usPerRequest: 2 },
    'a function only in the second profile; ties by name',
  );
  t.same(d[2], {
    name: 'stringify ← observe src/telemetry/access-log.js:42',
    baseUsPerRequest: 2,
    usPerRequest: 4,
  });
  t.same(
    diffProfiles(other, 10, base, 10).at(-1),
    { name: '(garbage collector)', baseUsPerRequest: 10, usPerRequest: 0 },
    'a function that is gone comes last',
  );
  t.same(diffProfiles(base, 0, other, 0)[0]?.usPerRequest, 0, 'no requests: no per-request figure');
  const text = formatProfileDiff(['off', 'full'], base, 100, other, 50, 2).join('\n');
  t.match(text, /Busy time per request in the profiles: off 8\.0 µs, full 18\.0 µs\. The 2 functions/);
  t.match(text, /\| function \| off µs\/req \| full µs\/req \| added \|/);
  t.match(
    text,
    /\| `onData src\/listener\/h1-engine.js:10` \| 3\.00 \| 6\.00 \| 3\.00 \|\n\| `\(garbage collector\)` \| 0\.00 \| 2\.00 \| 2\.00 \|$/,
  );
  t.match(formatProfileDiff(['a', 'b'], base, 0, other, 0, 1).join('\n'), /a — µs, b — µs/);
});
