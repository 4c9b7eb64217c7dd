import { explainHint } from './errors.js'
import type { InvalidateReason } from './events.js'

/**
 * The key under which a pool keeps its {@link MetricsSubscribers}, for the metrics exporters
 * (`lifeguard/otel`, `lifeguard/prometheus`). A registry symbol, as in `pool-of.ts`: when both the
 * ES module and the CommonJS build of lifeguard are loaded, an exporter of one finds a pool made
 * by the other. The property is defined at run time and not enumerable, so it is in no type, no
 * `Object.keys`, no spread and no `util.inspect`.
 */
const METRICS = Symbol.for('lifeguard.metrics')

/**
 * What the metrics exporters hear from a pool's telemetry: bare numbers, with no payload object
 * and no event dispatch (listening to the pool's public events makes a borrow of the no-I/O
 * benchmark about three times as slow). The same moments as the events of the same names.
 */
export interface MetricsSubscriber {
  /** A connection was opened in `durationMs` (the `connect` event). */
  connected(durationMs: number): void
  /** A connection was lent after the caller waited `waitMs` (the `acquire` event). */
  acquired(waitMs: number): void
  /** A lease ended after `heldMs` (the `release` event). */
  released(heldMs: number): void
  /** A connection was taken out of service (the `invalidate` event). */
  invalidated(reason: InvalidateReason): void
  /** Opening a connection failed with `error` (the `connectError` event). */
  connectFailed(error: Error): void
  /** A lease outlived `leakDetectionThreshold` (the `leak` event). */
  leaked(): void
  /** The pool started failing fast (the `unavailable` event). */
  unavailable(): void
  /** The pool stopped failing fast (the `available` event). */
  available(): void
}

/**
 * An exporter that throws (a meter provider of the user's, say) must not break the pool's
 * bookkeeping: reported as a process warning, as a throwing event listener is.
 */
function threw(error: unknown): void {
  process.emitWarning(
    `a lifeguard metrics exporter threw: ${String(error)} ${explainHint('LIFEGUARD_LISTENER_THREW')}`,
    { code: 'LIFEGUARD_LISTENER_THREW' },
  )
}

/**
 * A pool's metrics subscribers, told each thing in turn: the telemetry calls it after one check
 * of {@link any}, and the loops live here so that the telemetry's own methods stay small enough
 * to be inlined into the engine's. Copy on write, so that a subscriber may leave while the
 * others are being called.
 */
export class MetricsSubscribers implements MetricsSubscriber {
  /** Whether anyone subscribed: one field read on the hot path of a pool nobody meters. */
  any = false
  /** The subscribers, in the order they came. */
  list: readonly MetricsSubscriber[] = []

  connected(durationMs: number): void {
    const list = this.list
    for (let i = 0; i < list.length; i++) {
      try {
        list[i]!.connected(durationMs)
      } catch (error) {
        threw(error)
      }
    }
  }

  acquired(waitMs: number): void {
    const list = this.list
    for (let i = 0; i < list.length; i++) {
      try {
        list[i]!.acquired(waitMs)
      } catch (error) {
        threw(error)
      }
    }
  }

  released(heldMs: number): void {
    const list = this.list
    for (let i = 0; i < list.length; i++) {
      try {
        list[i]!.released(heldMs)
      } catch (error) {
        threw(error)
      }
    }
  }

  invalidated(reason: InvalidateReason): void {
    for (const subscriber of this.list) {
      try {
        subscriber.invalidated(reason)
      } catch (thrown) {
        threw(thrown)
      }
    }
  }

  connectFailed(error: Error): void {
    for (const subscriber of this.list) {
      try {
        subscriber.connectFailed(error)
      } catch (thrown) {
        threw(thrown)
      }
    }
  }

  leaked(): void {
    for (const subscriber of this.list) {
      try {
        subscriber.leaked()
      } catch (thrown) {
        threw(thrown)
      }
    }
  }

  unavailable(): void {
    for (const subscriber of this.list) {
      try {
        subscriber.unavailable()
      } catch (thrown) {
        threw(thrown)
      }
    }
  }

  available(): void {
    for (const subscriber of this.list) {
      try {
        subscriber.available()
      } catch (thrown) {
        threw(thrown)
      }
    }
  }

  /** Adds `subscriber`; returns what removes it (idempotent). */
  add(subscriber: MetricsSubscriber): () => void {
    this.list = [...this.list, subscriber]
    this.any = true
    let removed = false
    return () => {
      if (removed) return
      removed = true
      this.list = this.list.filter((s) => s !== subscriber)
      this.any = this.list.length > 0
    }
  }
}

/** Gives `pool` its metrics subscribers, under a hidden key (see {@link metricsOf}). */
export function attachMetrics(pool: object, subscribers: MetricsSubscribers): void {
  Object.defineProperty(pool, METRICS, { value: subscribers, enumerable: false })
}

/** The metrics subscribers of a lifeguard pool, or `undefined` for anything else. */
export function metricsOf(pool: object): Pick<MetricsSubscribers, 'add'> | undefined {
  const subscribers = (pool as Record<symbol, unknown>)[METRICS] as
    | Pick<MetricsSubscribers, 'add'>
    | undefined
  return typeof subscribers?.add === 'function' ? subscribers : undefined
}
