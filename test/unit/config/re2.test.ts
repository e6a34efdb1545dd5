import t from 'tap';
import { compileRe2 } from '../../../src/config/re2.ts';

function re(src: string): RegExp {
  const r = compileRe2(src);
  if (!r.ok) throw new Error(`${src}: ${r.message}`);
  return r.re;
}

function rejection(src: string): string {
  const r = compileRe2(src);
  if (r.ok) throw new Error(`${src} was accepted as ${r.re}`);
  return r.message;
}

t.test('always a full match (Istio example \\d+$)', async (t) => {
  const r = re('\\d+$');
  t.ok(r.test('123'));
  t.notOk(r.test('a123'));
  t.notOk(r.test('123a'));
  t.equal(r.source.startsWith('^(?:'), true);
  t.notOk(re('b.*').test('abar'), 'b.* does not match values that do not start with b');
  t.ok(re('b.*').test('bar'));
  t.notOk(re('a|b').test('ab'), 'alternation is inside the anchors');
  t.ok(re('a|b').test('b'));
});

t.test('the cookie regex of virtual-service-all.yaml', async (t) => {
  const r = re('^(.*?;)?(user=dev-123)(;.*)?');
  t.ok(r.test('user=dev-123'));
  t.ok(r.test('a=b;user=dev-123;c=d'));
  t.notOk(r.test('xuser=dev-123'));
});

t.test('leading flag groups become JS flags', async (t) => {
  t.ok(re('(?i)abc').test('ABC'));
  t.equal(re('(?i)abc').flags.includes('i'), true);
  t.ok(re('(?s)a.b').test('a\nb'));
  t.notOk(re('a.b').test('a\nb'), '. excludes \\n without (?s)');
  t.ok(re('a.b').test('a\rb'), 'RE2 . matches \\r, unlike JS .');
  t.ok(re('(?is)A.B').test('a\nb'));
  t.ok(re('(?i)(?s)A.B').test('a\nb'));
  t.ok(re('(?m)^a$').test('a'));
  t.notOk(re('(?m)a').test('a\na'), 'multi-line flag does not break the full match');
});

t.test('named groups, \\A, \\z, \\Q..\\E, classes and escapes', async (t) => {
  const named = re('(?P<ver>v\\d+)/x');
  t.equal(named.exec('v12/x')?.groups?.['ver'], 'v12');
  t.ok(re('(?<n>a)').test('a'), 'the (?<name>) form is accepted too');
  t.ok(re('\\Aabc\\z').test('abc'));
  t.ok(re('\\Qa.b*\\E').test('a.b*'));
  t.notOk(re('\\Qa.b\\E').test('axb'));
  t.ok(re('[[:alpha:]]+[[:digit:]]').test('abc1'));
  t.notOk(re('[[:alpha:]]+').test('ab1'));
  t.ok(re('/api/v[0-9]+/.*').test('/api/v2/users'));
  t.ok(re('[\\d\\-]+').test('1-2'));
  t.ok(re('[a-]+').test('a-a'));
  t.ok(re('\\pL+').test('héllo'));
  t.ok(re('\\p{Greek}+').test('αβγ'));
  t.ok(re('\\x41\\x{42}').test('AB'));
  t.ok(re('a{2,3}').test('aaa'));
  t.notOk(re('a{2,3}').test('aaaa'));
  t.ok(re('a{,2}').test('a{,2}'), 'a { that is not a repetition is a literal, as in RE2');
  t.ok(re('x*?y').test('xxy'), 'lazy quantifiers are kept');
  t.ok(re('\\s').test(' '));
  t.notOk(re('\\s').test('\u00a0'), 'RE2 \\s is ASCII only');
  t.ok(re('\\.-/').test('.-/'));
});

t.test('rejections with clear messages', async (t) => {
  t.match(rejection('(a)\\1'), /backreference/);
  t.match(rejection('(?=a)b'), /lookahead/);
  t.match(rejection('(?!a)b'), /lookahead/);
  t.match(rejection('(?<=a)b'), /lookbehind/);
  t.match(rejection('(?<!a)b'), /lookbehind/);
  t.match(rejection('a*+'), /possessive/);
  t.match(rejection('a++'), /possessive/);
  t.match(rejection('(?>a)'), /atomic/);
  t.match(rejection(''), /empty regex/);
  t.match(rejection('a'.repeat(1025)), /longer than 1024/);
  t.ok(compileRe2('a'.repeat(1024)).ok, '1024 characters are allowed');
  t.match(rejection('a**'), /bad repetition/);
  t.match(rejection('*a'), /missing argument/);
  t.match(rejection('(?i:a)'), /inline flags/);
  t.match(rejection('a(?i)b'), /inline flags/);
  t.match(rejection('(?U)a'), /ungreedy/);
  t.match(rejection('a\\Z'), /\\Z/);
  t.match(rejection('[a'), /missing closing \]/);
  t.match(rejection('(a'), /invalid regex/);
  t.match(rejection('\\k'), /invalid escape/);
  t.match(rejection('a{1001}'), /1000/);
});

t.test('unanchored compile for uriRegexRewrite', async (t) => {
  const r = compileRe2('^/service/([^/]+)(/.*)$', { anchor: false, extraFlags: 'g' });
  t.ok(r.ok);
  if (r.ok) {
    t.equal('/service/foo/bar'.replace(r.re, '/customprefix$2/$1'), '/customprefix/bar/foo');
    t.ok(r.re.global);
  }
});
