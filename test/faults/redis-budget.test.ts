import { type ChildProcess, fork } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inspect } from 'node:util'
import { Redis } from 'ioredis'
import pg from 'pg'
import { createClient } from 'redis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { redisBudget } from '../../src/budget/redis.js'
import { createPool as createMysql2Pool } from '../../src/compat/mysql2-promise.js'
import { Pool as PgPool } from '../../src/compat/pg.js'
import { postgres } from '../../src/dialects/postgres.js'
import { BudgetTimeoutError, createPool, type Lease } from '../../src/index.js'
import { bundleFile } from '../support/bundle.js'
import { closedPort } from '../support/ports.js'
import { describeOnServer, IN_CI, probe } from '../support/servers.js'
import { useThrowawayRedis } from '../support/throwaway-redis.js'
import type { WorkerConfig } from './redis-budget-worker.js'

const POSTGRES_URL = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379'
const postgresUp = await probe('postgres')
const mysqlUp = await probe('mysql')
const MYSQL_URL = process.env.MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test'

/** Whether the shared Redis (REDIS_URL) answers a PING within 3 s. */
async function redisUp(): Promise<string | undefined> {
  const client = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0 })
  client.on('error', () => {})
  try {
    await Promise.race([
      client.connect().then(() => client.ping()),
      new Promise((_, reject) => setTimeout(() => reject(new Error('no reply in 3 s')), 3000)),
    ])
    return undefined
  } catch (error) {
    return String((error as Error).message)
  } finally {
    client.disconnect()
  }
}
const redisDown = await redisUp()
if (redisDown !== undefined && !IN_CI) {
  console.warn(
    `[lifeguard] SKIPPING the shared-budget tests that need Redis at REDIS_URL: ${redisDown}`,
  )
}
const withRedis = redisDown === undefined || IN_CI ? it : it.skip

/** What a worker (redis-budget-worker.ts) reports over IPC. */
interface Report {
  type: 'ready' | 'report' | 'done'
  pid: number
  ok: number
  failed: number
  errors: string[]
  warnings: string[]
  budget: { held: number; waiting: number; taken: number; unreachable: boolean; restored: number }
  pool: { total: number }
}

interface Worker {
  readonly child: ChildProcess
  readonly ready: Promise<void>
  last: Report | undefined
  /** Tells it to stop its load and close its pool; resolves with its final report. */
  stop(): Promise<Report>
}

let workerDir: string

/** Bundles the worker with its imports from src, in a folder whose node_modules is this repo's. */
async function bundleWorker(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'lifeguard-budget-worker-'))
  symlinkSync(join(import.meta.dirname, '../../node_modules'), join(dir, 'node_modules'))
  await bundleFile(
    join(import.meta.dirname, 'redis-budget-worker.ts'),
    join(dir, 'worker.mjs'),
    true,
  )
  return dir
}

const children = new Set<ChildProcess>()

function startWorker(
  config: Omit<WorkerConfig, 'postgresUrl' | 'acquireTimeout'> & { acquireTimeout?: number },
): Worker {
  const child = fork(join(workerDir, 'worker.mjs'), [], {
    cwd: workerDir,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: {
      ...process.env,
      BUDGET_WORKER: JSON.stringify({
        postgresUrl: POSTGRES_URL,
        acquireTimeout: 30_000,
        ...config,
      } satisfies WorkerConfig),
    },
  })
  children.add(child)
  child.once('exit', () => children.delete(child))
  let markReady!: () => void
  let finished!: (report: Report) => void
  const done = new Promise<Report>((resolve) => {
    finished = resolve
  })
  const worker: Worker = {
    child,
    ready: new Promise<void>((resolve) => {
      markReady = resolve
    }),
    last: undefined,
    stop() {
      child.send({ type: 'stop' })
      return done
    },
  }
  child.on('message', (message: Report) => {
    if (message.type === 'ready') markReady()
    else if (message.type === 'report') worker.last = message
    else finished(message)
  })
  return worker
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Waits until `check()` holds, polling every 20 ms; fails after `ms`. Returns when it held (performance.now()). */
async function until(check: () => boolean, ms: number, what: string): Promise<number> {
  const deadline = performance.now() + ms
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`)
    await sleep(20)
  }
  return performance.now()
}

beforeAll(async () => {
  workerDir = await bundleWorker()
}, 60_000)

afterAll(() => {
  for (const child of children) child.kill('SIGKILL')
  rmSync(workerDir, { recursive: true, force: true })
})

describeOnServer(postgresUp, 'a Redis budget shared by processes on PostgreSQL', () => {
  withRedis(
    "8 processes with max 10 under load share a budget of 24: the server's count never exceeds 24, and every request succeeds",
    async () => {
      const applicationName = `lifeguard-budget-${randomUUID().slice(0, 8)}`
      const key = `test-${applicationName}`
      const sampler = new pg.Client({
        connectionString: POSTGRES_URL,
        application_name: 'lifeguard-budget-sampler',
      })
      await sampler.connect()
      const workers = Array.from({ length: 8 }, () =>
        startWorker({
          redisUrl: REDIS_URL,
          applicationName,
          key,
          limit: 24,
          leaseTtl: 3000,
          max: 10,
          concurrency: 12,
        }),
      )
      const counts: number[] = []
      let sampling = true
      const sampling$ = (async () => {
        while (sampling) {
          const { rows } = await sampler.query(
            'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1',
            [applicationName],
          )
          counts.push(rows[0].n as number)
          await sleep(50)
        }
      })()
      try {
        await Promise.all(workers.map((worker) => worker.ready))
        await sleep(8_000)
        // Served during the run, before anyone stops: a starved process serves its callers only
        // once the others close their pools.
        const during = workers.map((worker) => worker.last!.ok)
        const reports = await Promise.all(workers.map((worker) => worker.stop()))
        sampling = false
        await sampling$
        const most = Math.max(...counts)
        console.log(
          `[budget] ${counts.length} samples, server count max ${most}; requests per process during the run: ${during.join(' ')}`,
        )
        expect(most).toBeLessThanOrEqual(24)
        // The budget was used, not merely never reached.
        expect(most).toBeGreaterThanOrEqual(16)
        expect(reports.map((r) => r.failed)).toEqual(Array(8).fill(0))
        // No process was starved: each one served a fair part of the requests.
        const mean = during.reduce((a, b) => a + b, 0) / during.length
        for (const served of during) expect(served).toBeGreaterThan(mean / 10)
      } finally {
        sampling = false
        await sampling$.catch(() => {})
        await sampler.end()
      }
    },
    90_000,
  )

  withRedis(
    'kill -9 of a process holding slots: the others get its slots within leaseTtl + 1 s',
    async () => {
      const applicationName = `lifeguard-budget-${randomUUID().slice(0, 8)}`
      const config = {
        redisUrl: REDIS_URL,
        applicationName,
        key: `test-${applicationName}`,
        limit: 6,
        leaseTtl: 2000,
        max: 6,
        concurrency: 8,
      }
      const holder = startWorker(config)
      await holder.ready
      await until(() => holder.last?.budget.held === 6, 20_000, 'the first process holds 6 slots')
      const other = startWorker(config)
      await other.ready
      await until(() => (other.last?.budget.waiting ?? 0) > 0, 20_000, 'the second process waits')
      await sleep(200)
      const heldAtKill = holder.last!.budget.held
      expect(heldAtKill).toBeGreaterThan(0)
      const killedAt = performance.now()
      holder.child.kill('SIGKILL')
      const servedAt = await until(
        () => other.last?.budget.held === 6,
        10_000,
        'the second process holds all 6 slots',
      )
      const report = await other.stop()
      console.log(
        `[budget] kill -9 of a process holding ${heldAtKill} slots: the other held all 6 after ${Math.round(servedAt - killedAt)} ms (leaseTtl 2000)`,
      )
      expect(servedAt - killedAt).toBeLessThanOrEqual(config.leaseTtl + 1000)
      expect(report.failed).toBe(0)
    },
    60_000,
  )

  withRedis(
    'waiting takes are served in arrival order across processes (the ticket queue), over ioredis and node-redis',
    async () => {
      const io = new Redis(REDIS_URL)
      const node = await createClient({ url: REDIS_URL }).connect()
      const key = `test-${randomUUID()}`
      // Two "processes": budgets with owners of their own, on one key.
      const busy = redisBudget({ redis: io, key, limit: 1, leaseTtl: 5000 })
      const patient = redisBudget({ redis: node, key, limit: 1, leaseTtl: 5000 })
      const signal = new AbortController().signal
      try {
        const first = await busy.take(signal)
        const order: string[] = []
        const waited = patient.take(signal).then((slot) => {
          order.push('patient')
          return slot
        })
        await sleep(100)
        // The busy one asks again, after the patient one: it must not overtake it.
        const again = busy.take(signal).then((slot) => {
          order.push('busy')
          return slot
        })
        await sleep(100)
        first.release()
        const slot = await waited
        await sleep(300)
        expect(order).toEqual(['patient'])
        expect(patient.blocked().message).toMatch(/1 taken, 1 tickets queued by 2 processes/)
        slot.release()
        ;(await again).release()
        expect(order).toEqual(['patient', 'busy'])
        expect(busy.state().held + patient.state().held).toBe(0)
      } finally {
        io.disconnect()
        await node.quit()
      }
    },
    30_000,
  )

  withRedis(
    'the pg and mysql2/promise facades take their budget through their lifeguard options',
    async () => {
      const client = new Redis(REDIS_URL)
      const key = `test-${randomUUID()}`
      const budget = redisBudget({ redis: client, key, limit: 2 })
      const pool = new PgPool({ connectionString: POSTGRES_URL, max: 5, lifeguard: { budget } })
      try {
        const rows = await Promise.all(
          [1, 2, 3, 4, 5].map((n) => pool.query('SELECT $1::int AS n, pg_sleep(0.05)', [n])),
        )
        expect(rows.map((r) => r.rows[0].n)).toEqual([1, 2, 3, 4, 5])
        expect(pool.totalCount).toBeLessThanOrEqual(2)
        expect(budget.state().held).toBe(pool.totalCount)
      } finally {
        await pool.end()
        client.disconnect()
      }
      expect(budget.state().held).toBe(0)
      expect(() => new PgPool({ lifeguard: { budget: {} as never } })).toThrow(
        /Invalid option budget/,
      )

      if (!mysqlUp.up && !IN_CI) {
        console.warn('[lifeguard] MariaDB unreachable: the mysql2 half is skipped')
        return
      }
      const mysqlClient = new Redis(REDIS_URL)
      const mysqlBudget = redisBudget({ redis: mysqlClient, key: `${key}-mysql`, limit: 2 })
      const mysqlPool = createMysql2Pool({
        uri: MYSQL_URL,
        connectionLimit: 5,
        lifeguard: { budget: mysqlBudget },
      })
      try {
        const results = await Promise.all(
          [1, 2, 3, 4, 5].map((n) => mysqlPool.query('SELECT ? AS n, SLEEP(0.05) AS s', [n])),
        )
        expect(results.map(([rows]) => (rows as Array<{ n: number }>)[0]!.n)).toEqual([
          1, 2, 3, 4, 5,
        ])
        expect(mysqlBudget.state().held).toBeLessThanOrEqual(2)
        expect(mysqlBudget.state().held).toBeGreaterThan(0)
      } finally {
        await mysqlPool.end()
        mysqlClient.disconnect()
      }
      expect(mysqlBudget.state().held).toBe(0)
    },
    30_000,
  )

  it('Redis refusing connections: BudgetTimeoutError, its cause, the warning and inspect carry no password', async () => {
    const port = await closedPort()
    const client = new Redis(`redis://app:hunter2-secret@127.0.0.1:${port}`, {
      maxRetriesPerRequest: 1,
    })
    client.on('error', () => {})
    const budget = redisBudget({
      redis: client,
      key: `test-${randomUUID()}`,
      limit: 2,
      leaseTtl: 1000,
    })
    const pool = createPool({
      dialect: { name: 'inline', connect: async () => ({}), close: async () => {} },
      budget,
      acquireTimeout: 800,
    })
    const warnings: string[] = []
    pool.on('warning', (warning) => warnings.push(warning.message))
    try {
      const error = (await pool.acquire().catch((e) => e)) as BudgetTimeoutError
      expect(error).toBeInstanceOf(BudgetTimeoutError)
      expect(warnings).toHaveLength(1)
      const shown = [
        inspect(error, { depth: 10 }),
        String((error.cause as Error).message),
        ...warnings,
        inspect(budget, { depth: 10 }),
        JSON.stringify(budget),
      ].join('\n')
      expect(shown).toMatch(/cannot be reached: Redis has not answered/)
      expect(shown).not.toContain('hunter2')
    } finally {
      await pool.close()
      client.disconnect()
    }
  }, 30_000)

  describe('with a throwaway Redis', () => {
    const redis = useThrowawayRedis()

    it('Redis restarted mid-run: no request fails, open connections keep serving, the slots come back', async () => {
      await redis.start().catch(() => {})
      const applicationName = `lifeguard-budget-${randomUUID().slice(0, 8)}`
      const config = {
        redisUrl: redis.url,
        applicationName,
        key: `test-${applicationName}`,
        limit: 8,
        leaseTtl: 2000,
        max: 4,
        concurrency: 4,
      }
      const workers = [startWorker(config), startWorker(config)]
      await Promise.all(workers.map((worker) => worker.ready))
      await until(
        () => workers.every((worker) => worker.last?.budget.held === 4),
        20_000,
        'each process holds 4 slots',
      )
      await redis.stop()
      const okBefore = workers.map((worker) => worker.last!.ok)
      // Longer than the lease: the restarted Redis is empty anyway.
      await sleep(3000)
      const okDuring = workers.map((worker, i) => worker.last!.ok - okBefore[i]!)
      await redis.start()
      await until(
        () => workers.every((worker) => worker.last?.budget.unreachable === false),
        10_000,
        'both processes reach Redis again',
      )
      const client = new Redis(redis.url)
      const tagged = `lifeguard:budget:{${config.key}}:slots`
      let taken = 0
      const deadline = performance.now() + 5000
      while (performance.now() < deadline) {
        taken = await client.zcard(tagged)
        if (taken === 8) break
        await sleep(50)
      }
      client.disconnect()
      const reports = await Promise.all(workers.map((worker) => worker.stop()))
      console.log(
        `[budget] Redis down 3 s: requests served meanwhile ${okDuring.join(' ')}; slots registered again: ${reports.map((r) => r.budget.restored).join(' ')}`,
      )
      expect(reports.map((r) => r.failed)).toEqual([0, 0])
      for (const served of okDuring) expect(served).toBeGreaterThan(0)
      expect(taken).toBe(8)
      for (const report of reports) {
        expect(report.warnings).toContain('LIFEGUARD_BUDGET_UNREACHABLE')
        expect(report.budget.restored).toBe(4)
      }
    }, 60_000)

    it('Redis down: a new connection waits, BudgetTimeoutError at acquireTimeout, a warning; the pool recovers when Redis is back', async () => {
      await redis.start().catch(() => {})
      const client = new Redis(redis.url)
      client.on('error', () => {})
      const key = `test-${randomUUID()}`
      const budget = redisBudget({ redis: client, key, limit: 4, leaseTtl: 2000 })
      const pool = createPool({
        dialect: postgres(POSTGRES_URL),
        max: 2,
        budget,
        acquireTimeout: 1500,
      })
      const warnings: string[] = []
      pool.on('warning', (warning) => warnings.push(warning.message))
      try {
        const first = await pool.acquire()
        await redis.stop()
        const started = performance.now()
        const error = (await pool.acquire().catch((e) => e)) as BudgetTimeoutError
        const waited = performance.now() - started
        expect(error).toBeInstanceOf(BudgetTimeoutError)
        expect(waited).toBeGreaterThanOrEqual(1400)
        expect(error.message).toMatch(/shared budget ".*" \(limit 4\) cannot be reached/)
        expect((error.cause as Error).message).toMatch(/^Redis: /)
        expect(warnings.some((w) => w.includes('LIFEGUARD_BUDGET_UNREACHABLE'))).toBe(true)
        // The open connection keeps serving.
        const { rows } = await first.connection.query('SELECT 1 AS n')
        expect(rows).toEqual([{ n: 1 }])
        first.release()
        const held = await pool.acquire()
        const second = pool.acquire({ timeout: 15_000 })
        await sleep(300)
        await redis.start()
        const lease = await second
        expect(pool.stats().total).toBe(2)
        held.release()
        lease.release()
      } finally {
        await pool.close()
        client.disconnect()
      }
    }, 60_000)

    it('failOpen: with Redis down a new connection opens anyway, and its slot is counted once Redis is back', async () => {
      await redis.start().catch(() => {})
      const client = new Redis(redis.url)
      client.on('error', () => {})
      const key = `test-${randomUUID()}`
      const budget = redisBudget({ redis: client, key, limit: 4, leaseTtl: 2000, failOpen: true })
      const pool = createPool({
        dialect: postgres(POSTGRES_URL),
        max: 2,
        budget,
        acquireTimeout: 5000,
      })
      pool.on('warning', () => {})
      const leases: Lease<pg.Client>[] = []
      try {
        leases.push(await pool.acquire())
        await redis.stop()
        leases.push(await pool.acquire())
        expect(pool.stats().total).toBe(2)
        await redis.start()
        const check = new Redis(redis.url)
        let taken = 0
        const deadline = performance.now() + 5000
        while (performance.now() < deadline && taken !== 2) {
          taken = await check.zcard(`lifeguard:budget:{${key}}:slots`)
          await sleep(50)
        }
        check.disconnect()
        expect(taken).toBe(2)
      } finally {
        for (const lease of leases) lease.release()
        await pool.close()
        client.disconnect()
      }
    }, 60_000)

    it('sends no Redis command per acquire: 10,000 acquires, counted by the server (INFO commandstats)', async () => {
      await redis.start().catch(() => {})
      const client = new Redis(redis.url)
      const admin = new Redis(redis.url)
      const leaseTtl = 10_000
      const budget = redisBudget({ redis: client, key: `test-${randomUUID()}`, limit: 8, leaseTtl })
      const pool = createPool({ dialect: postgres(POSTGRES_URL), max: 4, budget })
      try {
        const warm = await Promise.all([1, 2, 3, 4].map(() => pool.acquire()))
        for (const lease of warm) lease.release()
        await admin.config('RESETSTAT')
        const started = performance.now()
        await Promise.all(
          [1, 2, 3, 4].map(async () => {
            for (let i = 0; i < 2500; i++) (await pool.acquire()).release()
          }),
        )
        const elapsed = performance.now() - started
        const stats = await admin.info('commandstats')
        const calls = [...stats.matchAll(/^cmdstat_(\w+):calls=(\d+)/gm)]
          .filter(([, name]) => name !== 'info' && name !== 'config')
          .reduce((sum, [, , n]) => sum + Number(n), 0)
        console.log(
          `[budget] 10,000 acquires in ${Math.round(elapsed)} ms: ${calls} Redis commands (refreshes only)`,
        )
        expect(pool.stats().acquired).toBeGreaterThanOrEqual(10_004)
        // A refresh every third of the lease, and nothing else.
        expect(calls).toBeLessThanOrEqual(Math.ceil(elapsed / (leaseTtl / 3)) + 1)
      } finally {
        await pool.close()
        client.disconnect()
        admin.disconnect()
      }
    }, 60_000)
  })
})
