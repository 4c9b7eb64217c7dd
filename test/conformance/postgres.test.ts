import { randomBytes } from 'node:crypto'
import { inspect } from 'node:util'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type PostgresServerInfo, postgres } from '../../src/dialects/postgres.js'
import { ConnectError, createPool, type Dialect } from '../../src/index.js'
import {
  type PasswordRejectingServer,
  passwordRejectingServer,
} from '../support/pg-password-stub.js'
import { describeOnServer, probe } from '../support/servers.js'
import { type Admin, postgresTarget, recordEvents, uniqueName, waitFor } from './targets.js'

const status = await probe('postgres')
const target = postgresTarget(status)

/** An error, or `undefined` when `promise` resolved. */
function failure(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (error: unknown) => error,
  )
}

describeOnServer(status, 'postgres dialect specifics', () => {
  let admin: Admin
  const table = uniqueName('pg')
  // The factory's type leaves the optional methods optional; this one has them all.
  const dialect = postgres(status.url) as Required<Dialect<pg.Client>>
  const open: pg.Client[] = []

  async function connect(tag?: string): Promise<pg.Client> {
    const client = await target.dialect(tag).connect(AbortSignal.timeout(5_000))
    open.push(client)
    return client
  }

  beforeAll(async () => {
    admin = await target.admin!()
    await admin.exec(`CREATE TABLE ${table} (id int PRIMARY KEY)`)
    await admin.exec(`INSERT INTO ${table} VALUES (1)`)
  })

  afterAll(async () => {
    await Promise.all(open.map((c) => dialect.close(c)))
    await admin.exec(`DROP TABLE IF EXISTS ${table}`)
    await admin.close()
  })

  describe('isDisconnect', () => {
    it('is false for errors that leave the session usable: syntax, unique violation, lock timeout, statement timeout', async () => {
      const a = await connect()
      const b = await connect()
      const syntax = await failure(a.query('SELEC 1'))
      const unique = await failure(a.query(`INSERT INTO ${table} VALUES (1)`))
      await a.query('BEGIN')
      await a.query(`SELECT * FROM ${table} WHERE id = 1 FOR UPDATE`)
      await b.query("SET lock_timeout = '50ms'")
      const lock = await failure(b.query(`UPDATE ${table} SET id = 1 WHERE id = 1`))
      await a.query('ROLLBACK')
      await b.query("SET statement_timeout = '50ms'")
      const statement = await failure(b.query('SELECT pg_sleep(1)'))
      expect([syntax, unique, lock, statement].map((e) => (e as { code: string }).code)).toEqual([
        '42601',
        '23505',
        '55P03',
        '57014',
      ])
      for (const error of [syntax, unique, lock, statement]) {
        expect(dialect.isDisconnect(error)).toBe(false)
      }
      // And the sessions are indeed still usable.
      expect((await b.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }])
    })

    it('is true for a query whose backend was terminated (57P01), and for the next query on that client', async () => {
      const tag = uniqueName('app')
      const client = await connect(tag)
      const pending = failure(client.query('SELECT pg_sleep(5)'))
      // Kill it mid-statement: wait until the server runs it.
      const watcher = await connect()
      await waitFor(async () => {
        const { rows } = await watcher.query(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' AND query LIKE 'SELECT pg_sleep%'",
          [tag],
        )
        return rows[0].n === 1
      })
      await admin.killAll(tag)
      const killed = await pending
      expect(killed).toMatchObject({ code: '57P01' })
      expect(dialect.isDisconnect(killed)).toBe(true)
      const next = await failure(client.query('SELECT 1'))
      expect(next).toBeInstanceOf(Error)
      expect(dialect.isDisconnect(next)).toBe(true)
    })

    it('is true for an idle session ended by idle_session_timeout (57P05), as watch() reports it', async () => {
      const client = await connect()
      const deaths: unknown[] = []
      dialect.watch(client, (error) => deaths.push(error))
      await client.query("SET idle_session_timeout = '200ms'")
      await waitFor(() => deaths.length > 0, 3_000)
      expect(deaths[0]).toMatchObject({ code: '57P05' })
      for (const death of deaths) {
        if (death !== undefined) expect(dialect.isDisconnect(death)).toBe(true)
      }
    })

    it('classifies SQLSTATEs, socket codes and pg messages it cannot provoke here', () => {
      const yes = [
        { code: '08000' },
        { code: '08003' },
        { code: '08006' },
        { code: '08P01' },
        { code: '57P01' },
        { code: '57P02' },
        { code: '57P03' },
        { code: '57P05' },
        { code: '25P03' },
        Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }),
        Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }),
        Object.assign(new Error('read ETIMEDOUT'), { code: 'ETIMEDOUT' }),
        new Error('Connection terminated unexpectedly'),
        new Error('Connection terminated'),
        new Error('Client has encountered a connection error and is not queryable'),
        new Error('wrapped by an ORM', { cause: { code: '57P01' } }),
      ]
      const no = [
        { code: '42601' },
        { code: '23505' },
        { code: '55P03' },
        { code: '57014' },
        { code: '40001' },
        { code: '40P01' },
        { code: '25P02' },
        new Error('syntax error'),
        null,
        undefined,
        'Connection terminated',
        42,
      ]
      for (const error of yes) expect(dialect.isDisconnect(error), inspect(error)).toBe(true)
      for (const error of no) expect(dialect.isDisconnect(error), inspect(error)).toBe(false)
    })
  })

  describe('reset', () => {
    /** The last statement the server saw from `client`'s backend. */
    async function lastStatement(client: pg.Client): Promise<string> {
      const pid = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number
      await client.query('SELECT 1 AS marker')
      const read = await connect()
      const { rows } = await read.query('SELECT query FROM pg_stat_activity WHERE pid = $1', [pid])
      return rows[0].query as string
    }

    it("sends nothing for 'rollback' when pg reports the connection idle", async () => {
      const client = await connect()
      expect(await lastStatement(client)).toBe('SELECT 1 AS marker')
      expect(client.getTransactionStatus()).toBe('I')
      expect(dialect.reset(client, 'rollback')).toBeUndefined()
      const read = await connect()
      const pid = (client as unknown as { processID: number }).processID
      const { rows } = await read.query('SELECT query FROM pg_stat_activity WHERE pid = $1', [pid])
      expect(rows[0].query).toBe('SELECT 1 AS marker')
    })

    it("rolls back for 'rollback' when pg reports a transaction (T) or a failed one (E)", async () => {
      const client = await connect()
      await client.query('BEGIN')
      expect(client.getTransactionStatus()).toBe('T')
      const open = dialect.reset(client, 'rollback')
      expect(open).toBeInstanceOf(Promise)
      await open
      expect(client.getTransactionStatus()).toBe('I')
      await client.query('BEGIN')
      await failure(client.query('SELECT 1/0'))
      // pg rejects on ErrorResponse, before the ReadyForQuery that carries the 'E' status.
      for (let i = 0; i < 100 && client.getTransactionStatus() !== 'E'; i++) {
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
      expect(client.getTransactionStatus()).toBe('E')
      await dialect.reset(client, 'rollback')
      expect(client.getTransactionStatus()).toBe('I')
    })

    it("rolls back a transaction before DISCARD ALL for 'session' (DISCARD ALL refuses to run in one)", async () => {
      const client = await connect()
      await client.query('BEGIN')
      await client.query('SET LOCAL search_path = pg_catalog')
      await dialect.reset(client, 'session')
      expect(client.getTransactionStatus()).toBe('I')
      expect(await lastStatement(client)).toBe('SELECT 1 AS marker')
    })
  })

  describe('a connection released while its query runs', () => {
    it("'close' (the default) closes it: a cancel its borrower sent must not reach the next one", async () => {
      const pool = createPool({ dialect: postgres(status.url), max: 1 })
      try {
        const lease = await pool.acquire()
        const pid = (lease.connection as unknown as { processID: number }).processID
        const running = failure(lease.connection.query('SELECT pg_sleep(0.3)'))
        lease.release()
        expect(await running).toBeInstanceOf(Error)
        const next = await pool.acquire()
        expect((next.connection as unknown as { processID: number }).processID).not.toBe(pid)
        next.release()
      } finally {
        await pool.close()
      }
    })

    it("'wait' lets the query finish, then resets the connection before lending it again", async () => {
      const pool = createPool({ dialect: postgres(status.url, { releasedBusy: 'wait' }), max: 1 })
      try {
        const lease = await pool.acquire()
        const client = lease.connection
        await client.query('BEGIN')
        const running = client.query('SELECT pg_sleep(0.2), 1 AS n')
        lease.release()
        expect((await running).rows[0].n).toBe(1)
        const next = await pool.acquire()
        // The same backend, and the transaction its last borrower left is rolled back.
        expect(next.connection).toBe(client)
        const status = (
          next.connection as unknown as { getTransactionStatus(): string }
        ).getTransactionStatus()
        expect(status).toBe('I')
        next.release()
      } finally {
        await pool.close()
      }
    })

    it("'wait' lets the query outlast validationTimeout, which bounds only the reset (the borrower's work is not the reset's)", async () => {
      const pool = createPool({
        dialect: postgres(status.url, { releasedBusy: 'wait' }),
        max: 1,
        validationTimeout: 200,
      })
      try {
        const lease = await pool.acquire()
        const client = lease.connection
        await client.query('BEGIN')
        const running = client.query('SELECT pg_sleep(0.8), 1 AS n')
        lease.release()
        // Waiting for the query: neither idle nor lent, and counted against max.
        await new Promise((resolve) => setTimeout(resolve, 400))
        expect(pool.stats()).toMatchObject({ total: 1, resetting: 1, idle: 0 })
        expect((await running).rows[0].n).toBe(1)
        const next = await pool.acquire()
        // The same backend, reset (the transaction rolled back) within validationTimeout after it.
        expect(next.connection).toBe(client)
        const status = (
          next.connection as unknown as { getTransactionStatus(): string }
        ).getTransactionStatus()
        expect(status).toBe('I')
        next.release()
      } finally {
        await pool.close()
      }
    })
  })

  describe('pipelining: callers that share a connection', () => {
    // pg 8.23 added pipeline mode; on an older pg (the oldest peer CI runs) nothing pipelines.
    const pgPipelines = Array.isArray(
      (new pg.Client() as unknown as { _sentQueryQueue?: unknown })._sentQueryQueue,
    )

    it('pipelines shared statements once the pool is full (on pg 8.23 or later), each with its own result or error, and turns pg back to one query at a time after', async () => {
      const p = createPool({ dialect: postgres(status.url), max: 2, maxPipeline: 50 })
      try {
        let peak = 0
        const outcomes = await Promise.all(
          Array.from({ length: 300 }, (_, i) =>
            p
              .use(
                (c) =>
                  c.query(
                    i % 50 === 49 ? 'SELECT 1 / 0' : 'SELECT $1::int AS n',
                    i % 50 === 49 ? [] : [i],
                  ),
                { shared: true },
              )
              .then(
                (result) => {
                  peak = Math.max(peak, p.stats().pipelined)
                  return (result.rows[0] as { n: number }).n
                },
                (error: { code?: string }) => error.code,
              ),
          ),
        )
        expect(outcomes).toEqual(
          Array.from({ length: 300 }, (_, i) => (i % 50 === 49 ? '22012' : i)),
        )
        if (pgPipelines) expect(peak).toBeGreaterThan(0)
        else expect(peak).toBe(0)
        const s = p.stats()
        expect(s).toMatchObject({ leased: 0, pipelined: 0, waiting: 0, total: 2 })
        expect(s.acquired).toBe(s.released + s.revoked)
        // Lent to one caller, a client runs one query at a time again (pg-cursor works on it).
        const modes = await Promise.all(
          [0, 1].map(() =>
            p.use(async (c) => {
              await new Promise((resolve) => setTimeout(resolve, 20))
              return (c as unknown as { pipeline?: boolean }).pipeline
            }),
          ),
        )
        // An older pg has no such setting, and the dialect never set one on it.
        expect(modes).toEqual(pgPipelines ? [false, false] : [undefined, undefined])
      } finally {
        await p.close()
      }
    })

    it('never pipelines with maxPipeline 1, the shared option then changing nothing', async () => {
      const p = createPool({ dialect: postgres(status.url), max: 2, maxPipeline: 1 })
      try {
        let peak = 0
        await Promise.all(
          Array.from({ length: 100 }, (_, i) =>
            p
              .use((c) => c.query('SELECT $1::int AS n', [i]), { shared: true })
              .then(() => {
                peak = Math.max(peak, p.stats().pipelined)
              }),
          ),
        )
        expect(peak).toBe(0)
      } finally {
        await p.close()
      }
    })
  })

  it('makes each connection with the Client class it is given, through its callbacks', async () => {
    const calls: string[] = []
    const Base = (await import('pg')).default.Client
    class Custom extends Base {}
    const connect = Custom.prototype.connect as (this: pg.Client, cb?: unknown) => unknown
    Custom.prototype.connect = function (this: pg.Client, callback?: unknown) {
      calls.push(typeof callback === 'function' ? 'connect(cb)' : 'connect()')
      return connect.call(this, callback)
    } as never
    const pool = createPool({ dialect: postgres(status.url, { Client: Custom }), max: 1 })
    try {
      const client = await pool.use(async (c) => {
        await c.query('SELECT 1')
        return c
      })
      expect(client).toBeInstanceOf(Custom)
      expect(calls).toEqual(['connect(cb)'])
    } finally {
      await pool.close()
    }
  })

  it('reads idle_session_timeout, idle_in_transaction_session_timeout, max_connections and the version', async () => {
    const client = await postgres({
      connectionString: status.url,
      idle_in_transaction_session_timeout: 7_000,
    }).connect(AbortSignal.timeout(5_000))
    open.push(client)
    await client.query("SET idle_session_timeout = '42s'")
    const info: PostgresServerInfo = await dialect.inspect(client, AbortSignal.timeout(1_000))
    expect(info).toEqual({
      version: expect.stringMatching(/^PostgreSQL \d+/),
      maxConnections: await admin.maxConnections(),
      idleCutoffMs: 42_000,
      idleCutoffSetting: 'idle_session_timeout',
      idleInTransactionTimeoutMs: 7_000,
    })
    await client.query('SET idle_session_timeout = 0')
    expect((await dialect.inspect(client, AbortSignal.timeout(1_000))).idleCutoffMs).toBeUndefined()
  })

  it('passes TLS options to pg: ssl against a server without TLS fails as pg says', async () => {
    const ssl = { rejectUnauthorized: true }
    const d = postgres({ connectionString: status.url, ssl })
    const error = await failure(d.connect(AbortSignal.timeout(5_000)))
    expect(String((error as Error).message)).toMatch(/does not support SSL/)
  })

  describe('a password that pg really sends (a local server asking for it in cleartext)', () => {
    const CANARY = `Canary${randomBytes(12).toString('hex')}`
    let stub: PasswordRejectingServer
    let port = 0

    beforeAll(async () => {
      stub = await passwordRejectingServer('u')
      port = stub.port
    })

    afterAll(() => stub.close())

    for (const form of ['config', 'url'] as const) {
      it(`keeps it out of the 28P01 failure (password in the ${form})`, async () => {
        const d =
          form === 'config'
            ? postgres({ host: '127.0.0.1', port, user: 'u', password: CANARY, database: 'd' })
            : postgres(`postgres://u:${CANARY}@127.0.0.1:${port}/d`)
        const pool = createPool({ dialect: d, max: 1 })
        const events = recordEvents(pool)
        const error = await failure(pool.acquire({ timeout: 500 }))
        await pool.close()
        expect(stub.received.at(-1)).toBe(CANARY) // it did travel to the server
        // 28P01 is permanent: the acquire rejects at once with the ConnectError (failFast).
        expect(error).toBeInstanceOf(ConnectError)
        expect((error as Error).message).toContain(
          'password authentication failed for user "u" (28P01)',
        )
        const driverError = (error as Error).cause
        expect(driverError).toMatchObject({ code: '28P01' })
        for (const value of [error, events, pool, d]) {
          expect(inspect(value, { depth: Number.POSITIVE_INFINITY })).not.toContain(CANARY)
        }
        expect(JSON.stringify(pool.stats()) + JSON.stringify(d)).not.toContain(CANARY)
      })
    }
  })
})
