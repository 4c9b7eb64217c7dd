import type { Pool } from '../core/pool.js'

const owners = new WeakMap<object, Pool<unknown>>()

/** @internal Records that `facade` lends from `pool`. */
export function registerFacade(facade: object, pool: Pool<unknown>): void {
  owners.set(facade, pool)
}

/**
 * The sqlpool `Pool` under a drop-in facade: a `sqlpool/pg` `Pool` or `Client`, a
 * `sqlpool/mysql2` pool, its `promise()` wrapper or a connection it made. Use it for `stats()`
 * and events. Throws a `TypeError` for anything else.
 *
 * @example
 * ```ts
 * const pool = new Pool({ connectionString })
 * console.log(sqlpoolOf(pool).stats())
 * ```
 */
export function sqlpoolOf<C = unknown>(facade: object): Pool<C> {
  const found = owners.get(facade) ?? owners.get((facade as { pool?: object }).pool ?? owners)
  if (found === undefined) {
    throw new TypeError(
      'sqlpoolOf: expected a facade from sqlpool/pg or sqlpool/mysql2 (a Pool, a Client, a pool from createPool, its promise() wrapper or a connection from createConnection)',
    )
  }
  return found as Pool<C>
}
