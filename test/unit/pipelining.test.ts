import { beforeEach, describe, expect, it } from 'vitest'
import type { Lease, Pool } from '../../src/index.js'
import { tick } from '../support/clock.js'
import type { FakeConnection, FakeDialect } from '../support/fake-dialect.js'
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

function share(
  pool: Pool<FakeConnection>,
  options: { timeout?: number; signal?: AbortSignal } = {},
) {
  return settle(
    pool.acquire({ ...options, shared: true }).then((lease) => {
      idOf.set(lease, lease.connection.id)
      return lease
    }),
  )
}

/** The id of the connection each sharing caller got (0 while it waits). */
function ids(...leases: Array<Settled<Lease<FakeConnection>>>): number[] {
  return leases.map((l) => (l.value === undefined ? 0 : idOf.get(l.value)!))
}

/** Opens `n` connections and parks them idle. */
async function _warm(pool: Pool<FakeConnection>, n: number): Promise<void> {
  const leases = await Promise.all(Array.from({ length: n }, () => pool.acquire()))
  for (const lease of leases) lease.release()
  await tick(0)
}

describe('where a sharing caller goes', () => {
  it('regression: a burst of sharing callers is spread over the connections being opened, not piled on the first one that lands', async () => {
    dialect.connectDelay = 5
    const pool = makePool({ max: 4, maxPipeline: 10 })
    const callers = Array.from({ length: 12 }, () => share(pool))
    await tick(0)
    expect(checkInvariants(pool, dialect)).toMatchObject({ connecting: 4, waiting: 12 })
    await tick(5)
    expect(callers.every((c) => c.done)).toBe(true)
    const counts = [1, 2, 3, 4].map((id) => callers.filter((c) => ids(c)[0] === id))
    expect(counts.map((c) => c.length)).toEqual([3, 3, 3, 3])
    expect(checkInvariants(pool, dialect)).toMatchObject({
      leased: 4,
      idle: 0,
      pipelined: 8,
      waiting: 0,
    })
  })

  it('regression: sharing callers wait for a connection being dialed rather than join the first one that landed', async () => {
    dialect.script.push({ ms: 1 }, { ms: 5 })
    const pool = makePool({ max: 2, maxPipeline: 10 })
    const [a, b, c] = [share(pool), share(pool), share(pool)]
    await tick(1)
    // Connection 1 landed for a; connection 2 is on its way for b (and c waits behind b).
    expect(ids(a, b, c)).toEqual([1, 0, 0])
    expect(checkInvariants(pool, dialect)).toMatchObject({ connecting: 1, waiting: 2 })
    await tick(4)
    expect(ids(a, b, c)).toEqual([1, 2, 1])
    expect(checkInvariants(pool, dialect)).toMatchObject({
      leased: 2,
      idle: 0,
      pipelined: 1,
      waiting: 0,
    })
  })
})

describe('exclusive callers among sharers', () => {
  it('regression: sharers queued behind an exclusive caller join the other shared connections as soon as it is served', async () => {
    const pool = makePool({ max: 2, maxPipeline: 4 })
    const first = [share(pool), share(pool), share(pool), share(pool)]
    await tick(0)
    expect(ids(...first)).toEqual([1, 2, 1, 2])
    const exclusive = settle(pool.acquire())
    const behind = share(pool)
    await tick(0)
    expect(checkInvariants(pool, dialect)).toMatchObject({ pipelined: 2, waiting: 2 })
    first[0]!.value!.release()
    first[2]!.value!.release()
    await tick(0)
    expect(exclusive.value?.connection.id).toBe(1)
    // Connection 2 has room and nobody exclusive is ahead any more: no need to wait for one of
    // its statements to complete.
    expect(ids(behind)).toEqual([2])
    expect(checkInvariants(pool, dialect)).toMatchObject({ leased: 2, pipelined: 2, waiting: 0 })
  })
})
