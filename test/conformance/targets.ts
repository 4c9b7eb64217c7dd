import { rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type BetterSqlite3 from 'better-sqlite3'
import mysql2 from 'mysql2'
import pg from 'pg'
import { expect } from 'vitest'
import { type MysqlConnection, mysql } from '../../src/dialects/mysql.js'
import { postgres } from '../../src/dialects/postgres.js'
import { type SqliteOptions, sqlite } from '../../src/dialects/sqlite.js'
import type { Dialect, Pool, ResetMode } from '../../src/index.js'
import type { ServerStatus } from '../support/servers.js'
import { startPgbouncer, type ThrowawayBouncer } from '../support/throwaway-pgbouncer.js'

/** Unique for this test process, so that parallel runs and files never share names. */
export const RUN_TAG = `lifeguard_${process.pid.toString(36)}_${Date.now().toString(36)}`

let counter = 0
/** A fresh name for a table, user or application_name, unique within the run. */
export function uniqueName(prefix = 't'): string {
  return `${prefix}_${RUN_TAG}_${++counter}`
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Polls `check` every 10 ms until it holds; fails after `ms`. */
export async function waitFor(check: () => Promise<boolean> | boolean, ms = 5_000): Promise<void> {
  const deadline = performance.now() + ms
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`condition not met within ${ms} ms`)
    await sleep(10)
  }
}

/** Runs `n` calls of `fn` at once and returns the errors of those that rejected. */
export async function allAtOnce(
  n: number,
  fn: (i: number) => Promise<unknown>,
): Promise<unknown[]> {
  const results = await Promise.allSettled(Array.from({ length: n }, (_, i) => fn(i)))
  return results.flatMap((r) => (r.status === 'rejected' ? [r.reason] : []))
}

export { trackProcessErrors } from '../support/process-errors.js'

const EVENT_NAMES = [
  'connect',
  'acquire',
  'release',
  'reset',
  'invalidate',
  'close',
  'connectError',
  'leak',
  'server',
  'clamp',
  'warning',
] as const

/** Records every event a pool emits, payload included. */
export function recordEvents<C>(pool: Pool<C>): Array<{ event: string; payload: unknown }> {
  const seen: Array<{ event: string; payload: unknown }> = []
  for (const event of EVENT_NAMES) {
    pool.on(event, (payload: unknown) => seen.push({ event, payload }))
  }
  return seen
}

/**
 * The same dialect without `inspect`, so that the pool does not lower its lifetimes below the
 * server's idle cut-off: the server then drops idle sessions first, and the dialect's `watch`
 * and the pool's pre-ping must cope. A wrapper over the real dialect, not a fake.
 */
export function withoutServerInspection<C>(dialect: Dialect<C>): Dialect<C> {
  return {
    name: dialect.name,
    connect: (signal) => dialect.connect(signal),
    close: (connection, signal) => dialect.close(connection, signal),
    ping: (connection, signal) => dialect.ping!(connection, signal),
    reset: (connection, mode, signal) => dialect.reset!(connection, mode, signal),
    isDisconnect: (error) => dialect.isDisconnect!(error),
    watch: (connection, onDeath) => dialect.watch!(connection, onDeath),
  }
}

/** One kind of state a borrower can leave behind, and how the next borrower checks for it. */
export interface LeakCase<C> {
  readonly name: string
  /** The reset modes that must clear it. */
  readonly modes: readonly ResetMode[]
  /** Borrower A: leaves the state on the connection. */
  leave(connection: C): Promise<void>
  /** Borrower B, on the same physical connection: asserts that none of it is visible. */
  check(connection: C): Promise<void>
}

/** A separate, unpooled connection for watching and killing the pool's server sessions. */
export interface Admin {
  /** A name for one pool's connections: an application_name (PostgreSQL) or a user (MySQL). */
  newTag(): Promise<string>
  /** How many server sessions carry `tag` now. */
  count(tag: string): Promise<number>
  /** Terminates every session carrying `tag`; returns how many. */
  killAll(tag: string): Promise<number>
  /** The server's `max_connections`. */
  maxConnections(): Promise<number>
  /** Runs a statement as the administrator. */
  exec(sql: string, params?: unknown[]): Promise<void>
  close(): Promise<void>
}

/** One dialect under test, with the SQL and helpers its tests need. */
export interface Target<C> {
  readonly name: 'postgres' | 'mysql' | 'sqlite'
  /** What the suite's describe block says, when more than `<name> dialect`. */
  readonly title?: string
  /** The pooler between the dialect and the server, when there is one. */
  readonly via?: 'pgbouncer'
  /** The server, for PostgreSQL and MySQL; `undefined` for SQLite. */
  readonly status: ServerStatus | undefined
  /** A dialect whose connections carry `tag` (see {@link Admin.newTag}). */
  dialect(tag?: string): Dialect<C>
  rows<T = Record<string, unknown>>(connection: C, sql: string, params?: unknown[]): Promise<T[]>
  exec(connection: C, sql: string): Promise<void>
  /** A query that takes about `ms` on the server. */
  shortQuery(ms: number): string
  /** Sets the session's idle cut-off (wait_timeout / idle_session_timeout) to `seconds`. */
  idleCutoffSql?(seconds: number): string
  /** The name of that setting, as reported in `'clamp'` events. */
  readonly idleCutoffSetting?: string
  /** Whether a `'rollback'` reset of an idle connection returns `undefined` synchronously. */
  readonly syncIdleRollback: boolean
  /** The state-leak checks for this dialect. */
  leakCases(table: string): LeakCase<C>[]
  createTable(connection: C, table: string): Promise<void>
  dropTable(connection: C, table: string): Promise<void>
  /** Opens the administrator connection (servers only). */
  admin?(): Promise<Admin>
  /** Removes what the target created on disk (SQLite). */
  cleanup?(): void
}

// PostgreSQL

function pgRows<T>(client: pg.Client, sql: string, params?: unknown[]): Promise<T[]> {
  return client.query(sql, params).then((r) => r.rows as T[])
}

/** The PostgreSQL target: connections are tagged by application_name. */
export function postgresTarget(status: ServerStatus): Target<pg.Client> {
  const baseline = new Map<string, string>()
  return {
    name: 'postgres',
    status,
    dialect: (tag) =>
      postgres(
        tag === undefined ? status.url : { connectionString: status.url, application_name: tag },
      ),
    rows: pgRows,
    exec: async (client, sql) => {
      await client.query(sql)
    },
    shortQuery: (ms) => `SELECT pg_sleep(${ms / 1000})`,
    idleCutoffSql: (seconds) => `SET idle_session_timeout = '${seconds}s'`,
    idleCutoffSetting: 'idle_session_timeout',
    syncIdleRollback: true,
    createTable: async (client, table) => {
      await client.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text)`)
    },
    dropTable: async (client, table) => {
      await client.query(`DROP TABLE IF EXISTS ${table}`)
    },
    leakCases: (table) => [
      {
        name: 'an open transaction with uncommitted rows',
        modes: ['rollback', 'session'],
        leave: async (c) => {
          await c.query('BEGIN')
          await c.query(`INSERT INTO ${table} VALUES (1, 'uncommitted')`)
        },
        check: async (c) => {
          expect(c.getTransactionStatus()).toBe('I')
          const [row] = await pgRows<{ xid: unknown; n: number }>(
            c,
            `SELECT pg_current_xact_id_if_assigned() AS xid, (SELECT count(*)::int FROM ${table}) AS n`,
          )
          expect(row).toEqual({ xid: null, n: 0 })
        },
      },
      {
        name: 'a failed transaction (25P02)',
        modes: ['rollback', 'session'],
        leave: async (c) => {
          await c.query('BEGIN')
          await expect(c.query('SELECT 1/0')).rejects.toMatchObject({ code: '22012' })
          await expect(c.query('SELECT 1')).rejects.toMatchObject({ code: '25P02' })
        },
        check: async (c) => {
          expect(await pgRows(c, 'SELECT 1 AS one')).toEqual([{ one: 1 }])
        },
      },
      {
        name: 'session variables: search_path, TimeZone, a custom setting',
        modes: ['session'],
        leave: async (c) => {
          const [row] = await pgRows<{ sp: string; tz: string }>(
            c,
            "SELECT current_setting('search_path') AS sp, current_setting('TimeZone') AS tz",
          )
          baseline.set('search_path', row!.sp)
          baseline.set('TimeZone', row!.tz)
          await c.query('SET search_path = pg_catalog')
          await c.query("SET TIME ZONE 'Pacific/Chatham'")
          await c.query("SELECT set_config('lifeguard.leak', 'alice', false)")
        },
        check: async (c) => {
          const [row] = await pgRows<{ sp: string; tz: string; custom: string | null }>(
            c,
            "SELECT current_setting('search_path') AS sp, current_setting('TimeZone') AS tz, current_setting('lifeguard.leak', true) AS custom",
          )
          expect(row!.sp).toBe(baseline.get('search_path'))
          expect(row!.tz).toBe(baseline.get('TimeZone'))
          expect(row!.custom ?? '').toBe('')
        },
      },
      {
        name: 'a temporary table',
        modes: ['session'],
        leave: async (c) => {
          await c.query('CREATE TEMP TABLE leak_tmp (a int)')
          await c.query('INSERT INTO leak_tmp VALUES (1)')
        },
        check: async (c) => {
          expect(await pgRows(c, "SELECT to_regclass('pg_temp.leak_tmp') AS t")).toEqual([
            { t: null },
          ])
          await c.query('CREATE TEMP TABLE leak_tmp (a int)')
        },
      },
      {
        name: 'an advisory lock',
        modes: ['session'],
        leave: async (c) => {
          await c.query('SELECT pg_advisory_lock(424242)')
        },
        check: async (c) => {
          expect(
            await pgRows(
              c,
              "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
            ),
          ).toEqual([{ n: 0 }])
        },
      },
      {
        name: 'SQL prepared statements',
        modes: ['session'],
        leave: async (c) => {
          await c.query('PREPARE leak_s AS SELECT 1 AS v')
        },
        check: async (c) => {
          expect(await pgRows(c, 'SELECT count(*)::int AS n FROM pg_prepared_statements')).toEqual([
            { n: 0 },
          ])
          await c.query('PREPARE leak_s AS SELECT 2 AS v')
        },
      },
      {
        name: "pg's named statements, run again and with changed SQL",
        modes: ['session'],
        leave: async (c) => {
          expect((await c.query({ name: 'q1', text: 'SELECT 1 AS v' })).rows).toEqual([{ v: 1 }])
          expect((await c.query({ name: 'q2', text: 'SELECT 1 AS v' })).rows).toEqual([{ v: 1 }])
        },
        check: async (c) => {
          // Without forgetting pg's cache: 26000 "prepared statement q1 does not exist".
          expect((await c.query({ name: 'q1', text: 'SELECT 1 AS v' })).rows).toEqual([{ v: 1 }])
          // Without it: "Prepared statements must be unique - 'q2' was used for a different statement".
          expect((await c.query({ name: 'q2', text: 'SELECT 2 AS v' })).rows).toEqual([{ v: 2 }])
        },
      },
      {
        name: 'LISTEN channels and notification handlers',
        modes: ['session'],
        leave: async (c) => {
          c.on('notification', () => {})
          await c.query('LISTEN lifeguard_leak')
        },
        check: async (c) => {
          expect(await pgRows(c, 'SELECT pg_listening_channels() AS ch')).toEqual([])
          expect(c.listenerCount('notification')).toBe(0)
        },
      },
    ],
    admin: async () => {
      const client = new pg.Client({
        connectionString: status.url,
        application_name: uniqueName('admin'),
      })
      client.on('error', () => {})
      await client.connect()
      return {
        newTag: async () => uniqueName('app'),
        count: async (tag) =>
          (
            await pgRows<{ n: number }>(
              client,
              'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1',
              [tag],
            )
          )[0]!.n,
        killAll: async (tag) =>
          (
            await pgRows(
              client,
              'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1',
              [tag],
            )
          ).length,
        maxConnections: async () =>
          Number(
            (await pgRows<{ max_connections: string }>(client, 'SHOW max_connections'))[0]!
              .max_connections,
          ),
        exec: async (sql, params) => {
          await client.query(sql, params)
        },
        close: () => client.end(),
      }
    },
  }
}

// PostgreSQL through PgBouncer

/**
 * Starts a throwaway PgBouncer in transaction mode in front of `status`'s PostgreSQL, for
 * {@link pgbouncerTarget}. When it cannot (the server is down, pgbouncer is not installed), the
 * status says why, and the suite skips the target, or fails in CI.
 */
export async function bouncerFor(
  status: ServerStatus,
): Promise<{ status: ServerStatus; bouncer: ThrowawayBouncer | undefined }> {
  if (!status.up) return { status, bouncer: undefined }
  try {
    const bouncer = await startPgbouncer(status.url, { poolMode: 'transaction' })
    return { status, bouncer }
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error)
    return { status: { ...status, up: false, reason }, bouncer: undefined }
  }
}

/**
 * The PostgreSQL target through a throwaway PgBouncer in transaction mode: the same dialect and
 * SQL, told that it is behind a transaction pooler. What only a session can hold (session
 * variables, temporary tables, advisory locks, LISTEN) has no leak case here: in transaction
 * mode the server connection under it changes between transactions anyway, so only the
 * transaction cases apply. The server's idle cut-off is not a session's to set either
 * (`idleCutoffSql` is left out). The admin counts and kills PgBouncer's client connections on
 * its console: those are the pool's connections, not the server sessions behind them.
 */
export function pgbouncerTarget(
  status: ServerStatus,
  bouncer: ThrowawayBouncer | undefined,
): Target<pg.Client> {
  const direct = postgresTarget(status)
  if (bouncer === undefined) return { ...direct, title: 'postgres dialect through PgBouncer' }
  const url = bouncer.url
  const { idleCutoffSql: _, ...rest } = direct
  return {
    ...rest,
    via: 'pgbouncer',
    title: `postgres dialect through PgBouncer ${bouncer.version.join('.')} (${bouncer.poolMode} mode)`,
    status: { ...status, url },
    dialect: (tag) =>
      postgres(tag === undefined ? url : { connectionString: url, application_name: tag }, {
        pooler: { mode: bouncer.poolMode },
      }),
    leakCases: (table) =>
      direct
        .leakCases(table)
        .filter((leak) => leak.modes.includes('rollback'))
        .map((leak) => ({ ...leak, modes: ['rollback'] as const })),
    admin: async () => {
      const server = await direct.admin!()
      const clients = async (tag: string) =>
        (await bouncer.admin<{ application_name: string }>('SHOW CLIENTS')).filter(
          (c) => c.application_name === tag,
        ).length
      return {
        ...server,
        count: clients,
        killAll: async (tag) => {
          const n = await clients(tag)
          // The console kills a database's clients all at once; each test's pool is the only
          // client of the test database at that moment (the suite runs its tests in turn).
          await bouncer.admin(`KILL ${new URL(url).pathname.slice(1)}`)
          await bouncer.admin(`RESUME ${new URL(url).pathname.slice(1)}`)
          return n
        },
      }
    },
  }
}

// MySQL and MariaDB

/** The callback connection: a plain mysql2 one, or the one under what the mysql dialect lends. */
function core(connection: mysql2.Connection | MysqlConnection): mysql2.Connection {
  return 'connection' in connection ? connection.connection : connection
}

export function myRows<T>(
  connection: mysql2.Connection | MysqlConnection,
  sql: string,
  params?: unknown[],
): Promise<T[]> {
  return new Promise((resolve, reject) => {
    core(connection).query(sql, params ?? [], (error, result) => {
      if (error) reject(error)
      else resolve(result as T[])
    })
  })
}

function myExecute<T>(connection: MysqlConnection, sql: string, params: any[]): Promise<T[]> {
  return new Promise((resolve, reject) => {
    core(connection).execute(sql, params, (error, result) => {
      if (error) reject(error)
      else resolve(result as T[])
    })
  })
}

/** The MySQL target: connections are tagged by a user created for the purpose. */
export function mysqlTarget(status: ServerStatus): Target<MysqlConnection> {
  const url = new URL(status.url)
  const database = decodeURIComponent(url.pathname.slice(1)) || 'test'
  const baseline = new Map<string, unknown>()
  return {
    name: 'mysql',
    status,
    dialect: (tag) => {
      if (tag === undefined) return mysql(status.url)
      // A user per tag, without a password, made by Admin.newTag().
      return mysql({ host: url.hostname, port: Number(url.port || 3306), user: tag, database })
    },
    rows: myRows,
    exec: async (c, sql) => {
      await myRows(c, sql)
    },
    shortQuery: (ms) => `SELECT SLEEP(${ms / 1000})`,
    idleCutoffSql: (seconds) => `SET SESSION wait_timeout = ${seconds}`,
    idleCutoffSetting: 'wait_timeout',
    // mysql2 keeps no transaction status, but the dialect tracks what might open a transaction.
    syncIdleRollback: true,
    createTable: async (c, table) => {
      await myRows(c, `CREATE TABLE ${table} (id int PRIMARY KEY, v varchar(100)) ENGINE=InnoDB`)
    },
    dropTable: async (c, table) => {
      await myRows(c, `DROP TABLE IF EXISTS ${table}`)
    },
    leakCases: (table) => [
      {
        name: 'an open transaction with uncommitted rows',
        modes: ['rollback', 'session'],
        leave: async (c) => {
          await myRows(c, 'START TRANSACTION')
          await myRows(c, `INSERT INTO ${table} VALUES (1, 'uncommitted')`)
        },
        check: async (c) => {
          const [row] = await myRows<{ trx: number; n: number }>(
            c,
            `SELECT (SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = CONNECTION_ID()) AS trx, (SELECT COUNT(*) FROM ${table}) AS n`,
          )
          expect(row).toEqual({ trx: 0, n: 0 })
        },
      },
      {
        name: 'session variables: sql_mode, time_zone, a user variable',
        modes: ['session'],
        leave: async (c) => {
          const [row] = await myRows<{ mode: string; tz: string }>(
            c,
            'SELECT @@SESSION.sql_mode AS mode, @@SESSION.time_zone AS tz',
          )
          baseline.set('sql_mode', row!.mode)
          baseline.set('time_zone', row!.tz)
          await myRows(
            c,
            "SET SESSION sql_mode = 'ANSI_QUOTES', time_zone = '+05:45', @leak = 'alice'",
          )
        },
        check: async (c) => {
          const [row] = await myRows<{ mode: string; tz: string; v: unknown }>(
            c,
            'SELECT @@SESSION.sql_mode AS mode, @@SESSION.time_zone AS tz, @leak AS v',
          )
          expect(row).toEqual({
            mode: baseline.get('sql_mode'),
            tz: baseline.get('time_zone'),
            v: null,
          })
        },
      },
      {
        name: 'the current database (USE)',
        modes: ['session'],
        leave: async (c) => {
          baseline.set('db', (await myRows<{ db: string }>(c, 'SELECT DATABASE() AS db'))[0]!.db)
          await myRows(c, 'USE information_schema')
        },
        check: async (c) => {
          expect(await myRows(c, 'SELECT DATABASE() AS db')).toEqual([{ db: baseline.get('db') }])
        },
      },
      {
        name: 'a temporary table',
        modes: ['session'],
        leave: async (c) => {
          await myRows(c, 'CREATE TEMPORARY TABLE leak_tmp (a int)')
        },
        check: async (c) => {
          await expect(myRows(c, 'SELECT * FROM leak_tmp')).rejects.toMatchObject({
            code: 'ER_NO_SUCH_TABLE',
          })
          await myRows(c, 'CREATE TEMPORARY TABLE leak_tmp (a int)')
        },
      },
      {
        name: 'a named lock (GET_LOCK)',
        modes: ['session'],
        leave: async (c) => {
          expect(await myRows(c, `SELECT GET_LOCK('${table}', 0) AS got`)).toEqual([{ got: 1 }])
        },
        check: async (c) => {
          expect(await myRows(c, `SELECT IS_USED_LOCK('${table}') AS owner`)).toEqual([
            { owner: null },
          ])
        },
      },
      {
        name: "SQL prepared statements and mysql2's statement cache",
        modes: ['session'],
        leave: async (c) => {
          await myRows(c, "PREPARE leak_s FROM 'SELECT 1 AS v'")
          expect(await myExecute(c, 'SELECT ? AS v', [1])).toEqual([{ v: 1 }])
        },
        check: async (c) => {
          await expect(myRows(c, 'EXECUTE leak_s')).rejects.toMatchObject({ errno: 1243 })
          // mysql2 cleared its cache on COM_RESET_CONNECTION: a stale statement id would fail.
          expect(await myExecute(c, 'SELECT ? AS v', [2])).toEqual([{ v: 2 }])
        },
      },
    ],
    admin: async () => {
      const connection = mysql2.createConnection(status.url)
      connection.on('error', () => {})
      const users: string[] = []
      return {
        newTag: async () => {
          // Short enough for MariaDB's 80-character user names; one user per pool.
          const user = `sp${process.pid.toString(36)}${(++counter).toString(36)}${Date.now().toString(36)}`
          await myRows(connection, `CREATE USER '${user}'@'%'`)
          users.push(user)
          await myRows(connection, `GRANT ALL PRIVILEGES ON \`${database}\`.* TO '${user}'@'%'`)
          // PROCESS: to read INNODB_TRX for its own transaction.
          await myRows(connection, `GRANT PROCESS ON *.* TO '${user}'@'%'`)
          return user
        },
        count: async (tag) =>
          Number(
            (
              await myRows<{ n: number }>(
                connection,
                'SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE USER = ?',
                [tag],
              )
            )[0]!.n,
          ),
        killAll: async (tag) => {
          const ids = await myRows<{ ID: number }>(
            connection,
            'SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?',
            [tag],
          )
          for (const { ID } of ids) {
            await myRows(connection, `KILL ${Number(ID)}`).catch(() => {}) // it may have gone
          }
          return ids.length
        },
        maxConnections: async () =>
          Number((await myRows<{ n: number }>(connection, 'SELECT @@max_connections AS n'))[0]!.n),
        exec: async (sql, params) => {
          await myRows(connection, sql, params)
        },
        close: async () => {
          for (const user of users) {
            await myRows(connection, `DROP USER IF EXISTS '${user}'@'%'`).catch(() => {})
          }
          await new Promise<void>((resolve) => connection.end(() => resolve()))
        },
      }
    },
  }
}

// SQLite

type Database = BetterSqlite3.Database

/** The SQLite target: a WAL file in the temporary directory, removed afterwards. */
export function sqliteTarget(
  options?: SqliteOptions,
): Target<Database> & { readonly file: string } {
  const file = join(tmpdir(), `lifeguard-conformance-${RUN_TAG}-${++counter}.db`)
  const baseline = new Map<string, unknown>()
  return {
    name: 'sqlite',
    status: undefined,
    file,
    dialect: () => sqlite(file, options),
    rows: async (db, sql, params) => db.prepare(sql).all(...(params ?? [])) as never[],
    exec: async (db, sql) => {
      db.exec(sql)
    },
    // No server to wait on: a query that does a little work.
    shortQuery: () =>
      'WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200) SELECT count(*) FROM n',
    syncIdleRollback: true,
    createTable: async (db, table) => {
      db.exec(`CREATE TABLE ${table} (id int PRIMARY KEY, v text)`)
    },
    dropTable: async (db, table) => {
      db.exec(`DROP TABLE IF EXISTS ${table}`)
    },
    leakCases: (table) => [
      {
        name: 'an open transaction with uncommitted rows',
        modes: ['rollback', 'session'],
        leave: async (db) => {
          db.exec('BEGIN')
          db.prepare(`INSERT INTO ${table} VALUES (1, 'uncommitted')`).run()
        },
        check: async (db) => {
          expect(db.inTransaction).toBe(false)
          expect(db.prepare(`SELECT count(*) AS n FROM ${table}`).get()).toEqual({ n: 0 })
        },
      },
      {
        name: 'a temporary table, view and trigger',
        modes: ['session'],
        leave: async (db) => {
          db.exec('CREATE TEMP TABLE leak_tmp (a int)')
          db.exec('CREATE TEMP VIEW leak_view AS SELECT 1')
        },
        check: async (db) => {
          expect(db.prepare('SELECT count(*) AS n FROM sqlite_temp_master').get()).toEqual({ n: 0 })
          db.exec('CREATE TEMP TABLE leak_tmp (a int)')
        },
      },
      {
        name: 'pragmas and an attached database',
        modes: ['session'],
        leave: async (db) => {
          baseline.set('foreign_keys', db.pragma('foreign_keys', { simple: true }))
          db.pragma(`foreign_keys = ${baseline.get('foreign_keys') === 1 ? 0 : 1}`)
          db.pragma('recursive_triggers = 1')
          db.pragma('busy_timeout = 1')
          db.exec("ATTACH DATABASE ':memory:' AS leak_db")
        },
        check: async (db) => {
          expect(db.pragma('foreign_keys', { simple: true })).toBe(baseline.get('foreign_keys'))
          expect(db.pragma('recursive_triggers', { simple: true })).toBe(0)
          expect(db.pragma('busy_timeout', { simple: true })).toBe(options?.busyTimeout ?? 5000)
          const attached = (db.pragma('database_list') as Array<{ name: string }>)
            .map((d) => d.name)
            .filter((name) => name !== 'temp')
          expect(attached).toEqual(['main'])
        },
      },
    ],
    cleanup: () => {
      for (const suffix of ['', '-wal', '-shm']) rmSync(file + suffix, { force: true })
    },
  }
}
