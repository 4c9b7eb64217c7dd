import type { BenchReport } from './bench-runner.js'
import { describeRun, tableRows } from './report-table.js'

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

/** JSON that is safe inside a <script> element: no `</script>`, no `<!--`. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029')
}

const STYLE = `
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1100px; color: #1d2330; background: #fff; padding: 0 16px; }
  h1 { font-size: 22px; margin: 0 0 4px; }
  h2 { font-size: 16px; margin: 28px 0 8px; }
  .sub { color: #5a6272; margin: 0 0 16px; }
  .grid { display: grid; grid-template-columns: 1fr 1fr; gap: 20px; }
  .card { border: 1px solid #e3e6ec; border-radius: 8px; padding: 12px 14px; }
  .wide { grid-column: 1 / span 2; }
  svg { width: 100%; height: auto; display: block; }
  svg text { font: 11px system-ui, sans-serif; fill: #3c4353; }
  table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
  th, td { padding: 6px 10px; border-bottom: 1px solid #e3e6ec; text-align: right; white-space: nowrap; }
  th:first-child, td:first-child { text-align: left; }
  th { font-weight: 600; color: #3c4353; }
  .swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
  .note { color: #5a6272; font-size: 12px; }
  .err { color: #b3261e; }
`

/** The drawing code, run by the browser on the embedded data; no network, no library. */
const SCRIPT = `
(function () {
  var data = JSON.parse(document.getElementById('bench-data').textContent);
  var COLORS = { 'per-request': '#d1495b', 'lifeguard': '#2e8b57', 'driver-pool': '#3070b3' };
  var NS = 'http://www.w3.org/2000/svg';
  function el(name, attrs, parent, text) {
    var node = document.createElementNS(NS, name);
    for (var key in attrs) node.setAttribute(key, attrs[key]);
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }
  function niceMax(v) {
    if (v <= 0) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
    return 10 * p;
  }
  function legend(svg, x, y) {
    data.modes.forEach(function (m, i) {
      el('rect', { x: x + i * 120, y: y - 9, width: 10, height: 10, rx: 2, fill: COLORS[m.mode] || '#777' }, svg);
      el('text', { x: x + i * 120 + 14, y: y }, svg, m.mode);
    });
  }
  function connectionsChart() {
    var W = 1040, H = 330, L = 52, R = 20, T = 30, B = 40;
    var svg = el('svg', { viewBox: '0 0 ' + W + ' ' + H, 'data-chart': 'connections', role: 'img' });
    var xMax = data.durationMs / 1000;
    var yTop = Math.max(data.server.maxConnections, 1);
    data.modes.forEach(function (m) {
      m.serverConnections.forEach(function (s) { xMax = Math.max(xMax, s[0] / 1000); yTop = Math.max(yTop, s[1]); });
    });
    yTop = niceMax(yTop * 1.1);
    function X(t) { return L + (t / xMax) * (W - L - R); }
    function Y(v) { return H - B - (v / yTop) * (H - T - B); }
    for (var i = 0; i <= 5; i++) {
      var v = (yTop / 5) * i;
      el('line', { x1: L, x2: W - R, y1: Y(v), y2: Y(v), stroke: '#eceef2' }, svg);
      el('text', { x: L - 6, y: Y(v) + 4, 'text-anchor': 'end' }, svg, String(Math.round(v)));
    }
    var step = xMax > 30 ? 10 : xMax > 10 ? 2 : 1;
    for (var t = 0; t <= xMax + 1e-9; t += step) {
      el('text', { x: X(t), y: H - B + 16, 'text-anchor': 'middle' }, svg, t + ' s');
    }
    el('text', { x: (L + W - R) / 2, y: H - 6, 'text-anchor': 'middle' }, svg, 'time since the mode started');
    el('text', { x: 14, y: (T + H - B) / 2, transform: 'rotate(-90 14 ' + (T + H - B) / 2 + ')', 'text-anchor': 'middle' }, svg, 'server connections');
    function limit(value, label, color) {
      el('line', { x1: L, x2: W - R, y1: Y(value), y2: Y(value), stroke: color, 'stroke-dasharray': '6 4', 'stroke-width': 1.2 }, svg);
      el('text', { x: W - R - 4, y: Y(value) - 5, 'text-anchor': 'end', style: 'fill:' + color }, svg, label);
    }
    limit(data.server.maxConnections, 'max_connections ' + data.server.maxConnections, '#b3261e');
    limit(data.max + data.overflow, 'pool max + overflow ' + (data.max + data.overflow), '#2e8b57');
    data.modes.forEach(function (m) {
      var points = m.serverConnections.map(function (s) { return X(s[0] / 1000).toFixed(1) + ',' + Y(s[1]).toFixed(1); });
      if (points.length === 1) points.push(points[0]);
      el('polyline', { points: points.join(' '), fill: 'none', stroke: COLORS[m.mode] || '#777', 'stroke-width': 2, 'stroke-linejoin': 'round', 'data-mode': m.mode }, svg);
    });
    legend(svg, L + 8, 18);
    return svg;
  }
  function latencyChart() {
    var W = 520, H = 300, L = 52, R = 12, T = 30, B = 40;
    var svg = el('svg', { viewBox: '0 0 ' + W + ' ' + H, 'data-chart': 'latency', role: 'img' });
    var keys = ['p50', 'p90', 'p99', 'max'];
    var top = 1;
    data.modes.forEach(function (m) { keys.forEach(function (k) { top = Math.max(top, m.latencyMs[k]); }); });
    var decades = Math.max(1, Math.ceil(Math.log10(top)));
    function Y(v) { var lv = Math.log10(Math.max(v, 1)); return H - B - (lv / decades) * (H - T - B); }
    for (var d = 0; d <= decades; d++) {
      var v = Math.pow(10, d);
      el('line', { x1: L, x2: W - R, y1: Y(v), y2: Y(v), stroke: '#eceef2' }, svg);
      el('text', { x: L - 6, y: Y(v) + 4, 'text-anchor': 'end' }, svg, v >= 1000 ? v / 1000 + ' s' : v + ' ms');
    }
    var groupW = (W - L - R) / keys.length;
    var barW = Math.min(28, (groupW - 16) / Math.max(1, data.modes.length));
    keys.forEach(function (k, g) {
      var x0 = L + g * groupW + (groupW - barW * data.modes.length) / 2;
      data.modes.forEach(function (m, i) {
        var value = m.latencyMs[k];
        var y = Y(value);
        el('rect', { x: x0 + i * barW, y: y, width: barW - 3, height: Math.max(1, H - B - y), fill: COLORS[m.mode] || '#777', 'data-mode': m.mode }, svg);
        el('title', {}, svg.lastChild, m.mode + ' ' + k + ': ' + value + ' ms');
      });
      el('text', { x: L + g * groupW + groupW / 2, y: H - B + 16, 'text-anchor': 'middle' }, svg, k);
    });
    el('text', { x: (L + W - R) / 2, y: H - 6, 'text-anchor': 'middle' }, svg, 'latency percentile (log scale)');
    legend(svg, L + 8, 18);
    return svg;
  }
  function throughputChart() {
    var W = 520, H = 300, L = 96, R = 60, T = 30, B = 40;
    var svg = el('svg', { viewBox: '0 0 ' + W + ' ' + H, 'data-chart': 'throughput', role: 'img' });
    var top = niceMax(Math.max.apply(null, data.modes.map(function (m) { return m.requestsPerSecond; }).concat([1])));
    var rowH = (H - T - B) / Math.max(1, data.modes.length);
    function X(v) { return L + (v / top) * (W - L - R); }
    for (var i = 0; i <= 4; i++) {
      var v = (top / 4) * i;
      el('line', { x1: X(v), x2: X(v), y1: T, y2: H - B, stroke: '#eceef2' }, svg);
      el('text', { x: X(v), y: H - B + 16, 'text-anchor': 'middle' }, svg, String(Math.round(v)));
    }
    data.modes.forEach(function (m, i) {
      var y = T + i * rowH + rowH * 0.2;
      el('rect', { x: L, y: y, width: Math.max(1, X(m.requestsPerSecond) - L), height: rowH * 0.6, fill: COLORS[m.mode] || '#777', 'data-mode': m.mode }, svg);
      el('text', { x: L - 8, y: y + rowH * 0.3 + 4, 'text-anchor': 'end' }, svg, m.mode);
      el('text', { x: X(m.requestsPerSecond) + 6, y: y + rowH * 0.3 + 4 }, svg, Math.round(m.requestsPerSecond) + (m.ratioToPerRequest && m.mode !== 'per-request' ? '  (' + m.ratioToPerRequest.toFixed(1) + '×)' : ''));
    });
    el('text', { x: (L + W - R) / 2, y: H - 6, 'text-anchor': 'middle' }, svg, 'successful requests per second');
    return svg;
  }
  var drawn = 0;
  [['chart-connections', connectionsChart], ['chart-latency', latencyChart], ['chart-throughput', throughputChart]].forEach(function (pair) {
    document.getElementById(pair[0]).appendChild(pair[1]());
    drawn++;
  });
  document.body.setAttribute('data-charts-rendered', String(drawn));
})();
`

/**
 * Renders a bench report as one self-contained HTML page: the data inline, and inline JS that
 * draws SVG charts (server connections over time per mode, latency percentiles per mode,
 * successful requests per second) next to the results table. Nothing is fetched at view time.
 */
export function renderHtmlReport(report: BenchReport): string {
  const colors: Record<string, string> = {
    'per-request': '#d1495b',
    lifeguard: '#2e8b57',
    'driver-pool': '#3070b3',
  }
  const [header, ...rows] = tableRows(report)
  const table = `<table><thead><tr>${header!.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead><tbody>${rows
    .map(
      (row) =>
        `<tr>${row
          .map((cell, i) =>
            i === 0
              ? `<td><span class="swatch" style="background:${colors[cell] ?? '#777'}"></span>${escapeHtml(cell)}</td>`
              : `<td>${escapeHtml(cell)}</td>`,
          )
          .join('')}</tr>`,
    )
    .join('')}</tbody></table>`
  const errors = report.modes
    .filter((m) => m.errors.total > 0)
    .map(
      (m) =>
        `<li><b>${escapeHtml(m.mode)}</b>: ${Object.entries(m.errors.byKind)
          .map(([kind, n]) => `<span class="err">${escapeHtml(kind)}</span> ${n}`)
          .join(', ')}</li>`,
    )
    .join('')
  const machine = `${report.machine.cpus} × ${report.machine.cpuModel}, Node ${report.machine.node}, ${report.machine.os}`
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lifeguard bench report</title>
<style>${STYLE}</style>
</head>
<body>
<h1>lifeguard bench: a connection per request vs a pool</h1>
<p class="sub">${escapeHtml(describeRun(report))}<br>${escapeHtml(report.url)} · ${escapeHtml(report.startedAt)} · ${escapeHtml(machine)}</p>
<div class="grid">
  <div class="card wide"><h2>Server connections over time</h2><div id="chart-connections"></div>
    <p class="note">Sampled every 100 ms on the server (${escapeHtml(report.server.countedBy)}).</p></div>
  <div class="card"><h2>Latency</h2><div id="chart-latency"></div></div>
  <div class="card"><h2>Throughput</h2><div id="chart-throughput"></div></div>
  <div class="card wide"><h2>Results</h2>${table}
    ${errors === '' ? '' : `<h2>Errors by kind</h2><ul>${errors}</ul>`}
    <p class="note">req/s counts successful responses only; latency is of every response, as the load generator (autocannon) saw it.</p></div>
</div>
<script type="application/json" id="bench-data">${scriptJson(report)}</script>
<script>${SCRIPT}</script>
</body>
</html>
`
}
