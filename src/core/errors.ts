import type { ServerRole } from './dialect.js'
import type { TargetSessionAttrs } from './pool-options.js'

/**
 * A brand shared by every copy of lifeguard loaded in one process, so that `instanceof` keeps
 * working when a dependency tree holds two copies of the package (undici does the same).
 */
const kBrand = Symbol.for('lifeguard.error')

/**
 * Every code that a {@link PoolError} carries. A runtime list, so that the tests can check that
 * each has its section in docs/errors.md and that `lifeguard explain` prints it.
 */
export const ERROR_CODES = [
  'LIFEGUARD_ACQUIRE_TIMEOUT',
  'LIFEGUARD_TOO_MANY_WAITERS',
  'LIFEGUARD_CLOSED',
  'LIFEGUARD_CONNECT_FAILED',
  'LIFEGUARD_UNAVAILABLE',
  'LIFEGUARD_LEASE_RELEASED',
  'LIFEGUARD_INVALID_OPTION',
  'LIFEGUARD_SCOPE_ENDED',
  'LIFEGUARD_TRANSACTION_FAILED',
  'LIFEGUARD_DRIVER_MISSING',
  'LIFEGUARD_PING_TIMEOUT',
  'LIFEGUARD_RESET_TIMEOUT',
  'LIFEGUARD_CLOSE_TIMEOUT',
  'LIFEGUARD_WRONG_ROLE',
  'LIFEGUARD_NAMED_STATEMENT',
  'LIFEGUARD_BUDGET_TIMEOUT',
  'LIFEGUARD_PIPELINE_ABORTED',
] as const

/** The stable, machine-readable code of an error lifeguard throws, such as `LIFEGUARD_ACQUIRE_TIMEOUT`. */
export type ErrorCode = (typeof ERROR_CODES)[number]

/** Every code of a warning lifeguard emits (the pool's `'warning'` event and `process.emitWarning`). */
export const WARNING_CODES = [
  'LIFEGUARD_POOL_EXCEEDS_SERVER',
  'LIFEGUARD_LISTENER_THREW',
  'LIFEGUARD_RESET_BEHIND_POOLER',
  'LIFEGUARD_BUDGET_UNREACHABLE',
  'LIFEGUARD_BUDGET_REFUSED',
] as const

/** The stable code of a warning lifeguard emits, such as `LIFEGUARD_POOL_EXCEEDS_SERVER`. */
export type WarningCode = (typeof WARNING_CODES)[number]

/**
 * How a message points to its explanation: a command that works wherever the package is
 * installed, since the package ships docs/errors.md and `lifeguard explain` prints a code's
 * section of it. A repository path or a URL would not: users have neither the repository nor,
 * for this project, a website (SQLAlchemy's `sqlalche.me/e/…` is the idea, made local).
 */
export function explainHint(code: ErrorCode | WarningCode): string {
  return `[${code}, run: npx lifeguard explain ${code.slice('LIFEGUARD_'.length).toLowerCase()}]`
}

/**
 * The base class of every error lifeguard throws. Each subclass carries a stable `code`, and
 * `npx lifeguard explain <code>` prints what it means and what to do (docs/errors.md).
 */
export class PoolError extends Error {
  /** A stable, machine-readable code such as `LIFEGUARD_ACQUIRE_TIMEOUT`; each subclass narrows it to its own. */
  readonly code: ErrorCode

  constructor(message: string, code: ErrorCode, options?: { cause?: unknown }) {
    super(`${message} ${explainHint(code)}`, options)
    this.code = code
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    if (typeof value !== 'object' || value === null) return false
    if ((value as Record<symbol, unknown>)[kBrand] !== true) return false
    const code = (this as unknown as { code?: string }).code
    return code === undefined || (value as { code?: unknown }).code === code
  }
}
Object.defineProperty(PoolError.prototype, kBrand, { value: true })

/**
 * Gives an error class the name that `String(error)` and stack traces print. Written out, not
 * read from the class (`new.target.name`): bundlers rename classes (esbuild makes
 * `InvalidOptionError` `_InvalidOptionError` when a static member refers to it), and the name
 * must survive that. On the prototype, like `Error.prototype.name`, so it is not an own property.
 */
function named(errorClass: abstract new (...args: never[]) => Error, name: string): void {
  Object.defineProperty(errorClass.prototype, 'name', {
    value: name,
    writable: true,
    configurable: true,
    enumerable: false,
  })
}
named(PoolError, 'PoolError')

/** `acquire()` waited `acquireTimeout` (or its own `timeout`) and no connection came free. */
export class AcquireTimeoutError extends PoolError {
  /** The stable code of this error. */
  static readonly code = 'LIFEGUARD_ACQUIRE_TIMEOUT'
  /** This error's code, always `LIFEGUARD_ACQUIRE_TIMEOUT`. */
  declare readonly code: 'LIFEGUARD_ACQUIRE_TIMEOUT'
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, AcquireTimeoutError.code, options)
  }
}
named(AcquireTimeoutError, 'AcquireTimeoutError')

/**
 * `acquire()` waited `acquireTimeout` (or its own `timeout`) while the pool waited for a slot of
 * its shared connection budget (`budget`): every slot was held elsewhere, or the budget's store
 * (Redis) was unreachable; then `cause` is the store's last error.
 */
export class BudgetTimeoutError extends PoolError {
  /** The stable code of this error. */
  static readonly code = 'LIFEGUARD_BUDGET_TIMEOUT'
  /** This error's code, always `LIFEGUARD_BUDGET_TIMEOUT`. */
  declare readonly code: 'LIFEGUARD_BUDGET_TIMEOUT'
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, BudgetTimeoutError.code, options)
  }
}
named(BudgetTimeoutError, 'BudgetTimeoutError')

/** `acquire()` would have waited, but `maxWaiting` callers were already waiting. */
export class TooManyWaitersError extends PoolError {
  /** The stable code of this error. */
  static readonly code = 'LIFEGUARD_TOO_MANY_WAITERS'
  /** This error's code, always `LIFEGUARD_TOO_MANY_WAITERS`. */
  declare readonly code: 'LIFEGUARD_TOO_MANY_WAITERS'
  constructor(message: string) {
    super(message, TooManyWaitersError.code)
  }
}
named(TooManyWaitersError, 'TooManyWaitersError')

/** The pool was closed or destroyed: it lends nothing more. */
export class PoolClosedError extends PoolError {
  /** The stable code of this error. */
  static readonly code = 'LIFEGUARD_CLOSED'
  /** This error's code, always `LIFEGUARD_CLOSED`. */
  declare readonly code: 'LIFEGUARD_CLOSED'
  constructor(message: string) {
    super(message, PoolClosedError.code)
  }
}
named(PoolClosedError, 'PoolClosedError')

/** Opening a physical connection failed or timed out; `cause` holds the driver's error. */
export class ConnectError extends PoolError {
  /** The stable code of this error. */
  static readonly code = 'LIFEGUARD_CONNECT_FAILED'
  /** This error's code, always `LIFEGUARD_CONNECT_FAILED`. */
  declare readonly code: 'LIFEGUARD_CONNECT_FAILED'
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, ConnectError.code, options)
  }
}
named(ConnectError, 'ConnectError')

/**
 * The pool is failing fast: its connects have failed without a break for `failFastAfter` ms and
 * it holds no open connection, so `acquire()` rejects at once instead of queueing for
 * `acquireTimeout`. `cause` is the last `ConnectError`. The pool keeps probing the server, one
 * connect at a time; the first that succeeds ends it.
 */
export class UnavailableError extends PoolError {
  /** The stable code of this error. */
  static readonly code = 'LIFEGUARD_UNAVAILABLE'
  /** This error's code, always `LIFEGUARD_UNAVAILABLE`. */
  declare readonly code: 'LIFEGUARD_UNAVAILABLE'
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, UnavailableError.code, options)
  }
}
named(UnavailableError, 'UnavailableError')

/** A lease was used after it was released or destroyed. */
export class LeaseReleasedError extends PoolError {
  /** The stable code of this error. */
  static readonly code = 'LIFEGUARD_LEASE_RELEASED'
  /** This error's code, always `LIFEGUARD_LEASE_RELEASED`. */
  declare readonly code: 'LIFEGUARD_LEASE_RELEASED'
  constructor(message: string) {
    super(message, LeaseReleasedError.code)
  }
}
named(LeaseReleasedError, 'LeaseReleasedError')

/** An option passed to the pool is invalid; the message names the option, the value and what is allowed. */
export class InvalidOptionError extends PoolError {
  /** The stable code of this error. */
  static readonly code = 'LIFEGUARD_INVALID_OPTION'
  /** This error's code, always `LIFEGUARD_INVALID_OPTION`. */
  declare readonly code: 'LIFEGUARD_INVALID_OPTION'
  /** The option's name. */
  readonly option: string
  constructor(option: string, message: string) {
    super(message, InvalidOptionError.code)
    this.option = option
  }
}
named(InvalidOptionError, 'InvalidOptionError')

/**
 * A query ran in a request scope that has already ended: its transaction was committed or rolled
 * back, so the work could not join it (see `RequestScope`).
 */
export class ScopeEndedError extends PoolError {
  /** The stable code of this error. */
  static readonly code = 'LIFEGUARD_SCOPE_ENDED'
  /** This error's code, always `LIFEGUARD_SCOPE_ENDED`. */
  declare readonly code: 'LIFEGUARD_SCOPE_ENDED'
  constructor(message: string) {
    super(message, ScopeEndedError.code)
  }
}
named(ScopeEndedError, 'ScopeEndedError')

/**
 * A transaction that lifeguard ran for a request scope did not commit: its connection was lost, or
 * the server rolled it back (PostgreSQL answers COMMIT with ROLLBACK after a failed statement).
 * `cause` holds the reason when there is one.
 */
export class TransactionFailedError extends PoolError {
  /** The stable code of this error. */
  static readonly code = 'LIFEGUARD_TRANSACTION_FAILED'
  /** This error's code, always `LIFEGUARD_TRANSACTION_FAILED`. */
  declare readonly code: 'LIFEGUARD_TRANSACTION_FAILED'
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, TransactionFailedError.code, options)
  }
}
named(TransactionFailedError, 'TransactionFailedError')

/**
 * A dialect's driver package is not installed (`pg` for `lifeguard/postgres`, `mysql2` for
 * `lifeguard/mysql`, `better-sqlite3` for `lifeguard/sqlite`); the message says what to install.
 */
export class DriverMissingError extends PoolError {
  /** The stable code of this error. */
  static readonly code = 'LIFEGUARD_DRIVER_MISSING'
  /** This error's code, always `LIFEGUARD_DRIVER_MISSING`. */
  declare readonly code: 'LIFEGUARD_DRIVER_MISSING'
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, DriverMissingError.code, options)
  }
}
named(DriverMissingError, 'DriverMissingError')

/**
 * A ping that validated an idle connection did not answer within `validationTimeout`, so the
 * connection was replaced; met as the `error` of an `'invalidate'` event with reason `ping`.
 */
export class PingTimeoutError extends PoolError {
  /** The stable code of this error. */
  static readonly code = 'LIFEGUARD_PING_TIMEOUT'
  /** This error's code, always `LIFEGUARD_PING_TIMEOUT`. */
  declare readonly code: 'LIFEGUARD_PING_TIMEOUT'
  constructor(message: string) {
    super(message, PingTimeoutError.code)
  }
}
named(PingTimeoutError, 'PingTimeoutError')

/**
 * A reset of a returned connection (or the `onConnect` after a session reset) did not finish
 * within `validationTimeout`, so the connection was closed; met as the `error` of an
 * `'invalidate'` event with reason `reset-failed`.
 */
export class ResetTimeoutError extends PoolError {
  /** The stable code of this error. */
  static readonly code = 'LIFEGUARD_RESET_TIMEOUT'
  /** This error's code, always `LIFEGUARD_RESET_TIMEOUT`. */
  declare readonly code: 'LIFEGUARD_RESET_TIMEOUT'
  constructor(message: string) {
    super(message, ResetTimeoutError.code)
  }
}
named(ResetTimeoutError, 'ResetTimeoutError')

/**
 * Closing a physical connection did not finish within `validationTimeout`; the pool stopped waiting
 * for it and carried on. The pool handles it itself: no call rejects with it.
 */
export class CloseTimeoutError extends PoolError {
  /** The stable code of this error. */
  static readonly code = 'LIFEGUARD_CLOSE_TIMEOUT'
  /** This error's code, always `LIFEGUARD_CLOSE_TIMEOUT`. */
  declare readonly code: 'LIFEGUARD_CLOSE_TIMEOUT'
  constructor(message: string) {
    super(message, CloseTimeoutError.code)
  }
}
named(CloseTimeoutError, 'CloseTimeoutError')

/**
 * A new connection reached a server whose role is not the one `targetSessionAttrs` asks for (a
 * read-only server, or a hot standby, for `'read-write'`): the pool closed it and treats the
 * connect as failed, transiently, retrying with backoff until the server (or the DNS name) leads
 * to the right one. Met as the `cause` of a `ConnectError`.
 */
export class WrongRoleError extends PoolError {
  /** The stable code of this error. */
  static readonly code = 'LIFEGUARD_WRONG_ROLE'
  /** This error's code, always `LIFEGUARD_WRONG_ROLE`. */
  declare readonly code: 'LIFEGUARD_WRONG_ROLE'
  /** The role the server reported: `'read-write'`, `'read-only'` or `'standby'`. */
  readonly role: ServerRole
  /** What `targetSessionAttrs` asked for. */
  readonly target: TargetSessionAttrs
  constructor(message: string, role: ServerRole, target: TargetSessionAttrs) {
    super(message, WrongRoleError.code)
    this.role = role
    this.target = target
  }
}
named(WrongRoleError, 'WrongRoleError')

/**
 * A named prepared statement (pg's `{ name, text }` query) was refused on a connection behind a
 * pooler in transaction mode that does not carry prepared statements (PgBouncer before 1.21, or
 * with `max_prepared_statements = 0`): it would be prepared on one server connection and run on
 * another, failing there or running another client's statement of the same name.
 */
export class NamedStatementError extends PoolError {
  /** The stable code of this error. */
  static readonly code = 'LIFEGUARD_NAMED_STATEMENT'
  /** This error's code, always `LIFEGUARD_NAMED_STATEMENT`. */
  declare readonly code: 'LIFEGUARD_NAMED_STATEMENT'
  constructor(message: string) {
    super(message, NamedStatementError.code)
  }
}
named(NamedStatementError, 'NamedStatementError')

/**
 * A statement pipelined behind others on a shared connection (`maxPipeline`) was lost with that
 * connection: its backend was terminated, its socket failed, or a statement ahead of it timed out
 * and the connection was destroyed to unblock the pipeline. It may or may not have run (an
 * autocommit statement the server ran before the loss stays committed); it was not retried.
 * `cause` is the driver's error.
 */
export class PipelineAbortedError extends PoolError {
  /** The stable code of this error. */
  static readonly code = 'LIFEGUARD_PIPELINE_ABORTED'
  /** This error's code, always `LIFEGUARD_PIPELINE_ABORTED`. */
  declare readonly code: 'LIFEGUARD_PIPELINE_ABORTED'
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, PipelineAbortedError.code, options)
  }
}
named(PipelineAbortedError, 'PipelineAbortedError')
