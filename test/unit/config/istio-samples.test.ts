/**
 * Every Istio sample under shared/istio-samples/ must load with zero errors (warnings allowed),
 * the security ones (PeerAuthentication, AuthorizationPolicy) included. se-example.yaml names client
 * certificate files that are not part of the samples: they are warnings (pinned below).
 */
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { formatIssue } from '../../../src/config/format-issue.ts';
import { loadConfig, parseConfigText } from '../../../src/config/load-config.ts';
import type { ConfigIssue } from '../../../src/config/resource-types.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const samples = resolve(repoRoot, '../shared/istio-samples');

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) out.push(...walk(full));
    else if (/\.ya?ml$/.test(name)) out.push(full);
  }
  return out;
}

/** Fills the Go text/template placeholders of the integration-test templates. */
function fillTemplate(text: string, values: Readonly<Record<string, string>>): string {
  return text
    .split('\n')
    .filter((line) => !/^\s*\{\{-?\s*(if|end)\b[^}]*\}\}\s*$/.test(line))
    .join('\n')
    .replace(/\{\{\s*\.(\w+)\s*\}\}/g, (_m, key: string) => {
      const v = values[key];
      if (v === undefined) throw new Error(`no value for template key ${key}`);
      return v;
    });
}

const errorsOf = (issues: readonly ConfigIssue[]) => issues.filter((i) => i.severity === 'error');

t.test('shared/istio-samples is present beside the repository', async (t) => {
  t.ok(existsSync(samples), `expected ${samples}`);
});

const files = existsSync(samples) ? walk(samples) : [];

/** Names TLS files that the samples folder does not hold (see the test for it below). */
const SE_EXAMPLE = 'tests/testdata/config/se-example.yaml';

t.test('every sample loads with zero errors', async (t) => {
  let checked = 0;
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    if (text.includes('{{')) continue; // templates: see below
    const bundle = await loadConfig(file, {});
    const errors = errorsOf(bundle.issues);
    t.same(errors.map(formatIssue), [], relative(samples, file));
    if (text.includes('networking.istio.io')) {
      const n =
        bundle.serviceEntries.length +
        bundle.virtualServices.length +
        bundle.destinationRules.length +
        bundle.sidecars.length;
      t.ok(n > 0, `${relative(samples, file)} produced resources`);
    }
    const kinds = [...text.matchAll(/^kind:\s*(PeerAuthentication|AuthorizationPolicy)\s*$/gm)].map(
      (m) => m[1],
    );
    t.equal(
      bundle.peerAuthentications.length + bundle.authorizationPolicies.length,
      kinds.length,
      `${relative(samples, file)}: every security document is kept`,
    );
    checked++;
  }
  t.ok(checked >= 28, `checked ${checked} sample files`);
});

t.test('security samples: the precedence sample and the deny-and-allow pair', async (t) => {
  const pa = await loadConfig(
    join(
      samples,
      'pilot/pkg/serviceregistry/ambient/testdata/peer-authn-permissive-root-strict-namespace-permissive-workload-in.yaml',
    ),
    {},
  );
  t.same(pa.issues, []);
  t.same(
    pa.peerAuthentications.map((r) => [
      `${r.meta.namespace}/${r.meta.name}`,
      r.spec.selector ?? null,
      r.spec.mode,
      [...r.spec.portLevelMtls],
    ]),
    [
      ['istio-system/default-mesh', null, 'PERMISSIVE', []],
      ['foo/default-foo', null, 'STRICT', []],
      ['foo/workload', { app: 'a' }, 'UNSET', [[9090, 'PERMISSIVE']]],
    ],
  );
  const strict = await loadConfig(join(samples, 'tests/testdata/config/peer-authn-strict.yaml'), {});
  t.same(strict.issues, []);
  t.same(
    strict.peerAuthentications.map((r) => [r.meta.namespace, r.spec.mode]),
    [['testns', 'STRICT']],
  );
  const pair = await loadConfig(
    join(samples, 'pilot/pkg/security/authz/builder/testdata/http/deny-and-allow-in.yaml'),
    {},
  );
  t.same(pair.issues, []);
  t.same(
    pair.authorizationPolicies.map((r) => [r.meta.name, r.spec.action, r.spec.rules]),
    [
      ['httpbin-deny', 'DENY', [{ from: [{ principals: ['deny'] }], to: [], when: [] }]],
      ['httpbin-allow', 'ALLOW', [{ from: [{ principals: ['allow'] }], to: [], when: [] }]],
    ],
  );
});

t.test(
  'security samples: the all-fields policy loads, warning only about what meshlet cannot see',
  async (t) => {
    const b = await loadConfig(
      join(samples, 'pilot/pkg/security/authz/builder/testdata/http/allow-full-rule-in.yaml'),
      {},
    );
    t.same(errorsOf(b.issues), []);
    const policy = b.authorizationPolicies[0];
    t.equal(policy?.spec.rules.length, 2);
    t.same(policy?.spec.selector, { app: 'httpbin', version: 'v1' });
    t.equal(policy?.spec.rules[1]?.when.length, 14, 'every condition is kept');
    t.same(Object.keys(policy?.spec.rules[1]?.from[0] ?? {}).sort(), [
      'ipBlocks',
      'namespaces',
      'notIpBlocks',
      'notNamespaces',
      'notPrincipals',
      'notRemoteIpBlocks',
      'notRequestPrincipals',
      'principals',
      'remoteIpBlocks',
      'requestPrincipals',
    ]);
    const reasons = new Set(
      b.issues.map((i) =>
        /does not validate JWTs/.test(i.message)
          ? 'jwt'
          : /Envoy dynamic metadata/.test(i.message)
            ? 'experimental'
            : /methods match case-sensitively/.test(i.message)
              ? 'method case'
              : i.message,
      ),
    );
    t.same([...reasons].sort(), ['experimental', 'jwt', 'method case']);
  },
);

t.test(
  'se-example.yaml: its missing TLS files are warnings; with them in place it loads without',
  async (t) => {
    const file = join(samples, SE_EXAMPLE);
    const asIs = await loadConfig(file, {});
    const dir = join(samples, 'tests/testdata/config');
    t.same(errorsOf(asIs.issues), []);
    const later = '; connections to this destination fail (UF) until it can be read';
    const warned = asIs.issues.filter((i) => i.severity === 'warning').map((i) => i.message);
    for (const m of [
      `clientCertificate file ${join(dir, 'tests/testdata/certs/default/cert-chain.pem')} does not exist${later}`,
      `privateKey file ${join(dir, 'tests/testdata/certs/default/key.pem')} does not exist${later}`,
      `caCertificates file ${join(dir, 'tests/testdata/certs/default/root-cert.pem')} does not exist${later}`,
    ]) {
      t.ok(warned.includes(m), m);
    }
    const copy = mkdtempSync(join(tmpdir(), 'meshlet-se-example-'));
    copyFileSync(file, join(copy, 'se-example.yaml'));
    mkdirSync(join(copy, 'tests/testdata/certs/default'), { recursive: true });
    for (const name of ['cert-chain.pem', 'key.pem', 'root-cert.pem']) {
      writeFileSync(join(copy, 'tests/testdata/certs/default', name), 'PEM');
    }
    const withFiles = await loadConfig(join(copy, 'se-example.yaml'), {});
    t.same(errorsOf(withFiles.issues).map(formatIssue), []);
    const dr = withFiles.destinationRules.find((r) => r.meta.name === 'mtls-mongocluster');
    t.same(dr?.spec.trafficPolicy?.tls, {
      mode: 'MUTUAL',
      clientCertificate: join(copy, 'tests/testdata/certs/default/cert-chain.pem'),
      privateKey: join(copy, 'tests/testdata/certs/default/key.pem'),
      caCertificates: join(copy, 'tests/testdata/certs/default/root-cert.pem'),
      sni: 'v1.mymongodb.somedomain',
      subjectAltNames: ['service.mongodb.somedomain'],
    });
  },
);

t.test('integration templates load once filled', async (t) => {
  const dir = join(samples, 'tests/integration/pilot/testdata');
  const shifting = fillTemplate(readFileSync(join(dir, 'traffic-shifting.yaml'), 'utf8'), {
    Name: 'shift',
    Namespace: 'echo',
    Host0: 'a',
    Host1: 'b',
    Host2: 'c.other.svc.cluster.local',
    Weight0: '50',
    Weight1: '50',
    Weight2: '0',
  });
  const b1 = parseConfigText([{ name: 'traffic-shifting.yaml', text: shifting }], {});
  t.same(errorsOf(b1.issues), []);
  const vs = b1.virtualServices[0];
  t.same(
    vs?.spec.http[0]?.route.map((r) => [r.destination.host, r.weight]),
    [
      ['a.echo.svc.cluster.local', 50],
      ['b.echo.svc.cluster.local', 50],
      ['c.other.svc.cluster.local', 0],
    ],
    'short names expand with the namespace of the VirtualService',
  );

  const mirrorTemplate = readFileSync(join(dir, 'traffic-mirroring-template.yaml'), 'utf8');
  const withPercent = fillTemplate(
    mirrorTemplate.replace(/\{\{- if not \.Absent \}\}\n/, '').replace(/\{\{- end \}\}\n?/, ''),
    { Name: 'mirror', MirrorHost: 'c', Percent: '50' },
  );
  const b2 = parseConfigText([{ name: 'mirror.yaml', text: withPercent }], {});
  t.same(errorsOf(b2.issues), []);
  t.same(b2.virtualServices[0]?.spec.http[0]?.mirrors, [
    { destination: { host: 'c.default.svc.cluster.local' }, fraction: 0.5 },
  ]);
  const absent = fillTemplate(
    mirrorTemplate.replace(/\{\{- if not \.Absent \}\}[\s\S]*?\{\{- end \}\}\n?/, ''),
    {
      Name: 'mirror',
      MirrorHost: 'c',
    },
  );
  const b3 = parseConfigText([{ name: 'mirror.yaml', text: absent }], {});
  t.same(errorsOf(b3.issues), []);
  t.equal(
    b3.virtualServices[0]?.spec.http[0]?.mirrors[0]?.fraction,
    1,
    'mirrorPercentage absent means 100 %',
  );
});

t.test('the whole samples folder of bookinfo loads as one folder', async (t) => {
  const dir = join(samples, 'samples/bookinfo/networking');
  const bundle = await loadConfig(dir, { namespace: 'bookinfo' });
  t.same(errorsOf(bundle.issues), []);
  t.equal(bundle.files.length, readdirSync(dir).filter((n) => n.endsWith('.yaml')).length);
  t.ok(bundle.virtualServices.every((v) => v.meta.namespace === 'bookinfo'));
  t.ok(
    bundle.virtualServices.some((v) => v.spec.hosts.includes('reviews.bookinfo.svc.cluster.local')),
    'the namespace option drives short-name expansion',
  );
});
