import { appendFileSync } from 'node:fs'
import type mysql2 from 'mysql2'
import type pg from 'pg'
import { expect } from 'vitest'
import { MysqlDialect } from '../../src/dialects/mysql-dialect.js'
import { postgres } from '../../src/dialects/postgres.js'
import { createPool, type Dialect, type Pool, type PoolOptions } from '../../src/index.js'
import {
  type Admin,
  myRows,
  mysqlTarget,
  postgresTarget,
  sleep,
  trackProcessErrors,
  uniqueName,
} from '../conformance/targets.js'
import type { ServerStatus } from '../support/servers.js'
import { FaultProxy } from './fault-proxy.js'

/** A database server reached through a {@link FaultProxy}, with the SQL its scenarios need. */
export interface FaultTarget<C> {
  readonly name: 'postgres' | 'mysql'
  readonly label: 'PostgreSQL' | 'MariaDB'
  readonly status: ServerStatus
  /** A dialect whose connections go through `port` and carry `tag` (application_name or user). */
  dialect(port: number, tag: string): Dialect<C>
  query<T = Record<string, unknown>>(connection: C, sql: string, params?: unknown[]): Promise<T[]>
  /** A statement that runs about `ms` on the server. */
  sleepSql(ms: number): string
  /** Sets the session's idle cut-off to `seconds`. */
  idleCutoffSql(seconds: number): string
  /** Opens an administrator connection, straight to the server (never through a proxy). */
  admin(): Promise<Admin>
  /** The port the server listens on. */
  readonly serverPort: number
}

function pgQuery<T>(client: pg.Client, sql: string, params?: unknown[]): Promise<T[]> {
  return client.query(sql, params).then((r) => r.rows as T[])
}

/** PostgreSQL through a proxy; connections are tagged by application_name. */
export function postgresFaultTarget(status: ServerStatus): FaultTarget<pg.Client> {
  const url = new URL(status.url)
  const base = postgresTarget(status)
  return {
    name: 'postgres',
    label: 'PostgreSQL',
    status,
    serverPort: Number(url.port || 5432),
    dialect: (port, tag) =>
      postgres({
        host: '127.0.0.1',
        port,
        user: decodeURIComponent(url.username) || 'postgres',
        password: url.password === '' ? undefined : decodeURIComponent(url.password),
        database: decodeURIComponent(url.pathname.slice(1)) || 'test',
        application_name: tag,
      }),
    query: pgQuery,
    sleepSql: (ms) => `SELECT pg_sleep(${ms / 1000})`,
    idleCutoffSql: (seconds) => `SET idle_session_timeout = '${seconds}s'`,
    admin: () => base.admin!(),
  }
}

/** MariaDB through a proxy; connections are tagged by a user made for the purpose. */
export function mysqlFaultTarget(status: ServerStatus): FaultTarget<mysql2.Connection> {
  const url = new URL(status.url)
  const base = mysqlTarget(status)
  const database = decodeURIComponent(url.pathname.slice(1)) || 'test'
  return {
    name: 'mysql',
    label: 'MariaDB',
    status,
    serverPort: Number(url.port || 3306),
    dialect: (port, tag) => new MysqlDialect({ host: '127.0.0.1', port, user: tag, database }),
    query: (c, sql, params) => myRows(c, sql, params),
    sleepSql: (ms) => `SELECT SLEEP(${ms / 1000})`,
    idleCutoffSql: (seconds) => `SET SESSION wait_timeout = ${seconds}`,
    admin: () => base.admin!(),
  }
}

/** The `p`-th percentile (0–100) of `values`, nearest rank. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank]!
}

/** Rounds to 0.1 ms, for figures. */
export function ms(value: number): number {
  return Math.round(value * 10) / 10
}

/** Asserts what must hold of any pool: the counts add up and the bounds hold. */
export function checkPoolInvariants(pool: Pool<unknown>): void {
  const s = pool.stats()
  expect(s.total).toBe(s.idle + s.leased + s.connecting + s.resetting + s.validating + s.closing)
  expect(s.total).toBeLessThanOrEqual(s.max + s.maxOverflow)
  // No caller waits while a connection sits idle: the pump hands it over in the same step.
  expect(s.waiting > 0 && s.idle > 0, `idle=${s.idle} while waiting=${s.waiting}`).toBe(false)
}

/** Figures the scenarios report, gathered into one line per scenario and server at the end. */
export const figures: Array<{
  scenario: string
  server: string
  figures: Record<string, unknown>
}> = []

/**
 * A latency measured against the tight target its scenario's criterion names (docs/reliability.md),
 * and the generous bound the test enforces. The target is a figure to record, met or missed; the
 * bound is a correctness check (it happened, and in time to matter), loose enough for a loaded
 * 2-core CI machine, where an event-loop stall of a few hundred ms is ordinary.
 */
export interface Latency {
  readonly value: number
  /** The criterion's figure, in ms: recorded in the report, never asserted. */
  readonly target: number
  /** The most the test accepts, in ms. */
  readonly bound: number
}

/**
 * Records the figures of one scenario on one server, and prints them (they go into
 * docs/reliability.md). Each of `latencies` is printed with its target and whether it met it;
 * then the test fails if one is past its bound. With `FAULTS_REPORT_FILE=<file>`, each
 * line is also appended to that file as JSON (one object a line, so that the suite's workers can
 * share it).
 */
export function report(
  scenario: string,
  server: string,
  values: Record<string, unknown>,
  latencies: Record<string, Latency> = {},
): void {
  const targets: Record<string, { ms: number; target: number; met: boolean }> = {}
  for (const [name, l] of Object.entries(latencies)) {
    targets[name] = { ms: ms(l.value), target: l.target, met: l.value <= l.target }
  }
  const line = Object.keys(targets).length === 0 ? { ...values } : { ...values, targets }
  figures.push({ scenario, server, figures: line })
  console.log(`[faults] ${scenario} on ${server}: ${JSON.stringify(line)}`)
  const missed = Object.entries(targets).filter(([, t]) => !t.met)
  if (missed.length > 0) {
    console.log(
      `[faults] ${scenario} on ${server}: target missed: ${missed.map(([name, t]) => `${name} ${t.ms} ms > ${t.target} ms`).join(', ')}`,
    )
  }
  const file = process.env.FAULTS_REPORT_FILE
  if (file) {
    appendFileSync(
      file,
      `${JSON.stringify({ scenario, server, at: new Date().toISOString(), figures: line })}\n`,
    )
  }
  for (const [name, l] of Object.entries(latencies)) {
    expect(
      l.value,
      `${scenario} on ${server}: ${name} ${ms(l.value)} ms, past even the CI bound ${l.bound} ms (target ${l.target} ms)`,
    ).toBeLessThanOrEqual(l.bound)
  }
}

/** One scenario's world: a proxy in front of the server, a tag for its sessions, an admin connection. */
export interface Rig<C> {
  readonly target: FaultTarget<C>
  readonly proxy: FaultProxy
  readonly tag: string
  readonly admin: Admin
  readonly errors: { readonly errors: unknown[] }
  /** A pool over the proxy with this rig's tag; closed (then checked) by `finish()`. */
  pool(options?: Omit<PoolOptions<C>, 'dialect'>): Pool<C>
  /** Closes the pools, then asserts: invariants held, 0 live links, 0 sessions left, 0 unhandled errors. */
  finish(): Promise<void>
}

/** Sets up a {@link Rig}; always call `finish()` (in a `finally`). */
export async function rig<C>(target: FaultTarget<C>): Promise<Rig<C>> {
  const proxy = await FaultProxy.start(target.serverPort)
  const admin = await target.admin()
  const tag = await admin.newTag()
  const errors = trackProcessErrors()
  const pools: Pool<C>[] = []
  return {
    target,
    proxy,
    tag,
    admin,
    errors,
    pool(options) {
      const pool = createPool<C>({
        name: uniqueName('faults'),
        ...options,
        dialect: target.dialect(proxy.port, tag),
      })
      pools.push(pool)
      return pool
    },
    async finish() {
      try {
        await proxy.clear()
        for (const pool of pools) {
          checkPoolInvariants(pool as Pool<unknown>)
          // A lease still out now was never released: a leak (the test's or the pool's).
          if (!pool.closed) expect(pool.stats().leased, `pool ${pool.name} leaked leases`).toBe(0)
        }
        await Promise.all(pools.map((pool) => pool.close({ timeout: 2_000 })))
        // close() resolves at its timeout while the connections it then destroys are still
        // closing (reported to the lead): give them a bounded moment.
        const closing = performance.now() + 3_000
        while (pools.some((p) => p.stats().total > 0) && performance.now() < closing) {
          await new Promise((resolve) => setTimeout(resolve, 10))
        }
        for (const pool of pools) {
          expect(pool.stats().total, `pool ${pool.name} left connections`).toBe(0)
        }
        await proxy.waitForNoLinks(3_000)
        expect(proxy.liveLinks).toBe(0)
        // The server's side of every link is gone too (a killed backend can take a moment).
        const deadline = performance.now() + 3_000
        while ((await admin.count(tag)) > 0 && performance.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 20))
        }
        expect(await admin.count(tag), 'server sessions left behind').toBe(0)
        expect(errors.errors, 'unhandled errors').toEqual([])
      } finally {
        errors.stop()
        await Promise.all(pools.map((pool) => pool.destroy()))
        await proxy.close()
        await admin.close()
      }
    },
  }
}

/**
 * A pool straight to the server, not through the rig's proxy, with the rig's tag (so that
 * `finish()` still counts its sessions): for scenarios that inject no fault on it and would pay
 * the proxy's cost on every query. Close it with {@link closeDirect} before `finish()`.
 */
export function directPool<C>(r: Rig<C>, options?: Omit<PoolOptions<C>, 'dialect'>): Pool<C> {
  return createPool<C>({
    name: uniqueName('faults_direct'),
    ...options,
    dialect: r.target.dialect(r.target.serverPort, r.tag),
  })
}

/** Checks of a {@link directPool} what `finish()` checks of a rig's pools, and closes it. */
export async function closeDirect(pool: Pool<unknown>): Promise<void> {
  try {
    checkPoolInvariants(pool)
    if (!pool.closed) expect(pool.stats().leased, `pool ${pool.name} leaked leases`).toBe(0)
  } finally {
    await pool.close({ timeout: 2_000 })
    await pool.destroy()
  }
  expect(pool.stats().total, `pool ${pool.name} left connections`).toBe(0)
}

/** How long `promise` takes to settle, and how. */
export async function timed<T>(
  promise: Promise<T>,
): Promise<{ ms: number; value?: T; error?: unknown }> {
  const started = performance.now()
  try {
    const value = await promise
    return { ms: performance.now() - started, value }
  } catch (error) {
    return { ms: performance.now() - started, error }
  }
}

/** `code message` of the first two errors, for the figures. */
export function firstErrors(errors: readonly unknown[]): string[] {
  return errors.slice(0, 2).map((e) => {
    const x = e as { code?: string; message?: string }
    return `${x.code ?? ''} ${x.message ?? String(e)}`
  })
}

/** When a call in {@link underOutage} started: before the proxy went down, while down, or after. */
export type OutagePhase = 'before' | 'down' | 'after'

/** One call made during {@link underOutage}. */
export interface OutageRun<T> {
  phase: OutagePhase
  endedAt: number
  value: T
}

/**
 * Keeps `workers` callers looping on `work` while the proxy runs for `leadMs`, goes down (new
 * links refused, live ones cut) for `downMs`, and is up again for `afterMs`: scenario 5, the
 * server down under load. A call that `failed` pauses its caller 5 ms. Returns every call, with
 * the phase it started in, and when the proxy came back up.
 */
export async function underOutage<T>(
  proxy: FaultProxy,
  timing: { workers: number; leadMs: number; downMs: number; afterMs: number },
  work: () => Promise<T>,
  failed: (value: T) => boolean,
): Promise<{ runs: OutageRun<T>[]; upAt: number }> {
  let phase: OutagePhase = 'before'
  let stop = false
  const runs: OutageRun<T>[] = []
  const workers = Array.from({ length: timing.workers }, async () => {
    while (!stop) {
      const startedIn = phase
      const value = await work()
      runs.push({ phase: startedIn, endedAt: performance.now(), value })
      if (failed(value)) await sleep(5)
    }
  })
  await sleep(timing.leadMs)
  phase = 'down'
  await proxy.down()
  await sleep(timing.downMs)
  phase = 'after'
  const upAt = performance.now()
  await proxy.up()
  await sleep(timing.afterMs)
  stop = true
  await Promise.all(workers)
  return { runs, upAt }
}
