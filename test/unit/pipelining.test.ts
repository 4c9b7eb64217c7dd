import { beforeEach, describe, expect, it } from 'vitest'
import {
  AcquireTimeoutError,
  InvalidOptionError,
  type Lease,
  type Pool,
  PoolClosedError,
  type PoolStats,
} from '../../src/index.js'
import { tick } from '../support/clock.js'
import { type FakeConnection, type FakeDialect, FakeDisconnect } from '../support/fake-dialect.js'
import { useFakePools } from '../support/fake-pools.js'
import { checkInvariants } from '../support/invariants.js'
import { type Settled, settle } from '../support/promises.js'

// Sharing connections (acquire({ shared: true }), maxPipeline, Dialect.pipeline), on the fake
// dialect with its pipeline() hook: where each sharing caller goes, when the dialect hears of it,
// and what the counts say after each step.

const fake = useFakePools()
let dialect: FakeDialect
beforeEach(() => {
  dialect = fake.dialect
})

/** A pool on a fake dialect that pipelines (unless the test set the hook up already). */
function makePool(options: Parameters<typeof fake.make>[0] = {}): Pool<FakeConnection> {
  if (dialect.pipeline === undefined) dialect.enablePipeline()
  return fake.make(options)
}

/** The connection id each lease was lent, kept past its release. */
const idOf = new WeakMap<Lease<FakeConnection>, number>()

/** A sharing caller (`shared: true` unless told `'last'`), settled for inspection. */
function share(
  pool: Pool<FakeConnection>,
  options: { timeout?: number; signal?: AbortSignal; shared?: true | 'last' } = {},
) {
  return settle(
    pool.acquire({ shared: true, ...options }).then((lease) => {
      idOf.set(lease, lease.connection.id)
      return lease
    }),
  )
}

/** A sharing caller whose statement is known to run long: it seals the connection it gets. */
function shareLast(pool: Pool<FakeConnection>) {
  return share(pool, { shared: 'last' })
}

/** `n` sharing callers, asked in one go. */
function manySharers(pool: Pool<FakeConnection>, n: number) {
  return Array.from({ length: n }, () => share(pool))
}

/** The id of the connection each sharing caller got (0 while it waits). */
function ids(...leases: Array<Settled<Lease<FakeConnection>>>): number[] {
  return leases.map((l) => (l.value === undefined ? 0 : idOf.get(l.value)!))
}

/** Checks the pool's invariants, and that its stats include `expected`. */
function expectStats(pool: Pool<FakeConnection>, expected: Partial<PoolStats>): void {
  expect(checkInvariants(pool, dialect)).toMatchObject(expected)
}

/** The reasons of the pool's `invalidate` events, gathered as they come. */
function invalidations(pool: Pool<FakeConnection>): unknown[] {
  const reasons: unknown[] = []
  pool.on('invalidate', (e) => reasons.push(e.reason))
  return reasons
}

/**
 * On a one-connection pool, a tick after `callers` asked: the first holds connection 1 alone (no
 * pipelining) and the others wait; each gets connection 1 in turn when the one before gives its
 * lease back. The last keeps its lease.
 */
async function expectLentInTurn(
  pool: Pool<FakeConnection>,
  callers: Array<Settled<Lease<FakeConnection>>>,
): Promise<void> {
  await tick(0)
  const firstHolds = (n: number) => [1, ...Array<number>(n - 1).fill(0)]
  expect(ids(...callers)).toEqual(firstHolds(callers.length))
  expectStats(pool, { leased: 1, pipelined: 0, waiting: callers.length - 1 })
  for (let i = 1; i < callers.length; i++) {
    callers[i - 1]!.value!.release()
    await tick(0)
    expect(ids(...callers.slice(i))).toEqual(firstHolds(callers.length - i))
  }
}

/**
 * Asks `n` sharing callers in one go and asserts that, a tick later, each was lent connection
 * `id` (0: each still waits). Returns them.
 */
async function expectSharersLent(pool: Pool<FakeConnection>, n: number, id: number) {
  const callers = manySharers(pool, n)
  await tick(0)
  expect(ids(...callers)).toEqual(Array<number>(n).fill(id))
  return callers
}

/**
 * A one-connection pool (maxPipeline 4) where sharer `x` was lent connection 1 and `a` then asked
 * with `shared: 'last'`, which joins it behind x and seals it.
 */
async function sealerBehindSharer() {
  const pool = makePool({ max: 1, maxPipeline: 4 })
  const x = share(pool)
  await tick(0)
  const a = shareLast(pool)
  return { pool, x, a }
}

/** Opens `n` connections and parks them idle. */
async function warm(pool: Pool<FakeConnection>, n: number): Promise<void> {
  const leases = await Promise.all(Array.from({ length: n }, () => pool.acquire()))
  for (const lease of leases) lease.release()
  await tick(0)
}

describe('where a sharing caller goes', () => {
  it('gets an idle connection first, even while a shared one has room', async () => {
    const pool = makePool({ max: 2, maxPipeline: 4 })
    await warm(pool, 2)
    const a = share(pool)
    await tick(0)
    const b = share(pool)
    await tick(0)
    expect(ids(a, b).sort()).toEqual([1, 2])
    expectStats(pool, { leased: 2, idle: 0, pipelined: 0 })
  })

  it('the pool grows to max + maxOverflow before anyone shares', async () => {
    const pool = makePool({ max: 1, maxOverflow: 1, maxPipeline: 4 })
    const a = share(pool)
    await tick(0)
    expectStats(pool, { total: 1, leased: 1, pipelined: 0 })
    const b = share(pool)
    await tick(0)
    // Below max + maxOverflow: a new (overflow) connection, not a seat on the busy one.
    expect(ids(a, b)).toEqual([1, 2])
    expectStats(pool, { total: 2, leased: 2, pipelined: 0 })
    const c = share(pool)
    await tick(0)
    expect(c.value?.connection.id).toBe(1)
    expectStats(pool, { total: 2, pipelined: 1 })
    expect(dialect.connects).toBe(2)
  })

  it('then each gets the connection with the fewest sharers, never more than maxPipeline', async () => {
    const pool = makePool({ max: 2, maxPipeline: 3 })
    const first = manySharers(pool, 2)
    await tick(0)
    expect(ids(...first).sort()).toEqual([1, 2])
    const more = manySharers(pool, 4)
    await tick(0)
    // Least loaded each time: one on each, then one more on each.
    const on = (id: number) => [...first, ...more].filter((l) => ids(l)[0] === id)
    expect(on(1)).toHaveLength(3)
    expect(on(2)).toHaveLength(3)
    expectStats(pool, { leased: 2, pipelined: 4, waiting: 0 })
    // Both at maxPipeline: the next callers wait.
    const w1 = share(pool)
    const w2 = share(pool)
    const w3 = share(pool)
    await tick(0)
    expect(ids(w1, w2, w3)).toEqual([0, 0, 0])
    expectStats(pool, { pipelined: 4, waiting: 3 })
    // A statement completes on connection 2: the head waiter takes its seat, and only it.
    on(2)[0]!.value!.release()
    expect(pool.stats().waiting).toBe(2) // taken from the queue at once
    await tick(0)
    expect(ids(w1, w2, w3)).toEqual([2, 0, 0])
    expectStats(pool, { pipelined: 4, waiting: 2 })
    on(1)[0]!.value!.release()
    await tick(0)
    expect(ids(w1, w2, w3)).toEqual([2, 1, 0])
    on(1)[1]!.value!.release()
    await tick(0)
    expect(ids(w1, w2, w3)).toEqual([2, 1, 1])
    expectStats(pool, { pipelined: 4, waiting: 0 })
  })

  it('regression: a burst of sharing callers is spread over the connections being opened, not piled on the first one that lands', async () => {
    dialect.connectDelay = 5
    const pool = makePool({ max: 4, maxPipeline: 10 })
    const callers = manySharers(pool, 12)
    await tick(0)
    expectStats(pool, { connecting: 4, waiting: 12 })
    await tick(5)
    expect(callers.every((c) => c.done)).toBe(true)
    const counts = [1, 2, 3, 4].map((id) => callers.filter((c) => ids(c)[0] === id))
    expect(counts.map((c) => c.length)).toEqual([3, 3, 3, 3])
    expectStats(pool, { leased: 4, idle: 0, pipelined: 8, waiting: 0 })
  })

  it('regression: sharing callers wait for a connection being dialed rather than join the first one that landed', async () => {
    dialect.script.push({ ms: 1 }, { ms: 5 })
    const pool = makePool({ max: 2, maxPipeline: 10 })
    const [a, b, c] = [share(pool), share(pool), share(pool)]
    await tick(1)
    // Connection 1 landed for a; connection 2 is on its way for b (and c waits behind b).
    expect(ids(a, b, c)).toEqual([1, 0, 0])
    expectStats(pool, { connecting: 1, waiting: 2 })
    await tick(4)
    expect(ids(a, b, c)).toEqual([1, 2, 1])
    expectStats(pool, { leased: 2, idle: 0, pipelined: 1, waiting: 0 })
  })

  it('serves its sharing waiters in order as statements complete', async () => {
    const pool = makePool({ max: 1, maxPipeline: 2 })
    const holders = manySharers(pool, 2)
    await tick(0)
    const order: number[] = []
    const waiting = [1, 2, 3, 4].map((n) =>
      pool.acquire({ shared: true }).then((lease) => {
        order.push(n)
        return lease
      }),
    )
    await tick(0)
    expectStats(pool, { pipelined: 1, waiting: 4 })
    holders[0]!.value!.release()
    holders[1]!.value!.release()
    await tick(0)
    expect(order).toEqual([1, 2])
    ;(await waiting[1]!).release()
    await tick(0)
    expect(order).toEqual([1, 2, 3])
    ;(await waiting[0]!).release()
    await tick(0)
    expect(order).toEqual([1, 2, 3, 4])
    expectStats(pool, { leased: 1, pipelined: 1, waiting: 0 })
  })
})

describe('what the dialect hears', () => {
  it('pipeline(conn, true) when the first sharer gets it, nothing for those who join, and pipeline(conn, false) when the last gives it back, before the reset and before an exclusive lend', async () => {
    const pool = makePool({ max: 1, maxPipeline: 4 })
    const a = share(pool)
    await tick(0)
    const conn = a.value!.connection
    expect(dialect.pipelineCalls(conn)).toEqual([true])
    const b = share(pool)
    const c = share(pool)
    await tick(0)
    expect(ids(b, c)).toEqual([1, 1])
    expect(dialect.pipelineCalls(conn)).toEqual([true])
    const exclusive = pool.acquire().then((lease) => {
      dialect.log.push(`lent #${lease.connection.id} to an exclusive caller`)
      return lease
    })
    await tick(0)
    a.value!.release()
    b.value!.release()
    expect(dialect.pipelineCalls(conn)).toEqual([true])
    c.value!.release()
    const lease = await exclusive
    expect(dialect.log).toEqual([
      'pipeline #1 on',
      'pipeline #1 off',
      'reset #1',
      'lent #1 to an exclusive caller',
    ])
    // An exclusive lease turns nothing on or off.
    lease.release()
    await tick(0)
    expect(dialect.pipelineCalls(conn)).toEqual([true, false])
    expectStats(pool, { idle: 1, pipelined: 0 })
  })

  it('turns pipelining off before an asynchronous reset too, and on again for the next sharer', async () => {
    dialect.syncReset = false
    dialect.resetDelay = 5
    const pool = makePool({ max: 1, maxPipeline: 4 })
    const a = share(pool)
    await tick(0)
    a.value!.release()
    expect(dialect.log).toEqual(['pipeline #1 on', 'pipeline #1 off', 'reset #1'])
    expectStats(pool, { resetting: 1, pipelined: 0 })
    const b = share(pool)
    await tick(5)
    expect(ids(b)).toEqual([1])
    expect(dialect.log).toEqual(['pipeline #1 on', 'pipeline #1 off', 'reset #1', 'pipeline #1 on'])
    expectStats(pool, { leased: 1, pipelined: 0 })
  })

  it('a connection whose pipeline() returns false is lent to one sharer at a time', async () => {
    dialect.enablePipeline({ refuse: (connection) => connection.id === 1 })
    const pool = makePool({ max: 1, maxPipeline: 4 })
    const a = share(pool)
    await tick(0)
    const b = share(pool)
    await expectLentInTurn(pool, [a, b])
    // Asked again for the next sharer: the answer may change (a pooler's mode found meanwhile).
    expect(dialect.pipelineCalls(dialect.all[0]!)).toEqual([true, true])
    expectStats(pool, { leased: 1, pipelined: 0, waiting: 0 })
  })

  it('sharers join only the connections that pipeline', async () => {
    dialect.enablePipeline({ refuse: (connection) => connection.id === 1 })
    const pool = makePool({ max: 2, maxPipeline: 4 })
    const a = share(pool)
    const b = share(pool)
    await tick(0)
    expect(ids(a, b)).toEqual([1, 2])
    await expectSharersLent(pool, 3, 2)
    await expectSharersLent(pool, 1, 0) // connection 2 is at maxPipeline, 1 cannot pipeline
    expectStats(pool, { pipelined: 3, waiting: 1 })
  })

  it('a pipeline() that throws counts as a connection that cannot pipeline', async () => {
    const pool = makePool({ max: 1, maxPipeline: 4 })
    let calls = 0
    dialect.pipeline = () => {
      calls++
      throw new Error('driver internals changed')
    }
    const a = share(pool)
    await tick(0)
    const b = share(pool)
    await expectLentInTurn(pool, [a, b])
    b.value!.release()
    expect(calls).toBe(2) // asked for each sharer in turn; never turned off, since never on
    expectStats(pool, { idle: 1, leased: 0, pipelined: 0 })
  })

  it('a dialect without pipeline() never shares: shared: true changes nothing', async () => {
    const pool = fake.make({ max: 1, maxPipeline: 4 })
    expect(dialect.pipeline).toBeUndefined()
    const a = share(pool)
    await tick(0)
    const b = share(pool)
    await expectLentInTurn(pool, [a, b])
    expectStats(pool, { pipelined: 0 })
  })

  it('maxPipeline: 1 never shares, and never calls pipeline()', async () => {
    const pool = makePool({ max: 1, maxPipeline: 1 })
    const a = share(pool)
    await tick(0)
    const b = share(pool)
    await expectLentInTurn(pool, [a, b])
    expect(dialect.log.filter((line) => line.startsWith('pipeline'))).toEqual([])
  })
})

describe('exclusive callers among sharers', () => {
  it('an exclusive caller queued behind sharers gets the first connection that drains, ahead of sharers who came later', async () => {
    const pool = makePool({ max: 1, maxPipeline: 4 })
    const a = share(pool)
    const b = share(pool)
    await tick(0)
    expect(ids(a, b)).toEqual([1, 1])
    const exclusive = settle(pool.acquire())
    await tick(0)
    // Room for two more on the connection, but the exclusive caller is ahead: they queue.
    const late = await expectSharersLent(pool, 2, 0)
    expectStats(pool, { pipelined: 1, waiting: 3 })
    a.value!.release()
    await tick(0)
    // A statement completed: still nobody joins while the exclusive caller waits.
    const later = share(pool)
    await tick(0)
    expect(ids(...late, later)).toEqual([0, 0, 0])
    expect(exclusive.done).toBe(false)
    b.value!.release()
    await tick(0)
    expect(exclusive.value?.connection.id).toBe(1)
    expectStats(pool, { leased: 1, pipelined: 0, waiting: 3 })
    // Nobody joins the exclusive holder's connection.
    const more = share(pool)
    await tick(0)
    expect(ids(...late, later, more)).toEqual([0, 0, 0, 0])
    expect(dialect.pipelineCalls(dialect.all[0]!)).toEqual([true, false])
    exclusive.value!.release()
    await tick(0)
    expect(ids(...late, later, more)).toEqual([1, 1, 1, 1])
    expectStats(pool, { leased: 1, pipelined: 3, waiting: 0 })
  })

  it('regression: sharers queued behind an exclusive caller join the other shared connections as soon as it is served', async () => {
    const pool = makePool({ max: 2, maxPipeline: 4 })
    const first = manySharers(pool, 4)
    await tick(0)
    expect(ids(...first)).toEqual([1, 2, 1, 2])
    const exclusive = settle(pool.acquire())
    const behind = share(pool)
    await tick(0)
    expectStats(pool, { pipelined: 2, waiting: 2 })
    first[0]!.value!.release()
    first[2]!.value!.release()
    await tick(0)
    expect(exclusive.value?.connection.id).toBe(1)
    // Connection 2 has room and nobody exclusive is ahead any more: no need to wait for one of
    // its statements to complete.
    expect(ids(behind)).toEqual([2])
    expectStats(pool, { leased: 2, pipelined: 2, waiting: 0 })
  })
})

describe('a shared connection that breaks', () => {
  it("destroy() of one sharer's lease tears the connection down at once and revokes the others' leases; waiters get a new one", async () => {
    const pool = makePool({ max: 1, maxPipeline: 3 })
    const invalidated = invalidations(pool)
    const sharers = manySharers(pool, 3)
    await tick(0)
    expect(ids(...sharers)).toEqual([1, 1, 1])
    const waiter = share(pool)
    await tick(0)
    expectStats(pool, { pipelined: 2, waiting: 1 })
    const [a, b, c] = sharers.map((s) => s.value!)
    a!.destroy(new Error('the driver is wedged'))
    // No goodbye: the others' statements fail now rather than wait behind a polite close.
    expect(dialect.tornDown).toEqual([dialect.all[0]])
    expect(dialect.all[0]!.open).toBe(false)
    expect(b!.active).toBe(false)
    expect(c!.active).toBe(false)
    expect(() => b!.release()).not.toThrow()
    expect(() => c!.destroy()).not.toThrow()
    expectStats(pool, { revoked: 2, released: 1, pipelined: 0 })
    expect(invalidated).toEqual(['destroyed'])
    await tick(0)
    expect(ids(waiter)).toEqual([2])
    expectStats(pool, { total: 1, leased: 1, revoked: 2, released: 1, pipelined: 0, waiting: 0 })
  })

  it('destroying the only sharer closes the connection with a goodbye', async () => {
    const pool = makePool({ max: 1, maxPipeline: 3 })
    const a = share(pool)
    await tick(0)
    a.value!.destroy()
    await tick(0)
    expect(dialect.tornDown).toEqual([])
    expect(dialect.all[0]!.open).toBe(false)
    expectStats(pool, { total: 0, revoked: 0, released: 1 })
  })

  it('a connection reported dead is not joined any more, and is retired when its last sharer gives it back', async () => {
    const pool = makePool({ max: 1, maxPipeline: 4 })
    const invalidated = invalidations(pool)
    const a = share(pool)
    const b = share(pool)
    await tick(0)
    expect(ids(a, b)).toEqual([1, 1])
    dialect.kill(dialect.all[0]!)
    const c = share(pool)
    await tick(0)
    expect(ids(c)).toEqual([0])
    expectStats(pool, { leased: 1, pipelined: 1, waiting: 1 })
    a.value!.release()
    await tick(0)
    expect(ids(c)).toEqual([0])
    expect(dialect.all[0]!.open).toBe(true) // its other sharer is still on it
    b.value!.release()
    expect(dialect.log.slice(-2)).toEqual(['pipeline #1 off', 'close #1'])
    expect(invalidated).toEqual(['disconnect'])
    await tick(0)
    expect(ids(c)).toEqual([2])
    expectStats(pool, { total: 1, leased: 1, pipelined: 0 })
  })

  it('a connection past its lifetime is not joined any more, and is retired when its last sharer gives it back', async () => {
    const pool = makePool({ max: 1, maxPipeline: 4, maxLifetime: 1_000 })
    const invalidated = invalidations(pool)
    const a = share(pool)
    const b = share(pool)
    await tick(0)
    await tick(1_000)
    expectStats(pool, { expired: 1, pipelined: 1 })
    const c = share(pool)
    await tick(0)
    expect(ids(c)).toEqual([0])
    a.value!.release()
    b.value!.release()
    expect(invalidated).toEqual(['lifetime'])
    await tick(0)
    expect(ids(c)).toEqual([2])
    expectStats(pool, { total: 1, expired: 0, pipelined: 0 })
  })

  it('a stale connection (a disconnect seen on a newer one) is not joined any more, and is retired when its sharers are done', async () => {
    const pool = makePool({ max: 2, maxPipeline: 4 })
    const invalidated = invalidations(pool)
    const a = share(pool)
    const b = share(pool)
    const c = share(pool)
    await tick(0)
    expect(ids(a, b, c)).toEqual([1, 2, 1])
    // Connection 2 dies: every connection made before it is stale.
    dialect.kill(dialect.all[1]!)
    const d = share(pool)
    await tick(0)
    expect(ids(d)).toEqual([0])
    b.value!.release()
    await tick(0)
    // Connection 2 is retired, and its replacement goes to d.
    expect(ids(d)).toEqual([3])
    await expectSharersLent(pool, 1, 3) // joins the new one, never the stale one
    a.value!.release()
    c.value!.release()
    await tick(0)
    expect(invalidated).toEqual(['disconnect', 'stale'])
    expect(dialect.all[0]!.open).toBe(false)
    expectStats(pool, { total: 1, leased: 1, pipelined: 1 })
  })
})

describe('closing the pool', () => {
  it('close() waits for the sharers and closes their connection when the last one gives it back', async () => {
    const pool = makePool({ max: 1, maxPipeline: 2 })
    const a = share(pool)
    const b = share(pool)
    await tick(0)
    const waiter = share(pool)
    const exclusive = settle(pool.acquire())
    await tick(0)
    const closed = settle(pool.close())
    await tick(0)
    expect(waiter.error).toBeInstanceOf(PoolClosedError)
    expect(exclusive.error).toBeInstanceOf(PoolClosedError)
    expect(closed.done).toBe(false)
    a.value!.release()
    await tick(0)
    expect(closed.done).toBe(false)
    expect(dialect.all[0]!.open).toBe(true)
    expectStats(pool, { leased: 1, pipelined: 0 })
    b.value!.release()
    await tick(0)
    expect(closed.done).toBe(true)
    expect(dialect.log).toEqual(['pipeline #1 on', 'pipeline #1 off', 'close #1'])
    expect(dialect.tornDown).toEqual([])
    expectStats(pool, { total: 0, released: 2, revoked: 0 })
  })

  it("close() that times out revokes the sharers' leases", async () => {
    const pool = makePool({ max: 1, maxPipeline: 4 })
    const a = share(pool)
    const b = share(pool)
    await tick(0)
    const closed = settle(pool.close({ timeout: 100 }))
    await tick(100)
    expect(closed.done).toBe(true)
    expect(a.value!.active).toBe(false)
    expect(b.value!.active).toBe(false)
    expectStats(pool, { total: 0, revoked: 2, pipelined: 0 })
  })

  it("destroy() revokes every sharer's lease at once", async () => {
    const pool = makePool({ max: 1, maxPipeline: 4 })
    const a = share(pool)
    const b = share(pool)
    const c = share(pool)
    await tick(0)
    const destroyed = settle(pool.destroy())
    for (const lease of [a, b, c]) {
      expect(lease.value!.active).toBe(false)
      expect(() => lease.value!.release()).not.toThrow()
    }
    expectStats(pool, { revoked: 3, released: 0, pipelined: 0, leased: 0 })
    await tick(0)
    expect(destroyed.done).toBe(true)
    expect(dialect.all[0]!.open).toBe(false)
    expectStats(pool, { total: 0, acquired: 3, revoked: 3 })
  })
})

describe('request scopes', () => {
  it("acquire({ shared: true }) in a scope gets the request's own connection, which no sharer joins", async () => {
    const pool = makePool({ max: 1, maxPipeline: 4 })
    const scope = pool.openScope()
    const inside = await scope.run(() => pool.acquire({ shared: true }))
    expect(inside.connection.id).toBe(1)
    expect(dialect.pipelineCalls(inside.connection)).toEqual([])
    const outside = share(pool)
    await tick(0)
    expect(ids(outside)).toEqual([0])
    expectStats(pool, { leased: 1, pipelined: 0, waiting: 1 })
    // The request's next statement gets the same connection, still unshared.
    inside.release()
    const again = await scope.run(() => pool.acquire({ shared: true }))
    expect(again.connection.id).toBe(1)
    await tick(0)
    expect(ids(outside)).toEqual([0])
    again.release()
    await scope.end()
    await tick(0)
    expect(ids(outside)).toEqual([1])
    expect(dialect.pipelineCalls(dialect.all[0]!)).toEqual([true])
    expectStats(pool, { leased: 1, pipelined: 0, waiting: 0 })
  })

  it("sharers outside the scope share the other connections, never the request's", async () => {
    const pool = makePool({ max: 2, maxPipeline: 4 })
    const scope = pool.openScope()
    const inside = await scope.run(() => pool.acquire({ shared: true }))
    const outside = manySharers(pool, 3)
    await tick(0)
    expect(ids(...outside)).toEqual([2, 2, 2])
    expect(ids(...outside)).not.toContain(inside.connection.id)
    expectStats(pool, { leased: 2, pipelined: 2 })
    inside.release()
    await scope.end()
  })
})

describe('option validation', () => {
  it.each([0, 1.5, '4', -1, Number.NaN])(
    'maxPipeline %s is refused when the pool is made, naming the option, the value and what is allowed',
    (value) => {
      dialect.enablePipeline()
      let error: unknown
      try {
        fake.make({ max: 1, maxPipeline: value as number })
      } catch (caught) {
        error = caught
      }
      expect(error).toBeInstanceOf(InvalidOptionError)
      expect(error).toMatchObject({ option: 'maxPipeline' })
      const message = (error as Error).message
      expect(message).toContain('maxPipeline')
      expect(message).toContain(String(value))
      expect(message).toContain('an integer ≥ 1')
      expect(dialect.connects).toBe(0)
    },
  )

  it('acquire({ shared }) that is not a boolean is refused before anything is queued', async () => {
    const pool = makePool({ max: 1, maxPipeline: 4 })
    const refused = settle(pool.acquire({ shared: 'yes' as unknown as boolean }))
    await tick(0)
    expect(refused.error).toBeInstanceOf(InvalidOptionError)
    expect(refused.error).toMatchObject({ option: 'shared' })
    expect((refused.error as Error).message).toMatch(/shared.*yes.*true, false or 'last'/)
    expect(dialect.connects).toBe(0)
    expectStats(pool, { total: 0, waiting: 0, acquired: 0 })
  })

  it('shared: false is an exclusive caller', async () => {
    const pool = makePool({ max: 1, maxPipeline: 4 })
    const a = share(pool)
    await tick(0)
    const b = settle(pool.acquire({ shared: false }))
    await tick(0)
    expect(ids(a, b)).toEqual([1, 0])
    expectStats(pool, { pipelined: 0, waiting: 1 })
  })
})

describe('a sharing waiter that gives up', () => {
  it('times out (timeout, acquireTimeout) and leaves the queue in order', async () => {
    const pool = makePool({ max: 1, maxPipeline: 2, acquireTimeout: 200 })
    const holders = manySharers(pool, 2)
    await tick(0)
    const short = share(pool, { timeout: 50 })
    const long = share(pool)
    const next = share(pool)
    await tick(50)
    expect(short.error).toBeInstanceOf(AcquireTimeoutError)
    expectStats(pool, { timeouts: 1, waiting: 2 })
    holders[0]!.value!.release()
    await tick(0)
    expect(ids(long, next)).toEqual([1, 0])
    await tick(200)
    expect(next.error).toBeInstanceOf(AcquireTimeoutError)
    expectStats(pool, { timeouts: 2, waiting: 0, pipelined: 1 })
  })

  it('is aborted by its signal, and the next sharer takes the seat', async () => {
    const pool = makePool({ max: 1, maxPipeline: 2 })
    const holders = manySharers(pool, 2)
    await tick(0)
    const controller = new AbortController()
    const aborted = share(pool, { signal: controller.signal })
    const next = share(pool)
    await tick(0)
    const reason = new Error('client went away')
    controller.abort(reason)
    await tick(0)
    expect(aborted.error).toBe(reason)
    expectStats(pool, { aborted: 1, waiting: 1 })
    holders[1]!.value!.release()
    await tick(0)
    expect(ids(next)).toEqual([1])
    expectStats(pool, { waiting: 0, pipelined: 1 })
  })

  it('an already aborted signal is refused at once, even when a seat is free', async () => {
    const pool = makePool({ max: 1, maxPipeline: 4 })
    const a = share(pool)
    await tick(0)
    const controller = new AbortController()
    controller.abort(new Error('too late'))
    const refused = share(pool, { signal: controller.signal })
    await tick(0)
    expect((refused.error as Error).message).toBe('too late')
    expect(ids(a)).toEqual([1])
    expectStats(pool, { aborted: 1, pipelined: 0 })
  })
})

describe('FakeDisconnect on a shared connection', () => {
  it('a sharer destroying with a disconnect makes the older connections stale', async () => {
    const pool = makePool({ max: 2, maxPipeline: 4 })
    const a = share(pool)
    const b = share(pool)
    const c = share(pool)
    const d = share(pool)
    await tick(0)
    expect(ids(a, b, c, d)).toEqual([1, 2, 1, 2])
    d.value!.destroy(new FakeDisconnect('socket closed'))
    expect(b.value!.active).toBe(false)
    expect(dialect.tornDown).toEqual([dialect.all[1]])
    // Connection 1 was made before 2: stale now, so nobody joins it.
    await expectSharersLent(pool, 2, 3)
    expectStats(pool, { leased: 2, pipelined: 2, revoked: 1 })
  })
})

describe('what the events say of sharing callers', () => {
  it("regression: each sharer's hold time and wait are its own, not counted from the first sharer's lend", async () => {
    const pool = makePool({ max: 1, maxPipeline: 2 })
    const held: number[] = []
    const waited: number[] = []
    pool.on('release', (e) => held.push(e.heldMs))
    pool.on('acquire', (e) => waited.push(e.waitMs))
    const a = share(pool)
    await tick(0)
    await tick(100)
    const b = share(pool) // joins at once, 100 ms after a was lent the connection
    await tick(0)
    await tick(10)
    const c = share(pool) // waits: the connection is at maxPipeline
    await tick(0)
    await tick(20)
    a.value!.release() // a held it 130 ms; c joins after waiting 20 ms
    await tick(0)
    await tick(40)
    b.value!.release() // b held it 70 ms
    c.value!.release() // c held it 40 ms
    expect(ids(a, b, c)).toEqual([1, 1, 1])
    expect(waited).toEqual([0, 0, 20])
    expect(held).toEqual([130, 70, 40])
    expectStats(pool, { idle: 1, pipelined: 0 })
  })
})

describe("sealing: acquire({ shared: 'last' })", () => {
  it('a last sharer seals its connection: later sharers join the other shared connections, never that one', async () => {
    const pool = makePool({ max: 2, maxPipeline: 4 })
    const a = shareLast(pool)
    const b = share(pool)
    await tick(0)
    expect(ids(a, b)).toEqual([1, 2])
    // Unsealed, connection 1 (one sharer) would be the least loaded each other time.
    await expectSharersLent(pool, 3, 2)
    expectStats(pool, { leased: 2, pipelined: 3, waiting: 0 })
    // Connection 2 is at maxPipeline and 1 is sealed: the next sharer waits.
    const waiter = share(pool)
    await tick(0)
    expect(ids(waiter)).toEqual([0])
    expectStats(pool, { pipelined: 3, waiting: 1 })
    // A statement completes on connection 2: the waiter takes its seat there, not on 1.
    b.value!.release()
    await tick(0)
    expect(ids(waiter)).toEqual([2])
    expect(a.value!.active).toBe(true)
    expectStats(pool, { leased: 2, pipelined: 3, waiting: 0 })
  })

  it('the seal lifts when that sharer gives its lease back: waiting sharers then join the connection', async () => {
    // a joins the busy connection and seals it; the sharer already on it stays.
    const { pool, x, a } = await sealerBehindSharer()
    await tick(0)
    expect(ids(x, a)).toEqual([1, 1])
    expect(x.value!.active).toBe(true)
    expectStats(pool, { leased: 1, pipelined: 1, waiting: 0 })
    const y = share(pool)
    const z = share(pool)
    await tick(0)
    expect(ids(y, z)).toEqual([0, 0]) // room for two more, but sealed
    expectStats(pool, { pipelined: 1, waiting: 2 })
    a.value!.release()
    await tick(0)
    // x still carries a statement: the connection never drained, yet y and z join it now.
    expect(ids(y, z)).toEqual([1, 1])
    expect(dialect.pipelineCalls(dialect.all[0]!)).toEqual([true])
    expectStats(pool, { leased: 1, pipelined: 2, waiting: 0, released: 1 })
  })

  it('a sharer that is not the sealer gives its lease back: the seal holds', async () => {
    const { pool, x, a } = await sealerBehindSharer()
    const y = share(pool)
    await tick(0)
    expect(ids(x, a, y)).toEqual([1, 1, 0])
    x.value!.release()
    await tick(0)
    expect(ids(y)).toEqual([0])
    expectStats(pool, { leased: 1, pipelined: 0, waiting: 1 })
    a.value!.release()
    await tick(0)
    // The last sharer out: the connection goes back, and to y as a new first sharer.
    expect(ids(y)).toEqual([1])
    expect(dialect.pipelineCalls(dialect.all[0]!)).toEqual([true, false, true])
    expectStats(pool, { leased: 1, pipelined: 0, waiting: 0 })
  })

  it('a waiting last sharer joins the least-loaded connection and seals it; with every shared connection sealed, sharers wait', async () => {
    const pool = makePool({ max: 2, maxPipeline: 4 })
    const a = shareLast(pool)
    const b = shareLast(pool)
    await tick(0)
    expect(ids(a, b)).toEqual([1, 2])
    const c = share(pool)
    const d = shareLast(pool)
    await tick(0)
    expect(ids(c, d)).toEqual([0, 0])
    expectStats(pool, { leased: 2, pipelined: 0, waiting: 2 })
    a.value!.release()
    await tick(0)
    // Connection 1 goes to c as its first sharer; d joins it behind c and seals it.
    expect(ids(c, d)).toEqual([1, 1])
    const e = share(pool)
    await tick(0)
    expect(ids(e)).toEqual([0])
    expectStats(pool, { leased: 2, pipelined: 1, waiting: 1 })
    b.value!.release()
    await tick(0)
    expect(ids(e)).toEqual([2])
    expectStats(pool, { leased: 2, pipelined: 1, waiting: 0 })
  })

  it("an exclusive caller queued behind a sealed connection's sharers still gets it once they are done", async () => {
    const { pool, x, a } = await sealerBehindSharer()
    await tick(0)
    const exclusive = settle(pool.acquire())
    const y = share(pool)
    await tick(0)
    a.value!.release()
    await tick(0)
    // The seal lifted, but the exclusive caller is ahead of y: nobody joins.
    expect(ids(y)).toEqual([0])
    x.value!.release()
    await tick(0)
    expect(exclusive.value?.connection.id).toBe(1)
    expectStats(pool, { leased: 1, pipelined: 0, waiting: 1 })
    exclusive.value!.release()
    await tick(0)
    expect(ids(y)).toEqual([1])
  })

  it("'last' with a dialect that cannot pipeline behaves like any acquire", async () => {
    const pool = fake.make({ max: 1, maxPipeline: 4 })
    expect(dialect.pipeline).toBeUndefined()
    const a = shareLast(pool)
    await tick(0)
    const b = share(pool)
    const c = shareLast(pool)
    await expectLentInTurn(pool, [a, b, c])
    c.value!.release()
    expectStats(pool, { idle: 1, released: 3, pipelined: 0 })
  })

  it("'last' on a connection whose pipeline() returns false is lent one caller at a time", async () => {
    dialect.enablePipeline({ refuse: (connection) => connection.id === 1 })
    const pool = makePool({ max: 1, maxPipeline: 4 })
    const a = shareLast(pool)
    await tick(0)
    const b = share(pool)
    await expectLentInTurn(pool, [a, b])
    expectStats(pool, { leased: 1, pipelined: 0, waiting: 0 })
  })

  it("'last' with maxPipeline 1 is lent one caller at a time, and never calls pipeline()", async () => {
    const pool = makePool({ max: 1, maxPipeline: 1 })
    const a = shareLast(pool)
    await tick(0)
    const b = shareLast(pool)
    const c = share(pool)
    await expectLentInTurn(pool, [a, b, c])
    expect(dialect.log.filter((line) => line.startsWith('pipeline'))).toEqual([])
    expectStats(pool, { leased: 1, pipelined: 0, waiting: 0 })
  })

  it('destroy() of the pool while sealed revokes every lease and fails the waiters', async () => {
    const { pool, x, a } = await sealerBehindSharer()
    const y = share(pool)
    await tick(0)
    expectStats(pool, { pipelined: 1, waiting: 1 })
    const destroyed = settle(pool.destroy())
    await tick(0)
    expect(y.error).toBeInstanceOf(PoolClosedError)
    expect(x.value!.active).toBe(false)
    expect(a.value!.active).toBe(false)
    expect(() => a.value!.release()).not.toThrow()
    expect(destroyed.done).toBe(true)
    expectStats(pool, { total: 0, revoked: 2, pipelined: 0, waiting: 0 })
  })

  it('close() while sealed waits for both sharers and closes the connection', async () => {
    const { pool, x, a } = await sealerBehindSharer()
    const y = share(pool)
    await tick(0)
    const closed = settle(pool.close())
    await tick(0)
    expect(y.error).toBeInstanceOf(PoolClosedError)
    expectStats(pool, { leased: 1, pipelined: 1, waiting: 0 })
    a.value!.release()
    await tick(0)
    expect(closed.done).toBe(false)
    expectStats(pool, { leased: 1, pipelined: 0 })
    x.value!.release()
    await tick(0)
    expect(closed.done).toBe(true)
    expectStats(pool, { total: 0, released: 2, revoked: 0 })
  })

  it("destroying the sealer's lease tears the connection down, revokes the others, and its replacement is not sealed", async () => {
    const { pool, x, a } = await sealerBehindSharer()
    const waiters = manySharers(pool, 2)
    await tick(0)
    expectStats(pool, { pipelined: 1, waiting: 2 })
    a.value!.destroy(new Error('the driver is wedged'))
    expect(x.value!.active).toBe(false)
    expect(dialect.tornDown).toEqual([dialect.all[0]])
    expectStats(pool, { revoked: 1, released: 1, pipelined: 0 })
    await tick(0)
    // A new connection for the first waiter, and the second joins it: no seal carried over.
    expect(ids(...waiters)).toEqual([2, 2])
    expectStats(pool, { total: 1, leased: 1, pipelined: 1, waiting: 0 })
  })

  it("acquire({ shared: 'last' }) is accepted; any other string is refused naming true, false or 'last'", async () => {
    const pool = makePool({ max: 1, maxPipeline: 4 })
    const refused = settle(pool.acquire({ shared: 'first' as unknown as 'last' }))
    await tick(0)
    expect(refused.error).toBeInstanceOf(InvalidOptionError)
    expect((refused.error as Error).message).toMatch(/shared.*first.*true, false or 'last'/)
    const a = shareLast(pool)
    await tick(0)
    expect(ids(a)).toEqual([1])
    expectStats(pool, { leased: 1, acquired: 1 })
  })
})

describe('sealing in request scopes', () => {
  it("regression: acquire({ shared: 'last' }) in a request scope lent the request's own connection as a shared one and turned pipelining on for it", async () => {
    const pool = makePool({ max: 1, maxPipeline: 4 })
    const scope = pool.openScope()
    const inside = await scope.run(() => pool.acquire({ shared: 'last' }))
    expect(inside.connection.id).toBe(1)
    expect(dialect.pipelineCalls(inside.connection)).toEqual([])
    expectStats(pool, { leased: 1, pipelined: 0 })
    const outside = share(pool)
    await tick(0)
    expect(ids(outside)).toEqual([0])
    inside.release()
    await scope.end()
    await tick(0)
    expect(ids(outside)).toEqual([1])
    expect(dialect.pipelineCalls(dialect.all[0]!)).toEqual([true])
    expectStats(pool, { leased: 1, pipelined: 0, waiting: 0 })
  })
})
