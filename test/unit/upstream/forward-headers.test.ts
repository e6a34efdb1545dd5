import t from 'tap';
import { cleanResponseHeaders, prepareUpstreamHeaders } from '../../../src/upstream/forward-headers.ts';

const info = { authority: 'reviews:9080', remoteAddress: '10.0.0.7', scheme: 'http', requestId: 'rid-1' };

function values(headers: string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === name) out.push(headers[i + 1]!);
  return out;
}

t.test('sets host, x-forwarded-for, x-forwarded-proto and x-request-id', async (t) => {
  const input = ['host', 'old:1', 'accept', '*/*', 'x-forwarded-proto', 'https'];
  const r = prepareUpstreamHeaders(input, info);
  t.same(r.headers, [
    'host',
    'reviews:9080',
    'accept',
    '*/*',
    'x-forwarded-for',
    '10.0.0.7',
    'x-forwarded-proto',
    'http',
    'x-request-id',
    'rid-1',
  ]);
  t.equal(r.expectContinue, false);
  t.equal(r.upgrade, null);
  t.same(input, ['host', 'old:1', 'accept', '*/*', 'x-forwarded-proto', 'https'], 'input untouched');
});

t.test('x-forwarded-for appends to existing values (several headers joined)', async (t) => {
  const r = prepareUpstreamHeaders(
    ['x-forwarded-for', '1.1.1.1', 'x-forwarded-for', '2.2.2.2, 3.3.3.3'],
    info,
  );
  t.same(values(r.headers, 'x-forwarded-for'), ['1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.7']);
});

t.test('x-request-id only when absent', async (t) => {
  const r = prepareUpstreamHeaders(['x-request-id', 'abc'], info);
  t.same(values(r.headers, 'x-request-id'), ['abc']);
  const r2 = prepareUpstreamHeaders([], info);
  t.same(values(r2.headers, 'x-request-id'), ['rid-1']);
});

t.test('hop-by-hop removed, including names listed in Connection', async (t) => {
  const r = prepareUpstreamHeaders(
    [
      'connection',
      'keep-alive, X-Secret',
      'connection',
      'foo',
      'keep-alive',
      'timeout=5',
      'proxy-connection',
      'keep-alive',
      'transfer-encoding',
      'chunked',
      'trailer',
      'x-t',
      'upgrade',
      'websocket',
      'x-secret',
      's',
      'foo',
      'bar',
      'proxy-authorization',
      'Basic abc',
      'set-cookie-like',
      'a',
      'set-cookie-like',
      'b',
    ],
    info,
  );
  t.same(values(r.headers, 'x-secret'), []);
  t.same(values(r.headers, 'foo'), []);
  for (const h of [
    'connection',
    'keep-alive',
    'proxy-connection',
    'transfer-encoding',
    'trailer',
    'upgrade',
  ]) {
    t.same(values(r.headers, h), [], h);
  }
  t.same(values(r.headers, 'proxy-authorization'), ['Basic abc'], 'proxy-authorization is relayed');
  t.same(values(r.headers, 'set-cookie-like'), ['a', 'b'], 'repeated headers kept in order');
  t.equal(r.upgrade, null, 'upgrade without connection: upgrade is not an upgrade');
});

t.test('te: only trailers survives', async (t) => {
  t.same(values(prepareUpstreamHeaders(['te', 'trailers', 'connection', 'te'], info).headers, 'te'), [
    'trailers',
  ]);
  t.same(values(prepareUpstreamHeaders(['te', 'gzip'], info).headers, 'te'), []);
});

t.test('expect: 100-continue is removed and reported', async (t) => {
  const r = prepareUpstreamHeaders(['expect', '100-Continue', 'content-length', '5'], info);
  t.equal(r.expectContinue, true);
  t.same(values(r.headers, 'expect'), []);
  t.same(values(r.headers, 'content-length'), ['5']);
  const other = prepareUpstreamHeaders(['expect', 'something'], info);
  t.equal(other.expectContinue, false);
  t.same(values(other.headers, 'expect'), []);
});

t.test('upgrade requests keep connection: upgrade and upgrade', async (t) => {
  const r = prepareUpstreamHeaders(
    ['connection', 'Upgrade', 'upgrade', 'websocket', 'sec-websocket-key', 'k'],
    info,
  );
  t.equal(r.upgrade, 'websocket');
  t.same(values(r.headers, 'connection'), ['upgrade']);
  t.same(values(r.headers, 'upgrade'), ['websocket']);
  t.same(values(r.headers, 'sec-websocket-key'), ['k']);
  const h2c = prepareUpstreamHeaders(
    ['connection', 'Upgrade, HTTP2-Settings', 'upgrade', 'h2c', 'http2-settings', 'AAA'],
    info,
  );
  t.equal(h2c.upgrade, null, 'h2c is not passed through');
  t.same(values(h2c.headers, 'http2-settings'), []);
  t.same(values(h2c.headers, 'upgrade'), []);
});

t.test(
  'cleanResponseHeaders removes hop-by-hop and Connection-named headers, keeps content-length',
  async (t) => {
    const out = cleanResponseHeaders([
      'content-type',
      'text/plain',
      'connection',
      'keep-alive, x-hop',
      'keep-alive',
      'timeout=5',
      'transfer-encoding',
      'chunked',
      'x-hop',
      '1',
      'content-length',
      '12',
      'set-cookie',
      'a=1',
      'set-cookie',
      'b=2',
    ]);
    t.same(out, [
      'content-type',
      'text/plain',
      'content-length',
      '12',
      'set-cookie',
      'a=1',
      'set-cookie',
      'b=2',
    ]);
  },
);
