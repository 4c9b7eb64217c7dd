import type { DialectTarget } from '../core/dialect.js'

/** How one driver reads where it connects: its URL key, its defaults, and its environment. */
export interface TargetRules {
  /** The options key that may hold a URL (`connectionString`, `uri`). */
  readonly urlKey: string
  /** The key of a Unix socket path (mysql2's `socketPath`), if the driver has one. */
  readonly socketKey?: string | undefined
  /** The port when none is given. */
  readonly defaultPort: number
  /** The environment variables the driver falls back on (pg's `PGHOST`, …), if any. */
  readonly env?: { host: string; port: string; database: string; user: string } | undefined
  /** The database when none is given is the user's (pg's rule). */
  readonly databaseIsUser?: boolean | undefined
}

type Fields = {
  host?: unknown
  port?: unknown
  database?: unknown
  user?: unknown
  socket?: unknown
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined
}

function decoded(value: string): string {
  try {
    return decodeURIComponent(value)
  } catch {
    return value
  }
}

/** The parts of a connection URL that say where it goes: never its user info or password. */
function fieldsOfUrl(url: string): Fields {
  // pg's plain form: a socket directory, then optionally a database name.
  if (url.startsWith('/')) {
    const [host, database] = url.split(' ')
    return { host, database }
  }
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return {}
  }
  const query = parsed.searchParams
  if (parsed.protocol === 'socket:') {
    return { host: decoded(parsed.pathname), database: query.get('db') ?? undefined }
  }
  return {
    host: query.get('host') ?? (parsed.hostname === '' ? undefined : decoded(parsed.hostname)),
    port: parsed.port === '' ? undefined : Number(parsed.port),
    database: parsed.pathname.length > 1 ? decoded(parsed.pathname.slice(1)) : undefined,
    user: parsed.username === '' ? undefined : decoded(parsed.username),
  }
}

/**
 * Where a driver with these rules connects for `config` (a URL, an options object, or nothing),
 * as the pool's default name shows it: `server.address`, `server.port` and `db.namespace`. A URL
 * wins over the object's own fields (as pg and mysql2 read them); the environment and the
 * driver's defaults fill the rest. A socket has no port.
 */
export function serverTarget(config: unknown, rules: TargetRules): DialectTarget {
  let fields: Fields = {}
  if (typeof config === 'string') fields = fieldsOfUrl(config)
  else if (typeof config === 'object' && config !== null) {
    const options = config as Record<string, unknown>
    const url = text(options[rules.urlKey])
    fields = {
      host: options.host,
      port: options.port,
      database: options.database,
      user: options.user,
      socket: rules.socketKey === undefined ? undefined : options[rules.socketKey],
      ...(url === undefined ? {} : definedOnly(fieldsOfUrl(url))),
    }
  }
  const env = rules.env === undefined ? undefined : process.env
  const socket = text(fields.socket)
  const address = socket ?? text(fields.host) ?? text(env?.[rules.env?.host ?? '']) ?? 'localhost'
  const port = Number(fields.port ?? env?.[rules.env?.port ?? ''] ?? rules.defaultPort)
  const user = rules.databaseIsUser
    ? (text(fields.user) ?? text(env?.[rules.env?.user ?? '']))
    : undefined
  const namespace = text(fields.database) ?? text(env?.[rules.env?.database ?? '']) ?? user
  // pg takes a host that starts with '/' as a socket directory: no port either.
  const local = socket !== undefined || address.startsWith('/')
  return {
    address,
    port: local || !Number.isInteger(port) || port <= 0 ? undefined : port,
    namespace,
  }
}

function definedOnly(fields: Fields): Fields {
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(fields)) if (value !== undefined) out[key] = value
  return out
}
