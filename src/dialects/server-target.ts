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
  /**
   * The object's own fields win over its URL's (mysql2: `if (options[key]) continue` for each
   * part of `uri`); else the URL wins (pg: `Object.assign({}, config, parse(connectionString))`).
   */
  readonly fieldsWin?: boolean | undefined
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

/** A URL's scheme with the `//` of an authority after it. */
const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//

/** A host without the brackets of an IPv6 address in a URL (`[::1]` is `::1`). */
function unbracketed(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
}

/**
 * The parts of a connection URL that say where it goes: never its user info or password. The
 * authority is split off by hand: a password with an unescaped `/`, `?` or `#` in it ends the
 * authority early (`postgres://user:1234/x@host/db`), and what follows would show the password
 * as a host and a path; such a URL, like one that does not parse, gives `undefined`. The user
 * info is dropped before the parse, which also takes a URL with an empty host and the socket
 * directory in `?host=` (`postgres://u:pw@/db?host=/var/run/postgresql`), as pg reads it.
 */
function fieldsOfUrl(url: string): Fields | undefined {
  // pg's plain form: a socket directory, then optionally a database name.
  if (url.startsWith('/')) {
    const [host, database] = url.split(' ')
    return { host, database }
  }
  const scheme = SCHEME.exec(url)?.[0]
  let user: string | undefined
  let parsed: URL
  let hostless = false
  try {
    if (scheme === undefined) {
      parsed = new URL(url)
    } else {
      const rest = url.slice(scheme.length)
      const end = rest.search(/[/?#]/)
      const authority = end === -1 ? rest : rest.slice(0, end)
      const after = end === -1 ? '' : rest.slice(end)
      if (after.includes('@')) return undefined
      const at = authority.lastIndexOf('@')
      const host = authority.slice(at + 1)
      if (at !== -1) user = text(decoded(authority.slice(0, at).split(':')[0] ?? ''))
      hostless = host === ''
      parsed = new URL(`${scheme}${hostless ? 'localhost' : host}${after}`)
    }
  } catch {
    return undefined
  }
  const query = parsed.searchParams
  if (parsed.protocol === 'socket:') {
    return { host: decoded(parsed.pathname), database: query.get('db') ?? undefined }
  }
  return {
    host:
      query.get('host') ??
      (hostless || parsed.hostname === '' ? undefined : unbracketed(decoded(parsed.hostname))),
    port: parsed.port === '' ? undefined : Number(parsed.port),
    database: parsed.pathname.length > 1 ? decoded(parsed.pathname.slice(1)) : undefined,
    user,
  }
}

/**
 * Where a driver with these rules connects for `config` (a URL, an options object, or nothing),
 * as the pool's default name shows it: `server.address`, `server.port` and `db.namespace`. A URL
 * wins over the object's own fields, or they over it (`fieldsWin`), as the driver reads them;
 * the environment and the driver's defaults fill the rest. A socket (a path) has no port.
 */
export function serverTarget(config: unknown, rules: TargetRules): DialectTarget {
  let fields: Fields = {}
  if (typeof config === 'string') {
    const ofUrl = fieldsOfUrl(config)
    // A URL we cannot read names nothing: the pool is `pool-N`, not the driver's defaults.
    if (ofUrl === undefined) return {}
    fields = ofUrl
  } else if (typeof config === 'object' && config !== null) {
    const options = config as Record<string, unknown>
    const url = text(options[rules.urlKey])
    const own: Fields = {
      host: options.host,
      port: options.port,
      database: options.database,
      user: options.user,
      socket: rules.socketKey === undefined ? undefined : options[rules.socketKey],
    }
    const parsed = url === undefined ? {} : fieldsOfUrl(url)
    if (parsed === undefined) return {}
    const ofUrl = definedOnly(parsed)
    fields = rules.fieldsWin ? { ...ofUrl, ...truthyOnly(own) } : { ...own, ...ofUrl }
  }
  const env = rules.env === undefined ? undefined : process.env
  const socket = text(fields.socket)
  const host = socket ?? text(fields.host) ?? text(env?.[rules.env?.host ?? '']) ?? 'localhost'
  const address = unbracketed(host)
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

/** The fields the driver counts as given: mysql2 skips a URL's part only for a truthy own field. */
function truthyOnly(fields: Fields): Fields {
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(fields)) if (value) out[key] = value
  return out
}

function definedOnly(fields: Fields): Fields {
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(fields)) if (value !== undefined) out[key] = value
  return out
}
