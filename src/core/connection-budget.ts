/**
 * A cap on physical connections shared by many pools, in one process or many (`lifeguard/redis`'s
 * `redisBudget()` is one). A pool takes a slot before it opens a connection and gives it back
 * when that connection has closed; it never asks per `acquire()`, so borrowing a connection the
 * pool already holds never waits on the budget.
 *
 * The pool knows nothing else of it: where the slots live, how they expire, who waits.
 */
export interface ConnectionBudget {
  /**
   * Takes one slot, waiting for one to come free. Resolves with the slot; rejects with
   * `signal.reason` once `signal` aborts (the pool closes), and then holds nothing. It does not
   * reject while its store is unreachable: it waits (or, failing open, resolves). It must not
   * grant a slot that {@link ConnectionBudget.surplus} would at once ask back (a process above its
   * share while another waits below its own): the pool would connect and close in turn.
   */
  take(signal: AbortSignal): Promise<BudgetSlot>
  /**
   * How many connections this process should give back now, so that other processes waiting for
   * a slot get theirs: the pool closes that many of its connections as they come back, instead of
   * lending them again, and opens none while it is above zero. Slots marked
   * {@link BudgetSlot.closing} count as given back already, so that several pools sharing one
   * budget give back no more than asked. It must be zero whenever this process holds no more than
   * its share (or nobody waits), or pools would close connections for nothing. Read on every
   * release: it must not do I/O.
   */
  surplus(): number
  /** Why a `take()` is waiting, for the error of a caller who gave up: a sentence, and the store's last error. */
  blocked(): { message: string; cause?: unknown }
  /** Tells `listener` what the pool should say in its `'warning'` event; returns the unsubscribe function. */
  subscribe(listener: BudgetListener): () => void
}

/** One slot of a {@link ConnectionBudget}: the right to hold one physical connection. */
export interface BudgetSlot {
  /** Its connection is closing: from now on {@link ConnectionBudget.surplus} counts the slot as given back. */
  closing(): void
  /** Gives the slot back; idempotent. */
  release(): void
}

/** What a {@link ConnectionBudget} tells the pools that use it. */
export interface BudgetListener {
  /**
   * The budget's store cannot be reached (`LIFEGUARD_BUDGET_UNREACHABLE`), or it refuses the
   * budget's commands (`LIFEGUARD_BUDGET_REFUSED`: permissions, a wrong key type, a client in the
   * wrong mode): the pool's `'warning'` event; `message` names no secret.
   */
  warning(code: 'LIFEGUARD_BUDGET_UNREACHABLE' | 'LIFEGUARD_BUDGET_REFUSED', message: string): void
  /**
   * {@link ConnectionBudget.surplus} changed: above zero, idle connections can close now; back at
   * zero, the pool may open connections for its waiters again.
   */
  shed(): void
}

/** Whether `value` has the shape of a {@link ConnectionBudget}. */
export function isConnectionBudget(value: unknown): value is ConnectionBudget {
  if (typeof value !== 'object' || value === null) return false
  const budget = value as Record<string, unknown>
  return (
    typeof budget.take === 'function' &&
    typeof budget.surplus === 'function' &&
    typeof budget.blocked === 'function' &&
    typeof budget.subscribe === 'function'
  )
}
