import { rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type BetterSqlite3 from 'better-sqlite3'
import type pg from 'pg'
import { expect, it } from 'vitest'
import { sqlite } from '../../src/dialects/sqlite.js'
import { createPool, type Pool } from '../../src/index.js'
import { RUN_TAG, sleep } from '../conformance/targets.js'
import { describeOnServer, probe } from '../support/servers.js'
import {
  checkPoolInvariants,
  type FaultTarget,
  type Latency,
  ms,
  mysqlFaultTarget,
  percentile,
  postgresFaultTarget,
  report,
  rig,
} from './fault-targets.js'

// Scenario 10: lifetime rotation. `maxLifetime: 1000` under 500 queries/s for ROTATION_SECONDS
// (30 by default), on PostgreSQL, MariaDB and SQLite at once. Every connection is replaced about
// once a second while callers keep coming. Criteria: 0 caller errors; no connection lent past its
// lifetime or alive past lifetime + the longest hold; no burst of simultaneous replacements (no
// sweep of the whole pool, callers' p99 wait ≤ 10 ms; the 50 ms figures are reported).
// Anchor: HikariCP's `testMaxLifetime` (in-use connections are never retired, jitter)
// (research note, row 10).

const SECONDS = Number(process.env.ROTATION_SECONDS ?? 30)
/** Queries per second per pool, open loop: a slow pool does not slow the load down. */
const RATE = 500
const LIFETIME_MS = 1_000
const SIZE = 8
/** One query in 20 holds its connection this long: the longest query. */
const LONG_MS = 50
/** The window for the burst figures. */
const BURST_WINDOW_MS = 50
/** Retirements this close together are one sweep, not jitter. */
const SWEEP_WINDOW_MS = 10
/** Timer and event-loop slack the criterion allows: the target, recorded in the report. */
const SLACK_MS = 25
/** The slack the test enforces: a loaded 2-core CI machine can stall timers this long. */
const CI_SLACK_MS = 500

const [pgStatus, myStatus] = await Promise.all([probe('postgres'), probe('mysql')])

/** The most of `times` (ms, any order) that fall in any window of `width` ms. */
function densest(times: readonly number[], width: number): number {
  const sorted = [...times].sort((a, b) => a - b)
  let most = 0
  let from = 0
  for (let to = 0; to < sorted.length; to++) {
    while (sorted[to]! - sorted[from]! >= width) from++
    most = Math.max(most, to - from + 1)
  }
  return most
}

/** What one pool saw of its own rotation, from its events and its callers. */
interface Rotation {
  queries: number
  errors: unknown[]
  waits: number[]
  /** For each lend, how old the connection was (ms since its 'connect'). */
  agesAtLend: number[]
  /** For each lifetime retirement, how old the connection was. */
  agesAtRetire: number[]
  retiredAt: number[]
  /** Connects after the pool first reached its size: the replacements. */
  replacedAt: number[]
  longestHoldMs: number
  otherInvalidations: string[]
  /** PostgreSQL only: the connection's age by the server's clock, sampled in queries. */
  serverAges: number[]
  /** When the load started (after the pool was warm). */
  startedAt: number
}

/**
 * Runs RATE queries/s against `pool` for SECONDS; one in 20 holds its connection LONG_MS.
 * `query` runs one statement; `longQuery` holds the connection LONG_MS.
 */
async function rotate<C>(
  pool: Pool<C>,
  query: (c: C, i: number) => Promise<number | undefined>,
  longQuery: (c: C) => Promise<unknown>,
): Promise<Rotation> {
  const connectedAt = new Map<number, number>()
  const out: Rotation = {
    queries: 0,
    errors: [],
    waits: [],
    agesAtLend: [],
    agesAtRetire: [],
    retiredAt: [],
    replacedAt: [],
    longestHoldMs: 0,
    otherInvalidations: [],
    serverAges: [],
    startedAt: 0,
  }
  pool.on('connect', ({ id }) => {
    const now = performance.now()
    connectedAt.set(id, now)
    if (id > SIZE) out.replacedAt.push(now)
  })
  pool.on('acquire', ({ id }) => {
    out.agesAtLend.push(performance.now() - connectedAt.get(id)!)
  })
  pool.on('release', ({ heldMs }) => {
    out.longestHoldMs = Math.max(out.longestHoldMs, heldMs)
  })
  pool.on('invalidate', ({ id, reason }) => {
    const now = performance.now()
    if (reason !== 'lifetime') out.otherInvalidations.push(reason)
    out.retiredAt.push(now)
    out.agesAtRetire.push(now - connectedAt.get(id)!)
  })
  // Warm the pool to its size, so that every later connect is a replacement.
  const warm = await Promise.all(Array.from({ length: SIZE }, () => pool.acquire()))
  for (const lease of warm) lease.release()
  const started = performance.now()
  out.startedAt = started
  const deadline = started + SECONDS * 1000
  const inFlight = new Set<Promise<void>>()
  let issued = 0
  while (performance.now() < deadline) {
    const due = Math.floor(((performance.now() - started) / 1000) * RATE)
    for (; issued < due; issued++) {
      const i = issued
      const asked = performance.now()
      const p = pool
        .use(async (c) => {
          out.waits.push(performance.now() - asked)
          if (i % 20 === 19) await longQuery(c)
          else {
            const age = await query(c, i)
            if (age !== undefined) out.serverAges.push(age)
          }
        })
        .then(
          () => {
            out.queries++
          },
          (error) => {
            out.errors.push(error)
          },
        )
        .finally(() => inFlight.delete(p))
      inFlight.add(p)
    }
    await sleep(5) // deliberate: the open loop's tick; each tick starts the queries now due
  }
  await Promise.all(inFlight)
  return out
}

function figuresOf(r: Rotation): Record<string, unknown> {
  return {
    queries: r.queries,
    callerErrors: r.errors.length,
    firstErrors: r.errors.slice(0, 2).map(String),
    replacements: r.replacedAt.length,
    lifetimeRetirements: r.retiredAt.length,
    otherInvalidations: r.otherInvalidations,
    maxRetiredIn50ms: densest(r.retiredAt, BURST_WINDOW_MS),
    maxRetiredIn50msAfter2s: densest(
      r.retiredAt.filter((t) => t >= r.startedAt + 2_000),
      BURST_WINDOW_MS,
    ),
    maxRetiredIn10ms: densest(r.retiredAt, SWEEP_WINDOW_MS),
    maxConnectsIn50ms: densest(r.replacedAt, BURST_WINDOW_MS),
    maxAgeAtLendMs: ms(Math.max(...r.agesAtLend)),
    minAgeAtRetireMs: ms(Math.min(...r.agesAtRetire)),
    maxAgeAtRetireMs: ms(Math.max(...r.agesAtRetire)),
    longestHoldMs: ms(r.longestHoldMs),
    maxServerAgeMs: r.serverAges.length > 0 ? ms(Math.max(...r.serverAges)) : undefined,
    waitP50: ms(percentile(r.waits, 50)),
    waitP99: ms(percentile(r.waits, 99)),
    waitMax: ms(Math.max(...r.waits)),
  }
}

function check(r: Rotation): void {
  expect(r.errors).toEqual([])
  expect(r.otherInvalidations).toEqual([])
  // The load really ran: RATE/s, less what was still due at the deadline.
  expect(r.queries).toBeGreaterThanOrEqual(RATE * SECONDS * 0.95)
  // Every connection was replaced about once per lifetime (jitter makes it up to 10% sooner).
  expect(r.replacedAt.length).toBeGreaterThanOrEqual(SIZE * (SECONDS - 2))
  // Never lent past its lifetime, never alive past lifetime + the longest hold: see latencies().
  // The 10% jitter: a connection is not retired sooner than 90% of its lifetime.
  expect(Math.min(...r.agesAtRetire)).toBeGreaterThanOrEqual(LIFETIME_MS * 0.9 - 1)
  // No burst. Each connection is retired somewhere in the last 10% of its lifetime, here a
  // 100 ms band, at the point of that band farthest from the other connections' ends of life
  // (regression: with a plain random point, connections opened together retired 5 to 8 of 8
  // within 50 ms, and the whole pool within 10 ms in ~3.5% of first rotations). Never more than
  // 3 within 10 ms, and once the start-up has passed, never more than half the pool in 50 ms.
  expect(densest(r.retiredAt, SWEEP_WINDOW_MS)).toBeLessThanOrEqual(3)
  expect(
    densest(
      r.retiredAt.filter((t) => t >= r.startedAt + 2_000),
      BURST_WINDOW_MS,
    ),
  ).toBeLessThanOrEqual(SIZE / 2)
}

/**
 * The timer-driven figures, each with its target (timer slack {@link SLACK_MS}) and the bound the
 * test enforces ({@link CI_SLACK_MS}): a lifetime timer that a loaded machine runs late lets a
 * connection be lent, or live, that much longer.
 */
function latencies(r: Rotation): Record<string, Latency> {
  const within = (value: number, limit: number) => ({
    value,
    target: limit + SLACK_MS,
    bound: limit + CI_SLACK_MS,
  })
  return {
    ageAtLend: within(Math.max(...r.agesAtLend), LIFETIME_MS),
    ageAtRetire: within(Math.max(...r.agesAtRetire), LIFETIME_MS + r.longestHoldMs),
    ...(r.serverAges.length > 0
      ? { serverAge: within(Math.max(...r.serverAges), LIFETIME_MS + LONG_MS) }
      : {}),
    // Callers do not feel the rotation: replacements happen off the callers' path (a caller who
    // has to wait for a reconnect waits a connect, ~5 ms here; a storm would show in the p99).
    waitP99: { value: percentile(r.waits, 99), target: 20, bound: 500 },
  }
}

const options = { max: SIZE, min: SIZE, maxLifetime: LIFETIME_MS, acquireTimeout: 2_000 }

async function onServer<C>(target: FaultTarget<C>): Promise<void> {
  const r = await rig(target)
  try {
    const pool = r.pool(options)
    const isPg = target.name === 'postgres'
    const rotation = await rotate(
      pool,
      async (c, i) => {
        // One query in ten on PostgreSQL asks the server how old its session is.
        if (isPg && i % 10 === 0) {
          const [row] = await target.query<{ age: number }>(
            c,
            'SELECT (EXTRACT(EPOCH FROM clock_timestamp() - backend_start) * 1000)::float8 AS age FROM pg_stat_activity WHERE pid = pg_backend_pid()',
          )
          return row!.age
        }
        await target.query(c, 'SELECT 1 AS one')
        return undefined
      },
      (c) => target.query(c, target.sleepSql(LONG_MS)),
    )
    checkPoolInvariants(pool as Pool<unknown>)
    check(rotation)
    report('10 lifetime rotation', target.label, figuresOf(rotation), latencies(rotation))
    if (isPg) expect(rotation.serverAges.length).toBeGreaterThan(0)
  } finally {
    await r.finish()
  }
}

async function onSqlite(): Promise<void> {
  const file = join(tmpdir(), `lifeguard-faults-rotation-${RUN_TAG}.db`)
  const pool = createPool<BetterSqlite3.Database>({ ...options, dialect: sqlite(file) })
  try {
    const rotation = await rotate(
      pool,
      async (db) => {
        db.prepare('SELECT 1 AS one').get()
        return undefined
      },
      () => sleep(LONG_MS), // no server to sleep on: hold the connection
    )
    checkPoolInvariants(pool as Pool<unknown>)
    check(rotation)
    report('10 lifetime rotation', 'SQLite', figuresOf(rotation), latencies(rotation))
  } finally {
    await pool.close({ timeout: 2_000 })
    expect(pool.stats().total).toBe(0)
    for (const suffix of ['', '-wal', '-shm']) rmSync(file + suffix, { force: true })
  }
}

// A server that is down fails the suite in CI and is skipped loudly elsewhere.
for (const status of [pgStatus, myStatus]) {
  if (!status.up) describeOnServer(status, `faults: lifetime rotation on ${status.label}`, () => {})
}

describeOnServer(
  pgStatus.up ? myStatus : pgStatus,
  `faults: lifetime rotation (${SECONDS} s, PostgreSQL, MariaDB and SQLite at once)`,
  () => {
    it(`10. maxLifetime ${LIFETIME_MS} ms at ${RATE} queries/s: 0 caller errors, no connection lent past its lifetime or alive past lifetime + the longest hold, no burst of replacements`, {
      timeout: (SECONDS + 60) * 1000,
    }, async () => {
      // allSettled: each run finishes (and cleans up) even when another one fails.
      const runs = await Promise.allSettled([
        onServer(postgresFaultTarget(pgStatus) as FaultTarget<pg.Client>),
        onServer(mysqlFaultTarget(myStatus)),
        onSqlite(),
      ])
      for (const run of runs) if (run.status === 'rejected') throw run.reason
    })
  },
)
