import { AsyncLocalStorage } from 'node:async_hooks'
import { abortable } from './abortable.js'
import { ConnectBackoff } from './connect-backoff.js'
import type { ConnectionBudget } from './connection-budget.js'
import {
  ConnectionRecord,
  checkTransition,
  type RecordState,
  transitionChecks,
} from './connection-record.js'
import type { AcquireTraceContext } from './diagnostics-channels.js'
import type { Dialect, ReadOnlyScope, ResetMode, ServerInfo } from './dialect.js'
import { spreadEndOfLife } from './end-of-life.js'
import {
  AcquireTimeoutError,
  BudgetTimeoutError,
  CloseTimeoutError,
  ConnectError,
  InvalidOptionError,
  PingTimeoutError,
  PoolClosedError,
  ResetTimeoutError,
  TooManyWaitersError,
  UnavailableError,
  WrongRoleError,
} from './errors.js'
import type { InvalidateReason } from './events.js'
import { Housekeeper, type HousekeeperHost } from './housekeeper.js'
import { fitToIdleCutoff } from './idle-cutoff.js'
import { type Lease, type LeaseOwner, lendLease, revokeLease } from './lease.js'
import { LinkedList } from './linked-list.js'
import { OUTER_WAIT, type OuterQueueLink, type OuterWait } from './outer-queue.js'
import { PingHedge, PingWatch } from './ping-hedge.js'
import { poolNames } from './pool-names.js'
import {
  type AcquireOptions,
  type CloseOptions,
  checkAcquireOptions,
  describe,
  type PoolOptions,
  type ResolvedPoolOptions,
  resolveCloseTimeout,
  resolvePoolOptions,
} from './pool-options.js'
import { RefusalWindow } from './refusal-window.js'
import {
  openRequestScope,
  type RequestScope,
  type RequestScopeOptions,
  resolveScopeOptions,
  type ScopeHost,
} from './request-scope.js'
import { checkSessionRole } from './session-role.js'
import { PoolCounters, type PoolStats, StateCounts } from './stats.js'
import { type PoolEventSink, PoolTelemetry } from './telemetry.js'
import { Waiter, WaiterQueue } from './waiter-queue.js'
import { withTimeout } from './with-timeout.js'

/** The signal a reset gets when it does not declare one: nothing aborts it. */
const NEVER_ABORTED = new AbortController().signal

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

/**
 * A driver's connect error for a message: its text and its codes, such as `password
 * authentication failed for user "app" (28P01)` or `Access denied for user … (ER_ACCESS_DENIED_ERROR,
 * 1045)`. A code the text already shows (`connect ECONNREFUSED …`) is not repeated. Drivers put no
 * password in these texts.
 */
function describeCause(cause: unknown): string {
  const message = messageOf(cause)
  if (typeof cause !== 'object' || cause === null) return message
  const { code, errno } = cause as { code?: unknown; errno?: unknown }
  const codes: string[] = []
  if ((typeof code === 'string' && code !== '') || typeof code === 'number')
    codes.push(String(code))
  // MySQL's error number; Node's system errors carry a negative errno, already named by `code`.
  if (typeof errno === 'number' && errno > 0) codes.push(String(errno))
  const shown = codes.filter((c) => !message.includes(c))
  return shown.length === 0 ? message : `${message} (${shown.join(', ')})`
}

/** Why the pool fails fast, while it does: see {@link PoolCore.failing}. */
interface Failing {
  /** `permanent`: the last connect error was permanent; `unavailable`: connects failed for `failFastAfter`. */
  readonly kind: 'permanent' | 'unavailable'
  /** The last connect's error. */
  readonly error: ConnectError
  /** The message of `error`, without its explain hint, for the copies each caller gets. */
  readonly message: string
}

/** Why the pool withdraws a wait for a budget slot that nobody needs any more. */
const SLOT_NOT_NEEDED = new Error('no longer needed')

/**
 * The engine of a `Pool`: it owns the connection records, the idle list and the waiter
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
  /** The callers a facade queues itself, counted in `stats().waiting` (see `outerQueue()`). */
  private outerWaiting: (() => number) | undefined = undefined
  private readonly housekeeper: Housekeeper<C>
  private readonly owner: LeaseOwner<C>
  /** The owner of the leases lent to sharing callers: see {@link PoolCore.giveBackShared}. */
  private readonly sharedOwner: LeaseOwner<C>
  /** Whether callers may share connections: the dialect pipelines and `maxPipeline` is above 1. */
  private readonly canShare: boolean
  /** The connections lent to sharing callers now, for the least loaded to be found. */
  private readonly sharing = new Set<ConnectionRecord<C>>()
  /** The sharing callers holding connections now (the sum of their records' `shares`). */
  private sharedOut = 0
  /** The idle time that triggers a checkout ping, or -1 when the pool does not ping. */
  private readonly pingAfter: number
  /** Idle connections let the process exit (`allowExitOnIdle`) and the dialect can say so. */
  private readonly unrefIdle: boolean
  /** Whether the dialect's `reset` declares its signal: only then is one made for each reset. */
  private readonly resetTakesSignal: boolean
  /** Whether the dialect's `ping` declares its signal parameter: if not, no controller per ping. */
  private readonly pingTakesSignal: boolean
  /** The idle connections the pool opens connections to keep: `min`, or 0 under `minMode: 'floor'`. */
  private readonly fillTo: number
  /** `connectErrors: 'reject'`: a failed connect rejects the head waiter instead of backing off. */
  private readonly rejectConnectErrors: boolean
  /** `failFast`, under `connectErrors: 'retry'` (under 'reject' every connect error reaches a caller anyway). */
  private readonly failFast: boolean
  /**
   * While the pool fails fast: callers that need a new connection are rejected at once, and the
   * pool probes the server in the background, one connect at a time; a success ends it.
   */
  private failing: Failing | undefined = undefined
  /** When the pool started failing fast, on `performance.now()`'s clock. */
  private failingSince = 0
  /** When a caller last asked for a connection while the pool failed fast (or it began to). */
  private demandAt = 0
  /**
   * How long after the last caller's request the pool keeps probing while it fails fast: the
   * larger of `acquireTimeout` (when finite) and 60 s. After that, the next acquire starts again.
   */
  private readonly probeWindow: number
  private state: 'open' | 'closing' | 'closed' = 'open'
  /** `maxLifetime` and `idleTimeout`, lowered below the server's idle cut-off when needed. */
  private maxLifetime: number
  private idleTimeout: number
  /** `resetOnRelease`, unless a pooler in transaction mode made it `'rollback'` (see `fitToPooler`). */
  private resetMode: ResetMode | false
  private serverInfo: ServerInfo | undefined
  /** A connection is reading the server's limits: the others need not. */
  private inspecting = false
  private nextId = 1
  private generation = 0
  /** Records past their lifetime that are not idle (lent, reset, pinged): `stats().expired`. */
  private expiredOut = 0
  /** Connections with a lower generation are stale: a disconnect was seen after they were made. */
  private staleBelow = 0
  private readonly backoff: ConnectBackoff
  /** How often a server-level read-only refusal may retire the older connections. */
  private readonly refusals = new RefusalWindow()
  /** The ping times seen, which set how long a pre-ping may take before it is hedged. */
  private readonly hedge = new PingHedge()
  /** The pings in flight, with one timer for their hedge delays and timeouts. */
  private readonly pings = new PingWatch()
  /**
   * Records being pinged for longer than the hedge delay. They still count as open (the server
   * sees them), but no longer as on their way to a waiter: the pump looks elsewhere for one.
   */
  private readonly slow = new Set<ConnectionRecord<C>>()
  private pumping = false
  private pumpAgain = false
  private closing: Promise<void> | undefined
  private destroying: Promise<void> | undefined
  private drainResolvers: Array<() => void> = []
  /** The current request scope of each async context; made by the first `openScope()`. */
  private scopes: AsyncLocalStorage<RequestScope<C>> | undefined
  private scopeHost: ScopeHost<C> | undefined
  /** Where every event goes: the public pool's events, the debug log. */
  private readonly telemetry: PoolTelemetry<C>
  /** The shared budget (`budget` option): a slot is taken before each connect, given back once closed. */
  private readonly budget: ConnectionBudget | undefined
  /** Connects waiting for a slot of the budget: a caller who times out meanwhile gets `BudgetTimeoutError`. */
  private readonly slotWaits = new Set<ConnectionRecord<C>>()
  private unsubscribeBudget: (() => void) | undefined = undefined

  constructor(options: PoolOptions<C>, events: PoolEventSink<C>) {
    const resolved = resolvePoolOptions(options)
    this.label = poolNames.claim(this, resolved.name, options.name === undefined)
    this.opts = resolved.name === this.label ? resolved : { ...resolved, name: this.label }
    this.dialect = this.opts.dialect
    this.telemetry = new PoolTelemetry(events, this.label, () => this.describeCounts())
    this.backoff = new ConnectBackoff(() => this.pump())
    const prePing = this.opts.prePing
    this.pingAfter = this.dialect.ping === undefined || prePing === false ? -1 : prePing
    this.resetTakesSignal = (this.dialect.reset?.length ?? 0) >= 3
    this.pingTakesSignal = (this.dialect.ping?.length ?? 0) >= 2
    this.unrefIdle =
      this.opts.allowExitOnIdle &&
      typeof this.dialect.ref === 'function' &&
      typeof this.dialect.unref === 'function'
    this.maxLifetime = this.opts.maxLifetime
    this.idleTimeout = this.opts.idleTimeout
    this.resetMode = this.opts.resetOnRelease
    this.fillTo = this.opts.minMode === 'fill' ? this.opts.min : 0
    this.rejectConnectErrors = this.opts.connectErrors === 'reject'
    this.failFast = this.opts.failFast && !this.rejectConnectErrors
    const acquireTimeout = this.opts.acquireTimeout
    this.probeWindow = Math.max(60_000, Number.isFinite(acquireTimeout) ? acquireTimeout : 0)
    this.waiters = new WaiterQueue<Lease<C>>(
      (waiter) => {
        this.timedOut(waiter)
        this.waiterLeft()
      },
      (waiter, signal) => {
        this.counters.aborted++
        waiter.reject(signal.reason)
        this.waiterLeft()
      },
    )
    this.owner = { giveBack: (record, destroy, reason) => this.giveBack(record, destroy, reason) }
    this.sharedOwner = {
      giveBack: (record, destroy, reason, lease) =>
        this.giveBackShared(record, destroy, reason, lease),
    }
    this.canShare = typeof this.dialect.pipeline === 'function' && this.opts.maxPipeline > 1
    const host: HousekeeperHost<C> = {
      idle: () => this.idle,
      idleCount: () => this.idle.size,
      openCount: () => this.records.size - this.counts.closing,
      isStale: (record) => record.generation < this.staleBelow,
      retire: (record, reason) => this.retire(record, reason),
      validate: (record) => this.validate(record),
      pump: () => this.pump(),
    }
    this.housekeeper = new Housekeeper(host, this.opts)
    this.housekeeper.start()
    this.budget = this.opts.budget
    this.unsubscribeBudget = this.budget?.subscribe({
      warning: (code, message) => this.telemetry.warning(code, `pool "${this.label}": ${message}`),
      shed: () => this.shed(),
    })
    this.pump()
  }

  /** See `Pool.name`. */
  get name(): string {
    return this.label
  }

  /** See `Pool.options`. */
  get options(): ResolvedPoolOptions<C> {
    return {
      ...this.opts,
      maxLifetime: this.maxLifetime,
      idleTimeout: this.idleTimeout,
      resetOnRelease: this.resetMode,
    }
  }

  /** See `Pool.server`. */
  get server(): ServerInfo | undefined {
    return this.serverInfo
  }

  /** See `Pool.closed`. */
  get closed(): boolean {
    return this.state !== 'open'
  }

  /** See `Pool.acquire`; `untraced` is the traced call's own run (see `PoolTelemetry.traceAcquire`). */
  acquire(options?: AcquireOptions, untraced?: boolean): Promise<Lease<C>> {
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
    // A facade's queued caller brings its wait's start, and its trace begun then.
    const outer = (options as { [OUTER_WAIT]?: OuterWait } | undefined)?.[OUTER_WAIT]
    if (untraced !== true && outer?.trace === undefined && this.telemetry.tracesAcquires()) {
      return this.telemetry.traceAcquire(() => this.acquire(options, true))
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
    const wish = options?.shared
    const shared = this.canShare && (wish === true || wish === 'last')
    const last = shared && wish === 'last'
    // A sharing caller's statement is over as soon as it answers: no leak to detect.
    const stack =
      this.opts.leakDetectionThreshold > 0 && !shared
        ? (new Error('acquired here').stack ?? '')
        : undefined
    if (this.waiters.size === 0) {
      const record = this.takeIdle()
      if (record !== undefined) {
        if (!this.needsPing(record)) {
          const lease = this.lend(
            record,
            outer === undefined
              ? undefined
              : {
                  extra: {
                    enqueuedAt: outer.queuedAt,
                    trace: outer.trace ?? this.telemetry.acquiring,
                  },
                },
            stack,
            shared,
            last,
          )
          if (this.fillTo > 0) this.pump() // keep `min` idle
          return Promise.resolve(lease)
        }
        this.validate(record)
      } else if (shared && this.failing === undefined && this.full()) {
        // Every connection is out and the pool can open no more: share the least loaded one.
        const busy = this.leastLoaded()
        if (busy !== undefined) return Promise.resolve(this.join(busy, undefined, last))
      }
    }
    if (this.failing !== undefined) {
      // Someone wants the pool: the background probes go on (or start again, when the backoff
      // allows), and the first success ends the failing.
      this.demandAt = performance.now()
      if (this.counts.connecting === 0) this.pump()
      if (this.needsNewConnection(this.waiters.size + 1)) {
        return Promise.reject(this.failFastError())
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
    const timed = this.telemetry.timesWaits()
    const trace = outer?.trace ?? this.telemetry.acquiring
    const extra =
      timed || stack !== undefined || trace !== undefined
        ? { enqueuedAt: timed ? (outer?.queuedAt ?? performance.now()) : undefined, stack, trace }
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
    if (shared) waiter.pipelines = last ? 'last' : true
    this.waiters.push(waiter, signal)
    // Under load every connection is out and the pool is full: a new waiter changes nothing the
    // pump could act on, so skip it (it serves idle connections and opens new ones).
    if (this.idle.size > 0 || this.records.size < this.opts.max + this.opts.maxOverflow) {
      this.pump()
    }
    return promise
  }

  /** See `Pool.use`. */
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
        if (this.isDisconnect(error) || this.readOnlyScope(error) !== undefined) {
          lease.destroy(error)
        } else lease.release()
      }
      throw error
    }
    if (lease.active) lease.release()
    return result
  }

  /** See `Pool.openScope`. */
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
        isReadOnly: (error) => this.readOnlyScope(error) !== undefined,
        acquireTimeout: this.opts.acquireTimeout,
        label: this.label,
      }
    }
    return openRequestScope(this.scopeHost, transaction, options?.cancelOnAbort === true)
  }

  /** See `Pool.currentScope`. */
  currentScope(): RequestScope<C> | undefined {
    return this.scopes?.getStore()
  }

  /** The pool's side of a facade's own queue (see `OuterQueueLink`). */
  outerQueue(): OuterQueueLink {
    return {
      count: (length) => {
        this.outerWaiting = length
      },
      timedOut: () => {
        this.counters.timeouts++
      },
      trace: () => {
        if (!this.telemetry.tracesAcquires()) return undefined
        let settle!: (lease?: object, error?: unknown) => void
        let context: AcquireTraceContext | undefined
        this.telemetry
          .traceAcquire(() => {
            context = this.telemetry.acquiring
            return new Promise<object>((resolve, reject) => {
              settle = (lease, error) => (lease === undefined ? reject(error) : resolve(lease))
            })
          })
          .catch(() => {})
        return { context: context!, settle }
      },
    }
  }

  /** See `Pool.stats`. */
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
      expired: this.expiredOut,
      pipelined: this.sharedOut - this.sharing.size,
      waiting: this.waiters.size + (this.outerWaiting?.() ?? 0),
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
      failedFast: n.failedFast,
      invalidated: n.invalidated,
    }
  }

  /** See `Pool.close`. */
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

  /** See `Pool.destroy`. */
  destroy(): Promise<void> {
    if (this.destroying !== undefined) return this.destroying
    this.state = 'closed'
    this.stopBackground()
    this.rejectWaiters()
    this.forceClose()
    this.destroying = this.drained().then(() => poolNames.release(this, this.label))
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
    // Lend idle connections to the waiters that no validation in flight already covers; a
    // hedged (slow) ping covers nobody.
    while (this.waiters.size > this.counts.validating - this.slow.size) {
      const record = this.takeIdle()
      if (record === undefined) break
      if (this.needsPing(record)) this.validate(record)
      else this.serve(record, this.waiters.shift()!)
    }
    if (this.sharing.size > 0 && this.waiters.peek()?.pipelines) this.joinWaiters()
    if (this.slotWaits.size > 0) this.dropSlotWaits()
    if (this.failing !== undefined) return this.pumpFailing()
    // Open connections for the waiters nothing covers yet, and to keep `min` idle.
    const c = this.counts
    // Every connection on its way, a hedged ping's included: the waiters it covers still get it
    // if it answers, so a connect opened for them (a hedge) is owed to nobody.
    const covered = c.connecting + c.validating + c.resetting
    const coming = covered - this.slow.size
    const total = this.records.size
    const { max, maxOverflow } = this.opts
    let open = Math.min(this.waiters.size - coming, max + maxOverflow - total)
    open = Math.max(open, Math.min(this.fillTo - c.idle - coming, max - total))
    if (open <= 0) return
    // Above its share of the budget the pool opens nothing (min included): it gives back instead.
    if (this.budget !== undefined && this.budget.surplus() > 0) return
    // Under connectErrors 'reject' each failure rejects a waiter: the waiters nothing covers get
    // connects at once. A hedge's connect waits for the backoff, as a refill's does.
    if (this.backoff.failures > 0 && !(this.rejectConnectErrors && this.waiters.size > covered)) {
      // While the server refuses us, probe with one connection at a time, after a backoff.
      if (this.backoff.waiting(performance.now(), this.waiters.size > 0)) return
      if (c.connecting > 0) return
      open = 1
    }
    if (!this.rejectConnectErrors) {
      for (let i = 0; i < open; i++) this.connect(undefined)
      return
    }
    // Under 'reject' each connect is opened for one waiter, the first that nothing covers yet. A
    // hedge's connect (for a waiter a slow ping still covers) is opened for nobody: its failure
    // goes to the backoff, and the waiter keeps waiting for its ping.
    let index = coming
    let waiter = this.waiters.at(coming)
    for (let i = 0; i < open; i++, index++) {
      this.connect(index < covered ? undefined : waiter)
      waiter = waiter?.next
    }
  }

  /**
   * The pump while the pool fails fast: the waiters that would need a new connection are
   * rejected, and one probe connect at a time goes out when the backoff allows, while the pool is
   * in use: someone waits, or asked within {@link PoolCore.probeWindow} (the backoff's timer holds
   * the process only while someone waits; so does a probe's connect timer under `allowExitOnIdle`).
   */
  private pumpFailing(): void {
    const c = this.counts
    if (this.needsNewConnection(this.waiters.size)) {
      // A hedged (slow) ping covers nobody, as in pumpOnce.
      for (let n = this.waiters.size - (c.validating - this.slow.size) - c.resetting; n > 0; n--) {
        this.waiters.pop()!.reject(this.failFastError())
      }
      this.waiterLeft()
    }
    // Never past max + maxOverflow: connections still closing count, as in pumpOnce.
    if (c.connecting > 0 || this.records.size >= this.opts.max + this.opts.maxOverflow) return
    const now = performance.now()
    // Probe only while the pool is in use: a pool left alone with a wrong password must not
    // log in and fail every few seconds for ever (account lockout, fail2ban).
    if (this.waiters.size === 0 && now - this.demandAt > this.probeWindow) return
    if (this.backoff.waiting(now, this.waiters.size > 0)) return
    this.connect(undefined)
  }

  /**
   * Whether `waiting` callers include one that only a new connection could serve: none of the
   * pool's connections is leased or resetting (those come back soon, and serve the callers
   * queued for them: a server that refuses new connections while the pool holds open ones is not
   * down), more callers than the pings in flight (each lends a connection soon; a hedged, slow
   * one covers nobody), and room to open one (a full pool's callers wait for a lease to come back
   * instead). A connect in flight covers nobody while the pool fails fast: it is a probe that
   * will likely fail.
   */
  private needsNewConnection(waiting: number): boolean {
    const c = this.counts
    if (c.leased + c.resetting > 0) return false
    if (waiting <= c.validating - this.slow.size) return false
    return c.idle + c.leased + c.validating + c.resetting < this.opts.max + this.opts.maxOverflow
  }

  /** The error a caller gets while the pool fails fast: a copy of the permanent error, or `UnavailableError`. */
  private failFastError(): Error {
    const failing = this.failing!
    this.counters.failedFast++
    if (failing.kind === 'permanent') {
      return new ConnectError(failing.message, { cause: failing.error.cause })
    }
    const ms = Math.round(performance.now() - this.backoff.failingSince)
    return new UnavailableError(
      `Pool "${this.label}" is unavailable: every connect has failed for ${ms} ms (${this.backoff.failures} in a row), the last with: ${failing.message}; retrying in the background ${this.describeCounts()}`,
      { cause: failing.error },
    )
  }

  // A record's state changes here and nowhere else.

  private move(record: ConnectionRecord<C>, to: RecordState): void {
    if (transitionChecks.enabled) checkTransition(record, to)
    const from = record.state
    if (from === 'idle') this.idle.remove(record)
    this.counts.add(from, -1)
    this.counts.add(to, 1)
    record.state = to
    if (from === 'validating' && this.slow.size > 0) this.slow.delete(record)
    if (to === 'idle') {
      if (this.opts.order === 'lifo') this.idle.unshift(record)
      else this.idle.push(record)
      if (this.unrefIdle) this.hold(record, false)
      if (this.housekeeper.idleTimer === undefined) this.housekeeper.watchIdle(record.lastUsedAt)
    } else if (to === 'closing') {
      record.slot?.closing()
    } else if (to === 'closed') {
      this.records.delete(record)
      if (record.slot !== undefined) {
        record.slot.release()
        record.slot = undefined
      }
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
      this.telemetry.dialectFailed(held ? 'ref' : 'unref', error)
    }
  }

  /** Why a record must not be lent again, if it must not. Reads no clock: its lifetime timer sets `expired`. */
  private condemned(record: ConnectionRecord<C>): InvalidateReason | undefined {
    if (record.dead) return record.readOnly !== undefined ? 'read-only' : 'disconnect'
    if (record.retiring) return 'destroyed'
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
      this.retire(record, reason, reason === 'read-only' ? record.readOnly : undefined)
      return this.pump()
    }
    this.handOff(record)
  }

  /** Hands a ready, uncondemned record to the head waiter, or parks it idle, or closes it. */
  private handOff(record: ConnectionRecord<C>): void {
    // Other processes wait for slots this one holds beyond its share: one goes back per return
    // (a closing slot counts as given back), and no connect opens meanwhile, so it settles. A
    // new connection serves the caller it was opened for first: closing it would waste its connect.
    if (
      this.budget !== undefined &&
      this.budget.surplus() > 0 &&
      !(record.state === 'connecting' && this.waiters.size > 0)
    ) {
      this.closeRecord(record)
      return this.pump()
    }
    const waiter = this.waiters.shift()
    if (waiter !== undefined) return this.serve(record, waiter)
    // An overflow connection closes when it comes back with nobody waiting.
    if (this.records.size - this.counts.closing > this.opts.max) return this.closeRecord(record)
    // Only a connection that goes idle needs to know when: for pre-ping and idleTimeout.
    record.lastUsedAt = performance.now()
    this.move(record, 'idle')
  }

  private serve(record: ConnectionRecord<C>, waiter: Waiter<Lease<C>>): void {
    const wish = waiter.pipelines
    waiter.resolve(this.lend(record, waiter, waiter.extra?.stack, wish !== false, wish === 'last'))
    // The sharing callers queued behind it may share it, or the other shared connections once
    // an exclusive caller ahead of them is served, if the pool is full.
    if (this.sharing.size > 0 && this.waiters.peek()?.pipelines) this.joinWaiters()
    if (this.slotWaits.size > 0) this.dropSlotWaits()
  }

  // Sharing connections (pipelining): see PoolOptions.maxPipeline.

  /**
   * Whether the pool can open no more connections and none is being dialed: only then does it
   * share one. A connection being dialed serves a waiter soon: sharing callers who joined the
   * busy ones meanwhile piled on the first connection to land, while the others landed to find
   * nobody waiting. A connect waiting for a budget slot may wait long: it holds nothing back.
   */
  private full(): boolean {
    return (
      this.records.size >= this.opts.max + this.opts.maxOverflow &&
      this.counts.connecting === this.slotWaits.size
    )
  }

  /**
   * The connection lent to sharing callers with the fewest of them, below `maxPipeline`, that the
   * dialect pipelines, that no sharer sealed (`shared: 'last'`) and nothing condemned;
   * `undefined` when there is none.
   */
  private leastLoaded(): ConnectionRecord<C> | undefined {
    let best: ConnectionRecord<C> | undefined
    const limit = this.opts.maxPipeline
    for (const record of this.sharing) {
      if (record.shares >= limit || !record.pipelined || record.sealedBy !== undefined) continue
      if (record.state !== 'leased') continue
      if (best !== undefined && record.shares >= best.shares) continue
      if (this.condemned(record) !== undefined) continue
      best = record
      if (best.shares === 1) break
    }
    return best
  }

  /**
   * Lends the sharing callers at the head of the queue the least loaded shared connections, while
   * the pool is full and has no idle one (the pump lends those): the queue stays in order, since a
   * caller who does not share stops it (it gets the next connection that its sharers give back).
   */
  private joinWaiters(): void {
    if (this.state !== 'open' || this.failing !== undefined || !this.full()) return
    for (;;) {
      const head = this.waiters.peek()
      if (head === undefined || !head.pipelines || this.idle.size > 0) return
      const record = this.leastLoaded()
      if (record === undefined) return
      this.waiters.shift()
      head.resolve(this.join(record, head, head.pipelines === 'last'))
    }
  }

  /**
   * Lends one more sharing caller a connection already lent to sharing callers; `last` seals it:
   * nobody joins behind this caller until it gives the connection back.
   */
  private join(
    record: ConnectionRecord<C>,
    waiter: Pick<Waiter<Lease<C>>, 'extra'> | undefined,
    last: boolean,
  ): Lease<C> {
    record.shares++
    this.sharedOut++
    this.counters.acquired++
    // Each sharer's own lend time: what the events report of its wait and, later, of its hold.
    const leasedAt = this.telemetry.timesLeases() ? performance.now() : Number.NaN
    record.leasedAt = leasedAt
    this.telemetry.acquired(record, waiter)
    const lease = lendLease(this.sharedOwner, record)
    record.sharers!.set(lease, leasedAt)
    if (last) record.sealedBy = lease
    return lease
  }

  /**
   * A sharing caller gave its connection back. While others still share it, it takes the next
   * sharing caller waiting; the last one out turns pipelining off and returns it as any lease
   * returns. A destroyed one goes at once, torn down under the others (their statements then fail
   * with the connection, as they would have anyway: it broke, or its holder says it did).
   */
  private giveBackShared(
    record: ConnectionRecord<C>,
    destroy: boolean,
    reason: unknown,
    lease: Lease<C>,
  ): void {
    const sharers = record.sharers!
    // The hold time told is this sharer's own, not the first sharer's.
    record.leasedAt = sharers.get(lease) ?? Number.NaN
    sharers.delete(lease)
    if (record.sealedBy === lease) record.sealedBy = undefined
    record.shares--
    this.sharedOut--
    this.counters.released++
    this.telemetry.released(record, destroy)
    if (destroy) {
      // With no reason nothing broke: the others' statements finish, nobody joins meanwhile,
      // and the last one out retires it (pg's maxUses, a pool ending).
      if (reason !== undefined || record.shares === 0) {
        return this.dropLeased(record, reason, record.shares > 0)
      }
      record.retiring = true
    }
    if (record.shares > 0) {
      if (this.waiters.size > 0) this.joinWaiters()
      return
    }
    this.unshare(record)
    this.returned(record)
  }

  /**
   * Takes a record out of sharing: pipelining off, out of the list, and the leases of the
   * sharing callers still on it (it is closing under them) revoked.
   */
  private unshare(record: ConnectionRecord<C>): void {
    if (!this.sharing.delete(record)) return
    const sharers = record.sharers!
    record.sharers = undefined
    record.sealedBy = undefined
    if (record.shares > 0) {
      for (const lease of sharers.keys()) revokeLease(lease as Lease<C>)
      this.counters.revoked += record.shares
      this.sharedOut -= record.shares
      record.shares = 0
    }
    if (!record.pipelined) return
    record.pipelined = false
    try {
      this.dialect.pipeline!(record.connection as C, false)
    } catch (error) {
      this.telemetry.dialectFailed('pipeline', error)
    }
  }

  /** Lends a record to a waiter, or to a caller that did not wait (`waiter` undefined). */
  private lend(
    record: ConnectionRecord<C>,
    waiter: Pick<Waiter<Lease<C>>, 'extra'> | undefined,
    stack: string | undefined,
    shared = false,
    last = false,
  ): Lease<C> {
    // A record handed from one lease straight to the next stays `leased`: no count changes.
    if (record.state !== 'leased') this.move(record, 'leased')
    if (shared) return this.share(record, waiter, last)
    // The hold time is measured only when someone will see it.
    record.leasedAt =
      this.opts.leakDetectionThreshold > 0 || this.telemetry.timesLeases()
        ? performance.now()
        : Number.NaN
    const lease = lendLease(this.owner, record)
    record.lease = lease
    this.counters.acquired++
    const threshold = this.opts.leakDetectionThreshold
    if (threshold > 0) {
      record.leakTimer = setTimeout(() => this.leaked(record, lease, stack ?? ''), threshold)
      record.leakTimer.unref()
    }
    this.telemetry.acquired(record, waiter)
    return lease
  }

  /**
   * Lends a leased record to its first sharing caller: pipelining on, in the list, then lent as
   * any sharer is (`join`); `last` seals it until that caller gives it back.
   */
  private share(
    record: ConnectionRecord<C>,
    waiter: Pick<Waiter<Lease<C>>, 'extra'> | undefined,
    last: boolean,
  ): Lease<C> {
    let pipelined = false
    try {
      pipelined = this.dialect.pipeline!(record.connection as C, true) === true
    } catch (error) {
      this.telemetry.dialectFailed('pipeline', error)
    }
    record.pipelined = pipelined
    record.sharers = new Map()
    this.sharing.add(record)
    return this.join(record, waiter, last)
  }

  private giveBack(record: ConnectionRecord<C>, destroy: boolean, reason: unknown): void {
    if (record.leakTimer !== undefined) {
      clearTimeout(record.leakTimer)
      record.leakTimer = undefined
    }
    record.lease = undefined
    this.counters.released++
    this.telemetry.released(record, destroy)
    if (record.state !== 'leased') return
    if (destroy) return this.dropLeased(record, reason, false)
    this.returned(record)
  }

  /**
   * A leased record its holder destroyed. `teardown` skips the goodbye: sharing callers still
   * have statements on it, which must fail now rather than wait for a polite close.
   */
  private dropLeased(record: ConnectionRecord<C>, reason: unknown, teardown: boolean): void {
    const why = this.destroyReason(record, reason)
    // A connection condemned already (stale, or reported dead or refused while lent, which
    // retired the older ones then) must not retire those made since, on the new server.
    if (this.fresh(record)) {
      if (why === 'disconnect') this.invalidateOlder()
      else if (why === 'read-only' && reason !== undefined) {
        if (this.readOnlyScope(reason) === 'server') this.flushOlder()
        // The dialect may judge the refusal the server's later: see died().
        else record.readOnly = Object(reason)
      }
    }
    this.retire(record, why, reason ?? record.readOnly, teardown)
    this.pump()
  }

  /** A leased record given back whole: closed, retired, reset or handed on. */
  private returned(record: ConnectionRecord<C>): void {
    if (this.state !== 'open') return this.closeRecord(record)
    const condemned = this.condemned(record)
    if (condemned !== undefined) {
      this.retire(record, condemned, condemned === 'read-only' ? record.readOnly : undefined)
      return this.pump()
    }
    const mode = this.resetMode
    if (mode !== false && this.dialect.reset !== undefined) return this.reset(record, mode)
    // Nothing to reset, and the checks of makeAvailable were just made: hand it on directly.
    this.handOff(record)
  }

  private reset(record: ConnectionRecord<C>, mode: ResetMode): void {
    // Work the borrower left running is theirs: waited for without the reset's time limit (as
    // pg-pool does), the connection neither idle nor lendable meanwhile, and counted in max.
    let draining: Promise<void> | undefined
    try {
      draining = this.dialect.drain?.(record.connection as C)
    } catch (error) {
      return this.resetFailed(record, error)
    }
    if (draining === undefined) return this.resetNow(record, mode)
    this.move(record, 'resetting')
    draining.then(
      () => {
        if (record.state === 'resetting') this.resetNow(record, mode)
      },
      (error) => {
        if (record.state === 'resetting') this.resetFailed(record, error)
      },
    )
  }

  private resetNow(record: ConnectionRecord<C>, mode: ResetMode): void {
    const started = this.telemetry.timesResets() ? performance.now() : Number.NaN
    const connection = record.connection as C
    const onConnect = mode === 'session' ? this.opts.onConnect : undefined
    // Aborted when the reset times out, so that the dialect can stop waiting on the server. Made
    // only for a reset that declares the signal parameter: most releases reset synchronously
    // (a clean connection), and a controller on each of them made release 9x slower.
    const controller = this.resetTakesSignal ? new AbortController() : undefined
    let pending: Promise<void> | void
    try {
      pending = this.dialect.reset!(connection, mode, controller?.signal ?? NEVER_ABORTED)
    } catch (error) {
      return this.resetFailed(record, error)
    }
    if (pending === undefined && onConnect === undefined) {
      // Nothing to undo: the dialect answered synchronously, so the hand-off stays synchronous.
      this.telemetry.reset(record, mode, started)
      return this.makeAvailable(record)
    }
    if (record.state !== 'resetting') this.move(record, 'resetting')
    withTimeout(
      async () => {
        await pending
        if (onConnect !== undefined) await onConnect(connection)
      },
      this.opts.validationTimeout,
      () => {
        const error = new ResetTimeoutError(
          `reset timed out after ${this.opts.validationTimeout} ms`,
        )
        controller?.abort(error)
        return error
      },
    ).then(
      () => {
        if (record.state !== 'resetting') return
        this.telemetry.reset(record, mode, started)
        this.makeAvailable(record)
      },
      (error) => {
        if (record.state === 'resetting') this.resetFailed(record, error)
      },
    )
  }

  private resetFailed(record: ConnectionRecord<C>, error: unknown): void {
    if (this.isDisconnect(error)) this.invalidateOlder()
    this.retire(record, 'reset-failed', error)
    this.pump()
  }

  /**
   * Pings an idle record; on success it is lent or parked, on failure replaced. A ping slower
   * than the hedge delay stops covering a waiter (see `slow`), so the pump offers that waiter the
   * next idle connection or a new one; a ping that misses `validationTimeout` destroys the
   * connection at once, and it is never lent.
   */
  private validate(record: ConnectionRecord<C>): void {
    this.move(record, 'validating')
    const connection = record.connection as C
    const started = performance.now()
    const timeout = this.opts.validationTimeout
    this.pings
      .run(
        (signal) => this.dialect.ping!(connection, signal),
        started,
        this.hedge.delay,
        timeout,
        () => this.pingSlow(record),
        () => new PingTimeoutError(`ping timed out after ${timeout} ms`),
        this.pingTakesSignal,
      )
      .then(
        () => {
          const now = performance.now()
          this.hedge.sample(now - started)
          if (record.state !== 'validating') return
          record.lastUsedAt = now
          this.makeAvailable(record)
        },
        (error) => {
          if (record.state !== 'validating') return
          const silent = error instanceof PingTimeoutError
          // A failed ping means the server may have dropped everyone: SQLAlchemy's rule. A silent
          // one does not: a half-open link is most often one flow a NAT or firewall forgot, and
          // the hedge has meanwhile lent the others; a server that is gone silences them all,
          // and each is then found by its own ping, a hedge delay apart.
          if (!silent) this.invalidateOlder()
          // A silent connection gets no goodbye: its socket is torn down at once.
          this.retire(record, 'ping', error, silent)
          this.pump()
        },
      )
  }

  /** A ping outlasted the hedge delay: the waiter it covered is offered another connection. */
  private pingSlow(record: ConnectionRecord<C>): void {
    if (record.state !== 'validating' || this.state !== 'open') return
    this.slow.add(record)
    this.telemetry.pingHedged(record, this.hedge.delay)
    this.pump()
  }

  // Opening connections.

  private connect(openedFor: Waiter<Lease<C>> | undefined): void {
    const record = new ConnectionRecord<C>(this.nextId++)
    record.openedFor = openedFor
    this.records.add(record)
    this.move(record, 'connecting')
    const started = performance.now()
    const controller = new AbortController()
    record.abort = controller
    if (this.budget !== undefined) return this.takeSlot(record, controller, started)
    this.dial(record, controller, started)
  }

  /** Waits for a slot of the budget (no connect timeout meanwhile: the wait is not the server's), then dials. */
  private takeSlot(
    record: ConnectionRecord<C>,
    controller: AbortController,
    started: number,
  ): void {
    this.slotWaits.add(record)
    this.budget!.take(controller.signal).then(
      (slot) => {
        // Granted, but withdrawn (dropSlotWaits, close()) before this ran: no connect for nobody.
        if (controller.signal.aborted) {
          slot.release()
          return notTaken(controller.signal.reason)
        }
        this.slotWaits.delete(record)
        record.slot = slot
        this.dial(record, controller, started)
      },
      (error) => notTaken(error),
    )
    const notTaken = (error: unknown) => {
      this.slotWaits.delete(record)
      record.abort = undefined
      if (error !== SLOT_NOT_NEEDED || this.state !== 'open') {
        return this.connectFailed(record, error, started)
      }
      // Nobody needs it any more: not a failed connect, and no backoff.
      record.openedFor = undefined
      this.move(record, 'closed')
      this.pump()
    }
  }

  private dial(record: ConnectionRecord<C>, controller: AbortController, started: number): void {
    const ms = this.opts.connectTimeout
    const timer = setTimeout(
      () => controller.abort(new ConnectError(`connect timed out after ${ms} ms`)),
      ms,
    )
    // A background probe made for nobody must not keep a process that wants to exit.
    if (this.failing !== undefined && this.waiters.size === 0 && this.opts.allowExitOnIdle) {
      timer.unref()
    }
    const opened = this.telemetry.opening(record, () => this.open(record, controller.signal))
    opened.then(
      (connection) => {
        clearTimeout(timer)
        record.abort = undefined
        this.established(record, connection, started)
      },
      (error) => {
        clearTimeout(timer)
        record.abort = undefined
        this.connectFailed(record, error, started)
      },
    )
  }

  /** Connects and runs `onConnect`, giving up when `signal` aborts; never leaves a connection open on failure. */
  private async open(record: ConnectionRecord<C>, signal: AbortSignal): Promise<C> {
    const connection = await abortable(this.dialect.connect(signal), signal, (late) =>
      this.closeQuietly(late),
    )
    try {
      this.dialect.watch?.(connection, (error) => this.died(record, error))
      // Before onConnect, as libpq checks before it hands the connection over: onConnect must
      // not run, nor write, on a server of the wrong role.
      const target = this.opts.targetSessionAttrs
      if (target !== 'any') await checkSessionRole(this.dialect, connection, target, signal)
      const onConnect = this.opts.onConnect
      if (onConnect !== undefined) {
        await abortable(Promise.resolve(onConnect(connection)), signal)
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

  /** Reads the server's limits on the first connection; a failure to read them is not fatal. */
  private async inspect(connection: C, signal: AbortSignal): Promise<void> {
    let info: ServerInfo
    try {
      info = await abortable(this.dialect.inspect!(connection, signal), signal)
    } catch (error) {
      if (signal.aborted) throw error
      this.telemetry.noServerLimits(error)
      return
    }
    if (this.serverInfo !== undefined) return
    this.serverInfo = info
    this.telemetry.server(info)
    this.clampToServer(info)
    this.fitToPooler(info)
    const most = this.opts.max + this.opts.maxOverflow
    if (info.maxConnections !== undefined && most > info.maxConnections) {
      this.telemetry.warning(
        'LIFEGUARD_POOL_EXCEEDS_SERVER',
        `pool "${this.label}" may open ${most} connections (max + maxOverflow) but the server allows ${info.maxConnections} (max_connections); lower max or maxOverflow`,
      )
    }
  }

  /**
   * A session reset behind a pooler in transaction mode would discard the state of whichever
   * server connection the pooler picked, and run `onConnect` there: the pool resets with
   * `'rollback'` instead. Behind a pooler whose mode is unknown, it only warns.
   */
  private fitToPooler(info: ServerInfo): void {
    const pooler = info.pooler
    if (pooler === undefined || this.resetMode !== 'session') return
    if (pooler.mode === 'transaction') {
      this.resetMode = 'rollback'
      this.telemetry.warning(
        'LIFEGUARD_RESET_BEHIND_POOLER',
        `pool "${this.label}" has resetOnRelease: 'session' but a pooler in transaction mode is in front (${pooler.evidence}): it resets with 'rollback' instead, since DISCARD ALL and onConnect would run on whichever server connection the pooler picked`,
      )
    } else if (pooler.mode === undefined) {
      this.telemetry.warning(
        'LIFEGUARD_RESET_BEHIND_POOLER',
        `pool "${this.label}" has resetOnRelease: 'session' and a connection pooler seems to be in front (${pooler.evidence}); if it pools per transaction, the session reset runs on whichever server connection it picked: tell the dialect its mode (postgres(url, { pooler: { mode } }))`,
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
    for (const change of fit.changes) this.telemetry.clamped(change)
    if (fit.maxLifetime !== this.maxLifetime) {
      this.maxLifetime = fit.maxLifetime
      const now = performance.now()
      for (const record of this.records) {
        if (record.state === 'connecting' || record.state === 'closing') continue
        // Already past its end of life (lent, waiting to be retired): counted once, not again.
        if (record.expired) continue
        if (record.expiresAt - record.createdAt > fit.maxLifetime)
          this.scheduleExpiry(record, record.createdAt, now)
      }
    }
    if (fit.idleTimeout !== this.idleTimeout) {
      this.idleTimeout = fit.idleTimeout
      this.housekeeper.update({ ...this.opts, idleTimeout: fit.idleTimeout })
    }
  }

  /** Sets a record's end of life: its lifetime, up to 10% shorter so connections made together are not replaced together. */
  private scheduleExpiry(record: ConnectionRecord<C>, createdAt: number, now: number): void {
    if (record.lifetimeTimer !== undefined) clearTimeout(record.lifetimeTimer)
    record.lifetimeTimer = undefined
    const lifetime = this.maxLifetime
    if (!Number.isFinite(lifetime)) return
    const others: number[] = []
    for (const other of this.records) {
      if (other === record || other.state === 'closing' || other.state === 'connecting') continue
      others.push(other.expiresAt)
    }
    record.expiresAt = spreadEndOfLife(createdAt + lifetime, lifetime * 0.1, others)
    record.lifetimeTimer = setTimeout(
      () => this.expired(record),
      Math.max(0, record.expiresAt - now),
    )
    record.lifetimeTimer.unref()
  }

  private established(record: ConnectionRecord<C>, connection: C, started: number): void {
    const now = performance.now()
    record.connection = connection
    record.createdAt = now
    record.lastUsedAt = now
    record.generation = ++this.generation
    if (this.failing !== undefined) this.endFailing(now)
    this.backoff.succeeded()
    this.counters.created++
    this.scheduleExpiry(record, now, now)
    this.telemetry.connected(record, now - started)
    // Under 'reject', the waiter it was opened for gets it if it still waits, as in pg-pool.
    const waiter = record.openedFor as Waiter<Lease<C>> | undefined
    record.openedFor = undefined
    if (
      waiter !== undefined &&
      this.state === 'open' &&
      this.condemned(record) === undefined &&
      this.waiters.remove(waiter)
    ) {
      this.serve(record, waiter)
    } else {
      this.makeAvailable(record)
    }
    // After a failure, connects went one at a time: now that one worked, open what is missing.
    this.pump()
  }

  private connectFailed(record: ConnectionRecord<C>, cause: unknown, started: number): void {
    const openedFor = record.openedFor as Waiter<Lease<C>> | undefined
    record.openedFor = undefined
    this.move(record, 'closed')
    if (this.state !== 'open') return this.checkDrained()
    const message =
      cause instanceof ConnectError
        ? ''
        : `could not connect (${this.dialect.name}): ${describeCause(cause)}`
    const error = cause instanceof ConnectError ? cause : new ConnectError(message, { cause })
    this.counters.connectErrors++
    // Under 'reject', the failure goes to the waiter the connect was opened for, if it still
    // waits. If it left (timed out, aborted) or was served meanwhile, nobody hears of it: as in
    // pg-pool, the failure of a caller's connect never reaches another caller, and the waiters
    // that nothing covers now get connects of their own (pump). A connect opened for no waiter
    // (the `min` refill) goes to a waiter when every connection on its way is owed to one ahead.
    const c = this.counts
    // A hedged (slow) ping still covers its waiter here: that waiter keeps waiting for its answer
    // (pumpOnce opens the hedge's connect for nobody).
    const owed = c.connecting + c.validating + c.resetting
    const waiter =
      openedFor !== undefined
        ? this.waiters.remove(openedFor)
          ? openedFor
          : undefined
        : this.rejectConnectErrors && this.waiters.size > owed
          ? this.waiters.shift()
          : undefined
    if (waiter !== undefined) {
      // The caller hears of it at once; the next connect starts now, with no backoff. The error
      // is still kept: a later acquire timeout names it as its cause.
      this.backoff.noted(error)
      this.telemetry.connectFailed(record, error, 1, 0)
      waiter.reject(error)
      this.waiterLeft()
      return this.pump()
    }
    const now = performance.now()
    const permanent = this.failFast && this.isPermanent(cause)
    const delay = this.backoff.failed(error, now, started, permanent)
    this.telemetry.connectFailed(record, error, this.backoff.failures, delay)
    if (this.failFast) this.judgeFailing(error, message || messageOf(error), permanent, now)
    this.pump()
  }

  /**
   * After a failed connect: whether the pool now fails fast. A permanent error does at once; a
   * transient one once connects have failed without a break for `failFastAfter` while the pool
   * holds no open connection (a server that refuses more connections while ours serve is not
   * down). Otherwise the pool stops failing fast, and callers wait for its retries again.
   */
  private judgeFailing(
    error: ConnectError,
    message: string,
    permanent: boolean,
    now: number,
  ): void {
    const c = this.counts
    const open = c.idle + c.leased + c.validating + c.resetting
    let kind: Failing['kind'] | undefined
    if (permanent) kind = 'permanent'
    else if (open === 0 && now - this.backoff.failingSince >= this.opts.failFastAfter) {
      kind = 'unavailable'
    }
    // The hint is the error's own: each caller's copy gets its own again.
    const bare = message.replace(/ \[LIFEGUARD_[A-Z_]+, run: [^\]]*\]$/, '')
    const was = this.failing
    this.failing = kind === undefined ? undefined : { kind, error, message: bare }
    if (kind === undefined) {
      if (was !== undefined) {
        this.failing = was
        this.endFailing(now)
      }
    } else if (was === undefined) {
      this.failingSince = now
      this.demandAt = now
      this.telemetry.unavailable(kind === 'permanent' ? 'permanent' : 'down', error)
    }
  }

  /** The pool stops failing fast: the `available` event. */
  private endFailing(now: number): void {
    this.failing = undefined
    this.telemetry.available(now - this.failingSince)
  }

  /** Whether the dialect calls a connect error permanent; a dialect that throws here says no. */
  private isPermanent(cause: unknown): boolean {
    // A server with the wrong role may be promoted, or the DNS name moved, at any moment.
    if (cause instanceof WrongRoleError) return false
    try {
      return this.dialect.classifyConnectError?.(cause) === 'permanent'
    } catch {
      return false
    }
  }

  // Taking connections out of service.

  /** Every connection established so far is now stale (SQLAlchemy's invalidation rule). */
  private invalidateOlder(): void {
    this.staleBelow = this.generation + 1
  }

  /**
   * After a server-level read-only refusal: retires the older connections, at most once per
   * {@link RefusalWindow} (a server that stays read-only must not have the pool replaced at each
   * refusal); in between, the refused connection goes alone.
   */
  private flushOlder(): void {
    if (this.refusals.refused(performance.now())) this.invalidateOlder()
  }

  /**
   * Whether a record's error may still retire the others: it was established, and nothing
   * condemned it yet (stale, dead, refused). A late error on a condemned connection says nothing
   * of the connections made since, which may be on the new server.
   */
  private fresh(record: ConnectionRecord<C>): boolean {
    if (record.dead || record.readOnly !== undefined) return false
    // A connection still being opened has no generation yet: nothing condemned it.
    return record.state === 'connecting' || record.generation >= this.staleBelow
  }

  private died(record: ConnectionRecord<C>, error: unknown): void {
    const refused = error !== undefined && this.dialectReadOnly(error)
    // A pool meant for a replica expects refused writes: ordinary statement errors.
    if (refused && this.opts.targetSessionAttrs === 'read-only') return
    const scope = refused ? this.scopeOf(error) : undefined
    if (record.state === 'closing' || record.state === 'closed') {
      // PostgreSQL judges a refusal at the ReadyForQuery after it, which may arrive after the
      // holder gave the connection back for that refusal (giveBack kept it in `readOnly`).
      if (scope === 'server' && record.readOnly === error && !record.dead) {
        if (record.generation >= this.staleBelow) this.flushOlder()
      }
      return
    }
    if (this.fresh(record)) {
      if (!refused) this.invalidateOlder()
      // A write refused while connecting is onConnect's: that connection goes alone (the role
      // check, if any, came first); the established ones learn of a demotion from their own.
      else if (scope === 'server' && record.state !== 'connecting') this.flushOlder()
    }
    if (record.state === 'idle') {
      this.retire(record, refused ? 'read-only' : 'disconnect', error)
      this.pump()
    } else {
      // Leased, resetting, validating or connecting: it is dropped when that ends.
      record.dead = true
      if (refused && record.readOnly === undefined) record.readOnly = Object(error)
    }
  }

  private expired(record: ConnectionRecord<C>): void {
    record.lifetimeTimer = undefined
    if (record.expired) return
    record.expired = true
    if (record.state !== 'idle') {
      // A leased connection is retired when it comes back (closeRecord uncounts it).
      this.expiredOut++
      return
    }
    this.retire(record, 'lifetime')
    this.pump()
  }

  private retire(
    record: ConnectionRecord<C>,
    reason: InvalidateReason,
    error?: unknown,
    teardown = false,
  ): void {
    this.counters.invalidated++
    // Out of the idle list before anyone hears of it: an 'invalidate' listener that calls
    // acquire() must not be lent the connection being retired.
    this.closeRecord(record, teardown)
    this.telemetry.invalidated(record, reason, error)
  }

  /**
   * Closes a record's connection; the record counts as `closing` until the dialect is done.
   * `teardown` skips the goodbye: the dialect's signal is aborted from the start.
   */
  private closeRecord(record: ConnectionRecord<C>, teardown = false): void {
    if (record.state === 'closing' || record.state === 'closed') return
    if (record.state === 'connecting' && record.connection === undefined) {
      // Still opening: abort it; connectFailed removes the record.
      record.abort?.abort(this.closedError())
      return
    }
    if (record.expired && record.state !== 'idle') this.expiredOut--
    if (record.lifetimeTimer !== undefined) clearTimeout(record.lifetimeTimer)
    if (record.leakTimer !== undefined) clearTimeout(record.leakTimer)
    record.lifetimeTimer = undefined
    record.leakTimer = undefined
    if (record.lease !== undefined) {
      // Taken back from its holder (destroy(), or close() timing out): it never comes back.
      revokeLease(record.lease as Lease<C>)
      record.lease = undefined
      this.counters.revoked++
    }
    // Its sharing callers' leases end with it, as an exclusive lease's does.
    if (record.sharers !== undefined) this.unshare(record)
    this.move(record, 'closing')
    const done = () => {
      this.move(record, 'closed')
      this.counters.closed++
      this.telemetry.closed(record)
      this.pump()
      this.checkDrained()
    }
    withTimeout(
      (signal) => {
        if (!teardown) return this.dialect.close(record.connection as C, signal)
        const now = new AbortController()
        now.abort(new CloseTimeoutError('closed without a goodbye: the connection is silent'))
        return this.dialect.close(record.connection as C, now.signal)
      },
      this.opts.validationTimeout,
      () => new CloseTimeoutError('close timed out'),
    ).then(done, done)
  }

  private closeQuietly(connection: C): void {
    withTimeout(
      (signal) => this.dialect.close(connection, signal),
      this.opts.validationTimeout,
      () => new CloseTimeoutError('close timed out'),
    ).catch(() => {})
  }

  /**
   * The budget asks for slots back: idle connections close now, as many as it asks for (closing
   * ones count as given back, in every pool sharing the budget). `min` does not hold them: a
   * shared budget may keep a pool below `min`.
   */
  private shed(): void {
    if (this.state !== 'open') return
    if (this.slotWaits.size > 0) this.dropSlotWaits()
    while (this.budget!.surplus() > 0) {
      const record = this.idle.tail
      if (record === undefined) break
      this.closeRecord(record)
    }
    if (this.budget!.surplus() === 0) this.pump()
  }

  // Waiters.

  /** A waiter gave up: once none is left, a pending connect retry no longer holds the process. */
  private waiterLeft(): void {
    if (this.waiters.size === 0) this.backoff.release()
    if (this.slotWaits.size > 0) this.dropSlotWaits()
  }

  /**
   * Withdraws the newest slot waits that no waiter (nor `min`) needs any more: served by
   * connections that came back, or gone. A ticket left in the budget's queue for nobody would
   * make other processes give back connections for nothing.
   */
  private dropSlotWaits(): void {
    const c = this.counts
    const other = c.connecting - this.slotWaits.size + c.validating + c.resetting - this.slow.size
    // Above its share the pool opens nothing: every slot wait is one too many.
    const needed =
      this.budget!.surplus() > 0
        ? 0
        : Math.max(this.waiters.size - other, this.fillTo - c.idle - other, 0)
    let excess = this.slotWaits.size - needed
    if (excess <= 0) return
    const newest = [...this.slotWaits].reverse()
    for (const record of newest) {
      if (excess-- <= 0) break
      this.slotWaits.delete(record)
      record.abort?.abort(SLOT_NOT_NEEDED)
    }
  }

  private timedOut(waiter: Waiter<Lease<C>>): void {
    this.counters.timeouts++
    // A slot is the hold-up only while every connect waits for one and none failed since: a
    // connect dialing a silent or refusing database is the cause then, whatever waits for a slot.
    if (
      this.slotWaits.size > 0 &&
      this.slotWaits.size === this.counts.connecting &&
      this.backoff.lastError === undefined
    ) {
      const blocked = this.budget!.blocked()
      return waiter.reject(
        new BudgetTimeoutError(
          `Timed out after ${waiter.timeout} ms waiting for a connection from pool "${this.label}": ${blocked.message} ${this.describeCounts()}`,
          blocked.cause === undefined ? undefined : { cause: blocked.cause },
        ),
      )
    }
    waiter.reject(
      new AcquireTimeoutError(
        `Timed out after ${waiter.timeout} ms waiting for a connection from pool "${this.label}" ${this.describeCounts()}`,
        this.backoff.lastError === undefined ? undefined : { cause: this.backoff.lastError },
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
    poolNames.release(this, this.label)
  }

  private forceClose(): void {
    for (const record of [...this.records]) this.closeRecord(record)
  }

  private stopBackground(): void {
    this.unsubscribeBudget?.()
    this.unsubscribeBudget = undefined
    this.housekeeper.stop()
    this.backoff.stop()
    this.pings.stop()
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

  /**
   * Why a destroyed connection goes: a disconnect or a read-only error (its own, or the one the
   * dialect reported while it was lent) retires the older connections too; anything else is the
   * holder's `destroy()`.
   */
  private destroyReason(record: ConnectionRecord<C>, reason: unknown): InvalidateReason {
    if (reason !== undefined) {
      if (this.isDisconnect(reason)) return 'disconnect'
      if (this.readOnlyScope(reason) !== undefined) return 'read-only'
    }
    return record.dead && record.readOnly !== undefined ? 'read-only' : 'destroyed'
  }

  /**
   * Whether `error` is a write refused as read-only that condemns its connection, and whose:
   * `'server'` retires the older ones too. Never with `targetSessionAttrs: 'read-only'`, where a
   * refused write is an ordinary statement error.
   */
  private readOnlyScope(error: unknown): ReadOnlyScope | undefined {
    if (this.opts.targetSessionAttrs === 'read-only' || !this.dialectReadOnly(error))
      return undefined
    return this.scopeOf(error)
  }

  /** Whether the dialect calls `error` a write refused as read-only; a dialect that throws here says no. */
  private dialectReadOnly(error: unknown): boolean {
    try {
      return this.dialect.isReadOnly?.(error) === true
    } catch {
      return false
    }
  }

  /** The scope of a refusal the dialect recognised: the server's unless it says otherwise (or throws). */
  private scopeOf(error: unknown): ReadOnlyScope {
    try {
      return this.dialect.readOnlyScope?.(error) === 'session' ? 'session' : 'server'
    } catch {
      return 'server'
    }
  }

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
    this.telemetry.leaked(record, performance.now() - record.leasedAt, stack)
  }
}
