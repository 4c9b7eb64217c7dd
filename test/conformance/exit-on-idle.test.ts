import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { build } from 'esbuild'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { closedPort } from '../support/ports.js'
import { describeOnServer, probe } from '../support/servers.js'

const root = join(import.meta.dirname, '../..')
const postgresStatus = await probe('postgres')
const mysqlStatus = await probe('mysql')

/** The bound a CI machine (2 loaded cores) gets for "exits within 1 s of its last query". */
const EXIT_BOUND_MS = 3_000

let bundle: string
let scratch: string
let sqliteDir: string

beforeAll(async () => {
  // Inside node_modules, so that the child resolves pg, mysql2 and better-sqlite3 from here.
  const cache = join(root, 'node_modules', '.cache')
  mkdirSync(cache, { recursive: true })
  scratch = mkdtempSync(join(cache, 'lifeguard-exit-'))
  sqliteDir = mkdtempSync(join(tmpdir(), 'lifeguard-exit-db-'))
  const entry = join(scratch, 'entry.ts')
  writeFileSync(
    entry,
    ['index', 'dialects/postgres', 'dialects/mysql', 'dialects/sqlite']
      .map((file) => `export * from ${JSON.stringify(join(root, 'src', `${file}.ts`))}`)
      .join('\n'),
  )
  bundle = join(scratch, 'lifeguard.mjs')
  await build({
    entryPoints: [entry],
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    outfile: bundle,
    external: ['pg', 'mysql2', 'better-sqlite3'],
  })
})

afterAll(() => {
  rmSync(scratch, { recursive: true, force: true })
  rmSync(sqliteDir, { recursive: true, force: true })
})

interface Ended {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  /** What the child printed as JSON on its last line. */
  report: Record<string, unknown>
}

/**
 * Runs `body` in a fresh node process, after `import * as lg from <bundle>`. The child reports,
 * as it exits, `sinceMark`: the time from its last `mark()` call to its exit.
 */
function run(body: string, killAfterMs = 30_000): Promise<Ended> {
  const script = `
    import * as lg from ${JSON.stringify(bundle)}
    let marked = performance.now()
    const extra = {}
    const mark = () => { marked = performance.now() }
    process.on('exit', (code) => {
      console.log(JSON.stringify({ code, sinceMark: performance.now() - marked, ...extra }))
    })
    ${body}
  `
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      cwd: scratch,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk
    })
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk
    })
    const killer = setTimeout(() => child.kill('SIGKILL'), killAfterMs)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(killer)
      const last = stdout.trim().split('\n').pop() ?? ''
      let report: Record<string, unknown> = {}
      try {
        report = JSON.parse(last) as Record<string, unknown>
      } catch {
        // killed before it could report: the assertions on `signal` say so
      }
      resolve({ code, signal, stdout, stderr, report })
    })
  })
}

/** How each dialect is made in the child, and one query on its connection. */
const DIALECTS = {
  postgres: {
    status: postgresStatus,
    dialect: () => `lg.postgres(${JSON.stringify(postgresStatus.url)})`,
    query: `(c) => c.query('SELECT 1 AS one').then((r) => r.rows[0].one)`,
  },
  mysql: {
    status: mysqlStatus,
    dialect: () => `lg.mysql(${JSON.stringify(mysqlStatus.url)})`,
    query: `(c) => c.query('SELECT 1 AS one').then(([rows]) => rows[0].one)`,
  },
} as const

/** A script that runs queries through a pool of `max` 3 and never calls close(). */
function queriesWithoutClose(dialect: string, query: string, options = ''): string {
  return `
    const pool = lg.createPool({ dialect: ${dialect}, max: 3, ${options} })
    const query = ${query}
    for (let i = 0; i < 5; i++) await pool.use(query)
    // Several at once, so that more than one connection is open and idle afterwards.
    const ones = await Promise.all([1, 2, 3, 4, 5, 6].map(() => pool.use(query)))
    mark()
    extra.ones = ones
    // Registered after the report's listener: fill \`extra\` before it prints.
    process.prependListener('exit', () => { extra.stats = pool.stats() })
  `
}

for (const [name, d] of Object.entries(DIALECTS)) {
  describeOnServer(d.status, `${name}: a process with an idle pool exits`, () => {
    it(`a script that runs queries and never calls close() exits within 1 s of its last query`, async () => {
      const ended = await run(queriesWithoutClose(d.dialect(), d.query))
      expect(ended.stderr).toBe('')
      expect(ended.signal).toBeNull()
      expect(ended.code).toBe(0)
      expect(ended.report.ones).toEqual([1, 1, 1, 1, 1, 1])
      // It exited with its connections still open: nothing closed them, they just let go.
      expect(ended.report.stats).toMatchObject({ leased: 0, waiting: 0, closed: 0 })
      expect((ended.report.stats as { idle: number }).idle).toBeGreaterThanOrEqual(2)
      console.log(
        `${name}: exit ${(ended.report.sinceMark as number).toFixed(1)} ms after the last query`,
      )
      expect(ended.report.sinceMark).toBeLessThan(EXIT_BOUND_MS)
    })

    it('a held lease keeps the process alive', async () => {
      const ended = await run(`
        const pool = lg.createPool({ dialect: ${d.dialect()}, max: 1 })
        const lease = await pool.acquire()
        await (${d.query})(lease.connection)
        mark()
        // An unref'd timer fires only if something else keeps the process alive: the lease.
        setTimeout(() => { extra.releasedAfter = performance.now(); lease.release() }, 1500).unref()
      `)
      expect(ended.stderr).toBe('')
      expect(ended.code).toBe(0)
      expect(ended.report.releasedAfter).toBeTypeOf('number')
      expect(ended.report.sinceMark).toBeGreaterThanOrEqual(1400)
      expect(ended.report.sinceMark).toBeLessThan(1500 + EXIT_BOUND_MS)
    })

    it('allowExitOnIdle: false keeps the process alive until idleTimeout closes the idle connections', async () => {
      const ended = await run(
        queriesWithoutClose(d.dialect(), d.query, 'allowExitOnIdle: false, idleTimeout: 2000'),
      )
      expect(ended.stderr).toBe('')
      expect(ended.signal).toBeNull()
      expect(ended.code).toBe(0)
      // The housekeeper runs every idleTimeout / 2: the last connection goes between 2 and 3 s.
      expect(ended.report.sinceMark).toBeGreaterThanOrEqual(1900)
      expect(ended.report.sinceMark).toBeLessThan(3000 + EXIT_BOUND_MS)
      expect(ended.report.stats).toMatchObject({ idle: 0, total: 0 })
      expect((ended.report.stats as { closed: number }).closed).toBeGreaterThanOrEqual(2)
    })
  })
}

describe('sqlite: a process with an idle pool exits', () => {
  const dialect = () => `lg.sqlite(${JSON.stringify(join(sqliteDir, 'exit.db'))})`
  const query = `(db) => db.prepare('SELECT 1 AS one').get().one`

  it('a script that runs queries and never calls close() exits within 1 s of its last query', async () => {
    const ended = await run(queriesWithoutClose(dialect(), query))
    expect(ended.stderr).toBe('')
    expect(ended.code).toBe(0)
    expect(ended.report.ones).toEqual([1, 1, 1, 1, 1, 1])
    expect(ended.report.stats).toMatchObject({ leased: 0, waiting: 0, closed: 0 })
    console.log(
      `sqlite: exit ${(ended.report.sinceMark as number).toFixed(1)} ms after the last query`,
    )
    expect(ended.report.sinceMark).toBeLessThan(EXIT_BOUND_MS)
  })

  it.each([
    ['its own timeout', 'pool.acquire({ timeout: 1500 })', ''],
    ["the pool's acquireTimeout", 'pool.acquire()', 'acquireTimeout: 1500'],
  ])('a waiter with %s keeps the process alive until it times out', async (_, acquire, options) => {
    const ended = await run(`
      const pool = lg.createPool({ dialect: ${dialect()}, max: 1, ${options} })
      // A SQLite lease holds no socket: only the waiter can keep the process alive.
      const lease = await pool.acquire()
      mark()
      ${acquire}.catch((error) => { extra.waited = error.code })
    `)
    expect(ended.stderr).toBe('')
    expect(ended.code).toBe(0)
    expect(ended.report.waited).toBe('LIFEGUARD_ACQUIRE_TIMEOUT')
    expect(ended.report.sinceMark).toBeGreaterThanOrEqual(1400)
  })
})

describe('a waiter with no deadline while the server refuses connections', () => {
  it('keeps the process alive through the retry backoff', async () => {
    const port = await closedPort()
    const ended = await run(`
      const pool = lg.createPool({
        dialect: lg.postgres('postgres://postgres@127.0.0.1:${port}/test'),
        acquireTimeout: Infinity,
      })
      let failures = 0
      pool.on('connectError', () => { failures++ })
      mark()
      pool.acquire().catch((error) => { extra.waited = error.code; extra.failures = failures })
      // Fires only if the waiter keeps the process alive; then it gives up.
      setTimeout(() => pool.destroy(), 1500).unref()
    `)
    expect(ended.stderr).toBe('')
    expect(ended.code).toBe(0)
    expect(ended.report.waited).toBe('LIFEGUARD_CLOSED')
    expect(ended.report.failures).toBeGreaterThan(1)
    expect(ended.report.sinceMark).toBeGreaterThanOrEqual(1400)
  })
})
