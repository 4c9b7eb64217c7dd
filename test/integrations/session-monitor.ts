import mysql2 from 'mysql2/promise'
import pg from 'pg'
import { MYSQL_URL, PG_URL, peakWhile, unique } from './support.js'

/**
 * Watches, from a connection of its own, the server sessions that one consumer test opens: it owns
 * the tag that marks them and the monitor connection. ORMs such as Sequelize and TypeORM create
 * their lifeguard pool lazily and out of reach, so the tag must be visible to the server itself: an
 * `application_name` on PostgreSQL, and on MariaDB a database made for this run (PROCESSLIST shows
 * each session's current database). Sessions of other suites are never counted.
 */
export class SessionMonitor {
  /** The server kind. */
  readonly kind: 'postgres' | 'mysql'
  /** The URL a consumer connects with: tagged by application_name, or pointing at this run's database. */
  readonly url: string
  /** The tag: the application_name on PostgreSQL, the database name on MariaDB. */
  readonly tag: string
  readonly #query: (sql: string, params: unknown[]) => Promise<Array<Record<string, unknown>>>
  readonly #close: () => Promise<void>

  private constructor(
    kind: 'postgres' | 'mysql',
    url: string,
    tag: string,
    query: (sql: string, params: unknown[]) => Promise<Array<Record<string, unknown>>>,
    close: () => Promise<void>,
  ) {
    this.kind = kind
    this.url = url
    this.tag = tag
    this.#query = query
    this.#close = close
  }

  /** Opens a monitor; on MariaDB it also creates this run's database (dropped by `close()`). */
  static async open(kind: 'postgres' | 'mysql', prefix: string): Promise<SessionMonitor> {
    const tag = unique(prefix)
    if (kind === 'postgres') {
      const client = new pg.Client(PG_URL)
      await client.connect()
      const url = new URL(PG_URL)
      url.searchParams.set('application_name', tag)
      return new SessionMonitor(
        kind,
        url.toString(),
        tag,
        async (sql, params) => (await client.query(sql, params)).rows,
        () => client.end(),
      )
    }
    const connection = await mysql2.createConnection(MYSQL_URL)
    // If a consumer failed to shut down with a transaction open, DROP DATABASE would wait on its
    // locks for MariaDB's default of a year: give up after 10 s instead (this session only).
    await connection.query('SET SESSION lock_wait_timeout = 10')
    await connection.query(`CREATE DATABASE \`${tag}\``)
    const url = new URL(MYSQL_URL)
    url.pathname = `/${tag}`
    return new SessionMonitor(
      kind,
      url.toString(),
      tag,
      async (sql, params) => (await connection.query(sql, params))[0] as never,
      async () => {
        await connection.query(`DROP DATABASE IF EXISTS \`${tag}\``)
        await connection.end()
      },
    )
  }

  /** How many server sessions carry the tag right now, by the server's own count. */
  async sessions(): Promise<number> {
    const rows =
      this.kind === 'postgres'
        ? await this.#query(
            'SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1',
            [this.tag],
          )
        : await this.#query(
            'SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE DB = ?',
            [this.tag],
          )
    return Number(rows[0]!.n)
  }

  /**
   * How many tagged sessions are inside a transaction, by the server's own view: sessions idle
   * in a transaction (or in an aborted one) on PostgreSQL, not one running a statement, which may
   * be the pool's own reset after a release (`xact_start` counted that: a flaky Sequelize run
   * caught a `DISCARD ALL` in flight); InnoDB's open transactions on
   * MariaDB (a transaction shows there once it has touched InnoDB). Call it while the consumer
   * is quiet.
   */
  async inTransaction(): Promise<number> {
    // InnoDB refreshes its INNODB_TRX snapshot at most every 100 ms: wait out a stale one.
    if (this.kind === 'mysql') await new Promise((resolve) => setTimeout(resolve, 150))
    const rows =
      this.kind === 'postgres'
        ? await this.#query(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1 AND state LIKE 'idle in transaction%'",
            [this.tag],
          )
        : await this.#query(
            `SELECT COUNT(*) AS n FROM information_schema.INNODB_TRX t
             JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id WHERE p.DB = ?`,
            [this.tag],
          )
    return Number(rows[0]!.n)
  }

  /** Samples `sessions()` every 5 ms while `work` runs; returns the highest count the server reported. */
  peakDuring(work: () => Promise<unknown>): Promise<number> {
    return peakWhile(() => this.sessions(), work)
  }

  /** Closes the monitor connection (and drops this run's MariaDB database). */
  close(): Promise<void> {
    return this.#close()
  }
}
