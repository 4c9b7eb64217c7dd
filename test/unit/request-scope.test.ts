import { getEventListeners } from 'node:events'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import {
  AcquireTimeoutError,
  InvalidOptionError,
  LeaseReleasedError,
  RequestScope,
  ScopeEndedError,
  TransactionFailedError,
} from '../../src/index.js'
import { tick } from '../support/clock.js'
import { FakeDialect, FakeDisconnect } from '../support/fake-dialect.js'
import { useFakePools } from '../support/fake-pools.js'
import { checkInvariants } from '../support/invariants.js'

const fake = useFakePools({ max: 4 })
const makePool = fake.make
let dialect: FakeDialect
beforeEach(() => {
  dialect = fake.dialect
})

describe('a plain request scope', () => {
  it('borrows nothing for a request that never queries', async () => {
    const pool = makePool()
    const scope = pool.openScope()
    await scope.run(async () => {
      await tick(5)
    })
    await scope.end()
    expect(scope.borrowed).toBe(false)
    expect(checkInvariants(pool, dialect)).toMatchObject({ acquired: 0, leased: 0 })
  })

  it("runs the request's sequential queries on one connection, borrowed once", async () => {
    const pool = makePool()
    const scope = pool.openScope()
    const seen = await scope.run(async () => {
      const ids: number[] = []
      for (let i = 0; i < 3; i++) ids.push(await pool.use((c) => c.id))
      const lease = await pool.acquire()
      ids.push(lease.connection.id)
      lease.release()
      return ids
    })
    expect(new Set(seen).size).toBe(1)
    expect(pool.currentScope()).toBeUndefined()
    expect(checkInvariants(pool, dialect)).toMatchObject({ acquired: 1, leased: 1 })
    await scope.end()
    expect(checkInvariants(pool, dialect)).toMatchObject({ acquired: 1, released: 1, leased: 0 })
  })

  it('gives a concurrent query a lease of its own, returned when it ends', async () => {
    const pool = makePool()
    const scope = pool.openScope()
    const [a, b] = await scope.run(() => Promise.all([pool.acquire(), pool.acquire()]))
    const own = a.connection.id
    expect(own).not.toBe(b.connection.id)
    expect(checkInvariants(pool, dialect)).toMatchObject({ acquired: 2, leased: 2 })
    b.release()
    a.release()
    // The concurrent one went back to the pool; the request keeps its own until end().
    expect(checkInvariants(pool, dialect)).toMatchObject({ released: 1, leased: 1 })
    const again = await scope.acquire()
    expect(again.connection.id).toBe(own)
    again.release()
    await scope.end()
    expect(checkInvariants(pool, dialect)).toMatchObject({ leased: 0, idle: 2 })
  })

  it('waits for a query still holding the connection before giving it back', async () => {
    const pool = makePool()
    const scope = pool.openScope()
    const lease = await scope.acquire()
    let ended = false
    const ending = scope.end().then(() => {
      ended = true
    })
    await tick(10)
    expect(ended).toBe(false)
    expect(pool.stats().leased).toBe(1)
    lease.release()
    await ending
    expect(checkInvariants(pool, dialect)).toMatchObject({ leased: 0, idle: 1 })
  })

  it('lends from the pool after it ended, for work that outlives the response', async () => {
    const pool = makePool()
    const scope = pool.openScope()
    await scope.run(() => pool.use(() => undefined))
    await scope.end()
    await scope.run(() => pool.use(() => undefined))
    expect(checkInvariants(pool, dialect)).toMatchObject({ acquired: 2, leased: 0 })
  })

  it('rolls back a transaction the request left open, and refuses its later queries', async () => {
    const pool = makePool()
    const scope = pool.openScope()
    const connection = await scope.run(() =>
      pool.use((c) => {
        c.inTransaction = true // BEGIN, and no COMMIT
        return c
      }),
    )
    await scope.end()
    await tick(1)
    expect(connection.inTransaction).toBe(false)
    expect(connection.resets).toEqual(['rollback'])
    // The rest of the handler, still running, must not commit its half on its own.
    await expect(scope.run(() => pool.use(() => 1))).rejects.toBeInstanceOf(ScopeEndedError)
    expect(checkInvariants(pool, dialect)).toMatchObject({ acquired: 1, leased: 0 })
  })

  it('rolls back itself when the pool does not reset on release', async () => {
    const pool = makePool({ resetOnRelease: false })
    const scope = pool.openScope()
    const lease = await scope.acquire()
    const connection = lease.connection
    connection.inTransaction = true
    lease.release()
    await scope.end()
    expect(connection.resets).toEqual(['rollback'])
    expect(checkInvariants(pool, dialect)).toMatchObject({ leased: 0, idle: 1 })
  })

  it('checks out a new connection after a query destroyed the last one', async () => {
    const pool = makePool()
    const scope = pool.openScope()
    const first = await scope.acquire()
    const dead = first.connection
    first.destroy(new FakeDisconnect('gone'))
    const second = await scope.acquire()
    expect(second.connection.id).not.toBe(dead.id)
    second.release()
    await scope.end()
    expect(checkInvariants(pool, dialect)).toMatchObject({ leased: 0, invalidated: 1 })
  })

  it('fails a second release of a query lease, and counts nothing twice', async () => {
    const pool = makePool()
    const scope = pool.openScope()
    const lease = await scope.acquire()
    lease.release()
    expect(() => lease.release()).toThrow(LeaseReleasedError)
    expect(() => lease.connection).toThrow(LeaseReleasedError)
    await scope.end()
    expect(checkInvariants(pool, dialect)).toMatchObject({ acquired: 1, released: 1 })
  })

  it('keeps two scopes of concurrent requests apart', async () => {
    const pool = makePool()
    const one = pool.openScope()
    const two = pool.openScope()
    const [a, b] = await Promise.all([
      one.run(() => pool.use((c) => c.id)),
      two.run(() => pool.use((c) => c.id)),
    ])
    expect(a).not.toBe(b)
    await Promise.all([one.end(), two.end()])
    expect(checkInvariants(pool, dialect)).toMatchObject({ acquired: 2, leased: 0 })
  })
})

describe('a transactional request scope', () => {
  it('begins on the first query and commits at the end', async () => {
    const pool = makePool()
    const scope = pool.openScope({ transaction: true })
    const connection = await scope.use((c) => c)
    expect(connection.steps).toEqual(['begin'])
    await scope.end('commit')
    expect(connection.steps).toEqual(['begin', 'commit'])
    expect(checkInvariants(pool, dialect)).toMatchObject({ acquired: 1, leased: 0 })
  })

  it('rolls back on a failed outcome', async () => {
    const pool = makePool()
    const scope = pool.openScope({ transaction: true })
    const connection = await scope.use((c) => c)
    await scope.end('rollback')
    expect(connection.steps).toEqual(['begin', 'rollback'])
  })

  it('sends nothing for a request that never queries', async () => {
    const pool = makePool()
    const scope = pool.openScope({ transaction: true })
    await scope.end('commit')
    expect(dialect.all).toHaveLength(0)
    expect(pool.stats().acquired).toBe(0)
  })

  it('runs concurrent queries in turn on its connection, never two at once', async () => {
    const pool = makePool()
    const scope = pool.openScope({ transaction: true })
    let holding = 0
    let most = 0
    const ids = await scope.run(() =>
      Promise.all(
        [1, 2, 3].map(() =>
          pool.use(async (c) => {
            most = Math.max(most, ++holding)
            await tick(5)
            holding--
            return c.id
          }),
        ),
      ),
    )
    expect(new Set(ids).size).toBe(1)
    expect(most).toBe(1)
    await scope.end('commit')
    expect(checkInvariants(pool, dialect)).toMatchObject({ acquired: 1, leased: 0 })
  })

  it("times out a query waiting while the request's lease is held", async () => {
    const pool = makePool({ acquireTimeout: 100 })
    const scope = pool.openScope({ transaction: true })
    const held = await scope.acquire()
    const waiting = scope.acquire()
    const outcome = expect(waiting).rejects.toBeInstanceOf(AcquireTimeoutError)
    await tick(101)
    await outcome
    held.release()
    await scope.end('rollback')
    expect(checkInvariants(pool, dialect)).toMatchObject({ leased: 0 })
  })

  it('lets an aborted waiter go without touching the connection', async () => {
    const pool = makePool()
    const scope = pool.openScope({ transaction: true })
    const held = await scope.acquire()
    const controller = new AbortController()
    const waiting = scope.acquire({ signal: controller.signal })
    controller.abort(new Error('client went away'))
    await expect(waiting).rejects.toThrow('client went away')
    held.release()
    const next = await scope.acquire()
    expect(next.connection.id).toBe(dialect.all[0]!.id)
    next.release()
    await scope.end('commit')
    expect(dialect.all[0]!.steps).toEqual(['begin', 'commit'])
  })

  it('serves waiting queries in the order they asked', async () => {
    const pool = makePool()
    const scope = pool.openScope({ transaction: true })
    const held = await scope.acquire()
    const order: number[] = []
    const waiting = [1, 2, 3].map((n) =>
      scope.acquire().then((lease) => {
        order.push(n)
        lease.release()
      }),
    )
    held.release()
    await Promise.all(waiting)
    expect(order).toEqual([1, 2, 3])
    await scope.end('commit')
    expect(checkInvariants(pool, dialect)).toMatchObject({ acquired: 1, leased: 0 })
  })

  it('regression: each waiting query armed a timer of its own', async () => {
    const pool = makePool({ acquireTimeout: 100 })
    const scope = pool.openScope({ transaction: true })
    const held = await scope.acquire()
    const before = vi.getTimerCount()
    const waiting = Array.from({ length: 50 }, () =>
      scope.acquire().then(
        () => 'served',
        (error: unknown) => error,
      ),
    )
    // The queue's stamping timer and, once stamped, its one deadline timer: not one per waiter.
    expect(vi.getTimerCount() - before).toBeLessThanOrEqual(2)
    await tick(1)
    expect(vi.getTimerCount() - before).toBeLessThanOrEqual(2)
    await tick(101)
    for (const outcome of await Promise.all(waiting)) {
      expect(outcome).toBeInstanceOf(AcquireTimeoutError)
    }
    held.release()
    await scope.end('rollback')
    expect(checkInvariants(pool, dialect)).toMatchObject({ leased: 0 })
  })

  it('times a waiting query out by its own timeout, and leaves no abort listener behind', async () => {
    const pool = makePool({ acquireTimeout: 1000 })
    const scope = pool.openScope({ transaction: true })
    const held = await scope.acquire()
    const controller = new AbortController()
    const waiting = scope.acquire({ timeout: 50, signal: controller.signal })
    const outcome = expect(waiting).rejects.toThrow(/Waited 50 ms/)
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1)
    await tick(51)
    await outcome
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0)
    held.release()
    await scope.end('commit')
    expect(dialect.all[0]!.steps).toEqual(['begin', 'commit'])
  })

  it('refuses queries after the end, and rejects the ones still waiting', async () => {
    const pool = makePool()
    const scope = pool.openScope({ transaction: true })
    const held = await scope.acquire()
    const waiting = scope.acquire()
    const ending = scope.end('commit')
    await expect(waiting).rejects.toBeInstanceOf(ScopeEndedError)
    await expect(scope.acquire()).rejects.toBeInstanceOf(ScopeEndedError)
    held.release()
    await ending
    expect(dialect.all[0]!.steps).toEqual(['begin', 'commit'])
  })

  it('rejects the commit when it fails, and gives the connection back', async () => {
    const pool = makePool()
    const scope = pool.openScope({ transaction: true })
    await scope.use(() => undefined)
    const failure = new Error('could not serialize access')
    dialect.stepError = { step: 'commit', error: failure }
    await expect(scope.end('commit')).rejects.toBe(failure)
    expect(scope.end('commit')).toBe(scope.end())
    await tick(1)
    expect(checkInvariants(pool, dialect)).toMatchObject({ leased: 0 })
  })

  it('fails the commit when a query lost the connection, and the transaction with it', async () => {
    const pool = makePool()
    const scope = pool.openScope({ transaction: true })
    const lost = new FakeDisconnect('terminated')
    await expect(
      scope.use(() => {
        throw lost
      }),
    ).rejects.toBe(lost)
    await expect(scope.acquire()).rejects.toBeInstanceOf(TransactionFailedError)
    const ending = scope.end('commit')
    await expect(ending).rejects.toBeInstanceOf(TransactionFailedError)
    await expect(ending).rejects.toMatchObject({ cause: lost })
    expect(checkInvariants(pool, dialect)).toMatchObject({ leased: 0, invalidated: 1 })
  })
})

describe('a scope checks acquire options as the pool does', () => {
  it('rejects an aborted signal, even when the connection is free', async () => {
    const pool = makePool()
    const scope = pool.openScope()
    await scope.use(() => undefined)
    const controller = new AbortController()
    controller.abort(new Error('gone'))
    await expect(scope.acquire({ signal: controller.signal })).rejects.toThrow('gone')
    await scope.end()
    expect(checkInvariants(pool, dialect)).toMatchObject({ acquired: 1, leased: 0 })
  })

  it('rejects an invalid timeout, naming it', async () => {
    const pool = makePool()
    const scope = pool.openScope({ transaction: true })
    await expect(scope.acquire({ timeout: -1 })).rejects.toBeInstanceOf(InvalidOptionError)
    await scope.end('rollback')
  })

  it("regression: a plain request's BEGIN lost with its connection let the rest autocommit", async () => {
    const pool = makePool()
    const scope = pool.openScope()
    const lease = await scope.acquire()
    lease.connection.inTransaction = true // the request ran BEGIN
    lease.destroy(new FakeDisconnect('terminated'))
    await expect(scope.acquire()).rejects.toBeInstanceOf(TransactionFailedError)
    await scope.end()
    await expect(scope.acquire()).rejects.toBeInstanceOf(ScopeEndedError)
    expect(checkInvariants(pool, dialect)).toMatchObject({ leased: 0, invalidated: 1 })
  })
})

describe('an abandoned request scope (abort)', () => {
  it("rejects the request's waiter in the pool at once, and every later acquire", async () => {
    const pool = makePool({ max: 1 })
    const held = await pool.acquire()
    const scope = pool.openScope()
    const waiting = scope.run(() => pool.use((c) => c.id))
    await tick(1)
    expect(pool.stats().waiting).toBe(1)
    const outcome = expect(waiting).rejects.toMatchObject({ name: 'AbortError' })
    const ended = scope.abort()
    await outcome
    expect(pool.stats()).toMatchObject({ waiting: 0, aborted: 1 })
    expect(scope.signal.aborted).toBe(true)
    expect(scope.signal.reason).toMatchObject({ name: 'AbortError' })
    expect(String(scope.signal.reason.message)).toMatch(/abandoned.*takes no more connections/)
    // Later queries, through the scope or the pool, reject the same way without queueing.
    await expect(scope.run(() => pool.acquire())).rejects.toMatchObject({ name: 'AbortError' })
    await expect(scope.acquire()).rejects.toMatchObject({ name: 'AbortError' })
    await ended
    expect(pool.stats()).toMatchObject({ waiting: 0, leased: 1 })
    held.release()
    await tick(5)
    expect(checkInvariants(pool, dialect)).toMatchObject({ acquired: 1, leased: 0 })
  })

  it('gives a held connection back after its query, rolling back', async () => {
    const pool = makePool()
    const scope = pool.openScope({ transaction: true })
    const lease = await scope.acquire()
    const connection = lease.connection
    const turn = scope.acquire()
    const reason = new Error('client gone')
    const outcome = expect(turn).rejects.toBe(reason)
    const ended = scope.abort(reason)
    await outcome
    expect(scope.signal.reason).toBe(reason)
    // The running query keeps the connection until it ends; then the scope rolls back.
    expect(checkInvariants(pool, dialect)).toMatchObject({ leased: 1 })
    lease.release()
    await ended
    expect(connection.steps).toEqual(['begin', 'rollback'])
    expect(checkInvariants(pool, dialect)).toMatchObject({ acquired: 1, leased: 0 })
    // A second abort changes nothing.
    await scope.abort(new Error('again'))
    expect(scope.signal.reason).toBe(reason)
  })

  it('aborts a signal read before the abort, and rejects a checkout whose BEGIN was running', async () => {
    const pool = makePool()
    const scope = pool.openScope({ transaction: true })
    const signal = scope.signal
    expect(signal.aborted).toBe(false)
    const first = scope.acquire()
    void scope.abort()
    expect(signal.aborted).toBe(true)
    await expect(first).rejects.toMatchObject({ name: 'AbortError' })
    await tick(5)
    expect(checkInvariants(pool, dialect)).toMatchObject({ waiting: 0, leased: 0 })
  })

  it("combines the caller's own signal with the scope's", async () => {
    const pool = makePool({ max: 1 })
    const held = await pool.acquire()
    const scope = pool.openScope()
    const controller = new AbortController()
    const waiting = scope.acquire({ signal: controller.signal })
    await tick(1)
    controller.abort(new Error('mine'))
    await expect(waiting).rejects.toThrow('mine')
    expect(scope.signal.aborted).toBe(false)
    // And the scope's abort reaches a checkout that carries the caller's signal.
    const second = scope.acquire({ signal: new AbortController().signal })
    await tick(1)
    expect(pool.stats().waiting).toBe(1)
    const ended = scope.abort(new Error('gone'))
    await expect(second).rejects.toThrow('gone')
    expect(pool.stats()).toMatchObject({ waiting: 0, aborted: 2 })
    held.release()
    await ended
  })

  it('with cancelOnAbort, cancels the running statement and closes its connection after it', async () => {
    const pool = makePool()
    const cancelled: unknown[] = []
    Object.defineProperty(dialect, 'cancel', {
      value: async (connection: unknown) => {
        cancelled.push(connection)
      },
    })
    const scope = pool.openScope({ transaction: true, cancelOnAbort: true })
    const lease = await scope.acquire()
    const connection = lease.connection
    const ended = scope.abort()
    expect(cancelled).toEqual([connection])
    // The statement fails for its caller, who gives the lease back: the connection is closed.
    lease.release()
    await ended
    await tick(5)
    expect(connection.open).toBe(false)
    expect(connection.steps).toEqual(['begin'])
    expect(checkInvariants(pool, dialect)).toMatchObject({ leased: 0, total: 0 })
  })

  it('regression: a cancel that never answered held the scope, and its connection, for ever', async () => {
    const pool = makePool()
    Object.defineProperty(dialect, 'cancel', { value: () => new Promise<void>(() => {}) })
    const scope = pool.openScope({ cancelOnAbort: true })
    const lease = await scope.acquire()
    const connection = lease.connection
    let done = false
    const ended = scope.abort().then(() => {
      done = true
    })
    lease.release()
    await tick(4_999)
    expect(done).toBe(false)
    await tick(1)
    await ended
    expect(connection.open).toBe(false)
    expect(checkInvariants(pool, dialect)).toMatchObject({ leased: 0, total: 0 })
  })

  it("regression: a dialect's cancel that threw at once threw out of abort() (an uncaughtException in a 'close' listener)", async () => {
    const pool = makePool()
    Object.defineProperty(dialect, 'cancel', {
      value: () => {
        throw new Error('cancel threw')
      },
    })
    const scope = pool.openScope({ cancelOnAbort: true })
    const lease = await scope.acquire()
    let ended: Promise<void> | undefined
    expect(() => {
      ended = scope.abort()
    }).not.toThrow()
    lease.release()
    await ended
    expect(checkInvariants(pool, dialect)).toMatchObject({ leased: 0 })
  })

  it('without cancelOnAbort, or with no statement running, cancels nothing', async () => {
    const pool = makePool()
    const cancel = vi.fn(async () => {})
    Object.defineProperty(dialect, 'cancel', { value: cancel })
    const plain = pool.openScope({ transaction: true })
    const lease = await plain.acquire()
    const ended = plain.abort()
    lease.release()
    await ended
    const idle = pool.openScope({ transaction: true, cancelOnAbort: true })
    await idle.use(() => undefined)
    await idle.abort()
    expect(cancel).not.toHaveBeenCalled()
    expect(checkInvariants(pool, dialect)).toMatchObject({ leased: 0, total: 1 })
    expect(() => pool.openScope({ cancelOnAbort: 'yes' as never })).toThrow(
      /Invalid option cancelOnAbort: "yes"; expected true or false/,
    )
  })

  for (const read of ['before', 'after'] as const) {
    it(`regression: abort() after end() made the handler's work after responding reject (signal read ${read})`, async () => {
      const pool = makePool()
      const scope = pool.openScope()
      if (read === 'before') void scope.signal
      await scope.run(async () => {
        await pool.use(() => undefined)
        const ended = scope.end()
        // The client leaves before the response is flushed: the integration calls abort().
        const aborted = scope.abort()
        expect(aborted).toBe(ended)
        await aborted
        // Work after responding, in the request's context, lends as if there were no scope.
        await expect(pool.use((c) => c.id)).resolves.toEqual(expect.any(Number))
        await expect(scope.acquire().then((l) => l.release())).resolves.toBeUndefined()
      })
      expect(scope.signal.aborted).toBe(true)
      expect((scope.signal.reason as DOMException).name).toBe('AbortError')
      expect(checkInvariants(pool, dialect)).toMatchObject({ leased: 0 })
    })
  }

  it('does not abort the signal of a scope that merely ends', async () => {
    const pool = makePool()
    const scope = pool.openScope()
    await scope.use(() => undefined)
    await scope.end()
    expect(scope.signal.aborted).toBe(false)
  })
})

describe('a request scope is made by its pool alone', () => {
  it('throws a TypeError for new RequestScope(), while instanceof works', async () => {
    const pool = makePool()
    const scope = pool.openScope()
    expect(scope).toBeInstanceOf(RequestScope)
    const Scope = RequestScope as unknown as new (...args: unknown[]) => unknown
    expect(() => new Scope()).toThrow(TypeError)
    expect(() => new Scope(Symbol('lifeguard.scope'), {}, false)).toThrow(
      /scopes come from pool\.openScope\(\)/,
    )
    await scope.end()
  })
})

describe('openScope options', () => {
  it('rejects an unknown option, naming the nearest', () => {
    const pool = makePool()
    expect(() => pool.openScope({ transactions: true } as never)).toThrow(
      /did you mean transaction/,
    )
  })

  it('rejects a non-boolean transaction', () => {
    const pool = makePool()
    expect(() => pool.openScope({ transaction: 'yes' as never })).toThrow(
      /Invalid option transaction: "yes"; expected true or false/,
    )
  })

  it('rejects a transaction on a dialect that cannot run one', () => {
    const plain = new FakeDialect()
    Object.defineProperty(plain, 'transact', { value: undefined })
    const pool = makePool({ dialect: plain })
    expect(() => pool.openScope({ transaction: true })).toThrow(InvalidOptionError)
  })
})
