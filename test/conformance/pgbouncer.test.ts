import pg from 'pg'
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest'
import { postgres } from '../../src/dialects/postgres.js'
import {
  createPool,
  type Dialect,
  NamedStatementError,
  type Pool,
  type PoolOptions,
} from '../../src/index.js'
import { describeOnServer, probe } from '../support/servers.js'
import {
  behindPgbouncer,
  startPgbouncer,
  supportsPreparedStatements,
  type ThrowawayBouncer,
} from '../support/throwaway-pgbouncer.js'
import { recordEvents, uniqueName } from './targets.js'

const status = behindPgbouncer(await probe('postgres'))

/** The warnings a pool emitted, by code. */
function warningCodes(events: Array<{ event: string; payload: unknown }>): string[] {
  return events
    .filter((e) => e.event === 'warning')
    .map((e) => (e.payload as { code: string }).code)
}

describeOnServer(status, 'postgres dialect behind PgBouncer', () => {
  let transaction: ThrowawayBouncer
  let session: ThrowawayBouncer
  const pools: Pool<pg.Client>[] = []
  const clients: pg.Client[] = []

  function pool(options: PoolOptions<pg.Client>): Pool<pg.Client> {
    const p = createPool(options)
    pools.push(p)
    return p
  }

  async function rawClient(url: string): Promise<pg.Client> {
    const client = new pg.Client(url)
    client.on('error', () => {})
    clients.push(client)
    await client.connect()
    return client
  }

  beforeAll(async () => {
    ;[transaction, session] = await Promise.all([
      startPgbouncer(status.url, { poolMode: 'transaction', defaultPoolSize: 4 }),
      startPgbouncer(status.url, { poolMode: 'session', defaultPoolSize: 4 }),
    ])
  })

  afterEach(async () => {
    await Promise.all(pools.splice(0).map((p) => p.close({ timeout: 2_000 })))
    await Promise.all(clients.splice(0).map((c) => c.end().catch(() => {})))
  })

  afterAll(async () => {
    await Promise.all([transaction?.stop(), session?.stop()])
  })

  it("turns a 'session' reset into 'rollback' in transaction mode, with LIFEGUARD_RESET_BEHIND_POOLER", async () => {
    let setups = 0
    const p = pool({
      dialect: postgres(transaction.url, { pooler: { mode: 'transaction' } }),
      max: 1,
      resetOnRelease: 'session',
      onConnect: () => {
        setups++
      },
    })
    const events = recordEvents(p)
    const a = await p.use(async (c) => {
      await c.query('BEGIN')
      await c.query('SELECT 1')
      return c
    })
    const b = await p.use(async (c) => {
      // The transaction the first borrower left open was rolled back.
      expect(c.getTransactionStatus()).toBe('I')
      return c
    })
    expect(b).toBe(a)
    expect(warningCodes(events)).toEqual(['LIFEGUARD_RESET_BEHIND_POOLER'])
    const warning = events.find((e) => e.event === 'warning')!.payload as { message: string }
    expect(warning.message).toMatch(/resets with 'rollback' instead/)
    expect(p.options.resetOnRelease).toBe('rollback')
    expect(p.server?.pooler).toEqual({ mode: 'transaction', evidence: expect.any(String) })
    // No DISCARD ALL and no onConnect again: onConnect ran once, for the connect.
    expect(setups).toBe(1)
    const resets = events.filter((e) => e.event === 'reset')
    expect(resets.map((e) => (e.payload as { mode: string }).mode)).toEqual([
      'rollback',
      'rollback',
    ])
  })

  it('notices a pooler it was not told of, by its backend key, and warns of a session reset without changing it', async () => {
    const p = pool({ dialect: postgres(transaction.url), max: 1, resetOnRelease: 'session' })
    const events = recordEvents(p)
    await p.use((c) => c.query('SELECT 1'))
    expect(p.server?.pooler).toEqual({
      mode: undefined,
      evidence: expect.stringMatching(/backend key's pid -?\d+ is not the backend's, \d+/),
    })
    // Behind a pooler, the server's max_connections does not bound the pool's connections.
    expect(p.server?.maxConnections).toBeUndefined()
    expect(warningCodes(events)).toEqual(['LIFEGUARD_RESET_BEHIND_POOLER'])
    expect(p.options.resetOnRelease).toBe('session')
  })

  it('never pipelines behind a pooler it noticed or was told is in transaction mode, and does in session mode', async () => {
    /** The most statements pipelined at once during a burst of shared ones, after a first use. */
    async function peakOf(dialect: Dialect<pg.Client>): Promise<number> {
      const p = pool({ dialect, max: 2, maxPipeline: 50 })
      // The first connection reads the server (and notices a pooler) before it is lent.
      await p.use((c) => c.query('SELECT 1'))
      let peak = 0
      const values = await Promise.all(
        Array.from({ length: 120 }, (_, i) =>
          p
            .use((c) => c.query('SELECT $1::int AS n', [i]), { shared: true })
            .then((r) => {
              peak = Math.max(peak, p.stats().pipelined)
              return (r.rows[0] as { n: number }).n
            }),
        ),
      )
      expect(values).toEqual(Array.from({ length: 120 }, (_, i) => i))
      return peak
    }
    expect(await peakOf(postgres(transaction.url))).toBe(0)
    expect(await peakOf(postgres(transaction.url, { pooler: { mode: 'transaction' } }))).toBe(0)
    // pg 8.23 added pipeline mode; on an older pg (the oldest peer CI runs) nothing pipelines.
    const pgPipelines = Array.isArray(
      (new pg.Client() as unknown as { _sentQueryQueue?: unknown })._sentQueryQueue,
    )
    const inSession = await peakOf(postgres(session.url, { pooler: { mode: 'session' } }))
    if (pgPipelines) expect(inSession).toBeGreaterThan(0)
    else expect(inSession).toBe(0)
  })

  it('sees no pooler in front of PostgreSQL itself', async () => {
    const p = pool({ dialect: postgres(status.url), max: 1, resetOnRelease: 'session' })
    const events = recordEvents(p)
    await p.use((c) => c.query('SELECT 1'))
    expect(p.server?.pooler).toBeUndefined()
    expect(warningCodes(events)).toEqual([])
  })

  it("keeps the 'session' reset in session mode: DISCARD ALL clears what the borrower set", async () => {
    const p = pool({
      dialect: postgres(session.url, { pooler: { mode: 'session' } }),
      max: 1,
      resetOnRelease: 'session',
    })
    const events = recordEvents(p)
    const table = uniqueName('tmp')
    await p.use(async (c) => {
      await c.query("SET TIME ZONE 'Pacific/Chatham'")
      await c.query(`CREATE TEMP TABLE ${table} (a int)`)
    })
    await p.use(async (c) => {
      const { rows } = await c.query(
        `SELECT current_setting('TimeZone') AS tz, to_regclass('pg_temp.${table}') AS t`,
      )
      expect(rows[0].tz).not.toBe('Pacific/Chatham')
      expect(rows[0].t).toBeNull()
    })
    expect(warningCodes(events)).toEqual([])
    expect(p.options.resetOnRelease).toBe('session')
  })

  it('refuses named statements in transaction mode with NamedStatementError, in the promise and the callback form, and the connection stays usable', async () => {
    const p = pool({
      dialect: postgres(transaction.url, { pooler: { mode: 'transaction' } }),
      max: 1,
    })
    await p.use(async (c) => {
      const refused = await c.query({ name: 'q1', text: 'SELECT 1 AS v' }).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(refused).toBeInstanceOf(NamedStatementError)
      expect((refused as Error).message).toMatch(
        /named prepared statement "q1" refused: a pooler in transaction mode .* max_prepared_statements/,
      )
      const viaCallback = await new Promise<unknown>((resolve) => {
        c.query({ name: 'q2', text: 'SELECT 1 AS v' }, (error: unknown) => resolve(error))
      })
      expect(viaCallback).toBeInstanceOf(NamedStatementError)
      expect((await c.query('SELECT 2 AS v')).rows).toEqual([{ v: 2 }])
      expect((await c.query({ text: 'SELECT $1::int AS v', values: [3] })).rows).toEqual([{ v: 3 }])
    })
  })

  it('named statements through this PgBouncer in transaction mode: they work from 1.21 with max_prepared_statements, and before it fail on the next server connection, as the refusal says', async () => {
    const carried = supportsPreparedStatements(transaction.version)
    const bouncer = carried
      ? await startPgbouncer(status.url, { poolMode: 'transaction', maxPreparedStatements: 100 })
      : transaction
    try {
      const p = pool({
        dialect: postgres(bouncer.url, {
          pooler: { mode: 'transaction', preparedStatements: true },
        }),
        max: 1,
      })
      const other = await rawClient(bouncer.url)
      await p.use(async (c) => {
        expect((await c.query({ name: 'q1', text: 'SELECT 1 AS v' })).rows).toEqual([{ v: 1 }])
        // Another client holds, in a transaction, the server connection q1 was prepared on
        // (PgBouncer lends its last used idle server first), so the next run of q1 goes out on
        // a new server connection.
        await other.query('BEGIN')
        await other.query('SELECT 1')
        const again = c.query({ name: 'q1', text: 'SELECT 1 AS v' })
        if (carried) expect((await again).rows).toEqual([{ v: 1 }])
        else await expect(again).rejects.toMatchObject({ code: '26000' })
        await other.query('COMMIT')
      })
    } finally {
      if (bouncer !== transaction) await bouncer.stop()
    }
  })

  it("answers a 'session' reset in transaction mode itself as a 'rollback' one, before the pool has read the server", async () => {
    const told = postgres(transaction.url, { pooler: { mode: 'transaction' } })
    const untold = postgres(transaction.url)
    for (const [dialect, discards] of [
      [told, false],
      [untold, true],
    ] as const) {
      const client = await dialect.connect(AbortSignal.timeout(5_000))
      try {
        client.on('notice', () => {})
        const pending = dialect.reset!(client, 'session')
        // Told: an idle connection, nothing to roll back, answered at once; untold: DISCARD ALL,
        // after which the dialect drops the borrower's notice listeners.
        expect(pending === undefined).toBe(!discards)
        await pending
        expect(client.listenerCount('notice')).toBe(discards ? 0 : 1)
      } finally {
        await dialect.close(client)
      }
    }
  })

  it('rejects a bad pooler option at the call, naming it', () => {
    expect(() => postgres(transaction.url, { pooler: { mode: 'statement' as never } })).toThrow(
      /Invalid option pooler.mode: "statement"; expected 'transaction' or 'session'/,
    )
    expect(() =>
      postgres(transaction.url, { pooler: { mode: 'transaction', prepared: true } as never }),
    ).toThrow(/Unknown option pooler.prepared: true; pooler takes only mode and preparedStatements/)
    expect(() =>
      postgres(transaction.url, {
        pooler: { mode: 'transaction', preparedStatements: 'yes' as never },
      }),
    ).toThrow(/Invalid option pooler.preparedStatements: "yes"; expected true or false/)
  })
})
