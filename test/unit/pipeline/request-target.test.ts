import t from 'tap';
import { headerValue, parseRequestTarget, splitAuthority } from '../../../src/pipeline/request-target.ts';

t.test('origin-form uses Host', async (t) => {
  t.same(parseRequestTarget('/a?b=1', ['host', 'reviews:9080']), {
    authority: 'reviews:9080',
    path: '/a?b=1',
    scheme: null,
  });
  t.equal(parseRequestTarget('/a', []), null, 'no Host');
  t.equal(parseRequestTarget('/a', ['host', '']), null, 'empty Host');
});

t.test('absolute-form wins over Host', async (t) => {
  t.same(parseRequestTarget('http://reviews:9080/x?y', ['host', 'other']), {
    authority: 'reviews:9080',
    path: '/x?y',
    scheme: 'http',
  });
  t.same(parseRequestTarget('HTTPS://Api.Example.com', []), {
    authority: 'Api.Example.com',
    path: '/',
    scheme: 'https',
  });
  t.same(parseRequestTarget('http://h?q=1', []), { authority: 'h', path: '/?q=1', scheme: 'http' });
  t.equal(parseRequestTarget('*', ['host', 'x']), null, 'asterisk-form is not proxied');
  t.equal(parseRequestTarget('example.com:443', ['host', 'x']), null, 'authority-form is not proxied');
});

t.test('authority split', async (t) => {
  t.same(splitAuthority('reviews:9080'), { host: 'reviews', port: 9080 });
  t.same(splitAuthority('reviews'), { host: 'reviews', port: null });
  t.same(splitAuthority('[::1]:8080'), { host: '::1', port: 8080 });
  t.same(splitAuthority('[::1]'), { host: '::1', port: null });
  t.same(splitAuthority('h:99999'), { host: 'h', port: null });
  t.same(splitAuthority('h:x'), { host: 'h', port: null });
});

t.test('headerValue finds the first value', async (t) => {
  t.equal(headerValue(['a', '1', 'b', '2', 'a', '3'], 'a'), '1');
  t.equal(headerValue(['a', '1'], 'z'), undefined);
});
