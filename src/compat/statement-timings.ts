/**
 * A statement that runs this long on its own, on average, is slow: whatever is pipelined behind
 * it waits that long too, so it may share a busy connection but nobody joins behind it
 * (`acquire({ shared: 'last' })`). See docs/performance.md#pipelining.
 */
export const SLOW_STATEMENT_MS = 10

/** How much each new sample moves the average. */
const WEIGHT = 0.3
/** The most statement texts remembered; past it the memory starts again. */
const MAX_TEXTS = 1000
/** A longer text is most likely built with its values inline, and never seen again. */
const MAX_TEXT_LENGTH = 2000

/**
 * How long each statement text has run on its own, lately (a moving average of its own time on
 * the server: from when it was sent, or from when the statement ahead of it on the same
 * connection answered, to its own answer). ORMs send the same few texts again and again, so a
 * text that ran long before most likely runs long again.
 */
export class StatementTimings {
  readonly #averages = new Map<string, number>()

  /** Adds one run of `text` that took `ms` on its own. */
  record(text: string, ms: number): void {
    if (text.length > MAX_TEXT_LENGTH) return
    const average = this.#averages.get(text)
    if (average === undefined) {
      if (this.#averages.size >= MAX_TEXTS) this.#averages.clear()
      this.#averages.set(text, ms)
    } else {
      this.#averages.set(text, average + WEIGHT * (ms - average))
    }
  }

  /** Whether `text` has lately run for {@link SLOW_STATEMENT_MS} or more on its own. */
  slow(text: string): boolean {
    const average = this.#averages.get(text)
    return average !== undefined && average >= SLOW_STATEMENT_MS
  }
}
