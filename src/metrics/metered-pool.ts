import { metricsOf } from '../core/metrics-subscribers.js'
import type { Pool } from '../core/pool.js'
import { poolOf } from '../core/pool-of.js'
import { describe, rejectUnknownKeys } from '../core/pool-options.js'

/** Whether `value` has the methods of a lifeguard `Pool` that metrics use (duck-typed: an ES module and a CommonJS copy of lifeguard have two `Pool` classes). */
function isPool(value: object): value is Pool<unknown> {
  const pool = value as Partial<Record<'stats', unknown>>
  return typeof pool.stats === 'function' && metricsOf(value) !== undefined
}

/**
 * The lifeguard pool an exporter instruments: `target` itself when it is a lifeguard `Pool`, or
 * the pool under a `lifeguard/pg` or `lifeguard/mysql2` facade (see `lifeguardOf`). Also checks
 * the exporter's options object against its `known` keys. Throws a `TypeError` naming `caller`
 * for anything else.
 */
export function meteredPool(
  target: unknown,
  options: unknown,
  known: readonly string[],
  caller: string,
): Pool<unknown> {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`${caller}: options must be an object, got ${describe(options)}`)
  }
  rejectUnknownKeys(options, known, caller)
  if (typeof target === 'object' && target !== null) {
    const under = poolOf(target)
    if (under !== undefined) return under
    if (isPool(target)) return target
  }
  throw new TypeError(
    `${caller}: expected a lifeguard Pool or a facade from lifeguard/pg or lifeguard/mysql2, got ${describe(target)}`,
  )
}
