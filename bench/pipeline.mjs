// Pipelining (issue 19): autocommit statements that share a connection, through lifeguard/pg
// (`pool.query()`), the core pool (`pool.use(fn, { shared: true })`) and the ORMs, against
// pg.Pool, postgres.js and the floor, on a real PostgreSQL. 1000 callers, pool of 10, each in a
// fresh pool, an untimed warm-up window then a timed one, the order rotating round by round.
//
//   node bench/pipeline.mjs [--src] [--runs=3] [--window=1500] [--warm=500]
//                           [--only=select1,mixed,orm] [--pipelines=1,2,4,8,16,32,100]
//                           [--select1-pipelines=1,16,32]
//                           [--callers=1000] [--rate=4000] [--out=FILE] [--quick]   (POSTGRES_URL)
//
// select1: `SELECT 1` by every contender (lifeguard/pg at its default maxPipeline and at each of
// --select1-pipelines). mixed: 1% of the statements (every 100th, by one
// counter shared by the callers) are `SELECT pg_sleep(0.05)`, the rest `SELECT 1`; latencies of
// the fast statements and of all of them, by maxPipeline. orm: Kysely and Drizzle over
// lifeguard/pg and pg.Pool. open (only when asked: --only=open): the mixed statements at a fixed
// rate (--rate per second, below every contender's capacity; at most --callers outstanding), so
// that latency is a statement's own wait, not the queue of a closed loop. Without --src it loads dist/ (run `npm run build` first).
import { writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { sql as drizzleSql } from 'drizzle-orm'
import { drizzle } from 'drizzle-orm/node-postgres'
import { Kysely, sql as kyselySql, PostgresDialect } from 'kysely'
import pg from 'pg'
import postgresJs from 'postgres'
import { loadLifeguard } from './load-lifeguard.mjs'
import { bounded } from './noio.mjs'
import { quantile, rate, ratio, spread, summarize, times } from './stats.mjs'

const POOL_SIZE = 10
/** Tags our PostgreSQL sessions, so that nobody mistakes them for theirs. */
const APPLICATION_NAME = 'lifeguard-bench'
const FAST = 'SELECT 1'
const SLOW = 'SELECT pg_sleep(0.05)'
/** Every SLOW_EVERY-th statement of a window is the slow one. */
const SLOW_EVERY = 100

const { values } = parseArgs({
  options: {
    src: { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    runs: { type: 'string' },
    window: { type: 'string' },
    warm: { type: 'string' },
    only: { type: 'string', default: 'select1,mixed,orm' },
    pipelines: { type: 'string', default: '1,2,4,8,16,32,100' },
    'select1-pipelines': { type: 'string', default: '1,16,32' },
    callers: { type: 'string', default: '1000' },
    rate: { type: 'string', default: '4000' },
    out: { type: 'string' },
  },
  strict: true,
})

/** @param {string | undefined} value @param {string} name @param {number} fallback */
function positive(value, name, fallback) {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`--${name} must be a positive integer, not ${JSON.stringify(value)}`)
  }
  return n
}

const runs = positive(values.runs, 'runs', values.quick ? 1 : 3)
const windowMs = positive(values.window, 'window', values.quick ? 300 : 1500)
const warmMs = positive(values.warm, 'warm', values.quick ? 100 : 500)
const callers = positive(values.callers, 'callers', 1000)
const openRate = positive(values.rate, 'rate', 4000)
const pipelines = values.pipelines.split(',').map((p) => positive(p.trim(), 'pipelines', 1))
const select1Pipelines = values['select1-pipelines']
  .split(',')
  .map((p) => positive(p.trim(), 'select1-pipelines', 1))
const only = values.only.split(',').map((s) => s.trim())
for (const o of only) {
  if (!['select1', 'mixed', 'orm', 'open'].includes(o)) {
    throw new Error(
      `--only: unknown section ${JSON.stringify(o)}; known: select1, mixed, orm, open`,
    )
  }
}

const url = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const parsedUrl = new URL(url)
if (!['127.0.0.1', 'localhost', '[::1]'].includes(parsedUrl.hostname)) {
  throw new Error(`this bench runs against a loopback server only, not ${parsedUrl.hostname}`)
}

/** The URL with `application_name` added, unless it has one. */
function tagged() {
  const parsed = new URL(url)
  if (!parsed.searchParams.has('application_name')) {
    parsed.searchParams.set('application_name', APPLICATION_NAME)
  }
  return parsed.toString()
}

const lifeguard = await loadLifeguard({ fromSource: values.src })
const facade = await lifeguard.pgFacade()

/**
 * One client under test: `query(lane, slow)` runs FAST (or SLOW when `slow`); `lane` is the
 * caller's index, for the floor.
 * @typedef {{ query(lane: number, slow: boolean): Promise<unknown>, close(): Promise<void> }} Client
 * @typedef {{ name: string, callers: number, note: string, open(): Promise<Client> }} Contender
 */

/** Opens every connection before timing: POOL_SIZE concurrent fast statements. @param {Client} c */
async function fill(c) {
  await Promise.all(Array.from({ length: POOL_SIZE }, (_, i) => c.query(i, false)))
  return c
}

/** @param {any} pool */
function facadeClient(pool) {
  pool.on('error', () => {})
  return fill({
    query: (_lane, slow) => pool.query(slow ? SLOW : FAST),
    close: () => pool.end(),
  })
}

/** lifeguard/pg with maxPipeline `n`, or its default when undefined. @param {number | undefined} n */
function lifeguardPg(n) {
  return {
    name: n === undefined ? 'lifeguard/pg' : `lifeguard/pg maxPipeline ${n}`,
    callers,
    note: `new Pool({ max: 10${n === undefined ? '' : `, maxPipeline: ${n}`} }), pool.query()`,
    open: () =>
      facadeClient(
        new facade.Pool({
          connectionString: tagged(),
          max: POOL_SIZE,
          ...(n === undefined ? {} : { maxPipeline: n }),
        }),
      ),
  }
}

/** @type {Contender} */
const floor = {
  name: 'floor',
  callers: POOL_SIZE,
  note: '10 callers, each owning one pg.Client; no pool',
  async open() {
    const clients = Array.from(
      { length: POOL_SIZE },
      () => new pg.Client({ connectionString: tagged() }),
    )
    for (const client of clients) client.on('error', () => {})
    await Promise.all(clients.map((client) => client.connect()))
    return {
      query: (lane, slow) => /** @type {pg.Client} */ (clients[lane]).query(slow ? SLOW : FAST),
      close: async () => {
        await Promise.all(clients.map((client) => client.end()))
      },
    }
  },
}

/** @type {Contender} */
const pgPool = {
  name: 'pg.Pool',
  callers,
  note: 'max 10, other options default',
  open() {
    const pool = new pg.Pool({ connectionString: tagged(), max: POOL_SIZE })
    pool.on('error', () => {})
    return fill({ query: (_l, slow) => pool.query(slow ? SLOW : FAST), close: () => pool.end() })
  },
}

/** @type {Contender} */
const postgresJsContender = {
  name: 'postgres.js',
  callers,
  note: 'max 10, other options default (prepared statements, max_pipeline 100)',
  open() {
    const sql = postgresJs(url, {
      max: POOL_SIZE,
      connection: { application_name: APPLICATION_NAME },
      onnotice: () => {},
    })
    return fill({
      query: (_l, slow) => (slow ? sql`SELECT pg_sleep(0.05)` : sql`SELECT 1`),
      close: () => sql.end({ timeout: 5 }),
    })
  },
}

/** @type {Contender} */
const coreShared = {
  name: 'core pool, use(…, { shared: true })',
  callers,
  note: 'createPool({ dialect: postgres(url), max: 10 }), pool.use(c => c.query(sql), { shared: true })',
  open() {
    const pool = lifeguard.createPool({ dialect: lifeguard.postgres(tagged()), max: POOL_SIZE })
    return fill({
      query: (_l, slow) =>
        pool.use((/** @type {pg.Client} */ c) => c.query(slow ? SLOW : FAST), { shared: true }),
      close: () => pool.close({ timeout: 5_000 }),
    })
  },
}

/**
 * An ORM over a pg-shaped pool.
 * @param {'Kysely' | 'Drizzle'} orm
 * @param {string} poolName
 * @param {() => any} makePool
 * @returns {Contender}
 */
function ormContender(orm, poolName, makePool) {
  return {
    name: `${orm} over ${poolName}`,
    callers,
    note:
      orm === 'Kysely'
        ? 'new Kysely({ dialect: new PostgresDialect({ pool }) }); sql`select 1`.execute(db)'
        : 'drizzle({ client: pool }) (drizzle-orm/node-postgres); db.execute(sql`select 1`)',
    open() {
      const pool = makePool()
      pool.on('error', () => {})
      if (orm === 'Kysely') {
        const db = new Kysely({ dialect: new PostgresDialect({ pool }) })
        return fill({
          query: () => kyselySql`select 1`.execute(db),
          close: () => db.destroy(),
        })
      }
      const db = drizzle({ client: pool })
      return fill({ query: () => db.execute(drizzleSql`select 1`), close: () => pool.end() })
    },
  }
}

const ormPools = [
  ['pg.Pool', () => new pg.Pool({ connectionString: tagged(), max: POOL_SIZE })],
  ['lifeguard/pg', () => new facade.Pool({ connectionString: tagged(), max: POOL_SIZE })],
  [
    'lifeguard/pg maxPipeline 1',
    () => new facade.Pool({ connectionString: tagged(), max: POOL_SIZE, maxPipeline: 1 }),
  ],
]

/**
 * A window's figures: its rate over `elapsedMs`, the CPU this process spent since `cpu`, and the
 * latency quantiles of every statement and of the fast ones.
 * @param {number[]} fast
 * @param {number[]} slow
 * @param {number} elapsedMs
 * @param {NodeJS.CpuUsage} cpu
 */
function windowFigures(fast, slow, elapsedMs, cpu) {
  const used = process.cpuUsage(cpu)
  const all = [...fast, ...slow].sort((a, b) => a - b)
  fast.sort((a, b) => a - b)
  return {
    qps: (all.length / elapsedMs) * 1000,
    cpuUsPerQuery: (used.user + used.system) / all.length,
    p50: quantile(all, 0.5),
    p99: quantile(all, 0.99),
    p999: quantile(all, 0.999),
    fastP50: quantile(fast, 0.5),
    fastP99: quantile(fast, 0.99),
    fastP999: quantile(fast, 0.999),
    slowCount: slow.length,
  }
}

/**
 * One timed window: `n` concurrent loops until the window ends; each statement's latency counts
 * from the call (so it includes the wait for a connection) to its result. With `mixed`, every
 * SLOW_EVERY-th statement (one counter shared by the callers) is SLOW.
 * @param {Client} client
 * @param {number} n
 * @param {number} ms
 * @param {boolean} mixed
 */
async function load(client, n, ms, mixed) {
  /** @type {number[]} */
  const fast = []
  /** @type {number[]} */
  const slow = []
  let stop = false
  let counter = 0
  const timer = setTimeout(() => {
    stop = true
  }, ms)
  const cpu = process.cpuUsage()
  const started = performance.now()
  const lane = async (/** @type {number} */ i) => {
    while (!stop) {
      const isSlow = mixed && ++counter % SLOW_EVERY === 0
      const t0 = performance.now()
      await client.query(i, isSlow)
      ;(isSlow ? slow : fast).push(performance.now() - t0)
    }
  }
  try {
    await bounded(Promise.all(Array.from({ length: n }, (_, i) => lane(i))), ms + 30_000, 'load')
  } finally {
    clearTimeout(timer)
    stop = true
  }
  return windowFigures(fast, slow, performance.now() - started, cpu)
}

/**
 * One timed window at a fixed arrival rate (open loop): `rate` statements per second, the mixed
 * ones, each timed from when it was due (so a late timer counts against the contender), at most
 * `n` outstanding (the rest are counted as dropped, and fail the window).
 * @param {Client} client
 * @param {number} n
 * @param {number} ms
 * @param {number} rate
 */
async function loadOpen(client, n, ms, rate) {
  /** @type {number[]} */
  const fast = []
  /** @type {number[]} */
  const slow = []
  let issued = 0
  let outstanding = 0
  let dropped = 0
  /** @type {unknown} */
  let failure
  const cpu = process.cpuUsage()
  const started = performance.now()
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      const now = performance.now() - started
      const due = Math.floor((Math.min(now, ms) * rate) / 1000)
      while (issued < due) {
        const dueAt = started + (issued * 1000) / rate
        issued++
        if (outstanding >= n) {
          dropped++
          continue
        }
        const isSlow = issued % SLOW_EVERY === 0
        outstanding++
        client.query(0, isSlow).then(
          () => {
            outstanding--
            ;(isSlow ? slow : fast).push(performance.now() - dueAt)
          },
          (error) => {
            outstanding--
            failure ??= error
          },
        )
      }
      if (now >= ms) {
        clearInterval(timer)
        resolve(undefined)
      }
    }, 1)
  })
  const drained = performance.now()
  while (outstanding > 0 && performance.now() - drained < 30_000) {
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  if (failure !== undefined) throw failure
  if (outstanding > 0) throw new Error(`${outstanding} statements still outstanding after 30 s`)
  if (dropped > 0) throw new Error(`${dropped} statements dropped: more than ${n} outstanding`)
  return windowFigures(fast, slow, ms, cpu)
}

const METRICS = /** @type {const} */ ([
  'qps',
  'cpuUsPerQuery',
  'p50',
  'p99',
  'p999',
  'fastP50',
  'fastP99',
  'fastP999',
  'slowCount',
])

/**
 * Runs the contenders of one section, interleaved, the order rotating by round.
 * @param {string} label
 * @param {Contender[]} contenders
 * @param {boolean} mixed
 * @param {number} [rate] an open loop at this rate (mixed statements), instead of a closed one
 */
async function section(label, contenders, mixed, rate) {
  /** @type {Record<string, Record<string, number[]>>} */
  const samples = {}
  /** @type {Record<string, string>} */
  const errors = {}
  for (const c of contenders) {
    samples[c.name] = Object.fromEntries(METRICS.map((m) => [m, []]))
  }
  for (let round = 0; round < runs; round++) {
    for (let i = 0; i < contenders.length; i++) {
      const c = /** @type {Contender} */ (contenders[(i + round) % contenders.length])
      if (errors[c.name] !== undefined) continue
      /** @type {Client | undefined} */
      let client
      try {
        client = await bounded(c.open(), 30_000, `opening ${c.name}`)
        const window = (/** @type {number} */ ms) =>
          rate === undefined
            ? load(client, c.callers, ms, mixed)
            : loadOpen(/** @type {Client} */ (client), c.callers, ms, rate)
        await window(warmMs)
        const m = await window(windowMs)
        for (const k of METRICS) samples[c.name][k].push(m[k])
      } catch (error) {
        errors[c.name] = error instanceof Error ? error.message : String(error)
        console.error(`  ${label} ${c.name}: ERROR ${errors[c.name]}`)
      } finally {
        await client?.close().catch(() => {})
      }
    }
    console.error(`  ${label} round ${round + 1}/${runs} done`)
  }
  /** @type {Record<string, any>} */
  const result = {}
  for (const c of contenders) {
    result[c.name] = {
      callers: c.callers,
      note: c.note,
      ...Object.fromEntries(METRICS.map((k) => [k, summarize(samples[c.name][k])])),
      ...(errors[c.name] === undefined ? {} : { error: errors[c.name] }),
    }
  }
  return result
}

const ms = (/** @type {number} */ n) => (Number.isFinite(n) ? n.toFixed(n < 10 ? 2 : 1) : '–')
const us = (/** @type {number} */ n) => (Number.isFinite(n) ? n.toFixed(1) : '–')

/**
 * Prints a mixed workload's table: each contender's rate, and the latency quantiles of the fast
 * statements and of all of them.
 * @param {Record<string, any>} r
 */
function printMixed(r) {
  console.log(
    '| contender | statements/s | fast p50 ms | fast p99 ms | fast p99.9 ms | all p50 ms | all p99 ms | all p99.9 ms |',
  )
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |')
  for (const [name, c] of Object.entries(r)) {
    console.log(
      `| ${name} | ${spread(c.qps, rate)} | ${spread(c.fastP50, ms)} | ${spread(c.fastP99, ms)} | ${spread(c.fastP999, ms)} | ${spread(c.p50, ms)} | ${spread(c.p99, ms)} | ${spread(c.p999, ms)} |${c.error ? ` ERROR ${c.error}` : ''}`,
    )
  }
}

/** @type {Record<string, any>} */
const results = {
  date: new Date().toISOString(),
  from: lifeguard.from,
  node: process.version,
  runs,
  windowMs,
  warmMs,
  callers,
  poolSize: POOL_SIZE,
}
const started = performance.now()
try {
  if (only.includes('select1')) {
    const r = await section(
      'select1',
      [
        floor,
        pgPool,
        postgresJsContender,
        lifeguardPg(undefined),
        ...select1Pipelines.map((n) => lifeguardPg(n)),
        coreShared,
      ],
      false,
    )
    results.select1 = r
    const f = r.floor?.qps.median
    const p = r['postgres.js']?.qps.median
    console.log(`\n### SELECT 1, ${callers} callers, pool of ${POOL_SIZE}\n`)
    console.log(
      '| contender | queries/s | ÷ floor | ÷ postgres.js | p50 ms | p99 ms | CPU µs/query |',
    )
    console.log('| --- | --- | --- | --- | --- | --- | --- |')
    for (const [name, c] of Object.entries(r)) {
      console.log(
        `| ${name} | ${spread(c.qps, rate)} | ${times(ratio(c.qps.median, f))} | ${times(ratio(c.qps.median, p))} | ${spread(c.p50, ms)} | ${spread(c.p99, ms)} | ${spread(c.cpuUsPerQuery, us)} |${c.error ? ` ERROR ${c.error}` : ''}`,
      )
    }
  }
  if (only.includes('mixed')) {
    const r = await section(
      'mixed',
      [...pipelines.map((n) => lifeguardPg(n)), pgPool, postgresJsContender],
      true,
    )
    results.mixed = r
    console.log(
      `\n### Mixed: 1 statement in ${SLOW_EVERY} is ${SLOW}, the rest ${FAST}; ${callers} callers, pool of ${POOL_SIZE}\n`,
    )
    printMixed(r)
  }
  if (only.includes('open')) {
    const r = await section(
      'open',
      [...pipelines.map((n) => lifeguardPg(n)), pgPool, postgresJsContender],
      true,
      openRate,
    )
    results.open = r
    console.log(
      `\n### Mixed at a fixed ${openRate} statements/s (open loop): 1 in ${SLOW_EVERY} is ${SLOW}; at most ${callers} outstanding, pool of ${POOL_SIZE}\n`,
    )
    printMixed(r)
  }
  if (only.includes('orm')) {
    const contenders = []
    for (const orm of /** @type {const} */ (['Kysely', 'Drizzle'])) {
      for (const [poolName, make] of ormPools) {
        contenders.push(
          ormContender(orm, /** @type {string} */ (poolName), /** @type {any} */ (make)),
        )
      }
    }
    const r = await section('orm', contenders, false)
    results.orm = r
    console.log(`\n### ORMs, select 1, ${callers} callers, pool of ${POOL_SIZE}\n`)
    console.log(
      '| contender | queries/s | ÷ same ORM over pg.Pool | p50 ms | p99 ms | CPU µs/query |',
    )
    console.log('| --- | --- | --- | --- | --- | --- |')
    for (const [name, c] of Object.entries(r)) {
      const base = r[`${name.split(' ')[0]} over pg.Pool`]?.qps.median
      console.log(
        `| ${name} | ${spread(c.qps, rate)} | ${times(ratio(c.qps.median, base))} | ${spread(c.p50, ms)} | ${spread(c.p99, ms)} | ${spread(c.cpuUsPerQuery, us)} |${c.error ? ` ERROR ${c.error}` : ''}`,
      )
    }
  }
} finally {
  lifeguard.cleanup()
}
results.seconds = (performance.now() - started) / 1000
console.log(
  `\n${lifeguard.from}, node ${process.version}, ${runs} runs of ${windowMs} ms (+${warmMs} ms warm-up), ${results.seconds.toFixed(0)} s`,
)
if (values.out !== undefined) writeFileSync(values.out, `${JSON.stringify(results, null, 2)}\n`)
const failed = ['select1', 'mixed', 'orm', 'open'].flatMap((s) =>
  Object.entries(results[s] ?? {}).filter(([, c]) => c.error !== undefined),
)
if (failed.length > 0) process.exitCode = 1
