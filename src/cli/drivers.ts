/**
 * The parts of pg and mysql2 the CLI uses, typed structurally (as kysely types its drivers) so
 * that both stay optional peer dependencies: the CLI loads the one the URL needs, on demand.
 */

/** A query result as far as the CLI reads one. */
export interface PgResult {
  rows: Array<Record<string, unknown>>
}

/** pg's `Client`, as far as the CLI uses it. */
export interface PgClient {
  connect(): Promise<void>
  query(sql: string, params?: unknown[]): Promise<PgResult>
  end(): Promise<void>
  on(event: 'error', listener: (error: Error) => void): unknown
}

/** pg's `Pool`, as far as the CLI uses it. */
export interface PgPool {
  query(sql: string, params?: unknown[]): Promise<PgResult>
  end(): Promise<void>
  on(event: 'error', listener: (error: Error) => void): unknown
}

/** The `pg` module. */
export interface PgModule {
  Client: new (config: { connectionString: string; connectionTimeoutMillis?: number }) => PgClient
  Pool: new (config: {
    connectionString: string
    max: number
    connectionTimeoutMillis?: number
  }) => PgPool
}

/** A mysql2 promise connection, as far as the CLI uses it. */
export interface MysqlConnection {
  query(sql: string, params?: unknown[]): Promise<[unknown, unknown]>
  ping(): Promise<void>
  end(): Promise<void>
  destroy(): void
  on(event: 'error', listener: (error: Error) => void): unknown
}

/** A mysql2 promise pool, as far as the CLI uses it. */
export interface MysqlPool {
  query(sql: string, params?: unknown[]): Promise<[unknown, unknown]>
  end(): Promise<void>
  on(event: 'error', listener: (error: Error) => void): unknown
}

/** The `mysql2/promise` module. */
export interface MysqlModule {
  createConnection(config: { uri: string; connectTimeout?: number }): Promise<MysqlConnection>
  createPool(config: {
    uri: string
    connectionLimit: number
    waitForConnections: boolean
    queueLimit: number
    connectTimeout?: number
  }): MysqlPool
}

/** A driver package is not installed; the message says which and how to install it. */
export class DriverMissingError extends Error {
  override readonly name = 'DriverMissingError'
}

function missing(error: unknown, pkg: string): boolean {
  const code = (error as { code?: unknown } | null)?.code
  return (
    (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') &&
    String((error as Error).message).includes(pkg)
  )
}

/** Loads `pg`, or throws {@link DriverMissingError} saying to install it. */
export async function loadPg(): Promise<PgModule> {
  try {
    const module = (await import('pg')) as unknown as { default?: PgModule } & PgModule
    return module.default ?? module
  } catch (error) {
    if (missing(error, 'pg')) {
      throw new DriverMissingError('a postgres:// URL needs the pg package: npm install pg')
    }
    throw error
  }
}

/** Loads `mysql2/promise`, or throws {@link DriverMissingError} saying to install it. */
export async function loadMysql2(): Promise<MysqlModule> {
  try {
    const module = (await import('mysql2/promise')) as unknown as {
      default?: MysqlModule
    } & MysqlModule
    return module.default ?? module
  } catch (error) {
    if (missing(error, 'mysql2')) {
      throw new DriverMissingError('a mysql:// URL needs the mysql2 package: npm install mysql2')
    }
    throw error
  }
}

/** The server family a URL names, from its scheme. */
export function kindOfUrl(url: string): 'postgres' | 'mysql' {
  return /^postgres(ql)?:/i.test(url) ? 'postgres' : 'mysql'
}
