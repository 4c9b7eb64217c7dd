/**
 * Node's socket error codes that mean the connection under a driver is gone. `ETIMEDOUT` is a
 * TCP keepalive or retransmission timeout on an established socket, not a slow query.
 */
const SOCKET_CODES = new Set([
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ECONNABORTED',
  'ENOTCONN',
  'ERR_STREAM_DESTROYED',
  'ERR_STREAM_WRITE_AFTER_END',
])

/** How deep `causes` follows `error.cause`: wrappers (ORMs, query builders) add a level or two. */
const MAX_CAUSE_DEPTH = 4

/** The fields a disconnect test reads of an error. */
export interface ErrorFields {
  code?: unknown
  errno?: unknown
  message?: unknown
  fatal?: unknown
}

/**
 * Yields `error` and its chain of causes (the driver's error wrapped by an ORM, say), as far as
 * {@link MAX_CAUSE_DEPTH}, skipping anything that is not an object.
 */
export function* causes(error: unknown): Generator<ErrorFields> {
  let current = error
  for (let depth = 0; depth <= MAX_CAUSE_DEPTH; depth++) {
    if (typeof current !== 'object' || current === null) return
    yield current as ErrorFields
    current = (current as { cause?: unknown }).cause
  }
}

/** Whether an error's code is a socket error that means the connection is gone. */
export function isSocketError(fields: ErrorFields): boolean {
  return typeof fields.code === 'string' && SOCKET_CODES.has(fields.code)
}
