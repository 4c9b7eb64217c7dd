/**
 * The upper bounds, in seconds, of the buckets of the three pool histograms (create, wait and use
 * time): from 100 µs, a wait served from the idle list, to 10 s, past any sane `acquireTimeout`,
 * about 2.5 buckets a decade so that `histogram_quantile` stays within a factor of 2.5.
 */
export const POOL_TIME_BUCKETS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]

/**
 * How a metric is kept: `updown` and `gauge` are read from the pool at collect time (an
 * asynchronous UpDownCounter or Gauge in OpenTelemetry, a Gauge in Prometheus); `total` is a
 * lifetime count read at collect time from `pool.stats()`; `counter` and `histogram` are fed by the
 * pool's events.
 */
export type MetricKind = 'updown' | 'gauge' | 'total' | 'counter' | 'histogram'

/** One metric of a pool, under its OpenTelemetry and its Prometheus name. */
export interface PoolMetricSpec {
  /** The OpenTelemetry name (the semantic conventions' where they have one). */
  readonly otel: string
  /** The Prometheus name, before the `prefix`; with `_total` on counters and the unit on histograms. */
  readonly prom: string
  readonly kind: MetricKind
  /** The UCUM unit, as OpenTelemetry takes it. */
  readonly unit: string
  readonly description: string
  /** The attribute beside the pool's name, if any: its OpenTelemetry key and its Prometheus label. */
  readonly attribute?: { readonly otel: string; readonly prom: string }
  /**
   * How prom-client's `AggregatorRegistry` (the `cluster` module's workers, one pool each) merges
   * the workers' values of a gauge: `'sum'` when not given, right for counts of connections and
   * callers; `'max'` for a setting, which each worker holds the same, and for the fail-fast flag
   * (1 when any worker fails fast).
   */
  readonly aggregator?: 'max'
}

/**
 * Every metric the exporters of `lifeguard/otel` and `lifeguard/prometheus` report for a pool.
 * The `db.client.connection.*` ones are the OpenTelemetry semantic conventions' connection-pool
 * metrics as of semantic-conventions v1.44.0 (`model/db/metrics.yaml`, stability "development"),
 * each with the attribute `db.client.connection.pool.name` (label `pool_name`). The `lifeguard.*`
 * ones are this pool's own.
 */
export const POOL_METRICS = {
  count: {
    otel: 'db.client.connection.count',
    prom: 'db_client_connection_count',
    kind: 'updown',
    unit: '{connection}',
    description:
      'The number of connections that are currently in state described by the state attribute (idle: in the idle list; used: lent, or being reset or pinged).',
    attribute: { otel: 'db.client.connection.state', prom: 'state' },
  },
  idleMax: {
    otel: 'db.client.connection.idle.max',
    prom: 'db_client_connection_idle_max',
    kind: 'updown',
    unit: '{connection}',
    description:
      'The maximum number of idle open connections allowed (the max option: overflow connections close when idle).',
  },
  idleMin: {
    otel: 'db.client.connection.idle.min',
    prom: 'db_client_connection_idle_min',
    kind: 'updown',
    unit: '{connection}',
    description: 'The minimum number of idle open connections allowed (the min option).',
  },
  max: {
    otel: 'db.client.connection.max',
    prom: 'db_client_connection_max',
    kind: 'updown',
    unit: '{connection}',
    description: 'The maximum number of open connections allowed (max + maxOverflow).',
  },
  pendingRequests: {
    otel: 'db.client.connection.pending_requests',
    prom: 'db_client_connection_pending_requests',
    kind: 'updown',
    unit: '{request}',
    description: 'The number of current pending requests for an open connection.',
  },
  timeouts: {
    otel: 'db.client.connection.timeouts',
    prom: 'db_client_connection_timeouts_total',
    kind: 'total',
    unit: '{timeout}',
    description:
      'The number of connection timeouts that have occurred trying to obtain a connection from the pool.',
  },
  createTime: {
    otel: 'db.client.connection.create_time',
    prom: 'db_client_connection_create_time_seconds',
    kind: 'histogram',
    unit: 's',
    description: 'The time it took to create a new connection.',
  },
  waitTime: {
    otel: 'db.client.connection.wait_time',
    prom: 'db_client_connection_wait_time_seconds',
    kind: 'histogram',
    unit: 's',
    description: 'The time it took to obtain an open connection from the pool.',
  },
  useTime: {
    otel: 'db.client.connection.use_time',
    prom: 'db_client_connection_use_time_seconds',
    kind: 'histogram',
    unit: 's',
    description: 'The time between borrowing a connection and returning it to the pool.',
  },
  connectErrors: {
    otel: 'lifeguard.connection.connect_errors',
    prom: 'lifeguard_connection_connect_errors_total',
    kind: 'counter',
    unit: '{error}',
    description:
      "Failed attempts to open a connection, by kind: the driver's error code, or its class.",
    attribute: { otel: 'error.type', prom: 'kind' },
  },
  invalidations: {
    otel: 'lifeguard.connection.invalidations',
    prom: 'lifeguard_connection_invalidations_total',
    kind: 'counter',
    unit: '{connection}',
    description: 'Connections taken out of service, by reason.',
    attribute: { otel: 'lifeguard.invalidate.reason', prom: 'reason' },
  },
  leaks: {
    otel: 'lifeguard.connection.leaks',
    prom: 'lifeguard_connection_leaks_total',
    kind: 'counter',
    unit: '{lease}',
    description: 'Leases held longer than leakDetectionThreshold.',
  },
  unavailable: {
    otel: 'lifeguard.pool.unavailable',
    prom: 'lifeguard_pool_unavailable',
    kind: 'gauge',
    aggregator: 'max',
    unit: '1',
    description:
      'Whether the pool is failing fast (1) or not (0): a permanent connect error, or the database down for failFastAfter.',
  },
  failedFast: {
    otel: 'lifeguard.pool.failed_fast',
    prom: 'lifeguard_pool_failed_fast_total',
    kind: 'total',
    unit: '{request}',
    description: 'Acquires rejected at once because the pool was failing fast.',
  },
  maxLifetime: {
    otel: 'lifeguard.connection.max_lifetime',
    prom: 'lifeguard_connection_max_lifetime_seconds',
    kind: 'gauge',
    aggregator: 'max',
    unit: 's',
    description:
      "The maxLifetime in force, after any clamp below the server's idle cut-off (absent when off).",
  },
  idleTimeout: {
    otel: 'lifeguard.connection.idle_timeout',
    prom: 'lifeguard_connection_idle_timeout_seconds',
    kind: 'gauge',
    aggregator: 'max',
    unit: 's',
    description:
      "The idleTimeout in force, after any clamp below the server's idle cut-off (absent when off).",
  },
  serverIdleCutoff: {
    otel: 'lifeguard.server.idle_cutoff',
    prom: 'lifeguard_server_idle_cutoff_seconds',
    kind: 'gauge',
    aggregator: 'max',
    unit: 's',
    description:
      "The server's idle cut-off (MySQL wait_timeout, PostgreSQL idle_session_timeout), once the first connection read it (absent when the server has none).",
  },
} as const satisfies Record<string, PoolMetricSpec>

/** The key of one metric in {@link POOL_METRICS}. */
export type PoolMetricKey = keyof typeof POOL_METRICS
