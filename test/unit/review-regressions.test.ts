import { afterEach, describe, expect, it } from 'vitest'
import { AcquireTimeoutError, ConnectError, type Dialect, type ResetMode } from '../../src/index.js'
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

describe('regressions found by the review of issue 14', () => {
  const fake = useFakePools()

  /** Gives this test's dialect a `drain` hook: the borrower's work ends when `finish` is called. */
  function borrowerWork(): { finish(error?: Error): void; drains: number } {
    let done: ((error?: Error) => void) | undefined
    const work = {
      drains: 0,
      finish(error?: Error) {
        done?.(error)
      },
    }
    const drain: Dialect<FakeConnection>['drain'] = () => {
      work.drains++
      return new Promise<void>((resolve, reject) => {
        done = (error) => (error === undefined ? resolve() : reject(error))
      })
    }
    Object.assign(fake.dialect, { drain })
    return work
  }

  it("the borrower's query still running at release was cut off by the reset's time limit (now validationTimeout)", async () => {
    const work = borrowerWork()
    const pool = fake.make({ max: 1, validationTimeout: 1_000 })
    const lease = await pool.acquire()
    lease.release()
    const next = pool.acquire({ timeout: 60_000 })
    let lent: FakeConnection | undefined
    void next.then((l) => {
      lent = l.connection
    })
    await tick(5_000)
    // Still the borrower's: not closed, neither idle nor lent, and it counts against max.
    expect(fake.dialect.closes).toBe(0)
    expect(pool.stats()).toMatchObject({ total: 1, resetting: 1, idle: 0, leased: 0, waiting: 1 })
    expect(lent).toBeUndefined()
    work.finish()
    await tick(10)
    // Then reset as usual, and lent on.
    expect(lent).toBe(fake.dialect.all[0])
    expect(pool.stats()).toMatchObject({ total: 1, leased: 1, resetting: 0 })
    expect(work.drains).toBe(1)
  })

  it("after the borrower's work, the reset itself is still bounded by validationTimeout", async () => {
    const work = borrowerWork()
    fake.dialect.syncReset = false
    fake.dialect.resetDelay = 5_000
    const pool = fake.make({ max: 1, validationTimeout: 1_000 })
    ;(await pool.acquire()).release()
    await tick(3_000)
    work.finish()
    await tick(1_100)
    expect(fake.dialect.closes).toBe(1)
    expect(pool.stats()).toMatchObject({ total: 0, resetting: 0 })
  })

  it("a connection whose borrower's work failed (the connection died) is closed, not lent", async () => {
    const work = borrowerWork()
    const pool = fake.make({ max: 1 })
    ;(await pool.acquire()).release()
    work.finish(new Error('Connection terminated'))
    await tick(10)
    expect(fake.dialect.closes).toBe(1)
    expect(pool.stats()).toMatchObject({ total: 0, idle: 0 })
  })

  it('stats().expired drifted upward: a late server clamp re-scheduled the expiry of an expired lease', async () => {
    let reads = 0
    Object.defineProperty(fake.dialect, 'inspect', {
      get: () => async () => {
        reads++
        // The first connection cannot read the limits; the second can, and lowers maxLifetime.
        if (reads === 1) throw new Error('no limits yet')
        return { idleCutoffMs: 10_000, idleCutoffSetting: 'wait_timeout' }
      },
    })
    const pool = fake.make({ maxLifetime: 20_000, idleTimeout: 9_500 })
    const a = await pool.acquire()
    await tick(25_000)
    expect(pool.stats().expired).toBe(1)
    const b = await pool.acquire()
    await tick(10)
    const during = pool.stats().expired
    a.release()
    b.release()
    await tick(10)
    expect({ during, after: pool.stats().expired }).toEqual({ during: 1, after: 0 })
  })

  it("connectErrors 'reject': a failure handed to its caller left a later acquire timeout without a cause", async () => {
    const refused = new Error('refused')
    fake.dialect.script.push({ ms: 10, fail: refused }, { ms: 1_000 })
    const pool = fake.make({ max: 1, connectErrors: 'reject' })
    const first = pool.acquire().catch((error: unknown) => error)
    await tick(10)
    const firstError = await first
    expect(firstError).toBeInstanceOf(ConnectError)
    // No backoff for the next caller: its connect starts at once.
    const second = pool.acquire({ timeout: 50 }).catch((error: unknown) => error)
    expect(fake.dialect.connects).toBe(2)
    await tick(50)
    const timeout = await second
    expect(timeout).toBeInstanceOf(AcquireTimeoutError)
    expect((timeout as AcquireTimeoutError).cause).toBe(firstError)
    expect(((timeout as AcquireTimeoutError).cause as ConnectError).cause).toBe(refused)
  })
})
