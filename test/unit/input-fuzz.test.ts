import fc from 'fast-check'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { mysql } from '../../src/dialects/mysql.js'
import { postgres } from '../../src/dialects/postgres.js'
import { sqlite } from '../../src/dialects/sqlite.js'
import { createPool, type Lease, Pool, type PoolOptions } from '../../src/index.js'
import { tick, useFakeClock } from '../support/clock.js'
import { type FakeConnection, FakeDialect } from '../support/fake-dialect.js'

/**
 * Fuzzes every argument a caller can get wrong: the pool's options, the arguments of its
 * methods and of a lease's, and the dialect factories'. Each call must succeed, or throw or
 * reject with an error that carries a `LIFEGUARD_` code; nothing may reach the process as an
 * unhandled rejection or an uncaught exception; and once the pool is destroyed nothing is left:
 * no waiter, no lease, no open connection, no timer.
 */

const CODE = /^LIFEGUARD_[A-Z_]+$/

/** How many random pools to try; `FUZZ_RUNS=5000` for a longer hunt. */
const RUNS = Number(process.env.FUZZ_RUNS ?? 300)

/** Values of every kind, weighted towards the ones that break naive checks. */
const junk: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(
    undefined,
    null,
    Number.NaN,
    -0,
    -1,
    0.5,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    2 ** 31,
    1e21,
    Number.MAX_VALUE,
    '',
    '10',
    'true',
    'postgres://u:pw@127.0.0.1/x',
    'mysql://u:pw@127.0.0.1/x',
    true,
    false,
    [],
    {},
    10n,
    Symbol('junk'),
    () => {},
    new Date(0),
    new AbortController(),
  ),
  fc.integer({ min: -10, max: 20 }),
  fc.double(),
  fc.string({ maxLength: 12 }),
  fc.anything({ maxDepth: 2 }),
)

/** A value for an option: usually valid, sometimes junk. */
function valueFor(valid: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> {
  return fc.oneof({ weight: 1, arbitrary: junk }, { weight: 4, arbitrary: valid })
}

const duration = fc.oneof(fc.integer({ min: 0, max: 5_000 }), fc.constant(Number.POSITIVE_INFINITY))

/** Valid values of every pool option but `dialect`. */
const VALID: Record<string, fc.Arbitrary<unknown>> = {
  max: fc.integer({ min: 1, max: 5 }),
  maxOverflow: fc.integer({ min: 0, max: 3 }),
  min: fc.integer({ min: 0, max: 1 }),
  minMode: fc.constantFrom('fill', 'floor'),
  connectErrors: fc.constantFrom('retry', 'reject'),
  failFast: fc.boolean(),
  failFastAfter: fc.oneof(
    fc.integer({ min: 0, max: 5_000 }),
    fc.constant(Number.POSITIVE_INFINITY),
  ),
  acquireTimeout: fc.oneof(
    fc.integer({ min: 1, max: 5_000 }),
    fc.constant(Number.POSITIVE_INFINITY),
  ),
  maxWaiting: fc.integer({ min: 0, max: 5 }),
  connectTimeout: fc.integer({ min: 1, max: 5_000 }),
  validationTimeout: fc.integer({ min: 1, max: 5_000 }),
  maxLifetime: duration,
  idleTimeout: duration,
  prePing: fc.oneof(fc.boolean(), fc.integer({ min: 0, max: 1_000 })),
  keepaliveInterval: fc.integer({ min: 0, max: 1_000 }),
  resetOnRelease: fc.constantFrom('rollback', 'session', false),
  onConnect: fc.constant(async () => {}),
  order: fc.constantFrom('lifo', 'fifo'),
  leakDetectionThreshold: fc.integer({ min: 0, max: 1_000 }),
  allowExitOnIdle: fc.boolean(),
  name: fc.string({ maxLength: 8 }),
}

/**
 * Pool options: each option valid or absent, then up to two keys given a random value (a known
 * option or a misspelt one), so that about half the pools get made and the rest are refused.
 */
const poolOptions = fc
  .tuple(
    fc.record(VALID, { requiredKeys: [] }),
    fc.array(
      fc.tuple(
        fc.constantFrom(...Object.keys(VALID), 'timeot', 'acquireTimeoutMillis', 'pool_size'),
        junk,
      ),
      { maxLength: 2 },
    ),
  )
  .map(([valid, corrupted]) => {
    const options: Record<string, unknown> = { ...valid }
    for (const [key, value] of corrupted) {
      // Never a huge `min`: the pool would dutifully open that many connections.
      if (key === 'min' && typeof value === 'number' && value > 5) continue
      options[key] = value
    }
    return options
  })

/** What a caller may pass where `acquire()` options go. */
const acquireArgument = fc.oneof(
  { weight: 1, arbitrary: junk },
  { weight: 1, arbitrary: fc.record({ timeot: junk }) },
  {
    weight: 4,
    arbitrary: fc.record(
      {
        // 'signal' stands for a live, never-aborted signal
        signal: fc.oneof(
          { weight: 1, arbitrary: junk },
          { weight: 2, arbitrary: fc.constant('signal' as const) },
        ),
        timeout: valueFor(duration),
      },
      { requiredKeys: [] },
    ),
  },
)

type Call =
  | { kind: 'acquire'; arg: unknown }
  | { kind: 'use'; fn: unknown; arg: unknown }
  | { kind: 'close'; arg: unknown }
  | { kind: 'destroy'; arg: unknown }
  | { kind: 'openScope'; arg: unknown; end: unknown; run: unknown }
  | { kind: 'release'; pick: number }
  | { kind: 'leaseDestroy'; pick: number; reason: unknown }
  | { kind: 'dispose'; pick: number }
  | { kind: 'advance'; ms: number }

const call: fc.Arbitrary<Call> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({ kind: fc.constant('acquire' as const), arg: acquireArgument }),
  },
  fc.record({
    kind: fc.constant('use' as const),
    fn: fc.oneof(junk, fc.constant('fn' as const)),
    arg: acquireArgument,
  }),
  fc.record({
    kind: fc.constant('close' as const),
    arg: fc.oneof(junk, fc.record({ timeout: junk })),
  }),
  fc.record({ kind: fc.constant('destroy' as const), arg: junk }),
  fc.record({
    kind: fc.constant('openScope' as const),
    arg: fc.oneof(
      junk,
      fc.record({ transaction: junk, cancelOnAbort: junk }, { requiredKeys: [] }),
    ),
    end: fc.oneof(junk, fc.constantFrom('commit', 'rollback')),
    run: fc.oneof(junk, fc.constant('fn' as const)),
  }),
  fc.record({ kind: fc.constant('release' as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant('leaseDestroy' as const), pick: fc.nat(), reason: junk }),
  fc.record({ kind: fc.constant('dispose' as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 300 }) }),
)

/** A fake dialect that also tracks whether each connection's "socket" holds the event loop. */
class HoldingDialect extends FakeDialect {
  readonly held = new Map<FakeConnection, boolean>()
  ref(connection: FakeConnection): void {
    this.held.set(connection, true)
  }
  unref(connection: FakeConnection): void {
    this.held.set(connection, false)
  }
}

/** Asserts that `error` is one of lifeguard's, with a code. */
function expectCoded(error: unknown, what: string): void {
  const code = (error as { code?: unknown } | null)?.code
  if (typeof code !== 'string' || !CODE.test(code)) {
    throw new Error(`${what} failed without a LIFEGUARD_ code: ${String(error)}`)
  }
}

/** Runs `fn`: a throw must be coded; a promise it returns is collected, to check how it settles. */
function attempt(fn: () => unknown, what: string, pending: Array<Promise<unknown>>): unknown {
  let result: unknown
  try {
    result = fn()
  } catch (error) {
    expectCoded(error, what)
    return undefined
  }
  if (result instanceof Promise) {
    pending.push(
      result.then(
        (value) => value,
        (error: unknown) => expectCoded(error, what),
      ),
    )
  }
  return result
}

let processErrors: unknown[] = []
const onProcessError = (error: unknown) => processErrors.push(error)

beforeEach(() => {
  processErrors = []
  process.on('unhandledRejection', onProcessError)
  process.on('uncaughtException', onProcessError)
})

afterEach(() => {
  process.off('unhandledRejection', onProcessError)
  process.off('uncaughtException', onProcessError)
  vi.useRealTimers()
})

describe('fuzzing every argument', () => {
  it('the pool: random options, then random calls of its methods and its leases', async () => {
    useFakeClock()
    let made = 0
    let refused = 0
    let leased = 0
    await fc.assert(
      fc.asyncProperty(
        poolOptions,
        fc.boolean(),
        fc.array(call, { minLength: 1, maxLength: 14 }),
        async (options, viaClass, calls) => {
          const dialect = new HoldingDialect()
          const pending: Array<Promise<unknown>> = []
          const full = { ...options, dialect } as PoolOptions<FakeConnection>
          let pool: Pool<FakeConnection>
          try {
            pool = viaClass ? new Pool(full) : createPool(full)
          } catch (error) {
            expectCoded(error, 'createPool')
            refused++
            // Refused at the call: nothing was started.
            expect(vi.getTimerCount()).toBe(0)
            expect(dialect.connects).toBe(0)
            return
          }
          made++
          const leases: Lease<FakeConnection>[] = []
          const keep = (promise: unknown) => {
            if (promise instanceof Promise) {
              pending.push(
                promise.then(
                  (lease: unknown) => {
                    if (lease !== undefined && typeof lease === 'object') {
                      leases.push(lease as Lease<FakeConnection>)
                    }
                  },
                  () => {},
                ),
              )
            }
          }
          const pick = (n: number) => leases[n % Math.max(1, leases.length)]
          const signalOf = (arg: unknown) =>
            typeof arg === 'object' &&
            arg !== null &&
            (arg as { signal?: unknown }).signal === 'signal'
              ? { ...arg, signal: new AbortController().signal }
              : arg
          for (const c of calls) {
            switch (c.kind) {
              case 'acquire':
                keep(attempt(() => pool.acquire(signalOf(c.arg) as never), 'acquire', pending))
                break
              case 'use': {
                const fn = c.fn === 'fn' ? () => 1 : c.fn
                attempt(() => pool.use(fn as never, signalOf(c.arg) as never), 'use', pending)
                break
              }
              case 'close':
                attempt(() => pool.close(c.arg as never), 'close', pending)
                break
              case 'destroy':
                attempt(
                  () => (pool.destroy as (arg: unknown) => unknown)(c.arg),
                  'destroy',
                  pending,
                )
                break
              case 'openScope': {
                const scope = attempt(() => pool.openScope(c.arg as never), 'openScope', pending) as
                  | ReturnType<typeof pool.openScope>
                  | undefined
                if (scope === undefined) break
                const run = c.run === 'fn' ? () => pool.acquire() : c.run
                keep(attempt(() => scope.run(run as never), 'scope.run', pending))
                attempt(() => scope.end(c.end as never), 'scope.end', pending)
                attempt(() => scope.end(), 'scope.end', pending)
                break
              }
              case 'release':
                attempt(() => pick(c.pick)?.release(), 'lease.release', pending)
                break
              case 'leaseDestroy':
                attempt(() => pick(c.pick)?.destroy(c.reason), 'lease.destroy', pending)
                break
              case 'dispose':
                attempt(() => pick(c.pick)?.[Symbol.dispose](), 'lease[Symbol.dispose]', pending)
                break
              case 'advance':
                await tick(c.ms)
                break
            }
            // Let connects, hand-offs and rejections happen before the next call.
            await tick(0)
            // An idle connection never holds the event loop; a lent one does.
            if (pool.options.allowExitOnIdle) {
              for (const lease of leases) {
                if (lease.active) expect(dialect.held.get(lease.connection)).not.toBe(false)
              }
            }
          }
          await tick(5)
          if (pool.options.allowExitOnIdle && !pool.closed) {
            const leased = new Set(leases.filter((l) => l.active).map((l) => l.connection))
            const idle = dialect.open.filter((c) => !leased.has(c))
            if (pool.stats().idle === idle.length) {
              for (const connection of idle) expect(dialect.held.get(connection)).toBe(false)
            }
          }
          leased += leases.length
          await pool.destroy()
          // A request scope's end() waits for the query that holds its connection: let them go.
          for (const lease of leases) {
            if (lease.active) attempt(() => lease.release(), 'lease.release', pending)
          }
          await tick(100)
          await Promise.all(pending)
          await tick(100)
          expect(pool.stats()).toMatchObject({ waiting: 0, leased: 0, total: 0 })
          expect(dialect.open).toEqual([])
          expect(vi.getTimerCount()).toBe(0)
        },
      ),
      { numRuns: RUNS },
    )
    expect(processErrors).toEqual([])
    // Not vacuous: both kinds of run happened, and pools lent connections.
    expect(made).toBeGreaterThan(RUNS / 6)
    expect(refused).toBeGreaterThan(RUNS / 6)
    expect(leased).toBeGreaterThan(RUNS / 6)
  }, 120_000)

  it('createPool({ url }): random URLs and values', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          junk,
          fc.webUrl(),
          fc.constantFrom(
            'sqlite::memory:',
            'sqlite://host/x.db',
            'sqlite:///',
            'sqlite:///%zz',
            'postgres://',
            'mysql:',
            'redis://127.0.0.1',
            'postgres://u:p@127.0.0.1/x',
          ),
          fc.string().map((s) => `postgres://${s}`),
          fc.string().map((s) => `sqlite:${s}`),
        ),
        (url) => {
          const pending: Array<Promise<unknown>> = []
          // min 0 and no acquire: a valid URL makes a pool that opens nothing.
          const pool = attempt(() => createPool({ url } as never), 'createPool({ url })', pending)
          if (pool instanceof Pool) void pool.destroy()
        },
      ),
      { numRuns: 300 },
    )
    expect(processErrors).toEqual([])
  })

  it('the dialect factories: postgres(), mysql(), sqlite()', () => {
    const config = fc.oneof(
      junk,
      fc.record(
        { connectionString: junk, uri: junk, host: junk, password: junk },
        { requiredKeys: [] },
      ),
    )
    fc.assert(
      fc.property(config, junk, (a, b) => {
        const pending: Array<Promise<unknown>> = []
        attempt(() => postgres(a as never), 'postgres()', pending)
        attempt(() => mysql(a as never), 'mysql()', pending)
        attempt(() => sqlite(a as never, b as never), 'sqlite()', pending)
        attempt(() => sqlite(':memory:', a as never), 'sqlite(":memory:", options)', pending)
        expect(pending).toEqual([])
      }),
      { numRuns: 500 },
    )
    expect(processErrors).toEqual([])
  })
})
