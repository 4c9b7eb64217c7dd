import type { InvalidateReason } from '../core/events.js'
import { type MetricsSubscriber, metricsOf } from '../core/metrics-subscribers.js'
import type { Pool } from '../core/pool.js'
import { causes } from '../dialects/network-errors.js'
import type { PoolMetricKey } from './pool-metric-catalog.js'

/** The histograms that the pool's events feed, in seconds. */
export type TimedMetric = 'createTime' | 'waitTime' | 'useTime'

/** The counters that the pool's events feed. */
export type CountedMetric = 'connectErrors' | 'invalidations' | 'leaks'

/** Where a {@link PoolMetricSource} writes what the pool's telemetry tells: one exporter's instruments. */
export interface MetricRecorder {
  /** One duration, in seconds, for a histogram. */
  record(metric: TimedMetric, seconds: number): void
  /** One more for a counter; `attribute` is the error kind or the invalidation's reason. */
  count(metric: CountedMetric, attribute?: string): void
}

/** One value read from the pool at collect time; `attribute` is the connection state. */
export interface MetricReading {
  readonly metric: PoolMetricKey
  readonly value: number
  readonly attribute?: string
}

/** Every reason an invalidation can give, so that exporters can start their counts at 0. */
export const INVALIDATE_REASONS = [
  'disconnect',
  'lifetime',
  'idle',
  'ping',
  'reset-failed',
  'stale',
  'destroyed',
  'read-only',
] as const satisfies readonly InvalidateReason[]

// A reason added to InvalidateReason and not above fails to compile here.
const everyReason: [Exclude<InvalidateReason, (typeof INVALIDATE_REASONS)[number]>] extends [never]
  ? true
  : never = true
void everyReason

/** How many error kinds a pool reports before the rest are counted under `_OTHER`. */
const MAX_ERROR_KINDS = 16
/** The value OpenTelemetry's `error.type` takes when the real one is not reported. */
const OTHER_KIND = '_OTHER'
/** An error code worth reporting as a kind: short, and made of the characters codes use. */
const CODE_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/

/**
 * The kind of a connect error: the innermost code in its chain of causes (the driver's, under
 * lifeguard's `ConnectError`: `ECONNREFUSED`, `28P01`, `ER_ACCESS_DENIED_ERROR`), or else the
 * innermost error's class. Never the message, which may hold a host or a user name.
 */
function errorKind(error: unknown): string {
  let code: string | undefined
  let name: string | undefined
  for (const fields of causes(error)) {
    const own = typeof fields.code === 'number' ? String(fields.code) : fields.code
    if (typeof own === 'string' && CODE_PATTERN.test(own)) code = own
    const className = (fields as { constructor?: { name?: unknown } }).constructor?.name
    if (typeof className === 'string' && CODE_PATTERN.test(className)) name = className
  }
  return code ?? name ?? OTHER_KIND
}

/**
 * The part of a pool's metrics that both exporters share: it subscribes to the pool's telemetry
 * (the moments of the `connect`, `acquire`, `release`, `invalidate`, `connectError`, `leak`,
 * `unavailable` and `available` events, as bare numbers: no event payload is built for it) and
 * hands each duration or count to a {@link MetricRecorder}, and it reads the gauges and lifetime
 * counts from `pool.stats()`, `pool.options` and `pool.server` when an exporter collects. It
 * keeps no timer. `detach()` unsubscribes it.
 */
export class PoolMetricSource {
  /** The pool's name, as `pool.stats()` gives it when the source is made. */
  readonly name: string
  readonly #pool: Pool<unknown>
  readonly #kinds = new Set<string>()
  readonly #unsubscribe: () => void
  #unavailable = false
  #readings: MetricReading[] | undefined
  #detached = false

  constructor(pool: Pool<unknown>, recorder: MetricRecorder) {
    this.#pool = pool
    this.name = pool.stats().name
    // A duration whose start nobody timed (an exporter attached while a caller waited or a lease
    // was out) is NaN: it would turn Prometheus' `_sum` into NaN for good, so it is not counted.
    const time = (metric: TimedMetric, ms: number) => {
      if (Number.isFinite(ms)) recorder.record(metric, ms / 1000)
    }
    const subscriber: MetricsSubscriber = {
      connected: (ms) => time('createTime', ms),
      acquired: (ms) => time('waitTime', ms),
      released: (ms) => time('useTime', ms),
      invalidated: (reason) => recorder.count('invalidations', reason),
      connectFailed: (error) => recorder.count('connectErrors', this.#kind(error)),
      leaked: () => recorder.count('leaks'),
      unavailable: () => {
        this.#unavailable = true
      },
      available: () => {
        this.#unavailable = false
      },
    }
    // meteredPool() checked that the pool has them.
    this.#unsubscribe = metricsOf(pool)!.add(subscriber)
  }

  /** The error kinds this pool has reported so far (for exporters that remove their series). */
  get errorKinds(): ReadonlySet<string> {
    return this.#kinds
  }

  /**
   * The values to report now: connections by state, the pool's limits, waiting callers, the
   * lifetime counts, the fail-fast state and the idle settings in force. Read once per tick, so
   * that every metric of one scrape sees the same snapshot.
   */
  read(): MetricReading[] {
    if (this.#readings !== undefined) return this.#readings
    const s = this.#pool.stats()
    const options = this.#pool.options
    const readings: MetricReading[] = [
      { metric: 'count', value: s.idle, attribute: 'idle' },
      { metric: 'count', value: s.leased + s.resetting + s.validating, attribute: 'used' },
      { metric: 'idleMax', value: s.max },
      { metric: 'idleMin', value: s.min },
      { metric: 'max', value: s.max + s.maxOverflow },
      { metric: 'pendingRequests', value: s.waiting },
      { metric: 'timeouts', value: s.timeouts },
      { metric: 'failedFast', value: s.failedFast },
      { metric: 'unavailable', value: this.#unavailable ? 1 : 0 },
    ]
    if (Number.isFinite(options.maxLifetime)) {
      readings.push({ metric: 'maxLifetime', value: options.maxLifetime / 1000 })
    }
    if (Number.isFinite(options.idleTimeout)) {
      readings.push({ metric: 'idleTimeout', value: options.idleTimeout / 1000 })
    }
    const cutoff = this.#pool.server?.idleCutoffMs
    if (cutoff !== undefined) readings.push({ metric: 'serverIdleCutoff', value: cutoff / 1000 })
    this.#readings = readings
    queueMicrotask(() => {
      this.#readings = undefined
    })
    return readings
  }

  /** Unsubscribes from the pool's telemetry. Idempotent. */
  detach(): void {
    if (this.#detached) return
    this.#detached = true
    this.#unsubscribe()
  }

  /** A connect error's kind, bounded: after {@link MAX_ERROR_KINDS} distinct ones, `_OTHER`. */
  #kind(error: unknown): string {
    const kind = errorKind(error)
    if (this.#kinds.has(kind)) return kind
    if (this.#kinds.size >= MAX_ERROR_KINDS) return OTHER_KIND
    this.#kinds.add(kind)
    return kind
  }
}
