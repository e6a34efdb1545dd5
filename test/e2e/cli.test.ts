import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { VERSION } from '../../src/version.ts';
import { REPO_ROOT, runCli, SHARED } from '../helpers/spawn-meshlet.ts';

function yamlFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...yamlFiles(p));
    else if (/\.ya?ml$/.test(name)) out.push(p);
  }
  return out;
}

t.test('--version and --help', async (t) => {
  const v = await runCli(['--version']);
  t.equal(v.code, 0);
  t.equal(v.stdout.trim(), VERSION);
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
  t.equal(VERSION, pkg.version, 'src/version.ts matches package.json');
  for (const args of [['--help'], ['run', '--help'], ['validate', '--help'], ['demo', '--help']]) {
    const h = await runCli(args);
    t.equal(h.code, 0, `${args.join(' ')} exits 0`);
    t.match(h.stdout, /Usage: meshlet/);
  }
  const run = await runCli(['run', '--help']);
  for (const flag of [
    '--config',
    '--outbound-port',
    '--inbound-port',
    '--app',
    '--admin-port',
    '--namespace',
    '--log-level',
    '--engine',
    '--trust-domain',
    '--service-account',
    '--identity-dir',
  ]) {
    t.match(run.stdout, flag, `run --help lists ${flag}`);
  }
});

t.test('bad arguments exit 2', async (t) => {
  t.equal((await runCli(['run', '--config', 'x.yaml', '--engine', 'nginx'])).code, 2);
  t.equal((await runCli(['run', '--config', 'x.yaml', '--admin-port', 'abc'])).code, 2);
  t.equal((await runCli(['no-such-command'])).code, 2);
  const missing = await runCli(['run']);
  t.equal(missing.code, 2);
  t.match(missing.stderr, /--config/);
});

t.test('every sample from Istio validates, the security ones included', async (t) => {
  const files = yamlFiles(join(SHARED, 'istio-samples')).filter((f) => {
    const text = readFileSync(f, 'utf8');
    // Go templates ({{ .Var }}) are filled in and loaded by test/unit/config; here the files run as they are.
    return /(networking|security)\.istio\.io/.test(text) && !text.includes('{{');
  });
  t.ok(files.length >= 18, `${files.length} sample files found`);
  t.ok(
    files.filter((f) => /security\.istio\.io/.test(readFileSync(f, 'utf8'))).length >= 4,
    'security samples among them',
  );
  for (const f of files) {
    const r = await runCli(['validate', f]);
    t.equal(r.code, 0, `${f.slice(SHARED.length + 1)} is valid\n${r.stdout}`);
  }
});

t.test('every config example validates', async (t) => {
  for (const f of yamlFiles(join(REPO_ROOT, 'config-examples'))) {
    const r = await runCli(['validate', f]);
    t.equal(r.code, 0, `${f} is valid\n${r.stdout}`);
  }
});

t.test('a broken file exits 2 naming line and column', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-cli-'));
  const bad = join(dir, 'bad.yaml');
  writeFileSync(
    bad,
    [
      'apiVersion: networking.istio.io/v1',
      'kind: VirtualService',
      'metadata: { name: r }',
      'spec:',
      '  hosts: [reviews]',
      '  http:',
      '    - route:',
      '        - destination: { host: reviews }',
      '          weight: "heavy"',
      '',
    ].join('\n'),
  );
  const r = await runCli(['validate', bad]);
  t.equal(r.code, 2);
  t.match(r.stdout, /bad\.yaml:9:\d+: error: .*weight/);
  const start = await runCli([
    'run',
    '--config',
    bad,
    '--admin-port',
    '0',
    '--outbound-port',
    '0',
    '--inbound-port',
    '0',
  ]);
  t.equal(start.code, 2, 'run refuses to start on an invalid configuration');
  t.match(start.stderr, /bad\.yaml:9:\d+/);

  const syntax = join(dir, 'syntax.yaml');
  writeFileSync(syntax, 'kind: ServiceEntry\nspec:\n  hosts: [a\n  ports: }\n');
  const s = await runCli(['validate', syntax]);
  t.equal(s.code, 2);
  t.match(s.stdout, /syntax\.yaml:\d+:\d+: error/);
});

t.test(
  'security resources validate; CUSTOM authorization and bad rules exit 2 naming the place',
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'meshlet-cli-'));
    const ok = join(dir, 'security.yaml');
    writeFileSync(
      ok,
      [
        'apiVersion: security.istio.io/v1',
        'kind: PeerAuthentication',
        'metadata: { name: strict }',
        'spec:',
        '  mtls: { mode: STRICT }',
        '---',
        'apiVersion: security.istio.io/v1',
        'kind: AuthorizationPolicy',
        'metadata: { name: productpage-only }',
        'spec:',
        '  rules:',
        '  - from: [{ source: { principals: [cluster.local/ns/default/sa/productpage] } }]',
        '---',
        'apiVersion: security.istio.io/v1',
        'kind: RequestAuthentication',
        'metadata: { name: jwt }',
        'spec:',
        '  jwtRules: [{ issuer: https://issuer.example.com }]',
        '',
      ].join('\n'),
    );
    const r = await runCli(['validate', ok]);
    t.equal(r.code, 0, r.stdout);
    t.match(
      r.stdout,
      /security\.yaml:15:7: warning: RequestAuthentication default\/jwt: kind: meshlet does not validate JWTs/,
    );
    t.notMatch(r.stdout, / error: /);
    t.match(r.stdout, /security\.yaml: valid: 2 resource\(s\), 0 error\(s\), 1 warning\(s\)/);

    const bad = join(dir, 'custom.yaml');
    writeFileSync(
      bad,
      [
        'apiVersion: security.istio.io/v1',
        'kind: AuthorizationPolicy',
        'metadata: { name: ext }',
        'spec:',
        '  action: CUSTOM',
        '  provider: { name: opa }',
        '  rules: [{ to: [{ operation: { paths: ["/a*b"] } }] }]',
        '',
      ].join('\n'),
    );
    const c = await runCli(['validate', bad]);
    t.equal(c.code, 2);
    t.match(
      c.stdout,
      /custom\.yaml:5:11: error: AuthorizationPolicy default\/ext: spec\.action: action CUSTOM \(ext-authz\) is not supported/,
    );
    t.match(
      c.stdout,
      /custom\.yaml:7:\d+: error: .*spec\.rules\[0\]\.to\[0\]\.operation\.paths\[0\]: "\/a\*b"/,
    );
  },
);
