import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { redisBudget } from '../../src/budget/redis.js'
import type { BudgetSlot } from '../../src/core/connection-budget.js'
import { createPool } from '../../src/index.js'
import { FakeDialect } from '../support/fake-dialect.js'
import { useThrowawayRedis } from '../support/throwaway-redis.js'

const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const never = new AbortController().signal

async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`)
    await sleep(20)
  }
}

describe('regressions: the shares of a Redis budget settle', () => {
  let client: Redis
  beforeAll(() => {
    client = new Redis(REDIS_URL)
  })
  afterAll(() => client.disconnect())

  it("a process's own waiting tickets never make it give back (limit 4: one holds 1, the other 3 and waits for a 4th)", async () => {
    const key = `test-own-${randomUUID()}`
    const a = redisBudget({ redis: client, key, limit: 4, leaseTtl: 1000 })
    const b = redisBudget({ redis: client, key, limit: 4, leaseTtl: 1000 })
    const slots: BudgetSlot[] = [await a.take(never)]
    for (let i = 0; i < 3; i++) slots.push(await b.take(never))
    const controller = new AbortController()
    const fourth = b.take(controller.signal).catch(() => undefined)
    const seen: number[] = []
    for (let i = 0; i < 20; i++) {
      await sleep(50)
      seen.push(b.surplus(), a.surplus())
    }
    controller.abort(new Error('done'))
    await fourth
    expect(Math.max(...seen)).toBe(0)
    for (const slot of slots) slot.release()
  }, 20_000)

  it('an uneven limit (5 slots, 3 processes wanting 5 each) settles at shares 2, 2, 1, and nobody is asked to give back', async () => {
    const key = `test-uneven-${randomUUID()}`
    const budgets = [0, 1, 2].map(() =>
      redisBudget({ redis: client, key, limit: 5, leaseTtl: 1000 }),
    )
    const controller = new AbortController()
    const slots: BudgetSlot[] = []
    for (const budget of budgets) {
      for (let i = 0; i < 5; i++) {
        budget.take(controller.signal).then(
          (slot) => slots.push(slot),
          () => {},
        )
      }
    }
    try {
      await until(() => slots.length === 5, 10_000, 'five slots taken')
      const held = () => budgets.map((b) => b.state().held).sort()
      expect(held()).toEqual([1, 2, 2])
      const surpluses: number[] = []
      for (let i = 0; i < 20; i++) {
        await sleep(50)
        surpluses.push(...budgets.map((b) => b.surplus()))
      }
      expect(Math.max(...surpluses)).toBe(0)
      expect(held()).toEqual([1, 2, 2])
      expect(budgets.map((b) => b.state().share).sort()).toEqual([1, 2, 2])
    } finally {
      controller.abort(new Error('done'))
      for (const slot of slots) slot.release()
    }
  }, 30_000)
  it('min fill above the share (3 pools with min: 5, a budget of 5): each holds its share, and connects and closes no more', async () => {
    const key = `test-min-${randomUUID()}`
    const budgets = [0, 1, 2].map(() =>
      redisBudget({ redis: client, key, limit: 5, leaseTtl: 1000 }),
    )
    const dialects = budgets.map(() => new FakeDialect())
    const pools = budgets.map((budget, i) =>
      createPool({ dialect: dialects[i]!, min: 5, max: 5, budget }),
    )
    for (const pool of pools) pool.on('warning', () => {})
    const held = () => budgets.map((b) => b.state().held).sort()
    try {
      await until(() => held().join() === '1,2,2', 15_000, 'the processes hold 1, 2 and 2 slots')
      const connects = dialects.map((d) => d.connects)
      const closes = dialects.map((d) => d.closes)
      await sleep(2000)
      expect(held()).toEqual([1, 2, 2])
      expect(dialects.map((d) => d.connects)).toEqual(connects)
      expect(dialects.map((d) => d.closes)).toEqual(closes)
      expect(dialects.map((d) => d.open.length).sort()).toEqual([1, 2, 2])
    } finally {
      await Promise.all(pools.map((p) => p.destroy()))
    }
  }, 30_000)

  it('a pool over its share with a waiter gives one back, serves the waiter from the other, and stops connecting', async () => {
    const key = `test-waiter-${randomUUID()}`
    const mine = redisBudget({ redis: client, key, limit: 2, leaseTtl: 1000 })
    const other = redisBudget({ redis: client, key, limit: 2, leaseTtl: 1000 })
    const dialect = new FakeDialect()
    const pool = createPool({ dialect, max: 2, budget: mine, acquireTimeout: 10_000 })
    pool.on('warning', () => {})
    try {
      const [a, b] = await Promise.all([pool.acquire(), pool.acquire()])
      // Another process waits: this one (share 1) must give one back.
      const theirs = other.take(never)
      // This process hears of it at its next refresh (a third of the lease).
      await until(() => mine.surplus() === 1, 5000, 'asked to give one back')
      const waiter = pool.acquire()
      a!.release()
      const slot = await theirs
      b!.release()
      const lease = await waiter
      lease.release()
      const connects = dialect.connects
      await sleep(1500)
      expect(dialect.connects).toBe(connects)
      expect(connects).toBeLessThanOrEqual(3)
      expect(mine.state().held).toBe(1)
      slot.release()
    } finally {
      await pool.destroy()
    }
  }, 30_000)
  it('more processes than slots (limit 1, 2 processes): the one that waited first is served first, whatever the ids', async () => {
    for (let round = 0; round < 4; round++) {
      const key = `test-few-${randomUUID()}`
      const busy = redisBudget({ redis: client, key, limit: 1, leaseTtl: 2000 })
      const patient = redisBudget({ redis: client, key, limit: 1, leaseTtl: 2000 })
      const first = await busy.take(never)
      const order: string[] = []
      const waited = patient.take(never).then((slot) => {
        order.push('patient')
        return slot
      })
      await sleep(60)
      const again = busy.take(never).then((slot) => {
        order.push('busy')
        return slot
      })
      await sleep(60)
      first.release()
      ;(await waited).release()
      ;(await again).release()
      expect(order).toEqual(['patient', 'busy'])
    }
  }, 30_000)
})

describe('regressions: a restarted Redis', () => {
  const redis = useThrowawayRedis()

  it('a Redis restarted empty grants nothing until the holders have registered their slots again (it used to over-subscribe at once)', async () => {
    await redis.start().catch(() => {})
    const one = new Redis(redis.url)
    const two = new Redis(redis.url)
    const admin = new Redis(redis.url)
    for (const c of [one, two, admin]) c.on('error', () => {})
    const key = `test-restart-${randomUUID()}`
    const a = redisBudget({ redis: one, key, limit: 2, leaseTtl: 1500 })
    const b = redisBudget({ redis: two, key, limit: 2, leaseTtl: 1500 })
    const held = [await a.take(never), await a.take(never)]
    try {
      await redis.stop()
      await redis.start()
      await until(() => two.status === 'ready' && admin.status === 'ready', 10_000, 'reconnected')
      let granted = false
      const controller = new AbortController()
      const take = b.take(controller.signal).then((slot) => {
        granted = true
        return slot
      })
      const counts: number[] = []
      for (let i = 0; i < 40; i++) {
        counts.push(await admin.zcard(`lifeguard:budget:{${key}}:slots`))
        await sleep(50)
      }
      expect(granted).toBe(false)
      expect(Math.max(...counts)).toBeLessThanOrEqual(2)
      expect(counts.at(-1)).toBe(2)
      held.pop()!.release()
      ;(await take).release()
    } finally {
      for (const slot of held) slot.release()
      await sleep(50)
      for (const c of [one, two, admin]) c.disconnect()
    }
  }, 30_000)

  it('SCRIPT FLUSH: the next command gets NOSCRIPT, loads the script again, and the budget goes on', async () => {
    await redis.start().catch(() => {})
    const one = new Redis(redis.url)
    const admin = new Redis(redis.url)
    const key = `test-flush-${randomUUID()}`
    const budget = redisBudget({ redis: one, key, limit: 2, leaseTtl: 1500 })
    try {
      const first = await budget.take(never)
      await admin.script('FLUSH')
      expect(await admin.script('EXISTS', '0'.repeat(40))).toEqual([0])
      const second = await budget.take(never)
      expect(await admin.zcard(`lifeguard:budget:{${key}}:slots`)).toBe(2)
      expect(budget.state()).toMatchObject({ refused: false, unreachable: false, held: 2 })
      first.release()
      second.release()
      await until(() => budget.state().held === 0, 2000, 'released')
    } finally {
      one.disconnect()
      admin.disconnect()
    }
  }, 30_000)
})
