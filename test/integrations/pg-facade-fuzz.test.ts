import net from 'node:net'
import fc from 'fast-check'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { configurePg, lifeguardOf, Pool } from '../../src/compat/pg.js'
import { POOL_OPTION_KEYS } from '../../src/core/pool-options.js'

// Random values for every option of lifeguard/pg's `new Pool(config)` and `new Client(config)`,
// their `lifeguard` sub-options included. Construction either succeeds or throws an error with a
// LIFEGUARD_ code; where pg's own constructor throws, the facade throws pg's error (only
// `new Client()` can: pg's ConnectionParameters refuses a bad `sslnegotiation`). The process never
// sees an unhandled rejection or uncaught exception, every pool made is ended and closed, and
// nothing connects beyond loopback: `host` and `connectionString` are pinned to a closed port on
// 127.0.0.1, so that a pool that refills `min` in the background only meets a refused connect.

/** Any value a config could be given: primitives, numeric strings, objects, arrays, functions. */
const junk: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(
    undefined,
    null,
    true,
    false,
    0,
    -0,
    1,
    -1,
    0.5,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    2 ** 31,
    Number.MAX_SAFE_INTEGER,
    '',
    ' ',
    '0',
    '3',
    '300',
    '-1',
    '1e3',
    '0x10',
    'abc',
    'lifo',
    'fifo',
    'session',
    'rollback',
  ),
  fc.integer(),
  fc.double(),
  fc.integer({ min: -10, max: 100_000 }).map(String),
  fc.string({ maxLength: 12 }),
  fc.bigInt({ min: -10n, max: 10n }),
  fc.object({ maxDepth: 1, maxKeys: 3 }),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.func(fc.constant(undefined)),
)

/**
 * `min` with any junk but numbers kept small: a pool refills `min` at once, and a random
 * billion would open a billion (refused) sockets rather than test anything.
 */
const smallMin: fc.Arbitrary<unknown> = fc.oneof(
  // Only numbers and strings are read as numbers (`Number()` of a random object may throw).
  junk.filter((value) => !['number', 'string'].includes(typeof value) || !(Number(value) > 3)),
  fc.integer({ min: 0, max: 3 }),
  fc.integer({ min: 0, max: 3 }).map(String),
)

/**
 * A few of `keys`, each with a random value. A few: with every key random, nearly every config
 * would hold one bad value, and the property would seldom see a pool made.
 */
function anyOf<K extends string>(
  keys: readonly K[],
  most = 3,
): fc.Arbitrary<Partial<Record<K, unknown>>> {
  return fc
    .uniqueArray(fc.tuple(fc.constantFrom(...keys), junk), {
      maxLength: most,
      selector: ([key]) => key,
    })
    .map((entries) => Object.fromEntries(entries) as Partial<Record<K, unknown>>)
}

/** The lifeguard pool options, and a misspelt one now and then. */
const lifeguardOptions = fc.oneof(
  { weight: 1, arbitrary: junk },
  {
    weight: 4,
    arbitrary: fc
      .tuple(
        anyOf([...POOL_OPTION_KEYS.filter((key) => key !== 'min'), 'maxOverfow']),
        fc.option(smallMin, { nil: undefined }),
      )
      .map(([options, min]) => (min === undefined ? options : { ...options, min })),
  },
)

/** pg's connection keys, every one but where to connect, which is pinned. */
const CONNECTION_KEYS = [
  'user',
  'database',
  'password',
  'port',
  'keepAlive',
  'stream',
  'statement_timeout',
  'ssl',
  'sslnegotiation',
  'query_timeout',
  'lock_timeout',
  'keepAliveInitialDelayMillis',
  'idle_in_transaction_session_timeout',
  'application_name',
  'fallback_application_name',
  'options',
  'types',
  'client_encoding',
  'binary',
  'Promise',
  'connectionTimeoutMillis',
  'enableChannelBinding',
] as const

/** pg-pool's own keys. */
const POOL_KEYS = [
  'max',
  'idleTimeoutMillis',
  'allowExitOnIdle',
  'maxUses',
  'maxLifetimeSeconds',
  'poolSize',
  'log',
  'Client',
  'onConnect',
  'verify',
] as const

/** A port on 127.0.0.1 that nothing listens on: connects are refused at once. */
let closedPort = 0
const connects: unknown[][] = []
const processErrors: unknown[] = []
const onProcessError = (error: unknown) => processErrors.push(error)

beforeAll(async () => {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  closedPort = (server.address() as net.AddressInfo).port
  await new Promise((resolve) => server.close(resolve))
  // Every socket pg opens goes through here: record where it goes.
  const connect = net.Socket.prototype.connect
  vi.spyOn(net.Socket.prototype, 'connect').mockImplementation(function (
    this: net.Socket,
    ...args: unknown[]
  ) {
    connects.push(args)
    return (connect as (...a: unknown[]) => net.Socket).apply(this, args)
  })
  process.on('unhandledRejection', onProcessError)
  process.on('uncaughtException', onProcessError)
})

afterAll(() => {
  vi.restoreAllMocks()
  process.off('unhandledRejection', onProcessError)
  process.off('uncaughtException', onProcessError)
})

/** Where a config may connect: only the closed loopback port, by host or by URL. */
function pinned(config: Record<string, unknown>, byUrl: boolean): Record<string, unknown> {
  const pinnedConfig: Record<string, unknown> = { ...config, port: closedPort }
  if (byUrl) pinnedConfig.connectionString = `postgres://fuzz:secret@127.0.0.1:${closedPort}/fuzz`
  else pinnedConfig.host = '127.0.0.1'
  return pinnedConfig
}

/** A connect's target: `connect(port, host)` or `connect({ port, host })`. */
function hostOf(args: unknown[]): unknown {
  const [first, second] = args
  if (typeof first === 'object' && first !== null) return (first as { host?: unknown }).host
  return second
}

/** The code of a thrown error, or what it was if it had none. */
function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : `no code: ${String(error)}`
}

/** How many sockets and timers the process holds, of any kind. */
function resources(): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const kind of process.getActiveResourcesInfo()) counts[kind] = (counts[kind] ?? 0) + 1
  return counts
}

/** Lets refused connects and closes settle, so that late rejections would be seen. */
function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 20))
}

describe('lifeguard/pg constructors under random options', () => {
  it('new Pool(config) succeeds or throws a LIFEGUARD_ error; every pool ends and closes', async () => {
    const outcomes = { made: 0, refused: 0 }
    const held = resources()
    await fc.assert(
      fc.asyncProperty(
        anyOf([...CONNECTION_KEYS, ...POOL_KEYS]),
        fc.option(smallMin, { nil: undefined }),
        fc.option(lifeguardOptions, { nil: undefined }),
        fc.boolean(),
        fc.boolean(),
        // Now and then not an object at all (pg-pool throws a TypeError for these).
        fc.oneof(
          { weight: 9, arbitrary: fc.constant(undefined) },
          {
            weight: 1,
            arbitrary: junk.filter((value) => typeof value !== 'object' || value === null),
          },
        ),
        async (config, min, lifeguard, byUrl, linger, whole) => {
          const given =
            whole === undefined || whole === null
              ? pinned({ ...config, min, lifeguard }, byUrl)
              : whole
          let pool: Pool | undefined
          try {
            pool = new Pool(given as never)
          } catch (error) {
            outcomes.refused++
            expect(codeOf(error)).toMatch(/^LIFEGUARD_/)
            return
          }
          outcomes.made++
          expect(pool).toBeInstanceOf(pg.Pool)
          // A query meets a refused connect (min opens nothing, as pg-pool's); a pool with
          // lifeguard's own `min` starts refilling meanwhile.
          if (linger) await Promise.race([pool.query('SELECT 1').catch(() => {}), settle()])
          await pool.end()
          expect(pool.ended).toBe(true)
          expect(lifeguardOf(pool).closed).toBe(true)
        },
      ),
      { numRuns: 400 },
    )
    await settle()
    // Both branches ran: the property tested something on each side.
    expect(outcomes.made).toBeGreaterThan(10)
    expect(outcomes.refused).toBeGreaterThan(10)
    expect(processErrors).toEqual([])
    // Pools tried to connect, and only ever to the closed loopback port.
    expect(connects.length).toBeGreaterThan(0)
    // Ended pools left no socket or timer behind: no kind of resource grew.
    const now = resources()
    for (const kind of Object.keys(now)) expect(now[kind]).toBeLessThanOrEqual(held[kind] ?? 0)
    for (const args of connects) expect(hostOf(args)).toBe('127.0.0.1')
  })

  it('new Client(config) succeeds, throws a LIFEGUARD_ error, or throws what pg.Client throws; none connects', async () => {
    const module = configurePg()
    const outcomes = { made: 0, refused: 0, asPg: 0 }
    const before = connects.length
    await fc.assert(
      fc.asyncProperty(
        anyOf(CONNECTION_KEYS),
        fc.option(lifeguardOptions, { nil: undefined }),
        fc.boolean(),
        async (config, lifeguard, byUrl) => {
          const connection = pinned(config, byUrl)
          let pgError: unknown
          try {
            new pg.Client(connection as pg.ClientConfig)
          } catch (error) {
            pgError = error
          }
          let client: InstanceType<typeof module.Client>
          try {
            client = new module.Client({ ...connection, lifeguard } as never)
          } catch (error) {
            if (/^LIFEGUARD_/.test(codeOf(error))) {
              outcomes.refused++
            } else {
              // Not lifeguard's: then it must be pg's own, for the same config.
              outcomes.asPg++
              expect(pgError).toBeDefined()
              expect((error as Error).message).toBe((pgError as Error).message)
            }
            return
          }
          outcomes.made++
          expect(client).toBeInstanceOf(pg.Client)
          await client.end()
        },
      ),
      { numRuns: 300 },
    )
    await module.end()
    await settle()
    expect(outcomes.made).toBeGreaterThan(10)
    expect(outcomes.refused).toBeGreaterThan(10)
    expect(processErrors).toEqual([])
    // A client borrows on connect() only: constructing and ending one opens nothing.
    expect(connects.length).toBe(before)
  })
})
