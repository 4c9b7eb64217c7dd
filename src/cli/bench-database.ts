import { kindOfUrl, loadMysql2, loadPg, type MysqlConnection, type PgClient } from './drivers.js'

/** Rows the bench seeds; the app reads one at random by primary key. */
export const BENCH_ROWS = 1_000

/** How long to wait for the server to let go of the previous mode's connections. */
const DRAIN_WAIT_MS = 10_000

/** The database side of one bench run: what the app connects to, what it reads, and counting. */
export interface BenchDatabase {
  readonly kind: 'postgres' | 'mysql'
  /** The URL the app connects with: tagged so that only its connections are counted. */
  readonly appUrl: string
  /** The indexed read, with one placeholder for the id. */
  readonly sql: string
  /** The server's version string. */
  readonly version: string
  /** The server's `max_connections`. */
  readonly maxConnections: number
  /**
   * How many sessions the app can have at most: `max_connections` less what the server keeps
   * back from this user (PostgreSQL's `superuser_reserved_connections` and
   * `reserved_connections` for a non-superuser; MySQL's `max_user_connections`) and less the
   * bench's own counting connection.
   */
  readonly usableConnections: number
  /** How {@link usableConnections} was reckoned, in words, for the report. */
  readonly usableBy: string
  /** How the bench's own connections are told from everyone else's, for the report. */
  readonly countedBy: string
  /** The server's count of the app's sessions, read on the bench's own admin connection. */
  countConnections(): Promise<number>
  /**
   * The app's sessions and all client sessions on the server (the bench's own included), in one
   * reading: what `max_connections` limits.
   */
  countSessions(): Promise<SessionCount>
  /** Waits (bounded) until the server has no connection of the app left. */
  waitForNoConnections(): Promise<void>
  /** Drops what the bench created and closes the admin connection; never throws. */
  drop(): Promise<void>
}

/** One reading of the server's sessions: the app's, and every client session. */
export interface SessionCount {
  app: number
  all: number
}

function withSearchParam(url: string, key: string, value: string): string {
  const parsed = new URL(url)
  parsed.searchParams.set(key, value)
  return parsed.toString()
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

async function waitForZero(count: () => Promise<number>): Promise<void> {
  const deadline = Date.now() + DRAIN_WAIT_MS
  while (Date.now() < deadline) {
    if ((await count()) === 0) return
    await sleep(100)
  }
}

function seedValues(): { ids: number[]; names: string[] } {
  const ids = Array.from({ length: BENCH_ROWS }, (_, i) => i + 1)
  return { ids, names: ids.map((id) => `item ${id}`) }
}

async function preparePostgres(url: string, runId: string): Promise<BenchDatabase> {
  const pg = await loadPg()
  const appName = `lifeguard-bench-${runId}`
  const table = `lifeguard_bench_${runId}`
  // The admin connection is opened before the load and held, so that the sampler still gets in
  // once the app has exhausted max_connections.
  const admin: PgClient = new pg.Client({
    connectionString: withSearchParam(url, 'application_name', `${appName}-admin`),
    connectionTimeoutMillis: 10_000,
  })
  admin.on('error', () => {})
  await admin.connect()
  try {
    const { ids, names } = seedValues()
    await admin.query(`CREATE TABLE "${table}" (id integer PRIMARY KEY, name text NOT NULL)`)
    await admin.query(
      `INSERT INTO "${table}" (id, name) SELECT * FROM unnest($1::int[], $2::text[])`,
      [ids, names],
    )
    await admin.query(`ANALYZE "${table}"`)
    const version = String((await admin.query('SHOW server_version')).rows[0]?.server_version)
    const limits = (
      await admin.query(
        `SELECT current_setting('max_connections')::int AS max,
          current_setting('superuser_reserved_connections')::int AS superuser_reserved,
          coalesce(current_setting('reserved_connections', true), '0')::int AS reserved,
          (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser`,
      )
    ).rows[0] as { max: number; superuser_reserved: number; reserved: number; superuser: boolean }
    // A pooler (PgBouncer…) hands out backend keys of its own: then the sessions counted are its
    // server connections, which it shares among the app's clients and keeps between modes.
    const backendPid = Number((await admin.query('SELECT pg_backend_pid() AS pid')).rows[0]?.pid)
    const keyPid = (admin as unknown as { processID?: unknown }).processID
    const pooled = typeof keyPid === 'number' && keyPid !== backendPid
    const max = Number(limits.max)
    const held = limits.superuser ? 0 : Number(limits.superuser_reserved) + Number(limits.reserved)
    // A session shows in pg_stat_activity while it authenticates (PostgreSQL 18: state
    // 'starting'), before its application_name is known, and holds a slot all that time. With
    // SCRAM that is most of a per-request connection's life, so it counts as the app's.
    const countSessions = async (): Promise<SessionCount> => {
      const { rows } = await admin.query(
        `SELECT count(*) FILTER (WHERE application_name = $1
            OR (state = 'starting' AND application_name = ''))::int AS app,
          count(*)::int AS all
          FROM pg_stat_activity WHERE backend_type = 'client backend'`,
        [appName],
      )
      return { app: Number(rows[0]?.app ?? 0), all: Number(rows[0]?.all ?? 0) }
    }
    const countConnections = async () => (await countSessions()).app
    return {
      kind: 'postgres',
      appUrl: withSearchParam(url, 'application_name', appName),
      sql: `SELECT id, name FROM "${table}" WHERE id = $1`,
      version,
      maxConnections: max,
      usableConnections: max - held - 1,
      usableBy: `max_connections ${max}${limits.superuser ? '' : ` − superuser_reserved_connections ${limits.superuser_reserved}${Number(limits.reserved) > 0 ? ` − reserved_connections ${limits.reserved}` : ''}`} − 1 (the bench's counting connection)`,
      countedBy: `pg_stat_activity client backends with application_name = '${appName}', or still authenticating${pooled ? `; through a connection pooler (the backend key's pid ${keyPid} is not the backend's, ${backendPid}), so these are the pooler's server connections, which it shares among the app's connections and keeps open from one mode to the next, not the app's own` : ''}`,
      countConnections,
      countSessions,
      // A pooler keeps its server connections open for the next client: none to wait for.
      waitForNoConnections: () => (pooled ? Promise.resolve() : waitForZero(countConnections)),
      async drop() {
        await admin.query(`DROP TABLE IF EXISTS "${table}"`).catch(() => {})
        await admin.end().catch(() => {})
      },
    }
  } catch (error) {
    await admin.query(`DROP TABLE IF EXISTS "${table}"`).catch(() => {})
    await admin.end().catch(() => {})
    throw error
  }
}

async function prepareMysql(url: string, runId: string): Promise<BenchDatabase> {
  const mysql = await loadMysql2()
  const database = `lifeguard_bench_${runId}`
  const admin: MysqlConnection = await mysql.createConnection({ uri: url, connectTimeout: 10_000 })
  admin.on('error', () => {})
  try {
    // A database of its own: MySQL has no application_name, and PROCESSLIST's DB column tells
    // the app's connections from everyone else's.
    await admin.query(`CREATE DATABASE \`${database}\``)
    await admin.query(
      `CREATE TABLE \`${database}\`.items (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL)`,
    )
    const { ids, names } = seedValues()
    await admin.query(`INSERT INTO \`${database}\`.items (id, name) VALUES ?`, [
      ids.map((id, i) => [id, names[i]]),
    ])
    const [rows] = (await admin.query(
      'SELECT VERSION() AS version, @@max_connections AS max, @@max_user_connections AS per_user',
    )) as [Array<{ version: string; max: number; per_user: number }>, unknown]
    const max = Number(rows[0]?.max)
    const perUser = Number(rows[0]?.per_user)
    const appUrl = new URL(url)
    appUrl.pathname = `/${database}`
    // A connection still authenticating has no database yet ("unauthenticated user"), and
    // holds a slot all the same.
    const countSessions = async (): Promise<SessionCount> => {
      const [result] = (await admin.query(
        `SELECT COALESCE(SUM(ID <> CONNECTION_ID() AND (DB = ? OR USER = 'unauthenticated user')), 0) AS app,
          COUNT(*) AS \`all\` FROM information_schema.PROCESSLIST WHERE COMMAND <> 'Daemon'`,
        [database],
      )) as [Array<{ app: number | string; all: number | string }>, unknown]
      return { app: Number(result[0]?.app ?? 0), all: Number(result[0]?.all ?? 0) }
    }
    const countConnections = async () => (await countSessions()).app
    return {
      kind: 'mysql',
      appUrl: appUrl.toString(),
      sql: 'SELECT id, name FROM items WHERE id = ?',
      version: String(rows[0]?.version),
      maxConnections: max,
      usableConnections: (perUser > 0 ? Math.min(max, perUser) : max) - 1,
      usableBy: `${perUser > 0 && perUser < max ? `max_user_connections ${perUser}` : `max_connections ${max}`} − 1 (the bench's counting connection)`,
      countedBy: `PROCESSLIST rows in database ${database}, or still authenticating`,
      countConnections,
      countSessions,
      waitForNoConnections: () => waitForZero(countConnections),
      async drop() {
        await admin.query(`DROP DATABASE IF EXISTS \`${database}\``).catch(() => {})
        await admin.end().catch(() => admin.destroy())
      },
    }
  } catch (error) {
    await admin.query(`DROP DATABASE IF EXISTS \`${database}\``).catch(() => {})
    await admin.end().catch(() => admin.destroy())
    throw error
  }
}

/**
 * Prepares a server for one bench run: seeds a table of {@link BENCH_ROWS} rows under a name of
 * the run's own, tags the app's connections (PostgreSQL: `application_name`; MySQL: a database
 * of the run's own) and holds one admin connection to count them. `drop()` removes it all.
 */
export function prepareBenchDatabase(url: string, runId: string): Promise<BenchDatabase> {
  return kindOfUrl(url) === 'postgres' ? preparePostgres(url, runId) : prepareMysql(url, runId)
}
