import type { RecordState } from './connection-record.js'

/**
 * A snapshot of a pool: its connections by state and its lifetime counters. A plain object, safe
 * to log or `JSON.stringify`: it holds no connection and no secret.
 *
 * `total` counts every physical connection open or opening, and always equals
 * `idle + leased + connecting + resetting + validating + closing`.
 */
export interface PoolStats {
  /** The pool's name: the `name` option, or the default (`host:port/database`, or `pool-N`). */
  name: string
  /** Every physical connection open or opening; never more than `max + maxOverflow`. */
  total: number
  /** Open and ready to lend. */
  idle: number
  /** Lent to a caller. */
  leased: number
  /** Being opened. */
  connecting: number
  /** Returned, and being reset before it is lent again. */
  resetting: number
  /** Being pinged before it is lent. */
  validating: number
  /** Being closed. */
  closing: number
  /**
   * Past their lifetime (`maxLifetime`) but still lent, reset or pinged: each is retired when it
   * comes back (pg-pool's `expiredCount`). Counted in `leased`, `resetting` or `validating` too.
   */
  expired: number
  /**
   * Sharing callers (`acquire({ shared: true })`) lent a connection that others already share,
   * beyond the first on each: the statements pipelined now. Counted in none of the states, since
   * those count connections. Always 0 with `maxPipeline: 1` or a dialect that cannot pipeline.
   */
  pipelined: number
  /**
   * Callers waiting in `acquire()`, and those waiting in the queue that the `lifeguard/mysql2`
   * facade keeps in front of the pool (its timeouts count in `timeouts` too).
   */
  waiting: number
  /** The `max` option. */
  max: number
  /** The `maxOverflow` option. */
  maxOverflow: number
  /** The `min` option. */
  min: number
  /** Connections opened since the pool was created. */
  created: number
  /** Connections closed. */
  closed: number
  /** Leases handed out. */
  acquired: number
  /** Leases their holders ended (`release()` or `destroy()`). */
  released: number
  /**
   * Leases the pool took back from their holders: `destroy()`, or `close()` timing out. Always
   * `acquired = released + revoked + leased + pipelined`.
   */
  revoked: number
  /** Acquires that timed out. */
  timeouts: number
  /** Acquires aborted through their signal. */
  aborted: number
  /** Acquires rejected because `maxWaiting` callers were waiting. */
  rejected: number
  /** Failed connection attempts. */
  connectErrors: number
  /**
   * Acquires rejected at once because the pool was failing fast (`failFast`): a permanent connect
   * error, or the database down for `failFastAfter`.
   */
  failedFast: number
  /** Connections taken out of service: dead, expired, idle too long, or failing a ping or reset. */
  invalidated: number
}

/** The counters of a pool, kept as plain fields for speed. */
export class PoolCounters {
  created = 0
  closed = 0
  acquired = 0
  released = 0
  revoked = 0
  timeouts = 0
  aborted = 0
  rejected = 0
  connectErrors = 0
  failedFast = 0
  invalidated = 0
}

/**
 * How many records are in each state. Plain fields changed through a switch: indexing an object
 * by a state name that varies from call to call makes the property access megamorphic, which
 * showed in the hot path's profile.
 */
export class StateCounts {
  connecting = 0
  idle = 0
  leased = 0
  resetting = 0
  validating = 0
  closing = 0

  /** Adds `delta` to the count of `state` (`'closed'` records are not counted). */
  add(state: RecordState, delta: number): void {
    switch (state) {
      case 'idle':
        this.idle += delta
        break
      case 'leased':
        this.leased += delta
        break
      case 'connecting':
        this.connecting += delta
        break
      case 'resetting':
        this.resetting += delta
        break
      case 'validating':
        this.validating += delta
        break
      case 'closing':
        this.closing += delta
        break
      case 'closed':
        break
    }
  }
}
