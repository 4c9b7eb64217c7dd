import type { AcquireTraceContext } from './diagnostics-channels.js'

/**
 * The internal acquire option (a symbol key, so no caller can pass it by accident, and the
 * option check, which reads string keys, lets it through) by which a facade that queues callers
 * itself says where a caller's wait began. The `lifeguard/mysql2` facade keeps mysql2's queue in
 * front of the pool; without this, the pool would time a wait from the moment the facade
 * forwards the caller, after the queue, and the wait-time metric and the `lifeguard:acquire`
 * trace would miss the time spent there.
 */
export const OUTER_WAIT = Symbol('lifeguard.outerWait')

/** What a facade tells the pool of a caller it queued, under {@link OUTER_WAIT}. */
export interface OuterWait {
  /** When the caller started to wait, in `performance.now()` time. */
  readonly queuedAt: number
  /** The caller's traced acquire, begun when it was queued (see `OuterQueueLink.trace`). */
  readonly trace?: AcquireTraceContext | undefined
}

/**
 * The pool's side of a facade's own queue, which the facade gets once from `Pool[OUTER_QUEUE]`:
 * its waiting callers count in `stats().waiting` (and the pending-requests metric), a timeout
 * there counts in `stats().timeouts`, and a caller's `lifeguard:acquire` trace spans its wait.
 */
export interface OuterQueueLink {
  /** Counts the callers `length()` gives in `stats().waiting`, from now on. */
  count(length: () => number): void
  /** One caller timed out in the facade's queue. */
  timedOut(): void
  /**
   * Starts a caller's traced acquire (when anybody traces acquires; else `undefined`): the trace
   * ends when the returned `settle` is called with the lease or the error. Pass its `context` in
   * the caller's {@link OuterWait} when the pool is asked for the connection.
   */
  trace():
    | { context: AcquireTraceContext; settle(lease?: object, error?: unknown): void }
    | undefined
}

/** The key of `Pool`'s method that returns its {@link OuterQueueLink}; internal. */
export const OUTER_QUEUE = Symbol('lifeguard.outerQueue')
