/** The first retry after a failed connect waits about this long; each next one twice as long. */
const BASE_MS = 50
/** The longest pause between connect attempts, so that the pool is serving within ~½ s of recovery. */
const CAP_MS = 500

/**
 * The pool's connect backoff: how many connects failed in a row, the last error, when the next
 * attempt may start, and the timer that wakes the pool then (psycopg_pool's
 * `AttemptWithBackoff`). While connects fail, the pool probes with one connection at a time;
 * one success resets it all.
 *
 * The delay is capped exponential backoff with "equal jitter": after the n-th failure in a row,
 * a delay in `[d/2, d]` where `d = min(500, 50 · 2^(n-1))` ms.
 */
export class ConnectBackoff {
  /** Connects failed in a row; 0 once one succeeds. */
  failures = 0
  /** Why the last connect failed, while they fail: the cause of an acquire timeout. */
  lastError: Error | undefined = undefined
  /** When the next attempt may start, on the monotonic clock. */
  private retryAt = 0
  private timer: NodeJS.Timeout | undefined = undefined
  private readonly onRetry: () => void
  private readonly random: () => number

  /**
   * @param onRetry - called when the wait is over (the pool pumps)
   * @param random - a source of numbers in `[0, 1)` for the jitter; tests pass their own
   */
  constructor(onRetry: () => void, random: () => number = Math.random) {
    this.onRetry = onRetry
    this.random = random
  }

  /** The delay after the `failures`-th failure in a row, jitter included, in ms. */
  delayAfter(failures: number): number {
    const ceiling = Math.min(CAP_MS, BASE_MS * 2 ** Math.min(failures - 1, 16))
    return Math.round(ceiling / 2 + (this.random() * ceiling) / 2)
  }

  /** Records a failed connect at `now`; returns the delay before the next attempt, in ms. */
  failed(error: Error, now: number): number {
    this.lastError = error
    this.failures++
    const delay = this.delayAfter(this.failures)
    this.retryAt = now + delay
    return delay
  }

  /**
   * Records why a connect failed without counting it as a failure in a row: for a failure handed
   * to its caller at once, after which the next connect needs no delay, but a later acquire
   * timeout should still name its cause.
   */
  noted(error: Error): void {
    this.lastError = error
  }

  /** Records a successful connect: the next attempts need not wait. */
  succeeded(): void {
    this.failures = 0
    this.lastError = undefined
  }

  /**
   * Whether the pool must still wait at `now` before it connects again. If so, a timer calls
   * `onRetry` when the wait is over; it keeps the process alive only while `keepAlive` (someone
   * waits for a connection: a caller waiting for ever has no deadline timer of its own, whereas
   * a retry only to refill `min` must not hold the process).
   */
  waiting(now: number, keepAlive: boolean): boolean {
    if (now >= this.retryAt) return false
    if (this.timer === undefined) {
      this.timer = setTimeout(
        () => {
          this.timer = undefined
          this.onRetry()
        },
        Math.max(0, this.retryAt - now),
      )
    }
    if (keepAlive) this.timer.ref()
    else this.timer.unref()
    return true
  }

  /** Lets the pending wake-up, if any, stop holding the process: nobody waits for it now. */
  release(): void {
    this.timer?.unref()
  }

  /** Cancels the pending wake-up, if any (the pool is closing). */
  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
  }
}
