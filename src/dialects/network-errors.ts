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

/**
 * Node's TLS error codes that mean the server's certificate or the TLS settings are wrong: a
 * retry meets the same certificate (the `tls` module's and OpenSSL's verification codes).
 */
const TLS_CONFIG_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REVOKED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_SSL_UNSUPPORTED_PROTOCOL',
  'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION',
  'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE',
])

/** Whether an error is a TLS certificate or settings error, which a retry meets again. */
export function isTlsConfigError(fields: ErrorFields): boolean {
  return typeof fields.code === 'string' && TLS_CONFIG_CODES.has(fields.code)
}
