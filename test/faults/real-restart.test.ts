import type mysql2 from 'mysql2'
import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { lifeguardOf } from '../../src/compat/lifeguard-of.js'
import { createPool as createMysql2Pool } from '../../src/compat/mysql2.js'
import { createPool as createMysql2PromisePool } from '../../src/compat/mysql2-promise.js'
import { Pool as PgPool } from '../../src/compat/pg.js'
import { type MysqlConnection, mysql } from '../../src/dialects/mysql.js'
import { postgres } from '../../src/dialects/postgres.js'
import { createPool, type Pool, PoolError } from '../../src/index.js'
import { sleep, uniqueName } from '../conformance/targets.js'
import { trackProcessErrors } from '../support/process-errors.js'
import { startThrowawayMariaDb } from '../support/throwaway-mariadb.js'
import { startThrowawayPostgres } from '../support/throwaway-postgres.js'
import type { ThrowawayServer } from '../support/throwaway-server.js'
import { ms, report } from './fault-targets.js'

// Issue 17, "real restarts": the server itself restarts (PostgreSQL `pg_ctl restart -m fast`,
// MariaDB SHUTDOWN and start) or crashes (kill -9 of its main process, then start), on a
// throwaway server of the test's own, while 50 workers write through the core pool's `use()` and
// through the drop-in facades. Unlike the fault proxy's outages, the server says goodbye (57P01,
// ER_SERVER_SHUTDOWN), refuses while it starts (57P03), and comes back with every session gone.

/** How long a caller may wait for a connection; the down time of every scenario is shorter. */
const ACQUIRE_TIMEOUT = 3_000
/** Room for a loaded 2-core machine on top of `acquireTimeout` (the query after the acquire too). */
const MARGIN = 3_000
/** Writing before the event, and after the server accepts again. */
const LEAD_MS = 800
const AFTER_MS = 1_500
const WORKERS = 50

/** One way of writing: a pool, the API its users call, and the core pool under it. */
interface Writer {
  readonly name: string
  readonly core: Pool<unknown>
  /** Inserts `id`; resolves with the server session that wrote it and the server's incarnation. */
  write(id: number): Promise<{ session: number; incarnation: string }>
  close(): Promise<void>
  /** Callbacks called more than once (a callback API must call back exactly once). */
  readonly extraCallbacks: number
}

/** One server kind: its throwaway server, the SQL, and its writers. */
interface Kind {
  readonly label: 'PostgreSQL' | 'MariaDB'
  start(): Promise<ThrowawayServer>
  createTable(server: ThrowawayServer, table: string): Promise<void>
  /** The current incarnation of the server, as the writes report it. */
  incarnation(server: ThrowawayServer): Promise<string>
  /** Labels the running incarnation, where the server has no start time to tell it by. */
  markIncarnation?(server: ThrowawayServer): Promise<void>
  /** Every way of writing, each with how many of the 50 workers use it. */
  writers(server: ThrowawayServer, table: string): Array<[Writer, number]>
  /**
   * `kill -9` of one session's server process, where the server then restarts every session in
   * place (PostgreSQL's crash recovery: the others get 57P02, new connects 57P03 meanwhile).
   */
  crashSession?(server: ThrowawayServer): Promise<void>
}

const poolName = (what: string) => uniqueName(`real_restart_${what}`)

// A crash recovery keeps the postmaster (and its start time) but ends in a checkpoint of its own.
const PG_INCARNATION =
  "pg_postmaster_start_time()::text || ' ' || (SELECT checkpoint_lsn FROM pg_control_checkpoint())::text"

const postgresKind: Kind = {
  label: 'PostgreSQL',
  start: () => startThrowawayPostgres(),
  async createTable(server, table) {
    // No key: a write that landed twice must show as two rows.
    await server.sql(`CREATE TABLE ${table} (id bigint NOT NULL, writer text, session int)`)
  },
  async incarnation(server) {
    const rows = await server.sql<{ t: string }>(`SELECT ${PG_INCARNATION} AS t`)
    return rows[0]!.t
  },
  async crashSession(server) {
    const rows = await server.sql<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND application_name = '' LIMIT 1",
    )
    process.kill(rows[0]!.pid, 'SIGKILL')
  },
  writers(server, table) {
    const insert = `INSERT INTO ${table} (id, writer, session) VALUES ($1, $2, pg_backend_pid()) RETURNING session, ${PG_INCARNATION} AS incarnation`
    type Row = { session: number; incarnation: string }
    const core = createPool({
      dialect: postgres(server.url),
      max: 10,
      acquireTimeout: ACQUIRE_TIMEOUT,
      name: poolName('pg_core'),
    })
    const facade = new PgPool({
      connectionString: server.url,
      max: 10,
      connectionTimeoutMillis: ACQUIRE_TIMEOUT,
      lifeguard: { name: poolName('pg_facade') },
    })
    let extra = 0
    let calls = 0
    return [
      [
        {
          name: 'core use()',
          core: core as Pool<unknown>,
          write: (id) =>
            core.use(async (client) => {
              const result = await client.query<Row>(insert, [id, 'core'])
              return result.rows[0]!
            }),
          close: () => core.close(),
          extraCallbacks: 0,
        },
        25,
      ],
      [
        {
          name: 'lifeguard/pg Pool.query',
          core: lifeguardOf(facade),
          write: (id) =>
            // Half the calls in pg's callback form, which must call back exactly once.
            ++calls % 2 === 0
              ? facade.query<Row>(insert, [id, 'pg']).then((r) => r.rows[0]!)
              : new Promise((resolve, reject) => {
                  let called = 0
                  facade.query(
                    insert,
                    [id, 'pg'],
                    (error: Error | undefined, r: pg.QueryResult) => {
                      if (++called > 1) extra++
                      if (error) reject(error)
                      else resolve(r.rows[0] as Row)
                    },
                  )
                }),
          close: () => facade.end(),
          get extraCallbacks() {
            return extra
          },
        },
        25,
      ],
    ]
  },
}

// MariaDB has no start time finer than a second; the test labels each incarnation in a global
// variable that nothing here reads otherwise (a fresh server starts with the default, 100).
const LABEL_VARIABLE = 'max_connect_errors'

const mariaDbKind: Kind = {
  label: 'MariaDB',
  start: () => startThrowawayMariaDb(),
  async createTable(server, table) {
    await server.sql(`CREATE TABLE ${table} (id bigint NOT NULL, writer text, session bigint)`)
  },
  async incarnation(server) {
    const rows = await server.sql<{ t: number }>(`SELECT @@global.${LABEL_VARIABLE} AS t`)
    return String(rows[0]!.t)
  },
  async markIncarnation(server) {
    await server.sql(`SET GLOBAL ${LABEL_VARIABLE} = ${100_000 + Math.floor(Math.random() * 1e6)}`)
  },
  writers(server, table) {
    const insert = `INSERT INTO ${table} (id, writer, session) VALUES (?, ?, CONNECTION_ID()) RETURNING session, @@global.${LABEL_VARIABLE} AS incarnation`
    type Row = { session: number; incarnation: number }
    const toResult = (row: Row) => ({ session: row.session, incarnation: String(row.incarnation) })
    const core = createPool({
      dialect: mysql(server.url),
      max: 10,
      acquireTimeout: ACQUIRE_TIMEOUT,
      name: poolName('my_core'),
    })
    const lifeguard = (what: string) => ({ name: poolName(what), acquireTimeout: ACQUIRE_TIMEOUT })
    const callbacks = createMysql2Pool({
      uri: server.url,
      connectionLimit: 10,
      lifeguard: lifeguard('mysql2'),
    })
    const promised = createMysql2PromisePool({
      uri: server.url,
      connectionLimit: 10,
      lifeguard: lifeguard('mysql2_promise'),
    })
    let extra = 0
    return [
      [
        {
          name: 'core use()',
          core: core as Pool<unknown>,
          write: (id) =>
            core.use(async (connection: MysqlConnection) => {
              const [rows] = await connection.query(insert, [id, 'core'])
              return toResult((rows as Row[])[0]!)
            }),
          close: () => core.close(),
          extraCallbacks: 0,
        },
        20,
      ],
      [
        {
          name: 'lifeguard/mysql2 pool.query (callback)',
          core: lifeguardOf(callbacks),
          write: (id) =>
            new Promise((resolve, reject) => {
              let called = 0
              callbacks.query(insert, [id, 'mysql2'], (error: mysql2.QueryError | null, rows) => {
                if (++called > 1) extra++
                if (error) reject(error)
                else resolve(toResult((rows as Row[])[0]!))
              })
            }),
          close: () =>
            new Promise<void>((resolve, reject) =>
              callbacks.end((error) => (error ? reject(error) : resolve())),
            ),
          get extraCallbacks() {
            return extra
          },
        },
        15,
      ],
      [
        {
          name: 'lifeguard/mysql2/promise pool.query',
          core: lifeguardOf(promised),
          write: async (id) => {
            const [rows] = await promised.query(insert, [id, 'mysql2/promise'])
            return toResult((rows as Row[])[0]!)
          },
          close: () => promised.end(),
          extraCallbacks: 0,
        },
        15,
      ],
    ]
  },
}

/** One write as its caller saw it. */
interface Outcome {
  readonly id: number
  readonly writer: string
  readonly startedAt: number
  readonly endedAt: number
  readonly error?: unknown
  readonly session?: number
  readonly incarnation?: string
}

/** What a caller got, by class and code: `ConnectError`, `DatabaseError 57P01`, … */
function errorKind(error: unknown): string {
  const e = error as { constructor?: { name?: string }; code?: unknown; errno?: unknown }
  const code = e.code ?? e.errno
  const detail = code === undefined ? `"${String((error as Error).message).slice(0, 60)}"` : code
  return `${e.constructor?.name ?? typeof error} ${String(detail)}`
}

/** A typed error: a lifeguard `PoolError` (its `code` names it), or a driver error with a code. */
function isTyped(error: unknown): boolean {
  if (error instanceof PoolError) return true
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && code !== ''
}

/**
 * Polls with new connections of its own (every 10 ms) until the server accepts them and they
 * reach a new incarnation; returns `performance.now()` then.
 */
async function acceptingAgain(kind: Kind, server: ThrowawayServer, old: string): Promise<number> {
  const deadline = performance.now() + 60_000
  for (;;) {
    const at = await kind.incarnation(server).then(
      (now) => (now === old ? undefined : performance.now()),
      () => undefined,
    )
    if (at !== undefined) return at
    if (performance.now() > deadline) throw new Error(`${kind.label} did not come back in 60 s`)
    await sleep(10)
  }
}

function scenarios(kind: Kind): void {
  let server: ThrowawayServer
  beforeAll(async () => {
    server = await kind.start()
  })
  afterAll(() => server?.remove())

  const events = ['fast restart', 'crash', ...(kind.crashSession ? ['session crash'] : [])]
  for (const event of events) {
    it(`${event} under 50 writers (core use() and the facades): acknowledged writes kept exactly once, one typed error per failed caller, none past acquireTimeout, serving ≤ 1 s after the server accepts, no old connection lent`, async () => {
      const processErrors = trackProcessErrors()
      const table = uniqueName('real_restart')
      await kind.createTable(server, table)
      const writers = kind.writers(server, table)
      // Which connection (the pool's record id) was opened when, and which were lent when.
      const opened = new Map<string, number>()
      const lent: Array<{ key: string; at: number }> = []
      for (const [writer] of writers) {
        writer.core.on('connect', (e) => opened.set(`${writer.name}#${e.id}`, performance.now()))
        writer.core.on('acquire', (e) =>
          lent.push({ key: `${writer.name}#${e.id}`, at: performance.now() }),
        )
      }
      const outcomes: Outcome[] = []
      let nextId = 0
      let running = true
      const worker = async (writer: Writer) => {
        while (running) {
          const id = ++nextId
          const startedAt = performance.now()
          try {
            const r = await writer.write(id)
            outcomes.push({ id, writer: writer.name, startedAt, endedAt: performance.now(), ...r })
          } catch (error) {
            outcomes.push({ id, writer: writer.name, startedAt, endedAt: performance.now(), error })
            // A caller that failed at once would spin; the server is down for a while.
            await sleep(5)
          }
        }
      }
      const workers = writers.flatMap(([writer, n]) =>
        Array.from({ length: n }, () => worker(writer)),
      )
      expect(workers.length).toBe(WORKERS)
      let downAt = 0
      let acceptedAt = 0
      let oldIncarnation = ''
      const oldSessions = new Set<number>()
      try {
        await sleep(LEAD_MS)
        await kind.markIncarnation?.(server)
        oldIncarnation = await kind.incarnation(server)
        // Whoever wrote before the event was a session of the old server.
        for (const o of outcomes) if (o.session !== undefined) oldSessions.add(o.session)
        downAt = performance.now()
        if (event === 'fast restart') {
          const restarted = server.restart({ mode: 'fast' })
          acceptedAt = await acceptingAgain(kind, server, oldIncarnation)
          await restarted
        } else if (event === 'session crash') {
          await kind.crashSession!(server)
          acceptedAt = await acceptingAgain(kind, server, oldIncarnation)
        } else {
          await server.crash()
          const started = server.start()
          acceptedAt = await acceptingAgain(kind, server, oldIncarnation)
          await started
        }
        await sleep(AFTER_MS)
      } finally {
        running = false
        await Promise.all(workers)
        await Promise.all(writers.map(([writer]) => writer.close()))
        processErrors.stop()
      }

      // Every acknowledged write is there exactly once; one that failed is there at most once
      // (its commit may have happened with the answer lost).
      const rows = await server.sql<{ id: string; n: string }>(
        `SELECT id, count(*) AS n FROM ${table} GROUP BY id`,
      )
      const stored = new Map(rows.map((r) => [Number(r.id), Number(r.n)]))
      const acked = outcomes.filter((o) => o.error === undefined)
      const failed = outcomes.filter((o) => o.error !== undefined)
      const missing = acked.filter((o) => stored.get(o.id) !== 1)
      expect(
        missing.map((o) => [o.id, stored.get(o.id) ?? 0]),
        'acknowledged writes not stored exactly once',
      ).toEqual([])
      expect(
        [...stored.values()].every((n) => n === 1),
        'a write stored twice',
      ).toBe(true)
      const failedButStored = failed.filter((o) => stored.has(o.id)).length

      // One typed error per failed caller (and no callback called twice).
      // pg's own error for a connection that closed under a query has no code, and PostgreSQL
      // closes some without a word: at a session crash, 14+ tells the other sessions 57P02 only
      // in a notice; at a postmaster crash, a backend waiting on a lock (these inserts wait on
      // the table's extension lock) or on a latch exits silently (WL_EXIT_ON_PM_DEATH), where
      // one waiting for its client's next statement says 57P01.
      const lost = (o: Outcome) =>
        (event === 'session crash' || event === 'crash') &&
        o.startedAt < acceptedAt &&
        String((o.error as Error).message) === 'Connection terminated unexpectedly'
      const untyped = failed.filter((o) => !isTyped(o.error) && !lost(o))
      expect(
        untyped.map((o) => `${o.writer}: ${errorKind(o.error)}: ${String(o.error)}`),
        'callers whose error has no code',
      ).toEqual([])
      for (const [writer] of writers) expect(writer.extraCallbacks, writer.name).toBe(0)
      const kinds = new Map<string, number>()
      for (const o of failed) {
        const key = `${o.writer}: ${errorKind(o.error)}`
        kinds.set(key, (kinds.get(key) ?? 0) + 1)
      }

      // Nobody waited past acquireTimeout (plus the loaded machine's margin).
      const longest = Math.max(...outcomes.map((o) => o.endedAt - o.startedAt))
      expect(longest, 'the longest call').toBeLessThanOrEqual(ACQUIRE_TIMEOUT + MARGIN)

      // Nothing reached the process.
      expect(processErrors.errors, 'unhandled errors').toEqual([])

      // No connection opened before the event was lent once the server accepted again, and no
      // write after that ran in an old session or on the old server.
      const staleLends = lent.filter((l) => l.at >= acceptedAt && (opened.get(l.key) ?? 0) < downAt)
      expect(
        staleLends.map((l) => l.key),
        'connections from before the event lent after the server came back',
      ).toEqual([])
      const after = acked.filter((o) => o.startedAt >= acceptedAt)
      expect(after.length, 'writes after the server came back').toBeGreaterThan(0)
      expect(
        after.filter((o) => o.incarnation === oldIncarnation).map((o) => o.id),
        'writes on the old server after it came back',
      ).toEqual([])
      if (kind.label === 'PostgreSQL') {
        // Backend pids are the OS's: a new server's are new. (MariaDB's connection ids start
        // again at 1, so there the incarnation label says it.)
        expect(
          after.filter((o) => oldSessions.has(o.session!)).map((o) => o.id),
          'writes in an old backend after the server came back',
        ).toEqual([])
      }

      // Serving again: each writer's first acknowledged write after the server accepted.
      const recovery: Record<string, number> = {}
      for (const [writer] of writers) {
        const first = Math.min(
          ...acked
            .filter((o) => o.writer === writer.name && o.endedAt >= acceptedAt)
            .map((o) => o.endedAt),
        )
        recovery[writer.name] = first - acceptedAt
      }
      const worst = Math.max(...Object.values(recovery))
      // Old connections lent after a caller had already seen the server go: a disconnect
      // condemns every older connection, so only those lent at the same moment may fail.
      const firstFailure = new Map<string, number>()
      for (const o of failed) {
        firstFailure.set(o.writer, Math.min(firstFailure.get(o.writer) ?? Infinity, o.endedAt))
      }
      const lentAfterFirstFailure = lent.filter((l) => {
        const writer = l.key.slice(0, l.key.lastIndexOf('#'))
        return l.at > (firstFailure.get(writer) ?? Infinity) && (opened.get(l.key) ?? 0) < downAt
      }).length
      report(
        `real ${event}`,
        kind.label,
        {
          writes: outcomes.length,
          acked: acked.length,
          failed: failed.length,
          failedButStored,
          errors: Object.fromEntries(kinds),
          downMs: ms(acceptedAt - downAt),
          longestCallMs: ms(longest),
          oldConnectionsLentAfterFirstFailure: lentAfterFirstFailure,
          recoveryMs: Object.fromEntries(Object.entries(recovery).map(([k, v]) => [k, ms(v)])),
        },
        { recovery: { value: worst, target: 1_000, bound: 3_000 } },
      )
    })
  }
}

describe('real restart: PostgreSQL (throwaway server)', () => scenarios(postgresKind))
describe('real restart: MariaDB (throwaway server)', () => scenarios(mariaDbKind))
