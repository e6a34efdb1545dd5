import { resolve } from 'node:path';
import t from 'tap';
import { parseConfigText } from '../../../src/config/load-config.ts';
import type { ConfigBundle } from '../../../src/config/resource-types.ts';
import { ACCESS_LOG_DEFAULTS, resolveAccessLog } from '../../../src/config/validate-access-log.ts';

/** `Proxy.accessLog` validation and how flags and the document resolve into `AccessLogConfig`. */

function proxy(accessLog: string): ConfigBundle {
  return parseConfigText(
    [
      {
        name: '/etc/meshlet/proxy.yaml',
        text: `apiVersion: meshlet.dev/v1alpha1\nkind: Proxy\nspec:\n  accessLog:${accessLog}`,
      },
    ],
    {},
  );
}

const errors = (b: ConfigBundle): string[] =>
  b.issues
    .filter((i) => i.severity === 'error')
    .map((e) => `${e.path.replace(/^Proxy \S+: /, '')} | ${e.message}`);

t.test('a complete accessLog block; relative paths are the config folder’s', async (t) => {
  const b = proxy(`
    path: logs/access.log
    format: text
    filter: { minStatus: 500, sampling: 12.5 }`);
  t.same(errors(b), []);
  const spec = b.proxy?.spec.accessLog;
  t.same(spec, {
    path: '/etc/meshlet/logs/access.log',
    format: 'text',
    filter: { minStatus: 500, sampling: 12.5 },
  });
  t.same(resolveAccessLog({}, spec), {
    enabled: true,
    path: '/etc/meshlet/logs/access.log',
    format: 'text',
    minStatus: 500,
    sampling: 12.5,
  });
  t.same(
    proxy(`\n    path: "-"\n    enabled: true`).proxy?.spec.accessLog,
    { enabled: true, path: '-' },
    "'-' is stdout",
  );
  t.same(proxy(`\n    filter: {}`).proxy?.spec.accessLog, { filter: {} });
});

t.test('on by default; false turns it off; flags win over the document', async (t) => {
  t.same(resolveAccessLog({}, undefined), ACCESS_LOG_DEFAULTS);
  t.same(ACCESS_LOG_DEFAULTS, { enabled: true, path: '-', format: 'json', minStatus: 0, sampling: 100 });
  const off = proxy(' false').proxy?.spec.accessLog;
  t.same(off, { enabled: false });
  t.equal(resolveAccessLog({}, off).enabled, false);
  t.equal(resolveAccessLog({ accessLog: true }, off).enabled, true, '--access-log turns it back on');
  const doc = { path: '/var/log/a.log', format: 'json' as const, filter: { minStatus: 400 } };
  t.same(resolveAccessLog({ accessLog: 'b.log', accessLogFormat: 'text' }, doc), {
    enabled: true,
    path: resolve('b.log'),
    format: 'text',
    minStatus: 400,
    sampling: 100,
  });
  t.equal(resolveAccessLog({ accessLog: '-' }, doc).path, '-');
  t.equal(resolveAccessLog({ accessLog: 'off' }, doc).enabled, false);
  t.equal(resolveAccessLog({ accessLog: false }, doc).enabled, false, '--no-access-log');
  t.equal(
    resolveAccessLog({ accessLog: true }, doc).path,
    '/var/log/a.log',
    'a bare --access-log keeps the path',
  );
});

t.test('invalid values are reported', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['\n    path: ""', /path must be a file path, or "-" for stdout/],
    ['\n    format: xml', /format/],
    ['\n    filter: { minStatus: 99 }', /minStatus/],
    ['\n    filter: { minStatus: 600 }', /minStatus/],
    ['\n    filter: { sampling: 101 }', /sampling/],
    ['\n    filter: { sampling: -1 }', /sampling/],
    ['\n    filter: { status: 500 }', /status/],
    ['\n    colour: red', /colour/],
    [' 42', /accessLog/],
  ];
  for (const [yaml, message] of cases) {
    const found = errors(proxy(yaml));
    t.ok(
      found.some((e) => message.test(e)),
      `${yaml.trim()}: ${found.join('; ')}`,
    );
  }
});
