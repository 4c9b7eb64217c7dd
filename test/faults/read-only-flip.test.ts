import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPool as createMysql2PromisePool } from '../../src/compat/mysql2-promise.js'
import { Pool as PgPool } from '../../src/compat/pg.js'
import { mysql } from '../../src/dialects/mysql.js'
import { postgres } from '../../src/dialects/postgres.js'
import { createPool } from '../../src/index.js'
import { sleep } from '../conformance/targets.js'
import { trackProcessErrors } from '../support/process-errors.js'
import { startThrowawayMariaDb } from '../support/throwaway-mariadb.js'
import { startThrowawayPostgres } from '../support/throwaway-postgres.js'
import type { ThrowawayServer } from '../support/throwaway-server.js'

// Issue 17, demoted writers: a server of the test's own is flipped to read-only under load (as a
// writer demoted by a failover answers), then back, while 20 workers per pool write through the
// core's pool.use() and through a facade. Criteria: every write that fails, fails with the
// server's read-only error; no connection opened before the flip serves a write started after
// the pool's first read-only error; once writable again, writes succeed within 1 s; and nothing
// is restarted.

/** Workers per pool, and each pool's size: more workers than connections, so callers queue. */
const WORKERS = 20
const POOL_MAX = 10
/** How long the server stays read-only once every pool has seen a refusal. */
const READ_ONLY_MS = 1_000
/** The recovery bound the issue sets, and the one asserted here, with room for a loaded 2-core machine. */
const RECOVERY_MS = 1_000
const RECOVERY_ASSERTED_MS = 2_500

/** One write as a worker saw it. */
interface Write {
  id: number
  startedAt: number
  endedAt: number
  error?: unknown
}

/** One writing pool: how it writes a row (recording its session id server-side), and how it ends. */
interface Writer {
  name: string
  write(id: number): Promise<unknown>
  end(): Promise<void>
}

/** What the test needs of a server kind. */
interface Kind {
  label: string
  start(): Promise<ThrowawayServer>
  /** Prepares the server (table, user) and returns the URL the writers use. */
  prepare(server: ThrowawayServer, table: string): Promise<string>
  writers(url: string, table: string): Writer[]
  /** The server-side ids of the writers' sessions open now. */
  sessions(server: ThrowawayServer): Promise<number[]>
  readOnly(server: ThrowawayServer, on: boolean): Promise<void>
  /** Whether an error is the server's read-only refusal, as the driver reports it (checked here, not by the dialect under test). */
  isReadOnly(error: unknown): boolean
}

const postgresKind: Kind = {
  label: 'PostgreSQL',
  start: () => startThrowawayPostgres(),
  async prepare(server, table) {
    await server.sql(`CREATE TABLE ${table} (id bigint PRIMARY KEY, conn int NOT NULL)`)
    return server.url
  },
  writers(url, table) {
    const sql = `INSERT INTO ${table} VALUES ($1, pg_backend_pid())`
    const core = createPool({ dialect: postgres(url), max: POOL_MAX, name: 'core' })
    const rw = createPool({
      dialect: postgres(url),
      max: POOL_MAX,
      targetSessionAttrs: 'read-write',
    })
    const facade = new PgPool({ connectionString: url, max: POOL_MAX })
    return [
      {
        name: 'pool.use()',
        write: (id) => core.use((c) => c.query(sql, [id])),
        end: () => core.close(),
      },
      { name: 'lifeguard/pg', write: (id) => facade.query(sql, [id]), end: () => facade.end() },
      {
        name: "pool.use(), 'read-write'",
        write: (id) => rw.use((c) => c.query(sql, [id])),
        end: () => rw.close(),
      },
    ]
  },
  async sessions(server) {
    const rows = await server.sql<{ id: number }>(
      "SELECT pid AS id FROM pg_stat_activity WHERE datname = 'test' AND pid <> pg_backend_pid()",
    )
    return rows.map((r) => Number(r.id))
  },
  async readOnly(server, on) {
    await server.sql(
      on
        ? 'ALTER SYSTEM SET default_transaction_read_only = on'
        : 'ALTER SYSTEM RESET default_transaction_read_only',
    )
    await server.sql('SELECT pg_reload_conf()')
  },
  isReadOnly: (error) => (error as { code?: unknown }).code === '25006',
}

const mariadbKind: Kind = {
  label: 'MariaDB',
  start: () => startThrowawayMariaDb(),
  async prepare(server, table) {
    await server.sql(`CREATE TABLE ${table} (id bigint PRIMARY KEY, conn bigint NOT NULL)`)
    // A writer without SUPER (or READ_ONLY ADMIN): read_only applies to it.
    await server.sql("CREATE USER 'writer'@'%'")
    await server.sql("GRANT SELECT, INSERT ON test.* TO 'writer'@'%'")
    return `mysql://writer@127.0.0.1:${server.port}/test`
  },
  writers(url, table) {
    const sql = `INSERT INTO ${table} VALUES (?, CONNECTION_ID())`
    const core = createPool({ dialect: mysql(url), max: POOL_MAX, name: 'core' })
    const rw = createPool({ dialect: mysql(url), max: POOL_MAX, targetSessionAttrs: 'read-write' })
    const facade = createMysql2PromisePool({ uri: url, connectionLimit: POOL_MAX })
    return [
      {
        name: 'pool.use()',
        write: (id) => core.use((c) => c.query(sql, [id])),
        end: () => core.close(),
      },
      {
        name: 'lifeguard/mysql2/promise',
        write: (id) => facade.query(sql, [id]),
        end: () => facade.end(),
      },
      {
        name: "pool.use(), 'read-write'",
        write: (id) => rw.use((c) => c.query(sql, [id])),
        end: () => rw.close(),
      },
    ]
  },
  async sessions(server) {
    const rows = await server.sql<{ id: number }>(
      "SELECT ID AS id FROM information_schema.PROCESSLIST WHERE USER = 'writer'",
    )
    return rows.map((r) => Number(r.id))
  },
  async readOnly(server, on) {
    await server.sql(`SET GLOBAL read_only = ${on ? 1 : 0}`)
  },
  isReadOnly: (error) => [1290, 1792, 1836].includes((error as { errno?: number }).errno ?? 0),
}

/**
 * Whether a pool with `targetSessionAttrs: 'read-write'` failed the caller because every connect
 * met the read-only server: `UnavailableError` (after `failFastAfter`) or `AcquireTimeoutError`,
 * whose chain of causes ends in `WrongRoleError`. The typed error of a pool that would rather
 * wait for a writer than lend a read-only connection.
 */
function refusedRole(error: unknown): boolean {
  let current = error as { code?: unknown; cause?: unknown } | undefined
  for (let depth = 0; depth < 4 && current !== undefined && current !== null; depth++) {
    if (current.code === 'LIFEGUARD_WRONG_ROLE') return true
    current = current.cause as typeof current
  }
  return false
}

describe.each([postgresKind, mariadbKind])(
  'a $label writer flipped to read-only under load, then back',
  (kind) => {
    let server: ThrowawayServer
    let processErrors: ReturnType<typeof trackProcessErrors>
    beforeAll(async () => {
      processErrors = trackProcessErrors()
      server = await kind.start()
    }, 60_000)
    afterAll(async () => {
      processErrors.stop()
      await server?.remove()
    })

    it('every failed write is a read-only error, no older connection writes after the first, writes resume within 1 s', async () => {
      const table = `flip_${process.pid}`
      const url = await kind.prepare(server, table)
      const pid = server.pid
      const writers = kind.writers(url, table)
      const writes = new Map<string, Write[]>(writers.map((w) => [w.name, []]))
      let nextId = 1
      let stop = false
      const workers = writers.flatMap((writer) =>
        Array.from({ length: WORKERS }, async () => {
          const log = writes.get(writer.name)!
          while (!stop) {
            const write: Write = { id: nextId++, startedAt: performance.now(), endedAt: 0 }
            try {
              await writer.write(write.id)
            } catch (error) {
              write.error = error
            }
            write.endedAt = performance.now()
            log.push(write)
            await sleep(5)
          }
        }),
      )
      // A refusal after `since`: a pool that waits for a writer ('read-write') may have no caller
      // who starts a write after the flip and fails, only those in flight at the flip.
      const failedSince = (name: string, since: number) =>
        writes.get(name)!.filter((w) => w.error !== undefined && w.endedAt >= since)

      await sleep(500)
      const before = new Set(await kind.sessions(server))
      const flippedAt = performance.now()
      await kind.readOnly(server, true)
      const flipMs = performance.now() - flippedAt
      // Every pool meets the read-only server, then it stays so a while longer.
      const deadline = performance.now() + 10_000
      while (writers.some((w) => failedSince(w.name, flippedAt).length === 0)) {
        if (performance.now() > deadline) throw new Error('a pool never met the read-only server')
        await sleep(10)
      }
      await sleep(READ_ONLY_MS)
      await kind.readOnly(server, false)
      const writableAt = performance.now()
      await sleep(2_000 + RECOVERY_ASSERTED_MS)
      stop = true
      await Promise.all(workers)
      await Promise.all(writers.map((w) => w.end()))

      const rows = await server.sql<{ id: number; conn: number }>(`SELECT id, conn FROM ${table}`)
      const connOf = new Map(rows.map((r) => [Number(r.id), Number(r.conn)]))
      const figures: Record<string, unknown> = {}
      const checks: Array<() => void> = []
      for (const writer of writers) {
        const log = writes.get(writer.name)!
        const failed = log.filter((w) => w.error !== undefined)
        const firstRefusal = Math.min(...failed.map((w) => w.endedAt))
        const firstSuccess = log.find((w) => w.error === undefined && w.endedAt > writableAt)
        const recoveryMs = (firstSuccess?.endedAt ?? Number.NaN) - writableAt
        const lastFailure = Math.max(...failed.map((w) => w.endedAt)) - writableAt
        figures[writer.name] = {
          writes: log.length,
          failed: failed.length,
          codes: [...new Set(failed.map((w) => String((w.error as { code?: unknown }).code)))],
          recoveryMs: Math.round(recoveryMs),
          lastFailureAfterWritableMs: Math.round(lastFailure),
          readOnlyWindowMs: Math.round(writableAt - flippedAt),
          flipMs: Math.round(flipMs),
        }
        checks.push(() => {
          // 1. Every write that fails, fails with the server's read-only error, as the driver reports it.
          const others = failed.filter((w) => !kind.isReadOnly(w.error) && !refusedRole(w.error))
          expect(
            others.slice(0, 5).map((w) => String(w.error)),
            writer.name,
          ).toEqual([])
          expect(failed.length, writer.name).toBeGreaterThan(0)
          // Every acknowledged write is in the table, and no failed one is.
          const lost = log.filter((w) => connOf.has(w.id) !== (w.error === undefined))
          expect(
            lost.map((w) => w.id),
            writer.name,
          ).toEqual([])
          // 2. No session from before the flip served a write started after the pool's first refusal.
          const stale = log.filter(
            (w) =>
              w.error === undefined && w.startedAt > firstRefusal && before.has(connOf.get(w.id)!),
          )
          expect(
            stale.slice(0, 5).map((w) => connOf.get(w.id)),
            writer.name,
          ).toEqual([])
          // 3. Once writable again, writes succeed within 1 s (and none fails after that).
          expect(firstSuccess, writer.name).toBeDefined()
          expect(recoveryMs, writer.name).toBeLessThan(RECOVERY_ASSERTED_MS)
          expect(lastFailure, writer.name).toBeLessThan(RECOVERY_ASSERTED_MS)
        })
      }
      console.log(
        `read-only flip on ${kind.label}: ${JSON.stringify(figures)} (target ${RECOVERY_MS} ms)`,
      )
      for (const check of checks) check()
      // Nobody restarted anything.
      expect(server.pid).toBe(pid)
      expect(processErrors.errors).toEqual([])
    }, 60_000)
  },
)
