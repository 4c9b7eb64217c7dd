import type pg from 'pg'
import { InvalidOptionError } from '../core/errors.js'
import { describe, MAX_TIMER_MS, type PoolOptions } from '../core/pool-options.js'

/** The lifeguard options a facade may set: every pool option but the dialect, which it makes itself. */
export type LifeguardOptions = Omit<PoolOptions<pg.Client>, 'dialect'>

/** pg's pool config, plus the lifeguard options under one key of their own. */
export interface PgPoolConfig extends pg.PoolConfig {
  /**
   * How many autocommit statements of `pool.query()` one connection may carry at once once every
   * connection is busy and the pool is full: lifeguard's `maxPipeline` (the name node-postgres's
   * pull request #3739 proposes for pg-pool). `1` turns pipelining off: for a transaction-mode
   * pooler that cannot take a pipeline (Supavisor), or to keep pg-pool's one query per connection.
   * @defaultValue 100
   */
  maxPipeline?: number | undefined
  /** lifeguard options (`maxOverflow`, `resetOnRelease`, `name`, …); override what the pg keys set. */
  lifeguard?: LifeguardOptions | undefined
}

/** pg-pool's keys: they configure the pool, not each connection. */
const POOL_KEYS = [
  'max',
  'min',
  'idleTimeoutMillis',
  'log',
  'Promise',
  'allowExitOnIdle',
  'maxUses',
  'maxLifetimeSeconds',
  'Client',
  'onConnect',
  'verify',
  'poolSize',
  'maxPipeline',
  'lifeguard',
] as const

/**
 * pg-pool's own defaults and rules where they differ from lifeguard's: idle clients are closed
 * after 10 s and, until then, hold the process, so that a script that was right on pg exits as it
 * did on pg; a failed connect reaches its caller at once (`connectErrors: 'reject'`); and `min` is
 * only a floor for the idle timeout (`minMode: 'floor'`), never a reason to open a connection.
 */
const PG_DEFAULTS: Record<string, unknown> = {
  idleTimeout: 10_000,
  allowExitOnIdle: false,
  connectErrors: 'reject',
  minMode: 'floor',
}

/** What a facade `Pool` is made of: the clients' config, the pool's options and pg's `maxUses`. */
export interface PgPoolParts {
  /** The config each physical `pg.Client` is made with. */
  connection: pg.ClientConfig
  /** The lifeguard pool's options. */
  options: LifeguardOptions
  /** pg's `maxUses`: lends per physical client before it is closed; `Infinity` when off. */
  maxUses: number
}

function fail(option: string, value: unknown, allowed: string): never {
  throw new InvalidOptionError(
    option,
    `Invalid option ${option}: ${describe(value)}; expected ${allowed}`,
  )
}

/**
 * A pg-pool number as pg-pool reads it: `undefined` when pg takes it as not given (every falsy
 * value: `0`, `null`, `''`, `NaN`, `false`), else the number a numeric string stands for
 * (environment variables are strings; pg compares and times with them as numbers). Values that
 * pg would read as something other than what they say fail here: a non-numeric string, a number
 * below `least` (pg reads the string `"0"`, which is truthy, as a 1 ms timer or a pool that never
 * lends), one above `most`, or a value of another type.
 */
function pgNumber(
  option: string,
  value: unknown,
  least: number,
  most: number,
  allowed: string,
): number | undefined {
  if (!value) return undefined
  let n = Number.NaN
  if (typeof value === 'number') n = value
  else if (typeof value === 'string' && value.trim() !== '') n = Number(value)
  if (!Number.isFinite(n) || n < least || n > most) fail(option, value, allowed)
  return n
}

/** What pg calls on a connection's stream before it can fail, and what lifeguard calls to tear it down. */
const STREAM_METHODS = ['connect', 'setNoDelay', 'on', 'destroy'] as const

const STREAM_ALLOWED = `a function returning a socket, or a socket (a Duplex stream with ${STREAM_METHODS.join(', ')})`

function isSocket(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false
  const socket = value as Record<string, unknown>
  return STREAM_METHODS.every((method) => typeof socket[method] === 'function')
}

type StreamFactory = (...args: unknown[]) => unknown

/** One checking wrapper per factory, so that equal `Client` configs still key one pool. */
const checkedFactories = new WeakMap<StreamFactory, StreamFactory>()

/**
 * pg's `stream` option, checked: left out, a socket, or a function that makes one, which is
 * wrapped so that what it returns is checked each time pg calls it. Anything else fails on pg
 * at the first query ("setNoDelay is not a function"), and tearing such a thing down would throw
 * where nobody catches it; it fails here instead, where it was written, or for a function, when
 * a client is made with it.
 */
export function checkedPgStream(stream: unknown): unknown {
  if (!stream) return stream
  if (typeof stream !== 'function') {
    if (!isSocket(stream)) fail('stream', stream, STREAM_ALLOWED)
    return stream
  }
  const factory = stream as StreamFactory
  let checked = checkedFactories.get(factory)
  if (checked === undefined) {
    checked = function checkedStream(this: unknown, ...args: unknown[]): unknown {
      const made = factory.apply(this, args)
      if (!isSocket(made)) {
        fail('stream', made, `${STREAM_ALLOWED}; the function returned something else`)
      }
      return made
    }
    checkedFactories.set(factory, checked)
  }
  return checked
}

const STRING_TOO = 'or a string holding one, as pg reads environment variables'

/**
 * Splits pg's pool config into the clients' connection config and the lifeguard options, reading
 * pg-pool's keys the way pg-pool does (see `pgNumber`) and with pg-pool's defaults (idle clients
 * closed after 10 s, `allowExitOnIdle` off). `defaults` (from `configurePg`) override pg's
 * defaults; the pg keys given override those; `lifeguard` overrides everything. Throws
 * `InvalidOptionError` for a value pg would choke on.
 */
export function splitPgPoolConfig(
  config: PgPoolConfig | undefined,
  defaults: LifeguardOptions,
): PgPoolParts {
  if (config !== undefined && config !== null && typeof config !== 'object') {
    // pg-pool throws a TypeError for these ("Cannot use 'in' operator"); say what it takes.
    fail(
      'config',
      config,
      "an object: pg's Pool config (a connection string goes in connectionString)",
    )
  }
  const c = (config ?? {}) as PgPoolConfig & { poolSize?: unknown }
  const guard = c.lifeguard
  if (
    guard !== undefined &&
    guard !== null &&
    (typeof guard !== 'object' || Array.isArray(guard))
  ) {
    fail('lifeguard', guard, 'an object of lifeguard pool options')
  }
  const connection: Record<string, unknown> = { ...c }
  for (const key of POOL_KEYS) delete connection[key]
  if (c.stream) connection.stream = checkedPgStream(c.stream)
  const options: Record<string, unknown> = { ...PG_DEFAULTS, ...defaults }

  // pg: `max || poolSize || 10`; a pool of fewer than one never lends, so pg would wait for ever.
  const count = `a number ≥ 1 (pg rounds it up), ${STRING_TOO}; or 0, null or undefined for pg's default of 10`
  const max = pgNumber('max', c.max, 1, Number.MAX_SAFE_INTEGER, count)
  const poolSize =
    max === undefined
      ? pgNumber('poolSize', c.poolSize, 1, Number.MAX_SAFE_INTEGER, count)
      : undefined
  if (max !== undefined || poolSize !== undefined) options.max = Math.ceil(max ?? poolSize!)

  const min = pgNumber('min', c.min, 0, Number.MAX_SAFE_INTEGER, `a number ≥ 0, ${STRING_TOO}`)
  if (min !== undefined) options.min = Math.ceil(min)

  // pg: an idle timer only when truthy, so 0, null and the like turn idle reaping off.
  const idle = pgNumber(
    'idleTimeoutMillis',
    c.idleTimeoutMillis,
    1,
    MAX_TIMER_MS,
    `a number of milliseconds from 1 to ${MAX_TIMER_MS}, ${STRING_TOO}; or 0 or null for no idle timeout (pg's default is 10000)`,
  )
  if (c.idleTimeoutMillis !== undefined) options.idleTimeout = idle ?? 0

  const wait = pgNumber(
    'connectionTimeoutMillis',
    c.connectionTimeoutMillis,
    1,
    MAX_TIMER_MS,
    `a number of milliseconds from 1 to ${MAX_TIMER_MS}, ${STRING_TOO}; or 0 to wait for ever`,
  )
  if (wait !== undefined) {
    options.acquireTimeout = wait
    options.connectTimeout = wait
    connection.connectionTimeoutMillis = wait
  } else if (c.connectionTimeoutMillis !== undefined) {
    // pg: 0 waits for ever. The connect timeout stays finite (lifeguard's default, 10 s).
    options.acquireTimeout = Number.POSITIVE_INFINITY
    connection.connectionTimeoutMillis = 0
  }

  const lifetime = pgNumber(
    'maxLifetimeSeconds',
    c.maxLifetimeSeconds,
    0.001,
    MAX_TIMER_MS / 1000,
    `a number of seconds from 0.001 to ${MAX_TIMER_MS / 1000}, ${STRING_TOO}; or 0 for no limit`,
  )
  // Given but falsy is pg's "no limit"; left out, lifeguard's lifetime (30 min) applies.
  if (c.maxLifetimeSeconds !== undefined) {
    options.maxLifetime = lifetime === undefined ? 0 : lifetime * 1000
  }

  // pg's own "no limit" is Infinity; any other number must be a finite count.
  const uses = pgNumber(
    'maxUses',
    c.maxUses === Number.POSITIVE_INFINITY ? undefined : c.maxUses,
    1,
    Number.POSITIVE_INFINITY,
    `a number ≥ 1, ${STRING_TOO}; or 0 for no limit`,
  )

  // lifeguard's own option, under the name pg-pool may take; the pool checks it (an integer ≥ 1).
  if (c.maxPipeline !== undefined) options.maxPipeline = c.maxPipeline

  // pg reads it for its truth, as it does every flag.
  if (c.allowExitOnIdle !== undefined) options.allowExitOnIdle = Boolean(c.allowExitOnIdle)

  if (c.onConnect) {
    const hook = c.onConnect
    if (typeof hook !== 'function') fail('onConnect', hook, 'a function (client) => Promise<void>')
    options.onConnect = (client: pg.Client) => hook(client)
  }
  if (guard) Object.assign(options, guard)
  return {
    connection: connection as pg.ClientConfig,
    options: options as LifeguardOptions,
    maxUses: uses === undefined ? Number.POSITIVE_INFINITY : Math.ceil(uses),
  }
}
