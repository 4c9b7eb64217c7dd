import { beforeEach, describe, expect, it, vi } from 'vitest'
import { MysqlDialect } from '../../src/dialects/mysql-dialect.js'
import { postgres } from '../../src/dialects/postgres.js'
import { sqlite } from '../../src/dialects/sqlite.js'
import {
  AcquireTimeoutError,
  ConnectError,
  type Dialect,
  type Lease,
  UnavailableError,
} from '../../src/index.js'
import { tick } from '../support/clock.js'
import type { FakeConnection, FakeDialect } from '../support/fake-dialect.js'
import { useFakePools } from '../support/fake-pools.js'
import { checkInvariants } from '../support/invariants.js'
import { settle } from '../support/promises.js'

// Issue 15, sections 1 and 2: permanent connect errors fail at once, and a pool that cannot
// connect for `failFastAfter` fails its callers at once instead of queueing them.

/** A wrong password, as pg reports it: a permanent error. */
class AuthFailed extends Error {
  readonly code = '28P01'
}
/** Too many connections, as pg reports it: transient. */
class TooMany extends Error {
  readonly code = '53300'
}

const fake = useFakePools()
const makePool = fake.make
let dialect: FakeDialect
beforeEach(() => {
  dialect = fake.dialect
  // Classified as the postgres dialect would: 28P01 permanent, anything else transient.
  ;(dialect as Dialect<FakeConnection>).classifyConnectError = (error) =>
    error instanceof AuthFailed ? 'permanent' : 'transient'
})

/** The most connects in flight at once, sampled on every connect the dialect sees. */
function trackConnecting(pool: { stats(): { connecting: number } }): { most: number } {
  const seen = { most: 0 }
  const connect = dialect.connect.bind(dialect)
  dialect.connect = (signal) => {
    const promise = connect(signal)
    seen.most = Math.max(seen.most, pool.stats().connecting)
    return promise
  }
  return seen
}

describe('permanent connect errors fail at once', () => {
  it('the first acquire rejects when its connect fails, with the cause and code in the message', async () => {
    dialect.connectDelay = 20
    dialect.connectError = new AuthFailed('password authentication failed for user "app"')
    const pool = makePool()
    const started = performance.now()
    const first = settle(pool.acquire())
    await tick(20)
    expect(first.done).toBe(true)
    expect(first.at! - started).toBe(20)
    const error = first.error as ConnectError
    expect(error).toBeInstanceOf(ConnectError)
    expect(error.message).toMatch(
      /^could not connect \(fake\): password authentication failed for user "app" \(28P01\) \[LIFEGUARD_CONNECT_FAILED/,
    )
    expect(error.cause).toBe(dialect.connectError)
    checkInvariants(pool, dialect)
  })

  it('1000 concurrent acquires make at most max connects, and later ones reject at once with none', async () => {
    dialect.connectDelay = 5
    dialect.connectError = new AuthFailed('password authentication failed for user "app"')
    const pool = makePool({ max: 10 })
    const calls = Array.from({ length: 1000 }, () => settle(pool.acquire()))
    await tick(5)
    expect(calls.every((c) => c.done && c.error instanceof ConnectError)).toBe(true)
    expect(dialect.connects).toBeLessThanOrEqual(10)
    const before = dialect.connects
    const later = Array.from({ length: 1000 }, () => settle(pool.acquire()))
    await tick(0)
    expect(later.every((c) => c.done && c.error instanceof ConnectError)).toBe(true)
    // Each caller gets its own copy, with the driver's error as its cause.
    expect((later[0]!.error as Error).cause).toBe(dialect.connectError)
    expect(later[0]!.error).not.toBe(later[1]!.error)
    expect(dialect.connects).toBe(before)
    expect(pool.stats().waiting).toBe(0)
    checkInvariants(pool, dialect)
  })

  it('a permanent error while leased connections will come back: callers queue for them, not rejected', async () => {
    // Was: the third caller rejected at once while two leases were out (fix15a, item 2). The
    // issue's rule: a server that refuses new connections while the pool holds open ones is not
    // down; the open connections keep serving.
    const pool = makePool({ max: 3, prePing: false, acquireTimeout: 1_000 })
    const [a, b] = await Promise.all([pool.acquire(), pool.acquire()])
    a!.release()
    b!.release()
    dialect.connectError = new AuthFailed('password authentication failed for user "app"')
    const held = await Promise.all([pool.acquire(), pool.acquire()])
    const third = settle(pool.acquire())
    await tick(0)
    expect(third.done).toBe(false)
    const fourth = settle(pool.acquire())
    await tick(0)
    expect(fourth.done).toBe(false)
    // The leases come back and serve the queued callers.
    held[0]!.release()
    held[1]!.release()
    await tick(0)
    expect(third.value).toBeDefined()
    expect(fourth.value).toBeDefined()
    ;(third.value as Lease<FakeConnection>).release()
    ;(fourth.value as Lease<FakeConnection>).release()
    // With no connection out, a caller that needs a new one is rejected at once.
    const all = await Promise.all([pool.acquire(), pool.acquire()])
    const refused = settle(pool.acquire())
    for (const lease of all) lease.destroy()
    await tick(0)
    const late = settle(pool.acquire())
    await tick(0)
    expect(refused.error).toBeInstanceOf(ConnectError)
    expect(late.error).toBeInstanceOf(ConnectError)
    checkInvariants(pool, dialect)
  })

  it('a full pool is not "needing a new connection": its callers wait for a lease to come back', async () => {
    const pool = makePool({ max: 1, prePing: false })
    const held = await pool.acquire()
    // A failed connect puts the pool in the failing state: make one happen with a second pool slot.
    dialect.connectError = new AuthFailed('password authentication failed for user "app"')
    held.destroy()
    const refused = settle(pool.acquire())
    await tick(0)
    expect(refused.error).toBeInstanceOf(ConnectError)
    dialect.connectError = undefined
    await tick(5_000)
    const lease = await pool.acquire()
    const waiting = settle(pool.acquire())
    await tick(0)
    expect(waiting.done).toBe(false)
    lease.release()
    await tick(0)
    expect(waiting.value).toBeDefined()
    ;(waiting.value as Lease<FakeConnection>).release()
  })

  it('keeps retrying in the background with capped backoff while the pool is in use; the first success ends the failing', async () => {
    // Was: probes for ever, even with nobody using the pool (fix15a, item 4). Now they go on
    // while callers wait or asked within the last max(acquireTimeout, 60 s), and an acquire
    // starts them again.
    dialect.connectError = new AuthFailed('password authentication failed for user "app"')
    const pool = makePool()
    const delays: number[] = []
    pool.on('connectError', (e) => delays.push(e.retryInMs))
    await expect(pool.acquire()).rejects.toBeInstanceOf(ConnectError)
    // Nobody waits, yet the pool probes for a while: the credentials may be rotated.
    await tick(50_000)
    expect(delays.length).toBeGreaterThan(10)
    expect(Math.max(...delays)).toBeLessThanOrEqual(5_000)
    expect(Math.max(...delays)).toBeGreaterThan(500) // capped higher than for transient errors
    expect(pool.stats().connecting).toBeLessThanOrEqual(1)
    await tick(20_000)
    // Nobody has asked for over 60 s: no more failed logins.
    const connects = dialect.connects
    await tick(600_000)
    expect(dialect.connects).toBe(connects)
    // An acquire is rejected at once and starts a probe.
    await expect(pool.acquire()).rejects.toBeInstanceOf(ConnectError)
    expect(dialect.connects).toBe(connects + 1)
    dialect.connectError = undefined // rotated
    await tick(5_000)
    expect(pool.stats().idle).toBe(1)
    const lease = await pool.acquire()
    lease.release()
    checkInvariants(pool, dialect)
  })

  it('failing fast is counted (stats().failedFast) and announced (unavailable, then available)', async () => {
    dialect.connectError = new AuthFailed('password authentication failed for user "app"')
    const pool = makePool()
    const seen: string[] = []
    pool.on('unavailable', (e) => seen.push(`unavailable ${e.reason} ${e.error.constructor.name}`))
    pool.on('available', (e) => seen.push(`available ${e.unavailableMs >= 0}`))
    const calls = Array.from({ length: 3 }, () => settle(pool.acquire()))
    await tick(0)
    expect(calls.every((c) => c.error instanceof ConnectError)).toBe(true)
    await expect(pool.acquire()).rejects.toBeInstanceOf(ConnectError)
    expect(pool.stats().failedFast).toBe(4)
    expect(seen).toEqual(['unavailable permanent ConnectError'])
    dialect.connectError = undefined
    await tick(5_000)
    expect(seen).toEqual(['unavailable permanent ConnectError', 'available true'])
    const lease = await pool.acquire()
    lease.release()
    expect(pool.stats().failedFast).toBe(4)
    checkInvariants(pool, dialect)
  })

  it('a background probe made for nobody does not hold the process under allowExitOnIdle', async () => {
    dialect.connectError = new AuthFailed('password authentication failed for user "app"')
    dialect.connectDelay = 1_000
    const pool = makePool({ allowExitOnIdle: true, connectTimeout: 3_000 })
    const first = settle(pool.acquire())
    await tick(1_000)
    expect(first.error).toBeInstanceOf(ConnectError)
    const setTimeoutSpy = vi.spyOn(globalThis, 'setTimeout')
    try {
      await tick(6_000)
      // The probes' connect timers (connectTimeout); the fake dialect's own delay is not the pool's.
      const timers = setTimeoutSpy.mock.results
        .filter((_, i) => setTimeoutSpy.mock.calls[i]![1] === 3_000)
        .map((r) => r.value as NodeJS.Timeout)
      expect(dialect.connects).toBeGreaterThan(1)
      expect(timers.length).toBeGreaterThan(0)
      expect(timers.every((t) => !t.hasRef())).toBe(true)
    } finally {
      setTimeoutSpy.mockRestore()
    }
    checkInvariants(pool, dialect)
  })

  it('failFast: false restores waiting until acquireTimeout', async () => {
    dialect.connectError = new AuthFailed('password authentication failed for user "app"')
    const pool = makePool({ failFast: false, acquireTimeout: 1_000 })
    const call = settle(pool.acquire())
    await tick(900)
    expect(call.done).toBe(false)
    await tick(200) // the shared deadline timer stamps waiters every few ms
    expect(call.error).toBeInstanceOf(AcquireTimeoutError)
    expect(dialect.connects).toBeGreaterThan(3)
  })

  it("connectErrors: 'reject' (the facades) keeps one connect per caller", async () => {
    dialect.connectError = new AuthFailed('password authentication failed for user "app"')
    const pool = makePool({ connectErrors: 'reject', max: 10 })
    const calls = Array.from({ length: 5 }, () => settle(pool.acquire()))
    await tick(0)
    expect(calls.every((c) => c.error instanceof ConnectError)).toBe(true)
    const again = settle(pool.acquire())
    await tick(0)
    expect(again.error).toBeInstanceOf(ConnectError)
    expect(dialect.connects).toBe(6)
  })

  it('a classifier that throws makes the error transient', async () => {
    ;(dialect as Dialect<FakeConnection>).classifyConnectError = () => {
      throw new Error('bug')
    }
    dialect.connectError = new AuthFailed('password authentication failed')
    const pool = makePool({ acquireTimeout: 1_000, failFastAfter: Number.POSITIVE_INFINITY })
    const call = settle(pool.acquire())
    await tick(900)
    expect(call.done).toBe(false)
    await tick(200)
    expect(call.error).toBeInstanceOf(AcquireTimeoutError)
  })
})

describe('fail fast while the database is down', () => {
  it('after failFastAfter of failed connects, waiters and new callers reject with UnavailableError', async () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), {
      code: 'ECONNREFUSED',
    })
    dialect.connectError = refused
    const pool = makePool({ failFastAfter: 1_000, acquireTimeout: 30_000 })
    const seen = trackConnecting(pool)
    const queued = Array.from({ length: 50 }, () => settle(pool.acquire()))
    await tick(900)
    expect(queued.some((c) => c.done)).toBe(false)
    await tick(700) // the first failure at or past 1 s (backoff ≤ 500 ms)
    expect(queued.every((c) => c.error instanceof UnavailableError)).toBe(true)
    const error = queued[0]!.error as UnavailableError
    expect(error.code).toBe('LIFEGUARD_UNAVAILABLE')
    expect(error.cause).toBeInstanceOf(ConnectError)
    expect((error.cause as ConnectError).cause).toBe(refused)
    expect(error.message).toMatch(/is unavailable: every connect has failed for \d+ ms/)
    // From here, one probe at a time.
    seen.most = pool.stats().connecting
    // New callers: at once.
    const now = settle(pool.acquire())
    await tick(0)
    expect(now.error).toBeInstanceOf(UnavailableError)
    // Probes go on, one at a time.
    await tick(5_000)
    expect(seen.most).toBeLessThanOrEqual(1)
    // Back: the next probe succeeds within the backoff's cap, and the pool serves.
    dialect.connectError = undefined
    await tick(500)
    const lease = await pool.acquire()
    lease.release()
    checkInvariants(pool, dialect)
  })

  it('the failing must be continuous: an old failure with a gap since does not make the pool unavailable', async () => {
    dialect.connectError = new Error('refused')
    const pool = makePool({ failFastAfter: 1_000, acquireTimeout: 300 })
    const first = settle(pool.acquire())
    await tick(500)
    expect(first.error).toBeInstanceOf(AcquireTimeoutError)
    await tick(5_000) // nobody asks: no probes
    const call = settle(pool.acquire())
    await tick(250)
    expect(call.done).toBe(false)
    await tick(200)
    expect(call.error).toBeInstanceOf(AcquireTimeoutError)
  })

  it('failFast: false: callers wait for acquireTimeout, with the connect error as cause', async () => {
    dialect.connectError = new Error('refused')
    const pool = makePool({ failFast: false, failFastAfter: 0, acquireTimeout: 2_000 })
    const call = settle(pool.acquire())
    await tick(1_900)
    expect(call.done).toBe(false)
    await tick(200)
    expect(call.error).toBeInstanceOf(AcquireTimeoutError)
  })

  it('failFastAfter: 0 fails fast from the first failed connect', async () => {
    dialect.connectError = new Error('refused')
    const pool = makePool({ failFastAfter: 0 })
    const call = settle(pool.acquire())
    await tick(0)
    expect(call.error).toBeInstanceOf(UnavailableError)
  })

  it('a server refusing more connections while ours are open is not down: lent ones come back and serve', async () => {
    const pool = makePool({ max: 4, failFastAfter: 500, prePing: false })
    const held = await pool.acquire()
    dialect.connectError = new TooMany('sorry, too many clients already')
    const waiting = Array.from({ length: 5 }, () => settle(pool.acquire()))
    await tick(3_000)
    expect(waiting.some((c) => c.done)).toBe(false)
    held.release()
    await tick(0)
    expect(waiting.filter((c) => c.done).length).toBe(1)
    for (let i = 0; i < 4; i++) {
      const served = waiting.find((c) => c.done && c.value?.active)
      ;(served!.value as Lease<FakeConnection>).release()
      await tick(0)
    }
    expect(waiting.every((c) => c.value !== undefined)).toBe(true)
    ;(waiting.find((c) => c.value!.active)!.value as Lease<FakeConnection>).release()
    checkInvariants(pool, dialect)
  })

  it('a blackholed server: the first timed-out connect counts from its start', async () => {
    dialect.hang = true
    const pool = makePool({ connectTimeout: 2_000, failFastAfter: 1_000 })
    const call = settle(pool.acquire())
    await tick(1_999)
    expect(call.done).toBe(false)
    await tick(1)
    expect(call.error).toBeInstanceOf(UnavailableError)
    const next = settle(pool.acquire())
    await tick(0)
    expect(next.error).toBeInstanceOf(UnavailableError)
    // The connect error's text once, and one explain hint: the pool's own.
    const message = (next.error as Error).message
    expect(message).toContain('the last with: connect timed out after 2000 ms; retrying')
    expect(message.match(/LIFEGUARD_[A-Z_]+/g)).toEqual(['LIFEGUARD_UNAVAILABLE'])
  })
})

/** An error with the fields a driver sets, as the drivers were seen to throw them on the live servers. */
function driverError(message: string, fields: Record<string, unknown>): Error {
  return Object.assign(new Error(message), fields)
}

describe('the dialects classify connect errors', () => {
  const refused = driverError('connect ECONNREFUSED 127.0.0.1:5432', {
    code: 'ECONNREFUSED',
    errno: -111,
  })
  const transientNet = ['ECONNRESET', 'ETIMEDOUT', 'EAI_AGAIN'].map((code) =>
    driverError(`${code.toLowerCase()}`, { code }),
  )

  it('postgres: auth, unknown database, TLS refused and unsupported auth are permanent', () => {
    const d = postgres({ host: '127.0.0.1' })
    const permanent = [
      driverError('password authentication failed for user "app"', { code: '28P01' }),
      driverError('role "nobody" does not exist', { code: '28000', severity: 'FATAL' }),
      driverError('database "nodb" does not exist', { code: '3D000', severity: 'FATAL' }),
      new Error('The server does not support SSL connections'),
      new Error('SASL: Only mechanism(s) SCRAM-SHA-256 are supported'),
      driverError('self-signed certificate', { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }),
      // Wrapped, as an ORM would.
      new Error('wrapped', { cause: driverError('bad password', { code: '28P01' }) }),
    ]
    for (const e of permanent) expect(d.classifyConnectError!(e), e.message).toBe('permanent')
    const transient = [
      refused,
      ...transientNet,
      driverError('sorry, too many clients already', { code: '53300' }),
      driverError('the database system is starting up', { code: '57P03' }),
      driverError('terminating connection due to administrator command', { code: '57P01' }),
      new ConnectError('connect timed out after 10000 ms'),
      new Error('Connection terminated unexpectedly'),
    ]
    for (const e of transient) expect(d.classifyConnectError!(e), e.message).toBe('transient')
  })

  it('mysql: 1045, 1698, 1049, TLS and auth-plugin errors are permanent; 1040 and the network transient', () => {
    const d = new MysqlDialect({ host: '127.0.0.1' })
    const permanent = [
      driverError("Access denied for user 'root'@'127.0.0.1' (using password: YES)", {
        code: 'ER_ACCESS_DENIED_ERROR',
        errno: 1045,
        sqlState: '28000',
      }),
      driverError("Access denied for user 'app'@'localhost'", {
        code: 'ER_ACCESS_DENIED_NO_PASSWORD_ERROR',
        errno: 1698,
      }),
      driverError("Unknown database 'nodb'", { code: 'ER_BAD_DB_ERROR', errno: 1049 }),
      driverError('Server does not support secure connection', {
        code: 'HANDSHAKE_NO_SSL_SUPPORT',
        fatal: true,
      }),
      driverError('Server requests authentication using unknown plugin x', {
        code: 'AUTH_SWITCH_PLUGIN_ERROR',
        fatal: true,
      }),
    ]
    for (const e of permanent) expect(d.classifyConnectError(e), e.message).toBe('permanent')
    const transient = [
      driverError('Too many connections', { code: 'ER_CON_COUNT_ERROR', errno: 1040 }),
      { ...refused, fatal: true },
      ...transientNet,
    ]
    for (const e of transient) expect(d.classifyConnectError(e)).toBe('transient')
  })

  it('sqlite: cannot open, not a database and a missing directory are permanent; SQLITE_BUSY transient', () => {
    const d = sqlite(':memory:')
    const permanent = [
      driverError('unable to open database file', { code: 'SQLITE_CANTOPEN' }),
      driverError('file is not a database', { code: 'SQLITE_NOTADB' }),
      new TypeError('Cannot open database because the directory does not exist'),
    ]
    for (const e of permanent) expect(d.classifyConnectError!(e), e.message).toBe('permanent')
    expect(
      d.classifyConnectError!(driverError('database is locked', { code: 'SQLITE_BUSY' })),
    ).toBe('transient')
  })
})
