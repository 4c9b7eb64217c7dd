import type { Connection, ConnectionOptions } from 'mysql2'
import type { Connection as PromiseConnection } from 'mysql2/promise'
import type { Dialect, ResetMode, ServerInfo, TransactionStep } from '../core/dialect.js'
import { checkConnectionArgument } from './connection-argument.js'
import { DriverLoader, defaultExport } from './driver-loader.js'
import { causes, isSocketError } from './network-errors.js'
import { normalizeSecrets, redactError, secretsOfUrl } from './redact.js'

/** Thrown by this entry's factory when its driver package is not installed. */
export { DriverMissingError } from '../core/errors.js'

/** What the dialect reads of a MySQL or MariaDB server: {@link ServerInfo} and one setting more. */
export interface MysqlServerInfo extends ServerInfo {
  /** `max_user_connections` for this account; `undefined` when unlimited (0). */
  maxUserConnections?: number | undefined
}

/**
 * The connection that the {@link mysql} dialect lends: a genuine mysql2/promise `Connection`
 * (`await connection.query(sql)` gives `[rows, fields]`), wrapped once around mysql2's callback
 * connection, which `connection.connection` holds. The pool lends the same object each time for
 * the same physical connection.
 */
export interface MysqlConnection extends PromiseConnection {
  /** mysql2's callback ("core") connection under the promise API: the physical connection. */
  readonly connection: Connection
  /** The connection itself, already a promise connection: code written for `c.promise().query()` keeps working. */
  promise(): MysqlConnection
}

/** The `mysql2` module as far as the dialect uses it. */
interface Mysql2Module {
  createConnection(config: string | ConnectionOptions): Connection
}

/** A socket, as far as the dialect handles it. */
interface Socket {
  destroyed?: boolean
  destroy(error?: Error): void
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

/** The properties of mysql2's `config` that hold a credential. */
const SECRET_KEYS = ['password', 'password1', 'password2', 'password3', 'passwordSha1'] as const

const RELEASED_BUSY =
  'released with a query still running: the connection is closed, not lent again'

/** How long `close()` waits for the server to close the socket after COM_QUIT. */
const CLOSE_GRACE_MS = 2_000

/** What a fresh session has that COM_RESET_CONNECTION does not give back; read once per connection. */
const INITIAL_SQL =
  'SELECT DATABASE() AS db, @@SESSION.sql_mode AS mode, @@SESSION.autocommit AS autocommit'

/** SERVER_STATUS_IN_TRANS, in the status flags of an OK packet. */
const STATUS_IN_TRANS = 0x0001
/** SERVER_STATUS_AUTOCOMMIT, in the status flags of an OK packet. */
const STATUS_AUTOCOMMIT = 0x0002

const STEP_SQL: Record<TransactionStep, string> = {
  begin: 'START TRANSACTION',
  commit: 'COMMIT',
  rollback: 'ROLLBACK',
}

/**
 * A statement that cannot leave a transaction open in autocommit mode: one statement that only
 * reads or changes rows (in autocommit mode it commits itself; a stored function or trigger may not
 * start or end a transaction). Anything else (BEGIN, START TRANSACTION, SET, XA, CALL, LOCK, …),
 * or a `;` anywhere, counts as possibly opening one.
 */
const AUTOCOMMITTED =
  /^\s*(?:\/\*[\s\S]*?\*\/\s*)*\(?\s*(?:select|show|describe|desc|explain|do|insert|update|delete|replace|with|table|values|set\b(?![^;]*\b(?:autocommit|transaction|completion_type)\b))\b[^;]*;?\s*$/i

/** mysql2 commands that carry no SQL and cannot open a transaction. */
const INERT_COMMANDS = new Set(['Ping', 'Prepare', 'CloseStatement', 'Quit'])

const INSPECT_SQL =
  'SELECT @@SESSION.wait_timeout AS wait_timeout, @@GLOBAL.max_connections AS max_connections, ' +
  '@@SESSION.max_user_connections AS max_user_connections, VERSION() AS version'

const loader = new DriverLoader<Mysql2Module>(
  'mysql2',
  'lifeguard/mysql',
  () => import('mysql2'),
  (module) => defaultExport<Mysql2Module>(module),
)

/** Keeps an error of an idle connection from becoming an uncaught exception; `watch` reports deaths. */
function ignoreError(): void {}

function internals(connection: Connection): ConnectionInternals {
  return connection as unknown as ConnectionInternals
}

/**
 * Hides the credentials on the driver's copy of the config while it connects. mysql2 keeps them
 * as plain properties, so `util.inspect(connection)` would print them; non-enumerable, they
 * still serve the handshake.
 */
function hideCredentials(connection: Connection): void {
  const config = configOf(connection)
  if (config === undefined) return
  const hide = (target: Record<string, unknown>, key: string) => {
    if (!Object.hasOwn(target, key)) return
    Object.defineProperty(target, key, {
      value: target[key],
      enumerable: false,
      writable: true,
      configurable: true,
    })
  }
  for (const key of SECRET_KEYS) hide(config, key)
  const ssl = config.ssl
  if (typeof ssl === 'object' && ssl !== null) {
    hide(ssl as Record<string, unknown>, 'key')
    hide(ssl as Record<string, unknown>, 'passphrase')
  }
}

function configOf(connection: Connection): Record<string, unknown> | undefined {
  const config = (connection as unknown as { config?: unknown }).config
  return typeof config === 'object' && config !== null
    ? (config as Record<string, unknown>)
    : undefined
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
  for (const key of SECRET_KEYS) {
    if (config[key] === undefined) continue
    saved[key] = config[key]
    config[key] = undefined
  }
  credentials.set(connection, saved)
}

type ChangeUser = (options?: unknown, callback?: (error: unknown) => void) => unknown

/**
 * Keeps `changeUser()` working without the credentials on the config: for the same user it
 * supplies the stashed ones, and afterwards it stashes whatever the change left on the config
 * (mysql2 writes the new password there). An own, non-enumerable property: the connection
 * stays a genuine mysql2 connection.
 */
function shimChangeUser(connection: Connection): void {
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
    return original.call(connection, merged, (error: unknown) => {
      stashCredentials(connection)
      done?.(error)
    })
  }
  Object.defineProperty(connection, 'changeUser', {
    value: changeUser,
    enumerable: false,
    writable: true,
    configurable: true,
  })
}

/** Tears the socket down at once: the current one and, after a TLS upgrade, the plain one under it. */
function destroySocket(connection: Connection, plain: Socket | undefined): void {
  try {
    // Marks the connection closing, so that mysql2 does not report the close as an error.
    connection.destroy()
  } catch {
    // already closed
  }
  const stream = internals(connection).stream
  stream?.destroy()
  if (plain !== undefined && plain !== stream) plain.destroy()
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

/**
 * What the dialect knows of a connection's transaction state, so that a `'rollback'` reset sends
 * nothing when no transaction can be open. mysql2 does not keep the server's status flags, so the
 * dialect watches the commands instead: in autocommit mode only a few statements can leave a
 * transaction open (BEGIN, START TRANSACTION, SET autocommit, XA, CALL, …; see AUTOCOMMITTED).
 */
interface TransactionState {
  /** No command that might open a transaction ran since the last reset. */
  clean: boolean
  /** The session is in autocommit mode, as the server last reported. */
  autocommit: boolean
}

const transactionStates = new WeakMap<Connection, TransactionState>()

type AddCommand = (command: { sql?: unknown; constructor?: { name?: string } }) => unknown

/** Watches every command the connection sends, to keep its {@link TransactionState}. */
function trackTransactions(connection: Connection, autocommit: boolean): void {
  const state: TransactionState = { clean: true, autocommit }
  transactionStates.set(connection, state)
  const original = (connection as unknown as { addCommand: AddCommand }).addCommand
  const addCommand: AddCommand = function (this: unknown, command) {
    if (state.clean) {
      const sql = command.sql
      if (typeof sql === 'string') state.clean = AUTOCOMMITTED.test(sql)
      else state.clean = INERT_COMMANDS.has(command.constructor?.name ?? '')
    }
    return original.call(this, command)
  }
  // An own, non-enumerable property: the connection stays a genuine mysql2 connection.
  Object.defineProperty(connection, 'addCommand', {
    value: addCommand,
    enumerable: false,
    writable: true,
    configurable: true,
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
 * The MySQL and MariaDB dialect over mysql2's callback ("core") connection. It keeps the config
 * in a private field, so neither `util.inspect` nor `JSON.stringify` shows the password.
 */
class MysqlDialect implements Dialect<Connection> {
  readonly name = 'mysql'
  readonly #config: string | ConnectionOptions
  readonly #secrets: string[]

  constructor(config: string | ConnectionOptions | undefined) {
    loader.check()
    this.#config = typeof config === 'string' ? config : { ...config }
    const found: unknown[] = []
    if (typeof config === 'string') found.push(...secretsOfUrl(config))
    else if (config !== undefined && config !== null) {
      for (const key of SECRET_KEYS) found.push((config as Record<string, unknown>)[key])
      if (typeof config.uri === 'string') found.push(...secretsOfUrl(config.uri))
    }
    this.#secrets = normalizeSecrets(found)
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
    await new Promise<void>((resolve, reject) => {
      const settle = () => {
        signal.removeEventListener('abort', onAbort)
        connection.removeListener('connect', onConnect)
        connection.removeListener('error', onError)
      }
      const onAbort = () => {
        settle()
        destroySocket(connection, plain)
        reject(signal.reason)
      }
      // 'connect' comes after the handshake and authentication.
      const onConnect = () => {
        settle()
        resolve()
      }
      const onError = (error: unknown) => {
        settle()
        destroySocket(connection, plain)
        reject(redactError(error, this.#secrets))
      }
      if (signal.aborted) return onAbort()
      signal.addEventListener('abort', onAbort, { once: true })
      connection.once('connect', onConnect)
      connection.once('error', onError)
    })
    stashCredentials(connection)
    shimChangeUser(connection)
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

  close(connection: Connection): Promise<void> {
    return new Promise<void>((resolve) => {
      const c = internals(connection)
      const stream = c.stream
      if (stream === undefined || stream.destroyed === true) return resolve()
      if (busy(connection)) {
        // COM_QUIT would wait behind the running command (for ever, behind a paused stream).
        // Dropping the socket under mysql2 fails that command with PROTOCOL_CONNECTION_LOST, so
        // the borrower who left it does not wait for ever either.
        stream.destroy()
        return resolve()
      }
      if ((c._fatalError !== undefined && c._fatalError !== null) || c._closing === true) {
        // Dead or already closing: nothing to say goodbye to, and COM_QUIT would not be sent.
        destroySocket(connection, undefined)
        return resolve()
      }
      const timer = setTimeout(() => {
        stream.destroy()
        resolve()
      }, CLOSE_GRACE_MS)
      timer.unref()
      stream.once('close', () => {
        clearTimeout(timer)
        resolve()
      })
      try {
        connection.end(() => {}) // COM_QUIT; the server closes the socket
      } catch {
        stream.destroy()
      }
    })
  }

  ping(connection: Connection): Promise<void> {
    // COM_PING: one small packet each way, no parsing, no plan.
    return callback((done) => connection.ping(done))
  }

  inTransaction(connection: Connection): boolean {
    const state = transactionStates.get(connection)
    return state === undefined || !(state.clean && state.autocommit)
  }

  async transact(connection: Connection, step: TransactionStep): Promise<void> {
    const result = await run<{ serverStatus?: number }>(connection, STEP_SQL[step])
    const state = transactionStates.get(connection)
    // COMMIT and ROLLBACK end it: the OK packet says so, and the release needs no ROLLBACK then.
    if (state !== undefined && step !== 'begin' && typeof result?.serverStatus === 'number') {
      state.autocommit = (result.serverStatus & STATUS_AUTOCOMMIT) !== 0
      state.clean = (result.serverStatus & STATUS_IN_TRANS) === 0
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
    const state = transactionStates.get(connection)
    if (mode === 'rollback') {
      // Nothing since the last reset could have opened a transaction: send nothing.
      if (state?.clean === true && state.autocommit) return undefined
      return run<{ serverStatus?: number }>(connection, 'ROLLBACK').then((result) => {
        if (state === undefined) return
        // The OK packet says whether the session is in autocommit mode; SET autocommit = 0 makes
        // every later statement open a transaction, so then every release rolls back.
        if (typeof result?.serverStatus === 'number') {
          state.autocommit = (result.serverStatus & STATUS_AUTOCOMMIT) !== 0
        }
        state.clean = true
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

/** Every connection {@link lend} made, to tell them from other arguments. */
const lentConnections = new WeakSet<object>()

/** The callback connection under a lent one; any other value unchanged. */
function unwrap(value: unknown): unknown {
  return typeof value === 'object' && value !== null && lentConnections.has(value)
    ? (value as MysqlConnection).connection
    : value
}

/** Wraps a callback connection in mysql2's own promise connection, once, for lending. */
function lend(connection: Connection): MysqlConnection {
  // mysql2's Connection#promise() makes a genuine PromiseConnection over the same connection.
  const lent = connection.promise() as unknown as MysqlConnection
  // An own, non-enumerable property: the object stays a genuine mysql2 PromiseConnection.
  Object.defineProperty(lent, 'promise', {
    value: () => lent,
    enumerable: false,
    writable: true,
    configurable: true,
  })
  lentConnections.add(lent)
  return lent
}

/**
 * The {@link mysql} dialect: the callback dialect's work, on promise connections. Every member
 * hands the callback connection under the lent one (`.connection`) to the callback dialect, which
 * owns all the driver handling; this class only wraps and unwraps.
 */
class PromiseMysqlDialect implements Dialect<MysqlConnection> {
  readonly name = 'mysql'
  readonly #inner: MysqlDialect

  constructor(inner: MysqlDialect) {
    this.#inner = inner
    // Members the callback dialect has beyond those written out below (added to it later, such
    // as hooks of newer cores) are forwarded too, with any lent connection among the arguments
    // unwrapped.
    for (const key of Object.getOwnPropertyNames(MysqlDialect.prototype)) {
      if (key === 'constructor' || key in this) continue
      const member = (inner as unknown as Record<string, unknown>)[key]
      if (typeof member !== 'function') continue
      // A one-argument hook (ref/unref run on the pool's hot path) allocates nothing.
      const forward =
        member.length <= 1
          ? (connection: unknown) => member.call(inner, unwrap(connection))
          : (...args: unknown[]) => member.apply(inner, args.map(unwrap))
      Object.defineProperty(this, key, {
        value: forward,
        enumerable: false,
        writable: true,
        configurable: true,
      })
    }
  }

  async connect(signal: AbortSignal): Promise<MysqlConnection> {
    return lend(await this.#inner.connect(signal))
  }

  close(connection: MysqlConnection): Promise<void> {
    return this.#inner.close(connection.connection)
  }

  ping(connection: MysqlConnection): Promise<void> {
    return this.#inner.ping(connection.connection)
  }

  inTransaction(connection: MysqlConnection): boolean {
    return this.#inner.inTransaction(connection.connection)
  }

  transact(connection: MysqlConnection, step: TransactionStep): Promise<void> {
    return this.#inner.transact(connection.connection, step)
  }

  reset(connection: MysqlConnection, mode: ResetMode): Promise<void> | undefined {
    return this.#inner.reset(connection.connection, mode)
  }

  isDisconnect(error: unknown): boolean {
    return this.#inner.isDisconnect(error)
  }

  watch(connection: MysqlConnection, onDeath: (error?: unknown) => void): void {
    this.#inner.watch(connection.connection, onDeath)
  }

  inspect(connection: MysqlConnection): Promise<MysqlServerInfo> {
    return this.#inner.inspect(connection.connection)
  }
}

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

/**
 * @internal The same dialect lending mysql2's callback connection itself: what the
 * `lifeguard/mysql2` facades pool, since they lend genuine mysql2 pool connections.
 */
export function mysqlCallbackDialect(config?: string | ConnectionOptions): Dialect<Connection> {
  return new MysqlDialect(config)
}
