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

/**
 * Runs a ping with two deadlines on one timer: after `hedgeAfter` ms without an answer it calls
 * `onSlow` once (then the pool looks elsewhere for the borrower), and after `timeout` ms it
 * aborts the ping's signal and rejects with `onTimeout()`, even if the ping ignores its signal.
 * A ping that answers before `hedgeAfter` costs one timer, as a plain timeout would. A hedge is
 * called on the event loop's check phase, after I/O: an answer that arrived while the loop was
 * busy is read first, so a stalled loop does not hedge a ping that has answered.
 */
export function hedgedPing(
  ping: (signal: AbortSignal) => PromiseLike<void> | void,
  hedgeAfter: number,
  timeout: number,
  onSlow: () => void,
  onTimeout: () => Error,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const controller = new AbortController()
    let settled = false
    const expire = () => {
      if (settled) return
      settled = true
      const error = onTimeout()
      controller.abort(error)
      reject(error)
    }
    let timer: NodeJS.Timeout
    if (hedgeAfter < timeout) {
      timer = setTimeout(() => {
        // The rest of the timeout, from when the hedge was due.
        timer = setTimeout(expire, timeout - hedgeAfter)
        setImmediate(() => {
          if (!settled) onSlow()
        })
      }, hedgeAfter)
    } else {
      timer = setTimeout(expire, timeout)
    }
    const settle = (error: unknown, failed: boolean) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (failed) reject(error)
      else resolve()
    }
    try {
      Promise.resolve(ping(controller.signal)).then(
        () => settle(undefined, false),
        (error) => settle(error, true),
      )
    } catch (error) {
      settle(error, true)
    }
  })
}
