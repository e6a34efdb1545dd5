import t from 'tap';
import { DASHBOARD_HTML } from '../../../src/admin/dashboard.ts';

/** The inline script between <script> and </script> (the page has exactly one). */
function inlineScript(html: string): string {
  const open = html.indexOf('<script>');
  const close = html.indexOf('</script>');
  if (open < 0 || close < open || html.indexOf('<script', open + 1) >= 0)
    throw new Error('expected one inline <script>');
  return html.slice(open + '<script>'.length, close);
}

t.test('the page is one self-contained document', async (t) => {
  t.match(DASHBOARD_HTML, /^<!doctype html>/);
  t.notMatch(DASHBOARD_HTML, /<script[^>]*\ssrc=/, 'no external script');
  t.notMatch(DASHBOARD_HTML, /<link(?![^>]*href="data:)/, 'no linked resource (only the data: icon)');
  t.notMatch(DASHBOARD_HTML, /@import|url\(|@font-face/, 'no CSS import, URL or web font');
  // The SVG namespace is an identifier, not a fetch; any other absolute URL would be a dependency.
  const urls = DASHBOARD_HTML.match(/https?:\/\/[^\s'"]+/g) ?? [];
  t.same(urls, ['http://www.w3.org/2000/svg']);
  t.match(DASHBOARD_HTML, /prefers-color-scheme: dark/, 'a dark palette');
});

t.test('the script compiles and fetches relative URLs only', async (t) => {
  const script = inlineScript(DASHBOARD_HTML);
  t.doesNotThrow(() => new Function(script), 'valid JavaScript');
  const fetched = [...script.matchAll(/(?:getJson|fetch)\('([^']*)'/g)].map((m) => m[1]);
  t.same(fetched.sort(), ['clusters', 'help', 'stats']);
  t.notMatch(script, /`/, 'no template literal: the script reads as it is sent');
});

t.test('numbers carry data attributes a test or script can select', async (t) => {
  const script = inlineScript(DASHBOARD_HTML);
  for (const field of ['rps', 'error_rate', 'p50_ms', 'p99_ms'])
    t.match(script, `'${field}')`, `service field ${field}`);
  for (const field of ['state', 'ewma_ms', 'in_flight', 'connections'])
    t.match(script, `cell('${field}'`, `endpoint field ${field}`);
  t.match(DASHBOARD_HTML, 'id="status"');
  t.match(DASHBOARD_HTML, 'id="errors-body"');
});
