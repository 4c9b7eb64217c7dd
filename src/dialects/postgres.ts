import type { Client, ClientConfig } from 'pg'
import type {
  ConnectFailure,
  Dialect,
  DialectTarget,
  PoolerInfo,
  ReadOnlyScope,
  ResetMode,
  ServerInfo,
  ServerRole,
  TransactionStep,
} from '../core/dialect.js'
import { InvalidOptionError, NamedStatementError, TransactionFailedError } from '../core/errors.js'
import { describe, isConstructor } from '../core/pool-options.js'
import { connectAbortable } from './connect-abortable.js'
import { type ConnectionArgument, checkConnectionArgument } from './connection-argument.js'
import { DriverLoader } from './driver-loader.js'
import { causes, isSocketError, isTlsConfigError } from './network-errors.js'
import { sendCancelRequest } from './pg-cancel-request.js'
import { pgPipeline } from './pg-pipeline.js'
import {
  isPgReadOnlyError,
  noteRoleParameters,
  pgReadOnlyScope,
  pgRole,
  watchReadOnlyErrors,
} from './pg-session-role.js'
import { redactError, secretsOfConfig } from './redact.js'
import { serverTarget, type TargetRules } from './server-target.js'
import {
  closeGracefully,
  type Destroyable,
  destroySockets,
  ignoreError,
  RELEASED_BUSY,
} from './socket-close.js'

/** Thrown by this entry's factory when its driver package is not installed. */
export { DriverMissingError } from '../core/errors.js'

/** What the dialect reads of a PostgreSQL server: {@link ServerInfo} and one setting more. */
export interface PostgresServerInfo extends ServerInfo {
  /**
   * `idle_in_transaction_session_timeout` in ms, `undefined` when off. It only ends sessions left
   * idle inside a transaction, which a pool that resets on release never keeps, so it is not the
   * idle cut-off; it is reported for `pool.server` readers.
   */
  idleInTransactionTimeoutMs?: number | undefined
}

/** A constructor of pg-style clients: pg's `Client`, a subclass of it, or any class used the way pg-pool uses one. */
export type PgClientConstructor = new (config?: string | ClientConfig) => Client

/** The `pg` module as far as the dialect uses it. */
interface PgModule {
  Client: PgClientConstructor
}

/** What the dialect does with a connection released while a query on it is still running. */
export type ReleasedBusy = 'close' | 'wait'

/** The connection pooler in front of PostgreSQL (PgBouncer, and poolers that pool the same way). */
export interface PoolerOptions {
  /**
   * How it pools (PgBouncer's `pool_mode`): `'transaction'` lends a server connection for one
   * transaction at a time, `'session'` for the whole client connection. PgBouncer's
   * `'statement'` mode breaks transactions and is not supported.
   */
  mode: 'transaction' | 'session'
  /**
   * In transaction mode, whether the pooler carries named prepared statements from one server
   * connection to another (PgBouncer 1.21 and later with `max_prepared_statements` above 0). When
   * it does not, pg's named queries (`{ name, text }`) are refused with a `NamedStatementError`.
   * @defaultValue `false`
   */
  preparedStatements?: boolean | undefined
}

/** Options of the PostgreSQL dialect, beyond the clients' config. */
export interface PostgresDialectOptions {
  /**
   * The client class to make each connection with, instead of pg's `Client`: called the way
   * pg-pool calls its `Client` option, `new Client(config)`, then `connect(callback)`,
   * `query(text, callback)`, `end(callback)` and its `'error'` and `'end'` events. pg's own
   * internals (the transaction status, the query queue, the socket) are read only where present,
   * so a client without them is reset with a ROLLBACK each time. Default: pg's `Client`.
   */
  Client?: PgClientConstructor | undefined
  /**
   * A connection released while a query on it is still running: `'close'` (the default) closes it,
   * since a cancel that its borrower sent may land on whatever runs next on the backend (psycopg's
   * rule); `'wait'` resets it once its queries are over (pg's own query queue holds the reset
   * behind them), as pg-pool lends such a client on, so that the running query completes for its
   * caller, however long it takes (only the reset that follows is bounded, by `validationTimeout`).
   */
  releasedBusy?: ReleasedBusy | undefined
  /**
   * The connection pooler between the pool and PostgreSQL, such as PgBouncer. In transaction mode
   * a `'session'` reset becomes a `'rollback'` one (the pool warns,
   * `LIFEGUARD_RESET_BEHIND_POOLER`), and named prepared statements are refused unless
   * the pooler carries them. Left out, the dialect still notices a pooler on the first connection
   * (the backend key it got is not the backend's pid) but cannot tell its mode.
   */
  pooler?: PoolerOptions | undefined
}

/**
 * The parts of pg's `Client` that its typings leave out or mark internal, all checked at runtime
 * so that an older pg degrades to a safe default instead of failing.
 */
interface ClientInternals {
  /** Lets the socket hold the event loop again, or not (`@types/pg` leaves them out). */
  ref?: () => void
  unref?: () => void
  /** pg ≥ 8.21: the status byte of the last ReadyForQuery: idle, in a transaction, or failed. */
  getTransactionStatus?: () => 'I' | 'T' | 'E' | null
  /** False while a query is on the wire or queued behind one. */
  readyForQuery?: boolean
  /** The query on the wire (`activeQuery` in older pg; a deprecated getter now). */
  _activeQuery?: unknown
  activeQuery?: unknown
  /** Queries waiting for the one on the wire, and (pipeline mode) queries sent but not answered. */
  _queryQueue?: unknown[]
  _sentQueryQueue?: unknown[]
  /** The process id of the BackendKeyData message: the backend's own, unless a pooler made one up. */
  processID?: number | null
  connection?: {
    /** The socket; a TLS socket replaces the plain one after the SSL handshake. */
    stream?: Destroyable
    /** Named statements pg believes the server has parsed: it skips Parse for them. */
    parsedStatements?: Record<string, string>
    /** Named statements sent but not yet confirmed. */
    submittedNamedStatements?: Record<string, string>
  }
}

/** SQLSTATE codes outside class 08 after which the session is gone. */
const DISCONNECT_STATES = new Set([
  '57P01', // admin_shutdown: pg_terminate_backend, or a fast shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now: the server is starting or stopping
  '57P05', // idle_session_timeout (PostgreSQL 14+)
  '25P03', // idle_in_transaction_session_timeout
])

/** pg's own errors for a client whose socket closed or failed; they carry no code. */
const LOST_MESSAGES = [
  'Connection terminated',
  'Client has encountered a connection error and is not queryable',
  'Client was closed and is not queryable',
]

/**
 * SQLSTATE codes of a failed connect that a retry meets again until someone changes the
 * credentials, the database or the server's rules (the pool's `failFast` rejects at once).
 */
const PERMANENT_CONNECT_STATES = new Set([
  '28P01', // invalid_password
  '28000', // invalid_authorization_specification: no such role, no pg_hba.conf entry
  '3D000', // invalid_catalog_name: no such database
  '42501', // insufficient_privilege: no CONNECT privilege on the database
])

/**
 * PgBouncer's refusals of a login, which it sends with SQLSTATE 08P01 whatever the reason (a
 * password or user it does not accept, a database it does not serve); the startsWith below
 * keeps a genuine protocol violation transient.
 */
const PGBOUNCER_PERMANENT_MESSAGES = [
  'password authentication failed',
  '"trust" authentication failed',
  'no such user',
  'no such database',
]

/** pg's own errors for a connect that cannot succeed as configured; they carry no code. */
const PERMANENT_CONNECT_MESSAGES = [
  'The server does not support SSL connections', // ssl asked, server refuses
  'SASL: ', // an authentication mechanism pg does not support, or no password for SCRAM
  'Password must be a string', // the server asks for a password and none is configured
  'self-signed certificate',
]

const SETTINGS_SQL = `SELECT name, setting FROM pg_settings WHERE name IN
  ('idle_session_timeout', 'idle_in_transaction_session_timeout', 'max_connections', 'server_version')
  UNION ALL SELECT 'backend_pid', pg_backend_pid()::text`

/** What `postgres()` takes: pg's connection strings (pg-connection-string), or a `ClientConfig`. */
const ARGUMENT: ConnectionArgument = {
  factory: 'postgres',
  schemes: ['postgres', 'postgresql', 'socket'],
  urlKey: 'connectionString',
  object: 'a pg ClientConfig object',
  // pg reads a string that starts with '/' as a Unix socket directory, then a database name.
  plain: (value) => value.startsWith('/'),
  strings:
    'a postgres:// or postgresql:// URL, a socket: URL, a socket directory (/var/run/postgresql)',
}

const loader = new DriverLoader<PgModule>('pg', 'lifeguard/postgres', () => import('pg'))

/** How pg reads where it connects: `connectionString` first, then the fields, `PG*`, its defaults. */
const TARGET: TargetRules = {
  urlKey: 'connectionString',
  defaultPort: 5432,
  env: { host: 'PGHOST', port: 'PGPORT', database: 'PGDATABASE', user: 'PGUSER' },
  databaseIsUser: true,
}

function internals(client: Client): ClientInternals {
  return client as unknown as ClientInternals
}

/** Destroys a client's socket at once: the current one and, after a TLS upgrade, the plain one under it. */
function destroySocket(client: Client, plain: Destroyable | undefined): void {
  destroySockets(internals(client).connection?.stream, plain)
}

/** Forgets the named statements pg believes are prepared, after the server discarded them. */
function forgetStatements(client: Client): void {
  const connection = internals(client).connection
  for (const cache of [connection?.parsedStatements, connection?.submittedNamedStatements]) {
    if (cache === undefined) continue
    for (const name of Object.keys(cache)) delete cache[name]
  }
}

/** Runs `sql` in pg's callback form, the one every pg-style client has. */
function run<R = unknown>(client: Client, sql: string): Promise<R> {
  return new Promise<R>((resolve, reject) => {
    const query = client.query as unknown as (text: string, cb: (e: unknown, r: R) => void) => void
    query.call(client, sql, (error, result) => (error ? reject(error) : resolve(result)))
  })
}

/**
 * Resolves once `client` has run every query it holds (pg's `'drain'`); rejects if it breaks or
 * ends first. It takes no signal: when the pool's reset timeout closes the client, `'end'` ends
 * the wait (and a reset that declared a signal would cost every release an AbortController).
 */
function drained(client: Client): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const emitter = client as unknown as NodeJS.EventEmitter
    const done = (error?: unknown) => {
      emitter.off('drain', onDrain)
      emitter.off('error', onError)
      emitter.off('end', onEnd)
      if (error === undefined) resolve()
      else reject(error)
    }
    const onDrain = () => done()
    const onError = (error: unknown) => done(error ?? new Error('Connection terminated'))
    const onEnd = () => done(new Error('Connection terminated'))
    emitter.on('drain', onDrain)
    emitter.on('error', onError)
    emitter.on('end', onEnd)
  })
}

/**
 * Whether a query is still running or queued: the borrower released the connection before its
 * work was over (it stopped reading a large result, or gave up waiting on a timeout).
 */
function busy(client: Client): boolean {
  const c = internals(client)
  const active = '_activeQuery' in c ? c._activeQuery : c.activeQuery
  return (
    (active !== null && active !== undefined) ||
    (c._queryQueue?.length ?? 0) > 0 ||
    (c._sentQueryQueue?.length ?? 0) > 0
  )
}

function milliseconds(setting: string | undefined): number | undefined {
  if (setting === undefined) return undefined
  const ms = Number(setting)
  return Number.isFinite(ms) && ms > 0 ? ms : undefined
}

/**
 * The PostgreSQL dialect over pg's `Client`: one client per pooled connection. It keeps the
 * config in a private field, so neither `util.inspect` nor `JSON.stringify` shows the password.
 */
class PostgresDialect implements Dialect<Client> {
  readonly name = 'postgres'
  readonly #config: string | ClientConfig | undefined
  readonly #secrets: string[]
  readonly #Client: PgClientConstructor | undefined
  readonly #releasedBusy: ReleasedBusy
  readonly #pooler: PoolerOptions | undefined
  /** A pooler was noticed on the first connection, the options naming none: see `pipeline`. */
  #poolerNoticed = false

  /** Where it connects, for the pool's default name: host, port and database, no credential. */
  get target(): DialectTarget {
    return serverTarget(this.#config, TARGET)
  }

  constructor(config: string | ClientConfig | undefined, options: PostgresDialectOptions) {
    if (options.Client === undefined) loader.check()
    this.#config = typeof config === 'object' && config !== null ? { ...config } : config
    this.#secrets = secretsOfConfig(config, ['password'], 'connectionString')
    this.#Client = options.Client
    this.#releasedBusy = options.releasedBusy ?? 'close'
    this.#pooler = options.pooler
  }

  async connect(signal: AbortSignal): Promise<Client> {
    const Client = this.#Client ?? (await loader.load()).Client
    signal.throwIfAborted()
    let client: Client
    try {
      client = new Client(this.#config)
    } catch (error) {
      throw redactError(error, this.#secrets)
    }
    client.on('error', ignoreError)
    noteRoleParameters(client)
    // pg replaces this socket with a TLS one after SSLRequest; keep it to destroy both.
    const plain = internals(client).connection?.stream
    await connectAbortable(
      signal,
      // The callback form: pg-pool's, so the one a custom Client is sure to have.
      () =>
        new Promise<void>((resolve, reject) => {
          const connect = client.connect as unknown as (cb: (error?: unknown) => void) => void
          connect.call(client, (error) => (error ? reject(error) : resolve()))
        }),
      () => destroySocket(client, plain),
      (error) => redactError(error, this.#secrets),
    )
    if (this.#pooler?.mode === 'transaction' && this.#pooler.preparedStatements !== true) {
      refuseNamedStatements(client)
    }
    return client
  }

  close(client: Client, signal?: AbortSignal): Promise<void> {
    return closeGracefully(
      // Sends Terminate, or destroys the socket when the client is broken or a query hangs.
      (done) => (client.end as unknown as (cb: () => void) => void).call(client, () => done()),
      () => destroySocket(client, undefined),
      signal,
    )
  }

  /** PostgreSQL's cancel request for the statement running on `client` (`Dialect.cancel`). */
  cancel(client: Client, signal: AbortSignal): Promise<void> {
    return sendCancelRequest(client, signal)
  }

  async ping(client: Client): Promise<void> {
    // An empty query: one round trip (EmptyQueryResponse, ReadyForQuery), nothing planned.
    await run(client, '')
  }

  inTransaction(client: Client): boolean {
    const c = internals(client)
    const status = typeof c.getTransactionStatus === 'function' ? c.getTransactionStatus() : null
    // Unknown status (older pg) or a query still in flight: it may be.
    return status !== 'I' || c.readyForQuery === false
  }

  async transact(client: Client, step: TransactionStep): Promise<void> {
    const result = await run<{ command?: string }>(client, STEP_SQL[step])
    // After a failed statement the server answers COMMIT with the ROLLBACK tag, and no error.
    if (step === 'commit' && result.command === 'ROLLBACK') {
      throw new TransactionFailedError(
        'PostgreSQL rolled the transaction back instead of committing it: a statement in it had failed',
      )
    }
  }

  /**
   * pg's pipeline mode (pg 8.23 or later), for the pool's sharing callers. Not behind a pooler in
   * transaction mode, nor behind one noticed by its backend key whose mode the options do not
   * say: Supavisor wedges once two queries are pipelined behind a running one (postgres.js #970).
   */
  pipeline(client: Client, on: boolean): boolean {
    const allowed =
      this.#pooler === undefined ? !this.#poolerNoticed : this.#pooler.mode === 'session'
    return pgPipeline(client, on, allowed)
  }

  drain(client: Client): Promise<void> | undefined {
    // With 'wait', the pool waits for the borrower's query without the reset's time limit, as
    // pg-pool does; with 'close', reset refuses the connection.
    return this.#releasedBusy === 'wait' && busy(client) ? drained(client) : undefined
  }

  reset(client: Client, mode: ResetMode): Promise<void> | undefined {
    if (busy(client)) {
      // A query still running belongs to the borrower who left: its rows are still arriving, and
      // a cancel it sent (pg_cancel_backend, a timeout's CancelRequest) may land on whatever runs
      // next on this backend. Close it instead of lending it (psycopg_pool's rule for ACTIVE),
      // unless told to wait for it as pg-pool does.
      if (this.#releasedBusy === 'close') throw new Error(RELEASED_BUSY)
      return drained(client).then(() => this.reset(client, mode))
    }
    const mayBeInTransaction = this.inTransaction(client)
    // Behind a transaction pooler the session is not this client's: DISCARD ALL would reset the
    // server connection the pooler picks for it (the pool itself switches to 'rollback' and warns
    // once it has read the server; this covers connections returned before that).
    if (mode === 'rollback' || this.#pooler?.mode === 'transaction') {
      return mayBeInTransaction ? run(client, 'ROLLBACK').then(() => undefined) : undefined
    }
    return this.#discardAll(client, mayBeInTransaction)
  }

  async #discardAll(client: Client, rollback: boolean): Promise<void> {
    // DISCARD ALL refuses to run inside a transaction block, an implicit one included, so the
    // ROLLBACK goes in its own round trip.
    if (rollback) await run(client, 'ROLLBACK')
    await run(client, 'DISCARD ALL')
    // The server dropped every prepared statement; pg would skip Parse for a name it remembers
    // and fail with 26000, or refuse a changed text for the same name.
    forgetStatements(client)
    // DISCARD ALL ran UNLISTEN *; the previous borrower's handlers must not see the next one's
    // notices or notifications. `onConnect`, which the pool runs again, may add its own.
    client.removeAllListeners('notification')
    client.removeAllListeners('notice')
  }

  /**
   * The pooler in front: the one the options name, or one noticed by its backend key. PgBouncer,
   * like every pooler that may move a client between server connections, hands out backend keys
   * of its own (it answers cancel requests itself), so the BackendKeyData pid is not the pid of
   * the backend that answers; PostgreSQL's own is always the same. No message a client receives
   * says how the pooler pools, so the mode stays unknown unless the options say it.
   */
  #poolerInfo(client: Client, backendPid: string | undefined): PoolerInfo | undefined {
    if (this.#pooler !== undefined) {
      return {
        mode: this.#pooler.mode,
        evidence: `the pooler option says ${this.#pooler.mode} mode`,
      }
    }
    const keyPid = internals(client).processID
    if (typeof keyPid !== 'number' || backendPid === undefined) return undefined
    if (String(keyPid) === backendPid) return undefined
    return {
      mode: undefined,
      evidence: `the backend key's pid ${keyPid} is not the backend's, ${backendPid}`,
    }
  }

  classifyConnectError(error: unknown): ConnectFailure {
    for (const fields of causes(error)) {
      if (typeof fields.code === 'string') {
        if (PERMANENT_CONNECT_STATES.has(fields.code) || isTlsConfigError(fields))
          return 'permanent'
        const text = fields.message
        if (
          fields.code === '08P01' &&
          typeof text === 'string' &&
          PGBOUNCER_PERMANENT_MESSAGES.some((m) => text.startsWith(m))
        ) {
          return 'permanent'
        }
      }
      const message = fields.message
      if (
        typeof message === 'string' &&
        PERMANENT_CONNECT_MESSAGES.some((m) => message.startsWith(m))
      ) {
        return 'permanent'
      }
    }
    // Refused, reset, timed out, EAI_AGAIN, 53300 too many connections, 57P01/57P03 the server
    // stopping or starting, and anything unknown: a retry may well succeed.
    return 'transient'
  }

  isDisconnect(error: unknown): boolean {
    for (const fields of causes(error)) {
      const code = fields.code
      if (typeof code === 'string') {
        if (code.length === 5 && code.startsWith('08')) return true
        if (DISCONNECT_STATES.has(code)) return true
        if (isSocketError(fields)) return true
      }
      const message = fields.message
      if (typeof message === 'string' && LOST_MESSAGES.some((m) => message.startsWith(m))) {
        return true
      }
    }
    return false
  }

  /** A write refused because the server or the session is read-only (25006): see `Dialect.isReadOnly`. */
  isReadOnly(error: unknown): boolean {
    return isPgReadOnlyError(error)
  }

  /** The server's for a 25006 after which the session reported itself read-only (14+); else the session's. */
  readOnlyScope(error: unknown): ReadOnlyScope {
    return pgReadOnlyScope(error)
  }

  /** The server's role, from the parameter status it sent at connect (14+), else one query. */
  role(client: Client): Promise<ServerRole> {
    return pgRole(client, (sql) => run(client, sql))
  }

  ref(client: Client): void {
    // pg's Client forwards to its current socket (the TLS one after an upgrade), as pg-pool's
    // allowExitOnIdle relies on; checked so that a client without it is left as it is.
    internals(client).ref?.()
  }

  unref(client: Client): void {
    internals(client).unref?.()
  }

  watch(client: Client, onDeath: (error?: unknown) => void): void {
    // pg emits 'error' on an idle client whose backend was terminated (57P01, 57P05) or whose
    // socket failed, then 'end' when the socket closes. Either means the client is unusable.
    client.on('error', (error: unknown) => onDeath(error))
    client.on('end', () => onDeath())
    // A write the server refused as read-only, seen on the wire whoever sent it.
    watchReadOnlyErrors(client, onDeath)
  }

  async inspect(client: Client): Promise<PostgresServerInfo> {
    const result = await run<{ rows: Array<{ name: string; setting: string }> }>(
      client,
      SETTINGS_SQL,
    )
    const settings = new Map(result.rows.map((row) => [row.name, row.setting]))
    const maxConnections = Number(settings.get('max_connections'))
    const version = settings.get('server_version')
    const pooler = this.#poolerInfo(client, settings.get('backend_pid'))
    if (pooler !== undefined) {
      if (this.#pooler === undefined) this.#poolerNoticed = true
      // The pool's connections end at the pooler: the server's max_connections and idle cut-off
      // govern the pooler's own server connections, not these (PgBouncer's max_client_conn and
      // client_idle_timeout do, and no client can read them).
      return { pooler, version: version === undefined ? undefined : `PostgreSQL ${version}` }
    }
    return {
      version: version === undefined ? undefined : `PostgreSQL ${version}`,
      maxConnections: Number.isFinite(maxConnections) ? maxConnections : undefined,
      // idle_session_timeout is missing before PostgreSQL 14, and 0 means off.
      idleCutoffMs: milliseconds(settings.get('idle_session_timeout')),
      idleCutoffSetting: 'idle_session_timeout',
      idleInTransactionTimeoutMs: milliseconds(settings.get('idle_in_transaction_session_timeout')),
    }
  }
}

/**
 * Makes `client` refuse pg's named queries (`{ name, text }`) with a `NamedStatementError`, in the
 * form of the call (a callback, a promise, or a throw for a submittable), before anything is sent.
 */
function refuseNamedStatements(client: Client): void {
  const query = client.query as unknown as (...args: unknown[]) => unknown
  const guarded = function (this: Client, ...args: unknown[]): unknown {
    const config = args[0] as { name?: unknown; submit?: unknown; callback?: unknown } | null
    if (typeof config !== 'object' || config === null || !config.name) {
      return query.apply(this, args)
    }
    const error = new NamedStatementError(
      `named prepared statement "${String(config.name)}" refused: a pooler in transaction mode is in front (the dialect's pooler option) and it does not carry prepared statements, so the statement would be prepared on one server connection and run on another; leave out the name, or use PgBouncer 1.21+ with max_prepared_statements > 0 and set pooler: { mode: 'transaction', preparedStatements: true }`,
    )
    const callback =
      typeof args[args.length - 1] === 'function'
        ? (args[args.length - 1] as (error: unknown) => void)
        : typeof config.callback === 'function'
          ? (config.callback as (error: unknown) => void)
          : undefined
    if (callback !== undefined) {
      process.nextTick(() => callback(error))
      return undefined
    }
    if (typeof config.submit === 'function') throw error
    return Promise.reject(error)
  }
  Object.defineProperty(client, 'query', { value: guarded, writable: true, configurable: true })
}

const STEP_SQL: Record<TransactionStep, string> = {
  begin: 'BEGIN',
  commit: 'COMMIT',
  rollback: 'ROLLBACK',
}

/**
 * Creates the PostgreSQL dialect: each pooled connection is a `pg.Client` made from `config` (a
 * connection string or pg's `ClientConfig`, passed to pg unchanged, TLS options included). It
 * pings with an empty query, resets with ROLLBACK only when pg's transaction status says a
 * transaction is open (`'rollback'`), or with `DISCARD ALL` (`'session'`), and reads
 * `idle_session_timeout` and `max_connections` on the first connection. Throws
 * `DriverMissingError` when `pg` is not installed, and `InvalidOptionError` for a `config`
 * that pg would not read as PostgreSQL's (a number, a `mysql://` URL), naming only a URL's scheme,
 * or for `options` other than those of {@link PostgresDialectOptions}: a client class of one's own
 * (`Client`), and what to do with a connection released while its query runs (`releasedBusy`).
 *
 * @example
 * ```ts
 * import { createPool } from 'lifeguard'
 * import { postgres } from 'lifeguard/postgres'
 *
 * const pool = createPool({ dialect: postgres('postgres://app@localhost/app'), max: 10 })
 * const { rows } = await pool.use((client) => client.query('SELECT now()'))
 * ```
 */
export function postgres(
  config?: string | ClientConfig,
  options: PostgresDialectOptions = {},
): Dialect<Client> {
  checkConnectionArgument(config, ARGUMENT)
  return new PostgresDialect(config, checkedOptions(options))
}

/** The keys of {@link PostgresDialectOptions}: any other is refused, a typo included. */
const DIALECT_OPTION_KEYS: readonly string[] = ['Client', 'releasedBusy', 'pooler']

/** The dialect's options, checked at the call: each bad one named with its value and what is allowed. */
function checkedOptions(options: unknown): PostgresDialectOptions {
  if (options === undefined || options === null) return {}
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidOptionError(
      'options',
      `Invalid option options: ${describe(options)}; expected an object with Client, releasedBusy and pooler`,
    )
  }
  for (const key of Object.keys(options)) {
    if (!DIALECT_OPTION_KEYS.includes(key)) {
      const value = (options as Record<string, unknown>)[key]
      throw new InvalidOptionError(
        key,
        `Unknown option ${key}: ${describe(value)}; postgres() takes only Client, releasedBusy and pooler`,
      )
    }
  }
  const { Client, releasedBusy, pooler } = options as PostgresDialectOptions
  if (Client !== undefined && (typeof Client !== 'function' || !isConstructor(Client))) {
    throw new InvalidOptionError(
      'Client',
      `Invalid option Client: ${describe(Client)}; expected a client class (constructor), such as pg's Client`,
    )
  }
  if (releasedBusy !== undefined && releasedBusy !== 'close' && releasedBusy !== 'wait') {
    throw new InvalidOptionError(
      'releasedBusy',
      `Invalid option releasedBusy: ${describe(releasedBusy)}; expected 'close' or 'wait'`,
    )
  }
  return { Client, releasedBusy, pooler: checkedPooler(pooler) }
}

/** The `pooler` option, checked: an object with a mode, and a boolean for prepared statements. */
function checkedPooler(pooler: unknown): PoolerOptions | undefined {
  if (pooler === undefined) return undefined
  if (typeof pooler !== 'object' || pooler === null || Array.isArray(pooler)) {
    throw new InvalidOptionError(
      'pooler',
      `Invalid option pooler: ${describe(pooler)}; expected { mode: 'transaction' | 'session', preparedStatements?: boolean }`,
    )
  }
  for (const key of Object.keys(pooler)) {
    if (key !== 'mode' && key !== 'preparedStatements') {
      throw new InvalidOptionError(
        `pooler.${key}`,
        `Unknown option pooler.${key}: ${describe((pooler as Record<string, unknown>)[key])}; pooler takes only mode and preparedStatements`,
      )
    }
  }
  const { mode, preparedStatements } = pooler as PoolerOptions
  if (mode !== 'transaction' && mode !== 'session') {
    throw new InvalidOptionError(
      'pooler.mode',
      `Invalid option pooler.mode: ${describe(mode)}; expected 'transaction' or 'session' (PgBouncer's 'statement' mode is not supported)`,
    )
  }
  if (preparedStatements !== undefined && typeof preparedStatements !== 'boolean') {
    throw new InvalidOptionError(
      'pooler.preparedStatements',
      `Invalid option pooler.preparedStatements: ${describe(preparedStatements)}; expected true or false`,
    )
  }
  return { mode, preparedStatements: preparedStatements ?? false }
}
