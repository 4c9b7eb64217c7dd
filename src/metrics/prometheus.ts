import { type Registry, register } from 'prom-client'
import { InvalidOptionError } from '../core/errors.js'
import type { Pool } from '../core/pool.js'
import { describe } from '../core/pool-options.js'
import { meteredPool } from './metered-pool.js'
import { PrometheusPoolMetrics } from './prometheus-pool-metrics.js'

/** The options of {@link collectPoolMetrics}. */
export interface CollectPoolMetricsOptions {
  /**
   * The prom-client registry to register the metrics in.
   * @defaultValue prom-client's global `register`
   */
  registry?: Registry
  /**
   * Put before every metric's name (`myapp_` gives `myapp_db_client_connection_count`).
   * @defaultValue ''
   */
  prefix?: string
}

/** A valid start of a Prometheus metric name (or nothing). */
const PREFIX_PATTERN = /^([a-zA-Z_:][a-zA-Z0-9_:]*)?$/

/** The metric set of each registry, by prefix. */
const sets = new WeakMap<Registry, Map<string, PrometheusPoolMetrics>>()

/**
 * Reports a pool's metrics to a prom-client registry, in the Prometheus form of the OpenTelemetry
 * connection-pool metrics: `db_client_connection_count{state, pool_name}`,
 * `db_client_connection_idle_max`, `_idle_min`, `_max`, `_pending_requests`,
 * `db_client_connection_timeouts_total`, the histograms `db_client_connection_create_time_seconds`,
 * `_wait_time_seconds` and `_use_time_seconds`, and lifeguard's own `lifeguard_*`. Gauges are read
 * in `collect()`, at scrape time, so there is no timer. Several pools may share one registry, each
 * under its own `pool_name`. Takes a lifeguard `Pool`, or a `lifeguard/pg` or `lifeguard/mysql2`
 * facade. Returns a function that removes this pool's series (and the metrics themselves when no
 * pool is left in the registry); idempotent. Throws `InvalidOptionError` when a pool of the same
 * name already reports to that registry. See docs/observability.md.
 *
 * @example
 * ```ts
 * import { collectPoolMetrics } from 'lifeguard/prometheus'
 * import { register } from 'prom-client'
 * const stop = collectPoolMetrics(pool)
 * app.get('/metrics', async (_req, res) => res.type(register.contentType).send(await register.metrics()))
 * ```
 */
export function collectPoolMetrics(
  pool: Pool<unknown> | object,
  options: CollectPoolMetricsOptions = {},
): () => void {
  const target = meteredPool(pool, options, ['registry', 'prefix'], 'collectPoolMetrics')
  // `null` is refused, not taken for the global registry.
  const registry = options.registry === undefined ? register : options.registry
  if (
    typeof (registry as Partial<Registry> | null)?.registerMetric !== 'function' ||
    typeof (registry as Partial<Registry>).removeSingleMetric !== 'function'
  ) {
    throw new InvalidOptionError(
      'registry',
      `Invalid option registry: ${describe(options.registry)}; expected a prom-client Registry`,
    )
  }
  const prefix = options.prefix ?? ''
  if (typeof prefix !== 'string' || !PREFIX_PATTERN.test(prefix)) {
    throw new InvalidOptionError(
      'prefix',
      `Invalid option prefix: ${describe(prefix)}; expected the start of a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), or ''`,
    )
  }
  let byPrefix = sets.get(registry)
  if (byPrefix === undefined) {
    byPrefix = new Map()
    sets.set(registry, byPrefix)
  }
  let set = byPrefix.get(prefix)
  // After `registry.clear()` the set reports nothing there, and its names may be taken: a new one.
  if (set !== undefined && !set.intact) {
    set.retire()
    set = undefined
  }
  if (set === undefined) {
    set = new PrometheusPoolMetrics(registry, prefix)
    byPrefix.set(prefix, set)
  }
  const joined = set
  let source: ReturnType<PrometheusPoolMetrics['join']>
  try {
    source = joined.join(target)
  } catch (error) {
    if (joined.empty) forget(registry, prefix, joined)
    throw error
  }
  let removed = false
  return () => {
    if (removed) return
    removed = true
    joined.leave(source.name)
    if (joined.empty) forget(registry, prefix, joined)
  }
}

/** Unregisters a set no pool reports to any more. */
function forget(registry: Registry, prefix: string, set: PrometheusPoolMetrics): void {
  set.unregister()
  const byPrefix = sets.get(registry)
  if (byPrefix?.get(prefix) === set) byPrefix.delete(prefix)
}
