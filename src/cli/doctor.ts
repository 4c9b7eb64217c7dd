import type { ServerRole } from '../core/dialect.js'
import { fitToIdleCutoff } from '../core/idle-cutoff.js'
import { kindOfUrl, loadMysql2, loadPg, type MysqlConnection, type PgClient } from './drivers.js'
import { humanDuration } from './human-duration.js'
import type { DoctorOptions } from './parse-args.js'
import { redactUrl } from './redact-url.js'

/**
 * One thing doctor found: a `problem` fails the run; a `warning` does not; a `note` says what
 * lifeguard will do by itself (lower a setting) and needs nothing from you.
 */
export interface DoctorFinding {
  level: 'problem' | 'warning' | 'note'
  /** The setting to change, pool-side (`maxLifetime`) or server-side (`wait_timeout`). */
  setting: string
  message: string
}

/** What doctor read of the server and what it concluded. */
export interface DoctorReport {
  url: string
  server: { kind: 'postgres' | 'mysql'; version: string }
  maxConnections: number
  /** Per-user cap (MySQL `max_user_connections`), when one applies. */
  maxUserConnections: number | null
  /** Connections the server reports in use now, this one included. */
  connectionsInUse: number
  /** The server's idle cut-offs in ms, by setting name; `null` when off. */
  idleCutoffs: Record<string, number | null>
  tls: boolean
  /**
   * What the server lets this session do: `read-write`, `read-only` (its transactions are
   * read-only by default) or `standby` (a PostgreSQL hot standby); `because` names the setting
   * that says so, when it is not read-write. A pool's `targetSessionAttrs` checks the same.
   */
  role: { role: ServerRole; because: string | null }
  /**
   * The connection pooler that answers for the server, when doctor noticed one (PostgreSQL: the
   * backend key it got is not the backend's pid), and what its admin console said of it.
   */
  pooler: PoolerReport | null
  /** Median time to open a new connection, and of a ping on an open one, in ms. */
  connectMs: number
  pingMs: number
  pool: {
    max: number
    overflow: number
    min: number
    maxLifetimeMs: number
    idleTimeoutMs: number
  }
  findings: DoctorFinding[]
  ok: boolean
}

/** What doctor learnt of a pooler in front (PgBouncer's admin console, when it lets the user in). */
export interface PoolerReport {
  /** Why doctor believes a pooler is there. */
  detectedBy: string
  /** `'PgBouncer'` when its admin console answered; `null` when doctor could not tell. */
  name: string | null
  version: string | null
  /** `pool_mode` for the URL's database (its own, or the default). */
  poolMode: string | null
  /** The settings read from `SHOW CONFIG` that matter to a pool in front, by name. */
  settings: Record<string, string>
  /** Why the admin console could not be read; `null` when it was. */
  consoleError: string | null
}

/** PgBouncer's settings that a pool in front of it should know of. */
const BOUNCER_SETTINGS = [
  'pool_mode',
  'default_pool_size',
  'max_client_conn',
  'max_db_connections',
  'max_user_connections',
  'server_lifetime',
  'server_idle_timeout',
  'client_idle_timeout',
  'query_wait_timeout',
  'max_prepared_statements',
  'server_reset_query',
]

/** doctor could not reach or read the server; the message is one line, without secrets. */
export class DoctorConnectError extends Error {
  override readonly name = 'DoctorConnectError'
}

/** How one dialect opens, reads and pings. */
interface Probe {
  open(): Promise<Session>
}
interface Session {
  ping(): Promise<void>
  close(): Promise<void>
  read(): Promise<Omit<DoctorReport, 'url' | 'connectMs' | 'pingMs' | 'pool' | 'findings' | 'ok'>>
}

const CONNECT_TIMEOUT_MS = 5_000
const CONNECT_SAMPLES = 5
const PING_SAMPLES = 20
/** In use at or above this share of max_connections is a problem; above WARN_SHARE a warning. */
const FULL_SHARE = 0.9
const WARN_SHARE = 0.75

function ms(seconds: number): number | null {
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : null
}

function postgresProbe(url: string): Probe {
  return {
    async open() {
      const pg = await loadPg()
      const client: PgClient = new pg.Client({
        connectionString: url,
        connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      })
      client.on('error', () => {})
      try {
        await client.connect()
      } catch (error) {
        await client.end().catch(() => {})
        throw error
      }
      const one = async (sql: string) => (await client.query(sql)).rows[0] ?? {}
      return {
        ping: async () => {
          await client.query('')
        },
        close: () => client.end().catch(() => {}),
        async read() {
          const settings = await client.query(
            `SELECT name, setting FROM pg_settings WHERE name IN ('server_version', 'max_connections',
              'superuser_reserved_connections', 'idle_session_timeout', 'idle_in_transaction_session_timeout')`,
          )
          const s = Object.fromEntries(settings.rows.map((r) => [r.name, String(r.setting)]))
          const used = await one(
            "SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend'",
          )
          const tls = await one('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')
          const mode = await one(
            "SELECT pg_is_in_recovery() AS standby, current_setting('default_transaction_read_only') AS read_only",
          )
          const backend = await one('SELECT pg_backend_pid() AS pid')
          const keyPid = (client as unknown as { processID?: unknown }).processID
          const max = Number(s.max_connections)
          const reserved = Number(s.superuser_reserved_connections ?? 0)
          const toMs = (v: string | undefined) => {
            const n = Number(v)
            return Number.isFinite(n) && n > 0 ? n : null
          }
          return {
            server: { kind: 'postgres', version: String(s.server_version) },
            maxConnections: max,
            // Ordinary roles get max_connections minus the superuser reserve.
            maxUserConnections: reserved > 0 ? max - reserved : null,
            connectionsInUse: Number(used.n),
            idleCutoffs: {
              idle_session_timeout: toMs(s.idle_session_timeout),
              idle_in_transaction_session_timeout: toMs(s.idle_in_transaction_session_timeout),
            },
            tls: tls.ssl === true,
            role:
              mode.standby === true
                ? { role: 'standby' as const, because: 'pg_is_in_recovery()' }
                : mode.read_only === 'on'
                  ? { role: 'read-only' as const, because: 'default_transaction_read_only = on' }
                  : { role: 'read-write' as const, because: null },
            pooler:
              typeof keyPid === 'number' && keyPid !== Number(backend.pid)
                ? await readPooler(
                    url,
                    `the backend key's pid ${keyPid} is not the backend's, ${backend.pid}`,
                  )
                : null,
          }
        },
      }
    },
  }
}

/**
 * Reads PgBouncer's admin console (database `pgbouncer`, same user and password): its version,
 * the settings that matter, and the URL's database's own pool size and mode. PgBouncer lets in
 * only its `admin_users` and `stats_users`; otherwise doctor says why and carries on.
 */
async function readPooler(url: string, detectedBy: string): Promise<PoolerReport> {
  const pg = await loadPg()
  const parsed = new URL(url)
  const database =
    decodeURIComponent(parsed.pathname.slice(1)) || decodeURIComponent(parsed.username)
  parsed.pathname = '/pgbouncer'
  const report: PoolerReport = {
    detectedBy,
    name: null,
    version: null,
    poolMode: null,
    settings: {},
    consoleError: null,
  }
  const admin: PgClient = new pg.Client({
    connectionString: parsed.toString(),
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
  })
  admin.on('error', () => {})
  try {
    await admin.connect()
    // The console speaks the simple protocol only: no parameters.
    const version = (await admin.query('SHOW VERSION')).rows[0] ?? {}
    report.name = 'PgBouncer'
    report.version = String(Object.values(version)[0] ?? '').replace(/^PgBouncer\s*/i, '') || null
    for (const row of (await admin.query('SHOW CONFIG')).rows) {
      const key = String(row.key)
      if (BOUNCER_SETTINGS.includes(key)) report.settings[key] = String(row.value)
    }
    const own = (await admin.query('SHOW DATABASES')).rows.find((r) => r.name === database)
    if (own !== undefined) {
      if (own.pool_mode) report.settings.pool_mode = String(own.pool_mode)
      if (Number(own.pool_size) > 0) report.settings.default_pool_size = String(own.pool_size)
    }
    report.poolMode = report.settings.pool_mode ?? null
  } catch (error) {
    report.consoleError = reasonOf(error)
  } finally {
    await admin.end().catch(() => {})
  }
  return report
}

function mysqlProbe(url: string): Probe {
  return {
    async open() {
      const mysql = await loadMysql2()
      const connection: MysqlConnection = await mysql.createConnection({
        uri: url,
        connectTimeout: CONNECT_TIMEOUT_MS,
      })
      connection.on('error', () => {})
      const one = async (sql: string) => {
        const [rows] = (await connection.query(sql)) as [Array<Record<string, unknown>>, unknown]
        return rows[0] ?? {}
      }
      return {
        ping: () => connection.ping(),
        close: () => connection.end().catch(() => connection.destroy()),
        async read() {
          const v = await one(
            `SELECT VERSION() AS version, @@max_connections AS max_connections,
              @@max_user_connections AS max_user_connections,
              @@SESSION.wait_timeout AS wait_timeout, @@SESSION.interactive_timeout AS interactive_timeout,
              @@GLOBAL.read_only AS read_only, @@GLOBAL.innodb_read_only AS innodb_read_only`,
          )
          const threads = await one("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
          const cipher = await one("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
          const perUser = Number(v.max_user_connections)
          // Names a server may not have (MariaDB has no super_read_only, and before 11.1 knows
          // transaction_read_only only as tx_read_only): each read on its own, a miss is 0.
          const global = async (...names: string[]) => {
            for (const name of names) {
              const row = await one(`SELECT @@GLOBAL.${name} AS v`).catch(() => undefined)
              if (row !== undefined) return { name, on: Number(row.v) === 1 }
            }
            return { name: names[0]!, on: false }
          }
          const superReadOnly = await global('super_read_only')
          const transactionReadOnly = await global('transaction_read_only', 'tx_read_only')
          return {
            server: { kind: 'mysql', version: String(v.version) },
            maxConnections: Number(v.max_connections),
            maxUserConnections: perUser > 0 ? perUser : null,
            connectionsInUse: Number(threads.Value),
            idleCutoffs: {
              wait_timeout: ms(Number(v.wait_timeout)),
              interactive_timeout: ms(Number(v.interactive_timeout)),
            },
            tls: typeof cipher.Value === 'string' && cipher.Value !== '',
            role:
              Number(v.innodb_read_only) === 1
                ? { role: 'read-only' as const, because: 'innodb_read_only = 1' }
                : superReadOnly.on
                  ? { role: 'read-only' as const, because: 'super_read_only = 1' }
                  : Number(v.read_only) === 1
                    ? { role: 'read-only' as const, because: 'read_only = 1' }
                    : transactionReadOnly.on
                      ? { role: 'read-only' as const, because: `${transactionReadOnly.name} = 1` }
                      : { role: 'read-write' as const, because: null },
            pooler: null,
          }
        },
      }
    },
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  const value = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
  return Math.round(value * 100) / 100
}

/** Which writes a read-only server refuses, and with what error, by the setting that makes it so. */
function refusalOf(kind: string, because: string | null): string {
  if (kind === 'postgres') return 'every write fails (25006)'
  if (because === 'innodb_read_only = 1') return 'every write fails (1836)'
  if (because === 'super_read_only = 1') return 'every write fails (1290)'
  if (because === 'read_only = 1') {
    return 'writes fail (1290), except from users with SUPER (MariaDB: READ ONLY ADMIN) and the replication threads'
  }
  return "new sessions' transactions are read-only by default: writes fail (1792) unless a session sets its own"
}

/** Why a connect failed, in words, from the driver's error; never the URL. */
function reasonOf(error: unknown): string {
  const e = error as { code?: unknown; message?: unknown } | null
  const code = typeof e?.code === 'string' ? e.code : undefined
  const words: Record<string, string> = {
    ECONNREFUSED: 'connection refused',
    ENOTFOUND: 'host not found',
    EAI_AGAIN: 'host not found',
    ETIMEDOUT: 'connection timed out',
    ECONNRESET: 'connection reset',
    EHOSTUNREACH: 'host unreachable',
    '28P01': 'password authentication failed',
    '28000': 'authentication rejected',
    '3D000': 'database does not exist',
    ER_ACCESS_DENIED_ERROR: 'access denied',
    ER_BAD_DB_ERROR: 'database does not exist',
  }
  if (code !== undefined && words[code] !== undefined) return `${words[code]} (${code})`
  const message = typeof e?.message === 'string' ? e.message.split('\n')[0]! : String(error)
  if (/timeout/i.test(message)) return `no answer within ${CONNECT_TIMEOUT_MS} ms`
  return code === undefined ? message : `${message} (${code})`
}

function findingsFor(
  read: Awaited<ReturnType<Session['read']>>,
  pool: DoctorReport['pool'],
): DoctorFinding[] {
  const findings: DoctorFinding[] = []
  const size = pool.max + pool.overflow
  // Behind a pooler the pool's connections end there: the server's idle cut-off and
  // max_connections bound the pooler's server connections, and its own settings bound the pool.
  if (read.pooler !== null) return [...poolerFindings(read.pooler, pool), ...serverFull(read)]
  // PostgreSQL's idle_in_transaction cut-off only ends sessions left inside a transaction, which
  // a pool that rolls back on release never keeps: it is not the idle cut-off.
  const [setting, cutoff] =
    read.server.kind === 'postgres'
      ? ['idle_session_timeout', read.idleCutoffs.idle_session_timeout ?? null]
      : ['wait_timeout', read.idleCutoffs.wait_timeout ?? null]
  // The rule the pool applies on its first connection (src/core/idle-cutoff.ts): doctor says
  // what the pool will do rather than call it a problem.
  const off = (v: number) => (v === 0 ? Number.POSITIVE_INFINITY : v)
  const fit = fitToIdleCutoff(
    { maxLifetime: off(pool.maxLifetimeMs), idleTimeout: off(pool.idleTimeoutMs), min: pool.min },
    cutoff ?? undefined,
    setting,
  )
  for (const change of fit.changes) {
    const flag = change.option === 'maxLifetime' ? '--max-lifetime' : '--idle-timeout'
    const why =
      change.option === 'maxLifetime'
        ? pool.min > 0
          ? `the ${pool.min} connections kept by min may idle that long`
          : `idleTimeout ${humanDuration(fit.idleTimeout)} leaves an idle connection less than 10 % of room before it`
        : 'idle connections would outlive it'
    findings.push({
      level: 'note',
      setting: change.option,
      message: `${change.option} ${humanDuration(change.from)} is not below the server's ${setting} (${humanDuration(change.cutoffMs)}) and ${why}: lifeguard lowers it to ${humanDuration(change.to)} on its first connection (the 'clamp' event), so the server never cuts a pooled connection first. Nothing to do; to pick the value yourself, set ${flag} (${change.option}) below ${humanDuration(change.cutoffMs)}.`,
    })
  }
  const allowed = Math.min(read.maxConnections, read.maxUserConnections ?? Number.POSITIVE_INFINITY)
  const allowedBy =
    read.maxUserConnections !== null && read.maxUserConnections < read.maxConnections
      ? read.server.kind === 'mysql'
        ? 'max_user_connections'
        : 'max_connections minus superuser_reserved_connections'
      : 'max_connections'
  if (size > allowed) {
    findings.push({
      level: 'problem',
      setting: 'max',
      message: `the pool may open ${size} connections (max ${pool.max} + overflow ${pool.overflow}) but the server allows ${allowed} (${allowedBy}). Lower --max/--overflow, or raise ${allowedBy}.`,
    })
  }
  if (read.role.role !== 'read-write') {
    const what = read.role.role === 'standby' ? 'a hot standby' : 'read-only'
    findings.push({
      level: 'warning',
      setting: 'targetSessionAttrs',
      message: `the server is ${what} (${read.role.because}): ${refusalOf(read.server.kind, read.role.because)}. If it should be the writer (a failover demoted it, or the URL leads to a replica), a pool with targetSessionAttrs 'read-write' refuses its connections and waits, connecting again with backoff, for a writer; with 'any' (the default) it lends them, each write fails, and lifeguard retires the connection it failed on, and the older ones at most once per window that grows (25 ms to 5 s) while refusals go on. For a reader, set targetSessionAttrs 'read-only'.`,
    })
  }
  findings.push(...serverFull(read, size))
  return findings
}

/** Whether the server's max_connections is nearly used up, by everyone (and this pool's `size`). */
function serverFull(read: Awaited<ReturnType<Session['read']>>, size = 0): DoctorFinding[] {
  const findings: DoctorFinding[] = []
  const share = read.connectionsInUse / read.maxConnections
  if (share >= FULL_SHARE) {
    findings.push({
      level: 'problem',
      setting: 'max_connections',
      message: `max_connections is nearly exhausted: ${read.connectionsInUse} of ${read.maxConnections} in use. Find who holds them (pool them), or raise max_connections.`,
    })
  } else if (share >= WARN_SHARE || read.connectionsInUse + size > read.maxConnections) {
    findings.push({
      level: 'warning',
      setting: 'max_connections',
      message: `${read.connectionsInUse} of ${read.maxConnections} connections are in use; with this pool's ${size} the server would be at or near its limit. Raise max_connections or lower --max.`,
    })
  }
  return findings
}

/** Seconds of a PgBouncer setting as ms, `null` when off or unknown. */
function bouncerMs(settings: Record<string, string>, name: string): number | null {
  const value = Number(settings[name])
  return Number.isFinite(value) && value > 0 ? value * 1000 : null
}

/** What a pool in front of a pooler should set, from what doctor could read of it. */
function poolerFindings(pooler: PoolerReport, pool: DoctorReport['pool']): DoctorFinding[] {
  const findings: DoctorFinding[] = []
  const size = pool.max + pool.overflow
  const s = pooler.settings
  const mode = pooler.poolMode
  const what =
    pooler.name === null
      ? 'a connection pooler'
      : `${pooler.name} ${pooler.version ?? ''}${mode === null ? '' : ` in ${mode} mode`}`.trim()
  findings.push({
    level: 'note',
    setting: 'pooler',
    message: `${what} answers for PostgreSQL here (${pooler.detectedBy}). The pool's connections end at the pooler: max_connections and idle_session_timeout govern the pooler's server connections, not the pool's.${pooler.consoleError === null ? '' : ` Its admin console could not be read (${pooler.consoleError}): add the user to PgBouncer's stats_users or admin_users to let doctor check its settings.`}`,
  })
  if (mode === 'session') {
    findings.push({
      level: 'note',
      setting: 'pooler',
      message: `in session mode each pool connection keeps one server connection while open: say so with postgres(url, { pooler: { mode: 'session' } }); resetOnRelease 'session' (DISCARD ALL) works as without a pooler.`,
    })
  } else {
    const maybe = mode === null ? 'if it pools per transaction, ' : ''
    findings.push({
      level: 'warning',
      setting: 'resetOnRelease',
      message: `${maybe}tell the dialect: postgres(url, { pooler: { mode: 'transaction' } }). A 'session' reset (DISCARD ALL, then onConnect) would run on whichever server connection the pooler picked; lifeguard then resets with 'rollback' (LIFEGUARD_RESET_BEHIND_POOLER).`,
    })
    const prepared = Number(s.max_prepared_statements ?? 0)
    findings.push(
      prepared > 0
        ? {
            level: 'note',
            setting: 'preparedStatements',
            message: `max_prepared_statements is ${prepared}: the pooler carries named prepared statements between server connections; set pooler: { mode: 'transaction', preparedStatements: true } so that pg's named queries are let through.`,
          }
        : {
            level: 'warning',
            setting: 'preparedStatements',
            message: `${maybe}named prepared statements (pg's { name, text } queries) fail through it: ${'max_prepared_statements' in s ? 'max_prepared_statements is 0' : `this PgBouncer${pooler.version === null ? '' : ` (${pooler.version})`} has no max_prepared_statements (it came in 1.21)`}. Leave names out; with the pooler option lifeguard refuses them with NamedStatementError instead of letting them fail at random.`,
          },
    )
    findings.push({
      level: 'note',
      setting: 'statement_timeout',
      message: `${maybe}session settings do not last from one transaction to the next: a SET statement_timeout (or search_path…) in onConnect lands on one server connection. Set them on the role (ALTER ROLE … SET statement_timeout = …), per transaction (SET LOCAL), or in PgBouncer's connect_query.`,
    })
  }
  const maxClients = Number(s.max_client_conn)
  if (Number.isFinite(maxClients) && maxClients > 0 && size > maxClients) {
    findings.push({
      level: 'problem',
      setting: 'max',
      message: `the pool may open ${size} connections (max ${pool.max} + overflow ${pool.overflow}) but PgBouncer takes ${maxClients} clients in all (max_client_conn), for every process. Lower --max/--overflow, or raise max_client_conn.`,
    })
  }
  const poolSize = Number(s.default_pool_size)
  if (mode === 'transaction' && Number.isFinite(poolSize) && poolSize > 0 && size > poolSize) {
    const wait = bouncerMs(s, 'query_wait_timeout')
    findings.push({
      level: 'warning',
      setting: 'max',
      message: `the pool may run ${size} transactions at once, but PgBouncer runs ${poolSize} per database and user (default_pool_size, or the database's pool_size); the rest wait inside PgBouncer${wait === null ? ', without a limit (query_wait_timeout 0)' : ` up to query_wait_timeout (${humanDuration(wait)})`}, where lifeguard's acquireTimeout and stats do not see them. Keep max + overflow, over all processes, near default_pool_size.`,
    })
  }
  const serverLifetime = bouncerMs(s, 'server_lifetime')
  if (serverLifetime !== null) {
    findings.push({
      level: 'note',
      setting: 'maxLifetime',
      message: `maxLifetime ${humanDuration(pool.maxLifetimeMs)} only rotates the pool's connections to PgBouncer; PgBouncer rotates its server connections itself after server_lifetime (${humanDuration(serverLifetime)}). A short maxLifetime buys nothing here.`,
    })
  }
  const clientIdle = bouncerMs(s, 'client_idle_timeout')
  if (clientIdle !== null) {
    const off = (v: number) => (v === 0 ? Number.POSITIVE_INFINITY : v)
    const fit = fitToIdleCutoff(
      { maxLifetime: off(pool.maxLifetimeMs), idleTimeout: off(pool.idleTimeoutMs), min: pool.min },
      clientIdle,
      'client_idle_timeout',
    )
    for (const change of fit.changes) {
      findings.push({
        level: 'warning',
        setting: change.option,
        message: `PgBouncer closes clients idle for client_idle_timeout (${humanDuration(clientIdle)}), and the pool cannot read that setting to lower ${change.option} itself: set ${change.option} below it (${humanDuration(change.to)} would do).`,
      })
    }
  }
  return findings
}

/**
 * Connects to the server once and checks it against a pool's settings: reads the version,
 * `max_connections` and the connections in use, the idle cut-offs, whether TLS is in use, and
 * measures what a new connection costs against a ping. It flags, with the setting to change, a
 * pool larger than the server allows and a server nearly out of connections, and notes what
 * the pool will lower by itself to stay under the server's idle cut-off ({@link fitToIdleCutoff}). Throws {@link DoctorConnectError} when the
 * server cannot be reached.
 */
export async function runDoctor(options: DoctorOptions): Promise<DoctorReport> {
  const url = options.url
  const probe = kindOfUrl(url) === 'postgres' ? postgresProbe(url) : mysqlProbe(url)
  let session: Session
  try {
    session = await probe.open()
  } catch (error) {
    if ((error as Error | null)?.name === 'DriverMissingError') throw error
    throw new DoctorConnectError(`cannot connect to ${redactUrl(url)}: ${reasonOf(error)}`, {
      cause: error,
    })
  }
  try {
    const read = await session.read()
    const pings: number[] = []
    for (let i = 0; i < PING_SAMPLES; i++) {
      const t = performance.now()
      await session.ping()
      pings.push(performance.now() - t)
    }
    // A new connection, all of it: TCP, TLS when asked for, authentication, session start.
    const connects: number[] = []
    for (let i = 0; i < CONNECT_SAMPLES; i++) {
      const t = performance.now()
      const extra = await probe.open()
      connects.push(performance.now() - t)
      await extra.close()
    }
    const pool = {
      max: options.max,
      overflow: options.overflow,
      min: options.min,
      maxLifetimeMs: options.maxLifetimeMs,
      idleTimeoutMs: options.idleTimeoutMs,
    }
    const findings = findingsFor(read, pool)
    return {
      url: redactUrl(url),
      ...read,
      connectMs: median(connects),
      pingMs: median(pings),
      pool,
      findings,
      ok: !findings.some((f) => f.level === 'problem'),
    }
  } finally {
    await session.close()
  }
}
