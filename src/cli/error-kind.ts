import { causes } from '../dialects/network-errors.js'

/** The label of the error the seeds are about: the server refused one more connection. */
export const TOO_MANY_CONNECTIONS = 'Too many connections'

const BY_CODE: Record<string, string> = {
  // PostgreSQL: "sorry, too many clients already", and the reserved-slots variant.
  '53300': TOO_MANY_CONNECTIONS,
  // MySQL/MariaDB ER_CON_COUNT_ERROR (1040) is matched by errno below; these are the rest.
  ER_CON_COUNT_ERROR: TOO_MANY_CONNECTIONS,
  ER_TOO_MANY_USER_CONNECTIONS: 'User connection limit',
  ER_USER_LIMIT_REACHED: 'User connection limit',
  LIFEGUARD_ACQUIRE_TIMEOUT: 'Acquire timeout',
  LIFEGUARD_TOO_MANY_WAITERS: 'Too many waiters',
  LIFEGUARD_CLOSED: 'Pool closed',
  ECONNREFUSED: 'Connection refused',
  ECONNRESET: 'Connection reset',
  EPIPE: 'Connection reset',
  ETIMEDOUT: 'Connect timeout',
  EADDRNOTAVAIL: 'Out of local ports',
  EMFILE: 'Out of file descriptors',
  PROTOCOL_CONNECTION_LOST: 'Connection lost',
  '57P01': 'Connection terminated',
}

const BY_ERRNO: Record<number, string> = {
  1040: TOO_MANY_CONNECTIONS,
  1203: 'User connection limit',
  1226: 'User connection limit',
}

/**
 * Names the kind of a failed request's error, as the bench counts them: the server's refusal of
 * one more connection (PostgreSQL 53300, MySQL 1040) is "Too many connections", whether it came
 * straight from the driver or wrapped in lifeguard's `ConnectError`.
 */
export function errorKind(error: unknown): string {
  let fallback: string | undefined
  for (const fields of causes(error)) {
    if (typeof fields.errno === 'number' && BY_ERRNO[fields.errno] !== undefined) {
      return BY_ERRNO[fields.errno]!
    }
    const code = typeof fields.code === 'string' ? fields.code : undefined
    if (code !== undefined && BY_CODE[code] !== undefined) return BY_CODE[code]!
    const message = typeof fields.message === 'string' ? fields.message : ''
    if (/too many (clients|connections)/i.test(message)) return TOO_MANY_CONNECTIONS
    if (/timeout expired|connect(ion)? ?timeout|timed out/i.test(message)) {
      fallback ??= 'Connect timeout'
    }
    // lifeguard's ConnectError says little by itself; its cause names the kind.
    if (code !== undefined && code !== 'LIFEGUARD_CONNECT_FAILED') fallback ??= `Other (${code})`
  }
  return fallback ?? 'Other'
}
