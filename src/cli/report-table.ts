import type { BenchReport } from './bench-runner.js'

function serverLabel(report: BenchReport): string {
  const { server } = report
  const name = server.kind === 'postgres' ? 'PostgreSQL' : 'MySQL/MariaDB'
  const where = server.embedded ? 'embedded, ' : ''
  return `${name} ${server.version.split(' ')[0]} (${where}max_connections ${server.maxConnections})`
}

/** The one-line summary of a run's settings, shared by the table and the HTML report. */
export function describeRun(report: BenchReport): string {
  return `${report.clients} clients, ${report.durationMs / 1000} s per mode, pool max ${report.max} + overflow ${report.overflow}, ${serverLabel(report)}`
}

/** The rows of the results table: a header, then one row per mode; shared with the HTML report. */
export function tableRows(report: BenchReport): string[][] {
  const header = [
    'mode',
    'req/s',
    '× per-request',
    'p50 ms',
    'p99 ms',
    'max ms',
    'errors',
    'peak server conns',
  ]
  const rows = report.modes.map((m) => [
    m.mode,
    m.requestsPerSecond.toFixed(0),
    m.ratioToPerRequest === null ? '–' : `${m.ratioToPerRequest.toFixed(2)}×`,
    String(m.latencyMs.p50),
    String(m.latencyMs.p99),
    String(m.latencyMs.max),
    String(m.errors.total),
    String(m.peakServerConnections),
  ])
  return [header, ...rows]
}

/**
 * Renders a bench report as plain text for a terminal: the settings, a table with one row per
 * mode, and the errors by kind, "Too many connections" first when there were any.
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
  if (errorLines.length > 0) out.push('', 'errors by kind:', ...errorLines)
  out.push(
    '',
    'req/s counts successful responses only; latency is of every response, as autocannon saw it.',
  )
  return out.join('\n')
}
