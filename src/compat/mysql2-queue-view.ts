/**
 * A read-only view with the shape of mysql2's pool queues (its `RingQueue`, Denque before it):
 * what code in the wild reads of `pool._allConnections`, `pool._freeConnections` and
 * `pool._connectionQueue` (`.length`, `get(i)`, `toArray()`, …), over the pool's real state,
 * which `items` reads afresh on every access. The methods that would change a queue throw a
 * `TypeError`: the pool's state is lifeguard's, and a write there would corrupt nothing but the
 * caller's idea of it.
 */
export class Mysql2QueueView<T> {
  readonly #items: () => readonly T[]
  readonly #name: string

  /**
   * @param name - the pool field this view stands for, for error messages
   * @param items - reads the items, oldest first
   */
  constructor(name: string, items: () => readonly T[]) {
    this.#name = name
    this.#items = items
  }

  /** How many items there are now. */
  get length(): number {
    return this.#items().length
  }

  /** The same as `length`. */
  size(): number {
    return this.length
  }

  /** Whether there are none. */
  isEmpty(): boolean {
    return this.length === 0
  }

  /** The item at `index` (negative counts from the end), or `undefined`. */
  peekAt(index: number): T | undefined {
    if (index !== (index | 0)) return undefined
    const items = this.#items()
    return index >= 0 ? items[index] : items[items.length + index]
  }

  /** The same as `peekAt`. */
  get(index: number): T | undefined {
    return this.peekAt(index)
  }

  /** The first item, or `undefined`. */
  peek(): T | undefined {
    return this.peekAt(0)
  }

  /** The first item, or `undefined`. */
  peekFront(): T | undefined {
    return this.peekAt(0)
  }

  /** The last item, or `undefined`. */
  peekBack(): T | undefined {
    return this.peekAt(-1)
  }

  /** A copy of the items, oldest first. */
  toArray(): T[] {
    return [...this.#items()]
  }

  /** Iterates over a copy of the items. */
  [Symbol.iterator](): Iterator<T> {
    return this.toArray()[Symbol.iterator]()
  }

  #readOnly(method: string): never {
    throw new TypeError(
      `${this.#name}.${method}(): this is a read-only view of the lifeguard pool's state; use the pool's own methods (getConnection, release, destroy, end)`,
    )
  }

  /** Throws: the view is read-only. */
  push(..._items: unknown[]): never {
    return this.#readOnly('push')
  }

  /** Throws: the view is read-only. */
  unshift(..._items: unknown[]): never {
    return this.#readOnly('unshift')
  }

  /** Throws: the view is read-only. */
  shift(): never {
    return this.#readOnly('shift')
  }

  /** Throws: the view is read-only. */
  pop(): never {
    return this.#readOnly('pop')
  }

  /** Throws: the view is read-only. */
  removeOne(_index: number): never {
    return this.#readOnly('removeOne')
  }

  /** Throws: the view is read-only. */
  remove(_index: number, _count?: number): never {
    return this.#readOnly('remove')
  }

  /** Throws: the view is read-only. */
  splice(_index: number, _count?: number, ..._items: unknown[]): never {
    return this.#readOnly('splice')
  }

  /** Throws: the view is read-only. */
  clear(): never {
    return this.#readOnly('clear')
  }
}
