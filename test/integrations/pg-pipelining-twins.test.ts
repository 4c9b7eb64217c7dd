import pg from 'pg'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { lifeguardOf, Pool } from '../../src/compat/pg.js'
import { describeOnServer, probe } from '../support/servers.js'
import { PG_URL, unique } from './support.js'

// Twin tests: one body runs against pg's own pg.Pool and against the lifeguard/pg facade with
// pipelining on (its default maxPipeline), on a burst far larger than the pool, and what a pg user
// can observe must agree. On the facade the burst must really pipeline (stats().pipelined > 0).

const status = await probe('postgres')

/** The pool bound of every twin: a burst of BURST statements overflows it many times over. */
const MAX = 2
const BURST = 200

/** What a pg user sees of a query's result: everything but pg's internal parsers. */
function seen(result: pg.QueryResult): object {
  return {
    command: result.command,
    rowCount: result.rowCount,
    oid: result.oid,
    rows: result.rows,
    fields: result.fields.map((f) => ({ ...f })),
  }
}

/** What a pg user sees of an error: its class, code, message and position. */
function failure(error: unknown): object {
  const e = error as pg.DatabaseError
  return {
    kind: e?.constructor?.name,
    code: e.code,
    message: e.message,
    severity: e.severity,
    position: e.position,
  }
}

/** What a pool body reports, and how each twin counted events and clients. */
interface Twin<T> {
  result: T
  events: { acquire: number; release: number; connect: number; remove: number }
  counts: { total: number; idle: number; waiting: number }
}

/**
 * Runs `body` on a fresh pool of `max` clients of each kind, one after the other, and returns
 * both reports. On the facade, also returns the most statements pipelined at once, sampled
 * every millisecond while the body ran.
 */
async function twins<T>(
  body: (pool: pg.Pool) => Promise<T>,
  config: pg.PoolConfig = {},
): Promise<{ pg: Twin<T>; lifeguard: Twin<T>; pipelined: number }> {
  const run = async (pool: pg.Pool): Promise<Twin<T>> => {
    const events = { acquire: 0, release: 0, connect: 0, remove: 0 }
    for (const name of Object.keys(events) as Array<keyof typeof events>) {
      pool.on(name as 'acquire', () => events[name]++)
    }
    try {
      const result = await body(pool)
      // pg-pool releases a query's client after the caller's callback ran: let that happen. And
      // a client the facade opened for the burst may still be connecting after it: a burst on a
      // cold pool can be served whole, pipelined, by the first client while the second opens (up
      // to 2 s on a loaded machine, the same wait for both pools).
      await new Promise((resolve) => setImmediate(resolve))
      for (let i = 0; i < 400 && pool.idleCount < pool.totalCount; i++) {
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
      return {
        result,
        events,
        counts: { total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount },
      }
    } finally {
      await pool.end()
    }
  }
  const real = await run(new pg.Pool({ connectionString: PG_URL, max: MAX, ...config }))
  const facade = new Pool({ connectionString: PG_URL, max: MAX, ...config })
  const core = lifeguardOf(facade)
  let pipelined = 0
  const sampler = setInterval(() => {
    pipelined = Math.max(pipelined, core.stats().pipelined)
  }, 1)
  try {
    const ours = await run(facade)
    return { pg: real, lifeguard: ours, pipelined }
  } finally {
    clearInterval(sampler)
  }
}

/**
 * pg-pool emits `acquire` and `release` once per `pool.query()`: so must the facade, pipelined or
 * not. `connect` and `remove` differ by design where a statement fails: pg-pool destroys the client
 * of a failed query, the facade keeps it (a SQL error leaves the connection usable), so the facade
 * never opens more than its `max` clients here.
 */
function expectSameEvents(ours: Twin<unknown>, real: Twin<unknown>): void {
  expect(ours.events.acquire).toBe(real.events.acquire)
  expect(ours.events.release).toBe(real.events.release)
  expect(ours.events.acquire).toBe(ours.events.release)
  // The facade emits 'connect' when it first lends a client: one opened during a burst whose
  // statements all pipelined on the first may never be lent, and never announced.
  expect(ours.events.connect).toBeGreaterThanOrEqual(1)
  expect(ours.events.connect).toBeLessThanOrEqual(MAX)
  expect(ours.events.remove).toBe(ours.events.connect) // those closed by end()
  expect(real.events.connect).toBeGreaterThanOrEqual(MAX)
}

/**
 * `totalCount`, `idleCount` and `waitingCount` after a burst: equal, unless statements failed, after
 * which pg-pool has destroyed some clients (how many depends on timing) and the facade has not.
 */
function expectSameCounts(ours: Twin<unknown>, real: Twin<unknown>, failures: boolean): void {
  if (!failures) {
    expect(ours.counts).toEqual(real.counts)
    expect(real.counts).toEqual({ total: MAX, idle: MAX, waiting: 0 })
    return
  }
  expect(ours.counts).toEqual({ total: MAX, idle: MAX, waiting: 0 })
  expect(real.counts.waiting).toBe(0)
  expect(real.counts.idle).toBe(real.counts.total)
}

/** Settles every promise, as `{ ok }` or `{ error }` with what a user sees of each. */
function outcomes(all: Array<Promise<pg.QueryResult>>): Promise<object[]> {
  return Promise.all(
    all.map((p) =>
      p.then(
        (result) => ({ ok: seen(result) }),
        (error) => ({ error: failure(error) }),
      ),
    ),
  )
}

describeOnServer(status, 'lifeguard/pg with pipelining agrees with pg.Pool', () => {
  const table = unique('twin')
  let admin: pg.Client

  beforeAll(async () => {
    admin = new pg.Client(PG_URL)
    await admin.connect()
    await admin.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v text NOT NULL)`)
  })
  afterAll(async () => {
    await admin.query(`DROP TABLE IF EXISTS ${table}`)
    await admin.end()
  })

  it(`a burst of ${BURST} statements on a pool of ${MAX}: every result, and the failing ones alone, are the same`, async () => {
    const body = async (pool: pg.Pool) => {
      // Each statement of the burst touches a row of its own: the outcome does not depend on
      // which client runs which statement first.
      await pool.query(`TRUNCATE ${table}`)
      await pool.query(
        `INSERT INTO ${table} SELECT n, 'v' || n FROM generate_series(0, $1::int) AS g(n)`,
        [BURST - 1],
      )
      const all = Array.from({ length: BURST }, (_, i): Promise<pg.QueryResult> => {
        switch (i % 8) {
          case 0:
            return pool.query(`INSERT INTO ${table} VALUES ($1, $2) RETURNING id, v`, [
              BURST + i,
              `w${i}`,
            ])
          case 1:
            // Fails alone: the statements pipelined around it are unharmed.
            return pool.query('SELECT 1 / ($1::int - $1::int) AS boom', [i])
          case 2:
            return pool.query('SELEC syntax error')
          case 3:
            return pool.query(`UPDATE ${table} SET v = v || '!' WHERE id = $1`, [i])
          case 4:
            return pool.query(`DELETE FROM ${table} WHERE id = $1 RETURNING v`, [i])
          case 5:
            return pool.query(
              'SELECT $1::int AS i, $2::text AS t, $3::numeric AS n, now() IS NOT NULL AS b',
              [i, `t${i}`, i / 4],
            )
          case 6:
            return pool.query(`SELECT * FROM generate_series(1, $1::int) AS g(n)`, [i % 17])
          default:
            return pool.query(`INSERT INTO ${table} VALUES ($1, 'dup')`, [i]) // unique violation
        }
      })
      const results = await outcomes(all)
      const final = await pool.query(`SELECT id, v FROM ${table} ORDER BY id`)
      return { results, final: seen(final) }
    }
    const { pg: real, lifeguard: ours, pipelined } = await twins(body)
    expect(pipelined).toBeGreaterThan(0)
    expect(ours.result).toEqual(real.result)
    // Spot checks that the twins are not both empty or both wrong.
    const results = real.result.results as Array<{ ok?: { rows: unknown[] }; error?: object }>
    expect(results[5]).toMatchObject({ ok: { rows: [{ i: 5, t: 't5', n: '1.25', b: true }] } })
    expect(results[1]).toMatchObject({ error: { code: '22012', message: 'division by zero' } })
    expect(results[2]).toMatchObject({ error: { code: '42601' } })
    expect(results[7]).toMatchObject({ error: { code: '23505' } })
    expect(results.filter((r) => r.error !== undefined)).toHaveLength(3 * (BURST / 8))
    // pg-pool emits acquire and release once per query: so must the facade.
    expectSameEvents(ours, real)
    expect(real.events.acquire).toBe(BURST + 3)
    expect(real.events.release).toBe(BURST + 3)
    expectSameCounts(ours, real, true)
  })

  it('named statements, rowMode array and types, in a burst', async () => {
    const name = unique('named')
    const types = {
      getTypeParser: (oid: number) => (value: string) => (oid === 23 ? `int:${value}` : value),
    }
    const body = async (pool: pg.Pool) =>
      outcomes(
        Array.from({ length: BURST }, (_, i) => {
          switch (i % 4) {
            case 0:
              return pool.query({ name, text: 'SELECT $1::int * 2 AS d', values: [i] })
            case 1:
              return pool.query({
                text: 'SELECT $1::int AS a, $2::text AS b',
                values: [i, `b${i}`],
                rowMode: 'array',
              })
            case 2:
              return pool.query({ text: 'SELECT $1::int AS n', values: [i], types })
            default:
              // A second name, prepared on each client as it first runs it (pipelined there).
              return pool.query({ name: `${name}_b`, text: 'SELECT $1::text AS s', values: [i] })
          }
        }),
      )
    const { pg: real, lifeguard: ours, pipelined } = await twins(body)
    expect(pipelined).toBeGreaterThan(0)
    expect(ours.result).toEqual(real.result)
    const theirs = real.result as Array<{ ok?: { rows: unknown[] }; error?: unknown }>
    expect(theirs.filter((r) => r.error !== undefined)).toEqual([])
    expect(theirs[4]).toMatchObject({ ok: { rows: [{ d: 8 }] } })
    expect(theirs[5]).toMatchObject({ ok: { rows: [[5, 'b5']] } })
    expect(theirs[6]).toMatchObject({ ok: { rows: [{ n: 'int:6' }] } })
    expect(theirs[7]).toMatchObject({ ok: { rows: [{ s: '7' }] } })
    expectSameEvents(ours, real)
    expectSameCounts(ours, real, false)
  })

  it('callback-style pool.query in a burst', async () => {
    const body = async (pool: pg.Pool) =>
      Promise.all(
        Array.from(
          { length: BURST },
          (_, i) =>
            new Promise<object>((resolve) => {
              const done = (error: Error | undefined, result: pg.QueryResult) =>
                resolve(error ? { error: failure(error) } : { ok: seen(result) })
              if (i % 3 === 0) pool.query('SELECT $1::int AS i', [i], done)
              else if (i % 3 === 1) pool.query(`SELECT ${i} AS i`, done)
              else pool.query('SELECT nope', done)
            }),
        ),
      )
    const { pg: real, lifeguard: ours, pipelined } = await twins(body)
    expect(pipelined).toBeGreaterThan(0)
    expect(ours.result).toEqual(real.result)
    expect((real.result as object[])[3]).toMatchObject({ ok: { rows: [{ i: 3 }] } })
    expect((real.result as object[])[2]).toMatchObject({ error: { code: '42703' } })
    expectSameEvents(ours, real)
    expectSameCounts(ours, real, true)
  })

  it('statements that may not pipeline (SET, rows) in a burst behave as on pg.Pool', async () => {
    const body = async (pool: pg.Pool) => {
      const all: Array<Promise<pg.QueryResult>> = []
      for (let i = 0; i < BURST; i++) {
        if (i % 50 === 10) {
          // Session state set with pool.query: it stays on whichever client ran it, on both.
          all.push(pool.query("SET application_name = 'twin_set'"))
        } else if (i % 50 === 20) {
          // A portal read in pages: the whole result in the end, as with pg.Pool.
          all.push(
            pool.query({ text: 'SELECT * FROM generate_series(1, 7) AS g(n)', rows: 3 } as never),
          )
        } else {
          all.push(pool.query('SELECT $1::int AS i', [i]))
        }
      }
      const results = await outcomes(all)
      // Every client of the pool: the ones that ran the SET kept it, as pg's do.
      const clients = await Promise.all(Array.from({ length: MAX }, () => pool.connect()))
      const names = await Promise.all(
        clients.map(async (c) => (await c.query('SHOW application_name')).rows[0].application_name),
      )
      for (const c of clients) c.release()
      return { results, setSomewhere: names.includes('twin_set') }
    }
    const { pg: real, lifeguard: ours, pipelined } = await twins(body)
    expect(pipelined).toBeGreaterThan(0)
    expect(ours.result).toEqual(real.result)
    expect(real.result.setSomewhere).toBe(true)
    const rows = real.result.results as Array<{ ok: { command: string; rows: unknown[] } }>
    expect(rows[10]!.ok.command).toBe('SET')
    expect(rows[20]!.ok.rows).toHaveLength(7)
    expectSameEvents(ours, real)
    expectSameCounts(ours, real, false)
  })

  it('regression: pool.query(new pg.Query(…)) resolved at once with the Query itself, where pg.Pool resolves with its Result once it ran', async () => {
    const body = async (pool: pg.Pool) => {
      const streamed: unknown[] = []
      const all: Array<Promise<pg.QueryResult>> = []
      for (let i = 0; i < BURST; i++) {
        if (i % 20 === 7) {
          // A submittable: never pipelined; pg-pool hands it a callback and waits for it.
          const query = new pg.Query('SELECT $1::int AS q, g FROM generate_series(1, 3) AS g', [i])
          query.on('row', (row: unknown) => streamed.push(row))
          all.push(pool.query(query as never) as unknown as Promise<pg.QueryResult>)
        } else {
          all.push(pool.query('SELECT $1::int AS i', [i]))
        }
      }
      const results = await outcomes(all)
      return { results, streamed: streamed.length }
    }
    const { pg: real, lifeguard: ours, pipelined } = await twins(body)
    expect(pipelined).toBeGreaterThan(0)
    expect(real.result.streamed).toBe(3 * (BURST / 20))
    const theirs = real.result.results as Array<{ ok: { command: string; rows: unknown[] } }>
    expect(theirs[7]!.ok).toMatchObject({ command: 'SELECT', rowCount: 3 })
    expect(theirs[7]!.ok.rows).toEqual([
      { q: 7, g: 1 },
      { q: 7, g: 2 },
      { q: 7, g: 3 },
    ])
    expect(ours.result).toEqual(real.result)
    expectSameEvents(ours, real)
    expectSameCounts(ours, real, false)
  })
})
