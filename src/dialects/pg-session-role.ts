import type { Client } from 'pg'
import type { ReadOnlyScope, ServerRole } from '../core/dialect.js'
import { causes } from './network-errors.js'

/** SQLSTATE read_only_sql_transaction: a write refused in a read-only transaction or on a hot standby. */
export const PG_READ_ONLY_STATE = '25006'

/** The parameters a PostgreSQL 14+ server reports at connect and on change (GUC_REPORT) that say its role. */
const ROLE_PARAMETERS = ['in_hot_standby', 'default_transaction_read_only'] as const

/** The role query for a server that reports neither parameter (before 14): libpq's two checks in one. */
const ROLE_SQL =
  "SELECT pg_catalog.pg_is_in_recovery() AS standby, pg_catalog.current_setting('transaction_read_only') AS read_only"

/** A message pg's connection emits: ParameterStatus or ErrorResponse, as far as used here. */
interface ProtocolMessage {
  parameterName?: string
  parameterValue?: string
  code?: string
}

/** pg's `Client.connection`, the protocol's event emitter, where present. */
interface WireEvents {
  on(event: string, listener: (message: ProtocolMessage) => void): unknown
}

/** What each client's server last reported of the role parameters, kept beside the client. */
const reported = new WeakMap<Client, Map<string, string>>()

function wire(client: Client): WireEvents | undefined {
  const connection = (client as unknown as { connection?: unknown }).connection
  return typeof (connection as WireEvents | undefined)?.on === 'function'
    ? (connection as WireEvents)
    : undefined
}

/**
 * Starts keeping what the server reports of its role (ParameterStatus), before the client
 * connects: a PostgreSQL 14+ server sends `in_hot_standby` and `default_transaction_read_only`
 * during the startup, so that {@link pgRole} needs no round trip (libpq's rule). A client without
 * pg's `connection` emitter (a custom `Client`) is left alone, and answered by a query.
 */
export function noteRoleParameters(client: Client): void {
  const events = wire(client)
  if (events === undefined) return
  const values = new Map<string, string>()
  reported.set(client, values)
  events.on('parameterStatus', (message) => {
    const name = message.parameterName
    if (name === 'in_hot_standby' || name === 'default_transaction_read_only') {
      values.set(name, String(message.parameterValue))
    }
  })
}

/**
 * The role of the server a client reached: from the parameters it reported (no round trip), or
 * from one query when it reported neither (before PostgreSQL 14). `run` sends the query.
 */
export async function pgRole(
  client: Client,
  run: (sql: string) => Promise<{ rows: Array<Record<string, unknown>> }>,
): Promise<ServerRole> {
  const values = reported.get(client)
  if (values !== undefined && ROLE_PARAMETERS.every((name) => values.has(name))) {
    if (values.get('in_hot_standby') === 'on') return 'standby'
    return values.get('default_transaction_read_only') === 'on' ? 'read-only' : 'read-write'
  }
  const row = (await run(ROLE_SQL)).rows[0] ?? {}
  if (row.standby === true || row.standby === 't') return 'standby'
  return row.read_only === 'on' ? 'read-only' : 'read-write'
}

/** Whether `error` (or a cause of it) is PostgreSQL refusing a write: 25006 read_only_sql_transaction. */
export function isPgReadOnlyError(error: unknown): boolean {
  for (const fields of causes(error)) if (fields.code === PG_READ_ONLY_STATE) return true
  return false
}

/** The scope each 25006 was judged to have at the ReadyForQuery after it, by error object. */
const judged = new WeakMap<object, ReadOnlyScope>()

/**
 * Whose refusal a 25006 is, as judged at the ReadyForQuery after it: `'server'` when the session
 * then reported `in_hot_standby` or `default_transaction_read_only` on, else `'session'` (an
 * explicit `BEGIN READ ONLY`, a `SELECT … FOR UPDATE` in one, or a server before 14 that reports
 * neither). Before that ReadyForQuery: `'server'` if the session had reported itself read-only
 * already, else `'session'` (the pool then hears of it at the ReadyForQuery, through `watch`).
 */
export function pgReadOnlyScope(error: unknown): ReadOnlyScope {
  for (const fields of causes(error)) {
    const scope = judged.get(fields as object)
    if (scope !== undefined) return scope
  }
  return 'session'
}

/**
 * Calls `onReadOnly` with each 25006 the server sends on the client, whoever sent the statement
 * (a lease's holder, a facade's caller), once its scope is known: at the ErrorResponse when the
 * session had reported itself read-only already (the server's), else at the next ReadyForQuery. A
 * reload that makes the server read-only is reported (ParameterStatus
 * `default_transaction_read_only`) between the ErrorResponse and that ReadyForQuery; an explicit
 * read-only transaction changes neither parameter. The pool then retires the connection, and for
 * a server-level refusal the older ones, however the holder gives it back.
 */
export function watchReadOnlyErrors(client: Client, onReadOnly: (error: unknown) => void): void {
  const events = wire(client)
  if (events === undefined) return
  let pending: object | undefined
  const readOnlyNow = () => {
    const values = reported.get(client)
    return (
      values?.get('in_hot_standby') === 'on' ||
      values?.get('default_transaction_read_only') === 'on'
    )
  }
  const report = (error: object) => {
    // This runs inside pg's socket handler: a throw here would escape to the process.
    try {
      onReadOnly(error)
    } catch {}
  }
  events.on('errorMessage', (message) => {
    if (message.code !== PG_READ_ONLY_STATE) return
    // The server flushes an ErrorResponse on its own, so the caller may hold the error, and give
    // the connection back, before the ReadyForQuery arrives: a session that already reported
    // itself read-only is the server's refusal now, and nothing later changes that, so the pool
    // hears of it before the caller's await resumes.
    if (readOnlyNow()) {
      judged.set(message, 'server')
      return report(message)
    }
    pending = message
  })
  events.on('readyForQuery', () => {
    const error = pending
    if (error === undefined) return
    pending = undefined
    judged.set(error, readOnlyNow() ? 'server' : 'session')
    report(error)
  })
}
