import { Counter, Gauge, type Registry } from 'prom-client'
import { InvalidOptionError } from '../core/errors.js'
import type { Pool } from '../core/pool.js'
import { POOL_METRICS, type PoolMetricKey, type PoolMetricSpec } from './pool-metric-catalog.js'
import {
  type CountedMetric,
  INVALIDATE_REASONS,
  PoolMetricSource,
  type TimedMetric,
} from './pool-metric-source.js'
import { type BucketCounts, PoolTimeHistogram } from './pool-time-histogram.js'

/** The label naming the pool on every metric. */
const POOL_LABEL = 'pool_name'

type Labels = Record<string, string>

/**
 * One set of the pool metrics in one Prometheus registry, under one prefix, shared by every pool
 * that reports there: prom-client refuses a second metric of the same name, so pools join the
 * set, each under its own `pool_name`, and leave it. The gauges and lifetime counts are read from
 * the members in each metric's `collect()`, at scrape time; the histograms and event counts are
 * fed by each member's events.
 */
export class PrometheusPoolMetrics {
  readonly #registry: Registry
  readonly #members = new Map<string, PoolMetricSource>()
  /** The pool of each member, to tell a second attach of one pool from another pool's name. */
  readonly #pools = new Map<string, Pool<unknown>>()
  /**
   * The metrics registered, under their full names, to unregister them when the last pool leaves:
   * only those the registry still holds as ours (after `registry.clear()` the name may be a
   * user's metric).
   */
  readonly #registered: Array<{ name: string; metric: object }> = []
  readonly #histograms = {} as Record<TimedMetric, PoolTimeHistogram>
  readonly #counters = {} as Record<CountedMetric, Counter>

  /** Registers every metric in `registry`, each name after `prefix`; registers none if one clashes. */
  constructor(registry: Registry, prefix: string) {
    this.#registry = registry
    try {
      for (const [key, spec] of Object.entries(POOL_METRICS) as [PoolMetricKey, PoolMetricSpec][]) {
        this.#create(key, spec, prefix)
      }
    } catch (error) {
      this.unregister()
      throw error
    }
  }

  /**
   * Whether the registry still holds every metric of this set: `registry.clear()` or
   * `removeSingleMetric()` drops them, and then this set reports nothing there.
   */
  get intact(): boolean {
    return this.#registered.every(
      ({ name, metric }) => this.#registry.getSingleMetric(name) === metric,
    )
  }

  /** Whether no pool reports here any more. */
  get empty(): boolean {
    return this.#members.size === 0
  }

  /** Adds `pool`'s series; throws if a pool of the same name already reports here. */
  join(pool: Pool<unknown>): PoolMetricSource {
    const name = pool.stats().name
    if (this.#members.has(name)) {
      throw new InvalidOptionError(
        'name',
        this.#pools.get(name) === pool
          ? `collectPoolMetrics: pool ${JSON.stringify(name)} already reports to this registry; call the function the first collectPoolMetrics() returned before attaching it again`
          : `collectPoolMetrics: a pool named ${JSON.stringify(name)} already reports to this registry; give each pool its own name (the name option)`,
      )
    }
    const label = { [POOL_LABEL]: name }
    const times: Record<TimedMetric, BucketCounts> = {
      createTime: this.#histograms.createTime.add(name),
      waitTime: this.#histograms.waitTime.add(name),
      useTime: this.#histograms.useTime.add(name),
    }
    const source = new PoolMetricSource(pool, {
      record: (metric, seconds) => times[metric].observe(seconds),
      count: (metric, value) => this.#counters[metric].inc(this.#labels(metric, name, value)),
    })
    this.#members.set(name, source)
    this.#pools.set(name, pool)
    this.#counters.leaks.inc(label, 0)
    for (const reason of INVALIDATE_REASONS) {
      this.#counters.invalidations.inc(this.#labels('invalidations', name, reason), 0)
    }
    return source
  }

  /** Removes the series of the pool named `name`, and its listeners. */
  leave(name: string): void {
    const source = this.#members.get(name)
    if (source === undefined) return
    source.detach()
    this.#members.delete(name)
    this.#pools.delete(name)
    const label = { [POOL_LABEL]: name }
    for (const histogram of Object.values(this.#histograms)) histogram.delete(name)
    this.#counters.leaks.remove(label)
    for (const reason of INVALIDATE_REASONS) {
      this.#counters.invalidations.remove(this.#labels('invalidations', name, reason))
    }
    for (const kind of [...source.errorKinds, '_OTHER']) {
      this.#counters.connectErrors.remove(this.#labels('connectErrors', name, kind))
    }
  }

  /** Removes every metric of this set that the registry still holds as this set's. */
  unregister(): void {
    for (const { name, metric } of this.#registered) {
      if (this.#registry.getSingleMetric(name) === metric) this.#registry.removeSingleMetric(name)
    }
    this.#registered.length = 0
  }

  /** Detaches every member and unregisters: the set of a registry that was cleared. */
  retire(): void {
    for (const source of this.#members.values()) source.detach()
    this.#members.clear()
    this.#pools.clear()
    this.unregister()
  }

  #labels(key: PoolMetricKey, pool: string, value: string | undefined): Labels {
    const extra = (POOL_METRICS[key] as PoolMetricSpec).attribute
    return value === undefined || extra === undefined
      ? { [POOL_LABEL]: pool }
      : { [POOL_LABEL]: pool, [extra.prom]: value }
  }

  #create(key: PoolMetricKey, spec: PoolMetricSpec, prefix: string): void {
    const name = prefix + spec.prom
    const labelNames =
      spec.attribute === undefined ? [POOL_LABEL] : [POOL_LABEL, spec.attribute.prom]
    const common = { name, help: spec.description, labelNames, registers: [this.#registry] }
    let metric: object
    if (spec.kind === 'histogram') {
      metric = this.#histograms[key as TimedMetric] = new PoolTimeHistogram(
        name,
        spec.description,
        this.#registry,
      )
    } else if (spec.kind === 'counter') {
      metric = this.#counters[key as CountedMetric] = new Counter(common)
    } else {
      // Read at scrape time: each collect starts from no series, so a pool that left has none.
      const members = this.#members
      const labels = (pool: string, value: string | undefined) => this.#labels(key, pool, value)
      const collect = function (this: Gauge | Counter) {
        this.reset()
        for (const source of members.values()) {
          for (const reading of source.read()) {
            if (reading.metric !== key) continue
            if (this instanceof Gauge)
              this.set(labels(source.name, reading.attribute), reading.value)
            else this.inc(labels(source.name, reading.attribute), reading.value)
          }
        }
      }
      metric =
        spec.kind === 'total'
          ? new Counter({ ...common, collect })
          : new Gauge({ ...common, collect, aggregator: spec.aggregator ?? 'sum' })
    }
    this.#registered.push({ name, metric })
  }
}
