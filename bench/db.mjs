import mariadb from 'mariadb'
import mysql2 from 'mysql2'
import pg from 'pg'
import postgresJs from 'postgres'
import { bounded } from './noio.mjs'
import { quantile, summarize } from './stats.mjs'

/** Callers of the pooled contenders, and their pool size. */
const CALLERS = 1000
const POOL_SIZE = 10
/** Tags our PostgreSQL sessions, so that nobody mistakes them for theirs. */
const APPLICATION_NAME = 'lifeguard-bench'

/**
 * One database client under test: `open()` connects and fills the pool, `query(lane)` runs
 * `SELECT 1` (`lane` is the caller's index, for the floor), `close()` ends it.
 * @typedef {{ query(lane: number): Promise<unknown>, close(): Promise<void> }} DbClient
 * @typedef {{ name: string, callers: number, note: string, open(): Promise<DbClient> }} DbContender
 */

/**
 * The URL with `application_name` added, unless it has one.
 * @param {string} url
 */
function tagged(url) {
  const parsed = new URL(url)
  if (!parsed.searchParams.has('application_name')) {
    parsed.searchParams.set('application_name', APPLICATION_NAME)
  }
  return parsed.toString()
}

/**
 * `SELECT 1` on a mysql2 callback connection or pool, as a promise: the same wrapper for
 * lifeguard, mysql2's pool and the floor, so none pays for a different API.
 * @param {{ query(sql: string, cb: (error: unknown, rows: unknown) => void): unknown }} target
 * @returns {Promise<unknown>}
 */
function mysqlSelect1(target) {
  return new Promise((resolve, reject) => {
    target.query('SELECT 1', (error, rows) => (error ? reject(error) : resolve(rows)))
  })
}

/**
 * Opens `n` pg clients, each the single owner of one connection.
 * @param {string} url
 * @param {number} n
 */
async function pgLanes(url, n) {
  const clients = Array.from({ length: n }, () => new pg.Client({ connectionString: tagged(url) }))
  for (const client of clients) client.on('error', () => {})
  await Promise.all(clients.map((client) => client.connect()))
  return clients
}

/**
 * Opens `n` mysql2 connections.
 * @param {string} url
 * @param {number} n
 */
async function mysqlLanes(url, n) {
  const connections = Array.from({ length: n }, () => mysql2.createConnection(url))
  for (const connection of connections) connection.on('error', () => {})
  await Promise.all(connections.map((connection) => mysqlSelect1(connection)))
  return connections
}

/**
 * Fills a pool: `POOL_SIZE` concurrent queries, so that every connection is open before timing.
 * @param {DbClient} client
 */
async function fill(client) {
  await Promise.all(Array.from({ length: POOL_SIZE }, (_, i) => client.query(i)))
  return client
}

/**
 * The PostgreSQL contenders.
 * @param {import('./load-lifeguard.mjs').Lifeguard} lifeguard
 * @param {string} url
 * @returns {DbContender[]}
 */
export function postgresContenders(lifeguard, url) {
  /** @param {false | undefined} resetOnRelease */
  const lifeguardContender = (resetOnRelease) => ({
    name: resetOnRelease === false ? 'lifeguard (resetOnRelease: false)' : 'lifeguard',
    callers: CALLERS,
    note:
      resetOnRelease === false
        ? 'max 10, resetOnRelease false, other options default'
        : "max 10, every other option default (prePing: true = 500 ms idle, resetOnRelease: 'rollback')",
    async open() {
      const pool = lifeguard.createPool({
        dialect: lifeguard.postgres(tagged(url)),
        max: POOL_SIZE,
        ...(resetOnRelease === false ? { resetOnRelease: false } : {}),
      })
      return fill({
        query: () => pool.use((/** @type {pg.Client} */ client) => client.query('SELECT 1')),
        close: () => pool.close({ timeout: 5_000 }),
      })
    },
  })
  return [
    {
      name: 'floor',
      callers: POOL_SIZE,
      note: '10 callers, each owning one pg.Client; no pool',
      async open() {
        const clients = await pgLanes(url, POOL_SIZE)
        return {
          query: (lane) => /** @type {pg.Client} */ (clients[lane]).query('SELECT 1'),
          close: async () => {
            await Promise.all(clients.map((client) => client.end()))
          },
        }
      },
    },
    lifeguardContender(undefined),
    lifeguardContender(false),
    {
      name: 'pg.Pool',
      callers: CALLERS,
      note: 'max 10, other options default',
      async open() {
        const pool = new pg.Pool({ connectionString: tagged(url), max: POOL_SIZE })
        pool.on('error', () => {})
        return fill({ query: () => pool.query('SELECT 1'), close: () => pool.end() })
      },
    },
    {
      name: 'postgres.js',
      callers: CALLERS,
      note: 'max 10, other options default (prepared statements, pipelining)',
      async open() {
        const sql = postgresJs(url, {
          max: POOL_SIZE,
          connection: { application_name: APPLICATION_NAME },
          onnotice: () => {},
        })
        return fill({ query: () => sql`SELECT 1`, close: () => sql.end({ timeout: 5 }) })
      },
    },
  ]
}

/**
 * The MariaDB/MySQL contenders.
 * @param {import('./load-lifeguard.mjs').Lifeguard} lifeguard
 * @param {string} url
 * @returns {DbContender[]}
 */
export function mysqlContenders(lifeguard, url) {
  /** @param {false | undefined} resetOnRelease */
  const lifeguardContender = (resetOnRelease) => ({
    name: resetOnRelease === false ? 'lifeguard (resetOnRelease: false)' : 'lifeguard',
    callers: CALLERS,
    note:
      resetOnRelease === false
        ? 'max 10, resetOnRelease false, other options default'
        : "max 10, every other option default (prePing: true = 500 ms idle, resetOnRelease: 'rollback')",
    async open() {
      const pool = lifeguard.createPool({
        dialect: lifeguard.mysql(url),
        max: POOL_SIZE,
        ...(resetOnRelease === false ? { resetOnRelease: false } : {}),
      })
      return fill({
        query: () =>
          pool.use((/** @type {any} */ connection) => mysqlSelect1(connection.connection)),
        close: () => pool.close({ timeout: 5_000 }),
      })
    },
  })
  const parsed = new URL(url)
  return [
    {
      name: 'floor',
      callers: POOL_SIZE,
      note: '10 callers, each owning one mysql2 connection; no pool',
      async open() {
        const connections = await mysqlLanes(url, POOL_SIZE)
        return {
          query: (lane) => mysqlSelect1(/** @type {any} */ (connections[lane])),
          close: async () => {
            await Promise.all(
              connections.map((connection) => new Promise((resolve) => connection.end(resolve))),
            )
          },
        }
      },
    },
    lifeguardContender(undefined),
    lifeguardContender(false),
    {
      name: 'mysql2 pool',
      callers: CALLERS,
      note: 'connectionLimit 10, other options default',
      async open() {
        const pool = mysql2.createPool({ uri: url, connectionLimit: POOL_SIZE })
        pool.on('error', () => {})
        return fill({
          query: () => mysqlSelect1(pool),
          close: () => new Promise((resolve) => pool.end(() => resolve(undefined))),
        })
      },
    },
    {
      name: 'mariadb pool',
      callers: CALLERS,
      note: 'connectionLimit 10, other options default (pipelining on)',
      async open() {
        const pool = mariadb.createPool({
          host: parsed.hostname,
          port: Number(parsed.port || 3306),
          user: decodeURIComponent(parsed.username),
          password: decodeURIComponent(parsed.password),
          database: parsed.pathname.slice(1) || undefined,
          connectionLimit: POOL_SIZE,
        })
        return fill({ query: () => pool.query('SELECT 1'), close: () => pool.end() })
      },
    },
  ]
}

/**
 * One timed window: `callers` concurrent loops of `SELECT 1` until the window ends; each
 * query's latency counts from the call (so it includes the wait for a connection) to its result.
 * @param {DbClient} client
 * @param {number} callers
 * @param {number} windowMs
 */
async function load(client, callers, windowMs) {
  /** @type {number[]} */
  const latencies = []
  let stop = false
  const timer = setTimeout(() => {
    stop = true
  }, windowMs)
  const started = performance.now()
  const lane = async (/** @type {number} */ i) => {
    while (!stop) {
      const t0 = performance.now()
      await client.query(i)
      latencies.push(performance.now() - t0)
    }
  }
  try {
    await bounded(
      Promise.all(Array.from({ length: callers }, (_, i) => lane(i))),
      windowMs + 30_000,
      'the load',
    )
  } finally {
    clearTimeout(timer)
    stop = true
  }
  const elapsed = performance.now() - started
  latencies.sort((a, b) => a - b)
  return {
    qps: (latencies.length / elapsed) * 1000,
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
  }
}

/**
 * The real-database benchmark for one server: contenders interleaved in each round (the order
 * rotates), each round a fresh client, filled, an untimed warm-up window, then a timed one.
 * @param {{
 *   contenders: DbContender[],
 *   runs: number,
 *   windowMs: number,
 *   warmMs: number,
 *   label: string,
 *   log: (line: string) => void,
 * }} options
 */
export async function runDb({ contenders, runs, windowMs, warmMs, label, log }) {
  /** @type {Record<string, { qps: number[], p50: number[], p99: number[] }>} */
  const samples = {}
  /** @type {Record<string, string>} */
  const errors = {}
  for (const c of contenders) samples[c.name] = { qps: [], p50: [], p99: [] }
  for (let round = 0; round < runs; round++) {
    for (let i = 0; i < contenders.length; i++) {
      const contender = /** @type {DbContender} */ (contenders[(i + round) % contenders.length])
      if (errors[contender.name] !== undefined) continue
      /** @type {DbClient | undefined} */
      let client
      try {
        client = await bounded(contender.open(), 30_000, `opening ${contender.name}`)
        await load(client, contender.callers, warmMs)
        const m = await load(client, contender.callers, windowMs)
        samples[contender.name].qps.push(m.qps)
        samples[contender.name].p50.push(m.p50)
        samples[contender.name].p99.push(m.p99)
      } catch (error) {
        errors[contender.name] = error instanceof Error ? error.message : String(error)
        log(`  ${label} ${contender.name}: ERROR ${errors[contender.name]}`)
      } finally {
        await client?.close().catch(() => {})
      }
    }
    log(`  ${label} round ${round + 1}/${runs} done`)
  }
  /** @type {Record<string, any>} */
  const result = {}
  for (const c of contenders) {
    const s = samples[c.name]
    result[c.name] = {
      callers: c.callers,
      poolSize: POOL_SIZE,
      note: c.note,
      qps: summarize(s.qps),
      p50Ms: summarize(s.p50),
      p99Ms: summarize(s.p99),
      ...(errors[c.name] === undefined ? {} : { error: errors[c.name] }),
    }
  }
  return { runs, windowMs, warmMs, contenders: result }
}
