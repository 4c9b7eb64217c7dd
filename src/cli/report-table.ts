import type { BenchModeResult, BenchReport } from './bench-runner.js'

function serverLabel(report: BenchReport): string {
  const { server } = report
  const name = server.kind === 'postgres' ? 'PostgreSQL' : 'MySQL/MariaDB'
  const where = server.embedded ? 'embedded, ' : ''
  return `${name} ${server.version.split(' ')[0]} (${where}max_connections ${server.maxConnections})`
}

/** The one-line summary of a run's settings, shared by the table and the HTML report. */
export function describeRun(report: BenchReport): string {
  const rounds = report.rounds === 1 ? '1 round' : `median of ${report.rounds} rounds`
  return `${report.clients} clients, ${report.durationMs / 1000} s per mode, ${rounds}, pool max ${report.max} + overflow ${report.overflow}${report.maxPipeline === undefined ? '' : `, maxPipeline ${report.maxPipeline}`}, ${serverLabel(report)}`
}

function ratio(value: number): string {
  return `${value.toFixed(value >= 10 ? 1 : 2)}×`
}

/** Connects the server refused in a mode's median round, by the bars of the report. */
export function refusedTotal(mode: BenchModeResult): number {
  return mode.refusedConnects.reduce((sum, [, n]) => sum + n, 0)
}

/** The rows of the results table: a header, then one row per mode; shared with the HTML report. */
export function tableRows(report: BenchReport): string[][] {
  const spread = report.rounds > 1
  const header = [
    'mode',
    'req/s',
    ...(spread ? ['min–max'] : []),
    '× per-request',
    ...(spread ? ['min–max'] : []),
    'p50 ms',
    'p99 ms',
    'max ms',
    'errors',
    'peak server conns',
  ]
  const rows = report.modes.map((m) => {
    const r = m.spread.ratioToPerRequest
    return [
      m.mode,
      m.requestsPerSecond.toFixed(0),
      ...(spread
        ? [
            `${m.spread.requestsPerSecond.min.toFixed(0)}–${m.spread.requestsPerSecond.max.toFixed(0)}`,
          ]
        : []),
      m.ratioToPerRequest === null ? '–' : ratio(m.ratioToPerRequest),
      // per-request's own ratio is 1 in every round: no spread to show.
      ...(spread
        ? [r === null || m.mode === 'per-request' ? '–' : `${ratio(r.min)}–${ratio(r.max)}`]
        : []),
      String(m.latencyMs.p50),
      String(m.latencyMs.p99),
      String(m.latencyMs.max),
      String(m.errors.total),
      String(m.peakServerConnections),
    ]
  })
  return [header, ...rows]
}

/**
 * One line on how much a single run of this bench can be trusted: with several rounds, how far
 * one round's requests/s strayed from the median, for the noisiest mode, and the range of each
 * pool's ratio to per-request; with one round, that it cannot be told.
 */
export function noiseLine(report: BenchReport): string {
  if (report.modes.length === 0) return 'No mode finished a round.'
  if (report.rounds < 2) {
    return 'Run-to-run noise: one round only, so how far a single run strays cannot be told here; run with --rounds 3 or more.'
  }
  const stray = report.modes.map((m) => {
    const { min, max } = m.spread.requestsPerSecond
    const mid = m.requestsPerSecond
    const pct = mid > 0 ? (Math.max(mid - min, max - mid) / mid) * 100 : 0
    return { mode: m.mode, pct }
  })
  const worst = stray.reduce((a, b) => (b.pct > a.pct ? b : a))
  const ratios = report.modes
    .filter((m) => m.mode !== 'per-request' && m.spread.ratioToPerRequest !== null)
    .map(
      (m) =>
        `${m.mode} ${ratio(m.spread.ratioToPerRequest!.min)}–${ratio(m.spread.ratioToPerRequest!.max)}`,
    )
  return `Run-to-run noise over ${report.rounds} rounds: one round's req/s strayed up to ${worst.pct.toFixed(0)} % from the median (${worst.mode}, the noisiest mode)${ratios.length === 0 ? '' : `; a single round's ratio to per-request ranged ${ratios.join(', ')}`}. Read one run's ratios with that in mind; the table shows medians.`
}

/**
 * Renders a bench report as plain text for a terminal: the settings, a table with one row per
 * mode (medians, and their spread over the rounds), the errors by kind, "Too many connections"
 * first when there were any, and a line on run-to-run noise.
 */
export function renderTable(report: BenchReport): string {
  const rows = tableRows(report)
  const widths = rows[0]!.map((_, col) => Math.max(...rows.map((row) => row[col]!.length)))
  const line = (row: string[]) =>
    row
      .map((cell, col) => (col === 0 ? cell.padEnd(widths[col]!) : cell.padStart(widths[col]!)))
      .join('  ')
  const out = [`lifeguard bench: ${describeRun(report)}`, '', line(rows[0]!)]
  out.push(widths.map((w) => '-'.repeat(w)).join('  '))
  for (const row of rows.slice(1)) out.push(line(row))
  const errorLines = report.modes
    .filter((m) => m.errors.total > 0)
    .map(
      (m) =>
        `  ${m.mode}: ${Object.entries(m.errors.byKind)
          .map(([kind, n]) => `${kind} ${n}`)
          .join(', ')}`,
    )
  const median = report.rounds > 1 ? ' (median round)' : ''
  if (errorLines.length > 0) out.push('', `errors by kind${median}:`, ...errorLines)
  out.push(
    '',
    noiseLine(report),
    'req/s counts successful responses only; latency is of every response, as autocannon saw it.',
  )
  return out.join('\n')
}
