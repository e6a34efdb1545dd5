import t from 'tap';
import { normalizePath } from '../../../src/tls/path-normalize.ts';

t.test('already normal paths come back unchanged (same string)', async (t) => {
  for (const p of [
    '/',
    '/xyz',
    '/x/y/z',
    '/a//b',
    '/.well-known/x',
    '/a.',
    '/..a/b',
    '/a/.b',
    '/pkg.Svc/Method',
  ]) {
    t.equal(normalizePath(p), p, p);
  }
});

t.test('query string and fragment are removed', async (t) => {
  t.equal(normalizePath('/x?y=1'), '/x');
  t.equal(normalizePath('/x?y=/../z'), '/x', 'dot segments in the query are not path segments');
  t.equal(normalizePath('/x#frag'), '/x');
  t.equal(normalizePath('/x?q#f'), '/x');
  t.equal(normalizePath('/x#f?q'), '/x');
  t.equal(normalizePath('/?'), '/');
});

t.test('RFC 3986 dot segments', async (t) => {
  const cases: Array<[string, string]> = [
    ['/a/b/../c', '/a/c'],
    ['/a/b/./c', '/a/b/c'],
    ['/a/../b', '/b'],
    ['/a/b/../../../../c', '/c'],
    ['/../a/b', '/a/b'],
    ['/./a/b', '/a/b'],
    ['/a/..', '/'],
    ['/a/b/..', '/a/'],
    ['/a/.', '/a/'],
    ['/..', '/'],
    ['/.', '/'],
    ['/a//../b', '/a/b'],
    ['/a/./../b/./c/..', '/b/'],
  ];
  for (const [input, want] of cases) t.equal(normalizePath(input), want, input);
});

t.test('a path that does not start with / gets one', async (t) => {
  t.equal(normalizePath('a/b/../c'), '/a/c');
  t.equal(normalizePath('..'), '/');
  t.equal(normalizePath(''), '/');
  t.equal(normalizePath('*'), '/*');
});

t.test('absolute-form targets are reduced to their path', async (t) => {
  t.equal(normalizePath('http://reviews:9080/p/../q?x=1'), '/q');
  t.equal(normalizePath('https://h/a'), '/a');
  t.equal(normalizePath('http://h'), '/');
  t.equal(normalizePath('http://h?x=/a'), '/');
});

t.test('backslashes are path separators (BASE)', async (t) => {
  t.equal(normalizePath('/a/..\\c'), '/c');
  t.equal(normalizePath('\\da'), '/da');
  t.equal(normalizePath('/a\\b'), '/a/b');
});

t.test('unreserved escapes are decoded, in either case; others are kept as written', async (t) => {
  t.equal(normalizePath('/a/b/%2E%2E/c'), '/a/c', '%2E%2E is ..');
  t.equal(normalizePath('/a/b/%2e%2e/c'), '/a/c', 'lower-case hex too');
  t.equal(normalizePath('/a/b/%2E./c'), '/a/c');
  t.equal(normalizePath('/a/b/%2E/c'), '/a/b/c');
  t.equal(normalizePath('/%61dmin'), '/admin', '%61 is a');
  t.equal(normalizePath('/%41%7e%2D%5f%30'), '/A~-_0');
  t.equal(normalizePath('/a%2Fb'), '/a%2Fb', 'an encoded slash is not a separator in BASE');
  t.equal(normalizePath('/a%2f..%2fb'), '/a%2f..%2fb', 'so this is one segment, not a dot segment');
  t.equal(normalizePath('/%5c%25'), '/%5c%25', 'reserved escapes keep their case');
  t.equal(normalizePath('/%c0%af'), '/%c0%af');
  t.equal(normalizePath('/a%2'), '/a%2', 'a truncated escape is kept');
  t.equal(normalizePath('/a%zz'), '/a%zz', 'an invalid escape is kept');
  t.equal(normalizePath('/a%'), '/a%');
});

t.test('a path holding %00 is invalid', async (t) => {
  t.equal(normalizePath('/a%00'), null);
  t.equal(normalizePath('/xyz/.%00../abc'), null);
  t.equal(normalizePath('/x?q=%00'), '/x', 'only the path counts');
});
