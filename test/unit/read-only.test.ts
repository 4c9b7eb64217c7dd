import { beforeEach, describe, expect, it } from 'vitest'
import { RefusalWindow } from '../../src/core/refusal-window.js'
import {
  ConnectError,
  type Dialect,
  InvalidOptionError,
  type ServerRole,
  WrongRoleError,
} from '../../src/index.js'
import { tick } from '../support/clock.js'
import { type FakeConnection, FakeDialect, FakeDisconnect } from '../support/fake-dialect.js'
import { useFakePools } from '../support/fake-pools.js'
import { checkInvariants } from '../support/invariants.js'
import { settle } from '../support/promises.js'

// Issue 17, demoted writers: a write refused by a read-only server retires that connection and
// every older one (SQLAlchemy's rule for a disconnect), with the reason `read-only`; and
// `targetSessionAttrs: 'read-write'` closes a new connection that lands on a read-only server and
// connects again with backoff.

/** A write the server refused, as pg reports it (25006 read_only_sql_transaction). */
class ReadOnlyRefusal extends Error {
  readonly code = '25006'
}

const fake = useFakePools()
const makePool = fake.make
let dialect: FakeDialect
/** What each connection's death watcher is, so a test can report a refused write as a dialect does. */
let watchers: Map<FakeConnection, (error?: unknown) => void>
/** The role of the server each new connection lands on, in connect order; then `serverRole`. */
let roles: ServerRole[]
let serverRole: ServerRole
let roleChecks: number

beforeEach(() => {
  dialect = fake.dialect
  watchers = new Map()
  roles = []
  serverRole = 'read-write'
  roleChecks = 0
  const d = dialect as Dialect<FakeConnection>
  d.isReadOnly = (error) => error instanceof ReadOnlyRefusal
  const watch = dialect.watch.bind(dialect)
  d.watch = (connection, onDeath) => {
    watchers.set(connection, onDeath)
    watch(connection, onDeath)
  }
  const connectionRoles = new Map<FakeConnection, ServerRole>()
  const connect = dialect.connect.bind(dialect)
  d.connect = async (signal) => {
    const connection = await connect(signal)
    connectionRoles.set(connection, roles.shift() ?? serverRole)
    return connection
  }
  d.role = async (connection) => {
    roleChecks++
    return connectionRoles.get(connection) ?? 'read-write'
  }
})

/** The dialect saw the server refuse a write on `connection` (pg's ErrorResponse, mysql2's error packet). */
function refuse(connection: FakeConnection): ReadOnlyRefusal {
  const error = new ReadOnlyRefusal('cannot execute INSERT in a read-only transaction')
  watchers.get(connection)?.(error)
  return error
}

describe('a read-only error retires the connection and every older one', () => {
  it('thrown inside use(): the connection is destroyed with reason read-only, older idle ones are stale', async () => {
    const pool = makePool({ max: 3 })
    const leases = await Promise.all([pool.acquire(), pool.acquire(), pool.acquire()])
    for (const lease of leases) lease.release()
    const events: Array<{ id: number; reason: string; error?: unknown }> = []
    pool.on('invalidate', (e) => events.push({ id: e.id, reason: e.reason, error: e.error }))
    const refusal = new ReadOnlyRefusal('cannot execute INSERT in a read-only transaction')
    await expect(
      pool.use(() => {
        throw refusal
      }),
    ).rejects.toBe(refusal)
    await tick(0)
    expect(events).toEqual([{ id: 3, reason: 'read-only', error: refusal }])
    // The two older idle ones are never lent again: the next borrow opens a new connection.
    const lease = await pool.acquire()
    expect(lease.connection.id).toBe(4)
    expect(events.map((e) => e.reason)).toEqual(['read-only', 'stale', 'stale'])
    expect(dialect.all.map((c) => c.open)).toEqual([false, false, false, true])
    expect(checkInvariants(pool, dialect)).toMatchObject({ total: 1, leased: 1, invalidated: 3 })
  })

  it('an ordinary error inside use() still releases the connection for reuse', async () => {
    const pool = makePool()
    await expect(
      pool.use(() => {
        throw Object.assign(new Error('duplicate key'), { code: '23505' })
      }),
    ).rejects.toThrow('duplicate key')
    expect(await pool.use((c) => c.id)).toBe(1)
    expect(checkInvariants(pool, dialect)).toMatchObject({ invalidated: 0 })
  })

  it('lease.destroy(readOnlyError) retires the older ones too', async () => {
    const pool = makePool({ max: 3 })
    const [a, b] = await Promise.all([pool.acquire(), pool.acquire()])
    a!.release()
    const reasons: string[] = []
    pool.on('invalidate', (e) => reasons.push(e.reason))
    b!.destroy(new ReadOnlyRefusal('read-only'))
    await tick(0)
    expect(reasons).toEqual(['read-only'])
    const next = await pool.acquire()
    expect(next.connection.id).toBe(3)
    expect(reasons).toEqual(['read-only', 'stale'])
  })

  it('reported by the dialect while lent: a plain release() retires it as read-only, and the older ones are stale at once', async () => {
    const pool = makePool({ max: 3 })
    const [a, b, c] = await Promise.all([pool.acquire(), pool.acquire(), pool.acquire()])
    a!.release()
    const reasons: Array<[number, string]> = []
    pool.on('invalidate', (e) => reasons.push([e.id, e.reason]))
    const errors: unknown[] = []
    pool.on('invalidate', (e) => errors.push(e.error))
    const refusal = refuse(b!.connection)
    // The holder caught the error and gave the connection back as if nothing happened.
    b!.release()
    // The event carries the refusal the dialect reported.
    expect(errors).toEqual([refusal])
    await tick(0)
    expect(reasons).toEqual([[2, 'read-only']])
    // c was lent before the refusal: it too goes when it comes back, not to the next caller.
    c!.release()
    await tick(0)
    expect(reasons).toEqual([
      [2, 'read-only'],
      [3, 'stale'],
    ])
    const next = await pool.acquire()
    expect(next.connection.id).toBe(4)
    expect(reasons.map(([, r]) => r)).toEqual(['read-only', 'stale', 'stale'])
    expect(refusal).toBeInstanceOf(ReadOnlyRefusal)
    expect(checkInvariants(pool, dialect)).toMatchObject({ total: 1, invalidated: 3 })
  })

  it('reported on an idle connection: it is closed at once with reason read-only', async () => {
    const pool = makePool({ max: 2 })
    const lease = await pool.acquire()
    lease.release()
    const events: Array<{ reason: string; error?: unknown }> = []
    pool.on('invalidate', (e) => events.push({ reason: e.reason, error: e.error }))
    const refusal = refuse(dialect.all[0]!)
    await tick(0)
    expect(events).toEqual([{ reason: 'read-only', error: refusal }])
    expect(dialect.all[0]!.open).toBe(false)
  })

  it('a holder that writes again and again does not retire the connections made after its first refusal', async () => {
    const pool = makePool({ max: 3 })
    const held = await pool.acquire()
    refuse(held.connection)
    // A connection made after the refusal (on the server the pool now reaches).
    const fresh = await pool.acquire()
    const freshConnection = fresh.connection
    fresh.release()
    refuse(held.connection)
    refuse(held.connection)
    held.release()
    await tick(0)
    const again = await pool.acquire()
    expect(again.connection).toBe(freshConnection)
  })

  it('the destroy after a dialect-reported refusal carries the read-only reason, once', async () => {
    const pool = makePool({ max: 2 })
    const lease = await pool.acquire()
    const reasons: string[] = []
    pool.on('invalidate', (e) => reasons.push(e.reason))
    refuse(lease.connection)
    // mysql2's own pool.query destroys the connection without passing the error on.
    lease.destroy()
    await tick(0)
    expect(reasons).toEqual(['read-only'])
  })

  it('inside a request scope: the connection the scope held is retired as read-only when the scope ends', async () => {
    const pool = makePool({ max: 2 })
    const warm = await pool.acquire()
    warm.release()
    const reasons: string[] = []
    pool.on('invalidate', (e) => reasons.push(e.reason))
    const scope = pool.openScope()
    await scope.run(async () => {
      await pool.use(async (connection) => {
        refuse(connection)
      })
    })
    await scope.end()
    await tick(0)
    expect(reasons).toEqual(['read-only'])
    const next = await pool.acquire()
    expect(next.connection.id).toBe(2)
  })
})

describe("targetSessionAttrs: 'read-write'", () => {
  it('closes a connection that lands on a read-only server and connects again with backoff', async () => {
    roles = ['read-only', 'standby']
    const pool = makePool({ targetSessionAttrs: 'read-write' })
    const errors: Array<{ error: Error; attempt: number; retryInMs: number }> = []
    pool.on('connectError', (e) => errors.push(e))
    const acquired = settle(pool.acquire())
    await tick(0)
    expect(acquired.done).toBe(false)
    expect(errors).toHaveLength(1)
    expect(errors[0]!.error).toBeInstanceOf(ConnectError)
    const cause = errors[0]!.error.cause as WrongRoleError
    expect(cause).toBeInstanceOf(WrongRoleError)
    expect(cause).toMatchObject({
      code: 'LIFEGUARD_WRONG_ROLE',
      role: 'read-only',
      target: 'read-write',
    })
    expect(errors[0]!.retryInMs).toBeGreaterThan(0)
    // The connection on the read-only server was closed, never lent.
    expect(dialect.all[0]!.open).toBe(false)
    await tick(errors[0]!.retryInMs)
    expect(errors).toHaveLength(2)
    expect((errors[1]!.error.cause as WrongRoleError).role).toBe('standby')
    expect(errors[1]!.attempt).toBe(2)
    await tick(errors[1]!.retryInMs)
    expect(acquired.done).toBe(true)
    const lease = acquired.value as { connection: FakeConnection }
    expect(lease.connection.id).toBe(3)
    expect(dialect.all.map((c) => c.open)).toEqual([false, false, true])
    expect(roleChecks).toBe(3)
    expect(checkInvariants(pool, dialect)).toMatchObject({ total: 1, leased: 1, connectErrors: 2 })
  })

  it('a wrong role is transient: with failFast, the pool does not reject callers at once', async () => {
    ;(dialect as Dialect<FakeConnection>).classifyConnectError = () => 'permanent'
    roles = ['read-only']
    const pool = makePool({ targetSessionAttrs: 'read-write', failFastAfter: 60_000 })
    const acquired = settle(pool.acquire())
    await tick(0)
    expect(acquired.done).toBe(false)
    await tick(1_000)
    expect(acquired.done).toBe(true)
    expect(acquired.error).toBeUndefined()
  })

  it("'read-only' wants the opposite: a read-write server is refused", async () => {
    roles = ['read-write', 'standby']
    const pool = makePool({ targetSessionAttrs: 'read-only' })
    const lease = settle(pool.acquire())
    await tick(1_000)
    expect(lease.done).toBe(true)
    expect((lease.value as { connection: FakeConnection }).connection.id).toBe(2)
  })

  it("'any' (the default) asks the dialect nothing", async () => {
    serverRole = 'read-only'
    const pool = makePool()
    const lease = await pool.acquire()
    expect(lease.connection.id).toBe(1)
    expect(roleChecks).toBe(0)
    expect(pool.options.targetSessionAttrs).toBe('any')
  })

  it('a role() that fails counts as a failed connect, and closes the connection', async () => {
    let calls = 0
    ;(dialect as Dialect<FakeConnection>).role = async () => {
      if (++calls === 1) throw new Error('SHOW failed')
      return 'read-write'
    }
    const pool = makePool({ targetSessionAttrs: 'read-write' })
    const errors: Error[] = []
    pool.on('connectError', (e) => errors.push(e.error))
    const lease = settle(pool.acquire())
    await tick(1_000)
    expect(errors.map((e) => (e.cause as Error).message)).toEqual(['SHOW failed'])
    expect(lease.done).toBe(true)
    expect(dialect.all.map((c) => c.open)).toEqual([false, true])
  })
})

describe('targetSessionAttrs validation', () => {
  it('rejects a value it does not know, naming it and what is allowed', () => {
    expect(() => makePool({ targetSessionAttrs: 'primary' as never })).toThrow(InvalidOptionError)
    expect(() => makePool({ targetSessionAttrs: 'primary' as never })).toThrow(
      /targetSessionAttrs: "primary"; expected one of "any", "read-write", "read-only"/,
    )
  })

  it("refuses 'read-write' for a dialect that cannot read a server's role", () => {
    const plain = new FakeDialect()
    expect(() => makePool({ dialect: plain, targetSessionAttrs: 'read-write' })).toThrow(
      /targetSessionAttrs.*fake dialect cannot read a server's role/,
    )
    expect(makePool({ dialect: plain, targetSessionAttrs: 'any' }).options.targetSessionAttrs).toBe(
      'any',
    )
  })
})

describe("targetSessionAttrs: 'read-only' (a pool meant for a replica)", () => {
  it('a refused write is an ordinary statement error: the connection stays, and the older ones too', async () => {
    const pool = makePool({ max: 3, targetSessionAttrs: 'read-only' })
    serverRole = 'read-only'
    const leases = await Promise.all([pool.acquire(), pool.acquire(), pool.acquire()])
    const reasons: string[] = []
    pool.on('invalidate', (e) => reasons.push(e.reason))
    // The dialect sees the refusal on the wire, and the holder gives the connection back.
    refuse(leases[0]!.connection)
    for (const lease of leases) lease.release()
    await tick(0)
    const refusal = new ReadOnlyRefusal('cannot execute INSERT in a read-only transaction')
    await expect(
      pool.use(() => {
        throw refusal
      }),
    ).rejects.toBe(refusal)
    await tick(0)
    const again = await Promise.all([pool.acquire(), pool.acquire(), pool.acquire()])
    expect(again.map((l) => l.connection.id).sort()).toEqual([1, 2, 3])
    expect(reasons).toEqual([])
    expect(checkInvariants(pool, dialect)).toMatchObject({ total: 3, invalidated: 0 })
  })
})

describe('a late error on a condemned connection does not retire the connections made since', () => {
  it('a refusal on a connection already stale leaves the newer ones', async () => {
    const pool = makePool({ max: 3 })
    const [a, b] = await Promise.all([pool.acquire(), pool.acquire()])
    refuse(a!.connection)
    a!.release()
    // b is stale now; c is made after the refusal, on the server the pool reaches now.
    const c = await pool.acquire()
    expect(c.connection.id).toBe(3)
    c.release()
    // Well past any refusal window: only the condemned state of b may spare c.
    await tick(60_000)
    refuse(b!.connection)
    b!.release()
    await tick(0)
    const next = await pool.acquire()
    expect(next.connection.id).toBe(3)
  })

  it('the socket closing after a refused lease (a death without an error) leaves the newer ones', async () => {
    const pool = makePool({ max: 3 })
    const a = await pool.acquire()
    refuse(a.connection)
    const c = await pool.acquire()
    const newer = c.connection
    c.release()
    await tick(60_000)
    // The refused connection's socket closes: 'end', reported with no error.
    watchers.get(a.connection)?.()
    a.release()
    await tick(0)
    const next = await pool.acquire()
    expect(next.connection).toBe(newer)
  })

  it.each([
    ['a refusal', () => new ReadOnlyRefusal('read-only')],
    ['a disconnect', () => new FakeDisconnect('gone')],
  ])('a stale lease destroyed with %s leaves the newer ones', async (_, failure) => {
    const pool = makePool({ max: 3 })
    const [a, b] = await Promise.all([pool.acquire(), pool.acquire()])
    a!.destroy(new ReadOnlyRefusal('read-only'))
    const c = await pool.acquire()
    const newer = c.connection
    c.release()
    await tick(60_000)
    b!.destroy(failure())
    await tick(0)
    const next = await pool.acquire()
    expect(next.connection).toBe(newer)
  })
})

describe('a refusal that is only the session’s retires that connection alone', () => {
  it("readOnlyScope 'session' (MySQL 1792, PostgreSQL's explicit read-only transaction): the older ones stay", async () => {
    ;(dialect as Dialect<FakeConnection>).readOnlyScope = () => 'session'
    const pool = makePool({ max: 3 })
    const [a, b] = await Promise.all([pool.acquire(), pool.acquire()])
    a!.release()
    const reasons: Array<[number, string]> = []
    pool.on('invalidate', (e) => reasons.push([e.id, e.reason]))
    refuse(b!.connection)
    b!.release()
    await tick(0)
    expect(reasons).toEqual([[2, 'read-only']])
    const next = await pool.acquire()
    expect(next.connection.id).toBe(1)
  })

  it('a refusal the dialect judges the server’s after the holder gave the connection back retires the older ones then', async () => {
    const judged = new Set<unknown>()
    ;(dialect as Dialect<FakeConnection>).readOnlyScope = (error) =>
      judged.has(error) ? 'server' : 'session'
    const pool = makePool({ max: 3 })
    const [a, b] = await Promise.all([pool.acquire(), pool.acquire()])
    a!.release()
    const refusal = new ReadOnlyRefusal('cannot execute INSERT in a read-only transaction')
    const connection = b!.connection
    b!.release()
    await expect(
      pool.use(() => {
        throw refusal
      }),
    ).rejects.toBe(refusal)
    // use() took connection 1 (idle head) or 2: whichever, it is retired; the other is still idle.
    await tick(0)
    // The ReadyForQuery after the error: the session reports default_transaction_read_only on.
    judged.add(refusal)
    for (const c of dialect.all) watchers.get(c)?.(refusal)
    await tick(0)
    const next = await pool.acquire()
    expect(next.connection.id).toBe(3)
    expect(connection.id).toBe(2)
  })
})

describe('a server that stays read-only (targetSessionAttrs any): no reconnect storm', () => {
  it('flushes the older connections at most once per window, growing while refusals go on', async () => {
    const pool = makePool({ max: 4 })
    const stale: number[] = []
    pool.on('invalidate', (e) => {
      if (e.reason === 'stale') stale.push(e.id)
    })
    const first = await Promise.all([pool.acquire(), pool.acquire()])
    first[1]!.release()
    first[0]!.destroy(new ReadOnlyRefusal('read-only'))
    // Connection 2 was older than the refusal: stale.
    const fresh = await Promise.all([pool.acquire(), pool.acquire()])
    expect(fresh.map((l) => l.connection.id)).toEqual([3, 4])
    expect(stale).toEqual([2])
    // Within the window (25 ms) a refused connection retires only itself.
    await tick(10)
    fresh[0]!.destroy(new ReadOnlyRefusal('read-only'))
    fresh[1]!.release()
    await tick(0)
    const kept = await pool.acquire()
    expect(kept.connection.id).toBe(4)
    // After it, while refusals go on, one flush again, and the next window is 50 ms.
    await tick(20)
    const newer = await pool.acquire()
    expect(newer.connection.id).toBe(5)
    kept.destroy(new ReadOnlyRefusal('read-only'))
    newer.release()
    await tick(0)
    expect((await pool.acquire()).connection.id).toBe(6)
    expect(stale).toEqual([2, 5])
  })

  it('the window grows to 5 s while refusals go on, and starts again at 25 ms once they stop', () => {
    const window = new RefusalWindow()
    let now = 0
    const flushedAt: number[] = []
    // A refusal every 10 ms for a minute.
    for (; now < 60_000; now += 10) if (window.refused(now)) flushedAt.push(now)
    const gaps = flushedAt.slice(1).map((t, i) => t - flushedAt[i]!)
    expect(gaps.slice(0, 4)).toEqual([30, 50, 100, 200])
    expect(Math.max(...gaps)).toBe(5_000)
    expect(flushedAt.length).toBeLessThan(20)
    // A quiet spell longer than the window: the next refusal flushes, and the window is 25 ms.
    now += 10_000
    expect(window.refused(now)).toBe(true)
    expect(window.refused(now + 20)).toBe(false)
    expect(window.refused(now + 30)).toBe(true)
  })
})

describe('the role check runs before onConnect', () => {
  it('onConnect never runs on a server of the wrong role', async () => {
    roles = ['read-only']
    const ran: number[] = []
    const pool = makePool({
      targetSessionAttrs: 'read-write',
      onConnect: (connection) => {
        ran.push(connection.id)
      },
    })
    const lease = settle(pool.acquire())
    await tick(1_000)
    expect(lease.done).toBe(true)
    expect(ran).toEqual([2])
  })

  it('an onConnect write refused on a new connection does not retire the established ones', async () => {
    const pool = makePool({
      max: 3,
      onConnect: (connection) => {
        if (connection.id === 2) refuse(connection)
      },
    })
    const a = await pool.acquire()
    a.release()
    const reasons: Array<[number, string]> = []
    pool.on('invalidate', (e) => reasons.push([e.id, e.reason]))
    const both = await Promise.all([pool.acquire(), pool.acquire()])
    const ids = both.map((l) => l.connection.id).sort()
    expect(ids).toEqual([1, 3])
    for (const lease of both) lease.release()
    await tick(0)
    // Connection 1, established before, is lent again: not stale.
    const again = await Promise.all([pool.acquire(), pool.acquire()])
    expect(again.map((l) => l.connection.id).sort()).toEqual([1, 3])
    expect(reasons).toEqual([[2, 'read-only']])
  })
})

describe("the 'invalidate' event of a connection refused while the pool reset it", () => {
  it('carries the refusal', async () => {
    dialect.syncReset = false
    dialect.resetDelay = 10
    const pool = makePool({ max: 2 })
    const lease = await pool.acquire()
    const connection = lease.connection
    lease.release()
    const events: Array<{ reason: string; error?: unknown }> = []
    pool.on('invalidate', (e) => events.push({ reason: e.reason, error: e.error }))
    const refusal = refuse(connection)
    await tick(10)
    expect(events).toEqual([{ reason: 'read-only', error: refusal }])
  })
})

describe('a transactional request scope whose COMMIT is refused as read-only', () => {
  it('destroys the connection with the refusal instead of giving it back for a reset', async () => {
    const refusal = new ReadOnlyRefusal('cannot execute COMMIT in a read-only transaction')
    const pool = makePool({ max: 2 })
    const events: Array<{ reason: string; error?: unknown }> = []
    pool.on('invalidate', (e) => events.push({ reason: e.reason, error: e.error }))
    const scope = pool.openScope({ transaction: true })
    await scope.use(() => undefined)
    dialect.stepError = { step: 'commit', error: refusal }
    await expect(scope.end('commit')).rejects.toBe(refusal)
    await tick(0)
    expect(events).toEqual([{ reason: 'read-only', error: refusal }])
    expect(dialect.all[0]!.open).toBe(false)
  })
})
