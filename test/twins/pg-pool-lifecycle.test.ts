import net from 'node:net'
import pg from 'pg'
import { afterAll, beforeAll, expect } from 'vitest'
import facade from '../../src/compat/pg.js'
import { PG_URL } from '../integrations/support.js'
import { pendingAfter } from '../support/promises.js'
import { describeOnServer, probe } from '../support/servers.js'
import { twin } from '../support/twin.js'

// The pg Pool's lifecycle, twinned: each scenario runs on pg's own Pool and on lifeguard/pg's,
// and what a pg user can observe must agree. Letters are issue 14's.

/** What a scenario uses of a pg module: its Pool. */
interface PgLike {
  Pool: typeof pg.Pool
}

const MODULES = { driver: pg as PgLike, facade: facade as unknown as PgLike }

/** A port on 127.0.0.1 that nothing listens on (a listener opened and closed). */
let closedPort = 0
/** A listener on 127.0.0.1 that accepts and never answers. */
let silent: net.Server
const silentSockets = new Set<net.Socket>()

beforeAll(async () => {
  const probeServer = net.createServer().listen(0, '127.0.0.1')
  await new Promise((resolve) => probeServer.once('listening', resolve))
  closedPort = (probeServer.address() as net.AddressInfo).port
  await new Promise((resolve) => probeServer.close(resolve))
  silent = net.createServer((socket) => {
    silentSockets.add(socket)
    socket.on('close', () => silentSockets.delete(socket))
  })
  silent.listen(0, '127.0.0.1')
  await new Promise((resolve) => silent.once('listening', resolve))
})

afterAll(async () => {
  for (const socket of silentSockets) socket.destroy()
  await new Promise((resolve) => silent.close(resolve))
})

function urlWith(change: { user?: string; port?: number; database?: string }): string {
  const url = new URL(PG_URL)
  if (change.user !== undefined) url.username = change.user
  if (change.port !== undefined) url.port = String(change.port)
  if (change.database !== undefined) url.pathname = `/${change.database}`
  return url.toString()
}

/** What a pg user tests of an error. */
function seen(error: unknown) {
  const e = error as { name?: string; message?: string; code?: string; cause?: Error }
  return {
    name: e.name,
    message: e.message,
    code: e.code,
    cause: e.cause === undefined ? undefined : e.cause.message,
  }
}

/** Runs `fn`, returning its error and how long it took to fail. */
async function failure(fn: () => Promise<unknown>): Promise<{ error: unknown; ms: number }> {
  const started = performance.now()
  try {
    await fn()
  } catch (error) {
    return { error, ms: performance.now() - started }
  }
  throw new Error('expected a failure')
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describeOnServer(await probe('postgres'), 'pg Pool lifecycle, twinned with pg', () => {
  twin(
    'A. a refused connect reaches the connect() caller at once, with its ECONNREFUSED',
    MODULES,
    async (m) => {
      const pool = new m.Pool({ connectionString: urlWith({ port: closedPort }) })
      const { error, ms } = await failure(() => pool.connect())
      // pg fails in a few ms; the facade used to retry for 30 s.
      expect(ms).toBeLessThan(1_000)
      const counts = [pool.totalCount, pool.idleCount, pool.waitingCount]
      await pool.end()
      return { error: seen(error), counts }
    },
  )

  twin(
    'A. a wrong database name reaches the query() caller at once, with its 3D000',
    MODULES,
    async (m) => {
      const pool = new m.Pool({ connectionString: urlWith({ database: 'lifeguard_no_such_db' }) })
      const { error, ms } = await failure(() => pool.query('SELECT 1'))
      expect(ms).toBeLessThan(1_000)
      expect(error).toBeInstanceOf(pg.DatabaseError)
      const total = pool.totalCount
      await pool.end()
      return { error: seen(error), total }
    },
  )

  twin(
    'A. a wrong user reaches both of two waiting callers, each with its own connect',
    MODULES,
    async (m) => {
      const pool = new m.Pool({ connectionString: urlWith({ user: 'lifeguard_no_such_user' }) })
      const started = performance.now()
      const results = await Promise.allSettled([pool.query('SELECT 1'), pool.connect()])
      expect(performance.now() - started).toBeLessThan(1_000)
      await pool.end()
      return results.map((r) => (r.status === 'rejected' ? seen(r.reason) : 'fulfilled'))
    },
  )

  twin(
    "A. a connect that times out rejects with pg-pool's connection-timeout error",
    MODULES,
    async (m) => {
      const port = (silent.address() as net.AddressInfo).port
      const pool = new m.Pool({
        connectionString: urlWith({ port }),
        connectionTimeoutMillis: 300,
      })
      const { error, ms } = await failure(() => pool.connect())
      expect(ms).toBeGreaterThanOrEqual(250)
      expect(ms).toBeLessThan(1_500)
      const total = pool.totalCount
      await pool.end()
      return { error: seen(error), total }
    },
  )

  twin(
    'A. a caller queued behind a full pool times out with "timeout exceeded when trying to connect"',
    MODULES,
    async (m) => {
      const pool = new m.Pool({ connectionString: PG_URL, max: 1, connectionTimeoutMillis: 300 })
      const held = await pool.connect()
      const { error, ms } = await failure(() => pool.connect())
      expect(ms).toBeGreaterThanOrEqual(250)
      expect(ms).toBeLessThan(1_500)
      const counts = [pool.totalCount, pool.idleCount, pool.waitingCount]
      held.release()
      await pool.end()
      return { error: seen(error), counts }
    },
  )

  twin('B. a failing onConnect reaches the caller once, with no retry', MODULES, async (m) => {
    let calls = 0
    const pool = new m.Pool({
      connectionString: PG_URL,
      onConnect: async () => {
        calls++
        throw new Error('SET search_path failed')
      },
    } as pg.PoolConfig)
    const { error, ms } = await failure(() => pool.query('SELECT 1'))
    expect(ms).toBeLessThan(1_000)
    await sleep(300)
    const counts = [calls, pool.totalCount, pool.idleCount]
    await pool.end()
    return { error: seen(error), counts }
  })

  twin('C. end() lets a query issued just before it finish', MODULES, async (m) => {
    const pool = new m.Pool({ connectionString: PG_URL })
    const query = pool.query('SELECT $1::text AS name', ['brianc'])
    await pool.end()
    const { rows } = await query
    return { rows, total: pool.totalCount, ended: pool.ended }
  })

  twin('C. end() lets twenty pending queries finish', MODULES, async (m) => {
    const pool = new m.Pool({ connectionString: PG_URL, max: 20 })
    let completed = 0
    const queries = Array.from({ length: 20 }, () =>
      pool.query('SELECT 1 AS n').then(() => completed++),
    )
    await pool.end()
    await Promise.all(queries)
    return { completed, total: pool.totalCount }
  })

  twin('C. a caller queued behind a full pool before end() is never served', MODULES, async (m) => {
    const pool = new m.Pool({ connectionString: PG_URL, max: 1 })
    const held = await pool.connect()
    const queued = pool.connect()
    const ended = pool.end()
    held.release()
    await ended
    const stillPending = await pendingAfter(queued, 300)
    return { stillPending, waiting: pool.waitingCount, total: pool.totalCount, ended: pool.ended }
  })

  twin(
    'C. with connectionTimeoutMillis, that queued caller times out instead',
    MODULES,
    async (m) => {
      const pool = new m.Pool({ connectionString: PG_URL, max: 1, connectionTimeoutMillis: 400 })
      const held = await pool.connect()
      const queued = pool.connect()
      const ended = pool.end()
      held.release()
      await ended
      const { error } = await failure(() => queued)
      return { error: seen(error), waiting: pool.waitingCount }
    },
  )

  twin(
    'D. waitingCount counts the callers queued behind a full pool, not those a client is opened for',
    MODULES,
    async (m) => {
      const pool = new m.Pool({ connectionString: PG_URL, max: 2 })
      const first = [pool.connect(), pool.connect()]
      const third = pool.connect()
      const counts = [[pool.waitingCount, pool.totalCount, pool.idleCount]]
      const clients = await Promise.all(first)
      counts.push([pool.waitingCount, pool.totalCount, pool.idleCount])
      clients[0]!.release()
      const last = await third
      counts.push([pool.waitingCount, pool.totalCount, pool.idleCount])
      clients[1]!.release()
      last.release()
      counts.push([pool.waitingCount, pool.totalCount, pool.idleCount])
      await pool.end()
      return counts
    },
  )

  twin('D. release(err) drops the client from totalCount at once', MODULES, async (m) => {
    const pool = new m.Pool({ connectionString: PG_URL })
    const client = await pool.connect()
    client.release(new Error('broken'))
    const counts = [pool.totalCount, pool.idleCount]
    await pool.end()
    return counts
  })

  twin(
    'D. client.end() then release() drops the client from totalCount at once',
    MODULES,
    async (m) => {
      const pool = new m.Pool({ connectionString: PG_URL })
      const client = await pool.connect()
      void client.end()
      client.release()
      const counts = [pool.totalCount, pool.idleCount]
      await pool.end()
      return counts
    },
  )

  twin('D. an idle timeout drops the client from totalCount when it fires', MODULES, async (m) => {
    const pool = new m.Pool({ connectionString: PG_URL, idleTimeoutMillis: 300 })
    const removed = new Promise<number>((resolve) =>
      pool.once('remove', () => resolve(pool.totalCount)),
    )
    ;(await pool.connect()).release()
    const before = [pool.totalCount, pool.idleCount]
    await sleep(450)
    const after = [pool.totalCount, pool.idleCount]
    const atRemove = await removed
    await pool.end()
    return { before, after, atRemove }
  })

  twin(
    'D. expiredCount counts a lent client past maxLifetimeSeconds until it is released',
    MODULES,
    async (m) => {
      const pool = new m.Pool({ connectionString: PG_URL, maxLifetimeSeconds: 0.3 })
      const client = await pool.connect()
      const before = pool.expiredCount
      await sleep(500)
      const lent = [pool.expiredCount, pool.totalCount]
      client.release()
      const released = [pool.expiredCount, pool.totalCount]
      await pool.end()
      return { before, lent, released }
    },
  )

  twin('E. min opens no connection at construction', MODULES, async (m) => {
    const pool = new m.Pool({ connectionString: PG_URL, min: 2 })
    await sleep(300)
    const total = pool.totalCount
    await pool.end()
    return { total }
  })

  twin('E. the idle timeout keeps min clients, counting lent ones', MODULES, async (m) => {
    const pool = new m.Pool({ connectionString: PG_URL, min: 2, idleTimeoutMillis: 200 })
    const clients = await Promise.all([pool.connect(), pool.connect(), pool.connect()])
    clients[0]!.release()
    clients[1]!.release()
    await sleep(500)
    const withOneLent = [pool.totalCount, pool.idleCount]
    clients[2]!.release()
    await sleep(500)
    const allIdle = [pool.totalCount, pool.idleCount]
    await pool.end()
    return { withOneLent, allIdle }
  })

  twin('E. min does not replace a client closed for maxUses', MODULES, async (m) => {
    const pool = new m.Pool({ connectionString: PG_URL, min: 1, maxUses: 1 })
    ;(await pool.connect()).release()
    await sleep(300)
    const total = pool.totalCount
    await pool.end()
    return { total }
  })

  twin('E. min does not replace a client closed for maxLifetimeSeconds', MODULES, async (m) => {
    const pool = new m.Pool({ connectionString: PG_URL, min: 1, maxLifetimeSeconds: 0.3 })
    ;(await pool.connect()).release()
    await sleep(700)
    const total = pool.totalCount
    await pool.end()
    return { total }
  })

  twin(
    'H. an idle client closes at idleTimeoutMillis, not up to half of it later',
    MODULES,
    async (m) => {
      const idle = 2_000
      const pool = new m.Pool({ connectionString: PG_URL, idleTimeoutMillis: idle })
      const client = await pool.connect()
      // Off the beat of a housekeeper started with the pool (the facade's reaped every idle / 2).
      await sleep(1_200)
      const released = performance.now()
      const removed = new Promise<number>((resolve) =>
        pool.once('remove', () => resolve(performance.now() - released)),
      )
      client.release()
      const after = await removed
      expect(after).toBeGreaterThanOrEqual(idle - 50)
      expect(after).toBeLessThan(idle + 400)
      const total = pool.totalCount
      await pool.end()
      return { total }
    },
    { timeout: 10_000 },
  )

  twin(
    "H. idleTimeoutMillis: 1 closes a query's client within 2 ms of its release (pg-pool's idle-timeout.js)",
    MODULES,
    async (m) => {
      const pool = new m.Pool({ connectionString: PG_URL, idleTimeoutMillis: 1 })
      const counts: number[][] = []
      for (let i = 0; i < 20; i++) {
        const query = pool.query('SELECT 1 AS n')
        counts.push([pool.totalCount, pool.idleCount])
        await query
        await sleep(2)
        counts.push([pool.totalCount, pool.idleCount])
      }
      await pool.end()
      return counts
    },
  )

  twin(
    "A. a connect opened for a caller who timed out does not reject a later query (pg-pool's connection-timeout.js)",
    MODULES,
    async (m) => {
      // The first connect fails after 300 ms; the second, opened for the queued caller, is
      // refused only after that caller timed out (1 s) and a query came in behind it.
      let connects = 0
      class SlowClient extends pg.Client {}
      const connect = pg.Client.prototype.connect as (this: pg.Client) => Promise<pg.Client>
      // pg-pool calls connect(callback); the facade's dialect calls connect().
      SlowClient.prototype.connect = function (this: pg.Client, callback?: (e?: Error) => void) {
        const n = connects++
        const done =
          n < 2
            ? new Promise<pg.Client>((_, reject) =>
                setTimeout(() => reject(new Error(`connect ${n} failed`)), n === 0 ? 300 : 1_200),
              )
            : connect.call(this)
        if (callback === undefined) return done
        done.then(() => callback(), callback)
        return undefined
      } as typeof pg.Client.prototype.connect
      const pool = new m.Pool({
        connectionString: PG_URL,
        Client: SlowClient,
        connectionTimeoutMillis: 1_000,
        max: 1,
      })
      const direct = pool.connect().then(
        () => 'fulfilled',
        (error: Error) => error.message,
      )
      const queued = await pool.connect().then(
        () => 'fulfilled',
        (error: Error) => error.message,
      )
      const { rows } = await pool.query('SELECT $1::text AS name', ['brianc'])
      const result = { direct: await direct, queued, rows, connects }
      await pool.end()
      return result
    },
    { timeout: 10_000 },
  )

  twin(
    'C. a client released while end() waits is closed, not lent to a queued caller',
    MODULES,
    async (m) => {
      const pool = new m.Pool({ connectionString: PG_URL, max: 2 })
      const [a, b] = await Promise.all([pool.connect(), pool.connect()])
      const removed: number[] = []
      pool.on('remove', () => removed.push(pool.totalCount))
      // A query issued before end(): it waits for a client.
      const query = pool.query('SELECT 1 AS n').then(
        () => 'fulfilled',
        (error: Error) => error.message,
      )
      const ended = pool.end()
      a.release()
      const afterRelease = [pool.totalCount, pool.idleCount]
      b.release()
      await ended
      return {
        afterRelease,
        query: await pendingAfter(query, 300),
        removed,
        total: pool.totalCount,
      }
    },
  )
})
