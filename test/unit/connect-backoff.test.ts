import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { ConnectBackoff } from '../../src/core/connect-backoff.js'
import { tick, useFakeClock } from '../support/clock.js'

describe('ConnectBackoff: the wait between failed connects', () => {
  beforeEach(() => useFakeClock())
  afterEach(() => vi.useRealTimers())

  it('doubles the delay after each failure in a row, from 50 ms, capped at 500 ms', () => {
    // random() = 1: the top of each band [d/2, d].
    const highest = new ConnectBackoff(
      () => {},
      () => 1,
    )
    const delays = [1, 2, 3, 4, 5, 6, 20].map((n) => highest.delayAfter(n))
    expect(delays).toEqual([50, 100, 200, 400, 500, 500, 500])
    // random() = 0: the bottom, half of it.
    const lowest = new ConnectBackoff(
      () => {},
      () => 0,
    )
    expect([1, 2, 5].map((n) => lowest.delayAfter(n))).toEqual([25, 50, 250])
  })

  it('counts failures in a row, keeps the last error, and forgets both on success', () => {
    const backoff = new ConnectBackoff(
      () => {},
      () => 1,
    )
    const first = new Error('refused')
    const second = new Error('refused again')
    expect(backoff.failed(first, 0)).toBe(50)
    expect(backoff.failed(second, 50)).toBe(100)
    expect(backoff.failures).toBe(2)
    expect(backoff.lastError).toBe(second)
    backoff.succeeded()
    expect(backoff.failures).toBe(0)
    expect(backoff.lastError).toBeUndefined()
    expect(backoff.failed(first, 1000)).toBe(50)
  })

  it('makes the pool wait until the delay is over, then wakes it once', async () => {
    const onRetry = vi.fn()
    const backoff = new ConnectBackoff(onRetry, () => 1)
    const now = performance.now()
    backoff.failed(new Error('refused'), now) // retry at now + 50
    expect(backoff.waiting(now, true)).toBe(true)
    expect(backoff.waiting(now + 10, true)).toBe(true) // asked again: still one timer
    expect(vi.getTimerCount()).toBe(1)
    await tick(49)
    expect(onRetry).not.toHaveBeenCalled()
    await tick(1)
    expect(onRetry).toHaveBeenCalledTimes(1)
    expect(vi.getTimerCount()).toBe(0)
    expect(backoff.waiting(performance.now(), true)).toBe(false)
  })

  it('never waits before the first failure', () => {
    const backoff = new ConnectBackoff(() => {})
    expect(backoff.waiting(performance.now(), true)).toBe(false)
    expect(vi.getTimerCount()).toBe(0)
  })

  it('stop() cancels the wake-up', async () => {
    const onRetry = vi.fn()
    const backoff = new ConnectBackoff(onRetry, () => 1)
    backoff.failed(new Error('refused'), performance.now())
    expect(backoff.waiting(performance.now(), false)).toBe(true)
    backoff.stop()
    expect(vi.getTimerCount()).toBe(0)
    await tick(1000)
    expect(onRetry).not.toHaveBeenCalled()
  })
})
