import { type ConnectionBudget, isConnectionBudget } from './connection-budget.js'
import type { Dialect, ResetMode } from './dialect.js'
import { InvalidOptionError } from './errors.js'
import { poolNames } from './pool-names.js'

/** The longest delay a Node.js timer honours; longer ones fire at once. */
export const MAX_TIMER_MS = 2_147_483_647

/** The options of {@link createPool}. Every option but `dialect` has a default. */
export interface PoolOptions<C> {
  /** The driver the pool opens connections with. */
  dialect: Dialect<C>
  /**
   * Persistent connections: the pool keeps up to this many open (SQLAlchemy's `pool_size`).
   * @defaultValue 10
   */
  max?: number
  /**
   * Extra connections opened under load beyond `max`; each is closed when it is released and
   * nobody is waiting (SQLAlchemy's `max_overflow`).
   * @defaultValue 0
   */
  maxOverflow?: number
  /**
   * How many statements one connection may carry at once for the callers that ask to share
   * (`acquire({ shared: true })`, which the `lifeguard/pg` pool's `query()` does for an autocommit
   * statement): once every connection is busy and the pool is full, such a caller is lent the
   * busy connection with the fewest statements in flight, below this many, and its statement is
   * pipelined behind theirs. Only a dialect that can pipeline ({@link Dialect.pipeline}: the
   * PostgreSQL one, on pg 8.23 or later) does; elsewhere, and with `1`, every caller gets a
   * connection of its own. See docs/performance.md for how the default was chosen.
   * @defaultValue 100
   */
  maxPipeline?: number
  /**
   * Idle connections kept open and refilled in the background (HikariCP's `minimumIdle`),
   * never more than `max` in all; `minMode: 'floor'` makes it pg-pool's floor instead.
   * @defaultValue 0
   */
  min?: number
  /**
   * What `min` means. `'fill'`: the pool opens connections to keep `min` idle, from the start
   * and whenever one is lent or closed (HikariCP's `minimumIdle`). `'floor'`: the pool never opens
   * a connection for `min`; `min` only stops the idle timeout from closing a connection while the
   * pool holds `min` connections or fewer in all, lent ones included (pg-pool's `min`).
   * @defaultValue 'fill'
   */
  minMode?: 'fill' | 'floor'
  /**
   * What a failed connect (the driver's error, a failing `onConnect`, a connect timeout) does to
   * the callers waiting for it. `'retry'`: it is retried with backoff while they wait, up to
   * `acquireTimeout`. `'reject'`: each connect is opened for one waiting caller, which is
   * rejected at once with a `ConnectError` whose `cause` is the driver's error, as pg-pool and
   * mysql2 do; the other callers keep waiting and get connects of their own. A failure whose
   * caller has already left (timed out, aborted) reaches nobody, never a caller who came later.
   * @defaultValue 'retry'
   */
  connectErrors?: 'retry' | 'reject'
  /**
   * Whether the pool fails fast when it cannot connect, instead of letting callers queue for
   * `acquireTimeout`. On a permanent connect error (the dialect's `classifyConnectError`: a wrong
   * password, an unknown database, TLS refused) every caller that needs a new connection is
   * rejected at once with that `ConnectError`. When connects have failed without a break for
   * `failFastAfter` ms and the pool holds no open connection, callers that no idle connection can
   * serve are rejected at once with `UnavailableError`. Meanwhile the pool probes the server, one
   * connect at a time with capped, jittered backoff; the first success ends it. `false` restores
   * waiting until `acquireTimeout`. It applies under `connectErrors: 'retry'` only: under
   * `'reject'` each failed connect already rejects the caller it was opened for.
   * @defaultValue true
   */
  failFast?: boolean
  /**
   * How long connects must have failed without a break, in ms, before the pool (holding no open
   * connection) is unavailable and `acquire()` rejects at once with `UnavailableError`. Long
   * enough that a server restart or a brief network blip only delays callers; short against
   * `acquireTimeout`. `0` fails fast from the first failed connect (as PgBouncer does during its
   * `server_login_retry`); `Infinity` fails fast on permanent errors only. See docs/pool.md.
   * @defaultValue 5000
   */
  failFastAfter?: number
  /**
   * Which servers a new connection may be lent from, as libpq's `target_session_attrs`: `'any'`,
   * or `'read-write'` (a server whose transactions are read-write by default: not a hot standby,
   * not `default_transaction_read_only`, not MySQL's `read_only` / `innodb_read_only`), or
   * `'read-only'` (the opposite). Before a new connection is lent, and before `onConnect`, the
   * dialect reads its server's role (`Dialect.role`: PostgreSQL 14+ reports it at connect, so it
   * costs no round trip; older servers and MySQL take one query). A connection on the wrong server
   * is closed and the connect counts as failed, transiently (`WrongRoleError` as its cause):
   * retried with backoff, as a refused one is, until a failover's DNS change leads to the new
   * writer. With `'read-only'`, a write the server refuses is an ordinary statement error: its
   * connection stays, and nothing older is retired.
   * @defaultValue 'any'
   */
  targetSessionAttrs?: TargetSessionAttrs
  /**
   * How long `acquire()` waits, in ms, before it rejects with `AcquireTimeoutError`. `Infinity`
   * waits for ever (pg-pool's `connectionTimeoutMillis: 0`); rarely wise, since a pool that cannot
   * connect then hangs its callers.
   * @defaultValue 30000
   */
  acquireTimeout?: number
  /**
   * How many callers may wait at once; one more rejects at once with `TooManyWaitersError`.
   * @defaultValue Infinity
   */
  maxWaiting?: number
  /**
   * Bounds opening a connection (DNS, TCP, TLS, the handshake and `onConnect`), in ms, and
   * nothing else: pings, resets and closes have `validationTimeout`.
   * @defaultValue 10000
   */
  connectTimeout?: number
  /**
   * Bounds each round trip the pool makes on an open connection, in ms: a ping (the pre-ping on
   * checkout, a keepalive ping), a reset on release, a close. A connection that misses it is
   * destroyed, never lent. A borrower does not wait for it: a pre-ping that is slower than the
   * pings the pool has seen is hedged (the borrower gets the next idle connection or a new one),
   * so this only decides when a silent connection is given up and its place freed (HikariCP's
   * `validationTimeout`, 5 s there too).
   * @defaultValue 5000
   */
  validationTimeout?: number
  /**
   * A connection's lifetime, in ms; each is shortened by a random jitter of up to 10%, so that
   * connections are not all replaced at once. A leased connection is retired when released.
   * `0` or `Infinity` turns recycling off.
   * @defaultValue 1800000
   */
  maxLifetime?: number
  /**
   * Idle connections beyond `min` are closed after this many ms idle. `0` or `Infinity` turns
   * it off.
   * @defaultValue 600000
   */
  idleTimeout?: number
  /**
   * Ping a connection that has been idle at least this many ms before lending it. `true` means
   * 500 ms, `0` pings on every checkout, `false` never pings.
   * @defaultValue true
   */
  prePing?: boolean | number
  /**
   * Ping idle connections that have not been used for this many ms, in the background. `0`
   * turns it off.
   * @defaultValue 0
   */
  keepaliveInterval?: number
  /**
   * How a released connection is cleaned before it is lent again: `'rollback'` ends an open or
   * failed transaction, `'session'` also discards all session state, `false` does nothing.
   * @defaultValue 'rollback'
   */
  resetOnRelease?: ResetMode | false
  /** Session setup, run after each connect and after each `'session'` reset. */
  onConnect?: ((connection: C) => Promise<void> | void) | undefined
  /**
   * A cap on connections shared with other pools and processes, such as `redisBudget()` from
   * `lifeguard/redis`: the pool takes a slot before it opens a connection and gives it back when
   * that connection closes (never per `acquire()`). See docs/scaling.md.
   */
  budget?: ConnectionBudget | undefined
  /**
   * Which idle connection to lend: `'lifo'`, the most recently used (keeps the set of busy
   * connections small, so idle ones time out), or `'fifo'`, the least recently used.
   * @defaultValue 'lifo'
   */
  order?: 'lifo' | 'fifo'
  /**
   * After a lease has been held this many ms, the pool emits `'leak'` with the stack of the
   * `acquire()` call. `0` turns it off.
   * @defaultValue 0
   */
  leakDetectionThreshold?: number
  /**
   * Lets the process exit while the pool is idle (pg-pool's `allowExitOnIdle`): idle connections'
   * sockets and the pool's own timers do not keep the event loop alive, so a script that never
   * calls `close()` ends after its last query. A lease, a waiter or a connect in flight still
   * keeps it alive. `false` keeps idle connections' sockets referenced: the process then lives
   * until `idleTimeout` closes them (or for ever with `min` connections), as pg-pool does by default.
   * @defaultValue true
   */
  allowExitOnIdle?: boolean
  /**
   * The pool's name, for logs, errors, stats, the diagnostics channels and metrics. By default
   * the OpenTelemetry convention's `address:port/database` of the dialect's target (never a
   * credential; `pool-N` when the dialect names no target), with `#2`, `#3`, … appended while
   * another open pool has that name.
   */
  name?: string | undefined
}

/**
 * The options after validation, with every default filled in, under the names a caller passes
 * them: each value, passed back to {@link createPool}, means the same.
 */
export interface ResolvedPoolOptions<C> {
  /** The driver the pool opens connections with. */
  readonly dialect: Dialect<C>
  /** See {@link PoolOptions.max}. */
  readonly max: number
  /** See {@link PoolOptions.maxOverflow}. */
  readonly maxOverflow: number
  /** See {@link PoolOptions.maxPipeline}. */
  readonly maxPipeline: number
  /** See {@link PoolOptions.min}. */
  readonly min: number
  /** See {@link PoolOptions.minMode}. */
  readonly minMode: 'fill' | 'floor'
  /** See {@link PoolOptions.connectErrors}. */
  readonly connectErrors: 'retry' | 'reject'
  /** See {@link PoolOptions.failFast}. */
  readonly failFast: boolean
  /** See {@link PoolOptions.failFastAfter}. */
  readonly failFastAfter: number
  /** See {@link PoolOptions.targetSessionAttrs}. */
  readonly targetSessionAttrs: TargetSessionAttrs
  /** See {@link PoolOptions.acquireTimeout}. */
  readonly acquireTimeout: number
  /** See {@link PoolOptions.maxWaiting}. */
  readonly maxWaiting: number
  /** See {@link PoolOptions.connectTimeout}. */
  readonly connectTimeout: number
  /** See {@link PoolOptions.validationTimeout}. */
  readonly validationTimeout: number
  /** `Infinity` when recycling is off. */
  readonly maxLifetime: number
  /** `Infinity` when idle reaping is off. */
  readonly idleTimeout: number
  /** The idle time, in ms, that triggers a ping on checkout (`true` reads 500); `false` when off. */
  readonly prePing: number | false
  /** `0` when off. */
  readonly keepaliveInterval: number
  /** See {@link PoolOptions.resetOnRelease}. */
  readonly resetOnRelease: ResetMode | false
  /** See {@link PoolOptions.onConnect}. */
  readonly onConnect: ((connection: C) => Promise<void> | void) | undefined
  /** See {@link PoolOptions.budget}. */
  readonly budget: ConnectionBudget | undefined
  /** See {@link PoolOptions.order}. */
  readonly order: 'lifo' | 'fifo'
  /** See {@link PoolOptions.leakDetectionThreshold}; `0` when off. */
  readonly leakDetectionThreshold: number
  /** See {@link PoolOptions.allowExitOnIdle}. */
  readonly allowExitOnIdle: boolean
  /**
   * The `name` option, or the default (the dialect's target, `host:port/database`, or `pool-N`),
   * made unique among the open pools, as `stats().name` shows it.
   */
  readonly name: string
}

/** Which servers a pool lends connections from: see {@link PoolOptions.targetSessionAttrs}. */
export type TargetSessionAttrs = 'any' | 'read-write' | 'read-only'

/** The default idle time after which a connection is pinged on checkout (HikariCP's 500 ms). */
export const DEFAULT_PRE_PING_MS = 500

/**
 * The default `failFastAfter`: half a dozen connect probes past a server restart (the backoff
 * reaches its 500 ms cap within a second), a sixth of the default `acquireTimeout`. See docs/pool.md.
 */
export const DEFAULT_FAIL_FAST_AFTER_MS = 5_000

/**
 * The default `validationTimeout`: HikariCP's. A healthy server answers a ping in well under a
 * millisecond on a local network and in tens of ms across regions; 5 s leaves room for a server
 * busy with a checkpoint or a lock storm without mistaking it for a dead link. Borrowers do not
 * wait for it (the pre-ping is hedged), so it need not be short.
 */
export const DEFAULT_VALIDATION_TIMEOUT_MS = 5_000

/** How many statements a connection carries at once for shared callers, by default: see docs/performance.md. */
export const DEFAULT_MAX_PIPELINE = 100

/** Every key `createPool()` takes; any other is refused. The fuzz tests draw from it too. */
export const POOL_OPTION_KEYS = [
  'dialect',
  'max',
  'maxOverflow',
  'maxPipeline',
  'min',
  'minMode',
  'connectErrors',
  'failFast',
  'failFastAfter',
  'targetSessionAttrs',
  'acquireTimeout',
  'maxWaiting',
  'connectTimeout',
  'validationTimeout',
  'maxLifetime',
  'idleTimeout',
  'prePing',
  'keepaliveInterval',
  'resetOnRelease',
  'onConnect',
  'budget',
  'order',
  'leakDetectionThreshold',
  'allowExitOnIdle',
  'name',
] as const

/** How much of a string an error message shows. */
const SHOWN_CHARS = 60

/**
 * Whether `new value()` is allowed (an arrow function or a method is not), without calling it:
 * for options that take a class, checked where they are given rather than where first used.
 */
export function isConstructor(value: object): boolean {
  try {
    Reflect.construct(Object, [], value as new () => object)
    return true
  } catch {
    return false
  }
}

/** Shows a value in an error message without dumping objects or long strings. */
export function describe(value: unknown): string {
  if (typeof value === 'string') {
    return value.length > SHOWN_CHARS
      ? `${JSON.stringify(value.slice(0, SHOWN_CHARS))}… (${value.length} characters)`
      : JSON.stringify(value)
  }
  if (typeof value === 'function') return 'a function'
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'object') return 'an object'
  return String(value)
}

function fail(option: string, value: unknown, allowed: string): never {
  throw new InvalidOptionError(
    option,
    `Invalid option ${option}: ${describe(value)}; expected ${allowed}`,
  )
}

/** The edit distance between two names, for "did you mean" suggestions. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!
      const cost = a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + cost)
      diagonal = above
    }
  }
  return row[b.length]!
}

/** A list of known keys this short is shown in full even when a close name is suggested. */
const SHORT_LIST = 5

/** Rejects keys that are not in `known`, suggesting the nearest known name. */
export function rejectUnknownKeys(
  options: object,
  known: readonly string[],
  where = 'createPool',
): void {
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue
    let best: string | undefined
    let bestDistance = Number.POSITIVE_INFINITY
    for (const candidate of known) {
      const d = distance(key, candidate)
      if (d < bestDistance) {
        best = candidate
        bestDistance = d
      }
    }
    const close = best !== undefined && bestDistance <= Math.max(2, Math.floor(key.length / 3))
    const list = `known options are ${known.join(', ')}`
    // A short list is always worth showing; a long one only when no name is close.
    const hint = close
      ? `; did you mean ${best}?${known.length <= SHORT_LIST ? ` (${list})` : ''}`
      : `; ${list}`
    throw new InvalidOptionError(key, `Unknown option ${key} passed to ${where}${hint}`)
  }
}

function integer(option: string, value: unknown, fallback: number, least: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < least) {
    fail(option, value, `an integer ≥ ${least}`)
  }
  return value
}

/** A duration in ms: a finite number in [least, MAX_TIMER_MS], or also `Infinity` when `unbounded`. */
function duration(
  option: string,
  value: unknown,
  fallback: number,
  least: number,
  unbounded = false,
): number {
  if (value === undefined) return fallback
  if (unbounded && value === Number.POSITIVE_INFINITY) return value
  if (
    typeof value !== 'number' ||
    !Number.isFinite(value) ||
    value < least ||
    value > MAX_TIMER_MS
  ) {
    const range = `a number of milliseconds from ${least} to ${MAX_TIMER_MS}`
    fail(option, value, unbounded ? `${range}, or Infinity` : range)
  }
  return value
}

/** A duration where `0` and `Infinity` mean off; returns `Infinity` for off. */
function optionalDuration(option: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  if (value === 0 || value === Number.POSITIVE_INFINITY) return Number.POSITIVE_INFINITY
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > MAX_TIMER_MS) {
    fail(option, value, `a number of milliseconds up to ${MAX_TIMER_MS}, or 0 or Infinity for off`)
  }
  return value
}

function oneOf<T>(option: string, value: unknown, fallback: T, allowed: readonly T[]): T {
  if (value === undefined) return fallback
  if (!allowed.includes(value as T)) {
    fail(option, value, `one of ${allowed.map((v) => describe(v)).join(', ')}`)
  }
  return value as T
}

/**
 * Validates pool options and fills in the defaults. Throws `InvalidOptionError`, naming the
 * option, the value and what is allowed; unknown keys are rejected with the nearest valid name.
 */
export function resolvePoolOptions<C>(options: PoolOptions<C>): ResolvedPoolOptions<C> {
  if (typeof options !== 'object' || options === null) {
    fail('options', options, 'an object with at least a dialect')
  }
  rejectUnknownKeys(options, POOL_OPTION_KEYS)
  const dialect = options.dialect as Partial<Dialect<C>> | undefined
  if (
    typeof dialect !== 'object' ||
    dialect === null ||
    typeof dialect.connect !== 'function' ||
    typeof dialect.close !== 'function'
  ) {
    fail('dialect', dialect, 'a Dialect: an object with connect() and close() methods')
  }

  const max = integer('max', options.max, 10, 1)
  const maxOverflow = integer('maxOverflow', options.maxOverflow, 0, 0)
  const maxPipeline = integer('maxPipeline', options.maxPipeline, DEFAULT_MAX_PIPELINE, 1)
  const min = integer('min', options.min, 0, 0)
  if (min > max) fail('min', min, `an integer from 0 to max (${max})`)

  let maxWaiting = Number.POSITIVE_INFINITY
  if (options.maxWaiting !== undefined && options.maxWaiting !== Number.POSITIVE_INFINITY) {
    maxWaiting = integer('maxWaiting', options.maxWaiting, 0, 0)
  }

  let prePing: number | false = DEFAULT_PRE_PING_MS
  const given = options.prePing
  if (given === false) prePing = false
  else if (given === true || given === undefined) prePing = DEFAULT_PRE_PING_MS
  else if (typeof given === 'number' && Number.isFinite(given) && given >= 0) prePing = given
  else fail('prePing', given, 'true, false, or a number of milliseconds ≥ 0')

  const keepalive = optionalDuration('keepaliveInterval', options.keepaliveInterval, 0)
  const onConnect = options.onConnect
  if (onConnect !== undefined && typeof onConnect !== 'function') {
    fail('onConnect', onConnect, 'a function (connection) => Promise<void>')
  }
  const budget = options.budget
  if (budget !== undefined && !isConnectionBudget(budget)) {
    fail(
      'budget',
      budget,
      'a connection budget, such as redisBudget() from lifeguard/redis: an object with take(), surplus(), blocked() and subscribe()',
    )
  }
  const name = options.name
  if (name !== undefined && typeof name !== 'string') fail('name', name, 'a string')
  const failFast = options.failFast ?? true
  if (typeof failFast !== 'boolean') fail('failFast', failFast, 'true or false')
  const targetSessionAttrs = oneOf('targetSessionAttrs', options.targetSessionAttrs, 'any', [
    'any',
    'read-write',
    'read-only',
  ] as const)
  if (targetSessionAttrs !== 'any' && typeof dialect.role !== 'function') {
    throw new InvalidOptionError(
      'targetSessionAttrs',
      `Invalid option targetSessionAttrs: ${describe(targetSessionAttrs)}; the ${String(dialect.name)} dialect cannot read a server's role (it has no role()), so only "any" is allowed`,
    )
  }
  const allowExitOnIdle = options.allowExitOnIdle ?? true
  if (typeof allowExitOnIdle !== 'boolean')
    fail('allowExitOnIdle', allowExitOnIdle, 'true or false')

  return {
    dialect: dialect as Dialect<C>,
    max,
    maxOverflow,
    maxPipeline,
    min,
    minMode: oneOf('minMode', options.minMode, 'fill', ['fill', 'floor'] as const),
    connectErrors: oneOf('connectErrors', options.connectErrors, 'retry', [
      'retry',
      'reject',
    ] as const),
    failFast,
    failFastAfter: duration(
      'failFastAfter',
      options.failFastAfter,
      DEFAULT_FAIL_FAST_AFTER_MS,
      0,
      true,
    ),
    targetSessionAttrs,
    acquireTimeout: duration('acquireTimeout', options.acquireTimeout, 30_000, 1, true),
    maxWaiting,
    connectTimeout: duration('connectTimeout', options.connectTimeout, 10_000, 1),
    validationTimeout: duration(
      'validationTimeout',
      options.validationTimeout,
      DEFAULT_VALIDATION_TIMEOUT_MS,
      1,
    ),
    maxLifetime: optionalDuration('maxLifetime', options.maxLifetime, 1_800_000),
    idleTimeout: optionalDuration('idleTimeout', options.idleTimeout, 600_000),
    prePing,
    keepaliveInterval: keepalive === Number.POSITIVE_INFINITY ? 0 : keepalive,
    resetOnRelease: oneOf('resetOnRelease', options.resetOnRelease, 'rollback', [
      'rollback',
      'session',
      false,
    ] as const),
    onConnect,
    budget,
    order: oneOf('order', options.order, 'lifo', ['lifo', 'fifo'] as const),
    leakDetectionThreshold: integer('leakDetectionThreshold', options.leakDetectionThreshold, 0, 0),
    allowExitOnIdle,
    name: name ?? poolNames.defaultFor(targetOf(dialect)),
  }
}

/**
 * The dialect's `target`, or `undefined` when it cannot be read: a getter over a class's private
 * fields throws on a wrapper made with `Object.create(dialect)`, and a name is not worth failing
 * the pool's construction for (it falls back to `pool-N`).
 */
function targetOf<C>(dialect: Partial<Dialect<C>>): Dialect<C>['target'] {
  try {
    return dialect.target
  } catch {
    return undefined
  }
}

/** Validates the timeout of a single `acquire()` or `close()` call. */
export function resolveAcquireTimeout(value: unknown, fallback: number): number {
  return duration('timeout', value, fallback, 0, true)
}

const ACQUIRE_KEYS = ['signal', 'timeout', 'shared'] as const
const CLOSE_KEYS = ['timeout'] as const

/** Whether `value` is an `AbortSignal`, judged by its shape so that a signal from another realm passes. */
function isAbortSignal(value: unknown): value is AbortSignal {
  if (typeof value !== 'object' || value === null) return false
  const signal = value as Partial<AbortSignal>
  return (
    typeof signal.aborted === 'boolean' &&
    typeof signal.addEventListener === 'function' &&
    typeof signal.removeEventListener === 'function'
  )
}

/** The options of one `acquire()` or `use()` call. */
export interface AcquireOptions {
  /**
   * Aborts the wait; the promise rejects with the signal's reason. An `AbortSignal`
   * (`controller.signal`), not the `AbortController`.
   */
  signal?: AbortSignal | undefined
  /** Overrides `acquireTimeout` for this call, in ms. */
  timeout?: number | undefined
  /**
   * The caller runs one autocommit statement and may share its connection with other such
   * callers: when every connection is busy and the pool can open no more, it is lent the busy
   * connection with the fewest statements in flight (below `maxPipeline`), whose driver then
   * pipelines its statement behind theirs. Idle connections are lent first, and the pool grows to
   * its limit before it shares. Never pass it for a transaction, a cursor, `COPY`, `LISTEN` or
   * anything that changes the session: those need a connection of their own. Inside a request
   * scope, and with a dialect that cannot pipeline, it changes nothing. `'last'` is for a
   * statement known to run long: it may join a shared connection, but nobody joins behind it
   * until it is done, since whatever did would wait for it (head-of-line blocking).
   * @defaultValue false
   */
  shared?: boolean | 'last' | undefined
}

/** The options of `close()`. */
export interface CloseOptions {
  /**
   * How long to wait for leased connections to come back, in ms; then they are destroyed.
   * @defaultValue 30000
   */
  timeout?: number | undefined
}

/** Rejects anything but an object (or `undefined`) as the options of `where`. */
function checkObject(options: unknown, where: string): asserts options is object | undefined {
  if (options === undefined) return
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    fail('options', options, `an object (the options of ${where}) or undefined`)
  }
}

/**
 * Validates the options of one `acquire()` or `use()` call, before anything is queued: an
 * object with an optional `signal` (an `AbortSignal`), `timeout` and `shared`. Unknown keys are rejected.
 * Allocates nothing for valid options, since it runs on every such call.
 */
export function checkAcquireOptions(options: unknown, where = 'acquire'): void {
  if (options === undefined) return
  checkObject(options, where)
  for (const key in options) {
    if (key !== 'signal' && key !== 'timeout' && key !== 'shared') {
      rejectUnknownKeys(options, ACQUIRE_KEYS, where)
    }
  }
  const { signal, timeout, shared } = options as {
    signal?: unknown
    timeout?: unknown
    shared?: unknown
  }
  if (shared !== undefined && typeof shared !== 'boolean' && shared !== 'last') {
    fail('shared', shared, "true, false or 'last'")
  }
  if (signal !== undefined && signal !== null && !isAbortSignal(signal)) {
    const controller =
      typeof signal === 'object' && isAbortSignal((signal as { signal?: unknown }).signal)
    fail(
      'signal',
      signal,
      controller
        ? 'an AbortSignal: pass controller.signal, not the AbortController'
        : 'an AbortSignal or undefined',
    )
  }
  if (timeout !== undefined) resolveAcquireTimeout(timeout, 0)
}

/** Validates the options of `close()` and returns its timeout, `fallback` when none is given. */
export function resolveCloseTimeout(options: unknown, fallback: number): number {
  if (options === undefined) return fallback
  checkObject(options, 'close')
  rejectUnknownKeys(options, CLOSE_KEYS, 'close')
  return resolveAcquireTimeout((options as { timeout?: unknown }).timeout, fallback)
}
