import type { DataPoint, Histogram } from '@opentelemetry/sdk-metrics'
import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { instrumentPool } from '../../src/metrics/otel.js'
import { POOL_TIME_BUCKETS } from '../../src/metrics/pool-metric-catalog.js'
import { collectPoolMetrics } from '../../src/metrics/prometheus.js'
import { tick } from '../support/clock.js'
import { useFakePools } from '../support/fake-pools.js'
import { otelHarness } from '../support/otel-reader.js'
import { parsePrometheus, sampleValue } from '../support/prometheus-text.js'
import { settle } from '../support/promises.js'

const fake = useFakePools()

/** What one histogram must hold: its values in seconds, in the order they were recorded. */
function expected(values: number[]) {
  return {
    count: values.length,
    sum: values.reduce((sum, v) => sum + v, 0),
    buckets: POOL_TIME_BUCKETS.map((bound) => values.filter((v) => v <= bound).length),
  }
}

/**
 * On the fake clock, with `resetMs` of reset on each release (0: no reset): a connect of 4 ms
 * that lease A waits for; at t = 10 B starts waiting; at t = 25 A is released and, once reset,
 * handed to B; B is released 35 ms after it was lent; at t = 70 C is lent at once (the pool is
 * idle), and released at t = 75. The durations the pool's events give, and the exporters'
 * histograms, must be exactly these times: a wait's end is taken from the lease's start, so
 * neither may be taken from a clock read made at another moment (such as the release before an
 * asynchronous reset).
 */
async function handOff(resetMs: number) {
  fake.dialect.connectDelay = 4
  fake.dialect.resetDelay = resetMs
  fake.dialect.syncReset = resetMs === 0
  const pool = fake.make({
    max: 1,
    maxOverflow: 0,
    name: 'timing',
    prePing: false,
    resetOnRelease: resetMs > 0 ? 'rollback' : false,
  })
  const registry = new Registry()
  const otel = otelHarness()
  const stop = collectPoolMetrics(pool, { registry })
  const stopOtel = instrumentPool(pool, { meterProvider: otel.meterProvider })
  const waits: number[] = []
  const holds: number[] = []
  pool.on('acquire', (e) => waits.push(e.waitMs))
  pool.on('release', (e) => holds.push(e.heldMs))

  let now = 0
  const until = async (t: number) => {
    await tick(t - now)
    now = t
  }
  const a = settle(pool.acquire())
  await until(4)
  await until(10)
  const b = settle(pool.acquire())
  await until(25)
  a.value!.release()
  await until(25 + resetMs)
  expect(b.value).toBeDefined()
  await until(60 + resetMs)
  b.value!.release()
  await until(70)
  const c = settle(pool.acquire())
  await tick(0)
  await until(75)
  c.value!.release()
  await until(75 + resetMs)

  const parsed = parsePrometheus(await registry.metrics())
  const data = await otel.collect()
  stop()
  stopOtel()
  await otel.shutdown()
  const read = (prom: string, otelName: string) => {
    const name = { pool_name: 'timing' }
    const point = data.get(otelName)!.points[0] as DataPoint<Histogram>
    return {
      prometheus: {
        count: sampleValue(parsed, `${prom}_count`, name),
        sum: sampleValue(parsed, `${prom}_sum`, name),
        buckets: POOL_TIME_BUCKETS.map((le) =>
          sampleValue(parsed, `${prom}_bucket`, { ...name, le: String(le) }),
        ),
      },
      otel: {
        count: point.value.count,
        sum: point.value.sum,
        // OpenTelemetry's buckets are per bucket, not cumulative.
        buckets: point.value.buckets.counts
          .slice(0, POOL_TIME_BUCKETS.length)
          .map((_, i, counts) => counts.slice(0, i + 1).reduce((s, n) => s + n, 0)),
      },
    }
  }
  return {
    waits,
    holds,
    wait: read('db_client_connection_wait_time_seconds', 'db.client.connection.wait_time'),
    use: read('db_client_connection_use_time_seconds', 'db.client.connection.use_time'),
    create: read('db_client_connection_create_time_seconds', 'db.client.connection.create_time'),
  }
}

describe('the wait and hold times the metrics record, on the fake clock', () => {
  it('a hand-off at t ends the old lease at t − leasedAt and the wait at t − enqueuedAt', async () => {
    const got = await handOff(0)
    // A waits for the connect (4 ms), B from 10 to 25, C not at all.
    expect(got.waits).toEqual([4, 15, 0])
    // A from 4 to 25, B from 25 to 60, C from 70 to 75.
    expect(got.holds).toEqual([21, 35, 5])
    const wait = expected([0.004, 0.015, 0])
    const use = expected([0.021, 0.035, 0.005])
    const create = expected([0.004])
    for (const exporter of ['prometheus', 'otel'] as const) {
      expect(got.wait[exporter]).toEqual(wait)
      expect(got.use[exporter]).toEqual(use)
      expect(got.create[exporter]).toEqual(create)
    }
  })

  it('a lease handed on after a reset starts when the reset ends, not at the release', async () => {
    const got = await handOff(3)
    // B waits from 10 until A's reset ends at 28.
    expect(got.waits).toEqual([4, 18, 0])
    // B is held from 28 to 63.
    expect(got.holds).toEqual([21, 35, 5])
    for (const exporter of ['prometheus', 'otel'] as const) {
      expect(got.wait[exporter]).toEqual(expected([0.004, 0.018, 0]))
      expect(got.use[exporter]).toEqual(expected([0.021, 0.035, 0.005]))
    }
  })
})
