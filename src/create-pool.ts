import type { Dialect } from './core/dialect.js'
import { InvalidOptionError } from './core/errors.js'
import { Pool } from './core/pool.js'
import { describe, type PoolOptions } from './core/pool-options.js'
import { mysql } from './dialects/mysql.js'
import { postgres } from './dialects/postgres.js'
import { sqlite } from './dialects/sqlite.js'

/**
 * The options of {@link createPool} with a database URL instead of a dialect: every pool option
 * but `dialect`, and `url`, whose scheme picks the dialect.
 */
export type UrlPoolOptions<C> = Omit<PoolOptions<C>, 'dialect'> & {
  /**
   * `postgres://…` or `postgresql://…` (pg), `mysql://…` or `mariadb://…` (mysql2),
   * `sqlite:///absolute/path` or `sqlite::memory:` (better-sqlite3). PostgreSQL and MySQL URLs go
   * to the driver unchanged, query parameters (`sslmode`, `ssl`, …) included.
   */
  url: string
  /** Not with `url`: pass one or the other. */
  dialect?: undefined
}

const SCHEMES =
  'postgres://, postgresql://, mysql://, mariadb://, sqlite:///absolute/path, sqlite::memory:'

function invalidUrl(detail: string): InvalidOptionError {
  // Never echo the URL itself: it may hold a password.
  return new InvalidOptionError('url', `Invalid option url: ${detail}; expected one of ${SCHEMES}`)
}

/** The file of a `sqlite:` URL, or `':memory:'`. */
function sqliteFilename(url: string): string {
  if (/^sqlite::memory:$/i.test(url)) return ':memory:'
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw invalidUrl('not a valid sqlite URL')
  }
  if (!url.slice('sqlite:'.length).startsWith('///') || parsed.host !== '') {
    throw invalidUrl(
      'a sqlite URL names an absolute path after three slashes (sqlite:///var/app.db), not a host',
    )
  }
  if (parsed.search !== '' || parsed.hash !== '') {
    throw invalidUrl('a sqlite URL takes no query or fragment; pass options to sqlite() instead')
  }
  let path: string
  try {
    path = decodeURIComponent(parsed.pathname)
  } catch {
    throw invalidUrl('the sqlite path has a malformed %-escape')
  }
  if (path === '/' || path === '') throw invalidUrl('the sqlite URL names no file')
  // sqlite:///C:/data/app.db on Windows
  return /^\/[A-Za-z]:\//.test(path) ? path.slice(1) : path
}

/** The pool options for an in-memory SQLite database: one connection that is never recycled. */
function memoryDefaults<C>(
  options: Omit<PoolOptions<C>, 'dialect'>,
): Omit<PoolOptions<C>, 'dialect'> {
  for (const [key, allowed] of [
    ['max', 1],
    ['maxOverflow', 0],
  ] as const) {
    const value = options[key]
    if (value !== undefined && value !== allowed) {
      throw new InvalidOptionError(
        key,
        `Invalid option ${key}: ${describe(value)}; sqlite::memory: gives each connection its own empty database, so its pool has max 1 and maxOverflow 0`,
      )
    }
  }
  // Closing the only connection would drop the database: no lifetime, no idle reaping.
  return { max: 1, maxLifetime: 0, idleTimeout: 0, ...options }
}

function dialectForUrl(url: string): { dialect: Dialect<unknown>; memory: boolean } {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(url)?.[1]?.toLowerCase()
  if (scheme === undefined) throw invalidUrl('it does not start with a scheme')
  switch (scheme) {
    case 'postgres':
    case 'postgresql':
      return { dialect: postgres(url) as Dialect<unknown>, memory: false }
    case 'mysql':
    case 'mariadb':
      return { dialect: mysql(url) as Dialect<unknown>, memory: false }
    case 'sqlite': {
      const filename = sqliteFilename(url)
      return { dialect: sqlite(filename) as Dialect<unknown>, memory: filename === ':memory:' }
    }
    default:
      throw invalidUrl(`the scheme "${scheme}:" is not supported`)
  }
}

function fromUrl<C>(options: UrlPoolOptions<C> | PoolOptions<C>): PoolOptions<C> {
  const { url, dialect, ...rest } = options as Omit<PoolOptions<C>, 'dialect'> & {
    url?: unknown
    dialect?: Dialect<C> | undefined
  }
  if (url === undefined) {
    // `url: process.env.DATABASE_URL` with the variable unset, next to a dialect: fine.
    if (dialect !== undefined) return { ...rest, dialect }
    throw new InvalidOptionError(
      'url',
      `Invalid option url: undefined; expected a database URL (${SCHEMES}) or a dialect`,
    )
  }
  if (dialect !== undefined) {
    throw new InvalidOptionError(
      'url',
      'Invalid options url and dialect: pass one or the other to createPool, not both',
    )
  }
  if (typeof url !== 'string') {
    throw new InvalidOptionError('url', `Invalid option url: ${describe(url)}; expected a string`)
  }
  const picked = dialectForUrl(url)
  const poolOptions = picked.memory ? memoryDefaults(rest) : rest
  return { ...poolOptions, dialect: picked.dialect as Dialect<C> }
}

/**
 * Creates a connection pool over a dialect, or over a database URL whose scheme picks the
 * dialect. Options are validated here: an invalid one throws `InvalidOptionError`, naming the
 * option, the value and what is allowed (never the URL, which may hold a password).
 *
 * With a URL the connection type is not known from the string, so name it (`createPool<pg.Client>`)
 * or let TypeScript infer it from a typed `onConnect`.
 *
 * @example
 * ```ts
 * import { createPool } from 'lifeguard'
 * import { postgres } from 'lifeguard/postgres'
 *
 * const pool = createPool({ dialect: postgres('postgres://localhost/app'), max: 10 })
 * const { rows } = await pool.use((client) => client.query('SELECT now()'))
 * await pool.close()
 *
 * const byUrl = createPool<pg.Client>({ url: process.env.DATABASE_URL!, max: 10 })
 * ```
 */
export function createPool<C>(options: PoolOptions<C>): Pool<C>
export function createPool<C = unknown>(options: UrlPoolOptions<C>): Pool<C>
export function createPool<C>(options: PoolOptions<C> | UrlPoolOptions<C>): Pool<C> {
  if (typeof options === 'object' && options !== null && 'url' in options) {
    return new Pool(fromUrl(options))
  }
  return new Pool(options as PoolOptions<C>)
}
