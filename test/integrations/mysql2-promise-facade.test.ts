import mysql2 from 'mysql2'
import realPromise from 'mysql2/promise'
import { afterAll, describe, expect, it } from 'vitest'
import lifeguardPromise, {
  configureMysql2Promise,
  createPool,
  lifeguardOf,
} from '../../src/compat/mysql2-promise.js'
import { describeOnServer, probe } from '../support/servers.js'
import { MYSQL_URL, peakServerConnections, unique } from './support.js'

const status = await probe('mysql')

/** What both modules offer: mysql2/promise's `createPool` and `createConnection`. */
interface PromiseModule {
  createPool: typeof realPromise.createPool
  createConnection: typeof realPromise.createConnection
}

const classes = realPromise as unknown as {
  PromisePool: new () => object
  PromiseConnection: new () => object
  PromisePoolConnection: new () => object
}

/** Resolves to what `promise` settles with, or to `'still waiting'` after `ms`. */
function within<T>(promise: Promise<T>, ms: number): Promise<T | 'still waiting'> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<'still waiting'>((resolve) => {
    timer = setTimeout(() => resolve('still waiting'), ms)
  })
  return Promise.race([promise, late]).finally(() => clearTimeout(timer))
}

/** The fields of an error that a user's code reads. */
function observed(error: unknown): Record<string, unknown> {
  const e = error as { code?: unknown; errno?: unknown; sqlState?: unknown; message?: unknown }
  return { code: e.code, errno: e.errno, sqlState: e.sqlState, message: e.message }
}

// True to the driver: each case runs against mysql2/promise and lifeguard/mysql2/promise, and
// records what a user observes; the last block requires both records to be equal.
const seen = new Map<string, Record<string, unknown>>()
const modules: Array<[string, PromiseModule]> = [
  ['mysql2/promise', realPromise],
  ['lifeguard/mysql2/promise', lifeguardPromise as unknown as PromiseModule],
]

describeOnServer(status, 'mysql2/promise and lifeguard/mysql2/promise agree', () => {
  afterAll(() => lifeguardPromise.end())

  describe.each(modules)('%s', (name, driver) => {
    const record = (key: string, value: unknown) => {
      const entry = seen.get(key) ?? {}
      entry[name] = value
      seen.set(key, entry)
    }

    it('createPool: query and execute give rows and fields; a bad query rejects with the server error', async () => {
      const pool = driver.createPool({ uri: MYSQL_URL, connectionLimit: 2 })
      try {
        expect(pool).toBeInstanceOf(classes.PromisePool)
        expect(pool.pool).toBeInstanceOf((mysql2 as unknown as { Pool: new () => object }).Pool)
        const [rows, fields] = await pool.query('SELECT ? AS x, ? AS y', [1, 'a'])
        const [executed] = await pool.execute('SELECT ? + 1 AS z', [41])
        const bad = await pool.query('SELEC nonsense').then(
          () => undefined,
          (error: unknown) => error,
        )
        expect(bad).toBeInstanceOf(Error)
        record('query', {
          rows,
          fields: (fields as Array<{ name: string }>).map((f) => f.name),
          executed,
          bad: observed(bad),
        })
      } finally {
        await pool.end()
      }
    })

    it('getConnection lends a PromisePoolConnection whose release() gives it back', async () => {
      const pool = driver.createPool({ uri: MYSQL_URL, connectionLimit: 1 })
      const events: string[] = []
      for (const event of ['connection', 'acquire', 'enqueue', 'release']) {
        pool.on(event as 'acquire', () => events.push(event))
      }
      try {
        const first = await pool.getConnection()
        expect(first).toBeInstanceOf(classes.PromisePoolConnection)
        const thread = first.threadId
        // connectionLimit 1: a second borrower waits until the first gives its connection back.
        const second = pool.getConnection()
        expect(await within(second, 200)).toBe('still waiting')
        await first.beginTransaction()
        await first.query('SELECT 1')
        await first.rollback()
        first.release()
        const next = await second
        record('release', {
          sameThread: next.threadId === thread,
          rows: (await next.query('SELECT 2 AS two'))[0],
        })
        next.release()
        record('events', events)
      } finally {
        await pool.end()
      }
    })

    it('end() resolves once; afterwards a query rejects', async () => {
      const pool = driver.createPool({ uri: MYSQL_URL, connectionLimit: 1 })
      await pool.query('SELECT 1')
      await pool.end()
      const after = await pool.query('SELECT 1').then(
        () => undefined,
        (error: unknown) => error,
      )
      expect(after).toBeInstanceOf(Error)
      record('end', { after: observed(after) })
    })

    it('createConnection resolves to a connected PromiseConnection; end() resolves', async () => {
      const connection = await driver.createConnection({ uri: MYSQL_URL })
      expect(connection).toBeInstanceOf(classes.PromiseConnection)
      expect(connection.threadId).toBeGreaterThan(0)
      const [rows] = await connection.query('SELECT 3 AS three')
      const bad = await connection.execute('SELEC nonsense').then(
        () => undefined,
        (error: unknown) => error,
      )
      await connection.end()
      record('createConnection', { rows, bad: observed(bad) })
    })
  })

  it('both recorded the same observations', () => {
    expect(seen.size).toBe(5)
    for (const [key, entry] of seen) {
      expect(Object.keys(entry), key).toEqual(modules.map(([name]) => name))
      expect(entry['lifeguard/mysql2/promise'], key).toEqual(entry['mysql2/promise'])
    }
  })
})

describeOnServer(status, 'lifeguard/mysql2/promise', () => {
  const module = configureMysql2Promise({ max: 1 })
  afterAll(() => module.end())

  it('createConnection borrows: end() gives the connection back to a pool shared by equal options', async () => {
    const first = await module.createConnection(MYSQL_URL)
    const thread = first.threadId
    const pool = lifeguardOf(first)
    await first.end()
    expect(pool.stats().leased).toBe(0)
    const second = await module.createConnection(MYSQL_URL)
    expect(second.threadId).toBe(thread)
    expect(lifeguardOf(second)).toBe(pool)
    expect(pool.stats().created).toBe(1)
    await second.end()
  })

  it('lifeguardOf() finds the lifeguard pool under a promise pool', async () => {
    const pool = createPool({ uri: MYSQL_URL, lifeguard: { name: unique('p') } })
    expect(lifeguardOf(pool)).toBe(lifeguardOf(pool.pool))
    await pool.end()
    expect(lifeguardOf(pool).closed).toBe(true)
  })

  it('200 concurrent queries never open more than max + maxOverflow server sessions, and nothing stays leased', async () => {
    const pool = createPool({
      uri: MYSQL_URL,
      connectionLimit: 3,
      lifeguard: { maxOverflow: 2, name: unique('pp') },
    })
    const peak = await peakServerConnections('mysql', { pool: lifeguardOf(pool) }, () =>
      Promise.all(
        Array.from({ length: 200 }, (_, i) => pool.query('SELECT SLEEP(0.002), ? AS i', [i])),
      ),
    )
    expect(peak).toBeGreaterThan(0)
    expect(peak).toBeLessThanOrEqual(5)
    expect(lifeguardOf(pool).stats().leased).toBe(0)
    await pool.end()
  })

  it('plain app code (transfers in transactions, 50 at once) stays within the bound and consistent', async () => {
    const pool = createPool({
      uri: MYSQL_URL,
      connectionLimit: 2,
      lifeguard: { maxOverflow: 1, name: unique('app') },
    })
    const table = unique('accounts')
    await pool.query(`CREATE TABLE ${table} (id int PRIMARY KEY, balance int) ENGINE=InnoDB`)
    try {
      await pool.query(`INSERT INTO ${table} VALUES (1, 1000), (2, 1000)`)
      const transfer = async (amount: number) => {
        const connection = await pool.getConnection()
        try {
          await connection.beginTransaction()
          await connection.execute(`UPDATE ${table} SET balance = balance - ? WHERE id = 1`, [
            amount,
          ])
          if (amount % 7 === 0) throw new Error('refused')
          await connection.execute(`UPDATE ${table} SET balance = balance + ? WHERE id = 2`, [
            amount,
          ])
          await connection.commit()
        } catch (error) {
          await connection.rollback()
          throw error
        } finally {
          connection.release()
        }
      }
      const amounts = Array.from({ length: 50 }, (_, i) => i + 1)
      const peak = await peakServerConnections('mysql', { pool: lifeguardOf(pool) }, () =>
        Promise.allSettled(amounts.map(transfer)),
      )
      expect(peak).toBeGreaterThan(0)
      expect(peak).toBeLessThanOrEqual(3)
      const moved = amounts.filter((a) => a % 7 !== 0).reduce((sum, a) => sum + a, 0)
      const [rows] = await pool.query(`SELECT id, balance FROM ${table} ORDER BY id`)
      expect(rows).toEqual([
        { id: 1, balance: 1000 - moved },
        { id: 2, balance: 1000 + moved },
      ])
      expect(lifeguardOf(pool).stats().leased).toBe(0)
    } finally {
      await pool.query(`DROP TABLE IF EXISTS ${table}`)
      await pool.end()
    }
  })
})

describe.each(modules)('separate pools on %s', (_name, driver) => {
  describeOnServer(status, 'createPool()', () => {
    it('regression: two createPool() with the same config shared one pool, so one holding every connection made the other wait', async () => {
      const jobs = driver.createPool({ uri: MYSQL_URL, connectionLimit: 1 })
      const web = driver.createPool({ uri: MYSQL_URL, connectionLimit: 1 })
      try {
        const held = await jobs.getConnection()
        const lent = await within(web.getConnection(), 3_000)
        expect(lent).not.toBe('still waiting')
        const other = lent as Awaited<ReturnType<typeof web.getConnection>>
        expect(other.threadId).not.toBe(held.threadId)
        other.release()
        held.release()
      } finally {
        await Promise.all([jobs.end(), web.end()])
      }
    })
  })
})
