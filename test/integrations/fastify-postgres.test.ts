import fastifyPostgres from '@fastify/postgres'
import Fastify, { type FastifyInstance } from 'fastify'
import type pg from 'pg'
import { expect, it } from 'vitest'
import { lifeguardOf } from '../../src/compat/lifeguard-of.js'
import pgCompat from '../../src/compat/pg.js'
import { type Consumer, consumerSuite, MAX, OVERFLOW, type Rows } from './consumer-suite.js'

type Body = (
  insert: (name: string) => Promise<unknown>,
  sql: (text: string) => Promise<Rows>,
) => Promise<void>

/** A small app: CRUD routes over `fastify.pg.query`, and transaction routes of both kinds. */
async function buildApp(url: string, table: string, bodies: Map<string, Body>) {
  const app = Fastify()
  await app.register(fastifyPostgres, {
    connectionString: url,
    max: MAX,
    // lifeguard's own options ride along in pg's config; the plugin passes it to `new pg.Pool`.
    lifeguard: { maxOverflow: OVERFLOW },
    pg: pgCompat as unknown as typeof pg,
  } as never)
  const insertSql = `INSERT INTO ${table} (name) VALUES ($1)`
  app.get('/rows', async () => {
    const { rows } = await app.pg.query(`SELECT name FROM ${table} ORDER BY id`)
    return rows.map((r: { name: string }) => r.name)
  })
  app.post<{ Body: { name: string } }>('/rows', async (req) => {
    await app.pg.query(insertSql, [req.body.name])
    return { ok: true }
  })
  app.put<{ Params: { name: string }; Body: { to: string } }>('/rows/:name', async (req) => {
    const { rowCount } = await app.pg.query(`UPDATE ${table} SET name = $1 WHERE name = $2`, [
      req.body.to,
      req.params.name,
    ])
    return { rowCount }
  })
  app.delete<{ Params: { name: string } }>('/rows/:name', async (req) => {
    const { rowCount } = await app.pg.query(`DELETE FROM ${table} WHERE name = $1`, [
      req.params.name,
    ])
    return { rowCount }
  })
  app.get<{ Params: { n: string } }>('/echo/:n', async (req) => {
    const { rows } = await app.pg.query(
      'SELECT $1::int AS n, txid_current_if_assigned() IS NULL AS alone',
      [Number(req.params.n)],
    )
    return rows[0]
  })
  // fastify.pg.transact: the test's body runs inside, its inserts on the transaction's client.
  app.post<{ Body: { id: string } }>('/transact', async (req) => {
    const body = bodies.get(req.body.id)!
    await app.pg.transact(async (client) => {
      await body(
        (name) => client.query(insertSql, [name]),
        async (text) => (await client.query(text)).rows,
      )
    })
    return { ok: true }
  })
  // The plugin's per-route transaction: BEGIN in preHandler, ROLLBACK on error, COMMIT on send.
  app.post<{ Body: { names: string[]; fail?: boolean } }>(
    '/route-transaction',
    { pg: { transact: true } },
    async (req) => {
      for (const name of req.body.names) await req.pg!.query(insertSql, [name])
      if (req.body.fail === true) throw new Error('roll back')
      return { ok: true }
    },
  )
  await app.ready()
  return app
}

async function call(
  app: FastifyInstance,
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  url: string,
  payload?: object,
) {
  const response = await app.inject({ method, url, ...(payload === undefined ? {} : { payload }) })
  if (response.statusCode !== 200) {
    throw new Error(`${method} ${url}: ${response.statusCode} ${response.body}`)
  }
  return response.json()
}

let nextBody = 0
/** The app under test, for the plugin-specific cases. */
let app: FastifyInstance

await consumerSuite(
  'postgres',
  '@fastify/postgres with pg: lifeguard/pg',
  async ({ url, table }): Promise<Consumer> => {
    const bodies = new Map<string, Body>()
    app = await buildApp(url, table, bodies)
    await app.pg.query(
      `CREATE TABLE ${table} (id serial PRIMARY KEY, name varchar(100) NOT NULL UNIQUE)`,
    )
    const pool = app.pg.pool
    return {
      subject: {
        insert: (name) => call(app, 'POST', '/rows', { name }),
        names: () => call(app, 'GET', '/rows'),
        rename: (from, to) => call(app, 'PUT', `/rows/${from}`, { to }),
        remove: (name) => call(app, 'DELETE', `/rows/${name}`),
        echo: (n) => call(app, 'GET', `/echo/${n}`),
        transaction: async (body) => {
          const id = String(++nextBody)
          let failure: unknown
          // Keep the body's own error: the route answers 500 with its message.
          bodies.set(id, async (insert, sql) => {
            try {
              await body(insert, sql)
            } catch (error) {
              failure = error
              throw error
            }
          })
          try {
            await call(app, 'POST', '/transact', { id })
          } catch (error) {
            throw failure ?? error
          } finally {
            bodies.delete(id)
          }
        },
      },
      lifeguard: () => lifeguardOf(pool),
      // The plugin's fastify.pg.query is the pool's query().
      pipelines: true,
      end: async () => {
        // The plugin's onClose hook ends the pool (our facade drops its hold; the last one closes).
        await app.close()
        expect(pool.ending).toBe(true)
        expect(lifeguardOf(pool).closed).toBe(true)
        await pgCompat.end() // the pools that the module's Clients borrowed from
      },
    }
  },
  (get) => {
    it('the plugin’s per-route transaction commits, and rolls back when the handler throws', async () => {
      const { monitor, lifeguard } = get()
      const inject = (payload: object) =>
        app.inject({ method: 'POST', url: '/route-transaction', payload })
      const ok = await inject({ names: ['route-a', 'route-b'] })
      expect(ok.statusCode).toBe(200)
      const failed = await inject({ names: ['route-c'], fail: true })
      expect(failed.statusCode).toBe(500)
      const names = (await app.inject({ method: 'GET', url: '/rows' })).json() as string[]
      expect(names).toEqual(expect.arrayContaining(['route-a', 'route-b']))
      expect(names).not.toContain('route-c')
      expect(await monitor.inTransaction()).toBe(0)
      expect(lifeguard()!.stats().leased).toBe(0)
    })

    it('fastify.pg.Client is the module’s Client: it borrows on connect() and gives back on end()', async () => {
      const { url, monitor } = get()
      const Client = app.pg.Client as unknown as new (config: object) => pg.Client
      const client = new Client({ connectionString: url })
      await client.connect()
      const pool = lifeguardOf(client)
      expect(pool.stats().leased).toBe(1)
      expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }])
      expect(await monitor.sessions()).toBeGreaterThan(0)
      await client.end()
      // Returned to the pool (where it is being reset), not closed.
      expect(pool.stats()).toMatchObject({ leased: 0, total: 1, closed: 0 })
    })
  },
)
