import { LinkedList, type ListNode } from './linked-list.js'

function noop(): void {}

/** The hedge delay before the pool has timed any ping: one slow round trip on a wide network. */
export const INITIAL_HEDGE_MS = 100

/**
 * The shortest hedge delay. A ping on a local network answers in well under a millisecond; the
 * floor keeps ordinary jitter (a GC pause, a busy event loop) from hedging every ping.
 */
export const MIN_HEDGE_MS = 5

/** The longest hedge delay, however slow the pings seen: a borrower never waits longer for one. */
export const MAX_HEDGE_MS = 1_000

/**
 * When to give up waiting on a pre-ping and offer the borrower another connection: the ping times
 * the pool has seen, smoothed as TCP smooths round-trip times to set its retransmission timeout
 * (RFC 6298: `srtt + 4 × rttvar`, gains 1/8 and 1/4), kept between {@link MIN_HEDGE_MS} and
 * {@link MAX_HEDGE_MS}. A ping that takes longer than that is far outside what the link has shown,
 * which is what a half-open connection (packets swallowed, socket open) looks like. Only answered
 * pings are timed: a silent one tells nothing of the link's speed.
 */
export class PingHedge {
  /** The smoothed ping time, in ms; -1 before the first sample. */
  private srtt = -1
  /** The smoothed mean deviation of the ping time, in ms. */
  private rttvar = 0

  /** Records how long an answered ping took, in ms. */
  sample(ms: number): void {
    if (!(ms >= 0)) return
    if (this.srtt < 0) {
      this.srtt = ms
      this.rttvar = ms / 2
      return
    }
    this.rttvar += (Math.abs(this.srtt - ms) - this.rttvar) / 4
    this.srtt += (ms - this.srtt) / 8
  }

  /** How long a ping may take before the pool hedges it, in ms. */
  get delay(): number {
    if (this.srtt < 0) return INITIAL_HEDGE_MS
    return Math.min(MAX_HEDGE_MS, Math.max(MIN_HEDGE_MS, this.srtt + 4 * this.rttvar))
  }
}

/** The signal a ping gets when it does not declare one: nothing aborts it. */
const NEVER_ABORTED = new AbortController().signal

/** One ping in flight, as the {@link PingWatch} sees it: a node of its list. */
interface Watched extends ListNode<Watched> {
  /** When it is slow (hedged), and when it times out, on `performance.now()`'s clock. */
  readonly slowAt: number
  readonly expiresAt: number
  slow: boolean
  readonly onSlow: () => void
  readonly onTimeout: () => Error
  /** The ping's signal, aborted at its timeout; none when the ping takes no signal. */
  readonly controller: AbortController | undefined
  resolve: () => void
  reject: (error: unknown) => void
}

/**
 * Watches the pings in flight with one timer for all of them, aimed at the next deadline: a
 * ping's hedge delay, after which `onSlow` is called once (then the pool looks elsewhere for its
 * borrower), and its timeout, at which its signal aborts and it rejects, even if the ping ignores
 * its signal. A ping that answers in time arms no timer: the timer stays armed and serves the next
 * pings, so pinging on every checkout costs no timer per ping. The timer is unref'd: a ping in
 * flight keeps the process alive by its connection's socket (ref'd once out of the idle list) or
 * by the waiter it serves, as before. `onSlow` is called on the event loop's check phase, after
 * I/O: an answer that arrived while the loop was busy is read first, so a stalled loop does not
 * hedge a ping that answered.
 */
export class PingWatch {
  /** A list, not a `Set`: adding and removing a ping on every checkout allocates nothing. */
  private readonly pings = new LinkedList<Watched>()
  private timer: NodeJS.Timeout | undefined = undefined
  /** When the timer fires; `Infinity` when none is armed. */
  private due = Number.POSITIVE_INFINITY
  private readonly fire = () => this.check()

  /**
   * Runs `ping`, started at `now`, with a hedge after `hedgeAfter` ms (none when it is not
   * below `timeout`) and a timeout after `timeout` ms, which rejects with `onTimeout()`.
   * `takesSignal`: whether `ping` uses its signal; if not, it gets one that never aborts, and no
   * `AbortController` is made (pinging on every checkout, each one cost as much as the ping's
   * own bookkeeping).
   */
  run(
    ping: (signal: AbortSignal) => PromiseLike<void> | void,
    now: number,
    hedgeAfter: number,
    timeout: number,
    onSlow: () => void,
    onTimeout: () => Error,
    takesSignal = true,
  ): Promise<void> {
    const controller = takesSignal ? new AbortController() : undefined
    const watched: Watched = {
      slowAt: now + hedgeAfter,
      expiresAt: now + timeout,
      slow: hedgeAfter >= timeout,
      onSlow,
      onTimeout,
      controller,
      resolve: noop,
      reject: noop,
      prev: undefined,
      next: undefined,
      list: undefined,
    }
    const promise = new Promise<void>((resolve, reject) => {
      watched.resolve = resolve
      watched.reject = reject
    })
    this.pings.push(watched)
    this.arm(watched.slow ? watched.expiresAt : watched.slowAt, now)
    try {
      Promise.resolve(ping(controller?.signal ?? NEVER_ABORTED)).then(
        () => this.settle(watched, undefined, false),
        (error) => this.settle(watched, error, true),
      )
    } catch (error) {
      this.settle(watched, error, true)
    }
    return promise
  }

  /** Clears the timer (the pool closes): the pings still in flight are left to their connections' close. */
  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    this.due = Number.POSITIVE_INFINITY
  }

  private settle(watched: Watched, error: unknown, failed: boolean): void {
    // Gone from the list: it timed out already, and its promise is settled.
    if (!this.pings.remove(watched)) return
    if (failed) watched.reject(error)
    else watched.resolve()
  }

  private arm(at: number, now: number): void {
    if (at >= this.due) return
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.due = at
    this.timer = setTimeout(this.fire, Math.max(1, Math.ceil(at - now)))
    this.timer.unref()
  }

  private check(): void {
    this.timer = undefined
    this.due = Number.POSITIVE_INFINITY
    const now = performance.now()
    let next = Number.POSITIVE_INFINITY
    let slow: Watched[] | undefined
    for (let watched = this.pings.head; watched !== undefined; ) {
      const following = watched.next
      if (now >= watched.expiresAt) {
        this.pings.remove(watched)
        const error = watched.onTimeout()
        watched.controller?.abort(error)
        watched.reject(error)
        watched = following
        continue
      }
      if (!watched.slow && now >= watched.slowAt) {
        watched.slow = true
        if (slow === undefined) slow = []
        slow.push(watched)
      }
      const at = watched.slow ? watched.expiresAt : watched.slowAt
      if (at < next) next = at
      watched = following
    }
    if (slow !== undefined) {
      const hedged = slow
      setImmediate(() => {
        for (const watched of hedged) if (watched.list === this.pings) watched.onSlow()
      })
    }
    if (next !== Number.POSITIVE_INFINITY) this.arm(next, now)
  }
}
