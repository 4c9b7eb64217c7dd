/** How many random ends of life a new connection chooses from. */
const CANDIDATES = 32

/**
 * Chooses a connection's end of life in `[latest - band, latest]`: of a few random candidates,
 * the one farthest from the other connections' ends of life (Mitchell's best candidate). So
 * connections made together, as when the pool fills up, are not replaced together, even when
 * the band is short (10% of a 1 s lifetime is 100 ms). Pure but for `random`.
 *
 * @param latest - the end of life without jitter: creation time plus `maxLifetime`
 * @param band - how much earlier it may be
 * @param others - the ends of life of the pool's other open connections
 * @param random - a source of numbers in `[0, 1)`; tests pass their own
 */
export function spreadEndOfLife(
  latest: number,
  band: number,
  others: readonly number[],
  random: () => number = Math.random,
): number {
  let best = latest - random() * band
  let bestGap = -1
  for (let i = 0; i < CANDIDATES; i++) {
    const candidate = latest - random() * band
    let gap = Number.POSITIVE_INFINITY
    for (const other of others) gap = Math.min(gap, Math.abs(other - candidate))
    if (gap > bestGap) {
      best = candidate
      bestGap = gap
    }
  }
  return best
}
