import type pg from 'pg'
import { expect, it } from 'vitest'
import { lifeguardOf, Pool } from '../../src/compat/pg.js'
import { describeOnServer, probe } from '../support/servers.js'
import { PG_URL, unique } from './support.js'

// lifeguard/pg learns how long each statement text runs on its own and seals the connection of a
// text known to run long (acquire({ shared: 'last' })): nobody is pipelined behind it, so fast
// statements do not wait for it. On the real server, through the real driver: a burst of fast
// statements beside one slow statement, with the slow text learnt first, and without.

const status = await probe('postgres')

/** The slow text: its backend, and its own start and end on the server's clock (seconds). */
const SLOW =
  'SELECT pid, s, extract(epoch FROM clock_timestamp())::float8 AS e FROM (SELECT pg_backend_pid() AS pid, extract(epoch FROM clock_timestamp())::float8 AS s, pg_sleep(0.3), $1::int AS n OFFSET 0) AS t'
/** The fast text: its backend, and when it ran on the server's clock (seconds). */
const FAST =
  'SELECT pg_backend_pid() AS pid, extract(epoch FROM clock_timestamp())::float8 AS at, $1::int AS n'
const BURST = 200

type SlowRow = { pid: number; s: number; e: number }
type FastRow = { pid: number; at: number; n: number }

/** pg sets processID at runtime; its typings leave it out. */
function pid(client: unknown): number {
  return (client as { processID: number }).processID
}

function open(): Pool {
  return new Pool({
    connectionString: PG_URL,
    max: 2,
    maxPipeline: 50,
    application_name: unique('seal'),
  })
}

/** Two connections open, and the fast text run alone often enough to be known as fast. */
async function warm(pool: Pool): Promise<void> {
  await Promise.all([pool.query(FAST, [0]), pool.query(FAST, [0])])
  for (let i = 0; i < 10; i++) await pool.query(FAST, [i])
  expect(pool.totalCount).toBe(2)
}

/**
 * The slow text, then BURST fast statements at once. The pool's 'acquire' and 'release' events
 * are logged with each client's backend pid, in order; the number of statements pipelined is
 * sampled at each lend.
 */
async function burst(pool: Pool) {
  const log: Array<{ kind: 'acquire' | 'release'; pid: number }> = []
  let pipelined = 0
  const onAcquire = (client: pg.PoolClient) => {
    log.push({ kind: 'acquire', pid: pid(client) })
    pipelined = Math.max(pipelined, lifeguardOf(pool).stats().pipelined)
  }
  const onRelease = (_error: unknown, client: pg.PoolClient) => {
    log.push({ kind: 'release', pid: pid(client) })
  }
  pool.on('acquire', onAcquire)
  pool.on('release', onRelease)
  try {
    const slow = pool.query<SlowRow>(SLOW, [0])
    const fast = Array.from({ length: BURST }, (_, n) => pool.query<FastRow>(FAST, [n]))
    const slowRow = (await slow).rows[0]!
    const fastRows = (await Promise.all(fast)).map((r) => r.rows[0]!)
    // On the slow statement's backend: the lends that came before its first release (its own).
    const onSlow = log.filter((entry) => entry.pid === slowRow.pid)
    const firstRelease = onSlow.findIndex((entry) => entry.kind === 'release')
    const lentBeside = onSlow.slice(0, firstRelease).filter((e) => e.kind === 'acquire').length - 1
    return { slowRow, fastRows, log, onSlow, lentBeside, pipelined }
  } finally {
    pool.off('acquire', onAcquire)
    pool.off('release', onRelease)
  }
}

describeOnServer(status, 'lifeguard/pg: a statement known to run long seals its connection', () => {
  it('once the slow text is learnt, no fast statement is pipelined behind it, and the other connection still pipelines', async () => {
    const pool = open()
    try {
      await warm(pool)
      // Learnt alone: its own time is its pg_sleep (0.3 s), far above 10 ms.
      await pool.query(SLOW, [0])
      const { slowRow, fastRows, log, onSlow, lentBeside, pipelined } = await burst(pool)
      expect(fastRows.map((r) => r.n)).toEqual(Array.from({ length: BURST }, (_, n) => n))
      // The slow statement was lent first, and its backend lent to nobody else until it was back.
      expect(log[0]).toEqual({ kind: 'acquire', pid: slowRow.pid })
      expect(onSlow.slice(0, 2).map((e) => e.kind)).toEqual(['acquire', 'release'])
      expect(lentBeside).toBe(0)
      // (On the server no statement can run on its backend while it runs, sealed or not: what
      // the seal changes is who waits there for it, the lends above.) The other backend ran fast
      // statements meanwhile, pipelined.
      const beside = fastRows.filter(
        (r) => r.pid !== slowRow.pid && r.at >= slowRow.s && r.at <= slowRow.e,
      )
      expect(beside.length).toBeGreaterThan(0)
      expect(pipelined).toBeGreaterThan(0)
      console.log(
        `[seal] learnt: ${beside.length} of ${BURST} fast statements ran beside the slow one, none behind it; pipelined peak ${pipelined}`,
      )
    } finally {
      await pool.end()
    }
  })

  it('without learning (the slow text never seen), fast statements are pipelined behind it: what the test above rules out', async () => {
    const pool = open()
    try {
      await warm(pool)
      const { slowRow, fastRows, log, lentBeside, pipelined } = await burst(pool)
      expect(fastRows).toHaveLength(BURST)
      expect(log[0]).toEqual({ kind: 'acquire', pid: slowRow.pid })
      // Lent the slow statement's backend while it ran: they waited for it there.
      expect(lentBeside).toBeGreaterThan(0)
      const after = fastRows.filter((r) => r.pid === slowRow.pid && r.at >= slowRow.e)
      expect(after.length).toBeGreaterThanOrEqual(lentBeside)
      expect(pipelined).toBeGreaterThan(0)
      console.log(
        `[seal] not learnt: ${lentBeside} of ${BURST} fast statements were pipelined behind the slow one`,
      )
    } finally {
      await pool.end()
    }
  })
})

describeOnServer(status, 'lifeguard/pg: statement timings of statements that fail', () => {
  /** Sleeps 0.2 s on the server, then fails: '' is no integer. */
  const FAILS_LATE = 'SELECT (pg_sleep(0.2)::text || $1::text)::int AS n'

  it('regression: a statement that ran long and then failed was never learnt as slow, so fast statements kept being pipelined behind it', async () => {
    const pool = open()
    try {
      await warm(pool)
      await expect(pool.query(FAILS_LATE, [''])).rejects.toMatchObject({ code: '22P02' })
      const log: Array<{ kind: 'acquire' | 'release'; pid: number }> = []
      const onAcquire = (client: pg.PoolClient) => log.push({ kind: 'acquire', pid: pid(client) })
      const onRelease = (_error: unknown, client: pg.PoolClient) =>
        log.push({ kind: 'release', pid: pid(client) })
      pool.on('acquire', onAcquire)
      pool.on('release', onRelease)
      const failing = pool.query(FAILS_LATE, ['']).catch((error: unknown) => error)
      const fast = Array.from({ length: BURST }, (_, n) => pool.query<FastRow>(FAST, [n]))
      expect(await failing).toMatchObject({ code: '22P02' })
      await Promise.all(fast)
      pool.off('acquire', onAcquire)
      pool.off('release', onRelease)
      const first = log[0]!
      expect(first.kind).toBe('acquire')
      const onIt = log.filter((entry) => entry.pid === first.pid)
      expect(onIt.slice(0, 2).map((e) => e.kind)).toEqual(['acquire', 'release'])
    } finally {
      await pool.end()
    }
  })

  it('regression: the statement pipelined behind one that failed was charged the failed one’s time, and sealed its connection from then on', async () => {
    const pool = new Pool({
      connectionString: PG_URL,
      max: 1,
      maxPipeline: 50,
      application_name: unique('seal'),
    })
    // Never seen before this test: its first run sets its average.
    const fastText = `${FAST} -- ${unique('behind')}`
    try {
      await pool.query('SELECT 1')
      const failing = pool.query(FAILS_LATE, ['']).catch((error: unknown) => error)
      const behind = pool.query(fastText, [0])
      expect(await failing).toMatchObject({ code: '22P02' })
      await behind
      // A burst of the fast text: pipelined, unless it was taken for slow (each one would seal).
      let pipelined = 0
      const onAcquire = () => {
        pipelined = Math.max(pipelined, lifeguardOf(pool).stats().pipelined)
      }
      pool.on('acquire', onAcquire)
      await Promise.all(Array.from({ length: 20 }, (_, n) => pool.query(fastText, [n])))
      pool.off('acquire', onAcquire)
      expect(pipelined).toBeGreaterThan(0)
    } finally {
      await pool.end()
    }
  })
})
