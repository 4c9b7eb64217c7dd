const UNITS: Array<[name: string, ms: number]> = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['min', 60_000],
  ['s', 1_000],
]

/**
 * Formats a duration in ms the way a person reads it: `8 h`, `7 h 12 min`, `54 s`, `1.5 s`,
 * `250 ms`; `off` for `0`, `Infinity` and `null` (a setting that is off). At most two non-zero
 * units, the larger first, so `28800000` reads `8 h` and `25920000` reads `7 h 12 min`.
 */
export function humanDuration(ms: number | null): string {
  if (ms === null || ms === 0 || !Number.isFinite(ms)) return 'off'
  if (ms < 1_000) return `${Math.round(ms * 100) / 100} ms`
  if (ms < 60_000) return `${Math.round(ms / 100) / 10} s`
  const parts: string[] = []
  let rest = Math.round(ms / 1_000) * 1_000
  for (const [name, size] of UNITS) {
    if (parts.length === 2) break
    const n = Math.floor(rest / size)
    if (n > 0) {
      parts.push(`${n} ${name}`)
      rest -= n * size
    }
  }
  return parts.join(' ')
}
