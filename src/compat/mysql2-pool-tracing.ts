import * as diagnostics from 'node:diagnostics_channel'

/** A connection callback, as `pool.getConnection(callback)` takes it. */
type ConnectionCallback = (error: Error | null, connection?: unknown) => void

/** What mysql2 publishes with each `getConnection`: the server the pool connects to. */
export interface PoolConnectContext {
  /** The database named in the pool's config, or `''`. */
  database: string
  /** The host (`'localhost'` when none is set) or the socket path. */
  serverAddress: string
  /** The port (3306 when none is set); `undefined` for a socket path. */
  serverPort: number | undefined
}

/** The part of mysql2's `ConnectionConfig` that the context reads. */
interface ServerConfig {
  database?: unknown
  host?: unknown
  port?: unknown
  socketPath?: unknown
}

/**
 * mysql2's `mysql2:pool:connect` tracing channel (Node's channels are global by name, so this is
 * the very channel mysql2's pools publish on); `undefined` on a Node without `tracingChannel`,
 * where mysql2 publishes nothing either.
 */
const channel =
  typeof diagnostics.tracingChannel === 'function'
    ? diagnostics.tracingChannel<unknown, PoolConnectContext & object>('mysql2:pool:connect')
    : undefined

/** Whether anybody listens, as mysql2 asks it: the aggregate getter (Node 20+) or the start channel. */
function listened(): boolean {
  if (channel === undefined) return false
  const aggregate = (channel as { hasSubscribers?: boolean }).hasSubscribers
  return aggregate ?? channel.start.hasSubscribers
}

/** The context mysql2 publishes for a pool with this connection config. */
function contextOf(config: ServerConfig): PoolConnectContext {
  const database = typeof config.database === 'string' ? config.database : ''
  if (config.socketPath) {
    return { database, serverAddress: String(config.socketPath), serverPort: undefined }
  }
  return {
    database,
    serverAddress:
      typeof config.host === 'string' && config.host !== '' ? config.host : 'localhost',
    serverPort: typeof config.port === 'number' && config.port !== 0 ? config.port : 3306,
  }
}

/**
 * Makes a facade pool's `getConnection` publish on `mysql2:pool:connect` as mysql2's own pool
 * does: one traced call per `getConnection` (those `query()` and `execute()` make included),
 * with the context `{ database, serverAddress, serverPort }` of the pool's
 * `config.connectionConfig`, `start`/`end` around the call and `asyncStart`/`asyncEnd` (and
 * `error` for a failure) around the callback. Nothing is built when nobody subscribes.
 */
export function tracePoolConnects(prototype: {
  getConnection(callback: ConnectionCallback): void
}): void {
  const getConnection = prototype.getConnection
  if (channel === undefined) return
  const traced = channel
  Object.defineProperty(prototype, 'getConnection', {
    value: function getConnectionTraced(
      this: { config: { connectionConfig: ServerConfig } },
      callback: ConnectionCallback,
    ): void {
      if (!listened() || typeof callback !== 'function') {
        getConnection.call(this, callback)
        return
      }
      traced.traceCallback(
        (cb: ConnectionCallback) => getConnection.call(this, cb),
        0,
        contextOf(this.config.connectionConfig),
        undefined,
        callback,
      )
    },
    writable: true,
    configurable: true,
    enumerable: false,
  })
  // Named as the method it stands for, in stack traces and `pool.getConnection.name`.
  Object.defineProperty(prototype.getConnection, 'name', { value: 'getConnection' })
}
