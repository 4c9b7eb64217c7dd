import type { Pool } from '../core/pool.js'
import { POOL_TIME_BUCKETS } from '../metrics/pool-metric-catalog.js'
import { PoolMetricSource } from '../metrics/pool-metric-source.js'

/**
 * How long callers waited for a connection of the lifeguard pool over one bench run: the buckets
 * of the `db.client.connection.wait_time` histogram (`db_client_connection_wait_time_seconds`),
 * filled by the same source as the exporters of `lifeguard/otel` and `lifeguard/prometheus`.
 */
export interface WaitHistogram {
  /** The buckets' upper bounds, in seconds. */
  bounds: number[]
  /** Acquires per bucket (not cumulative): one more than `bounds`, the last past the last bound. */
  counts: number[]
  /** Every acquire that was served. */
  count: number
  /** The waits added up, in seconds. */
  sumSeconds: number
}

/**
 * Starts counting the waits of `pool`'s callers into the wait-time histogram's buckets; `stop()`
 * removes the listeners and returns the histogram.
 */
export function watchPoolWaits(pool: Pool<unknown>): { stop(): WaitHistogram } {
  const bounds = [...POOL_TIME_BUCKETS]
  const histogram: WaitHistogram = {
    bounds,
    counts: new Array<number>(bounds.length + 1).fill(0),
    count: 0,
    sumSeconds: 0,
  }
  const source = new PoolMetricSource(pool, {
    record(metric, seconds) {
      if (metric !== 'waitTime') return
      let i = 0
      while (i < bounds.length && seconds > bounds[i]!) i++
      histogram.counts[i]!++
      histogram.count++
      histogram.sumSeconds += seconds
    },
    count() {},
  })
  return {
    stop() {
      source.detach()
      return histogram
    },
  }
}
