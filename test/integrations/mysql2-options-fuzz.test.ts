import { createServer } from 'node:net'
import fc from 'fast-check'
import mysql2 from 'mysql2'
import realPromise from 'mysql2/promise'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { managedPoolCount } from '../../src/compat/manage.js'
import { configureMysql2, lifeguardOf } from '../../src/compat/mysql2.js'
import { configureMysql2Promise } from '../../src/compat/mysql2-promise.js'
import { POOL_OPTION_KEYS } from '../../src/core/pool-options.js'

// Random values for every option of the mysql2 facades' createPool(config) and
// createConnection(config), the `lifeguard` sub-options included. Each call either succeeds or
// throws at once: an error with a LIFEGUARD_ code, or mysql2's own error where mysql2 itself
// throws the same at the same call. Nothing crashes the process and nothing stays open.
// Nothing connects off this machine: the host is pinned to 127.0.0.1, on a closed port, and the
// options that choose another target (uri, socketPath, stream, localAddress) are not fuzzed.

/** A value of any kind a config might carry by mistake. */
const anything: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(undefined),
  fc.constant(null),
  fc.boolean(),
  fc.integer({ min: -3, max: 5 }),
  fc.integer({ min: -1_000_000, max: 3_000_000_000 }),
  fc.double(),
  fc.constantFrom(
    0,
    -0,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    2.5,
    2 ** 31,
  ),
  fc.integer({ min: -2, max: 50 }).map(String),
  fc.string({ maxLength: 6 }),
  fc.constantFrom('', ' ', 'local', 'Z', '+05:00', 'utf8mb4', 'Amazon RDS', 'session'),
  fc.bigInt({ min: -2n, max: 20n }),
  fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 2 }),
  fc.dictionary(fc.constantFrom('a', 'max', 'rejectUnauthorized'), fc.integer(), {
    maxKeys: 2,
  }),
  fc.constant(() => {}),
)

/** mysql2's pool options. */
const POOL_KEYS = [
  'waitForConnections',
  'connectionLimit',
  'maxIdle',
  'idleTimeout',
  'queueLimit',
  'resetOnRelease',
]

/** mysql2's connection options, but those that choose where to connect and `debug` (it logs every packet). */
const CONNECTION_KEYS = [
  'user',
  'password',
  'database',
  'charset',
  'timezone',
  'connectTimeout',
  'ssl',
  'typeCast',
  'supportBigNumbers',
  'bigNumberStrings',
  'dateStrings',
  'decimalNumbers',
  'trace',
  'multipleStatements',
  'rowsAsArray',
  'namedPlaceholders',
  'nestTables',
  'insecureAuth',
  'flags',
  'enableKeepAlive',
  'keepAliveInitialDelay',
  'maxPreparedStatements',
  'jsonStrings',
  'compress',
  'stringifyObjects',
  'connectAttributes',
  'disableEval',
  'gracefulEnd',
]

/** lifeguard's pool options, as the `lifeguard` key takes them, and a misspelt one. */
const LIFEGUARD_KEYS = [...POOL_OPTION_KEYS, 'maxOverflw']

function some(keys: string[]): fc.Arbitrary<Record<string, unknown>> {
  return fc.record(Object.fromEntries(keys.map((key) => [key, anything])), { requiredKeys: [] })
}

const lifeguard = fc.oneof(
  { weight: 4, arbitrary: some(LIFEGUARD_KEYS) },
  { weight: 1, arbitrary: anything },
)

/** A config: mysql2's options and `lifeguard`, on 127.0.0.1 and a closed port. */
function configs(port: number): fc.Arbitrary<Record<string, unknown>> {
  return fc
    .record(
      {
        pool: some(POOL_KEYS),
        connection: some(CONNECTION_KEYS),
        lifeguard,
        hasLifeguard: fc.boolean(),
      },
      { requiredKeys: ['pool', 'connection', 'lifeguard', 'hasLifeguard'] },
    )
    .map(({ pool, connection, lifeguard, hasLifeguard }) => ({
      ...pool,
      ...connection,
      ...(hasLifeguard ? { lifeguard } : {}),
      host: '127.0.0.1',
      port,
    }))
}

/** The config as mysql2 gets it: without `lifeguard`, which it would warn about. */
function forMysql2(config: Record<string, unknown>): Record<string, unknown> {
  const { lifeguard: _, ...rest } = config
  return rest
}

/** What `fn` threw, or `undefined`. */
function thrown(fn: () => unknown): unknown {
  try {
    fn()
    return undefined
  } catch (error) {
    return error
  }
}

/**
 * Checks a facade's throw: a LIFEGUARD_ code, or the very error mysql2 throws for the same call;
 * counts which kind it was.
 */
function checkThrow(error: unknown, real: () => unknown, kinds: Map<string, number>): void {
  const code = (error as { code?: unknown } | null)?.code
  if (typeof code === 'string' && code.startsWith('LIFEGUARD_')) {
    kinds.set(code, (kinds.get(code) ?? 0) + 1)
    return
  }
  const own = thrown(real)
  expect(own, `lifeguard threw ${String(error)} where mysql2 did not`).toBeInstanceOf(Error)
  expect((error as Error).constructor).toBe((own as Error).constructor)
  expect((error as Error).message).toBe((own as Error).message)
  kinds.set('mysql2', (kinds.get('mysql2') ?? 0) + 1)
  mysql2Messages.add((error as Error).message.replace(/\d+/g, 'N'))
}

/** mysql2's own messages the facades passed on, for the summary. */
const mysql2Messages = new Set<string>()

/** Handles and requests that keep the event loop alive, by kind. */
function resources(): Map<string, number> {
  const counts = new Map<string, number>()
  for (const kind of process.getActiveResourcesInfo()) counts.set(kind, (counts.get(kind) ?? 0) + 1)
  return counts
}

describe('mysql2 facades: random options', () => {
  let port: number
  const problems: unknown[] = []
  const onProblem = (error: unknown) => problems.push(error)
  let quiet: typeof console.error
  const before = { pools: 0, resources: new Map<string, number>() }

  beforeAll(async () => {
    const server = createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    port = (server.address() as { port: number }).port
    await new Promise((resolve) => server.close(resolve))
    process.on('unhandledRejection', onProblem)
    process.on('uncaughtException', onProblem)
    // mysql2 warns about options it ignores (an invalid timezone); the fuzz makes many.
    quiet = console.error
    console.error = () => {}
    before.pools = managedPoolCount()
    before.resources = resources()
  })

  afterAll(() => {
    console.error = quiet
    process.off('unhandledRejection', onProblem)
    process.off('uncaughtException', onProblem)
  })

  const kinds = new Map<string, number>()

  it('lifeguard/mysql2 createPool and createConnection', async () => {
    await fc.assert(
      fc.asyncProperty(configs(port), async (config) => {
        const module = configureMysql2()
        let pool: mysql2.Pool | undefined
        const poolError = thrown(() => {
          pool = module.createPool(config as never)
        })
        if (poolError !== undefined)
          checkThrow(poolError, () => mysql2.createPool(forMysql2(config) as never), kinds)
        if (pool !== undefined) {
          pool.on('error', () => {})
          await new Promise<void>((resolve, reject) =>
            pool!.end((error) => (error ? reject(error) : resolve())),
          )
        }
        let connection: mysql2.Connection | undefined
        const connectionError = thrown(() => {
          connection = module.createConnection(config as never)
        })
        if (connectionError !== undefined) {
          checkThrow(
            connectionError,
            () => {
              const real = mysql2.createConnection(forMysql2(config) as never)
              real.on('error', () => {})
              real.destroy()
            },
            kinds,
          )
        }
        if (connection !== undefined) {
          connection.on('error', () => {})
          connection.end()
        }
        await module.end()
      }),
      { numRuns: 300 },
    )
  }, 120_000)

  it('lifeguard/mysql2/promise createPool and createConnection', async () => {
    await fc.assert(
      fc.asyncProperty(
        configs(port),
        fc.constantFrom(undefined, Promise, 42, 'Promise'),
        async (base, promiseImpl) => {
          const config = promiseImpl === undefined ? base : { ...base, Promise: promiseImpl }
          const module = configureMysql2Promise()
          let pool: realPromise.Pool | undefined
          const poolError = thrown(() => {
            pool = module.createPool(config as never)
          })
          if (poolError !== undefined)
            checkThrow(poolError, () => realPromise.createPool(forMysql2(config) as never), kinds)
          await pool?.end()
          let pending: Promise<realPromise.Connection> | undefined
          const connectionError = thrown(() => {
            pending = module.createConnection(config as never)
          })
          if (connectionError !== undefined) {
            checkThrow(
              connectionError,
              () => {
                // mysql2 connects before it reads `Promise`; nothing listens on the port.
                realPromise.createConnection(forMysql2(config) as never).catch(() => {})
              },
              kinds,
            )
          }
          // The borrow cannot succeed on a closed port: end() closes its pool and it rejects.
          const settled = pending?.then(
            (connection) => connection.end(),
            () => {},
          )
          await module.end()
          await settled
        },
      ),
      { numRuns: 300 },
    )
  }, 120_000)

  it('left nothing open and nothing unhandled, and each throw carried a code', async () => {
    // Sockets and timers of the closed pools go within a few turns of the event loop.
    const settle = Date.now() + 5_000
    const grown = () =>
      ['TCPSocketWrap', 'Timeout'].filter(
        (kind) => (resources().get(kind) ?? 0) > (before.resources.get(kind) ?? 0),
      )
    while (grown().length > 0 && Date.now() < settle) {
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(grown()).toEqual([])
    expect(managedPoolCount()).toBe(before.pools)
    expect(problems).toEqual([])
    // Both kinds of refusal happened, so the property did check them.
    expect(kinds.get('LIFEGUARD_INVALID_OPTION') ?? 0).toBeGreaterThan(0)
    console.log('fuzz throws by kind:', Object.fromEntries(kinds), 'mysql2 said:', [
      ...mysql2Messages,
    ])
  })
})

describe('mysql2 facades: options read as mysql2 reads them', () => {
  it('connectionLimit from an environment variable ("3") gives max 3, where mysql2 takes it too', async () => {
    const module = configureMysql2()
    const pool = module.createPool({ host: '127.0.0.1', connectionLimit: '3' as never })
    expect(lifeguardOf(pool).options.max).toBe(3)
    const real = mysql2.createPool({ host: '127.0.0.1', connectionLimit: '3' as never })
    expect(real.config.connectionLimit).toBe(3)
    await Promise.all([
      new Promise((resolve) => pool.end(resolve)),
      new Promise((resolve) => real.end(resolve)),
    ])
  })

  it('a missing config or a connectionLimit of 0 throws InvalidOptionError at the call, naming it', () => {
    const module = configureMysql2Promise()
    for (const [call, option] of [
      [() => module.createPool(undefined as never), 'config'],
      [() => module.createConnection(null as never), 'config'],
      [() => module.createPool({ host: '127.0.0.1', connectionLimit: 0 }), 'connectionLimit'],
      [() => module.createPool({ host: '127.0.0.1', lifeguard: 5 as never }), 'lifeguard'],
      [() => module.createConnection({ host: '127.0.0.1', Promise: 42 }), 'Promise'],
    ] as const) {
      expect(call).toThrow(expect.objectContaining({ code: 'LIFEGUARD_INVALID_OPTION', option }))
    }
    // mysql2 cannot read a missing config either.
    expect(() => realPromise.createPool(undefined as never)).toThrow(TypeError)
  })
})
