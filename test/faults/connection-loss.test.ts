import { expect, it } from 'vitest'
import type { Lease, Pool } from '../../src/index.js'
import { sleep, waitFor, withoutServerInspection } from '../conformance/targets.js'
import { describeOnServer, probe } from '../support/servers.js'
import {
  type FaultTarget,
  firstErrors,
  ms,
  mysqlFaultTarget,
  percentile,
  postgresFaultTarget,
  type Rig,
  report,
  rig,
} from './fault-targets.js'

// Scenarios 1–3: the server drops the pool's sessions (killed while idle, killed or cut while
// in use, closed by the server's idle timeout). Anchors: SQLAlchemy test_reconnect.py,
// PgBouncer test_misc.py, node-mysql2 test-pool-disconnect (research note, rows 1–3).

const [pgStatus, myStatus] = await Promise.all([probe('postgres'), probe('mysql')])

/** Runs `total` acquire + `SELECT 1` + release with `concurrency` callers; returns acquire times and errors. */
async function acquireLoop<C>(
  target: FaultTarget<C>,
  pool: { acquire(): Promise<Lease<C>> },
  total: number,
  concurrency: number,
): Promise<{ waits: number[]; errors: unknown[] }> {
  const waits: number[] = []
  const errors: unknown[] = []
  let next = 0
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < total) {
        const started = performance.now()
        let lease: Lease<C> | undefined
        try {
          lease = await pool.acquire()
          waits.push(performance.now() - started)
          await target.query(lease.connection, 'SELECT 1 AS one')
          lease.release()
        } catch (error) {
          errors.push(error)
          if (lease?.active) lease.destroy(error)
        }
      }
    }),
  )
  return { waits, errors }
}

/** Warms 10 connections, leaves them idle `idleMs`, kills them all, then runs 1000 acquires. */
async function killIdleThenAcquire<C>(
  r: Rig<C>,
  pool: Pool<C>,
  idleMs: number,
  settle: boolean,
): Promise<{ waits: number[]; errors: unknown[]; figures: Record<string, unknown> }> {
  const leases = await Promise.all(Array.from({ length: 10 }, () => pool.acquire()))
  for (const lease of leases) lease.release()
  // Their resets are round trips: the idle time counts from when all are back.
  await waitFor(() => pool.stats().idle === 10, 3_000)
  await sleep(idleMs) // deliberate: the connections sit idle this long before the kill
  const killed = await r.admin.killAll(r.tag)
  expect(killed).toBe(10)
  // With `settle`, wait until the server has ended them: the kill happened, not a race.
  if (settle) await waitFor(async () => (await r.admin.count(r.tag)) === 0, 5_000)
  const started = performance.now()
  const { waits, errors } = await acquireLoop(r.target, pool, 1000, 10)
  const elapsed = performance.now() - started
  return {
    waits,
    errors,
    figures: {
      killed,
      acquires: waits.length,
      callerErrors: errors.length,
      p50: ms(percentile(waits, 50)),
      p99: ms(percentile(waits, 99)),
      max: ms(Math.max(...waits)),
      runMs: ms(elapsed),
      invalidated: pool.stats().invalidated,
      firstErrors: firstErrors(errors),
    },
  }
}

function scenarios<C>(target: FaultTarget<C>): void {
  const server = target.label

  // Variants: `idleMs` is how long the connections sat idle before the kill; `prePing` the
  // pool's setting; `settle` whether the test waits for the server to report them gone.
  const variants = [
    { label: 'idle past the prePing threshold', idleMs: 700, prePing: true, settle: true },
    { label: 'prePing: 0, acquires right after the kill', idleMs: 100, prePing: 0, settle: false },
  ] as const
  for (const v of variants) {
    it(`1. all idle backends killed (${v.label}): the next 1000 acquires see no error, p99 < 100 ms`, async () => {
      const r = await rig(target)
      try {
        const pool = r.pool({ max: 10, prePing: v.prePing })
        const result = await killIdleThenAcquire(r, pool, v.idleMs, v.settle)
        expect(result.errors).toEqual([])
        expect(result.waits).toHaveLength(1000)
        // p99 < 100 ms is the criterion's target (recorded); the bound fails only a pool that
        // makes callers wait on dead connections (a connect or ping timeout is seconds).
        report(`1 idle killed (${v.label})`, server, result.figures, {
          p99: { value: percentile(result.waits, 99), target: 100, bound: 1_000 },
        })
      } finally {
        await r.finish()
      }
    })
  }

  // Found by scenario 1: a connection used less than `prePing` ms (default 500) ago is lent
  // without a ping. When its backend was killed and the kill notice is still on its way (here
  // held 50 ms by the proxy: PostgreSQL's 57P01 message, MariaDB's bare FIN), the driver has not
  // yet seen it, and the borrower's first query fails. No client-side check can see a notice
  // that has not arrived: only a ping can, which is what `prePing: 0` buys (HikariCP has the same
  // 500 ms window). The default's window is documented in docs/pool.md and docs/reliability.md
  // (10 of 10 first borrowers fail, on both servers); this test proves the remedy.
  const prePing = 0
  it(`1. idle backends killed within the prePing window, kill notice in flight: no caller error (prePing ${prePing})`, async () => {
    const r = await rig(target)
    try {
      const pool = r.pool({ max: 10, prePing })
      const leases = await Promise.all(Array.from({ length: 10 }, () => pool.acquire()))
      for (const lease of leases) lease.release()
      await waitFor(() => pool.stats().idle === 10, 3_000)
      r.proxy.set({ downstream: { latencyMs: 50 } })
      await r.admin.killAll(r.tag)
      await waitFor(async () => (await r.admin.count(r.tag)) === 0, 5_000)
      const { waits, errors } = await acquireLoop(target, pool, 1000, 10)
      report(`1 idle killed (prePing ${prePing}, kill notice 50 ms in flight)`, server, {
        acquires: waits.length,
        callerErrors: errors.length,
        firstErrors: firstErrors(errors),
      })
      expect(errors).toEqual([])
    } finally {
      await r.finish()
    }
  })

  it('2. killed during a running query or transaction: one typed error per caller, no retry, serving again ≤ 1 s', async () => {
    const r = await rig(target)
    const table = `faults_s2_${r.tag}`.slice(0, 60)
    await r.admin.exec(`CREATE TABLE ${table} (id int)`)
    try {
      const pool = r.pool({ max: 6 })
      const dialect = target.dialect(r.proxy.port, r.tag)
      for (const how of ['kill', 'proxy-cut'] as const) {
        const outcomes: Array<{ errors: unknown[]; typed: boolean }> = []
        let sleeping = 0
        const callers = Array.from({ length: 6 }, async (_, i) => {
          const errors: unknown[] = []
          try {
            await pool.use(async (c) => {
              if (i % 2 === 0) {
                await target.query(c, 'BEGIN')
                await target.query(c, `INSERT INTO ${table} VALUES (${i})`)
              }
              const query = target.query(c, target.sleepSql(2_000))
              sleeping++
              await query
              if (i % 2 === 0) await target.query(c, 'COMMIT')
            })
          } catch (error) {
            errors.push(error)
          }
          outcomes.push({ errors, typed: errors.every((e) => dialect.isDisconnect!(e)) })
        })
        // Every caller has sent its 2 s statement (half of them inside a transaction).
        await waitFor(() => sleeping === 6, 5_000)
        const downAt = performance.now()
        if (how === 'kill') await r.admin.killAll(r.tag)
        else await r.proxy.down()
        await Promise.all(callers)
        const settledMs = performance.now() - downAt
        if (how === 'proxy-cut') {
          await sleep(500) // deliberate: the server stays "down" a while
        }
        const upAt = performance.now()
        if (how === 'proxy-cut') await r.proxy.up()
        await pool.use((c) => target.query(c, 'SELECT 1'))
        const recoveryMs = performance.now() - upAt
        // Nothing was retried or committed behind the callers' backs.
        const rows = await pool.use((c) =>
          target.query<{ n: number | string }>(c, `SELECT COUNT(*) AS n FROM ${table}`),
        )
        expect(outcomes.map((o) => o.errors.length)).toEqual([1, 1, 1, 1, 1, 1])
        expect(outcomes.every((o) => o.typed)).toBe(true)
        expect(Number(rows[0]!.n)).toBe(0)
        // Serving ≤ 1 s is the target (recorded); the bound fails a pool that does not recover.
        report(
          `2 in-flight ${how}`,
          server,
          {
            callers: outcomes.length,
            errorsPerCaller: outcomes.map((o) => o.errors.length),
            allTypedDisconnect: outcomes.every((o) => o.typed),
            settledMs: ms(settledMs),
            recoveryMs: ms(recoveryMs),
            committedRows: Number(rows[0]!.n),
          },
          { recovery: { value: recoveryMs, target: 1_000, bound: 4_000 } },
        )
      }
    } finally {
      await r.admin.exec(`DROP TABLE IF EXISTS ${table}`)
      await r.finish()
    }
  })

  for (const inspect of [true, false]) {
    it(`3. server idle timeout (${inspect ? 'pool reads it' : 'pool does not know it'}): after idling past it, 1000 acquires, 0 errors, no listener`, async () => {
      const r = await rig(target)
      try {
        const base = target.dialect(r.proxy.port, r.tag)
        const pool = r.pool({
          max: 5,
          onConnect: async (c: C) => {
            await target.query(c, target.idleCutoffSql(1))
          },
        })
        // The rig's pool uses the plain dialect; for "does not know", a second pool without inspect.
        const subject = inspect
          ? pool
          : (await import('../../src/index.js')).createPool<C>({
              dialect: withoutServerInspection(base),
              max: 5,
              onConnect: async (c: C) => {
                await target.query(c, target.idleCutoffSql(1))
              },
            })
        try {
          const leases = await Promise.all(Array.from({ length: 5 }, () => subject.acquire()))
          for (const lease of leases) lease.release()
          await sleep(1_600) // deliberate: idle past the server's 1 s cut-off
          const { waits, errors } = await acquireLoop(target, subject, 1000, 5)
          const s = subject.stats()
          report(`3 idle timeout (${inspect ? 'clamped' : 'unknown to pool'})`, server, {
            callerErrors: errors.length,
            p99: ms(percentile(waits, 99)),
            maxLifetime: subject.options.maxLifetime,
            invalidated: s.invalidated,
            created: s.created,
          })
          expect(errors).toEqual([])
        } finally {
          if (subject !== pool) await subject.close({ timeout: 2_000 })
        }
      } finally {
        await r.finish()
      }
    })
  }
}

describeOnServer(pgStatus, 'faults: connection loss on PostgreSQL', () =>
  scenarios(postgresFaultTarget(pgStatus)),
)
describeOnServer(myStatus, 'faults: connection loss on MariaDB', () =>
  scenarios(mysqlFaultTarget(myStatus)),
)
