import type { BenchReport } from './bench-runner.js'
import { describeRun, noiseLine, tableRows } from './report-table.js'

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
  .sub { color: #5a6272; margin: 0 0 16px; overflow-wrap: anywhere; }
  .grid { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 20px; }
  .card { border: 1px solid #e3e6ec; border-radius: 8px; padding: 12px 14px; min-width: 0; }
  .wide { grid-column: 1 / span 2; }
  svg { width: 100%; height: auto; display: block; }
  svg text { font: 12px system-ui, sans-serif; fill: #3c4353; }
  svg text.label { paint-order: stroke; stroke: #fff; stroke-width: 4px; stroke-linejoin: round; }
  table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; font-size: 13px; }
  th, td { padding: 5px 7px; border-bottom: 1px solid #e3e6ec; text-align: right; }
  td { white-space: nowrap; }
  th { font-weight: 600; color: #3c4353; vertical-align: bottom; }
  th:first-child, td:first-child { text-align: left; }
  .swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
  .note { color: #5a6272; font-size: 12px; }
  .noise { font-weight: 600; color: #3c4353; }
  .err { color: #b3261e; }
  @media (max-width: 1000px) { .grid { grid-template-columns: minmax(0, 1fr); } .wide { grid-column: 1; } }
`

/**
 * How each mode's line is drawn. Lines are drawn widest first and a later line is narrower or
 * dashed, so that where two lie on top of each other (both pools at max) both stay visible.
 */
const SERIES: Record<string, { color: string; width: number; dash: string }> = {
  lifeguard: { color: '#2e8b57', width: 5, dash: '' },
  'per-request': { color: '#d1495b', width: 2, dash: '' },
  'driver-pool': { color: '#3070b3', width: 2.2, dash: '7 5' },
}

/** The drawing code, run by the browser on the embedded data; no network, no library. */
const SCRIPT = `
(function () {
  var data = JSON.parse(document.getElementById('bench-data').textContent);
  var SERIES = ${JSON.stringify(SERIES)};
  var NS = 'http://www.w3.org/2000/svg';
  function style(mode) { return SERIES[mode] || { color: '#777', width: 2, dash: '' }; }
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
  /** A legend row whose entries are spaced by their measured width, so none runs into the next. */
  function legend(svg, x, y, lines) {
    data.modes.forEach(function (m) {
      var s = style(m.mode);
      if (lines) el('line', { x1: x, x2: x + 26, y1: y - 4, y2: y - 4, stroke: s.color, 'stroke-width': Math.min(s.width, 4), 'stroke-dasharray': s.dash || 'none' }, svg);
      else el('rect', { x: x + 8, y: y - 9, width: 10, height: 10, rx: 2, fill: s.color }, svg);
      var t = el('text', { x: x + 32, y: y, 'data-legend': m.mode }, svg, m.mode);
      x += 32 + t.getComputedTextLength() + 22;
    });
  }
  function axisLabelY(svg, x, yMid, text) {
    el('text', { x: x, y: yMid, transform: 'rotate(-90 ' + x + ' ' + yMid + ')', 'text-anchor': 'middle' }, svg, text);
  }
  function connectionsChart() {
    var W = 1040, H = 470, L = 58, R = 16, T = 40, P1 = 290, P2T = 340, P2B = 420;
    var svg = el('svg', { viewBox: '0 0 ' + W + ' ' + H, 'data-chart': 'connections', role: 'img' });
    document.getElementById('chart-connections').appendChild(svg);
    var xMax = data.durationMs / 1000;
    var yTop = Math.max(data.server.maxConnections, 1);
    var refusedTop = 0;
    data.modes.forEach(function (m) {
      m.serverConnections.forEach(function (s) { xMax = Math.max(xMax, s[0] / 1000); yTop = Math.max(yTop, s[1]); });
      (m.refusedConnects || []).forEach(function (r) { refusedTop = Math.max(refusedTop, r[1]); });
    });
    yTop = niceMax(yTop * 1.1);
    function X(t) { return L + (t / xMax) * (W - L - R); }
    function Y(v) { return P1 - (v / yTop) * (P1 - T); }
    for (var i = 0; i <= 5; i++) {
      var v = (yTop / 5) * i;
      el('line', { x1: L, x2: W - R, y1: Y(v), y2: Y(v), stroke: '#eceef2' }, svg);
      el('text', { x: L - 6, y: Y(v) + 4, 'text-anchor': 'end' }, svg, String(Math.round(v)));
    }
    axisLabelY(svg, 16, (T + P1) / 2, 'app sessions on the server');
    // The limits, labelled at the right end; a label that would sit on another moves below its line.
    var limits = [[data.server.maxConnections, 'max_connections ' + data.server.maxConnections, '#b3261e', '6 4']];
    if (data.server.usableConnections !== undefined && data.server.usableConnections !== data.server.maxConnections)
      limits.push([data.server.usableConnections, 'usable by the app ' + data.server.usableConnections, '#c26a00', '2 3']);
    limits.push([data.max + data.overflow, 'pool max + overflow ' + (data.max + data.overflow), '#2e8b57', '6 4']);
    limits.forEach(function (lim) {
      el('line', { x1: L, x2: W - R, y1: Y(lim[0]), y2: Y(lim[0]), stroke: lim[2], 'stroke-dasharray': lim[3], 'stroke-width': 1.3, 'data-limit': lim[1] }, svg);
    });
    var order = data.modes.slice().sort(function (a, b) { return style(b.mode).width - style(a.mode).width; });
    order.forEach(function (m) {
      var s = style(m.mode);
      var points = m.serverConnections.map(function (p) { return X(p[0] / 1000).toFixed(1) + ',' + Y(p[1]).toFixed(1); });
      if (points.length === 1) points.push(points[0]);
      el('polyline', { points: points.join(' '), fill: 'none', stroke: s.color, 'stroke-width': s.width, 'stroke-dasharray': s.dash || 'none', 'stroke-linejoin': 'round', 'stroke-opacity': 0.95, 'data-mode': m.mode }, svg);
    });
    // Limit labels go over the lines, haloed; one that would sit on another moves below its line.
    var taken = [];
    limits.forEach(function (lim) {
      var y = Y(lim[0]) - 5;
      if (taken.some(function (t) { return Math.abs(t - y) < 14; })) y = Y(lim[0]) + 15;
      taken.push(y);
      el('text', { x: W - R - 4, y: y, 'text-anchor': 'end', 'class': 'label', style: 'fill:' + lim[2] }, svg, lim[1]);
    });
    // Below: what the server refused, per interval, so that the headline's count has a place in time.
    var refused = data.modes.filter(function (m) { return (m.refusedConnects || []).some(function (r) { return r[1] > 0; }); });
    var step = (data.modes[0] && data.modes[0].refusedConnects && data.modes[0].refusedConnects[1]) ? data.modes[0].refusedConnects[1][0] - data.modes[0].refusedConnects[0][0] : 500;
    var totals = data.modes.map(function (m) { return m.mode + ' ' + (m.refusedConnects || []).reduce(function (a, r) { return a + r[1]; }, 0); });
    el('text', { x: L, y: P2T - 12 }, svg, 'connects the server refused (no free slot), per ' + step / 1000 + ' s: ' + totals.join(', '));
    var rTop = niceMax(Math.max(1, refusedTop));
    function RY(v) { return P2B - (v / rTop) * (P2B - P2T); }
    [0, rTop].forEach(function (v) {
      el('line', { x1: L, x2: W - R, y1: RY(v), y2: RY(v), stroke: '#eceef2' }, svg);
      el('text', { x: L - 6, y: RY(v) + 4, 'text-anchor': 'end' }, svg, String(v));
    });
    axisLabelY(svg, 16, (P2T + P2B) / 2, 'refused');
    refused.forEach(function (m, k) {
      m.refusedConnects.forEach(function (r) {
        if (r[1] === 0) return;
        var x0 = X(r[0] / 1000), x1 = X(Math.min(xMax, (r[0] + step) / 1000));
        var w = Math.max(1, (x1 - x0 - 2) / refused.length);
        el('rect', { x: x0 + 1 + k * w, y: RY(r[1]), width: w, height: Math.max(1, P2B - RY(r[1])), fill: style(m.mode).color, 'data-refused': m.mode }, svg);
      });
    });
    if (refused.length === 0) el('text', { x: (L + W - R) / 2, y: (P2T + P2B) / 2 + 4, 'text-anchor': 'middle' }, svg, 'none: the server refused no connection');
    var tick = xMax > 30 ? 10 : xMax > 10 ? 2 : 1;
    for (var t = 0; t <= xMax + 1e-9; t += tick) {
      el('text', { x: X(t), y: P2B + 16, 'text-anchor': t === 0 ? 'start' : 'middle' }, svg, t + ' s');
    }
    el('text', { x: (L + W - R) / 2, y: H - 8, 'text-anchor': 'middle' }, svg, 'time since the mode started');
    legend(svg, L, 18, true);
    return svg;
  }
  function latencyChart() {
    var W = 520, H = 300, L = 56, R = 12, T = 34, B = 40;
    var svg = el('svg', { viewBox: '0 0 ' + W + ' ' + H, 'data-chart': 'latency', role: 'img' });
    document.getElementById('chart-latency').appendChild(svg);
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
        el('rect', { x: x0 + i * barW, y: y, width: barW - 3, height: Math.max(1, H - B - y), fill: style(m.mode).color, 'data-mode': m.mode }, svg);
        el('title', {}, svg.lastChild, m.mode + ' ' + k + ': ' + value + ' ms');
      });
      el('text', { x: L + g * groupW + groupW / 2, y: H - B + 16, 'text-anchor': 'middle' }, svg, k);
    });
    el('text', { x: (L + W - R) / 2, y: H - 6, 'text-anchor': 'middle' }, svg, 'latency percentile (log scale)');
    legend(svg, L - 8, 18, false);
    return svg;
  }
  function throughputChart() {
    var W = 520, H = 300, L = 100, T = 30, B = 40;
    var svg = el('svg', { viewBox: '0 0 ' + W + ' ' + H, 'data-chart': 'throughput', role: 'img' });
    document.getElementById('chart-throughput').appendChild(svg);
    function labelOf(m) { return Math.round(m.requestsPerSecond) + (m.ratioToPerRequest && m.mode !== 'per-request' ? ' (' + m.ratioToPerRequest.toFixed(1) + '×)' : ''); }
    // The right margin holds the widest label, so a label always fits past its bar and whisker.
    var R = 14;
    data.modes.forEach(function (m) {
      var probe = el('text', { x: 0, y: 0, 'class': 'label' }, svg, labelOf(m));
      R = Math.max(R, probe.getComputedTextLength() + 12);
      svg.removeChild(probe);
    });
    var top = niceMax(Math.max.apply(null, data.modes.map(function (m) { return Math.max(m.requestsPerSecond, m.spread ? m.spread.requestsPerSecond.max : 0); }).concat([1])));
    var rowH = (H - T - B) / Math.max(1, data.modes.length);
    function X(v) { return L + (v / top) * (W - L - R); }
    for (var i = 0; i <= 4; i++) {
      var v = (top / 4) * i;
      el('line', { x1: X(v), x2: X(v), y1: T, y2: H - B, stroke: '#eceef2' }, svg);
      el('text', { x: X(v), y: H - B + 16, 'text-anchor': 'middle' }, svg, String(Math.round(v)));
    }
    data.modes.forEach(function (m, i) {
      var y = T + i * rowH + rowH * 0.2, h = rowH * 0.6, mid = y + h / 2;
      var s = style(m.mode);
      el('rect', { x: L, y: y, width: Math.max(1, X(m.requestsPerSecond) - L), height: h, fill: s.color, 'data-mode': m.mode }, svg);
      var end = X(m.requestsPerSecond);
      if (m.spread && data.rounds > 1) {
        var a = X(m.spread.requestsPerSecond.min), b = X(m.spread.requestsPerSecond.max);
        el('line', { x1: a, x2: b, y1: mid, y2: mid, stroke: '#1d2330', 'stroke-width': 1.5, 'data-spread': m.mode }, svg);
        [a, b].forEach(function (x) { el('line', { x1: x, x2: x, y1: mid - 7, y2: mid + 7, stroke: '#1d2330', 'stroke-width': 1.5 }, svg); });
        end = Math.max(end, b);
      }
      el('text', { x: L - 8, y: mid + 4, 'text-anchor': 'end' }, svg, m.mode);
      el('text', { x: end + 6, y: mid + 4, 'class': 'label' }, svg, labelOf(m));
    });
    el('text', { x: (L + W - 14) / 2, y: H - 6, 'text-anchor': 'middle' }, svg, data.rounds > 1 ? 'successful req/s: median of ' + data.rounds + ' rounds, whiskers min–max' : 'successful requests per second');
    return svg;
  }
  function waitChart(m) {
    var W = 1040, H = 300, L = 58, R = 16, T = 40, B = 52;
    var svg = el('svg', { viewBox: '0 0 ' + W + ' ' + H, 'data-chart': 'wait', role: 'img' });
    document.getElementById('chart-wait').appendChild(svg);
    var h = m.waitTime;
    function bound(s) { return s >= 1 ? s + ' s' : Math.round(s * 1e5) / 100 + ' ms'; }
    var labels = h.bounds.map(bound).concat(['> ' + bound(h.bounds[h.bounds.length - 1])]);
    // The upper bound of the bucket that holds quantile q: what histogram_quantile can promise.
    function quantile(q) {
      var want = q * h.count, seen = 0;
      for (var i = 0; i < h.counts.length; i++) { seen += h.counts[i]; if (seen >= want && seen > 0) return labels[i]; }
      return '–';
    }
    var top = niceMax(Math.max.apply(null, h.counts.concat([1])) * 1.15);
    var slot = (W - L - R) / h.counts.length;
    function Y(v) { return H - B - (v / top) * (H - T - B); }
    for (var i = 0; i <= 4; i++) {
      var v = (top / 4) * i;
      el('line', { x1: L, x2: W - R, y1: Y(v), y2: Y(v), stroke: '#eceef2' }, svg);
      // Counts reach tens of thousands: 12.5k keeps a tick clear of the axis label.
      el('text', { x: L - 6, y: Y(v) + 4, 'text-anchor': 'end' }, svg, v >= 10000 ? Math.round(v / 100) / 10 + 'k' : String(Math.round(v)));
    }
    axisLabelY(svg, 16, (T + H - B) / 2, 'acquires');
    h.counts.forEach(function (n, i) {
      var x = L + i * slot;
      if (n > 0) {
        el('rect', { x: x + 3, y: Y(n), width: slot - 6, height: Math.max(1, H - B - Y(n)), fill: style(m.mode).color, 'data-wait-bucket': labels[i] }, svg);
        el('title', {}, svg.lastChild, n + ' acquires waited ' + (i < h.bounds.length ? 'up to ' : '') + labels[i]);
      }
      el('text', { x: x + slot / 2, y: H - B + 16, 'text-anchor': 'middle' }, svg, labels[i]);
    });
    el('text', { x: L, y: 18 }, svg, m.mode + ': ' + h.count + ' acquires, mean ' + bound(Math.round((h.sumSeconds / Math.max(1, h.count)) * 1e6) / 1e6) + ', p50 ≤ ' + quantile(0.5) + ', p95 ≤ ' + quantile(0.95) + ', p99 ≤ ' + quantile(0.99));
    el('text', { x: (L + W - R) / 2, y: H - 8, 'text-anchor': 'middle' }, svg, 'wait for a pooled connection (each bucket up to its bound)');
    return svg;
  }
  var drawn = 0;
  [connectionsChart, latencyChart, throughputChart].forEach(function (draw) { draw(); drawn++; });
  var waited = data.modes.filter(function (m) { return m.waitTime && m.waitTime.count > 0; })[0];
  if (waited) { waitChart(waited); drawn++; }
  document.body.setAttribute('data-charts-rendered', String(drawn));
})();
`

/**
 * Renders a bench report as one self-contained HTML page: the data inline, and inline JS that
 * draws SVG charts (the app's server sessions over time per mode against `max_connections`,
 * with the connects the server refused per interval below; latency percentiles per mode;
 * successful requests per second with their spread over the rounds; the lifeguard pool's
 * wait-time histogram, when the run measured it) next to the results table
 * and a line on run-to-run noise. Nothing is fetched at view time.
 */
export function renderHtmlReport(report: BenchReport): string {
  const colors = (mode: string) => SERIES[mode]?.color ?? '#777'
  const [header, ...rows] = tableRows(report)
  const table = `<table><thead><tr>${header!.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead><tbody>${rows
    .map(
      (row) =>
        `<tr>${row
          .map((cell, i) =>
            i === 0
              ? `<td><span class="swatch" style="background:${colors(cell)}"></span>${escapeHtml(cell)}</td>`
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
  <div class="card wide"><h2>Server sessions and refused connects over time${report.rounds > 1 ? ' (each mode’s median round)' : ''}</h2><div id="chart-connections"></div>
    <p class="note">Sessions sampled every 100 ms on the server (${escapeHtml(report.server.countedBy)}); a session counts from the moment it holds a slot, while it still authenticates. Refused connects are counted by the app as the server refuses them, so short peaks between two samples still show. Usable by the app: ${escapeHtml(report.server.usableBy)}.</p></div>
  <div class="card"><h2>Latency</h2><div id="chart-latency"></div></div>
  <div class="card"><h2>Throughput</h2><div id="chart-throughput"></div></div>
  ${
    report.modes.some((m) => (m.waitTime?.count ?? 0) > 0)
      ? `<div class="card wide"><h2>Wait for a connection (the lifeguard pool${report.rounds > 1 ? ', median round' : ''})</h2><div id="chart-wait"></div>
    <p class="note">The buckets of the pool's <code>db_client_connection_wait_time_seconds</code> histogram, as <code>lifeguard/prometheus</code> and <code>lifeguard/otel</code> export it (docs/observability.md); a percentile is the upper bound of the bucket that holds it.</p></div>`
      : ''
  }
  <div class="card wide"><h2>Results</h2>${table}
    <p class="noise">${escapeHtml(noiseLine(report))}</p>
    ${errors === '' ? '' : `<h2>Errors by kind${report.rounds > 1 ? ' (median round)' : ''}</h2><ul>${errors}</ul>`}
    <p class="note">req/s counts successful responses only; latency is of every response, as the load generator (autocannon) saw it.</p></div>
</div>
<script type="application/json" id="bench-data">${scriptJson(report)}</script>
<script>${SCRIPT}</script>
</body>
</html>
`
}
