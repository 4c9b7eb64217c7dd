import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Kysely, MysqlDialect, PostgresDialect } from 'kysely'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { lifeguardOf } from '../../src/compat/lifeguard-of.js'
import mysql2Compat from '../../src/compat/mysql2.js'
import pgCompat from '../../src/compat/pg.js'
import type { Pool, RequestScope } from '../../src/index.js'
import { trackProcessErrors } from '../conformance/targets.js'
import { describeOnServer, probe, type ServerKind } from '../support/servers.js'
import { SessionMonitor } from './session-monitor.js'
import { unique } from './support.js'

/** What a route handler is given: the request's scope as the framework exposes it. */
export interface RouteContext {
  /** `req.db`, `request.db` or `c.var.db`. */
  db: RequestScope<unknown>
}

/** A route of the test app, written once and mounted by each framework in its own idiom. */
export interface Route {
  method: 'GET' | 'POST'
  path: string
  /** Wrap this route in a transaction (the framework's per-route option). */
  transaction?: boolean
  /** Cancel the statement of an abandoned request (the scope option `cancelOnAbort`). */
  cancelOnAbort?: boolean
  /** Returns the JSON body; a throw becomes a 500. */
  handle(context: RouteContext): Promise<unknown>
}

/**
 * The listen backlog the frameworks' servers use: above the 1000 clients that connect at once.
 * Node's default (511) let the accept queue overflow on a loaded machine, and a client whose
 * connection the kernel dropped read ECONNRESET.
 */
export const BACKLOG = 2048

/** A web framework under test: it serves `routes` through lifeguard's request scope over `pool`. */
export interface Framework {
  name: string
  /** Starts an app on 127.0.0.1 with the scope middleware over `pool` and these routes. */
  serve(pool: object, routes: Route[]): Promise<Server>
}

/** One server kind's drop-in pool, and the SQL that differs between the two. */
export interface Backend {
  facade: object
  /** Kysely over the facade: an ORM that knows nothing of request scopes. */
  kysely: Kysely<Record<string, { marker: string }>>
  /** A query through the facade, as an ORM would send it: it joins the request's scope. */
  query(sql: string, params?: unknown[]): Promise<Array<Record<string, unknown>>>
  /** The same, on a connection lent by the scope (`db.use`). */
  onConnection(connection: unknown, sql: string): Promise<Array<Record<string, unknown>>>
  end(): Promise<void>
  sql: {
    /** The backend's id, the statement's start and its end (µs), after sleeping 50 ms. */
    sleepSpan: string
    /** Whether the connection is inside a transaction opened by an earlier statement. */
    inTransaction: string
    sleep(seconds: number): string
    insert(table: string, marker: string): string
    create(table: string): string
  }
}

const POOL_SIZE = 10

/** PostgreSQL through a `lifeguard/pg` pool of `size`. */
export function postgresBackend(url: string, size = POOL_SIZE): Backend {
  const facade = new pgCompat.Pool({ connectionString: url, max: size })
  return {
    facade,
    kysely: new Kysely({ dialect: new PostgresDialect({ pool: facade }) }),
    query: async (sql, params) => (await facade.query(sql, params)).rows,
    onConnection: async (connection, sql) =>
      (await (connection as InstanceType<typeof pgCompat.Client>).query(sql)).rows,
    end: () => facade.end(),
    sql: {
      sleepSpan:
        'SELECT pg_backend_pid() AS pid, (extract(epoch FROM statement_timestamp()) * 1e6)::text AS t0, (extract(epoch FROM clock_timestamp()) * 1e6)::text AS t1 FROM pg_sleep(0.05)',
      inTransaction: 'SELECT now() <> statement_timestamp() AS intx',
      sleep: (s) => `SELECT pg_sleep(${s})`,
      insert: (table, marker) => `INSERT INTO ${table} (marker) VALUES ('${marker}')`,
      create: (table) => `CREATE TABLE ${table} (id serial PRIMARY KEY, marker text NOT NULL)`,
    },
  }
}

/** MariaDB through a `lifeguard/mysql2` pool of `size`. */
export function mysqlBackend(url: string, size = POOL_SIZE): Backend {
  const facade = mysql2Compat.createPool({ uri: url, connectionLimit: size })
  const promised = facade.promise()
  return {
    facade,
    kysely: new Kysely({ dialect: new MysqlDialect({ pool: facade }) }),
    query: async (sql, params) => (await promised.query(sql, params))[0] as never,
    onConnection: (connection, sql) =>
      new Promise((resolve, reject) => {
        ;(connection as { query: (s: string, cb: (e: unknown, r: unknown) => void) => void }).query(
          sql,
          (error, rows) => (error ? reject(error) : resolve(rows as never)),
        )
      }),
    end: () => promised.end(),
    sql: {
      sleepSpan:
        'SELECT CONNECTION_ID() AS pid, CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS CHAR) AS t0, CAST(UNIX_TIMESTAMP(SYSDATE(6)) * 1000000 AS CHAR) AS t1 FROM (SELECT SLEEP(0.05)) AS s',
      inTransaction: 'SELECT @@in_transaction = 1 AS intx',
      sleep: (s) => `SELECT SLEEP(${s})`,
      insert: (table, marker) => `INSERT INTO ${table} (marker) VALUES ('${marker}')`,
      create: (table) =>
        `CREATE TABLE ${table} (id int AUTO_INCREMENT PRIMARY KEY, marker varchar(100) NOT NULL) ENGINE=InnoDB`,
    },
  }
}

interface Span {
  pid: number
  t0: number
  t1: number
}

function spans(rows: unknown): Span[] {
  return (rows as Array<Record<string, unknown>>).map((r) => ({
    pid: Number(r.pid),
    t0: Number(r.t0),
    t1: Number(r.t1),
  }))
}

/** No two spans on one backend overlap in time. */
function expectNoSharedMoment(list: Span[]): void {
  for (const a of list) {
    for (const b of list) {
      if (a === b || a.pid !== b.pid) continue
      expect(a.t1 <= b.t0 || b.t1 <= a.t0, `spans on backend ${a.pid} overlap`).toBe(true)
    }
  }
}

/** A statement's backend and its start and end on the server's clock (µs). */
const SPAN =
  'SELECT pg_backend_pid() AS pid, (extract(epoch FROM statement_timestamp()) * 1e6)::text AS t0, (extract(epoch FROM clock_timestamp()) * 1e6)::text AS t1'

interface SpanRow {
  pid: number
  t0: string
  t1: string
}

/** What a scope reports of itself: see {@link scopeSpan}. */
interface ScopeSpan {
  transaction: boolean
  pids: number[]
  txids: string[]
  /** From its first statement's start to its last statement's end, on the server's clock (µs). */
  start: number
  end: number
  overflow: Array<{ n: number; pid: number }>
}

/**
 * A request's statements in a row on its connection, 20 ms apart, then two at once (the second
 * overflows to a connection of the pool in a scope without a transaction, and waits its turn on
 * the request's own in one), then one more: each reports its backend and, in a transaction, the
 * transaction's id.
 */
async function scopeSpan(backend: Backend, transaction: boolean): Promise<ScopeSpan> {
  const probe = `${SPAN}, ${transaction ? 'txid_current()::text' : "''"} AS tx`
  const rows: Array<SpanRow & { tx: string }> = []
  const step = async () => {
    rows.push((await backend.query(probe))[0] as unknown as SpanRow & { tx: string })
  }
  await step()
  await backend.query('SELECT pg_sleep(0.02)')
  await step()
  const pair = await Promise.all(
    [1, 2].map(async (n) => {
      const row = (
        await backend.query(`SELECT $1::int AS n, pg_backend_pid() AS pid FROM pg_sleep(0.01)`, [n])
      )[0]!
      return { n: Number(row.n), pid: Number(row.pid) }
    }),
  )
  await step()
  return {
    transaction,
    pids: rows.map((r) => Number(r.pid)),
    txids: rows.map((r) => r.tx),
    start: Number(rows[0]!.t0),
    end: Number(rows.at(-1)!.t1),
    overflow: pair,
  }
}

/** PostgreSQL's routes for the pipelining case: {@link scopeSpan} with and without a transaction. */
function spanRoutes(backend: Backend): Route[] {
  return [
    { method: 'GET', path: '/scope-span', handle: () => scopeSpan(backend, false) },
    {
      method: 'GET',
      path: '/scope-span-transaction',
      transaction: true,
      handle: () => scopeSpan(backend, true),
    },
  ]
}

/** A POST with a JSON body: the framework parses it, in stream events outside the handler's context. */
function json(body: unknown): RequestInit {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  }
}

async function getJson(base: string, path: string, init?: RequestInit) {
  const response = await fetch(base + path, init)
  return { status: response.status, body: (await response.json()) as unknown }
}

/**
 * The request-scope proof for one framework, on PostgreSQL (through `lifeguard/pg`) and on MariaDB
 * (through `lifeguard/mysql2`), over real HTTP on 127.0.0.1: 1000 concurrent requests through a
 * pool of 10, 200 aborted requests, a throw inside a transaction, concurrent queries, and a
 * request that never queries.
 */
export async function frameworkSuite(framework: Framework): Promise<void> {
  for (const kind of ['postgres', 'mysql'] as ServerKind[]) {
    const status = await probe(kind)
    describeOnServer(status, `${framework.name} request scope on ${status.label}`, () => {
      let monitor: SessionMonitor
      let backend: Backend
      let core: Pool<unknown>
      let server: Server
      let base: string
      /** Called by /slow-transaction once its INSERT is done, inside the transaction. */
      let slowTransactionBegun: (() => void) | undefined
      let table: string
      let processErrors: ReturnType<typeof trackProcessErrors>

      const rowsOf = async (marker: string) =>
        Number(
          (await backend.query(`SELECT COUNT(*) AS n FROM ${table} WHERE marker = '${marker}'`))[0]!
            .n,
        )

      const settled = async () => {
        // A connection given back is reset before it is idle: until its ROLLBACK reaches the
        // server, a request that left a transaction open still shows as idle in it.
        const busy = () => {
          const { leased, resetting } = core.stats()
          return leased > 0 || resetting > 0
        }
        for (let i = 0; i < 200 && busy(); i++) {
          await new Promise((resolve) => setTimeout(resolve, 25))
        }
        return core.stats()
      }

      beforeAll(async () => {
        processErrors = trackProcessErrors()
        monitor = await SessionMonitor.open(kind, `scope_${framework.name}`)
        backend = kind === 'postgres' ? postgresBackend(monitor.url) : mysqlBackend(monitor.url)
        core = lifeguardOf(backend.facade)
        table = unique('scope')
        await backend.query(backend.sql.create(table))
        const routes: Route[] = [
          ...(kind === 'postgres' ? spanRoutes(backend) : []),
          { method: 'GET', path: '/ping', handle: async () => backend.query('SELECT 1 AS one') },
          { method: 'GET', path: '/nothing', handle: async () => ({ ok: true }) },
          {
            method: 'GET',
            path: '/in-transaction',
            handle: async () => (await backend.query(backend.sql.inTransaction))[0],
          },
          {
            method: 'GET',
            path: '/concurrent',
            handle: async () =>
              (
                await Promise.all([
                  backend.query(backend.sql.sleepSpan),
                  backend.query(backend.sql.sleepSpan),
                ])
              ).flat(),
          },
          {
            method: 'GET',
            path: '/concurrent-in-transaction',
            transaction: true,
            handle: async ({ db }) =>
              (
                await Promise.all([
                  db.use((c) => backend.onConnection(c, backend.sql.sleepSpan)),
                  backend.query(backend.sql.sleepSpan),
                  backend.query(backend.sql.sleepSpan),
                ])
              ).flat(),
          },
          {
            method: 'POST',
            path: '/throw-in-transaction',
            transaction: true,
            handle: async ({ db }) => {
              await db.use((c) => backend.onConnection(c, backend.sql.insert(table, 'thrown')))
              throw new Error('the handler failed after writing')
            },
          },
          {
            method: 'POST',
            path: '/commit',
            transaction: true,
            handle: async ({ db }) => {
              await db.use((c) => backend.onConnection(c, backend.sql.insert(table, 'committed')))
              await backend.query(backend.sql.insert(table, 'committed'))
              // The facade's query joined the request's transaction.
              return (await backend.query(backend.sql.inTransaction))[0]
            },
          },
          {
            method: 'POST',
            path: '/kysely-then-throw',
            transaction: true,
            handle: async () => {
              await backend.kysely.insertInto(table).values({ marker: 'kysely' }).execute()
              throw new Error('the handler failed after Kysely wrote')
            },
          },
          {
            method: 'POST',
            path: '/swallowed-failure',
            transaction: true,
            handle: async () => {
              await backend.query(backend.sql.insert(table, 'swallowed'))
              await backend.query('SELECT * FROM no_such_table_here').catch(() => undefined)
              return { ok: true }
            },
          },
          {
            method: 'GET',
            path: '/slow-transaction',
            handle: async () => {
              await backend.query('BEGIN')
              await backend.query(backend.sql.insert(table, 'aborted'))
              slowTransactionBegun?.()
              await backend.query(backend.sql.sleep(0.3))
              await backend.query('COMMIT')
              return { ok: true }
            },
          },
        ]
        server = await framework.serve(backend.facade, routes)
        base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
      })

      afterAll(async () => {
        // fetch keeps its sockets alive: close them, or close() waits out the keep-alive timeout.
        await new Promise<void>((resolve) => {
          server?.close(() => resolve())
          server?.closeAllConnections()
        })
        await backend?.query(`DROP TABLE IF EXISTS ${table}`).catch(() => {})
        await backend?.end()
        await monitor?.close()
        processErrors?.stop()
        expect(processErrors?.errors ?? []).toEqual([])
      })

      it('serves 1000 concurrent requests through a pool of 10, the server never seeing more', async () => {
        const statuses: number[] = []
        const started = performance.now()
        const peak = await monitor.peakDuring(async () => {
          const responses = await Promise.all(
            Array.from({ length: 1000 }, () => fetch(`${base}/ping`)),
          )
          for (const response of responses) {
            statuses.push(response.status)
            await response.arrayBuffer()
          }
        })
        expect(statuses.filter((s) => s !== 200)).toEqual([])
        expect(peak).toBeGreaterThan(0)
        expect(peak).toBeLessThanOrEqual(POOL_SIZE)
        const stats = await settled()
        expect(stats.leased).toBe(0)
        expect(stats.acquired).toBeGreaterThanOrEqual(1000)
        console.log(
          `[scope] ${framework.name} on ${status.label}: 1000 requests in ${Math.round(performance.now() - started)} ms, peak server sessions ${peak}, pool ${JSON.stringify({ total: stats.total, acquired: stats.acquired, leased: stats.leased })}`,
        )
      })

      it('returns the connection of 200 requests aborted mid-transaction and leaves none open', async () => {
        const before = core.stats()
        // The clients abort as soon as the first handler is inside its transaction, not after a
        // fixed delay: on a loaded machine a fixed 150 ms could pass before any handler ran, and
        // no COMMIT can come sooner than the 0.3 s sleep after that first INSERT.
        const abort = new AbortController()
        slowTransactionBegun = () => abort.abort()
        const deadline = setTimeout(() => abort.abort(), 10_000)
        const aborted = await Promise.allSettled(
          Array.from({ length: 200 }, () =>
            fetch(`${base}/slow-transaction`, { signal: abort.signal }),
          ),
        ).finally(() => {
          clearTimeout(deadline)
          slowTransactionBegun = undefined
        })
        expect(aborted.filter((r) => r.status === 'fulfilled')).toEqual([])
        const stats = await settled()
        expect(stats.leased).toBe(0)
        expect(stats.acquired).toBeGreaterThan(before.acquired)
        expect(await monitor.inTransaction()).toBe(0)
        // The handlers' COMMIT came after the rollback and was refused: nothing was written.
        expect(await rowsOf('aborted')).toBe(0)
        console.log(
          `[scope] ${framework.name} on ${status.label}: 200 aborted requests borrowed ${stats.acquired - before.acquired} times; leased ${stats.leased}, open transactions 0, rows 0`,
        )
      })

      it('rolls back a transaction whose handler throws, and the next requests find clean connections', async () => {
        const thrown = await getJson(base, '/throw-in-transaction', json({ fail: true }))
        expect(thrown.status).toBe(500)
        expect(await rowsOf('thrown')).toBe(0)
        const checks = await Promise.all(
          Array.from({ length: 2 * POOL_SIZE }, () => getJson(base, '/in-transaction')),
        )
        for (const check of checks) {
          expect(check.status).toBe(200)
          expect(Boolean((check.body as { intx: unknown }).intx)).toBe(false)
        }
        expect((await settled()).leased).toBe(0)
        expect(await monitor.inTransaction()).toBe(0)
      })

      it("joins an ORM's queries to the request's transaction, without passing it anything", async () => {
        const response = await getJson(base, '/kysely-then-throw', json({}))
        expect(response.status).toBe(500)
        expect(await rowsOf('kysely')).toBe(0)
        expect((await settled()).leased).toBe(0)
      })

      it('commits a transactional route before the response leaves', async () => {
        const response = await getJson(base, '/commit', json({ rows: 2 }))
        expect(response.status).toBe(200)
        expect(Boolean((response.body as { intx: unknown }).intx)).toBe(true)
        // Read at once from another connection: the commit happened before the response.
        expect(await rowsOf('committed')).toBe(2)
      })

      it(
        kind === 'postgres'
          ? 'answers 500 when PostgreSQL turns the COMMIT of a failed transaction into a rollback'
          : 'commits what succeeded after a failed statement, as MariaDB does',
        async () => {
          const response = await getJson(base, '/swallowed-failure', json({}))
          if (kind === 'postgres') {
            expect(response.status).toBe(500)
            expect(JSON.stringify(response.body)).toMatch(/LIFEGUARD_TRANSACTION_FAILED/)
            expect(await rowsOf('swallowed')).toBe(0)
          } else {
            expect(response).toEqual({ status: 200, body: { ok: true } })
            expect(await rowsOf('swallowed')).toBe(1)
          }
          expect((await settled()).leased).toBe(0)
        },
      )

      it('runs two concurrent queries of one request on different connections', async () => {
        const response = await getJson(base, '/concurrent')
        expect(response.status).toBe(200)
        const list = spans(response.body)
        expect(list).toHaveLength(2)
        expect(list[0]!.pid).not.toBe(list[1]!.pid)
        expectNoSharedMoment(list)
        expect((await settled()).leased).toBe(0)
      })

      it('runs concurrent queries of a transactional request in turn on its connection', async () => {
        const response = await getJson(base, '/concurrent-in-transaction')
        expect(response.status).toBe(200)
        const list = spans(response.body)
        expect(list).toHaveLength(3)
        expect(new Set(list.map((s) => s.pid)).size).toBe(1)
        expectNoSharedMoment(list)
      })

      if (kind === 'postgres') {
        it('with pipelining on, no statement shared from outside ever runs on a request’s connection, and concurrent queries of a scope still work', async () => {
          // A burst from outside any request fills the pool: its autocommit statements pipeline.
          const burst = Array.from({ length: 3000 }, (_, i) =>
            backend.query(`${SPAN} FROM pg_sleep(0.001) WHERE $1::int >= 0`, [i]),
          )
          let peak = 0
          const sampler = setInterval(() => {
            peak = Math.max(peak, core.stats().pipelined)
          }, 1)
          try {
            // Meanwhile requests with and without a transaction, and scopes of the pool's own API,
            // four at a time: each may hold two connections at once (its own and an overflow),
            // and more scopes than that at once could hold them all and wait on each other.
            const direct = async (transaction: boolean) => {
              const scope = core.openScope({ transaction })
              try {
                const body = await scope.run(() => scopeSpan(backend, transaction))
                await scope.end('commit')
                return { status: 200, body: body as unknown }
              } catch (error) {
                await scope.end('rollback')
                throw error
              }
            }
            const answered: Array<{ status: number; body: unknown }> = []
            for (let wave = 0; wave < 10; wave++) {
              answered.push(
                ...(await Promise.all([
                  getJson(base, '/scope-span'),
                  getJson(base, '/scope-span-transaction'),
                  direct(wave % 2 === 0),
                  wave % 2 === 0 ? getJson(base, '/scope-span') : direct(true),
                ])),
              )
            }
            const outside = (await Promise.all(burst)).flat() as unknown as SpanRow[]
            expect(peak).toBeGreaterThan(0)
            for (const response of answered) expect(response.status).toBe(200)
            const scopes = answered.map((r) => r.body as ScopeSpan)
            for (const scope of scopes) {
              // One connection for the request's sequential statements, in its transaction if any.
              expect(new Set(scope.pids).size).toBe(1)
              if (scope.transaction) expect(new Set(scope.txids).size).toBe(1)
              // The concurrent pair: both answered; in a transaction both on the request's
              // connection, without one the second on a connection of the pool's.
              expect(scope.overflow.map((r) => r.n)).toEqual([1, 2])
              const pairPids = scope.overflow.map((r) => r.pid)
              expect(pairPids).toContain(scope.pids[0])
              expect(new Set(pairPids).size).toBe(scope.transaction ? 1 : 2)
            }
            // No statement of the burst ran on a request's connection while the request had it.
            let clashes = 0
            for (const scope of scopes) {
              for (const row of outside) {
                if (Number(row.pid) !== scope.pids[0]) continue
                if (Number(row.t1) > scope.start && Number(row.t0) < scope.end) clashes++
              }
            }
            expect(clashes).toBe(0)
            expect(outside).toHaveLength(3000)
          } finally {
            clearInterval(sampler)
            await Promise.allSettled(burst)
          }
          const stats = await settled()
          expect(stats.leased).toBe(0)
          expect(stats.pipelined).toBe(0)
          expect(await monitor.inTransaction()).toBe(0)
          console.log(
            `[scope] ${framework.name}: 40 scopes during a burst of 3000 pipelined statements (peak pipelined ${peak}), no statement on a scope's connection`,
          )
        })
      }

      it('borrows nothing for a request that never queries', async () => {
        const before = core.stats().acquired
        for (let i = 0; i < 20; i++) {
          expect(await getJson(base, '/nothing')).toEqual({ status: 200, body: { ok: true } })
        }
        expect(core.stats().acquired).toBe(before)
      })
    })
  }
}
