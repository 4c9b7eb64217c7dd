import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { describeOnServer, probe } from '../support/servers.js'

const run = promisify(execFile)
const root = join(import.meta.dirname, '../..')
const runner = join(root, 'bench/run.mjs')

/** A summary as bench/stats.mjs writes it. */
interface Summary {
  samples: number[]
  median: number
  min: number
  max: number
}

/** The parts of bench/results/*.json this test reads. */
interface Results {
  quick: boolean
  failures: string[]
  peers: Record<string, string>
  noio: {
    callers: number[]
    contenders: Record<string, { byCallers: Record<string, Summary>; error?: string }>
  }
  memory: {
    contenders: Record<
      string,
      { bytesPerConnection: Summary; bytesPerWaiter: Summary; error?: string }
    >
  }
  db: Record<
    'postgres' | 'mysql',
    {
      skipped?: string
      contenders: Record<string, { qps: Summary; p50Ms: Summary; p99Ms: Summary; error?: string }>
    }
  >
  targets: Array<{ id: string; pass: boolean | null }>
}

/** Every sample was taken and is a finite positive number: the contender ran and measured. */
function expectMeasured(summary: Summary, runs: number, what: string): void {
  expect(summary.samples, what).toHaveLength(runs)
  for (const sample of summary.samples) {
    expect(Number.isFinite(sample) && sample > 0, `${what}: ${sample}`).toBe(true)
  }
}

const RUNS = 2 // --quick
const [postgres, mysql] = await Promise.all([probe('postgres'), probe('mysql')])
const scratch = mkdtempSync(join(tmpdir(), 'lifeguard-bench-'))
const out = join(scratch, 'results.json')
let results: Results
let stdout = ''

// One quick run serves every test below. It bundles src/ (--src), so it needs no `npm run
// build` and never measures a stale dist/; it asserts that everything ran, never a speed.
beforeAll(async () => {
  const child = await run(process.execPath, [runner, '--quick', '--src', `--out=${out}`], {
    cwd: root,
    timeout: 150_000,
    maxBuffer: 16 * 1024 * 1024,
  }).catch((error: { stdout?: string; stderr?: string; code?: number }) => {
    throw new Error(`bench --quick exited with ${error.code}:\n${error.stderr}\n${error.stdout}`)
  })
  stdout = child.stdout
  results = JSON.parse(readFileSync(out, 'utf8')) as Results
}, 160_000)

afterAll(() => rmSync(scratch, { recursive: true, force: true }))

describe('npm run bench -- --quick', () => {
  it('records no failure and no unhandled rejection', () => {
    expect(results.quick).toBe(true)
    expect(results.failures).toEqual([])
  })

  it('measures every no-I/O contender at 1, 10, 1000 and 10,000 callers', () => {
    expect(Object.keys(results.noio.contenders).sort()).toEqual(
      ['generic-pool', 'minimal', 'pg-pool', 'lifeguard', 'tarn'].sort(),
    )
    expect(results.noio.callers).toEqual([1, 10, 1000, 10000])
    for (const [name, contender] of Object.entries(results.noio.contenders)) {
      expect(contender.error, name).toBeUndefined()
      for (const n of results.noio.callers) {
        expectMeasured(contender.byCallers[n]!, RUNS, `${name} at ${n}`)
      }
    }
  })

  it('measures the heap per connection and per waiter of every contender', () => {
    for (const [name, contender] of Object.entries(results.memory.contenders)) {
      expect(contender.error, name).toBeUndefined()
      // Per connection may round to ~0 for the floor; it must still be a number.
      expect(contender.bytesPerConnection.samples, name).toHaveLength(RUNS)
      for (const b of contender.bytesPerConnection.samples)
        expect(Number.isFinite(b), name).toBe(true)
      expectMeasured(contender.bytesPerWaiter, RUNS, `${name} per waiter`)
    }
  })

  it('prints the tables, the ratios and the targets, and names every peer version', () => {
    expect(stdout).toContain('lifeguard ÷ generic-pool')
    expect(stdout).toContain('| T5 |')
    expect(results.targets.map((t) => t.id)).toEqual(['T1', 'T2', 'T3', 'T4', 'T5'])
    for (const [name, version] of Object.entries(results.peers)) {
      expect(version, name).toMatch(/^\d+\.\d+\.\d+/)
    }
  })
})

const dbContenders = {
  postgres: ['floor', 'lifeguard', 'lifeguard (resetOnRelease: false)', 'pg.Pool', 'postgres.js'],
  mysql: ['floor', 'lifeguard', 'lifeguard (resetOnRelease: false)', 'mysql2 pool', 'mariadb pool'],
}

for (const status of [postgres, mysql]) {
  describeOnServer(status, `npm run bench -- --quick on ${status.label}`, () => {
    it('runs SELECT 1 through every contender and reports queries/s, p50 and p99', () => {
      const db = results.db[status.kind]
      expect(db.skipped).toBeUndefined()
      expect(Object.keys(db.contenders)).toEqual(dbContenders[status.kind])
      for (const [name, contender] of Object.entries(db.contenders)) {
        expect(contender.error, name).toBeUndefined()
        expectMeasured(contender.qps, RUNS, `${name} q/s`)
        expectMeasured(contender.p50Ms, RUNS, `${name} p50`)
        expectMeasured(contender.p99Ms, RUNS, `${name} p99`)
      }
    })
  })
}

describe('bench/run.mjs arguments', () => {
  it('rejects an unknown benchmark, naming it and the known ones', async () => {
    const error = await run(process.execPath, [runner, '--only=speed'], { cwd: root }).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    )
    expect(error?.code).toBe(1)
    expect(error?.stderr).toContain('--only: unknown benchmark "speed"; known: noio, db, memory')
  })
})

/** The parts of bench/pipeline.mjs's --out file this test reads. */
interface PipelineResults {
  runs: number
  select1: Record<string, { qps: Summary; p99: Summary; error?: string }>
  mixed: Record<
    string,
    { qps: Summary; fastP99: Summary; p999: Summary; slowCount: Summary; error?: string }
  >
  orm: Record<string, { qps: Summary; p99: Summary; error?: string }>
  open: Record<string, { qps: Summary; fastP99: Summary; slowCount: Summary; error?: string }>
}

describeOnServer(postgres, `bench/pipeline.mjs --quick on ${postgres.label}`, () => {
  const pipeline = join(root, 'bench/pipeline.mjs')
  const outFile = join(scratch, 'pipeline.json')
  let piped: PipelineResults
  let printed = ''

  // A tiny configuration: 50 callers, 200 ms windows, one run; it asserts that every contender
  // ran and measured, never a speed.
  beforeAll(async () => {
    const child = await run(
      process.execPath,
      [
        pipeline,
        '--src',
        '--quick',
        '--callers=50',
        '--window=200',
        '--warm=50',
        '--pipelines=1,4',
        '--select1-pipelines=1',
        '--only=select1,mixed,orm,open',
        '--rate=500',
        `--out=${outFile}`,
      ],
      { cwd: root, timeout: 90_000, maxBuffer: 16 * 1024 * 1024 },
    ).catch((error: { stdout?: string; stderr?: string; code?: number }) => {
      throw new Error(`pipeline.mjs exited with ${error.code}:\n${error.stderr}\n${error.stdout}`)
    })
    printed = child.stdout
    piped = JSON.parse(readFileSync(outFile, 'utf8')) as PipelineResults
  }, 100_000)

  it('runs SELECT 1 through the floor, pg.Pool, postgres.js, lifeguard/pg and the core pool', () => {
    expect(Object.keys(piped.select1)).toEqual([
      'floor',
      'pg.Pool',
      'postgres.js',
      'lifeguard/pg',
      'lifeguard/pg maxPipeline 1',
      'core pool, use(…, { shared: true })',
    ])
    for (const [name, c] of Object.entries(piped.select1)) {
      expect(c.error, name).toBeUndefined()
      expectMeasured(c.qps, piped.runs, `${name} q/s`)
      expectMeasured(c.p99, piped.runs, `${name} p99`)
    }
    expect(printed).toContain('| lifeguard/pg | ')
  })

  it('runs the mixed workload by maxPipeline, with its slow statements among the measured', () => {
    expect(Object.keys(piped.mixed)).toEqual([
      'lifeguard/pg maxPipeline 1',
      'lifeguard/pg maxPipeline 4',
      'pg.Pool',
      'postgres.js',
    ])
    for (const [name, c] of Object.entries(piped.mixed)) {
      expect(c.error, name).toBeUndefined()
      expectMeasured(c.qps, piped.runs, `${name} q/s`)
      expectMeasured(c.fastP99, piped.runs, `${name} fast p99`)
      // Every 100th statement sleeps 50 ms: the all-statements p99.9 is one of them or near.
      expectMeasured(c.slowCount, piped.runs, `${name} slow statements`)
    }
  })

  it('runs the mixed workload at a fixed rate (open loop), every statement served', () => {
    expect(Object.keys(piped.open)).toEqual(Object.keys(piped.mixed))
    for (const [name, c] of Object.entries(piped.open)) {
      expect(c.error, name).toBeUndefined()
      // 500 statements/s for 200 ms: about 100 served, none dropped (a drop fails the window).
      expectMeasured(c.qps, piped.runs, `${name} q/s`)
      expectMeasured(c.fastP99, piped.runs, `${name} fast p99`)
    }
  })

  it('runs Kysely and Drizzle over lifeguard/pg and over pg.Pool', () => {
    expect(Object.keys(piped.orm).sort()).toEqual(
      [
        'Drizzle over lifeguard/pg',
        'Drizzle over lifeguard/pg maxPipeline 1',
        'Drizzle over pg.Pool',
        'Kysely over lifeguard/pg',
        'Kysely over lifeguard/pg maxPipeline 1',
        'Kysely over pg.Pool',
      ].sort(),
    )
    for (const [name, c] of Object.entries(piped.orm)) {
      expect(c.error, name).toBeUndefined()
      expectMeasured(c.qps, piped.runs, `${name} q/s`)
    }
  })
})
