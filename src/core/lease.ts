import type { ConnectionRecord } from './connection-record.js'
import { LeaseReleasedError } from './errors.js'

/** What a lease asks of its pool; kept narrow so that a lease holds no more than it needs. */
export interface LeaseOwner<C> {
  /** Takes a connection back; `destroy` discards it instead of lending it again. */
  giveBack(record: ConnectionRecord<C>, destroy: boolean, reason: unknown): void
}

/**
 * One borrow of a connection. It is dead once released or destroyed: a second `release()` or
 * `destroy()` throws `LeaseReleasedError`, and so does reading `connection`, so that use after
 * release fails loudly (HikariCP's closed proxy). A lease that the pool revoked (it was
 * destroyed, or `close()` timed out) accepts one more `release()` or `destroy()` as a no-op.
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

  /** @internal Leases are made by the pool. */
  constructor(owner: LeaseOwner<C>, record: ConnectionRecord<C>) {
    this.#owner = owner
    this.#record = record
  }

  /** The driver's connection. Throws `LeaseReleasedError` once the lease is over. */
  get connection(): C {
    const record = this.#record
    if (record === undefined) throw new LeaseReleasedError('This lease was already released')
    return record.connection as C
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
    this.#owner.giveBack(this.#take(), false, undefined)
  }

  /**
   * Discards the connection instead of returning it. Pass the error that made it unusable: when
   * the dialect calls it a disconnect, every older connection is invalidated too.
   */
  destroy(reason?: unknown): void {
    if (this.#revoked) return
    this.#owner.giveBack(this.#take(), true, reason)
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

  /**
   * @internal Ends the lease without its holder: the pool was destroyed, or its close timed out.
   * The holder's later `release()` or `destroy()` is then a no-op, since it did nothing wrong.
   */
  revoke(): void {
    this.#record = undefined
    this.#revoked = true
  }

  /**
   * @internal A new lease on the same connection, answering to another owner: a request scope
   * lends its connection to each query this way. Throws `LeaseReleasedError` once this one is over.
   */
  sublease(owner: LeaseOwner<C>): Lease<C> {
    const record = this.#record
    if (record === undefined) throw new LeaseReleasedError('This lease was already released')
    return new Lease(owner, record)
  }

  #take(): ConnectionRecord<C> {
    const record = this.#record
    if (record === undefined) throw new LeaseReleasedError('This lease was already released')
    this.#record = undefined
    return record
  }
}
