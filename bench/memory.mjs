import { bounded } from './noio.mjs'
import { noioContenders, warm } from './noio-contenders.mjs'
import { summarize } from './stats.mjs'

/** Two full collections, so that what is left is what is reachable. */
function settledHeap() {
  const gc = /** @type {() => void} */ (globalThis.gc)
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

/**
 * Heap bytes of one resource of the kind a contender lends, measured the same way, so that it
 * can be subtracted: the pool's bookkeeping is what is left.
 * @param {() => object} make
 * @param {number} n
 */
function resourceBytes(make, n) {
  const held = new Array(n).fill(undefined)
  const before = settledHeap()
  for (let i = 0; i < n; i++) held[i] = make()
  const after = settledHeap()
  if (held.length !== n) throw new Error('unreachable')
  return (after - before) / n
}

/**
 * Heap bytes per pooled connection, the resource itself excluded: an empty pool of `max: n`,
 * then the same pool with all `n` connections open and idle.
 * @param {import('./noio-contenders.mjs').NoioContender} contender
 * @param {number} n
 */
async function perConnection(contender, n) {
  const resource = resourceBytes(contender.resource, n)
  const pool = contender.create(n)
  try {
    const before = settledHeap()
    await warm(pool, n, contender.name)
    const after = settledHeap()
    return (after - before) / n - resource
  } finally {
    await bounded(pool.close(), 10_000, `closing ${contender.name}`)
  }
}

/**
 * Heap bytes per waiting caller: a pool of 10 with all 10 leased, then `n` more `acquire()`
 * calls. The promise each caller holds counts: a caller has to hold one in every pool.
 * @param {import('./noio-contenders.mjs').NoioContender} contender
 * @param {number} n
 */
async function perWaiter(contender, n) {
  const pool = contender.create(10)
  try {
    await warm(pool, 10, contender.name)
    const held = await Promise.all(Array.from({ length: 10 }, () => pool.acquire()))
    const pending = new Array(n).fill(undefined)
    const before = settledHeap()
    for (let i = 0; i < n; i++) pending[i] = pool.acquire()
    const after = settledHeap()
    // Drain: each waiter releases as soon as it is served.
    const drained = pending.map((p) => p.then((handle) => pool.release(handle)))
    for (const handle of held) pool.release(handle)
    await bounded(Promise.all(drained), 30_000, `draining ${contender.name}`)
    return (after - before) / n
  } finally {
    await bounded(pool.close(), 10_000, `closing ${contender.name}`)
  }
}

/**
 * The memory benchmark: heap bytes per pooled connection (pool bookkeeping only) and per
 * waiting caller, for every no-I/O contender, several runs, interleaved. Needs `--expose-gc`.
 * @param {{
 *   lifeguard: import('./load-lifeguard.mjs').Lifeguard,
 *   runs: number,
 *   connections: number,
 *   waiters: number,
 *   only?: string[] | undefined,
 *   log: (line: string) => void,
 * }} options
 */
export async function runMemory({ lifeguard, runs, connections, waiters, only, log }) {
  if (typeof globalThis.gc !== 'function')
    throw new Error('the memory benchmark needs node --expose-gc')
  const contenders = noioContenders(lifeguard).filter(
    (c) => only === undefined || only.includes(c.name) || c.name === 'minimal',
  )
  /** @type {Record<string, { connection: number[], waiter: number[] }>} */
  const samples = {}
  /** @type {Record<string, string>} */
  const errors = {}
  for (const c of contenders) samples[c.name] = { connection: [], waiter: [] }
  for (let round = 0; round < runs; round++) {
    for (let i = 0; i < contenders.length; i++) {
      const contender = /** @type {import('./noio-contenders.mjs').NoioContender} */ (
        contenders[(i + round) % contenders.length]
      )
      if (errors[contender.name] !== undefined) continue
      try {
        samples[contender.name].connection.push(await perConnection(contender, connections))
        samples[contender.name].waiter.push(await perWaiter(contender, waiters))
      } catch (error) {
        errors[contender.name] = error instanceof Error ? error.message : String(error)
        log(`  memory ${contender.name}: ERROR ${errors[contender.name]}`)
      }
    }
  }
  log(`  memory: ${runs} rounds done`)
  /** @type {Record<string, any>} */
  const result = {}
  for (const c of contenders) {
    result[c.name] = {
      bytesPerConnection: summarize(samples[c.name].connection),
      bytesPerWaiter: summarize(samples[c.name].waiter),
      ...(errors[c.name] === undefined ? {} : { error: errors[c.name] }),
    }
  }
  return { runs, connections, waiters, contenders: result }
}
