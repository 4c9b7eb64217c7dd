import type { Connection } from 'mysql2'
import type { ReadOnlyScope, ServerRole } from '../core/dialect.js'
import { causes } from './network-errors.js'

/**
 * The MySQL and MariaDB errors of a write refused by a read-only server or session, by errno,
 * with their names (mysql2's `code`): the three that mysql2's own pool (3.17.2+) and
 * go-sql-driver/mysql treat so.
 */
export const MYSQL_READ_ONLY_ERRNOS: ReadonlyMap<number, string> = new Map([
  // "The MySQL server is running with the --read-only option": read_only, super_read_only, and
  // Aurora's demoted writer. Generic ("running with the --%s option"): only when the message
  // names read-only (see isMysqlReadOnlyError).
  [1290, 'ER_OPTION_PREVENTS_STATEMENT'],
  // "Cannot execute statement in a READ ONLY transaction": a read-only transaction or session,
  // and what Aurora answers on a reader.
  [1792, 'ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION'],
  // "Running in read-only mode": innodb_read_only.
  [1836, 'ER_READ_ONLY_MODE'],
])

/** The errno that names the option preventing a statement, read-only or not (`--secure-file-priv`, `--skip-grant-tables`, …). */
const OPTION_PREVENTS = 1290
/** The errno of a write in a read-only transaction: the session's, not the server's. */
const READ_ONLY_TRANSACTION = 1792
/** How 1290's message names the read-only options (`--read-only`, `--super-read-only`); option names are never translated. */
const READ_ONLY_OPTION = /read[-_ ]only/i

/**
 * The role query: the server's `read_only` (set too by `super_read_only`), `innodb_read_only`,
 * and whether new sessions' transactions are read-only: `transaction_read_only` where the server
 * has it (MySQL 5.7.20+, MariaDB 11.1+), else `tx_read_only` (MariaDB 10.x, which knows only
 * that name), each tried in turn.
 */
const ROLE_SQL = [
  'SELECT @@global.read_only AS read_only, @@global.innodb_read_only AS innodb_read_only, @@global.transaction_read_only AS transaction_read_only',
  'SELECT @@global.read_only AS read_only, @@global.innodb_read_only AS innodb_read_only, @@global.tx_read_only AS transaction_read_only',
]

/** errno 1193, ER_UNKNOWN_SYSTEM_VARIABLE: the server does not have that name. */
const UNKNOWN_SYSTEM_VARIABLE = 1193

/** Whether a refusal's errno and message make it a read-only one. */
function isRefusal(errno: number, message: unknown): boolean {
  if (!MYSQL_READ_ONLY_ERRNOS.has(errno)) return false
  return (
    errno !== OPTION_PREVENTS || (typeof message === 'string' && READ_ONLY_OPTION.test(message))
  )
}

/**
 * Whether `error` (or a cause of it) is a MySQL or MariaDB read-only refusal: 1792, 1836, or
 * 1290 whose message names the read-only option (1290 is also `--secure-file-priv`'s error).
 */
export function isMysqlReadOnlyError(error: unknown): boolean {
  return readOnlyErrno(error) !== undefined
}

/** The errno of the read-only refusal `error` is (or has as a cause), if any. */
function readOnlyErrno(error: unknown): number | undefined {
  for (const fields of causes(error)) {
    const { errno } = fields
    const message = (fields as { sqlMessage?: unknown }).sqlMessage ?? fields.message
    if (typeof errno === 'number' && isRefusal(errno, message)) {
      return errno
    }
  }
  return undefined
}

/**
 * Whose refusal `error` is: 1792 is a read-only transaction or session (`'session'`: mysql2's own
 * pool, 3.17.2+, drops that connection alone); 1290 and 1836 are the server's.
 */
export function mysqlReadOnlyScope(error: unknown): ReadOnlyScope {
  return readOnlyErrno(error) === READ_ONLY_TRANSACTION ? 'session' : 'server'
}

/**
 * Which of the role queries a server answers, learnt by the first role read: kept by each
 * dialect, so that a MariaDB 10.x pays for the unknown `transaction_read_only` only once.
 */
export interface RoleQueryChoice {
  /** The index in the role queries of the one to send; starts at 0. */
  variant: number
}

/**
 * The role of the server a connection reached, from one query (two, the first time, on a server
 * that has only `tx_read_only`). `run` sends it; `choice` remembers which query the server knows.
 */
export async function mysqlRole(
  run: (sql: string) => Promise<Array<Record<string, unknown>>>,
  choice: RoleQueryChoice = { variant: 0 },
): Promise<ServerRole> {
  let rows: Array<Record<string, unknown>>
  for (;;) {
    try {
      rows = await run(ROLE_SQL[choice.variant]!)
      break
    } catch (error) {
      const unknown = (error as { errno?: unknown } | null)?.errno === UNKNOWN_SYSTEM_VARIABLE
      if (!unknown || choice.variant >= ROLE_SQL.length - 1) throw error
      choice.variant++
    }
  }
  const row = rows[0] ?? {}
  return Number(row.read_only) === 1 ||
    Number(row.innodb_read_only) === 1 ||
    Number(row.transaction_read_only) === 1
    ? 'read-only'
    : 'read-write'
}

/** A packet as mysql2's parser hands it to `handlePacket`: a view of its buffer. */
interface PacketView {
  buffer?: Buffer
  offset?: number
  end?: number
}

type HandlePacket = (this: { _paused?: boolean }, packet?: PacketView | null) => unknown

/**
 * Calls `onReadOnly` with each read-only refusal (1290 naming read-only, 1792, 1836) the server
 * sends on the connection, whichever command got it (a lease's query, mysql2's own `pool.query`
 * in the facade, a stream): the pool then retires the connection (and for 1290 and 1836 the
 * older ones), however the holder gives it back. It reads the error packet's first bytes as they arrive, before mysql2 hands the
 * error to its caller, through an own, non-enumerable `handlePacket` that then calls mysql2's.
 * The error it passes is built from the packet, in mysql2's shape (`errno`, `code`, `sqlState`,
 * `sqlMessage`); the caller still gets mysql2's own.
 */
export function watchReadOnlyErrors(
  connection: Connection,
  onReadOnly: (error: unknown) => void,
): void {
  const original = (connection as unknown as { handlePacket?: HandlePacket }).handlePacket
  if (typeof original !== 'function') return
  const handlePacket: HandlePacket = function (packet) {
    // A paused connection queues the packet and hands it here again later: seen then.
    if (packet?.buffer !== undefined && this._paused !== true) {
      const { buffer, offset = 0 } = packet
      const end = Math.min(packet.end ?? buffer.length, buffer.length)
      if (buffer[offset] === 0xff && end >= offset + 3) {
        const errno = buffer.readUInt16LE(offset + 1)
        const code = MYSQL_READ_ONLY_ERRNOS.get(errno)
        if (code !== undefined) {
          const error = refusal(errno, code, buffer, offset, end)
          // This runs inside mysql2's socket handler: a throw here would escape to the process.
          if (isRefusal(errno, error.sqlMessage)) {
            try {
              onReadOnly(error)
            } catch {}
          }
        }
      }
    }
    return original.call(this, packet)
  }
  Object.defineProperty(connection, 'handlePacket', {
    value: handlePacket,
    enumerable: false,
    writable: true,
    configurable: true,
  })
}

/** The error of a refusal, from its ERR packet: errno, `#`, the 5-character SQLSTATE, the message. */
function refusal(
  errno: number,
  code: string,
  buffer: Buffer,
  offset: number,
  end: number,
): Error & { sqlMessage: string } {
  const hasState = end >= offset + 9 && buffer[offset + 3] === 0x23 // '#'
  const sqlState = hasState ? buffer.toString('latin1', offset + 4, offset + 9) : undefined
  const sqlMessage = buffer.toString('utf8', hasState ? offset + 9 : offset + 3, end)
  return Object.assign(new Error(sqlMessage), { errno, code, sqlState, sqlMessage })
}
