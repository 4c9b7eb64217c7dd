import { sqlpoolOf } from '../compat/sqlpool-of.js'
import type { Pool } from '../core/pool.js'

/**
 * What a framework integration accepts as its pool: a core `Pool`, or a drop-in facade from
 * `sqlpool/pg` (`Pool`) or `sqlpool/mysql2` (a pool from `createPool`, or its `promise()`).
 */
export type PoolSource<C> = Pool<C> | object

/** The core pool behind `source`; throws a `TypeError` naming what is accepted. */
export function poolFrom<C>(source: PoolSource<C>, where: string): Pool<C> {
  if (typeof source === 'object' && source !== null) {
    // By shape rather than `instanceof`, so a Pool from another copy of sqlpool (ESM next to
    // CJS) is accepted too.
    const pool = source as Partial<Pool<C>>
    if (typeof pool.openScope === 'function' && typeof pool.acquire === 'function') {
      return source as Pool<C>
    }
    try {
      return sqlpoolOf<C>(source)
    } catch {}
  }
  throw new TypeError(
    `${where}: expected a sqlpool Pool (createPool), a Pool from sqlpool/pg or a pool from sqlpool/mysql2; got ${source === null ? 'null' : typeof source}`,
  )
}
