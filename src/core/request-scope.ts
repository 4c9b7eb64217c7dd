import type { Dialect } from './dialect.js'
import {
  AcquireTimeoutError,
  InvalidOptionError,
  ScopeEndedError,
  TransactionFailedError,
} from './errors.js'
import { type Lease, type LeaseOwner, sublease } from './lease.js'
import {
  type AcquireOptions,
  checkAcquireOptions,
  describe,
  rejectUnknownKeys,
  resolveAcquireTimeout,
} from './pool-options.js'
import { Waiter, WaiterQueue } from './waiter-queue.js'

/** How a request scope ends its transaction, or what it does with one a request left open. */
export type ScopeOutcome = 'commit' | 'rollback'

/** The options of `pool.openScope()`. */
export interface RequestScopeOptions {
  /**
   * Wraps the scope in a transaction: BEGIN when the request first borrows, then COMMIT or
   * ROLLBACK at `end()`. Every query of the request then runs on its connection, in turn.
   * @defaultValue false
   */
  transaction?: boolean | undefined
  /**
   * When the request is abandoned ({@link RequestScope.abort}) while a statement runs on its
   * connection, asks the server to stop that statement (PostgreSQL's cancel request, MySQL's
   * `KILL QUERY`, through the dialect's `cancel`), then closes the connection instead of
   * returning it, since a cancel that arrives late may stop the next statement on it (the server
   * rolls back what was open). Off by default: a transactional scope already rolls back when the
   * statement ends, and a cancel costs a connection of its own. Needs a dialect with `cancel`
   * (postgres, mysql); elsewhere the statement runs to its end as without it.
   * @defaultValue false
   */
  cancelOnAbort?: boolean | undefined
}

/** What a scope asks of its pool; kept narrow, as the housekeeper's host is. */
export interface ScopeHost<C> {
  /** Borrows from the pool itself, outside any scope. */
  acquire(options: AcquireOptions | undefined): Promise<Lease<C>>
  /** The pool's `use()`, which joins the scope it runs in. */
  use<T>(fn: (connection: C) => Promise<T> | T, options?: AcquireOptions): Promise<T>
  /** Runs `fn` with `scope` as the current scope of its async context. */
  run<T>(scope: RequestScope<C>, fn: () => T): T
  readonly dialect: Dialect<C>
  /** Whether the pool rolls back an open transaction itself when a connection comes back. */
  readonly rollsBack: boolean
  /** Whether `error` is a refused write that condemns its connection (see `Dialect.isReadOnly`). */
  isReadOnly(error: unknown): boolean
  /** The pool's `acquireTimeout`, for a turn on the scope's connection. */
  readonly acquireTimeout: number
  /** The pool's name, for messages. */
  readonly label: string
}

/**
 * A caller of a transactional scope waiting for the request's connection, busy with a query:
 * a pool waiter that keeps its options, for the checkout it may have to make when served.
 */
class Turn<C> extends Waiter<Lease<C>> {
  readonly options: AcquireOptions | undefined

  constructor(
    timeout: number,
    shared: boolean,
    resolve: (value: Lease<C> | PromiseLike<Lease<C>>) => void,
    options: AcquireOptions | undefined,
  ) {
    super(timeout, shared, resolve, undefined)
    this.options = options
  }
}

// A scope's side that its pool alone uses, kept out of the class's public face: `src/index.ts`
// re-exports only `RequestScope`. Assigned by the class's static block below.

/**
 * What a scope passes its pool as the signal of its own checkouts: the shape of an
 * `AbortSignal` that the pool's queue uses (`aborted`, `reason`, the `'abort'` listeners), for a
 * fraction of a real one's cost, since every request that queries makes a checkout and a real
 * signal costs microseconds to make. Aborted by `abort()`.
 */
class CheckoutSignal {
  aborted = false
  reason: unknown = undefined
  #listeners: Array<() => void> = []

  addEventListener(_type: 'abort', listener: () => void): void {
    this.#listeners.push(listener)
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const at = this.#listeners.indexOf(listener)
    if (at !== -1) this.#listeners.splice(at, 1)
  }

  abort(reason: unknown): void {
    if (this.aborted) return
    this.aborted = true
    this.reason = reason
    for (const listener of this.#listeners.splice(0)) listener()
  }
}

/** Opens a request scope on `host`'s pool: what `pool.openScope()` returns. */
export let openRequestScope: <C>(
  host: ScopeHost<C>,
  transaction: boolean,
  cancelOnAbort?: boolean,
) => RequestScope<C>

/** Proves that a constructor call comes from this module; never exported. */
const MAKING = Symbol('lifeguard.scope')

const KNOWN_OPTIONS = ['transaction', 'cancelOnAbort']

/** How long a scope waits for a cancel (`cancelOnAbort`) to reach the server, in ms. */
const CANCEL_TIMEOUT_MS = 5000

/**
 * Settles when `sent` settles, or after `ms` at the latest, never rejecting: a cancel whose server
 * never answers must not keep the scope, and its connection, from ending.
 */
function bounded(sent: Promise<void>, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms)
    timer.unref?.()
    const done = () => {
      clearTimeout(timer)
      resolve()
    }
    sent.then(done, done)
  })
}

/** Validates `openScope()`'s options; a wrong one fails at once, naming it. */
export function resolveScopeOptions(options: RequestScopeOptions | undefined): boolean {
  if (options === undefined) return false
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new InvalidOptionError(
      'options',
      `Invalid option options: ${describe(options)}; expected an object (the options of openScope) or undefined`,
    )
  }
  rejectUnknownKeys(options, KNOWN_OPTIONS, 'openScope')
  const transaction = options.transaction ?? false
  if (typeof transaction !== 'boolean') {
    throw new InvalidOptionError(
      'transaction',
      `Invalid option transaction: ${describe(transaction)}; expected true or false`,
    )
  }
  const cancel = options.cancelOnAbort
  if (cancel !== undefined && typeof cancel !== 'boolean') {
    throw new InvalidOptionError(
      'cancelOnAbort',
      `Invalid option cancelOnAbort: ${describe(cancel)}; expected true or false`,
    )
  }
  return transaction
}

/**
 * One request's hold on a pool, Django's connection-per-request done for async code. It borrows
 * a connection when the request first queries (a request that never queries borrows nothing),
 * runs the request's queries on it one after another, so a transaction opened in one handler is
 * seen by the next, and gives it back at {@link RequestScope.end}, rolling back whatever the
 * request left open.
 *
 * While a scope is the current one of an async context ({@link RequestScope.run}), the pool's
 * own `acquire()` and `use()` join it, and so do the `lifeguard/pg` and `lifeguard/mysql2` pools
 * over it: an ORM's queries inside a handler run on the request's connection without being
 * passed anything.
 *
 * Concurrent work follows one rule. When a query asks while the request's connection is busy
 * (`Promise.all`), it gets a lease of its own from the pool, returned when it ends, so two
 * queries never share a connection at the same moment. In a transactional scope it waits for
 * its turn on the request's connection instead, so that every query stays inside the
 * transaction (a lease held while another query of the same request waits for it therefore
 * ends in `LIFEGUARD_ACQUIRE_TIMEOUT`).
 *
 * A request whose client went away is abandoned ({@link RequestScope.abort}): its waits for a
 * connection end at once, its later queries are refused, and {@link RequestScope.signal} aborts,
 * so that the handler stops rather than borrow for nobody.
 *
 * The framework integrations (`lifeguard/express`, `lifeguard/fastify`, `lifeguard/hono`) open and
 * end scopes; open one with `pool.openScope()` for other servers or for jobs (`new RequestScope()`
 * throws a `TypeError`).
 *
 * @example
 * ```ts
 * const scope = pool.openScope()
 * await scope.run(async () => {
 *   await pool.use((c) => c.query('BEGIN'))
 *   await pool.use((c) => c.query('INSERT INTO t VALUES (1)')) // the same connection
 *   await pool.use((c) => c.query('COMMIT'))
 * })
 * await scope.end()
 * ```
 */
export class RequestScope<C> {
  /** Whether the scope wraps its request in a transaction. */
  readonly transaction: boolean
  readonly #host: ScopeHost<C>
  readonly #owner: LeaseOwner<C>
  /** The pool's lease on the request's connection, once the request has borrowed. */
  #main: Lease<C> | undefined
  /** A query holds the request's connection, or is being given it. */
  #busy = false
  #borrowed = false
  /**
   * The calls waiting for the connection, in a transactional scope: the pool's own queue kind,
   * made on the first wait, as most requests never wait.
   */
  #turns: WaiterQueue<Lease<C>> | undefined
  #ended = false
  #ending: Promise<void> | undefined
  #settle: { resolve: () => void; reject: (error: unknown) => void } | undefined
  #outcome: ScopeOutcome = 'rollback'
  /** A transactional scope lost its connection, and with it the transaction. */
  #lost: { reason: unknown } | undefined
  /**
   * `end()` rolled back a transaction the request had opened itself: work still running in the
   * request's context must not commit on its own what belonged to it.
   */
  #rolledBack = false
  /** The request was abandoned (`abort()`): why, for every acquire from now on. */
  #abandoned: { reason: unknown } | undefined
  /** `abort()` after `end()`: why, for `signal` only. */
  #signalled: { reason: unknown } | undefined
  /** Made on the first read of `signal`: most handlers never read it. */
  #controller: AbortController | undefined
  /** The signal of the request's checkouts from the pool, and their options, made on the first. */
  #checkoutSignal: CheckoutSignal | undefined
  #checkoutOptions: AcquireOptions | undefined

  /** The `cancelOnAbort` option. */
  readonly #cancelOnAbort: boolean
  /**
   * A cancel sent for the statement running when the request was abandoned: the connection is
   * closed, not returned, once the statement and the cancel are over.
   */
  #cancelling: Promise<void> | undefined

  static {
    openRequestScope = (host, transaction, cancelOnAbort = false) =>
      new RequestScope(MAKING, host, transaction, cancelOnAbort)
  }

  private constructor(
    making: typeof MAKING,
    host: ScopeHost<C>,
    transaction: boolean,
    cancelOnAbort: boolean,
  ) {
    if (making !== MAKING) {
      throw new TypeError('RequestScope is not constructable: scopes come from pool.openScope()')
    }
    this.#host = host
    this.transaction = transaction
    this.#cancelOnAbort = cancelOnAbort
    this.#owner = { giveBack: (_record, destroy, reason) => this.#giveBack(destroy, reason) }
  }

  /** Whether the request has borrowed a connection. */
  get borrowed(): boolean {
    return this.#borrowed
  }

  /** Whether `end()` was called. */
  get ended(): boolean {
    return this.#ended
  }

  /**
   * Aborts when the request is abandoned ({@link RequestScope.abort}: the framework integrations
   * call it when the client goes away before the response is finished), with the abort's reason,
   * an `AbortError` by default. Pass it on to what the handler starts (`fetch`, an ORM, a
   * driver's query) so that it stops too. It never aborts for a request that finishes, nor when
   * the scope merely ends.
   */
  get signal(): AbortSignal {
    this.#controller ??= new AbortController()
    const abandoned = this.#abandoned ?? this.#signalled
    if (abandoned !== undefined && !this.#controller.signal.aborted) {
      this.#controller.abort(abandoned.reason)
    }
    return this.#controller.signal
  }

  /**
   * Abandons the request: its client went away, so nothing it still does can reach anyone. The
   * request's pending acquires (waiting in the pool, or for their turn on the request's
   * connection) reject at once with `reason`, as does every acquire it starts later, whether
   * through the scope, the pool's `acquire()`/`use()` or a facade over it; {@link
   * RequestScope.signal} aborts with `reason`. A statement already running on the request's
   * connection runs on to its end (unless the scope has `cancelOnAbort`, which asks the server
   * to stop it and then closes the connection); then the scope ends as `end('rollback')` does,
   * rolling back whatever the request left open, and the connection goes back to the pool.
   * Returns the promise of `end()`, which never rejects for a rollback. Idempotent: a later call
   * changes nothing.
   *
   * After `end()` (the response was sent, then the client left before it was flushed), `abort()`
   * only aborts {@link RequestScope.signal}: what the handler still does after responding lends
   * from the pool as after any `end()`, as if there were no scope.
   *
   * @param reason - what the acquires reject with and the signal carries; by default a
   *   `DOMException` named `AbortError` whose message names the pool.
   */
  abort(reason?: unknown): Promise<void> {
    if (this.#ended) {
      // The request answered already: only those who listen to the signal stop.
      if (this.#abandoned === undefined && !this.#controller?.signal.aborted) {
        this.#signalled = { reason: reason ?? this.#abortError() }
        this.#controller?.abort(this.#signalled.reason)
      }
      return this.#ending!
    }
    if (this.#abandoned === undefined) {
      const why = reason ?? this.#abortError()
      this.#abandoned = { reason: why }
      // Rejects the pool waiter of a checkout in flight, and tells the handler's own work.
      this.#checkoutSignal?.abort(why)
      this.#controller?.abort(why)
      for (const turn of this.#turns?.drain() ?? []) turn.reject(why)
      this.#cancelRunning()
    }
    return this.end('rollback')
  }

  #abortError(): DOMException {
    return new DOMException(
      `The request was abandoned (its client went away) on pool "${this.#host.label}": it takes no more connections`,
      'AbortError',
    )
  }

  /**
   * Runs `fn` with this scope as the current one: within it, and in every async continuation
   * it starts, the pool's `acquire()` and `use()` join the scope. Returns what `fn` returns.
   */
  run<T>(fn: () => T): T {
    if (typeof fn !== 'function') {
      throw new InvalidOptionError(
        'fn',
        `Invalid argument fn of run(): ${describe(fn)}; expected a function`,
      )
    }
    return this.#host.run(this, fn)
  }

  /**
   * Borrows the request's connection, checking it out of the pool on first use. Release the
   * lease as usual: the connection stays with the request until `end()`. After `end()`, a
   * plain scope lends from the pool as if there were no scope, and a transactional one, or one
   * whose open transaction `end()` rolled back, rejects with `ScopeEndedError`.
   */
  acquire(options?: AcquireOptions): Promise<Lease<C>> {
    if (options !== undefined) {
      // Checked as the pool checks them, though the request's connection may be lent at once.
      try {
        checkAcquireOptions(options)
      } catch (error) {
        return Promise.reject(error)
      }
      if (options.signal?.aborted) return Promise.reject(options.signal.reason)
    }
    if (this.#abandoned !== undefined) return Promise.reject(this.#abandoned.reason)
    if (this.#ended) {
      if (this.transaction || this.#rolledBack) {
        return Promise.reject(
          new ScopeEndedError(
            this.transaction
              ? `The request's transaction on pool "${this.#host.label}" has already ended; this query could not join it`
              : `The request's open transaction on pool "${this.#host.label}" was rolled back when the request ended; this query could not join it`,
          ),
        )
      }
      return this.#host.acquire(options)
    }
    if (this.#lost !== undefined) return Promise.reject(this.#lostError())
    if (!this.#busy) {
      this.#busy = true
      return this.#lendMain(options)
    }
    if (!this.transaction) return this.#host.acquire(this.#abortable(options))
    return this.#wait(options)
  }

  /** Runs `fn` with the request's connection, as the pool's `use()` does inside the scope. */
  use<T>(fn: (connection: C) => Promise<T> | T, options?: AcquireOptions): Promise<T> {
    return this.run(() => this.#host.use(fn, options))
  }

  /**
   * Ends the scope and gives the request's connection back, after any query still holding it.
   * A transactional scope commits (`'commit'`) or rolls back; a plain one rolls back whatever
   * the request left open, whatever the outcome. Resolves when the connection is back; rejects
   * when a commit failed (`TransactionFailedError`, or the driver's error), so that a framework
   * can answer with an error before the response leaves. Idempotent: a second call returns the
   * first call's promise.
   */
  end(outcome: ScopeOutcome = 'rollback'): Promise<void> {
    if (outcome !== 'commit' && outcome !== 'rollback') {
      return Promise.reject(
        new InvalidOptionError(
          'outcome',
          `Invalid argument outcome of end(): ${describe(outcome)}; expected "commit" or "rollback"`,
        ),
      )
    }
    if (this.#ending !== undefined) return this.#ending
    this.#ended = true
    this.#outcome = outcome
    const error = new ScopeEndedError(
      `The request ended on pool "${this.#host.label}" while this query waited for its connection`,
    )
    for (const turn of this.#turns?.drain() ?? []) turn.reject(error)
    this.#ending = new Promise<void>((resolve, reject) => {
      this.#settle = { resolve, reject }
    })
    if (!this.#busy) this.#finish()
    return this.#ending
  }

  /**
   * With `cancelOnAbort`, asks the server to stop the statement that a query of the request is
   * running on its connection. Never while the scope is ending: that statement is its COMMIT or
   * ROLLBACK.
   */
  #cancelRunning(): void {
    const main = this.#main
    const cancel = this.#host.dialect.cancel
    if (!this.#cancelOnAbort || cancel === undefined || this.#ended || !this.#busy) return
    if (main === undefined || !main.active) return
    let sent: Promise<void>
    try {
      // A dialect's cancel that throws at once must not throw out of abort(): the integrations
      // call it from a response's 'close' listener, where it would be an uncaughtException.
      sent = Promise.resolve(
        cancel.call(this.#host.dialect, main.connection, AbortSignal.timeout(CANCEL_TIMEOUT_MS)),
      )
    } catch {
      sent = Promise.resolve()
    }
    this.#cancelling = bounded(sent, CANCEL_TIMEOUT_MS)
  }

  async #lendMain(options: AcquireOptions | undefined): Promise<Lease<C>> {
    let main = this.#main
    if (main !== undefined && !main.active) {
      // The pool revoked it (it was destroyed, or closed with the lease out).
      this.#main = main = undefined
      if (this.transaction) this.#lost = { reason: undefined }
    }
    try {
      if (this.#lost !== undefined) throw this.#lostError()
      main ??= await this.#checkout(options)
      // Abandoned while the checkout's BEGIN ran: end() gives the connection back.
      if (this.#abandoned !== undefined) throw this.#abandoned.reason
      return sublease(main, this.#owner)
    } catch (error) {
      this.#busy = false
      this.#next()
      throw error
    }
  }

  async #checkout(options: AcquireOptions | undefined): Promise<Lease<C>> {
    // The request's connection is its own, whoever asks first: never shared (pipelined).
    const own = options?.shared ? { ...options, shared: false } : options
    const main = await this.#host.acquire(this.#abortable(own))
    this.#borrowed = true
    if (this.transaction) {
      try {
        await this.#host.dialect.transact!(main.connection, 'begin')
      } catch (error) {
        this.#discard(main, error)
        throw error
      }
    }
    this.#main = main
    return main
  }

  /** A query of the request gave the connection back, or destroyed it. */
  #giveBack(destroy: boolean, reason: unknown): void {
    if (destroy) {
      const main = this.#main
      this.#main = undefined
      // A plain request's own BEGIN dies with its connection: its next statements must not
      // autocommit, one by one, on a new one.
      const open =
        !this.transaction &&
        main?.active === true &&
        this.#host.dialect.inTransaction?.(main.connection) === true
      main?.destroy(reason)
      if (this.transaction || open) this.#lost = { reason }
      if (open) this.#rolledBack = true
    }
    this.#busy = false
    this.#next()
  }

  /** Gives the free connection to the next turn, or finishes an ended scope. */
  #next(): void {
    if (this.#busy) return
    if (this.#ended) return this.#finish()
    const turn = this.#turns?.shift() as Turn<C> | undefined
    if (turn === undefined) return
    this.#busy = true
    turn.resolve(this.#lendMain(turn.options))
  }

  #wait(options: AcquireOptions | undefined): Promise<Lease<C>> {
    const signal = options?.signal ?? undefined
    if (signal?.aborted) return Promise.reject(signal.reason)
    const fallback = this.#host.acquireTimeout
    const timeout = resolveAcquireTimeout(options?.timeout, fallback)
    let resolve!: (lease: Lease<C> | PromiseLike<Lease<C>>) => void
    const promise = new Promise<Lease<C>>((settle) => {
      resolve = settle
    })
    // As in the pool: the default timeout shares the queue's one timer, and no timeout needs none.
    const shared = timeout === fallback && timeout !== Number.POSITIVE_INFINITY
    this.#turns ??= new WaiterQueue<Lease<C>>(
      (turn) =>
        turn.reject(
          new AcquireTimeoutError(
            `Waited ${turn.timeout} ms for the request's transaction connection on pool "${this.#host.label}": another query of the same request held it (is a lease held while another query waits?)`,
          ),
        ),
      (turn, signal) => turn.reject(signal.reason),
    )
    this.#turns.push(new Turn<C>(timeout, shared, resolve, options), signal)
    return promise
  }

  /** Settles `end()`: the connection is free, so commit or roll back, and give it back. */
  #finish(): void {
    const settle = this.#settle
    if (settle === undefined) return
    this.#settle = undefined
    this.#close().then(settle.resolve, settle.reject)
  }

  async #close(): Promise<void> {
    const main = this.#main
    this.#main = undefined
    if (this.#cancelling !== undefined && main?.active === true) {
      // A cancel may still land on the connection's next statement: the server rolls back what
      // was open when the session ends.
      await this.#cancelling
      return main.destroy(this.#abandoned?.reason)
    }
    if (main === undefined || !main.active) {
      if (this.transaction && this.#outcome === 'commit' && this.#borrowed) {
        throw this.#lostError()
      }
      return
    }
    const dialect = this.#host.dialect
    const connection = main.connection
    if (this.transaction) {
      try {
        await dialect.transact!(connection, this.#outcome)
      } catch (error) {
        this.#discard(main, error)
        if (this.#outcome === 'commit') throw error
        return
      }
      return main.release()
    }
    // Set before the first await: a handler still running must not commit its half on its own.
    if (dialect.inTransaction?.(connection) === true) {
      this.#rolledBack = true
      if (!this.#host.rollsBack && dialect.reset !== undefined) {
        try {
          await dialect.reset(connection, 'rollback')
        } catch (error) {
          return this.#discard(main, error)
        }
      }
    }
    main.release()
  }

  /**
   * The options of a checkout from the pool, with the scope's signal added, so that `abort()`
   * takes the request's waiter out of the pool's queue.
   */
  #abortable(options: AcquireOptions | undefined): AcquireOptions {
    if (options === undefined) {
      if (this.#checkoutOptions === undefined) {
        this.#checkoutSignal = new CheckoutSignal()
        this.#checkoutOptions = { signal: this.#checkoutSignal as unknown as AbortSignal }
      }
      return this.#checkoutOptions
    }
    const theirs = options.signal ?? undefined
    if (theirs === undefined) {
      this.#abortable(undefined)
      return { ...options, signal: this.#checkoutSignal as unknown as AbortSignal }
    }
    // Rare: the caller's own signal too. `AbortSignal.any` takes real signals only.
    return { ...options, signal: AbortSignal.any([theirs, this.signal]) }
  }

  /**
   * Gives a connection back after a failed statement: destroyed if it is dead or refused a write
   * as read-only, or if the pool will not roll it back; else reset by the pool.
   */
  #discard(main: Lease<C>, error: unknown): void {
    if (!main.active) return
    if (
      !this.#host.rollsBack ||
      this.#host.dialect.isDisconnect?.(error) === true ||
      this.#host.isReadOnly(error)
    ) {
      main.destroy(error)
    } else main.release()
  }

  #lostError(): TransactionFailedError {
    return new TransactionFailedError(
      `The request's transaction on pool "${this.#host.label}" was lost with its connection`,
      { cause: this.#lost?.reason },
    )
  }
}
