import type { ResetMode, ServerInfo } from './dialect.js'
import { explainHint, type WarningCode } from './errors.js'

/** Why a connection was taken out of service. */
export type InvalidateReason =
  | 'disconnect'
  | 'lifetime'
  | 'idle'
  | 'ping'
  | 'reset-failed'
  | 'stale'
  | 'destroyed'
  | 'read-only'

/** The events a pool emits, with their payloads. No event throws when nobody listens. */
export interface PoolEvents<C> {
  /** A physical connection was opened (and `onConnect` ran). */
  connect: { id: number; connection: C; durationMs: number }
  /**
   * A connection was lent; `waitMs` is how long the caller waited: `NaN` when the wait began
   * before anyone listened (the pool reads the clock only for a listener).
   */
  acquire: { id: number; connection: C; waitMs: number }
  /**
   * A lease ended; `heldMs` is how long it was held: `NaN` when the lease began before anyone
   * listened (the pool reads the clock only for a listener).
   */
  release: { id: number; connection: C; heldMs: number; destroyed: boolean }
  /** A returned connection was reset. */
  reset: { id: number; connection: C; mode: ResetMode; durationMs: number }
  /** A connection was taken out of service; `error` is what condemned it, if anything did. */
  invalidate: { id: number; connection: C; reason: InvalidateReason; error?: unknown }
  /** A physical connection was closed. */
  close: { id: number; connection: C }
  /** Opening a connection failed; the pool retries after `retryInMs` while anyone needs one. */
  connectError: { error: Error; attempt: number; retryInMs: number }
  /**
   * The pool started failing fast: callers that need a new connection are now rejected at once.
   * `reason` is `permanent` (a permanent connect error, such as a wrong password) or `down`
   * (connects failed for `failFastAfter` with no open connection); `error` is the last connect's.
   */
  unavailable: { reason: 'permanent' | 'down'; error: Error }
  /** The pool stopped failing fast (a connect succeeded); `unavailableMs` is how long it failed. */
  available: { unavailableMs: number }
  /** A lease was held longer than `leakDetectionThreshold`; `stack` is where it was acquired. */
  leak: { id: number; heldMs: number; stack: string }
  /** The first connection read the server's limits (see `Dialect.inspect`). */
  server: ServerInfo
  /**
   * An option would have outlived the server's idle cut-off, so the pool lowered it: connections
   * are retired before the server drops them ("MySQL server has gone away").
   */
  clamp: {
    option: 'maxLifetime' | 'idleTimeout'
    from: number
    to: number
    setting: string
    cutoffMs: number
  }
  /** A setting that works but is likely wrong, such as a pool larger than the server allows. Also sent to `process.emitWarning`. */
  warning: { code: WarningCode; message: string }
}

/** A listener of one pool event. */
export type PoolListener<C, K extends keyof PoolEvents<C>> = (event: PoolEvents<C>[K]) => void

type Entry = { fn: (event: never) => void; once: boolean }

/**
 * A small typed event emitter. Unlike Node's `EventEmitter` it has no `'error'` event, so
 * nothing it emits can throw when nobody listens, and a listener that throws is reported as a
 * process warning instead of breaking the pool's bookkeeping.
 */
export class TypedEmitter<E extends object> {
  #listeners: { [K in keyof E]?: Entry[] } = {}
  /** Whether any event has a listener: one field read on the hot path of a pool nobody watches. */
  #any = false

  /** Adds a listener. */
  on<K extends keyof E>(event: K, listener: (event: E[K]) => void): this {
    return this.#add(event, listener, false)
  }

  /** Adds a listener that is removed after its first call. */
  once<K extends keyof E>(event: K, listener: (event: E[K]) => void): this {
    return this.#add(event, listener, true)
  }

  /** Removes a listener added with `on` or `once`. */
  off<K extends keyof E>(event: K, listener: (event: E[K]) => void): this {
    const list = this.#listeners[event]
    if (list === undefined) return this
    const index = list.findIndex((entry) => entry.fn === listener)
    if (index === -1) return this
    const next = list.filter((_, i) => i !== index)
    if (next.length === 0) delete this.#listeners[event]
    else this.#listeners[event] = next
    this.#any = Object.keys(this.#listeners).length > 0
    return this
  }

  /** Whether anyone listens to `event`; lets the hot path skip building a payload. */
  protected listening(event: keyof E): boolean {
    return this.#any && this.#listeners[event] !== undefined
  }

  /** Calls each listener of `event` with `payload`. */
  protected emit<K extends keyof E>(event: K, payload: E[K]): void {
    const list = this.#listeners[event]
    if (list === undefined) return
    for (const entry of list) {
      if (entry.once) this.off(event, entry.fn as (event: E[K]) => void)
      try {
        ;(entry.fn as (event: E[K]) => void)(payload)
      } catch (error) {
        process.emitWarning(
          `a listener of the lifeguard '${String(event)}' event threw: ${String(error)} ${explainHint('LIFEGUARD_LISTENER_THREW')}`,
          { code: 'LIFEGUARD_LISTENER_THREW' },
        )
      }
    }
  }

  #add<K extends keyof E>(event: K, listener: (event: E[K]) => void, once: boolean): this {
    if (typeof listener !== 'function') throw new TypeError('The listener must be a function')
    // Copy on write, so that emitting while a listener is added or removed is safe.
    this.#listeners[event] = [...(this.#listeners[event] ?? []), { fn: listener, once }]
    this.#any = true
    return this
  }
}
