import { AsyncLocalStorage } from 'node:async_hooks'
import { debuglog } from 'node:util'
import { ConnectionRecord, type RecordState } from './connection-record.js'
import type { Dialect, ResetMode, ServerInfo } from './dialect.js'
import {
  AcquireTimeoutError,
  ConnectError,
  InvalidOptionError,
  PoolClosedError,
  PoolError,
  TooManyWaitersError,
} from './errors.js'
import { type InvalidateReason, type PoolEvents, TypedEmitter } from './events.js'
import { Housekeeper, type HousekeeperHost } from './housekeeper.js'
import { fitToIdleCutoff } from './idle-cutoff.js'
import { Lease, type LeaseOwner } from './lease.js'
import { LinkedList } from './linked-list.js'
import type { AcquireOptions, CloseOptions, Pool } from './pool.js'
import {
  checkAcquireOptions,
  describe,
  type PoolOptions,
  type ResolvedPoolOptions,
  resolveCloseTimeout,
  resolvePoolOptions,
} from './pool-options.js'
import {
  RequestScope,
  type RequestScopeOptions,
  resolveScopeOptions,
  type ScopeHost,
} from './request-scope.js'
import { PoolCounters, type PoolStats, StateCounts } from './stats.js'
import { Waiter, WaiterQueue } from './waiter-queue.js'
import { withTimeout } from './with-timeout.js'

const debug = debuglog('lifeguard')
/** Read once: `NODE_DEBUG` is fixed at start-up, and the getter costs ~40 ns on the hot path. */
const debugging = debug.enabled

/** The first retry after a failed connect waits about this long; each next one twice as long. */
const BACKOFF_BASE_MS = 50
/** How many random ends of life a new connection chooses from (see `spreadExpiry`). */
const EXPIRY_CANDIDATES = 32
/** The longest pause between connect attempts, so that the pool is serving within ~½ s of recovery. */
const BACKOFF_CAP_MS = 500

/** Capped exponential backoff with "equal jitter": a delay in [d/2, d]. */
function backoff(failures: number): number {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(failures - 1, 16))
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2)
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

/** What the engine of a pool needs of its public face: the events API of {@link TypedEmitter}. */
export interface PoolEventSink<C> {
  listening(event: keyof PoolEvents<C>): boolean
  emit<K extends keyof PoolEvents<C>>(event: K, payload: PoolEvents<C>[K]): void
}

/**
 * The engine of a {@link Pool}: it owns the connection records, the idle list and the waiter
 * queue, and makes every decision in one place, `pump()`. Internal: `Pool` is a thin face over it.
 *
 * Its members are plain properties, not `#private` ones, on purpose: V8 reads a private name
 * with a keyed load, and checks a brand on each private method call. In the no-I/O benchmark,
 * once the process had run other pools or other caller counts, the optimized hot path called
 * the generic keyed-load IC for those instead of inlining them (a third of its time in `perf`);
 * with plain properties it runs about twice as fast at 10 and 1000 callers. `Pool` keeps the engine
 * out of sight in its one `#private` field, so its declared API is unchanged.
 */
export class PoolCore<C> {
  private readonly opts: ResolvedPoolOptions<C>
  private readonly dialect: Dialect<C>
  private readonly label: string
  private readonly records = new Set<ConnectionRecord<C>>()
  private readonly idle = new LinkedList<ConnectionRecord<C>>()
  private readonly waiters: WaiterQueue<Lease<C>>
  private readonly counts = new StateCounts()
  private readonly counters = new PoolCounters()
  private readonly housekeeper: Housekeeper<C>
  private readonly owner: LeaseOwner<C>
  /** The idle time that triggers a checkout ping, or -1 when the pool does not ping. */
  private readonly pingAfter: number
  /** Idle connections let the process exit (`allowExitOnIdle`) and the dialect can say so. */
  private readonly unrefIdle: boolean
  private state: 'open' | 'closing' | 'closed' = 'open'
  /** `maxLifetime` and `idleTimeout`, lowered below the server's idle cut-off when needed. */
  private maxLifetime: number
  private idleTimeout: number
  private serverInfo: ServerInfo | undefined
  /** A connection is reading the server's limits: the others need not. */
  private inspecting = false
  private nextId = 1
  private generation = 0
  /** Connections with a lower generation are stale: a disconnect was seen after they were made. */
  private staleBelow = 0
  private connectFailures = 0
  private retryAt = 0
  private retryTimer: NodeJS.Timeout | undefined
  private lastConnectError: Error | undefined
  private pumping = false
  private pumpAgain = false
  private closing: Promise<void> | undefined
  private destroying: Promise<void> | undefined
  private drainResolvers: Array<() => void> = []
  /** The current request scope of each async context; made by the first `openScope()`. */
  private scopes: AsyncLocalStorage<RequestScope<C>> | undefined
  private scopeHost: ScopeHost<C> | undefined
  /** The public pool's `listening()` and `emit()`. */
  private readonly events: PoolEventSink<C>

  constructor(options: PoolOptions<C>, events: PoolEventSink<C>) {
    this.events = events
    this.opts = resolvePoolOptions(options)
    this.dialect = this.opts.dialect
    this.label = this.opts.name
    const prePing = this.opts.prePing
    this.pingAfter = this.dialect.ping === undefined || prePing === false ? -1 : prePing
    this.unrefIdle =
      this.opts.allowExitOnIdle &&
      typeof this.dialect.ref === 'function' &&
      typeof this.dialect.unref === 'function'
    this.maxLifetime = this.opts.maxLifetime
    this.idleTimeout = this.opts.idleTimeout
    this.waiters = new WaiterQueue<Lease<C>>(
      (waiter) => this.timedOut(waiter),
      (waiter, signal) => {
        this.counters.aborted++
        waiter.reject(signal.reason)
      },
    )
    this.owner = { giveBack: (record, destroy, reason) => this.giveBack(record, destroy, reason) }
    const host: HousekeeperHost<C> = {
      idle: () => this.idle,
      idleCount: () => this.idle.size,
      isStale: (record) => record.generation < this.staleBelow,
      retire: (record, reason) => this.retire(record, reason),
      validate: (record) => this.validate(record),
      pump: () => this.pump(),
    }
    this.housekeeper = new Housekeeper(host, this.opts)
    this.housekeeper.start()
    this.pump()
  }

  /** The pool's name: the `name` option, or a generated one. */
  get name(): string {
    return this.label
  }

  /**
   * The validated options, defaults filled in, under the names a caller passes them (`prePing`
   * in ms or `false`, the generated `name`); `maxLifetime` and `idleTimeout` as in force, after
   * any clamp to the server's idle cut-off.
   */
  get options(): ResolvedPoolOptions<C> {
    return { ...this.opts, maxLifetime: this.maxLifetime, idleTimeout: this.idleTimeout }
  }

  /** What the first connection read of the server's limits, once it has (see `Dialect.inspect`). */
  get server(): ServerInfo | undefined {
    return this.serverInfo
  }

  /** Whether `close()` or `destroy()` was called. */
  get closed(): boolean {
    return this.state !== 'open'
  }

  /**
   * Borrows a connection. Resolves with a {@link Lease} as soon as one is free, in the order
   * callers asked; rejects with `AcquireTimeoutError` after `acquireTimeout`, with
   * `TooManyWaitersError` when `maxWaiting` callers already wait, with the signal's reason when
   * `signal` aborts, with `PoolClosedError` once the pool is closing, and with
   * `InvalidOptionError` for bad options (checked before it queues anything).
   */
  acquire(options?: AcquireOptions): Promise<Lease<C>> {
    if (options !== undefined) {
      // Before anything is queued: a bad signal must not leave a waiter behind.
      try {
        checkAcquireOptions(options)
      } catch (error) {
        return Promise.reject(error)
      }
    }
    if (this.scopes !== undefined) {
      const scope = this.scopes.getStore()
      if (scope !== undefined) return scope.acquire(options)
    }
    if (this.state !== 'open') return Promise.reject(this.closedError())
    let timeout = this.opts.acquireTimeout
    let signal: AbortSignal | undefined
    if (options !== undefined) {
      signal = options.signal ?? undefined
      if (options.timeout !== undefined) timeout = options.timeout
      if (signal?.aborted) {
        this.counters.aborted++
        return Promise.reject(signal.reason)
      }
    }
    const stack =
      this.opts.leakDetectionThreshold > 0 ? (new Error('acquired here').stack ?? '') : undefined
    if (this.waiters.size === 0) {
      const record = this.takeIdle()
      if (record !== undefined) {
        if (!this.needsPing(record)) {
          const lease = this.lend(record, undefined, stack)
          if (this.opts.min > 0) this.pump() // keep `min` idle
          return Promise.resolve(lease)
        }
        this.validate(record)
      }
    }
    if (this.waiters.size >= this.opts.maxWaiting) {
      this.counters.rejected++
      return Promise.reject(
        new TooManyWaitersError(
          `Pool "${this.label}" already has ${this.waiters.size} callers waiting (maxWaiting) ${this.describeCounts()}`,
        ),
      )
    }
    // The clock is read only for a wait time someone will see; timeouts need none (WaiterQueue).
    const timed = this.events.listening('acquire') || debugging
    const extra =
      timed || stack !== undefined
        ? { enqueuedAt: timed ? performance.now() : undefined, stack }
        : undefined
    let resolve!: (lease: Lease<C> | PromiseLike<Lease<C>>) => void
    const promise = new Promise<Lease<C>>((settle) => {
      resolve = settle
    })
    const waiter = new Waiter<Lease<C>>(
      timeout,
      // A waiter that may wait for ever needs no timer at all.
      timeout === this.opts.acquireTimeout && timeout !== Number.POSITIVE_INFINITY,
      resolve,
      extra,
    )
    this.waiters.push(waiter, signal)
    // Under load every connection is out and the pool is full: a new waiter changes nothing the
    // pump could act on, so skip it (it serves idle connections and opens new ones).
    if (this.idle.size > 0 || this.records.size < this.opts.max + this.opts.maxOverflow) {
      this.pump()
    }
    return promise
  }

  /**
   * Borrows a connection, runs `fn` with it and gives it back, even when `fn` throws. When `fn`
   * throws an error that the dialect calls a disconnect, the connection is destroyed instead,
   * and every older connection is invalidated. Rejects with `InvalidOptionError`, borrowing
   * nothing, when `fn` is not a function or the options are bad.
   */
  async use<T>(fn: (connection: C) => Promise<T> | T, options?: AcquireOptions): Promise<T> {
    if (typeof fn !== 'function') {
      throw new InvalidOptionError(
        'fn',
        `Invalid argument fn of use(): ${describe(fn)}; expected a function (connection) => result`,
      )
    }
    const lease = await this.acquire(options)
    let result: T
    try {
      result = await fn(lease.connection)
    } catch (error) {
      if (lease.active) {
        if (this.isDisconnect(error)) lease.destroy(error)
        else lease.release()
      }
      throw error
    }
    if (lease.active) lease.release()
    return result
  }

  /**
   * Opens a {@link RequestScope}: one request's hold on this pool, which borrows a connection on
   * the request's first query and keeps it until `end()`. Inside `scope.run()`, this pool's
   * `acquire()` and `use()` join the scope. The framework integrations call it for you.
   * Throws `InvalidOptionError` for a bad option, and for `transaction: true` on a dialect that
   * cannot run transactions (`Dialect.transact`).
   */
  openScope(options?: RequestScopeOptions): RequestScope<C> {
    const transaction = resolveScopeOptions(options)
    if (transaction && this.dialect.transact === undefined) {
      throw new InvalidOptionError(
        'transaction',
        `Invalid option transaction: true; the ${this.dialect.name} dialect cannot run transactions (it has no transact())`,
      )
    }
    if (this.scopeHost === undefined) {
      const scopes = new AsyncLocalStorage<RequestScope<C>>()
      this.scopes = scopes
      this.scopeHost = {
        // The scope's own checkouts must not find the scope itself.
        acquire: (options) => scopes.exit(() => this.acquire(options)),
        use: (fn, options) => this.use(fn, options),
        run: (scope, fn) => scopes.run(scope, fn),
        dialect: this.dialect,
        rollsBack: this.opts.resetOnRelease !== false && this.dialect.reset !== undefined,
        acquireTimeout: this.opts.acquireTimeout,
        label: this.label,
      }
    }
    return new RequestScope(this.scopeHost, transaction)
  }

  /** The request scope that the calling async context runs in, if any (see `openScope()`). */
  currentScope(): RequestScope<C> | undefined {
    return this.scopes?.getStore()
  }

  /** A snapshot of the pool's connections and counters; a plain object with no secrets. */
  stats(): PoolStats {
    const c = this.counts
    const n = this.counters
    return {
      name: this.label,
      total: this.records.size,
      idle: c.idle,
      leased: c.leased,
      connecting: c.connecting,
      resetting: c.resetting,
      validating: c.validating,
      closing: c.closing,
      waiting: this.waiters.size,
      max: this.opts.max,
      maxOverflow: this.opts.maxOverflow,
      min: this.opts.min,
      created: n.created,
      closed: n.closed,
      acquired: n.acquired,
      released: n.released,
      revoked: n.revoked,
      timeouts: n.timeouts,
      aborted: n.aborted,
      rejected: n.rejected,
      connectErrors: n.connectErrors,
      invalidated: n.invalidated,
    }
  }

  /**
   * Closes the pool gracefully: new acquires and all waiters reject with `PoolClosedError`, idle
   * connections close, and leased ones close as they come back. After `timeout` ms the rest are
   * destroyed and the promise resolves. Idempotent. Rejects with `InvalidOptionError`, closing
   * nothing, for bad options.
   */
  close(options?: CloseOptions): Promise<void> {
    let timeout: number
    try {
      timeout = resolveCloseTimeout(options, 30_000)
    } catch (error) {
      return Promise.reject(error)
    }
    if (this.closing !== undefined) return this.closing
    if (this.destroying !== undefined) return this.destroying
    this.state = 'closing'
    this.closing = this.shutdown(timeout)
    return this.closing
  }

  /** Closes every connection at once, leased ones included, and rejects all waiters. Idempotent. */
  destroy(): Promise<void> {
    if (this.destroying !== undefined) return this.destroying
    this.state = 'closed'
    this.stopBackground()
    this.rejectWaiters()
    this.forceClose()
    this.destroying = this.drained()
    return this.destroying
  }

  // The pump: every state change ends here, and every decision is made here.

  private pump(): void {
    if (this.pumping) {
      this.pumpAgain = true
      return
    }
    this.pumping = true
    try {
      do {
        this.pumpAgain = false
        this.pumpOnce()
      } while (this.pumpAgain)
    } finally {
      this.pumping = false
    }
  }

  private pumpOnce(): void {
    if (this.state !== 'open') return
    // Lend idle connections to the waiters that no validation in flight already covers.
    while (this.waiters.size > this.counts.validating) {
      const record = this.takeIdle()
      if (record === undefined) break
      if (this.needsPing(record)) this.validate(record)
      else this.serve(record, this.waiters.shift()!)
    }
    // Open connections for the waiters nothing covers yet, and to keep `min` idle.
    const c = this.counts
    const coming = c.connecting + c.validating + c.resetting
    const total = this.records.size
    const { max, maxOverflow, min } = this.opts
    let open = Math.min(this.waiters.size - coming, max + maxOverflow - total)
    open = Math.max(open, Math.min(min - c.idle - coming, max - total))
    if (open <= 0) return
    if (this.connectFailures > 0) {
      // While the server refuses us, probe with one connection at a time, after a backoff.
      const now = performance.now()
      if (now < this.retryAt) return this.scheduleRetry(now)
      if (c.connecting > 0) return
      open = 1
    }
    for (let i = 0; i < open; i++) this.connect()
  }

  private scheduleRetry(now: number): void {
    if (this.retryTimer === undefined) {
      this.retryTimer = setTimeout(
        () => {
          this.retryTimer = undefined
          this.pump()
        },
        Math.max(0, this.retryAt - now),
      )
    }
    // A caller waiting for ever has no deadline timer: the retry is what keeps its process
    // alive. Retrying only to refill `min` must not.
    if (this.waiters.size > 0) this.retryTimer.ref()
    else this.retryTimer.unref()
  }

  // A record's state changes here and nowhere else.

  private move(record: ConnectionRecord<C>, to: RecordState): void {
    const from = record.state
    if (from === 'idle') this.idle.remove(record)
    this.counts.add(from, -1)
    this.counts.add(to, 1)
    record.state = to
    if (to === 'idle') {
      if (this.opts.order === 'lifo') this.idle.unshift(record)
      else this.idle.push(record)
      if (this.unrefIdle) this.hold(record, false)
    } else if (to === 'closed') {
      this.records.delete(record)
    }
    // Out of the idle list (lent, pinged or closing): its socket keeps the process alive again.
    if (from === 'idle' && this.unrefIdle) this.hold(record, true)
  }

  /**
   * Lets an idle connection's socket hold the event loop (`true`) or not (`false`), through the
   * dialect's `ref`/`unref`. A dialect that throws here must not break the state change.
   */
  private hold(record: ConnectionRecord<C>, held: boolean): void {
    try {
      if (held) this.dialect.ref!(record.connection as C)
      else this.dialect.unref!(record.connection as C)
    } catch (error) {
      if (debugging) debug('%s %s failed: %s', this.label, held ? 'ref' : 'unref', messageOf(error))
    }
  }

  /** Why a record must not be lent again, if it must not. Reads no clock: its lifetime timer sets `expired`. */
  private condemned(record: ConnectionRecord<C>): InvalidateReason | undefined {
    if (record.dead) return 'disconnect'
    if (record.generation < this.staleBelow) return 'stale'
    if (record.expired) return 'lifetime'
    return undefined
  }

  /** The next idle record fit to lend, retiring the condemned ones it passes. */
  private takeIdle(): ConnectionRecord<C> | undefined {
    for (;;) {
      const record = this.idle.head
      if (record === undefined) return undefined
      const reason = this.condemned(record)
      if (reason === undefined) return record
      this.retire(record, reason)
    }
  }

  private needsPing(record: ConnectionRecord<C>): boolean {
    return this.pingAfter >= 0 && performance.now() - record.lastUsedAt >= this.pingAfter
  }

  /** Hands a ready record to the head waiter, or parks it idle, or closes it. */
  private makeAvailable(record: ConnectionRecord<C>): void {
    if (this.state !== 'open') return this.closeRecord(record)
    const reason = this.condemned(record)
    if (reason !== undefined) {
      this.retire(record, reason)
      return this.pump()
    }
    this.handOff(record)
  }

  /** Hands a ready, uncondemned record to the head waiter, or parks it idle, or closes it. */
  private handOff(record: ConnectionRecord<C>): void {
    const waiter = this.waiters.shift()
    if (waiter !== undefined) return this.serve(record, waiter)
    // An overflow connection closes when it comes back with nobody waiting.
    if (this.records.size - this.counts.closing > this.opts.max) return this.closeRecord(record)
    // Only a connection that goes idle needs to know when: for pre-ping and idleTimeout.
    record.lastUsedAt = performance.now()
    this.move(record, 'idle')
  }

  private serve(record: ConnectionRecord<C>, waiter: Waiter<Lease<C>>): void {
    waiter.resolve(this.lend(record, waiter, waiter.extra?.stack))
  }

  /** Lends a record to a waiter, or to a caller that did not wait (`waiter` undefined). */
  private lend(
    record: ConnectionRecord<C>,
    waiter: Waiter<Lease<C>> | undefined,
    stack: string | undefined,
  ): Lease<C> {
    // A record handed from one lease straight to the next stays `leased`: no count changes.
    if (record.state !== 'leased') this.move(record, 'leased')
    // The hold time is measured only when someone will see it.
    record.leasedAt =
      this.events.listening('release') || this.opts.leakDetectionThreshold > 0 || debugging
        ? performance.now()
        : Number.NaN
    const lease = new Lease(this.owner, record)
    record.lease = lease
    this.counters.acquired++
    const threshold = this.opts.leakDetectionThreshold
    if (threshold > 0) {
      record.leakTimer = setTimeout(() => this.leaked(record, lease, stack ?? ''), threshold)
      record.leakTimer.unref()
    }
    if (this.events.listening('acquire') || debugging) {
      const enqueuedAt = waiter?.extra?.enqueuedAt
      const waitMs = waiter === undefined ? 0 : performance.now() - (enqueuedAt ?? Number.NaN)
      this.events.emit('acquire', { id: record.id, connection: record.connection as C, waitMs })
      if (debugging) this.log('acquire', record, `waited ${waitMs.toFixed(1)} ms`)
    }
    return lease
  }

  private giveBack(record: ConnectionRecord<C>, destroy: boolean, reason: unknown): void {
    if (record.leakTimer !== undefined) {
      clearTimeout(record.leakTimer)
      record.leakTimer = undefined
    }
    record.lease = undefined
    this.counters.released++
    if (this.events.listening('release')) {
      this.events.emit('release', {
        id: record.id,
        connection: record.connection as C,
        heldMs: performance.now() - record.leasedAt,
        destroyed: destroy,
      })
    }
    if (debugging) this.log(destroy ? 'destroy' : 'release', record)
    if (record.state !== 'leased') return
    if (destroy) {
      const disconnect = reason !== undefined && this.isDisconnect(reason)
      if (disconnect) this.invalidateOlder()
      this.retire(record, disconnect ? 'disconnect' : 'destroyed', reason)
      return this.pump()
    }
    if (this.state !== 'open') return this.closeRecord(record)
    const condemned = this.condemned(record)
    if (condemned !== undefined) {
      this.retire(record, condemned)
      return this.pump()
    }
    const mode = this.opts.resetOnRelease
    if (mode !== false && this.dialect.reset !== undefined) return this.reset(record, mode)
    // Nothing to reset, and the checks of makeAvailable were just made: hand it on directly.
    this.handOff(record)
  }

  private reset(record: ConnectionRecord<C>, mode: ResetMode): void {
    const started = this.events.listening('reset') ? performance.now() : Number.NaN
    const connection = record.connection as C
    const onConnect = mode === 'session' ? this.opts.onConnect : undefined
    // Aborted when the reset times out, so that the dialect can stop waiting on the server.
    const controller = new AbortController()
    let pending: Promise<void> | void
    try {
      pending = this.dialect.reset!(connection, mode, controller.signal)
    } catch (error) {
      return this.resetFailed(record, error)
    }
    if (pending === undefined && onConnect === undefined) {
      // Nothing to undo: the dialect answered synchronously, so the hand-off stays synchronous.
      this.resetDone(record, mode, started)
      return this.makeAvailable(record)
    }
    this.move(record, 'resetting')
    withTimeout(
      async () => {
        await pending
        if (onConnect !== undefined) await onConnect(connection)
      },
      this.opts.connectTimeout,
      () => {
        const error = new PoolError(
          `reset timed out after ${this.opts.connectTimeout} ms`,
          'LIFEGUARD_RESET_TIMEOUT',
        )
        controller.abort(error)
        return error
      },
    ).then(
      () => {
        if (record.state !== 'resetting') return
        this.resetDone(record, mode, started)
        this.makeAvailable(record)
      },
      (error) => {
        if (record.state === 'resetting') this.resetFailed(record, error)
      },
    )
  }

  private resetDone(record: ConnectionRecord<C>, mode: ResetMode, started: number): void {
    if (this.events.listening('reset')) {
      this.events.emit('reset', {
        id: record.id,
        connection: record.connection as C,
        mode,
        durationMs: performance.now() - started,
      })
    }
    if (debugging) this.log(`reset (${mode})`, record)
  }

  private resetFailed(record: ConnectionRecord<C>, error: unknown): void {
    if (this.isDisconnect(error)) this.invalidateOlder()
    this.retire(record, 'reset-failed', error)
    this.pump()
  }

  /** Pings an idle record; on success it is lent or parked, on failure replaced. */
  private validate(record: ConnectionRecord<C>): void {
    this.move(record, 'validating')
    const connection = record.connection as C
    withTimeout(
      (signal) => this.dialect.ping!(connection, signal),
      this.opts.connectTimeout,
      () =>
        new PoolError(
          `ping timed out after ${this.opts.connectTimeout} ms`,
          'LIFEGUARD_PING_TIMEOUT',
        ),
    ).then(
      () => {
        if (record.state !== 'validating') return
        record.lastUsedAt = performance.now()
        this.makeAvailable(record)
      },
      (error) => {
        if (record.state !== 'validating') return
        // A failed ping means the server may have dropped everyone: SQLAlchemy's rule.
        this.invalidateOlder()
        this.retire(record, 'ping', error)
        this.pump()
      },
    )
  }

  // Opening connections.

  private connect(): void {
    const record = new ConnectionRecord<C>(this.nextId++)
    record.state = 'closed'
    this.records.add(record)
    this.move(record, 'connecting')
    const started = performance.now()
    const controller = new AbortController()
    record.abort = controller
    const ms = this.opts.connectTimeout
    const timer = setTimeout(
      () => controller.abort(new ConnectError(`connect timed out after ${ms} ms`)),
      ms,
    )
    this.open(record, controller.signal).then(
      (connection) => {
        clearTimeout(timer)
        record.abort = undefined
        this.established(record, connection, started)
      },
      (error) => {
        clearTimeout(timer)
        record.abort = undefined
        this.connectFailed(record, error)
      },
    )
  }

  /** Connects and runs `onConnect`, giving up when `signal` aborts; never leaves a connection open on failure. */
  private async open(record: ConnectionRecord<C>, signal: AbortSignal): Promise<C> {
    const connection = await this.abortable(this.dialect.connect(signal), signal, (late) =>
      this.closeQuietly(late),
    )
    try {
      this.dialect.watch?.(connection, (error) => this.died(record, error))
      const onConnect = this.opts.onConnect
      if (onConnect !== undefined) {
        await this.abortable(Promise.resolve(onConnect(connection)), signal)
      }
      if (this.serverInfo === undefined && !this.inspecting && this.dialect.inspect !== undefined) {
        this.inspecting = true
        try {
          await this.inspect(connection, signal)
        } finally {
          this.inspecting = false
        }
      }
    } catch (error) {
      this.closeQuietly(connection)
      throw error
    }
    return connection
  }

  /**
   * Settles with `promise`, or rejects when `signal` aborts first. A connection that arrives
   * after the abort is closed, so a timed-out connect never leaks one.
   */
  private abortable<T>(
    promise: Promise<T>,
    signal: AbortSignal,
    onLate?: (late: T) => void,
  ): Promise<T> {
    const abandon = () => {
      if (onLate !== undefined) promise.then(onLate, () => {})
      else promise.catch(() => {})
    }
    if (signal.aborted) {
      abandon()
      return Promise.reject(signal.reason)
    }
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => {
        abandon()
        reject(signal.reason)
      }
      signal.addEventListener('abort', onAbort, { once: true })
      promise.then(
        (value) => {
          signal.removeEventListener('abort', onAbort)
          resolve(value)
        },
        (error) => {
          signal.removeEventListener('abort', onAbort)
          reject(error)
        },
      )
    })
  }

  /** Reads the server's limits on the first connection; a failure to read them is not fatal. */
  private async inspect(connection: C, signal: AbortSignal): Promise<void> {
    let info: ServerInfo
    try {
      info = await this.abortable(this.dialect.inspect!(connection, signal), signal)
    } catch (error) {
      if (signal.aborted) throw error
      if (debugging) debug('%s could not read the server limits: %s', this.label, messageOf(error))
      return
    }
    if (this.serverInfo !== undefined) return
    this.serverInfo = info
    if (this.events.listening('server')) this.events.emit('server', info)
    this.clampToServer(info)
    const most = this.opts.max + this.opts.maxOverflow
    if (info.maxConnections !== undefined && most > info.maxConnections) {
      this.warn(
        'LIFEGUARD_POOL_EXCEEDS_SERVER',
        `pool "${this.label}" may open ${most} connections (max + maxOverflow) but the server allows ${info.maxConnections} (max_connections); lower max or maxOverflow`,
      )
    }
  }

  /** Keeps lifetimes and idle time below the server's idle cut-off, so it never drops a pooled connection first. */
  private clampToServer(info: ServerInfo): void {
    const fit = fitToIdleCutoff(
      { maxLifetime: this.maxLifetime, idleTimeout: this.idleTimeout, min: this.opts.min },
      info.idleCutoffMs,
      info.idleCutoffSetting,
    )
    for (const c of fit.changes) this.clamped(c.option, c.from, c.to, c.setting, c.cutoffMs)
    if (fit.maxLifetime !== this.maxLifetime) {
      this.maxLifetime = fit.maxLifetime
      const now = performance.now()
      for (const record of this.records) {
        if (record.state === 'connecting' || record.state === 'closing') continue
        if (record.expiresAt - record.createdAt > fit.maxLifetime)
          this.scheduleExpiry(record, record.createdAt, now)
      }
    }
    if (fit.idleTimeout !== this.idleTimeout) {
      this.idleTimeout = fit.idleTimeout
      this.housekeeper.update({ ...this.opts, idleTimeout: fit.idleTimeout })
    }
  }

  private clamped(
    option: 'maxLifetime' | 'idleTimeout',
    from: number,
    to: number,
    setting: string,
    cutoffMs: number,
  ): void {
    if (this.events.listening('clamp'))
      this.events.emit('clamp', { option, from, to, setting, cutoffMs })
    if (debugging) {
      debug(
        '%s %s lowered from %d to %d ms: the server drops idle sessions after %d ms (%s)',
        this.label,
        option,
        from,
        to,
        cutoffMs,
        setting,
      )
    }
  }

  private warn(code: string, message: string): void {
    if (this.events.listening('warning')) this.events.emit('warning', { code, message })
    process.emitWarning(message, { code })
  }

  /** Sets a record's end of life: its lifetime, up to 10% shorter so connections made together are not replaced together. */
  private scheduleExpiry(record: ConnectionRecord<C>, createdAt: number, now: number): void {
    if (record.lifetimeTimer !== undefined) clearTimeout(record.lifetimeTimer)
    record.lifetimeTimer = undefined
    const lifetime = this.maxLifetime
    if (!Number.isFinite(lifetime)) return
    record.expiresAt = this.spreadExpiry(record, createdAt + lifetime, lifetime * 0.1)
    record.lifetimeTimer = setTimeout(
      () => this.expired(record),
      Math.max(0, record.expiresAt - now),
    )
    record.lifetimeTimer.unref()
  }

  /**
   * An end of life in `[latest - band, latest]`: of a few random candidates, the one farthest
   * from the other connections' ends of life (Mitchell's best candidate), so that connections
   * made together, as when the pool fills up, are not replaced together even when the band is
   * short (10% of a 1 s lifetime is 100 ms).
   */
  private spreadExpiry(record: ConnectionRecord<C>, latest: number, band: number): number {
    let best = latest - Math.random() * band
    let bestGap = -1
    for (let i = 0; i < EXPIRY_CANDIDATES; i++) {
      const candidate = latest - Math.random() * band
      let gap = Number.POSITIVE_INFINITY
      for (const other of this.records) {
        if (other === record || other.state === 'closing' || other.state === 'connecting') continue
        gap = Math.min(gap, Math.abs(other.expiresAt - candidate))
      }
      if (gap > bestGap) {
        best = candidate
        bestGap = gap
      }
    }
    return best
  }

  private established(record: ConnectionRecord<C>, connection: C, started: number): void {
    const now = performance.now()
    record.connection = connection
    record.createdAt = now
    record.lastUsedAt = now
    record.generation = ++this.generation
    this.connectFailures = 0
    this.lastConnectError = undefined
    this.counters.created++
    this.scheduleExpiry(record, now, now)
    if (this.events.listening('connect')) {
      this.events.emit('connect', { id: record.id, connection, durationMs: now - started })
    }
    if (debugging) this.log('connect', record, `in ${(now - started).toFixed(1)} ms`)
    this.makeAvailable(record)
    // After a failure, connects went one at a time: now that one worked, open what is missing.
    this.pump()
  }

  private connectFailed(record: ConnectionRecord<C>, cause: unknown): void {
    this.move(record, 'closed')
    if (this.state !== 'open') return this.checkDrained()
    const error =
      cause instanceof ConnectError
        ? cause
        : new ConnectError(`could not connect (${this.dialect.name}): ${messageOf(cause)}`, {
            cause,
          })
    this.lastConnectError = error
    this.counters.connectErrors++
    const attempt = ++this.connectFailures
    const delay = backoff(attempt)
    this.retryAt = performance.now() + delay
    if (this.events.listening('connectError'))
      this.events.emit('connectError', { error, attempt, retryInMs: delay })
    if (debugging) this.log('connect failed', record, `${error.message}; retry in ${delay} ms`)
    this.pump()
  }

  // Taking connections out of service.

  /** Every connection established so far is now stale (SQLAlchemy's invalidation rule). */
  private invalidateOlder(): void {
    this.staleBelow = this.generation + 1
  }

  private died(record: ConnectionRecord<C>, error: unknown): void {
    if (record.state === 'closing' || record.state === 'closed') return
    this.invalidateOlder()
    if (record.state === 'idle') {
      this.retire(record, 'disconnect', error)
      this.pump()
    } else {
      // Leased, resetting, validating or connecting: it is dropped when that ends.
      record.dead = true
    }
  }

  private expired(record: ConnectionRecord<C>): void {
    record.lifetimeTimer = undefined
    record.expired = true
    if (record.state !== 'idle') return // a leased connection is retired when it comes back
    this.retire(record, 'lifetime')
    this.pump()
  }

  private retire(record: ConnectionRecord<C>, reason: InvalidateReason, error?: unknown): void {
    this.counters.invalidated++
    if (this.events.listening('invalidate')) {
      const connection = record.connection as C
      this.events.emit(
        'invalidate',
        error === undefined
          ? { id: record.id, connection, reason }
          : { id: record.id, connection, reason, error },
      )
    }
    if (debugging) this.log(`invalidate (${reason})`, record)
    this.closeRecord(record)
  }

  /** Closes a record's connection; the record counts as `closing` until the dialect is done. */
  private closeRecord(record: ConnectionRecord<C>): void {
    if (record.state === 'closing' || record.state === 'closed') return
    if (record.state === 'connecting' && record.connection === undefined) {
      // Still opening: abort it; connectFailed removes the record.
      record.abort?.abort(this.closedError())
      return
    }
    if (record.lifetimeTimer !== undefined) clearTimeout(record.lifetimeTimer)
    if (record.leakTimer !== undefined) clearTimeout(record.leakTimer)
    record.lifetimeTimer = undefined
    record.leakTimer = undefined
    if (record.lease !== undefined) {
      // Taken back from its holder (destroy(), or close() timing out): it never comes back.
      record.lease.revoke()
      record.lease = undefined
      this.counters.revoked++
    }
    this.move(record, 'closing')
    const done = () => {
      this.move(record, 'closed')
      this.counters.closed++
      if (this.events.listening('close')) {
        this.events.emit('close', { id: record.id, connection: record.connection as C })
      }
      if (debugging) this.log('close', record)
      this.pump()
      this.checkDrained()
    }
    withTimeout(
      (signal) => this.dialect.close(record.connection as C, signal),
      this.opts.connectTimeout,
      () => new PoolError('close timed out', 'LIFEGUARD_CLOSE_TIMEOUT'),
    ).then(done, done)
  }

  private closeQuietly(connection: C): void {
    withTimeout(
      (signal) => this.dialect.close(connection, signal),
      this.opts.connectTimeout,
      () => new PoolError('close timed out', 'LIFEGUARD_CLOSE_TIMEOUT'),
    ).catch(() => {})
  }

  // Waiters.

  private timedOut(waiter: Waiter<Lease<C>>): void {
    this.counters.timeouts++
    waiter.reject(
      new AcquireTimeoutError(
        `Timed out after ${waiter.timeout} ms waiting for a connection from pool "${this.label}" ${this.describeCounts()}`,
        this.lastConnectError === undefined ? undefined : { cause: this.lastConnectError },
      ),
    )
  }

  private rejectWaiters(): void {
    const error = this.closedError()
    for (const waiter of this.waiters.drain()) waiter.reject(error)
  }

  private closedError(): PoolClosedError {
    return new PoolClosedError(
      `Pool "${this.label}" is ${this.destroying === undefined ? 'closed' : 'destroyed'}`,
    )
  }

  private describeCounts(): string {
    const c = this.counts
    return `(total=${this.records.size} idle=${c.idle} leased=${c.leased} connecting=${c.connecting} waiting=${this.waiters.size} max=${this.opts.max} maxOverflow=${this.opts.maxOverflow})`
  }

  // Shutting down.

  private async shutdown(timeout: number): Promise<void> {
    this.stopBackground()
    this.rejectWaiters()
    for (const record of [...this.records]) {
      // Leased, resetting and validating records close when they come back.
      if (record.state === 'idle' || record.state === 'connecting') this.closeRecord(record)
    }
    await this.drained(timeout)
    if (this.records.size > 0) {
      this.state = 'closed'
      this.forceClose()
    }
    this.state = 'closed'
  }

  private forceClose(): void {
    for (const record of [...this.records]) this.closeRecord(record)
  }

  private stopBackground(): void {
    this.housekeeper.stop()
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer)
    this.retryTimer = undefined
  }

  /** Resolves once no record is left, or after `timeout` ms. */
  private drained(timeout = Number.POSITIVE_INFINITY): Promise<void> {
    if (this.records.size === 0) return Promise.resolve()
    return new Promise<void>((resolve) => {
      let timer: NodeJS.Timeout | undefined
      const finish = () => {
        if (timer !== undefined) clearTimeout(timer)
        resolve()
      }
      if (Number.isFinite(timeout)) timer = setTimeout(finish, timeout)
      this.drainResolvers.push(finish)
    })
  }

  private checkDrained(): void {
    if (this.records.size > 0 || this.drainResolvers.length === 0) return
    const resolvers = this.drainResolvers
    this.drainResolvers = []
    for (const resolve of resolvers) resolve()
  }

  // Helpers.

  private isDisconnect(error: unknown): boolean {
    try {
      return this.dialect.isDisconnect?.(error) === true
    } catch {
      return false
    }
  }

  private leaked(record: ConnectionRecord<C>, lease: Lease<C>, stack: string): void {
    record.leakTimer = undefined
    if (record.lease !== lease) return
    const heldMs = performance.now() - record.leasedAt
    if (this.events.listening('leak')) this.events.emit('leak', { id: record.id, heldMs, stack })
    if (debugging) this.log('leak', record, `held ${Math.round(heldMs)} ms; acquired at ${stack}`)
  }

  private log(what: string, record: ConnectionRecord<C>, detail?: string): void {
    debug(
      '%s %s #%d%s %s',
      this.label,
      what,
      record.id,
      detail === undefined ? '' : ` ${detail}`,
      this.describeCounts(),
    )
  }
}
