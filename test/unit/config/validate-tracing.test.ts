import t from 'tap';
import { parseConfigText } from '../../../src/config/load-config.ts';
import type { ConfigBundle } from '../../../src/config/resource-types.ts';
import { resolveTracing, TRACING_DEFAULTS } from '../../../src/config/validate-tracing.ts';

/** `Proxy.tracing` validation and how flags and the document resolve into `TracingConfig`. */

function proxy(tracing: string): ConfigBundle {
  return parseConfigText(
    [
      {
        name: '/etc/meshlet/proxy.yaml',
        text: `apiVersion: meshlet.dev/v1alpha1\nkind: Proxy\nspec:\n  tracing:\n${tracing}`,
      },
    ],
    {},
  );
}

const errors = (b: ConfigBundle): string[] =>
  b.issues
    .filter((i) => i.severity === 'error')
    .map((e) => `${e.path.replace(/^Proxy \S+: /, '')} | ${e.message}`);

t.test('a complete tracing block', async (t) => {
  const b = proxy(`    otlp:
      endpoint: https://collector.obs:4318/v1/traces
      headers: { authorization: "Bearer abc", x-tenant: "t1" }
    randomSamplingPercentage: 2.5
    serviceName: reviews
    maxBatchSize: 100
    flushInterval: 250ms
    maxQueueSize: 1000`);
  t.same(errors(b), []);
  const spec = b.proxy?.spec.tracing;
  t.same(spec, {
    otlp: {
      endpoint: 'https://collector.obs:4318/v1/traces',
      headers: { authorization: 'Bearer abc', 'x-tenant': 't1' },
    },
    randomSamplingPercentage: 2.5,
    serviceName: 'reviews',
    maxBatchSize: 100,
    flushIntervalMs: 250,
    maxQueueSize: 1000,
  });
  t.same(resolveTracing({}, spec, 'productpage'), {
    endpoint: 'https://collector.obs:4318/v1/traces',
    headers: { authorization: 'Bearer abc', 'x-tenant': 't1' },
    samplingPercent: 2.5,
    serviceName: 'reviews',
    maxBatchSize: 100,
    flushIntervalMs: 250,
    maxQueueSize: 1000,
  });
  t.equal(resolveTracing({ tracingSampling: 50 }, spec, 'p')?.samplingPercent, 50, 'the flag wins');
  t.equal(
    resolveTracing({ tracingEndpoint: 'http://127.0.0.1:1/v1/traces' }, spec, 'p')?.endpoint,
    'http://127.0.0.1:1/v1/traces',
  );
});

t.test('defaults, and no collector means no tracing', async (t) => {
  t.equal(resolveTracing({}, undefined, 'p'), null);
  t.equal(resolveTracing({ tracingSampling: 10 }, { serviceName: 'x' }, 'p'), null);
  t.same(resolveTracing({ tracingEndpoint: 'http://c:4318/v1/traces' }, undefined, 'productpage'), {
    endpoint: 'http://c:4318/v1/traces',
    headers: {},
    samplingPercent: TRACING_DEFAULTS.samplingPercent,
    serviceName: 'productpage',
    maxBatchSize: 512,
    flushIntervalMs: 1000,
    maxQueueSize: 4096,
  });
});

t.test('invalid values are reported', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['    otlp: { endpoint: ftp://x/v1/traces }', /must be an http or https URL/],
    ['    otlp: { endpoint: "not a url" }', /is not a URL/],
    ['    otlp: { headers: { a: b } }', /endpoint/],
    ['    randomSamplingPercentage: 101', /randomSamplingPercentage/],
    ['    randomSamplingPercentage: -1', /randomSamplingPercentage/],
    ['    maxBatchSize: 0', /maxBatchSize/],
    ['    maxQueueSize: 2.5', /maxQueueSize/],
    ['    flushInterval: 0s', /flushInterval/],
    ['    serviceName: ""', /serviceName must not be empty/],
    ['    sampling: 3', /sampling/],
    [
      '    otlp: { endpoint: "http://c/v1/traces", headers: { "bad name": x } }',
      /not a valid HTTP header name/,
    ],
    ['    otlp: { endpoint: "http://c/v1/traces", headers: { content-type: x } }', /set by the exporter/],
    ['    otlp: { endpoint: "http://c/v1/traces", headers: { a: "x\\r\\ny: z" } }', /CR, LF or NUL/],
  ];
  for (const [yaml, message] of cases) {
    const errs = errors(proxy(yaml));
    t.ok(
      errs.some((e) => message.test(e)),
      `${yaml.trim()} → ${errs.join('; ')}`,
    );
  }
});
