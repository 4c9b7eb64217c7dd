import { Pool } from './core/pool.js'
import type { PoolOptions } from './core/pool-options.js'

/**
 * Creates a connection pool over a dialect. Options are validated here: an invalid one throws
 * `InvalidOptionError`, naming the option, the value and what is allowed.
 *
 * @example
 * ```ts
 * import { createPool } from 'sqlpool'
 * import { postgres } from 'sqlpool/postgres'
 *
 * const pool = createPool({ dialect: postgres('postgres://localhost/app'), max: 10 })
 * const { rows } = await pool.use((client) => client.query('SELECT now()'))
 * await pool.close()
 * ```
 */
export function createPool<C>(options: PoolOptions<C>): Pool<C> {
  return new Pool(options)
}
