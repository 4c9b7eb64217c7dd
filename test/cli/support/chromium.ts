import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

/** Debian's Chromium, when installed. */
export const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) =>
  existsSync(p),
)

/** The flags of a headless run that talks to nothing but the file it opens. */
function flags(profile: string): string[] {
  return [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--hide-scrollbars',
    `--user-data-dir=${profile}`,
  ]
}

/** Runs headless Chromium once on a local HTML file with a fresh profile, removed afterwards. */
function chromium(args: string[], file: string): Promise<string> {
  if (CHROMIUM === undefined) throw new Error('chromium is not installed')
  const profile = mkdtempSync(join(tmpdir(), 'lifeguard-chromium-'))
  return new Promise<string>((resolve, reject) => {
    execFile(
      CHROMIUM,
      [...flags(profile), ...args, pathToFileURL(file).href],
      { timeout: 60_000, maxBuffer: 32 * 1024 * 1024 },
      (error, stdout) => (error ? reject(error) : resolve(stdout)),
    )
  }).finally(() => rmSync(profile, { recursive: true, force: true }))
}

/** The DOM after the page's scripts ran (`--dump-dom`). */
export function dumpDom(file: string): Promise<string> {
  return chromium(['--virtual-time-budget=5000', '--dump-dom'], file)
}

/** Saves a PNG of the page at 1200 px wide. */
export async function screenshot(file: string, png: string, height = 1400): Promise<void> {
  await chromium(
    ['--virtual-time-budget=5000', `--window-size=1200,${height}`, `--screenshot=${png}`],
    file,
  )
}

/** What {@link measureLayout} found on the page at one width. */
export interface Layout {
  width: number
  chartsRendered: number
  /** Texts that stick out of their SVG, or out of the viewport: what is clipped. */
  clipped: string[]
  /** Texts drawn so small (under 10 px high) that they cannot be read. */
  tiny: string[]
  /** Pairs of texts within one SVG whose boxes overlap. */
  overlapping: string[]
  /** HTML text (cells, headings, notes) that sticks out of its card or the viewport. */
  overflowing: string[]
  /** The connections chart's lines, in drawing order, with how they are stroked. */
  lines: Array<{ mode: string; stroke: string; width: number; dash: string }>
  /** The refused-connects bars' counts, summed per mode, read back from the data. */
  refusedBars: Record<string, number>
}

/**
 * The measuring script, appended to a copy of the page: once the charts are drawn, it checks
 * every text's box against its SVG's and the viewport's, pairs of overlapping texts, and HTML
 * text against its card, and writes what it found as JSON into `<pre id="layout">`.
 */
const MEASURE = `<script>
(function () {
  var vw = document.documentElement.clientWidth;
  function box(e) { return e.getBoundingClientRect(); }
  function name(e) { return (e.textContent || '').trim().slice(0, 60); }
  var out = { width: vw, chartsRendered: Number(document.body.getAttribute('data-charts-rendered')), clipped: [], tiny: [], overlapping: [], overflowing: [], lines: [], refusedBars: {} };
  document.querySelectorAll('svg').forEach(function (svg) {
    var s = box(svg);
    var texts = Array.prototype.slice.call(svg.querySelectorAll('text')).filter(function (t) { return name(t) !== ''; });
    texts.forEach(function (t) {
      var b = box(t);
      if (b.left < s.left - 0.5 || b.right > s.right + 0.5 || b.top < s.top - 0.5 || b.bottom > s.bottom + 0.5 || b.left < 0 || b.right > vw)
        out.clipped.push(svg.getAttribute('data-chart') + ': ' + name(t));
      if (b.height < 10) out.tiny.push(svg.getAttribute('data-chart') + ': ' + name(t) + ' (' + b.height.toFixed(1) + ' px)');
    });
    for (var i = 0; i < texts.length; i++) for (var j = i + 1; j < texts.length; j++) {
      var a = box(texts[i]), c = box(texts[j]);
      var w = Math.min(a.right, c.right) - Math.max(a.left, c.left), h = Math.min(a.bottom, c.bottom) - Math.max(a.top, c.top);
      if (w > 1 && h > 1) out.overlapping.push(svg.getAttribute('data-chart') + ': "' + name(texts[i]) + '" / "' + name(texts[j]) + '"');
    }
  });
  document.querySelectorAll('h1, h2, p, li, th, td').forEach(function (e) {
    var b = box(e), card = e.closest('.card'), c = card ? box(card) : { left: 0, right: vw };
    if (b.right > Math.min(c.right, vw) + 0.5 || b.left < Math.max(c.left, 0) - 0.5) out.overflowing.push(e.tagName + ': ' + name(e));
  });
  document.querySelectorAll('svg[data-chart="connections"] polyline').forEach(function (p) {
    var cs = getComputedStyle(p);
    out.lines.push({ mode: p.getAttribute('data-mode'), stroke: cs.stroke, width: parseFloat(cs.strokeWidth), dash: cs.strokeDasharray });
  });
  document.querySelectorAll('svg[data-chart="connections"] rect[data-refused]').forEach(function (r) {
    var m = r.getAttribute('data-refused');
    out.refusedBars[m] = (out.refusedBars[m] || 0) + 1;
  });
  var pre = document.createElement('pre');
  pre.id = 'layout';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>`

/** Renders `html` in headless Chromium at `width` px and measures its layout ({@link Layout}). */
export async function measureLayout(html: string, width: number): Promise<Layout> {
  const dir = mkdtempSync(join(tmpdir(), 'lifeguard-layout-'))
  try {
    const file = join(dir, 'report.html')
    writeFileSync(file, html.replace('</body>', `${MEASURE}</body>`))
    const dom = await chromium(
      ['--virtual-time-budget=5000', `--window-size=${width},2400`, '--dump-dom'],
      file,
    )
    const json = /<pre id="layout">([\s\S]*?)<\/pre>/.exec(dom)?.[1]
    if (json === undefined) throw new Error(`no layout measured at ${width} px`)
    return JSON.parse(
      json
        .replace(/&quot;/g, '"')
        .replace(/&lt;/g, '<')
        .replace(/&gt;/g, '>')
        .replace(/&amp;/g, '&'),
    )
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Saves a PNG of an HTML string at `width` px wide. */
export async function screenshotHtml(
  html: string,
  png: string,
  width: number,
  height = 1500,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'lifeguard-shot-'))
  try {
    const file = join(dir, 'report.html')
    writeFileSync(file, html)
    await chromium(
      ['--virtual-time-budget=5000', `--window-size=${width},${height}`, `--screenshot=${png}`],
      file,
    )
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
