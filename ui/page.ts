/**
 * The one page `sluice ui` serves: HTML, CSS and a small vanilla script (no
 * framework, nothing fetched from elsewhere: clusters are often offline). It
 * polls /api/view with the filters in its form (kept in the address bar, so
 * a view can be shared) and redraws the SVG map and the flow table. The
 * layout comes from the server (ui/layout.ts); the script only draws.
 *
 * The script lives in a template string: it uses no backticks, no "${" and
 * no backslashes, so it reaches the browser exactly as written here.
 */

const STYLE = `
:root { --allowed: #23955a; --denied: #d33c3c; --mixed: #e08a1e; --ink: #1d2330; --muted: #6b7280; --line: #d8dce3; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); background: #f3f5f8; }
header { display: flex; align-items: baseline; gap: 16px; padding: 12px 20px; background: #1d2330; color: #fff; }
header h1 { margin: 0; font-size: 18px; font-weight: 600; }
header h1 span { font-weight: 400; color: #aab3c5; }
#status { font-size: 12px; color: #aab3c5; }
#status.bad { color: #ffb4a8; }
main { padding: 16px 20px; display: grid; gap: 16px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; }
form { display: flex; flex-wrap: wrap; gap: 10px 14px; align-items: end; }
label { display: grid; gap: 2px; font-size: 11px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
input, select { font: inherit; font-size: 13px; padding: 4px 8px; border: 1px solid var(--line); border-radius: 6px; width: 112px; color: var(--ink); background: #fff; }
#map-wrap { overflow: auto; }
#map { display: block; max-width: 100%; height: auto; }
.ns rect { fill: #f8f9fb; stroke: var(--line); }
.ns.outside rect { fill: #fbfaf6; stroke-dasharray: 4 3; }
.ns-label { font-size: 12px; font-weight: 600; fill: var(--muted); }
.edge path { fill: none; stroke-width: 2.2; }
.edge.allowed path { stroke: var(--allowed); }
.edge.denied path { stroke: var(--denied); }
.edge.mixed path { stroke: var(--mixed); }
.edge.idle path { stroke-dasharray: 5 4; opacity: .45; }
.edge-label { font-size: 11px; text-anchor: middle; paint-order: stroke; stroke: #fff; stroke-width: 4px; stroke-linejoin: round; }
.edge-label.allowed { fill: #17663d; } .edge-label.denied { fill: #a32424; } .edge-label.mixed { fill: #9a5a08; }
.node circle { fill: #3d6fd6; stroke: #fff; stroke-width: 3; }
.node.external circle { fill: #7b8191; }
.node-label { font-size: 12px; text-anchor: middle; paint-order: stroke; stroke: #f8f9fb; stroke-width: 4px; }
.marker-allowed { fill: var(--allowed); } .marker-denied { fill: var(--denied); } .marker-mixed { fill: var(--mixed); }
.empty { font-size: 14px; fill: var(--muted); }
.legend { display: flex; gap: 16px; font-size: 12px; color: var(--muted); margin-top: 6px; }
.legend i { display: inline-block; width: 18px; height: 3px; vertical-align: middle; margin-right: 5px; }
h2 { margin: 0 0 8px; font-size: 14px; }
h2 span { font-weight: 400; color: var(--muted); }
table { width: 100%; border-collapse: collapse; font-size: 12px; }
th { text-align: left; font-weight: 600; color: var(--muted); border-bottom: 1px solid var(--line); padding: 4px 6px; }
td { padding: 3px 6px; border-bottom: 1px solid #eef0f3; white-space: nowrap; }
td.mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
td.summary { white-space: normal; color: var(--muted); }
tr.allowed td.verdict { color: var(--allowed); font-weight: 600; }
tr.denied td.verdict, tr.dropped td.verdict { color: var(--denied); font-weight: 600; }
`;

const SCRIPT = `
(function () {
  'use strict';
  var SVG_NS = 'http://www.w3.org/2000/svg';
  var FILTERS = ['namespace', 'pod', 'selector', 'verdict', 'type', 'l7', 'protocol', 'port', 'since'];
  var POLL_MS = 1000;
  var R = 18;
  var form = document.getElementById('filters');
  var svg = document.getElementById('map');
  var tbody = document.querySelector('#flows tbody');
  var statusLine = document.getElementById('status');
  var count = document.getElementById('flow-count');
  var lastBody = '';
  var inFlight = false;
  var debounce = null;

  var initial = new URLSearchParams(location.search);
  FILTERS.forEach(function (k) { if (initial.get(k)) form.elements[k].value = initial.get(k); });

  function query() {
    var q = new URLSearchParams();
    FILTERS.forEach(function (k) { var v = form.elements[k].value.trim(); if (v) q.set(k, v); });
    return q.toString();
  }
  form.addEventListener('input', function () {
    clearTimeout(debounce);
    debounce = setTimeout(function () {
      var q = query();
      history.replaceState(null, '', q ? '?' + q : location.pathname);
      lastBody = '';
      poll();
    }, 300);
  });
  form.addEventListener('submit', function (e) { e.preventDefault(); });

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG_NS, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    parent.appendChild(node);
    return node;
  }
  function text(parent, x, y, str, cls) {
    var t = el('text', { x: x, y: y, 'class': cls }, parent);
    t.textContent = str;
    return t;
  }
  function round(n) { return Math.round(n * 10) / 10; }
  function rate(n) { return n >= 10 ? n.toFixed(0) : n >= 1 ? n.toFixed(1) : n.toFixed(2); }
  function ms(v) { return v >= 100 ? v.toFixed(0) + ' ms' : v >= 1 ? v.toFixed(1) + ' ms' : Math.round(v * 1000) + ' µs'; }

  function edgeLines(e) {
    if (!e.active) return ['idle'];
    var first = [];
    if (e.flowsPerSec > 0) first.push(rate(e.flowsPerSec) + ' flows/s');
    if (e.requestsPerSec > 0) first.push(rate(e.requestsPerSec) + ' req/s');
    var second = [];
    if (e.errorRatio !== null) second.push(Math.round(e.errorRatio * 100) + '% err');
    if (e.latencyP50Ms !== null) second.push('p50 ' + ms(e.latencyP50Ms));
    return [first.join(' · '), second.join(' · ')].filter(function (l) { return l; });
  }
  function edgeTitle(e) {
    return e.source + ' → ' + e.destination + ' (' + e.ports.join(', ') + ')' +
      '; since start: ' + e.counts.allowed + ' allowed, ' + e.counts.denied + ' denied, ' + e.counts.dropped + ' dropped' +
      '; last seen ' + e.lastSeen;
  }
  function toward(p, x, y, r) {
    var dx = x - p.x, dy = y - p.y, len = Math.sqrt(dx * dx + dy * dy) || 1;
    return { x: round(p.x + dx / len * r), y: round(p.y + dy / len * r) };
  }
  function curve(s, d) {
    if (s.id === d.id) {
      return { d: 'M' + (s.x - 10) + ' ' + (s.y - R + 2) + ' C' + (s.x - 45) + ' ' + (s.y - 75) + ' ' + (s.x + 45) + ' ' + (s.y - 75) + ' ' + (s.x + 10) + ' ' + (s.y - R - 3), lx: s.x, ly: s.y - 68 };
    }
    var dx = d.x - s.x, dy = d.y - s.y, len = Math.sqrt(dx * dx + dy * dy) || 1;
    var bend = Math.min(40, len / 5);
    var cx = round((s.x + d.x) / 2 - dy / len * bend), cy = round((s.y + d.y) / 2 + dx / len * bend);
    var a = toward(s, cx, cy, R + 2), b = toward(d, cx, cy, R + 5);
    return { d: 'M' + a.x + ' ' + a.y + ' Q' + cx + ' ' + cy + ' ' + b.x + ' ' + b.y, lx: round(0.25 * a.x + 0.5 * cx + 0.25 * b.x), ly: round(0.25 * a.y + 0.5 * cy + 0.25 * b.y) };
  }

  function renderMap(map) {
    var layout = map.layout;
    Array.prototype.slice.call(svg.children).forEach(function (c) { if (c.tagName !== 'defs') svg.removeChild(c); });
    svg.setAttribute('viewBox', '0 0 ' + layout.width + ' ' + layout.height);
    svg.setAttribute('width', layout.width);
    svg.setAttribute('height', layout.height);
    var groups = el('g', { 'class': 'groups' }, svg);
    var edges = el('g', { 'class': 'edges' }, svg);
    var nodes = el('g', { 'class': 'nodes' }, svg);
    var labels = el('g', { 'class': 'labels' }, svg);
    var at = {};
    layout.nodes.forEach(function (n) { at[n.id] = n; });
    layout.groups.forEach(function (g) {
      var box = el('g', { 'class': 'ns' + (g.namespace ? '' : ' outside'), 'data-namespace': g.namespace }, groups);
      el('rect', { x: g.x, y: g.y, width: g.width, height: g.height, rx: 12 }, box);
      text(box, g.x + 12, g.y + 18, g.label, 'ns-label');
    });
    map.edges.forEach(function (e) {
      var s = at[e.source], d = at[e.destination];
      if (!s || !d) return;
      var geo = curve(s, d);
      var g = el('g', { 'class': 'edge ' + e.verdict + (e.active ? '' : ' idle'), 'data-source': e.source, 'data-destination': e.destination, 'data-verdict': e.verdict }, edges);
      el('path', { d: geo.d, 'marker-end': 'url(#arrow-' + e.verdict + ')' }, g);
      el('title', {}, g).textContent = edgeTitle(e);
      var lines = edgeLines(e);
      lines.forEach(function (line, i) { text(labels, geo.lx, geo.ly + 4 + (i - (lines.length - 1) / 2) * 13, line, 'edge-label ' + e.verdict); });
    });
    layout.nodes.forEach(function (n) {
      var g = el('g', { 'class': 'node ' + n.kind, 'data-id': n.id, transform: 'translate(' + n.x + ',' + n.y + ')' }, nodes);
      el('circle', { r: R }, g);
      text(g, 0, R + 15, n.label, 'node-label');
      var labelText = n.labels ? Object.keys(n.labels).map(function (k) { return k + '=' + n.labels[k]; }).join(', ') : '';
      el('title', {}, g).textContent = n.id + (labelText ? ' (' + labelText + ')' : '');
    });
    if (!layout.nodes.length) text(groups, 20, 40, 'No flows yet for these filters.', 'empty');
  }

  function end(e) { return e.name + (e.port ? ':' + e.port : ''); }
  function cell(tr, value, cls) {
    var td = document.createElement('td');
    td.textContent = value;
    if (cls) td.className = cls;
    tr.appendChild(td);
  }
  function renderTable(flows) {
    var rows = document.createDocumentFragment();
    flows.forEach(function (r) {
      var tr = document.createElement('tr');
      tr.className = r.verdict.toLowerCase();
      cell(tr, r.time.slice(11, 23), 'mono');
      cell(tr, r.l7 ? r.l7.type + ' ' + r.l7.kind : r.type);
      cell(tr, r.verdict, 'verdict');
      cell(tr, end(r.source), 'mono');
      cell(tr, end(r.destination), 'mono');
      cell(tr, r.protocol);
      cell(tr, r.summary, 'summary');
      rows.appendChild(tr);
    });
    tbody.replaceChildren(rows);
    count.textContent = flows.length ? '(newest ' + flows.length + ')' : '(none yet)';
  }
  function renderStatus(view) {
    var f = view.feed, m = view.map, parts = [];
    parts.push(f.connected ? 'live' : 'not connected');
    if (f.error) parts.push(f.error);
    parts.push(m.nodes.length + ' nodes, ' + m.edges.length + ' edges, rates over ' + m.windowSec + ' s');
    if (f.held !== undefined) parts.push('the agent holds ' + f.held + ' of ' + f.capacity + ' records');
    if (f.lost && (f.lost.datapath || f.lost.followers)) parts.push('lost: ' + f.lost.datapath + ' in the datapath, ' + f.lost.followers + ' by slow readers');
    statusLine.textContent = parts.join(' · ');
    statusLine.className = f.connected && !f.error ? 'ok' : 'bad';
  }
  function poll() {
    if (inFlight) return;
    inFlight = true;
    fetch('/api/view?' + query(), { cache: 'no-store' })
      .then(function (res) { return res.text(); })
      .then(function (body) {
        if (body === lastBody) return;
        lastBody = body;
        var view = JSON.parse(body);
        renderMap(view.map);
        renderTable(view.flows);
        renderStatus(view);
      })
      .catch(function (err) { statusLine.textContent = 'sluice ui does not answer: ' + err.message; statusLine.className = 'bad'; })
      .finally(function () { inFlight = false; });
  }
  poll();
  setInterval(poll, POLL_MS);
})();
`;

const MARKERS = ['allowed', 'denied', 'mixed']
  .map((v) => `<marker id="arrow-${v}" viewBox="0 0 10 10" refX="8" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path class="marker-${v}" d="M0,0 L10,5 L0,10 z"/></marker>`)
  .join('');

/** The page, complete. */
export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sluice service map</title>
<style>${STYLE}</style>
</head>
<body>
<header><h1>Sluice <span>service map</span></h1><div id="status">connecting…</div></header>
<main>
  <form id="filters" class="card" autocomplete="off">
    <label>namespace <input name="namespace" placeholder="any"></label>
    <label>pod <input name="pod" placeholder="ns/name"></label>
    <label>selector <input name="selector" placeholder="app=web,tier!=db"></label>
    <label>verdict <select name="verdict"><option value="">any</option><option>ALLOWED</option><option>DENIED</option><option>DROPPED</option></select></label>
    <label>type <select name="type"><option value="">any</option><option value="flow">new flow</option><option value="drop">drop</option><option value="l7">L7</option></select></label>
    <label>L7 <select name="l7"><option value="">any</option><option value="http">HTTP</option><option value="dns">DNS</option></select></label>
    <label>protocol <input name="protocol" placeholder="TCP, UDP, ..."></label>
    <label>port <input name="port" inputmode="numeric" placeholder="any"></label>
    <label>since <input name="since" placeholder="5m, or a time"></label>
  </form>
  <section class="card">
    <div id="map-wrap"><svg id="map" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="service map"><defs>${MARKERS}</defs></svg></div>
    <div class="legend"><span><i style="background: var(--allowed)"></i>allowed</span><span><i style="background: var(--denied)"></i>denied or dropped</span><span><i style="background: var(--mixed)"></i>both</span><span>dashed: idle in the window</span><span>edge: new flows/s · L7 req/s · error share · p50 latency</span></div>
  </section>
  <section class="card">
    <h2>Flows <span id="flow-count"></span></h2>
    <table id="flows"><thead><tr><th>time</th><th>type</th><th>verdict</th><th>source</th><th>destination</th><th>protocol</th><th>summary</th></tr></thead><tbody></tbody></table>
  </section>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
