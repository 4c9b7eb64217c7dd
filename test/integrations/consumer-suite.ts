import pg from 'pg'
import { afterAll, beforeAll, expect, it } from 'vitest'
import type { Pool as LifeguardPool } from '../../src/index.js'
import { describeOnServer, probe } from '../support/servers.js'
import {
  behindPgbouncer,
  startPgbouncer,
  type ThrowawayBouncer,
} from '../support/throwaway-pgbouncer.js'
import { SessionMonitor } from './session-monitor.js'
import { PG_URL, unique } from './support.js'

/**
 * `TEST_FORCE_PIPELINING=1` runs every consumer suite on a pool of 2 (`max` 1, `maxOverflow`
 * 1), so that the concurrent cases fill it and the `lifeguard/pg` pool's autocommit statements
 * pipeline: the whole suite must pass the same.
 */
export const FORCE_PIPELINING = process.env.TEST_FORCE_PIPELINING === '1'

/** The lifeguard bounds every consumer test uses: the server must never see more than their sum. */
export const MAX = FORCE_PIPELINING ? 1 : 3
export const OVERFLOW = FORCE_PIPELINING ? 1 : 2

/** Rows of a statement run raw inside a consumer's transaction. */
export type Rows = Array<Record<string, unknown>>

/**
 * What a consumer test drives, in the consumer's own API, on a table `(id, name unique)`; the
 * shared cases are written once against it.
 */
export interface Subject {
  insert(name: string): Promise<unknown>
  names(): Promise<string[]>
  rename(from: string, to: string): Promise<unknown>
  remove(name: string): Promise<unknown>
  /**
   * Runs `body` in one of the consumer's transactions, handing it an `insert` bound to it and, on
   * PostgreSQL, a raw statement bound to it (`sql`, parameterless).
   */
  transaction(
    body: (
      insert: (name: string) => Promise<unknown>,
      sql?: (text: string) => Promise<Rows>,
    ) => Promise<void>,
  ): Promise<void>
  /**
   * PostgreSQL only: the consumer's own autocommit path for a raw, parameterized
   * `SELECT $1::int AS n, txid_current_if_assigned() IS NULL AS alone`: a read in its own
   * implicit transaction has no transaction id, so `alone` is false when the statement ran inside
   * somebody's transaction that has one (the burst's transactions take one first thing).
   */
  echo?(n: number): Promise<{ n: number; alone: boolean }>
}

/** What a consumer's setup hands back. */
export interface Consumer {
  subject: Subject
  /** The lifeguard pool under the consumer, once it exists (some ORMs open it lazily). */
  lifeguard(): LifeguardPool<unknown> | undefined
  /** Shuts the consumer down (and the facade, if the test owns it). */
  end(): Promise<void>
  /**
   * How many connections the consumer itself may keep checked out while idle: 0 for a consumer
   * that borrows per operation; Sequelize keeps its own pool of clients, each holding one borrow.
   */
  idleLeases?: () => number
  /**
   * Whether the consumer's autocommit statements go through the `lifeguard/pg` pool's `query()`,
   * and so may pipeline when the pool is full; a consumer that checks out a client for each
   * statement (`pool.connect()`) never pipelines.
   */
  pipelines?: boolean
}

/** What a setup needs: the server kind, a tagged URL, a table name to create, and the bounds. */
export interface Context {
  kind: 'postgres' | 'mysql'
  /** Tagged: by application_name on PostgreSQL, by a database of this run's on MariaDB. */
  url: string
  /** The application_name (PostgreSQL) or database name (MariaDB) that tags the sessions. */
  tag: string
  table: string
  monitor: SessionMonitor
}

/**
 * Registers, for one consumer on one server, the cases every consumer must pass through
 * lifeguard: CRUD, a committed and a rolled-back transaction, an error inside a transaction after
 * which the pool is clean, and 200 concurrent operations under the `max + maxOverflow` bound as
 * the server counts it. `extra` adds the consumer's own cases. With `through: 'pgbouncer'` the
 * consumer's URL leads to a throwaway PgBouncer in transaction mode in front of the same server
 * (the bound still holds there: the pool's at most `max + maxOverflow` clients never hold more
 * server connections at once).
 */
export async function consumerSuite(
  kind: 'postgres' | 'mysql',
  name: string,
  setup: (context: Context) => Promise<Consumer>,
  extra?: (get: () => Consumer & Context) => void,
  options: { through?: 'pgbouncer' } = {},
): Promise<void> {
  const probed = await probe(kind)
  const status = options.through === 'pgbouncer' ? behindPgbouncer(probed) : probed
  describeOnServer(status, name, () => {
    let context: Context
    let consumer: Consumer
    let bouncer: ThrowawayBouncer | undefined
    const get = () => ({ ...context, ...consumer })

    beforeAll(async () => {
      const monitor = await SessionMonitor.open(kind, 'app')
      let url = monitor.url
      if (options.through === 'pgbouncer') {
        bouncer = await startPgbouncer(PG_URL, { poolMode: 'transaction' })
        const through = new URL(url)
        through.host = `127.0.0.1:${bouncer.port}`
        url = through.toString()
      }
      context = { kind, url, tag: monitor.tag, table: unique('t'), monitor }
      consumer = await setup(context)
    })

    afterAll(async () => {
      try {
        if (consumer !== undefined) await consumer.end()
        await bouncer?.stop()
      } finally {
        // Even when the consumer fails to shut down: no table or database outlives the run.
        if (context !== undefined) {
          if (kind === 'postgres') {
            const admin = new pg.Client(PG_URL)
            await admin.connect()
            await admin.query(`DROP TABLE IF EXISTS ${context.table}`)
            await admin.end()
          }
          await context.monitor.close() // on MariaDB this drops the run's database with the table
        }
      }
    })

    const idleLeases = () => consumer.idleLeases?.() ?? 0

    it('CRUD', async () => {
      const s = consumer.subject
      await s.insert('ada')
      expect(await s.names()).toEqual(['ada'])
      await s.rename('ada', 'grace')
      expect(await s.names()).toEqual(['grace'])
      await s.remove('grace')
      expect(await s.names()).toEqual([])
    })

    it('commits a transaction and rolls one back', async () => {
      const s = consumer.subject
      await s.transaction(async (insert) => {
        await insert('kept')
      })
      await expect(
        s.transaction(async (insert) => {
          await insert('dropped')
          throw new Error('roll back')
        }),
      ).rejects.toThrow('roll back')
      const names = await s.names()
      expect(names).toContain('kept')
      expect(names).not.toContain('dropped')
    })

    it('an error inside a transaction leaves the connection clean', async () => {
      const s = consumer.subject
      await expect(
        s.transaction(async (insert) => {
          await insert('dup')
          await insert('dup') // unique violation: the database itself fails the statement
        }),
      ).rejects.toThrow()
      // Several operations at once, so every pooled connection answers, outside any transaction.
      const results = await Promise.all(Array.from({ length: MAX }, () => s.names()))
      for (const names of results) expect(names).not.toContain('dup')
      expect(await context.monitor.inTransaction()).toBe(0)
      const pool = consumer.lifeguard()
      // No borrow leaks: only the connections the consumer keeps by design may stay lent (a
      // Sequelize connection being evicted may already have given its borrow back).
      if (pool !== undefined) expect(pool.stats().leased).toBeLessThanOrEqual(idleLeases())
      await s.insert('after')
      expect(await s.names()).toContain('after')
    })

    it(`200 concurrent operations open at most max + maxOverflow (${MAX + OVERFLOW}) server sessions`, async () => {
      const s = consumer.subject
      const peak = await context.monitor.peakDuring(() =>
        Promise.all(
          Array.from({ length: 200 }, (_, i) =>
            i % 10 === 0
              ? s.transaction(async (insert) => {
                  await insert(`n${i}`)
                })
              : s.names(),
          ),
        ),
      )
      expect(peak).toBeGreaterThan(0)
      expect(peak).toBeLessThanOrEqual(MAX + OVERFLOW)
      const pool = consumer.lifeguard()
      expect(pool).toBeDefined()
      expect(pool!.stats().total).toBeLessThanOrEqual(MAX + OVERFLOW)
      expect((await s.names()).filter((n) => /^n\d+$/.test(n))).toHaveLength(20)
      expect(await context.monitor.inTransaction()).toBe(0)
    })

    if (kind === 'postgres') {
      const through = options.through === 'pgbouncer'
      it(`a burst past the full pool: ${through ? 'nothing pipelines behind PgBouncer in transaction mode' : 'autocommit statements pipeline where the consumer uses pool.query'}, each caller gets its own result, and transactions stay whole`, async () => {
        const s = consumer.subject
        const pool = consumer.lifeguard()
        expect(s.echo, 'the consumer suite needs echo() on PostgreSQL').toBeDefined()
        const echo = s.echo!.bind(s)
        const probe =
          'SELECT txid_current()::text AS tx, pg_backend_pid() AS pid, now() <> statement_timestamp() AS intx'
        interface Seen {
          i: number
          before: Rows
          after: Rows
        }
        const seen: Seen[] = []
        const statements: Array<{ i: number; result: { n: number; alone: boolean } }> = []
        let peak = 0
        const sampler = setInterval(() => {
          const current = consumer.lifeguard()?.stats().pipelined ?? 0
          peak = Math.max(peak, current)
        }, 1)
        try {
          const outcomes = await Promise.allSettled(
            Array.from({ length: 300 }, async (_, i) => {
              if (i % 25 !== 0) {
                statements.push({ i, result: await echo(i) })
                return
              }
              await s.transaction(async (insert, raw) => {
                const sql = raw!
                const before = await sql(probe)
                await insert(`p${i}`)
                const after = await sql(probe)
                seen.push({ i, before, after })
                if (i % 50 === 0) throw new Error(`roll back p${i}`)
              })
            }),
          )
          const failed = outcomes.flatMap((o, i) =>
            o.status === 'rejected' && !(i % 50 === 0 && /roll back/.test(String(o.reason)))
              ? [String(o.reason)]
              : [],
          )
          expect(failed).toEqual([])
        } finally {
          clearInterval(sampler)
        }
        // Each caller got its own answer, from a statement of its own implicit transaction.
        expect(statements).toHaveLength(300 - 12)
        for (const { i, result } of statements) expect(result).toEqual({ n: i, alone: true })
        // Each transaction ran both probes in one transaction on one backend, nobody else's
        // statement in between changing that; and no two transactions had the same id.
        expect(seen).toHaveLength(12)
        for (const { before, after } of seen) {
          expect(before[0]!.tx).toBe(after[0]!.tx)
          expect(Number(before[0]!.pid)).toBe(Number(after[0]!.pid))
          expect(before[0]!.intx).toBe(true)
          expect(after[0]!.intx).toBe(true)
        }
        expect(new Set(seen.map((t) => t.before[0]!.tx)).size).toBe(12)
        const names = await s.names()
        for (let i = 0; i < 300; i += 25) {
          if (i % 50 === 0) expect(names).not.toContain(`p${i}`)
          else expect(names).toContain(`p${i}`)
        }
        expect(pool).toBeDefined()
        const stats = consumer.lifeguard()!.stats()
        if (consumer.pipelines === true && !through) expect(peak).toBeGreaterThan(0)
        else expect(peak).toBe(0)
        expect(stats.pipelined).toBe(0)
        expect(stats.leased).toBeLessThanOrEqual(idleLeases())
        expect(stats.acquired).toBe(stats.released + stats.revoked + stats.leased + stats.pipelined)
        expect(stats.total).toBeLessThanOrEqual(MAX + OVERFLOW)
        expect(await context.monitor.inTransaction()).toBe(0)
        console.log(
          `[pipelining] ${name}: peak pipelined ${peak}, acquired ${stats.acquired}, total ${stats.total}`,
        )
      })
    }

    extra?.(get)
  })
}
