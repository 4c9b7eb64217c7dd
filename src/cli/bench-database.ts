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
  /** How the bench's own connections are told from everyone else's, for the report. */
  readonly countedBy: string
  /** The server's count of the app's connections, read on the bench's own admin connection. */
  countConnections(): Promise<number>
  /** Waits (bounded) until the server has no connection of the app left. */
  waitForNoConnections(): Promise<void>
  /** Drops what the bench created and closes the admin connection; never throws. */
  drop(): Promise<void>
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
    const max = Number((await admin.query('SHOW max_connections')).rows[0]?.max_connections)
    const countConnections = async () => {
      const { rows } = await admin.query(
        'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1',
        [appName],
      )
      return Number(rows[0]?.n ?? 0)
    }
    return {
      kind: 'postgres',
      appUrl: withSearchParam(url, 'application_name', appName),
      sql: `SELECT id, name FROM "${table}" WHERE id = $1`,
      version,
      maxConnections: max,
      countedBy: `pg_stat_activity rows with application_name = '${appName}'`,
      countConnections,
      waitForNoConnections: () => waitForZero(countConnections),
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
    const [rows] = (await admin.query('SELECT VERSION() AS version, @@max_connections AS max')) as [
      Array<{ version: string; max: number }>,
      unknown,
    ]
    const appUrl = new URL(url)
    appUrl.pathname = `/${database}`
    const countConnections = async () => {
      const [result] = (await admin.query(
        'SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()',
        [database],
      )) as [Array<{ n: number }>, unknown]
      return Number(result[0]?.n ?? 0)
    }
    return {
      kind: 'mysql',
      appUrl: appUrl.toString(),
      sql: 'SELECT id, name FROM items WHERE id = ?',
      version: String(rows[0]?.version),
      maxConnections: Number(rows[0]?.max),
      countedBy: `PROCESSLIST rows in database ${database}`,
      countConnections,
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
