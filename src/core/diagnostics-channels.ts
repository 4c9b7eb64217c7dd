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
  /**
   * The id of the connection lent (as the pool's events give it), from `asyncStart` on; absent
   * for a lease on a request scope's connection, and after a failure.
   */
  connectionId?: number
  /**
   * From the call until the lease was lent, in ms: for a caller of the `lifeguard/mysql2` facade
   * that waited in its queue, from its `getConnection()`.
   */
  waitMs?: number
  /**
   * Why the acquire failed, set before `error` is published: an `AcquireTimeoutError`, the abort
   * reason, `PoolClosedError`, `TooManyWaitersError`, `PoolUnavailableError` or a connect error.
   */
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
  /** Why opening failed (the driver's error, or lifeguard's `ConnectError`), set before `error`. */
  error?: unknown
}

/** The message of `lifeguard:release`: a lease ended. */
export interface ReleaseMessage extends ConnectionMessage {
  /** How long the lease was held, in ms: `NaN` when it began before anyone subscribed. */
  heldMs: number
  /** Ended by `destroy()` rather than `release()`. */
  destroyed: boolean
}

/** The message of `lifeguard:reset`: a returned connection was reset. */
export interface ResetMessage extends ConnectionMessage {
  /** How it was reset: `'rollback'` (an open transaction rolled back) or `'session'` (the session's state discarded too). */
  mode: ResetMode
  /** How long the reset took, in ms. */
  durationMs: number
}

/** The message of `lifeguard:invalidate`: a connection was taken out of service. */
export interface InvalidateMessage extends ConnectionMessage {
  /** Why (`'disconnect'`, `'lifetime'`, `'idle'`, `'ping'`, `'reset-failed'`, `'stale'`, `'destroyed'`, `'read-only'`): see docs/observability.md. */
  reason: InvalidateReason
  /** What condemned it, when something did. */
  error?: unknown
}

/** The message of `lifeguard:close`: a physical connection was closed. */
export type CloseMessage = ConnectionMessage

/** The message of `lifeguard:connectError`: opening a connection failed. */
export interface ConnectErrorMessage extends ConnectionMessage {
  /** The connect's error (lifeguard's `ConnectError`, the driver's error as its `cause`). */
  error: Error
  /** Failures in a row. */
  attempt: number
  /** When the pool tries again, in ms (0: at once). */
  retryInMs: number
}

/** The message of `lifeguard:unavailable`: the pool started failing fast. */
export interface UnavailableMessage extends PoolMessage {
  /** `'permanent'`: a connect error no retry fixes (a wrong password); `'down'`: connects failed for `failFastAfter` with no open connection. */
  reason: 'permanent' | 'down'
  /** The last connect's error. */
  error: Error
}

/** The message of `lifeguard:available`: the pool stopped failing fast. */
export interface AvailableMessage extends PoolMessage {
  /** How long the pool failed fast, in ms. */
  unavailableMs: number
}

/** The message of `lifeguard:leak`: a lease outlived `leakDetectionThreshold`. */
export interface LeakMessage extends ConnectionMessage {
  /** How long the lease had been held when it was reported, in ms. */
  heldMs: number
  /** Where the lease was acquired. */
  stack: string
}

/** The message of `lifeguard:server`: the first connection read the server's limits. */
export interface ServerMessage extends PoolMessage {
  /** The server's version string. */
  version?: string | undefined
  /** How many connections the server allows in all (`max_connections`). */
  maxConnections?: number | undefined
  /** The server closes a session idle longer than this, in ms (MySQL's `wait_timeout`, PostgreSQL's `idle_session_timeout`); absent when it has none. */
  idleCutoffMs?: number | undefined
  /** The name of the server setting behind `idleCutoffMs`. */
  idleCutoffSetting?: string | undefined
}

/** The message of `lifeguard:clamp`: an option was lowered below the server's idle cut-off. */
export interface ClampMessage extends PoolMessage {
  /** The option lowered. */
  option: 'maxLifetime' | 'idleTimeout'
  /** Its value as given, in ms. */
  from: number
  /** Its value in force now, in ms: below the cut-off. */
  to: number
  /** The server setting behind the cut-off (`wait_timeout`, `idle_session_timeout`). */
  setting: string
  /** The server's idle cut-off, in ms. */
  cutoffMs: number
}

/** The message of `lifeguard:warning`: a setting works but is likely wrong. */
export interface WarningMessage extends PoolMessage {
  /** The warning's stable code (see docs/errors.md, `lifeguard explain <code>`). */
  code: WarningCode
  /** The warning's text, as `process.emitWarning` shows it. */
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
