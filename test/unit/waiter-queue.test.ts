import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { Waiter, WaiterQueue } from '../../src/core/waiter-queue.js'
import { tick, useFakeClock } from '../support/clock.js'

/** A queue whose expiries and aborts are recorded, in order, by waiter name. */
function makeQueue() {
  const expired: string[] = []
  const aborted: Array<{ name: string; reason: unknown }> = []
  const names = new Map<Waiter<string>, string>()
  const queue = new WaiterQueue<string>(
    (waiter) => expired.push(names.get(waiter)!),
    (waiter, signal) => aborted.push({ name: names.get(waiter)!, reason: signal.reason }),
  )
  /** Adds a waiter on the shared timer (the pool's default timeout), or with a timer of its own. */
  function join(
    name: string,
    timeout: number,
    options: { shared?: boolean; signal?: AbortSignal } = {},
  ): Waiter<string> {
    const waiter = new Waiter<string>(timeout, options.shared ?? true, () => {}, undefined)
    names.set(waiter, name)
    queue.push(waiter, options.signal)
    return waiter
  }
  const order = () => {
    const out: string[] = []
    for (let w = queue.peek(); w !== undefined; w = w.next) out.push(names.get(w)!)
    return out
  }
  return { queue, join, expired, aborted, order }
}

beforeEach(() => useFakeClock())
afterEach(() => vi.useRealTimers())

describe('WaiterQueue: order', () => {
  it('serves first in, first out; shift and peek agree, and an empty queue gives undefined', () => {
    const { queue, join, order } = makeQueue()
    expect(queue.peek()).toBeUndefined()
    expect(queue.shift()).toBeUndefined()
    const a = join('a', 100)
    const b = join('b', 100)
    join('c', 100)
    expect(queue.size).toBe(3)
    expect(order()).toEqual(['a', 'b', 'c'])
    expect(queue.peek()).toBe(a)
    expect(queue.shift()).toBe(a)
    expect(queue.shift()).toBe(b)
    expect(order()).toEqual(['c'])
    expect(queue.size).toBe(1)
  })
})

describe('WaiterQueue: stamping', () => {
  it('joins without a deadline; one stamp timer a millisecond later gives each the stamp time + its timeout', async () => {
    const { join } = makeQueue()
    const before = vi.getTimerCount()
    const a = join('a', 100)
    const b = join('b', 100)
    const c = join('c', 250)
    // One stamping timer for the burst, not one per waiter.
    expect(vi.getTimerCount() - before).toBe(1)
    expect([a.deadline, b.deadline, c.deadline]).toEqual([undefined, undefined, undefined])
    const joined = performance.now()
    await tick(1)
    const stamped = performance.now()
    expect(stamped).toBeGreaterThan(joined)
    expect([a.deadline, b.deadline, c.deadline]).toEqual([
      stamped + 100,
      stamped + 100,
      stamped + 250,
    ])
    // The stamp timer is gone; the shared expiry timer took its place.
    expect(vi.getTimerCount() - before).toBe(1)
  })

  it('a later burst gets a later stamp, and earlier waiters keep theirs', async () => {
    const { join } = makeQueue()
    const a = join('a', 100)
    await tick(1)
    const first = a.deadline
    await tick(9)
    const b = join('b', 100)
    await tick(1)
    expect(a.deadline).toBe(first)
    expect(b.deadline).toBe((first as number) + 10)
  })

  it('stamps neither a waiter with its own timer nor one that left before the stamp', async () => {
    const { queue, join } = makeQueue()
    const own = join('own', 50, { shared: false })
    const gone = join('gone', 100)
    const kept = join('kept', 100)
    expect(queue.shift()).toBe(own)
    expect(queue.shift()).toBe(gone)
    await tick(1)
    expect(own.deadline).toBeUndefined()
    expect(gone.deadline).toBeUndefined()
    expect(kept.deadline).toBe(performance.now() + 100)
  })
})

describe('WaiterQueue: the shared timer and the sweep', () => {
  it('is never early and at most the stamp late: [T, T + 2 ms] after joining', async () => {
    const { join, expired } = makeQueue()
    join('a', 100) // stamped at 1 → due at 101
    await tick(2)
    join('b', 100) // stamped at 3 → due at 103
    await tick(98)
    expect(expired).toEqual([])
    await tick(1)
    // The sweep at a's deadline leaves b, due 2 ms later, alone.
    expect(expired).toEqual(['a'])
    await tick(1)
    expect(expired).toEqual(['a'])
    await tick(1)
    expect(expired).toEqual(['a', 'b'])
  })

  it('arms one shared timer for the earliest deadline and re-arms it for the next after each sweep', async () => {
    const { queue, join, expired } = makeQueue()
    const before = vi.getTimerCount()
    join('a', 100) // t=0, stamped at 1 → due at 101
    await tick(30)
    join('b', 100) // stamped at 31 → due at 131
    join('c', 100)
    await tick(20)
    join('d', 100) // stamped at 51 → due at 151
    await tick(1)
    // Three bursts, three deadlines, still one timer.
    expect(vi.getTimerCount() - before).toBe(1)
    await tick(50) // t=101
    expect(expired).toEqual(['a'])
    expect(vi.getTimerCount() - before).toBe(1) // re-armed for b and c
    await tick(29)
    expect(expired).toEqual(['a'])
    await tick(1) // t=131: b and c are due together, swept in one go, in order
    expect(expired).toEqual(['a', 'b', 'c'])
    expect(queue.size).toBe(1)
    await tick(20)
    expect(expired).toEqual(['a', 'b', 'c', 'd'])
    expect(queue.size).toBe(0)
    // Nobody waits and nothing is due: no timer left.
    expect(vi.getTimerCount() - before).toBe(0)
  })

  it('a waiter with a longer timeout behind a shorter one: the sweep stops at the first not due', async () => {
    // Deadlines are sorted only among equal timeouts; the pool gives every shared waiter the
    // same one. A mixed queue shows the sweep's rule: it stops at the first waiter not yet due.
    const { join, expired } = makeQueue()
    join('long', 200)
    join('short', 100)
    await tick(101)
    expect(expired).toEqual([])
    await tick(100)
    expect(expired).toEqual(['long', 'short'])
  })

  it('skips waiters that left (served or aborted) and expires the rest in order', async () => {
    const { queue, join, expired } = makeQueue()
    const a = join('a', 100)
    join('b', 100)
    const controller = new AbortController()
    join('c', 100, { signal: controller.signal })
    join('d', 100)
    await tick(1)
    expect(queue.shift()).toBe(a)
    controller.abort()
    await tick(100)
    expect(expired).toEqual(['b', 'd'])
    expect(queue.size).toBe(0)
  })

  it('waits for the stamp of waiters that joined after the timer was armed', async () => {
    const { join, expired } = makeQueue()
    join('a', 100) // due at 101
    await tick(100)
    join('b', 1) // unstamped when a's sweep runs at 101; stamped at 101 → due at 102
    await tick(1)
    expect(expired).toEqual(['a'])
    await tick(1)
    expect(expired).toEqual(['a', 'b'])
  })

  it('unrefs the shared timer when the queue empties, and refs it again for the next stamp', async () => {
    const { queue, join } = makeQueue()
    const armed: NodeJS.Timeout[] = []
    const setTimer = globalThis.setTimeout
    const spy = vi.spyOn(globalThis, 'setTimeout').mockImplementation(((
      fn: () => void,
      ms?: number,
    ) => {
      const timer = setTimer(fn, ms)
      armed.push(timer)
      return timer
    }) as typeof setTimeout)
    try {
      join('a', 100)
      await tick(1)
      const shared = armed.at(-1)!
      expect(shared.hasRef()).toBe(true)
      queue.shift()
      expect(shared.hasRef()).toBe(false)
      join('b', 100)
      await tick(1)
      expect(shared.hasRef()).toBe(true)
      // b is due after a's (stale) wake-up; the same timer serves, re-armed by the sweep.
      await tick(100)
      expect(queue.size).toBe(0)
    } finally {
      spy.mockRestore()
    }
  })
})

describe('WaiterQueue: own timers', () => {
  it('a waiter with a timeout of its own gets its own timer, at exactly its timeout', async () => {
    const { queue, join, expired } = makeQueue()
    const before = vi.getTimerCount()
    join('own', 50, { shared: false })
    join('shared', 100)
    expect(vi.getTimerCount() - before).toBe(2) // its timer and the stamp
    await tick(49)
    expect(expired).toEqual([])
    await tick(1)
    expect(expired).toEqual(['own'])
    expect(queue.size).toBe(1)
  })

  it('a waiter that may wait for ever has no timer at all', async () => {
    const { queue, join, expired } = makeQueue()
    const before = vi.getTimerCount()
    join('forever', Number.POSITIVE_INFINITY, { shared: false })
    expect(vi.getTimerCount()).toBe(before)
    await tick(3_600_000)
    expect(expired).toEqual([])
    expect(queue.size).toBe(1)
  })

  it('leaving clears its own timer', async () => {
    const { queue, join, expired } = makeQueue()
    const before = vi.getTimerCount()
    const own = join('own', 50, { shared: false })
    expect(queue.shift()).toBe(own)
    expect(vi.getTimerCount()).toBe(before)
    await tick(100)
    expect(expired).toEqual([])
  })
})

describe('WaiterQueue: abort signals', () => {
  it('an abort removes the waiter from the middle and reports it with the signal, once', async () => {
    const { queue, join, aborted, order } = makeQueue()
    const controller = new AbortController()
    join('a', 100)
    join('b', 100, { signal: controller.signal })
    join('c', 100)
    const reason = new Error('client went away')
    controller.abort(reason)
    controller.abort(new Error('again'))
    expect(aborted).toEqual([{ name: 'b', reason }])
    expect(order()).toEqual(['a', 'c'])
    expect(queue.size).toBe(2)
  })

  it('a waiter that left no longer listens to its signal', () => {
    const { queue, join, aborted } = makeQueue()
    const controller = new AbortController()
    const remove = vi.spyOn(controller.signal, 'removeEventListener')
    const w = join('a', 100, { signal: controller.signal })
    expect(queue.shift()).toBe(w)
    expect(remove).toHaveBeenCalledWith('abort', expect.any(Function))
    controller.abort()
    expect(aborted).toEqual([])
  })

  it('waiters sharing one signal put one listener on it, are aborted in order, and take it off once the last has left', () => {
    const { queue, join, aborted } = makeQueue()
    const controller = new AbortController()
    const add = vi.spyOn(controller.signal, 'addEventListener')
    const remove = vi.spyOn(controller.signal, 'removeEventListener')
    const names = Array.from({ length: 20 }, (_, i) => `w${i}`)
    for (const name of names) join(name, 100, { signal: controller.signal })
    expect(add).toHaveBeenCalledTimes(1)
    // Two served leave; the listener stays for the others.
    queue.shift()
    queue.shift()
    expect(remove).not.toHaveBeenCalled()
    controller.abort()
    expect(aborted.map((a) => a.name)).toEqual(names.slice(2))
    expect(queue.size).toBe(0)

    const again = new AbortController()
    const removeAgain = vi.spyOn(again.signal, 'removeEventListener')
    join('x', 100, { signal: again.signal })
    join('y', 100, { signal: again.signal })
    queue.shift()
    expect(removeAgain).not.toHaveBeenCalled()
    queue.shift()
    expect(removeAgain).toHaveBeenCalledTimes(1)
  })

  it('an aborted waiter never expires, and one that expired is not reported aborted', async () => {
    const { join, expired, aborted } = makeQueue()
    const early = new AbortController()
    const late = new AbortController()
    join('a', 100, { signal: early.signal })
    join('b', 100, { signal: late.signal })
    early.abort()
    await tick(101)
    late.abort()
    expect(expired).toEqual(['b'])
    expect(aborted.map((a) => a.name)).toEqual(['a'])
  })

  it('a waiter with its own timer that aborts has its timer cleared', async () => {
    const { join, expired, aborted } = makeQueue()
    const before = vi.getTimerCount()
    const controller = new AbortController()
    join('a', 50, { shared: false, signal: controller.signal })
    controller.abort()
    expect(vi.getTimerCount()).toBe(before)
    await tick(100)
    expect(expired).toEqual([])
    expect(aborted.map((a) => a.name)).toEqual(['a'])
  })
})

describe('WaiterQueue: drain', () => {
  it('hands back every waiter in order, disarms every timer and signal, and reports none', async () => {
    const { queue, join, expired, aborted } = makeQueue()
    const before = vi.getTimerCount()
    const controller = new AbortController()
    const a = join('a', 100)
    await tick(1) // a stamped, the shared timer armed
    const b = join('b', 100, { signal: controller.signal }) // a stamp timer pending
    const c = join('c', 50, { shared: false })
    expect(queue.drain()).toEqual([a, b, c])
    expect(queue.size).toBe(0)
    expect(vi.getTimerCount()).toBe(before)
    controller.abort()
    await tick(200)
    expect(expired).toEqual([])
    expect(aborted).toEqual([])
  })

  it('works again after a drain', async () => {
    const { queue, join, expired } = makeQueue()
    join('a', 100)
    await tick(1)
    queue.drain()
    join('b', 100)
    await tick(101)
    expect(expired).toEqual(['b'])
  })
})
