import { readFileSync } from 'node:fs'
import type { MeterProvider as ApiMeterProvider } from '@opentelemetry/api'
import {
  type DataPoint,
  type Histogram,
  MeterProvider,
  MetricReader,
} from '@opentelemetry/sdk-metrics'
import { AggregatorRegistry, Gauge, Registry, register } from 'prom-client'
import { describe, expect, it, vi } from 'vitest'
import { InvalidOptionError } from '../../src/core/errors.js'
import type { Lease } from '../../src/index.js'
import { instrumentPool } from '../../src/metrics/otel.js'
import { POOL_METRICS, POOL_TIME_BUCKETS } from '../../src/metrics/pool-metric-catalog.js'
import { BucketCounts } from '../../src/metrics/pool-time-histogram.js'
import { collectPoolMetrics } from '../../src/metrics/prometheus.js'
import { tick } from '../support/clock.js'
import type { FakeConnection } from '../support/fake-dialect.js'
import { useFakePools } from '../support/fake-pools.js'
import { otelHarness } from '../support/otel-reader.js'
import { parsePrometheus, sampleValue } from '../support/prometheus-text.js'
import { settle } from '../support/promises.js'

const fake = useFakePools()

/** A refused connect, as the drivers report it. */
class Refused extends Error {
  readonly code = 'ECONNREFUSED'
}

/** The pool `workload` runs on: one connection, no overflow, a 100 ms acquire timeout. */
function workloadPool(): ReturnType<typeof fake.make> {
  return fake.make({ max: 1, maxOverflow: 0, name: 'unit', acquireTimeout: 100, prePing: false })
}

/**
 * The known workload, on the fake clock: a connect of 3 ms; lease A waits for it (3 ms) and is
 * held 40 ms; lease B is lent at once and held 2 s, while a third caller times out after 100 ms;
 * lease C is lent at once and destroyed at once.
 */
async function workload(pool: ReturnType<typeof fake.make>): Promise<void> {
  fake.dialect.connectDelay = 3
  const a = settle(pool.acquire())
  await tick(3)
  await tick(40)
  a.value!.release()
  const b = settle(pool.acquire())
  await tick(0)
  const late = settle(pool.acquire())
  // The queue stamps deadlines within about a millisecond of the join (waiter-queue.ts).
  await tick(110)
  expect(late.error).toMatchObject({ code: 'LIFEGUARD_ACQUIRE_TIMEOUT' })
  await tick(1890)
  ;(b.value as Lease<FakeConnection>).release()
  const c = settle(pool.acquire())
  await tick(0)
  c.value!.destroy(new Error('done with it'))
  await tick(0)
}

/** The cumulative count at each bound, for `values` in seconds. */
function cumulative(values: number[]): number[] {
  return POOL_TIME_BUCKETS.map((bound) => values.filter((v) => v <= bound).length)
}

describe('lifeguard/prometheus on the fake dialect', () => {
  it('counts each wait, connect and hold in its exact bucket, and the counts match stats()', async () => {
    const registry = new Registry()
    const pool = workloadPool()
    const stop = collectPoolMetrics(pool, { registry })
    await workload(pool)
    const samples = parsePrometheus(await registry.metrics())
    const stats = pool.stats()
    const of = { pool_name: 'unit' }
    const buckets = (name: string) =>
      POOL_TIME_BUCKETS.map((le) =>
        sampleValue(samples, `${name}_bucket`, { ...of, le: String(le) }),
      )

    expect(buckets('db_client_connection_wait_time_seconds')).toEqual(cumulative([0.003, 0, 0]))
    expect(buckets('db_client_connection_use_time_seconds')).toEqual(cumulative([0.04, 2, 0]))
    expect(buckets('db_client_connection_create_time_seconds')).toEqual(cumulative([0.003]))
    expect(sampleValue(samples, 'db_client_connection_use_time_seconds_sum', of)).toBeCloseTo(
      2.04,
      9,
    )
    expect(sampleValue(samples, 'db_client_connection_wait_time_seconds_count', of)).toBe(
      stats.acquired,
    )
    expect(sampleValue(samples, 'db_client_connection_use_time_seconds_count', of)).toBe(
      stats.released,
    )
    expect(sampleValue(samples, 'db_client_connection_create_time_seconds_count', of)).toBe(
      stats.created,
    )
    expect([stats.acquired, stats.released, stats.created, stats.timeouts]).toEqual([3, 3, 1, 1])
    expect(sampleValue(samples, 'db_client_connection_timeouts_total', of)).toBe(1)
    expect(
      sampleValue(samples, 'lifeguard_connection_invalidations_total', {
        ...of,
        reason: 'destroyed',
      }),
    ).toBe(1)
    expect(
      sampleValue(samples, 'lifeguard_connection_invalidations_total', { ...of, reason: 'ping' }),
    ).toBe(0)
    expect(sampleValue(samples, 'db_client_connection_max', of)).toBe(1)
    expect(sampleValue(samples, 'db_client_connection_idle_max', of)).toBe(1)
    expect(sampleValue(samples, 'db_client_connection_idle_min', of)).toBe(0)
    expect(sampleValue(samples, 'db_client_connection_pending_requests', of)).toBe(0)
    expect(sampleValue(samples, 'db_client_connection_count', { ...of, state: 'idle' })).toBe(0)
    expect(sampleValue(samples, 'db_client_connection_count', { ...of, state: 'used' })).toBe(0)
    expect(sampleValue(samples, 'lifeguard_pool_unavailable', of)).toBe(0)
    expect(sampleValue(samples, 'lifeguard_connection_max_lifetime_seconds', of)).toBe(1800)
    expect((await registry.getMetricsAsJSON()).map((m) => m.type)).toContain('histogram')
    registry.resetMetrics()
    const reset = parsePrometheus(await registry.metrics())
    expect(sampleValue(reset, 'db_client_connection_wait_time_seconds_count', of)).toBe(0)
    stop()
  })

  it('reads the gauges at scrape time: used, idle and pending follow the pool with no timer', async () => {
    const registry = new Registry()
    const pool = fake.make({ max: 2, name: 'gauges', acquireTimeout: 10_000 })
    collectPoolMetrics(pool, { registry })
    const a = settle(pool.acquire())
    const b = settle(pool.acquire())
    const c = settle(pool.acquire())
    await tick(0)
    let samples = parsePrometheus(await registry.metrics())
    const of = { pool_name: 'gauges' }
    expect(sampleValue(samples, 'db_client_connection_count', { ...of, state: 'used' })).toBe(2)
    expect(sampleValue(samples, 'db_client_connection_pending_requests', of)).toBe(1)
    a.value!.release()
    await tick(0)
    b.value!.release()
    await tick(0)
    samples = parsePrometheus(await registry.metrics())
    expect(sampleValue(samples, 'db_client_connection_count', { ...of, state: 'used' })).toBe(1)
    expect(sampleValue(samples, 'db_client_connection_count', { ...of, state: 'idle' })).toBe(1)
    expect(sampleValue(samples, 'db_client_connection_pending_requests', of)).toBe(0)
    c.value!.release()
  })

  it('counts connect errors by code, leaks, and the fail-fast state', async () => {
    const registry = new Registry()
    const pool = fake.make({
      name: 'faults',
      acquireTimeout: 50,
      failFast: true,
      failFastAfter: 20,
      leakDetectionThreshold: 1000,
    })
    collectPoolMetrics(pool, { registry })
    fake.dialect.connectError = new Refused('connect ECONNREFUSED 127.0.0.1:1')
    const first = settle(pool.acquire())
    await tick(50)
    expect(first.error).toBeDefined()
    let samples = parsePrometheus(await registry.metrics())
    const of = { pool_name: 'faults' }
    const errors = sampleValue(samples, 'lifeguard_connection_connect_errors_total', {
      ...of,
      kind: 'ECONNREFUSED',
    })
    expect(errors).toBeGreaterThan(0)
    expect(errors).toBe(pool.stats().connectErrors)
    expect(sampleValue(samples, 'lifeguard_pool_unavailable', of)).toBe(1)
    await pool.acquire().catch(() => {})
    samples = parsePrometheus(await registry.metrics())
    expect(sampleValue(samples, 'lifeguard_pool_failed_fast_total', of)).toBe(
      pool.stats().failedFast,
    )
    expect(pool.stats().failedFast).toBeGreaterThan(0)

    fake.dialect.connectError = undefined
    await tick(5_000)
    const lease = await pool.acquire()
    await tick(1500)
    samples = parsePrometheus(await registry.metrics())
    expect(sampleValue(samples, 'lifeguard_pool_unavailable', of)).toBe(0)
    expect(sampleValue(samples, 'lifeguard_connection_leaks_total', of)).toBe(1)
    lease.release()
  })

  it('reports maxLifetime and idleTimeout as clamped below the server’s idle cut-off, and the cut-off', async () => {
    fake.dialect.server = { idleCutoffMs: 60_000, idleCutoffSetting: 'wait_timeout' }
    const registry = new Registry()
    const pool = fake.make({ name: 'clamped', min: 1 })
    collectPoolMetrics(pool, { registry })
    let samples = parsePrometheus(await registry.metrics())
    const of = { pool_name: 'clamped' }
    // Before the first connection read the server, the settings as given, and no cut-off.
    expect(sampleValue(samples, 'lifeguard_connection_max_lifetime_seconds', of)).toBe(1800)
    expect(samples.some((s) => s.name === 'lifeguard_server_idle_cutoff_seconds')).toBe(false)
    await tick(10)
    samples = parsePrometheus(await registry.metrics())
    expect(sampleValue(samples, 'lifeguard_server_idle_cutoff_seconds', of)).toBe(60)
    expect(sampleValue(samples, 'lifeguard_connection_max_lifetime_seconds', of)).toBe(54)
    expect(sampleValue(samples, 'lifeguard_connection_idle_timeout_seconds', of)).toBe(54)
  })

  it('keeps two pools on one registry apart, and leaving removes only that pool’s series', async () => {
    const registry = new Registry()
    const one = fake.make({ name: 'one' })
    const two = fake.make({ name: 'two' })
    const stopOne = collectPoolMetrics(one, { registry })
    const stopTwo = collectPoolMetrics(two, { registry })
    await one.use(() => {})
    await two.use(() => {})
    await two.use(() => {})
    let samples = parsePrometheus(await registry.metrics())
    const count = 'db_client_connection_wait_time_seconds_count'
    expect(sampleValue(samples, count, { pool_name: 'one' })).toBe(1)
    expect(sampleValue(samples, count, { pool_name: 'two' })).toBe(2)
    expect(() => collectPoolMetrics(fake.make({ name: 'one' }), { registry })).toThrow(
      /a pool named "one" already reports to this registry/,
    )
    stopOne()
    stopOne()
    samples = parsePrometheus(await registry.metrics())
    expect(samples.filter((s) => s.labels.pool_name === 'one')).toEqual([])
    expect(sampleValue(samples, count, { pool_name: 'two' })).toBe(2)
    // Detached: the first pool's work is heard by nobody.
    await one.use(() => {})
    samples = parsePrometheus(await registry.metrics())
    expect(samples.filter((s) => s.labels.pool_name === 'one')).toEqual([])
    stopTwo()
    expect((await registry.metrics()).trim()).toBe('')
    // The last one left unregistered the metrics: the names are free again.
    const again = collectPoolMetrics(one, { registry })
    await one.use(() => {})
    samples = parsePrometheus(await registry.metrics())
    expect(sampleValue(samples, count, { pool_name: 'one' })).toBe(1)
    again()
  })

  it('attach while a lease is held leaves _sum finite', async () => {
    const registry = new Registry()
    const otel = otelHarness()
    const pool = fake.make({ name: 'late', max: 1, maxOverflow: 0, prePing: false })
    const held = await pool.acquire()
    // A caller waits too: neither its wait nor the lease's hold was timed before the attach.
    const waiting = settle(pool.acquire())
    await tick(0)
    const stop = collectPoolMetrics(pool, { registry })
    const stopOtel = instrumentPool(pool, { meterProvider: otel.meterProvider })
    held.release()
    await tick(0)
    waiting.value!.release()
    await tick(0)
    await pool.use(() => {})
    const samples = parsePrometheus(await registry.metrics())
    const of = { pool_name: 'late' }
    // Only what was timed is counted, in both exporters alike: not the first lease's hold nor
    // the waiter's wait, both begun before the attach.
    const expected = { wait_time: 1, use_time: 2 }
    const data = await otel.collect()
    for (const [metric, count] of Object.entries(expected)) {
      const name = `db_client_connection_${metric}_seconds`
      expect(Number.isFinite(sampleValue(samples, `${name}_sum`, of))).toBe(true)
      expect(sampleValue(samples, `${name}_count`, of)).toBe(count)
      const point = data.get(`db.client.connection.${metric}`)!.points[0]!
      expect((point.value as Histogram).count).toBe(count)
    }
    stop()
    stopOtel()
    await otel.shutdown()
  })

  it('registry.clear() no longer kills later attaches, and stop() leaves a user’s metric of the same name', async () => {
    const registry = new Registry()
    const pool = fake.make({ name: 'cleared' })
    const stopFirst = collectPoolMetrics(pool, { registry })
    registry.clear()
    const other = fake.make({ name: 'after' })
    const stop = collectPoolMetrics(other, { registry })
    await other.use(() => {})
    let samples = parsePrometheus(await registry.metrics())
    expect(
      sampleValue(samples, 'db_client_connection_wait_time_seconds_count', { pool_name: 'after' }),
    ).toBe(1)
    stop()
    stopFirst()
    expect(registry.getMetricsAsArray()).toEqual([])
    // A stop after a clear removes only what is still its own, not the user's metric of the name.
    const third = collectPoolMetrics(pool, { registry })
    registry.clear()
    const mine = new Gauge({ name: 'db_client_connection_max', help: 'mine', registers: [] })
    registry.registerMetric(mine)
    third()
    expect(registry.getSingleMetric('db_client_connection_max')).toBe(mine)
    samples = parsePrometheus(await registry.metrics())
    expect(samples.filter((s) => s.labels.pool_name !== undefined)).toEqual([])
  })

  it('detach unsubscribes: what the pool does afterwards reaches neither exporter', async () => {
    const pool = fake.make({ name: 'detach' })
    const registry = new Registry()
    const otel = otelHarness()
    const observe = vi.spyOn(BucketCounts.prototype, 'observe')
    const stop = collectPoolMetrics(pool, { registry })
    const stopOtel = instrumentPool(pool, { meterProvider: otel.meterProvider })
    await pool.use(() => {})
    await tick(0)
    // A connect, a wait and a hold.
    expect(observe).toHaveBeenCalledTimes(3)
    const waits = async () =>
      (
        (await otel.collect()).get('db.client.connection.wait_time')!
          .points[0] as DataPoint<Histogram>
      ).value.count
    expect(await waits()).toBe(1)
    stop()
    stopOtel()
    await pool.use(() => {})
    await pool.use(() => {})
    await tick(0)
    expect(observe).toHaveBeenCalledTimes(3)
    expect(await waits()).toBe(1)
    observe.mockRestore()
    await otel.shutdown()
  })

  it('an exporter that throws while recording (OpenTelemetry over a meter that throws) is warned about, and the pool goes on', async () => {
    const failing = () => {
      throw new Error('meter broke')
    }
    const meter = {
      createHistogram: () => ({ record: failing }),
      createCounter: () => ({ add: failing }),
      createObservableCounter: () => ({}),
      createObservableGauge: () => ({}),
      createObservableUpDownCounter: () => ({}),
      addBatchObservableCallback: () => {},
      removeBatchObservableCallback: () => {},
    }
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
    const pool = fake.make({ name: 'throwing' })
    const stop = instrumentPool(pool, {
      meterProvider: { getMeter: () => meter } as unknown as ApiMeterProvider,
    })
    await pool.use(() => {})
    await pool.use(() => {})
    const lease = await pool.acquire()
    lease.destroy(new Error('done'))
    await tick(0)
    expect(pool.stats()).toMatchObject({ acquired: 3, released: 3, leased: 0 })
    const codes = warn.mock.calls.map(([message, options]) => [
      String(message).split(':')[0],
      (options as { code?: string }).code,
    ])
    expect(codes.length).toBeGreaterThanOrEqual(7)
    expect(new Set(codes.map(String))).toEqual(
      new Set(['a lifeguard metrics exporter threw,LIFEGUARD_LISTENER_THREW']),
    )
    stop()
    warn.mockRestore()
  })

  it('puts the prefix before every name, and rejects bad options naming them', () => {
    const registry = new Registry()
    const pool = fake.make({ name: 'prefixed' })
    const stop = collectPoolMetrics(pool, { registry, prefix: 'app_' })
    expect(registry.getSingleMetric('app_db_client_connection_count')).toBeDefined()
    expect(registry.getSingleMetric('db_client_connection_count')).toBeUndefined()
    stop()
    expect(() => collectPoolMetrics(pool, { registry, prefix: '1x' })).toThrow(
      /Invalid option prefix: "1x"/,
    )
    expect(() => collectPoolMetrics(pool, { registry, regsitry: registry } as never)).toThrow(
      /Unknown option regsitry passed to collectPoolMetrics; did you mean registry\?/,
    )
    expect(() => collectPoolMetrics({}, { registry })).toThrow(
      /Invalid argument pool of collectPoolMetrics\(\): an object; expected a lifeguard Pool or a facade/,
    )
    expect(() => instrumentPool(pool, { meterProvider: {} as never })).toThrow(
      /Invalid option meterProvider: an object; expected an OpenTelemetry MeterProvider/,
    )
    expect(registry.getMetricsAsArray()).toEqual([])
  })

  it('null registry and meterProvider are refused, not taken for the global ones', () => {
    const pool = fake.make({ name: 'nulls' })
    expect(() => collectPoolMetrics(pool, { registry: null as never })).toThrow(
      /Invalid option registry: null/,
    )
    expect(() => instrumentPool(pool, { meterProvider: null as never })).toThrow(
      /Invalid option meterProvider: null/,
    )
    expect(register.getSingleMetric('db_client_connection_count')).toBeUndefined()
  })

  it('a bad pool argument is refused at attach, naming it, with a hint for a driver’s own pool', async () => {
    const registry = new Registry()
    // Has stats/on/off but not what every scrape reads (options): refused now, not at each scrape.
    const duck = { stats: () => ({ name: 'duck' }), on() {}, off() {} }
    const error = (() => {
      try {
        collectPoolMetrics(duck, { registry })
      } catch (thrown) {
        return thrown
      }
    })()
    expect(error).toBeInstanceOf(InvalidOptionError)
    expect(error).toMatchObject({ option: 'pool' })
    expect(registry.getMetricsAsArray()).toEqual([])
    const { default: pg } = await import('pg')
    const driverPool = new pg.Pool()
    expect(() =>
      instrumentPool(driverPool, { meterProvider: otelHarness().meterProvider }),
    ).toThrow(
      /Invalid argument pool of instrumentPool\(\).*pg.s own Pool: make it with the Pool of lifeguard\/pg/,
    )
    await driverPool.end()
  })

  it('attaching the same pool twice says so, and another pool of the same name is told to rename', () => {
    const registry = new Registry()
    const pool = fake.make({ name: 'twice' })
    const stop = collectPoolMetrics(pool, { registry })
    expect(() => collectPoolMetrics(pool, { registry })).toThrow(
      /pool "twice" already reports to this registry; call the function the first collectPoolMetrics\(\) returned/,
    )
    expect(() => collectPoolMetrics(fake.make({ name: 'twice' }), { registry })).toThrow(
      /a pool named "twice" already reports to this registry; give each pool its own name/,
    )
    stop()
  })

  it('cluster aggregation takes the max of the settings and the fail-fast flag, and sums the counts', async () => {
    const workers = [new Registry(), new Registry()]
    const stops = workers.map((registry) =>
      collectPoolMetrics(
        fake.make({ name: 'worker', max: 3, maxLifetime: 60_000, idleTimeout: 30_000 }),
        { registry },
      ),
    )
    const merged = AggregatorRegistry.aggregate(
      await Promise.all(workers.map((r) => r.getMetricsAsJSON())),
    )
    const samples = parsePrometheus(await merged.metrics())
    const of = { pool_name: 'worker' }
    expect(sampleValue(samples, 'lifeguard_connection_max_lifetime_seconds', of)).toBe(60)
    expect(sampleValue(samples, 'lifeguard_connection_idle_timeout_seconds', of)).toBe(30)
    expect(sampleValue(samples, 'lifeguard_pool_unavailable', of)).toBe(0)
    expect(sampleValue(samples, 'db_client_connection_max', of)).toBe(6)
    for (const stop of stops) stop()
  })
})

describe('lifeguard/otel on the fake dialect, with the real SDK', () => {
  it('reports the semantic conventions’ names, units and exact buckets; counts match stats()', async () => {
    const otel = otelHarness()
    const pool = workloadPool()
    const stop = instrumentPool(pool, { meterProvider: otel.meterProvider })
    await workload(pool)
    const data = await otel.collect()
    const stats = pool.stats()
    const name = { 'db.client.connection.pool.name': 'unit' }
    const histogram = (metric: string) => {
      const found = data.get(metric)!
      expect(found.unit).toBe('s')
      expect(found.points).toHaveLength(1)
      expect(found.points[0]!.attributes).toEqual(name)
      return found.points[0]!.value as Histogram
    }
    const perBucket = (values: number[]) => {
      const c = cumulative(values)
      return [...c.map((v, i) => v - (c[i - 1] ?? 0)), values.length - c[c.length - 1]!]
    }
    const wait = histogram('db.client.connection.wait_time')
    expect(wait.buckets.boundaries).toEqual(POOL_TIME_BUCKETS)
    expect(wait.buckets.counts).toEqual(perBucket([0.003, 0, 0]))
    expect(wait.count).toBe(stats.acquired)
    const use = histogram('db.client.connection.use_time')
    expect(use.buckets.counts).toEqual(perBucket([0.04, 2, 0]))
    expect(use.count).toBe(stats.released)
    expect(use.sum).toBeCloseTo(2.04, 9)
    expect(histogram('db.client.connection.create_time').count).toBe(stats.created)

    const point = (metric: string, attributes: Record<string, string> = {}) =>
      data
        .get(metric)
        ?.points.find((p) =>
          Object.entries({ ...name, ...attributes }).every(([k, v]) => p.attributes[k] === v),
        )?.value
    expect(point('db.client.connection.timeouts')).toBe(1)
    expect(data.get('db.client.connection.timeouts')!.unit).toBe('{timeout}')
    expect(point('db.client.connection.count', { 'db.client.connection.state': 'idle' })).toBe(0)
    expect(point('db.client.connection.count', { 'db.client.connection.state': 'used' })).toBe(0)
    expect(data.get('db.client.connection.count')!.unit).toBe('{connection}')
    expect(point('db.client.connection.max')).toBe(1)
    expect(point('db.client.connection.idle.max')).toBe(1)
    expect(point('db.client.connection.idle.min')).toBe(0)
    expect(point('db.client.connection.pending_requests')).toBe(0)
    expect(
      point('lifeguard.connection.invalidations', { 'lifeguard.invalidate.reason': 'destroyed' }),
    ).toBe(1)
    expect(point('lifeguard.pool.unavailable')).toBe(0)
    // Every metric of the catalog that this workload produces is there under its OTel name.
    for (const spec of Object.values(POOL_METRICS)) {
      if (spec.otel.startsWith('db.')) expect(data.has(spec.otel), spec.otel).toBe(true)
    }

    stop()
    const used = pool.use(() => {})
    await tick(5)
    await used
    const after = await otel.collect()
    // Detached: no new waits recorded, and the observable callback is gone.
    expect((after.get('db.client.connection.wait_time')!.points[0]!.value as Histogram).count).toBe(
      3,
    )
    // The SDK keeps an asynchronous instrument's last cumulative point; with the callback gone it
    // is not updated, though the pool now holds an idle connection.
    expect(pool.stats().idle).toBe(1)
    const idle = after
      .get('db.client.connection.count')
      ?.points.find((p) => p.attributes['db.client.connection.state'] === 'idle')
    expect(idle?.value ?? 0).toBe(0)
    await otel.shutdown()
  })

  it('reports two pools on one meter provider, each under its own pool name', async () => {
    const otel = otelHarness()
    const one = fake.make({ name: 'one', max: 2 })
    const two = fake.make({ name: 'two', max: 3 })
    instrumentPool(one, { meterProvider: otel.meterProvider })
    instrumentPool(two, { meterProvider: otel.meterProvider })
    await one.use(() => {})
    await two.use(() => {})
    await two.use(() => {})
    const data = await otel.collect()
    const byPool = (metric: string) =>
      Object.fromEntries(
        data
          .get(metric)!
          .points.map((p) => [
            p.attributes['db.client.connection.pool.name'],
            typeof p.value === 'number' ? p.value : (p.value as Histogram).count,
          ]),
      )
    expect(byPool('db.client.connection.max')).toEqual({ one: 2, two: 3 })
    expect(byPool('db.client.connection.wait_time')).toEqual({ one: 1, two: 2 })
    await otel.shutdown()
  })

  it('refuses a second pool of the same name on one meter provider instead of merging them', async () => {
    const otel = otelHarness()
    const pool = fake.make({ name: 'same' })
    const stop = instrumentPool(pool, { meterProvider: otel.meterProvider })
    expect(() =>
      instrumentPool(fake.make({ name: 'same' }), { meterProvider: otel.meterProvider }),
    ).toThrow(
      /a pool named "same" already reports to this meter provider; give each pool its own name/,
    )
    expect(() => instrumentPool(pool, { meterProvider: otel.meterProvider })).toThrow(
      /pool "same" already reports to this meter provider; call the function the first instrumentPool\(\) returned/,
    )
    stop()
    // Stopped: the name is free again.
    instrumentPool(fake.make({ name: 'same' }), { meterProvider: otel.meterProvider })()
    await otel.shutdown()
  })

  it('names its meter with lifeguard’s version and the semantic conventions’ schema URL', async () => {
    const reader = new (class extends MetricReader {
      protected async onForceFlush(): Promise<void> {}
      protected async onShutdown(): Promise<void> {}
    })()
    const meterProvider = new MeterProvider({ readers: [reader] })
    const stop = instrumentPool(fake.make({ name: 'scoped' }), { meterProvider })
    const { resourceMetrics } = await reader.collect()
    const scope = resourceMetrics.scopeMetrics[0]!.scope
    const { version } = JSON.parse(
      readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
    )
    expect(scope).toEqual({
      name: 'lifeguard',
      version,
      schemaUrl: 'https://opentelemetry.io/schemas/1.44.0',
    })
    stop()
    await meterProvider.shutdown()
  })
})
