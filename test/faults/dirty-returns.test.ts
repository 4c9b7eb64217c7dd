import { rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type BetterSqlite3 from 'better-sqlite3'
import type mysql2 from 'mysql2'
import type pg from 'pg'
import { expect, it } from 'vitest'
import { sqlite } from '../../src/dialects/sqlite.js'
import { createPool, type Lease, type Pool } from '../../src/index.js'
import { RUN_TAG, waitFor } from '../conformance/targets.js'
import { describeOnServer, probe } from '../support/servers.js'
import {
  checkPoolInvariants,
  closeDirect,
  directPool,
  type FaultTarget,
  ms,
  mysqlFaultTarget,
  postgresFaultTarget,
  type Rig,
  report,
  rig,
} from './fault-targets.js'

// Scenario 11: dirty returns. 10k releases per server, each leaving the connection dirty in a
// random way: an open transaction with an uncommitted row, a row lock (SELECT … FOR UPDATE), a
// failed statement inside a transaction (PostgreSQL's aborted state), a query still streaming
// its result. Every borrower first checks what the previous one left: no open transaction, no
// uncommitted row, no lock (another connection takes it with NOWAIT), and an answer within 1 s.
// Then: a reset that fails destroys the connection, and it is never lent again.
// Anchors: psycopg_pool (rolls back INTRANS/INERROR, discards ACTIVE, discards when the rollback
// fails), HikariCP's rollback on close, pg-pool #1340 (research note, row 11).

const RELEASES = Number(process.env.DIRTY_RELEASES ?? 10_000)
const WORKERS = 8
const SIZE = 4
/** Rows in the lock table: one per physical connection the run may open. */
const LOCK_ROWS = 5_000
/** A borrower that gets no answer this long after the previous one left counts as a leak. */
const ANSWER_MS = 1_000
/** After this many leaks the run stops: it has failed, and a hang per leak would take minutes. */
const ENOUGH_LEAKS = 5

const [pgStatus, myStatus] = await Promise.all([probe('postgres'), probe('mysql')])

/** How a borrower can leave a connection. */
type Kind =
  | 'uncommitted-insert'
  | 'row-lock'
  | 'failed-statement'
  | 'in-flight-in-transaction'
  | 'in-flight-autocommit'
  | 'abandoned-stream'

/** The dirty kinds and their weights (out of 100). */
const WEIGHTS: ReadonlyArray<readonly [Kind, number]> = [
  ['uncommitted-insert', 31],
  ['row-lock', 30],
  ['failed-statement', 30],
  // Fewer of these: each costs a reconnect once the pool closes what is still running.
  ['in-flight-in-transaction', 3],
  ['in-flight-autocommit', 3],
  ['abandoned-stream', 3],
]

function pick(): Kind {
  let roll = Math.random() * 100
  for (const [kind, weight] of WEIGHTS) {
    roll -= weight
    if (roll < 0) return kind
  }
  return 'uncommitted-insert'
}

/** What one dialect needs to leave a connection dirty and to check that it is clean. */
interface Kit<C> {
  /** Leaves `c` dirty; resolves when it is time to release (a query may still be running). */
  leave(c: C, kind: Kind, slot: number, seq: number): Promise<void>
  /** What the next borrower sees that it should not; `[]` when clean. */
  check(c: C): Promise<string[]>
  /** Whether another connection can take row `slot`'s lock at once. */
  lockFree(slot: number): Promise<boolean>
}

/** Rejects with "no answer" after `ms`. */
function within<T>(promise: Promise<T>, limit: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${limit} ms`)), limit)
    }),
  ]).finally(() => clearTimeout(timer))
}

/** A running tally of one server's dirty releases and what the next borrowers saw. */
interface Tally {
  releases: Record<string, number>
  checks: number
  lockProbes: number
  leaks: string[]
  borrowerErrors: string[]
  connections: number
}

/**
 * Runs RELEASES borrows over `pool` with WORKERS callers: each checks what the previous borrower
 * of the same physical connection left, then leaves it dirty in a random way and releases.
 */
async function churn<C extends object>(
  pool: Pool<C>,
  kit: Kit<C>,
  kinds: readonly Kind[],
): Promise<Tally> {
  const tally: Tally = {
    releases: {},
    checks: 0,
    lockProbes: 0,
    leaks: [],
    borrowerErrors: [],
    connections: 0,
  }
  const slots = new WeakMap<C, number>()
  const left = new WeakMap<C, Kind>()
  let next = 0
  await Promise.all(
    Array.from({ length: WORKERS }, async () => {
      while (next < RELEASES && tally.leaks.length < ENOUGH_LEAKS) {
        const seq = next++
        const lease: Lease<C> = await pool.acquire()
        const c = lease.connection
        let slot = slots.get(c)
        if (slot === undefined) {
          slot = ++tally.connections
          slots.set(c, slot)
        }
        const previous = left.get(c)
        try {
          const seen = await within(kit.check(c), ANSWER_MS)
          tally.checks++
          if (previous === 'row-lock') {
            tally.lockProbes++
            if (!(await kit.lockFree(slot))) seen.push('row lock still held')
          }
          for (const what of seen) tally.leaks.push(`after ${previous ?? 'nothing'}: ${what}`)
        } catch (error) {
          tally.leaks.push(`after ${previous ?? 'nothing'}: ${String(error)}`)
          lease.destroy(error)
          continue
        }
        let kind = pick()
        while (!kinds.includes(kind)) kind = pick()
        try {
          await kit.leave(c, kind, slot, seq)
        } catch (error) {
          tally.borrowerErrors.push(`${kind}: ${String(error)}`)
        }
        left.set(c, kind)
        tally.releases[kind] = (tally.releases[kind] ?? 0) + 1
        lease.release()
      }
    }),
  )
  return tally
}

function releasesOf(tally: Tally): number {
  return Object.values(tally.releases).reduce((a, b) => a + b, 0)
}

// PostgreSQL

function pgKit(u: string, locks: string, prober: Pool<pg.Client>): Kit<pg.Client> {
  const big = "SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 1000) g"
  return {
    // Simple-query strings of several statements: one round trip each, as an application
    // sending a batch would (after an error the rest is skipped, the transaction left failed).
    async leave(c, kind, slot, seq) {
      switch (kind) {
        case 'uncommitted-insert':
          await c.query(`BEGIN; INSERT INTO ${u} VALUES (${seq})`)
          return
        case 'row-lock':
          await c.query(`BEGIN; SELECT id FROM ${locks} WHERE id = ${slot} FOR UPDATE`)
          return
        case 'failed-statement':
          await c
            .query(`BEGIN; INSERT INTO ${u} VALUES (${seq}); SELECT 1/0`)
            .catch((e: { code?: string }) => {
              if (e.code !== '22012') throw e
            })
          return
        case 'in-flight-in-transaction':
          await c.query(`BEGIN; INSERT INTO ${u} VALUES (${seq})`)
          c.query(big).catch(() => {}) // abandoned: released while its rows stream in
          return
        case 'in-flight-autocommit':
          c.query(big).catch(() => {})
          return
        case 'abandoned-stream':
          // pg has no row stream without pg-cursor: queue a transaction without awaiting it.
          c.query('BEGIN').catch(() => {})
          c.query(`INSERT INTO ${u} VALUES ($1)`, [seq]).catch(() => {})
          c.query(big).catch(() => {})
          return
      }
    },
    async check(c) {
      const seen: string[] = []
      const status = c.getTransactionStatus()
      if (status !== 'I') seen.push(`transaction status ${status}`)
      const { rows } = await c.query<{ fresh: boolean; xid: unknown; n: number }>(
        `SELECT now() = statement_timestamp() AS fresh, pg_current_xact_id_if_assigned() AS xid, (SELECT count(*)::int FROM ${u}) AS n`,
      )
      const row = rows[0]!
      if (!row.fresh) seen.push('inside a transaction begun earlier')
      if (row.xid !== null) seen.push('a transaction id is assigned')
      if (row.n !== 0) seen.push(`${row.n} uncommitted rows visible`)
      return seen
    },
    async lockFree(slot) {
      try {
        await prober.use((c) =>
          c.query(`SELECT id FROM ${locks} WHERE id = $1 FOR UPDATE NOWAIT`, [slot]),
        )
        return true
      } catch (error) {
        if ((error as { code?: string }).code === '55P03') return false
        throw error
      }
    },
  }
}

// MariaDB

function run<T = unknown>(c: mysql2.Connection, sql: string, params?: unknown[]): Promise<T> {
  return new Promise((resolve, reject) => {
    c.query(sql, params ?? [], (error, result) => (error ? reject(error) : resolve(result as T)))
  })
}

function myKit(u: string, locks: string, prober: Pool<mysql2.Connection>): Kit<mysql2.Connection> {
  const big = "SELECT seq, REPEAT('x', 100) AS pad FROM seq_1_to_1000"
  const abandon = (c: mysql2.Connection, sql: string) => {
    c.query(sql, () => {})
  }
  return {
    async leave(c, kind, slot, seq) {
      switch (kind) {
        case 'uncommitted-insert':
          await run(c, 'START TRANSACTION')
          await run(c, `INSERT INTO ${u} VALUES (?)`, [seq])
          return
        case 'row-lock':
          await run(c, 'START TRANSACTION')
          await run(c, `SELECT id FROM ${locks} WHERE id = ? FOR UPDATE`, [slot])
          return
        case 'failed-statement':
          // A failed statement does not end a MariaDB transaction: the insert stays pending.
          await run(c, 'START TRANSACTION')
          await run(c, `INSERT INTO ${u} VALUES (?)`, [seq])
          await run(c, `INSERT INTO ${locks} VALUES (?)`, [slot]).catch((e: { code?: string }) => {
            if (e.code !== 'ER_DUP_ENTRY') throw e
          })
          return
        case 'in-flight-in-transaction':
          await run(c, 'START TRANSACTION')
          await run(c, `INSERT INTO ${u} VALUES (?)`, [seq])
          abandon(c, big)
          return
        case 'in-flight-autocommit':
          abandon(c, big)
          return
        case 'abandoned-stream': {
          // Read a few rows, then walk away from the stream without destroying it: mysql2
          // pauses the socket once the stream's buffer is full.
          const stream = c.query(big).stream()
          stream.on('error', () => {})
          await new Promise((resolve) => stream.once('data', resolve))
          stream.pause()
          return
        }
      }
    },
    async check(c) {
      const seen: string[] = []
      const [row] = await run<Array<{ tx: number; n: number }>>(
        c,
        `SELECT @@in_transaction AS tx, (SELECT COUNT(*) FROM ${u}) AS n`,
      )
      if (Number(row!.tx) !== 0) seen.push('inside a transaction')
      if (Number(row!.n) !== 0) seen.push(`${row!.n} uncommitted rows visible`)
      return seen
    },
    async lockFree(slot) {
      try {
        await prober.use((c) =>
          run(c, `SELECT id FROM ${locks} WHERE id = ? FOR UPDATE NOWAIT`, [slot]),
        )
        return true
      } catch (error) {
        if ((error as { errno?: number }).errno === 1205) return false
        throw error
      }
    },
  }
}

// The scenarios

interface Server<C> {
  target: FaultTarget<C>
  kit(u: string, locks: string, prober: Pool<C>): Kit<C>
  /** Creates the two tables, the lock table with LOCK_ROWS rows. */
  createSql(u: string, locks: string): string[]
  /** The connection's server-side id: pid or thread id. */
  sessionId(c: C): number
}

const pgServer: Server<pg.Client> = {
  target: postgresFaultTarget(pgStatus) as FaultTarget<pg.Client>,
  kit: pgKit,
  createSql: (u, locks) => [
    `CREATE TABLE ${u} (seq int)`,
    `CREATE TABLE ${locks} (id int PRIMARY KEY)`,
    `INSERT INTO ${locks} SELECT generate_series(1, ${LOCK_ROWS})`,
  ],
  sessionId: (c) => (c as unknown as { processID: number }).processID,
}

const myServer: Server<mysql2.Connection> = {
  target: mysqlFaultTarget(myStatus),
  kit: myKit,
  createSql: (u, locks) => [
    `CREATE TABLE ${u} (seq int) ENGINE=InnoDB`,
    `CREATE TABLE ${locks} (id int PRIMARY KEY) ENGINE=InnoDB`,
    `INSERT INTO ${locks} SELECT seq FROM seq_1_to_${LOCK_ROWS}`,
  ],
  sessionId: (c) => c.threadId ?? -1,
}

/** Creates the scenario's tables, runs `body`, drops them, finishes the rig. */
async function withTables<C>(
  server: Server<C>,
  label: string,
  body: (r: Rig<C>, u: string, locks: string) => Promise<void>,
): Promise<void> {
  const r = await rig(server.target)
  const u = `faults_s11${label}_u_${r.tag}`.slice(0, 60)
  const locks = `faults_s11${label}_l_${r.tag}`.slice(0, 60)
  try {
    for (const sql of server.createSql(u, locks)) await r.admin.exec(sql)
    await body(r, u, locks)
  } finally {
    await r.admin.exec(`DROP TABLE IF EXISTS ${u}`).catch(() => {})
    await r.admin.exec(`DROP TABLE IF EXISTS ${locks}`).catch(() => {})
    await r.finish()
  }
}

function scenarios<C extends object>(server: Server<C>): void {
  const { target } = server

  it(`11. ${RELEASES} random dirty releases: the next borrower never sees an open transaction, an uncommitted row or a held lock`, {
    timeout: 120_000,
  }, async () => {
    await withTables(server, '', async (r, u, locks) => {
      // validationTimeout bounds each reset: a reset stuck behind an abandoned query ends
      // in 1 s and destroys the connection. No fault is injected here: straight to the server.
      const pool = directPool(r, { max: SIZE, validationTimeout: 1_000, acquireTimeout: 10_000 })
      const prober = r.pool({ max: 2 })
      const invalidated: Record<string, number> = {}
      pool.on('invalidate', ({ reason }) => {
        invalidated[reason] = (invalidated[reason] ?? 0) + 1
      })
      try {
        const started = performance.now()
        const tally = await churn(
          pool,
          server.kit(u, locks, prober),
          WEIGHTS.map(([k]) => k),
        )
        const runMs = performance.now() - started
        // Let the last resets finish, then look at the table from outside: nothing was committed.
        await waitFor(() => {
          const now = pool.stats()
          return now.leased + now.resetting + now.closing === 0
        }, 5_000)
        const [row] = await prober.use((c) =>
          target.query<{ n: number | string }>(c, `SELECT COUNT(*) AS n FROM ${u}`),
        )
        checkPoolInvariants(pool as Pool<unknown>)
        report('11 dirty returns', target.label, {
          releases: releasesOf(tally),
          byKind: tally.releases,
          checks: tally.checks,
          lockProbes: tally.lockProbes,
          leaks: tally.leaks.length,
          firstLeaks: tally.leaks.slice(0, 3),
          borrowerErrors: tally.borrowerErrors.slice(0, 3),
          connections: tally.connections,
          invalidated,
          committedRows: Number(row!.n),
          runMs: ms(runMs),
        })
        expect(tally.leaks).toEqual([])
        expect(tally.borrowerErrors).toEqual([])
        expect(releasesOf(tally)).toBe(RELEASES)
        expect(tally.checks).toBe(RELEASES)
        expect(tally.connections).toBeLessThan(LOCK_ROWS)
        expect(Number(row!.n)).toBe(0)
      } finally {
        await closeDirect(pool as Pool<unknown>)
      }
    })
  })

  for (const how of ['blackhole', 'rst'] as const) {
    it(`11. a reset that fails (${how === 'blackhole' ? 'ROLLBACK unanswered past validationTimeout' : 'link reset during ROLLBACK'}) destroys the connection; it is never lent again`, async () => {
      await withTables(server, how === 'rst' ? 'r' : 'b', async (r, u) => {
        const pool = r.pool({ max: 1, validationTimeout: 300 })
        const failed: Array<{ id: number; reason: string; error?: unknown }> = []
        const lentAfter: number[] = []
        pool.on('invalidate', (e) => failed.push(e))
        pool.on('acquire', ({ id }) => {
          if (failed.length > 0) lentAfter.push(id)
        })
        const a = await pool.acquire()
        const firstSession = server.sessionId(a.connection)
        await target.query(a.connection, 'BEGIN')
        await target.query(a.connection, `INSERT INTO ${u} VALUES (1)`)
        if (how === 'blackhole') r.proxy.set({ upstream: { blackhole: true } })
        else r.proxy.set({ upstream: { resetAfterBytes: 1 } })
        const releasedAt = performance.now()
        a.release() // the reset sends ROLLBACK: never answered, or the link is reset
        await waitFor(() => failed.length > 0, 3_000)
        const failedMs = performance.now() - releasedAt
        // Only the failed link had the fault: the replacement connects normally.
        await r.proxy.clear()
        const b = await pool.acquire()
        expect(failed.map((e) => e.reason)).toEqual(['reset-failed'])
        expect(server.sessionId(b.connection)).not.toBe(firstSession)
        const [row] = await target.query<{ n: number | string }>(
          b.connection,
          `SELECT COUNT(*) AS n FROM ${u}`,
        )
        expect(Number(row!.n)).toBe(0)
        b.release()
        // Borrow a few more times: the failed connection never comes back.
        for (let i = 0; i < 5; i++) await pool.use((c) => target.query(c, 'SELECT 1'))
        report(`11 failed reset (${how})`, target.label, {
          invalidated: failed.map((e) => `#${e.id} ${e.reason}`),
          error: String(failed[0]?.error),
          resetFailedAfterMs: ms(failedMs),
          lentAfter: [...new Set(lentAfter)],
        })
        expect(lentAfter).not.toContain(failed[0]!.id)
      })
    })
  }
}

describeOnServer(pgStatus, 'faults: dirty returns on PostgreSQL', () => scenarios(pgServer))
describeOnServer(myStatus, 'faults: dirty returns on MariaDB', () => scenarios(myServer))

// SQLite: no network, but the same dirty kinds (a write lock is BEGIN IMMEDIATE; "mid-stream"
// is an open iterator). One connection, so that a lock held by another one cannot be confused
// with a leak.

type Db = BetterSqlite3.Database

function sqliteKit(u: string): Kit<Db> {
  return {
    async leave(db, kind, slot, seq) {
      switch (kind) {
        case 'uncommitted-insert':
          db.exec('BEGIN')
          db.prepare(`INSERT INTO ${u} VALUES (?)`).run(seq)
          return
        case 'row-lock':
          db.exec('BEGIN IMMEDIATE')
          return
        case 'failed-statement':
          db.exec('BEGIN')
          db.prepare(`INSERT INTO ${u} VALUES (?)`).run(seq)
          try {
            db.exec('INSERT INTO missing_table VALUES (1)')
          } catch (error) {
            if (!String(error).includes('no such table')) throw error
          }
          return
        case 'in-flight-in-transaction': {
          db.exec('BEGIN')
          db.prepare(`INSERT INTO ${u} VALUES (?)`).run(seq)
          const rows = db
            .prepare(
              'WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) SELECT i FROM n',
            )
            .iterate()
          rows.next()
          return
        }
        case 'in-flight-autocommit':
        case 'abandoned-stream': {
          const rows = db.prepare(`SELECT ${slot} AS v UNION ALL SELECT 2`).iterate()
          rows.next()
          return
        }
      }
    },
    async check(db) {
      const seen: string[] = []
      if (db.inTransaction) seen.push('inside a transaction')
      const n = db.prepare(`SELECT count(*) AS n FROM ${u}`).pluck().get() as number
      if (n !== 0) seen.push(`${n} uncommitted rows visible`)
      // Take the write lock and give it back: no lock is held, and the connection is not
      // busy with someone else's statement.
      try {
        db.exec('BEGIN IMMEDIATE')
        db.exec('ROLLBACK')
      } catch (error) {
        seen.push(String(error))
      }
      return seen
    },
    async lockFree() {
      return true // checked by the BEGIN IMMEDIATE above
    },
  }
}

describeOnServer({ ...pgStatus, up: true }, 'faults: dirty returns on SQLite', () => {
  it(`11. ${RELEASES} random dirty releases: the next borrower never sees an open transaction, an uncommitted row, a held lock or a busy connection`, async () => {
    const file = join(tmpdir(), `lifeguard-faults-dirty-${RUN_TAG}.db`)
    const u = 'dirty_u'
    const pool = createPool<Db>({ dialect: sqlite(file, { busyTimeout: 100 }), max: 1 })
    const invalidated: Record<string, number> = {}
    pool.on('invalidate', ({ reason }) => {
      invalidated[reason] = (invalidated[reason] ?? 0) + 1
    })
    try {
      await pool.use((db) => db.exec(`CREATE TABLE ${u} (seq int)`))
      // Not 'in-flight-in-transaction': an iterator left open inside a write transaction holds
      // the database's write lock, and better-sqlite3 can neither roll back nor close a
      // connection while an iterator is open. No pool can clean that up; the handle keeps the
      // lock until it is garbage-collected (docs/reliability.md, "What the suite found").
      const kinds = WEIGHTS.map(([k]) => k).filter((k) => k !== 'in-flight-in-transaction')
      const tally = await churn(pool, sqliteKit(u), kinds)
      checkPoolInvariants(pool as Pool<unknown>)
      report('11 dirty returns', 'SQLite', {
        releases: releasesOf(tally),
        byKind: tally.releases,
        leaks: tally.leaks.length,
        firstLeaks: tally.leaks.slice(0, 3),
        borrowerErrors: tally.borrowerErrors.slice(0, 3),
        connections: tally.connections,
        invalidated,
      })
      expect(tally.leaks).toEqual([])
      expect(tally.borrowerErrors).toEqual([])
      expect(releasesOf(tally)).toBe(RELEASES)
    } finally {
      await pool.close({ timeout: 1_000 })
      expect(pool.stats().total).toBe(0)
      for (const suffix of ['', '-wal', '-shm']) rmSync(file + suffix, { force: true })
    }
  })
})
