import { expect, it } from 'vitest'
import { createPool } from '../../src/index.js'
import { sleep } from '../conformance/targets.js'
import { describeOnServer, probe } from '../support/servers.js'
import {
  checkPoolInvariants,
  type FaultTarget,
  mysqlFaultTarget,
  postgresFaultTarget,
  report,
  rig,
} from './fault-targets.js'

// The soak: 200 workers per server insert rows with unique ids in short transactions while
// random faults fire (backend kills, proxy resets, latency spikes, the server "down" for 2 s).
// An id counts as acknowledged only once its COMMIT resolved. At the end, every acknowledged id
// is in the table exactly once; an id whose transaction failed before COMMIT was sent is absent;
// one whose COMMIT failed is "commit outcome unknown" (the ack was lost) and may be either.
// No unique key on the table: a row written twice would show.

const SECONDS = Number(process.env.SOAK_SECONDS ?? 60)
const WORKERS = 200

const [pgStatus, myStatus] = await Promise.all([probe('postgres'), probe('mysql')])

type Fault = 'kill' | 'reset' | 'latency' | 'down'

async function soak<C>(target: FaultTarget<C>): Promise<void> {
  const r = await rig(target)
  const table = `soak_${r.tag}`.slice(0, 60)
  await r.admin.exec(`CREATE TABLE ${table} (id varchar(64) NOT NULL, worker int NOT NULL)`)
  const acked: string[] = []
  const failedBeforeCommit: string[] = []
  const unknown: string[] = []
  const fired: Record<Fault, number> = { kill: 0, reset: 0, latency: 0, down: 0 }
  const errorCodes = new Map<string, number>()
  try {
    const pool = r.pool({ max: 20, acquireTimeout: 1_000, connectTimeout: 1_000 })
    const deadline = performance.now() + SECONDS * 1000
    const workers = Array.from({ length: WORKERS }, async (_, w) => {
      let n = 0
      while (performance.now() < deadline) {
        const id = `w${w}-${n++}`
        let stage = 'acquire' as 'acquire' | 'begin' | 'insert' | 'commit'
        try {
          await pool.use(async (c) => {
            stage = 'begin'
            await target.query(c, 'BEGIN')
            stage = 'insert'
            await target.query(c, `INSERT INTO ${table} (id, worker) VALUES ('${id}', ${w})`)
            stage = 'commit'
            await target.query(c, 'COMMIT')
          })
          acked.push(id)
        } catch (error) {
          const e = error as { code?: string; name?: string }
          const key = `${stage}:${e.code ?? e.name}`
          errorCodes.set(key, (errorCodes.get(key) ?? 0) + 1)
          if (stage === 'commit') unknown.push(id)
          else failedBeforeCommit.push(id)
          await sleep(10)
        }
      }
    })
    const faults = (async () => {
      await sleep(1_000)
      while (performance.now() < deadline - 4_000) {
        const fault = (['kill', 'reset', 'latency', 'down'] as const)[
          Math.floor(Math.random() * 4)
        ]!
        fired[fault]++
        if (fault === 'kill') await r.admin.killAll(r.tag)
        else if (fault === 'reset') r.proxy.resetAll()
        else if (fault === 'latency') {
          r.proxy.setBoth({ latencyMs: 200, jitterMs: 50 })
          await sleep(1_000)
          r.proxy.setBoth({ latencyMs: 0, jitterMs: 0 })
        } else {
          await r.proxy.down()
          await sleep(2_000)
          await r.proxy.up()
        }
        await sleep(1_500 + Math.random() * 1_500)
      }
    })()
    await Promise.all([...workers, faults])
    await r.proxy.clear()
    checkPoolInvariants(pool as never)
    expect(pool.stats().leased).toBe(0)

    // Count the rows straight from the server, not through the proxy.
    const reader = createPool<C>({ dialect: target.dialect(target.serverPort, r.tag), max: 1 })
    const rows = await reader.use((c) =>
      target.query<{ id: string; n: number | string }>(
        c,
        `SELECT id, COUNT(*) AS n FROM ${table} GROUP BY id`,
      ),
    )
    await reader.close()
    const count = new Map(rows.map((row) => [row.id, Number(row.n)]))
    const attempted = new Set([...acked, ...failedBeforeCommit, ...unknown])
    const lostAcks = acked.filter((id) => count.get(id) !== 1)
    const doubled = rows.filter((row) => Number(row.n) > 1).map((row) => row.id)
    const phantom = failedBeforeCommit.filter((id) => count.has(id))
    const stray = rows.filter((row) => !attempted.has(row.id)).map((row) => row.id)
    const unknownPresent = unknown.filter((id) => count.has(id)).length
    const s = pool.stats()
    report('soak', target.label, {
      seconds: SECONDS,
      workers: WORKERS,
      attempted: attempted.size,
      acked: acked.length,
      commitsPerSecond: Math.round(acked.length / SECONDS),
      failedBeforeCommit: failedBeforeCommit.length,
      commitOutcomeUnknown: unknown.length,
      unknownThatCommitted: unknownPresent,
      lostAcks: lostAcks.length,
      doubled: doubled.length,
      phantom: phantom.length,
      faults: fired,
      errors: Object.fromEntries(errorCodes),
      created: s.created,
      connectErrors: s.connectErrors,
      timeouts: s.timeouts,
      invalidated: s.invalidated,
    })
    expect(lostAcks, 'acknowledged ids missing or doubled').toEqual([])
    expect(doubled, 'ids written twice').toEqual([])
    expect(phantom, 'ids present though their transaction failed before COMMIT').toEqual([])
    expect(stray, 'rows nobody attempted').toEqual([])
    expect(acked.length).toBeGreaterThan(0)
  } finally {
    await r.admin.exec(`DROP TABLE IF EXISTS ${table}`).catch(() => {})
    await r.finish()
  }
}

const targets = [
  pgStatus.up ? postgresFaultTarget(pgStatus) : undefined,
  myStatus.up ? mysqlFaultTarget(myStatus) : undefined,
].filter((t) => t !== undefined)

// A server that is down fails the suite in CI and is skipped loudly elsewhere.
for (const status of [pgStatus, myStatus]) {
  if (!status.up) describeOnServer(status, `faults: soak on ${status.label}`, () => {})
}

describeOnServer(
  pgStatus.up ? pgStatus : myStatus,
  `faults: soak (${SECONDS} s, ${WORKERS} workers per server, all servers at once)`,
  () => {
    it('nothing acknowledged is lost or doubled; failed commits are absent or "outcome unknown"; no live links, no leaked leases, no unhandled error', {
      timeout: (SECONDS + 90) * 1000,
    }, async () => {
      await Promise.all(targets.map((target) => soak(target as FaultTarget<unknown>)))
    })
  },
)
