import * as diagnostics from 'node:diagnostics_channel'
import * as v8 from 'node:v8'
import { runInNewContext } from 'node:vm'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { lifeguardChannels } from '../../src/core/diagnostics-channels.js'
import { mysql } from '../../src/dialects/mysql.js'
import { postgres } from '../../src/dialects/postgres.js'
import { sqlite } from '../../src/dialects/sqlite.js'
import {
  AcquireTimeoutError,
  createPool,
  type Dialect,
  type DialectTarget,
  type Pool,
} from '../../src/index.js'
import { tick } from '../support/clock.js'
import { type FakeConnection, FakeDisconnect } from '../support/fake-dialect.js'
import { useFakePools } from '../support/fake-pools.js'
import { trackProcessErrors } from '../support/process-errors.js'

const fake = useFakePools()

const TRACING = ['acquire', 'connect'] as const
const PLAIN = [
  'release',
  'reset',
  'invalidate',
  'close',
  'connectError',
  'unavailable',
  'available',
  'leak',
  'server',
  'clamp',
  'warning',
] as const

type Seen = [string, Record<string, unknown>]

/**
 * Subscribes to every lifeguard channel, as an APM tool would, by name: each message is copied
 * when published (a tracing context is one object that fills as it goes).
 */
function subscribeAll(): { seen: Seen[]; stop(): void } {
  const seen: Seen[] = []
  const stops: Array<() => void> = []
  for (const name of TRACING) {
    const channel = diagnostics.tracingChannel(`lifeguard:${name}`)
    const handlers = Object.fromEntries(
      (['start', 'end', 'asyncStart', 'asyncEnd', 'error'] as const).map((event) => [
        event,
        (message: unknown) => seen.push([`${name}:${event}`, { ...(message as object) }]),
      ]),
    ) as unknown as diagnostics.TracingChannelSubscribers<object>
    channel.subscribe(handlers)
    stops.push(() => channel.unsubscribe(handlers))
  }
  for (const name of PLAIN) {
    const handler = (message: unknown) => seen.push([name, { ...(message as object) }])
    diagnostics.subscribe(`lifeguard:${name}`, handler)
    stops.push(() => diagnostics.unsubscribe(`lifeguard:${name}`, handler))
  }
  return {
    seen,
    stop: () => {
      for (const stop of stops) stop()
    },
  }
}

/** Whether `value` holds a fake connection anywhere (it must not: no driver object in a message). */
function holdsConnection(value: unknown, connections: readonly FakeConnection[]): boolean {
  if (typeof value !== 'object' || value === null) return false
  if (connections.includes(value as FakeConnection)) return true
  return Object.values(value).some((inner) => holdsConnection(inner, connections))
}

describe('diagnostics channels: what a subscriber sees', () => {
  let subscription: ReturnType<typeof subscribeAll> | undefined
  afterEach(() => subscription?.stop())

  it('publishes a known sequence in order: connect, acquire, a timeout, release, reset, invalidate, close', async () => {
    const dialect = fake.dialect
    dialect.connectDelay = 5
    const pool = fake.make({ name: 'orders', max: 1 })
    // Subscribed after the pool was made: the channels are looked at on each call, not cached.
    subscription = subscribeAll()
    const { seen } = subscription

    const first = pool.acquire()
    await tick(5)
    const lease = await first
    await tick(3)
    const late = pool.acquire({ timeout: 10 })
    const outcome = late.catch((error: unknown) => error)
    await tick(10)
    expect(await outcome).toBeInstanceOf(AcquireTimeoutError)
    await tick(20)
    lease.release()
    const again = await pool.acquire()
    again.destroy(new FakeDisconnect('server closed the connection'))
    await tick(0)

    const id = 1
    const pool_ = { poolName: 'orders' }
    expect(seen.map(([name]) => name)).toEqual([
      'acquire:start',
      'connect:start',
      'connect:end',
      'acquire:end',
      'connect:asyncStart',
      'connect:asyncEnd',
      'acquire:asyncStart',
      'acquire:asyncEnd',
      // The second caller times out.
      'acquire:start',
      'acquire:end',
      'acquire:error',
      'acquire:asyncStart',
      'acquire:asyncEnd',
      'release',
      'reset',
      // The third caller gets the connection at once, then destroys it with a disconnect.
      'acquire:start',
      'acquire:end',
      'acquire:asyncStart',
      'acquire:asyncEnd',
      'release',
      'invalidate',
      'close',
    ])
    const message = (name: string, nth = 0) => seen.filter(([n]) => n === name)[nth]![1]
    expect(message('acquire:start')).toEqual(pool_)
    expect(message('connect:start')).toEqual({ ...pool_, connectionId: id })
    expect(message('connect:asyncEnd')).toEqual({ ...pool_, connectionId: id, durationMs: 5 })
    expect(message('acquire:asyncEnd')).toEqual({ ...pool_, connectionId: id, waitMs: 5 })
    const timedOut = message('acquire:error', 0)
    expect(timedOut).toEqual({ ...pool_, error: expect.any(AcquireTimeoutError) })
    expect(String((timedOut.error as Error).message)).toMatch(/Timed out after 10 ms.*"orders"/)
    expect(message('acquire:asyncEnd', 1)).toEqual(timedOut)
    expect(message('release')).toEqual({
      ...pool_,
      connectionId: id,
      heldMs: 33,
      destroyed: false,
    })
    expect(message('reset')).toEqual({
      ...pool_,
      connectionId: id,
      mode: 'rollback',
      durationMs: 0,
    })
    expect(message('acquire:asyncEnd', 2)).toEqual({ ...pool_, connectionId: id, waitMs: 0 })
    expect(message('release', 1)).toMatchObject({ connectionId: id, destroyed: true })
    expect(message('invalidate')).toEqual({
      ...pool_,
      connectionId: id,
      reason: 'disconnect',
      error: expect.any(FakeDisconnect),
    })
    expect(message('close')).toEqual({ ...pool_, connectionId: id })
    expect(seen.some(([, m]) => holdsConnection(m, dialect.all))).toBe(false)
  })

  it('traces an aborted acquire to error, with the abort reason', async () => {
    const pool = fake.make({ name: 'aborts', max: 1 })
    const held = await pool.acquire()
    subscription = subscribeAll()
    const controller = new AbortController()
    const waiting = pool.acquire({ signal: controller.signal }).catch((error: unknown) => error)
    const reason = new Error('caller gave up')
    controller.abort(reason)
    expect(await waiting).toBe(reason)
    expect(subscription.seen).toEqual([
      ['acquire:start', { poolName: 'aborts' }],
      ['acquire:end', { poolName: 'aborts' }],
      ['acquire:error', { poolName: 'aborts', error: reason }],
      ['acquire:asyncStart', { poolName: 'aborts', error: reason }],
      ['acquire:asyncEnd', { poolName: 'aborts', error: reason }],
    ])
    held.release()
  })

  it('traces a failed connect to error, then lifeguard:connectError with the backoff, and fail-fast on its channels', async () => {
    const dialect = fake.dialect
    const refused = Object.assign(new Error('refused'), { code: 'ECONNREFUSED' })
    dialect.connectError = refused
    const pool = fake.make({ name: 'down', failFastAfter: 1, acquireTimeout: 5_000 })
    subscription = subscribeAll()
    const errors = trackProcessErrors()
    const waiting = pool.acquire().catch((error: unknown) => error)
    await tick(2_000)
    dialect.connectError = undefined
    await tick(2_000)
    await waiting
    errors.stop()
    expect(errors.errors).toEqual([])
    const names = subscription.seen.map(([name]) => name)
    expect(names.slice(0, 4)).toEqual([
      'acquire:start',
      'connect:start',
      'connect:end',
      'acquire:end',
    ])
    const failed = subscription.seen.find(([name]) => name === 'connect:error')![1]
    expect(failed).toMatchObject({ poolName: 'down', connectionId: 1 })
    expect((failed.error as Error).message).toMatch(/refused/)
    expect(subscription.seen.find(([name]) => name === 'connectError')![1]).toMatchObject({
      poolName: 'down',
      connectionId: 1,
      attempt: 1,
      retryInMs: expect.any(Number),
    })
    expect(names).toContain('unavailable')
    expect(names.indexOf('available')).toBeGreaterThan(names.indexOf('unavailable'))
  })

  it('publishes leak, server and clamp with the pool name', async () => {
    const dialect = fake.dialect
    dialect.server = {
      maxConnections: 100,
      idleCutoffMs: 60_000,
      idleCutoffSetting: 'wait_timeout',
    }
    subscription = subscribeAll()
    const pool = fake.make({ name: 'limits', leakDetectionThreshold: 100 })
    const lease = await pool.acquire()
    await tick(150)
    const { seen } = subscription
    expect(seen.find(([name]) => name === 'server')![1]).toEqual({
      poolName: 'limits',
      maxConnections: 100,
      idleCutoffMs: 60_000,
      idleCutoffSetting: 'wait_timeout',
    })
    expect(seen.find(([name]) => name === 'clamp')![1]).toMatchObject({
      poolName: 'limits',
      setting: 'wait_timeout',
      cutoffMs: 60_000,
    })
    expect(seen.find(([name]) => name === 'leak')![1]).toMatchObject({
      poolName: 'limits',
      connectionId: 1,
      heldMs: 100,
      stack: expect.stringContaining('acquired here'),
    })
    lease.release()
  })
})

describe('diagnostics channels: a request scope', () => {
  it("traces the scope's one checkout from the pool, not each turn on its connection", async () => {
    const pool = fake.make({ name: 'scoped' })
    const subscription = subscribeAll()
    try {
      const scope = pool.openScope()
      await scope.run(async () => {
        for (let i = 0; i < 3; i++) await pool.use(() => undefined)
        const lease = await pool.acquire()
        lease.release()
      })
      await scope.end()
      const starts = subscription.seen.filter(([name]) => name === 'acquire:start')
      expect(starts).toHaveLength(1)
      expect(subscription.seen.find(([name]) => name === 'acquire:asyncEnd')![1]).toMatchObject({
        poolName: 'scoped',
        connectionId: 1,
      })
      expect(subscription.seen.filter(([name]) => name === 'release')).toHaveLength(1)
    } finally {
      subscription.stop()
    }
  })
})

describe('diagnostics channels: nothing built for a channel nobody listens to', () => {
  it('never publishes nor enters a trace with no subscriber, through a whole pool life', async () => {
    for (const name of TRACING) {
      expect(diagnostics.tracingChannel(`lifeguard:${name}`).hasSubscribers, name).toBe(false)
    }
    for (const name of PLAIN) {
      expect(diagnostics.hasSubscribers(`lifeguard:${name}`), name).toBe(false)
    }
    const spies = [
      ...PLAIN.map((name) => vi.spyOn(lifeguardChannels[name], 'publish')),
      ...TRACING.flatMap((name) =>
        (['start', 'end', 'asyncStart', 'asyncEnd', 'error'] as const).map((event) =>
          vi.spyOn(lifeguardChannels[name][event], event === 'start' ? 'runStores' : 'publish'),
        ),
      ),
    ]
    const trace = vi.spyOn(lifeguardChannels, 'trace')
    const dialect = fake.dialect
    dialect.server = { maxConnections: 1, idleCutoffMs: 60_000, idleCutoffSetting: 'wait_timeout' }
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
    const pool = fake.make({ max: 1, leakDetectionThreshold: 10 })
    const a = await pool.acquire()
    await tick(20) // a leak
    const timeout = pool.acquire({ timeout: 5 }).catch(() => {})
    await tick(5)
    await timeout
    a.destroy(new FakeDisconnect('gone')) // an invalidation and a close
    await pool.use(() => undefined)
    await tick(10)
    warn.mockRestore()
    expect(pool.stats()).toMatchObject({ timeouts: 1, invalidated: 1, closed: 1, acquired: 2 })
    for (const spy of [...spies, trace]) expect(spy).not.toHaveBeenCalled()
  })
})

/** A dialect that connects nowhere, with the target given. */
function targeted(target: DialectTarget | undefined): Dialect<object> {
  return {
    name: 'targeted',
    ...(target === undefined ? {} : { target }),
    connect: async () => ({}),
    close: async () => {},
  }
}

describe('the default pool name', () => {
  const pools: Pool<object>[] = []
  const make = (dialect: Dialect<object>, name?: string) => {
    const pool = createPool({ dialect, max: 1, ...(name === undefined ? {} : { name }) })
    pools.push(pool)
    return pool
  }
  afterEach(async () => {
    await Promise.all(pools.splice(0).map((pool) => pool.destroy()))
  })

  it('a dialect wrapped with Object.create (its target getter reads private fields and throws) gets pool-N, not a TypeError at construction', () => {
    // The fail-fast fault test wraps real dialects this way to count their connects.
    const wrapped = Object.create(
      postgres('postgres://u:secret@db.internal:5432/app'),
    ) as Dialect<object>
    const pool = make(wrapped)
    expect(pool.name).toMatch(/^pool-\d+$/)
    expect(make(Object.create(sqlite(':memory:')) as Dialect<object>).name).toMatch(/^pool-\d+$/)
  })

  it("is the convention's address:port/namespace, unique among open pools (#2, #3), and free again once closed", async () => {
    const target = { address: 'db.internal', port: 5432, namespace: 'app' }
    const first = make(targeted(target))
    const second = make(targeted(target))
    const third = make(targeted(target))
    expect([first.name, second.name, third.name]).toEqual([
      'db.internal:5432/app',
      'db.internal:5432/app#2',
      'db.internal:5432/app#3',
    ])
    expect(second.stats().name).toBe('db.internal:5432/app#2')
    expect(second.options.name).toBe('db.internal:5432/app#2')
    await second.close()
    expect(make(targeted(target)).name).toBe('db.internal:5432/app#2')
    await first.destroy()
    expect(make(targeted(target)).name).toBe('db.internal:5432/app')
  })

  it('a pool dropped without close() frees its default name once collected (no drift to #2)', async () => {
    v8.setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    const target = { address: 'dropped.internal', port: 5432, namespace: 'app' }
    // Made and dropped in a function of its own, so that nothing here keeps it.
    const named = (() => createPool({ dialect: targeted(target), max: 1 }).name)()
    expect(named).toBe('dropped.internal:5432/app')
    // A WeakRef's target lives at least until the current job ends.
    for (let i = 0; i < 10; i++) {
      await new Promise((resolve) => setImmediate(resolve))
      gc()
    }
    expect(make(targeted(target)).name).toBe('dropped.internal:5432/app')
  })

  it('is unique across two loaded copies of lifeguard (the table is process-wide)', async () => {
    const here = await import('../../src/core/pool-names.js')
    vi.resetModules()
    const other = await import('../../src/core/pool-names.js')
    expect(other.poolNames).not.toBe(here.poolNames)
    const a = {}
    const b = {}
    expect(here.poolNames.claim(a, 'copies:1/x', true)).toBe('copies:1/x')
    expect(other.poolNames.claim(b, 'copies:1/x', true)).toBe('copies:1/x#2')
    here.poolNames.release(a, 'copies:1/x')
    other.poolNames.release(b, 'copies:1/x#2')
    // pool-N too: the two copies count on one counter.
    const first = here.poolNames.defaultFor(undefined)
    expect(other.poolNames.defaultFor(undefined)).not.toBe(first)
  })

  it('is in error messages and on the channels', async () => {
    const pool = make(targeted({ address: '10.0.0.9', port: 3307, namespace: 'shop' }))
    const lease = await pool.acquire()
    const failing = pool.acquire({ timeout: 1 }).catch((e: unknown) => e)
    await tick(1)
    const error = await failing
    expect((error as Error).message).toContain('pool "10.0.0.9:3307/shop"')
    lease.release()
  })

  it('leaves a name the user chose as it is, and a default avoids it', () => {
    const target = { address: 'h', port: 1, namespace: 'd' }
    expect(make(targeted(target), 'h:1/d').name).toBe('h:1/d')
    expect(make(targeted(target), 'h:1/d').name).toBe('h:1/d')
    expect(make(targeted(target)).name).toBe('h:1/d#2')
  })

  it('is pool-N for a dialect without a target, and uses the parts a target has', () => {
    expect(make(targeted(undefined)).name).toMatch(/^pool-\d+$/)
    expect(make(targeted({})).name).toMatch(/^pool-\d+$/)
    expect(make(targeted({ namespace: 'only.db' })).name).toBe('only.db')
    expect(make(targeted({ address: '/run/mysqld.sock', namespace: 'x' })).name).toBe(
      '/run/mysqld.sock/x',
    )
    expect(make(targeted({ address: 'h', port: 5 })).name).toBe('h:5')
  })

  it('comes from the postgres, mysql and sqlite dialects, with no credential', () => {
    const secret = 's3cr3t'
    const cases: Array<[Dialect<unknown>, DialectTarget]> = [
      [
        postgres(`postgres://app:${secret}@db.example:6543/orders`),
        { address: 'db.example', port: 6543, namespace: 'orders' },
      ],
      [
        postgres({ host: 'pg', database: 'crm', user: 'u', password: secret }),
        { address: 'pg', port: 5432, namespace: 'crm' },
      ],
      [
        postgres({ connectionString: `postgresql://u:${secret}@a:1/b`, host: 'ignored' }),
        { address: 'a', port: 1, namespace: 'b' },
      ],
      [
        postgres('/var/run/postgresql sales'),
        { address: '/var/run/postgresql', namespace: 'sales' },
      ],
      [
        mysql(`mysql://root:${secret}@127.0.0.1:3306/test`),
        { address: '127.0.0.1', port: 3306, namespace: 'test' },
      ],
      [mysql({ user: 'root', password: secret }), { address: 'localhost', port: 3306 }],
      [
        mysql({ socketPath: '/tmp/mysql.sock', database: 'x', password: secret }),
        { address: '/tmp/mysql.sock', namespace: 'x' },
      ],
      [sqlite('/tmp/some/dir/app.db'), { namespace: 'app.db' }],
    ]
    for (const [dialect, expected] of cases) {
      const target = dialect.target
      expect(
        Object.fromEntries(Object.entries(target ?? {}).filter(([, v]) => v !== undefined)),
      ).toEqual(expected)
      expect(JSON.stringify(target)).not.toContain(secret)
      expect(JSON.stringify(target)).not.toMatch(/"(app|u|root)"/)
    }
  })

  it('mysql2’s own fields win over its uri, as mysql2 reads them (pg’s URL wins)', () => {
    const target = mysql({
      uri: 'mysql://root@from-uri:3307/uridb',
      host: 'own',
      database: 'owndb',
    }).target
    expect(target).toMatchObject({ address: 'own', port: 3307, namespace: 'owndb' })
  })

  it('an IPv6 host is named [::1]:5432/db from a URL and from the object alike', () => {
    expect(make(postgres('postgres://[::1]:5432/db')).name).toBe('[::1]:5432/db')
    expect(make(postgres({ host: '::1', port: 5432, database: 'db' })).name).toBe('[::1]:5432/db#2')
    expect(postgres('postgres://[::1]:5432/db').target).toMatchObject({ address: '::1' })
  })

  it('a password with an unescaped / is never shown in the name (pool-N instead)', () => {
    for (const url of [
      'postgres://user:1234/x@host/db',
      'postgres://user:12?34@host/db',
      'postgres://user:pa@ss/x@host/db',
    ]) {
      const name = make(postgres(url)).name
      expect(name).toMatch(/^pool-\d+$/)
      for (const part of ['1234', 'x@host', '34', 'ss', 'user']) expect(name).not.toContain(part)
    }
  })

  it('a URL with an empty host and the socket directory in ?host= is named by the socket', () => {
    const dialect = postgres('postgres://u:pw@/sales?host=/var/run/postgresql')
    expect(dialect.target).toMatchObject({ address: '/var/run/postgresql', namespace: 'sales' })
    expect(dialect.target?.port).toBeUndefined()
    expect(make(dialect).name).toBe('/var/run/postgresql/sales')
  })
})
