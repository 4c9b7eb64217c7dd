import pg from 'pg'
import { afterAll, afterEach, beforeAll, beforeEach, expect, it } from 'vitest'
import { lifeguardOf } from '../../src/compat/lifeguard-of.js'
import { Pool as PgPool } from '../../src/compat/pg.js'
import { PipelineAbortedError } from '../../src/index.js'
import { sleep, trackProcessErrors, uniqueName, waitFor } from '../conformance/targets.js'
import { describeOnServer, probe } from '../support/servers.js'
import { checkPoolInvariants } from './fault-targets.js'

// Issue 19: faults while lifeguard/pg pipelines `pool.query()` statements on shared connections.
// A small pool and more statements than connections make every connection carry a full pipeline;
// then backends are killed, statements time out (client and server side), and a deep burst mixes
// in errors. What must hold: every statement settles exactly once, with its own result or its own
// error (the head of a lost pipeline the driver's, those behind it PipelineAbortedError); nothing
// is retried (each statement inserts its own id, found at most once); the pool serves again.

const pgStatus = await probe('postgres')

/** One statement's outcome, from pg's callback form of `pool.query`, which would show a second call. */
interface Outcome {
  id: number
  calls: number
  rows?: Array<Record<string, unknown>>
  error?: unknown
}

/** A statement of a burst: pg's text or query config, and its values. */
type Statement = readonly [text: string | pg.QueryConfig, values?: readonly unknown[]]

/** Every statement of a burst, and a promise that resolves once all have settled at least once. */
interface Burst {
  outcomes: Outcome[]
  settled: Promise<void>
}

/** Sends each `[text, values]` with `pool.query(text, values, callback)`, counting the callback's calls. */
function burst(pool: PgPool, statements: readonly Statement[]): Burst {
  const outcomes: Outcome[] = []
  const done: Promise<void>[] = []
  statements.forEach(([text, values], id) => {
    const outcome: Outcome = { id, calls: 0 }
    outcomes.push(outcome)
    done.push(
      new Promise<void>((resolve) => {
        const callback = (error: Error | undefined, result: pg.QueryResult | undefined) => {
          outcome.calls++
          if (outcome.calls > 1) return
          if (error) outcome.error = error
          else outcome.rows = result!.rows
          resolve()
        }
        if (values === undefined) (pool.query as (...a: unknown[]) => void)(text, callback)
        else (pool.query as (...a: unknown[]) => void)(text, values, callback)
      }),
    )
  })
  return { outcomes, settled: Promise.all(done).then(() => undefined) }
}

/** Asserts that the pool's counts add up and nothing is still lent or waiting. */
function checkQuiet(pool: PgPool): void {
  const core = lifeguardOf(pool)
  checkPoolInvariants(core)
  const s = core.stats()
  expect(s.acquired).toBe(s.released + s.revoked + s.leased + s.pipelined)
  expect(s.leased).toBe(0)
  expect(s.pipelined).toBe(0)
  expect(s.waiting).toBe(0)
}

/** A driver error's SQLSTATE, or undefined. */
function sqlState(error: unknown): string | undefined {
  return (error as { code?: unknown } | undefined)?.code as string | undefined
}

/** Waits until the pool has statements pipelined behind others, and returns the figure seen. */
async function pipelinedNow(pool: PgPool): Promise<number> {
  await waitFor(() => pool.lifeguard.stats().pipelined > 0, 5_000)
  return pool.lifeguard.stats().pipelined
}

/** What pg's client keeps of the statements sent and queued on it (pipeline mode). */
function inFlight(client: pg.Client): number {
  const c = client as unknown as {
    _activeQuery?: unknown
    _sentQueryQueue?: unknown[]
    _queryQueue?: unknown[]
  }
  return (c._activeQuery ? 1 : 0) + (c._sentQueryQueue?.length ?? 0) + (c._queryQueue?.length ?? 0)
}

describeOnServer(pgStatus, 'pipelining faults: lifeguard/pg on PostgreSQL', () => {
  let admin: pg.Client
  let table: string
  let tag: string
  const pools: PgPool[] = []
  let processErrors: ReturnType<typeof trackProcessErrors>

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: pgStatus.url })
    admin.on('error', () => {})
    await admin.connect()
  })

  afterAll(async () => {
    await admin.end()
  })

  beforeEach(async () => {
    processErrors = trackProcessErrors()
    tag = uniqueName('faults_pipe')
    table = uniqueName('faults_pipe_t')
    // No key: a statement run twice would show as its id twice.
    await admin.query(`CREATE TABLE ${table} (id int NOT NULL, pid int NOT NULL)`)
  })

  afterEach(async () => {
    for (const pool of pools.splice(0)) {
      if (!pool.ending) await pool.end().catch(() => {})
    }
    await admin.query(`DROP TABLE IF EXISTS ${table}`)
    // Late errors (a second settle, an 'error' with no listener) would show up here.
    await sleep(50)
    processErrors.stop()
    expect(processErrors.errors).toEqual([])
  })

  /** A lifeguard/pg pool tagged by `tag`, ended after the test. */
  function open(config: pg.PoolConfig & { maxPipeline?: number } = {}): PgPool {
    const pool = new PgPool({
      connectionString: pgStatus.url,
      application_name: tag,
      max: 2,
      lifeguard: { name: uniqueName('faults_pipe_pool') },
      ...config,
    })
    pool.on('error', () => {}) // an idle client's death: pg-pool's 'error', expected here
    pools.push(pool)
    return pool
  }

  /** Opens `n` connections and gives them back idle, so that a burst finds the pool full at once. */
  async function warm(pool: PgPool, n: number): Promise<void> {
    const clients = await Promise.all(Array.from({ length: n }, () => pool.connect()))
    for (const client of clients) client.release()
  }

  /** The INSERT each statement of scenarios 1–3 runs: its own id, after `sleep` seconds. */
  const insert = (id: number, seconds = 0): Statement => [
    `INSERT INTO ${table} (id, pid) SELECT $1::int, pg_backend_pid() FROM pg_sleep($2) RETURNING pid`,
    [id, seconds],
  ]

  /** How many times each id is in the table. */
  async function idCounts(): Promise<Map<number, number>> {
    const { rows } = await admin.query<{ id: number; n: number }>(
      `SELECT id, count(*)::int AS n FROM ${table} GROUP BY id`,
    )
    return new Map(rows.map((r) => [r.id, r.n]))
  }

  /** No id twice (nothing retried), and every statement that succeeded left its row. */
  async function checkNoRetry(outcomes: readonly Outcome[]): Promise<Map<number, number>> {
    const counts = await idCounts()
    for (const [id, n] of counts) expect(n, `id ${id}`).toBe(1)
    for (const o of outcomes)
      if (o.rows !== undefined) expect(counts.get(o.id), `id ${o.id}`).toBe(1)
    return counts
  }

  /** The backends of this test's pool, by application_name. */
  async function backends(where = 'true'): Promise<number[]> {
    const { rows } = await admin.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND ${where} ORDER BY pid`,
      [tag],
    )
    return rows.map((r) => r.pid)
  }

  async function terminate(pids: readonly number[]): Promise<void> {
    for (const pid of pids) await admin.query('SELECT pg_terminate_backend($1)', [pid])
  }

  /** The pool serves statements again, both shared and on a client of its own. */
  async function checkServes(pool: PgPool): Promise<void> {
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => pool.query('SELECT $1::int AS n', [i])),
    )
    expect(results.map((r) => r.rows[0].n)).toEqual(Array.from({ length: 20 }, (_, i) => i))
    const client = await pool.connect()
    try {
      expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }])
    } finally {
      client.release()
    }
  }

  /** The failures of a lost pipeline: the head's error is the driver's, the rest PipelineAbortedError with it as cause. */
  function splitFailures(failed: readonly Outcome[]): { heads: Outcome[]; aborted: Outcome[] } {
    const aborted = failed.filter((o) => o.error instanceof PipelineAbortedError)
    const heads = failed.filter((o) => !(o.error instanceof PipelineAbortedError))
    for (const o of aborted) {
      const error = o.error as PipelineAbortedError
      expect(error.code).toBe('LIFEGUARD_PIPELINE_ABORTED')
      expect(error.cause).toBeInstanceOf(Error)
      expect(error.cause).not.toBeInstanceOf(PipelineAbortedError)
    }
    return { heads, aborted }
  }

  // Regressions: a statement still waiting in line when its connection's pipeline is lost must
  // not be lent that connection (it would fail with PipelineAbortedError though it was never in
  // flight at the fault); it runs on a new one.

  it('a statement waiting in line is not lent the connection whose head got 57P01 from pg_terminate_backend', async () => {
    const pool = open({ max: 1, maxPipeline: 5 })
    await warm(pool, 1)
    const b = burst(
      pool,
      Array.from({ length: 7 }, (_, id) => insert(id, id === 0 ? 3 : 0)),
    )
    expect(await pipelinedNow(pool)).toBe(4)
    expect(pool.lifeguard.stats().waiting).toBe(2)
    await waitFor(async () => (await backends("wait_event = 'PgSleep'")).length === 1, 5_000)
    const [killed] = await backends()
    await terminate([killed!])
    await b.settled
    await sleep(100)
    for (const o of b.outcomes) expect(o.calls, `statement ${o.id}`).toBe(1)
    expect(sqlState(b.outcomes[0]!.error)).toBe('57P01')
    for (const o of b.outcomes.slice(1, 5)) expect(o.error).toBeInstanceOf(PipelineAbortedError)
    for (const o of b.outcomes.slice(5)) {
      expect(o.error, `statement ${o.id}`).toBeUndefined()
      expect(o.rows![0]!.pid).not.toBe(killed)
    }
    await checkNoRetry(b.outcomes)
    await waitFor(() => pool.lifeguard.stats().leased === 0, 3_000)
    checkQuiet(pool)
  })

  it('a statement waiting in line is not lent the connection that a query_timeout just destroyed', async () => {
    const pool = open({ max: 1, maxPipeline: 5 })
    await warm(pool, 1)
    const statements: Statement[] = Array.from({ length: 7 }, (_, id) =>
      insert(id, id === 0 ? 1.5 : 0),
    )
    const [text, values] = insert(1)
    statements[1] = [{ text, values, query_timeout: 300 } as unknown as pg.QueryConfig]
    const b = burst(pool, statements)
    expect(await pipelinedNow(pool)).toBe(4)
    expect(pool.lifeguard.stats().waiting).toBe(2)
    const [first] = await backends()
    await b.settled
    await sleep(100)
    for (const o of b.outcomes) expect(o.calls, `statement ${o.id}`).toBe(1)
    expect((b.outcomes[1]!.error as Error).message).toBe('Query read timeout')
    expect(b.outcomes[0]!.error).toBeInstanceOf(Error)
    expect(b.outcomes[0]!.error).not.toBeInstanceOf(PipelineAbortedError)
    for (const o of b.outcomes.slice(2, 5)) expect(o.error).toBeInstanceOf(PipelineAbortedError)
    for (const o of b.outcomes.slice(5)) {
      expect(o.error, `statement ${o.id}`).toBeUndefined()
      expect(o.rows![0]!.pid).not.toBe(first)
    }
    await checkNoRetry(b.outcomes)
    await waitFor(() => pool.lifeguard.stats().leased === 0, 3_000)
    checkQuiet(pool)
  })
})
