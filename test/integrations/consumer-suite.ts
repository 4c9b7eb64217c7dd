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

/** The lifeguard bounds every consumer test uses: the server must never see more than their sum. */
export const MAX = 3
export const OVERFLOW = 2

/**
 * What a consumer test drives, in the consumer's own API, on a table `(id, name unique)`; the
 * shared cases are written once against it.
 */
export interface Subject {
  insert(name: string): Promise<unknown>
  names(): Promise<string[]>
  rename(from: string, to: string): Promise<unknown>
  remove(name: string): Promise<unknown>
  /** Runs `body` in one of the consumer's transactions, handing it an `insert` bound to it. */
  transaction(body: (insert: (name: string) => Promise<unknown>) => Promise<void>): Promise<void>
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

    extra?.(get)
  })
}
