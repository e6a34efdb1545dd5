import t from 'tap';
import { REDACTED, redactSecrets } from '../../../src/admin/redact.ts';

t.test('collector headers of a Proxy document are redacted, names kept', async (t) => {
  const doc = {
    apiVersion: 'meshlet.dev/v1alpha1',
    kind: 'Proxy',
    spec: {
      tracing: {
        otlp: {
          endpoint: 'http://c:4318/v1/traces',
          headers: { authorization: 'Bearer abc', 'x-tenant': 't1' },
        },
        randomSamplingPercentage: 1,
      },
      identity: { ca: { certFile: '/ca/ca.crt', keyFile: '/ca/ca.key' } },
    },
  };
  const out = redactSecrets(doc) as typeof doc;
  t.same(out.spec.tracing.otlp.headers, { authorization: REDACTED, 'x-tenant': REDACTED });
  t.equal(out.spec.tracing.otlp.endpoint, 'http://c:4318/v1/traces', 'the endpoint stays');
  t.equal(out.spec.tracing.randomSamplingPercentage, 1);
  t.same(out.spec.identity, doc.spec.identity, 'file paths are not secrets');
  t.equal(doc.spec.tracing.otlp.headers.authorization, 'Bearer abc', 'the input is not changed');
});

t.test('fields named like credentials are redacted anywhere; other headers maps are not', async (t) => {
  const out = redactSecrets({
    spec: {
      list: [{ password: 'p', apiKey: 'k', db_password: 'x', user: 'u' }],
      http: [{ headers: { request: { set: { 'x-a': 'visible' } } } }],
      token: 42,
      nested: { secret: { name: 'still an object' } },
    },
  });
  t.same(out, {
    spec: {
      list: [{ password: REDACTED, apiKey: REDACTED, db_password: REDACTED, user: 'u' }],
      http: [{ headers: { request: { set: { 'x-a': 'visible' } } } }],
      token: REDACTED,
      nested: { secret: { name: 'still an object' } },
    },
  });
});
