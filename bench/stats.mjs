/**
 * Summaries of repeated measurements: medians with their spread, percentiles, and ratios.
 * Medians, because a shared 2-core machine gives outliers that a mean would follow.
 */

/**
 * A set of samples reduced to its median and spread.
 * @typedef {{ samples: number[], median: number, min: number, max: number, q1: number, q3: number }} Summary
 */

/**
 * The `p`-quantile (0…1) of ascending `sorted`, interpolated between neighbours.
 * @param {number[]} sorted
 * @param {number} p
 * @returns {number}
 */
export function quantile(sorted, p) {
  if (sorted.length === 0) return Number.NaN
  const at = (sorted.length - 1) * p
  const lo = Math.floor(at)
  const hi = Math.ceil(at)
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo)
}

/**
 * Reduces samples to their median, min, max and quartiles.
 * @param {number[]} samples
 * @returns {Summary}
 */
export function summarize(samples) {
  const sorted = [...samples].sort((a, b) => a - b)
  return {
    samples,
    median: quantile(sorted, 0.5),
    min: sorted[0] ?? Number.NaN,
    max: sorted[sorted.length - 1] ?? Number.NaN,
    q1: quantile(sorted, 0.25),
    q3: quantile(sorted, 0.75),
  }
}

/**
 * `a ÷ b`, or NaN when either is missing.
 * @param {number | undefined} a
 * @param {number | undefined} b
 * @returns {number}
 */
export function ratio(a, b) {
  if (a === undefined || b === undefined || !(b > 0)) return Number.NaN
  return a / b
}

/**
 * A rate in the units a reader expects: 5.4M, 760k, 950.
 * @param {number} n
 * @returns {string}
 */
export function rate(n) {
  if (!Number.isFinite(n)) return '–'
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`
  if (n >= 1e3) return `${(n / 1e3).toFixed(2)}k`
  return n.toFixed(0)
}

/**
 * A ratio such as `0.97×`.
 * @param {number} n
 * @returns {string}
 */
export function times(n) {
  return Number.isFinite(n) ? `${n.toFixed(2)}×` : '–'
}

/**
 * A median with its min–max spread, each formatted by `format`.
 * @param {Summary | undefined} s
 * @param {(n: number) => string} format
 * @returns {string}
 */
export function spread(s, format) {
  if (s === undefined || s.samples.length === 0) return '–'
  return `${format(s.median)} (${format(s.min)}–${format(s.max)})`
}
