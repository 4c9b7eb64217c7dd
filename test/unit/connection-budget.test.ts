import { beforeEach, describe, expect, it } from 'vitest'
import {
  AcquireTimeoutError,
  type BudgetListener,
  type BudgetSlot,
  BudgetTimeoutError,
  type ConnectionBudget,
  InvalidOptionError,
  PoolClosedError,
} from '../../src/index.js'
import { tick } from '../support/clock.js'
import type { FakeDialect } from '../support/fake-dialect.js'
import { useFakePools } from '../support/fake-pools.js'
import { checkInvariants } from '../support/invariants.js'
import { settle } from '../support/promises.js'

/** An in-memory budget: `limit` slots, granted in arrival order, with counters a test reads. */
class FakeBudget implements ConnectionBudget {
  held = 0
  /** Held slots whose connections are closing. */
  returning = 0
  takes = 0
  releases = 0
  /** The slots this process may keep while others wait: above it, the surplus. */
  share = Number.POSITIVE_INFINITY
  unreachable: Error | undefined
  readonly listeners = new Set<BudgetListener>()
  readonly queue: Array<{ grant: () => void; signal: AbortSignal }> = []
  constructor(public limit: number) {}

  take(signal: AbortSignal): Promise<BudgetSlot> {
    this.takes++
    return new Promise((resolve, reject) => {
      const entry = {
        signal,
        grant: () => {
          signal.removeEventListener('abort', onAbort)
          this.held++
          let released = false
          let closing = false
          resolve({
            closing: () => {
              if (released || closing) return
              closing = true
              this.returning++
            },
            release: () => {
              if (released) return
              released = true
              if (closing) this.returning--
              this.held--
              this.releases++
              this.serve()
            },
          })
        },
      }
      const onAbort = () => {
        this.queue.splice(this.queue.indexOf(entry), 1)
        reject(signal.reason)
      }
      signal.addEventListener('abort', onAbort, { once: true })
      this.queue.push(entry)
      this.serve()
    })
  }

  /** Raises the limit: waiting takes get their slots. */
  grow(by: number): void {
    this.limit += by
    this.serve()
  }

  serve(): void {
    while (this.queue.length > 0 && this.held < this.limit && this.unreachable === undefined) {
      this.queue.shift()!.grant()
    }
  }

  surplus(): number {
    return Math.max(0, this.held - this.returning - this.share)
  }

  blocked(): { message: string; cause?: unknown } {
    if (this.unreachable !== undefined) {
      return { message: 'the fake budget cannot be reached', cause: this.unreachable }
    }
    return { message: `the fake budget has no slot free (${this.held}/${this.limit})` }
  }

  subscribe(listener: BudgetListener): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }
}

const fake = useFakePools()
let dialect: FakeDialect
let budget: FakeBudget
beforeEach(() => {
  dialect = fake.dialect
  budget = new FakeBudget(1)
})

describe('a pool with a budget takes a slot per physical connection', () => {
  it('takes a slot before it connects, and no more per acquire', async () => {
    budget.limit = 0
    const pool = fake.make({ max: 2, budget })
    const first = pool.acquire()
    await tick(10)
    expect(budget.takes).toBe(1)
    expect(dialect.connects).toBe(0)
    budget.grow(1)
    const lease = await first
    expect(dialect.connects).toBe(1)
    lease.release()
    for (let i = 0; i < 1000; i++) (await pool.acquire()).release()
    expect(budget.takes).toBe(1)
    expect(budget.held).toBe(1)
    checkInvariants(pool, dialect)
  })

  it('gives the slot back once a destroyed connection is closed, not before', async () => {
    const pool = fake.make({ max: 1, budget })
    const lease = await pool.acquire()
    expect(budget.held).toBe(1)
    let heldAtClose = -1
    const close = dialect.close.bind(dialect)
    dialect.close = async (connection) => {
      heldAtClose = budget.held
      return close(connection)
    }
    lease.destroy()
    await tick(0)
    expect(heldAtClose).toBe(1)
    expect(budget.held).toBe(0)
    expect(budget.releases).toBe(1)
    checkInvariants(pool, dialect)
  })

  it('gives the slot back when the connect fails', async () => {
    dialect.connectError = new Error('refused')
    const pool = fake.make({ max: 1, budget, connectErrors: 'reject' })
    await expect(pool.acquire()).rejects.toThrow(/refused/)
    expect(budget.takes).toBe(1)
    expect(budget.held).toBe(0)
    expect(budget.releases).toBe(1)
  })

  it('gives the slot back when a connection reaches its end of life, and takes one for its replacement', async () => {
    const pool = fake.make({ max: 1, budget, maxLifetime: 1000, min: 1 })
    await tick(0)
    expect(budget.held).toBe(1)
    await tick(1100)
    expect(budget.releases).toBe(1)
    expect(budget.takes).toBe(2)
    expect(budget.held).toBe(1)
    expect(dialect.open.length).toBe(1)
    checkInvariants(pool, dialect)
  })

  it('gives the slot back when a connection dies idle', async () => {
    const pool = fake.make({ max: 1, budget })
    ;(await pool.acquire()).release()
    dialect.kill(dialect.open[0]!)
    await tick(0)
    expect(budget.held).toBe(0)
    checkInvariants(pool, dialect)
  })
})

describe('waiting for a slot', () => {
  it('times out at acquireTimeout with BudgetTimeoutError, naming the budget and its cause', async () => {
    budget.limit = 0
    budget.unreachable = new Error('Redis: connect ECONNREFUSED 127.0.0.1:1')
    const pool = fake.make({ max: 1, budget, acquireTimeout: 500 })
    const result = settle(pool.acquire())
    await tick(499)
    expect(result.done).toBe(false)
    await tick(20)
    const error = result.error as BudgetTimeoutError
    expect(error).toBeInstanceOf(BudgetTimeoutError)
    expect(error).not.toBeInstanceOf(AcquireTimeoutError)
    expect(error.code).toBe('LIFEGUARD_BUDGET_TIMEOUT')
    expect(error.message).toMatch(/Timed out after 500 ms .*the fake budget cannot be reached/)
    expect(error.cause).toBe(budget.unreachable)
    // The take goes on for later callers; it was never a connect, so no connect error counts.
    expect(pool.stats().connectErrors).toBe(0)
    expect(dialect.connects).toBe(0)
  })

  it('gives a waiter that aborts its own reason, and withdraws the slot wait nobody needs any more', async () => {
    budget.limit = 0
    const pool = fake.make({ max: 1, budget })
    const controller = new AbortController()
    const first = settle(pool.acquire({ signal: controller.signal }))
    await tick(10)
    expect(budget.queue.length).toBe(1)
    controller.abort(new Error('client went away'))
    await tick(0)
    expect((first.error as Error).message).toBe('client went away')
    // A ticket left queued for nobody would make other processes give back connections for nothing.
    expect(budget.queue.length).toBe(0)
    expect(pool.stats()).toMatchObject({ total: 0, connecting: 0, connectErrors: 0 })
    budget.grow(1)
    await tick(0)
    expect(budget.held).toBe(0)
    const lease = await pool.acquire()
    expect(budget.takes).toBe(2)
    expect(dialect.connects).toBe(1)
    lease.release()
    checkInvariants(pool, dialect)
  })

  it('withdraws slot waits when a returned connection served their callers', async () => {
    budget.limit = 1
    const pool = fake.make({ max: 3, budget })
    const lease = await pool.acquire()
    const second = settle(pool.acquire())
    const third = settle(pool.acquire())
    await tick(0)
    expect(budget.queue.length).toBe(2)
    lease.release()
    await tick(0)
    expect(second.done).toBe(true)
    // One caller is left, so one wait of the two.
    expect(budget.queue.length).toBe(1)
    ;(second.value as { release(): void }).release()
    await tick(0)
    expect(third.done).toBe(true)
    expect(budget.queue.length).toBe(0)
    expect(pool.stats()).toMatchObject({ total: 1, connectErrors: 0 })
    ;(third.value as { release(): void }).release()
    checkInvariants(pool, dialect)
  })

  it('leaks nothing when the pool closes while a slot is awaited, or connections are open', async () => {
    budget.limit = 1
    const pool = fake.make({ max: 3, budget })
    const lease = await pool.acquire()
    const waiting = settle(pool.acquire())
    await tick(0)
    expect(budget.queue.length).toBe(1)
    lease.release()
    // Not handed the connection just released: the second caller was served by it.
    await tick(0)
    expect(waiting.done).toBe(true)
    const third = settle(pool.acquire())
    const fourth = settle(pool.acquire())
    await tick(0)
    // The connect opened for the second caller still waits for its slot, and one more for the fourth.
    expect(budget.queue.length).toBe(2)
    const closing = pool.close()
    await tick(0)
    expect(third.error).toBeInstanceOf(PoolClosedError)
    expect(fourth.error).toBeInstanceOf(PoolClosedError)
    ;(waiting.value as { release(): void }).release()
    await closing
    expect(budget.queue.length).toBe(0)
    expect(budget.held).toBe(0)
    expect(budget.listeners.size).toBe(0)
  })

  it('destroy() gives every slot back and unsubscribes', async () => {
    budget.limit = 2
    const pool = fake.make({ max: 3, budget })
    await Promise.all([pool.acquire(), pool.acquire()])
    const third = settle(pool.acquire())
    await tick(0)
    await pool.destroy()
    expect(third.error).toBeInstanceOf(PoolClosedError)
    expect(budget.held).toBe(0)
    expect(budget.queue.length).toBe(0)
    expect(budget.listeners.size).toBe(0)
  })
})

describe('what the budget tells the pool', () => {
  it('surplus: a returned connection is closed instead of lent again, its slot given back', async () => {
    budget.limit = 2
    const pool = fake.make({ max: 2, budget })
    const [a, b] = await Promise.all([pool.acquire(), pool.acquire()])
    budget.share = 1
    a!.release()
    await tick(0)
    expect(budget.held).toBe(1)
    // One given back is enough: the other stays.
    b!.release()
    await tick(0)
    expect(budget.held).toBe(1)
    expect(pool.stats().idle).toBe(1)
    checkInvariants(pool, dialect)
  })

  it('shed: idle connections close at once, as many as the surplus', async () => {
    budget.limit = 3
    const pool = fake.make({ max: 3, budget })
    const leases = await Promise.all([pool.acquire(), pool.acquire(), pool.acquire()])
    for (const lease of leases) lease.release()
    budget.share = 1
    for (const listener of budget.listeners) listener.shed()
    await tick(0)
    expect(budget.held).toBe(1)
    expect(pool.stats().idle).toBe(1)
    checkInvariants(pool, dialect)
  })

  it("warnings reach the pool's 'warning' event with their code", async () => {
    const pool = fake.make({ max: 1, budget, name: 'orders' })
    const seen: Array<{ code: string; message: string }> = []
    pool.on('warning', (warning) => seen.push(warning))
    const emitted: unknown[] = []
    const onWarning = (warning: unknown) => emitted.push(warning)
    process.on('warning', onWarning)
    for (const listener of budget.listeners) {
      listener.warning('LIFEGUARD_BUDGET_UNREACHABLE', 'the budget "b" cannot reach Redis')
    }
    await new Promise((resolve) => setImmediate(resolve))
    process.off('warning', onWarning)
    expect(seen).toEqual([
      {
        code: 'LIFEGUARD_BUDGET_UNREACHABLE',
        message: expect.stringMatching(
          /^pool "orders": the budget "b" cannot reach Redis \[LIFEGUARD_BUDGET_UNREACHABLE, run: npx lifeguard explain budget_unreachable\]$/,
        ),
      },
    ])
  })

  it('a budget without the interface fails at construction, naming the option', () => {
    for (const bad of [{}, 3, { take() {} }]) {
      expect(() => fake.make({ budget: bad as unknown as ConnectionBudget })).toThrow(
        InvalidOptionError,
      )
    }
    expect(() => fake.make({ budget: {} as unknown as ConnectionBudget })).toThrow(
      /Invalid option budget: an object; expected a connection budget/,
    )
  })
})

describe('regressions: a pool above its share settles', () => {
  it('a waiter while above its share is served, with a bounded number of connects (it used to close each new connection at once, for ever)', async () => {
    budget.limit = 10
    const pool = fake.make({ max: 3, budget, acquireTimeout: 5000 })
    const [a, b] = await Promise.all([pool.acquire(), pool.acquire()])
    budget.share = 1
    const c = settle(pool.acquire())
    a!.release()
    await tick(50)
    expect(c.done).toBe(true)
    expect(c.error).toBeUndefined()
    expect(dialect.connects).toBeLessThanOrEqual(3)
    ;(c.value as { release(): void }).release()
    b!.release()
    for (let i = 0; i < 10; i++) await tick(100)
    expect(budget.held).toBe(1)
    expect(dialect.connects).toBeLessThanOrEqual(3)
    checkInvariants(pool, dialect)
  })

  it('two pools on one budget give back one connection for a surplus of one, not one each', async () => {
    budget.limit = 10
    const one = fake.make({ max: 2, budget, name: 'one' })
    const two = fake.make({ max: 2, budget, name: 'two' })
    for (const pool of [one, two]) {
      const leases = await Promise.all([pool.acquire(), pool.acquire()])
      for (const lease of leases) lease.release()
    }
    expect(budget.held).toBe(4)
    budget.share = 3
    for (const listener of budget.listeners) listener.shed()
    await tick(0)
    expect(budget.held).toBe(3)
    expect(one.stats().total + two.stats().total).toBe(3)
  })

  it('a grant that lands after its slot wait was withdrawn opens no connection (it used to connect with an aborted signal and count a connect error)', async () => {
    budget.limit = 0
    const pool = fake.make({ max: 1, budget })
    const controller = new AbortController()
    const first = settle(pool.acquire({ signal: controller.signal }))
    await tick(10)
    expect(budget.queue.length).toBe(1)
    // The slot is granted, and before the pool hears of it the caller leaves.
    budget.grow(1)
    controller.abort(new Error('client went away'))
    await tick(0)
    expect(first.error).toMatchObject({ message: 'client went away' })
    expect(dialect.connects).toBe(0)
    expect(pool.stats().connectErrors).toBe(0)
    expect(budget.held).toBe(0)
    checkInvariants(pool, dialect)
  })

  it('a timeout while a connect to a silent database holds the only slot is an AcquireTimeoutError, not a BudgetTimeoutError', async () => {
    budget.limit = 1
    dialect.connectDelay = 5000
    const pool = fake.make({ max: 2, budget, acquireTimeout: 1000, connectTimeout: 8000 })
    const results = [settle(pool.acquire()), settle(pool.acquire())]
    await tick(10)
    // One connect dials (the slot taken), the other waits for the slot.
    expect(budget.takes).toBe(2)
    expect(dialect.connects).toBe(1)
    await tick(1000)
    for (const result of results) {
      expect(result.error).toBeInstanceOf(AcquireTimeoutError)
      expect(result.error).not.toBeInstanceOf(BudgetTimeoutError)
    }
    await pool.destroy()
  })

  it('a timeout after failed connects keeps the connect error as its cause, though a connect waits for a slot', async () => {
    budget.limit = 1
    dialect.connectError = new Error('connect ECONNREFUSED 127.0.0.1:5432')
    const pool = fake.make({ max: 2, budget, acquireTimeout: 1000, min: 2 })
    const result = settle(pool.acquire())
    await tick(1100)
    expect(result.error).toBeInstanceOf(AcquireTimeoutError)
    expect(String((result.error as Error).cause)).toMatch(/ECONNREFUSED/)
    await pool.destroy()
  })
})
