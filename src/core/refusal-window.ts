/** The first window after a server-level read-only refusal flushed the pool, in ms. */
const FIRST_MS = 25
/** The longest window: a server that stays read-only is flushed at most once per 5 s. */
const CAP_MS = 5_000

/**
 * How often a server-level read-only refusal may retire the older connections (a flush). With
 * `targetSessionAttrs: 'any'` every connect to a server that stays read-only succeeds, so the
 * connect backoff never grows, and a flush per refusal would replace the whole pool again and
 * again. After a flush, the next one waits for a window that doubles while refusals go on
 * (25 ms, 50 ms, … capped at 5 s, as {@link ConnectBackoff}'s capped exponential) and starts
 * from 25 ms again once a whole window passes without a refusal. Within a window, a refused
 * connection retires only itself.
 */
export class RefusalWindow {
  /** Flushes in the current streak of refusals. */
  private flushes = 0
  /** When the current window ends, on the monotonic clock. */
  private until = Number.NEGATIVE_INFINITY
  /** When the last refusal was seen, on the monotonic clock. */
  private lastRefusalAt = Number.NEGATIVE_INFINITY

  /** The window after the `flushes`-th flush in a row, in ms. */
  static windowAfter(flushes: number): number {
    return Math.min(CAP_MS, FIRST_MS * 2 ** Math.min(flushes - 1, 16))
  }

  /**
   * Records a server-level refusal at `now`; returns whether it may flush the older connections
   * (and, if so, opens the next window).
   */
  refused(now: number): boolean {
    const quiet = now - this.lastRefusalAt
    this.lastRefusalAt = now
    if (now < this.until) return false
    // A whole window passed with no refusal: the refusals had stopped.
    if (quiet > RefusalWindow.windowAfter(Math.max(1, this.flushes))) this.flushes = 0
    this.flushes++
    this.until = now + RefusalWindow.windowAfter(this.flushes)
    return true
  }
}
