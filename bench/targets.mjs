import { ratio } from './stats.mjs'

/**
 * One target of issue 8, evaluated on one run's medians.
 * @typedef {{ id: string, asks: string, measured: string, pass: boolean | null }} TargetResult
 */

/**
 * The median of a result, or undefined.
 * @param {any} summary
 * @returns {number | undefined}
 */
function med(summary) {
  return summary?.samples?.length > 0 ? summary.median : undefined
}

/**
 * Evaluates T1–T5 on a run's results. A target whose inputs were not measured (excluded by
 * `--only`, or a server was unreachable) has `pass: null`.
 * @param {any} results
 * @returns {TargetResult[]}
 */
export function evaluateTargets(results) {
  /** @type {TargetResult[]} */
  const out = []
  const noio = results.noio?.contenders
  const cps = (/** @type {string} */ name, /** @type {number} */ n) =>
    med(noio?.[name]?.byCallers?.[n])
  {
    const s = cps('lifeguard', 1000)
    const checks = [
      ['minimal', 0.5],
      ['generic-pool', 3],
      ['tarn', 10],
      ['pg-pool', 10],
    ].map(([peer, least]) => ({
      peer,
      least,
      r: ratio(s, cps(/** @type {string} */ (peer), 1000)),
    }))
    const known = checks.every((c) => Number.isFinite(c.r))
    out.push({
      id: 'T1',
      asks: 'no-I/O at 1000 callers: ≥ 0.5× minimal, ≥ 3× generic-pool, ≥ 10× tarn and pg-pool',
      measured: checks.map((c) => `${c.r.toFixed(2)}× ${c.peer}`).join(', '),
      pass: known
        ? checks.every((c) => /** @type {number} */ (c.r) >= /** @type {number} */ (c.least))
        : null,
    })
  }
  {
    const r = ratio(cps('lifeguard', 10000), cps('lifeguard', 10))
    out.push({
      id: 'T2',
      asks: 'no-I/O at 10,000 callers ≥ 0.8× its own rate at 10 callers',
      measured: `${r.toFixed(2)}×`,
      pass: Number.isFinite(r) ? r >= 0.8 : null,
    })
  }
  {
    const pgc = results.db?.postgres?.contenders
    const s = pgc?.lifeguard
    const floor = ratio(med(s?.qps), med(pgc?.floor?.qps))
    const pool = ratio(med(s?.qps), med(pgc?.['pg.Pool']?.qps))
    const p99 = med(s?.p99Ms)
    const p99Peer = med(pgc?.['pg.Pool']?.p99Ms)
    const known =
      Number.isFinite(floor) && Number.isFinite(pool) && p99 !== undefined && p99Peer !== undefined
    out.push({
      id: 'T3',
      asks: 'pg, 1000 callers: ≥ 0.97× the raw 10-lane floor, ≥ 1.0× pg.Pool, p99 ≤ pg.Pool’s',
      measured: known
        ? `${floor.toFixed(2)}× floor, ${pool.toFixed(2)}× pg.Pool, p99 ${p99.toFixed(1)} ms vs ${p99Peer.toFixed(1)} ms`
        : 'not measured',
      pass: known ? floor >= 0.97 && pool >= 1.0 && p99 <= p99Peer : null,
    })
  }
  {
    const my = results.db?.mysql?.contenders
    const s = my?.lifeguard
    const floor = ratio(med(s?.qps), med(my?.floor?.qps))
    const pool = ratio(med(s?.qps), med(my?.['mysql2 pool']?.qps))
    const known = Number.isFinite(floor) && Number.isFinite(pool)
    out.push({
      id: 'T4',
      asks: 'mysql2, 1000 callers: ≥ 0.95× the raw 10-lane floor, ≥ 1.05× mysql2’s pool',
      measured: known
        ? `${floor.toFixed(2)}× floor, ${pool.toFixed(2)}× mysql2 pool`
        : 'not measured',
      pass: known ? floor >= 0.95 && pool >= 1.05 : null,
    })
  }
  {
    const m = results.memory?.contenders?.lifeguard
    const conn = med(m?.bytesPerConnection)
    const waiter = med(m?.bytesPerWaiter)
    const known = conn !== undefined && waiter !== undefined
    out.push({
      id: 'T5',
      asks: '≤ 1 KB bookkeeping per connection, ≤ 300 B per waiter',
      measured: known
        ? `${Math.round(conn)} B per connection, ${Math.round(waiter)} B per waiter`
        : 'not measured',
      pass: known ? conn <= 1024 && waiter <= 300 : null,
    })
  }
  return out
}
