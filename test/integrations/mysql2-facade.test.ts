import mysql2 from 'mysql2'
import { afterAll, describe, expect, it } from 'vitest'
import facade, { configureMysql2, createPool, lifeguardOf } from '../../src/compat/mysql2.js'
import { describeOnServer, probe } from '../support/servers.js'
import { MYSQL_URL, peakServerConnections, unique } from './support.js'

const status = await probe('mysql')
const real = mysql2 as unknown as { Pool: new () => object; PoolConnection: new () => object }

function getConnection(pool: mysql2.Pool): Promise<mysql2.PoolConnection> {
  return new Promise((resolve, reject) =>
    pool.getConnection((e, c) => (e ? reject(e) : resolve(c))),
  )
}
function end(pool: mysql2.Pool): Promise<void> {
  return new Promise((resolve, reject) => pool.end((e: unknown) => (e ? reject(e) : resolve())))
}

describeOnServer(status, 'lifeguard/mysql2 facade', () => {
  const module = configureMysql2({ max: 2 })
  afterAll(() => module.end())

  it('lends genuine PoolConnections, the same object for the same physical connection', async () => {
    const pool = createPool({ uri: MYSQL_URL, connectionLimit: 1 })
    expect(pool).toBeInstanceOf(real.Pool)
    const a = await getConnection(pool)
    expect(a).toBeInstanceOf(real.PoolConnection)
    const thread = a.threadId
    a.release()
    a.release() // mysql2 ignores a second release
    const b = await getConnection(pool)
    expect(b).toBe(a)
    expect(b.threadId).toBe(thread)
    const [rows] = await b.promise().query('SELECT 1 AS one')
    expect(rows).toEqual([{ one: 1 }])
    b.destroy()
    const c = await getConnection(pool)
    expect(c).not.toBe(a)
    c.end() // acts as release
    expect(lifeguardOf(pool).stats().leased).toBe(0)
    await end(pool)
  })

  it('query, execute and promise() work through the facade; .pool of the promise pool is the facade', async () => {
    const pool = createPool({ uri: MYSQL_URL, connectionLimit: 2 })
    const viaCallback = await new Promise((resolve, reject) =>
      pool.query('SELECT ? AS x', [5], (e, r) => (e ? reject(e) : resolve(r))),
    )
    expect(viaCallback).toEqual([{ x: 5 }])
    const promised = pool.promise()
    expect(promised.pool).toBe(pool)
    expect(lifeguardOf(promised)).toBe(lifeguardOf(pool))
    const [rows] = await promised.execute('SELECT ? AS y', [6])
    expect(rows).toEqual([{ y: 6 }])
    await expect(promised.query('SELEC nonsense')).rejects.toMatchObject({ errno: 1064 })
    await promised.end()
    await expect(promised.query('SELECT 1')).rejects.toThrow(/closed/)
  })

  it('createConnection borrows, and end() returns the connection', async () => {
    const first = module.createConnection(MYSQL_URL)
    await new Promise<void>((resolve) => first.once('connect', () => resolve()))
    const thread = first.threadId
    const [rows] = await first.promise().query('SELECT 2 AS two')
    expect(rows).toEqual([{ two: 2 }])
    await new Promise<void>((resolve) => first.end(() => resolve()))
    const pool = lifeguardOf(first)
    expect(pool.stats().leased).toBe(0)
    const second = module.createConnection(MYSQL_URL)
    await new Promise<void>((resolve) => second.once('connect', () => resolve()))
    expect(second.threadId).toBe(thread)
    second.end()
    expect(pool.stats().created).toBe(1)
  })

  it('200 concurrent queries never open more than max + maxOverflow server sessions', async () => {
    const pool = createPool({
      uri: MYSQL_URL,
      connectionLimit: 3,
      lifeguard: { maxOverflow: 2, name: unique('m') },
    })
    const peak = await peakServerConnections('mysql', { pool: lifeguardOf(pool) }, () =>
      Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          pool.promise().query('SELECT SLEEP(0.002), ? AS i', [i]),
        ),
      ),
    )
    expect(peak).toBeGreaterThan(0)
    expect(peak).toBeLessThanOrEqual(5)
    await end(pool)
  })
})

/** Resolves to what `promise` settles with, or to `'still waiting'` after `ms`. */
function within<T>(promise: Promise<T>, ms: number): Promise<T | 'still waiting'> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<'still waiting'>((resolve) => {
    timer = setTimeout(() => resolve('still waiting'), ms)
  })
  return Promise.race([promise, late]).finally(() => clearTimeout(timer))
}

// True to the driver: the same test against mysql2 and lifeguard/mysql2, which must agree.
describe.each([
  ['mysql2', mysql2 as unknown as { createPool: typeof createPool }],
  ['lifeguard/mysql2', facade],
])('separate pools on %s', (_name, driver) => {
  describeOnServer(status, 'createPool()', () => {
    it('regression: two createPool() with the same config shared one pool, so one holding every connection made the other wait', async () => {
      const config = { uri: MYSQL_URL, connectionLimit: 1 }
      const jobs = driver.createPool({ ...config })
      const web = driver.createPool({ ...config })
      try {
        const held = await getConnection(jobs)
        // The "jobs" pool holds its only connection; the "web" pool has its own and lends at once.
        const lent = await within(getConnection(web), 3_000)
        expect(lent).not.toBe('still waiting')
        const other = lent as mysql2.PoolConnection
        expect(other.threadId).not.toBe(held.threadId)
        other.release()
        held.release()
      } finally {
        await Promise.all([end(jobs), end(web)])
      }
    })
  })
})

describeOnServer(status, 'lifeguard/mysql2 pools stay separate', () => {
  it('each createPool() has a lifeguard pool of its own, closed by its own end()', async () => {
    const a = createPool({ uri: MYSQL_URL, connectionLimit: 3, typeCast: true })
    const b = createPool({ typeCast: true, connectionLimit: 3, uri: MYSQL_URL })
    expect(lifeguardOf(a)).not.toBe(lifeguardOf(b))
    await end(a)
    expect(lifeguardOf(a).closed).toBe(true)
    expect(lifeguardOf(b).closed).toBe(false)
    await end(b)
    expect(lifeguardOf(b).closed).toBe(true)
  })

  it('createConnection() with equal options still borrows from one shared pool', async () => {
    const module = configureMysql2()
    const a = module.createConnection({ uri: MYSQL_URL, connectionLimit: 2 })
    const b = module.createConnection({ connectionLimit: 2, uri: MYSQL_URL })
    try {
      expect(lifeguardOf(a)).toBe(lifeguardOf(b))
    } finally {
      a.end()
      b.end()
      await module.end()
    }
  })
})
