import { randomBytes } from 'node:crypto'
import { createServer, type Server, type Socket } from 'node:net'
import { inspect } from 'node:util'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { mysql } from '../../src/dialects/mysql.js'
import { postgres } from '../../src/dialects/postgres.js'
import {
  AcquireTimeoutError,
  ConnectError,
  createPool,
  type Dialect,
  type Pool,
  type PoolOptions,
} from '../../src/index.js'
import { closedPort } from '../support/ports.js'
import { describeOnServer, probe } from '../support/servers.js'
import {
  type Admin,
  allAtOnce,
  bouncerFor,
  mysqlTarget,
  pgbouncerTarget,
  postgresTarget,
  recordEvents,
  sleep,
  sqliteTarget,
  type Target,
  trackProcessErrors,
  uniqueName,
  waitFor,
  withoutServerInspection,
} from './targets.js'

/**
 * `it` where the test applies to the target, and nothing otherwise: a test that cannot apply (an
 * idle cut-off the server lacks, a server limit hidden behind PgBouncer) is not registered, so a
 * CI run, where nothing may be skipped, reports no skipped test.
 */
function itWhere(applies: boolean): typeof it {
  return applies ? it : ((() => {}) as unknown as typeof it)
}

const [pgStatus, myStatus] = await Promise.all([probe('postgres'), probe('mysql')])

// A PgBouncer of this file's own in transaction mode, in front of the same PostgreSQL.
const bouncer = await bouncerFor(pgStatus)

const targets: Target<any>[] = [
  postgresTarget(pgStatus),
  pgbouncerTarget(bouncer.status, bouncer.bouncer),
  mysqlTarget(myStatus),
  sqliteTarget(),
]
afterAll(() => bouncer.bouncer?.stop())

function describeTarget(target: Target<any>, body: () => void): void {
  const name = target.title ?? `${target.name} dialect`
  if (target.status === undefined) describe(name, body)
  else describeOnServer(target.status, name, body)
}

/** Listens on a free port of 127.0.0.1. */
async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (typeof address !== 'object' || address === null) throw new Error('no address')
  return address.port
}

/** A dialect for `target`'s server with explicit credentials, from a config object or a URL. */
function dialectWith(
  target: Target<any>,
  form: 'config' | 'url',
  o: { user: string; password: string; port?: number; database?: string },
): Dialect<any> {
  const base = new URL(target.status!.url)
  const port = o.port ?? Number(base.port || (target.name === 'postgres' ? 5432 : 3306))
  const database = o.database ?? (decodeURIComponent(base.pathname.slice(1)) || 'test')
  if (form === 'url') {
    const url = `${target.name}://${encodeURIComponent(o.user)}:${encodeURIComponent(o.password)}@127.0.0.1:${port}/${database}`
    return target.name === 'postgres' ? postgres(url) : mysql(url)
  }
  const config = { host: '127.0.0.1', port, user: o.user, password: o.password, database }
  return target.name === 'postgres' ? postgres(config) : mysql(config)
}

for (const target of targets) {
  describeTarget(target, () => {
    const server = target.status !== undefined
    const table = uniqueName('t')
    let admin: Admin | undefined
    const pools: Pool<any>[] = []

    function pool<C>(options: PoolOptions<C>): Pool<C> {
      const p = createPool(options)
      pools.push(p)
      return p
    }

    beforeAll(async () => {
      admin = await target.admin?.()
      const dialect = target.dialect()
      const connection = await dialect.connect(AbortSignal.timeout(5_000))
      await target.createTable(connection, table)
      await dialect.close(connection)
    })

    afterEach(async () => {
      await Promise.all(pools.splice(0).map((p) => p.close({ timeout: 2_000 })))
    })

    afterAll(async () => {
      const dialect = target.dialect()
      const connection = await dialect.connect(AbortSignal.timeout(5_000))
      await target.dropTable(connection, table)
      await dialect.close(connection)
      await admin?.close()
      target.cleanup?.()
    })

    describe('the dialect contract', () => {
      it('connects, pings and closes; a closed connection fails its ping with a disconnect', async () => {
        const dialect = target.dialect()
        const connection = await dialect.connect(AbortSignal.timeout(5_000))
        await dialect.ping!(connection, AbortSignal.timeout(1_000))
        expect(await target.rows(connection, 'SELECT 1 AS one')).toEqual([{ one: 1 }])
        await dialect.close(connection)
        const error = await dialect.ping!(connection, AbortSignal.timeout(1_000)).then(
          () => undefined,
          (e: unknown) => e,
        )
        expect(error).toBeDefined()
        expect(dialect.isDisconnect!(error)).toBe(true)
        await dialect.close(connection) // twice: must not throw
      })

      it(`answers a 'rollback' reset of an idle connection ${target.syncIdleRollback ? 'synchronously with undefined' : 'with a ROLLBACK round trip'}`, async () => {
        const dialect = target.dialect()
        const connection = await dialect.connect(AbortSignal.timeout(5_000))
        try {
          // As the pool does on its first connection: MySQL learns there that no init_connect
          // can have turned autocommit off after the greeting (until then it rolls back once).
          await dialect.inspect?.(connection, AbortSignal.timeout(5_000))
          const result = dialect.reset!(connection, 'rollback')
          if (target.syncIdleRollback) expect(result).toBeUndefined()
          else {
            expect(result).toBeInstanceOf(Promise)
            await result
          }
          expect(await target.rows(connection, 'SELECT 2 AS two')).toEqual([{ two: 2 }])
        } finally {
          await dialect.close(connection)
        }
      })

      it('closes at once, without rejecting, when the signal has aborted', async () => {
        const dialect = target.dialect()
        const connection = await dialect.connect(AbortSignal.timeout(5_000))
        await dialect.close(connection, AbortSignal.abort(new Error('given up')))
        const error = await dialect.ping!(connection, AbortSignal.timeout(1_000)).then(
          () => undefined,
          (e: unknown) => e,
        )
        expect(dialect.isDisconnect!(error)).toBe(true)
        await dialect.close(connection, AbortSignal.abort()) // twice: must not reject
      })

      it('gets a signal in reset and close from the pool; a reset that misses validationTimeout is aborted and its connection discarded', async () => {
        const inner = target.dialect()
        const resetSignals: AbortSignal[] = []
        const closeSignals: Array<AbortSignal | undefined> = []
        const dialect: Dialect<any> = {
          name: inner.name,
          connect: (signal) => inner.connect(signal),
          close: (connection, signal) => {
            closeSignals.push(signal)
            return inner.close(connection, signal)
          },
          // A reset that never finishes by itself: it ends when the pool aborts it.
          reset: (_connection, _mode, signal) => {
            resetSignals.push(signal!)
            return new Promise<void>((_resolve, reject) => {
              signal!.addEventListener('abort', () => reject(signal!.reason), { once: true })
            })
          },
        }
        const p = pool({ dialect, max: 1, validationTimeout: 300, resetOnRelease: 'rollback' })
        const invalidated: unknown[] = []
        p.on('invalidate', (event) => invalidated.push(event.reason))
        await p.use(async () => {})
        await waitFor(() => invalidated.length === 1 && closeSignals.length === 1, 5_000)
        expect(invalidated).toEqual(['reset-failed'])
        expect(resetSignals).toHaveLength(1)
        expect(resetSignals[0]!.aborted).toBe(true)
        expect((resetSignals[0]!.reason as { code?: string }).code).toBe('LIFEGUARD_RESET_TIMEOUT')
        expect(closeSignals[0]).toBeInstanceOf(AbortSignal)
        // The pool is whole again: the next borrower gets a new connection.
        await p.use(async () => {})
      })

      it('reads the server version (and limits) with inspect', async () => {
        const dialect = target.dialect()
        const connection = await dialect.connect(AbortSignal.timeout(5_000))
        try {
          const info = await dialect.inspect!(connection, AbortSignal.timeout(1_000))
          expect(info.version).toMatch(/\d+\.\d+/)
          if (target.via === 'pgbouncer') {
            // The server's limits are not the pool's behind a pooler: its connections end there.
            expect(info.pooler).toEqual({ mode: 'transaction', evidence: expect.any(String) })
            expect(info.maxConnections).toBeUndefined()
            expect(info.idleCutoffMs).toBeUndefined()
          } else if (server) {
            expect(info.pooler).toBeUndefined()
            expect(info.maxConnections).toBe(await admin!.maxConnections())
            expect(info.idleCutoffSetting).toBe(target.idleCutoffSetting)
          } else {
            expect(info.maxConnections).toBeUndefined()
            expect(info.idleCutoffMs).toBeUndefined()
          }
        } finally {
          await dialect.close(connection)
        }
      })
    })

    it('stays within max + maxOverflow under 1000 concurrent use() calls', async () => {
      const tag = server ? await admin!.newTag() : undefined
      const p = pool({ dialect: target.dialect(tag), max: 5, maxOverflow: 5 })
      let peak = 0
      let samples = 0
      let running = true
      let sampler: Promise<void> = Promise.resolve()
      if (server) {
        // A separate connection samples the server's own count every ~10 ms.
        sampler = (async () => {
          while (running) {
            peak = Math.max(peak, await admin!.count(tag!))
            samples++
            await sleep(10)
          }
        })()
      } else {
        // better-sqlite3 is synchronous: a timer would never fire mid-run. Count the open
        // handles at every lend instead.
        p.on('acquire', () => {
          peak = Math.max(peak, p.stats().total)
          samples++
        })
      }
      const started = performance.now()
      const errors = await allAtOnce(1000, () =>
        p.use((connection) => target.exec(connection, target.shortQuery(2))),
      )
      running = false
      await sampler
      expect(errors).toEqual([])
      expect(samples).toBeGreaterThan(3)
      expect(peak).toBeGreaterThan(0)
      expect(peak).toBeLessThanOrEqual(10)
      expect(p.stats().created).toBeLessThanOrEqual(10 + p.stats().invalidated)
      expect(performance.now() - started).toBeLessThan(20_000)
    })

    describe('state does not leak to the next borrower', () => {
      for (const leak of target.leakCases(table)) {
        for (const mode of leak.modes) {
          it(`${leak.name}, after a '${mode}' reset`, async () => {
            const p = pool({ dialect: target.dialect(), max: 1, resetOnRelease: mode })
            const events = recordEvents(p)
            let a: unknown
            let b: unknown
            await p.use(async (connection) => {
              a = connection
              await leak.leave(connection)
            })
            let resetsBeforeB = 0
            await p.use(async (connection) => {
              b = connection
              resetsBeforeB = events.filter((e) => e.event === 'reset').length
              await leak.check(connection)
            })
            // The same physical connection, cleaned by one reset: not a fresh one.
            expect(b).toBe(a)
            expect(resetsBeforeB).toBe(1)
            expect(events.filter((e) => e.event === 'invalidate')).toEqual([])
          })
        }
      }
    })

    if (!server) return

    it('serves the next 1000 use() calls without an error after every pooled backend is killed', async () => {
      const tag = await admin!.newTag()
      const p = pool({ dialect: target.dialect(tag), max: 5 })
      const events = recordEvents(p)
      const tracked = trackProcessErrors()
      try {
        await allAtOnce(5, () => p.use((c) => sleep(50).then(() => target.exec(c, 'SELECT 1'))))
        await waitFor(() => p.stats().idle === 5) // MySQL's ROLLBACK reset is still in flight
        expect(await admin!.count(tag)).toBe(5)
        expect(await admin!.killAll(tag)).toBe(5)
        await waitFor(async () => (await admin!.count(tag)) === 0)
        const errors = await allAtOnce(1000, () =>
          p.use((connection) => target.exec(connection, 'SELECT 1')),
        )
        expect(errors).toEqual([])
        // The pool learned of the deaths from the driver, not from a caller's failure.
        const dropped = events.filter(
          (e) =>
            e.event === 'invalidate' &&
            ['disconnect', 'stale', 'ping'].includes((e.payload as { reason: string }).reason),
        )
        expect(dropped.length).toBeGreaterThanOrEqual(5)
      } finally {
        tracked.stop()
      }
      expect(tracked.errors).toEqual([])
    })

    // Behind PgBouncer the server's idle cut-off is not a session's to set.
    if (target.idleCutoffSql !== undefined)
      describe('when the server drops idle sessions after 1 s', () => {
        for (const variant of ['clamped by the pool', 'not clamped: the server drops them first']) {
          it(`serves 200 use() calls after 2 s idle (${variant})`, async () => {
            const tag = await admin!.newTag()
            const real = target.dialect(tag)
            const clamped = variant.startsWith('clamped')
            const p = pool({
              dialect: clamped ? real : withoutServerInspection(real),
              max: 5,
              onConnect: (c) => target.exec(c, target.idleCutoffSql!(1)),
            })
            const events = recordEvents(p)
            const tracked = trackProcessErrors()
            try {
              await allAtOnce(5, () =>
                p.use((c) => sleep(50).then(() => target.exec(c, 'SELECT 1'))),
              )
              await sleep(2_000) // deliberate: idle past the server's 1 s cut-off
              const errors = await allAtOnce(200, () =>
                p.use((connection) => target.exec(connection, 'SELECT 1')),
              )
              expect(errors).toEqual([])
              const reasons = events
                .filter((e) => e.event === 'invalidate')
                .map((e) => (e.payload as { reason: string }).reason)
              if (clamped) {
                // The idle timer closes them before the cut-off; with `min: 0` no connection idles
                // past its idleTimeout, so maxLifetime is left alone (src/core/idle-cutoff.ts).
                expect(p.options.idleTimeout).toBeLessThan(1_000)
                expect(p.options.maxLifetime).toBe(1_800_000)
              } else {
                // The server closed them; the driver said so; the pool dropped them while idle.
                expect(reasons).toContain('disconnect')
              }
            } finally {
              tracked.stop()
            }
            expect(tracked.errors).toEqual([])
          })
        }
      })

    describe('server limits', () => {
      itWhere(target.idleCutoffSql !== undefined)(
        `lowers maxLifetime below a session ${target.idleCutoffSetting} shorter than it when min keeps connections idle, with a 'clamp' event`,
        async () => {
          // `min: 1` keeps a connection idle past any idleTimeout: only maxLifetime closes it.
          const p = pool({
            dialect: target.dialect(),
            max: 1,
            min: 1,
            maxLifetime: 60_000,
            onConnect: (c) => target.exec(c, target.idleCutoffSql!(5)),
          })
          const events = recordEvents(p)
          await p.use((c) => target.exec(c, 'SELECT 1'))
          expect(p.server?.idleCutoffMs).toBe(5_000)
          expect(p.options.maxLifetime).toBeLessThan(5_000)
          expect(events.map((e) => e.payload)).toContainEqual({
            option: 'maxLifetime',
            from: 60_000,
            to: p.options.maxLifetime,
            setting: target.idleCutoffSetting,
            cutoffMs: 5_000,
          })
        },
      )

      itWhere(target.via === undefined)(
        "emits 'warning' when max + maxOverflow exceeds the server's real max_connections",
        async () => {
          const serverMax = await admin!.maxConnections()
          // One connection is opened; the pool only could open more than the server allows.
          const p = pool({ dialect: target.dialect(), max: 2, maxOverflow: serverMax })
          const events = recordEvents(p)
          await p.use((c) => target.exec(c, 'SELECT 1'))
          expect(p.server?.maxConnections).toBe(serverMax)
          const warnings = events.filter((e) => e.event === 'warning').map((e) => e.payload)
          expect(warnings).toEqual([
            expect.objectContaining({ code: 'LIFEGUARD_POOL_EXCEEDS_SERVER' }),
          ])
          expect(p.stats().total).toBe(1)
        },
      )

      it("emits no 'warning' for a pool the server can hold", async () => {
        const p = pool({ dialect: target.dialect(), max: 2, maxOverflow: 2 })
        const events = recordEvents(p)
        await p.use((c) => target.exec(c, 'SELECT 1'))
        if (target.via === undefined) expect(p.server?.maxConnections).toBeGreaterThan(4)
        expect(events.filter((e) => e.event === 'warning')).toEqual([])
      })
    })

    it("reports an idle connection's death through watch()", async () => {
      const tag = await admin!.newTag()
      const dialect = target.dialect(tag)
      const connection = await dialect.connect(AbortSignal.timeout(5_000))
      const deaths: unknown[] = []
      dialect.watch!(connection, (error) => deaths.push(error ?? 'end'))
      expect(await admin!.killAll(tag)).toBe(1)
      await waitFor(() => deaths.length > 0, 3_000)
      const error = deaths.find((d) => d !== 'end')
      if (error !== undefined) expect(dialect.isDisconnect!(error)).toBe(true)
      await dialect.close(connection) // dead: must not throw
    })

    describe('connect within the signal', () => {
      let blackhole: Server
      let port: number
      const accepted: Socket[] = []
      let closed = 0

      beforeAll(async () => {
        // Accepts, reads and never answers: the handshake can never finish. (Reading matters: a
        // paused socket never sees the client's FIN, so it would never report 'close'.)
        blackhole = createServer((socket) => {
          accepted.push(socket)
          socket.resume()
          socket.on('error', () => {})
          socket.on('close', () => closed++)
        })
        port = await listen(blackhole)
      })

      afterAll(async () => {
        for (const socket of accepted) socket.destroy()
        await new Promise((resolve) => blackhole.close(resolve))
      })

      it('gives up when the signal aborts and tears the half-open socket down', async () => {
        const before = accepted.length
        const dialect = dialectWith(target, 'config', { user: 'u', password: 'p', port })
        const started = performance.now()
        const error = await dialect.connect(AbortSignal.timeout(200)).then(
          () => undefined,
          (e: unknown) => e,
        )
        const elapsed = performance.now() - started
        expect(error).toMatchObject({ name: 'TimeoutError' })
        expect(elapsed).toBeGreaterThanOrEqual(190)
        // Without the signal it would hang (the listener never answers); the bound leaves a
        // loaded CI machine room.
        expect(elapsed).toBeLessThan(1_500)
        expect(accepted.length).toBe(before + 1)
        await waitFor(() => closed === accepted.length, 1_000)
      })

      it('leaves no socket open after connects time out at connectTimeout', async () => {
        const before = accepted.length
        const p = pool({
          dialect: dialectWith(target, 'url', { user: 'u', password: 'p', port }),
          max: 2,
          connectTimeout: 150,
        })
        const error = await p.acquire({ timeout: 600 }).then(
          () => undefined,
          (e: unknown) => e,
        )
        expect(error).toBeInstanceOf(AcquireTimeoutError)
        expect((error as Error).cause).toBeInstanceOf(ConnectError)
        expect(accepted.length).toBeGreaterThan(before)
        await p.close({ timeout: 1_000 })
        await waitFor(() => closed === accepted.length, 1_000)
        expect(p.stats().total).toBe(0)
      })
    })

    describe('secrets', () => {
      const CANARY = `Canary${randomBytes(12).toString('hex')}`

      function expectNoCanary(...values: unknown[]): void {
        for (const value of values) {
          const text =
            typeof value === 'string' ? value : inspect(value, { depth: Number.POSITIVE_INFINITY })
          expect(text).not.toContain(CANARY)
          // The error's own stack and message too, which inspect may abbreviate.
          if (value instanceof Error) {
            expect(String(value.stack)).not.toContain(CANARY)
            expect(String(value.message)).not.toContain(CANARY)
          }
        }
      }

      /** Creates a pool that cannot connect, collects everything it shows, and checks it. */
      async function failingPool(
        dialect: Dialect<any>,
        expected: RegExp,
        permanent = false,
      ): Promise<void> {
        const p = pool({ dialect, max: 1, connectTimeout: 2_000 })
        const events = recordEvents(p)
        const error = await p.acquire({ timeout: 700 }).then(
          () => undefined,
          (e: unknown) => e,
        )
        // A permanent error (authentication) rejects at once with the ConnectError itself
        // (failFast, issue 15); a transient one as the cause of the acquire's timeout.
        if (!permanent) expect(error).toBeInstanceOf(AcquireTimeoutError)
        const cause = (permanent ? error : (error as Error).cause) as Error
        expect(cause).toBeInstanceOf(ConnectError)
        expect(cause.message).toMatch(expected)
        expectNoCanary(error, cause, cause.cause, events, p, dialect)
        expectNoCanary(JSON.stringify(p.stats()), JSON.stringify(p), JSON.stringify(dialect))
      }

      for (const form of ['config', 'url'] as const) {
        it(`keeps a password given in the ${form} out of an authentication failure`, async () => {
          let user = 'lifeguard_no_such_role'
          let expected = /role "lifeguard_no_such_role" does not exist/
          // PgBouncer answers for a user it does not know (08P01) before PostgreSQL is asked.
          if (target.via === 'pgbouncer') expected = /authentication failed/
          if (target.name === 'mysql') {
            user = await admin!.newTag()
            await admin!.exec(`ALTER USER '${user}'@'%' IDENTIFIED BY 'not-the-canary'`)
            expected = /Access denied/
          }
          await failingPool(dialectWith(target, form, { user, password: CANARY }), expected, true)
        })

        it(`keeps a password given in the ${form} out of a refused connection`, async () => {
          const port = await closedPort()
          await failingPool(
            dialectWith(target, form, { user: 'u', password: CANARY, port }),
            /ECONNREFUSED/,
          )
        })
      }

      it('keeps a password out of the error for a malformed URL', async () => {
        const url = `${target.name}://u:${CANARY}@[not-a-host/db`
        await failingPool(target.name === 'postgres' ? postgres(url) : mysql(url), /Invalid URL/)
      })

      it('keeps a password out of createPool({ url }) errors and a working pool', async () => {
        const port = await closedPort()
        const p = createPool({ url: `${target.name}://u:${CANARY}@127.0.0.1:${port}/db`, max: 1 })
        pools.push(p)
        const error = await p.acquire({ timeout: 500 }).then(
          () => undefined,
          (e: unknown) => e,
        )
        expect(error).toBeInstanceOf(AcquireTimeoutError)
        expectNoCanary(error, p, JSON.stringify(p.stats()))
      })

      it('keeps a password out of a working pool and every event it emits, connections included', async () => {
        let user = 'postgres' // trust authentication: the password is sent to no one and ignored
        if (target.name === 'mysql') {
          user = await admin!.newTag()
          await admin!.exec(`ALTER USER '${user}'@'%' IDENTIFIED BY '${CANARY}'`)
        }
        const dialect = dialectWith(target, 'config', { user, password: CANARY })
        const p = pool({ dialect, max: 2, resetOnRelease: 'session' })
        const events = recordEvents(p)
        await allAtOnce(4, () => p.use((c) => target.exec(c, 'SELECT 1')))
        expect(events.filter((e) => e.event === 'connect').length).toBeGreaterThan(0)
        expectNoCanary(events, p, dialect, JSON.stringify(p.stats()), JSON.stringify(dialect))
        // Mid-query too: mysql2 copies its config into each running query's options.
        let running: unknown
        const busy = p.use(async (c) => {
          running = c
          await target.exec(c, target.shortQuery(300))
        })
        await waitFor(() => running !== undefined, 3_000)
        expectNoCanary(running, events)
        await busy
      })
    })
  })
}
