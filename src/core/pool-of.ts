import type { Pool } from './pool.js'

/**
 * The key under which an object that lends from a lifeguard pool (a `lifeguard/pg` or
 * `lifeguard/mysql2` facade) keeps that pool. A registry symbol (`Symbol.for`), not a module's
 * WeakMap: when both the ES module and the CommonJS build of lifeguard are loaded, a facade made
 * by one is still found by the other, as the error brand does for `instanceof`.
 */
const POOL = Symbol.for('lifeguard.pool')

/**
 * Records that `holder` lends from `pool`. The property is not enumerable, so it stays out of
 * `Object.keys`, spreads, JSON and `util.inspect`; it can be set again (a `Client` that
 * reconnects borrows from a new pool).
 */
export function attachPool(holder: object, pool: Pool<unknown>): void {
  Object.defineProperty(holder, POOL, {
    value: pool,
    enumerable: false,
    writable: true,
    configurable: true,
  })
}

/**
 * The lifeguard pool that `holder` lends from, or `undefined`. Also looks at `holder.pool`, for
 * mysql2's promise wrapper, which keeps the callback pool it wraps there.
 */
export function poolOf<C = unknown>(holder: object): Pool<C> | undefined {
  const own = (holder as Record<symbol, unknown>)[POOL]
  if (own !== undefined) return own as Pool<C>
  const inner = (holder as { pool?: unknown }).pool
  if (typeof inner !== 'object' || inner === null) return undefined
  return (inner as Record<symbol, unknown>)[POOL] as Pool<C> | undefined
}
