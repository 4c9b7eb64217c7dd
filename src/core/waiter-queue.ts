import { watchAbort } from './abort-watch.js'
import { LinkedList, type ListNode } from './linked-list.js'

/** The rare parts of a waiter, allocated only when a call needs them. */
export interface WaiterExtra {
  /** Its own timeout timer, when its timeout differs from the pool's. */
  timer?: NodeJS.Timeout | undefined
  /** Ends the watch on its abort signal. */
  unwatch?: (() => void) | undefined
  /** The stack of the `acquire()` call, when leak detection is on. */
  stack?: string | undefined
  /** When it started waiting, when someone will see the wait time (events, logs). */
  enqueuedAt?: number | undefined
  /** Its traced acquire's context (`lifeguard:acquire`), told which connection it was lent. */
  trace?: { connectionId?: number | undefined } | undefined
}

/**
 * One caller of `acquire()` waiting for a connection. It settles exactly once: the queue
 * removes it before it is served, timed out or aborted, so a waiter that has given up can never
 * receive a connection (psycopg_pool's rule).
 *
 * It is kept small, since ten thousand of them may wait: the common case holds its links, its
 * deadline and the promise's resolve function, and a rejection goes through `resolve` too (with
 * a rejected promise), so the reject function need not be kept.
 */
export class Waiter<T> implements ListNode<Waiter<T>> {
  prev: Waiter<T> | undefined = undefined
  next: Waiter<T> | undefined = undefined
  list: object | undefined = undefined
  /** How long it may wait, in ms. */
  readonly timeout: number
  /**
   * When it gives up, on the monotonic clock (`performance.now()`); `undefined` until the queue
   * stamps it (see {@link WaiterQueue}). Not a number until then, so that the field holds a
   * tagged value: a number field would box a fresh heap number in every waiter, while most
   * waiters are served before any stamp.
   */
  deadline: number | undefined = undefined
  /** Whether the queue's shared timer covers it; otherwise it has a timer of its own. */
  readonly shared: boolean
  /** Settles the caller's promise. */
  readonly resolve: (value: T | PromiseLike<T>) => void
  extra: WaiterExtra | undefined
  /**
   * The caller may share a connection with other such callers (`acquire({ shared })`): `true`,
   * or `'last'` when nobody may join behind it.
   */
  pipelines: boolean | 'last' = false

  constructor(
    timeout: number,
    shared: boolean,
    resolve: (value: T | PromiseLike<T>) => void,
    extra: WaiterExtra | undefined,
  ) {
    this.timeout = timeout
    this.shared = shared
    this.resolve = resolve
    this.extra = extra
  }

  /** Rejects the caller's promise. */
  reject(reason: unknown): void {
    this.resolve(Promise.reject(reason))
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
  readonly #onAbort: (waiter: Waiter<T>, signal: AbortSignal) => void
  /** Shared-timeout waiters that joined since the last stamp: a suffix of the queue. */
  #unstamped = 0
  #stampTimer: NodeJS.Timeout | undefined
  #timer: NodeJS.Timeout | undefined

  /**
   * @param onExpire - called for a waiter whose deadline passed, after it left the queue
   * @param onAbort - called for a waiter whose signal aborted, after it left the queue
   */
  constructor(
    onExpire: (waiter: Waiter<T>) => void,
    onAbort: (waiter: Waiter<T>, signal: AbortSignal) => void,
  ) {
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
      waiter.extra ??= {}
      waiter.extra.timer = setTimeout(() => this.#expire(waiter), waiter.timeout)
    }
    if (signal !== undefined) {
      waiter.extra ??= {}
      waiter.extra.unwatch = watchAbort(signal, () => {
        if (this.#take(waiter)) this.#onAbort(waiter, signal)
      })
    }
  }

  /** The waiter `index` places behind the head, or `undefined`; walks the queue, for small indexes. */
  at(index: number): Waiter<T> | undefined {
    let waiter = this.#list.head
    for (let i = 0; i < index && waiter !== undefined; i++) waiter = waiter.next
    return waiter
  }

  /** Removes a waiter still in the queue, disarming it; returns whether it was there. The caller must settle it. */
  remove(waiter: Waiter<T>): boolean {
    return this.#take(waiter)
  }

  /** Removes and returns the head waiter, disarming it; the caller must settle it. */
  shift(): Waiter<T> | undefined {
    const waiter = this.#list.head
    if (waiter !== undefined) this.#take(waiter)
    return waiter
  }

  /** Removes and returns the tail waiter (the newest), disarming it; the caller must settle it. */
  pop(): Waiter<T> | undefined {
    const waiter = this.#list.tail
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
    if (waiter.shared && waiter.deadline === undefined) this.#unstamped--
    const extra = waiter.extra
    if (extra !== undefined) {
      if (extra.timer !== undefined) clearTimeout(extra.timer)
      extra.unwatch?.()
    }
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
      if (!waiter.shared || waiter.deadline !== undefined) continue
      waiter.deadline = now + waiter.timeout
      this.#unstamped--
      first = waiter
    }
    this.#unstamped = 0
    // A timer already armed is due no later than these new, later deadlines.
    if (first !== undefined && this.#timer === undefined) {
      this.#arm(first.deadline as number)
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
      const deadline = waiter.deadline
      if (deadline === undefined) return
      if (deadline > now) {
        this.#arm(deadline)
        return
      }
      this.#expire(waiter)
    }
  }
}
