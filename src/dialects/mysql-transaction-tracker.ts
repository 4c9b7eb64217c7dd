import type { Connection } from 'mysql2'
import { mayOpenTransaction } from './mysql-statement-classifier.js'

/**
 * What the mysql dialect knows of a connection's transaction state, so that a `'rollback'` reset
 * sends nothing when no transaction can be open. mysql2 does not keep the server's status flags,
 * so the tracker watches the commands instead: in autocommit mode only a few statements can leave
 * a transaction open (see {@link mayOpenTransaction}).
 */
export interface TransactionState {
  /** No command that might open a transaction ran since the last reset. */
  clean: boolean
  /** The session is in autocommit mode, as the server last reported. */
  autocommit: boolean
  /** The server reported the mode (a COMMIT's or ROLLBACK's OK packet) since the connect. */
  autocommitReported: boolean
  /**
   * No command since the last `'session'` reset (or the connect) could have changed the current
   * database: no statement with the word `USE` in it, no `DROP DATABASE`, no `changeUser`. The
   * reset then needs no `USE` to put the database back.
   */
  databaseKept: boolean
}

/** SERVER_STATUS_IN_TRANS, in the status flags of an OK packet. */
const STATUS_IN_TRANS = 0x0001
/** SERVER_STATUS_AUTOCOMMIT, in the status flags of an OK packet. */
const STATUS_AUTOCOMMIT = 0x0002

/** mysql2 commands that carry no SQL and cannot open a transaction. */
const INERT_COMMANDS = new Set(['Ping', 'Prepare', 'CloseStatement', 'Quit'])

/** mysql2 commands that carry no SQL and keep the current database (USE cannot be prepared). */
const DATABASE_INERT_COMMANDS = new Set([
  'Ping',
  'Prepare',
  'CloseStatement',
  'Quit',
  'ResetConnection',
])

/**
 * A statement that may change the current database: any with the word USE, wherever it is, or a
 * DROP DATABASE (dropping the current one leaves none selected).
 */
const MAY_CHANGE_DATABASE = /\buse\b|\bdrop\s+(?:database|schema)\b/i

const transactionStates = new WeakMap<Connection, TransactionState>()

type AddCommand = (command: { sql?: unknown; constructor?: { name?: string } }) => unknown

/**
 * Starts tracking a connection's {@link TransactionState} by patching its `addCommand`, through
 * which mysql2 sends every command (queries, executes, pings). `autocommit` is the session's
 * mode as read right after connecting. The patch is an own, non-enumerable property: the
 * connection stays a genuine mysql2 connection.
 */
export function trackTransactions(connection: Connection, autocommit: boolean): void {
  const state: TransactionState = {
    clean: true,
    autocommit,
    autocommitReported: false,
    databaseKept: true,
  }
  transactionStates.set(connection, state)
  const original = (connection as unknown as { addCommand: AddCommand }).addCommand
  const addCommand: AddCommand = function (this: unknown, command) {
    if (state.clean) {
      const sql = command.sql
      if (typeof sql === 'string') state.clean = !mayOpenTransaction(sql)
      else state.clean = INERT_COMMANDS.has(command.constructor?.name ?? '')
    }
    if (state.databaseKept) {
      const sql = command.sql
      if (typeof sql === 'string') state.databaseKept = !MAY_CHANGE_DATABASE.test(sql)
      else state.databaseKept = DATABASE_INERT_COMMANDS.has(command.constructor?.name ?? '')
    }
    return original.call(this, command)
  }
  Object.defineProperty(connection, 'addCommand', {
    value: addCommand,
    enumerable: false,
    writable: true,
    configurable: true,
  })
}

/** The tracked state of a connection; `undefined` when it is not tracked (unknown: assume the worst). */
export function transactionState(connection: Connection): TransactionState | undefined {
  return transactionStates.get(connection)
}

/**
 * Updates `state` from the status flags of the OK packet of a COMMIT or ROLLBACK: whether the
 * session is in autocommit mode (`SET autocommit = 0` makes every later statement open a
 * transaction), and whether a transaction is open (`completion_type = CHAIN` opens the next one).
 */
export function noteServerStatus(state: TransactionState, serverStatus: number): void {
  state.autocommit = (serverStatus & STATUS_AUTOCOMMIT) !== 0
  state.autocommitReported = true
  state.clean = (serverStatus & STATUS_IN_TRANS) === 0
}
