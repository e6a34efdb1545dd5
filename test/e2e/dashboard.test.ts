import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import t from 'tap';
import { Agent, request } from 'undici';
import { type Backend, startEchoBackend } from '../helpers/backends.ts';
import { call, sleep } from '../helpers/mesh-client.ts';
import { serviceEntryYaml } from '../helpers/mesh-yaml.ts';
import { type Meshlet, spawnMeshlet } from '../helpers/spawn-meshlet.ts';

/**
 * The admin dashboard in a real headless Chromium against the real meshlet under load: the
 * numbers appear and move, endpoints and recent errors show, a poll that fails turns the page
 * stale, and a screenshot is taken (and written to MESHLET_DASHBOARD_SCREENSHOT when set: that is
 * how docs/dashboard.png is made).
 */

const CHROMIUM = process.env['MESHLET_CHROMIUM'] ?? '/usr/bin/chromium';
const SCREENSHOT_OUT = process.env['MESHLET_DASHBOARD_SCREENSHOT'] || undefined;
const REVIEWS = 'reviews.default.svc.cluster.local';
const RATINGS = 'ratings.default.svc.cluster.local';
const PRODUCTPAGE = 'productpage.default.svc.cluster.local';
/**
 * How long the backend holds the slow requests of the second phase. Far above anything a fast
 * request takes, even the first ones on a busy machine (cold connections, code not compiled yet,
 * which can take tens of ms), so that the 10 s window's p99 moving up past SLOW_MS * 0.8 is
 * unambiguous.
 */
const SLOW_MS = 300;
const WORKERS = 6;

function meshYaml(reviews: Backend, ratings: Backend): string {
  return [
    `apiVersion: meshlet.dev/v1alpha1
kind: Proxy
metadata: { name: productpage }
spec:
  labels: { app: productpage, version: v1 }
`,
    serviceEntryYaml('reviews', [{ port: reviews.port, labels: { version: 'v1' } }], { servicePort: 9080 }),
    serviceEntryYaml('ratings', [{ port: ratings.port, labels: { version: 'v1' } }], { servicePort: 9080 }),
    // The failing path is not retried, so that each 503 is one request and one recent error.
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews }
spec:
  hosts: [reviews]
  http:
    - name: failing
      match: [{ uri: { prefix: /fail } }]
      route: [{ destination: { host: reviews } }]
      retries: { attempts: 0 }
    - name: default
      route: [{ destination: { host: reviews } }]
`,
  ].join('---\n');
}

/** `data-value` of the first element matching `selector`, as a number; null when absent or empty. */
async function numberAt(page: Page, selector: string): Promise<number | null> {
  const raw = await page.evaluate(
    `(() => { const e = document.querySelector(${JSON.stringify(selector)}); return e === null ? null : e.getAttribute('data-value'); })()`,
  );
  return typeof raw === 'string' && raw !== '' ? Number(raw) : null;
}

async function textOf(page: Page, selector: string): Promise<string | null> {
  const text = await page.evaluate(
    `(() => { const e = document.querySelector(${JSON.stringify(selector)}); return e === null ? null : e.textContent; })()`,
  );
  return typeof text === 'string' ? text : null;
}

/** How many points the rps sparkline of outbound `service` has drawn (0 when there is none). */
async function sparkPoints(page: Page, service: string): Promise<number> {
  const n = await page.evaluate(
    `document.querySelector('tr[data-reporter="source"][data-service="${service}"] svg.rps polyline')?.getAttribute('points')?.split(' ').length ?? 0`,
  );
  return typeof n === 'number' ? n : 0;
}

const positive = (v: number | null): boolean => v !== null && v > 0;

/** Waits (bounded) until `expression` is truthy in the page; false when it never was. */
async function until(page: Page, expression: string, timeoutMs: number): Promise<boolean> {
  try {
    await page.waitForFunction(expression, { timeout: timeoutMs, polling: 100 });
    return true;
  } catch {
    return false;
  }
}

const field = (service: string, name: string, window = '10s'): string =>
  `[data-reporter="source"][data-service="${service}"][data-field="${name}"][data-window="${window}"]`;

/**
 * Background load through the outbound listener until `stop()` is called, paced to a few hundred
 * requests a second: reviews (every 12th request to /fail, answered 503 by the backend), some
 * ratings, and inbound requests for the local app. While `slow(true)` is in force, every 10th reviews
 * request waits SLOW_MS at the backend, which lifts reviews' p99.
 */
function startLoad(
  mesh: Meshlet,
  agent: Agent,
): { stop: () => Promise<number>; slow: (on: boolean) => void } {
  let running = true;
  let slow = false;
  let sent = 0;
  const worker = async (w: number): Promise<void> => {
    for (let i = 0; running; i++) {
      const n = i * WORKERS + w;
      if (n % 7 === 3) {
        await call(mesh, agent, '/ratings/1', { host: `ratings:9080`, timeoutMs: 2000 });
      } else if (n % 11 === 5) {
        await request(`http://127.0.0.1:${mesh.inboundPort}/productpage`, {
          dispatcher: agent,
          headers: { host: `${PRODUCTPAGE}:9080` },
          headersTimeout: 2000,
          bodyTimeout: 2000,
        })
          .then((r) => r.body.dump())
          .catch(() => undefined);
      } else {
        const path = n % 12 === 0 ? `/fail/${n}` : slow && n % 10 === 1 ? '/slow' : `/reviews/${n % 5}`;
        await call(mesh, agent, path, { host: 'reviews:9080', timeoutMs: 2000 });
      }
      sent++;
      await sleep(12);
    }
  };
  const workers = Array.from({ length: WORKERS }, (_, w) => worker(w));
  return {
    slow: (on) => {
      slow = on;
    },
    stop: async () => {
      running = false;
      await Promise.all(workers);
      return sent;
    },
  };
}

/** Width and height from a PNG's IHDR chunk, or null when `buf` is not a PNG. */
function pngSize(buf: Buffer): { width: number; height: number } | null {
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  if (buf.length < 24 || !buf.subarray(0, 8).equals(signature)) return null;
  if (buf.toString('latin1', 12, 16) !== 'IHDR') return null;
  return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
}

t.test('the dashboard shows live numbers under load, endpoints, errors, and goes stale', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.fail(`no Chromium at ${CHROMIUM}: apt-get install chromium (or set MESHLET_CHROMIUM)`);
    return;
  }
  const reviews = await startEchoBackend('reviews', (req, res) => {
    if (req.url?.startsWith('/fail') === true) {
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end('reviews is failing on purpose\n');
      return true;
    }
    if (req.url === '/slow') {
      setTimeout(() => res.end('slow\n'), SLOW_MS);
      return true;
    }
    return false;
  });
  const ratings = await startEchoBackend('ratings');
  const app = await startEchoBackend('productpage');
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-dashboard-'));
  const agent = new Agent({ connections: 8 });
  let mesh: Meshlet | undefined;
  let browser: Browser | undefined;
  let load: ReturnType<typeof startLoad> | undefined;
  // Runs even when an assertion above threw: nothing outlives the test.
  t.teardown(async () => {
    await load?.stop();
    await browser?.close().catch(() => undefined);
    await mesh?.stop();
    await agent.close();
    await Promise.all([reviews.close(), ratings.close(), app.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  mesh = await spawnMeshlet(meshYaml(reviews, ratings), {
    engine: 'h1',
    args: ['--app', `127.0.0.1:${app.port}`],
  });
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking'],
    timeout: 15_000,
    protocolTimeout: 15_000,
  });
  const page = await browser.newPage();
  const pageErrors: string[] = [];
  page.on('pageerror', (err) => pageErrors.push(String(err)));
  await page.setViewport({ width: 1280, height: 800 });
  await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }]);
  const res = await page.goto(mesh.admin('/'), { timeout: 10_000 });
  t.equal(res?.status(), 200, 'GET / serves the page');
  t.equal(res?.headers()['content-type']?.split(';')[0], 'text/html');
  t.ok(
    await until(page, `document.querySelector('#status[data-state="ok"]') !== null`, 5000),
    'first poll ok',
  );

  load = startLoad(mesh, agent);
  const rps = field(REVIEWS, 'rps');
  const p99 = field(REVIEWS, 'p99_ms');
  t.ok(
    await until(page, `Number(document.querySelector('${rps}')?.getAttribute('data-value')) > 0`, 5000),
    'reviews shows a request rate',
  );
  await sleep(1000);
  const first = { rps: await numberAt(page, rps), p99: await numberAt(page, p99) };
  const sparkFirst = await sparkPoints(page, REVIEWS);
  // Slow requests from now on: the 10 s window's p99 must climb to about SLOW_MS.
  load.slow(true);
  const climbed = await until(
    page,
    `Number(document.querySelector('${p99}')?.getAttribute('data-value')) > ${SLOW_MS * 0.8}`,
    6000,
  );
  const second = { rps: await numberAt(page, rps), p99: await numberAt(page, p99) };
  const sparkSecond = await sparkPoints(page, REVIEWS);
  t.comment(`reviews: first ${JSON.stringify(first)}, second ${JSON.stringify(second)}`);
  t.ok(first.rps !== null && first.rps > 0, 'rps non-zero at the first look');
  t.ok(first.p99 !== null && first.p99 > 0, 'p99 non-zero at the first look');
  t.ok(second.rps !== null && second.rps > 0 && second.rps !== first.rps, 'rps moved');
  t.ok(climbed && first.p99 !== null && first.p99 < SLOW_MS * 0.8, 'p99 climbed with the slow requests');
  t.ok(sparkSecond > sparkFirst, `the sparkline grew (${sparkFirst} → ${sparkSecond} points)`);
  t.ok(positive(await numberAt(page, field(REVIEWS, 'error_rate'))), 'reviews shows errors');
  t.ok(positive(await numberAt(page, field(REVIEWS, 'rps', '60s'))), 'the 60 s window too');
  t.ok(positive(await numberAt(page, field(RATINGS, 'rps'))), 'ratings shows a request rate');
  t.ok(
    positive(
      await numberAt(page, `[data-reporter="destination"][data-service="${PRODUCTPAGE}"][data-field="rps"]`),
    ),
    'inbound traffic shows as reporter destination',
  );

  const endpoint = `[data-endpoint="127.0.0.1:${reviews.port}"]`;
  t.equal(await textOf(page, `${endpoint}[data-field="state"]`), 'healthy', 'the reviews endpoint row');
  t.ok(positive(await numberAt(page, `${endpoint}[data-field="ewma_ms"]`)), 'with an EWMA');
  t.ok((await numberAt(page, `${endpoint}[data-field="in_flight"]`)) !== null, 'and in-flight requests');

  t.ok(await until(page, `document.querySelector('#errors-body tr[data-error]') !== null`, 3000), 'errors');
  t.equal(await textOf(page, '#errors-body tr[data-error="0"] [data-field="status"]'), '503');
  t.match(await textOf(page, '#errors-body tr[data-error="0"] [data-field="path"]'), /^\/fail\/\d+$/);
  t.match(await textOf(page, '#version'), /^\d+\.\d+\.\d+/, 'the version in the header');
  t.ok(positive(await numberAt(page, '#uptime')), 'the uptime in the header');

  // For the README's screenshot: sparklines with something in them.
  if (SCREENSHOT_OUT !== undefined)
    for (let i = 0; i < 6; i++) {
      load.slow(i % 2 === 1);
      await sleep(8000);
    }
  const shot = join(dir, 'dashboard.png');
  await page.screenshot({ path: shot });
  const sent = await load.stop();
  t.comment(`load: ${sent} requests`);
  const png = readFileSync(shot);
  t.same(pngSize(png), { width: 1280, height: 800 }, 'a 1280×800 PNG');
  t.ok(png.length > 20_000 && png.length < 2_000_000, `of a plausible size (${png.length} bytes)`);
  if (SCREENSHOT_OUT !== undefined) copyFileSync(shot, SCREENSHOT_OUT);

  // The admin port goes away: the next poll fails and the page says its data is stale.
  await mesh.stop();
  t.ok(await until(page, `document.querySelector('#status[data-state="stale"]') !== null`, 5000), 'stale');
  t.match(await textOf(page, '#status'), /^stale: .*showing data from \d\d:\d\d:\d\d$/);
  t.same(pageErrors, [], 'no script error in the page');
});
