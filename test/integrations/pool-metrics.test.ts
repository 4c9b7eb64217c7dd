import * as diagnostics from 'node:diagnostics_channel'
import type { Histogram } from '@opentelemetry/sdk-metrics'
import type mysql2 from 'mysql2'
import { Registry } from 'prom-client'
import { afterAll, expect, it } from 'vitest'
import { createPool as createMysql2Pool } from '../../src/compat/mysql2.js'
import { lifeguardOf, Pool as PgPool } from '../../src/compat/pg.js'
import { createPool, type Pool } from '../../src/index.js'
import { instrumentPool } from '../../src/metrics/otel.js'
import { collectPoolMetrics } from '../../src/metrics/prometheus.js'
import { otelHarness } from '../support/otel-reader.js'
import { type PromSample, parsePrometheus, sampleValue } from '../support/prometheus-text.js'
import { describeOnServer, probe } from '../support/servers.js'
import { MYSQL_URL, PG_URL } from './support.js'

const postgres = await probe('postgres')
const mysql = await probe('mysql')

/** What the workload needs of a pool, whatever its API: a query, and a connection held by hand. */
interface Borrower {
  query(): Promise<unknown>
  hold(): Promise<{ release(): void; destroy(): void }>
}

/** The lifeguard options every pool of these tests gets: two connections, and a short wait. */
const SMALL = { max: 2, maxOverflow: 0, acquireTimeout: 300 }

/** A password the pool must never show: in the URL of one of the pools. */
const SECRET = 'hunter2-do-not-show'

/** `url` with {@link SECRET} as its password (PostgreSQL here trusts 127.0.0.1 and ignores it). */
function withPassword(url: string): string {
  const parsed = new URL(url)
  parsed.password = SECRET
  return parsed.toString()
}

/**
 * The known workload: four queries at once on two connections (two wait), two connections held
 * while a third caller times out, then one released and one destroyed (an invalidation).
 */
async function workload(borrower: Borrower): Promise<void> {
  await Promise.all([borrower.query(), borrower.query(), borrower.query(), borrower.query()])
  const a = await borrower.hold()
  const b = await borrower.hold()
  await expect(borrower.hold()).rejects.toThrow()
  a.release()
  b.destroy()
  // The destroyed connection closes in the background; its invalidation is told at once.
  await new Promise((resolve) => setTimeout(resolve, 20))
}

/** Checks the Prometheus samples of `pool` against its own stats. */
function checkPrometheus(samples: PromSample[], pool: Pool<unknown>): void {
  const stats = pool.stats()
  const of = { pool_name: stats.name }
  const count = (metric: string) => sampleValue(samples, `${metric}_count`, of)
  expect(stats.acquired).toBe(6)
  expect(count('db_client_connection_wait_time_seconds')).toBe(stats.acquired)
  expect(count('db_client_connection_create_time_seconds')).toBe(stats.created)
  expect(count('db_client_connection_use_time_seconds')).toBe(stats.released)
  expect(
    sampleValue(samples, 'db_client_connection_wait_time_seconds_bucket', { ...of, le: '+Inf' }),
  ).toBe(stats.acquired)
  expect(stats.timeouts).toBe(1)
  expect(sampleValue(samples, 'db_client_connection_timeouts_total', of)).toBe(stats.timeouts)
  const invalidations = samples.filter(
    (s) =>
      s.name === 'lifeguard_connection_invalidations_total' && s.labels.pool_name === stats.name,
  )
  expect(invalidations.find((s) => s.labels.reason === 'destroyed')?.value).toBe(1)
  expect(invalidations.reduce((sum, s) => sum + s.value, 0)).toBe(stats.invalidated)
  expect(sampleValue(samples, 'db_client_connection_max', of)).toBe(2)
  expect(sampleValue(samples, 'db_client_connection_count', { ...of, state: 'idle' })).toBe(
    stats.idle,
  )
  expect(sampleValue(samples, 'db_client_connection_count', { ...of, state: 'used' })).toBe(0)
}

/** Checks the OpenTelemetry data of the pool against its own stats. */
async function checkOtel(otel: ReturnType<typeof otelHarness>, pool: Pool<unknown>): Promise<void> {
  const stats = pool.stats()
  const data = await otel.collect()
  const ours = (metric: string) =>
    data
      .get(metric)!
      .points.filter((p) => p.attributes['db.client.connection.pool.name'] === stats.name)
  const histogram = (metric: string) => ours(metric)[0]!.value as Histogram
  expect(histogram('db.client.connection.wait_time').count).toBe(stats.acquired)
  expect(histogram('db.client.connection.create_time').count).toBe(stats.created)
  expect(histogram('db.client.connection.use_time').count).toBe(stats.released)
  expect(ours('db.client.connection.timeouts')[0]!.value).toBe(stats.timeouts)
  const destroyed = ours('lifeguard.connection.invalidations').find(
    (p) => p.attributes['lifeguard.invalidate.reason'] === 'destroyed',
  )
  expect(destroyed?.value).toBe(1)
}

/** Runs the workload on `target` with both exporters attached, and checks both against stats(). */
async function measured(target: object, pool: Pool<unknown>, borrower: Borrower): Promise<string> {
  const registry = new Registry()
  const otel = otelHarness()
  const stopProm = collectPoolMetrics(target, { registry })
  const stopOtel = instrumentPool(target, { meterProvider: otel.meterProvider })
  try {
    await workload(borrower)
    const text = await registry.metrics()
    checkPrometheus(parsePrometheus(text), pool)
    await checkOtel(otel, pool)
    return text + JSON.stringify([...(await otel.collect()).values()])
  } finally {
    stopProm()
    stopOtel()
    await otel.shutdown()
  }
}

/** A core pool whose connections answer `query()` (pg's Client, mysql2/promise's connection). */
type Queryable = Pool<{ query(sql: string): Promise<unknown> }>

/** A core pool as a {@link Borrower}. */
function coreBorrower(pool: Queryable): Borrower {
  return {
    query: () => pool.use((c) => c.query('SELECT 1')),
    hold: async () => {
      const lease = await pool.acquire()
      return { release: () => lease.release(), destroy: () => lease.destroy(new Error('done')) }
    },
  }
}

describeOnServer(postgres, 'pool metrics on PostgreSQL', () => {
  const pools: Array<{ close(): Promise<void> } | { end(): Promise<void> }> = []
  afterAll(async () => {
    for (const p of pools) await ('close' in p ? p.close() : p.end())
  })

  it('a core pool: the exported counts match stats(), and the password is in no label', async () => {
    const pool = createPool({ url: withPassword(PG_URL), ...SMALL }) as unknown as Queryable
    pools.push(pool)
    const exported = await measured(pool, pool as Pool<unknown>, coreBorrower(pool))
    expect(exported).not.toContain(SECRET)
    expect(exported).toContain(`pool_name="${pool.stats().name}"`)
  })

  it('the lifeguard/pg facade, instrumented directly: the counts match its pool’s stats()', async () => {
    const facade = new PgPool({
      connectionString: withPassword(PG_URL),
      lifeguard: SMALL,
    })
    pools.push(facade)
    const exported = await measured(facade, lifeguardOf(facade), {
      query: () => facade.query('SELECT 1'),
      hold: async () => {
        const client = await facade.connect()
        return { release: () => client.release(), destroy: () => client.release(true) }
      },
    })
    expect(exported).not.toContain(SECRET)
  })
})

describeOnServer(mysql, 'pool metrics on MariaDB', () => {
  const pools: Array<{ close(): Promise<void> } | { end(): Promise<void> }> = []
  afterAll(async () => {
    for (const p of pools) await ('close' in p ? p.close() : p.end())
  })

  it('a core pool: the exported counts match stats()', async () => {
    const pool = createPool({ url: MYSQL_URL, ...SMALL }) as unknown as Queryable
    pools.push(pool)
    await measured(pool, pool as Pool<unknown>, coreBorrower(pool))
  })

  it('the lifeguard/mysql2 facade, instrumented directly: the counts match its pool’s stats()', async () => {
    const facade = createMysql2Pool({ uri: MYSQL_URL, lifeguard: SMALL })
    const promised = facade.promise()
    pools.push(promised)
    await measured(facade, lifeguardOf(facade), {
      query: () => promised.query('SELECT 1'),
      hold: async () => {
        const connection = await promised.getConnection()
        return { release: () => connection.release(), destroy: () => connection.destroy() }
      },
    })
  })

  it('the lifeguard/mysql2 facade’s queued caller is seen: pending, its wait, its timeout and its trace', async () => {
    const facade = createMysql2Pool({
      uri: MYSQL_URL,
      connectionLimit: 1,
      lifeguard: { max: 1, maxOverflow: 0, acquireTimeout: 300 },
    })
    pools.push(facade.promise())
    const pool = lifeguardOf(facade)
    const registry = new Registry()
    const stop = collectPoolMetrics(facade, { registry })
    const traces: Array<{ poolName: string; waitMs?: number; error?: unknown }> = []
    const starts = new Map<object, number>()
    const channel = diagnostics.tracingChannel('lifeguard:acquire')
    const handlers = {
      start: (context: object) => starts.set(context, performance.now()),
      end: () => {},
      asyncStart: () => {},
      asyncEnd: (context: object) => traces.push(context as (typeof traces)[number]),
      error: () => {},
    }
    channel.subscribe(handlers)
    try {
      const held = await new Promise<mysql2.PoolConnection>((resolve, reject) =>
        facade.getConnection((error, connection) => (error ? reject(error) : resolve(connection))),
      )
      const asked = performance.now()
      const waited = new Promise<Error>((resolve) =>
        facade.getConnection((error) => resolve(error!)),
      )
      await new Promise((resolve) => setTimeout(resolve, 50))
      // The waiting caller is in the pool's count, and so in the exported pending requests.
      expect(pool.stats().waiting).toBe(1)
      const during = parsePrometheus(await registry.metrics())
      const of = { pool_name: pool.stats().name }
      expect(sampleValue(during, 'db_client_connection_pending_requests', of)).toBe(1)
      expect((await waited).name).toBe('AcquireTimeoutError')
      expect(pool.stats().waiting).toBe(0)
      expect(pool.stats().timeouts).toBe(1)
      // Its trace started when it asked, and ended with the timeout.
      const failed = traces.find((t) => t.error !== undefined)
      expect(failed?.error).toBeInstanceOf(Error)
      const startedAt = starts.get(failed!)!
      expect(startedAt).toBeGreaterThanOrEqual(asked)
      expect(startedAt - asked).toBeLessThan(20)
      // A caller served after a wait in the facade's queue: the wait is counted from its call.
      const second = new Promise<mysql2.PoolConnection>((resolve, reject) =>
        facade.getConnection((error, connection) => (error ? reject(error) : resolve(connection))),
      )
      await new Promise((resolve) => setTimeout(resolve, 150))
      held.release()
      ;(await second).release()
      const after = parsePrometheus(await registry.metrics())
      expect(sampleValue(after, 'db_client_connection_timeouts_total', of)).toBe(1)
      expect(sampleValue(after, 'db_client_connection_wait_time_seconds_sum', of)).toBeGreaterThan(
        0.14,
      )
      const served = traces.find((t) => t.error === undefined && (t.waitMs ?? 0) > 140)
      expect(served?.poolName).toBe(pool.stats().name)
    } finally {
      channel.unsubscribe(handlers)
      stop()
    }
  })
})
