import type { Connection, ConnectionOptions } from 'mysql2'
import type { Dialect, ResetMode, ServerInfo, TransactionStep } from '../core/dialect.js'
import { connectAbortable } from './connect-abortable.js'
import { DriverLoader } from './driver-loader.js'
import {
  hideCredentials,
  MYSQL_SECRET_KEYS,
  stashCredentialsAfterConnect,
} from './mysql-credentials.js'
import {
  noteServerStatus,
  trackTransactions,
  transactionState,
} from './mysql-transaction-tracker.js'
import { causes, isSocketError } from './network-errors.js'
import { redactError, secretsOfConfig } from './redact.js'
import {
  closeGracefully,
  type Destroyable,
  destroySockets,
  ignoreError,
  RELEASED_BUSY,
} from './socket-close.js'

/** What the dialect reads of a MySQL or MariaDB server: {@link ServerInfo} and one setting more. */
export interface MysqlServerInfo extends ServerInfo {
  /** `max_user_connections` for this account; `undefined` when unlimited (0). */
  maxUserConnections?: number | undefined
}

/** The `mysql2` module as far as the dialect uses it. */
interface Mysql2Module {
  createConnection(config: string | ConnectionOptions): Connection
}

/** A socket, as far as the dialect handles it. */
interface Socket extends Destroyable {
  once(event: 'close', listener: () => void): unknown
  ref?(): unknown
  unref?(): unknown
}

/** The parts of mysql2's connection that its typings leave out; checked at runtime. */
interface ConnectionInternals {
  /** The socket; a TLS socket replaces the plain one after the SSL upgrade. */
  stream?: Socket
  /** Set once the driver saw a fatal error; every later command fails. */
  _fatalError?: unknown
  /** Set once `end()` or `destroy()` was called, or the driver closed the connection itself. */
  _closing?: boolean
  /** The command on the wire, and those queued behind it. */
  _command?: unknown
  _commands?: { length: number }
  /** COM_RESET_CONNECTION; added to mysql2 in 2026 (sidorares/node-mysql2#4148), absent before. */
  reset?: (callback: (error: unknown) => void) => void
}

/**
 * Errors after which a MySQL or MariaDB session is gone, by errno: the client-library codes a
 * wrapped driver may report, and the server's own.
 */
const DISCONNECT_ERRNOS = new Set([
  2006, // CR_SERVER_GONE_ERROR: "MySQL server has gone away"
  2013, // CR_SERVER_LOST: lost connection during a query
  4031, // ER_CLIENT_INTERACTION_TIMEOUT: MySQL 8.0.24+ says so before closing an idle session
  1053, // ER_SERVER_SHUTDOWN
  1927, // ER_CONNECTION_KILLED (MariaDB): KILL during a query
  1152, // ER_ABORTING_CONNECTION
])

/** The same by mysql2's or the server's symbolic code. */
const DISCONNECT_CODES = new Set([
  'PROTOCOL_CONNECTION_LOST',
  'ER_SERVER_SHUTDOWN',
  'ER_CLIENT_INTERACTION_TIMEOUT',
  'ER_CONNECTION_KILLED',
  'CR_SERVER_GONE_ERROR',
  'CR_SERVER_LOST',
])

/** What a fresh session has that COM_RESET_CONNECTION does not give back; read once per connection. */
const INITIAL_SQL =
  'SELECT DATABASE() AS db, @@SESSION.sql_mode AS mode, @@SESSION.autocommit AS autocommit'

const STEP_SQL: Record<TransactionStep, string> = {
  begin: 'START TRANSACTION',
  commit: 'COMMIT',
  rollback: 'ROLLBACK',
}

const INSPECT_SQL =
  'SELECT @@SESSION.wait_timeout AS wait_timeout, @@GLOBAL.max_connections AS max_connections, ' +
  '@@SESSION.max_user_connections AS max_user_connections, VERSION() AS version'

const loader = new DriverLoader<Mysql2Module>('mysql2', 'lifeguard/mysql', () => import('mysql2'))

function internals(connection: Connection): ConnectionInternals {
  return connection as unknown as ConnectionInternals
}

/** Tears the socket down at once: the current one and, after a TLS upgrade, the plain one under it. */
function destroySocket(connection: Connection, plain: Socket | undefined): void {
  try {
    // Marks the connection closing, so that mysql2 does not report the close as an error.
    connection.destroy()
  } catch {
    // already closed
  }
  destroySockets(internals(connection).stream, plain)
}

/** The connection's 'connect' (after the handshake and authentication), or its first 'error'. */
function handshake(connection: Connection): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onConnect = () => {
      connection.removeListener('error', onError)
      resolve()
    }
    const onError = (error: unknown) => {
      connection.removeListener('connect', onConnect)
      reject(error)
    }
    connection.once('connect', onConnect)
    connection.once('error', onError)
  })
}

/** Whether a command is running or queued: the previous borrower's query is not over. */
function busy(connection: Connection): boolean {
  const c = internals(connection)
  return (c._command !== null && c._command !== undefined) || (c._commands?.length ?? 0) > 0
}

function run<T = unknown>(connection: Connection, sql: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    connection.query(sql, (error: unknown, result: unknown) => {
      if (error) reject(error)
      else resolve(result as T)
    })
  })
}

function callback(fn: (done: (error: unknown) => void) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    fn((error) => (error ? reject(error) : resolve()))
  })
}

/** A session as it was right after connecting: what a `'session'` reset puts back. */
interface InitialSession {
  db: string | null
  mode: string
}

/** Each connection's initial session, kept beside it rather than on it. */
const initialSessions = new WeakMap<Connection, InitialSession>()

/**
 * The MySQL and MariaDB dialect over mysql2's callback ("core") connection: what the
 * `lifeguard/mysql2` facades pool, and what `PromiseMysqlDialect` wraps for `mysql()`. It
 * keeps the config in a private field, so neither `util.inspect` nor `JSON.stringify` shows the
 * password.
 */
export class MysqlDialect implements Dialect<Connection> {
  readonly name = 'mysql'
  readonly #config: string | ConnectionOptions
  readonly #secrets: string[]

  constructor(config: string | ConnectionOptions | undefined) {
    loader.check()
    this.#config = typeof config === 'string' ? config : { ...config }
    this.#secrets = secretsOfConfig(config, MYSQL_SECRET_KEYS, 'uri')
  }

  async connect(signal: AbortSignal): Promise<Connection> {
    const mysql2 = await loader.load()
    signal.throwIfAborted()
    let connection: Connection
    try {
      // mysql2 starts connecting here; the config is copied because mysql2 adds to a URI config.
      connection = mysql2.createConnection(
        typeof this.#config === 'string' ? this.#config : { ...this.#config },
      )
    } catch (error) {
      throw redactError(error, this.#secrets)
    }
    connection.on('error', ignoreError)
    hideCredentials(connection)
    const plain = internals(connection).stream
    await connectAbortable(
      signal,
      () => handshake(connection),
      () => destroySocket(connection, plain),
      (error) => redactError(error, this.#secrets),
    )
    stashCredentialsAfterConnect(connection)
    const onAbort = () => destroySocket(connection, plain)
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      const [row] = await run<Array<{ db: string | null; mode: string; autocommit: unknown }>>(
        connection,
        INITIAL_SQL,
      )
      signal.throwIfAborted()
      if (row !== undefined) {
        initialSessions.set(connection, { db: row.db, mode: row.mode })
        trackTransactions(connection, Number(row.autocommit) === 1)
      }
    } catch (error) {
      destroySocket(connection, plain)
      throw signal.aborted ? signal.reason : redactError(error, this.#secrets)
    } finally {
      signal.removeEventListener('abort', onAbort)
    }
    return connection
  }

  close(connection: Connection, signal?: AbortSignal): Promise<void> {
    const c = internals(connection)
    const stream = c.stream
    if (stream === undefined || stream.destroyed === true) return Promise.resolve()
    if (busy(connection)) {
      // COM_QUIT would wait behind the running command (for ever, behind a paused stream).
      // Dropping the socket under mysql2 fails that command with PROTOCOL_CONNECTION_LOST, so
      // the borrower who left it does not wait for ever either.
      stream.destroy()
      return Promise.resolve()
    }
    if ((c._fatalError !== undefined && c._fatalError !== null) || c._closing === true) {
      // Dead or already closing: nothing to say goodbye to, and COM_QUIT would not be sent.
      destroySocket(connection, undefined)
      return Promise.resolve()
    }
    return closeGracefully(
      (done) => {
        stream.once('close', done)
        connection.end(() => {}) // COM_QUIT; the server closes the socket
      },
      () => stream.destroy(),
      signal,
    )
  }

  /** `KILL QUERY` for the statement running on `connection`, from a connection of its own (`Dialect.cancel`). */
  async cancel(connection: Connection, signal: AbortSignal): Promise<void> {
    const id = connection.threadId
    if (!Number.isInteger(id)) throw new Error('cannot cancel: the connection has no thread id')
    const killer = await this.connect(signal)
    try {
      await run(killer, `KILL QUERY ${id}`)
    } finally {
      // Its goodbye need not hold up the connection that the KILL freed.
      void this.close(killer, signal)
    }
  }

  ping(connection: Connection): Promise<void> {
    // COM_PING: one small packet each way, no parsing, no plan.
    return callback((done) => connection.ping(done))
  }

  inTransaction(connection: Connection): boolean {
    const state = transactionState(connection)
    return state === undefined || !(state.clean && state.autocommit)
  }

  async transact(connection: Connection, step: TransactionStep): Promise<void> {
    const result = await run<{ serverStatus?: number }>(connection, STEP_SQL[step])
    const state = transactionState(connection)
    // COMMIT and ROLLBACK end it: the OK packet says so, and the release needs no ROLLBACK then.
    if (state !== undefined && step !== 'begin' && typeof result?.serverStatus === 'number') {
      noteServerStatus(state, result.serverStatus)
    }
  }

  reset(connection: Connection, mode: ResetMode): Promise<void> | undefined {
    // A command still running belongs to the borrower who left: a stream it stopped reading
    // (mysql2 pauses the socket, so the next borrower's query would wait for ever), a query it
    // gave up waiting on (a KILL QUERY it sent may land on the next one). Close it instead of
    // lending it. But mysql2 keeps a finished command current while it runs the command's error
    // callback or emits its 'end' (where mysql2's own pool releases): look again once that has
    // returned, a microtask later, before any I/O could finish a command really running.
    if (busy(connection)) {
      return Promise.resolve().then(() => {
        if (busy(connection)) throw new Error(RELEASED_BUSY)
        return this.#resetIdle(connection, mode)
      })
    }
    return this.#resetIdle(connection, mode)
  }

  /** Resets a connection with no command running. */
  #resetIdle(connection: Connection, mode: ResetMode): Promise<void> | undefined {
    const state = transactionState(connection)
    if (mode === 'rollback') {
      // Nothing since the last reset could have opened a transaction: send nothing.
      if (state?.clean === true && state.autocommit) return undefined
      return run<{ serverStatus?: number }>(connection, 'ROLLBACK').then((result) => {
        if (state === undefined) return
        state.clean = true
        // The OK packet says whether the session is in autocommit mode; SET autocommit = 0 makes
        // every later statement open a transaction, so then every release rolls back.
        if (typeof result?.serverStatus === 'number') noteServerStatus(state, result.serverStatus)
      })
    }
    return this.#resetSession(connection).then(() => {
      // The reset's own SET statements marked it; the session is fresh, but its autocommit is
      // the server's default: the next 'rollback' (if the mode changes) finds out.
      if (state !== undefined) state.clean = false
    })
  }

  async #resetSession(connection: Connection): Promise<void> {
    const reset = internals(connection).reset
    if (typeof reset === 'function') {
      // COM_RESET_CONNECTION: rolls back, drops temporary tables, releases named locks, clears
      // user variables and prepared statements, restores session variables; mysql2 then clears
      // its own prepared-statement cache.
      await callback((done) => reset.call(connection, done))
    } else {
      // An older mysql2 without reset(): COM_CHANGE_USER to the same user resets the session
      // too, at the price of a full re-authentication.
      await callback((done) => connection.changeUser({}, done))
    }
    const initial = initialSessions.get(connection)
    if (initial === undefined) return
    // The reset keeps the current database (a borrower's USE would leak), and MariaDB's drops
    // what the handshake put into sql_mode (IGNORE_SPACE, from mysql2's CLIENT_IGNORE_SPACE):
    // put both back as a fresh connection has them.
    await run(connection, `SET SESSION sql_mode = ${connection.escape(initial.mode)}`)
    if (initial.db !== null) await run(connection, `USE ${connection.escapeId(initial.db)}`)
  }

  isDisconnect(error: unknown): boolean {
    for (const fields of causes(error)) {
      // mysql2 marks every error after which the connection is unusable as fatal.
      if (fields.fatal === true) return true
      if (typeof fields.errno === 'number' && DISCONNECT_ERRNOS.has(fields.errno)) return true
      if (typeof fields.code === 'string') {
        if (DISCONNECT_CODES.has(fields.code) || isSocketError(fields)) return true
      }
    }
    return false
  }

  ref(connection: Connection): void {
    // mysql2 has no ref()/unref() of its own: its socket (the TLS one after an upgrade) is `stream`.
    internals(connection).stream?.ref?.()
  }

  unref(connection: Connection): void {
    internals(connection).stream?.unref?.()
  }

  watch(connection: Connection, onDeath: (error?: unknown) => void): void {
    // An idle connection that the server closed (wait_timeout, KILL) emits a fatal 'error'
    // (ECONNRESET, PROTOCOL_CONNECTION_LOST) and, on a clean FIN, 'end'.
    connection.on('error', (error: unknown) => {
      if ((error as { fatal?: unknown } | null)?.fatal === true) onDeath(error)
    })
    connection.on('end', () => onDeath())
  }

  async inspect(connection: Connection): Promise<MysqlServerInfo> {
    const rows = await run<Array<Record<string, unknown>>>(connection, INSPECT_SQL)
    const row = rows[0] ?? {}
    const wait = Number(row.wait_timeout)
    const max = Number(row.max_connections)
    const perUser = Number(row.max_user_connections)
    return {
      version: typeof row.version === 'string' ? row.version : undefined,
      maxConnections: Number.isFinite(max) && max > 0 ? max : undefined,
      maxUserConnections: Number.isFinite(perUser) && perUser > 0 ? perUser : undefined,
      // wait_timeout is in seconds; the session value counts (onConnect may have lowered it).
      idleCutoffMs: Number.isFinite(wait) && wait > 0 ? wait * 1000 : undefined,
      idleCutoffSetting: 'wait_timeout',
    }
  }
}
