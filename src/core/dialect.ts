/** How a connection is cleaned before it is lent again: see {@link Dialect.reset}. */
export type ResetMode = 'rollback' | 'session'

/** A transaction-control statement the pool runs for a request scope: see {@link Dialect.transact}. */
export type TransactionStep = 'begin' | 'commit' | 'rollback'

/**
 * What a failed connect says of the next one: `'permanent'` when a retry will fail the same way
 * until someone changes something (a wrong password, an unknown database, TLS refused), and
 * `'transient'` when it may well succeed soon (refused, reset, timed out, too many connections,
 * the server starting or stopping). See {@link Dialect.classifyConnectError}.
 */
export type ConnectFailure = 'permanent' | 'transient'

/**
 * What a connection's server lets it do, as {@link Dialect.role} reads it: `'read-write'`, or
 * `'read-only'` (its transactions are read-only by default: PostgreSQL's
 * `default_transaction_read_only`, MySQL's `read_only` or `innodb_read_only`), or `'standby'`
 * (a PostgreSQL hot standby, read-only too).
 */
export type ServerRole = 'read-write' | 'read-only' | 'standby'

/**
 * What a read-only refusal says, as {@link Dialect.readOnlyScope} reads it: `'server'` (the server
 * refuses every write: a demoted writer, a hot standby) or `'session'` (only this connection's
 * transaction or session is read-only).
 */
export type ReadOnlyScope = 'server' | 'session'

/** What a dialect reads from the server on the pool's first connection. */
export interface ServerInfo {
  /** The server's version string. */
  version?: string | undefined
  /** How many connections the server allows in all (`max_connections`). */
  maxConnections?: number | undefined
  /**
   * The server closes a session left idle longer than this, in ms (MySQL's `wait_timeout`,
   * PostgreSQL's `idle_session_timeout`); `undefined` when it never does.
   */
  idleCutoffMs?: number | undefined
  /** The name of the server setting behind `idleCutoffMs`, for messages. */
  idleCutoffSetting?: string | undefined
  /** A connection pooler between the pool and the server (PgBouncer…); `undefined` when none is known. */
  pooler?: PoolerInfo | undefined
}

/**
 * A connection pooler that answers for the server, such as PgBouncer. In `'transaction'` mode it
 * lends a server connection for one transaction only, so session state does not last from one
 * transaction to the next, and a session reset has nothing of the client's to reset.
 */
export interface PoolerInfo {
  /** How it pools: per `'transaction'`, per `'session'`, or `undefined` when the dialect cannot tell. */
  mode: 'transaction' | 'session' | undefined
  /** How the dialect knows, for messages: the option the user set, or what it saw. */
  evidence: string
}

/**
 * Where a dialect connects, as the OpenTelemetry conventions name it: what a pool with no `name`
 * is named after (`address:port/namespace`). Never a credential: no user, no password, no URL.
 */
export interface DialectTarget {
  /** `server.address`: the server's host name or IP address, or a socket path. */
  address?: string | undefined
  /** `server.port`. */
  port?: number | undefined
  /** `db.namespace`: the database (for SQLite, the file). */
  namespace?: string | undefined
}

/**
 * What the pool needs of a database driver: open, close, and optionally ping, reset, recognise
 * a dead connection, report a connection's death, and run a transaction's steps. Only `connect`
 * and `close` are required. The pool core itself sends no SQL: every statement it causes is the
 * dialect's (`ping`, `reset`, `inspect`); the request scopes, though, ask for transactions
 * (`transact`, `inTransaction`), which is why those two speak of BEGIN and COMMIT.
 *
 * The contract, where the pool relies on it:
 * - Every method that takes a `signal` should give up when it aborts (the pool aborts it at
 *   `connectTimeout` for `connect` and `inspect`, at `validationTimeout` for `ping`, `reset` and
 *   `close`); the
 *   pool treats the call as failed at that moment either way, and does not wait for it.
 * - A method must never let an error escape as an `'error'` event or an unhandled rejection:
 *   the pool never crashes its host process.
 * - `reset` that throws or rejects discards the connection: the pool closes it rather than lend
 *   it, and a `reset` error that `isDisconnect` recognises also retires the connections older
 *   than it. Throwing is the way to refuse a connection the dialect cannot clean.
 *
 * @example
 * ```ts
 * const dialect: Dialect<net.Socket> = {
 *   name: 'echo',
 *   connect: (signal) => openSocket(signal),
 *   close: async (socket) => { socket.destroy() },
 * }
 * ```
 */
export interface Dialect<C> {
  /** A short name for logs, such as `postgres`. */
  readonly name: string
  /**
   * Where it connects, for the default name of a pool given none (`stats().name`, errors, the
   * diagnostics channels, metrics); a pool over a dialect without it is named `pool-N`.
   */
  readonly target?: DialectTarget | undefined
  /**
   * Opens one physical connection. The pool aborts `signal` at `connectTimeout`; the dialect
   * should give up then, and the pool treats the attempt as failed either way.
   */
  connect(signal: AbortSignal): Promise<C>
  /**
   * Closes a connection, politely when it can (the protocol's goodbye). It must not throw or
   * reject for a connection that is already dead. The pool aborts `signal` at `validationTimeout`
   * and stops waiting; the dialect should then tear the socket down at once. A connection whose
   * ping went unanswered gets a signal aborted from the start: no goodbye on a silent link.
   */
  close(connection: C, signal?: AbortSignal): Promise<void>
  /**
   * Checks that a connection is usable; rejects when it is not. The pool aborts `signal` at
   * `validationTimeout` and destroys the connection; it lends another before then when the
   * ping is slower than the ones it has seen (the hedge).
   */
  ping?(connection: C, signal: AbortSignal): Promise<void>
  /**
   * Cleans a returned connection: `'rollback'` ends any open or failed transaction, and
   * `'session'` also discards all session state. It may return synchronously when there is
   * nothing to do, which keeps the hand-off to the next borrower synchronous. Throwing or
   * rejecting discards the connection (the pool closes it, never lends it), as does missing
   * `validationTimeout`, when the pool aborts `signal`. The pool makes that signal only for a
   * `reset` that declares it (three parameters), since a reset runs on every release; one that
   * declares two gets a signal that never aborts.
   */
  reset?(connection: C, mode: ResetMode, signal?: AbortSignal): Promise<void> | void
  /**
   * Turns pipelining on (`on`) or off for a connection. On, the driver sends a statement while
   * earlier ones are still running, each with its own Sync, so that each fails alone; off, it
   * runs one at a time again. The pool turns it on when it lends a connection to callers that
   * share (`acquire({ shared: true })`), and off once the last of them gave it back, before
   * `reset` and before any caller gets it to itself. Returns whether this connection now
   * pipelines: `false` (an old driver, a pooler that cannot take a pipeline) makes the pool lend it
   * to one sharing caller at a time. It runs on the hot path: it must be cheap and not throw. A
   * dialect without it never shares a connection.
   */
  pipeline?(connection: C, on: boolean): boolean
  /**
   * Says whether a returned connection is still busy with work its borrower started (a query
   * still running at release): a promise that settles when that work is done, or `undefined`
   * when there is none. The pool waits for it before `reset`, without `validationTimeout`'s limit
   * (the work is the borrower's, not the reset's); meanwhile the connection is neither idle nor
   * lent, and counts against `max`. Throwing or rejecting discards the connection.
   */
  drain?(connection: C): Promise<void> | undefined
  /**
   * Runs BEGIN, COMMIT or ROLLBACK on a connection, for a request scope's per-route transaction.
   * A `'commit'` must reject when the transaction did not commit, even if the server answered
   * without an error (PostgreSQL turns COMMIT into ROLLBACK after a failed statement).
   */
  transact?(connection: C, step: TransactionStep): Promise<void>
  /**
   * Whether a transaction may be open on the connection; `true` when the dialect cannot tell.
   * A request scope uses it to roll back what a request left open.
   */
  inTransaction?(connection: C): boolean
  /**
   * Says whether a connect error is permanent or transient. On a permanent one the pool (with
   * `failFast`) rejects at once every caller that needs a new connection, instead of retrying
   * for them until `acquireTimeout`; it keeps probing in the background, since credentials get
   * rotated. Without this method, or when it throws, every connect error is transient. It gets
   * the driver's error as `connect` or `onConnect` threw it, or the pool's `ConnectError` for a
   * connect timeout.
   */
  classifyConnectError?(error: unknown): ConnectFailure
  /**
   * Asks the server to stop the statement running on `connection`, over a connection of its own
   * (PostgreSQL's cancel request, MySQL's `KILL QUERY`); the statement then fails for its
   * caller. Resolves once the server has taken the request; gives up when `signal` aborts. A
   * request scope opened with `cancelOnAbort` calls it when its request is abandoned while a
   * statement runs, and then closes that connection rather than lend it again: a cancel that
   * arrives late may stop whatever runs next on it.
   */
  cancel?(connection: C, signal: AbortSignal): Promise<void>
  /** Whether `error` means that the connection it came from is dead. */
  isDisconnect?(error: unknown): boolean
  /**
   * Whether `error` is the server refusing a write because it, or the session, is read-only
   * (PostgreSQL's 25006, MySQL's 1290, 1792 and 1836): a writer demoted by a failover answers so.
   * The pool then closes that connection, with the reason `read-only`; when the refusal is the
   * server's ({@link Dialect.readOnlyScope}), every connection made before it too (SQLAlchemy's
   * rule), since they all lead to the same demoted server. A pool whose `targetSessionAttrs` is
   * `'read-only'` takes it as an ordinary statement error.
   */
  isReadOnly?(error: unknown): boolean
  /**
   * For an error {@link Dialect.isReadOnly} recognises: whether the server refuses writes
   * (`'server'`: the pool retires the older connections too) or only the connection's session or
   * transaction does (`'session'`: that connection alone). MySQL's 1792 is a read-only
   * transaction; PostgreSQL's 25006 is the server's only when the session reports
   * `in_hot_standby` or `default_transaction_read_only` on at the ReadyForQuery after it. Without
   * this member every refusal is the server's.
   */
  readOnlyScope?(error: unknown): ReadOnlyScope
  /**
   * Reads the role of the server a new connection reached, for the pool's `targetSessionAttrs`:
   * PostgreSQL from the parameter status the server sent at connect (14+, no round trip), else
   * with one query. The pool aborts `signal` at `connectTimeout`.
   */
  role?(connection: C, signal: AbortSignal): Promise<ServerRole>
  /**
   * Subscribes the pool to a connection's death. The dialect calls `onDeath` when the driver
   * learns that the connection died while the pool was not using it (pg emits `'error'` on an
   * idle client whose backend was terminated; mysql2 sees a fatal error). The pool drops an idle
   * connection at once and a leased one on release. Called once, right after `connect`. A dialect
   * that sees the server refuse a write on the connection passes that error (one `isReadOnly`
   * recognises, whose `readOnlyScope` is already decided): the pool then drops it, and for a
   * server-level refusal the connections older than it, as `read-only`, the holder's way of
   * giving it back (`release()` included) making no difference. It should report the refusal
   * before the holder's code hears of the error where it can; it may report it after the holder
   * gave the connection back when its scope is not known yet (PostgreSQL decides a session's
   * refusal at the next ReadyForQuery).
   */
  watch?(connection: C, onDeath: (error?: unknown) => void): void
  /**
   * Lets the connection's socket keep the event loop alive again (Node's `socket.ref()`). The
   * pool calls it when an idle connection leaves the idle list (it is lent, pinged or closed),
   * when `allowExitOnIdle` is on and the dialect has both `ref` and `unref`. It runs on the
   * hot path: it must be cheap, allocate nothing, and not throw.
   */
  ref?(connection: C): void
  /**
   * Stops the connection's socket from keeping the event loop alive (Node's `socket.unref()`),
   * so that an idle pool lets the process exit. The pool calls it when a connection goes idle,
   * when `allowExitOnIdle` is on. A dialect with no socket (SQLite) leaves both out.
   */
  unref?(connection: C): void
  /**
   * Reads the server's limits. The pool calls it once, on its first connection (after
   * `onConnect`, so session settings count), to keep `maxLifetime` and `idleTimeout` below the
   * server's idle cut-off and to warn when the pool may open more connections than the server
   * allows. A rejection is ignored.
   */
  inspect?(connection: C, signal: AbortSignal): Promise<ServerInfo>
}
