/**
 * The admin dashboard (GET /): one self-contained page (inline CSS and script, no CDN, no web
 * fonts, no build step) that polls the admin port's `/stats` (src/telemetry/live-stats-types.ts)
 * and `/clusters` (admin-server.ts `ClusterView`) once a second and shows, per destination
 * service, request rate, error rate and p50/p99 with two-minute sparklines kept in the page,
 * endpoint health per cluster, and the recent errors.
 *
 * The URLs it fetches are relative (`stats`, not `/stats`), so the page keeps working behind
 * `kubectl port-forward` and behind a reverse proxy that mounts the admin port under a path.
 *
 * Every number carries `data-field` (and `data-service`/`data-reporter`/`data-window`, or
 * `data-cluster`/`data-endpoint`) plus its raw value in `data-value`, so that tests and scripts
 * read values without parsing the formatted text. Request-supplied strings (paths, authorities)
 * are only ever set as text, never as markup.
 */

const STYLE = `
:root {
  color-scheme: light dark;
  --bg: #f7f7f8; --panel: #ffffff; --fg: #1b1d21; --muted: #646a73; --line: #dfe1e5;
  --accent: #2563eb; --ok: #15803d; --warn: #b45309; --bad: #b91c1c; --badge: #eef1f6;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #121417; --panel: #1b1e23; --fg: #e6e8eb; --muted: #9aa1ab; --line: #2d3239;
    --accent: #60a5fa; --ok: #4ade80; --warn: #fbbf24; --bad: #f87171; --badge: #262b33;
  }
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--fg);
  font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
}
header {
  display: flex; align-items: baseline; gap: 16px; padding: 10px 16px; height: 44px;
  background: var(--panel); border-bottom: 1px solid var(--line); white-space: nowrap;
}
h1 { font-size: 16px; margin: 0; }
h2 { font-size: 13px; margin: 0 0 6px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
main { padding: 12px 16px; display: grid; gap: 14px; }
section { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
.muted { color: var(--muted); }
#status { margin-left: auto; overflow: hidden; text-overflow: ellipsis; }
#status.ok::before, #status.stale::before { content: "\\25CF  "; }
#status.ok::before { color: var(--ok); }
#status.stale { color: var(--bad); font-weight: 600; }
body.stale main { opacity: .6; }
table { width: 100%; border-collapse: collapse; table-layout: fixed; }
th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid var(--line); overflow: hidden;
  text-overflow: ellipsis; white-space: nowrap; vertical-align: middle; }
th { font-weight: 600; color: var(--muted); font-size: 12px; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.n small { display: block; color: var(--muted); font-size: 11px; }
tr.group th { color: var(--fg); background: var(--badge); font-size: 12px; }
.badge { display: inline-block; min-width: 70px; text-align: center; padding: 0 6px; border-radius: 9px;
  background: var(--badge); font-size: 11px; }
.warn { color: var(--warn); }
.bad { color: var(--bad); font-weight: 600; }
.good { color: var(--ok); }
svg.spark { width: 116px; height: 22px; vertical-align: middle; }
svg.spark polyline { fill: none; stroke: var(--accent); stroke-width: 1.5; vector-effect: non-scaling-stroke; }
svg.spark.p99 polyline { stroke: var(--warn); }
.sparkmax { display: inline-block; width: 64px; text-align: right; color: var(--muted); font-size: 11px;
  font-variant-numeric: tabular-nums; }
.scroll { max-height: 320px; overflow-y: auto; }
#errors-box { height: 260px; }
tr.empty td { color: var(--muted); font-style: italic; }
`;

/*
 * The page script: plain ES2017 without template literals, in a raw string so that it reads the
 * same here as in the browser (escapes such as \u00b7 reach the browser as written).
 */
const SCRIPT = String.raw`
'use strict';
(function () {
  var POLL_MS = 1000;
  var TIMEOUT_MS = 2500;
  var HISTORY = 120; // one sample a second: the last two minutes
  var SVG = 'http://www.w3.org/2000/svg';

  var services = new Map(); // "reporter|service" -> row
  var clusterRows = new Map(); // "c|name" or "e|name|address" -> row
  var errorsSignature = '';
  var lastOk = null; // Date of the last successful /stats
  var failure = null; // why the last poll failed, or null

  function byId(id) { return document.getElementById(id); }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) for (var k in attrs) node.setAttribute(k, attrs[k]);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /** Sets a number's text and raw value, touching the DOM only when the text changed. */
  function put(node, text, value, cls) {
    if (node.textContent !== text) node.textContent = text;
    var raw = value === null ? '' : String(value);
    if (node.getAttribute('data-value') !== raw) node.setAttribute('data-value', raw);
    if (cls !== undefined && node.className !== cls) node.className = cls;
  }

  function pad(n) { return n < 10 ? '0' + n : String(n); }
  function clock(d) { return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds()); }
  function num(v) {
    if (typeof v !== 'number' || !isFinite(v)) return '-';
    var a = Math.abs(v);
    return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
  }
  function ms(v) { return typeof v === 'number' ? num(v) + ' ms' : '-'; }
  function pct(v) {
    if (typeof v !== 'number' || !isFinite(v)) return '-';
    var p = v * 100;
    return (p === 0 ? '0' : p >= 10 ? p.toFixed(0) : p.toFixed(1)) + ' %';
  }
  function rateClass(v) { return v >= 0.05 ? 'bad' : v > 0 ? 'warn' : ''; }
  function uptime(s) {
    s = Math.floor(s);
    var d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    return (d > 0 ? d + 'd ' : '') + (d > 0 || h > 0 ? h + 'h ' : '') + m + 'm ' + (s % 60) + 's';
  }

  async function getJson(path) {
    var ctl = new AbortController();
    var timer = setTimeout(function () { ctl.abort(); }, TIMEOUT_MS);
    try {
      var res = await fetch(path, { cache: 'no-store', signal: ctl.signal });
      if (!res.ok) throw new Error('GET ' + path + ': HTTP ' + res.status);
      return await res.json();
    } catch (err) {
      if (err && err.name === 'AbortError') throw new Error('GET ' + path + ': no answer in ' + TIMEOUT_MS + ' ms');
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Puts the rows of 'order' (keys of 'cache') into 'tbody' in that order, moving nodes only when
   * the order changed, and drops the rows whose key is not in 'order'. The placeholder row shows
   * only while there is nothing else.
   */
  function arrange(tbody, cache, order, placeholder) {
    var keep = new Set(order);
    cache.forEach(function (row, key) {
      if (!keep.has(key)) { row.tr.remove(); cache.delete(key); }
    });
    var current = [];
    for (var i = 0; i < tbody.children.length; i++) current.push(tbody.children[i]);
    var wanted = order.map(function (k) { return cache.get(k).tr; });
    var same = current.length === wanted.length + 1 && wanted.every(function (tr, j) { return current[j + 1] === tr; });
    if (!same) {
      tbody.appendChild(placeholder);
      wanted.forEach(function (tr) { tbody.appendChild(tr); });
      tbody.insertBefore(placeholder, tbody.firstChild);
    }
    placeholder.hidden = order.length > 0;
  }

  // ---- services ----

  function valueCell(tr, reporter, service, field) {
    var td = el('td', { class: 'n' });
    var main = el('span', { 'data-reporter': reporter, 'data-service': service, 'data-field': field, 'data-window': '10s' }, '-');
    var small = el('small', { 'data-reporter': reporter, 'data-service': service, 'data-field': field, 'data-window': '60s' }, '-');
    td.appendChild(main);
    td.appendChild(small);
    tr.appendChild(td);
    return { w10: main, w60: small };
  }

  function spark(tr, reporter, service, field, cls) {
    var td = el('td');
    var svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('class', 'spark ' + cls);
    svg.setAttribute('viewBox', '0 0 ' + (HISTORY - 1) + ' 22');
    svg.setAttribute('preserveAspectRatio', 'none');
    var line = document.createElementNS(SVG, 'polyline');
    svg.appendChild(line);
    var max = el('span', { class: 'sparkmax', 'data-reporter': reporter, 'data-service': service, 'data-field': field + '_max' }, '');
    td.appendChild(svg);
    td.appendChild(max);
    tr.appendChild(td);
    return { line: line, max: max, values: [] };
  }

  function serviceRow(s) {
    var tr = el('tr', { 'data-reporter': s.reporter, 'data-service': s.service });
    var outbound = s.reporter === 'source';
    tr.appendChild(el('td', {}, '')).appendChild(el('span', {
      class: 'badge',
      title: outbound ? 'reporter=source: calls this proxy made (outbound)' : 'reporter=destination: calls this proxy received (inbound)',
    }, outbound ? 'outbound' : 'inbound'));
    tr.appendChild(el('td', { title: s.service }, s.service));
    return {
      tr: tr,
      rps: valueCell(tr, s.reporter, s.service, 'rps'),
      errorRate: valueCell(tr, s.reporter, s.service, 'error_rate'),
      p50: valueCell(tr, s.reporter, s.service, 'p50_ms'),
      p99: valueCell(tr, s.reporter, s.service, 'p99_ms'),
      rpsSpark: spark(tr, s.reporter, s.service, 'rps', 'rps'),
      p99Spark: spark(tr, s.reporter, s.service, 'p99_ms', 'p99'),
    };
  }

  function drawSpark(sp, value, format) {
    sp.values.push(value);
    if (sp.values.length > HISTORY) sp.values.shift();
    var max = 0;
    sp.values.forEach(function (v) { if (v > max) max = v; });
    var offset = HISTORY - sp.values.length;
    var points = sp.values.map(function (v, i) {
      var y = max > 0 ? 21 - (v / max) * 20 : 21;
      return (offset + i) + ',' + y.toFixed(1);
    });
    sp.line.setAttribute('points', points.join(' '));
    put(sp.max, 'max ' + format(max), max);
  }

  function showWindows(cells, w10, w60, key, format, colored) {
    var a = w10 ? w10[key] : null;
    var b = w60 ? w60[key] : null;
    put(cells.w10, a === null ? '-' : format(a), a, colored ? rateClass(a) : undefined);
    put(cells.w60, '60 s: ' + (b === null ? '-' : format(b)), b);
  }

  function renderServices(list) {
    var sorted = list.slice().sort(function (x, y) {
      if (x.reporter !== y.reporter) return x.reporter === 'source' ? -1 : 1;
      return x.service < y.service ? -1 : x.service > y.service ? 1 : 0;
    });
    var order = [];
    sorted.forEach(function (s) {
      var key = s.reporter + '|' + s.service;
      order.push(key);
      var row = services.get(key);
      if (!row) { row = serviceRow(s); services.set(key, row); }
      var w10 = s.windows['10s'] || null;
      var w60 = s.windows['60s'] || null;
      showWindows(row.rps, w10, w60, 'rps', num);
      showWindows(row.errorRate, w10, w60, 'error_rate', pct, true);
      showWindows(row.p50, w10, w60, 'p50_ms', ms);
      showWindows(row.p99, w10, w60, 'p99_ms', ms);
      drawSpark(row.rpsSpark, w10 ? w10.rps : 0, num);
      drawSpark(row.p99Spark, w10 ? w10.p99_ms : 0, ms);
    });
    arrange(byId('services-body'), services, order, byId('services-empty'));
  }

  // ---- clusters ----

  function clusterRow(c) {
    var tr = el('tr', { class: 'group', 'data-cluster': c.name });
    var th = el('th', { colspan: '8' });
    th.appendChild(el('span', { title: c.name }, c.name));
    var info = el('span', { class: 'muted', 'data-cluster': c.name, 'data-field': 'summary' });
    th.appendChild(document.createTextNode('  '));
    th.appendChild(info);
    tr.appendChild(th);
    return { tr: tr, info: info };
  }

  function endpointRow(c, e) {
    var tr = el('tr', { 'data-cluster': c.name, 'data-endpoint': e.address });
    function cell(field, cls) {
      var td = el('td', { class: cls || 'n', 'data-cluster': c.name, 'data-endpoint': e.address, 'data-field': field }, '-');
      tr.appendChild(td);
      return td;
    }
    return {
      tr: tr,
      address: cell('address', 'addr'),
      state: cell('state', ''),
      ewma: cell('ewma_ms'),
      inFlight: cell('in_flight'),
      connections: cell('connections'),
      ejections: cell('times_ejected'),
      fails: cell('consecutive_5xx'),
      weight: cell('weight'),
    };
  }

  function renderClusters(list) {
    var order = [];
    list.forEach(function (c) {
      var ckey = 'c|' + c.name;
      order.push(ckey);
      var crow = clusterRows.get(ckey);
      if (!crow) { crow = clusterRow(c); clusterRows.set(ckey, crow); }
      var parts = [c.load_balancer === null ? 'not used yet' : c.load_balancer];
      parts.push('active ' + c.active, 'pending ' + c.pending, 'requests ' + c.counters.requests);
      if (c.counters.retries > 0) parts.push('retries ' + c.counters.retries);
      if (c.counters.overflows > 0) parts.push('overflows ' + c.counters.overflows);
      if (c.panic) parts.push('PANIC');
      put(crow.info, parts.join(' \u00b7 '), c.counters.requests);
      c.endpoints.forEach(function (e) {
        var ekey = 'e|' + c.name + '|' + e.address;
        order.push(ekey);
        var r = clusterRows.get(ekey);
        if (!r) { r = endpointRow(c, e); clusterRows.set(ekey, r); }
        put(r.address, e.address, e.address);
        if (e.ejected) {
          var left = e.ejected_until === null ? '' : ', ' + num(e.ejected_until / 1000) + ' s left';
          put(r.state, 'ejected' + left, 'ejected', 'bad');
        } else {
          put(r.state, 'healthy', 'healthy', 'good');
        }
        put(r.ewma, e.ewma_ms === null ? '-' : ms(e.ewma_ms), e.ewma_ms);
        put(r.inFlight, String(e.in_flight), e.in_flight);
        put(r.connections, e.connections === null ? '-' : String(e.connections), e.connections);
        put(r.ejections, String(e.times_ejected), e.times_ejected);
        put(r.fails, String(e.consecutive_5xx), e.consecutive_5xx, e.consecutive_5xx > 0 ? 'n warn' : 'n');
        put(r.weight, String(e.weight), e.weight);
      });
    });
    arrange(byId('clusters-body'), clusterRows, order, byId('clusters-empty'));
  }

  // ---- recent errors ----

  function renderErrors(list) {
    var first = list[0];
    var signature = list.length + '|' + (first ? first.time + first.path + first.status : '');
    if (signature === errorsSignature) return;
    errorsSignature = signature;
    var tbody = byId('errors-body');
    var placeholder = byId('errors-empty');
    var rows = [placeholder];
    list.forEach(function (e, i) {
      var tr = el('tr', { 'data-error': String(i) });
      function cell(field, text, cls) {
        var td = el('td', { 'data-field': field, title: text }, text);
        if (cls) td.className = cls;
        tr.appendChild(td);
      }
      var t = new Date(e.time);
      cell('time', isNaN(t.getTime()) ? e.time : clock(t));
      cell('reporter', e.reporter === 'source' ? 'outbound' : 'inbound');
      cell('status', e.status === 0 ? 'none' : String(e.status), 'n bad');
      cell('flags', e.flags);
      cell('method', e.method);
      cell('authority', e.authority);
      cell('path', e.path);
      cell('duration_ms', ms(e.duration_ms), 'n');
      cell('upstream_host', e.upstream_host);
      rows.push(tr);
    });
    tbody.replaceChildren.apply(tbody, rows);
    placeholder.hidden = list.length > 0;
  }

  // ---- polling ----

  function renderStatus() {
    var status = byId('status');
    if (failure === null) {
      status.className = 'ok';
      status.textContent = 'updated ' + (lastOk ? clock(lastOk) : '-');
    } else {
      status.className = 'stale';
      status.textContent = 'stale: ' + failure + (lastOk ? ' \u2014 showing data from ' + clock(lastOk) : '');
    }
    status.setAttribute('data-state', failure === null ? 'ok' : 'stale');
    status.title = status.textContent;
    document.body.classList.toggle('stale', failure !== null);
  }

  async function poll() {
    var results = await Promise.allSettled([getJson('stats'), getJson('clusters')]);
    var problems = [];
    var stats = results[0], clusters = results[1];
    if (stats.status === 'fulfilled') {
      try {
        var snap = stats.value;
        renderServices(snap.services || []);
        renderErrors(snap.recent_errors || []);
        put(byId('uptime'), uptime(snap.uptime_s || 0), snap.uptime_s);
      } catch (err) { problems.push('bad /stats: ' + err.message); }
    } else problems.push(String(stats.reason && stats.reason.message || stats.reason));
    if (clusters.status === 'fulfilled') {
      try { renderClusters(clusters.value || []); } catch (err) { problems.push('bad /clusters: ' + err.message); }
    } else problems.push(String(clusters.reason && clusters.reason.message || clusters.reason));
    if (problems.length === 0) { lastOk = new Date(); failure = null; }
    else failure = problems.join('; ') + ' at ' + clock(new Date());
    renderStatus();
  }

  async function loop() {
    var started = Date.now();
    try { await poll(); } catch (err) { failure = String(err); renderStatus(); }
    setTimeout(loop, Math.max(0, POLL_MS - (Date.now() - started)));
  }

  // The version is the first line of the admin's plain-text help ("meshlet 0.1.0 admin"); the
  // page works without it.
  fetch('help', { cache: 'no-store' }).then(function (res) { return res.ok ? res.text() : ''; }).then(function (text) {
    var words = text.split('\n')[0].split(' ');
    if (words[0] === 'meshlet' && words[1]) byId('version').textContent = words[1];
  }).catch(function () {});

  loop();
})();
`;

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>meshlet dashboard</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>meshlet <span id="version" class="muted"></span></h1>
  <span class="muted">up <span id="uptime" data-field="uptime">-</span></span>
  <span id="status" data-state="loading">loading…</span>
</header>
<main>
  <section>
    <h2>Destination services <span class="muted">(10 s window; 60 s below)</span></h2>
    <table id="services">
      <colgroup>
        <col style="width: 90px"><col><col style="width: 90px"><col style="width: 90px">
        <col style="width: 90px"><col style="width: 90px"><col style="width: 200px"><col style="width: 200px">
      </colgroup>
      <thead><tr>
        <th>reporter</th><th>service</th><th class="n">req/s</th><th class="n">errors</th>
        <th class="n">p50</th><th class="n">p99</th><th>req/s, 2 min</th><th>p99, 2 min</th>
      </tr></thead>
      <tbody id="services-body"><tr id="services-empty" class="empty"><td colspan="8">no requests in the last 60 s</td></tr></tbody>
    </table>
  </section>
  <section>
    <h2>Endpoints</h2>
    <div class="scroll">
    <table id="clusters">
      <colgroup>
        <col><col style="width: 170px"><col style="width: 90px"><col style="width: 80px">
        <col style="width: 100px"><col style="width: 90px"><col style="width: 100px"><col style="width: 70px">
      </colgroup>
      <thead><tr>
        <th>address</th><th>state</th><th class="n" title="the balancer's peak-EWMA latency estimate; a 5xx or a failed attempt counts as a penalty of 1 to 10 s">EWMA</th><th class="n">in flight</th>
        <th class="n">connections</th><th class="n">ejections</th><th class="n" title="consecutive 5xx responses">5xx in a row</th><th class="n">weight</th>
      </tr></thead>
      <tbody id="clusters-body"><tr id="clusters-empty" class="empty"><td colspan="8">no clusters configured</td></tr></tbody>
    </table>
    </div>
  </section>
  <section>
    <h2>Recent errors <span class="muted">(5xx and no response, newest first)</span></h2>
    <div id="errors-box" class="scroll">
    <table id="errors">
      <colgroup>
        <col style="width: 80px"><col style="width: 80px"><col style="width: 55px"><col style="width: 80px">
        <col style="width: 70px"><col style="width: 22%"><col><col style="width: 85px"><col style="width: 140px">
      </colgroup>
      <thead><tr>
        <th>time</th><th>reporter</th><th class="n">status</th><th>flags</th><th>method</th>
        <th>authority</th><th>path</th><th class="n">duration</th><th>upstream</th>
      </tr></thead>
      <tbody id="errors-body"><tr id="errors-empty" class="empty"><td colspan="9">no errors</td></tr></tbody>
    </table>
    </div>
  </section>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
