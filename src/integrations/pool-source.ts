import type { Pool } from '../core/pool.js'
import { poolOf } from '../core/pool-of.js'
import type { RequestScopeOptions } from '../core/request-scope.js'

/**
 * What a framework integration accepts as its pool: a core `Pool`, or a drop-in facade from
 * `lifeguard/pg` (`Pool`) or `lifeguard/mysql2` (a pool from `createPool`, or its `promise()`).
 */
export type PoolSource<C> = Pool<C> | object

/**
 * The core pool behind `source`; throws a `TypeError` naming what is accepted. With `options`,
 * it also checks the scope options at once (`InvalidOptionError`), so that a bad one fails when
 * the middleware is made rather than on a request.
 */
export function poolFrom<C>(
  source: PoolSource<C>,
  where: string,
  ...options: Array<RequestScopeOptions | undefined>
): Pool<C> {
  const pool = corePool(source, where)
  // Opening a scope checks its options; one that never borrows costs nothing to end.
  for (const each of options) void pool.openScope(each).end()
  return pool
}

function corePool<C>(source: PoolSource<C>, where: string): Pool<C> {
  if (typeof source === 'object' && source !== null) {
    // By shape rather than `instanceof`, so a Pool from another copy of lifeguard (ESM next to
    // CJS) is accepted too.
    const pool = source as Partial<Pool<C>>
    if (typeof pool.openScope === 'function' && typeof pool.acquire === 'function') {
      return source as Pool<C>
    }
    // A facade keeps its pool under a registry symbol, found from either build too.
    const lent = poolOf<C>(source)
    if (lent !== undefined) return lent
  }
  throw new TypeError(
    `${where}: expected a lifeguard Pool (createPool), a Pool from lifeguard/pg, or a pool from lifeguard/mysql2 or lifeguard/mysql2/promise; got ${source === null ? 'null' : typeof source}`,
  )
}
