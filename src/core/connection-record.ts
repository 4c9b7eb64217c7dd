import type { BudgetSlot } from './connection-budget.js'
import type { ListNode } from './linked-list.js'

/**
 * Where a record is in its life. A record's state is simply which count it is in; the pool
 * changes it in one place only (`move()` in pool-core.ts), so the counts always add up to the
 * total. `closed` means outside the pool: a record is born there and ends there.
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
 * The legal moves of a record, from each state to the next (see docs/architecture.md):
 *
 * - a new record enters the pool `connecting`; a failed connect leaves it at once (`closed`);
 * - an open connection is lent (`leased`), parked (`idle`) or closed (`closing`), from wherever
 *   it became ready: just opened, pinged (`validating`) or reset (`resetting`);
 * - a returned one is reset, parked or closed; a lease handed straight to the next caller stays
 *   `leased` without a move;
 * - only `closing` leads to `closed`, once the dialect closed it.
 */
export const TRANSITIONS: Readonly<Record<RecordState, readonly RecordState[]>> = {
  closed: ['connecting'],
  connecting: ['idle', 'leased', 'closing', 'closed'],
  idle: ['leased', 'validating', 'closing'],
  leased: ['idle', 'resetting', 'closing'],
  resetting: ['idle', 'leased', 'closing'],
  validating: ['idle', 'leased', 'closing'],
  closing: ['closed'],
}

/**
 * Whether `move()` checks each move against {@link TRANSITIONS}. Off in production, where the
 * check would cost on every borrow and a throw could only hurt; the unit tests turn it on
 * (test/support/invariants.ts).
 */
export const transitionChecks = { enabled: false }

/** Throws when moving `record` to `to` is not in {@link TRANSITIONS}: a bug in the pool. */
export function checkTransition(
  record: { readonly id: number; readonly state: RecordState },
  to: RecordState,
): void {
  if (!TRANSITIONS[record.state].includes(to)) {
    throw new Error(
      `lifeguard bug: connection #${record.id} cannot move from ${record.state} to ${to}`,
    )
  }
}

/**
 * The record's current lease, which it only compares by identity: the pool ends it through
 * lease.ts's module-private `revokeLease`. Opaque, so that the record need not know the `Lease`
 * class (which knows the record).
 */
export type RecordLease = object

/**
 * One physical connection and what the pool knows of it: its state, when it was made and when
 * it expires. It is the long-lived slot (SQLAlchemy's record, HikariCP's `PoolEntry`); each
 * borrow of it is a separate `Lease`.
 */
export class ConnectionRecord<C> implements ListNode<ConnectionRecord<C>> {
  prev: ConnectionRecord<C> | undefined = undefined
  next: ConnectionRecord<C> | undefined = undefined
  list: object | undefined = undefined

  /** A number unique within the pool, for logs and events. */
  readonly id: number
  /** Changed by the pool's `move()` only. */
  state: RecordState = 'closed'
  /** The driver's connection, once connected. */
  connection: C | undefined = undefined
  /** The slot of the pool's shared budget this connection holds, given back when it is closed. */
  slot: BudgetSlot | undefined = undefined
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
  lease: RecordLease | undefined = undefined
  /**
   * How many sharing callers (`acquire({ shared: true })`) hold it now: while it is above 0 the
   * connection is lent to them together and `lease` stays unset. Changed by the pool only.
   */
  shares = 0
  /**
   * The sharing callers' leases, while `shares` is above 0, each with when it was lent (`NaN`
   * when nobody times leases): revoked if it closes under them.
   */
  sharers: Map<RecordLease, number> | undefined = undefined
  /**
   * The sharer whose statement is known to run long (`acquire({ shared: 'last' })`): nobody
   * joins the connection until it gives it back.
   */
  sealedBy: RecordLease | undefined = undefined
  /** Whether the dialect turned pipelining on for the current sharing callers. */
  pipelined = false
  /**
   * A sharing caller destroyed its lease without a reason while others still shared it: nobody
   * joins it any more, and it is retired once the last of them gives it back.
   */
  retiring = false
  /** Set when the driver reported the connection dead while the pool could not close it yet. */
  dead = false
  /**
   * Set with `dead` when what condemned it was a read-only error (the server refuses writes):
   * that error, for the `'invalidate'` event.
   */
  readOnly: object | undefined = undefined
  /** Aborts the connect in progress. */
  abort: AbortController | undefined = undefined
  /**
   * Under `connectErrors: 'reject'`, the waiter this connect was opened for, while it connects:
   * it gets the connection, or the failure, if it still waits (pg-pool binds a new client to its
   * caller the same way).
   */
  openedFor: object | undefined = undefined
  /** Retires the connection at `expiresAt`. */
  lifetimeTimer: NodeJS.Timeout | undefined = undefined
  /** Emits `'leak'` when a lease is held too long. */
  leakTimer: NodeJS.Timeout | undefined = undefined

  constructor(id: number) {
    this.id = id
  }
}
