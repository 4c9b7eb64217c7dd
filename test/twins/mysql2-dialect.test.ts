import * as diagnostics from 'node:diagnostics_channel'
import mysql2 from 'mysql2'
import mysql2Promise from 'mysql2/promise'
import { expect } from 'vitest'
import facade from '../../src/compat/mysql2.js'
import promiseFacade from '../../src/compat/mysql2-promise.js'
import { MYSQL_URL } from '../integrations/support.js'
import { mysqlWireProxy } from '../support/mysql-wire-proxy.js'
import { closedPort } from '../support/ports.js'
import { describeOnServer, probe } from '../support/servers.js'
import { twin } from '../support/twin.js'

// What a mysql2 user sees of the MySQL dialect under lifeguard/mysql2 (issue 14, P and M), each
// scenario run on mysql2's own pool and on the facade.

/** The part of the mysql2 module a scenario uses: both mysql2 and the facade have it. */
type Mysql2Like = Pick<typeof mysql2, 'createPool'>

const MODULES: Record<'driver' | 'facade', Mysql2Like> = {
  driver: mysql2,
  facade: facade as unknown as Mysql2Like,
}

/** The statement lifeguard runs once per pool, on its first connection, to read the server's limits. */
const LIMITS = /@@GLOBAL\.max_connections/

function getConnection(pool: mysql2.Pool): Promise<mysql2.PoolConnection> {
  return new Promise((resolve, reject) =>
    pool.getConnection((error, connection) => (error ? reject(error) : resolve(connection))),
  )
}

function query(target: mysql2.Pool | mysql2.PoolConnection, sql: string): Promise<unknown> {
  return new Promise((resolve, reject) =>
    target.query(sql, (error, rows) => (error ? reject(error) : resolve(rows))),
  )
}

function end(pool: mysql2.Pool): Promise<void> {
  return new Promise((resolve, reject) => pool.end((error) => (error ? reject(error) : resolve())))
}

/** The tracing channels mysql2 publishes on, and the context fields a subscriber reads on each. */
const CHANNELS = {
  'mysql2:pool:connect': ['database', 'serverAddress', 'serverPort'],
  'mysql2:connect': ['database', 'serverAddress', 'serverPort', 'user'],
  'mysql2:query': ['query', 'values', 'database', 'serverAddress', 'serverPort'],
  'mysql2:execute': ['query', 'values', 'database', 'serverAddress', 'serverPort'],
} as const

/** What one subscriber saw on one channel: each event with its context's fields, and whether it carried an error. */
type Seen = Record<keyof typeof CHANNELS, Array<Record<string, unknown>>>

/** Subscribes to mysql2's tracing channels; `stop()` unsubscribes and gives what was published. */
function watchTracing(): { stop(): Seen; order: string[] } {
  const seen = Object.fromEntries(
    Object.keys(CHANNELS).map((name) => [name, []]),
  ) as unknown as Seen
  const order: string[] = []
  const stops: Array<() => void> = []
  for (const [name, fields] of Object.entries(CHANNELS) as Array<
    [keyof typeof CHANNELS, readonly string[]]
  >) {
    const channel = diagnostics.tracingChannel(name)
    const note = (event: string) => (context: object) => {
      const c = context as Record<string, unknown>
      const entry: Record<string, unknown> = { event }
      for (const field of fields) entry[field] = c[field]
      if (c.error !== undefined) entry.error = (c.error as { code?: unknown }).code ?? 'error'
      seen[name].push(entry)
      order.push(`${name} ${event}`)
    }
    // 'end' (the synchronous part returned) is left out: when it comes relative to the other
    // channels depends on how much of the work is synchronous, which a span does not show.
    const handlers = {
      start: note('start'),
      asyncStart: note('asyncStart'),
      asyncEnd: note('asyncEnd'),
      error: note('error'),
    }
    channel.subscribe(handlers as never)
    stops.push(() => channel.unsubscribe(handlers as never))
  }
  return {
    order,
    stop() {
      for (const stop of stops) stop()
      return seen
    },
  }
}

describeOnServer(await probe('mysql'), 'lifeguard/mysql2: the dialect, twinned with mysql2', () => {
  twin(
    'P. a new connection sends no statement of the pool’s own: one round trip fewer per connect',
    MODULES,
    async (m, side) => {
      const proxy = await mysqlWireProxy(MYSQL_URL)
      const pool = m.createPool({ uri: proxy.url, connectionLimit: 3 })
      try {
        // Three connections held at once, so each is a new one; each runs one statement.
        const held: mysql2.PoolConnection[] = []
        for (const n of [1, 2, 3]) {
          const connection = await getConnection(pool)
          held.push(connection)
          await query(connection, `SELECT ${n} AS n`)
        }
        for (const connection of held) connection.release()
        // Released and borrowed again: still nothing of the pool's own on the wire.
        const again = await getConnection(pool)
        await query(again, 'SELECT 4 AS n')
        again.release()
      } finally {
        await end(pool)
        await proxy.close()
      }
      const sent = proxy.connections.map((c) => c.commands.filter((sql) => sql !== 'COM_QUIT'))
      if (side === 'facade') {
        // lifeguard reads the server's limits (wait_timeout, max_connections) once per pool, on
        // its first connection, to keep its timers under the server's: the one statement it adds.
        expect(sent[0]?.[0]).toMatch(LIMITS)
        sent[0]?.shift()
      }
      return sent
    },
  )

  twin(
    'P. a proxy that refuses session-variable SELECTs: the pool connects and queries through it',
    MODULES,
    async (m, side) => {
      // As some proxies and routers do, it answers the handshake and plain statements, and
      // refuses anything that reads @@ variables (the facade used to run one on every connect).
      const proxy = await mysqlWireProxy(MYSQL_URL, { refuse: (sql) => sql.includes('@@') })
      const pool = m.createPool({ uri: proxy.url, connectionLimit: 2 })
      const started = performance.now()
      let result: Record<string, unknown>
      try {
        const first = await query(pool, 'SELECT 1 AS n')
        const connection = await getConnection(pool)
        // Held together: the second is a new connection, made after the first one's read failed.
        const other = await getConnection(pool)
        const second = await query(connection, 'SELECT 2 AS n')
        const refused = await query(connection, 'SELECT @@SESSION.sql_mode AS mode').then(
          () => 'answered',
          (error: { errno?: unknown }) => error.errno,
        )
        const fourth = await query(other, 'SELECT 4 AS n')
        connection.release()
        other.release()
        const third = await query(pool, 'SELECT 3 AS n')
        // Two connects and five statements: milliseconds, where a failing connect retries for 30 s.
        expect(performance.now() - started).toBeLessThan(5_000)
        result = { first, second, refused, third, fourth, connections: proxy.connections.length }
      } finally {
        await end(pool)
        await proxy.close()
      }
      if (side === 'facade') {
        // The pool's read of the server's limits, refused once, is not sent again on the next
        // connection (nor for 30 s).
        const reads = proxy.connections.flatMap((c) => c.commands.filter((sql) => LIMITS.test(sql)))
        expect(reads).toHaveLength(1)
      }
      return result
    },
    { timeout: 20_000 },
  )

  twin(
    'P. a proxy that never answers session-variable SELECTs: the pool still lends, and later connections work',
    MODULES,
    async (m) => {
      // Silent for @@ reads: the facade's first connection waits a bounded time for its read of
      // the server's limits, then is lent (its later commands queue behind the unanswered one, as
      // every command of a connection of mysql2's own pool would behind an unanswered one).
      const proxy = await mysqlWireProxy(MYSQL_URL, { swallow: (sql) => sql.includes('@@') })
      const pool = m.createPool({ uri: proxy.url, connectionLimit: 2 })
      const started = performance.now()
      try {
        const first = await getConnection(pool)
        // Held with the first: a new connection, which sends no read of its own meanwhile.
        const second = await getConnection(pool)
        const rows = await query(second, 'SELECT 2 AS n')
        // Lent within the wait (2 s), where the connect timeout (10 s) would fail it for ever.
        expect(performance.now() - started).toBeLessThan(6_000)
        first.release()
        second.release()
        return { rows, connections: proxy.connections.length }
      } finally {
        await end(pool)
        await proxy.close()
      }
    },
    { timeout: 20_000 },
  )

  twin(
    "M. mysql2:pool:connect is published for each getConnection, and the pool's own statements are not on mysql2:query",
    MODULES,
    async (m) => {
      const tracing = watchTracing()
      const pool = m.createPool({ uri: MYSQL_URL, connectionLimit: 2 })
      let seen: Seen
      try {
        await query(pool, 'SELECT 1 AS n')
        await new Promise((resolve, reject) =>
          pool.execute('SELECT ? AS n', [2], (error, rows) =>
            error ? reject(error) : resolve(rows),
          ),
        )
        const connection = await getConnection(pool)
        await query(connection, 'SELECT 3 AS n')
        connection.release()
        // A transaction left open: the facade rolls it back on release, off mysql2:query.
        const dirty = await getConnection(pool)
        await query(dirty, 'START TRANSACTION')
        dirty.release()
        await query(pool, 'SELECT 4 AS n')
      } finally {
        await end(pool)
        seen = tracing.stop()
      }
      // The pool's span encloses the handshake's, as with mysql2's own pool.
      const order = tracing.order
      expect(order.indexOf('mysql2:pool:connect start')).toBeLessThan(
        order.indexOf('mysql2:connect start'),
      )
      expect(order.indexOf('mysql2:connect start')).toBeLessThan(
        order.indexOf('mysql2:pool:connect asyncStart'),
      )
      return seen
    },
  )

  twin(
    'M. mysql2/promise: each query and getConnection is published on mysql2:pool:connect',
    {
      driver: mysql2Promise as Pick<typeof mysql2Promise, 'createPool'>,
      facade: promiseFacade as unknown as Pick<typeof mysql2Promise, 'createPool'>,
    },
    async (m) => {
      const tracing = watchTracing()
      const pool = m.createPool({ uri: MYSQL_URL, connectionLimit: 2 })
      try {
        await pool.query('SELECT 1 AS n')
        await pool.execute('SELECT ? AS n', [2])
        const connection = await pool.getConnection()
        await connection.query('SELECT 3 AS n')
        connection.release()
      } finally {
        await pool.end()
      }
      return tracing.stop()
    },
  )

  twin(
    'M. a failed connect is published on mysql2:pool:connect with its error',
    MODULES,
    async (m) => {
      const port = await closedPort()
      const tracing = watchTracing()
      const pool = m.createPool({
        uri: `mysql://root@127.0.0.1:${port}/test`,
        connectionLimit: 1,
      })
      let seen: Seen
      let code: unknown
      try {
        code = await getConnection(pool).then(
          () => 'connected',
          (error: { code?: unknown }) => error.code,
        )
      } finally {
        await end(pool)
        seen = tracing.stop()
      }
      // Each run has a closed port of its own: named, not numbered.
      const poolConnect = seen['mysql2:pool:connect'].map((event) => ({
        ...event,
        serverPort: event.serverPort === port ? 'the closed port' : event.serverPort,
      }))
      return { code, poolConnect }
    },
    { timeout: 20_000 },
  )
})
