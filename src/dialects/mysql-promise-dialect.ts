import type { Connection } from 'mysql2'
import type { Connection as PromiseConnection } from 'mysql2/promise'
import type {
  ConnectFailure,
  Dialect,
  DialectTarget,
  ReadOnlyScope,
  ResetMode,
  ServerRole,
  TransactionStep,
} from '../core/dialect.js'
import { MysqlDialect, type MysqlServerInfo } from './mysql-dialect.js'

/**
 * The connection that the `mysql()` dialect lends: a genuine mysql2/promise `Connection`
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
 * The `mysql()` dialect: the callback dialect's work, on promise connections. Every member
 * hands the callback connection under the lent one (`.connection`) to the callback dialect, which
 * owns all the driver handling; this class only wraps and unwraps.
 */
export class PromiseMysqlDialect implements Dialect<MysqlConnection> {
  readonly name = 'mysql'
  readonly #inner: MysqlDialect

  /** The callback dialect's target (see `MysqlDialect.target`). */
  get target(): DialectTarget {
    return this.#inner.target
  }

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

  close(connection: MysqlConnection, signal?: AbortSignal): Promise<void> {
    return this.#inner.close(connection.connection, signal)
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

  classifyConnectError(error: unknown): ConnectFailure {
    return this.#inner.classifyConnectError(error)
  }

  isDisconnect(error: unknown): boolean {
    return this.#inner.isDisconnect(error)
  }

  isReadOnly(error: unknown): boolean {
    return this.#inner.isReadOnly(error)
  }

  readOnlyScope(error: unknown): ReadOnlyScope {
    return this.#inner.readOnlyScope(error)
  }

  role(connection: MysqlConnection): Promise<ServerRole> {
    return this.#inner.role(connection.connection)
  }

  watch(connection: MysqlConnection, onDeath: (error?: unknown) => void): void {
    this.#inner.watch(connection.connection, onDeath)
  }

  inspect(connection: MysqlConnection): Promise<MysqlServerInfo> {
    return this.#inner.inspect(connection.connection)
  }
}
