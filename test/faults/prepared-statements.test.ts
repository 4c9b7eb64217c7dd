import { rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type BetterSqlite3 from 'better-sqlite3'
import type mysql2 from 'mysql2'
import type pg from 'pg'
import { expect, it } from 'vitest'
import { sqlite } from '../../src/dialects/sqlite.js'
import { createPool, type Lease, type Pool } from '../../src/index.js'
import { RUN_TAG } from '../conformance/targets.js'
import { describeOnServer, probe } from '../support/servers.js'
import {
  checkPoolInvariants,
  type FaultTarget,
  mysqlFaultTarget,
  postgresFaultTarget,
  report,
  rig,
} from './fault-targets.js'

// Scenario 13: prepared statements invalidated. The drivers cache server-side prepared
// statements per connection (pg's named statements, mysql2's execute() cache); a session reset
// (DISCARD ALL, COM_RESET_CONNECTION) drops them on the server, and ALTER TABLE changes what a
// prepared statement returns. Criteria: 0 errors after any reset, and never a stale statement:
// every result is that of the SQL text the borrower sent. Fuzzed: the same statement name (pg)
// carries a different text on each borrower. Anchors: PgBouncer test_prepared (name reuse),
// postgres.js #40, typegraph #529 (stale SQL on name reuse) (research note, row 13).

const BORROWS = Number(process.env.PREPARED_BORROWS ?? 2_000)
const WORKERS = 6
const SIZE = 3
/** Statement names (pg) or texts (mysql2) the borrowers draw from. */
const NAMES = 20

const [pgStatus, myStatus] = await Promise.all([probe('postgres'), probe('mysql')])

/** What one server needs: run a cached prepared statement that adds `k` to `x`. */
interface Preparer<C> {
  target: FaultTarget<C>
  /**
   * Runs `x + k` through the driver's statement cache under cache key `name`; resolves with
   * the result. pg: a named statement whose text carries `k`, so the same name gets a
   * different text on the next borrower; mysql2: execute() of a text that carries `k`.
   */
  add(c: C, name: number, k: number, x: number): Promise<number>
  /** Prepares (caches) `SELECT v FROM table WHERE id = ?` and runs it; resolves with `v`. */
  selectV(c: C, table: string): Promise<unknown>
  /** Changes the type of `v` from int to text (its value 1 becomes '1'). */
  alterSql(table: string): string
  createSql(table: string): string
}

const pgPreparer: Preparer<pg.Client> = {
  target: postgresFaultTarget(pgStatus) as FaultTarget<pg.Client>,
  add: async (c, name, k, x) => {
    const { rows } = await c.query({
      name: `s13_${name}`,
      text: `SELECT $1::int + ${k} AS v`,
      values: [x],
    })
    return Number(rows[0].v)
  },
  selectV: async (c, table) => {
    const { rows } = await c.query({
      name: 's13_select_v',
      text: `SELECT v FROM ${table} WHERE id = $1`,
      values: [1],
    })
    return rows[0].v
  },
  alterSql: (table) => `ALTER TABLE ${table} ALTER COLUMN v TYPE text USING v::text`,
  createSql: (table) => `CREATE TABLE ${table} (id int PRIMARY KEY, v int)`,
}

function execute<T>(c: mysql2.Connection, sql: string, values: unknown[]): Promise<T[]> {
  return new Promise((resolve, reject) => {
    c.execute(sql, values as never[], (error, rows) =>
      error ? reject(error) : resolve(rows as T[]),
    )
  })
}

const myPreparer: Preparer<mysql2.Connection> = {
  target: mysqlFaultTarget(myStatus),
  // mysql2 caches by text: `name` picks one of NAMES texts, `k` makes it this borrower's.
  add: async (c, name, k, x) => {
    const [row] = await execute<{ v: number }>(c, `SELECT ? + ${k} AS v, ${name} AS n`, [x])
    return Number(row!.v)
  },
  selectV: async (c, table) => {
    const [row] = await execute<{ v: unknown }>(c, `SELECT v FROM ${table} WHERE id = ?`, [1])
    return row!.v
  },
  alterSql: (table) => `ALTER TABLE ${table} MODIFY v varchar(20)`,
  createSql: (table) => `CREATE TABLE ${table} (id int PRIMARY KEY, v int) ENGINE=InnoDB`,
}

/** What the fuzz saw. */
interface Fuzz {
  executions: number
  stale: Array<{ expected: number; got: number }>
  errors: string[]
}

/**
 * BORROWS borrows over `pool`: each runs 1–3 cached statements, drawing names from NAMES and a
 * fresh `k` per name for this borrower, and checks each result against the text it sent.
 */
async function fuzz<C>(pool: Pool<C>, preparer: Preparer<C>): Promise<Fuzz> {
  const out: Fuzz = { executions: 0, stale: [], errors: [] }
  let next = 0
  await Promise.all(
    Array.from({ length: WORKERS }, async () => {
      while (next < BORROWS) {
        next++
        const lease: Lease<C> = await pool.acquire()
        try {
          const mine = new Map<number, number>() // name → this borrower's k
          const runs = 1 + Math.floor(Math.random() * 3)
          for (let i = 0; i < runs; i++) {
            const name = Math.floor(Math.random() * NAMES)
            let k = mine.get(name)
            if (k === undefined) {
              k = Math.floor(Math.random() * 1_000_000)
              mine.set(name, k)
            }
            const x = Math.floor(Math.random() * 1_000)
            try {
              const got = await preparer.add(lease.connection, name, k, x)
              out.executions++
              if (got !== x + k) out.stale.push({ expected: x + k, got })
            } catch (error) {
              out.errors.push(String(error))
            }
          }
        } finally {
          lease.release()
        }
      }
    }),
  )
  return out
}

function scenarios<C>(preparer: Preparer<C>): void {
  const { target } = preparer

  it(`13. ${BORROWS} borrows with resetOnRelease 'session', the same statement names carrying new SQL on each borrower: 0 errors, 0 stale results`, async () => {
    const r = await rig(target)
    try {
      const pool = r.pool({ max: SIZE, resetOnRelease: 'session' })
      const resets: Record<string, number> = {}
      pool.on('reset', ({ mode }) => {
        resets[mode] = (resets[mode] ?? 0) + 1
      })
      const out = await fuzz(pool, preparer)
      checkPoolInvariants(pool as Pool<unknown>)
      report("13 prepared statements, resetOnRelease 'session'", target.label, {
        borrows: BORROWS,
        executions: out.executions,
        errors: out.errors.length,
        firstErrors: [...new Set(out.errors)].slice(0, 3),
        stale: out.stale.length,
        resets,
        invalidated: pool.stats().invalidated,
      })
      expect(out.errors).toEqual([])
      expect(out.stale).toEqual([])
      expect(out.executions).toBeGreaterThanOrEqual(BORROWS)
      expect(pool.stats().invalidated).toBe(0)
    } finally {
      await r.finish()
    }
  })

  // Without a session reset the statements outlive the borrower, by design of 'rollback'.
  // pg then refuses a name that comes back with another text ("Prepared statements must be
  // unique"): an error, never the old SQL. mysql2 keys its cache by the text: nothing to refuse.
  it("13. the same with resetOnRelease 'rollback': the statements outlive the borrower, yet no stale SQL ever runs", async () => {
    const r = await rig(target)
    try {
      const pool = r.pool({ max: SIZE })
      const out = await fuzz(pool, preparer)
      checkPoolInvariants(pool as Pool<unknown>)
      const kinds = [...new Set(out.errors.map((e) => e.replace(/'s13_\d+'/, "'s13_N'")))]
      report("13 prepared statements, resetOnRelease 'rollback'", target.label, {
        borrows: BORROWS,
        executions: out.executions,
        errors: out.errors.length,
        errorKinds: kinds,
        stale: out.stale.length,
      })
      expect(out.stale).toEqual([])
      if (target.name === 'postgres') {
        expect(kinds).toEqual([
          "Error: Prepared statements must be unique - 's13_N' was used for a different statement",
        ])
      } else {
        expect(out.errors).toEqual([])
      }
    } finally {
      await r.finish()
    }
  })

  if (target.name === 'postgres') {
    // DEALLOCATE ALL (or DISCARD ALL) sent by a borrower is SQL the driver does not read: pg
    // still believes the statement is prepared and skips the Parse.
    it("13. a borrower's own DEALLOCATE ALL: after a 'session' reset the next borrower is fine; with 'rollback', pg's cache is stale (26000)", async () => {
      const r = await rig(target)
      try {
        const seen: Record<string, string> = {}
        for (const mode of ['session', 'rollback'] as const) {
          const pool = r.pool({ max: 1, resetOnRelease: mode })
          await pool.use(async (c) => {
            await preparer.add(c, 0, 1, 1)
            await target.query(c, 'DEALLOCATE ALL')
          })
          seen[mode] = await pool
            .use((c) => preparer.add(c, 0, 1, 1))
            .then(
              (v) => `ok ${v}`,
              (e: { code?: string; message?: string }) => `error ${e.code} ${e.message}`,
            )
        }
        report("13 a borrower's DEALLOCATE ALL", target.label, seen)
        expect(seen.session).toBe('ok 2')
        expect(seen.rollback).toBe('error 26000 prepared statement "s13_0" does not exist')
      } finally {
        await r.finish()
      }
    })
  }

  it('13. ALTER TABLE changes a prepared result type: 0 errors after a session reset; without one, the server refuses (never the stale plan)', async () => {
    const r = await rig(target)
    const table = `faults_s13_${r.tag}`.slice(0, 60)
    await r.admin.exec(preparer.createSql(table))
    await r.admin.exec(`INSERT INTO ${table} VALUES (1, 1)`)
    try {
      const outcomes: Record<string, { before: unknown[]; after: string[] }> = {}
      const pools = {
        session: r.pool({ max: SIZE, resetOnRelease: 'session' }),
        rollback: r.pool({ max: SIZE }),
      }
      // Prepare the statement on every connection of both pools.
      for (const [mode, pool] of Object.entries(pools)) {
        const leases = await Promise.all(Array.from({ length: SIZE }, () => pool.acquire()))
        const before = await Promise.all(leases.map((l) => preparer.selectV(l.connection, table)))
        for (const lease of leases) lease.release()
        outcomes[mode] = { before, after: [] }
      }
      await r.admin.exec(preparer.alterSql(table))
      for (const [mode, pool] of Object.entries(pools)) {
        const leases = await Promise.all(Array.from({ length: SIZE }, () => pool.acquire()))
        for (const lease of leases) {
          try {
            const v = await preparer.selectV(lease.connection, table)
            outcomes[mode]!.after.push(`${typeof v} ${String(v)}`)
          } catch (error) {
            const e = error as { code?: string }
            outcomes[mode]!.after.push(`error ${e.code ?? ''} ${String(error)}`)
          }
          lease.release()
        }
      }
      report('13 ALTER TABLE', target.label, outcomes)
      for (const mode of ['session', 'rollback']) {
        expect(outcomes[mode]!.before).toEqual(Array(SIZE).fill(1))
      }
      // After a session reset: re-prepared, the new type.
      expect(outcomes.session!.after).toEqual(Array(SIZE).fill('string 1'))
      if (target.name === 'postgres') {
        // The server refuses to run a cached plan whose result type changed (0A000); pg does
        // not re-prepare. An error, never the old result.
        expect(outcomes.rollback!.after).toEqual(
          Array(SIZE).fill('error 0A000 error: cached plan must not change result type'),
        )
      } else {
        // MariaDB re-prepares by itself, and mysql2 reads the new column definitions.
        expect(outcomes.rollback!.after).toEqual(Array(SIZE).fill('string 1'))
      }
    } finally {
      await r.admin.exec(`DROP TABLE IF EXISTS ${table}`).catch(() => {})
      await r.finish()
    }
  })
}

describeOnServer(pgStatus, 'faults: prepared statements on PostgreSQL', () => scenarios(pgPreparer))
describeOnServer(myStatus, 'faults: prepared statements on MariaDB', () => scenarios(myPreparer))

// SQLite: the application holds the prepared statements (better-sqlite3's Statement objects), per
// connection; SQLite re-prepares one whose schema changed (SQLITE_SCHEMA) from its text.

describeOnServer({ ...pgStatus, up: true }, 'faults: prepared statements on SQLite', () => {
  it("13. statements kept per connection survive 'session' resets and a schema change made on another connection: 0 errors, the SQL as written", async () => {
    type Db = BetterSqlite3.Database
    const file = join(tmpdir(), `lifeguard-faults-prepared-${RUN_TAG}.db`)
    const pool = createPool<Db>({ dialect: sqlite(file), max: SIZE, resetOnRelease: 'session' })
    const statements = new WeakMap<Db, BetterSqlite3.Statement>()
    const select = (db: Db) => {
      let statement = statements.get(db)
      if (statement === undefined) {
        statement = db.prepare('SELECT v FROM t WHERE id = ?')
        statements.set(db, statement)
      }
      return (statement.get(1) as { v: unknown }).v
    }
    try {
      await pool.use((db) =>
        db.exec('CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 1)'),
      )
      const all = async () => {
        const leases = await Promise.all(Array.from({ length: SIZE }, () => pool.acquire()))
        const values = leases.map((l) => select(l.connection))
        for (const lease of leases) lease.release()
        return values
      }
      const before = await all()
      // Another connection swaps the table for one whose v is text.
      const other = createPool<Db>({ dialect: sqlite(file), max: 1 })
      await other.use((db) =>
        db.exec(
          "BEGIN; CREATE TABLE t2 (id int PRIMARY KEY, v text); INSERT INTO t2 VALUES (1, 'one'); DROP TABLE t; ALTER TABLE t2 RENAME TO t; COMMIT",
        ),
      )
      await other.close()
      const after = await all()
      checkPoolInvariants(pool as Pool<unknown>)
      report('13 prepared statements', 'SQLite', { before, after })
      expect(before).toEqual(Array(SIZE).fill(1))
      expect(after).toEqual(Array(SIZE).fill('one'))
    } finally {
      await pool.close({ timeout: 1_000 })
      expect(pool.stats().total).toBe(0)
      for (const suffix of ['', '-wal', '-shm']) rmSync(file + suffix, { force: true })
    }
  })
})
