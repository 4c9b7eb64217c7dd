import { inspect } from 'node:util'
import type { ServerInfo } from './dialect.js'
import { type PoolEvents, TypedEmitter } from './events.js'
import type { Lease } from './lease.js'
import { attachMetrics, MetricsSubscribers } from './metrics-subscribers.js'
import { OUTER_QUEUE, type OuterQueueLink } from './outer-queue.js'
import { PoolCore } from './pool-core.js'
import type {
  AcquireOptions,
  CloseOptions,
  PoolOptions,
  ResolvedPoolOptions,
} from './pool-options.js'
import type { RequestScope, RequestScopeOptions } from './request-scope.js'
import type { PoolStats } from './stats.js'

/**
 * A pool of database connections over any {@link Dialect}: it owns the connection records, the
 * idle list and the waiter queue, and makes every decision in one place.
 *
 * It has the semantics of SQLAlchemy's QueuePool and HikariCP: `max` persistent connections plus
 * `maxOverflow` extra under load, FIFO waiters with a timeout, pre-ping of idle connections,
 * reset on release, jittered lifetimes, and invalidation of every older connection when a
 * disconnect is seen. Create one with {@link createPool}.
 *
 * @example
 * ```ts
 * const pool = createPool({ dialect, max: 10 })
 * const rows = await pool.use((connection) => connection.query('SELECT 1'))
 * await pool.close()
 * ```
 */
export class Pool<C> extends TypedEmitter<PoolEvents<C>> implements AsyncDisposable {
  readonly #core: PoolCore<C>

  /** Use {@link createPool}; the constructor validates the options the same way. */
  constructor(options: PoolOptions<C>) {
    super()
    const metrics = new MetricsSubscribers()
    this.#core = new PoolCore(options, {
      listening: (event) => this.listening(event),
      emit: (event, payload) => this.emit(event, payload),
      metrics,
    })
    attachMetrics(this, metrics)
  }

  /** The pool's name: the `name` option, or a generated one. */
  get name(): string {
    return this.#core.name
  }

  /**
   * The validated options, defaults filled in, under the names a caller passes them (`prePing`
   * in ms or `false`, the generated `name`); `maxLifetime` and `idleTimeout` as in force, after
   * any clamp to the server's idle cut-off.
   */
  get options(): ResolvedPoolOptions<C> {
    return this.#core.options
  }

  /** What the first connection read of the server's limits, once it has (see `Dialect.inspect`). */
  get server(): ServerInfo | undefined {
    return this.#core.server
  }

  /** Whether `close()` or `destroy()` was called. */
  get closed(): boolean {
    return this.#core.closed
  }

  /**
   * Borrows a connection. Resolves with a {@link Lease} as soon as one is free, in the order
   * callers asked; rejects with `AcquireTimeoutError` after `acquireTimeout`, with
   * `TooManyWaitersError` when `maxWaiting` callers already wait, with the signal's reason when
   * `signal` aborts, with `PoolClosedError` once the pool is closing, and with
   * `InvalidOptionError` for bad options (checked before it queues anything). With `failFast`,
   * when only a new connection could serve it, it rejects at once with the `ConnectError` of a
   * permanent connect error (a wrong password), or with `UnavailableError` once connects have
   * failed for `failFastAfter` and the pool holds no open connection.
   */
  acquire(options?: AcquireOptions): Promise<Lease<C>> {
    return this.#core.acquire(options)
  }

  /**
   * Borrows a connection, runs `fn` with it and gives it back, even when `fn` throws. When `fn`
   * throws an error that the dialect calls a disconnect, the connection is destroyed instead,
   * and every older connection is invalidated. Rejects with `InvalidOptionError`, borrowing
   * nothing, when `fn` is not a function or the options are bad.
   */
  use<T>(fn: (connection: C) => Promise<T> | T, options?: AcquireOptions): Promise<T> {
    return this.#core.use(fn, options)
  }

  /**
   * Opens a {@link RequestScope}: one request's hold on this pool, which borrows a connection on
   * the request's first query and keeps it until `end()`. Inside `scope.run()`, this pool's
   * `acquire()` and `use()` join the scope. The framework integrations call it for you.
   * Throws `InvalidOptionError` for a bad option, and for `transaction: true` on a dialect that
   * cannot run transactions (`Dialect.transact`).
   */
  openScope(options?: RequestScopeOptions): RequestScope<C> {
    return this.#core.openScope(options)
  }

  /** The request scope that the calling async context runs in, if any (see `openScope()`). */
  currentScope(): RequestScope<C> | undefined {
    return this.#core.currentScope()
  }

  /** A snapshot of the pool's connections and counters; a plain object with no secrets. */
  stats(): PoolStats {
    return this.#core.stats()
  }

  /**
   * Closes the pool gracefully: new acquires and all waiters reject with `PoolClosedError`, idle
   * connections close, and leased ones close as they come back. After `timeout` ms the rest are
   * destroyed and the promise resolves. Idempotent. Rejects with `InvalidOptionError`, closing
   * nothing, for bad options.
   */
  close(options?: CloseOptions): Promise<void> {
    return this.#core.close(options)
  }

  /** Closes every connection at once, leased ones included, and rejects all waiters. Idempotent. */
  destroy(): Promise<void> {
    return this.#core.destroy()
  }

  /** Internal: the pool's side of a facade's own queue (the `lifeguard/mysql2` facade's). */
  [OUTER_QUEUE](): OuterQueueLink {
    return this.#core.outerQueue()
  }

  /** Calls `close()`, so that `await using pool = createPool(…)` closes it. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close()
  }

  /** Shows the pool's stats, never its dialect or connections (which may hold secrets). */
  [inspect.custom](): string {
    return `Pool ${inspect(this.stats())}`
  }

  /** Serializes as the pool's stats. */
  toJSON(): PoolStats {
    return this.stats()
  }
}
