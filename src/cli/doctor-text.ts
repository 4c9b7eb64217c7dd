import type { DoctorReport } from './doctor.js'

/** Renders a doctor report for a terminal: what was read, then each finding with its setting. */
export function renderDoctor(report: DoctorReport): string {
  const cut = Object.entries(report.idleCutoffs)
    .map(([name, value]) => `${name} ${value === null ? 'off' : `${value} ms`}`)
    .join(', ')
  const ratio = report.pingMs > 0 ? (report.connectMs / report.pingMs).toFixed(0) : '–'
  const lines = [
    `lifeguard doctor: ${report.url}`,
    `  server           ${report.server.kind === 'postgres' ? 'PostgreSQL' : 'MySQL/MariaDB'} ${report.server.version}`,
    `  connections      ${report.connectionsInUse} in use of max_connections ${report.maxConnections}${report.maxUserConnections === null ? '' : ` (${report.maxUserConnections} for this user)`}`,
    `  idle cut-offs    ${cut}`,
    `  TLS              ${report.tls ? 'in use' : 'not in use'}`,
    `  new connection   ${report.connectMs} ms vs ping ${report.pingMs} ms (${ratio}×): what pooling saves per request`,
    `  pool checked     max ${report.pool.max} + overflow ${report.pool.overflow}, maxLifetime ${report.pool.maxLifetimeMs} ms, idleTimeout ${report.pool.idleTimeoutMs} ms`,
    '',
  ]
  if (report.findings.length === 0) lines.push('OK: no problem found.')
  for (const f of report.findings)
    lines.push(`${f.level.toUpperCase()} [${f.setting}] ${f.message}`)
  return lines.join('\n')
}
