import { LinkedList, type ListNode } from './linked-list.js'

/**
 * One caller of `acquire()` waiting for a connection. It settles exactly once: the queue
 * removes it before it is served, timed out or aborted, so a waiter that has given up can never
 * receive a connection (psycopg_pool's rule).
 */
export class Waiter<T> implements ListNode<Waiter<T>> {
  prev: Waiter<T> | undefined = undefined
  next: Waiter<T> | undefined = undefined
  list: object | undefined = undefined
  /** How long it may wait, in ms. */
  readonly timeout: number
  /**
   * When it gives up, on the monotonic clock (`performance.now()`); `Infinity` until the queue
   * stamps it (see {@link WaiterQueue}).
   */
  deadline = Number.POSITIVE_INFINITY
  /** When it started waiting, read only when someone needs the wait time (events, logs); else `NaN`. */
  readonly enqueuedAt: number
  /** Whether the queue's shared timer covers it; otherwise it has a timer of its own. */
  readonly shared: boolean
  /** The stack of the `acquire()` call, kept only when leak detection is on. */
  readonly stack: string | undefined
  resolve!: (value: T) => void
  reject!: (reason: unknown) => void
  readonly promise: Promise<T>
  timer: NodeJS.Timeout | undefined = undefined
  signal: AbortSignal | undefined = undefined
  onAbort: (() => void) | undefined = undefined

  constructor(timeout: number, shared: boolean, enqueuedAt: number, stack: string | undefined) {
    this.timeout = timeout
    this.shared = shared
    this.enqueuedAt = enqueuedAt
    this.stack = stack
    this.promise = new Promise<T>((resolve, reject) => {
      this.resolve = resolve
      this.reject = reject
    })
  }
}

/** How soon after joining the queue a waiter's deadline is stamped, in ms. */
const STAMP_MS = 1

/**
 * The FIFO queue of waiters, with their deadlines and abort signals.
 *
 * Timeouts cost neither a timer nor a clock read per waiter on the hot path, because under load
 * both dominate the cost of a hand-off. A waiter that uses the pool's default timeout joins with
 * no deadline; a stamping timer, armed once per burst, runs within about a millisecond and gives
 * every waiter that joined since the last stamp the deadline `stamp time + timeout`. The stamp
 * time is later than each of those waiters joined (it runs after them), so a deadline is never
 * early, and it is late by about a millisecond at most. Stamped in join order, the deadlines are
 * sorted, so one shared timer armed for the earliest is enough: when it fires, the queue expires
 * every due waiter from the head and re-arms for the next. A waiter with a timeout of its own
 * (rare) gets its own timer instead.
 */
export class WaiterQueue<T> {
  readonly #list = new LinkedList<Waiter<T>>()
  readonly #onExpire: (waiter: Waiter<T>) => void
  readonly #onAbort: (waiter: Waiter<T>) => void
  /** Shared-timeout waiters that joined since the last stamp: a suffix of the queue. */
  #unstamped = 0
  #stampTimer: NodeJS.Timeout | undefined
  #timer: NodeJS.Timeout | undefined

  /**
   * @param onExpire - called for a waiter whose deadline passed, after it left the queue
   * @param onAbort - called for a waiter whose signal aborted, after it left the queue
   */
  constructor(onExpire: (waiter: Waiter<T>) => void, onAbort: (waiter: Waiter<T>) => void) {
    this.#onExpire = onExpire
    this.#onAbort = onAbort
  }

  /** How many callers wait. */
  get size(): number {
    return this.#list.size
  }

  /** The waiter served next, or `undefined`. */
  peek(): Waiter<T> | undefined {
    return this.#list.head
  }

  /** Adds a waiter at the tail and arms its timeout and abort signal. */
  push(waiter: Waiter<T>, signal: AbortSignal | undefined): void {
    this.#list.push(waiter)
    if (waiter.shared) {
      this.#unstamped++
      if (this.#stampTimer === undefined) this.#stampTimer = setTimeout(this.#stamp, STAMP_MS)
    } else if (waiter.timeout !== Number.POSITIVE_INFINITY) {
      waiter.timer = setTimeout(() => this.#expire(waiter), waiter.timeout)
    }
    if (signal !== undefined) {
      waiter.signal = signal
      waiter.onAbort = () => {
        if (this.#take(waiter)) this.#onAbort(waiter)
      }
      signal.addEventListener('abort', waiter.onAbort, { once: true })
    }
  }

  /** Removes and returns the head waiter, disarming it; the caller must settle it. */
  shift(): Waiter<T> | undefined {
    const waiter = this.#list.head
    if (waiter !== undefined) this.#take(waiter)
    return waiter
  }

  /** Removes every waiter, disarming each; the caller must settle them. */
  drain(): Waiter<T>[] {
    const all = [...this.#list]
    for (const waiter of all) this.#take(waiter)
    for (const timer of [this.#timer, this.#stampTimer]) {
      if (timer !== undefined) clearTimeout(timer)
    }
    this.#timer = undefined
    this.#stampTimer = undefined
    return all
  }

  #take(waiter: Waiter<T>): boolean {
    if (!this.#list.remove(waiter)) return false
    if (waiter.shared) {
      if (waiter.deadline === Number.POSITIVE_INFINITY) this.#unstamped--
    } else if (waiter.timer !== undefined) {
      clearTimeout(waiter.timer)
    }
    if (waiter.onAbort !== undefined) waiter.signal!.removeEventListener('abort', waiter.onAbort)
    // An armed shared timer must not keep the process alive once nobody waits.
    if (this.#list.size === 0 && this.#timer !== undefined) this.#timer.unref()
    return true
  }

  #expire(waiter: Waiter<T>): void {
    if (this.#take(waiter)) this.#onExpire(waiter)
  }

  /** Gives the waiters that joined since the last stamp their deadlines, newest first. */
  readonly #stamp = (): void => {
    this.#stampTimer = undefined
    const now = performance.now()
    let first: Waiter<T> | undefined
    for (
      let waiter = this.#list.tail;
      this.#unstamped > 0 && waiter !== undefined;
      waiter = waiter.prev
    ) {
      if (!waiter.shared || waiter.deadline !== Number.POSITIVE_INFINITY) continue
      waiter.deadline = now + waiter.timeout
      this.#unstamped--
      first = waiter
    }
    this.#unstamped = 0
    // A timer already armed is due no later than these new, later deadlines.
    if (first !== undefined && this.#timer === undefined) {
      this.#arm(first.deadline)
    } else if (this.#timer !== undefined && this.#list.size > 0) {
      this.#timer.ref()
    }
  }

  #arm(at: number): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = setTimeout(() => this.#sweep(), Math.max(0, at - performance.now()))
  }

  #sweep(): void {
    this.#timer = undefined
    const now = performance.now()
    for (const waiter of this.#list) {
      if (!waiter.shared) continue
      // Unstamped: joined after every stamped one, so nothing later is due; the stamp re-arms.
      if (waiter.deadline === Number.POSITIVE_INFINITY) return
      if (waiter.deadline > now) {
        this.#arm(waiter.deadline)
        return
      }
      this.#expire(waiter)
    }
  }
}
