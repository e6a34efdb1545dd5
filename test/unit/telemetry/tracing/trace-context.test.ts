import t from 'tap';
import {
  B3_MULTI,
  B3_NONE,
  B3_SINGLE,
  formatTraceparent,
  isTraceHeader,
  parseB3Single,
  parseTraceparent,
  readContext,
  withContext,
} from '../../../../src/telemetry/tracing/trace-context.ts';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';
const VALID = `00-${TRACE}-${SPAN}-01`;

t.test('traceparent: valid values', async (t) => {
  t.same(parseTraceparent(VALID), { traceId: TRACE, parentId: SPAN, sampled: true });
  t.same(parseTraceparent(`00-${TRACE}-${SPAN}-00`), { traceId: TRACE, parentId: SPAN, sampled: false });
  // Other flag bits do not make a request sampled; bit 0 does.
  t.equal(parseTraceparent(`00-${TRACE}-${SPAN}-02`)?.sampled, false);
  t.equal(parseTraceparent(`00-${TRACE}-${SPAN}-03`)?.sampled, true);
  // A later version: the first four fields are read, more may follow after a '-'.
  t.same(parseTraceparent(`01-${TRACE}-${SPAN}-01-extra`), { traceId: TRACE, parentId: SPAN, sampled: true });
  t.same(parseTraceparent(`01-${TRACE}-${SPAN}-01`), { traceId: TRACE, parentId: SPAN, sampled: true });
});

t.test('traceparent: invalid values are ignored', async (t) => {
  const bad = [
    '',
    `00-${TRACE}-${SPAN}-0`, // short
    `00-${TRACE}-${SPAN}-01-`, // version 00 has exactly 55 characters
    `00-${TRACE}-${SPAN}-01x`,
    `01-${TRACE}-${SPAN}-01x`, // a later version needs '-' after the flags
    `ff-${TRACE}-${SPAN}-01`, // forbidden version
    `00-${TRACE.toUpperCase()}-${SPAN}-01`, // upper-case hex
    `00-${TRACE}-${SPAN.toUpperCase()}-01`,
    `0A-${TRACE}-${SPAN}-01`,
    `00-00000000000000000000000000000000-${SPAN}-01`, // all-zero trace id
    `00-${TRACE}-0000000000000000-01`, // all-zero parent id
    `00_${TRACE}-${SPAN}-01`,
    `00-${TRACE.slice(0, 31)}g-${SPAN}-01`,
    `00-${TRACE}-${SPAN}-0g`,
    `00-${TRACE}${SPAN}-01-xx`,
  ];
  for (const v of bad) t.equal(parseTraceparent(v), null, v);
});

t.test('traceparent: formatting', async (t) => {
  t.equal(formatTraceparent(TRACE, SPAN, true), VALID);
  t.equal(formatTraceparent(TRACE, SPAN, false), `00-${TRACE}-${SPAN}-00`);
});

t.test('b3 single header', async (t) => {
  t.same(parseB3Single(`${TRACE}-${SPAN}-1-${'a'.repeat(16)}`), {
    traceId: TRACE,
    spanId: SPAN,
    sampled: true,
    debug: false,
  });
  t.same(parseB3Single(`${TRACE}-${SPAN}`), { traceId: TRACE, spanId: SPAN, sampled: null, debug: false });
  t.same(parseB3Single(`${SPAN}-${SPAN}-0`), {
    traceId: `0000000000000000${SPAN}`,
    spanId: SPAN,
    sampled: false,
    debug: false,
  });
  t.same(parseB3Single(`${TRACE}-${SPAN}-d`), { traceId: TRACE, spanId: SPAN, sampled: true, debug: true });
  t.same(parseB3Single('0'), { traceId: '', spanId: '', sampled: false, debug: false });
  t.same(parseB3Single('1'), { traceId: '', spanId: '', sampled: true, debug: false });
  t.same(parseB3Single('d'), { traceId: '', spanId: '', sampled: true, debug: true });
  for (const v of [
    'x',
    `${TRACE}`,
    `${TRACE}-${SPAN}-2`,
    `${TRACE}-${SPAN}-1-zz`,
    `${TRACE.slice(1)}-${SPAN}-1`,
    `${TRACE}-0000000000000000-1`,
    `00000000000000000000000000000000-${SPAN}-1`,
    `${TRACE.toUpperCase()}-${SPAN}-1`,
    `${TRACE}-${SPAN}-1-${SPAN}-x`,
  ])
    t.equal(parseB3Single(v), null, v);
});

t.test('readContext: W3C, B3 multi, B3 single, none', async (t) => {
  t.equal(readContext(['host', 'a', 'accept', '*/*']), null);
  t.equal(readContext(['traceparent', 'garbage']), null, 'an invalid traceparent is as if absent');
  t.same(readContext(['traceparent', VALID, 'tracestate', 'a=1', 'tracestate', 'b=2']), {
    traceId: TRACE,
    parentId: SPAN,
    sampled: true,
    debug: false,
    tracestate: 'a=1,b=2',
    b3: B3_NONE,
  });
  t.equal(readContext(['traceparent', VALID, 'traceparent', VALID]), null, 'repeated traceparent is ignored');
  t.same(readContext(['x-b3-traceid', SPAN, 'x-b3-spanid', SPAN, 'x-b3-sampled', '1']), {
    traceId: `0000000000000000${SPAN}`,
    parentId: SPAN,
    sampled: true,
    debug: false,
    tracestate: '',
    b3: B3_MULTI,
  });
  const debug = readContext(['x-b3-traceid', TRACE, 'x-b3-spanid', SPAN, 'x-b3-flags', '1']);
  t.equal(debug?.sampled, true, 'debug means sampled');
  t.equal(debug?.debug, true);
  t.same(readContext(['x-b3-traceid', TRACE, 'x-b3-spanid', SPAN]), {
    traceId: TRACE,
    parentId: SPAN,
    sampled: null,
    debug: false,
    tracestate: '',
    b3: B3_MULTI,
  });
  t.same(readContext(['x-b3-sampled', '0']), {
    traceId: '',
    parentId: '',
    sampled: false,
    debug: false,
    tracestate: '',
    b3: B3_MULTI,
  });
  t.equal(readContext(['x-b3-traceid', 'XYZ', 'x-b3-spanid', SPAN]), null, 'bad B3 ids are ignored');
  t.same(readContext(['b3', `${TRACE}-${SPAN}-0`]), {
    traceId: TRACE,
    parentId: SPAN,
    sampled: false,
    debug: false,
    tracestate: '',
    b3: B3_SINGLE,
  });
  t.equal(readContext(['b3', '0'])?.sampled, false);
  // tracestate without a valid traceparent means nothing.
  t.equal(readContext(['tracestate', 'a=1']), null);
  // traceparent wins over B3; B3 is still answered in its form.
  const both = readContext(['b3', `${'1'.repeat(32)}-${'2'.repeat(16)}-0`, 'traceparent', VALID]);
  t.equal(both?.traceId, TRACE);
  t.equal(both?.sampled, true);
  t.equal(both?.b3, B3_SINGLE);
});

t.test('withContext replaces the trace headers', async (t) => {
  const headers = [
    'host',
    'a',
    'traceparent',
    VALID,
    'tracestate',
    'k=v',
    'x-b3-sampled',
    '1',
    'b3',
    '1',
    'x-y',
    'z',
  ];
  const out = withContext(headers, TRACE, 'bbbbbbbbbbbbbbbb', SPAN, true, false, 'k=v', B3_NONE);
  t.same(out, [
    'host',
    'a',
    'x-y',
    'z',
    'traceparent',
    `00-${TRACE}-bbbbbbbbbbbbbbbb-01`,
    'tracestate',
    'k=v',
  ]);
  t.equal(headers.length, 12, 'the input is not mutated');
  const multi = withContext(
    ['host', 'a'],
    `0000000000000000${SPAN}`,
    'b'.repeat(16),
    'c'.repeat(16),
    true,
    false,
    '',
    B3_MULTI,
  );
  t.same(multi, [
    'host',
    'a',
    'traceparent',
    `00-0000000000000000${SPAN}-${'b'.repeat(16)}-01`,
    'x-b3-traceid',
    SPAN,
    'x-b3-spanid',
    'b'.repeat(16),
    'x-b3-parentspanid',
    'c'.repeat(16),
    'x-b3-sampled',
    '1',
  ]);
  const single = withContext([], TRACE, 'b'.repeat(16), 'c'.repeat(16), true, true, '', B3_SINGLE);
  t.same(single, [
    'traceparent',
    `00-${TRACE}-${'b'.repeat(16)}-01`,
    'b3',
    `${TRACE}-${'b'.repeat(16)}-d-${'c'.repeat(16)}`,
  ]);
});

t.test('trace header names, zero B3 ids, unsampled B3 out', async (t) => {
  t.same(
    [
      'traceparent',
      'tracestate',
      'b3',
      'x-b3-spanid',
      'x-b3-flags',
      'host',
      'baggage',
      'x-request-id',
      'trace',
    ].map(isTraceHeader),
    [true, true, true, true, true, false, false, false, false],
  );
  t.equal(
    readContext(['x-b3-traceid', '0000000000000000', 'x-b3-spanid', SPAN]),
    null,
    'an all-zero 64-bit id',
  );
  t.equal(
    readContext(['x-b3-traceid', SPAN, 'x-b3-spanid', '0000000000000000']),
    null,
    'an all-zero span id',
  );
  t.same(withContext([], TRACE, SPAN, SPAN, false, false, '', B3_SINGLE), [
    'traceparent',
    `00-${TRACE}-${SPAN}-00`,
    'b3',
    `${TRACE}-${SPAN}-0-${SPAN}`,
  ]);
  t.same(withContext([], TRACE, SPAN, SPAN, false, true, '', B3_MULTI).slice(-4), [
    'x-b3-parentspanid',
    SPAN,
    'x-b3-flags',
    '1',
  ]);
});
