import { inspect } from 'node:util'
import pg from 'pg'
import { afterAll, beforeAll, expect, it } from 'vitest'
import pgCompat, { configurePg, lifeguardOf, Pool } from '../../src/compat/pg.js'
import { poolKey } from '../../src/compat/pool-key.js'
import { describeOnServer, probe } from '../support/servers.js'
import { PG_URL, peakServerConnections, unique } from './support.js'

const status = await probe('postgres')

/** pg sets processID at runtime; its typings leave it out. */
function pid(client: object): number {
  return (client as { processID: number }).processID
}

describeOnServer(status, 'lifeguard/pg facade', () => {
  const table = unique('pgf')
  let admin: pg.Client
  beforeAll(async () => {
    admin = new pg.Client(PG_URL)
    await admin.connect()
    await admin.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text)`)
  })
  afterAll(async () => {
    await admin.query(`DROP TABLE IF EXISTS ${table}`)
    await admin.end()
    await pgCompat.end()
  })

  it('is a real pg.Pool subclass named Pool, with pg’s options, Client and counts', async () => {
    const pool = new Pool({ connectionString: PG_URL, max: 2 })
    expect(pool).toBeInstanceOf(pg.Pool)
    expect(pool.constructor.name).toContain('Pool')
    expect(pool.options.max).toBe(2)
    expect((pool as unknown as { Client: unknown }).Client).toBe(pg.Client)
    expect([pool.totalCount, pool.idleCount, pool.waitingCount, pool.expiredCount]).toEqual([
      0, 0, 0, 0,
    ])
    const client = await pool.connect()
    expect(client).toBeInstanceOf(pg.Client)
    expect(pool.totalCount).toBe(1)
    client.release()
    expect(pool.idleCount).toBe(1)
    await pool.end()
    expect(pool.ending).toBe(true)
    expect(pool.ended).toBe(true)
  })

  it('lends the same client object for the same physical connection, and a second release throws', async () => {
    const pool = new Pool({ connectionString: PG_URL, max: 1 })
    const a = await pool.connect()
    const backend = pid(a)
    a.release()
    expect(() => a.release()).toThrow(/already been released/)
    const b = await pool.connect()
    expect(b).toBe(a)
    expect(pid(b)).toBe(backend)
    b.release(true) // destroys
    const c = await pool.connect()
    expect(c).not.toBe(a)
    c.release()
    await pool.end()
  })

  it('connect and query take callbacks too; query passes name, rowMode and types through', async () => {
    const pool = new Pool({ connectionString: PG_URL, max: 2 })
    const viaCallback = await new Promise<pg.PoolClient>((resolve, reject) =>
      pool.connect((error, client, done) => {
        if (error) return reject(error)
        done()
        resolve(client!)
      }),
    )
    expect(viaCallback).toBeInstanceOf(pg.Client)
    const rows = await new Promise<unknown[]>((resolve, reject) =>
      pool.query('SELECT $1::int AS n', [3], (error, result) =>
        error ? reject(error) : resolve(result.rows),
      ),
    )
    expect(rows).toEqual([{ n: 3 }])
    const named = await pool.query({ name: unique('q'), text: 'SELECT $1::int AS n', values: [4] })
    expect(named.rows).toEqual([{ n: 4 }])
    const array = await pool.query({ text: 'SELECT 1 AS a, 2 AS b', rowMode: 'array' })
    expect(array.rows).toEqual([[1, 2]])
    const typed = await pool.query({
      text: 'SELECT 42::int4 AS n',
      types: { getTypeParser: () => (value: string) => `parsed:${value}` },
    })
    expect(typed.rows).toEqual([{ n: 'parsed:42' }])
    await expect(pool.query('SELEC nonsense')).rejects.toMatchObject({ code: '42601' })
    // A SQL error does not cost the connection: it is released, not destroyed.
    expect(lifeguardOf(pool).stats().invalidated).toBe(0)
    await new Promise<void>((resolve) => pool.end(() => resolve()))
    await expect(pool.connect()).rejects.toThrow(/after calling end/)
    await expect(pool.end()).rejects.toThrow(/more than once/)
  })

  it('emits connect, acquire, release and remove with the client', async () => {
    const pool = new Pool({ connectionString: PG_URL, max: 1 })
    const seen: string[] = []
    pool.on('connect', (c) => seen.push(`connect:${c instanceof pg.Client}`))
    pool.on('acquire', () => seen.push('acquire'))
    pool.on('release', (error) => seen.push(`release:${(error as unknown) === true}`))
    const removed = new Promise<void>((resolve) => pool.on('remove', () => resolve()))
    const client = await pool.connect()
    client.release()
    const again = await pool.connect()
    again.release(true)
    await removed
    expect(seen).toEqual(['connect:true', 'acquire', 'release:false', 'acquire', 'release:true'])
    await pool.end()
  })

  it('each new Pool is a pool of its own, closed by its own end(); Clients with equal options share one', async () => {
    const name = unique('app')
    const a = new Pool({ connectionString: PG_URL, application_name: name, ssl: false, max: 3 })
    const b = new Pool({ max: 3, ssl: false, application_name: name, connectionString: PG_URL })
    expect(lifeguardOf(a)).not.toBe(lifeguardOf(b))
    await a.query('SELECT 1')
    expect(a.totalCount).toBe(1)
    expect(b.totalCount).toBe(0)
    await a.end()
    expect(lifeguardOf(a).closed).toBe(true)
    expect(lifeguardOf(b).closed).toBe(false)
    expect((await b.query('SELECT 2 AS n')).rows).toEqual([{ n: 2 }])
    await b.end()
    expect(lifeguardOf(b).closed).toBe(true)

    // A Client stands in for one connection: Clients with equal options borrow from one pool.
    const module = configurePg({ max: 2 })
    const c = new module.Client({ connectionString: PG_URL, application_name: name })
    const d = new module.Client({ application_name: name, connectionString: PG_URL })
    await Promise.all([c.connect(), d.connect()])
    expect(lifeguardOf(c)).toBe(lifeguardOf(d))
    expect(lifeguardOf(c).stats().leased).toBe(2)
    await Promise.all([c.end(), d.end()])
    await module.end()
    expect(lifeguardOf(c).closed).toBe(true)
  })

  it('keys are order-independent, hash passwords and tell functions apart', () => {
    const f = () => 1
    const g = () => 1
    const key = poolKey('pg', {
      password: 'hunter2',
      ssl: { ca: 'x', rejectUnauthorized: true },
      f,
    })
    expect(key).toBe(
      poolKey('pg', { f, ssl: { rejectUnauthorized: true, ca: 'x' }, password: 'hunter2' }),
    )
    expect(key).not.toContain('hunter2')
    expect(key).not.toBe(
      poolKey('pg', { password: 'hunter2', ssl: { ca: 'x', rejectUnauthorized: true }, f: g }),
    )
    expect(poolKey('pg', { connectionString: 'postgres://u:hunter2@h/db' })).not.toContain(
      'hunter2',
    )
    const pool = new Pool({ connectionString: 'postgres://u:hunter2@127.0.0.1:1/db' })
    expect(inspect(lifeguardOf(pool), { depth: 5 })).not.toContain('hunter2')
    return pool.end()
  })

  it('Client borrows on connect() and gives back on end(); the next Client gets the same backend', async () => {
    const module = configurePg({ max: 1 })
    const first = new module.Client(PG_URL)
    expect(first).toBeInstanceOf(pg.Client)
    await first.connect()
    const backend = pid(first)
    await first.query(`INSERT INTO ${table} VALUES (1, 'a')`)
    await first.query('SET application_name = dirty')
    const pool = lifeguardOf(first)
    const ended = new Promise<void>((resolve) => first.once('end', () => resolve()))
    await first.end()
    await ended
    const second = new module.Client(PG_URL)
    await new Promise<void>((resolve, reject) =>
      second.connect((e: Error | null) => (e ? reject(e) : resolve())),
    )
    expect(pid(second)).toBe(backend)
    // A fresh session: the previous client's SET was discarded.
    expect((await second.query('SHOW application_name')).rows[0].application_name).not.toBe('dirty')
    expect((await second.query(`SELECT v FROM ${table} WHERE id = 1`)).rows).toEqual([{ v: 'a' }])
    await new Promise<void>((resolve) => second.end(() => resolve()))
    expect(pool.stats().created).toBe(1)
    await module.end()
    expect(pool.closed).toBe(true)
  })

  it('200 concurrent queries never open more than max + maxOverflow server sessions', async () => {
    const name = unique('load')
    const pool = new Pool({
      connectionString: PG_URL,
      application_name: name,
      max: 4,
      lifeguard: { maxOverflow: 2 },
    })
    const peak = await peakServerConnections('postgres', { applicationName: name }, () =>
      Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          pool.query('SELECT pg_sleep(0.002), $1::int AS i', [i]),
        ),
      ),
    )
    expect(peak).toBeGreaterThan(0)
    expect(peak).toBeLessThanOrEqual(6)
    expect(lifeguardOf(pool).stats().created).toBeLessThanOrEqual(200)
    await pool.end()
  })
})
