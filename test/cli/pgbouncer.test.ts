import { rmSync } from 'node:fs'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { describeOnServer, probe } from '../support/servers.js'
import {
  behindPgbouncer,
  startPgbouncer,
  type ThrowawayBouncer,
} from '../support/throwaway-pgbouncer.js'
import { bundleCli, runCli } from './support/cli-process.js'

const postgres = behindPgbouncer(await probe('postgres'))

describeOnServer(postgres, 'lifeguard doctor and bench in front of PgBouncer', () => {
  let cli = ''
  let bouncer: ThrowawayBouncer
  let session: ThrowawayBouncer

  beforeAll(async () => {
    ;[cli, bouncer, session] = await Promise.all([
      bundleCli('doctor-pgbouncer'),
      startPgbouncer(postgres.url, {
        poolMode: 'transaction',
        defaultPoolSize: 8,
        maxClientConn: 120,
        serverLifetime: 1800,
      }),
      startPgbouncer(postgres.url, { poolMode: 'session' }),
    ])
  })

  afterAll(async () => {
    await Promise.all([bouncer?.stop(), session?.stop()])
    if (cli !== '') rmSync(cli, { force: true })
  })

  it('recognizes PgBouncer in transaction mode, reads its settings, and says which options matter', async () => {
    const run = await runCli(cli, ['doctor', bouncer.url, '--max', '10', '--json'])
    const report = JSON.parse(run.stdout)
    expect(report.pooler).toMatchObject({
      detectedBy: expect.stringMatching(/backend key's pid -?\d+ is not the backend's, \d+/),
      name: 'PgBouncer',
      version: bouncer.version.join('.'),
      poolMode: 'transaction',
      consoleError: null,
    })
    expect(report.pooler.settings).toMatchObject({
      default_pool_size: '8',
      max_client_conn: '120',
      server_lifetime: '1800',
    })
    const by = (setting: string) => report.findings.filter((f: any) => f.setting === setting)
    expect(by('resetOnRelease')).toEqual([
      expect.objectContaining({
        level: 'warning',
        message: expect.stringContaining("pooler: { mode: 'transaction' }"),
      }),
    ])
    expect(by('preparedStatements')).toHaveLength(1)
    expect(by('preparedStatements')[0].message).toMatch(/max_prepared_statements/)
    expect(by('statement_timeout')).toHaveLength(1)
    expect(by('maxLifetime')[0].message).toContain('server_lifetime (30 min)')
    // max 10 is more transactions at once than default_pool_size 8 runs.
    expect(by('max')).toEqual([
      expect.objectContaining({
        level: 'warning',
        message: expect.stringContaining('default_pool_size'),
      }),
    ])
    expect(run.code).toBe(report.ok ? 0 : 1)
  })

  it("judges pool size by PgBouncer's max_client_conn, not the server's max_connections", async () => {
    // 110 is more than this PostgreSQL's max_connections (100) but within max_client_conn (120).
    const within = JSON.parse(
      (await runCli(cli, ['doctor', bouncer.url, '--max', '110', '--json'])).stdout,
    )
    expect(
      within.findings.filter((f: any) => f.level === 'problem' && f.setting === 'max'),
    ).toEqual([])
    const beyond = await runCli(cli, ['doctor', bouncer.url, '--max', '130'])
    expect(beyond.stdout).toContain(
      'PROBLEM [max] the pool may open 130 connections (max 130 + overflow 0) but PgBouncer takes 120 clients in all (max_client_conn)',
    )
    expect(beyond.stdout).toMatch(/pooler {11}PgBouncer [\d.]+ in transaction mode \(/)
    expect(beyond.code).toBe(1)
  })

  it('in session mode, does not ask for the transaction-mode settings', async () => {
    const report = JSON.parse((await runCli(cli, ['doctor', session.url, '--json'])).stdout)
    expect(report.pooler).toMatchObject({ name: 'PgBouncer', poolMode: 'session' })
    const settings = report.findings.map((f: any) => f.setting)
    expect(settings).not.toContain('resetOnRelease')
    expect(settings).not.toContain('preparedStatements')
    expect(settings).toContain('pooler')
  })

  it('benches 1000 clients through PgBouncer in transaction mode without an error, and says whose connections it counted', async () => {
    const bench = await startPgbouncer(postgres.url, {
      poolMode: 'transaction',
      defaultPoolSize: 6,
      maxClientConn: 2000,
    })
    try {
      const args = ['bench', '--url', bench.url, '--clients', '1000', '--duration', '2s']
      const run = await runCli(cli, [...args, '--rounds', '1', '--json'], 120_000)
      expect(run.code).toBe(0)
      const report = JSON.parse(run.stdout)
      expect(report.server.countedBy).toMatch(/through a connection pooler/)
      for (const mode of report.modes) {
        expect(mode.errors).toEqual({ total: 0, byKind: {} })
        expect(mode.requests.ok).toBeGreaterThan(0)
        // The server sees PgBouncer's connections only: at most its pool, even for the pools
        // of 10 and for a connection per request.
        expect(mode.peakServerConnections).toBeLessThanOrEqual(6)
      }
    } finally {
      await bench.stop()
    }
  }, 150_000)

  it('finds no pooler in front of PostgreSQL itself', async () => {
    const report = JSON.parse((await runCli(cli, ['doctor', postgres.url, '--json'])).stdout)
    expect(report.pooler).toBeNull()
    expect(report.findings.map((f: any) => f.setting)).not.toContain('pooler')
  })
})
