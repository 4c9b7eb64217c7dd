import type { EventEmitter } from 'node:events'
import pg from 'pg'
import type { Dialect } from '../core/dialect.js'
import {
  AcquireTimeoutError,
  ConnectError,
  InvalidOptionError,
  PipelineAbortedError,
  PoolClosedError,
} from '../core/errors.js'
import type { Lease } from '../core/lease.js'
import type { Pool as LifeguardPool } from '../core/pool.js'
import {
  type AcquireOptions,
  describe,
  isConstructor,
  MAX_TIMER_MS,
  resolvePoolOptions,
} from '../core/pool-options.js'
import { createPool } from '../create-pool.js'
import { pipelinable } from '../dialects/pg-pipelinable.js'
import { type PgClientConstructor, postgres } from '../dialects/postgres.js'
import { registerFacade } from './lifeguard-of.js'
import { manage, type PoolHold } from './manage.js'
import {
  checkedPgStream,
  type LifeguardOptions,
  type PgPoolConfig,
  splitPgPoolConfig,
} from './pg-pool-config.js'
import { poolKey } from './pool-key.js'
import { StatementTimings } from './statement-timings.js'

export type { LifeguardOptions, PgPoolConfig } from './pg-pool-config.js'

/** pg's client config, plus the lifeguard options of the shared pool the client borrows from. */
export interface PgClientConfig extends pg.ClientConfig {
  /** lifeguard options of the shared pool this client borrows from. */
  lifeguard?: LifeguardOptions | undefined
}

/** The parts of pg's Client that its typings leave out. */
interface ClientInternals {
  _queryable?: boolean
  _ending?: boolean
  release?: (error?: Error | boolean) => void
  connection?: { stream?: { destroyed?: boolean } }
}

type Callback = (error: Error | undefined, result?: unknown) => void

function noop(): void {}

/**
 * Calls a user's callback with how `promise` settled, outside the promise chain (on the next
 * tick), as pg does: an exception the callback throws is the `uncaughtException` it is with pg,
 * not an unhandled rejection.
 */
function settleTo<T>(
  promise: Promise<T>,
  onValue: (value: T) => void,
  onError: (error: Error) => void,
): void {
  promise.then(
    (value) => process.nextTick(onValue, value),
    (error: Error) => process.nextTick(onError, error),
  )
}

/** Why a shared client that pg no longer lets query is torn down under its other statements. */
const LOST = new Error('Connection terminated unexpectedly: the client is no longer queryable')

/**
 * Whether a statement's error says its session is gone: the server ending it (a FATAL or PANIC
 * error response, such as 57P01 from pg_terminate_backend, which comes before the socket closes),
 * or a socket error the dialect calls a disconnect. An ERROR response (08P01 for a wrong number
 * of parameters included) leaves the session as it was.
 */
function sessionLost(error: unknown, isDisconnect: (error: unknown) => boolean): boolean {
  const severity = (error as { severity?: unknown } | null | undefined)?.severity
  if (typeof severity === 'string') return severity === 'FATAL' || severity === 'PANIC'
  return isDisconnect(error)
}

/** pg-pool's error for a checkout after `end()`. */
function endedError(): Error {
  return new Error('Cannot use a pool after calling end on the pool')
}

/** pg's error for a statement whose own `query_timeout` fired. */
function isReadTimeout(error: unknown): boolean {
  return error instanceof Error && error.message === 'Query read timeout'
}

/**
 * Whether `query` is a pg `Query` without a callback of its own: pg's client gives it the
 * callback passed with it, and calls that with the query's result once it has run. pg-pool's
 * `query()` resolves with that result and releases its client then, so the facade does too; any
 * other submittable (pg-cursor, pg-query-stream) is handed back at once, as before.
 */
function callsBack(query: unknown): boolean {
  return query instanceof pg.Query && (query as { callback?: unknown }).callback === undefined
}

function internals(client: pg.Client): ClientInternals {
  return client as unknown as ClientInternals
}

/**
 * pg-pool's error for a caller whose connect or wait failed, from the core's: the driver's own
 * error (the `ConnectError`'s cause), pg-pool's connect timeout error, or its wait timeout error.
 */
function pgCheckoutError(error: unknown): unknown {
  if (error instanceof ConnectError) {
    if (error.cause !== undefined) return error.cause
    // The core's connect timer fired: pg-pool destroys the socket, and says so.
    return new Error('Connection terminated due to connection timeout', {
      cause: new Error('Connection terminated unexpectedly'),
    })
  }
  if (error instanceof AcquireTimeoutError) {
    return new Error('timeout exceeded when trying to connect')
  }
  return error
}

/** One caller of the facade's `connect()` waiting for its client. */
interface PendingCheckout {
  /** Queued behind a full pool when `end()` was called: pg-pool never serves it. */
  stranded: boolean
  /** When it started waiting (only read for pg's `connectionTimeoutMillis`). */
  readonly startedAt: number
  /** Set by `end()` for a checkout it lets finish: called once it settles. */
  settled: (() => void) | undefined
}

/** A client checked out, and the release of that checkout (`client.release` too, unless shared). */
interface Checkout {
  client: LentClient
  release: (error?: Error | boolean) => void
}

/** The release of a statement of `query()` that shares its client; `joined` when others were on it first. */
type SharedRelease = ((error?: Error | boolean) => void) & { joined?: true }

/** The acquire options of a statement of `query()` that may share its client. */
const SHARED: AcquireOptions = Object.freeze({ shared: true })

/** The acquire options of such a statement known to run long: nobody joins behind it. */
const SHARED_LAST: AcquireOptions = Object.freeze({ shared: 'last' })

/** How a statement of `query()` may share its client: see `AcquireOptions.shared`. */
type Share = boolean | 'last'

/** The text of a query of pg's (a string, or a config's `text`), for its timings. */
function textOf(query: unknown): string | undefined {
  if (typeof query === 'string') return query
  const text = (query as { text?: unknown } | null | undefined)?.text
  return typeof text === 'string' ? text : undefined
}

/** A client is lent out with `release` set on it, as pg-pool does; `release` is not in pg's Client type. */
export type LentClient = pg.PoolClient

/** How many times each physical client was lent, for pg's `maxUses`. */
const uses = new WeakMap<pg.Client, number>()

/** Holds the keyed lifeguard pool that `Client`s with these options borrow from. */
function holdPool(connection: pg.ClientConfig, options: LifeguardOptions): PoolHold<pg.Client> {
  return manage(poolKey('pg-client', { connection, options }), () =>
    createPool<pg.Client>({ ...options, dialect: postgres(connection) }),
  )
}

/** What the facade uses of pg.Pool's own constructor and fields; its methods are all replaced. */
interface PgPoolFields extends EventEmitter {
  options: pg.PoolOptions & { verify?: unknown; Client?: unknown }
  ending: boolean
  ended: boolean
  /** pg-pool's `log` option, or a no-op: set by pg-pool's constructor. */
  log: (...messages: unknown[]) => void
  /** pg-pool's `Promise` option, or the global `Promise`: set by pg-pool's constructor. */
  Promise: PromiseConstructor
}

/** One of pg-pool's `_idle` entries, as far as it is public knowledge: the idle client. */
export interface PgIdleItem {
  /** The idle client. */
  readonly client: pg.Client
}

/** pg-pool's `verify(client, callback)` option. */
type Verify = (client: pg.Client, callback: (error?: Error | null) => void) => void

/** pg-pool's options that take a function, and what each must be. */
const FUNCTION_OPTIONS = {
  log: 'a function (...messages) => void',
  verify: 'a function (client, callback) => void',
  Promise: 'a Promise constructor',
  Client: "a client class (constructor), such as pg's Client",
} as const

/**
 * Checks pg-pool's function-valued options as pg-pool reads them: a falsy value means "not given",
 * anything else must be a function. pg-pool would fail only when it first calls one (`this.log
 * is not a function` in the middle of a query); this fails at `new Pool()`, where it was written.
 */
function checkFunctionOptions(config: PgPoolConfig | undefined): void {
  if (typeof config !== 'object' || config === null) return
  for (const [option, allowed] of Object.entries(FUNCTION_OPTIONS)) {
    const value = (config as Record<string, unknown>)[option]
    const constructs = option === 'Promise' || option === 'Client'
    if (value && (typeof value !== 'function' || (constructs && !isConstructor(value)))) {
      throw new InvalidOptionError(
        option,
        `Invalid option ${option}: ${describe(value)}; expected ${allowed}, or nothing`,
      )
    }
  }
}

/** pg's Pool, typed loosely so that the facade can replace its methods and accessors. */
const PgPoolBase = pg.Pool as unknown as new (config?: pg.PoolConfig) => PgPoolFields

/**
 * A drop-in `pg.Pool` (a real subclass of it) over a lifeguard pool of its own: it owns that pool,
 * its waiting count and its pg events. It lends genuine `pg.Client`s with
 * `release(errOrDestroy?)`, the same object each time for the same physical connection. As with
 * pg, two pools built with equal options are two pools: one holding all its connections never
 * delays the other. It follows pg-pool's defaults: idle clients close after 10 s
 * (`idleTimeoutMillis`), and hold the process until then unless `allowExitOnIdle` is set.
 * Its events (`connect`, `acquire`, `release`, `remove`, and `error` for an idle client, emitted
 * only when somebody listens), its callbacks and its `verify`, `log`, `Promise` and `Client`
 * options are pg-pool's; `_clients` and `_idle` are read-only views of the pool's clients.
 *
 * Unlike pg-pool, `query()` pipelines: once every client is busy and the pool is full, an
 * autocommit statement (one SELECT, INSERT, UPDATE, DELETE, WITH, VALUES, TABLE or SHOW) is sent on
 * the client with the fewest statements in flight, up to `maxPipeline` (default 100), each with its
 * own Sync so that it fails alone. `connect()`, transactions, cursors, COPY, LISTEN and anything
 * that changes the session keep a client to themselves. A statement pipelined behind others whose
 * connection is lost rejects with `PipelineAbortedError`; `maxPipeline: 1` turns it off (see
 * docs/performance.md#pipelining).
 *
 * @example
 * ```ts
 * import { Pool } from 'lifeguard/pg'
 *
 * const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 10 })
 * const { rows } = await pool.query('SELECT $1::int AS n', [1])
 * await pool.end()
 * ```
 */
class LifeguardPgPool extends PgPoolBase {
  readonly #pool: LifeguardPool<pg.Client>
  readonly #maxUses: number
  readonly #seen = new WeakSet<pg.Client>()
  readonly #leases = new Map<pg.Client, Lease<pg.Client>>()
  readonly #clients = new Map<number, pg.Client>()
  /** The callers waiting for a client, in the order they came. */
  readonly #pending = new Set<PendingCheckout>()
  /** pg's `connectionTimeoutMillis`, or `Infinity` when it waits for ever. */
  readonly #wait: number
  #waiting = 0
  #onConnect: ((event: { id: number; connection: pg.Client }) => void) | undefined
  #onClose: ((event: { id: number }) => void) | undefined
  /** The clients made and not yet closed, in the order they were made, for `_clients`; out at once when retired. */
  readonly #open = new Set<pg.Client>()
  /** The clients that connected, for `_idle`. */
  readonly #established = new WeakSet<pg.Client>()
  /** Clients already verified (pg-pool's `verify` runs on a new client's first lend only). */
  readonly #verified = new WeakSet<pg.Client>()
  /** Clients whose idle `'error'` was already reported: pg-pool reports one per client. */
  readonly #failed = new WeakSet<pg.Client>()
  /** The client whose lease is being given back right now: its retirement is not an idle one. */
  #returning: pg.Client | undefined
  /** Whether `query()` may pipeline its autocommit statements: `maxPipeline` above 1. */
  readonly #pipelines: boolean
  /** The most clients the pool opens: `max` and `maxOverflow`. */
  readonly #max: number
  /** Set by `query()` for the `connect()` it makes at once: that checkout may share a client. */
  #shareNext: Share = false
  /** How long each statement text ran on its own lately: a slow one seals its client. */
  readonly #timings = new StatementTimings()
  /** When each shared client last answered a statement, for the next one's own time. */
  readonly #answeredAt = new WeakMap<pg.Client, number>()
  /** The clients lent to sharing statements of `query()`, with how many each carries now. */
  readonly #sharers = new Map<pg.Client, number>()
  /** The dialect's `isDisconnect`: whether a statement's error says its session is gone. */
  readonly #isDisconnect: (error: unknown) => boolean

  constructor(config?: PgPoolConfig, defaults: LifeguardOptions = {}) {
    // Checked before pg's constructor runs, so that a bad option leaves nothing behind.
    const { connection, options, maxUses } = splitPgPoolConfig(config, defaults)
    checkFunctionOptions(config)
    const { lifeguard: _, ...pgConfig } = config ?? {}
    super(pgConfig)
    this.#maxUses = maxUses
    // pg-pool's `Client` option; and a client released with its query running waits for it,
    // as pg-pool lends such a client on (its reset queues behind the query on pg's queue).
    const dialect = postgres(connection, {
      Client: this.#clientMaker(config?.Client),
      releasedBusy: 'wait',
    })
    this.#isDisconnect = (error) => dialect.isDisconnect?.(error) === true
    this.#pool = createPool<pg.Client>({ ...options, dialect })
    this.#wait = this.#pool.options.acquireTimeout
    this.#pipelines = this.#pool.options.maxPipeline > 1
    this.#max = this.#pool.options.max + this.#pool.options.maxOverflow
    registerFacade(this, this.#pool as LifeguardPool<unknown>)
    this.#watchClients()
    // 'remove' needs the client of a closed connection; the core's 'close' carries only its id.
    this.#onConnect = (event) => this.#clients.set(event.id, event.connection)
    this.#onClose = (event) => {
      const client = this.#clients.get(event.id)
      this.#clients.delete(event.id)
      if (client !== undefined && this.#seen.has(client)) this.emit('remove', client)
    }
    this.#pool.on('connect', this.#onConnect).on('close', this.#onClose)
  }

  /**
   * pg-pool's private state, as read-only views of the pool's real state (code in the wild reads
   * `_clients.length` and `_idle.length` for lack of metrics): the clients made and not closed, in
   * the order they were made (one still connecting included, as in pg-pool), and the idle ones as
   * pg-pool's entries, `{ client }`. A client being reset after its release counts as idle, as
   * pg-pool's does the moment it is released.
   */
  #watchClients(): void {
    const define = (name: string, get: () => unknown) =>
      Object.defineProperty(this, name, { get, configurable: true, enumerable: false })
    define('_clients', () => Object.freeze([...this.#open]))
    define('_idle', () =>
      Object.freeze(
        [...this.#open]
          .filter((client) => this.#established.has(client) && !this.#lent(client))
          .map((client): PgIdleItem => Object.freeze({ client })),
      ),
    )
    const pool = this.#pool
    pool.on('connect', ({ connection: client }) => {
      this.log('new client connected')
      this.#established.add(client)
      ;(client as unknown as EventEmitter).on('error', (error: unknown) =>
        this.#idleError(client, error),
      )
    })
    pool.on('invalidate', ({ connection: client, reason }) => {
      this.#open.delete(client)
      if (reason === 'idle') this.log('remove idle client')
      if (reason !== 'lifetime') return
      this.log('remove expired client')
      // pg-pool retires an idle client that outlived maxLifetimeSeconds by lending it to itself
      // and releasing it at once, so its users see 'acquire' and 'release' before 'remove'.
      // (Not for lifeguard's own 30 min lifetime, which applies when pg's option is left out.)
      const pgLifetime = Number(this.options.maxLifetimeSeconds) > 0
      const idle = client !== this.#returning && !this.#leases.has(client)
      if (pgLifetime && idle && this.#seen.has(client)) {
        this.emit('acquire', client)
        this.emit('release', undefined, client)
      }
    })
    pool.on('close', ({ connection: client }) => this.#open.delete(client))
    pool.on('connectError', ({ error }) => this.log('client failed to connect', error))
  }

  /**
   * The `Client` the dialect makes each connection with: pg-pool's `Client` option, or pg's, called
   * as pg-pool calls it (`new Client(options)`), the client listed in `_clients` from the moment
   * it is made, as in pg-pool, until its connect fails or it ends.
   */
  #clientMaker(given: unknown): PgClientConstructor {
    const Base = (given || pg.Client) as PgClientConstructor
    const made = (client: pg.Client) => this.#made(client)
    // Called with `new`: the object it returns is the one `new` gives, unwrapped.
    return function Client(config?: string | pg.ClientConfig) {
      const client = new Base(config)
      made(client)
      return client
    } as unknown as PgClientConstructor
  }

  #made(client: pg.Client): void {
    this.log('connecting new client')
    this.#open.add(client)
    const forget = () => this.#open.delete(client)
    const emitter = client as unknown as Partial<EventEmitter>
    if (typeof emitter.once === 'function') emitter.once('end', forget)
    // The dialect connects with a callback: a failed connect takes the client off the list,
    // since a client that never connected may never emit 'end'. The wrapper lasts one call.
    const target = client as unknown as { connect?: (...args: unknown[]) => unknown }
    const connect = target.connect
    if (typeof connect !== 'function') return
    const own = Object.hasOwn(target, 'connect')
    target.connect = (callback?: unknown) => {
      if (own) target.connect = connect
      else delete target.connect
      if (typeof callback !== 'function') return connect.call(client, callback)
      return connect.call(client, (error: unknown, ...rest: unknown[]) => {
        if (error) forget()
        return (callback as (...a: unknown[]) => unknown)(error, ...rest)
      })
    }
  }

  /**
   * pg-pool's idle listener: an idle client that errors (its backend terminated, its socket
   * reset) is removed, and the pool emits `'error'(err, client)` with `err.client` set. Unlike
   * pg-pool, which would crash the process, nothing is emitted when nobody listens.
   */
  #idleError(client: pg.Client, error: unknown): void {
    if (this.#lent(client)) return // lent: the error is the borrower's, on the client
    if (this.#failed.has(client)) {
      this.log('additional client error after disconnection due to error', error)
      return
    }
    this.#failed.add(client)
    this.#open.delete(client)
    if (typeof error === 'object' && error !== null) (error as { client?: unknown }).client = client
    if (this.listenerCount('error') > 0) this.emit('error', error, client)
  }

  /** Whether `client` is lent: to one caller, or to statements that share it. */
  #lent(client: pg.Client): boolean {
    return this.#leases.has(client) || this.#sharers.has(client)
  }

  /** pg-pool's `Promise` option: the promises this pool returns are made with it. */
  #promised<T>(promise: Promise<T>): Promise<T> {
    const P = this.Promise
    if (P === undefined || P === Promise) return promise
    return new P<T>((resolve, reject) => promise.then(resolve, reject))
  }

  /** pg-pool's `verify(client, callback)`, on a new client's first lend: an error releases it with that error. */
  #verify(lent: Checkout): Promise<Checkout> {
    const verify = this.options.verify as Verify | undefined
    const client = lent.client
    if (typeof verify !== 'function' || this.#verified.has(client)) {
      return Promise.resolve(lent)
    }
    this.#verified.add(client)
    return new Promise<Checkout>((resolve, reject) => {
      const done = (error?: Error | null) => {
        if (!error) return resolve(lent)
        lent.release(error)
        reject(error)
      }
      try {
        verify(client, done)
      } catch (error) {
        done(error as Error)
      }
    })
  }

  /** The lifeguard pool this facade lends from, its own. */
  get lifeguard(): LifeguardPool<pg.Client> {
    return this.#pool
  }

  /** pg's overloads, all of them: with a callback, or a promise. */
  connect(
    callback?: (
      error: Error | undefined,
      client?: LentClient,
      done?: (release?: unknown) => void,
    ) => void,
  ): Promise<LentClient> | undefined {
    if (this.ending) {
      const error = endedError()
      if (callback === undefined) return this.#promised(Promise.reject(error))
      // At once, as pg-pool calls it.
      callback(error, undefined, noop)
      return undefined
    }
    // query() sets #shareNext around its connect() call only; a wrapper that defers it shares not,
    // nor one that calls it for a promise (it would release through `client.release`, not set).
    const shared = callback === undefined ? false : this.#shareNext
    this.#shareNext = false
    const promise = this.#lend(shared)
    if (callback === undefined) return this.#promised(promise.then((lent) => lent.client))
    settleTo(
      promise,
      (lent) => callback(undefined, lent.client, lent.release as (release?: unknown) => void),
      (error) => callback(error, undefined, noop),
    )
    return undefined
  }

  /** A checkout, then pg-pool's `verify` on a new client's first lend. */
  #lend(share: Share): Promise<Checkout> {
    const checkout = this.#checkout(share)
    return typeof this.options.verify === 'function'
      ? checkout.then((lent) => this.#verify(lent))
      : checkout
  }

  async #checkout(share: Share): Promise<Checkout> {
    // Inside a request scope the request's connection serves it, never shared.
    const scope = this.#pool.currentScope()
    const scoped = scope !== undefined && !scope.ended
    const shared = scoped ? false : share
    const entry: PendingCheckout = {
      stranded: false,
      startedAt: Number.isFinite(this.#wait) ? performance.now() : 0,
      settled: undefined,
    }
    this.#pending.add(entry)
    this.#waiting++
    let lease: Lease<pg.Client>
    try {
      // A shared connection torn down under its sharers (another's statement broke it) revokes
      // the lease of one whose statement was not sent yet: nothing ran, so it borrows again.
      do {
        lease = await this.#pool.acquire(this.#acquireOptions(shared))
      } while (!lease.active)
    } catch (error) {
      if (entry.stranded && error instanceof PoolClosedError) return this.#strand(entry)
      throw pgCheckoutError(error)
    } finally {
      this.#waiting--
      this.#pending.delete(entry)
      entry.settled?.()
    }
    if (entry.stranded) {
      // A client freed for it after end(): pg-pool would have closed it and served nobody. A
      // shared one may carry other statements: it goes back, and closes once they are done.
      if (shared) lease.release()
      else lease.destroy()
      return this.#strand(entry)
    }
    const client = lease.connection
    let release: (error?: Error | boolean) => void
    if (shared && !this.#leases.has(client)) {
      // Several statements may hold it at once: each gets its own release, and `client.release`
      // is left alone (it would be the last one's).
      const carried = this.#sharers.get(client) ?? 0
      this.#sharers.set(client, carried + 1)
      release = this.#releaser(client, lease, false, true)
      if (carried > 0) (release as SharedRelease).joined = true
    } else {
      this.#leases.set(client, lease)
      // Inside a request scope the lease is the request's, not the pool's: see #releaser.
      release = this.#releaser(client, lease, scoped)
      internals(client).release = release
    }
    if (!this.#seen.has(client)) {
      this.#seen.add(client)
      this.emit('connect', client)
    }
    this.emit('acquire', client)
    return { client: client as LentClient, release }
  }

  /**
   * The core acquire's options, as pg-pool times its callers: one queued behind a full pool (or
   * an idle client) waits up to `connectionTimeoutMillis`; one for which a client is being opened
   * has no wait timer, only the connect timeout, whose own error it gets (here a backstop of
   * twice that, in case a client freed meanwhile went to another caller).
   */
  #acquireOptions(shared: Share): AcquireOptions | undefined {
    const wait = this.#wait
    const plain = shared === false ? undefined : shared === true ? SHARED : SHARED_LAST
    // A full pool opens nothing for it: the common case under load, known without stats().
    if (!Number.isFinite(wait) || this.#open.size >= this.#max) return plain
    const stats = this.#pool.stats()
    const opening = stats.idle === 0 && stats.total - stats.closing < stats.max
    if (!opening) return plain
    const timeout = Math.min(2 * wait, MAX_TIMER_MS)
    return shared === false ? { timeout } : { timeout, shared }
  }

  /**
   * A caller queued behind a full pool when `end()` was called: pg-pool never serves it, so it
   * stays pending, counted in `waitingCount`, until its `connectionTimeoutMillis` rejects it (for
   * ever without one). The timer is unref'd, as pg-pool's.
   */
  #strand(entry: PendingCheckout): Promise<never> {
    this.#waiting++
    return new Promise<never>((_, reject) => {
      if (!Number.isFinite(this.#wait)) return
      const left = Math.max(0, entry.startedAt + this.#wait - performance.now())
      setTimeout(() => {
        this.#waiting--
        reject(new Error('timeout exceeded when trying to connect'))
      }, left).unref()
    })
  }

  /**
   * pg-pool's release: once only (a second call throws), and a truthy argument destroys. A
   * statement of `query()` that shares its client (`shared`) has a release of its own, and
   * `client.release` is left alone: a dead client is destroyed at once (the statements still on it
   * fail with it), but one retired for `maxUses`, or released after `end()`, goes once the last
   * statement on it is back.
   */
  #releaser(
    client: pg.Client,
    lease: Lease<pg.Client>,
    scoped: boolean,
    shared = false,
  ): SharedRelease {
    let released = false
    return (error?: Error | boolean) => {
      if (released) {
        throw new Error('Release called on client which has already been released to the pool.')
      }
      released = true
      if (shared) {
        const left = (this.#sharers.get(client) ?? 1) - 1
        if (left === 0) this.#sharers.delete(client)
        else this.#sharers.set(client, left)
      } else {
        this.#leases.delete(client)
      }
      const count = (uses.get(client) ?? 0) + 1
      uses.set(client, count)
      this.emit('release', error, client)
      if (!lease.active) return // revoked: the pool was destroyed under it, or closed it
      const c = internals(client)
      // A request scope's query must not destroy the request's connection for maxUses (its
      // transaction would go with it): the connection retires at its first use after the request.
      const wornOut = count >= this.#maxUses && !scoped
      if (wornOut) this.log('remove expended client')
      const dead = c._queryable === false || c._ending === true
      this.#returning = client
      try {
        // As pg-pool's `_release`: once end() was called, a released client is closed, never
        // lent to a caller end() lets finish (those get the clients being opened for them). A
        // shared one that is not broken is retired by the pool once its other statements are
        // back (a destroy() with no reason), and meanwhile nobody else joins it.
        if (error || dead || this.ending || wornOut) {
          const broken = error instanceof Error ? error : dead && shared ? LOST : undefined
          if (!shared || broken !== undefined) this.#open.delete(client)
          lease.destroy(broken)
        } else {
          lease.release()
        }
      } finally {
        this.#returning = undefined
      }
    }
  }

  /** pg's overloads, all of them: with a callback, or a promise. */
  query(text: unknown, values?: unknown, callback?: Callback): unknown {
    if (typeof text === 'function') {
      const error = new Error(
        'Passing a function as the first parameter to pool.query is not supported',
      )
      const cb = text as Callback
      setImmediate(() => cb(error))
      return undefined
    }
    if (typeof values === 'function') {
      callback = values as Callback
      values = undefined
    }
    const promise = this.#query(text, values)
    if (callback === undefined) return this.#promised(promise)
    const cb = callback
    settleTo(
      promise,
      (result) => cb(undefined, result),
      (error) => cb(error),
    )
    return undefined
  }

  async #query(text: unknown, values: unknown): Promise<unknown> {
    // An autocommit statement may share a busy client once the pool is full (maxPipeline); one
    // that ran long lately lets nobody join behind it.
    const sql = this.#pipelines && pipelinable(text) ? textOf(text) : undefined
    const share: Share = sql === undefined ? false : this.#timings.slow(sql) ? 'last' : true
    const { client, release } =
      this.connect === ownConnect
        ? await this.#lendForQuery(share)
        : // Through connect(callback), as pg-pool's query goes: code that wraps connect (tracing)
          // sees the query's checkout too.
          await new Promise<Checkout>((resolve, reject) => {
            this.#shareNext = share
            try {
              this.connect((error, client, release) =>
                error ? reject(error) : resolve({ client: client!, release: release! }),
              )
            } finally {
              this.#shareNext = false
            }
          })
    // Lent while other statements were on it: it is pipelined behind them.
    const joined = (release as SharedRelease).joined === true
    const sentAt = sql === undefined ? 0 : performance.now()
    this.log('dispatching query')
    let result: unknown
    try {
      // A SQL error leaves the connection usable (the release reset rolls back a failed
      // transaction), so unlike pg-pool it is released, not destroyed; a dead one is destroyed.
      result = callsBack(text)
        ? await new Promise<unknown>((resolve, reject) => {
            ;(client.query as (t: unknown, v: unknown, cb: Callback) => void)(
              text,
              values,
              (error, value) => (error ? reject(error) : resolve(value)),
            )
          })
        : await (client.query as (t: unknown, v: unknown) => Promise<unknown>)(text, values)
    } catch (error) {
      const c = internals(client)
      // A shared client goes straight on to the next statement in line, with no reset between
      // them to find it lost: it is dead as soon as its socket is destroyed (pg destroys it at
      // once when a pipelined statement's query_timeout fires) or the server said the session
      // ends (57P01 arrives before the socket closes), not only once pg marks it unqueryable.
      const dead =
        c._queryable === false ||
        (this.#sharers.has(client) &&
          (c.connection?.stream?.destroyed === true || sessionLost(error, this.#isDisconnect)))
      this.log('query dispatched')
      // A statement that failed took its time too, and whatever was pipelined behind it waited.
      if (sql !== undefined && !dead) this.#timed(client, sql, sentAt)
      release(dead ? (error as Error) : undefined)
      // A statement whose own query_timeout fired keeps pg's 'Query read timeout'.
      if (dead && joined && !isReadTimeout(error)) throw this.#aborted(error)
      throw error
    }
    this.log('query dispatched')
    if (sql !== undefined) this.#timed(client, sql, sentAt)
    // pg-pool passes on the query callback's error argument: null, and so does 'release'.
    release(null as never)
    return result
  }

  /**
   * Records how long a statement ran on its own: from when it was sent, or from the answer
   * before it on the same client if that came later (it waited in the pipeline until then).
   */
  #timed(client: pg.Client, sql: string, sentAt: number): void {
    const now = performance.now()
    const previous = this.#answeredAt.get(client) ?? 0
    this.#answeredAt.set(client, now)
    this.#timings.record(sql, now - Math.max(previous, sentAt))
  }

  /** What `connect()` does for `query()`, without its callback's hops (nobody wraps it). */
  #lendForQuery(share: Share): Promise<Checkout> {
    if (this.ending) {
      return Promise.reject(endedError())
    }
    return this.#lend(share)
  }

  /** The error of a statement pipelined behind others, lost with its client. */
  #aborted(cause: unknown): PipelineAbortedError {
    const reason = cause instanceof Error ? cause.message : String(cause)
    return new PipelineAbortedError(
      `A statement pipelined on a shared connection of pool "${this.#pool.name}" was lost with that connection (${reason}); it may or may not have run, and it was not retried`,
      { cause },
    )
  }

  /** pg's overloads, all of them: with a callback, or a promise. */
  end(callback?: (error?: Error) => void): Promise<void> | undefined {
    this.log('ending')
    if (this.ending) {
      const error = new Error('Called end on pool more than once')
      if (callback === undefined) return this.#promised(Promise.reject(error))
      process.nextTick(() => callback(error))
      return undefined
    }
    this.ending = true
    const pool = this.#pool
    if (this.#onConnect !== undefined) pool.off('connect', this.#onConnect)
    // As in pg-pool, a caller for whom a client is being opened gets it; those queued behind a
    // full pool are never served (see #strand). The core serves its waiters in order, so the
    // first ones are those its connects in flight are for.
    let opening = pool.stats().connecting
    const served: Promise<void>[] = []
    for (const entry of this.#pending) {
      if (opening > 0) {
        opening--
        served.push(
          new Promise<void>((resolve) => {
            entry.settled = resolve
          }),
        )
      } else {
        entry.stranded = true
      }
    }
    // A lent client stays usable until it is released, as in pg-pool: close() waits for it.
    const finished = (async () => {
      await Promise.all(served)
      await pool.close()
      this.ended = true
      if (this.#onClose !== undefined) pool.off('close', this.#onClose)
    })()
    if (callback === undefined) return this.#promised(finished)
    settleTo(
      finished,
      () => callback(),
      (error) => callback(error),
    )
    return undefined
  }

  /** Physical connections of this pool, open or opening; one being closed no longer counts, as in pg-pool. */
  get totalCount(): number {
    const stats = this.#pool.stats()
    return stats.total - stats.closing
  }

  /** Idle connections of this pool. */
  get idleCount(): number {
    return this.#pool.stats().idle
  }

  /**
   * Callers of this facade waiting for a connection, as pg-pool counts them: not those for whom a
   * client is being opened (pg-pool's are not in its queue), only the others.
   */
  get waitingCount(): number {
    const waiting = this.#waiting
    return waiting === 0 ? 0 : Math.max(0, waiting - this.#pool.stats().connecting)
  }

  /** Clients past their lifetime still lent out, as pg-pool counts them: each is closed when it comes back. */
  get expiredCount(): number {
    return this.#pool.stats().expired
  }

  /** Clients this facade has lent and not yet had back. */
  get leasedCount(): number {
    return this.#leases.size
  }
}

/** The drop-in pool's type: pg's `Pool`, plus its lifeguard pool and the count of clients lent. */
export interface Pool extends pg.Pool {
  /** The lifeguard pool this facade lends from, its own. */
  readonly lifeguard: LifeguardPool<pg.Client>
  /** Clients this facade has lent and not yet had back. */
  readonly leasedCount: number
  /** pg-pool's private list of open clients, as a read-only view (code in the wild reads its length). */
  readonly _clients: readonly pg.Client[]
  /** pg-pool's private list of idle clients' entries, as a read-only view. */
  readonly _idle: readonly PgIdleItem[]
}

/** The drop-in pool's constructor: pg's, with the lifeguard defaults as an optional second argument. */
export interface PoolConstructor {
  new (config?: PgPoolConfig, defaults?: LifeguardOptions): Pool
  readonly prototype: Pool
}

/**
 * A drop-in `pg.Pool` (a real subclass of it, named `Pool`) over a lifeguard pool of its own; see
 * `LifeguardPgPool` above for what it does.
 */
export const Pool = LifeguardPgPool as unknown as PoolConstructor

/** The facade's own `connect`: `query()` calls its checkout directly unless someone wrapped it. */
const ownConnect = LifeguardPgPool.prototype.connect
// Drizzle tells a pool from a client by the constructor's name.
Object.defineProperty(LifeguardPgPool, 'name', { value: 'Pool' })

/** What the facade uses of pg.Client's own constructor and fields; its I/O methods are all replaced. */
interface PgClientFields extends EventEmitter {
  _ending: boolean
  processID: number | null
  secretKey: number | null
}

/** pg's Client, typed loosely so that the facade can replace its methods. */
const PgClientBase = pg.Client as unknown as new (
  config?: string | pg.ClientConfig,
) => PgClientFields

/** The defaults of a client's shared pool: a fresh session for each client, idle ones closed as pg-pool does. */
const CLIENT_POOL_DEFAULTS: LifeguardOptions = { resetOnRelease: 'session', idleTimeout: 10_000 }

/** Stands in for the dialect while a client's options are checked; it is never called. */
const UNUSED_DIALECT = {
  name: 'unused',
  connect: () => Promise.reject(new Error('not a dialect')),
  close: () => Promise.resolve(),
} as unknown as Dialect<pg.Client>

/**
 * The options of the shared pool a `Client` borrows from, checked now: the pool itself is opened
 * on the first `connect()`, but a bad option fails at `new Client()`, where it was written.
 */
function clientPoolOptions(defaults: LifeguardOptions, given: unknown): LifeguardOptions {
  if (
    given !== undefined &&
    given !== null &&
    (typeof given !== 'object' || Array.isArray(given))
  ) {
    throw new InvalidOptionError(
      'lifeguard',
      `Invalid option lifeguard: ${describe(given)}; expected an object of lifeguard pool options`,
    )
  }
  const options = { ...CLIENT_POOL_DEFAULTS, ...defaults, ...(given as LifeguardOptions) }
  // Named for the check, so that it does not use up a generated `pool-N` name.
  resolvePoolOptions({
    ...options,
    name: options.name ?? 'lifeguard/pg Client',
    dialect: UNUSED_DIALECT,
  })
  return options
}

/** Holds on the shared pools of `Client`s, by key: kept until the module's `end()`. */
type ClientHolds = Map<string, PoolHold<pg.Client>>

/**
 * A drop-in `pg.Client` (a real subclass of it) that borrows a connection from a shared lifeguard
 * pool on `connect()` and gives it back on `end()`: it owns one borrow. An app or ORM that opens a
 * client per request (Sequelize, @fastify/postgres's `pg.Client`) pools without knowing it. Queries
 * go to the borrowed `pg.Client`; its `notification`, `notice` and `error` events are forwarded.
 */
class LifeguardPgClient extends PgClientBase {
  readonly #connection: pg.ClientConfig
  readonly #options: LifeguardOptions
  readonly #holds: ClientHolds
  readonly #types: pg.CustomTypesConfig | undefined
  #lease: Lease<pg.Client> | undefined
  #physical: pg.Client | undefined
  #connecting: Promise<void> | undefined
  #broken: Error | undefined
  #forwarders: Array<[string, (...args: unknown[]) => void]> = []

  constructor(
    config: string | PgClientConfig | undefined,
    defaults: LifeguardOptions,
    holds: ClientHolds,
  ) {
    const given: PgClientConfig =
      typeof config === 'string' ? { connectionString: config } : { ...config }
    const { lifeguard, types, ...connection } = given
    const options = clientPoolOptions(defaults, lifeguard)
    if (connection.stream) connection.stream = checkedPgStream(connection.stream) as never
    super(connection)
    // A per-client `types` (Sequelize binds a new one for every connection) would make every key
    // unique; it is applied to each query instead.
    this.#types = types
    this.#connection = connection
    this.#options = options
    this.#holds = holds
  }

  /** The shared lifeguard pool this client borrows from (opened on first use). */
  get lifeguard(): LifeguardPool<pg.Client> {
    return this.#hold().pool
  }

  #hold(): PoolHold<pg.Client> {
    const key = poolKey('pg-client', { connection: this.#connection, options: this.#options })
    let hold = this.#holds.get(key)
    if (hold === undefined || hold.pool.closed) {
      hold = holdPool(this.#connection, this.#options)
      this.#holds.set(key, hold)
    }
    return hold
  }

  /** Borrows a connection; with a callback, or as a promise. */
  connect(callback?: (error: Error | null) => void): Promise<void> | undefined {
    if (this.#connecting === undefined) {
      this.#connecting = this.#borrow()
    } else if (this.#lease === undefined || this._ending) {
      const error = new Error('Client has already been connected. You cannot reuse a client.')
      if (callback === undefined) return Promise.reject(error)
      process.nextTick(() => callback(error))
      return undefined
    }
    if (callback === undefined) return this.#connecting
    settleTo(
      this.#connecting,
      () => callback(null),
      (error) => callback(error),
    )
    return undefined
  }

  async #borrow(): Promise<void> {
    const pool = this.#hold().pool
    registerFacade(this, pool as LifeguardPool<unknown>)
    const lease = await pool.acquire()
    const physical = lease.connection
    this.#lease = lease
    this.#physical = physical
    // The borrowed backend's identity, for consumers that cancel queries or log it.
    const ids = physical as unknown as { processID: number | null; secretKey: number | null }
    this.processID = ids.processID
    this.secretKey = ids.secretKey
    const forward = (event: string) => {
      const listener = (...args: unknown[]) => {
        if (event === 'error') {
          this.#broken = args[0] as Error
          if (this.listenerCount('error') === 0) return
        }
        this.emit(event, ...args)
      }
      ;(physical as unknown as EventEmitter).on(event, listener)
      this.#forwarders.push([event, listener])
    }
    for (const event of ['notification', 'notice', 'error']) forward(event)
    this.emit('connect')
  }

  /** Runs a query on the borrowed connection, in every form pg's Client takes. */
  query(text: unknown, values?: unknown, callback?: unknown): unknown {
    const physical = this.#physical
    const config = this.#withTypes(text)
    if (physical !== undefined && !this._ending) {
      return (physical.query as (...args: unknown[]) => unknown)(config, values, callback)
    }
    const cb = (typeof values === 'function' ? values : callback) as Callback | undefined
    const args = typeof values === 'function' ? [] : [values]
    const promise = (async () => {
      if (this.#connecting === undefined || this._ending) {
        throw new Error(
          'Client is not connected: call connect() first (lifeguard/pg borrows a connection on connect())',
        )
      }
      await this.#connecting
      return (this.#physical!.query as (...a: unknown[]) => Promise<unknown>)(config, ...args)
    })()
    if (cb === undefined) return promise
    settleTo(
      promise,
      (result) => cb(undefined, result),
      (error) => cb(error),
    )
    return undefined
  }

  #withTypes(text: unknown): unknown {
    const types = this.#types
    if (types === undefined) return text
    if (typeof text === 'string') return { text, types }
    if (
      typeof text === 'object' &&
      text !== null &&
      typeof (text as { submit?: unknown }).submit !== 'function'
    ) {
      const config = text as { types?: unknown }
      return config.types === undefined ? { ...config, types } : config
    }
    return text
  }

  /** Gives the borrowed connection back (destroying it if it broke) and emits `'end'`. */
  end(callback?: (error?: Error) => void): Promise<void> | undefined {
    const finished = this.#giveBack()
    if (callback === undefined) return finished
    settleTo(
      finished,
      () => callback(),
      (error) => callback(error),
    )
    return undefined
  }

  async #giveBack(): Promise<void> {
    if (this._ending) return
    this._ending = true
    if (this.#connecting !== undefined) await this.#connecting.catch(noop)
    const physical = this.#physical
    const lease = this.#lease
    this.#physical = undefined
    this.#lease = undefined
    if (physical !== undefined) {
      const emitter = physical as unknown as EventEmitter
      for (const [event, listener] of this.#forwarders) emitter.off(event, listener)
      this.#forwarders = []
    }
    if (lease?.active) {
      const dead = this.#broken !== undefined || internals(physical!)._queryable === false
      if (dead) lease.destroy(this.#broken)
      else lease.release()
    }
    this.emit('end')
  }

  /** The transaction status of the borrowed connection (`I`, `T`, `E`), or `null`. */
  getTransactionStatus(): string | null {
    const physical = this.#physical as { getTransactionStatus?: () => string | null } | undefined
    return physical?.getTransactionStatus?.() ?? null
  }
}

/** The drop-in client's type: pg's `Client`, plus the shared lifeguard pool. */
export interface Client extends pg.Client {
  /** The shared lifeguard pool this client borrows from. */
  readonly lifeguard: LifeguardPool<pg.Client>
}

/** The drop-in client's constructor: pg's. */
export interface ClientConstructor {
  new (config?: string | PgClientConfig): Client
  readonly prototype: Client
}

/** A pg-shaped module whose `Pool` and `Client` pool through lifeguard; see {@link configurePg}. */
export interface PgModule {
  Pool: PoolConstructor
  Client: ClientConstructor
  types: typeof pg.types
  defaults: typeof pg.defaults
  Query: typeof pg.Query
  DatabaseError: typeof pg.DatabaseError
  escapeIdentifier: typeof pg.escapeIdentifier
  escapeLiteral: typeof pg.escapeLiteral
  Connection: typeof pg.Connection
  TypeOverrides: typeof pg.TypeOverrides
  Result: unknown
  /** Always `null`: the native bindings bypass the facade. */
  native: null
  /** Closes the shared pools that this module's `Client`s borrowed from (each `Pool` closes with its own `end()`). */
  end(): Promise<void>
}

/**
 * Makes a pg-shaped module whose `Pool` and `Client` lend from lifeguard pools with these options
 * by default: pass it where a consumer takes the pg module (TypeORM's `driver`, Sequelize's
 * `dialectModule`, @fastify/postgres's `pg`). The module's `end()` closes the pools its
 * `Client`s borrowed from.
 *
 * @example
 * ```ts
 * new Sequelize(url, { dialectModule: configurePg({ max: 5, maxOverflow: 5 }) })
 * ```
 */
export function configurePg(defaults: LifeguardOptions = {}): PgModule {
  const holds: ClientHolds = new Map()
  const PoolWithDefaults = class Pool extends LifeguardPgPool {
    constructor(config?: PgPoolConfig, more?: LifeguardOptions) {
      super(config, { ...defaults, ...more })
    }
  }
  const ClientWithDefaults = class Client extends LifeguardPgClient {
    constructor(config?: string | PgClientConfig) {
      super(config, defaults, holds)
    }
  }
  const real = pg as unknown as Record<string, unknown>
  return {
    Pool: PoolWithDefaults as unknown as PoolConstructor,
    Client: ClientWithDefaults as unknown as ClientConstructor,
    types: pg.types,
    defaults: pg.defaults,
    Query: pg.Query,
    DatabaseError: pg.DatabaseError,
    escapeIdentifier: pg.escapeIdentifier,
    escapeLiteral: pg.escapeLiteral,
    Connection: pg.Connection,
    TypeOverrides: pg.TypeOverrides,
    Result: real.Result,
    native: null,
    async end() {
      const all = [...holds.values()]
      holds.clear()
      await Promise.all(all.map((hold) => hold.release()))
    },
  }
}

const defaultModule = configurePg()

/** A drop-in `pg.Client` that borrows from a shared lifeguard pool on `connect()` and returns on `end()`. */
export const Client = defaultModule.Client
// Annotated, so that the declarations name pg's types instead of inferring import('pg-types'),
// which the declaration bundler cannot resolve.
/** pg's type parsers. */
export const types: typeof pg.types = pg.types
/** pg's defaults. */
export const defaults: typeof pg.defaults = pg.defaults
/** pg's `Query`. */
export const Query: typeof pg.Query = pg.Query
/** pg's `DatabaseError`. */
export const DatabaseError: typeof pg.DatabaseError = pg.DatabaseError
/** pg's identifier escaping. */
export const escapeIdentifier: typeof pg.escapeIdentifier = pg.escapeIdentifier
/** pg's literal escaping. */
export const escapeLiteral: typeof pg.escapeLiteral = pg.escapeLiteral
/** pg's `Connection`. */
export const Connection: typeof pg.Connection = pg.Connection
/** pg's `TypeOverrides`. */
export const TypeOverrides: typeof pg.TypeOverrides = pg.TypeOverrides
/** Closes the shared pools that the default module's `Client`s borrowed from. */
export const end: () => Promise<void> = defaultModule.end
/** What a statement pipelined behind others rejects with when its connection is lost: see `maxPipeline`. */
export { PipelineAbortedError } from '../core/errors.js'
export { lifeguardOf } from './lifeguard-of.js'

/** The module as a default export, for `import pg from 'lifeguard/pg'` and for `driver`/`dialectModule`. */
export default { ...defaultModule, Pool, Client }
