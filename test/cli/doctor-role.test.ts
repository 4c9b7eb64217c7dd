import { afterAll, describe, expect, it } from 'vitest'
import { runDoctor } from '../../src/cli/doctor.js'
import { renderDoctor } from '../../src/cli/doctor-text.js'
import { mysql } from '../../src/dialects/mysql.js'
import { describeOnServer, probe } from '../support/servers.js'
import { startThrowawayMariaDb } from '../support/throwaway-mariadb.js'
import type { ThrowawayServer } from '../support/throwaway-server.js'

// Issue 17: `lifeguard doctor` shows the server's role, and says when targetSessionAttrs would
// matter. A read-only session comes from the startup packet (`options=-c …`): nothing global
// changes on the shared server.

const options = (url: string) => ({
  url,
  max: 2,
  overflow: 0,
  min: 0,
  maxLifetimeMs: 1_800_000,
  idleTimeoutMs: 600_000,
  json: false,
})

const pgStatus = await probe('postgres')
describeOnServer(pgStatus, 'lifeguard doctor: the server role on PostgreSQL', () => {
  it('a writable server reads as read-write, with no role finding', async () => {
    const report = await runDoctor(options(pgStatus.url))
    expect(report.role).toEqual({ role: 'read-write', because: null })
    expect(report.findings.filter((f) => f.setting === 'targetSessionAttrs')).toEqual([])
    expect(renderDoctor(report)).toContain(
      "  role             read-write: writes accepted (targetSessionAttrs 'any' or 'read-write' lends its connections)",
    )
  })

  it('a session read-only by default reads as read-only, with a warning that names targetSessionAttrs', async () => {
    const url = new URL(pgStatus.url)
    url.searchParams.set('options', '-c default_transaction_read_only=on')
    const report = await runDoctor(options(url.toString()))
    expect(report.role).toEqual({
      role: 'read-only',
      because: 'default_transaction_read_only = on',
    })
    const text = renderDoctor(report)
    expect(text).toContain(
      "  role             read-only (default_transaction_read_only = on): writes fail; targetSessionAttrs 'read-write' would refuse its connections, 'read-only' wants them",
    )
    expect(text).toContain(
      'WARNING [targetSessionAttrs] the server is read-only (default_transaction_read_only = on): every write fails (25006)',
    )
    // A warning: it does not fail the run on its own.
    expect(report.findings.find((f) => f.setting === 'targetSessionAttrs')?.level).toBe('warning')
  })
})

const myStatus = await probe('mysql')
describeOnServer(myStatus, 'lifeguard doctor: the server role on MariaDB', () => {
  it('a writable server reads as read-write', async () => {
    const report = await runDoctor(options(myStatus.url))
    expect(report.role).toEqual({ role: 'read-write', because: null })
    expect(renderDoctor(report)).toContain('  role             read-write: writes accepted')
  })
})

describe('lifeguard doctor: a MariaDB server set read-only (a throwaway one)', () => {
  let server: ThrowawayServer | undefined
  afterAll(() => server?.remove())

  it('reads as read-only because of read_only = 1, and the dialect reads the same role', async () => {
    server = await startThrowawayMariaDb()
    await server.sql('SET GLOBAL read_only = 1')
    const report = await runDoctor(options(server.url))
    expect(report.role).toEqual({ role: 'read-only', because: 'read_only = 1' })
    // SUPER users can still write while only read_only is set: not "every write".
    expect(renderDoctor(report)).toContain(
      'WARNING [targetSessionAttrs] the server is read-only (read_only = 1): writes fail (1290), except from users with SUPER (MariaDB: READ ONLY ADMIN) and the replication threads.',
    )
    const dialect = mysql(server.url)
    const role = async () => {
      const connection = await dialect.connect(AbortSignal.timeout(5_000))
      try {
        return await dialect.role!(connection, AbortSignal.timeout(5_000))
      } finally {
        await dialect.close(connection)
      }
    }
    expect(await role()).toBe('read-only')
  }, 60_000)

  it("reads as read-only when new sessions' transactions are read-only (tx_read_only = 1 on MariaDB 10.x), and the dialect reads the same role", async () => {
    server ??= await startThrowawayMariaDb()
    await server.sql('SET GLOBAL read_only = 0')
    await server.sql('SET GLOBAL tx_read_only = 1')
    try {
      const report = await runDoctor(options(server.url))
      expect(report.role).toEqual({ role: 'read-only', because: 'tx_read_only = 1' })
      expect(renderDoctor(report)).toContain(
        "WARNING [targetSessionAttrs] the server is read-only (tx_read_only = 1): new sessions' transactions are read-only by default: writes fail (1792) unless a session sets its own.",
      )
      const dialect = mysql(server.url)
      const connection = await dialect.connect(AbortSignal.timeout(5_000))
      try {
        expect(await dialect.role!(connection, AbortSignal.timeout(5_000))).toBe('read-only')
      } finally {
        await dialect.close(connection)
      }
    } finally {
      await server.sql('SET GLOBAL tx_read_only = 0')
    }
  }, 60_000)
})
