import { Histogram, type Registry } from 'prom-client'
import { POOL_TIME_BUCKETS } from './pool-metric-catalog.js'

/** One pool's series of a {@link PoolTimeHistogram}: a count per bucket, the sum and the count. */
export class BucketCounts {
  /** Observations per bucket (not cumulative); the last past the last bound. */
  readonly counts = new Float64Array(POOL_TIME_BUCKETS.length + 1)
  sum = 0
  count = 0

  /** Back to no observations. */
  reset(): void {
    this.counts.fill(0)
    this.sum = 0
    this.count = 0
  }

  /** Adds one observation of `seconds`. */
  observe(seconds: number): void {
    let i = 0
    while (i < POOL_TIME_BUCKETS.length && seconds > POOL_TIME_BUCKETS[i]!) i++
    this.counts[i]!++
    this.sum += seconds
    this.count++
  }
}

type Value = {
  value: number
  labels: Record<string, string | number>
  metricName: string
}

/**
 * A prom-client `Histogram` of the pool time buckets, one series per pool (label `pool_name`),
 * whose counts are kept in plain arrays and handed to the registry at scrape time.
 * prom-client's own `observe()` keys each bucket by its bound turned into a string and hashes the
 * labels, about 300 ns an observation: as much as one acquire and release of the pool itself.
 * `get()` (and the registry's `getForPromString()`) and `reset()` are overridden, so the
 * registry, its text format, `getMetricsAsJSON()` and `resetMetrics()` see an ordinary histogram;
 * prom-client's own `observe()`, `zero()` and `labels()` would write where nothing reads.
 */
export class PoolTimeHistogram extends Histogram<string> {
  readonly #series = new Map<string, BucketCounts>()
  readonly #name: string
  readonly #help: string

  /** Registers the histogram `name` in `registry`, with the pool time buckets and a `pool_name` label. */
  constructor(name: string, help: string, registry: Registry) {
    super({
      name,
      help,
      labelNames: ['pool_name'],
      buckets: [...POOL_TIME_BUCKETS],
      registers: [registry],
    })
    this.#name = name
    this.#help = help
  }

  /** Starts the series of `pool`, at zero. */
  add(pool: string): BucketCounts {
    const counts = new BucketCounts()
    this.#series.set(pool, counts)
    return counts
  }

  /** Removes the series of `pool`. */
  delete(pool: string): void {
    this.#series.delete(pool)
  }

  /** Zeroes every pool's series (`registry.resetMetrics()` calls it). */
  override reset(): void {
    // prom-client's constructor calls reset() before this class's fields exist.
    if (!(#series in this)) return
    for (const series of this.#series.values()) series.reset()
  }

  override async get(): ReturnType<Histogram<string>['get']> {
    return this.getForPromString()
  }

  /** What the registry formats: the same as `get()`. */
  async getForPromString(): ReturnType<Histogram<string>['get']> {
    const values: Value[] = []
    for (const [pool, series] of this.#series) {
      let cumulative = 0
      POOL_TIME_BUCKETS.forEach((bound, i) => {
        cumulative += series.counts[i]!
        values.push({
          value: cumulative,
          labels: { pool_name: pool, le: bound },
          metricName: `${this.#name}_bucket`,
        })
      })
      const labels = { pool_name: pool }
      values.push(
        {
          value: series.count,
          labels: { ...labels, le: '+Inf' },
          metricName: `${this.#name}_bucket`,
        },
        { value: series.sum, labels, metricName: `${this.#name}_sum` },
        { value: series.count, labels, metricName: `${this.#name}_count` },
      )
    }
    // The shape prom-client's own histograms give (its typings also list a `collect` they lack).
    const metric = {
      name: this.#name,
      help: this.#help,
      type: 'histogram',
      values,
      aggregator: 'sum',
    }
    return metric as unknown as Awaited<ReturnType<Histogram<string>['get']>>
  }
}
