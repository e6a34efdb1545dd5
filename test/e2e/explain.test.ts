/**
 * `meshlet explain` as a user runs it: the built CLI on the header-routing example, with and without
 * the header, as text and as JSON, and the argument and configuration errors (exit 2).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { REPO_ROOT, runCli } from '../helpers/spawn-meshlet.ts';

const EXAMPLE = join(REPO_ROOT, 'config-examples/ab-header-routing.yaml');
const V1 = 'outbound|9080|v1|reviews.default.svc.cluster.local';
const V2 = 'outbound|9080|v2|reviews.default.svc.cluster.local';

t.test('header routing: jason reaches v2, everybody else v1, with the reasons', async (t) => {
  // Started together: each run is a short process of its own.
  const [jason, other, bob] = await Promise.all([
    runCli(['explain', '--config', EXAMPLE, 'GET', 'http://reviews:9080/reviews/1', '-H', 'end-user: jason']),
    runCli(['explain', '--config', EXAMPLE, 'GET', 'http://reviews:9080/reviews/1']),
    runCli([
      'explain',
      '--config',
      EXAMPLE,
      'GET',
      'http://127.0.0.1:15001/reviews/1',
      '-H',
      'Host: reviews:9080',
      '-H',
      'end-user: bob',
      '--json',
    ]),
  ]);
  t.equal(jason.code, 0, jason.stderr);
  const lines = jason.stdout.split('\n');
  t.ok(lines.includes('virtual service: default/reviews (hosts reviews.default.svc.cluster.local)'));
  t.ok(
    lines.includes(
      '  rule 0 (name "jason-to-v2") match 0: matched: header end-user: exact "jason" — end-user is "jason"',
    ),
  );
  t.ok(lines.includes('action: forward (route default/reviews)'));
  t.ok(lines.includes(`  destination ${V2}  weight 100  probability 100 %`));
  t.notMatch(jason.stdout, V1);
  t.match(jason.stdout, /127\.0\.0\.12:9080 {2}weight 1 {2}labels app=reviews,version=v2 {2}tls plaintext/);

  t.equal(other.code, 0, other.stderr);
  const o = other.stdout.split('\n');
  t.ok(
    o.includes(
      '  rule 0 (name "jason-to-v2") match 0: header end-user: exact "jason" — request has no end-user header',
    ),
  );
  t.ok(
    o.includes(
      '  rule 0 (name "jason-to-v2") match 1: header end-user: regex ".*@beta\\.example\\.com" — request has no end-user header',
    ),
  );
  t.ok(o.includes('  rule 1 (name "everybody-else"): matched (no match conditions: takes every request)'));
  t.ok(o.includes(`  destination ${V1}  weight 100  probability 100 %`));

  t.equal(bob.code, 0, bob.stderr);
  const e = JSON.parse(bob.stdout) as {
    request: { authority: string; authoritySource: string };
    rules: { index: number; matched: boolean }[];
    action: { kind: string; destinations: { cluster: string }[] };
  };
  t.equal(e.request.authority, 'reviews:9080', '-H host overrides the URL authority');
  t.equal(e.request.authoritySource, 'host header');
  t.same(
    e.rules.map((r) => [r.index, r.matched]),
    [
      [0, false],
      [1, true],
    ],
  );
  t.equal(e.action.kind, 'forward');
  t.same(
    e.action.destinations.map((d) => d.cluster),
    [V1],
  );
});

t.test('errors exit 2 with a message', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-explain-'));
  const bad = join(dir, 'bad.yaml');
  writeFileSync(
    bad,
    'apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: { name: x }\nspec: { hosts: [] }\n',
  );
  // Started together: each run is a short process of its own.
  const [badUrl, badHeader, invalid] = await Promise.all([
    runCli(['explain', '--config', EXAMPLE, 'GET', 'reviews:9080/x']),
    runCli(['explain', '--config', EXAMPLE, 'GET', 'http://reviews/', '-H', 'end-user']),
    runCli(['explain', '--config', bad, 'GET', 'http://reviews/']),
  ]);
  t.equal(badUrl.code, 2);
  t.match(badUrl.stderr, 'is not an absolute http:// or https:// URL');
  t.equal(badHeader.code, 2);
  t.match(badHeader.stderr, "expected 'name: value'");
  t.equal(invalid.code, 2);
  t.match(invalid.stderr, 'invalid configuration');
});
