import type { ConnectionRecord } from './connection-record.js'
import { type DebugLog, debugLog } from './debug-log.js'
import {
  type AcquireTraceContext,
  type ConnectTraceContext,
  lifeguardChannels as channels,
} from './diagnostics-channels.js'
import type { ResetMode, ServerInfo } from './dialect.js'
import { explainHint, type WarningCode } from './errors.js'
import type { InvalidateReason, PoolEvents } from './events.js'
import type { IdleSettingChange } from './idle-cutoff.js'
import { MetricsSubscribers } from './metrics-subscribers.js'
import type { Waiter } from './waiter-queue.js'

/** One subscriber of a pool's telemetry that may or may not listen: the public pool's events API. */
export interface PoolEventSink<C> {
  /** Whether anyone listens to `event`: the telemetry builds no payload otherwise. */
  listening(event: keyof PoolEvents<C>): boolean
  /** Hands `payload` to the listeners of `event`. */
  emit<K extends keyof PoolEvents<C>>(event: K, payload: PoolEvents<C>[K]): void
  /** The metrics exporters subscribed to the pool, which hear bare numbers (see `metrics-subscribers.ts`). */
  readonly metrics?: MetricsSubscribers
}

/**
 * The one point where a pool tells what happens in it: the engine calls `connected()`,
 * `acquired()` and the like, and this decides who hears it. Four subscribers do: the pool's own
 * events (`pool.on(…)`), the metrics exporters (`lifeguard/otel`, `lifeguard/prometheus`, which
 * get bare numbers: see `metrics-subscribers.ts`), the `NODE_DEBUG=lifeguard` log (undici's
 * `diagnostics.js` is the model, where the debug log is just one subscriber), and the
 * process-wide diagnostics channels (`lifeguard:*`, see `diagnostics-channels.ts`).
 *
 * Nothing is measured or built unless someone listens: each method first checks a boolean or
 * three, then builds the payload for each subscriber that listens. The channels get a payload
 * of their own, which names the pool and never carries the driver's connection. Plain fields,
 * for the reason given on `PoolCore`.
 */
export class PoolTelemetry<C> {
  private readonly events: PoolEventSink<C>
  /** `undefined` unless the debug log is on. */
  private readonly log: DebugLog<C> | undefined
  /** The pool's name, in every channel message. */
  private readonly poolName: string
  /** The metrics exporters subscribed. */
  private readonly metrics: MetricsSubscribers
  /**
   * The context of the traced acquire running now (synchronously), if any: a lease lent at once
   * names its connection there, and a waiter carries it (`Waiter.extra.trace`) until it is served.
   */
  acquiring: AcquireTraceContext | undefined = undefined

  /**
   * @param events - the public pool's events
   * @param label - the pool's name, for the log
   * @param counts - the pool's counts as the log prints them
   */
  constructor(events: PoolEventSink<C>, label: string, counts: () => string) {
    this.events = events
    this.log = debugLog<C>(label, counts)
    this.poolName = label
    this.metrics = events.metrics ?? new MetricsSubscribers()
  }

  /** Whether anybody traces acquires (`lifeguard:acquire`): only then does `acquire()` go through {@link traceAcquire}. */
  tracesAcquires(): boolean {
    return channels.traced(channels.acquire)
  }

  /** Runs `acquire` (a caller's acquire) traced on `lifeguard:acquire`. */
  traceAcquire<L extends object>(acquire: () => Promise<L>): Promise<L> {
    const started = performance.now()
    const context: AcquireTraceContext = { poolName: this.poolName }
    return channels.trace(
      channels.acquire,
      context,
      () => {
        const outer = this.acquiring
        this.acquiring = context
        try {
          return acquire()
        } finally {
          this.acquiring = outer
        }
      },
      (traced, lease) => {
        if (lease !== undefined) traced.waitMs = performance.now() - started
      },
    )
  }

  /** Runs `open` (opening `record`'s connection) traced on `lifeguard:connect` when anybody listens. */
  opening(record: ConnectionRecord<C>, open: () => Promise<C>): Promise<C> {
    if (!channels.traced(channels.connect)) return open()
    const started = performance.now()
    const context: ConnectTraceContext = { poolName: this.poolName, connectionId: record.id }
    return channels.trace(channels.connect, context, open, (traced) => {
      traced.durationMs = performance.now() - started
    })
  }

  /** Whether anyone will see how long a caller waited: only then does `acquire()` read the clock. */
  timesWaits(): boolean {
    return this.metrics.any || this.log !== undefined || this.events.listening('acquire')
  }

  /** Whether anyone will see how long a lease was held (`release`). */
  timesLeases(): boolean {
    return (
      this.metrics.any ||
      this.log !== undefined ||
      this.events.listening('release') ||
      channels.release.hasSubscribers
    )
  }

  /** Whether anyone will see how long a reset took. */
  timesResets(): boolean {
    return this.events.listening('reset') || channels.reset.hasSubscribers
  }

  /** A connection was opened in `durationMs`. */
  connected(record: ConnectionRecord<C>, durationMs: number): void {
    if (this.metrics.any) this.metrics.connected(durationMs)
    const listening = this.events.listening('connect')
    if (!listening && this.log === undefined) return
    const payload = { id: record.id, connection: record.connection as C, durationMs }
    if (listening) this.events.emit('connect', payload)
    this.log?.emit('connect', payload)
  }

  /**
   * A connection was lent: to `waiter`, whose `enqueuedAt` is set when the wait was timed, or
   * at once (`waiter` undefined). The waiter itself is passed, so that nothing is read of it
   * unless someone listens. The wait ends when the lease starts: at `record.leasedAt` when the
   * lease is timed (no second clock read), else now.
   */
  acquired(record: ConnectionRecord<C>, waiter: Pick<Waiter<unknown>, 'extra'> | undefined): void {
    const trace = waiter === undefined ? this.acquiring : waiter.extra?.trace
    if (trace !== undefined) trace.connectionId = record.id
    if (this.metrics.any || this.log !== undefined || this.events.listening('acquire')) {
      this.tellAcquired(record, waiter)
    }
  }

  /** A lease ended, by `release()` or by `destroy()`. */
  released(record: ConnectionRecord<C>, destroyed: boolean): void {
    if (
      this.metrics.any ||
      this.log !== undefined ||
      channels.release.hasSubscribers ||
      this.events.listening('release')
    ) {
      this.tellReleased(record, destroyed)
    }
  }

  /** A returned connection was reset; `started` is from `performance.now()`, or `NaN` when not timed. */
  reset(record: ConnectionRecord<C>, mode: ResetMode, started: number): void {
    const listening = this.events.listening('reset')
    const channel = channels.reset.hasSubscribers
    if (!listening && this.log === undefined && !channel) return
    const durationMs = performance.now() - started
    if (channel) {
      channels.reset.publish({ poolName: this.poolName, connectionId: record.id, mode, durationMs })
    }
    if (!listening && this.log === undefined) return
    const payload = { id: record.id, connection: record.connection as C, mode, durationMs }
    if (listening) this.events.emit('reset', payload)
    this.log?.emit('reset', payload)
  }

  /** A connection was taken out of service; `error` is what condemned it, if anything did. */
  invalidated(record: ConnectionRecord<C>, reason: InvalidateReason, error: unknown): void {
    if (this.metrics.any) this.metrics.invalidated(reason)
    if (channels.invalidate.hasSubscribers) {
      const message = { poolName: this.poolName, connectionId: record.id, reason }
      channels.invalidate.publish(error === undefined ? message : { ...message, error })
    }
    const listening = this.events.listening('invalidate')
    if (!listening && this.log === undefined) return
    const connection = record.connection as C
    const payload =
      error === undefined
        ? { id: record.id, connection, reason }
        : { id: record.id, connection, reason, error }
    if (listening) this.events.emit('invalidate', payload)
    this.log?.emit('invalidate', payload)
  }

  /** A connection was closed. */
  closed(record: ConnectionRecord<C>): void {
    if (channels.close.hasSubscribers) {
      channels.close.publish({ poolName: this.poolName, connectionId: record.id })
    }
    const listening = this.events.listening('close')
    if (!listening && this.log === undefined) return
    const payload = { id: record.id, connection: record.connection as C }
    if (listening) this.events.emit('close', payload)
    this.log?.emit('close', payload)
  }

  /** Opening `record` failed for the `attempt`-th time in a row; the next try is in `retryInMs`. */
  connectFailed(
    record: ConnectionRecord<C>,
    error: Error,
    attempt: number,
    retryInMs: number,
  ): void {
    if (this.metrics.any) this.metrics.connectFailed(error)
    if (channels.connectError.hasSubscribers) {
      channels.connectError.publish({
        poolName: this.poolName,
        connectionId: record.id,
        error,
        attempt,
        retryInMs,
      })
    }
    const listening = this.events.listening('connectError')
    if (!listening && this.log === undefined) return
    const payload = { error, attempt, retryInMs }
    if (listening) this.events.emit('connectError', payload)
    this.log?.emit('connectError', payload, record.id)
  }

  /** The pool started failing fast. */
  unavailable(reason: 'permanent' | 'down', error: Error): void {
    if (this.metrics.any) this.metrics.unavailable()
    if (channels.unavailable.hasSubscribers) {
      channels.unavailable.publish({ poolName: this.poolName, reason, error })
    }
    const listening = this.events.listening('unavailable')
    if (!listening && this.log === undefined) return
    const payload = { reason, error }
    if (listening) this.events.emit('unavailable', payload)
    this.log?.emit('unavailable', payload)
  }

  /** The pool stopped failing fast, after `unavailableMs`. */
  available(unavailableMs: number): void {
    if (this.metrics.any) this.metrics.available()
    if (channels.available.hasSubscribers) {
      channels.available.publish({ poolName: this.poolName, unavailableMs })
    }
    const listening = this.events.listening('available')
    if (!listening && this.log === undefined) return
    const payload = { unavailableMs }
    if (listening) this.events.emit('available', payload)
    this.log?.emit('available', payload)
  }

  /** A lease was held longer than `leakDetectionThreshold`. */
  leaked(record: ConnectionRecord<C>, heldMs: number, stack: string): void {
    if (this.metrics.any) this.metrics.leaked()
    if (channels.leak.hasSubscribers) {
      channels.leak.publish({ poolName: this.poolName, connectionId: record.id, heldMs, stack })
    }
    const listening = this.events.listening('leak')
    if (!listening && this.log === undefined) return
    const payload = { id: record.id, heldMs, stack }
    if (listening) this.events.emit('leak', payload)
    this.log?.emit('leak', payload)
  }

  /** The first connection read the server's limits. */
  server(info: ServerInfo): void {
    if (channels.server.hasSubscribers)
      channels.server.publish({ poolName: this.poolName, ...info })
    if (this.events.listening('server')) this.events.emit('server', info)
  }

  /** An option was lowered below the server's idle cut-off. */
  clamped(change: IdleSettingChange): void {
    const { option, from, to, setting, cutoffMs } = change
    if (channels.clamp.hasSubscribers) {
      channels.clamp.publish({ poolName: this.poolName, option, from, to, setting, cutoffMs })
    }
    const listening = this.events.listening('clamp')
    if (!listening && this.log === undefined) return
    const payload = { option, from, to, setting, cutoffMs }
    if (listening) this.events.emit('clamp', payload)
    this.log?.emit('clamp', payload)
  }

  /** A setting works but is likely wrong: the `warning` event, and always `process.emitWarning`. */
  warning(code: WarningCode, warning: string): void {
    const message = `${warning} ${explainHint(code)}`
    if (channels.warning.hasSubscribers) {
      channels.warning.publish({ poolName: this.poolName, code, message })
    }
    if (this.events.listening('warning')) this.events.emit('warning', { code, message })
    process.emitWarning(message, { code })
  }

  /** A dialect call the pool can do without (`ref`, `unref`) threw; only the log hears of it. */
  dialectFailed(what: string, error: unknown): void {
    this.log?.failed(what, error)
  }

  /** A ping outlasted the hedge delay of `delayMs`; only the log hears of it. */
  pingHedged(record: ConnectionRecord<C>, delayMs: number): void {
    this.log?.pingHedged(record.id, delayMs)
  }

  /** The server's limits could not be read (not fatal); only the log hears of it. */
  noServerLimits(error: unknown): void {
    this.log?.noServerLimits(error)
  }

  /** {@link acquired}, for a pool someone watches; apart so that the engine inlines the check. */
  private tellAcquired(
    record: ConnectionRecord<C>,
    waiter: Pick<Waiter<unknown>, 'extra'> | undefined,
  ): void {
    let waitMs = 0
    if (waiter !== undefined) {
      const servedAt = Number.isNaN(record.leasedAt) ? performance.now() : record.leasedAt
      waitMs = servedAt - (waiter.extra?.enqueuedAt ?? Number.NaN)
    }
    if (this.metrics.any) this.metrics.acquired(waitMs)
    const listening = this.events.listening('acquire')
    if (!listening && this.log === undefined) return
    const payload = { id: record.id, connection: record.connection as C, waitMs }
    if (listening) this.events.emit('acquire', payload)
    this.log?.emit('acquire', payload)
  }

  /** {@link released}, for a pool someone watches. */
  private tellReleased(record: ConnectionRecord<C>, destroyed: boolean): void {
    const heldMs = performance.now() - record.leasedAt
    if (this.metrics.any) this.metrics.released(heldMs)
    if (channels.release.hasSubscribers) {
      channels.release.publish({
        poolName: this.poolName,
        connectionId: record.id,
        heldMs,
        destroyed,
      })
    }
    const listening = this.events.listening('release')
    if (!listening && this.log === undefined) return
    const payload = { id: record.id, connection: record.connection as C, heldMs, destroyed }
    if (listening) this.events.emit('release', payload)
    this.log?.emit('release', payload)
  }
}
