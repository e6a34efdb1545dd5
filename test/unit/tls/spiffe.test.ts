import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PeerCertificate } from 'node:tls';
import t from 'tap';
import {
  parseSpiffeUri,
  peerIdentityFromCertificate,
  peerIdentityFromSpiffe,
  spiffeId,
  spiffeUri,
  splitSubjectAltNames,
} from '../../../src/tls/spiffe.ts';

/** A TLS peer certificate object carries many fields; only the SAN string matters here. */
const peer = (subjectaltname: string | undefined): PeerCertificate =>
  ({ subjectaltname }) as unknown as PeerCertificate;

t.test('parseSpiffeUri accepts exactly spiffe://td/ns/NS/sa/SA', async (t) => {
  t.same(parseSpiffeUri('spiffe://cluster.local/ns/default/sa/productpage'), {
    trustDomain: 'cluster.local',
    namespace: 'default',
    serviceAccount: 'productpage',
    uri: 'spiffe://cluster.local/ns/default/sa/productpage',
  });
  t.same(parseSpiffeUri('spiffe://td-1_x/ns/My.Ns/sa/sa_1-b')?.serviceAccount, 'sa_1-b');
  const bad = [
    '',
    'spiffe://',
    'spiffe://cluster.local',
    'spiffe://cluster.local/',
    'spiffe://cluster.local/ns/default',
    'spiffe://cluster.local/ns/default/sa',
    'spiffe://cluster.local/ns/default/sa/',
    'spiffe://cluster.local/ns/default/sa/x/extra',
    'spiffe://cluster.local/ns//sa/x',
    'spiffe://cluster.local/namespace/default/sa/x',
    'spiffe://cluster.local/ns/default/serviceaccount/x',
    'spiffe://cluster.local/sa/x/ns/default',
    'SPIFFE://cluster.local/ns/default/sa/x',
    'spiffe://Cluster.local/ns/default/sa/x',
    'spiffe://cluster.local:8080/ns/default/sa/x',
    'spiffe://user@cluster.local/ns/default/sa/x',
    'spiffe://cluster.local/ns/default/sa/x?q=1',
    'spiffe://cluster.local/ns/default/sa/x#f',
    'spiffe://cluster.local/ns/def%41ult/sa/x',
    'spiffe://cluster.local/ns/../sa/x',
    'spiffe://cluster.local/ns/./sa/x',
    'spiffe://cluster.local/ns/a,b/sa/x',
    'spiffe:///ns/default/sa/x',
    'https://cluster.local/ns/default/sa/x',
    ' spiffe://cluster.local/ns/default/sa/x',
    `spiffe://${'a'.repeat(256)}/ns/default/sa/x`,
    `spiffe://td/ns/default/sa/${'a'.repeat(2040)}`,
  ];
  for (const uri of bad) t.equal(parseSpiffeUri(uri), null, uri);
});

t.test('spiffeUri builds and validates; spiffeId round-trips', async (t) => {
  t.equal(spiffeUri('cluster.local', 'default', 'reviews'), 'spiffe://cluster.local/ns/default/sa/reviews');
  t.throws(() => spiffeUri('Cluster', 'default', 'x'), /trust domain "Cluster"/);
  t.throws(() => spiffeUri('', 'default', 'x'), /trust domain/);
  t.throws(() => spiffeUri('td', 'a/b', 'x'), /namespace "a\/b"/);
  t.throws(() => spiffeUri('td', 'ns', '..'), /service account "\.\."/);
  const id = spiffeId('td', 'ns1', 'sa1');
  t.same(parseSpiffeUri(id.uri), id);
});

t.test('peerIdentityFromSpiffe gives the principal without the scheme', async (t) => {
  const id = parseSpiffeUri('spiffe://cluster.local/ns/foo/sa/bar');
  t.ok(id);
  t.same(peerIdentityFromSpiffe(id!), {
    spiffeId: 'spiffe://cluster.local/ns/foo/sa/bar',
    principal: 'cluster.local/ns/foo/sa/bar',
    trustDomain: 'cluster.local',
    namespace: 'foo',
    serviceAccount: 'bar',
  });
});

t.test('splitSubjectAltNames decodes quoted values and rejects broken quoting', async (t) => {
  t.same(splitSubjectAltNames('DNS:a, URI:spiffe://td/ns/n/sa/s, IP Address:1.2.3.4'), [
    ['DNS', 'a'],
    ['URI', 'spiffe://td/ns/n/sa/s'],
    ['IP Address', '1.2.3.4'],
  ]);
  t.same(splitSubjectAltNames('URI:"a\\u002c URI:spiffe://x", DNS:b'), [
    ['URI', 'a, URI:spiffe://x'],
    ['DNS', 'b'],
  ]);
  t.same(splitSubjectAltNames('URI:"a\\"b"'), [['URI', 'a"b']]);
  t.same(splitSubjectAltNames(''), []);
  t.equal(splitSubjectAltNames('URI:"unterminated'), null);
  t.equal(splitSubjectAltNames('URI:"a"junk, DNS:b'), null);
  t.equal(splitSubjectAltNames('URI:"\\x"'), null, 'invalid JSON escape');
  t.equal(splitSubjectAltNames('no colon here'), null);
});

t.test('peerIdentityFromCertificate reads exactly one spiffe URI SAN', async (t) => {
  t.same(
    peerIdentityFromCertificate(peer('DNS:reviews, URI:spiffe://cluster.local/ns/default/sa/reviews'))
      ?.principal,
    'cluster.local/ns/default/sa/reviews',
  );
  t.same(
    peerIdentityFromCertificate(peer('URI:https://example.com/x, URI:spiffe://td/ns/a/sa/b'))?.spiffeId,
    'spiffe://td/ns/a/sa/b',
    'other URI SANs are ignored',
  );
  t.equal(peerIdentityFromCertificate(peer(undefined)), null, 'no SAN extension');
  t.equal(peerIdentityFromCertificate(peer('')), null);
  t.equal(peerIdentityFromCertificate(peer('DNS:reviews.default.svc')), null, 'DNS only');
  t.equal(
    peerIdentityFromCertificate(peer('URI:spiffe://td/ns/a/sa/b, URI:spiffe://td/ns/a/sa/c')),
    null,
    'two spiffe ids are ambiguous',
  );
  t.equal(peerIdentityFromCertificate(peer('URI:spiffe://td/ns/a')), null, 'not a workload id');
  t.equal(
    peerIdentityFromCertificate(peer('URI:"spiffe://td/ns/a\\u002c URI:spiffe://td/ns/x/sa/y"')),
    null,
    'an escaped comma cannot smuggle a second name',
  );
  t.equal(peerIdentityFromCertificate(peer('URI:"broken')), null);
});

t.test('peerIdentityFromCertificate on real certificates (openssl)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-spiffe-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const make = (alt: string): X509Certificate => {
    const cnf = join(dir, 'san.cnf');
    writeFileSync(cnf, `[req]\ndistinguished_name=dn\n[dn]\n[ext]\nsubjectAltName=@alt\n[alt]\n${alt}\n`);
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']
        .concat(['-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'), '-days', '1', '-subj', '/CN=x'])
        .concat(['-config', cnf, '-extensions', 'ext']),
      { stdio: 'ignore' },
    );
    return new X509Certificate(readFileSync(join(dir, 'c.pem')));
  };
  const good = make('DNS.1=reviews\nURI.1=spiffe://cluster.local/ns/default/sa/reviews\nIP.1=10.0.0.1');
  t.equal(peerIdentityFromCertificate(good)?.serviceAccount, 'reviews');
  const comma = make('URI.1=spiffe://td/ns/a,b/sa/c');
  t.match(comma.subjectAltName, /\\u002c/, 'Node quotes the comma');
  t.equal(peerIdentityFromCertificate(comma), null);
  const two = make('URI.1=spiffe://td/ns/a/sa/b\nURI.2=spiffe://td/ns/a/sa/c');
  t.equal(peerIdentityFromCertificate(two), null);
  const dnsOnly = make('DNS.1=reviews.default.svc.cluster.local');
  t.equal(peerIdentityFromCertificate(dnsOnly), null);
});
