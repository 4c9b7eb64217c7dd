import type { DoctorReport, PoolerReport } from './doctor.js'
import { humanDuration } from './human-duration.js'

/** The server's role, and which `targetSessionAttrs` would lend its connections. */
function roleLine({ role, because }: DoctorReport['role']): string {
  if (role === 'read-write') {
    return "read-write: writes accepted (targetSessionAttrs 'any' or 'read-write' lends its connections)"
  }
  const what = role === 'standby' ? 'hot standby' : 'read-only'
  return `${what} (${because}): writes fail; targetSessionAttrs 'read-write' would refuse its connections, 'read-only' wants them`
}

/**
 * Renders a doctor report for a terminal: what was read, then each finding with its setting.
 * Settings and cut-offs read as durations (`8 h`), the measured costs in ms.
 */
export function renderDoctor(report: DoctorReport): string {
  const cut = Object.entries(report.idleCutoffs)
    .map(([name, value]) => `${name} ${humanDuration(value)}`)
    .join(', ')
  const ratio = report.pingMs > 0 ? (report.connectMs / report.pingMs).toFixed(0) : '–'
  const { pool } = report
  const lines = [
    `lifeguard doctor: ${report.url}`,
    `  server           ${report.server.kind === 'postgres' ? 'PostgreSQL' : 'MySQL/MariaDB'} ${report.server.version}`,
    `  connections      ${report.connectionsInUse} in use of max_connections ${report.maxConnections}${report.maxUserConnections === null ? '' : ` (${report.maxUserConnections} for this user)`}`,
    `  idle cut-offs    ${cut}`,
    `  TLS              ${report.tls ? 'in use' : 'not in use'}`,
    `  role             ${roleLine(report.role)}`,
    ...(report.pooler === null ? [] : [`  pooler           ${poolerLine(report.pooler)}`]),
    `  new connection   ${report.connectMs} ms vs ping ${report.pingMs} ms (${ratio}×): what pooling saves per request`,
    `  pool checked     max ${pool.max} + overflow ${pool.overflow}, min ${pool.min}, maxLifetime ${humanDuration(pool.maxLifetimeMs)}, idleTimeout ${humanDuration(pool.idleTimeoutMs)}`,
    '',
  ]
  for (const f of report.findings)
    lines.push(`${f.level.toUpperCase()} [${f.setting}] ${f.message}`)
  if (report.ok) {
    if (report.findings.length > 0) lines.push('')
    lines.push('OK: no problem found.')
  }
  return lines.join('\n')
}

/** The pooler in front, in one line: what it is and the settings doctor read. */
function poolerLine(pooler: PoolerReport): string {
  if (pooler.name === null)
    return `a connection pooler (${pooler.detectedBy}); its console: ${pooler.consoleError}`
  const settings = Object.entries(pooler.settings)
    .filter(([name]) => name !== 'pool_mode')
    .map(([name, value]) => `${name} ${value}`)
    .join(', ')
  return `${pooler.name} ${pooler.version ?? ''} in ${pooler.poolMode ?? 'an unknown'} mode (${settings})`
}
