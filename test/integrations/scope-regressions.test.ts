import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import express, { type NextFunction, type Request, type Response } from 'express'
import Fastify from 'fastify'
import type pg from 'pg'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { lifeguardOf } from '../../src/compat/lifeguard-of.js'
import mysql2Facade from '../../src/compat/mysql2.js'
import { Pool as PgPool } from '../../src/compat/pg.js'
import { mysql } from '../../src/dialects/mysql.js'
import { MysqlDialect } from '../../src/dialects/mysql-dialect.js'
import { postgres } from '../../src/dialects/postgres.js'
import { createPool, type Pool, ScopeEndedError } from '../../src/index.js'
import { requestScope } from '../../src/integrations/express.js'
import fastifyLifeguard from '../../src/integrations/fastify.js'
import { trackProcessErrors } from '../conformance/targets.js'
import { describeOnServer, probe } from '../support/servers.js'
import { MYSQL_URL, PG_URL, unique } from './support.js'

// Regression tests for what a review of the request scopes found broken, each named after it.

async function listen(server: Server): Promise<string> {
  if (!server.listening) await new Promise((resolve) => server.once('listening', resolve))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

function shut(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve())
    server.closeAllConnections()
  })
}

const pgStatus = await probe('postgres')
describeOnServer(pgStatus, 'request scope regressions on PostgreSQL', () => {
  let pool: Pool<pg.Client>
  let table: string
  const processErrors = trackProcessErrors()

  beforeAll(async () => {
    pool = createPool({ dialect: postgres(PG_URL), max: 3 })
    table = unique('scope_reg')
    await pool.use((c) => c.query(`CREATE TABLE ${table} (marker text NOT NULL)`))
  })

  afterAll(async () => {
    await pool.use((c) => c.query(`DROP TABLE IF EXISTS ${table}`))
    await pool.close()
    processErrors.stop()
    expect(processErrors.errors).toEqual([])
  })

  const count = async (marker: string) =>
    Number(
      (
        await pool.use((c) =>
          c.query(`SELECT count(*) AS n FROM ${table} WHERE marker = $1`, [marker]),
        )
      ).rows[0].n,
    )

  it('regression: res.end called twice in a transactional route ended the response before the commit and crashed the process', async () => {
    const app = express()
    app.get('/twice', requestScope(pool, { transaction: true }), async (req, res) => {
      await req.db.use((c) => c.query(`INSERT INTO ${table} VALUES ('twice')`))
      res.end('a')
      res.end()
    })
    const server = app.listen(0, '127.0.0.1')
    const base = await listen(server)
    const response = await fetch(`${base}/twice`)
    expect(response.status).toBe(200)
    expect(await response.text()).toBe('a')
    // The commit ran before the response left: the row is there as soon as the client has it.
    expect(await count('twice')).toBe(1)
    await shut(server)
    expect(processErrors.errors).toEqual([])
  })

  it('regression: a failed commit kept the handler’s 2xx status when the error handler set none', async () => {
    const app = express()
    app.post('/orders', requestScope(pool, { transaction: true }), async (req, res) => {
      await req.db.use((c) => c.query(`INSERT INTO ${table} VALUES ('failed-commit')`))
      // A caught failure aborts the transaction: PostgreSQL will answer COMMIT with ROLLBACK.
      await req.db.use((c) => c.query('SELECT * FROM no_such_table_here')).catch(() => {})
      res.status(201).json({ ok: true })
    })
    app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
      res.json({ error: error.message }) // renders without setting a status
    })
    const server = app.listen(0, '127.0.0.1')
    const base = await listen(server)
    const response = await fetch(`${base}/orders`, { method: 'POST' })
    expect(response.status).toBe(500)
    expect(((await response.json()) as { error: string }).error).toMatch(
      /LIFEGUARD_TRANSACTION_FAILED/,
    )
    expect(await count('failed-commit')).toBe(0)
    await shut(server)
  })

  it('regression: Fastify replaced the reply of an earlier onRequest hook with a TypeError', async () => {
    const app = Fastify()
    app.addHook('onRequest', async (_request, reply) => {
      await reply.code(401).send({ denied: true })
    })
    await app.register(fastifyLifeguard, { pool, transaction: true })
    app.get('/private', async () => ({ secret: true }))
    await app.listen({ port: 0, host: '127.0.0.1' })
    const response = await fetch(
      `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/private`,
    )
    expect(response.status).toBe(401)
    expect(await response.json()).toEqual({ denied: true })
    await app.close()
  })

  it('regression: the pg facade’s maxUses destroyed a request’s connection in the middle of its transaction', async () => {
    const facade = new PgPool({ connectionString: PG_URL, max: 2, maxUses: 2 })
    const core = lifeguardOf(facade)
    const scope = core.openScope()
    await scope.run(async () => {
      await facade.query('BEGIN')
      await facade.query(`INSERT INTO ${table} VALUES ('max-uses')`)
      await facade.query(`INSERT INTO ${table} VALUES ('max-uses')`)
      await facade.query('COMMIT')
    })
    await scope.end()
    expect(await count('max-uses')).toBe(2)
    expect(core.stats()).toMatchObject({ leased: 0, invalidated: 0 })
    await facade.end()
  })

  it('regression: a plain request whose connection died after BEGIN went on autocommitting the rest', async () => {
    const scope = pool.openScope()
    const outcome = scope.run(async () => {
      await pool.use((c) => c.query('BEGIN'))
      await pool.use((c) => c.query(`INSERT INTO ${table} VALUES ('lost')`))
      const lease = await pool.acquire()
      lease.destroy(new Error('the handler gave the connection up'))
      await pool.use((c) => c.query(`INSERT INTO ${table} VALUES ('lost')`))
    })
    await expect(outcome).rejects.toMatchObject({ code: 'LIFEGUARD_TRANSACTION_FAILED' })
    await scope.end()
    expect(await count('lost')).toBe(0)
  })
})

const mysqlStatus = await probe('mysql')
describeOnServer(mysqlStatus, 'request scope regressions on MariaDB', () => {
  it("regression: cancelOnAbort's KILL QUERY ignored its signal: a kill connection that never answered held the cancel for ever", async () => {
    const dialect = new MysqlDialect(MYSQL_URL)
    const target = await dialect.connect(AbortSignal.timeout(5_000))
    const connect = dialect.connect.bind(dialect)
    const killers: Array<{ destroyed: boolean }> = []
    // The kill connection opens, then reads nothing more: its KILL is never answered.
    dialect.connect = async (signal) => {
      const killer = await connect(signal)
      const stream = (killer as unknown as { stream: { pause(): void; destroyed: boolean } }).stream
      stream.pause()
      killers.push(stream)
      return killer
    }
    const started = performance.now()
    await expect(dialect.cancel(target, AbortSignal.timeout(300))).rejects.toMatchObject({
      name: 'TimeoutError',
    })
    expect(performance.now() - started).toBeLessThan(3_000)
    expect(killers).toHaveLength(1)
    expect(killers[0]!.destroyed).toBe(true)
    await dialect.close(target, AbortSignal.timeout(2_000))
  })

  it('regression: a SET statement made a plain scope refuse the request’s queries after it ended', async () => {
    const pool = createPool({ dialect: mysql(MYSQL_URL), max: 2 })
    const run = async (c: { query: (sql: string) => Promise<unknown> }, sql: string) => {
      await c.query(sql)
    }
    const scope = pool.openScope()
    await scope.run(() => pool.use((c) => run(c, 'SET @lifeguard_marker = 1')))
    await scope.end()
    // Work that outlives the response still runs: no transaction was open.
    await expect(scope.run(() => pool.use((c) => run(c, 'SELECT 1')))).resolves.toBeUndefined()
    // A real open transaction is still refused after the end.
    const open = pool.openScope()
    await open.run(() => pool.use((c) => run(c, 'START TRANSACTION')))
    await open.end()
    await expect(open.run(() => pool.use((c) => run(c, 'SELECT 1')))).rejects.toBeInstanceOf(
      ScopeEndedError,
    )
    expect(pool.stats().leased).toBe(0)
    await pool.close()
  })

  it("regression: lifeguard/mysql2's getConnection in a transactional scope queued behind a full pool, and a queued caller was lent the releasing request's connection", async () => {
    // mysql2's queue, rebuilt in the facade, ignored request scopes: a request whose scope
    // already held a connection waited for a free one (with every connection held so, none
    // came), and a caller served from another request's release ran in that request's context.
    const facade = mysql2Facade.createPool({ uri: MYSQL_URL, connectionLimit: 2 })
    const core = lifeguardOf(facade)!
    const ask = (sql: string) =>
      new Promise<unknown>((resolve, reject) =>
        facade.getConnection((error, connection) => {
          if (error) return reject(error)
          connection.query(sql, (queryError: unknown, rows: unknown) => {
            connection.release()
            if (queryError) reject(queryError)
            else resolve(rows)
          })
        }),
      )
    const ids: number[] = []
    const scopes = [0, 1].map(() => core.openScope({ transaction: true }))
    try {
      // Each scope takes one of the two connections, then asks again while the pool is full.
      for (const scope of scopes) {
        ids.push(
          (
            (await scope.run(() => ask('SELECT CONNECTION_ID() AS id'))) as Array<{ id: number }>
          )[0]!.id,
        )
      }
      const again = await Promise.race([
        Promise.all(scopes.map((scope) => scope.run(() => ask('SELECT CONNECTION_ID() AS id')))),
        new Promise((resolve) => setTimeout(() => resolve('stuck'), 3_000)),
      ])
      expect(again).not.toBe('stuck')
      const second = (again as Array<Array<{ id: number }>>).map((rows) => rows[0]!.id)
      expect(second).toEqual(ids)
      // A caller outside any scope waits for a connection, and gets one only after a scope ends.
      const outside = ask('SELECT @@in_transaction AS t')
      await scopes[0]!.end('commit')
      expect(await outside).toEqual([{ t: 0 }])
    } finally {
      await Promise.all(scopes.map((scope) => scope.end()))
      await new Promise<void>((resolve) => facade.end(() => resolve()))
    }
  })
})
