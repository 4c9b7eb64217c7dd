import { EventEmitter } from 'node:events'
import mysql2 from 'mysql2'
import mysql2Promise from 'mysql2/promise'
import { InvalidOptionError } from '../core/errors.js'
import type { Lease } from '../core/lease.js'
import type { Pool as LifeguardPool } from '../core/pool.js'
import { describe, MAX_TIMER_MS, type PoolOptions } from '../core/pool-options.js'
import { createPool as createLifeguardPool } from '../create-pool.js'
import { hideConfigCredentials } from '../dialects/mysql-credentials.js'
import { MysqlDialect } from '../dialects/mysql-dialect.js'
import { registerFacade } from './lifeguard-of.js'
import { manage, type PoolHold } from './manage.js'
import { createPoolCluster as clusterOf } from './mysql2-pool-cluster.js'
import { tracePoolConnects } from './mysql2-pool-tracing.js'
import { poolKey } from './pool-key.js'

/** The lifeguard options a facade may set: every pool option but the dialect, which it makes itself. */
export type LifeguardOptions = Omit<PoolOptions<mysql2.Connection>, 'dialect'>

/** mysql2's pool options, plus the lifeguard options under a key of their own. */
export type Mysql2PoolOptions = mysql2.PoolOptions & {
  /** lifeguard options (`maxOverflow`, `resetOnRelease`, `name`, …); override what mysql2's keys set. */
  lifeguard?: LifeguardOptions | undefined
}

/** mysql2's pool keys: they configure the pool, not each connection. */
const POOL_KEYS = [
  'waitForConnections',
  'connectionLimit',
  'maxIdle',
  'idleTimeout',
  'queueLimit',
  'resetOnRelease',
  'lifeguard',
] as const

/** What the facade uses of a mysql2 connection beyond its typings. */
interface ConnectionInternals {
  _pool: object | null
  _released: boolean
  _fatalError?: unknown
  _closing?: boolean
  lastActiveTime: number
}

/** mysql2's `ConnectionConfig` constructor and its URL parser, which the typings leave out. */
interface ConnectionConfigClass {
  new (options: object): Record<string, unknown>
  parseUrl(url: string): Record<string, unknown>
}

/** What the facade uses of mysql2's core `Pool`: its constructor and fields; the I/O methods are replaced. */
interface CorePoolFields extends EventEmitter {
  config: { connectionConfig: Record<string, unknown> } & Record<string, unknown>
  _closed: boolean
}

const CorePool = (mysql2 as unknown as { Pool: unknown }).Pool as new (options: {
  config: object
}) => CorePoolFields
const ConnectionConfig = (mysql2 as unknown as { ConnectionConfig: ConnectionConfigClass })
  .ConnectionConfig
const PoolConnection = (mysql2 as unknown as { PoolConnection: new (...args: never[]) => object })
  .PoolConnection
const PromiseConnection = (
  mysql2Promise as unknown as {
    PromiseConnection: new (connection: object, promiseImpl?: PromiseConstructor) => object
  }
).PromiseConnection
const realEnd = (mysql2.Connection as unknown as { prototype: { end: (cb?: unknown) => void } })
  .prototype.end

/** The facade that lent each connection, and the lease: kept beside the connection, not on it. */
const leases = new WeakMap<
  object,
  { facade: LifeguardMysqlPool; lease: Lease<mysql2.Connection> }
>()

/**
 * mysql2's `PoolConnection`, as the facade lends it: `release()`, `destroy()`, `promise()` and
 * `Symbol.dispose` are mysql2's own; `end()` releases while the connection is lent (without
 * mysql2's deprecation warning) and really ends it otherwise, which is how the pool closes it.
 */
class LentConnection extends (PoolConnection as unknown as new () => {
  _pool: object | null
  release(): void
}) {
  /** Releases while lent, as mysql2's pool connections do; ends the connection when the pool closes it. */
  end(callback?: (error?: unknown) => void): void {
    if (leases.has(this)) {
      this.release()
      if (typeof callback === 'function') process.nextTick(callback)
      return
    }
    realEnd.call(this, callback)
  }
}

/** Turns a dialect's core connection into a pool connection, once; the same object ever after. */
function adopt(connection: mysql2.Connection): void {
  if (connection instanceof LentConnection) return
  Object.setPrototypeOf(connection, LentConnection.prototype)
  const c = connection as unknown as ConnectionInternals & EventEmitter
  c._pool = null
  c._released = true
  c.lastActiveTime = Date.now()
  // mysql2's PoolConnection constructor does this: a dead connection leaves its pool.
  const leave = () => (c as unknown as { _removeFromPool(): void })._removeFromPool()
  c.once('end', leave)
  c.on('error', (error: { fatal?: boolean } | undefined) => {
    if (error?.fatal === true) leave()
  })
}

/**
 * A mysql2 pool option as mysql2's `PoolConfig` reads it: a number, or a numeric string
 * (environment variables are strings); `undefined` where mysql2 falls back to its default.
 */
function numeric(value: unknown): number | undefined {
  if (value === undefined || value === null || typeof value === 'symbol') return undefined
  // mysql2 tests with the global isNaN, which coerces: '3' counts, 'three' does not.
  let n: number
  try {
    n = Number(value)
  } catch {
    return undefined // a BigInt-only or hostile valueOf: mysql2's isNaN would throw; count it as absent
  }
  return Number.isNaN(n) ? undefined : n
}

/** Throws for a config mysql2 cannot read at all (it fails with a TypeError of its own). */
function checkConfig(given: unknown, where: string): void {
  if (given === undefined || given === null) {
    throw new InvalidOptionError(
      'config',
      `${where}: invalid config ${describe(given)}; expected a connection URL or mysql2's options object`,
    )
  }
  const lifeguard = (given as { lifeguard?: unknown }).lifeguard
  if (typeof given === 'object' && lifeguard !== undefined) {
    if (typeof lifeguard !== 'object' || lifeguard === null || Array.isArray(lifeguard)) {
      throw new InvalidOptionError(
        'lifeguard',
        `Invalid option lifeguard: ${describe(lifeguard)}; expected an object of lifeguard pool options`,
      )
    }
  }
}

/**
 * Splits mysql2's pool options into the connection's options and the lifeguard options, reading
 * each pool option as mysql2 does (numeric strings count). Throws `InvalidOptionError` for a
 * `connectionLimit` that lifeguard cannot honour (0 or less, which would never lend a connection).
 */
function splitOptions(
  given: string | Mysql2PoolOptions | undefined,
  defaults: LifeguardOptions,
): {
  connection: string | mysql2.ConnectionOptions
  parsed: Record<string, unknown>
  options: LifeguardOptions
} {
  const options: Record<string, unknown> = { ...defaults }
  if (typeof given === 'string') {
    return {
      connection: given,
      parsed: ConnectionConfig.parseUrl(given),
      options: options as LifeguardOptions,
    }
  }
  const c = (typeof given === 'object' && given !== null ? given : {}) as Mysql2PoolOptions
  const connection: Record<string, unknown> = { ...c }
  for (const key of POOL_KEYS) delete connection[key]
  const limit = numeric(c.connectionLimit)
  if (limit !== undefined) {
    if (!(limit > 0 && limit < Number.MAX_SAFE_INTEGER)) {
      throw new InvalidOptionError(
        'connectionLimit',
        `Invalid option connectionLimit: ${describe(c.connectionLimit)}; expected a positive integer`,
      )
    }
    // mysql2 opens connections while it has fewer than the limit: 2.5 allows 3.
    options.max = Math.ceil(limit)
  }
  const queue = numeric(c.queueLimit)
  // mysql2: 0 is no limit. lifeguard's maxWaiting 0 would also refuse those who wait for a new
  // connection, so a negative limit (mysql2: refuse whoever finds the pool full) is left out.
  if (queue !== undefined && queue > 0) {
    options.maxWaiting = queue === Number.POSITIVE_INFINITY ? queue : Math.ceil(queue)
  }
  const idle = numeric(c.idleTimeout)
  if (idle !== undefined && idle >= 0) options.idleTimeout = Math.min(idle, MAX_TIMER_MS)
  const connect = numeric(c.connectTimeout)
  // mysql2 reads 0 as no connect timeout of its own; lifeguard keeps its default then.
  if (connect !== undefined && connect >= 1) {
    options.connectTimeout = Math.min(connect, MAX_TIMER_MS)
  }
  if (c.resetOnRelease !== undefined && c.resetOnRelease) options.resetOnRelease = 'session'
  Object.assign(options, c.lifeguard)
  return { connection, parsed: connection, options: options as LifeguardOptions }
}

/** A lifeguard pool of mysql2 callback connections, the kind both facades lend from. */
function lifeguardPool(
  connection: string | mysql2.ConnectionOptions,
  options: LifeguardOptions,
): LifeguardPool<mysql2.Connection> {
  return createLifeguardPool<mysql2.Connection>({
    ...options,
    dialect: new MysqlDialect(connection),
  })
}

/**
 * A hold on the pool that `createConnection` borrows from: stand-ins for one connection made with
 * equal options share it (see `manage`), as the seeds' per-request `pool.manage()` pattern did.
 */
function holdPool(
  connection: string | mysql2.ConnectionOptions,
  options: LifeguardOptions,
): PoolHold<mysql2.Connection> {
  return manage(poolKey('mysql2', { connection, options }), () =>
    lifeguardPool(connection, options),
  )
}

/**
 * A drop-in mysql2 `Pool` (a real subclass of mysql2's core pool) that lends from a lifeguard pool
 * of its own, as each mysql2 `createPool()` is a pool of its own: it owns that pool and the
 * connections it has lent. It lends
 * genuine mysql2 `PoolConnection`s, the same object each time for the same physical connection;
 * `query`, `execute`, `promise()`, `format` and `escape` are mysql2's own, over `getConnection`.
 */
class LifeguardMysqlPool extends CorePool {
  readonly #pool: LifeguardPool<mysql2.Connection>
  readonly #lent = new Set<object>()
  readonly #seen = new WeakSet<object>()

  constructor(given: string | Mysql2PoolOptions | undefined, defaults: LifeguardOptions) {
    checkConfig(given, 'createPool')
    const { connection, parsed, options } = splitOptions(given, defaults)
    // mysql2's own config: query() and execute() read typeCast, namedPlaceholders… from it. The
    // lifeguard pool connects, not this config: its password stays out of util.inspect(pool).
    const connectionConfig = new ConnectionConfig(parsed)
    hideConfigCredentials(connectionConfig as unknown as Record<string, unknown>)
    super({
      config: {
        connectionConfig,
        // Only read by mysql2's constructor; the lifeguard pool checks the real option below.
        connectionLimit: Number.isInteger(options.max) ? options.max : 10,
      },
    })
    // The pool is made last: when the options are refused, nothing is left open.
    this.#pool = lifeguardPool(connection, options)
    registerFacade(this, this.#pool as LifeguardPool<unknown>)
  }

  /** The lifeguard pool this facade lends from. */
  get lifeguard(): LifeguardPool<mysql2.Connection> {
    return this.#pool
  }

  /** Lends a connection to `callback`, as mysql2's `pool.getConnection` does. */
  getConnection(callback: (error: Error | null, connection?: mysql2.PoolConnection) => void): void {
    if (this._closed) {
      process.nextTick(() => callback(new Error('Pool is closed.')))
      return
    }
    // mysql2 emits 'enqueue' for a caller who must wait for a release, and no 'acquire' when a
    // released connection is handed to that caller: the same here, read off the pool's counts.
    const s = this.#pool.stats()
    const queued = s.waiting > 0 || (s.idle === 0 && s.total >= s.max + s.maxOverflow)
    if (queued) this.emit('enqueue')
    this.#pool.acquire().then(
      (lease) => {
        const connection = lease.connection
        if (this._closed) {
          lease.release()
          return callback(new Error('Pool is closed.'))
        }
        adopt(connection)
        const c = connection as unknown as ConnectionInternals
        c._pool = this
        c._released = false
        leases.set(connection, { facade: this, lease })
        this.#lent.add(connection)
        if (!this.#seen.has(connection)) {
          this.#seen.add(connection)
          this.emit('connection', connection)
        }
        if (!queued) this.emit('acquire', connection)
        callback(null, connection as unknown as mysql2.PoolConnection)
      },
      (error: Error) => callback(error),
    )
  }

  /** Takes a connection back (mysql2 calls it from `connection.release()`). */
  releaseConnection(connection: object): void {
    const held = this.#take(connection)
    if (held === undefined) return
    const c = connection as ConnectionInternals
    c.lastActiveTime = Date.now()
    const dead = (c._fatalError !== undefined && c._fatalError !== null) || c._closing === true
    // mysql2 emits 'release' when the connection goes back to the free list: not for a dead one,
    // nor for one handed straight to a waiting caller.
    const handedOver = this.#pool.stats().waiting > 0
    if (dead) held.destroy(c._fatalError)
    else held.release()
    if (!dead && !handedOver) this.emit('release', connection)
  }

  /** Drops a connection that died or was destroyed (mysql2 calls it from `_removeFromPool`). */
  _removeConnection(connection: object): void {
    const held = this.#take(connection)
    held?.destroy((connection as ConnectionInternals)._fatalError)
  }

  #take(connection: object): Lease<mysql2.Connection> | undefined {
    const held = leases.get(connection)
    if (held === undefined || held.facade !== this) return undefined
    leases.delete(connection)
    this.#lent.delete(connection)
    return held.lease.active ? held.lease : undefined
  }

  /** mysql2 reaps idle connections on a timer; lifeguard does it itself. */
  _removeIdleTimeoutConnections(): void {}

  /** Closes the pool. As in mysql2, the connections it still lends are closed too. */
  end(callback?: (error?: Error | null) => void): void {
    const cb =
      typeof callback === 'function'
        ? callback
        : (error?: Error | null) => {
            if (error) throw error
          }
    if (this._closed) {
      process.nextTick(() => cb(null))
      return
    }
    this._closed = true
    for (const connection of [...this.#lent]) this.#take(connection)?.destroy()
    this.#pool.close().then(
      () => cb(null),
      (error: Error) => cb(error),
    )
  }
}
Object.defineProperty(LifeguardMysqlPool, 'name', { value: 'Pool' })
// As mysql2's pool: every getConnection is published on the mysql2:pool:connect tracing channel.
tracePoolConnects(LifeguardMysqlPool.prototype)

/** The mysql2 connection that a `createConnection` facade borrowed, once borrowed. */
let borrowedBy: (facade: BorrowedConnection) => mysql2.Connection | undefined

/**
 * A connection from `createConnection`: it borrows from a shared lifeguard pool, emits `'connect'`
 * once it has, and gives the connection back on `end()`. Everything else (query, execute,
 * promise(), threadId, …) is the borrowed mysql2 connection's, reached through a proxy.
 */
class BorrowedConnection extends EventEmitter {
  static {
    // For the proxy alone: a getter would be one more member that a user of the connection reaches.
    borrowedBy = (facade) => facade.#connection
  }

  #connection: mysql2.Connection | undefined
  #lease: Lease<mysql2.Connection> | undefined
  #ended = false
  readonly #ready: Promise<void>
  /** This connection's own `typeCast` function, applied to each of its queries (see `withTypeCast`). */
  readonly typeCast: TypeCast | undefined

  constructor(pool: LifeguardPool<mysql2.Connection>, typeCast?: TypeCast) {
    super()
    this.typeCast = typeCast
    this.#ready = pool.acquire().then(
      (lease) => {
        if (this.#ended) return lease.release()
        this.#lease = lease
        this.#connection = lease.connection
        const forward = (error: unknown) => {
          if (this.listenerCount('error') > 0) this.emit('error', error)
        }
        lease.connection.on('error', forward)
        this.once('end', () => lease.connection.off('error', forward))
        process.nextTick(() => this.emit('connect'))
      },
      (error: unknown) => {
        process.nextTick(() => {
          if (this.listenerCount('error') > 0) this.emit('error', error)
        })
      },
    )
  }

  /** Resolves once the connection is borrowed. */
  ready(): Promise<void> {
    return this.#ready
  }

  /** Whether `end()` or `destroy()` was called. */
  get _closing(): boolean {
    return (
      this.#ended ||
      (this.#connection as unknown as ConnectionInternals | undefined)?._closing === true
    )
  }

  /** Gives the connection back (mysql2's `end()` closes it; here it returns to the pool). */
  end(callback?: (error?: unknown) => void): void {
    this.#finish(false)
    if (typeof callback === 'function') process.nextTick(callback)
  }

  /** Closes the borrowed connection instead of returning it. */
  destroy(): void {
    this.#finish(true)
  }

  #finish(destroy: boolean): void {
    if (this.#ended) return
    this.#ended = true
    const lease = this.#lease
    this.#lease = undefined
    this.emit('end')
    // Not borrowed yet: the borrow gives it back as soon as it arrives.
    if (lease === undefined || !lease.active) return
    const c = lease.connection as unknown as ConnectionInternals
    if (destroy || c._fatalError != null || c._closing === true) lease.destroy(c._fatalError)
    else lease.release()
  }
}

/** Own members of a borrowed connection; everything else goes to the mysql2 connection. */
const OWN = new Set<PropertyKey>(['end', 'destroy', '_closing', 'ready', 'typeCast'])

/** mysql2's `typeCast` option, when it is a function. */
type TypeCast = (...args: never[]) => unknown

/**
 * A query's first argument with the connection's own `typeCast` added, unless the query sets
 * one: mysql2 reads `typeCast` per query as well as per connection. A prepared Query object
 * passes through untouched.
 */
function withTypeCast(sql: unknown, typeCast: TypeCast): unknown {
  if (typeof sql === 'string') return { sql, typeCast }
  if (typeof sql !== 'object' || sql === null) return sql
  const proto = Object.getPrototypeOf(sql)
  if (proto !== Object.prototype && proto !== null) return sql
  const options = sql as { typeCast?: unknown }
  return options.typeCast === undefined ? { ...options, typeCast } : sql
}

function proxied(facade: BorrowedConnection): mysql2.Connection {
  return new Proxy(facade, {
    get(target, property, receiver) {
      // mysql2's promise wrapper, over this proxy: its end() gives the connection back and its
      // queries get this connection's typeCast (bound to the physical connection, it did neither).
      if (property === 'promise') {
        return (promiseImpl?: PromiseConstructor) => new PromiseConnection(receiver, promiseImpl)
      }
      const connection = borrowedBy(target)
      if (
        OWN.has(property) ||
        connection === undefined ||
        property in EventEmitter.prototype ||
        // A tag the consumer set on this borrow (Sequelize's `uuid`, Knex's `__knexUid`).
        (Object.hasOwn(target, property) && !(property in connection))
      ) {
        // The facade itself as the receiver: its getters (`_closing`) read #private fields,
        // which a proxy receiver cannot reach.
        const value = Reflect.get(target, property, target)
        return typeof value === 'function' ? value.bind(target) : value
      }
      const value = Reflect.get(connection, property)
      const typeCast = target.typeCast
      if (typeCast !== undefined && (property === 'query' || property === 'execute')) {
        const run = value as (sql: unknown, ...rest: unknown[]) => unknown
        return (sql: unknown, ...rest: unknown[]) =>
          run.call(connection, withTypeCast(sql, typeCast), ...rest)
      }
      return typeof value === 'function' ? value.bind(connection) : value
    },
    // A consumer's own tags stay on this borrow, so they never leak to the next borrower of the
    // physical connection; a field of mysql2's connection is set on that connection.
    set(target, property, value) {
      const connection = borrowedBy(target)
      if (!OWN.has(property) && connection !== undefined && property in connection) {
        return Reflect.set(connection, property, value)
      }
      return Reflect.set(target, property, value, target)
    },
  }) as unknown as mysql2.Connection
}

/** A mysql2-shaped module whose `createPool` and `createConnection` pool through lifeguard. */
export interface Mysql2Module {
  createPool(config: string | Mysql2PoolOptions): mysql2.Pool
  createConnection(config: string | Mysql2PoolOptions): mysql2.Connection
  /** mysql2's `PoolCluster`, each node a pool of this module's `createPool` (see `mysql2-pool-cluster.ts`). */
  createPoolCluster(config?: mysql2.PoolClusterOptions): mysql2.PoolCluster
  /** Closes the shared pools that this module's `createConnection` borrowed from. */
  end(): Promise<void>
  [other: string]: unknown
}

/**
 * Makes a mysql2-shaped module whose `createPool` and `createConnection` lend from lifeguard pools
 * with these options by default: pass it where a consumer takes the mysql2 module (TypeORM's
 * `driver`, Sequelize's `dialectModule`). Its `end()` closes the pools `createConnection` used.
 *
 * @example
 * ```ts
 * new Sequelize(url, { dialect: 'mysql', dialectModule: configureMysql2({ max: 5 }) })
 * ```
 */
export function configureMysql2(defaults: LifeguardOptions = {}): Mysql2Module {
  const holds = new Map<string, PoolHold<mysql2.Connection>>()
  return {
    ...(mysql2 as unknown as Record<string, unknown>),
    createPool(config: string | Mysql2PoolOptions): mysql2.Pool {
      return new LifeguardMysqlPool(config, defaults) as unknown as mysql2.Pool
    },
    createPoolCluster: (config?: mysql2.PoolClusterOptions): mysql2.PoolCluster =>
      clusterOf(config, (node) => new LifeguardMysqlPool(node, defaults) as unknown as mysql2.Pool),
    createConnection(config: string | Mysql2PoolOptions): mysql2.Connection {
      checkConfig(config, 'createConnection')
      // A per-connection typeCast function (Sequelize binds a new one for every connection)
      // would make every key unique, one pool per connection: it is applied to each query instead.
      let typeCast: TypeCast | undefined
      if (typeof config === 'object' && typeof config.typeCast === 'function') {
        const { typeCast: own, ...rest } = config
        typeCast = own as TypeCast
        config = rest
      }
      const { connection, parsed, options } = splitOptions(config, defaults)
      // mysql2 reads the config at the call and throws there for one it refuses (an unknown
      // ssl profile, say): the same here, rather than on a connect in the background.
      new ConnectionConfig(parsed)
      const key = poolKey('mysql2-connection', { connection, options })
      let hold = holds.get(key)
      if (hold === undefined || hold.pool.closed) {
        hold = holdPool(connection, options)
        holds.set(key, hold)
      }
      const facade = new BorrowedConnection(hold.pool, typeCast)
      const connectionProxy = proxied(facade)
      registerFacade(facade, hold.pool as LifeguardPool<unknown>)
      registerFacade(connectionProxy as unknown as object, hold.pool as LifeguardPool<unknown>)
      return connectionProxy
    },
    async end() {
      const all = [...holds.values()]
      holds.clear()
      await Promise.all(all.map((hold) => hold.release()))
    },
  }
}

const defaultModule = configureMysql2()

/** Creates a drop-in mysql2 pool over a lifeguard pool of its own (see {@link configureMysql2}). */
export const createPool = defaultModule.createPool
/** Borrows a connection from a lifeguard pool shared by equal options; its `end()` gives it back. */
export const createConnection = defaultModule.createConnection
/** Closes the shared pools that `createConnection` borrowed from. */
export const end = defaultModule.end
/** Creates a drop-in mysql2 `PoolCluster` whose nodes are lifeguard pools (see {@link configureMysql2}). */
export const createPoolCluster = defaultModule.createPoolCluster
const escapeValue = mysql2.escape

/** mysql2's `escape`, re-exported so that the module has mysql2's shape. */
export { escapeValue as escape }
export const escapeId = mysql2.escapeId
export const format = mysql2.format
export const raw = mysql2.raw
export const Types = mysql2.Types
export { lifeguardOf } from './lifeguard-of.js'

/** The module as a default export, for `import mysql from 'lifeguard/mysql2'` and for `driver`/`dialectModule`. */
export default defaultModule
