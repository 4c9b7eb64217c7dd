import { EventEmitter } from 'node:events'
import type { Connection } from 'mysql2'
import type { Client } from 'pg'
import { describe, expect, it } from 'vitest'
import {
  isMysqlReadOnlyError,
  mysqlReadOnlyScope,
  mysqlRole,
  watchReadOnlyErrors as watchMysql,
} from '../../src/dialects/mysql-read-only.js'
import {
  noteRoleParameters,
  pgReadOnlyScope,
  watchReadOnlyErrors as watchPg,
} from '../../src/dialects/pg-session-role.js'

// Issue 17, demoted writers: how the dialects read a refusal off the wire, without a server.

/** A MySQL ERR packet (header stripped, as mysql2 hands it to handlePacket): 0xff, errno, '#', SQLSTATE, message. */
function errPacket(
  errno: number,
  message: string,
  trailing = '',
): { buffer: Buffer; offset: number; end: number } {
  const body = Buffer.concat([
    Buffer.from([0xff, errno & 0xff, errno >> 8]),
    Buffer.from(`#HY000${message}`, 'utf8'),
  ])
  return { buffer: Buffer.concat([body, Buffer.from(trailing)]), offset: 0, end: body.length }
}

/** A stand-in for a mysql2 connection: what the watcher wraps is its handlePacket. */
function mysqlConnection(): { connection: Connection; handled: unknown[] } {
  const handled: unknown[] = []
  const connection = {
    handlePacket(packet: unknown) {
      handled.push(packet)
    },
  }
  return { connection: connection as unknown as Connection, handled }
}

describe('MySQL 1290 is read-only only when its message names the read-only option', () => {
  const secureFilePriv = Object.assign(new Error('x'), {
    errno: 1290,
    code: 'ER_OPTION_PREVENTS_STATEMENT',
    sqlMessage:
      'The MariaDB server is running with the --secure-file-priv option so it cannot execute this statement',
  })
  const readOnly = Object.assign(new Error('x'), {
    errno: 1290,
    sqlMessage:
      'The MySQL server is running with the --super-read-only option so it cannot execute this statement',
  })

  it('--secure-file-priv and --skip-grant-tables are not read-only refusals', () => {
    expect(isMysqlReadOnlyError(secureFilePriv)).toBe(false)
    expect(
      isMysqlReadOnlyError({
        errno: 1290,
        sqlMessage:
          'The MySQL server is running with the --skip-grant-tables option so it cannot execute this statement',
      }),
    ).toBe(false)
    expect(isMysqlReadOnlyError(readOnly)).toBe(true)
    expect(isMysqlReadOnlyError(new Error('wrapped', { cause: readOnly }))).toBe(true)
  })

  it('the wire watcher reports a read-only 1290, not a --secure-file-priv one', () => {
    const { connection, handled } = mysqlConnection()
    const seen: unknown[] = []
    watchMysql(connection, (error) => seen.push(error))
    const handle = (packet: unknown) =>
      (connection as unknown as { handlePacket(p: unknown): void }).handlePacket(packet)
    handle(
      errPacket(
        1290,
        'The MariaDB server is running with the --secure-file-priv option so it cannot execute this statement',
      ),
    )
    expect(seen).toEqual([])
    handle(
      errPacket(
        1290,
        'The MariaDB server is running with the --read-only option so it cannot execute this statement',
      ),
    )
    expect(seen).toHaveLength(1)
    expect(handled).toHaveLength(2)
  })
})

describe('MySQL refusals: whose they are', () => {
  it('1792 (a read-only transaction) is the session’s; 1836 and read-only 1290 are the server’s', () => {
    expect(
      mysqlReadOnlyScope({
        errno: 1792,
        sqlMessage: 'Cannot execute statement in a READ ONLY transaction',
      }),
    ).toBe('session')
    expect(mysqlReadOnlyScope({ errno: 1836, sqlMessage: 'Running in read-only mode' })).toBe(
      'server',
    )
    expect(
      mysqlReadOnlyScope({
        errno: 1290,
        sqlMessage: 'The MySQL server is running with the --read-only option',
      }),
    ).toBe('server')
  })
})

describe('the MySQL wire watcher', () => {
  it('reads the message only as far as the packet ends, not to the end of the buffer', () => {
    const { connection } = mysqlConnection()
    const seen: Array<{ sqlMessage: string }> = []
    watchMysql(connection, (error) => seen.push(error as { sqlMessage: string }))
    ;(connection as unknown as { handlePacket(p: unknown): void }).handlePacket(
      errPacket(1836, 'Running in read-only mode', '\u0001\u0002next packet'),
    )
    expect(seen.map((e) => e.sqlMessage)).toEqual(['Running in read-only mode'])
  })

  it('does not read an errno past the end of a packet too short to hold one', () => {
    const { connection, handled } = mysqlConnection()
    const seen: unknown[] = []
    watchMysql(connection, (error) => seen.push(error))
    // A 1-byte packet (0xff) followed, in the same buffer, by the bytes of the next one.
    const buffer = Buffer.from([0xff, 0x2c, 0x07, 0x23, 0x48, 0x59])
    ;(connection as unknown as { handlePacket(p: unknown): void }).handlePacket({
      buffer,
      offset: 0,
      end: 1,
    })
    expect(seen).toEqual([])
    expect(handled).toHaveLength(1)
  })

  it('a callback that throws does not escape into the driver’s socket handler, and the driver still gets the packet', () => {
    const { connection, handled } = mysqlConnection()
    watchMysql(connection, () => {
      throw new Error('listener failed')
    })
    expect(() =>
      (connection as unknown as { handlePacket(p: unknown): void }).handlePacket(
        errPacket(1836, 'Running in read-only mode'),
      ),
    ).not.toThrow()
    expect(handled).toHaveLength(1)
  })
})

describe('the MySQL role read', () => {
  it('counts the global transaction_read_only, and falls back to tx_read_only where the server lacks the name (MariaDB 10.x), once', async () => {
    const sent: string[] = []
    const choice = { variant: 0 }
    const run = async (sql: string) => {
      sent.push(sql)
      if (sql.includes('@@global.transaction_read_only')) {
        throw Object.assign(new Error("Unknown system variable 'transaction_read_only'"), {
          errno: 1193,
        })
      }
      return [{ read_only: 0, innodb_read_only: 0, transaction_read_only: 1 }]
    }
    expect(await mysqlRole(run, choice)).toBe('read-only')
    expect(await mysqlRole(run, choice)).toBe('read-only')
    expect(sent.filter((s) => s.includes('tx_read_only'))).toHaveLength(2)
    expect(sent).toHaveLength(3)
    expect(
      await mysqlRole(async () => [
        { read_only: 0, innodb_read_only: 0, transaction_read_only: 0 },
      ]),
    ).toBe('read-write')
  })
})

/** A stand-in for a pg Client: its `connection` is the protocol's event emitter. */
function pgClient(): { client: Client; wire: EventEmitter } {
  const wire = new EventEmitter()
  return { client: { connection: wire } as unknown as Client, wire }
}

/** A watched pg client whose session has reported both role parameters off (a primary). */
function watchedPrimary(): { wire: EventEmitter; seen: unknown[] } {
  const { client, wire } = pgClient()
  noteRoleParameters(client)
  const seen: unknown[] = []
  watchPg(client, (error) => seen.push(error))
  wire.emit('parameterStatus', { parameterName: 'in_hot_standby', parameterValue: 'off' })
  wire.emit('parameterStatus', {
    parameterName: 'default_transaction_read_only',
    parameterValue: 'off',
  })
  return { wire, seen }
}

describe('PostgreSQL 25006: judged at the next ReadyForQuery', () => {
  it('the server’s when the session reported default_transaction_read_only on before the ReadyForQuery', () => {
    const { wire, seen } = watchedPrimary()
    const error = { code: '25006' }
    wire.emit('errorMessage', error)
    // Not reported, nor judged, before the ReadyForQuery.
    expect(seen).toEqual([])
    expect(pgReadOnlyScope(error)).toBe('session')
    wire.emit('parameterStatus', {
      parameterName: 'default_transaction_read_only',
      parameterValue: 'on',
    })
    wire.emit('readyForQuery', {})
    expect(seen).toEqual([error])
    expect(pgReadOnlyScope(error)).toBe('server')
  })

  it('the session’s after an explicit read-only transaction (the parameters stay off)', () => {
    const { wire, seen } = watchedPrimary()
    const error = { code: '25006' }
    wire.emit('errorMessage', error)
    wire.emit('readyForQuery', {})
    expect(seen).toEqual([error])
    expect(pgReadOnlyScope(error)).toBe('session')
  })

  it('the session’s on a server before 14, which reports neither parameter', () => {
    const { client, wire } = pgClient()
    noteRoleParameters(client)
    watchPg(client, () => {})
    const error = { code: '25006' }
    wire.emit('errorMessage', error)
    wire.emit('readyForQuery', {})
    expect(pgReadOnlyScope(error)).toBe('session')
  })

  it('a plain release() between the ErrorResponse and a ReadyForQuery in a later chunk reached the pool after the lease was back: a session already reported read-only is reported at the ErrorResponse, once', () => {
    const { wire, seen } = watchedPrimary()
    wire.emit('parameterStatus', {
      parameterName: 'default_transaction_read_only',
      parameterValue: 'on',
    })
    const error = { code: '25006' }
    wire.emit('errorMessage', error)
    // The caller's await resumes here when the ReadyForQuery comes in a later chunk.
    expect(seen).toEqual([error])
    expect(pgReadOnlyScope(error)).toBe('server')
    wire.emit('readyForQuery', {})
    expect(seen).toEqual([error])
    expect(pgReadOnlyScope(error)).toBe('server')
  })

  it('a callback that throws does not escape into pg’s socket handler', () => {
    const { client, wire } = pgClient()
    noteRoleParameters(client)
    watchPg(client, () => {
      throw new Error('listener failed')
    })
    wire.emit('errorMessage', { code: '25006' })
    expect(() => wire.emit('readyForQuery', {})).not.toThrow()
  })
})
