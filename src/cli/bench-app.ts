import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Pool } from '../core/pool.js'
import { createPool } from '../create-pool.js'
import type { BenchDatabase } from './bench-database.js'
import { BENCH_ROWS } from './bench-database.js'
import { loadMysql2, loadPg, type MysqlConnection, type PgClient } from './drivers.js'
import { errorKind, TOO_MANY_CONNECTIONS } from './error-kind.js'
import type { BenchMode } from './parse-args.js'

/** How the app reaches the database in one mode. */
interface DataAccess {
  read(id: number): Promise<unknown>
  close(): Promise<void>
  /** The lifeguard pool, in the lifeguard mode. */
  pool?: Pool<unknown> | undefined
}

/** What the app counted while it ran. */
export interface BenchAppCounts {
  ok: number
  errors: Map<string, number>
  /** When (`performance.now()`) the server refused one more connection (see {@link REFUSALS}). */
  refusedAt: number[]
}

/** The error kinds that are the server refusing a connection for want of a slot. */
export const REFUSALS: ReadonlySet<string> = new Set([
  TOO_MANY_CONNECTIONS,
  'User connection limit',
])

/** A running bench app; `close()` waits (bounded) for requests in flight, then stops it. */
export interface BenchApp {
  readonly url: string
  readonly counts: BenchAppCounts
  /** The lifeguard pool, in the lifeguard mode: the runner reads its wait-time histogram. */
  readonly pool: Pool<unknown> | undefined
  close(): Promise<void>
}

/** The settings of the pooled modes. */
export interface BenchAppSettings {
  max: number
  overflow: number
  /** lifeguard's `maxPipeline`; `undefined` keeps the pool's default. */
  maxPipeline?: number | undefined
  /** How long a request may wait for a pooled connection. */
  acquireTimeoutMs: number
  /** The listen backlog: at least the number of clients. */
  backlog: number
}

const CONNECT_TIMEOUT_MS = 10_000
const DRAIN_MS = 15_000

/** The lifeguard mode's pool options, the same on both databases. */
function lifeguardOptions(db: BenchDatabase, settings: BenchAppSettings) {
  return {
    url: db.appUrl,
    max: settings.max,
    maxOverflow: settings.overflow,
    ...(settings.maxPipeline === undefined ? {} : { maxPipeline: settings.maxPipeline }),
    acquireTimeout: settings.acquireTimeoutMs,
    connectTimeout: CONNECT_TIMEOUT_MS,
    name: 'lifeguard-bench',
  }
}

async function postgresAccess(
  mode: BenchMode,
  db: BenchDatabase,
  settings: BenchAppSettings,
): Promise<DataAccess> {
  const pg = await loadPg()
  const config = { connectionString: db.appUrl, connectionTimeoutMillis: CONNECT_TIMEOUT_MS }
  if (mode === 'per-request') {
    return {
      async read(id) {
        // What the seeds' Django did: connect, query, close, every request.
        const client: PgClient = new pg.Client(config)
        client.on('error', () => {})
        try {
          await client.connect()
          return (await client.query(db.sql, [id])).rows[0]
        } finally {
          await client.end().catch(() => {})
        }
      },
      close: async () => {},
    }
  }
  if (mode === 'driver-pool') {
    const pool = new pg.Pool({
      connectionString: db.appUrl,
      max: settings.max + settings.overflow,
      connectionTimeoutMillis: settings.acquireTimeoutMs,
    })
    pool.on('error', () => {})
    return {
      read: async (id) => (await pool.query(db.sql, [id])).rows[0],
      close: () => pool.end(),
    }
  }
  const pool = createPool<PgClient>(lifeguardOptions(db, settings))
  return {
    // The read is one autocommit SELECT: it may share a connection (pipelining, maxPipeline).
    read: (id) =>
      pool.use(async (client) => (await client.query(db.sql, [id])).rows[0], { shared: true }),
    close: () => pool.close({ timeout: 5_000 }),
    pool: pool as Pool<unknown>,
  }
}

async function mysqlAccess(
  mode: BenchMode,
  db: BenchDatabase,
  settings: BenchAppSettings,
): Promise<DataAccess> {
  const mysql = await loadMysql2()
  if (mode === 'per-request') {
    return {
      async read(id) {
        const connection: MysqlConnection = await mysql.createConnection({
          uri: db.appUrl,
          connectTimeout: CONNECT_TIMEOUT_MS,
        })
        connection.on('error', () => {})
        try {
          const [rows] = await connection.query(db.sql, [id])
          return (rows as unknown[])[0]
        } finally {
          await connection.end().catch(() => connection.destroy())
        }
      },
      close: async () => {},
    }
  }
  if (mode === 'driver-pool') {
    const pool = mysql.createPool({
      uri: db.appUrl,
      connectionLimit: settings.max + settings.overflow,
      waitForConnections: true,
      queueLimit: 0,
      connectTimeout: CONNECT_TIMEOUT_MS,
    })
    pool.on('error', () => {})
    return {
      async read(id) {
        const [rows] = await pool.query(db.sql, [id])
        return (rows as unknown[])[0]
      },
      close: () => pool.end(),
    }
  }
  // The mysql dialect lends mysql2's callback connection; .promise() wraps the same one.
  const pool: Pool<{ promise(): MysqlConnection }> = createPool(lifeguardOptions(db, settings))
  return {
    read: (id) =>
      pool.use(async (connection) => {
        const [rows] = await connection.promise().query(db.sql, [id])
        return (rows as unknown[])[0]
      }),
    close: () => pool.close({ timeout: 5_000 }),
    pool: pool as Pool<unknown>,
  }
}

/**
 * Starts the bench's web app on 127.0.0.1 for one mode: a `node:http` server whose handler reads
 * one row by primary key, through a connection per request, an lifeguard pool, or the driver's
 * own pool. A failed request answers 503 and is counted by {@link errorKind}.
 */
export async function startBenchApp(
  mode: BenchMode,
  db: BenchDatabase,
  settings: BenchAppSettings,
): Promise<BenchApp> {
  const access =
    db.kind === 'postgres'
      ? await postgresAccess(mode, db, settings)
      : await mysqlAccess(mode, db, settings)
  const counts: BenchAppCounts = { ok: 0, errors: new Map(), refusedAt: [] }
  let inFlight = 0
  let onIdle: (() => void) | undefined

  const server: Server = createServer((request, response) => {
    request.resume()
    inFlight++
    const id = 1 + Math.floor(Math.random() * BENCH_ROWS)
    access
      .read(id)
      .then(
        (row) => {
          counts.ok++
          response.writeHead(200, { 'content-type': 'application/json' })
          response.end(JSON.stringify(row))
        },
        (error: unknown) => {
          const kind = errorKind(error)
          counts.errors.set(kind, (counts.errors.get(kind) ?? 0) + 1)
          if (REFUSALS.has(kind)) counts.refusedAt.push(performance.now())
          response.writeHead(503, { 'content-type': 'text/plain' })
          response.end(kind)
        },
      )
      .finally(() => {
        inFlight--
        if (inFlight === 0) onIdle?.()
      })
  })
  server.keepAliveTimeout = 60_000
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    // All clients connect at once: a backlog below their number drops SYNs, and the kernel's
    // retransmits (1 s, 3 s, 7 s) would show up as the app's latency.
    server.listen({ port: 0, host: '127.0.0.1', backlog: Math.max(511, settings.backlog) }, () =>
      resolve(),
    )
  })
  const { port } = server.address() as AddressInfo

  return {
    url: `http://127.0.0.1:${port}/`,
    counts,
    pool: access.pool,
    async close() {
      server.close()
      if (inFlight > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, DRAIN_MS)
          onIdle = () => {
            clearTimeout(timer)
            resolve()
          }
        })
      }
      server.closeAllConnections()
      await access.close().catch(() => {})
    },
  }
}
