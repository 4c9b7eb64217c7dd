import type pg from 'pg'
import { afterEach, expect, it } from 'vitest'
import { lifeguardOf, Pool } from '../../src/compat/pg.js'
import { describeOnServer, probe } from '../support/servers.js'
import { PG_URL, unique } from './support.js'

// Regressions of lifeguard/pg's pipelining that a review found, on the real server through the
// real driver: each test names what broke.

const status = await probe('postgres')

const pools: Pool[] = []

function open(config: Record<string, unknown>): Pool {
  const pool = new Pool({
    connectionString: PG_URL,
    application_name: unique('piperegr'),
    ...config,
  })
  pool.on('error', () => {})
  pools.push(pool)
  return pool
}

/** Each promise's outcome: its value, or its error's code (or message). */
function outcomes<T>(promises: Promise<T>[]): Promise<Array<T | string>> {
  return Promise.all(
    promises.map((p) =>
      p.then(
        (value) => value,
        (error: { code?: string; message?: string }) => error.code ?? error.message ?? '?',
      ),
    ),
  )
}

afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.end().catch(() => {})))
})

describeOnServer(status, 'lifeguard/pg pipelining regressions', () => {
  it('regression: a statement with the wrong number of parameters (08P01, an ERROR) tore down the whole pipeline and lost its own error', async () => {
    const pool = open({ max: 1, maxPipeline: 8 })
    await pool.query('SELECT 1')
    const results = await outcomes<number | string>(
      Array.from({ length: 6 }, (_, i) =>
        i === 1
          ? pool.query('SELECT 1 AS n', [1]).then(() => 'ran')
          : pool.query('SELECT $1::int AS n', [i]).then((r) => (r.rows[0] as { n: number }).n),
      ),
    )
    expect(results).toEqual([0, '08P01', 2, 3, 4, 5])
    const stats = lifeguardOf(pool).stats()
    // The connection lived on: nothing was closed, nothing revoked.
    expect(stats).toMatchObject({ closed: 0, revoked: 0, total: 1, pipelined: 0 })
  })

  it('regression: with maxUses a shared connection was destroyed while the pool lent it again, and callers got LIFEGUARD_LEASE_RELEASED', async () => {
    const pool = open({ max: 1, maxPipeline: 4, maxUses: 10 })
    const errors: string[] = []
    const backends = new Set<number>()
    let ok = 0
    let stop = false
    const worker = async () => {
      while (!stop) {
        try {
          const { rows } = await pool.query('SELECT pg_backend_pid() AS p')
          backends.add((rows[0] as { p: number }).p)
          ok++
        } catch (error) {
          errors.push((error as { code?: string }).code ?? String(error))
        }
      }
    }
    const workers = Array.from({ length: 8 }, worker)
    await new Promise((resolve) => setTimeout(resolve, 600))
    stop = true
    await Promise.all(workers)
    expect(errors).toEqual([])
    expect(ok).toBeGreaterThan(50)
    // Each connection retired after about maxUses statements (those in flight at the tenth end
    // on it too): many backends, each with few statements, none failing for it.
    expect(backends.size).toBeGreaterThan(ok / 40)
  })

  it('regression: a connect() wrapper taking the promise form got a shared client without release, and the pool stayed shared for good', async () => {
    const pool = open({ max: 1, maxPipeline: 8 })
    const connect = pool.connect.bind(pool) as () => Promise<pg.PoolClient>
    // A tracing wrapper as some write it: pg-pool's promise form, then the callback.
    ;(pool as unknown as { connect: unknown }).connect = (
      callback?: (error: unknown, client?: pg.PoolClient, done?: (e?: unknown) => void) => void,
    ) => {
      if (callback === undefined) return connect()
      connect().then(
        (client) => callback(undefined, client, (e?: unknown) => client.release(e as Error)),
        (error: unknown) => callback(error),
      )
      return undefined
    }
    const values = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        pool.query('SELECT $1::int AS n', [i]).then((r) => (r.rows[0] as { n: number }).n),
      ),
    )
    expect(values).toEqual([0, 1, 2, 3, 4, 5])
    expect(lifeguardOf(pool).stats()).toMatchObject({ leased: 0, pipelined: 0 })
    expect((await pool.query('SELECT 42 AS n')).rows).toEqual([{ n: 42 }])
  })
})
