import { writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { MysqlDialect } from '../../src/dialects/mysql-dialect.js'
import { postgres } from '../../src/dialects/postgres.js'
import { sqlite } from '../../src/dialects/sqlite.js'
import {
  ConnectError,
  createPool,
  type Dialect,
  type Lease,
  UnavailableError,
} from '../../src/index.js'
import { passwordRejectingServer } from '../support/pg-password-stub.js'
import { describeOnServer, probe } from '../support/servers.js'
import {
  type FaultTarget,
  ms,
  mysqlFaultTarget,
  percentile,
  postgresFaultTarget,
  report,
  rig,
  timed,
  underOutage,
} from './fault-targets.js'

// Issue 15, sections 1 and 2: a permanent connect error fails its callers at once; a database
// that is down fails them at once (UnavailableError) after `failFastAfter`; a server that only
// refuses more connections while ours are open is not down.

const [pgStatus, myStatus] = await Promise.all([probe('postgres'), probe('mysql')])

/** A dialect that counts its connects and times each. */
function counted<C>(dialect: Dialect<C>): { dialect: Dialect<C>; attempts: number[] } {
  const attempts: number[] = []
  const wrapped = Object.create(dialect) as Dialect<C>
  wrapped.connect = (signal) => {
    const started = performance.now()
    const i = attempts.push(Number.NaN) - 1
    const done = () => {
      attempts[i] = performance.now() - started
    }
    const promise = dialect.connect(signal)
    promise.then(done, done)
    return promise
  }
  return { dialect: wrapped, attempts }
}

/**
 * The permanent misconfigurations each server can show. PostgreSQL here trusts 127.0.0.1 (no
 * password check): its wrong password is the wire stub's, on `stubPort`.
 */
function misconfigured(
  target: FaultTarget<unknown>,
  stubPort: number,
): Array<{ what: string; code: string; dialect: () => Dialect<unknown> }> {
  const url = new URL(target.status.url)
  const database = decodeURIComponent(url.pathname.slice(1)) || 'test'
  const port = target.serverPort
  if (target.name === 'postgres') {
    const user = decodeURIComponent(url.username) || 'postgres'
    return [
      {
        what: 'wrong password (wire stub)',
        code: '28P01',
        dialect: () =>
          postgres({
            host: '127.0.0.1',
            port: stubPort,
            user: 'app',
            password: 'lifeguard-wrong-secret',
            database,
          }) as Dialect<unknown>,
      },
      {
        what: 'unknown role',
        code: '28000',
        dialect: () =>
          postgres({
            host: '127.0.0.1',
            port,
            user: 'lifeguard_no_such_role',
            database,
          }) as Dialect<unknown>,
      },
      {
        what: 'unknown database',
        code: '3D000',
        dialect: () =>
          postgres({
            host: '127.0.0.1',
            port,
            user,
            database: 'lifeguard_no_such_db',
          }) as Dialect<unknown>,
      },
    ]
  }
  return [
    {
      what: 'wrong password',
      code: 'ER_ACCESS_DENIED_ERROR, 1045',
      dialect: () =>
        new MysqlDialect({
          host: '127.0.0.1',
          port,
          user: 'root',
          password: 'lifeguard-wrong-secret',
          database,
        }) as Dialect<unknown>,
    },
    {
      what: 'unknown database',
      code: 'ER_BAD_DB_ERROR, 1049',
      dialect: () =>
        new MysqlDialect({
          host: '127.0.0.1',
          port,
          user: 'root',
          database: 'lifeguard_no_such_db',
        }) as Dialect<unknown>,
    },
  ]
}

function scenarios<C>(target: FaultTarget<C>): void {
  const server = target.label

  it('permanent errors: the first acquire rejects within its connect + 50 ms; 1000 concurrent acquires make ≤ max connects', async () => {
    const stub = await passwordRejectingServer('app')
    for (const bad of misconfigured(target as FaultTarget<unknown>, stub.port)) {
      const first = counted(bad.dialect())
      const pool = createPool({ dialect: first.dialect, max: 10 })
      try {
        const a = await timed(pool.acquire())
        const error = a.error as ConnectError
        expect(error).toBeInstanceOf(ConnectError)
        expect(error.message).toContain(`(${bad.code})`)
        expect(error.message).not.toContain('lifeguard-wrong-secret')
        const connectMs = first.attempts[0]!
        // Now failing: 1000 more callers get the same error, at once, with no connect.
        const before = first.attempts.length
        const t0 = performance.now()
        const later = await Promise.all(Array.from({ length: 1000 }, () => timed(pool.acquire())))
        const laterMs = performance.now() - t0
        expect(later.every((x) => x.error instanceof ConnectError)).toBe(true)
        const laterAttempts = first.attempts.length - before
        // A cold pool: 1000 at once.
        const cold = counted(bad.dialect())
        const coldPool = createPool({ dialect: cold.dialect, max: 10 })
        const c0 = performance.now()
        const all = await Promise.all(Array.from({ length: 1000 }, () => timed(coldPool.acquire())))
        const coldMs = performance.now() - c0
        const coldAttempts = cold.attempts.length
        await coldPool.destroy()
        expect(all.every((x) => x.error instanceof ConnectError)).toBe(true)
        expect(coldAttempts).toBeLessThanOrEqual(10)
        expect(laterAttempts).toBeLessThanOrEqual(1) // a background probe at most
        report(
          `15.1 permanent: ${bad.what}`,
          server,
          {
            message: error.message.replace(/ \[LIFEGUARD_.*$/, ''),
            connectMs: ms(connectMs),
            acquireMs: ms(a.ms),
            thousandLaterMs: ms(laterMs),
            thousandLaterConnects: laterAttempts,
            thousandColdMs: ms(coldMs),
            thousandColdConnects: coldAttempts,
          },
          {
            overConnect: { value: a.ms - connectMs, target: 50, bound: 500 },
            thousandLater: { value: laterMs, target: 50, bound: 1_000 },
          },
        )
      } finally {
        await pool.destroy()
      }
    }
    await stub.close()
  })

  it('down 5 s under 50 workers: failed acquires settle ≤ 50 ms at p99, one connect in flight, serving ≤ 1 s after', async () => {
    const r = await rig(target)
    try {
      const pool = r.pool({ max: 8, failFastAfter: 1_000, acquireTimeout: 30_000 })
      let failingSince = 0
      let failingNow = false
      let mostConnecting = 0
      // Samples the connects in flight while the pool fails fast (from the first UnavailableError
      // to the first acquire served after it).
      const sampler = setInterval(() => {
        if (failingNow) mostConnecting = Math.max(mostConnecting, pool.stats().connecting)
      }, 2)
      const { runs, upAt } = await underOutage(
        r.proxy,
        { workers: 50, leadMs: 500, downMs: 5_000, afterMs: 1_500 },
        async () => {
          const acquired = await timed(pool.acquire())
          if (acquired.error instanceof UnavailableError) {
            if (failingSince === 0) failingSince = performance.now()
            failingNow = true
          } else if (acquired.value !== undefined) {
            failingNow = false
          }
          if (acquired.value === undefined) return { ...acquired, ok: false }
          const lease = acquired.value as Lease<C>
          const query = await timed(target.query(lease.connection, 'SELECT 1'))
          if (query.error === undefined) lease.release()
          else lease.destroy(query.error)
          return { ms: acquired.ms, error: query.error, ok: query.error === undefined }
        },
        (result) => !result.ok,
      )
      clearInterval(sampler)
      const unavailable = runs.filter((x) => x.value.error instanceof UnavailableError)
      // Once failing fast: the acquires made after the first UnavailableError (the callers queued
      // before it waited up to failFastAfter, and are counted apart).
      const fast = unavailable.filter((x) => x.endedAt - x.value.ms >= failingSince)
      const queued = unavailable.filter((x) => x.endedAt - x.value.ms < failingSince)
      const settle = fast.map((x) => x.value.ms)
      const p99 = percentile(settle, 99)
      const firstBack = Math.min(
        ...runs.filter((x) => x.value.ok && x.endedAt > upAt).map((x) => x.endedAt),
      )
      const recoveryMs = firstBack - upAt
      const after = runs.filter((x) => x.phase === 'after' && !x.value.ok)
      const otherErrorsAfter = after.filter((x) => !(x.value.error instanceof UnavailableError))
      expect(unavailable.length).toBeGreaterThan(0)
      const cause = unavailable[0]!.value.error as UnavailableError
      expect(cause.cause).toBeInstanceOf(ConnectError)
      // The pool's own arithmetic, not a latency: asserted exactly.
      expect(mostConnecting).toBeLessThanOrEqual(1)
      // After the server is back, the only failures are the fast ones before the first probe succeeds.
      expect(otherErrorsAfter.map((x) => x.value.error)).toEqual([])
      report(
        '15.2 down 5 s, 50 workers',
        server,
        {
          failedFast: fast.length,
          p50Us: Math.round(percentile(settle, 50) * 1000),
          p99Us: Math.round(p99 * 1000),
          maxMs: ms(Math.max(...settle)),
          queuedThenRejected: queued.length,
          queuedMaxMs: ms(Math.max(...queued.map((x) => x.value.ms))),
          mostConnectsInFlight: mostConnecting,
          connectErrors: pool.stats().connectErrors,
          recoveryMs: ms(recoveryMs),
          unavailableAfterUp: after.length - otherErrorsAfter.length,
          otherErrorsAfter: otherErrorsAfter.length,
        },
        {
          p99: { value: p99, target: 50, bound: 300 },
          recovery: { value: recoveryMs, target: 1_000, bound: 3_000 },
        },
      )
    } finally {
      await r.finish()
    }
  })

  it('refusing new connections while ours are open is not down: the open ones keep serving', async () => {
    const r = await rig(target)
    try {
      const pool = r.pool({ max: 6, failFastAfter: 300, acquireTimeout: 10_000, prePing: false })
      const warm = await Promise.all([pool.acquire(), pool.acquire()])
      for (const lease of warm) lease.release()
      await r.proxy.down(false) // new connections refused, live links kept
      const errors: unknown[] = []
      let served = 0
      const stopAt = performance.now() + 2_000
      await Promise.all(
        Array.from({ length: 20 }, async () => {
          while (performance.now() < stopAt) {
            try {
              await pool.use((c) => target.query(c, 'SELECT 1'))
              served++
            } catch (error) {
              errors.push(error)
            }
          }
        }),
      )
      await r.proxy.up()
      report('15.2 refusing, ours open', server, {
        served,
        errors: errors.length,
        connectErrors: pool.stats().connectErrors,
      })
      expect(errors).toEqual([])
      expect(served).toBeGreaterThan(20)
      expect(pool.stats().connectErrors).toBeGreaterThan(0)
    } finally {
      await r.finish()
    }
  })
}

describeOnServer(pgStatus, 'faults: fail fast on PostgreSQL', () =>
  scenarios(postgresFaultTarget(pgStatus)),
)
describeOnServer(myStatus, 'faults: fail fast on MariaDB', () =>
  scenarios(mysqlFaultTarget(myStatus)),
)

describe('faults: fail fast on SQLite', () => {
  it('a file that cannot be opened or is not a database: acquires reject at once, without a retry each', async () => {
    const notADb = join(tmpdir(), `lifeguard-not-a-db-${process.pid}.db`)
    writeFileSync(notADb, 'not a database, '.repeat(100))
    for (const [what, file] of [
      ['missing directory', join(tmpdir(), 'lifeguard-no-such-dir', 'x.db')],
      ['not a database', notADb],
    ] as const) {
      const { dialect, attempts } = counted(sqlite(file))
      const pool = createPool({ dialect, max: 4 })
      try {
        const first = await timed(pool.acquire())
        expect(first.error, what).toBeInstanceOf(ConnectError)
        const later = await Promise.all(Array.from({ length: 100 }, () => timed(pool.acquire())))
        expect(later.every((x) => x.error instanceof ConnectError)).toBe(true)
        expect(attempts.length).toBeLessThanOrEqual(2)
        report(`15.1 permanent: ${what}`, 'SQLite', {
          message: (first.error as Error).message.replace(/ \[LIFEGUARD_.*$/, ''),
          acquireMs: ms(first.ms),
          connects: attempts.length,
        })
      } finally {
        await pool.destroy()
      }
    }
  })
})
