import { EventEmitter } from 'node:events'
import genericPool from 'generic-pool'
import pg from 'pg'
import tarn from 'tarn'

/**
 * One pool under test with a no-op resource, behind the two calls the loop makes.
 * @typedef {{
 *   acquire(): Promise<unknown>,
 *   release(handle: unknown): void,
 *   size(): number,
 *   close(): Promise<void>,
 * }} NoioPool
 */

/**
 * A pool library as the no-I/O and memory benchmarks see it.
 * @typedef {{
 *   name: string,
 *   create(max: number): NoioPool,
 *   resource(): object,
 * }} NoioContender
 */

let nextId = 0

/** The resource every pool lends: an object with an id, which costs nothing to open or close. */
class NoopResource {
  constructor() {
    this.id = ++nextId
  }
}

/**
 * The fake `Client` injected into pg-pool through its `Client` option: pg-pool calls
 * `connect(cb)`, `end(cb)`, `on/once/removeListener`, `ref/unref`, and reads `_queryable` and
 * `_ending` on release, so those are all it needs.
 */
class FakePgClient extends EventEmitter {
  constructor() {
    super()
    this.id = ++nextId
    this._queryable = true
    this._ending = false
  }

  /** @param {(error?: Error) => void} callback */
  connect(callback) {
    queueMicrotask(() => callback())
  }

  /** @param {((error?: Error) => void) | undefined} callback */
  end(callback) {
    this._ending = true
    this._queryable = false
    queueMicrotask(() => {
      this.emit('end')
      callback?.()
    })
  }

  /** @param {unknown[]} args */
  query(...args) {
    const callback = args.find((arg) => typeof arg === 'function')
    if (callback !== undefined) queueMicrotask(() => callback(undefined, { rows: [] }))
    else return Promise.resolve({ rows: [] })
  }

  ref() {}
  unref() {}
  isConnected() {
    return !this._ending
  }
}

/**
 * The floor: an array of free resources and an array of waiters, nothing else (no timeouts,
 * no validation, no stats). Any pool's bookkeeping is measured against it. The waiter array is
 * read from a moving head index, so a hand-off is O(1) however many callers wait.
 */
export class MinimalPool {
  /** @param {number} max @param {() => object} create */
  constructor(max, create) {
    /** @type {object[]} */
    this.free = []
    /** @type {Array<(resource: object) => void>} */
    this.waiters = []
    this.head = 0
    this.created = 0
    this.max = max
    this.createResource = create
  }

  /** @returns {Promise<object>} */
  acquire() {
    if (this.free.length > 0) return Promise.resolve(/** @type {object} */ (this.free.pop()))
    if (this.created < this.max) {
      this.created++
      return Promise.resolve(this.createResource())
    }
    return new Promise((resolve) => this.waiters.push(resolve))
  }

  /** @param {object} resource */
  release(resource) {
    if (this.head < this.waiters.length) {
      const resolve = /** @type {(resource: object) => void} */ (this.waiters[this.head])
      this.waiters[this.head++] = undefined
      if (this.head === this.waiters.length) {
        this.waiters.length = 0
        this.head = 0
      }
      resolve(resource)
      return
    }
    this.free.push(resource)
  }
}

const newResource = () => new NoopResource()

/**
 * The contenders of the no-I/O benchmark, each with its own defaults except the size: a fair
 * comparison is with the options users get.
 * @param {import('./load-lifeguard.mjs').Lifeguard} lifeguard
 * @returns {NoioContender[]}
 */
export function noioContenders(lifeguard) {
  return [
    {
      name: 'minimal',
      resource: newResource,
      create(max) {
        const pool = new MinimalPool(max, newResource)
        return {
          acquire: () => pool.acquire(),
          release: (resource) => pool.release(/** @type {object} */ (resource)),
          size: () => pool.created,
          close: async () => {},
        }
      },
    },
    {
      name: 'lifeguard',
      resource: newResource,
      create(max) {
        // No ping and no reset: the dialect has neither, as a no-op resource needs neither.
        const dialect = {
          name: 'noop',
          connect: async () => new NoopResource(),
          close: async () => {},
        }
        const pool = lifeguard.createPool({ dialect, max })
        return {
          acquire: () => pool.acquire(),
          release: (lease) => /** @type {{ release(): void }} */ (lease).release(),
          size: () => pool.stats().total,
          close: () => pool.destroy(),
        }
      },
    },
    {
      name: 'generic-pool',
      resource: newResource,
      create(max) {
        const pool = genericPool.createPool(
          { create: async () => new NoopResource(), destroy: async () => {} },
          { max, min: 0 },
        )
        return {
          acquire: () => pool.acquire(),
          release: (resource) => void pool.release(/** @type {NoopResource} */ (resource)),
          size: () => pool.size,
          close: async () => {
            await pool.drain()
            await pool.clear()
          },
        }
      },
    },
    {
      name: 'tarn',
      resource: newResource,
      create(max) {
        const pool = new tarn.Pool({
          create: async () => new NoopResource(),
          destroy: () => {},
          min: 0,
          max,
        })
        return {
          acquire: () => pool.acquire().promise,
          release: (resource) => void pool.release(resource),
          size: () => pool.numUsed() + pool.numFree(),
          close: () => pool.destroy(),
        }
      },
    },
    {
      name: 'pg-pool',
      resource: () => new FakePgClient(),
      create(max) {
        const pool = new pg.Pool({ Client: /** @type {any} */ (FakePgClient), max })
        return {
          acquire: () => pool.connect(),
          release: (client) => /** @type {{ release(): void }} */ (client).release(),
          size: () => pool.totalCount,
          close: () => pool.end(),
        }
      },
    },
  ]
}

/**
 * Opens all `max` resources of a pool: acquires them at once, then releases them all, and checks
 * that the pool really holds `max`.
 * @param {NoioPool} pool
 * @param {number} max
 * @param {string} name
 */
export async function warm(pool, max, name) {
  const handles = await Promise.all(Array.from({ length: max }, () => pool.acquire()))
  for (const handle of handles) pool.release(handle)
  // Let pools that hand back on a later tick (tarn, generic-pool) settle.
  await new Promise((resolve) => setImmediate(resolve))
  if (pool.size() !== max)
    throw new Error(`${name} holds ${pool.size()} resources after warm-up, not ${max}`)
}
