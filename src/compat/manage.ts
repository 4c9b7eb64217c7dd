import type { Pool } from '../core/pool.js'

interface Entry {
  readonly key: string
  readonly pool: Pool<unknown>
  refs: number
}

/** Every keyed pool that at least one facade still holds. */
const registry = new Map<string, Entry>()

/**
 * One facade's hold on a keyed pool: `release()` drops it, and the pool closes gracefully when
 * the last hold is released. Each hold releases once; a second call returns the same promise.
 */
export class PoolHold<C> {
  readonly #entry: Entry
  #released: Promise<void> | undefined

  /** @internal Made by {@link manage}. */
  constructor(entry: Entry) {
    this.#entry = entry
  }

  /** The shared lifeguard pool. */
  get pool(): Pool<C> {
    return this.#entry.pool as Pool<C>
  }

  /** Whether this hold was released. */
  get released(): boolean {
    return this.#released !== undefined
  }

  /** Drops this hold; closes the pool when it was the last one. Resolves once that close is done. */
  release(): Promise<void> {
    if (this.#released !== undefined) return this.#released
    const entry = this.#entry
    entry.refs--
    if (entry.refs > 0) {
      this.#released = Promise.resolve()
    } else {
      if (registry.get(entry.key) === entry) registry.delete(entry.key)
      this.#released = entry.pool.close()
    }
    return this.#released
  }
}

/**
 * Holds the pool registered under `key`, creating it with `create` when no facade holds one: the
 * keyed-pool registry behind the drop-in modules. Facades built with equal options (see
 * `poolKey`) share one pool; each releases only its own hold, and the pool closes with the last.
 * A pool closed by other means is replaced on the next call.
 *
 * @example
 * ```ts
 * const hold = manage(poolKey('pg', options), () => createPool({ dialect: postgres(options) }))
 * await hold.pool.use((client) => client.query('SELECT 1'))
 * await hold.release()
 * ```
 */
export function manage<C>(key: string, create: () => Pool<C>): PoolHold<C> {
  let entry = registry.get(key)
  if (entry === undefined || entry.pool.closed) {
    entry = { key, pool: create() as Pool<unknown>, refs: 0 }
    registry.set(key, entry)
  }
  entry.refs++
  return new PoolHold<C>(entry)
}

/** How many keyed pools are open, for tests and diagnostics. */
export function managedPoolCount(): number {
  return registry.size
}
