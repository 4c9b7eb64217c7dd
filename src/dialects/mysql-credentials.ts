import type { Connection } from 'mysql2'

/** The properties of mysql2's `config` that hold a credential. */
export const MYSQL_SECRET_KEYS = [
  'password',
  'password1',
  'password2',
  'password3',
  'passwordSha1',
] as const

/** Makes a property non-enumerable, so that `util.inspect` leaves it out; it keeps its value. */
function hide(target: Record<string, unknown>, key: string): void {
  if (!Object.hasOwn(target, key)) return
  Object.defineProperty(target, key, {
    value: target[key],
    enumerable: false,
    writable: true,
    configurable: true,
  })
}

function configOf(connection: Connection): Record<string, unknown> | undefined {
  const config = (connection as unknown as { config?: unknown }).config
  return typeof config === 'object' && config !== null
    ? (config as Record<string, unknown>)
    : undefined
}

/**
 * Hides the credentials on the driver's copy of the config while it connects. mysql2 keeps them
 * as plain properties, so `util.inspect(connection)` would print them; non-enumerable, they
 * still serve the handshake.
 */
export function hideCredentials(connection: Connection): void {
  const config = configOf(connection)
  if (config !== undefined) hideConfigCredentials(config)
}

/**
 * Hides the credentials of one of mysql2's config objects (a `ConnectionConfig`, or a pool's
 * `config.connectionConfig`), its TLS key and passphrase included. They keep their values.
 */
export function hideConfigCredentials(config: Record<string, unknown>): void {
  for (const key of MYSQL_SECRET_KEYS) hide(config, key)
  const ssl = config.ssl
  if (typeof ssl === 'object' && ssl !== null) {
    hide(ssl as Record<string, unknown>, 'key')
    hide(ssl as Record<string, unknown>, 'passphrase')
  }
}

/**
 * Each authenticated connection's credentials, moved off its config: mysql2 copies the config,
 * password included, into the options of every query it runs (`ConnectionConfig.queryOptions`),
 * so a connection inspected mid-query would show the password otherwise.
 */
const credentials = new WeakMap<Connection, Record<string, unknown>>()

/** Moves the credentials from the connection's config into {@link credentials}. */
function stashCredentials(connection: Connection): void {
  const config = configOf(connection)
  if (config === undefined) return
  const saved: Record<string, unknown> = {}
  for (const key of MYSQL_SECRET_KEYS) {
    if (config[key] === undefined) continue
    saved[key] = config[key]
    config[key] = undefined
  }
  credentials.set(connection, saved)
}

type ChangeUser = (options?: unknown, callback?: (error: unknown) => void) => unknown

/**
 * Takes the credentials off an authenticated connection's config, and keeps `changeUser()`
 * working without them: for the same user it supplies the stashed ones, and afterwards it stashes
 * whatever the change left on the config (mysql2 writes the new password there). The replacement
 * `changeUser` is an own, non-enumerable property: the connection stays a genuine mysql2 connection.
 */
export function stashCredentialsAfterConnect(connection: Connection): void {
  stashCredentials(connection)
  const original = (connection as unknown as { changeUser: ChangeUser }).changeUser
  const changeUser: ChangeUser = (options, callback) => {
    let opts = options as Record<string, unknown> | undefined
    let done = callback
    if (typeof opts === 'function') {
      done = opts as unknown as (error: unknown) => void
      opts = undefined
    }
    const config = configOf(connection)
    const sameUser = opts?.user === undefined || opts.user === config?.user
    const merged = sameUser ? { ...credentials.get(connection), ...opts } : { ...opts }
    const command = original.call(connection, merged, (error: unknown) => {
      stashCredentials(connection)
      done?.(error)
    })
    // The ChangeUser command carries the password while it is on the wire (it is the fallback
    // of a 'session' reset on a mysql2 without reset()): hide it there too.
    if (typeof command === 'object' && command !== null) {
      for (const key of MYSQL_SECRET_KEYS) hide(command as Record<string, unknown>, key)
    }
    return command
  }
  Object.defineProperty(connection, 'changeUser', {
    value: changeUser,
    enumerable: false,
    writable: true,
    configurable: true,
  })
}
