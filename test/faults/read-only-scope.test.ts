import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { postgres } from '../../src/dialects/postgres.js'
import { createPool } from '../../src/index.js'
import { trackProcessErrors } from '../support/process-errors.js'
import { startThrowawayPostgres } from '../support/throwaway-postgres.js'
import type { ThrowawayServer } from '../support/throwaway-server.js'

// Issue 17, demoted writers: PostgreSQL 14+ answers 25006 both when the server was made
// read-only and when the session opened an explicit read-only transaction. The dialect tells
// them apart at the ReadyForQuery after the error: a reload that made the server read-only is
// reported (ParameterStatus default_transaction_read_only = on) between the ErrorResponse and
// that ReadyForQuery. This file checks that order on a server of its own (ALTER SYSTEM and a
// reload, which the shared server must never get), and that the pool then retires the older
// connections; an explicit read-only transaction on the same server retires only its own.

describe('a PostgreSQL server made read-only by a reload', () => {
  let server: ThrowawayServer
  let processErrors: ReturnType<typeof trackProcessErrors>

  beforeAll(async () => {
    processErrors = trackProcessErrors()
    server = await startThrowawayPostgres()
    await server.sql('CREATE TABLE ro_scope (id int)')
  }, 120_000)
  afterAll(async () => {
    processErrors.stop()
    await server?.remove()
  })

  /** Runs `write` until the server refuses it (25006): at most 100 times, 20 ms apart. */
  async function refusedSoon(write: () => Promise<unknown>): Promise<void> {
    for (let i = 0; i < 100; i++) {
      const error = await write().then(
        () => undefined,
        (e: unknown) => e,
      )
      if (error !== undefined) {
        expect(error).toMatchObject({ code: '25006' })
        return
      }
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    throw new Error('the server never refused the write after the reload')
  }

  async function readOnly(on: boolean): Promise<void> {
    await server.sql(
      on
        ? 'ALTER SYSTEM SET default_transaction_read_only = on'
        : 'ALTER SYSTEM RESET default_transaction_read_only',
    )
    await server.sql('SELECT pg_reload_conf()')
  }

  it('reports default_transaction_read_only = on after the ErrorResponse and before the ReadyForQuery', async () => {
    const client = new pg.Client({ connectionString: server.url })
    client.on('error', () => {})
    await client.connect()
    try {
      await client.query('SELECT 1')
      const seen: string[] = []
      const wire = (client as unknown as { connection: import('node:events').EventEmitter })
        .connection
      wire.on('errorMessage', (m: { code?: string }) => seen.push(`error ${m.code}`))
      wire.on('parameterStatus', (m: { parameterName: string; parameterValue: string }) =>
        seen.push(`${m.parameterName}=${m.parameterValue}`),
      )
      wire.on('readyForQuery', () => seen.push('ready'))
      await readOnly(true)
      // Each backend rereads the configuration once signalled: until then the insert succeeds.
      await refusedSoon(async () => {
        seen.length = 0
        await client.query('INSERT INTO ro_scope VALUES (1)')
      })
      // PostgreSQL flushes the ErrorResponse on its own: the caller may hold the error before
      // the rest arrives. The next query's answer comes after it.
      await client.query('SELECT 1').catch(() => {})
      expect(seen.slice(0, 3)).toEqual(['error 25006', 'default_transaction_read_only=on', 'ready'])
    } finally {
      await readOnly(false)
      await client.end()
    }
  }, 30_000)

  it('the pool retires the connections older than the refusal; an explicit read-only transaction retires only its own', async () => {
    const pool = createPool<pg.Client>({ dialect: postgres(server.url), max: 3 })
    try {
      const reasons: string[] = []
      pool.on('invalidate', (e) => reasons.push(e.reason))
      const warm = async () => {
        const leases = await Promise.all([pool.acquire(), pool.acquire(), pool.acquire()])
        const pids = await Promise.all(
          leases.map(
            async (l) => (await l.connection.query('SELECT pg_backend_pid() AS p')).rows[0].p,
          ),
        )
        for (const lease of leases) lease.release()
        return pids as number[]
      }
      const before = await warm()
      // On a writable server: the session's own read-only transaction.
      await expect(
        pool.use(async (c) => {
          await c.query('BEGIN READ ONLY')
          await c.query('INSERT INTO ro_scope VALUES (2)')
        }),
      ).rejects.toMatchObject({ code: '25006' })
      expect(reasons).toEqual(['read-only'])
      const afterSession = await warm()
      expect(afterSession.filter((p) => before.includes(p))).toHaveLength(2)
      // Made read-only by a reload: the server's refusal.
      await readOnly(true)
      await refusedSoon(() => pool.use((c) => c.query('INSERT INTO ro_scope VALUES (3)')))
      await readOnly(false)
      const afterServer = await warm()
      expect(afterServer.filter((p) => afterSession.includes(p))).toEqual([])
      expect(reasons.filter((r) => r === 'stale')).toHaveLength(2)
      expect(processErrors.errors).toEqual([])
    } finally {
      await pool.destroy()
      await readOnly(false)
    }
  }, 30_000)

  it("a server that stays read-only (targetSessionAttrs 'any'): the older connections are flushed once per growing window, not at each refusal", async () => {
    const pool = createPool<pg.Client>({ dialect: postgres(server.url), max: 10 })
    try {
      let flushes = 0
      let lastStaleAt = Number.NEGATIVE_INFINITY
      pool.on('invalidate', (e) => {
        // The stale ones of one flush are retired together, as they come back or are met idle.
        if (e.reason !== 'stale') return
        const now = performance.now()
        if (now - lastStaleAt > 20) flushes++
        lastStaleAt = now
      })
      await Promise.all(Array.from({ length: 10 }, () => pool.use((c) => c.query('SELECT 1'))))
      await readOnly(true)
      await refusedSoon(() => pool.use((c) => c.query('INSERT INTO ro_scope VALUES (5)')))
      const created = pool.stats().created
      let refusals = 0
      let reads = 0
      const until = performance.now() + 2_000
      // Two writers, refused each time, and eight readers, served by the same read-only server.
      const worker = async (write: boolean) => {
        while (performance.now() < until) {
          if (!write) {
            await pool.use((c) => c.query('SELECT 1'))
            reads++
            continue
          }
          await pool
            .use((c) => c.query('INSERT INTO ro_scope VALUES (6)'))
            .catch((e: unknown) => {
              if ((e as { code?: unknown }).code !== '25006') throw e
              refusals++
            })
        }
      }
      await Promise.all(Array.from({ length: 10 }, (_, i) => worker(i < 2)))
      const opened = pool.stats().created - created
      console.log(
        `read-only for 2 s, 2 writers and 8 readers: ${refusals} refusals, ${reads} reads, ${opened} connections opened, ${flushes} flushes`,
      )
      expect(refusals).toBeGreaterThan(20)
      // Each refused connection goes (alone); the readers' connections are flushed once per
      // window of 25 ms, 50 ms, … (8 fit in 2 s), not at each refusal.
      expect(flushes).toBeLessThanOrEqual(10)
      expect(opened).toBeLessThan(refusals + 10 * 10)
    } finally {
      await readOnly(false)
      await pool.destroy()
    }
  }, 30_000)
})
