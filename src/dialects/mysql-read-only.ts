import type { Connection } from 'mysql2'
import type { ServerRole } from '../core/dialect.js'
import { causes } from './network-errors.js'

/**
 * The MySQL and MariaDB errors of a write refused by a read-only server or session, by errno,
 * with their names (mysql2's `code`): the three that mysql2's own pool (3.17.2+) and
 * go-sql-driver/mysql treat so.
 */
export const MYSQL_READ_ONLY_ERRNOS: ReadonlyMap<number, string> = new Map([
  // "The MySQL server is running with the --read-only option": read_only, super_read_only, and
  // Aurora's demoted writer.
  [1290, 'ER_OPTION_PREVENTS_STATEMENT'],
  // "Cannot execute statement in a READ ONLY transaction": a read-only transaction or session,
  // and what Aurora answers on a reader.
  [1792, 'ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION'],
  // "Running in read-only mode": innodb_read_only.
  [1836, 'ER_READ_ONLY_MODE'],
])

/** The role query: the server's `read_only` (set too by `super_read_only`) and `innodb_read_only`. */
const ROLE_SQL =
  'SELECT @@global.read_only AS read_only, @@global.innodb_read_only AS innodb_read_only'

/** Whether `error` (or a cause of it) is a MySQL or MariaDB read-only refusal: 1290, 1792 or 1836. */
export function isMysqlReadOnlyError(error: unknown): boolean {
  for (const fields of causes(error)) {
    if (typeof fields.errno === 'number' && MYSQL_READ_ONLY_ERRNOS.has(fields.errno)) return true
  }
  return false
}

/** The role of the server a connection reached, from one query. `run` sends it. */
export async function mysqlRole(
  run: (sql: string) => Promise<Array<Record<string, unknown>>>,
): Promise<ServerRole> {
  const row = (await run(ROLE_SQL))[0] ?? {}
  return Number(row.read_only) === 1 || Number(row.innodb_read_only) === 1
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
 * Calls `onReadOnly` with each read-only refusal (1290, 1792, 1836) the server sends on the
 * connection, whichever command got it (a lease's query, mysql2's own `pool.query` in the
 * facade, a stream): the pool then retires the connection and the older ones, however the holder
 * gives it back. It reads the error packet's first bytes as they arrive, before mysql2 hands the
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
      if (buffer[offset] === 0xff && buffer.length >= offset + 3) {
        const errno = buffer.readUInt16LE(offset + 1)
        const code = MYSQL_READ_ONLY_ERRNOS.get(errno)
        if (code !== undefined) onReadOnly(refusal(errno, code, buffer, offset, packet.end))
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
  end: number | undefined,
): Error {
  const hasState = buffer[offset + 3] === 0x23 // '#'
  const sqlState = hasState ? buffer.toString('latin1', offset + 4, offset + 9) : undefined
  const sqlMessage = buffer.toString('utf8', hasState ? offset + 9 : offset + 3, end)
  return Object.assign(new Error(sqlMessage), { errno, code, sqlState, sqlMessage })
}
