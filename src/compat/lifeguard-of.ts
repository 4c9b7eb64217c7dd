import type { Pool } from '../core/pool.js'

const owners = new WeakMap<object, Pool<unknown>>()

/** @internal Records that `facade` lends from `pool`. */
export function registerFacade(facade: object, pool: Pool<unknown>): void {
  owners.set(facade, pool)
}

/**
 * The lifeguard `Pool` under a drop-in facade: a `lifeguard/pg` `Pool` or `Client`, a
 * `lifeguard/mysql2` pool, its `promise()` wrapper or a connection it made. Use it for `stats()`
 * and events. Throws a `TypeError` for anything else.
 *
 * @example
 * ```ts
 * const pool = new Pool({ connectionString })
 * console.log(lifeguardOf(pool).stats())
 * ```
 */
export function lifeguardOf<C = unknown>(facade: object): Pool<C> {
  const found = owners.get(facade) ?? owners.get((facade as { pool?: object }).pool ?? owners)
  if (found === undefined) {
    throw new TypeError(
      'lifeguardOf: expected a facade from lifeguard/pg or lifeguard/mysql2 (a Pool, a Client, a pool from createPool, its promise() wrapper or a connection from createConnection)',
    )
  }
  return found as Pool<C>
}
