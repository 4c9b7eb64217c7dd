import type { ConnectionRecord } from './connection-record.js'
import { LeaseReleasedError } from './errors.js'

/** What a lease asks of its pool; kept narrow so that a lease holds no more than it needs. */
export interface LeaseOwner<C> {
  /** Takes a connection back; `destroy` discards it instead of lending it again. */
  giveBack(record: ConnectionRecord<C>, destroy: boolean, reason: unknown, lease: Lease<C>): void
}

// The pool's side of a lease, kept out of the class's public face: `src/index.ts` re-exports only
// `Lease`, so these are neither reachable nor typed for users. Assigned by the class's static block below.

/** Makes the lease by which the pool lends `record`. */
export let lendLease: <C>(owner: LeaseOwner<C>, record: ConnectionRecord<C>) => Lease<C>

/**
 * Ends `lease` without its holder: the pool was destroyed, or its close timed out. The holder's
 * later `release()` or `destroy()` is then a no-op, since it did nothing wrong.
 */
export let revokeLease: <C>(lease: Lease<C>) => void

/**
 * A new lease on `lease`'s connection, answering to another owner: a request scope lends its
 * connection to each query this way. Throws `LeaseReleasedError` once `lease` is over.
 */
export let sublease: <C>(lease: Lease<C>, owner: LeaseOwner<C>) => Lease<C>

/** Proves that a constructor call comes from this module; never exported. */
const MAKING = Symbol('lifeguard.lease')

/**
 * One borrow of a connection. It is dead once released or destroyed: a second `release()` or
 * `destroy()` throws `LeaseReleasedError`, and so does reading `connection`, so that use after
 * release fails loudly (HikariCP's closed proxy). A lease that the pool revoked (it was
 * destroyed, or `close()` timed out) accepts one more `release()` or `destroy()` as a no-op.
 *
 * Leases come only from the pool (`acquire()`, `use()`); `new Lease()` throws a `TypeError`.
 * `instanceof Lease` works as usual.
 *
 * @example
 * ```ts
 * await using lease = await pool.acquire()
 * await lease.connection.query('SELECT 1')
 * // released here, even if the query threw
 * ```
 */
export class Lease<C> {
  #record: ConnectionRecord<C> | undefined
  #revoked = false
  readonly #owner: LeaseOwner<C>

  static {
    // The pool's own access, given here because only the class body can reach `#record`: a
    // method, even under a private symbol, would be found on the prototype and shipped in the
    // .d.ts, and a user who revoked their own lease would leak its connection for good.
    lendLease = (owner, record) => new Lease(MAKING, owner, record)
    revokeLease = (lease) => {
      lease.#record = undefined
      lease.#revoked = true
    }
    sublease = (lease, owner) => new Lease(MAKING, owner, lease.#live())
  }

  private constructor(making: typeof MAKING, owner: LeaseOwner<C>, record: ConnectionRecord<C>) {
    if (making !== MAKING) {
      throw new TypeError('Lease is not constructable: leases come from pool.acquire() or use()')
    }
    this.#owner = owner
    this.#record = record
  }

  /** The driver's connection. Throws `LeaseReleasedError` once the lease is over. */
  get connection(): C {
    return this.#live().connection as C
  }

  /** Whether the lease is still held. */
  get active(): boolean {
    return this.#record !== undefined
  }

  /**
   * Gives the connection back. Synchronous: the pool resets it in the background before it
   * lends it again. Throws `LeaseReleasedError` if the lease is already over.
   */
  release(): void {
    if (this.#revoked) return
    this.#owner.giveBack(this.#take(), false, undefined, this)
  }

  /**
   * Discards the connection instead of returning it. Pass the error that made it unusable: when
   * the dialect calls it a disconnect, every older connection is invalidated too. A lease of a
   * sharing caller (`acquire({ shared: true })`) whose connection others still share: with an
   * error, the connection is torn down at once, their statements failing with it; with none, it
   * takes no one new and is retired once the last of them gives it back.
   */
  destroy(reason?: unknown): void {
    if (this.#revoked) return
    this.#owner.giveBack(this.#take(), true, reason, this)
  }

  /** Releases the lease unless it is already over, so `using` works after an explicit release. */
  [Symbol.dispose](): void {
    if (this.#record !== undefined) this.release()
  }

  /** Releases the lease unless it is already over, so `await using` works. */
  [Symbol.asyncDispose](): Promise<void> {
    this[Symbol.dispose]()
    return Promise.resolve()
  }

  #live(): ConnectionRecord<C> {
    const record = this.#record
    if (record === undefined) throw new LeaseReleasedError('This lease was already released')
    return record
  }

  #take(): ConnectionRecord<C> {
    const record = this.#live()
    this.#record = undefined
    return record
  }
}
