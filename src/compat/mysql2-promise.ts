import type { Connection, Pool } from 'mysql2/promise'
import mysql2Promise from 'mysql2/promise'
import { InvalidOptionError } from '../core/errors.js'
import { describe } from '../core/pool-options.js'
import { lifeguardOf, registerFacade } from './lifeguard-of.js'
import { configureMysql2, type LifeguardOptions, type Mysql2PoolOptions } from './mysql2.js'
import { createPromisePoolCluster, type PoolClusterOptions } from './mysql2-pool-cluster.js'

export type { LifeguardOptions, Mysql2PoolOptions } from './mysql2.js'

/** mysql2/promise's classes, which its typings leave out or declare under other names. */
const classes = mysql2Promise as unknown as {
  PromisePool: new (pool: object, promiseImpl?: PromiseConstructor) => Pool
  PromiseConnection: new (connection: object, promiseImpl?: PromiseConstructor) => Connection
  PromisePoolConnection: new (connection: object, promiseImpl?: PromiseConstructor) => Connection
}

/**
 * The Promise implementation mysql2/promise would use for this config: its `Promise` option, or
 * the global one. Throws for one that is not a constructor: mysql2 would take it and fail later,
 * in every query and in `end()`, leaving the pool open for good.
 */
function promiseOf(config: unknown): PromiseConstructor {
  const given =
    typeof config === 'object' && config !== null
      ? (config as { Promise?: unknown }).Promise
      : undefined
  if (!given) return Promise
  if (typeof given !== 'function') {
    throw new InvalidOptionError(
      'Promise',
      `Invalid option Promise: ${describe(given)}; expected a Promise constructor`,
    )
  }
  return given as PromiseConstructor
}

/** A mysql2/promise-shaped module whose `createPool` and `createConnection` pool through lifeguard. */
export interface Mysql2PromiseModule {
  createPool(config: string | Mysql2PoolOptions): Pool
  createConnection(config: string | Mysql2PoolOptions): Promise<Connection>
  /** mysql2/promise's `PoolCluster`, each node a pool of this module's `createPool` (see `mysql2-pool-cluster.ts`). */
  createPoolCluster(config?: PoolClusterOptions): mysql2Promise.PoolCluster
  /** Closes the shared pools that this module's `createConnection` borrowed from. */
  end(): Promise<void>
  [other: string]: unknown
}

/**
 * Makes a mysql2/promise-shaped module whose pools lend through lifeguard, with these lifeguard
 * options by default. Each `createPool()` is mysql2's own `PromisePool` around a `lifeguard/mysql2`
 * pool of its own (`pool.pool`), so `query`, `execute`, `getConnection` (a `PromisePoolConnection`
 * whose `release()` gives it back) and `end()` are mysql2's code. `createConnection()` resolves,
 * as mysql2/promise's does, once connected, to a connection borrowed from a pool shared by equal
 * options; its `end()` gives the connection back. The module's `end()` closes those shared pools.
 *
 * @example
 * ```ts
 * const mysql = configureMysql2Promise({ maxOverflow: 5 })
 * const pool = mysql.createPool({ uri: process.env.DATABASE_URL, connectionLimit: 10 })
 * const [rows] = await pool.query('SELECT 1 AS one')
 * ```
 */
export function configureMysql2Promise(defaults: LifeguardOptions = {}): Mysql2PromiseModule {
  const callbacks = configureMysql2(defaults)
  return {
    ...(mysql2Promise as unknown as Record<string, unknown>),
    createPool(config: string | Mysql2PoolOptions): Pool {
      const P = promiseOf(config)
      return new classes.PromisePool(callbacks.createPool(config), P)
    },
    createConnection(config: string | Mysql2PoolOptions): Promise<Connection> {
      // Checked before borrowing: mysql2/promise would throw only after it started connecting.
      const P = promiseOf(config)
      const connection = callbacks.createConnection(config)
      return new P<Connection>((resolve, reject) => {
        connection.once('connect', () => {
          // The proxy's promise(): a PromiseConnection whose end() gives the connection back.
          const promised = connection.promise(P) as unknown as Connection
          registerFacade(promised, lifeguardOf(connection))
          resolve(promised)
        })
        connection.once('error', reject)
      })
    },
    createPoolCluster: (config?: PoolClusterOptions) =>
      createPromisePoolCluster(config, callbacks.createPool),
    end: callbacks.end,
  }
}

const defaultModule = configureMysql2Promise()

/** Creates a drop-in mysql2/promise pool over a lifeguard pool of its own (see {@link configureMysql2Promise}). */
export const createPool = defaultModule.createPool
/** Borrows a connection from a lifeguard pool shared by equal options; its `end()` gives it back. */
export const createConnection = defaultModule.createConnection
/** Closes the shared pools that `createConnection` borrowed from. */
export const end = defaultModule.end
/** Creates a drop-in mysql2/promise `PoolCluster` whose nodes are lifeguard pools (see {@link configureMysql2Promise}). */
export const createPoolCluster = defaultModule.createPoolCluster

const escapeValue = mysql2Promise.escape

/** mysql2/promise's `escape`, re-exported so that the module has mysql2/promise's shape. */
export { escapeValue as escape }
/** mysql2/promise's `escapeId`. */
export const escapeId = mysql2Promise.escapeId
/** mysql2/promise's `format`. */
export const format = mysql2Promise.format
/** mysql2/promise's `raw`. */
export const raw = mysql2Promise.raw
/** mysql2/promise's column `Types`. */
export const Types = mysql2Promise.Types
/** mysql2's own `PromisePool`, the class of the pools `createPool` returns. */
export const PromisePool = classes.PromisePool
/** mysql2's own `PromiseConnection`, the class of the connections `createConnection` resolves to. */
export const PromiseConnection = classes.PromiseConnection
/** mysql2's own `PromisePoolConnection`, the class of what `pool.getConnection()` lends. */
export const PromisePoolConnection = classes.PromisePoolConnection
export { lifeguardOf } from './lifeguard-of.js'

/** The module as a default export, for `import mysql from 'lifeguard/mysql2/promise'`. */
export default defaultModule
