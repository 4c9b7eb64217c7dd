import mysql2 from 'mysql2'
import mysql2Promise from 'mysql2/promise'
import { beforeAll, expect, it, vi } from 'vitest'
import facade, { lifeguardOf } from '../../src/compat/mysql2.js'
import facadePromise from '../../src/compat/mysql2-promise.js'
import { MYSQL_URL } from '../integrations/support.js'
import { bundleFacade, runModuleScript } from '../support/bundle.js'
import { closedPort } from '../support/ports.js'
import { pendingAfter } from '../support/promises.js'
import { describeOnServer, probe } from '../support/servers.js'
import { twin } from '../support/twin.js'

// mysql2's pool, observed: each behaviour runs on mysql2's own createPool and on lifeguard/mysql2's,
// and both must see the same. The letters are issue 14's.

/** The two modules, typed as mysql2's callback API. */
const MODULES = { driver: mysql2, facade: facade as unknown as typeof mysql2 }
const PROMISE_MODULES = {
  driver: mysql2Promise,
  facade: facadePromise as unknown as typeof mysql2Promise,
}

/** What a mysql2 pool keeps of its connections, which code in the wild reads. */
interface PoolQueues {
  _allConnections: { length: number; toArray(): unknown[]; get(i: number): unknown }
  _freeConnections: { length: number; toArray(): unknown[]; get(i: number): unknown }
  _connectionQueue: { length: number }
}

function queues(pool: mysql2.Pool): PoolQueues {
  return pool as unknown as PoolQueues
}

function getConnection(pool: mysql2.Pool): Promise<mysql2.PoolConnection> {
  return new Promise((resolve, reject) =>
    pool.getConnection((error, connection) => (error ? reject(error) : resolve(connection))),
  )
}

/** Settles with the error or the connection `getConnection` calls back with, never rejects. */
function tryGetConnection(pool: mysql2.Pool): Promise<Error | mysql2.PoolConnection> {
  return new Promise((resolve) =>
    pool.getConnection((error, connection) => resolve(error ?? connection)),
  )
}

function query(connection: mysql2.Pool | mysql2.PoolConnection, sql: string): Promise<unknown> {
  return new Promise((resolve, reject) =>
    connection.query(sql, (error: unknown, rows: unknown) =>
      error ? reject(error) : resolve(rows),
    ),
  )
}

/** Settles with what `pool.end()` called back with. */
function end(pool: mysql2.Pool): Promise<unknown> {
  return new Promise((resolve) => pool.end((error?: unknown) => resolve(error ?? null)))
}

/** An error as a mysql2 user tells it apart: its message and mysql2's fields. */
function seen(error: unknown): Record<string, unknown> {
  const e = error as Record<string, unknown>
  return { message: e.message, code: e.code, errno: e.errno, sqlState: e.sqlState, fatal: e.fatal }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Kills a connection's server thread from another connection (`KILL <id>`, as a DBA or the
 * server's own timeout would), then waits up to 3 s for `lost`, the error the pool connection
 * reports, or says that none came.
 */
async function killAndAwait(threadId: number, lost: Promise<unknown>): Promise<unknown> {
  const killer = mysql2.createConnection(MYSQL_URL)
  try {
    await query(killer as unknown as mysql2.PoolConnection, `KILL ${threadId}`)
  } finally {
    killer.destroy()
  }
  return Promise.race([lost, sleep(3_000).then(() => ({ timedOut: "no 'error' within 3 s" }))])
}

/** A folder with the facade bundled into one file, for the child-process scenarios. */
let bundleDir: string | undefined

/**
 * Runs `body` as an ESM script in a fresh process, with `mysql` bound to mysql2 or to the
 * facade, and a `pool` made by it; returns the lines the script printed. It reports what reached
 * the process (an uncaught exception or an unhandled rejection) and exits; killed after 15 s.
 */
function runScript(side: 'driver' | 'facade', body: string): Promise<string[]> {
  const from = side === 'driver' ? 'mysql2' : './lifeguard-mysql2.mjs'
  const script = `import mysql from ${JSON.stringify(from)}
const pool = mysql.createPool({ uri: ${JSON.stringify(MYSQL_URL)}, connectionLimit: 1 })
const report = (kind) => (e) => { console.log(kind + ': ' + e.message); pool.end(() => process.exit(0)) }
process.on('uncaughtException', report('uncaughtException'))
process.on('unhandledRejection', report('unhandledRejection'))
${body}`
  return runModuleScript(bundleDir!, script).then((end) => end.lines)
}

describeOnServer(await probe('mysql'), "lifeguard/mysql2's pool, twinned with mysql2's", () => {
  beforeAll(async () => {
    bundleDir = await bundleFacade('mysql2')
  })

  for (const [what, body] of [
    [
      'getConnection',
      // Lent a free connection: mysql2 calls back on a tick of its own. (Lent a new one, mysql2
      // calls back inside its packet parser, which takes the exception for a fatal connection error.)
      "pool.getConnection((e, c) => { c.release(); pool.getConnection(() => { throw new Error('thrown in the callback') }) })",
    ],
    [
      'a failed pool.query',
      // A closed pool fails the query in getConnection's callback, which the facade calls.
      "pool.end(() => { pool.query('SELECT 1', () => { throw new Error('thrown in the callback') }) })",
    ],
  ] as const) {
    twin(
      `G (mysql2). an exception thrown in ${what}'s callback is an uncaughtException, as with mysql2`,
      MODULES,
      async (_mysql, side) => runScript(side, body),
      { timeout: 20_000 },
    )
  }

  const throwInEnd =
    "pool.end(() => { console.log('end callback'); throw new Error('thrown in the end callback') })"
  const stillRunning = "setTimeout(() => { console.log('still running'); process.exit(0) }, 500)"
  for (const [what, body] of [
    ['inside a query callback', `pool.query('SELECT 1', () => ${throwInEnd}); ${stillRunning}`],
    [
      'later, with the pool idle',
      `pool.query('SELECT 1', () => setTimeout(() => ${throwInEnd}, 20)); ${stillRunning}`,
    ],
    ['with no connection ever opened', `setTimeout(() => ${throwInEnd}, 20); ${stillRunning}`],
  ] as const) {
    twin(
      `regression: G (mysql2). an exception thrown in end()'s callback (${what}) became an unhandledRejection`,
      MODULES,
      async (_mysql, side) => runScript(side, body),
      { timeout: 20_000 },
    )
  }

  it("regression: every release paid for a 'reset' event and a tick: the facade listens to 'reset' only while callers wait", async () => {
    const pool = facade.createPool({ uri: MYSQL_URL, connectionLimit: 1 })
    const core = lifeguardOf(pool) as unknown as { listening(event: string): boolean }
    const listening = () => core.listening('reset')
    const events: string[] = []
    pool.on('enqueue', () => events.push('enqueue'))
    const first = await getConnection(pool)
    first.release()
    await sleep(20)
    const idle = listening()
    const lent = await getConnection(pool)
    const waiting = getConnection(pool)
    await sleep(20)
    const whileWaiting = listening()
    lent.release()
    const served = await waiting
    const afterServed = listening()
    served.release()
    await sleep(20)
    await end(pool)
    expect({ idle, whileWaiting, afterServed, events }).toEqual({
      idle: false,
      whileWaiting: true,
      afterServed: false,
      events: ['enqueue'],
    })
  })

  it('regression: a getConnection during the maxIdle sweep waited in the queue behind it', async () => {
    const pool = facade.createPool({
      uri: MYSQL_URL,
      connectionLimit: 3,
      maxIdle: 1,
      lifeguard: { prePing: 0 },
    })
    const events: string[] = []
    pool.on('enqueue', () => events.push('enqueue'))
    const held = [await getConnection(pool), await getConnection(pool), await getConnection(pool)]
    for (const connection of held) connection.release()
    const core = lifeguardOf(pool)
    // The sweep (once a second) borrows the idle connections; prePing: 0 pings each, so it holds
    // them for a round trip. A caller comes as the sweep is lent the first of them.
    const { connection, ms } = await new Promise<{
      connection: mysql2.PoolConnection
      ms: number
    }>((resolve, reject) =>
      core.once('acquire', () => {
        const started = performance.now()
        pool.getConnection((error, connection) =>
          error ? reject(error) : resolve({ connection, ms: performance.now() - started }),
        )
      }),
    )
    const kept = connection === held[2]
    connection.release()
    await vi.waitFor(() => expect(queues(pool)._allConnections.length).toBe(1), { timeout: 3_000 })
    await end(pool)
    expect({ events, kept }).toEqual({ events: [], kept: true })
    expect(ms).toBeLessThan(1_000)
  })

  twin(
    "J. a caller who has to wait makes the pool emit 'enqueue', and a release hands it the connection",
    MODULES,
    async (mysql) => {
      const pool = mysql.createPool({ uri: MYSQL_URL, connectionLimit: 1 })
      const events: string[] = []
      for (const event of ['connection', 'acquire', 'enqueue', 'release'] as const) {
        pool.on(event as 'connection', () => events.push(event))
      }
      const first = await getConnection(pool)
      const waiting = getConnection(pool)
      expect(await pendingAfter(waiting, 100)).toBe(true)
      const beforeRelease = [...events]
      first.release()
      const second = await waiting
      const same = second === first
      second.release()
      await end(pool)
      return { beforeRelease, events, same }
    },
  )

  twin(
    'J. end() lets a running query finish, and callers still waiting get "Pool is closed."',
    MODULES,
    async (mysql) => {
      const pool = mysql.createPool({ uri: MYSQL_URL, connectionLimit: 1 })
      const connection = await getConnection(pool)
      const running = query(connection, 'SELECT SLEEP(0.3) AS slept, 7 AS n')
      const waiting = query(pool, 'SELECT 1 AS waited').catch((error: unknown) => seen(error))
      await sleep(50)
      const started = performance.now()
      const ended = end(pool)
      const afterEnd = await query(pool, 'SELECT 2').catch((error: unknown) => seen(error))
      const rows = await running
      const endError = await ended
      // The end waited for the running query only, not for any timeout.
      expect(performance.now() - started).toBeLessThan(3_000)
      const lentAfterEnd = await query(connection, 'SELECT 3').catch((error: unknown) =>
        seen(error),
      )
      return { rows, waiting: await waiting, afterEnd, endError, lentAfterEnd }
    },
  )

  twin(
    'J. a caller whose connection is still opening at end() gets "Pool is closed."',
    MODULES,
    async (mysql) => {
      const pool = mysql.createPool({ uri: MYSQL_URL, connectionLimit: 1 })
      const opening = query(pool, 'SELECT 1').catch((error: unknown) => seen(error))
      const endError = await end(pool)
      return { opening: await opening, endError }
    },
  )

  twin(
    'J. a caller who comes while the released connection is still being reset gets it, without waiting',
    MODULES,
    async (mysql) => {
      const pool = mysql.createPool({ uri: MYSQL_URL, connectionLimit: 1 })
      const events: string[] = []
      pool.on('enqueue', () => events.push('enqueue'))
      // A query with a timeout: mysql2 releases its connection before the callback runs, and
      // lifeguard's reset of it is still under way there.
      const rows = await new Promise((resolve, reject) => {
        pool.query({ sql: 'SELECT 1 AS first', timeout: 16_000 }, (error: unknown) => {
          if (error) return reject(error)
          pool.query('SELECT 2 AS second', (e: unknown, r: unknown) => (e ? reject(e) : resolve(r)))
        })
      })
      await end(pool)
      return { rows, events }
    },
    { timeout: 10_000 },
  )

  twin(
    'J. mysql2/promise: end() resolves and the running query still gets its rows',
    PROMISE_MODULES,
    async (mysql) => {
      const pool = mysql.createPool({ uri: MYSQL_URL, connectionLimit: 1 })
      const connection = await pool.getConnection()
      const running = connection.query('SELECT SLEEP(0.2) AS slept, 8 AS n')
      const waiting = pool.query('SELECT 1').catch((error: unknown) => seen(error))
      await sleep(50)
      await pool.end()
      const [rows] = await running
      return { rows, waiting: await waiting }
    },
  )

  twin(
    "K. a connection the server kills emits the fatal 'error' on the lent connection, and the pool drops it",
    MODULES,
    async (mysql, side) => {
      const pool = mysql.createPool({ uri: MYSQL_URL, connectionLimit: 2 })
      const connection = await getConnection(pool)
      const events: string[] = []
      const lost = new Promise<Record<string, unknown>>((resolve) => {
        connection.on('end', () => events.push('end'))
        connection.on('error', (error) => {
          events.push('error')
          resolve(seen(error))
        })
      })
      const error = await killAndAwait(connection.threadId, lost)
      const all = queues(pool)._allConnections.length
      connection.release() // mysql2 ignores the release of a connection that left the pool
      const next = await getConnection(pool)
      const replaced = next !== connection && next.threadId !== connection.threadId
      const rows = await query(next, 'SELECT 1 AS one')
      next.release()
      const after = {
        all: queues(pool)._allConnections.length,
        free: queues(pool)._freeConnections.length,
      }
      if (side === 'facade') {
        // The lifeguard pool closed the killed connection too: one connection is left.
        await vi.waitFor(() => expect(lifeguardOf(pool).stats().total).toBe(1), { timeout: 2_000 })
      }
      await end(pool)
      return { events, error, all, replaced, rows, after }
    },
  )

  twin(
    "K. a free connection the server kills emits the fatal 'error' too, and leaves the pool",
    MODULES,
    async (mysql) => {
      const pool = mysql.createPool({ uri: MYSQL_URL, connectionLimit: 2 })
      const connection = await getConnection(pool)
      const lost = new Promise<Record<string, unknown>>((resolve) => {
        connection.on('error', (error) => resolve(seen(error)))
      })
      connection.release()
      const error = await killAndAwait(connection.threadId, lost)
      const counts = {
        all: queues(pool)._allConnections.length,
        free: queues(pool)._freeConnections.length,
      }
      const rows = await query(pool, 'SELECT 1 AS one')
      await end(pool)
      return { error, counts, rows }
    },
  )

  let refusedPort: Promise<number> | undefined
  twin(
    "L. a connect error reaches pool.query and getConnection at once, with mysql2's own error",
    MODULES,
    async (mysql) => {
      const url = new URL(MYSQL_URL)
      // One port for both runs: the message names it.
      refusedPort ??= closedPort()
      const refused = `mysql://root@127.0.0.1:${await refusedPort}/test`
      url.username = 'lifeguard_no_such_user'
      url.password = 'wrong'
      const denied = url.toString()
      const badDb = new URL(MYSQL_URL)
      badDb.pathname = '/lifeguard_no_such_database'
      const observed: Record<string, unknown> = {}
      for (const [name, uri] of [
        ['refused', refused],
        ['denied', denied],
        ['badDb', badDb.toString()],
      ] as const) {
        const pool = mysql.createPool({ uri, connectionLimit: 1 })
        const started = performance.now()
        const viaQuery = await query(pool, 'SELECT 1').catch((error: unknown) => seen(error))
        const viaGet = await tryGetConnection(pool)
        expect(performance.now() - started).toBeLessThan(3_000)
        observed[name] = { viaQuery, viaGet: seen(viaGet) }
        await end(pool)
      }
      return observed
    },
    { timeout: 15_000 },
  )

  twin(
    'regression: with a wrong password, the callers queued behind connectionLimit waited the whole acquireTimeout',
    MODULES,
    async (mysql) => {
      const url = new URL(MYSQL_URL)
      url.username = 'root'
      url.password = 'lifeguard_wrong_password'
      const pool = mysql.createPool({ uri: url.toString(), connectionLimit: 2 })
      const started = performance.now()
      const results = await Promise.all(Array.from({ length: 50 }, () => tryGetConnection(pool)))
      const elapsed = performance.now() - started
      expect(elapsed).toBeLessThan(5_000)
      const codes = new Set(results.map((r) => (r as { code?: unknown }).code))
      await end(pool)
      return { codes: [...codes], count: results.length }
    },
    { timeout: 15_000 },
  )

  twin(
    'N. pool.config.connectionLimit lowered after createPool() makes the next caller wait',
    MODULES,
    async (mysql) => {
      const pool = mysql.createPool({ uri: MYSQL_URL, connectionLimit: 3 })
      const events: string[] = []
      pool.on('enqueue', () => events.push('enqueue'))
      pool.config.connectionLimit = 1
      const first = await getConnection(pool)
      const waiting = getConnection(pool)
      const waited = await pendingAfter(waiting, 150)
      first.release()
      const second = await waiting
      const same = second === first
      second.release()
      const all = queues(pool)._allConnections.length
      await end(pool)
      return { events, waited, same, all }
    },
  )

  twin(
    'N. waitForConnections: false fails at once with "No connections available."',
    MODULES,
    async (mysql) => {
      const pool = mysql.createPool({
        uri: MYSQL_URL,
        connectionLimit: 1,
        waitForConnections: false,
      })
      const events: string[] = []
      pool.on('enqueue', () => events.push('enqueue'))
      const first = await getConnection(pool)
      const started = performance.now()
      const refused = seen(await tryGetConnection(pool))
      expect(performance.now() - started).toBeLessThan(500)
      first.release()
      await end(pool)
      return { refused, events }
    },
  )

  twin(
    "N. pool options in a URL's query string count (connectionLimit, waitForConnections)",
    MODULES,
    async (mysql) => {
      const url = new URL(MYSQL_URL)
      url.search = '?connectionLimit=1&waitForConnections=false'
      const pool = mysql.createPool(url.toString())
      const limit = pool.config.connectionLimit
      const first = await getConnection(pool)
      const refused = seen(await tryGetConnection(pool))
      first.release()
      await end(pool)
      return { limit, refused }
    },
  )

  twin(
    'N. queueLimit: a full queue refuses the next caller, and a negative one refuses all who would wait',
    MODULES,
    async (mysql) => {
      const observed: Record<string, unknown> = {}
      for (const queueLimit of [1, -1]) {
        const pool = mysql.createPool({ uri: MYSQL_URL, connectionLimit: 1, queueLimit })
        const first = await getConnection(pool)
        const waiting = queueLimit > 0 ? tryGetConnection(pool) : undefined
        const refused = seen(await tryGetConnection(pool))
        const queued = queues(pool)._connectionQueue.length
        first.release()
        const served = waiting === undefined ? undefined : (await waiting) instanceof Error
        if (waiting !== undefined) ((await waiting) as mysql2.PoolConnection).release()
        await end(pool)
        observed[queueLimit] = { refused, queued, served }
      }
      return observed
    },
  )

  twin(
    'N. maxIdle: idle connections above it are closed',
    MODULES,
    async (mysql) => {
      const pool = mysql.createPool({
        uri: MYSQL_URL,
        connectionLimit: 3,
        maxIdle: 1,
        idleTimeout: 60_000,
      })
      const held = [await getConnection(pool), await getConnection(pool), await getConnection(pool)]
      // Released in this order, within the same millisecond: mysql2 closes the oldest first.
      for (const connection of held) connection.release()
      const afterRelease = {
        all: queues(pool)._allConnections.length,
        free: queues(pool)._freeConnections.length,
      }
      // mysql2 sweeps once a second.
      await sleep(2_500)
      const afterSweep = {
        all: queues(pool)._allConnections.length,
        free: queues(pool)._freeConnections.length,
      }
      const next = await getConnection(pool)
      const keptNewest = next === held[2]
      next.release()
      const rows = await query(pool, 'SELECT 1 AS one')
      await end(pool)
      return { afterRelease, afterSweep, keptNewest, rows }
    },
    { timeout: 10_000 },
  )

  twin(
    "N. without gracefulEnd, a lent connection's end() releases it and emits mysql2's 'warn'",
    MODULES,
    async (mysql) => {
      const pool = mysql.createPool({ uri: MYSQL_URL, connectionLimit: 1 })
      const connection = await getConnection(pool)
      const warnings: string[] = []
      connection.on('warn' as 'end', (warning: Error) => warnings.push(warning.message))
      const ended = new Promise((resolve) => connection.end((error) => resolve(error ?? null)))
      const counts = {
        all: queues(pool)._allConnections.length,
        free: queues(pool)._freeConnections.length,
      }
      const endError = await ended
      const next = await getConnection(pool)
      const same = next === connection
      next.release()
      await end(pool)
      return { deprecated: warnings.map((w) => w.split('.')[0]), counts, endError, same }
    },
  )

  twin(
    "N. gracefulEnd: a lent connection's end() closes it after its running query and leaves the pool",
    MODULES,
    async (mysql) => {
      const pool = mysql.createPool({ uri: MYSQL_URL, connectionLimit: 1, gracefulEnd: true })
      const connection = await getConnection(pool)
      const running = query(connection, 'SELECT SLEEP(0.2) AS slept')
      const ended = new Promise((resolve) => connection.end((error) => resolve(error ?? null)))
      const allAtOnce = queues(pool)._allConnections.length
      const rows = await running
      const endError = await ended
      const next = await getConnection(pool)
      const replaced = next !== connection && next.threadId !== connection.threadId
      next.release()
      await end(pool)
      return { allAtOnce, rows, endError, replaced }
    },
  )

  twin(
    "O. _allConnections, _freeConnections and _connectionQueue show the pool's real state",
    MODULES,
    async (mysql) => {
      const pool = mysql.createPool({ uri: MYSQL_URL, connectionLimit: 2 })
      const q = queues(pool)
      const counts = () => ({
        all: q._allConnections.length,
        free: q._freeConnections.length,
        queued: q._connectionQueue.length,
      })
      const steps: Record<string, unknown> = { empty: counts() }
      const a = await getConnection(pool)
      const b = await getConnection(pool)
      steps.twoLent = counts()
      a.release()
      steps.oneReleased = counts()
      steps.freeIsA = q._freeConnections.get(0) === a && q._freeConnections.toArray()[0] === a
      const again = await getConnection(pool)
      steps.reused = again === a
      const waiting = getConnection(pool)
      steps.oneWaiting = counts()
      b.release()
      const c = await waiting
      steps.handedOver = counts()
      c.destroy()
      steps.oneDestroyed = counts()
      again.release()
      steps.end = counts()
      await end(pool)
      return steps
    },
  )

  it("O. the facade's views refuse writes with an error naming the field and the method", async () => {
    const pool = facade.createPool({ uri: MYSQL_URL, connectionLimit: 1 })
    const free = (pool as unknown as { _freeConnections: { push(x: unknown): void } })
      ._freeConnections
    expect(() => free.push({})).toThrow(
      /pool\._freeConnections\.push\(\): this is a read-only view/,
    )
    expect(queues(pool)._allConnections.toArray()).toEqual([])
    await end(pool)
  })
})
