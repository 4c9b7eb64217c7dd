import { rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type BetterSqlite3 from 'better-sqlite3'
import { expect, it } from 'vitest'
import { sqlite } from '../../src/dialects/sqlite.js'
import {
  AcquireTimeoutError,
  createPool,
  type Lease,
  LeaseReleasedError,
  type Pool,
  TooManyWaitersError,
} from '../../src/index.js'
import { sleep, waitFor } from '../conformance/targets.js'
import { describeOnServer, probe } from '../support/servers.js'
import {
  checkPoolInvariants,
  type FaultTarget,
  ms,
  mysqlFaultTarget,
  percentile,
  postgresFaultTarget,
  report,
  rig,
} from './fault-targets.js'

// Scenarios 8, 9 and 14: exhaustion and the wait queue, leaks, misuse. These are about the
// pool, not the network, so they also run on SQLite. Anchors: psycopg test_pool.py (timeout
// bounds, max_waiting), HikariCP leakDetectionThreshold, pg-pool's double release, node-mysql2
// test-pool-double-release (research note, rows 8, 9, 14).

const [pgStatus, myStatus] = await Promise.all([probe('postgres'), probe('mysql')])

/** A pool maker and a way to end the scenario with the usual checks. */
interface Bench<C> {
  label: string
  pool(options?: Record<string, unknown>): Pool<C>
  finish(): Promise<void>
}

function scenarios<C>(open: () => Promise<Bench<C>>): void {
  it('8. exhaustion: timeout in [T, T + 50 ms], FIFO, a full queue rejects at once, hand-off p99 ≤ 10 ms, total = idle + leased after 10k aborts', async () => {
    const b = await open()
    try {
      const pool = b.pool({ max: 3, maxWaiting: 20, acquireTimeout: 200 })
      const held = await Promise.all(Array.from({ length: 3 }, () => pool.acquire()))
      // Timeouts: 20 waiters, each must give up within [T, T + 50].
      const timeouts = await Promise.all(
        Array.from({ length: 20 }, async () => {
          const started = performance.now()
          const error = await pool.acquire().catch((e) => e)
          expect(error).toBeInstanceOf(AcquireTimeoutError)
          return performance.now() - started
        }),
      )
      // A full queue: the 21st waiter is refused before any timer could run.
      const queued = Array.from({ length: 20 }, () =>
        pool.acquire({ timeout: 5_000 }).then((lease) => lease),
      )
      const refusedAt = performance.now()
      const refused = await pool.acquire().catch((e) => e)
      const refusedMs = performance.now() - refusedAt
      expect(refused).toBeInstanceOf(TooManyWaitersError)
      // FIFO: release one at a time; waiters are served in the order they asked.
      const order: number[] = []
      queued.forEach((p, i) => {
        void p.then(() => order.push(i))
      })
      let lease = held[0]!
      for (let i = 0; i < 20; i++) {
        lease.release()
        lease = await queued[i]!
      }
      expect(order).toEqual(Array.from({ length: 20 }, (_, i) => i))
      lease.release()
      // Hand-off: one held, one waiting, release; time until the waiter has it.
      const handoffs: number[] = []
      for (let i = 0; i < 200; i++) {
        const next = pool.acquire()
        const releasedAt = performance.now()
        held[1]!.release()
        held[1] = await next
        handoffs.push(performance.now() - releasedAt)
      }
      // 10k aborted acquires, at random moments, while connections come and go.
      const churn = (async () => {
        for (let i = 0; i < 200; i++) {
          const l = await pool.acquire({ timeout: 5_000 }).catch(() => undefined)
          await sleep(Math.random() * 2)
          l?.release()
        }
      })()
      const aborts = Array.from({ length: 10_000 }, async (_, i) => {
        const controller = new AbortController()
        const p = pool.acquire({ signal: controller.signal, timeout: 5_000 })
        if (i % 3 === 0) controller.abort(new Error('caller gave up'))
        else setTimeout(() => controller.abort(new Error('caller gave up')), Math.random() * 20)
        const got = await p.catch(() => undefined)
        got?.release()
      })
      // maxWaiting is 20: most of these are refused at once, which is the point of the limit.
      await Promise.all(aborts)
      await churn
      held[1]!.release()
      held[2]!.release()
      // The last releases go through a reset (a round trip on the servers): wait for them.
      await waitFor(() => {
        const now = pool.stats()
        return now.leased + now.resetting + now.validating + now.closing + now.connecting === 0
      }, 5_000)
      const s = pool.stats()
      checkPoolInvariants(pool as never)
      // Never early: a correctness bound, asserted exactly.
      expect(Math.min(...timeouts)).toBeGreaterThanOrEqual(199)
      // The criterion's T + 50 ms, ≤ 5 ms and ≤ 10 ms are targets (recorded); the test fails only
      // past bounds a loaded CI machine meets. The refusal's bound stays below T: refused at once,
      // not at the timeout.
      report(
        '8 exhaustion',
        b.label,
        {
          timeoutMinMs: ms(Math.min(...timeouts)),
          timeoutMaxMs: ms(Math.max(...timeouts)),
          refusedMs: ms(refusedMs),
          handoffP50: ms(percentile(handoffs, 50)),
          handoffP99: ms(percentile(handoffs, 99)),
          aborted: s.aborted,
          rejected: s.rejected,
          after: `total=${s.total} idle=${s.idle} leased=${s.leased}`,
        },
        {
          timeoutMax: { value: Math.max(...timeouts), target: 250, bound: 1_200 },
          refused: { value: refusedMs, target: 5, bound: 150 },
          handoffP99: { value: percentile(handoffs, 99), target: 10, bound: 250 },
        },
      )
      expect(s.total).toBe(s.idle + s.leased)
      expect(s.leased).toBe(0)
      expect(s.waiting).toBe(0)
    } finally {
      await b.finish()
    }
  })

  it("9. leak: 'leak' fires ≤ threshold + 100 ms with the acquire stack; timeout errors give the counts", async () => {
    const b = await open()
    try {
      const pool = b.pool({ max: 1, leakDetectionThreshold: 300, acquireTimeout: 100 })
      const leaks: Array<{ at: number; stack: string; heldMs: number }> = []
      let acquiredAt = 0
      pool.on('leak', (e) => leaks.push({ at: performance.now() - acquiredAt, ...e }))
      const lease = await pool.acquire()
      acquiredAt = performance.now()
      const error = await pool.acquire().catch((e) => e)
      expect(error).toBeInstanceOf(AcquireTimeoutError)
      expect(error.message).toContain('total=1')
      expect(error.message).toContain('leased=1')
      expect(error.message).toContain('waiting=')
      await waitFor(() => leaks.length > 0, 3_000)
      // The threshold has passed: 'leak' fires once per lease, however long it stays out.
      await sleep(150)
      expect(leaks).toHaveLength(1)
      expect(leaks[0]!.at).toBeGreaterThanOrEqual(299)
      report(
        '9 leak',
        b.label,
        { leakAfterMs: ms(leaks[0]!.at), leaks: leaks.length },
        { leak: { value: leaks[0]!.at, target: 400, bound: 1_300 } },
      )
      expect(leaks[0]!.stack).toContain('exhaustion.test.ts')
      lease.release()
    } finally {
      await b.finish()
    }
  })

  it('14. misuse: double release, use after release, close() with leases out: a predictable error, counters unchanged', async () => {
    const b = await open()
    try {
      const pool = b.pool({ max: 2 })
      const lease: Lease<C> = await pool.acquire()
      lease.release()
      // MariaDB's ROLLBACK on release is a round trip: let the reset finish.
      await waitFor(() => pool.stats().idle === 1, 3_000)
      const before = JSON.stringify(pool.stats())
      expect(() => lease.release()).toThrow(LeaseReleasedError)
      expect(() => lease.destroy()).toThrow(LeaseReleasedError)
      expect(() => lease.connection).toThrow(LeaseReleasedError)
      expect(JSON.stringify(pool.stats())).toBe(before)
      // A lease from another pool cannot be given to this one: the API takes no lease argument,
      // and a lease always returns to the pool that made it.
      const other = b.pool({ max: 1 })
      const foreign = await other.acquire()
      foreign.release()
      await waitFor(() => other.stats().idle === 1, 3_000)
      expect(JSON.stringify(pool.stats())).toBe(before)
      // close() with a lease out: resolves at its timeout, the lease is revoked, and the
      // holder's late release() is a silent no-op.
      const out = await pool.acquire()
      const started = performance.now()
      await pool.close({ timeout: 200 })
      const closeMs = performance.now() - started
      expect(closeMs).toBeGreaterThanOrEqual(199)
      expect(() => out.connection).toThrow(LeaseReleasedError)
      expect(() => out.release()).not.toThrow()
      await expect(pool.acquire()).rejects.toMatchObject({ code: 'LIFEGUARD_CLOSED' })
      report(
        '14 misuse',
        b.label,
        { closeWithLeaseOutMs: ms(closeMs) },
        { closeWithLeaseOut: { value: closeMs, target: 250, bound: 1_200 } },
      )
    } finally {
      await b.finish()
    }
  })
}

function serverBench<C>(target: FaultTarget<C>): () => Promise<Bench<C>> {
  return async () => {
    const r = await rig(target)
    return {
      label: target.label,
      pool: (options) => r.pool(options),
      finish: () => r.finish(),
    }
  }
}

describeOnServer(pgStatus, 'faults: exhaustion and misuse on PostgreSQL', () =>
  scenarios(serverBench(postgresFaultTarget(pgStatus))),
)
describeOnServer(myStatus, 'faults: exhaustion and misuse on MariaDB', () =>
  scenarios(serverBench(mysqlFaultTarget(myStatus))),
)

describeOnServer({ ...pgStatus, up: true }, 'faults: exhaustion and misuse on SQLite', () => {
  let n = 0
  scenarios<BetterSqlite3.Database>(async () => {
    const file = join(tmpdir(), `lifeguard-faults-${process.pid}-${Date.now()}-${++n}.db`)
    const pools: Pool<BetterSqlite3.Database>[] = []
    return {
      label: 'SQLite',
      pool: (options) => {
        const pool = createPool({ ...options, dialect: sqlite(file) })
        pools.push(pool)
        return pool
      },
      finish: async () => {
        await Promise.all(pools.map((p) => p.close({ timeout: 1_000 })))
        for (const p of pools) expect(p.stats().total).toBe(0)
        for (const suffix of ['', '-wal', '-shm']) rmSync(file + suffix, { force: true })
      },
    }
  })

  it('14. SQLite lock: a second BEGIN IMMEDIATE fails with SQLITE_BUSY at busyTimeout ± 50 ms, no transaction left open', async () => {
    const file = join(tmpdir(), `lifeguard-faults-busy-${process.pid}-${Date.now()}.db`)
    const pool = createPool({ dialect: sqlite(file, { busyTimeout: 200 }), max: 2 })
    try {
      const a = await pool.acquire()
      const b = await pool.acquire()
      a.connection.exec('BEGIN IMMEDIATE')
      const started = performance.now()
      let code: string | undefined
      try {
        b.connection.exec('BEGIN IMMEDIATE')
      } catch (error) {
        code = (error as { code?: string }).code
      }
      const busyMs = performance.now() - started
      expect(code).toBe('SQLITE_BUSY')
      expect(busyMs).toBeGreaterThanOrEqual(190)
      a.release() // mid-transaction: the reset rolls it back
      b.release()
      const [c, d] = await Promise.all([pool.acquire(), pool.acquire()])
      expect(c!.connection.inTransaction).toBe(false)
      expect(d!.connection.inTransaction).toBe(false)
      c!.connection.exec('BEGIN IMMEDIATE') // the lock was given back
      c!.release()
      d!.release()
      // The busy wait runs in SQLite itself (synchronous): a late figure means a starved CPU.
      report(
        '14 SQLite busy',
        'SQLite',
        { busyMs: ms(busyMs) },
        { busy: { value: busyMs, target: 250, bound: 1_200 } },
      )
    } finally {
      await pool.close({ timeout: 1_000 })
      for (const suffix of ['', '-wal', '-shm']) rmSync(file + suffix, { force: true })
    }
  })
})
