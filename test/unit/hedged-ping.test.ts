import { beforeEach, describe, expect, it, vi } from 'vitest'
import { INITIAL_HEDGE_MS, MIN_HEDGE_MS, PingHedge } from '../../src/core/ping-hedge.js'
import { ConnectError, type Lease, PingTimeoutError, type Pool } from '../../src/index.js'
import { tick } from '../support/clock.js'
import type { FakeConnection, FakeDialect } from '../support/fake-dialect.js'
import { useFakePools } from '../support/fake-pools.js'
import { checkInvariants } from '../support/invariants.js'
import { settle } from '../support/promises.js'

const fake = useFakePools()
let dialect: FakeDialect
/** Connections whose pings are swallowed (half-open): they answer only when aborted. */
let silent: Set<number>
/** Connections whose pings answer after this many ms instead of the dialect's `pingDelay`. */
let slowBy: Map<number, number>

beforeEach(() => {
  dialect = fake.dialect
  silent = new Set()
  slowBy = new Map()
  const ping = dialect.ping.bind(dialect)
  const patched = dialect as unknown as {
    ping: (connection: FakeConnection, signal: AbortSignal) => Promise<void>
  }
  patched.ping = (connection, signal) => {
    if (silent.has(connection.id)) {
      dialect.pings++
      return new Promise<void>((_, reject) => {
        signal.addEventListener('abort', () => reject(signal.reason), { once: true })
      })
    }
    const ms = slowBy.get(connection.id)
    if (ms === undefined) return ping(connection)
    dialect.pings++
    return new Promise<void>((resolve) => setTimeout(resolve, ms))
  }
})

/** Lets the hedge run: it waits for the event loop's check phase (a real `setImmediate`). */
async function step(ms: number): Promise<void> {
  await tick(ms)
  await new Promise((resolve) => setImmediate(resolve))
  await tick(0)
}

/** A pool with `n` idle connections, ids 1..n, the lowest id first in the idle list (LIFO). */
async function idlePool(n: number, options: Parameters<typeof fake.make>[0] = {}) {
  const pool = fake.make({ prePing: 0, validationTimeout: 2_000, ...options })
  const leases = await Promise.all(Array.from({ length: n }, () => pool.acquire()))
  for (const lease of [...leases].reverse()) lease.release()
  await tick(0)
  expect(pool.stats()).toMatchObject({ idle: n, total: n })
  return pool
}

/** Pings `times` times at `ms` each, so that the pool has seen pings that fast. */
async function warmUp(pool: Pool<FakeConnection>, times = 8, ms = 2): Promise<void> {
  const before = dialect.pingDelay
  dialect.pingDelay = ms
  for (let i = 0; i < times; i++) {
    const lease = settle(pool.acquire())
    await tick(ms)
    expect(lease.done).toBe(true)
    ;(lease.value as Lease<FakeConnection>).release()
  }
  dialect.pingDelay = before
}

describe('PingHedge', () => {
  it('starts at the initial delay, follows the pings seen, and keeps to the floor', () => {
    const hedge = new PingHedge()
    expect(hedge.delay).toBe(INITIAL_HEDGE_MS)
    for (let i = 0; i < 50; i++) hedge.sample(0.3)
    expect(hedge.delay).toBe(MIN_HEDGE_MS)
    for (let i = 0; i < 50; i++) hedge.sample(40)
    // srtt + 4 rttvar: about 40 ms once the pings are steady, more while they vary.
    expect(hedge.delay).toBeGreaterThanOrEqual(40)
    expect(hedge.delay).toBeLessThan(60)
    hedge.sample(Number.NaN)
    expect(hedge.delay).toBeLessThan(60)
  })
})

describe('a hedged pre-ping', () => {
  it('serves the borrower from the next idle connection once the hedge delay passes', async () => {
    const pool = await idlePool(4)
    await warmUp(pool)
    const head = dialect.all.find((c) => c.id === 1)!
    silent.add(head.id)
    const invalidated: unknown[] = []
    pool.on('invalidate', (e) => invalidated.push(e.reason, e.error))
    const started = performance.now()
    const lease = settle(pool.acquire())
    await step(0)
    expect(lease.done).toBe(false)
    checkInvariants(pool, dialect)
    await step(MIN_HEDGE_MS)
    expect(lease.done).toBe(true)
    expect(lease.at - started).toBeLessThanOrEqual(MIN_HEDGE_MS + 1)
    expect((lease.value as Lease<FakeConnection>).connection.id).toBe(2)
    checkInvariants(pool, dialect)
    expect(pool.stats()).toMatchObject({ validating: 1, leased: 1, idle: 2, total: 4 })
    // No new connection was needed.
    expect(dialect.connects).toBe(4)
    // The silent one is destroyed at validationTimeout, never lent.
    await step(2_000 - MIN_HEDGE_MS - 1)
    expect(head.open).toBe(true)
    await step(1)
    expect(head.open).toBe(false)
    expect(invalidated[0]).toBe('ping')
    expect(invalidated[1]).toBeInstanceOf(PingTimeoutError)
    checkInvariants(pool, dialect)
    ;(lease.value as Lease<FakeConnection>).release()
    checkInvariants(pool, dialect)
  })

  it('a ping that times out retires only its own connection, not the older ones', async () => {
    const pool = await idlePool(3, { max: 3 })
    await warmUp(pool)
    silent.add(1)
    const reasons: string[] = []
    pool.on('invalidate', (e) => reasons.push(e.reason))
    const first = settle(pool.acquire())
    await step(MIN_HEDGE_MS)
    ;(first.value as Lease<FakeConnection>).release()
    await step(2_000)
    expect(reasons).toEqual(['ping'])
    const leases = [await pool.acquire(), await pool.acquire()]
    await step(0)
    expect(leases.map((l) => l.connection.id).sort()).toEqual([2, 3])
    expect(reasons).toEqual(['ping'])
    for (const lease of leases) lease.release()
    checkInvariants(pool, dialect)
  })

  it('before any ping has answered, hedges after the initial delay', async () => {
    const pool = await idlePool(2)
    silent.add(1)
    const lease = settle(pool.acquire())
    await step(INITIAL_HEDGE_MS - 1)
    expect(lease.done).toBe(false)
    await step(1)
    expect(lease.done).toBe(true)
    expect((lease.value as Lease<FakeConnection>).connection.id).toBe(2)
    checkInvariants(pool, dialect)
  })

  it('opens a new connection when no idle one is left and there is room (maxOverflow)', async () => {
    const pool = await idlePool(2, { max: 2, maxOverflow: 1 })
    await warmUp(pool)
    const held = await pool.acquire()
    await tick(0)
    expect(held.connection.id).toBe(1)
    silent.add(2)
    dialect.connectDelay = 20
    const lease = settle(pool.acquire())
    await step(MIN_HEDGE_MS)
    // The hedge opened a third connection: max + maxOverflow, the pinged one counted as open.
    expect(pool.stats()).toMatchObject({ connecting: 1, validating: 1, leased: 1, total: 3 })
    checkInvariants(pool, dialect)
    expect(lease.done).toBe(false)
    await step(20)
    expect(lease.done).toBe(true)
    expect((lease.value as Lease<FakeConnection>).connection.id).toBe(3)
    expect(dialect.connects).toBe(3)
    checkInvariants(pool, dialect)
    await step(2_000)
    expect(dialect.all[1]!.open).toBe(false)
    checkInvariants(pool, dialect)
    held.release()
    ;(lease.value as Lease<FakeConnection>).release()
    checkInvariants(pool, dialect)
  })

  it('with no room, waits for validationTimeout and one connect, never above max', async () => {
    const pool = await idlePool(2, { max: 2 })
    await warmUp(pool)
    silent.add(1)
    silent.add(2)
    dialect.connectDelay = 30
    let most = 0
    const lease = settle(pool.acquire())
    const started = performance.now()
    for (let t = 0; t < 2_100 && !lease.done; t += 10) {
      await step(10)
      most = Math.max(most, checkInvariants(pool, dialect).total)
    }
    expect(most).toBeLessThanOrEqual(2)
    expect(lease.done).toBe(true)
    // Both idle connections pinged in turn (the second after the hedge), neither answered.
    expect(dialect.all[0]!.open).toBe(false)
    expect(dialect.all[1]!.open).toBe(false)
    expect((lease.value as Lease<FakeConnection>).connection.id).toBe(3)
    expect(lease.at - started).toBeLessThanOrEqual(2_000 + 30 + 10)
    checkInvariants(pool, dialect)
  })

  it('a slow ping that answers late is lent to the next borrower, never twice', async () => {
    const pool = await idlePool(2, { max: 2 })
    await warmUp(pool)
    slowBy.set(1, 300)
    const first = settle(pool.acquire())
    await step(MIN_HEDGE_MS)
    expect((first.value as Lease<FakeConnection>).connection.id).toBe(2)
    const second = settle(pool.acquire())
    await step(10)
    expect(second.done).toBe(false)
    checkInvariants(pool, dialect)
    await step(300)
    expect(second.done).toBe(true)
    expect((second.value as Lease<FakeConnection>).connection.id).toBe(1)
    expect(dialect.all.every((c) => c.open)).toBe(true)
    checkInvariants(pool, dialect)
    ;(first.value as Lease<FakeConnection>).release()
    ;(second.value as Lease<FakeConnection>).release()
    expect(checkInvariants(pool, dialect)).toMatchObject({ idle: 2, total: 2 })
  })

  it('a slow ping answering with nobody waiting parks its connection idle', async () => {
    const pool = await idlePool(2, { max: 2 })
    await warmUp(pool)
    slowBy.set(1, 300)
    const first = settle(pool.acquire())
    await step(MIN_HEDGE_MS)
    ;(first.value as Lease<FakeConnection>).release()
    await step(300)
    expect(checkInvariants(pool, dialect)).toMatchObject({ idle: 2, validating: 0, total: 2 })
  })

  it('a ping that answers before the hedge delay hedges nothing', async () => {
    const pool = await idlePool(4)
    await warmUp(pool)
    const pings = dialect.pings
    dialect.pingDelay = 2
    const lease = settle(pool.acquire())
    await step(2)
    expect((lease.value as Lease<FakeConnection>).connection.id).toBe(1)
    expect(dialect.pings).toBe(pings + 1)
    expect(dialect.connects).toBe(4)
    await step(5_000)
    expect(dialect.pings).toBe(pings + 1)
    checkInvariants(pool, dialect)
  })

  it("connectErrors 'reject': a half-open ping's hedge fails to connect, the borrower is rejected once its ping times out, no connect storm", async () => {
    // Was: rejected as soon as the hedge's connect failed. A hedge's connect is now owed to
    // nobody (fix15a, item 1): the borrower is rejected by its own connect, once the ping times out.
    const pool = await idlePool(1, { max: 1, maxOverflow: 1, connectErrors: 'reject' })
    await warmUp(pool)
    silent.add(1)
    dialect.connectError = new Error('connection refused')
    const lease = settle(pool.acquire())
    await step(MIN_HEDGE_MS)
    await step(10)
    expect(lease.done).toBe(false)
    await step(2_000)
    expect(lease.done).toBe(true)
    expect(lease.error).toBeInstanceOf(ConnectError)
    const connects = dialect.connects
    // Nobody is left waiting: no connect after it.
    await step(2_000)
    expect(dialect.connects).toBe(connects)
    // The hedge's retries are paced by the backoff (100 ms, doubling): a handful in 2 s.
    expect(connects).toBeLessThanOrEqual(12)
    checkInvariants(pool, dialect)
  })

  it("connectErrors 'reject': a ping that is only slow keeps its borrower when the hedge's connect fails (53300)", async () => {
    const pool = await idlePool(1, { max: 2, connectErrors: 'reject' })
    await warmUp(pool)
    slowBy.set(1, 20)
    dialect.connectError = Object.assign(new Error('sorry, too many clients already'), {
      code: '53300',
    })
    const lease = settle(pool.acquire())
    await step(MIN_HEDGE_MS)
    await step(2)
    // The hedge's connect has failed by now; the borrower still waits for its ping.
    expect(dialect.connects).toBeGreaterThanOrEqual(2)
    expect(lease.done).toBe(false)
    await step(20)
    expect(lease.done).toBe(true)
    expect(lease.error).toBeUndefined()
    expect((lease.value as Lease<FakeConnection>).connection.id).toBe(1)
    ;(lease.value as Lease<FakeConnection>).release()
    checkInvariants(pool, dialect)
  })

  it('while failing, a caller behind a half-open idle connection is rejected once its ping is hedged, not after validationTimeout', async () => {
    const pool = await idlePool(1, { max: 2 })
    await warmUp(pool)
    silent.add(1)
    ;(dialect as { classifyConnectError?: (error: unknown) => string }).classifyConnectError = () =>
      'permanent'
    dialect.connectError = new Error('password authentication failed')
    const started = performance.now()
    const lease = settle(pool.acquire())
    // The ping is hedged, the hedge's connect fails with a permanent error: the pool fails fast,
    // and the half-open one's ping covers nobody, so the caller is rejected now.
    await step(MIN_HEDGE_MS)
    await step(10)
    expect(lease.done).toBe(true)
    expect(lease.error).toBeInstanceOf(ConnectError)
    expect(lease.at - started).toBeLessThan(100)
    await step(2_000)
    checkInvariants(pool, dialect)
  })

  for (const how of ['close', 'destroy'] as const) {
    it(`${how}() clears the ping watch's timer: no timer is left behind`, async () => {
      const pool = await idlePool(1)
      await warmUp(pool)
      silent.add(1)
      const lease = settle(pool.acquire())
      await tick(0)
      expect(pool.stats().validating).toBe(1)
      const closed = how === 'close' ? pool.close({ timeout: 50 }) : pool.destroy()
      await step(0)
      expect(lease.done).toBe(true)
      if (how === 'close') await step(50)
      await closed
      await step(0)
      expect(vi.getTimerCount()).toBe(0)
    })
  }

  it('pinging on every checkout arms no timer per ping', async () => {
    const pool = await idlePool(2)
    await warmUp(pool)
    const setTimeoutSpy = vi.spyOn(globalThis, 'setTimeout')
    try {
      for (let i = 0; i < 50; i++) {
        const lease = settle(pool.acquire())
        await tick(0)
        ;(lease.value as Lease<FakeConnection>).release()
      }
      expect(dialect.pings).toBeGreaterThanOrEqual(58)
      expect(setTimeoutSpy.mock.calls.length).toBeLessThanOrEqual(1)
    } finally {
      setTimeoutSpy.mockRestore()
    }
    checkInvariants(pool, dialect)
  })

  it('a ping that takes no signal costs no AbortController per checkout, and still times out', async () => {
    const patched = dialect as unknown as { ping: (connection: FakeConnection) => Promise<void> }
    const slowPing = patched.ping
    // As the postgres and mysql dialects declare it: no signal parameter.
    const unused = new AbortController().signal
    patched.ping = (connection) =>
      (slowPing as (c: FakeConnection, s: AbortSignal) => Promise<void>)(connection, unused)
    const pool = await idlePool(2)
    await warmUp(pool)
    const Original = globalThis.AbortController
    let made = 0
    globalThis.AbortController = class extends Original {
      constructor() {
        super()
        made++
      }
    }
    try {
      for (let i = 0; i < 20; i++) {
        const lease = settle(pool.acquire())
        await tick(0)
        ;(lease.value as Lease<FakeConnection>).release()
      }
    } finally {
      globalThis.AbortController = Original
    }
    expect(made).toBe(0)
    // A silent one still times out at validationTimeout, and its borrower is served elsewhere.
    slowBy.set(1, 60_000)
    slowBy.set(2, 60_000)
    const lease = settle(pool.acquire())
    await step(2_000)
    await step(50)
    expect(lease.done).toBe(true)
    expect(pool.stats().validating).toBeLessThanOrEqual(1)
    ;(lease.value as Lease<FakeConnection>)?.release()
    checkInvariants(pool, dialect)
  })

  it('many borrowers, some connections half-open: each served once, invariants hold', async () => {
    const pool = await idlePool(6, { max: 6, maxOverflow: 2 })
    await warmUp(pool)
    silent.add(1)
    silent.add(3)
    silent.add(4)
    dialect.connectDelay = 15
    const leases = Array.from({ length: 8 }, () => settle(pool.acquire()))
    let most = 0
    for (let t = 0; t < 200; t += 5) {
      await step(5)
      most = Math.max(most, checkInvariants(pool, dialect).total)
    }
    expect(most).toBeLessThanOrEqual(8)
    const served = leases.filter((l) => l.done).map((l) => l.value as Lease<FakeConnection>)
    const ids = served.map((l) => l.connection.id)
    expect(new Set(ids).size).toBe(ids.length)
    expect(ids).not.toContain(1)
    expect(ids).not.toContain(3)
    expect(ids).not.toContain(4)
    // 3 healthy idle ones and 2 overflow connections: the other 3 wait for a slot.
    expect(served).toHaveLength(5)
    for (const lease of served) lease.release()
    await step(2_100)
    expect(leases.every((l) => l.done)).toBe(true)
    const late = leases
      .filter((l) => !served.includes(l.value as Lease<FakeConnection>))
      .map((l) => l.value as Lease<FakeConnection>)
    expect(late).toHaveLength(3)
    for (const lease of late) expect([1, 3, 4]).not.toContain(lease.connection.id)
    for (const lease of late) lease.release()
    checkInvariants(pool, dialect)
  })
})
