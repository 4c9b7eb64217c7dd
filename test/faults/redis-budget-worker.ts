// One app process of the shared-budget tests (redis-budget.test.ts): a pool on PostgreSQL with a
// Redis budget, under load from `concurrency` loops, until the parent says stop. Bundled by the
// test and run with child_process.fork; it reports over IPC.
import { Redis } from 'ioredis'
import { redisBudget } from '../../src/budget/redis.js'
import { postgres } from '../../src/dialects/postgres.js'
import { createPool } from '../../src/index.js'

/** What the test passes in BUDGET_WORKER (as JSON). */
export interface WorkerConfig {
  postgresUrl: string
  redisUrl: string
  applicationName: string
  key: string
  limit: number
  leaseTtl: number
  max: number
  concurrency: number
  acquireTimeout: number
}

const config = JSON.parse(process.env.BUDGET_WORKER!) as WorkerConfig

const redis = new Redis(config.redisUrl, { lazyConnect: false })
// ioredis reports every failed reconnect on 'error'; the budget hears of them through its commands.
redis.on('error', () => {})
const budget = redisBudget({
  redis,
  key: config.key,
  limit: config.limit,
  leaseTtl: config.leaseTtl,
})
const pool = createPool({
  dialect: postgres({
    connectionString: config.postgresUrl,
    application_name: config.applicationName,
  }),
  max: config.max,
  budget,
  acquireTimeout: config.acquireTimeout,
  name: `worker-${process.pid}`,
})
const warnings: string[] = []
pool.on('warning', (warning) => warnings.push(warning.code))
process.removeAllListeners('warning')

let ok = 0
let failed = 0
const errors: string[] = []
let running = true

async function loop(): Promise<void> {
  while (running) {
    try {
      await pool.use((client) => client.query('SELECT pg_sleep(0.005)'))
      ok++
    } catch (error) {
      failed++
      if (errors.length < 5) errors.push(String((error as Error).message))
    }
  }
}

const report = () => ({
  pid: process.pid,
  ok,
  failed,
  errors,
  warnings,
  budget: budget.state(),
  pool: { total: pool.stats().total, idle: pool.stats().idle, leased: pool.stats().leased },
})

const loops = Array.from({ length: config.concurrency }, () => loop())
const ticker = setInterval(() => process.send!({ type: 'report', ...report() }), 100)

process.on('message', async (message: { type: string }) => {
  if (message.type !== 'stop') return
  running = false
  await Promise.all(loops)
  clearInterval(ticker)
  const last = report()
  await pool.close()
  redis.disconnect()
  process.send!({ type: 'done', ...last }, () => process.exit(0))
})
process.send!({ type: 'ready' })
