import type mysql2 from 'mysql2'
import { afterAll, expect, it } from 'vitest'
import { configureMysql2, createPool, lifeguardOf } from '../../src/compat/mysql2.js'
import { Pool } from '../../src/compat/pg.js'
import { describeOnServer, probe } from '../support/servers.js'
import { MYSQL_URL, PG_URL } from './support.js'

// Regressions found by running the ORMs of test/integrations through the drop-in modules.

function connected(connection: mysql2.Connection): Promise<void> {
  return new Promise((resolve, reject) => {
    connection.once('connect', () => resolve())
    connection.once('error', reject)
  })
}

function query(connection: mysql2.Connection, sql: string): Promise<unknown> {
  return new Promise((resolve, reject) =>
    connection.query(sql, (error, rows) => (error ? reject(error) : resolve(rows))),
  )
}

describeOnServer(await probe('mysql'), 'lifeguard/mysql2 createConnection regressions', () => {
  const module = configureMysql2({ max: 2 })
  afterAll(() => module.end())

  it('reading _closing through the connection proxy threw "Cannot read private member" (Sequelize disconnect)', async () => {
    const connection = module.createConnection(MYSQL_URL)
    const c = connection as unknown as { _closing: boolean }
    expect(c._closing).toBe(false)
    await connected(connection)
    expect(c._closing).toBe(false)
    connection.end()
    expect(c._closing).toBe(true)
  })

  it('a per-connection typeCast function (Sequelize binds one per connection) opened one pool per connection', async () => {
    const cast = (tag: string) => (_field: unknown, next: () => unknown) =>
      `${tag}:${String(next())}`
    const a = module.createConnection({ uri: MYSQL_URL, typeCast: cast('a') as never })
    const b = module.createConnection({ uri: MYSQL_URL, typeCast: cast('b') as never })
    await Promise.all([connected(a), connected(b)])
    try {
      expect(lifeguardOf(a)).toBe(lifeguardOf(b))
      // Each connection's own typeCast still applies to its queries, and only to its own.
      expect(await query(a, 'SELECT 1 AS n')).toEqual([{ n: 'a:1' }])
      expect(await query(b, 'SELECT 1 AS n')).toEqual([{ n: 'b:1' }])
      const [viaPromise] = await a.promise().query('SELECT 2 AS n')
      expect(viaPromise).toEqual([{ n: 'a:2' }])
      // A query's own typeCast wins over the connection's.
      const own = await new Promise((resolve, reject) =>
        a.query({ sql: 'SELECT 3 AS n', typeCast: false }, (e, r) => (e ? reject(e) : resolve(r))),
      )
      expect((own as Array<{ n: unknown }>)[0]!.n).toBeInstanceOf(Buffer)
    } finally {
      a.end()
      b.end()
    }
  })

  it('a tag set on a borrowed connection read back undefined, so Sequelize never released a transaction’s connection', async () => {
    const first = module.createConnection({ uri: MYSQL_URL, lifeguard: { max: 1 } })
    await connected(first)
    const tagged = first as unknown as { uuid?: string; threadId: number }
    tagged.uuid = 'tx-1'
    expect(tagged.uuid).toBe('tx-1')
    const thread = tagged.threadId
    first.end()
    // The next borrower of the same physical connection does not see the tag.
    const second = module.createConnection({ uri: MYSQL_URL, lifeguard: { max: 1 } })
    await connected(second)
    const next = second as unknown as { uuid?: string; threadId: number }
    expect(next.threadId).toBe(thread)
    expect(next.uuid).toBeUndefined()
    second.end()
  })

  it('createConnection().promise() wrapped the physical connection: its end() closed it instead of giving it back', async () => {
    const first = module.createConnection({ uri: MYSQL_URL, lifeguard: { max: 1 } })
    await connected(first)
    const thread = first.threadId
    const promised = first.promise()
    const [rows] = await promised.query('SELECT 1 AS one')
    expect(rows).toEqual([{ one: 1 }])
    await promised.end()
    expect(lifeguardOf(first).stats().leased).toBe(0)
    const second = module.createConnection({ uri: MYSQL_URL, lifeguard: { max: 1 } })
    await connected(second)
    expect(second.threadId).toBe(thread) // the same physical connection, not a new one
    expect(lifeguardOf(second).stats().created).toBe(1)
    second.end()
  })
})

describeOnServer(await probe('mysql'), 'lifeguard/mysql2 release regressions', () => {
  it("a release inside mysql2's error callback or its 'end' closed the connection (a reconnect per query)", async () => {
    // mysql2 keeps a finished command current while it calls its error callback and emits its
    // 'end', where mysql2's own pool.query releases: a first version of the check for a query
    // still running took that for one, and closed the connection on every such release.
    const pool = createPool({ uri: MYSQL_URL, connectionLimit: 2 })
    const ask = (sql: string) =>
      new Promise<void>((resolve) => {
        pool.query(sql, () => resolve())
      })
    const borrowAndFail = () =>
      new Promise<void>((resolve, reject) => {
        pool.getConnection((error, connection) => {
          if (error) return reject(error)
          connection!.query('SELECT no_such_column', () => {
            connection!.release()
            resolve()
          })
        })
      })
    for (let i = 0; i < 50; i++) {
      await ask('SELECT 1')
      await ask('SELECT no_such_column')
      await borrowAndFail()
    }
    const stats = lifeguardOf(pool).stats()
    expect(stats.created).toBeLessThanOrEqual(2)
    expect(stats.invalidated).toBe(0)
    await new Promise((resolve) => pool.end(resolve))
  })
})

it('pg connectionTimeoutMillis: 0 (wait for ever) meant a 30 s acquire timeout', async () => {
  const forever = new Pool({ connectionString: PG_URL, connectionTimeoutMillis: 0 })
  const bounded = new Pool({ connectionString: PG_URL, connectionTimeoutMillis: 1500 })
  try {
    expect(lifeguardOf(forever).options.acquireTimeout).toBe(Number.POSITIVE_INFINITY)
    expect(lifeguardOf(forever).options.connectTimeout).toBeLessThan(Number.POSITIVE_INFINITY)
    expect(lifeguardOf(bounded).options.acquireTimeout).toBe(1500)
  } finally {
    await Promise.all([forever.end(), bounded.end()])
  }
})
