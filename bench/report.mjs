import { rate, ratio, spread, times } from './stats.mjs'

/**
 * A markdown table.
 * @param {string[]} head
 * @param {string[][]} rows
 */
function table(head, rows) {
  return [
    `| ${head.join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
    ...rows.map((row) => `| ${row.join(' | ')} |`),
  ].join('\n')
}

/** @param {number} n */
const ms = (n) => (Number.isFinite(n) ? n.toFixed(1) : '–')
/** @param {number} n */
const bytes = (n) => (Number.isFinite(n) ? `${Math.round(n)}` : '–')

/**
 * The median of a summary, or undefined.
 * @param {any} s
 * @returns {number | undefined}
 */
const med = (s) => (s?.samples?.length > 0 ? s.median : undefined)

/**
 * Renders a run's results as markdown: the tables, with each contender ÷ the floor and lifeguard ÷
 * each peer, and the targets. The same text goes to stdout and into docs/performance.md.
 * @param {any} results
 * @returns {string}
 */
export function renderReport(results) {
  const parts = []
  const noio = results.noio
  if (noio !== undefined) {
    const names = Object.keys(noio.contenders)
    parts.push(
      `### No-I/O pool overhead: acquire/release cycles per second, pool of ${noio.poolSize}\n\nMedian (min–max) of ${noio.runs} runs of ${noio.windowMs} ms.\n`,
    )
    parts.push(
      table(
        [
          'contender',
          ...noio.callers.map((/** @type {number} */ n) => `${n.toLocaleString('en')} callers`),
        ],
        names.map((name) => {
          const c = noio.contenders[name]
          return [
            c.error === undefined ? name : `${name} (ERROR: ${c.error})`,
            ...noio.callers.map((/** @type {number} */ n) => spread(c.byCallers[n], rate)),
          ]
        }),
      ),
    )
    parts.push(
      '\nRatios of medians: each contender ÷ the minimal pool, and lifeguard ÷ each peer.\n',
    )
    const rows = []
    for (const name of names) {
      if (name === 'minimal') continue
      rows.push([
        `${name} ÷ minimal`,
        ...noio.callers.map((/** @type {number} */ n) =>
          times(
            ratio(
              med(noio.contenders[name].byCallers[n]),
              med(noio.contenders.minimal?.byCallers[n]),
            ),
          ),
        ),
      ])
    }
    for (const name of names) {
      if (name === 'minimal' || name === 'lifeguard') continue
      rows.push([
        `lifeguard ÷ ${name}`,
        ...noio.callers.map((/** @type {number} */ n) =>
          times(
            ratio(
              med(noio.contenders.lifeguard?.byCallers[n]),
              med(noio.contenders[name].byCallers[n]),
            ),
          ),
        ),
      ])
    }
    parts.push(
      table(
        ['ratio', ...noio.callers.map((/** @type {number} */ n) => `${n.toLocaleString('en')}`)],
        rows,
      ),
    )
  }
  for (const [server, label, peerNames] of /** @type {const} */ ([
    ['postgres', 'PostgreSQL', ['pg.Pool', 'postgres.js']],
    ['mysql', 'MariaDB', ['mysql2 pool', 'mariadb pool']],
  ])) {
    const db = results.db?.[server]
    if (db === undefined) continue
    parts.push(`\n### ${label}: \`SELECT 1\`, pool of 10\n`)
    if (db.skipped !== undefined) {
      parts.push(`Not measured: ${db.skipped}`)
      continue
    }
    parts.push(
      `Median (min–max) of ${db.runs} runs of ${db.windowMs} ms, each after a ${db.warmMs} ms warm-up on a freshly filled pool. Latency counts from the call to the result, the wait for a connection included.\n`,
    )
    const c = db.contenders
    const floor = med(c.floor?.qps)
    const sq = med(c.lifeguard?.qps)
    parts.push(
      table(
        [
          'contender',
          'callers',
          'queries/s',
          '÷ floor',
          'lifeguard ÷ it',
          'p50 ms',
          'p99 ms',
          'configuration',
        ],
        Object.entries(c).map(([name, r]) => [
          r.error === undefined ? name : `${name} (ERROR: ${r.error})`,
          String(r.callers),
          spread(r.qps, rate),
          times(ratio(med(r.qps), floor)),
          name === 'lifeguard' ? '' : times(ratio(sq, med(r.qps))),
          spread(r.p50Ms, ms),
          spread(r.p99Ms, ms),
          r.note,
        ]),
      ),
    )
    void peerNames
  }
  const memory = results.memory
  if (memory !== undefined) {
    parts.push(
      `\n### Memory: heap bytes of the pool's own bookkeeping\n\nMedian (min–max) of ${memory.runs} runs; per connection with ${memory.connections} idle connections open (the resource itself subtracted), per waiter with ${memory.waiters.toLocaleString('en')} callers waiting (the promise each caller holds included).\n`,
    )
    parts.push(
      table(
        ['contender', 'bytes per connection', 'bytes per waiter'],
        Object.entries(memory.contenders).map(([name, r]) => [
          r.error === undefined ? name : `${name} (ERROR: ${r.error})`,
          spread(r.bytesPerConnection, bytes),
          spread(r.bytesPerWaiter, bytes),
        ]),
      ),
    )
  }
  if (results.targets !== undefined) {
    parts.push('\n### Targets\n')
    parts.push(
      table(
        ['target', 'asks', 'measured', 'result'],
        results.targets.map((/** @type {any} */ t) => [
          t.id,
          t.asks,
          t.measured,
          t.pass === null ? 'not measured' : t.pass ? 'met' : '**missed**',
        ]),
      ),
    )
  }
  return `${parts.join('\n')}\n`
}
