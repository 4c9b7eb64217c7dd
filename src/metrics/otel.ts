import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  type Attributes,
  type BatchObservableCallback,
  type Counter,
  type Histogram,
  type Meter,
  type MeterProvider,
  metrics,
  type Observable,
} from '@opentelemetry/api'
import { InvalidOptionError } from '../core/errors.js'
import type { Pool } from '../core/pool.js'
import { describe } from '../core/pool-options.js'
import { meteredPool } from './metered-pool.js'
import {
  POOL_METRICS,
  POOL_TIME_BUCKETS,
  type PoolMetricKey,
  type PoolMetricSpec,
} from './pool-metric-catalog.js'
import { type CountedMetric, PoolMetricSource, type TimedMetric } from './pool-metric-source.js'

/** The options of {@link instrumentPool}. */
export interface InstrumentPoolOptions {
  /**
   * The meter provider to report to.
   * @defaultValue the global one (`metrics.getMeterProvider()` of `@opentelemetry/api`)
   */
  meterProvider?: MeterProvider
}

/** The instrumentation scope the meters are named after. */
const SCOPE = 'lifeguard'
/** The semantic conventions the metrics follow (docs/observability.md names the same version). */
const SCHEMA_URL = 'https://opentelemetry.io/schemas/1.44.0'

/**
 * The pool names reporting to each meter provider: two pools of one name would merge into one
 * series there, so the second is refused, as `lifeguard/prometheus` refuses it in a registry.
 */
const names = new WeakMap<MeterProvider, Map<string, Pool<unknown>>>()

let scopeVersion: string | undefined
/** lifeguard's version, for the instrumentation scope: read once from its package.json. */
function packageVersion(): string {
  if (scopeVersion !== undefined) return scopeVersion
  scopeVersion = 'unknown'
  const here = typeof __filename === 'string' ? __filename : fileURLToPath(import.meta.url)
  // dist/otel.js and src/metrics/otel.ts sit one and two levels below package.json.
  for (const up of ['..', join('..', '..')]) {
    try {
      const pkg = JSON.parse(readFileSync(join(dirname(here), up, 'package.json'), 'utf8'))
      if (pkg.name === 'lifeguard') {
        scopeVersion = String(pkg.version)
        break
      }
    } catch {
      // try the next level
    }
  }
  return scopeVersion
}
/** The attribute naming the pool on every metric (semantic conventions). */
const POOL_NAME = 'db.client.connection.pool.name'

/** The synchronous instruments that the pool's events feed. */
interface EventInstruments {
  readonly histograms: Record<TimedMetric, Histogram>
  readonly counters: Record<CountedMetric, Counter>
}

function histogram(meter: Meter, spec: PoolMetricSpec): Histogram {
  return meter.createHistogram(spec.otel, {
    unit: spec.unit,
    description: spec.description,
    advice: { explicitBucketBoundaries: [...POOL_TIME_BUCKETS] },
  })
}

function counter(meter: Meter, spec: PoolMetricSpec): Counter {
  return meter.createCounter(spec.otel, { unit: spec.unit, description: spec.description })
}

/** The asynchronous instrument of a metric read at collect time. */
function observable(meter: Meter, spec: PoolMetricSpec): Observable {
  const options = { unit: spec.unit, description: spec.description }
  if (spec.kind === 'total') return meter.createObservableCounter(spec.otel, options)
  if (spec.kind === 'gauge') return meter.createObservableGauge(spec.otel, options)
  return meter.createObservableUpDownCounter(spec.otel, options)
}

/**
 * Reports a pool's metrics to OpenTelemetry: the semantic conventions' connection-pool metrics
 * (`db.client.connection.count`, `.idle.max`, `.idle.min`, `.max`, `.pending_requests`,
 * `.timeouts`, and the `.create_time`, `.wait_time` and `.use_time` histograms in seconds) and
 * lifeguard's own (`lifeguard.*`), each with `db.client.connection.pool.name`, the pool's name.
 * The histograms and event counts come from the pool's events; the rest is read from
 * `pool.stats()` when the meter provider collects, so there is no timer. Takes a lifeguard
 * `Pool`, or a `lifeguard/pg` or `lifeguard/mysql2` facade. Returns a function that removes the
 * listeners and the collect callback (idempotent). See docs/observability.md.
 *
 * @example
 * ```ts
 * import { instrumentPool } from 'lifeguard/otel'
 * const pool = createPool({ url: process.env.DATABASE_URL, name: 'orders' })
 * const stop = instrumentPool(pool, { meterProvider })
 * // … later: stop()
 * ```
 */
export function instrumentPool(
  pool: Pool<unknown> | object,
  options: InstrumentPoolOptions = {},
): () => void {
  const target = meteredPool(pool, options, ['meterProvider'], 'instrumentPool')
  // `null` is refused, not taken for the global provider.
  const provider =
    options.meterProvider === undefined ? metrics.getMeterProvider() : options.meterProvider
  if (typeof (provider as Partial<MeterProvider> | null)?.getMeter !== 'function') {
    throw new InvalidOptionError(
      'meterProvider',
      `Invalid option meterProvider: ${describe(options.meterProvider)}; expected an OpenTelemetry MeterProvider (an object with getMeter()) or undefined`,
    )
  }
  const name = target.stats().name
  let taken = names.get(provider)
  if (taken === undefined) {
    taken = new Map()
    names.set(provider, taken)
  }
  const holder = taken.get(name)
  if (holder !== undefined) {
    throw new InvalidOptionError(
      'name',
      holder === target
        ? `instrumentPool: pool ${JSON.stringify(name)} already reports to this meter provider; call the function the first instrumentPool() returned before attaching it again`
        : `instrumentPool: a pool named ${JSON.stringify(name)} already reports to this meter provider; give each pool its own name (the name option)`,
    )
  }
  const meter = provider.getMeter(SCOPE, packageVersion(), { schemaUrl: SCHEMA_URL })
  const instruments: EventInstruments = {
    histograms: {
      createTime: histogram(meter, POOL_METRICS.createTime),
      waitTime: histogram(meter, POOL_METRICS.waitTime),
      useTime: histogram(meter, POOL_METRICS.useTime),
    },
    counters: {
      connectErrors: counter(meter, POOL_METRICS.connectErrors),
      invalidations: counter(meter, POOL_METRICS.invalidations),
      leaks: counter(meter, POOL_METRICS.leaks),
    },
  }
  const observables = new Map<PoolMetricKey, Observable>()
  for (const [key, spec] of Object.entries(POOL_METRICS) as [PoolMetricKey, PoolMetricSpec][]) {
    if (spec.kind !== 'counter' && spec.kind !== 'histogram') {
      observables.set(key, observable(meter, spec))
    }
  }

  const attributes: Attributes = { [POOL_NAME]: name }
  const withAttribute = (key: PoolMetricKey, value: string | undefined): Attributes => {
    const extra = (POOL_METRICS[key] as PoolMetricSpec).attribute
    return value === undefined || extra === undefined
      ? attributes
      : { ...attributes, [extra.otel]: value }
  }
  const source = new PoolMetricSource(target, {
    record: (metric, seconds) => instruments.histograms[metric].record(seconds, attributes),
    count: (metric, value) => instruments.counters[metric].add(1, withAttribute(metric, value)),
  })

  const callback: BatchObservableCallback = (result) => {
    for (const reading of source.read()) {
      const instrument = observables.get(reading.metric)
      if (instrument !== undefined) {
        result.observe(instrument, reading.value, withAttribute(reading.metric, reading.attribute))
      }
    }
  }
  const list = [...observables.values()]
  meter.addBatchObservableCallback(callback, list)
  taken.set(name, target)
  let removed = false
  return () => {
    if (removed) return
    removed = true
    if (taken.get(name) === target) taken.delete(name)
    source.detach()
    meter.removeBatchObservableCallback(callback, list)
  }
}
