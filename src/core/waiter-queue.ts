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
  /** When the waiter gives up, on the monotonic clock (`performance.now()`). */
  readonly deadline: number
  /** When it started waiting. */
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

  constructor(enqueuedAt: number, timeout: number, shared: boolean, stack: string | undefined) {
    this.enqueuedAt = enqueuedAt
    this.deadline = enqueuedAt + timeout
    this.shared = shared
    this.stack = stack
    this.promise = new Promise<T>((resolve, reject) => {
      this.resolve = resolve
      this.reject = reject
    })
  }
}

/**
 * The FIFO queue of waiters, with their deadlines and abort signals.
 *
 * Timeouts cost no timer per waiter on the hot path: waiters that use the pool's default
 * timeout join in deadline order, so one shared timer armed for the earliest of them is enough.
 * When it fires, the queue expires every due waiter from the head and re-arms for the next.
 * A waiter with a timeout of its own (rare) gets its own timer.
 */
export class WaiterQueue<T> {
  readonly #list = new LinkedList<Waiter<T>>()
  readonly #onExpire: (waiter: Waiter<T>) => void
  readonly #onAbort: (waiter: Waiter<T>) => void
  #timer: NodeJS.Timeout | undefined
  #timerAt = Number.POSITIVE_INFINITY

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
      if (this.#timer === undefined || waiter.deadline < this.#timerAt) this.#arm(waiter.deadline)
      else if (this.#list.size === 1) this.#timer.ref()
    } else {
      waiter.timer = setTimeout(() => this.#expire(waiter), waiter.deadline - performance.now())
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
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    this.#timerAt = Number.POSITIVE_INFINITY
    return all
  }

  #take(waiter: Waiter<T>): boolean {
    if (!this.#list.remove(waiter)) return false
    if (waiter.timer !== undefined) clearTimeout(waiter.timer)
    if (waiter.onAbort !== undefined) waiter.signal!.removeEventListener('abort', waiter.onAbort)
    // An armed shared timer must not keep the process alive once nobody waits.
    if (this.#list.size === 0 && this.#timer !== undefined) this.#timer.unref()
    return true
  }

  #expire(waiter: Waiter<T>): void {
    if (this.#take(waiter)) this.#onExpire(waiter)
  }

  #arm(at: number): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timerAt = at
    this.#timer = setTimeout(() => this.#sweep(), Math.max(0, at - performance.now()))
  }

  #sweep(): void {
    this.#timer = undefined
    this.#timerAt = Number.POSITIVE_INFINITY
    const now = performance.now()
    for (const waiter of this.#list) {
      if (!waiter.shared) continue
      if (waiter.deadline > now) {
        this.#arm(waiter.deadline)
        return
      }
      this.#expire(waiter)
    }
  }
}
