import type { ConnectionOptions } from 'mysql2'
import type { Dialect } from '../core/dialect.js'
import { checkConnectionArgument } from './connection-argument.js'
import { MysqlDialect } from './mysql-dialect.js'
import { type MysqlConnection, PromiseMysqlDialect } from './mysql-promise-dialect.js'

/** Thrown by this entry's factory when its driver package is not installed. */
export { DriverMissingError } from '../core/errors.js'
export type { MysqlServerInfo } from './mysql-dialect.js'
export type { MysqlConnection } from './mysql-promise-dialect.js'

/**
 * Creates the MySQL and MariaDB dialect: each pooled connection is a mysql2/promise connection
 * ({@link MysqlConnection}: `await connection.query(sql)` resolves to `[rows, fields]`), over
 * mysql2's callback connection (`connection.connection`), made from `config`, a URL or mysql2's
 * `ConnectionOptions`, passed to mysql2 unchanged, TLS options included. It pings with COM_PING,
 * resets with ROLLBACK (`'rollback'`) or COM_RESET_CONNECTION (`'session'`), and reads
 * `wait_timeout` and `max_connections` on the first connection. Throws `DriverMissingError`
 * when `mysql2` is not installed.
 *
 * @example
 * ```ts
 * import { createPool } from 'lifeguard'
 * import { mysql } from 'lifeguard/mysql'
 *
 * const pool = createPool({ dialect: mysql('mysql://app@localhost/app'), max: 10 })
 * const [rows] = await pool.use((connection) => connection.query('SELECT NOW() AS now'))
 * ```
 */
export function mysql(config?: string | ConnectionOptions): Dialect<MysqlConnection> {
  // At the call, naming only a URL's scheme: a mistake would otherwise surface at the first connect.
  checkConnectionArgument(config, {
    factory: 'mysql',
    schemes: ['mysql', 'mariadb'],
    urlKey: 'uri',
    strings: 'a mysql:// or mariadb:// URL',
    object: 'a mysql2 ConnectionOptions object',
  })
  return new PromiseMysqlDialect(new MysqlDialect(config))
}
