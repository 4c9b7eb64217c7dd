import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { ConnectionRecord } from '../../src/core/connection-record.js'
import { Housekeeper, type HousekeeperHost } from '../../src/core/housekeeper.js'
import { tick, useFakeClock } from '../support/clock.js'

beforeEach(() => useFakeClock())
afterEach(() => {
  vi.restoreAllMocks()
  vi.useRealTimers()
})

/** One idle record and a host that retires it (and records why). */
function oneIdle(): {
  host: HousekeeperHost<unknown>
  record: ConnectionRecord<unknown>
  retired: string[]
} {
  const retired: string[] = []
  const record = { state: 'idle', lastUsedAt: performance.now() } as ConnectionRecord<unknown>
  const idle = () => (record.state === 'idle' ? [record] : [])
  const host: HousekeeperHost<unknown> = {
    idle,
    idleCount: () => idle().length,
    openCount: () => idle().length,
    isStale: () => false,
    retire: (r, reason) => {
      retired.push(reason)
      r.state = 'closing'
    },
    validate: () => {},
    pump: () => {},
  }
  return { host, record, retired }
}

describe('Housekeeper: the idle timer', () => {
  it('closes a connection idle for idleTimeout when it fires, even if performance.now() reads just under the deadline', async () => {
    const { host, record, retired } = oneIdle()
    const keeper = new Housekeeper(host, {
      min: 0,
      minMode: 'floor',
      idleTimeout: 1,
      keepaliveInterval: 0,
    })
    keeper.start()
    keeper.watchIdle(record.lastUsedAt)
    // Node's timers keep whole milliseconds on a clock read once per loop turn: a 1 ms timer may
    // fire when performance.now() has moved less than 1 ms (pg-pool's idle-timeout.js meets it).
    const clock = performance.now.bind(performance)
    vi.spyOn(performance, 'now').mockImplementation(() => clock() - 0.5)
    await tick(1)
    expect(retired).toEqual(['idle'])
    keeper.stop()
  })

  it('does not close a connection whose own deadline is later than the one the timer was aimed at', async () => {
    const { host, record, retired } = oneIdle()
    const keeper = new Housekeeper(host, {
      min: 0,
      minMode: 'floor',
      idleTimeout: 100,
      keepaliveInterval: 0,
    })
    keeper.start()
    // Aimed 40 ms too early (the connection was used again since): not closed then, only at its own deadline.
    keeper.watchIdle(record.lastUsedAt - 40)
    record.lastUsedAt = performance.now()
    await tick(60)
    expect(retired).toEqual([])
    await tick(40)
    expect(retired).toEqual(['idle'])
    keeper.stop()
  })
})
