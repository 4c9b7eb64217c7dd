import { InvalidOptionError } from '../core/errors.js'
import { metricsOf } from '../core/metrics-subscribers.js'
import type { Pool } from '../core/pool.js'
import { poolOf } from '../core/pool-of.js'
import { describe, rejectUnknownKeys } from '../core/pool-options.js'

/**
 * Whether `value` has what the metrics read of a lifeguard `Pool`, at attach and at every
 * collect: `stats()`, `on`/`off` and `options` (duck-typed: an ES module and a CommonJS copy of
 * lifeguard have two `Pool` classes). Checked at the attach, so that a wrong object fails there
 * and not in every scrape.
 */
function isPool(value: object): value is Pool<unknown> {
  const pool = value as Partial<Record<'stats' | 'options', unknown>>
  return (
    typeof pool.stats === 'function' &&
    typeof pool.options === 'object' &&
    pool.options !== null &&
    metricsOf(value) !== undefined
  )
}

/** A hint for a driver's own pool passed where a lifeguard pool is expected. */
function driverPoolHint(value: object): string {
  const pool = value as Record<string, unknown>
  if (typeof pool.connect === 'function' && 'totalCount' in pool && 'waitingCount' in pool) {
    return "; this looks like pg's own Pool: make it with the Pool of lifeguard/pg instead, whose pools are lifeguard pools"
  }
  if (typeof pool.getConnection === 'function' && '_allConnections' in pool) {
    return "; this looks like mysql2's own pool: make it with the createPool of lifeguard/mysql2 instead"
  }
  return ''
}

/**
 * The lifeguard pool an exporter instruments: `target` itself when it is a lifeguard `Pool`, or
 * the pool under a `lifeguard/pg` or `lifeguard/mysql2` facade (see `lifeguardOf`). Also checks
 * the exporter's options object against its `known` keys. Throws an `InvalidOptionError` naming
 * `caller` and the argument (`pool`, `options`) for anything else.
 */
export function meteredPool(
  target: unknown,
  options: unknown,
  known: readonly string[],
  caller: string,
): Pool<unknown> {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new InvalidOptionError(
      'options',
      `Invalid argument options of ${caller}(): ${describe(options)}; expected an object or undefined`,
    )
  }
  rejectUnknownKeys(options, known, caller)
  if (typeof target === 'object' && target !== null) {
    const under = poolOf(target)
    if (under !== undefined) return under
    if (isPool(target)) return target
  }
  const hint = typeof target === 'object' && target !== null ? driverPoolHint(target) : ''
  throw new InvalidOptionError(
    'pool',
    `Invalid argument pool of ${caller}(): ${describe(target)}; expected a lifeguard Pool or a facade from lifeguard/pg or lifeguard/mysql2${hint}`,
  )
}
