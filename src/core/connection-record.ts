import type { Lease } from './lease.js'
import type { ListNode } from './linked-list.js'

/**
 * Where a record is in its life. A record's state is simply which count it is in; the pool
 * changes it in one place only (`move()` in pool.ts), so the counts always add up to the total.
 */
export type RecordState =
  | 'connecting'
  | 'idle'
  | 'leased'
  | 'resetting'
  | 'validating'
  | 'closing'
  | 'closed'

/**
 * One physical connection and what the pool knows of it: its state, when it was made and when
 * it expires. It is the long-lived slot (SQLAlchemy's record, HikariCP's `PoolEntry`); each
 * borrow of it is a separate {@link Lease}.
 */
export class ConnectionRecord<C> implements ListNode<ConnectionRecord<C>> {
  prev: ConnectionRecord<C> | undefined = undefined
  next: ConnectionRecord<C> | undefined = undefined
  list: object | undefined = undefined

  /** A number unique within the pool, for logs and events. */
  readonly id: number
  state: RecordState = 'connecting'
  /** The driver's connection, once connected. */
  connection: C | undefined = undefined
  /**
   * The order in which connections were established. A disconnect invalidates every connection
   * established before it (SQLAlchemy's rule), by comparing this with the pool's floor.
   */
  generation = 0
  /** When the connection was established, in ms on the monotonic clock. */
  createdAt = 0
  /** When it must be retired, jitter included. */
  expiresAt = Number.POSITIVE_INFINITY
  /** Set by the lifetime timer at `expiresAt`, so the hot path needs no clock to check it. */
  expired = false
  /** When it was last released, validated or connected. */
  lastUsedAt = 0
  /** When the current lease began. */
  leasedAt = 0
  /** The current lease, while leased. */
  lease: Lease<C> | undefined = undefined
  /** Set when the driver reported the connection dead while the pool could not close it yet. */
  dead = false
  /** Aborts the connect in progress. */
  abort: AbortController | undefined = undefined
  /** Retires the connection at `expiresAt`. */
  lifetimeTimer: NodeJS.Timeout | undefined = undefined
  /** Emits `'leak'` when a lease is held too long. */
  leakTimer: NodeJS.Timeout | undefined = undefined

  constructor(id: number) {
    this.id = id
  }
}
