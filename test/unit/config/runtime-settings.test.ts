import { join, resolve } from 'node:path';
import t from 'tap';
import {
  DEFAULTS,
  MAX_TIMER_MS,
  parseHostPort,
  resolveSettings,
  SettingsError,
} from '../../../src/config/runtime-settings.ts';
import {
  DEFAULT_MIN_RETRIES_PER_SECOND,
  DEFAULT_RETRY_BUDGET_TTL_MS,
  DEFAULT_RETRY_RATIO,
} from '../../../src/resilience/retry-budget.ts';

t.test('defaults without a Proxy document', async (t) => {
  const s = resolveSettings({}, null);
  t.same(s.retryBudget, { retryRatio: 0.2, minRetriesPerSecond: 10, ttlMs: 10_000 });
  t.same(
    s.retryBudget,
    {
      retryRatio: DEFAULT_RETRY_RATIO,
      minRetriesPerSecond: DEFAULT_MIN_RETRIES_PER_SECOND,
      ttlMs: DEFAULT_RETRY_BUDGET_TTL_MS,
    },
    'the retry budget defaults are the budget module’s own',
  );
  t.equal(s.dnsRefreshRateMs, 30_000);
  t.equal(DEFAULTS.dnsRefreshRateMs, 30_000);
  t.equal(s.engine, 'h1');
  t.equal(s.outboundPort, 15001);
  t.equal(s.drainTimeoutMs, 10_000);
  t.equal(s.app, null);
});

t.test('the Proxy document fills retryBudget field by field, and dnsRefreshRate', async (t) => {
  const s = resolveSettings(
    {},
    { retryBudget: { retryRatio: 0.5, ttl: 60_000 }, dnsRefreshRate: 5000, drainTimeoutMs: 1000 },
  );
  t.same(s.retryBudget, { retryRatio: 0.5, minRetriesPerSecond: 10, ttlMs: 60_000 });
  t.equal(s.dnsRefreshRateMs, 5000);
  t.equal(s.drainTimeoutMs, 1000);
  const zero = resolveSettings({}, { retryBudget: { retryRatio: 0, minRetriesPerSecond: 0 } });
  t.same(
    zero.retryBudget,
    { retryRatio: 0, minRetriesPerSecond: 0, ttlMs: 10_000 },
    'explicit zeros are kept, not replaced by defaults',
  );
});

t.test('flags override the Proxy document', async (t) => {
  const s = resolveSettings(
    { outboundPort: 0, app: '9000', drainTimeoutMs: 5 },
    { outboundPort: 16001, app: '10.0.0.1:80', drainTimeoutMs: 1000 },
  );
  t.equal(s.outboundPort, 0);
  t.same(s.app, { host: '127.0.0.1', port: 9000 });
  t.equal(s.drainTimeoutMs, 5);
  t.throws(() => resolveSettings({ app: 'nope' }, null), /--app must be HOST:PORT/);
});

t.test(
  'identity defaults: cluster.local, istio-system, default account, no identity, no workloads',
  async (t) => {
    const s = resolveSettings({}, null);
    t.equal(s.trustDomain, 'cluster.local');
    t.equal(s.rootNamespace, 'istio-system');
    t.equal(s.serviceAccount, 'default');
    t.equal(s.identity, null);
    t.same(s.workloads, []);
    t.equal(s.mode, 'sidecar');
  },
);

t.test('trustDomain and serviceAccount: flag, then document; rootNamespace from the document', async (t) => {
  const doc = { trustDomain: 'example.org', serviceAccount: 'reviews', rootNamespace: 'mesh' };
  const fromDoc = resolveSettings({}, doc);
  t.equal(fromDoc.trustDomain, 'example.org');
  t.equal(fromDoc.serviceAccount, 'reviews');
  t.equal(fromDoc.rootNamespace, 'mesh');
  const fromFlags = resolveSettings({ trustDomain: 'flag.org', serviceAccount: 'flag-sa' }, doc);
  t.equal(fromFlags.trustDomain, 'flag.org');
  t.equal(fromFlags.serviceAccount, 'flag-sa');
});

t.test('identity: ca gets its 24h default lifetime; files pass through; paths absolute', async (t) => {
  const ca = resolveSettings(
    {},
    { identity: { kind: 'ca', caCertFile: '/ca/cert.pem', caKeyFile: '/ca/key.pem' } },
  );
  t.same(ca.identity, {
    kind: 'ca',
    caCertFile: '/ca/cert.pem',
    caKeyFile: '/ca/key.pem',
    certTtl: 86_400_000,
  });
  t.equal(DEFAULTS.certTtlMs, 24 * 3600 * 1000);
  const caTtl = resolveSettings(
    {},
    {
      identity: {
        kind: 'ca',
        caCertFile: 'rel/cert.pem',
        caKeyFile: '/ca/key.pem',
        trustBundleFile: 'bundle.pem',
        certTtl: 60_000,
      },
    },
  );
  t.same(
    caTtl.identity,
    {
      kind: 'ca',
      caCertFile: resolve('rel/cert.pem'),
      caKeyFile: '/ca/key.pem',
      trustBundleFile: resolve('bundle.pem'),
      certTtl: 60_000,
    },
    'a path that is still relative (a document built in code) is made absolute',
  );
  const files = resolveSettings(
    {},
    { identity: { kind: 'files', certFile: '/c.pem', keyFile: 'k.pem', trustBundleFile: '/b.pem' } },
  );
  t.same(files.identity, {
    kind: 'files',
    certFile: '/c.pem',
    keyFile: resolve('k.pem'),
    trustBundleFile: '/b.pem',
  });
});

t.test('--identity-dir means files identity from DIR/cert.pem, key.pem, ca.pem and wins', async (t) => {
  const s = resolveSettings(
    { identityDir: 'certs' },
    { identity: { kind: 'ca', caCertFile: '/ca/cert.pem', caKeyFile: '/ca/key.pem' } },
  );
  t.same(s.identity, {
    kind: 'files',
    certFile: join(resolve('certs'), 'cert.pem'),
    keyFile: join(resolve('certs'), 'key.pem'),
    trustBundleFile: join(resolve('certs'), 'ca.pem'),
  });
});

t.test('node mode: workloads resolved with the proxy namespace, default account and shared CA', async (t) => {
  const ca = { kind: 'ca', caCertFile: '/ca/cert.pem', caKeyFile: '/ca/key.pem' } as const;
  const own = {
    kind: 'files',
    certFile: '/r/c.pem',
    keyFile: '/r/k.pem',
    trustBundleFile: '/r/b.pem',
  } as const;
  const s = resolveSettings(
    { namespace: 'shop' },
    {
      mode: 'node',
      identity: ca,
      workloads: [
        {
          name: 'reviews',
          serviceAccount: 'reviews',
          labels: { app: 'reviews' },
          inboundPort: 15106,
          app: '127.0.0.1:9080',
        },
        { name: 'ratings', namespace: 'data', inboundPort: 0, app: '[::1]:9081', identity: own },
      ],
    },
  );
  t.equal(s.mode, 'node');
  t.same(s.workloads, [
    {
      name: 'reviews',
      namespace: 'shop',
      serviceAccount: 'reviews',
      labels: { app: 'reviews' },
      inboundHost: '0.0.0.0',
      inboundPort: 15106,
      app: { host: '127.0.0.1', port: 9080 },
      identity: { ...ca, certTtl: 86_400_000 },
    },
    {
      name: 'ratings',
      namespace: 'data',
      serviceAccount: 'default',
      labels: {},
      inboundHost: '0.0.0.0',
      inboundPort: 0,
      app: { host: '::1', port: 9081 },
      identity: own,
    },
  ]);
  const none = resolveSettings(
    {},
    { mode: 'node', workloads: [{ name: 'a', inboundPort: 0, app: '127.0.0.1:1' }] },
  );
  t.equal(none.workloads[0]?.identity, null, 'no identity anywhere: plaintext');
});

t.test('settings that cannot work throw SettingsError (the CLI exits 2)', async (t) => {
  const w = (inboundPort: number) => ({
    mode: 'node' as const,
    workloads: [{ name: 'a', inboundPort, app: '127.0.0.1:1' }],
  });
  t.throws(() => resolveSettings({ outboundPort: 15106 }, w(15106)), {
    constructor: SettingsError,
    message: 'workload a: inboundPort 15106 is also the outbound port',
  });
  t.throws(() => resolveSettings({ adminPort: 15106 }, w(15106)), {
    message: 'workload a: inboundPort 15106 is also the admin port',
  });
  t.doesNotThrow(
    () => resolveSettings({ outboundPort: 0, adminPort: 0 }, w(0)),
    'port 0 clashes with nothing',
  );
  t.throws(
    () => resolveSettings({}, { mode: 'node', workloads: [{ name: 'a', inboundPort: 1, app: 'nope' }] }),
    { constructor: SettingsError, message: 'workload a: app must be HOST:PORT, got "nope"' },
  );
  const twoWorkloads = {
    mode: 'node' as const,
    workloads: [
      { name: 'a', inboundPort: 0, app: '127.0.0.1:1' },
      { name: 'b', inboundPort: 0, app: '127.0.0.1:2' },
    ],
  };
  t.throws(() => resolveSettings({ identityDir: '/certs' }, twoWorkloads), {
    constructor: SettingsError,
    message:
      'workloads a, b would share one certificate from /certs/cert.pem; give each workload its own identity.files, or use identity.ca',
  });
  t.throws(() => resolveSettings({ trustDomain: 'Example.org' }, null), {
    constructor: SettingsError,
    message: /--trust-domain must be a SPIFFE trust domain/,
  });
  t.throws(() => resolveSettings({ serviceAccount: 'a/b' }, null), {
    constructor: SettingsError,
    message: /--service-account must be a Kubernetes service account name, got "a\/b"/,
  });
  t.throws(() => resolveSettings({ app: 'nope' }, null), {
    constructor: SettingsError,
    name: 'SettingsError',
  });
});

t.test('parseHostPort', async (t) => {
  t.same(parseHostPort('[::1]:8080'), { host: '::1', port: 8080 });
  t.same(parseHostPort('app:80'), { host: 'app', port: 80 });
  t.equal(parseHostPort('app:0'), null);
  t.equal(parseHostPort('app:65536'), null);
  t.equal(parseHostPort('app'), null);
});

t.test('MAX_TIMER_MS is the largest delay Node.js timers honour', async (t) => {
  t.equal(MAX_TIMER_MS, 2 ** 31 - 1);
  // One more and Node fires the timer after 1 ms (with a TimeoutOverflowWarning): the reason for the cap.
  const warnings: string[] = [];
  const onWarning = (w: Error): void => {
    warnings.push(w.name);
  };
  process.on('warning', onWarning);
  t.teardown(() => {
    process.off('warning', onWarning);
  });
  const fired = await new Promise<boolean>((resolve) => {
    const overflow = setTimeout(() => resolve(true), MAX_TIMER_MS + 1);
    setTimeout(() => {
      clearTimeout(overflow);
      resolve(false);
    }, 200);
  });
  t.equal(fired, true, 'a timer one past the limit fires at once');
  const held = await new Promise<boolean>((resolve) => {
    const ok = setTimeout(() => resolve(true), MAX_TIMER_MS);
    setTimeout(() => {
      clearTimeout(ok);
      resolve(false);
    }, 50);
  });
  t.equal(held, false, 'a timer at the limit waits');
  await new Promise((r) => setImmediate(r));
  t.ok(warnings.includes('TimeoutOverflowWarning'));
});

t.test('adminHost: 127.0.0.1 by default, the Proxy document, then the flag', async (t) => {
  t.equal(resolveSettings({}, null).adminHost, '127.0.0.1');
  t.equal(resolveSettings({}, { adminHost: '0.0.0.0' }).adminHost, '0.0.0.0');
  t.equal(resolveSettings({ adminHost: '::' }, { adminHost: '0.0.0.0' }).adminHost, '::');
});
