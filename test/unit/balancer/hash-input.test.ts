import t from 'tap';
import {
  compileHashInput,
  cookieValue,
  headerValue,
  NO_HASH,
  queryValue,
} from '../../../src/balancer/hash-input.ts';
import { hashKey } from '../../../src/balancer/key-hash.ts';
import { ctx } from './cluster-helpers.ts';
import { sequence } from './sim-helpers.ts';

t.test('header values: absent, one, several joined with a comma', async (t) => {
  t.equal(headerValue(['host', 'a'], 'x-user'), undefined);
  t.equal(headerValue(['x-user', 'alice', 'host', 'a'], 'x-user'), 'alice');
  t.equal(headerValue(['x-user', 'a', 'host', 'h', 'x-user', 'b'], 'x-user'), 'a,b');
  t.equal(headerValue(['x-user', ''], 'x-user'), '', 'an empty value is still a value');

  const input = compileHashInput({ httpHeaderName: 'X-User' }, Math.random)!;
  t.equal(input.kind, 'header');
  t.equal(input.hash(ctx(['x-user', 'alice'])), hashKey('alice'), 'configured name is matched lowercase');
  t.equal(input.hash(ctx(['x-user', 'a', 'x-user', 'b'])), hashKey('a,b'));
  t.equal(input.hash(ctx([])), NO_HASH);
  t.equal(input.issue(), null);
});

t.test('cookie values from one or several cookie headers', async (t) => {
  t.equal(cookieValue(['cookie', 'a=1; sticky=xyz; b=2'], 'sticky'), 'xyz');
  t.equal(cookieValue(['cookie', 'a=1', 'cookie', 'sticky=second'], 'sticky'), 'second');
  t.equal(cookieValue(['cookie', 'sticky="quoted"'], 'sticky'), 'quoted');
  t.equal(cookieValue(['cookie', 'notsticky=1; stickyx=2'], 'sticky'), undefined, 'names match whole');
  t.equal(cookieValue(['cookie', 'sticky=first; sticky=again'], 'sticky'), 'first');
  t.equal(cookieValue(['cookie', 'flag; sticky=v'], 'sticky'), 'v', 'a part without = is skipped');
  t.equal(cookieValue(['x-cookie', 'sticky=v'], 'sticky'), undefined);
});

t.test('query parameter: first value, decoded', async (t) => {
  t.equal(queryValue('/p', 'u'), undefined);
  t.equal(queryValue('/p?x=1&u=alice&u=bob', 'u'), 'alice');
  t.equal(queryValue('/p?u=a%20b', 'u'), 'a b');
  t.equal(queryValue('/p?u=a+b', 'u'), 'a b', '+ is a space in query strings');
  t.equal(queryValue('/p?%75=decoded-name', 'u'), 'decoded-name');
  t.equal(queryValue('/p?u', 'u'), '', 'a bare name has the empty value');
  t.equal(queryValue('/p?u=%zz', 'u'), '%zz', 'a malformed escape stays as sent');
  t.equal(queryValue('/p?a=1&&u=2', 'u'), '2');
  t.equal(queryValue('/p?a=1#u=2', 'u'), undefined, 'the fragment is not the query');
  t.equal(queryValue('/p?uu=1&u=x=y', 'u'), 'x=y');
  const input = compileHashInput({ httpQueryParameterName: 'u' }, Math.random)!;
  t.equal(input.kind, 'query');
  t.equal(input.hash(ctx([], '/p?u=a%20b')), input.hash(ctx([], '/q?z=0&u=a+b')));
  t.equal(input.hash(ctx([], '/p?v=1')), NO_HASH);
});

t.test('source ip, with IPv4-mapped IPv6 folded to IPv4', async (t) => {
  const input = compileHashInput({ useSourceIp: true }, Math.random)!;
  t.equal(input.kind, 'source-ip');
  t.equal(input.hash(ctx([], '/', '10.1.2.3')), hashKey('10.1.2.3'));
  t.equal(input.hash(ctx([], '/', '::ffff:10.1.2.3')), hashKey('10.1.2.3'));
  t.equal(input.hash(ctx([], '/', '2001:db8::1')), hashKey('2001:db8::1'));
  t.equal(input.hash(ctx([], '/', '')), NO_HASH);
  t.equal(compileHashInput({ useSourceIp: false }, Math.random), null, 'no key at all');
});

t.test(
  'cookie issuance: Set-Cookie format with ttl, session cookie with ttl 0, none without ttl',
  async (t) => {
    const withTtl = compileHashInput(
      {
        httpCookie: {
          name: 'sticky',
          path: '/api',
          ttl: 3_600_000,
          attributes: [{ name: 'SameSite', value: 'Lax' }, { name: 'Secure' }],
        },
      },
      sequence(0, 0.5, 0.999),
    )!;
    t.equal(withTtl.kind, 'cookie');
    const issued = withTtl.issue()!;
    t.equal(
      issued.setCookie,
      `sticky=${'0080ff'.repeat(5)}00; Path=/api; Max-Age=3600; HttpOnly; SameSite=Lax; Secure`,
    );
    t.equal(issued.hash, hashKey(`${'0080ff'.repeat(5)}00`), 'the hash is the made-up value');
    t.equal(
      withTtl.hash(ctx(['cookie', `sticky=${'0080ff'.repeat(5)}00`])),
      issued.hash,
      'the client sending the cookie back hashes the same',
    );

    const session = compileHashInput({ httpCookie: { name: 's', ttl: 0 } }, sequence(0.25))!;
    t.equal(session.issue()!.setCookie, `s=${'40'.repeat(16)}; HttpOnly`, 'no Max-Age, no Path');

    const short = compileHashInput({ httpCookie: { name: 's', ttl: 1_500 } }, sequence(0))!;
    t.match(short.issue()!.setCookie, /; Max-Age=2; /, 'sub-second parts round up');

    const noTtl = compileHashInput({ httpCookie: { name: 's', path: '/' } }, Math.random)!;
    t.equal(noTtl.issue(), null, 'without ttl no cookie is made up');
    t.equal(noTtl.hash(ctx()), NO_HASH);
  },
);

t.test('a policy without any key compiles to null', async (t) => {
  t.equal(compileHashInput({ ringHash: { minimumRingSize: 64 } }, Math.random), null);
});
