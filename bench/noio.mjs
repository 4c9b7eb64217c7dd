import { noioContenders, warm } from './noio-contenders.mjs'
import { summarize } from './stats.mjs'

/** The pool size of the no-I/O benchmark. */
const POOL_SIZE = 10

const AsyncFunction = /** @type {FunctionConstructor} */ (
  Object.getPrototypeOf(async () => {}).constructor
)

/**
 * The loop every caller runs: acquire, release, count. The clock is read once every 256 cycles
 * (all callers share the counter), because a read costs about as much as a hand-off. Each
 * contender gets its own copy compiled from the same text, so that the inline caches of one
 * pool's run are not made polymorphic by another's: the loop is the same, its type feedback is
 * not shared.
 * @returns {(pool: import('./noio-contenders.mjs').NoioPool, state: { stop: boolean, count: number, deadline: number }) => Promise<void>}
 */
export function compileLoop() {
  return /** @type {any} */ (
    new AsyncFunction(
      'pool',
      'state',
      `while (!state.stop) {
        const handle = await pool.acquire()
        pool.release(handle)
        if ((++state.count & 255) === 0 && performance.now() >= state.deadline) state.stop = true
      }`,
    )
  )
}

/**
 * Rejects after `ms` unless `promise` settles first; a pool that loses a waiter must fail the
 * run, not hang it. The timer fires only once the microtask queue drains, which the loop's own
 * deadline guarantees.
 * @template T
 * @param {Promise<T>} promise
 * @param {number} ms
 * @param {string} what
 * @returns {Promise<T>}
 */
export function bounded(promise, ms, what) {
  /** @type {NodeJS.Timeout | undefined} */
  let timer
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

/**
 * One timed window of one contender at one concurrency: a fresh pool, warmed up (all 10
 * resources open), then `callers` concurrent loops until the window ends. Cycles per second.
 * @param {import('./noio-contenders.mjs').NoioContender} contender
 * @param {(pool: any, state: any) => Promise<void>} loop
 * @param {number} callers
 * @param {number} windowMs
 * @returns {Promise<number>}
 */
export async function measure(contender, loop, callers, windowMs) {
  const pool = contender.create(POOL_SIZE)
  try {
    await warm(pool, POOL_SIZE, contender.name)
    globalThis.gc?.()
    const state = { stop: false, count: 0, deadline: 0 }
    const started = performance.now()
    state.deadline = started + windowMs
    const tasks = new Array(callers)
    for (let i = 0; i < callers; i++) tasks[i] = loop(pool, state)
    await bounded(
      Promise.all(tasks),
      windowMs * 10 + 10_000,
      `${contender.name} at ${callers} callers`,
    )
    const elapsed = performance.now() - started
    return (state.count / elapsed) * 1000
  } finally {
    await bounded(pool.close(), 10_000, `closing ${contender.name}`)
  }
}

/**
 * The no-I/O benchmark: acquire/release cycles per second on a no-op resource, pool of 10, at
 * each concurrency, every contender interleaved within each round (the order rotates from round
 * to round), after one untimed round that warms up the JIT.
 * @param {{
 *   lifeguard: import('./load-lifeguard.mjs').Lifeguard,
 *   callers: number[],
 *   runs: number,
 *   windowMs: number,
 *   only?: string[] | undefined,
 *   log: (line: string) => void,
 * }} options
 */
export async function runNoio({ lifeguard, callers, runs, windowMs, only, log }) {
  const contenders = noioContenders(lifeguard).filter(
    (c) => only === undefined || only.includes(c.name) || c.name === 'minimal',
  )
  const loops = new Map(contenders.map((c) => [c.name, compileLoop()]))
  /** @type {Record<string, Record<number, number[]>>} */
  const samples = {}
  /** @type {Record<string, string>} */
  const errors = {}
  for (const c of contenders) samples[c.name] = Object.fromEntries(callers.map((n) => [n, []]))
  for (let round = 0; round <= runs; round++) {
    const warmup = round === 0
    for (const n of callers) {
      for (let i = 0; i < contenders.length; i++) {
        const contender = contenders[(i + round) % contenders.length]
        if (errors[contender.name] !== undefined) continue
        try {
          const cps = await measure(
            contender,
            /** @type {any} */ (loops.get(contender.name)),
            n,
            warmup ? Math.min(windowMs, 100) : windowMs,
          )
          if (!warmup) samples[contender.name][n].push(cps)
        } catch (error) {
          errors[contender.name] =
            `at ${n} callers: ${error instanceof Error ? error.message : error}`
          log(`  noio ${contender.name}: ERROR ${errors[contender.name]}`)
        }
      }
    }
    if (!warmup) log(`  noio round ${round}/${runs} done`)
  }
  /** @type {Record<string, { byCallers: Record<number, import('./stats.mjs').Summary>, error?: string }>} */
  const result = {}
  for (const c of contenders) {
    result[c.name] = {
      byCallers: Object.fromEntries(callers.map((n) => [n, summarize(samples[c.name][n])])),
      ...(errors[c.name] === undefined ? {} : { error: errors[c.name] }),
    }
  }
  return { poolSize: POOL_SIZE, callers, runs, windowMs, contenders: result }
}
