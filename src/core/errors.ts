/**
 * A brand shared by every copy of lifeguard loaded in one process, so that `instanceof` keeps
 * working when a dependency tree holds two copies of the package (undici does the same).
 */
const kBrand = Symbol.for('lifeguard.error')

/** Where a user can read about an error code. */
function seeAlso(code: string): string {
  return `see docs/errors.md#${code.toLowerCase()}`
}

/**
 * The base class of every error lifeguard throws. Each subclass carries a stable `code`, and
 * `docs/errors.md` explains every code.
 */
export class PoolError extends Error {
  /** A stable, machine-readable code such as `LIFEGUARD_ACQUIRE_TIMEOUT`. */
  readonly code: string

  constructor(message: string, code: string, options?: { cause?: unknown }) {
    super(`${message} [${code}, ${seeAlso(code)}]`, options)
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
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, AcquireTimeoutError.code, options)
  }
}
named(AcquireTimeoutError, 'AcquireTimeoutError')

/** `acquire()` would have waited, but `maxWaiting` callers were already waiting. */
export class TooManyWaitersError extends PoolError {
  /** The stable code of this error. */
  static readonly code = 'LIFEGUARD_TOO_MANY_WAITERS'
  constructor(message: string) {
    super(message, TooManyWaitersError.code)
  }
}
named(TooManyWaitersError, 'TooManyWaitersError')

/** The pool was closed or destroyed: it lends nothing more. */
export class PoolClosedError extends PoolError {
  /** The stable code of this error. */
  static readonly code = 'LIFEGUARD_CLOSED'
  constructor(message: string) {
    super(message, PoolClosedError.code)
  }
}
named(PoolClosedError, 'PoolClosedError')

/** Opening a physical connection failed or timed out; `cause` holds the driver's error. */
export class ConnectError extends PoolError {
  /** The stable code of this error. */
  static readonly code = 'LIFEGUARD_CONNECT_FAILED'
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, ConnectError.code, options)
  }
}
named(ConnectError, 'ConnectError')

/** A lease was used after it was released or destroyed. */
export class LeaseReleasedError extends PoolError {
  /** The stable code of this error. */
  static readonly code = 'LIFEGUARD_LEASE_RELEASED'
  constructor(message: string) {
    super(message, LeaseReleasedError.code)
  }
}
named(LeaseReleasedError, 'LeaseReleasedError')

/** An option passed to the pool is invalid; the message names the option, the value and what is allowed. */
export class InvalidOptionError extends PoolError {
  /** The stable code of this error. */
  static readonly code = 'LIFEGUARD_INVALID_OPTION'
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
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, TransactionFailedError.code, options)
  }
}
named(TransactionFailedError, 'TransactionFailedError')
