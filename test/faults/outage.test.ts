import { expect, it } from 'vitest'
import { AcquireTimeoutError, ConnectError, createPool, type Pool } from '../../src/index.js'
import { sleep, waitFor } from '../conformance/targets.js'
import { describeOnServer, probe } from '../support/servers.js'
import { FaultProxy } from './fault-proxy.js'
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

// Scenarios 4–7: the server is unreachable, blackholed, or the link is broken or slow.
// Anchors: HikariCP TestConnectionTimeoutRetry and "Bad Behavior", psycopg test_pool.py
// (reconnect, backoff), pgcat's limit_data / latency toxics (research note, rows 4–7).

const [pgStatus, myStatus] = await Promise.all([probe('postgres'), probe('mysql')])

function scenarios<C>(target: FaultTarget<C>): void {
  const server = target.label

  it('4. server down at start: acquires fail at acquireTimeout ± 50 ms with the connect error as cause; first acquire after recovery ≤ 1 s', async () => {
    const r = await rig(target)
    try {
      await r.proxy.down()
      const pool = r.pool({ max: 5, acquireTimeout: 500 })
      const attempts = await Promise.all(Array.from({ length: 5 }, () => timed(pool.acquire())))
      const times = attempts.map((a) => ms(a.ms))
      for (const a of attempts) {
        expect(a.error).toBeInstanceOf(AcquireTimeoutError)
        const cause = (a.error as Error).cause
        expect(cause).toBeInstanceOf(ConnectError)
        expect(((cause as Error).cause as { code?: string }).code).toBe('ECONNREFUSED')
        expect(a.ms).toBeGreaterThanOrEqual(500 - 1)
      }
      const upAt = performance.now()
      await r.proxy.up()
      const first = await timed(pool.acquire({ timeout: 5_000 }))
      const recoveryMs = performance.now() - upAt
      ;(first.value as { release(): void }).release()
      // T + 50 ms and 1 s are the criterion's targets (recorded); the bounds hold on a loaded CI
      // machine and still fail a pool that hangs past its timeout or never reconnects.
      report(
        '4 down at start',
        server,
        {
          timeoutsMs: times,
          connectErrors: pool.stats().connectErrors,
          recoveryMs: ms(recoveryMs),
        },
        {
          timeoutMax: { value: Math.max(...attempts.map((a) => a.ms)), target: 550, bound: 1_500 },
          recovery: { value: recoveryMs, target: 1_000, bound: 4_000 },
        },
      )
    } finally {
      await r.finish()
    }
  })

  it('5. server down under load, then back: settles ≤ timeout + 50 ms, capped jittered backoff, p99 < 1 s after, back to min ≤ 2 s', async () => {
    const r = await rig(target)
    try {
      const pool = r.pool({ max: 8, min: 4, acquireTimeout: 500 })
      const retries: number[] = []
      pool.on('connectError', (e) => retries.push(e.retryInMs))
      const { runs } = await underOutage(
        r.proxy,
        { workers: 40, leadMs: 500, downMs: 2_000, afterMs: 1_500 },
        async () => {
          // The acquire is what must settle in time; the query after it is timed with it only
          // for the "after" percentile (a caller's view of recovery).
          const acquired = await timed(pool.acquire())
          if (acquired.value === undefined) return { settleMs: acquired.ms, ...acquired }
          const lease = acquired.value
          const query = await timed(target.query(lease.connection, 'SELECT 1'))
          if (query.error === undefined) lease.release()
          else lease.destroy(query.error)
          return { settleMs: acquired.ms, ms: acquired.ms + query.ms, error: query.error }
        },
        (result) => result.error !== undefined,
      )
      const settleDown = runs.filter((x) => x.phase === 'down').map((x) => x.value.settleMs)
      const after = runs.filter((x) => x.phase === 'after').map((x) => x.value)
      const acquireAfter = after.filter((x) => x.error === undefined).map((x) => x.ms)
      const errorsAfter = after.flatMap((x) => (x.error === undefined ? [] : [x.error]))
      // Back to `min` with no load: down again, up, and time the refill.
      await r.proxy.down()
      await sleep(1_000) // deliberate: the server stays down a while, the pool's links cut
      const up2 = performance.now()
      await r.proxy.up()
      while (pool.stats().idle < 4 && performance.now() - up2 < 5_000) await sleep(5)
      const backToMinMs = performance.now() - up2
      const maxSettle = Math.max(...settleDown)
      const p99After = percentile(acquireAfter, 99)
      expect(settleDown.length).toBeGreaterThan(0)
      // The backoff's cap is the pool's arithmetic, not a latency: asserted exactly.
      expect(Math.max(...retries)).toBeLessThanOrEqual(500)
      expect(new Set(retries).size).toBeGreaterThan(1) // jittered
      report(
        '5 down under load',
        server,
        {
          settledWhileDown: settleDown.length,
          maxSettleMs: ms(maxSettle),
          retryDelaysMs: `${Math.min(...retries)}–${Math.max(...retries)}`,
          distinctDelays: new Set(retries).size,
          p99AfterMs: ms(p99After),
          errorsAfter: errorsAfter.length,
          backToMinMs: ms(backToMinMs),
        },
        {
          maxSettle: { value: maxSettle, target: 550, bound: 1_500 },
          p99After: { value: p99After, target: 1_000, bound: 3_000 },
          // The refill is polled for 5 s at most.
          backToMin: { value: backToMinMs, target: 2_000, bound: 4_500 },
        },
      )
    } finally {
      await r.finish()
    }
  })

  it('6. blackhole: acquire ≤ timeout + 50 ms, handshake ≤ connectTimeout + 50 ms, close() ≤ its timeout, nothing half-open', async () => {
    const r = await rig(target)
    try {
      // New connections: accepted, never answered.
      await r.proxy.blackhole()
      const pool = r.pool({ max: 3, acquireTimeout: 500, connectTimeout: 300 })
      const handshakes: number[] = []
      const t0 = performance.now()
      pool.on('connectError', () => handshakes.push(performance.now() - t0))
      const a = await timed(pool.acquire())
      expect(a.error).toBeInstanceOf(AcquireTimeoutError)
      expect(handshakes.length).toBeGreaterThan(0)
      // The first connect started at t0: it must have given up at connectTimeout, never before.
      expect(handshakes[0]).toBeGreaterThanOrEqual(299)
      // Live links: a leased connection mid-query and an idle one, then the network goes silent.
      await r.proxy.clear()
      const second = r.pool({
        max: 2,
        acquireTimeout: 500,
        connectTimeout: 300,
        validationTimeout: 300,
        prePing: 0,
      })
      const [held, idle] = await Promise.all([second.acquire(), second.acquire()])
      idle!.release()
      // Its reset is a round trip: it must be back in the pool before the network goes silent.
      await waitFor(() => second.stats().idle === 1, 3_000)
      await r.proxy.blackhole()
      const hung = target.query(held!.connection, 'SELECT 1').catch((e) => e)
      // The idle one is pinged on checkout (prePing: 0): the ping hangs, times out, and the
      // replacement's handshake hangs too; the caller gets its timeout.
      const b = await timed(second.acquire())
      expect(b.error).toBeInstanceOf(AcquireTimeoutError)
      const c = await timed(second.close({ timeout: 300 }))
      void hung
      // No half-open connection: every link goes, though the server never says goodbye.
      const linksGone = await timed(r.proxy.waitForNoLinks(5_000))
      expect(linksGone.error).toBeUndefined()
      // T + 50 ms, connectTimeout + 50 ms and the close timeout + 50 ms are targets (recorded);
      // the bounds still fail a pool that waits on a silent network instead of its timers.
      report(
        '6 blackhole',
        server,
        {
          acquireMs: ms(a.ms),
          firstHandshakeGaveUpMs: ms(handshakes[0]!),
          acquireLiveMs: ms(b.ms),
          closeMs: ms(c.ms),
          linksGoneAfterCloseMs: ms(c.ms + linksGone.ms),
        },
        {
          acquire: { value: a.ms, target: 550, bound: 1_500 },
          handshake: { value: handshakes[0]!, target: 350, bound: 1_300 },
          acquireLive: { value: b.ms, target: 550, bound: 1_500 },
          close: { value: c.ms, target: 350, bound: 1_300 },
        },
      )
    } finally {
      await r.finish()
    }
  })

  it('7. broken handshakes: after 1000 failed connects total = 0 and 0 live links', async () => {
    const modes = [
      (p: FaultProxy) => p.set({ downstream: { closeAfterBytes: 1 } }),
      (p: FaultProxy) => p.set({ upstream: { closeAfterBytes: 1 } }),
      (p: FaultProxy) => p.set({ downstream: { resetAfterBytes: 1 } }),
      (p: FaultProxy) => p.setAccept('reset'),
    ]
    const proxies = await Promise.all(modes.map(() => FaultProxy.start(target.serverPort)))
    await Promise.all(proxies.map((p, i) => modes[i]!(p)))
    const admin = await target.admin()
    const tag = await admin.newTag()
    const pools: Pool<C>[] = []
    try {
      // 100 pools, 10 failures each: the backoff makes one pool take minutes for 1000.
      for (let i = 0; i < 100; i++) {
        pools.push(
          createPool<C>({
            dialect: target.dialect(proxies[i % 4]!.port, tag),
            max: 2,
            connectTimeout: 2_000,
          }),
        )
      }
      const waiting = pools.map((pool) =>
        pool.acquire({ timeout: 20_000 }).then(
          (lease) => lease.release(),
          () => undefined,
        ),
      )
      const started = performance.now()
      while (pools.some((p) => p.stats().connectErrors < 10)) {
        if (performance.now() - started > 20_000) break
        await sleep(50)
      }
      const failed = pools.reduce((n, p) => n + p.stats().connectErrors, 0)
      await Promise.all(pools.map((p) => p.close({ timeout: 2_000 })))
      const acceptedAtClose = proxies.reduce((n, p) => n + p.accepted, 0)
      await Promise.all(waiting)
      const totals = pools.map((p) => p.stats().total)
      // A connect aborted by close() may have had its TCP handshake completed by the kernel
      // already; the proxy then accepts it late, and the link closes at once. Let those land.
      await sleep(300)
      await Promise.all(proxies.map((p) => p.waitForNoLinks(3_000)))
      const sessionsLeft = await admin.count(tag)
      const acceptedAfterClose = proxies.reduce((n, p) => n + p.accepted, 0) - acceptedAtClose
      report('7 broken handshake', server, {
        acceptedAfterClose,
        failedConnects: failed,
        seconds: ms((performance.now() - started) / 1000),
        totalsAfter: Math.max(...totals),
        liveLinks: proxies.reduce((n, p) => n + p.liveLinks, 0),
        accepted: proxies.reduce((n, p) => n + p.accepted, 0),
        sessionsLeft,
      })
      expect(failed).toBeGreaterThanOrEqual(1000)
      expect(totals.every((t) => t === 0)).toBe(true)
      expect(proxies.every((p) => p.liveLinks === 0)).toBe(true)
    } finally {
      await Promise.all(pools.map((p) => p.destroy()))
      await Promise.all(proxies.map((p) => p.close()))
      await admin.close()
    }
  })

  it('7. slow link (1-byte slices, 200 ± 50 ms latency, 64 KB/s): 0 protocol errors, 0 healthy connections evicted', async () => {
    const r = await rig(target)
    try {
      r.proxy.setBoth({ slice: true, latencyMs: 200, jitterMs: 50, bytesPerSecond: 64 * 1024 })
      const pool = r.pool({ max: 3, acquireTimeout: 20_000, connectTimeout: 10_000 })
      const evicted: string[] = []
      pool.on('invalidate', (e) => evicted.push(e.reason))
      const errors: unknown[] = []
      const started = performance.now()
      await Promise.all(
        Array.from({ length: 3 }, async (_, w) => {
          for (let i = 0; i < 4; i++) {
            try {
              const rows = await pool.use((c) =>
                target.query<{ v: string }>(c, `SELECT REPEAT('x', ${200 + w * 10 + i}) AS v`),
              )
              expect(rows[0]!.v).toHaveLength(200 + w * 10 + i)
            } catch (error) {
              errors.push(error)
            }
          }
        }),
      )
      report('7 slow link', server, {
        queries: 12,
        protocolErrors: errors.length,
        evicted: evicted.length,
        seconds: ms((performance.now() - started) / 1000),
      })
      expect(errors).toEqual([])
      expect(evicted).toEqual([])
    } finally {
      await r.finish()
    }
  })
}

describeOnServer(pgStatus, 'faults: outages on PostgreSQL', () =>
  scenarios(postgresFaultTarget(pgStatus)),
)
describeOnServer(myStatus, 'faults: outages on MariaDB', () =>
  scenarios(mysqlFaultTarget(myStatus)),
)
