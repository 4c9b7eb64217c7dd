import { afterEach, describe, expect, it } from 'vitest'
import type { ResetMode } from '../../src/index.js'
import { tick } from '../support/clock.js'
import type { FakeConnection } from '../support/fake-dialect.js'
import { useFakePools } from '../support/fake-pools.js'

/** Counts the AbortControllers made while it is installed. */
function countAbortControllers(): { readonly made: number; restore(): void } {
  const Real = globalThis.AbortController
  let made = 0
  globalThis.AbortController = class extends Real {
    constructor() {
      super()
      made++
    }
  }
  return {
    get made() {
      return made
    },
    restore() {
      globalThis.AbortController = Real
    },
  }
}

describe('regressions found by the review of the 0.2.0 change', () => {
  const fake = useFakePools()
  let counter: ReturnType<typeof countAbortControllers> | undefined
  afterEach(() => counter?.restore())

  it('a synchronous reset made an AbortController on every release (release 9x slower)', async () => {
    fake.dialect.syncReset = true
    const pool = fake.make({ max: 1 })
    ;(await pool.acquire()).release() // the connect makes its own controller: not counted
    counter = countAbortControllers()
    for (let i = 0; i < 1000; i++) (await pool.acquire()).release()
    expect(counter.made).toBe(0)
    expect(pool.stats()).toMatchObject({ acquired: 1001, leased: 0, idle: 1 })
  })

  it('a reset that declares the signal still gets one, aborted when it misses validationTimeout', async () => {
    const signals: AbortSignal[] = []
    fake.dialect.reset = (_connection: FakeConnection, _mode: ResetMode, signal?: AbortSignal) => {
      signals.push(signal!)
      return new Promise<void>(() => {})
    }
    const pool = fake.make({ max: 1, validationTimeout: 1_000 })
    ;(await pool.acquire()).release()
    await tick(1_001)
    expect(signals).toHaveLength(1)
    expect(signals[0]!.aborted).toBe(true)
    expect(pool.stats()).toMatchObject({ leased: 0, invalidated: 1 })
  })

  it("an 'invalidate' listener's acquire() was lent the very connection being retired, then revoked", async () => {
    const pool = fake.make({ max: 3, idleTimeout: 1_000, maxLifetime: 0, prePing: false })
    const leases = await Promise.all([pool.acquire(), pool.acquire(), pool.acquire()])
    for (const lease of leases) lease.release()
    const lent: Array<{ id: number; retired: boolean }> = []
    let borrowing = true
    pool.on('invalidate', ({ connection }) => {
      if (!borrowing) return
      borrowing = false
      void pool.acquire().then((lease) => {
        // Reading lease.connection throws LeaseReleasedError on a revoked lease.
        lent.push({ id: lease.connection.id, retired: lease.connection === connection })
        lease.release()
      })
    })
    await tick(2_000)
    expect(lent).toHaveLength(1)
    expect(lent[0]!.retired).toBe(false)
    expect(pool.stats().revoked).toBe(0)
  })
})
