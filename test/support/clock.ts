import { vi } from 'vitest'

/** Installs the fake clock: timers, `Date` and `performance.now()` only move when a test says so. */
export function useFakeClock(): void {
  vi.useFakeTimers({
    toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'],
  })
}

/** Moves the fake clock forward by `ms`, running due timers and the promise jobs they start. */
export async function tick(ms = 0): Promise<void> {
  await vi.advanceTimersByTimeAsync(ms)
}
