import type { EventEmitter } from 'node:events'
import mysql2 from 'mysql2'
import mysql2Promise from 'mysql2/promise'
import { InvalidOptionError } from '../core/errors.js'
import { describe } from '../core/pool-options.js'

/** mysql2's pool-cluster options: `canRetry`, `removeNodeErrorCount`, `restoreNodeTimeout`, `defaultSelector`. */
export type PoolClusterOptions = mysql2.PoolClusterOptions & {
  /** mysql2/promise only: the Promise implementation its methods return. */
  Promise?: PromiseConstructor | undefined
}

/** Makes one node's pool from the config given to `add()`: a lifeguard/mysql2 facade pool. */
export type NodePoolFactory = (config: string | mysql2.PoolOptions) => mysql2.Pool

/** A node of a cluster, as mysql2's `PoolCluster` keeps it. */
interface ClusterNode {
  id: string
  errorCount: number
  pool: mysql2.Pool
  _offlineUntil: number
}

/** The fields of mysql2's `PoolCluster` that `add` writes; everything else is mysql2's code. */
interface CoreClusterFields extends EventEmitter {
  _lastId: number
  _nodes: Record<string, ClusterNode>
  _serviceableNodeIds: string[]
  _closed: boolean
  _clearFindCaches(): void
}

const CorePoolCluster = (mysql2 as unknown as { PoolCluster: unknown }).PoolCluster as new (
  config?: mysql2.PoolClusterOptions,
) => CoreClusterFields

/**
 * mysql2's own `PoolCluster`, whose nodes are lifeguard pools: `add()` makes each node's pool with
 * the facade's `createPool`, and everything else (`of`, the selectors, `getConnection`, `query`,
 * `execute`, the error counts, `'warn'`/`'offline'`/`'online'`/`'remove'`, `end`) is mysql2's
 * code, working on those pools as on its own.
 */
class LifeguardPoolCluster extends CorePoolCluster {
  readonly #createPool: NodePoolFactory

  constructor(config: mysql2.PoolClusterOptions | undefined, createPool: NodePoolFactory) {
    super(config)
    this.#createPool = createPool
  }

  /**
   * Adds a node, as mysql2's `add(id, config)` does (`add(config)` names it `CLUSTER::<n>`; an
   * id already taken is ignored), its pool a lifeguard pool made from `config`: mysql2's pool
   * options, a connection URL, and lifeguard's own options under `lifeguard`.
   */
  add(id: string | mysql2.PoolOptions, config?: string | mysql2.PoolOptions): void {
    let name: string
    let options: string | mysql2.PoolOptions | undefined
    if (typeof id === 'object' && id !== null) {
      name = `CLUSTER::${++this._lastId}`
      options = id
    } else {
      name = id
      options = config
    }
    if (this._nodes[name] !== undefined) return
    // Made before the node is listed: a config the facade refuses throws here and adds nothing.
    const pool = this.#createPool(options as string | mysql2.PoolOptions)
    this._nodes[name] = { id: name, errorCount: 0, pool, _offlineUntil: 0 }
    this._serviceableNodeIds.push(name)
    this._clearFindCaches()
  }
}
Object.defineProperty(LifeguardPoolCluster, 'name', { value: 'PoolCluster' })

/** The selectors mysql2's `of()` knows. */
const SELECTORS = ['RR', 'RANDOM', 'ORDER']

/**
 * Throws for a `defaultSelector` that mysql2 would take and then fail on in every `of()` and
 * `getConnection()` (`makeSelector[selector] is not a function`), far from the mistake.
 */
function checkClusterConfig(config: unknown): void {
  if (config === undefined || config === null) return
  if (typeof config !== 'object') {
    throw new InvalidOptionError(
      'config',
      `createPoolCluster: invalid config ${describe(config)}; expected mysql2's PoolClusterOptions object`,
    )
  }
  const selector = (config as { defaultSelector?: unknown }).defaultSelector
  if (selector === undefined || selector === null || selector === '') return
  if (typeof selector !== 'string' || !SELECTORS.includes(selector.toUpperCase())) {
    throw new InvalidOptionError(
      'defaultSelector',
      `Invalid option defaultSelector: ${describe(selector)}; expected one of ${SELECTORS.join(', ')}`,
    )
  }
}

/**
 * Creates a drop-in mysql2 `PoolCluster` whose nodes lend through lifeguard: each `add(id,
 * config)` makes a lifeguard/mysql2 pool with `createPool`, so pre-ping, reset on release, leak
 * detection and the server clamp apply to every node, and `lifeguardOf(node pool)` finds it.
 * Patterns, selectors (`RR`, `RANDOM`, `ORDER`), retries (`canRetry`), error counts
 * (`removeNodeErrorCount`, `restoreNodeTimeout`) and the events `'warn'`, `'offline'`,
 * `'online'`, `'remove'` are mysql2's own code. A `defaultSelector` mysql2 does not know throws
 * `InvalidOptionError` here.
 *
 * @param config - mysql2's `PoolClusterOptions`.
 * @param createPool - makes each node's pool: the `createPool` of `lifeguard/mysql2` (or of a
 *   `configureMysql2()` module, whose lifeguard defaults then apply to every node).
 *
 * @example
 * ```ts
 * import mysql from 'lifeguard/mysql2'
 *
 * const cluster = mysql.createPoolCluster({ restoreNodeTimeout: 1_000 })
 * cluster.add('primary', { uri: process.env.PRIMARY_URL, connectionLimit: 10 })
 * cluster.add('replica1', { uri: process.env.REPLICA_URL, connectionLimit: 10 })
 * cluster.of('replica*').query('SELECT 1', (error, rows) => {})
 * ```
 */
export function createPoolCluster(
  config: mysql2.PoolClusterOptions | undefined,
  createPool: NodePoolFactory,
): mysql2.PoolCluster {
  checkClusterConfig(config)
  return new LifeguardPoolCluster(config, createPool) as unknown as mysql2.PoolCluster
}

/** mysql2/promise's `PromisePoolCluster`: not exported by mysql2, so taken from a cluster it makes. */
type PromisePoolClusterClass = new (
  cluster: object,
  promiseImpl?: PromiseConstructor,
) => mysql2Promise.PoolCluster & { poolCluster: LifeguardPoolCluster }

let promisePoolClusterClass: PromisePoolClusterClass | undefined

/**
 * mysql2/promise's `PromisePoolCluster`, with `add` and `remove` going to the cluster it wraps:
 * mysql2's own forward to `PoolCluster.prototype`, which would make a node pool of mysql2's own.
 */
function promiseClusterClass(): PromisePoolClusterClass {
  if (promisePoolClusterClass !== undefined) return promisePoolClusterClass
  // A cluster of mysql2's own, with no node: it opens nothing, and only its class is kept.
  const sample = mysql2Promise.createPoolCluster()
  const Base = Object.getPrototypeOf(sample).constructor as PromisePoolClusterClass
  class PromisePoolCluster extends Base {
    /** Adds a lifeguard node, as {@link LifeguardPoolCluster.add}. */
    override add(id: string | mysql2.PoolOptions, config?: string | mysql2.PoolOptions): void {
      this.poolCluster.add(id, config)
    }

    /** Removes the nodes whose ids match `pattern`, ending their pools, as mysql2 does. */
    remove(pattern: string): void {
      ;(this.poolCluster as unknown as { remove(pattern: string): void }).remove(pattern)
    }
  }
  promisePoolClusterClass = PromisePoolCluster
  return promisePoolClusterClass
}

/**
 * The mysql2/promise form of {@link createPoolCluster}: mysql2/promise's own `PromisePoolCluster`
 * (promises from `config.Promise`, or the global `Promise`) over a lifeguard cluster, whose nodes
 * `createPool` makes (the callback facade's pools: mysql2/promise's cluster wraps core pools too).
 */
export function createPromisePoolCluster(
  config: PoolClusterOptions | undefined,
  createPool: NodePoolFactory,
): mysql2Promise.PoolCluster {
  const P = config?.Promise ?? Promise
  if (typeof P !== 'function') {
    throw new InvalidOptionError(
      'Promise',
      `Invalid option Promise: ${describe(P)}; expected a Promise constructor`,
    )
  }
  const core = createPoolCluster(config, createPool)
  const Cluster = promiseClusterClass()
  return new Cluster(core, P)
}
