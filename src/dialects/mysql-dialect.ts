import type { Connection, ConnectionOptions } from 'mysql2'
import { abortable } from '../core/abortable.js'
import type {
  ConnectFailure,
  Dialect,
  DialectTarget,
  ReadOnlyScope,
  ResetMode,
  ServerInfo,
  ServerRole,
  TransactionStep,
} from '../core/dialect.js'
import { connectAbortable } from './connect-abortable.js'
import { DriverLoader } from './driver-loader.js'
import {
  hideCredentials,
  MYSQL_SECRET_KEYS,
  stashCredentialsAfterConnect,
} from './mysql-credentials.js'
import {
  isMysqlReadOnlyError,
  mysqlReadOnlyScope,
  mysqlRole,
  type RoleQueryChoice,
  watchReadOnlyErrors,
} from './mysql-read-only.js'
import {
  noteServerStatus,
  type TransactionState,
  trackTransactions,
  transactionState,
} from './mysql-transaction-tracker.js'
import { causes, isSocketError, isTlsConfigError } from './network-errors.js'
import { redactError, secretsOfConfig } from './redact.js'
import { serverTarget, type TargetRules } from './server-target.js'
import { closeGracefully, type Destroyable, destroySockets, RELEASED_BUSY } from './socket-close.js'

/** What the dialect reads of a MySQL or MariaDB server: {@link ServerInfo} and one setting more. */
export interface MysqlServerInfo extends ServerInfo {
  /** `max_user_connections` for this account; `undefined` when unlimited (0). */
  maxUserConnections?: number | undefined
}

/** The `mysql2` module as far as the dialect uses it. */
interface Mysql2Module {
  createConnection(config: string | ConnectionOptions): Connection
}

/** mysql2's Query command, as far as the dialect sends one itself. */
type QueryCommand = object

/** mysql2's connection class: its static `createQuery` builds the command `query()` would send. */
interface ConnectionClass {
  createQuery?: (
    options: { sql: string; rowsAsArray: boolean; nestTables: boolean; typeCast: boolean },
    values: undefined,
    callback: (error: unknown, result: unknown) => void,
    config: object,
  ) => QueryCommand
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
  /** The server's greeting (HandshakeV10), kept by mysql2 once connected. */
  _handshakePacket?: { statusFlags?: unknown }
  /** The connection's config: the database and the client flags it sent in the handshake. */
  config?: { database?: unknown; clientFlags?: unknown }
  /** Sends a command: what `query()` calls once it has published the query on `mysql2:query`. */
  addCommand?: (command: QueryCommand) => unknown
}

/**
 * Errors after which a MySQL or MariaDB session is gone, by errno: the client-library codes a
 * wrapped driver may report, and the server's own.
 */
/**
 * Server error numbers of a failed connect that a retry meets again until someone changes the
 * credentials, the database or the grants (the pool's `failFast` rejects at once). 1040 (too many
 * connections) and 1203 (max_user_connections) are transient.
 */
const PERMANENT_CONNECT_ERRNOS = new Set([
  1044, // ER_DBACCESS_DENIED_ERROR: no access to that database
  1045, // ER_ACCESS_DENIED_ERROR: wrong password or no such user
  1049, // ER_BAD_DB_ERROR: no such database
  1129, // ER_HOST_IS_BLOCKED: until FLUSH HOSTS
  1130, // ER_HOST_NOT_PRIVILEGED: this host may not connect
  1251, // ER_NOT_SUPPORTED_AUTH_MODE
  1698, // ER_ACCESS_DENIED_NO_PASSWORD_ERROR
])

/** mysql2's own codes for a handshake that cannot succeed as configured (TLS, auth plugins). */
const PERMANENT_CONNECT_CODES = new Set([
  'HANDSHAKE_NO_SSL_SUPPORT',
  'HANDSHAKE_SSL_ERROR',
  'AUTH_SWITCH_PLUGIN_ERROR',
  'MYSQL_CLEAR_PASSWORD_NOT_ENABLED',
])

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

/** SERVER_STATUS_AUTOCOMMIT, in the status flags of the server's greeting. */
const STATUS_AUTOCOMMIT = 0x0002
/** CLIENT_IGNORE_SPACE: the server adds IGNORE_SPACE to the session's sql_mode (mysql2 sends it by default). */
const CLIENT_IGNORE_SPACE = 0x0100

/**
 * Puts back the IGNORE_SPACE that the handshake's CLIENT_IGNORE_SPACE put into a fresh session's
 * sql_mode and that MariaDB's COM_RESET_CONNECTION drops (the rest of sql_mode it resets to the
 * global value, as a new connection has it); a no-op where the reset kept it.
 */
const RESTORE_IGNORE_SPACE =
  "SET SESSION sql_mode = IF(FIND_IN_SET('IGNORE_SPACE', @@SESSION.sql_mode) > 0, " +
  "@@SESSION.sql_mode, CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'IGNORE_SPACE'))"

const STEP_SQL: Record<TransactionStep, string> = {
  begin: 'START TRANSACTION',
  commit: 'COMMIT',
  rollback: 'ROLLBACK',
}

/**
 * The server's limits, read once per pool; and, for the transaction tracker, whether `init_connect`
 * may have changed what the greeting said of autocommit, and this session's autocommit.
 */
const INSPECT_SQL =
  'SELECT @@SESSION.wait_timeout AS wait_timeout, @@GLOBAL.max_connections AS max_connections, ' +
  '@@SESSION.max_user_connections AS max_user_connections, VERSION() AS version, ' +
  '@@GLOBAL.init_connect AS init_connect, @@SESSION.autocommit AS autocommit, ' +
  '@@SESSION.sql_mode AS sql_mode'

/**
 * How long after a failed read of the server's limits the next one waits: the pool asks on each
 * new connection until one answers, and a server or proxy that refuses the query (or drops the
 * connection over it) should not cost every new connection a round trip, or the connection.
 */
const INSPECT_RETRY_MS = 30_000

/** What {@link INSPECT_SQL} answers, by column. */
type LimitsRow = Record<string, unknown>

/**
 * How long the pool's first connection waits for the server's limits before it is lent without
 * them: the SELECT answers in a millisecond; a server (a proxy, a test double) that answers the
 * handshake and then nothing must not keep the pool from lending, as it does not keep mysql2's.
 */
const INSPECT_WAIT_MS = 2_000

/** {@link ServerInfo} from what {@link INSPECT_SQL} answered. */
function serverInfoOf(row: LimitsRow): MysqlServerInfo {
  const idle = Number(row.wait_timeout)
  const max = Number(row.max_connections)
  const perUser = Number(row.max_user_connections)
  return {
    version: typeof row.version === 'string' ? row.version : undefined,
    maxConnections: Number.isFinite(max) && max > 0 ? max : undefined,
    maxUserConnections: Number.isFinite(perUser) && perUser > 0 ? perUser : undefined,
    // wait_timeout is in seconds; the session value counts (onConnect may have lowered it).
    idleCutoffMs: Number.isFinite(idle) && idle > 0 ? idle * 1000 : undefined,
    idleCutoffSetting: 'wait_timeout',
  }
}

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

/**
 * Runs one of the pool's own statements (a reset's ROLLBACK, the server's limits): sent as
 * `query()` sends it, but not published on mysql2's `mysql2:query` tracing channel, where a user
 * of mysql2's own pool sees only the statements they ran; and read as plain rows of objects
 * whatever the connection's `rowsAsArray`, `nestTables` or `typeCast` say. Falls back to
 * `query()` on a mysql2 without `createQuery`.
 */
function run<T = unknown>(connection: Connection, sql: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const done = (error: unknown, result: unknown) => {
      if (error) reject(error)
      else resolve(result as T)
    }
    const c = internals(connection)
    const createQuery = (connection.constructor as ConnectionClass | undefined)?.createQuery
    if (typeof createQuery === 'function' && typeof c.addCommand === 'function') {
      const options = { sql, rowsAsArray: false, nestTables: false, typeCast: true }
      c.addCommand.call(connection, createQuery(options, undefined, done, {}))
    } else {
      connection.query(sql, done)
    }
  })
}

function callback(fn: (done: (error: unknown) => void) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    fn((error) => (error ? reject(error) : resolve()))
  })
}

/** What the handshake told of a session as it was right after connecting: what a `'session'` reset puts back. */
interface InitialSession {
  /** The database the handshake selected (`connection.config.database`); `null` for none. */
  db: string | null
  /** Whether the handshake asked for CLIENT_IGNORE_SPACE, which puts IGNORE_SPACE into sql_mode. */
  ignoreSpace: boolean
  /** Autocommit as the server's greeting reported it; `undefined` when it did not say. */
  greetingAutocommit: boolean | undefined
}

/**
 * A new connection's {@link InitialSession}, read off what mysql2 kept of the handshake: no
 * round trip. The database is copied now, as `changeUser` changes `connection.config` later.
 */
function sessionOf(connection: Connection): InitialSession {
  const c = internals(connection)
  const database = c.config?.database
  const flags = c.config?.clientFlags
  const status = c._handshakePacket?.statusFlags
  return {
    db: typeof database === 'string' && database !== '' ? database : null,
    ignoreSpace: typeof flags === 'number' && (flags & CLIENT_IGNORE_SPACE) !== 0,
    greetingAutocommit: typeof status === 'number' ? (status & STATUS_AUTOCOMMIT) !== 0 : undefined,
  }
}

/** The pool's `onDeath` for each watched connection (see `watch`). */
const deathWatchers = new WeakMap<Connection, (error?: unknown) => void>()

/**
 * The dialect's one `'error'` listener on a connection, from its creation on: it keeps mysql2
 * from throwing an error nobody listens to, and tells the pool of a fatal one once `watch` has
 * registered it. One listener, as a connection of mysql2's own pool has one.
 */
function onConnectionError(this: Connection, error: unknown): void {
  if ((error as { fatal?: unknown } | null)?.fatal === true) deathWatchers.get(this)?.(error)
}

/** Each connection's initial session, kept beside it rather than on it. */
const initialSessions = new WeakMap<Connection, InitialSession>()

/** How mysql2 reads where it connects: `uri` first, then the fields, then its defaults. */
const MYSQL_TARGET: TargetRules = {
  urlKey: 'uri',
  socketKey: 'socketPath',
  defaultPort: 3306,
  fieldsWin: true,
}

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
  /**
   * Whether the greeting's autocommit flag is the session's: once `inspect` found no
   * `init_connect` (which could turn autocommit off after the greeting). Until then, a new
   * connection counts as not in autocommit mode, so its first release sends a ROLLBACK, whose OK
   * packet tells the tracker the truth: safe, and lazy.
   */
  #trustGreeting = false
  /**
   * The tracked states of connections made before the greeting could be trusted, whose greeting
   * said autocommit: once it can, those the server has not reported on since are set right.
   * Emptied on each read of the limits, answered, failed or timed out, and not added to while an
   * unanswered read is pending, so it never holds more than one burst of connects.
   */
  #untrusted: TransactionState[] = []
  /** Until when (`performance.now()`) `inspect` sends nothing, after a failed attempt. */
  #inspectAgainAt = 0
  /** An attempt still unanswered after {@link INSPECT_WAIT_MS}: no other is sent meanwhile. */
  #limitsPending = false
  /** Its answer, once it came: the next `inspect` returns it without a query. */
  #lateLimits: LimitsRow | undefined
  /**
   * The `sql_mode` a new session has on a server with an `init_connect` (read with the limits,
   * before the first borrower's statements): COM_RESET_CONNECTION does not run `init_connect`
   * again, so a 'session' reset puts it back. `init_connect` is the same statement for every
   * connection of the pool (one user, one config), so one read serves them all. Unset without an
   * `init_connect`, or until the limits are read (a reset then only puts IGNORE_SPACE back).
   */
  #initSqlMode: string | undefined
  /** Which role query this dialect's server knows (`transaction_read_only` or `tx_read_only`). */
  readonly #roleQuery: RoleQueryChoice = { variant: 0 }

  constructor(config: string | ConnectionOptions | undefined) {
    loader.check()
    this.#config = typeof config === 'string' ? config : { ...config }
    this.#secrets = secretsOfConfig(config, MYSQL_SECRET_KEYS, 'uri')
  }

  /** Where it connects, for the pool's default name: host (or socket), port and database, no credential. */
  get target(): DialectTarget {
    return serverTarget(this.#config, MYSQL_TARGET)
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
    connection.on('error', onConnectionError)
    hideCredentials(connection)
    const plain = internals(connection).stream
    await connectAbortable(
      signal,
      () => handshake(connection),
      () => destroySocket(connection, plain),
      (error) => redactError(error, this.#secrets),
    )
    stashCredentialsAfterConnect(connection)
    // No statement of the pool's own here: what it needs of the fresh session, the handshake
    // gave (see sessionOf), as a connection of mysql2's own pool sends nothing either.
    const session = sessionOf(connection)
    initialSessions.set(connection, session)
    trackTransactions(connection, this.#trustGreeting && session.greetingAutocommit === true)
    const state = transactionState(connection)
    // While an unanswered read of the limits is pending, nothing would empty the list: a
    // connection made then is not trusted later either (it rolls back once on its first release).
    if (
      !this.#trustGreeting &&
      !this.#limitsPending &&
      session.greetingAutocommit === true &&
      state !== undefined
    ) {
      this.#untrusted.push(state)
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
      // `signal` bounds the KILL too: a server that never answers must not hold the cancel, and
      // the request's connection behind it, for ever. close() destroys a killer still waiting.
      await abortable(run(killer, `KILL QUERY ${id}`), signal)
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
    // Read before the reset: an older mysql2's reset is itself a changeUser, which the tracker
    // counts as a possible change of database (a borrower's changeUser may name another one).
    const databaseKept = transactionState(connection)?.databaseKept === true
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
    // put both back as a fresh connection has them; the database only if something since the
    // last reset may have changed it.
    const state = transactionState(connection)
    const initMode = this.#initSqlMode
    if (initMode !== undefined) {
      await run(connection, `SET SESSION sql_mode = ${connection.escape(initMode)}`)
    } else if (initial.ignoreSpace) {
      await run(connection, RESTORE_IGNORE_SPACE)
    }
    if (initial.db !== null && !databaseKept) {
      await run(connection, `USE ${connection.escapeId(initial.db)}`)
    }
    if (state !== undefined) state.databaseKept = true
  }

  classifyConnectError(error: unknown): ConnectFailure {
    for (const fields of causes(error)) {
      if (typeof fields.errno === 'number' && PERMANENT_CONNECT_ERRNOS.has(fields.errno)) {
        return 'permanent'
      }
      if (typeof fields.code === 'string') {
        if (PERMANENT_CONNECT_CODES.has(fields.code) || isTlsConfigError(fields)) return 'permanent'
      }
    }
    // Refused, reset, timed out, 1040 too many connections, and anything unknown.
    return 'transient'
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

  /** A write refused because the server or the session is read-only (1290 naming read-only, 1792, 1836): see `Dialect.isReadOnly`. */
  isReadOnly(error: unknown): boolean {
    return isMysqlReadOnlyError(error)
  }

  /** 1792 is the session's (a read-only transaction); 1290 and 1836 the server's. */
  readOnlyScope(error: unknown): ReadOnlyScope {
    return mysqlReadOnlyScope(error)
  }

  /**
   * The server's role: `@@global.read_only`, `@@innodb_read_only` and the global
   * `transaction_read_only` (`tx_read_only` on MariaDB 10.x), in one query.
   */
  role(connection: Connection): Promise<ServerRole> {
    return mysqlRole((sql) => run<Array<Record<string, unknown>>>(connection, sql), this.#roleQuery)
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
    // (ECONNRESET, PROTOCOL_CONNECTION_LOST), which onConnectionError passes on, and, on a clean
    // FIN, 'end'.
    deathWatchers.set(connection, onDeath)
    connection.on('end', () => onDeath())
    // A write the server refused as read-only, seen on the wire whoever sent it.
    watchReadOnlyErrors(connection, onDeath)
  }

  async inspect(connection: Connection): Promise<MysqlServerInfo> {
    // An answer that came after an earlier connection stopped waiting for it is the server's.
    const late = this.#lateLimits
    if (late !== undefined) {
      this.#lateLimits = undefined
      return serverInfoOf(late)
    }
    if (this.#limitsPending) {
      throw new Error("not read: the server has not answered the pool's previous attempt yet")
    }
    const wait = this.#inspectAgainAt - performance.now()
    if (wait > 0) {
      // A server or proxy that refused the query (or closed the connection over it) would do it
      // again: new connections send nothing until then.
      throw new Error(
        `not read: the previous attempt failed; the next connection after ${Math.ceil(wait / 1000)} s tries again`,
      )
    }
    const row = await this.#readLimits(connection)
    // This session's mode as it is now (after onConnect): its first release needs no ROLLBACK.
    const state = transactionState(connection)
    if (state !== undefined && row.autocommit !== undefined) {
      state.autocommit = Number(row.autocommit) === 1
    }
    return serverInfoOf(row)
  }

  /**
   * Sends {@link INSPECT_SQL} and waits up to {@link INSPECT_WAIT_MS} for its answer. Past that,
   * the pool lends the connection without the limits, the query staying ahead of the borrower's
   * on the wire (as with mysql2's own pool, a server that answers nothing then answers none of the
   * borrower's queries either); its answer, when it comes, is kept for the next connection's
   * `inspect`, and until it comes no connection sends the query again.
   */
  #readLimits(connection: Connection): Promise<LimitsRow> {
    const query = run<LimitsRow[]>(connection, INSPECT_SQL).then(
      (rows) => {
        const row = rows[0] ?? {}
        this.#noteInitConnect(row)
        return row
      },
      (error: unknown) => {
        this.#inspectAgainAt = performance.now() + INSPECT_RETRY_MS
        // They stay as they are: each rolls back once on its first release, and learns.
        this.#untrusted = []
        throw error
      },
    )
    return new Promise<LimitsRow>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#limitsPending = true
        // As after a failed read: those made so far roll back once on their first release. The
        // answer may never come, and nothing else would empty the list.
        this.#untrusted = []
        query.then(
          (row) => {
            this.#limitsPending = false
            this.#lateLimits = row
          },
          () => {
            this.#limitsPending = false
          },
        )
        reject(new Error(`not read: the server did not answer within ${INSPECT_WAIT_MS} ms`))
      }, INSPECT_WAIT_MS)
      timer.unref?.()
      query.then(
        (row) => {
          clearTimeout(timer)
          resolve(row)
        },
        (error: unknown) => {
          clearTimeout(timer)
          reject(error)
        },
      )
    })
  }

  /** Trusts the greeting's autocommit flag once the server says it has no `init_connect`. */
  #noteInitConnect(row: LimitsRow): void {
    const untrusted = this.#untrusted
    this.#untrusted = []
    if (row.init_connect !== '' && row.init_connect !== null) {
      if (typeof row.sql_mode === 'string') this.#initSqlMode = row.sql_mode
      return
    }
    this.#trustGreeting = true
    // Made meanwhile: their greeting said autocommit, and nothing else could have changed it
    // but what the tracker saw (a SET autocommit marks them unclean) or the server reported.
    for (const early of untrusted) if (!early.autocommitReported) early.autocommit = true
  }
}
