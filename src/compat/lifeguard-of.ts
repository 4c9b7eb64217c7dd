import type { Pool } from '../core/pool.js'
import { attachPool, poolOf } from '../core/pool-of.js'

/** Records that `facade` lends from `pool`, so that {@link lifeguardOf} finds it. */
export function registerFacade(facade: object, pool: Pool<unknown>): void {
  attachPool(facade, pool)
}

/**
 * The lifeguard `Pool` under a drop-in facade: a `lifeguard/pg` `Pool` or `Client`, a
 * `lifeguard/mysql2` pool, its `promise()` wrapper or a connection it made. Use it for `stats()`
 * and events. It finds a facade made by either build of lifeguard (ES module or CommonJS).
 * Throws a `TypeError` for anything else.
 *
 * @example
 * ```ts
 * const pool = new Pool({ connectionString })
 * console.log(lifeguardOf(pool).stats())
 * ```
 */
export function lifeguardOf<C = unknown>(facade: object): Pool<C> {
  const found = typeof facade === 'object' && facade !== null ? poolOf<C>(facade) : undefined
  if (found === undefined) {
    throw new TypeError(
      'lifeguardOf: expected a facade from lifeguard/pg or lifeguard/mysql2 (a Pool, a Client, a pool from createPool, its promise() wrapper or a connection from createConnection)',
    )
  }
  return found
}
