import { AsyncLocalStorage } from 'node:async_hooks'
import { EventEmitter } from 'node:events'
import mysql2 from 'mysql2'
import mysql2Promise from 'mysql2/promise'
import { AcquireTimeoutError, InvalidOptionError } from '../core/errors.js'
import type { Lease } from '../core/lease.js'
import { OUTER_QUEUE, OUTER_WAIT, type OuterQueueLink } from '../core/outer-queue.js'
import type { Pool as LifeguardPool } from '../core/pool.js'
import { describe, MAX_TIMER_MS, type PoolOptions } from '../core/pool-options.js'
import { createPool as createLifeguardPool } from '../create-pool.js'
import { hideConfigCredentials } from '../dialects/mysql-credentials.js'
import { MysqlDialect } from '../dialects/mysql-dialect.js'
import { registerFacade } from './lifeguard-of.js'
import { manage, type PoolHold } from './manage.js'
import { createPoolCluster as clusterOf } from './mysql2-pool-cluster.js'
import { tracePoolConnects } from './mysql2-pool-tracing.js'
import { Mysql2QueueView } from './mysql2-queue-view.js'
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

/** A mysql2 error, as far as its fatality goes. */
type Fatal = { fatal?: unknown } | null

/** mysql2's warning for `end()` on a pooled connection, emitted as its `'warn'` event. */
const END_DEPRECATED =
  'Calling conn.end() to release a pooled connection is deprecated. In next version calling conn.end() will be restored to default conn.end() behavior. Use conn.release() instead.'

/** Lent connections that the pool's `end()` closed: their own `end()` then only calls back. */
const endedByPool = new WeakSet<object>()

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
  _removeFromPool(): void
  emit(event: string | symbol, ...args: unknown[]): boolean
}) {
  /**
   * mysql2's `PoolConnection` listens to its own `'end'` and `'error'` to leave its pool when it
   * dies; here the same happens as they are emitted, before any listener, without a listener of
   * its own (code that counts a connection's listeners sees only the driver's and its own).
   */
  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'end' || (event === 'error' && (args[0] as Fatal | undefined)?.fatal === true)) {
      this._removeFromPool()
    }
    return super.emit(event, ...args)
  }

  /**
   * Releases while lent, as mysql2's pool connections do, or under mysql2's `gracefulEnd` leaves
   * the pool and ends after its running commands; ends the connection when the pool closes it.
   */
  end(callback?: (error?: unknown) => void): void {
    // A lease the lifeguard pool took back (its close() timed out) is over: the pool closes it.
    const held = leases.get(this)?.lease.active === true ? leases.get(this) : undefined
    if (
      held !== undefined &&
      (this as { config?: { gracefulEnd?: unknown } }).config?.gracefulEnd
    ) {
      held.facade._endLent(this, callback)
      return
    }
    const stream = (this as { stream?: Stream }).stream
    if (
      held === undefined &&
      stream?.readableEnded === true &&
      (this as { _closing?: boolean })._closing !== true
    ) {
      // The server closed it (KILL, wait_timeout) and the pool is closing it: COM_QUIT would mark
      // it closing, and mysql2 would then keep quiet about the loss it reports as the socket closes.
      if (typeof callback === 'function') process.nextTick(callback)
      return
    }
    if (held !== undefined || endedByPool.has(this)) {
      // mysql2's deprecation warning, to those who listen for it: not printed (see docs/integrations.md).
      const self = this as unknown as EventEmitter
      if (self.listenerCount('warn') > 0) self.emit('warn', new Error(END_DEPRECATED))
      // After the pool's end(), release() does nothing, as in mysql2.
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

/**
 * A failed connect reaches mysql2's caller at once, with mysql2's own error: the core's
 * `connectErrors: 'reject'`, unless the caller's lifeguard options say otherwise.
 */
function rejectConnectErrors(options: Record<string, unknown>): void {
  options.connectErrors ??= 'reject'
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
  // A URL's query string may carry the pool options too (`?connectionLimit=5`): mysql2 reads them.
  const url = typeof given === 'string' ? ConnectionConfig.parseUrl(given) : undefined
  const c = (url ?? (typeof given === 'object' && given !== null ? given : {})) as Mysql2PoolOptions
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
  // queueLimit and waitForConnections are the facade's: its own queue holds mysql2's waiting callers.
  const idle = numeric(c.idleTimeout)
  if (idle !== undefined && idle >= 0) options.idleTimeout = Math.min(idle, MAX_TIMER_MS)
  const maxIdle = numeric(c.maxIdle)
  // mysql2 reaps idle connections only below connectionLimit, after its default 60 s then.
  if (idle === undefined && maxIdle !== undefined && maxIdle < (limit ?? 10)) {
    options.idleTimeout = 60_000
  }
  const connect = numeric(c.connectTimeout)
  // mysql2 reads 0 as no connect timeout of its own; lifeguard keeps its default then.
  if (connect !== undefined && connect >= 1) {
    options.connectTimeout = Math.min(connect, MAX_TIMER_MS)
  }
  if (c.resetOnRelease !== undefined && c.resetOnRelease) options.resetOnRelease = 'session'
  rejectConnectErrors(options)
  if (url !== undefined) {
    return { connection: given as string, parsed: url, options: options as LifeguardOptions }
  }
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
 * mysql2's `PoolConfig`, which mysql2 does not export: the pool settings as mysql2 reads them
 * (numeric strings count, `NaN` falls back to the default), on `pool.config`, where mysql2 reads
 * them again on every `getConnection`.
 */
interface Mysql2PoolConfig {
  connectionConfig: Record<string, unknown>
  waitForConnections: boolean
  connectionLimit: number
  maxIdle: number
  idleTimeout: number
  queueLimit: number
  resetOnRelease: boolean
  [other: string]: unknown
}

/** Reads mysql2's pool settings from its options (an object, or a parsed URL) as `PoolConfig` does. */
function poolConfigOf(
  options: Record<string, unknown>,
  connectionConfig: Record<string, unknown>,
): Mysql2PoolConfig {
  const connectionLimit = numeric(options.connectionLimit) ?? 10
  return {
    connectionConfig,
    waitForConnections:
      options.waitForConnections === undefined ? true : Boolean(options.waitForConnections),
    connectionLimit,
    maxIdle: numeric(options.maxIdle) ?? connectionLimit,
    idleTimeout: numeric(options.idleTimeout) ?? 60_000,
    queueLimit: numeric(options.queueLimit) ?? 0,
    resetOnRelease: options.resetOnRelease === undefined ? false : Boolean(options.resetOnRelease),
  }
}

/** A `getConnection` callback. */
type ConnectionCallback = (error: Error | null, connection?: mysql2.PoolConnection) => void

/** A caller waiting in the facade's queue (mysql2's `_connectionQueue`) for a release. */
interface QueuedCaller {
  readonly callback: ConnectionCallback
  /** When its wait ends (the lifeguard pool's `acquireTimeout`), in `performance.now()` time. */
  readonly deadline: number
  timer: NodeJS.Timeout | undefined
  /**
   * Runs a function in the caller's async context: it is served from another caller's release,
   * and the lifeguard pool must see the waiting caller's request scope, not the releaser's.
   */
  readonly inContext: <R>(fn: () => R) => R
  /** When it first asked, in `performance.now()` time: its wait, for the metrics, starts there. */
  readonly queuedAt: number
  /** Its `lifeguard:acquire` trace, begun when it was queued; `undefined` when nobody traces. */
  readonly trace: ReturnType<OuterQueueLink['trace']>
}

/** How a caller is lent a connection: as mysql2 would, which decides the events it emits. */
type LendKind = 'new' | 'handoff'

/** mysql2's message for a caller the closed pool turns away (a plain `Error`, no `code`). */
const POOL_CLOSED = 'Pool is closed.'

/** How often mysql2 closes idle connections above `maxIdle`, in ms. */
const MAX_IDLE_SWEEP_MS = 1_000

/**
 * The driver's own error behind a lifeguard `ConnectError` (a failed connect, under
 * `connectErrors: 'reject'`), so that `err.code` and `err.errno` are what mysql2 users test for.
 */
function driverError(error: Error): Error {
  const { code, cause } = error as { code?: unknown; cause?: unknown }
  if (code === 'LIFEGUARD_CONNECT_FAILED' && cause instanceof Error) return cause
  return error
}

/**
 * Calls a user's callback so that an exception it throws surfaces as an `uncaughtException`, as
 * with mysql2, rather than as an unhandled rejection of the promise chain it was called from.
 */
function callOut(fn: () => void): void {
  try {
    fn()
  } catch (error) {
    process.nextTick(() => {
      throw error
    })
  }
}

/** The socket of a connection, as far as the facade waits for it to close. */
interface Stream {
  destroyed?: boolean
  readableEnded?: boolean
  once(event: 'close', listener: () => void): unknown
}

/** Ends a lease whose socket has closed, unless the lifeguard pool took it back meanwhile. */
function closeLease(lease: Lease<mysql2.Connection>, fatal: unknown): void {
  if (lease.active) lease.destroy(fatal ?? undefined)
}

/** The order in which connections were last released: mysql2's free list is in that order. */
const releaseOrder = new WeakMap<object, number>()
let releases = 0

/** When a connection was last released, in release order (0 if never). */
function lastReleased(connection: object): number {
  return releaseOrder.get(connection) ?? 0
}

/** Connections whose `end()` queued mysql2's COM_QUIT: their lease ends once the socket closes. */
const quitting = new WeakSet<object>()

/**
 * A drop-in mysql2 `Pool` (a real subclass of mysql2's core pool) that lends from a lifeguard pool
 * of its own, as each mysql2 `createPool()` is a pool of its own: it owns that pool and the
 * connections it has lent. It lends genuine mysql2 `PoolConnection`s, the same object each time
 * for the same physical connection; `query`, `execute`, `promise()`, `format` and `escape` are
 * mysql2's own, over `getConnection`. Whether a caller is lent a connection, opens one or waits
 * is decided as mysql2 decides it, reading `pool.config` on every call (`connectionLimit`,
 * `waitForConnections`, `queueLimit`); callers who wait, wait in the facade's queue
 * (`_connectionQueue`), and `_allConnections`/`_freeConnections` are read-only views of the
 * lifeguard pool's connections.
 */
class LifeguardMysqlPool extends CorePool {
  /** mysql2's pool settings, read again on every `getConnection`: changing them takes effect. */
  declare config: Mysql2PoolConfig
  readonly #pool: LifeguardPool<mysql2.Connection>
  /** Connections lent to callers. */
  readonly #lent = new Set<object>()
  readonly #seen = new WeakSet<object>()
  /** The pool's open connections, as mysql2 counts them: a dead one leaves at once. */
  readonly #all = new Set<object>()
  /** Released connections on their way to a waiting caller: mysql2 never lists them as free. */
  readonly #reserved = new Set<object>()
  /** Callers waiting for a release. */
  #queue: QueuedCaller[] = []
  /** `config.connectionLimit` at construction: until it changes, lifeguard's `max` and `maxOverflow` bound the pool. */
  readonly #initialLimit: number
  /** The lifeguard pool's side of this facade's queue: its callers wait there, in its stats. */
  readonly #outer: OuterQueueLink
  /** mysql2's name for its idle sweep's timer, which code (and mysql2's tests) read. */
  _removeIdleTimeoutConnectionsTimer: NodeJS.Timeout | undefined
  #sweeping = false
  /** Callers who came while the maxIdle sweep held the idle connections: it lends them some. */
  #sweepClaims: ConnectionCallback[] = []
  /** How many more callers the sweep's connections can serve. */
  #sweepSpare = 0
  /** Looks at the queue on a tick of its own: listens to the lifeguard pool while callers wait. */
  readonly #drainSoon: () => void
  /** Whether `#drainSoon` listens to the lifeguard pool. */
  #listening = false

  constructor(given: string | Mysql2PoolOptions | undefined, defaults: LifeguardOptions) {
    checkConfig(given, 'createPool')
    const { connection, parsed, options } = splitOptions(given, defaults)
    // mysql2's own config: query() and execute() read typeCast, namedPlaceholders… from it. The
    // lifeguard pool connects, not this config: its password stays out of util.inspect(pool).
    const connectionConfig = new ConnectionConfig(parsed)
    hideConfigCredentials(connectionConfig as unknown as Record<string, unknown>)
    const config = poolConfigOf(
      typeof given === 'string' ? parsed : ((given ?? {}) as Record<string, unknown>),
      connectionConfig,
    )
    // mysql2's constructor starts its idle sweep from this config; the facade runs its own (below).
    super({ config })
    this.#initialLimit = config.connectionLimit
    // The pool is made last: when the options are refused, nothing is left open.
    this.#pool = lifeguardPool(connection, options)
    registerFacade(this, this.#pool as LifeguardPool<unknown>)
    this.#outer = this.#pool[OUTER_QUEUE]()
    this.#outer.count(() => this.#queue.length)
    // mysql2 emits 'connection' for each connection it opens, before lending it: the same here,
    // also for one opened for a caller who was then lent a connection released meanwhile.
    this.#pool.on('connect', ({ connection }) => {
      adopt(connection)
      this.#all.add(connection)
      if (this._closed || this.#seen.has(connection)) return
      this.#seen.add(connection)
      this.emit('connection', connection)
    })
    const gone = ({ connection }: { connection: object }) => {
      this.#all.delete(connection)
      this.#reserved.delete(connection)
    }
    this.#pool.on('invalidate', gone)
    this.#pool.on('close', gone)
    // A connection the lifeguard pool has reset or opened is idle a moment later, and one it
    // closed leaves room for another: a caller may be waiting for either. The facade listens only
    // while somebody waits (see #queued): a listener makes the pool build and emit an event on
    // every release.
    this.#drainSoon = () => {
      if (this.#queue.length > 0) process.nextTick(() => this.#drain())
    }
    const view = <T>(name: string, items: () => readonly T[]) =>
      Object.defineProperty(this, name, {
        value: new Mysql2QueueView(`pool.${name}`, items),
        enumerable: true,
        writable: false,
      })
    view('_allConnections', () => [...this.#all])
    view('_freeConnections', () =>
      [...this.#all].filter((c) => !this.#lent.has(c) && !this.#reserved.has(c)),
    )
    view('_connectionQueue', () => this.#queue.map((caller) => caller.callback))
    if (config.maxIdle < config.connectionLimit) {
      this._removeIdleTimeoutConnectionsTimer = setInterval(
        () => this.#closeAboveMaxIdle(),
        MAX_IDLE_SWEEP_MS,
      )
      this._removeIdleTimeoutConnectionsTimer.unref()
    }
  }

  /** The lifeguard pool this facade lends from. */
  get lifeguard(): LifeguardPool<mysql2.Connection> {
    return this.#pool
  }

  /**
   * Lends a connection to `callback`, as mysql2's `pool.getConnection` does: an idle one, else a
   * new one while the pool has fewer than `config.connectionLimit`, else the caller waits for a
   * release (`'enqueue'`), or fails at once under `waitForConnections: false` or a full
   * `queueLimit`. A failed connect reaches the caller with mysql2's own error.
   */
  getConnection(callback: ConnectionCallback): void {
    this.#getConnection(callback, undefined)
  }

  /** See `getConnection`; `earlier` is a queued caller asking again, its wait and trace going on. */
  #getConnection(callback: ConnectionCallback, earlier: QueuedCaller | undefined): void {
    if (this._closed) {
      earlier?.trace?.settle(undefined, new Error(POOL_CLOSED))
      process.nextTick(() => callback(new Error(POOL_CLOSED)))
      return
    }
    // The maxIdle sweep holds the idle connections a moment: it lends one of them.
    if (this.#sweepSpare > 0) {
      this.#sweepSpare--
      this.#sweepClaims.push(callback)
      return
    }
    // Inside a request scope the lifeguard pool lends the request's own connection (a
    // transactional scope) or borrows for the request: queueing here behind the pool's other
    // callers would make a request wait for a connection it already holds.
    // An abandoned request's scope has ended too: the lifeguard pool rejects its queries at once,
    // where the facade's queue would hold them for a release that nobody tells them of.
    // Asked again (see #retryNext), a caller is lent with a fresh acquireTimeout, as before.
    const again = earlier && { ...earlier, deadline: Number.POSITIVE_INFINITY }
    const scope = this.#pool.currentScope()
    if (scope !== undefined && (!scope.ended || scope.signal.aborted)) {
      return this.#lend(callback, 'new', undefined, again)
    }
    const s = this.#pool.stats()
    // The pool's count of waiting callers includes this facade's queue: not those here.
    const waiting = s.waiting - this.#queue.length
    // mysql2 lends a released connection at once; lifeguard may still be resetting it.
    if (s.idle + s.resetting > waiting) return this.#lend(callback, 'new', undefined, again)
    const limit = this.#limit()
    if (limit === 0 || this.#all.size + s.connecting < limit) {
      return this.#lend(callback, 'new', undefined, again)
    }
    if (!this.config.waitForConnections) {
      earlier?.trace?.settle(undefined, new Error('No connections available.'))
      process.nextTick(() => callback(new Error('No connections available.')))
      return
    }
    const queueLimit = numeric(this.config.queueLimit)
    // mysql2: 0 is no limit, and a negative one refuses everyone who would wait.
    if (queueLimit && this.#queue.length >= queueLimit) {
      earlier?.trace?.settle(undefined, new Error('Queue limit reached.'))
      return callback(new Error('Queue limit reached.'))
    }
    this.emit('enqueue')
    const timeout = this.#pool.options.acquireTimeout
    const now = performance.now()
    const caller: QueuedCaller = {
      callback,
      deadline: now + timeout,
      timer: undefined,
      inContext: AsyncLocalStorage.snapshot(),
      queuedAt: earlier?.queuedAt ?? now,
      trace: earlier === undefined ? this.#outer.trace() : earlier.trace,
    }
    if (timeout !== Number.POSITIVE_INFINITY) {
      // lifeguard's acquireTimeout bounds the wait, as it does in the lifeguard pool.
      caller.timer = setTimeout(() => {
        this.#queue = this.#queue.filter((c) => c !== caller)
        this.#queued()
        this.#outer.timedOut()
        const error = new AcquireTimeoutError(
          `Timed out after ${timeout} ms waiting for a connection from pool "${this.#pool.stats().name}" (connectionLimit ${limit}, all lent)`,
        )
        caller.trace?.settle(undefined, error)
        callOut(() => callback(error))
      }, timeout)
    }
    this.#queue.push(caller)
    this.#queued()
  }

  /**
   * Listens to the lifeguard pool's `'reset'`, `'connect'` and `'close'` while callers wait, and
   * only then: called after each change of the queue.
   */
  #queued(): void {
    const waiting = this.#queue.length > 0
    if (waiting === this.#listening) return
    this.#listening = waiting
    for (const event of ['reset', 'connect', 'close'] as const) {
      if (waiting) this.#pool.on(event, this.#drainSoon)
      else this.#pool.off(event, this.#drainSoon)
    }
  }

  /** The most connections `getConnection` opens: `config.connectionLimit` once changed; 0 is none. */
  #limit(): number {
    const limit = numeric(this.config.connectionLimit) ?? 10
    if (limit !== this.#initialLimit) return Math.max(limit, 0)
    const { max, maxOverflow } = this.#pool.options
    return max + maxOverflow
  }

  /**
   * Borrows from the lifeguard pool for `callback`; `queued` is the caller that waited, whose
   * deadline bounds the rest of its wait, and whose wait and trace began in the queue.
   */
  #lend(
    callback: ConnectionCallback,
    kind: LendKind,
    reserved?: object,
    queued?: QueuedCaller,
  ): void {
    const deadline = queued?.deadline ?? Number.POSITIVE_INFINITY
    const options =
      queued === undefined
        ? undefined
        : {
            timeout:
              deadline === Number.POSITIVE_INFINITY
                ? undefined
                : Math.max(1, Math.ceil(deadline - performance.now())),
            [OUTER_WAIT]: { queuedAt: queued.queuedAt, trace: queued.trace?.context },
          }
    this.#pool.acquire(options).then(
      (lease) => {
        if (reserved !== undefined) this.#reserved.delete(reserved)
        queued?.trace?.settle(lease)
        this.#handOut(lease, callback, kind)
      },
      (error: Error) => {
        if (reserved !== undefined) this.#reserved.delete(reserved)
        queued?.trace?.settle(undefined, error)
        const given = this._closed ? new Error(POOL_CLOSED) : driverError(error)
        callOut(() => callback(given))
        // mysql2 removes a connection that failed to open, and the removal lets the next queued
        // caller try: each one gets its own connect attempt and its own error at once, not a wait
        // for acquireTimeout. The queued keep their deadlines; #drain lends only within the limit.
        if (!this._closed) this.#drainSoon()
      },
    )
  }

  /** Lends the connection of `lease` to `callback`. */
  #handOut(lease: Lease<mysql2.Connection>, callback: ConnectionCallback, kind: LendKind): void {
    const connection = lease.connection
    if (this._closed) {
      lease.release()
      return callOut(() => callback(new Error(POOL_CLOSED)))
    }
    adopt(connection)
    this.#all.add(connection)
    const c = connection as unknown as ConnectionInternals
    c._pool = this
    c._released = false
    leases.set(connection, { facade: this, lease })
    this.#lent.add(connection)
    if (!this.#seen.has(connection)) {
      this.#seen.add(connection)
      this.emit('connection', connection)
    }
    // mysql2 hands a released connection straight to a waiting caller: no 'acquire' then.
    if (kind !== 'handoff') this.emit('acquire', connection)
    callOut(() => callback(null, connection as unknown as mysql2.PoolConnection))
  }

  /**
   * Lends idle connections to waiting callers: those that became idle after an asynchronous
   * reset, which mysql2 would have handed over at the release.
   */
  #drain(): void {
    while (!this._closed && this.#queue.length > 0) {
      const s = this.#pool.stats()
      const waiting = s.waiting - this.#queue.length
      const limit = this.#limit()
      const room = limit === 0 || this.#all.size + s.connecting < limit
      if (s.idle <= waiting && !room) return
      const next = this.#nextCaller()!
      const kind = s.idle > waiting ? 'handoff' : 'new'
      next.inContext(() => this.#lend(next.callback, kind, undefined, next))
    }
  }

  /** The next waiting caller, out of the queue, its timer stopped. */
  #nextCaller(): QueuedCaller | undefined {
    const caller = this.#queue.shift()
    if (caller?.timer !== undefined) clearTimeout(caller.timer)
    this.#queued()
    return caller
  }

  /** Takes a connection back (mysql2 calls it from `connection.release()`). */
  releaseConnection(connection: object): void {
    const held = this.#take(connection)
    if (held === undefined) return
    const c = connection as ConnectionInternals
    c.lastActiveTime = Date.now()
    releaseOrder.set(connection, ++releases)
    if ((c._fatalError !== undefined && c._fatalError !== null) || c._closing === true) {
      held.destroy(c._fatalError ?? undefined)
      this.#all.delete(connection)
      return this.#retryNext()
    }
    // mysql2 hands it to the caller who waited longest; lifeguard resets it first.
    const next = this.#nextCaller()
    if (next !== undefined) this.#reserved.add(connection)
    held.release()
    if (next !== undefined) {
      return next.inContext(() => this.#lend(next.callback, 'handoff', connection, next))
    }
    this.emit('release', connection)
  }

  /** A connection left the pool: the longest waiting caller asks again, as in mysql2. */
  #retryNext(): void {
    const next = this.#nextCaller()
    if (next === undefined) return
    process.nextTick(() => {
      if (this._closed) {
        next.trace?.settle(undefined, new Error(POOL_CLOSED))
        return callOut(() => next.callback(new Error(POOL_CLOSED)))
      }
      next.inContext(() => this.#getConnection(next.callback, next))
    })
  }

  /**
   * Drops a connection that died or was destroyed (mysql2 calls it from `_removeFromPool`): it
   * leaves `_allConnections` at once. One the server closed, or whose `end()` queued COM_QUIT,
   * goes back to the lifeguard pool once its socket has closed, so that mysql2 first reports the
   * loss (`'error'`, `PROTOCOL_CONNECTION_LOST`) and lets the commands before COM_QUIT finish.
   */
  _removeConnection(connection: object): void {
    this.#all.delete(connection)
    this.#reserved.delete(connection)
    const held = this.#take(connection)
    if (held !== undefined) {
      const c = connection as ConnectionInternals & { stream?: Stream }
      const stream = c.stream
      if (
        stream !== undefined &&
        stream.destroyed !== true &&
        (stream.readableEnded === true || quitting.has(connection))
      ) {
        stream.once('close', () => closeLease(held, c._fatalError))
      } else {
        held.destroy(c._fatalError ?? undefined)
      }
    }
    this.#retryNext()
  }

  #take(connection: object): Lease<mysql2.Connection> | undefined {
    const held = leases.get(connection)
    if (held === undefined || held.facade !== this) return undefined
    leases.delete(connection)
    this.#lent.delete(connection)
    return held.lease.active ? held.lease : undefined
  }

  /** mysql2 reaps idle connections on a timer: the facade's own (`maxIdle`) and lifeguard's (`idleTimeout`) do it. */
  _removeIdleTimeoutConnections(): void {}

  /**
   * mysql2's `maxIdle`: idle connections above it are closed, the sweep once a second (lifeguard's
   * `idleTimeout` closes those idle too long). The lifeguard pool has no way to close an idle
   * connection but to lend it: the sweep borrows every idle one, closes the oldest and gives the
   * others back. A caller who comes meanwhile is never made to wait for it: the sweep lends it one
   * of the connections it holds (the most recently released) as soon as it has them, which is as
   * soon as the lifeguard pool would have lent it one (pre-ping included).
   */
  #closeAboveMaxIdle(): void {
    const maxIdle = Math.max(0, numeric(this.config.maxIdle) ?? this.config.connectionLimit)
    const free = () => this.#all.size - this.#lent.size - this.#reserved.size
    const s = this.#pool.stats()
    // The pool's callers only: its count includes this facade's queue (not looked at, as before).
    const waiting = s.waiting - this.#queue.length
    if (this.#sweeping || this._closed || waiting > 0 || s.idle === 0 || free() <= maxIdle) {
      return
    }
    // mysql2 closes the connections released longest ago. The lifeguard pool lends the most
    // recent first: take every idle one, close the oldest, and give the others back, oldest first.
    this.#sweeping = true
    this.#sweepSpare = s.idle
    const taken = Array.from({ length: s.idle }, () =>
      this.#pool.acquire().then(
        (lease) => lease,
        () => undefined,
      ),
    )
    void Promise.all(taken)
      .then((leases) => {
        const claims = this.#endSweep()
        // A lease the lifeguard pool revoked meanwhile (closed, or past its lifetime) is gone.
        const held = leases
          .filter((lease): lease is Lease<mysql2.Connection> => lease?.active === true)
          .sort((a, b) => lastReleased(a.connection) - lastReleased(b.connection))
        // Callers who came during the sweep get the most recently released ones.
        while (claims.length > 0 && held.length > 0) {
          this.#handOut(held.pop()!, claims.shift()!, 'new')
        }
        for (const callback of claims) this.getConnection(callback)
        let excess = this._closed ? 0 : free() - maxIdle
        for (const lease of held) {
          if (!lease.active) continue
          if (excess-- > 0) {
            this.#all.delete(lease.connection)
            lease.destroy()
          } else {
            lease.release()
          }
        }
      })
      .catch(() => {
        // Nothing above should throw; if it did, the sweep must not crash the process.
        for (const callback of this.#endSweep()) this.getConnection(callback)
      })
  }

  /** Ends a sweep: returns the callers who came during it, not yet lent a connection. */
  #endSweep(): ConnectionCallback[] {
    const claims = this.#sweepClaims
    this.#sweeping = false
    this.#sweepSpare = 0
    this.#sweepClaims = []
    return claims
  }

  /** mysql2's `gracefulEnd` `end()` of a lent connection: COM_QUIT after its commands, out of the pool. */
  _endLent(connection: object, callback?: (error?: unknown) => void): void {
    quitting.add(connection)
    realEnd.call(connection, callback)
    ;(connection as unknown as { _removeFromPool(): void })._removeFromPool()
  }

  /**
   * Closes the pool as mysql2 does: waiting callers get `Pool is closed.`, idle connections close,
   * and each lent connection gets COM_QUIT behind the commands it is running, which finish first.
   */
  end(callback?: (error?: Error | null) => void): void {
    const cb =
      typeof callback === 'function'
        ? callback
        : (error?: Error | null) => {
            if (error) throw error
          }
    if (this._closed) {
      process.nextTick(() => cb())
      return
    }
    // mysql2 calls back from the last connection's COM_QUIT, inside its packet handling, which
    // takes an exception thrown there for a fatal error of that closing connection: it goes no
    // further. A pool with no connection calls back from end() itself: the exception reaches the
    // process (here as an uncaughtException, never as an unhandled rejection).
    const swallow = this.#all.size > 0
    const callBack = (error?: Error) =>
      callOut(() => {
        try {
          cb(error)
        } catch (thrown) {
          if (!swallow) throw thrown
        }
      })
    this._closed = true
    clearInterval(this._removeIdleTimeoutConnectionsTimer)
    for (let caller = this.#nextCaller(); caller !== undefined; caller = this.#nextCaller()) {
      const { callback: waiting } = caller
      caller.trace?.settle(undefined, new Error(POOL_CLOSED))
      process.nextTick(() => waiting(new Error(POOL_CLOSED)))
    }
    for (const connection of [...this.#lent]) {
      const held = this.#take(connection)
      if (held === undefined) continue
      endedByPool.add(connection)
      const c = connection as ConnectionInternals & { stream?: Stream }
      const retire = () => {
        const stream = c.stream
        if (stream === undefined || stream.destroyed === true)
          held.destroy(c._fatalError ?? undefined)
        else stream.once('close', () => closeLease(held, c._fatalError))
      }
      // COM_QUIT is queued behind the running commands; mysql2 calls back as it is sent (or at
      // once, with an error, on a connection already closed).
      realEnd.call(connection, retire)
    }
    this.#pool.close().then(
      () => callBack(),
      (error: Error) => callBack(error),
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
      (error: Error) => {
        process.nextTick(() => {
          if (this.listenerCount('error') > 0) this.emit('error', driverError(error))
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
