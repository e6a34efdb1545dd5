import t from 'tap';
import { checkHostName, expandHost, isCidr, isWildcardHost } from '../../../src/config/host-names.ts';

t.test('short names expand with the namespace given (the referencing resource)', async (t) => {
  t.equal(expandHost('reviews', 'default', 'cluster.local'), 'reviews.default.svc.cluster.local');
  t.equal(expandHost('reviews', 'foo', 'cluster.local'), 'reviews.foo.svc.cluster.local');
  t.equal(expandHost('Reviews', 'foo', 'example.org'), 'reviews.foo.svc.example.org');
});

t.test('names with a dot, wildcards and IPs are not expanded, only lowercased', async (t) => {
  t.equal(expandHost('reviews.prod', 'default', 'cluster.local'), 'reviews.prod');
  t.equal(expandHost('WWW.Example.COM', 'default', 'cluster.local'), 'www.example.com');
  t.equal(expandHost('*', 'default', 'cluster.local'), '*');
  t.equal(expandHost('*.Example.com', 'default', 'cluster.local'), '*.example.com');
  t.equal(expandHost('10.0.0.1', 'default', 'cluster.local'), '10.0.0.1');
  t.equal(expandHost('::1', 'default', 'cluster.local'), '::1');
});

t.test('host shape checks', async (t) => {
  t.equal(checkHostName('a.example.com', false), null);
  t.equal(checkHostName('*.example.com', false), null);
  t.equal(checkHostName('*', true), null);
  t.match(checkHostName('*', false), /bare/);
  t.match(checkHostName('a.*.com', false), /wildcard/);
  t.match(checkHostName('foo_bar.com', false), /DNS label/);
  t.match(checkHostName('', false), /empty/);
  t.ok(isWildcardHost('*.x.com'));
  t.notOk(isWildcardHost('x.com'));
  t.ok(isCidr('10.0.0.0/8'));
  t.notOk(isCidr('10.0.0.0/33'));
  t.notOk(isCidr('10.0.0.0'));
});
