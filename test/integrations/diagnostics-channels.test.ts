import * as diagnostics from 'node:diagnostics_channel'
import { inspect } from 'node:util'
import type mysql2 from 'mysql2'
import { afterAll, afterEach, beforeEach, expect, it } from 'vitest'
import {
  createPool as createMysql2Pool,
  lifeguardOf as mysql2PoolOf,
} from '../../src/compat/mysql2.js'
import { Pool as PgPool, lifeguardOf as pgPoolOf } from '../../src/compat/pg.js'
import { mysql } from '../../src/dialects/mysql.js'
import { postgres } from '../../src/dialects/postgres.js'
import { AcquireTimeoutError, createPool, type Pool } from '../../src/index.js'
import { trackProcessErrors } from '../support/process-errors.js'
import { describeOnServer, probe } from '../support/servers.js'
import { MYSQL_URL, PG_URL } from './support.js'

const [pgStatus, mysqlStatus] = await Promise.all([probe('postgres'), probe('mysql')])

const TRACING = ['acquire', 'connect'] as const
const EVENTS = ['start', 'end', 'asyncStart', 'asyncEnd', 'error'] as const
const PLAIN = ['release', 'reset', 'invalidate', 'close', 'connectError', 'server'] as const

type Seen = { channel: string; message: Record<string, unknown> }

/** Every message on the lifeguard channels while a test runs, copied as published. */
const seen: Seen[] = []
const stops: Array<() => void> = []
beforeEach(() => {
  seen.length = 0
  for (const name of TRACING) {
    const handlers = Object.fromEntries(
      EVENTS.map((event) => [
        event,
        (message: unknown) =>
          seen.push({ channel: `${name}:${event}`, message: { ...(message as object) } }),
      ]),
    ) as unknown as diagnostics.TracingChannelSubscribers<object>
    diagnostics.tracingChannel(`lifeguard:${name}`).subscribe(handlers)
    stops.push(() => diagnostics.tracingChannel(`lifeguard:${name}`).unsubscribe(handlers))
  }
  for (const name of PLAIN) {
    const handler = (message: unknown) =>
      seen.push({ channel: name, message: { ...(message as object) } })
    diagnostics.subscribe(`lifeguard:${name}`, handler)
    stops.push(() => diagnostics.unsubscribe(`lifeguard:${name}`, handler))
  }
})
afterEach(() => {
  for (const stop of stops.splice(0)) stop()
})

/** The channels one pool published on, in order. */
function of(pool: Pool<unknown>): Seen[] {
  return seen.filter((s) => s.message.poolName === pool.name)
}

function channels(pool: Pool<unknown>): string[] {
  return of(pool).map((s) => s.channel)
}

function first(pool: Pool<unknown>, channel: string): Record<string, unknown> {
  const found = of(pool).find((s) => s.channel === channel)
  expect(found, `${channel} of ${pool.name}`).toBeDefined()
  return found!.message
}

/** The default name of a pool to this URL's server: host:port/database, maybe with a `#n`. */
function defaultName(url: string): RegExp {
  const u = new URL(url)
  const port = u.port === '' ? (u.protocol.startsWith('postgres') ? '5432' : '3306') : u.port
  const name = `${u.hostname}:${port}${u.pathname}`.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  return new RegExp(`^${name}(#\\d+)?$`)
}

/** Checks the traced life of a core pool, given how it runs a query and kills its own session. */
async function coreLife<C>(
  pool: Pool<C>,
  url: string,
  query: (connection: C, sql: string) => Promise<unknown>,
  killSelf: string,
): Promise<void> {
  expect(pool.name).toMatch(defaultName(url))
  const errors = trackProcessErrors()
  const lease = await pool.acquire()
  await query(lease.connection, 'SELECT 1')
  // A timeout: the only connection is held.
  const timedOut = await pool.acquire({ timeout: 50 }).catch((error: unknown) => error)
  expect(timedOut).toBeInstanceOf(AcquireTimeoutError)
  lease.release()
  // An invalidation: the session kills itself, use() sees the disconnect and destroys it.
  await expect(pool.use((connection) => query(connection, killSelf))).rejects.toThrow()
  await pool.close()
  errors.stop()
  expect(errors.errors).toEqual([])

  const list = channels(pool as Pool<unknown>)
  expect(list.slice(0, 4)).toEqual(['acquire:start', 'connect:start', 'connect:end', 'acquire:end'])
  const opened = first(pool as Pool<unknown>, 'connect:asyncEnd')
  expect(opened).toMatchObject({ poolName: pool.name, connectionId: 1 })
  expect(opened.durationMs).toBeGreaterThan(0)
  const lent = first(pool as Pool<unknown>, 'acquire:asyncEnd')
  expect(lent).toMatchObject({ poolName: pool.name, connectionId: 1 })
  expect(lent.waitMs).toBeGreaterThan(0)
  const error = first(pool as Pool<unknown>, 'acquire:error')
  expect(error.error).toBe(timedOut)
  expect(first(pool as Pool<unknown>, 'release')).toMatchObject({
    connectionId: 1,
    destroyed: false,
  })
  const invalidated = first(pool as Pool<unknown>, 'invalidate')
  expect(invalidated).toMatchObject({ poolName: pool.name, connectionId: 1, reason: 'disconnect' })
  expect(invalidated.error).toBeInstanceOf(Error)
  expect(list).toContain('close')
  // Each message names the pool and never holds the driver's connection.
  for (const { message } of of(pool as Pool<unknown>)) {
    for (const value of Object.values(message)) {
      if (typeof value === 'object' && value !== null) expect(value).toBeInstanceOf(Error)
    }
  }
}

describeOnServer(pgStatus, 'diagnostics channels on PostgreSQL', () => {
  it('trace a core pool: connect, acquire, a timeout, release, and an invalidation after pg_terminate_backend', async () => {
    const pool = createPool({ dialect: postgres(PG_URL), max: 1, resetOnRelease: false })
    await coreLife(
      pool,
      PG_URL,
      (client, sql) => client.query(sql),
      'SELECT pg_terminate_backend(pg_backend_pid())',
    )
  })

  it('name a pool by address:port/database and never show the password', async () => {
    const url = new URL(PG_URL)
    // The test server trusts local connections: a password is sent to no one, and must show nowhere.
    url.password = 'chan-s3cret-pw'
    const pool = createPool({ dialect: postgres(url.toString()), max: 1 })
    const other = createPool({ dialect: postgres(url.toString()), max: 1 })
    expect(other.name).not.toBe(pool.name)
    expect(other.name.startsWith(`${pool.name.replace(/#\d+$/, '')}#`)).toBe(true)
    await pool.use((client) => client.query('SELECT 1'))
    await Promise.all([pool.close(), other.close()])
    expect(pool.name).not.toContain('chan-s3cret-pw')
    expect(of(pool as Pool<unknown>).length).toBeGreaterThan(0)
    expect(inspect(seen, { depth: 5 })).not.toContain('chan-s3cret-pw')
  })

  it('trace the lifeguard/pg facade through its core pool (lifeguardOf)', async () => {
    const facade = new PgPool({ connectionString: PG_URL, max: 1 })
    const core = pgPoolOf(facade)
    expect(core.name).toMatch(defaultName(PG_URL))
    await facade.query('SELECT 1')
    const client = await facade.connect()
    const timedOut = await core.acquire({ timeout: 50 }).catch((error: unknown) => error)
    client.release(new Error('discard it'))
    await facade.end()
    expect(timedOut).toBeInstanceOf(AcquireTimeoutError)
    const list = channels(core)
    // query(), connect() and the direct acquire: three traced, one of them timed out.
    expect(list.filter((c) => c === 'acquire:start')).toHaveLength(3)
    expect(list.filter((c) => c === 'acquire:error')).toHaveLength(1)
    expect(list).toContain('connect:asyncEnd')
    expect(first(core, 'invalidate')).toMatchObject({ poolName: core.name, reason: 'destroyed' })
  })
})

describeOnServer(mysqlStatus, 'diagnostics channels on MariaDB', () => {
  const facades: mysql2.Pool[] = []
  afterAll(async () => {
    await Promise.all(
      facades.map((pool) => new Promise<void>((resolve) => pool.end(() => resolve()))),
    )
  })

  it('trace a core pool: connect, acquire, a timeout, release, and an invalidation after KILL of its own session', async () => {
    const pool = createPool({ dialect: mysql(MYSQL_URL), max: 1, resetOnRelease: false })
    await coreLife(
      pool,
      MYSQL_URL,
      (connection, sql) => connection.query(sql),
      'KILL CONNECTION_ID()',
    )
  })

  it('trace the lifeguard/mysql2 facade through its core pool (lifeguardOf)', async () => {
    const facade = createMysql2Pool({ uri: MYSQL_URL, connectionLimit: 1 })
    facades.push(facade)
    const core = mysql2PoolOf(facade)
    expect(core.name).toMatch(defaultName(MYSQL_URL))
    await facade.promise().query('SELECT 1')
    const connection = await facade.promise().getConnection()
    const timedOut = await core.acquire({ timeout: 50 }).catch((error: unknown) => error)
    connection.destroy()
    await facade.promise().end()
    expect(timedOut).toBeInstanceOf(AcquireTimeoutError)
    const list = channels(core)
    expect(list.filter((c) => c === 'acquire:start').length).toBeGreaterThanOrEqual(3)
    expect(list.filter((c) => c === 'acquire:error')).toHaveLength(1)
    expect(list).toContain('connect:asyncEnd')
    expect(first(core, 'invalidate')).toMatchObject({ poolName: core.name, reason: 'destroyed' })
  })
})
