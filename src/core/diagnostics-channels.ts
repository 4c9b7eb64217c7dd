import * as diagnostics from 'node:diagnostics_channel'
import type { ResetMode } from './dialect.js'
import type { WarningCode } from './errors.js'
import type { InvalidateReason } from './events.js'

/** What every message names: the pool, by its `name` (`stats().name`). */
export interface PoolMessage {
  /** The pool's name: its `name` option, or the default (see docs/pool.md). */
  poolName: string
}

/** What every message about one physical connection names. */
export interface ConnectionMessage extends PoolMessage {
  /** The connection's id within its pool, as the pool's events give it (`id`). */
  connectionId: number
}

/**
 * The context of one traced `acquire()` on `lifeguard:acquire`: the same object at each of its
 * sub-channels, filled as it goes. `start` and `end` see `poolName`; `asyncStart` and `asyncEnd`
 * also `connectionId` (absent for a lease on a request scope's connection) and `waitMs`; `error`
 * and the two after it see `error` instead (an `AcquireTimeoutError`, the abort reason, …).
 */
export interface AcquireTraceContext extends PoolMessage {
  connectionId?: number
  /** From the call until the lease was lent, in ms. */
  waitMs?: number
  error?: unknown
}

/**
 * The context of opening one physical connection on `lifeguard:connect` (the driver's connect,
 * `onConnect`, and the first connection's read of the server's limits). `asyncStart` and
 * `asyncEnd` also see `durationMs`; a failure goes to `error`, with `error`.
 */
export interface ConnectTraceContext extends ConnectionMessage {
  /** How long the opening took, in ms. */
  durationMs?: number
  error?: unknown
}

/** The message of `lifeguard:release`: a lease ended. */
export interface ReleaseMessage extends ConnectionMessage {
  /** How long the lease was held, in ms. */
  heldMs: number
  /** Ended by `destroy()` rather than `release()`. */
  destroyed: boolean
}

/** The message of `lifeguard:reset`: a returned connection was reset. */
export interface ResetMessage extends ConnectionMessage {
  mode: ResetMode
  durationMs: number
}

/** The message of `lifeguard:invalidate`: a connection was taken out of service. */
export interface InvalidateMessage extends ConnectionMessage {
  reason: InvalidateReason
  /** What condemned it, when something did. */
  error?: unknown
}

/** The message of `lifeguard:close`: a physical connection was closed. */
export type CloseMessage = ConnectionMessage

/** The message of `lifeguard:connectError`: opening a connection failed. */
export interface ConnectErrorMessage extends ConnectionMessage {
  error: Error
  /** Failures in a row. */
  attempt: number
  /** When the pool tries again, in ms (0: at once). */
  retryInMs: number
}

/** The message of `lifeguard:unavailable`: the pool started failing fast. */
export interface UnavailableMessage extends PoolMessage {
  reason: 'permanent' | 'down'
  error: Error
}

/** The message of `lifeguard:available`: the pool stopped failing fast. */
export interface AvailableMessage extends PoolMessage {
  unavailableMs: number
}

/** The message of `lifeguard:leak`: a lease outlived `leakDetectionThreshold`. */
export interface LeakMessage extends ConnectionMessage {
  heldMs: number
  /** Where the lease was acquired. */
  stack: string
}

/** The message of `lifeguard:server`: the first connection read the server's limits. */
export interface ServerMessage extends PoolMessage {
  version?: string | undefined
  maxConnections?: number | undefined
  idleCutoffMs?: number | undefined
  idleCutoffSetting?: string | undefined
}

/** The message of `lifeguard:clamp`: an option was lowered below the server's idle cut-off. */
export interface ClampMessage extends PoolMessage {
  option: 'maxLifetime' | 'idleTimeout'
  from: number
  to: number
  setting: string
  cutoffMs: number
}

/** The message of `lifeguard:warning`: a setting works but is likely wrong. */
export interface WarningMessage extends PoolMessage {
  code: WarningCode
  message: string
}

type Tracing<T extends object> = diagnostics.TracingChannel<unknown, T>

/**
 * Whether anybody listens to a tracing channel: its own getter, or (on a Node without it) any
 * of its five sub-channels, as mysql2's `shouldTrace` asks.
 */
function listened(channel: Tracing<object>): boolean {
  return (
    channel.start.hasSubscribers ||
    channel.end.hasSubscribers ||
    channel.asyncStart.hasSubscribers ||
    channel.asyncEnd.hasSubscribers ||
    channel.error.hasSubscribers
  )
}

const acquire = diagnostics.tracingChannel<unknown, AcquireTraceContext>('lifeguard:acquire')

/** Whether this Node's TracingChannel has the aggregate `hasSubscribers` getter (20.13 and later). */
const hasAggregate =
  Object.getOwnPropertyDescriptor(Object.getPrototypeOf(acquire), 'hasSubscribers')?.get !==
  undefined

/**
 * The diagnostics channels of every lifeguard pool in the process, made once when the module
 * loads (Node keeps channels by name, so another copy of lifeguard publishes on the same ones).
 * `PoolTelemetry` publishes on them; nothing is built for a channel that has no subscriber.
 * Names, kinds and messages are in docs/observability.md. No message carries a credential or
 * the driver's connection object: the pool's name and the connection's id say which.
 */
export const lifeguardChannels = {
  /** TracingChannel around a caller's `acquire()` (and `use()`, and the facades' checkouts). */
  acquire,
  /** TracingChannel around opening one physical connection, `onConnect` included. */
  connect: diagnostics.tracingChannel<unknown, ConnectTraceContext>('lifeguard:connect'),
  release: diagnostics.channel('lifeguard:release'),
  reset: diagnostics.channel('lifeguard:reset'),
  invalidate: diagnostics.channel('lifeguard:invalidate'),
  close: diagnostics.channel('lifeguard:close'),
  connectError: diagnostics.channel('lifeguard:connectError'),
  unavailable: diagnostics.channel('lifeguard:unavailable'),
  available: diagnostics.channel('lifeguard:available'),
  leak: diagnostics.channel('lifeguard:leak'),
  server: diagnostics.channel('lifeguard:server'),
  clamp: diagnostics.channel('lifeguard:clamp'),
  warning: diagnostics.channel('lifeguard:warning'),

  /** Whether anybody listens to a tracing channel (`hasSubscribers`, computed on a Node without it). */
  traced(channel: Tracing<object>): boolean {
    return hasAggregate
      ? (channel as { hasSubscribers: boolean }).hasSubscribers
      : listened(channel)
  },

  /**
   * Runs `fn` traced on `channel`, as `tracePromise` does (`start` with `fn` in its stores,
   * `end`, then `asyncStart`/`asyncEnd`, `error` first on a failure), except that the result is
   * not put in the context: `settled` writes what a subscriber may see of it. Call it only when
   * {@link lifeguardChannels.traced} says someone listens.
   */
  trace<T, X extends { error?: unknown }>(
    channel: Tracing<X>,
    context: X,
    fn: () => Promise<T>,
    settled: (context: X, result: T | undefined) => void,
  ): Promise<T> {
    return channel.start.runStores(context, () => {
      try {
        // Inline arrows: a named closure per call would cost a `__name` call in the build.
        return fn().then(
          (result) => {
            settled(context, result)
            channel.asyncStart.publish(context)
            channel.asyncEnd.publish(context)
            return result
          },
          (error: unknown) => {
            context.error = error
            settled(context, undefined)
            channel.error.publish(context)
            channel.asyncStart.publish(context)
            channel.asyncEnd.publish(context)
            throw error
          },
        )
      } catch (error) {
        context.error = error
        channel.error.publish(context)
        throw error
      } finally {
        channel.end.publish(context)
      }
    })
  },
}
