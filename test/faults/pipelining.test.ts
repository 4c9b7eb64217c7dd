import pg from 'pg'
import { afterAll, afterEach, beforeAll, beforeEach, expect, it } from 'vitest'
import { lifeguardOf } from '../../src/compat/lifeguard-of.js'
import { Pool as PgPool } from '../../src/compat/pg.js'
import { PipelineAbortedError } from '../../src/index.js'
import { sleep, trackProcessErrors, uniqueName, waitFor } from '../conformance/targets.js'
import { describeOnServer, probe } from '../support/servers.js'
import { startThrowawayPostgres } from '../support/throwaway-postgres.js'
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

/** Waits up to 3 s for the pool to get every client back, then {@link checkQuiet}. */
async function checkQuietSoon(pool: PgPool): Promise<void> {
  await waitFor(() => lifeguardOf(pool).stats().leased === 0, 3_000)
  checkQuiet(pool)
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

/**
 * How many statements each of the pool's clients carries now (its head and those pipelined behind
 * it), read from pg's queues. Joins happen in arrival order (the pool's queue is FIFO), and a
 * connection whose head has given nothing back for a few ms is no longer joined (head-of-line), so
 * how deep the pipelines get depends on the machine: the tests read it at the fault.
 */
function carried(pool: PgPool): number[] {
  return (pool as unknown as { _clients: pg.Client[] })._clients.map(inFlight)
}

const sum = (values: readonly number[]) => values.reduce((a, b) => a + b, 0)

/** {@link carried}, once every statement lent a client has reached pg's queue on it (a tick later). */
async function dispatched(pool: PgPool): Promise<number[]> {
  await waitFor(() => {
    const s = pool.lifeguard.stats()
    return sum(carried(pool)) === s.leased + s.pipelined
  }, 2_000)
  return carried(pool)
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

  it('kill-all: every backend of the pool terminated under full pipelines; each statement settles once, none retried, the pool recovers', async () => {
    const pool = open({ max: 2, maxPipeline: 10 })
    await warm(pool, 2)
    // Two slow heads, then enough to fill both pipelines (2 × 10) and 10 more waiting in line.
    const statements = Array.from({ length: 30 }, (_, id) => insert(id, id < 2 ? 3 : 0))
    const b = burst(pool, statements)
    await pipelinedNow(pool)
    const pids = await backends()
    expect(pids).toHaveLength(2)
    await waitFor(async () => (await backends("wait_event = 'PgSleep'")).length === 2, 5_000)
    // What each connection carries at the kill: its sleeping head and those behind it (2 × 10 at
    // most; the rest wait in line). The pool's figure agrees with pg's queues.
    const loads = await dispatched(pool)
    const lost = sum(loads)
    expect(loads).toHaveLength(2)
    expect(pool.lifeguard.stats().pipelined).toBe(lost - 2)
    expect(lost).toBeGreaterThan(2)
    expect(pool.lifeguard.stats().waiting).toBe(30 - lost)
    await terminate(pids)
    await b.settled
    await sleep(100) // a second settle would show now
    for (const o of b.outcomes) expect(o.calls, `statement ${o.id}`).toBe(1)

    const failed = b.outcomes.filter((o) => o.error !== undefined)
    const { heads, aborted } = splitFailures(failed)
    // The two heads get the server's own error (57P01, admin shutdown) or pg's end-of-connection
    // error; those behind them PipelineAbortedError. Those in line were never sent on a dead
    // connection: they run on new ones.
    expect(heads.map((o) => o.id).sort()).toEqual([0, 1])
    for (const o of heads) {
      expect(o.error).toBeInstanceOf(Error)
      expect(o.error).not.toBeInstanceOf(PipelineAbortedError)
    }
    expect(aborted.map((o) => o.id).sort((x, y) => x - y)).toEqual(
      Array.from({ length: lost - 2 }, (_, i) => i + 2),
    )
    for (const o of aborted) {
      // The cause is what pg gave the statement: the same error as its head's, or the end's.
      expect((o.error as PipelineAbortedError).cause).toBeInstanceOf(Error)
    }
    const ok = b.outcomes.filter((o) => o.rows !== undefined)
    expect(ok.map((o) => o.id)).toEqual(Array.from({ length: 30 - lost }, (_, i) => i + lost))
    for (const o of ok) expect(pids).not.toContain(o.rows![0]!.pid)
    const counts = await checkNoRetry(b.outcomes)
    // Statements behind a head killed in its sleep never ran: pipelined, each has its own Sync.
    for (const o of failed) expect(counts.has(o.id), `id ${o.id}`).toBe(false)

    await checkServes(pool)
    await checkQuietSoon(pool)
    expect(pool.lifeguard.stats().revoked).toBeGreaterThanOrEqual(lost - 2)
  })

  it('kill-mid-query: one backend terminated under a slow head; only the statements on it fail', async () => {
    const pool = open({ max: 2, maxPipeline: 10 })
    await warm(pool, 2)
    // Connection 1's head sleeps long, connection 2's briefly: at the kill both carry a pipeline.
    const statements = Array.from({ length: 20 }, (_, id) =>
      insert(id, id === 0 ? 3 : id === 1 ? 0.6 : 0),
    ).map(([text, values], id) => [id === 0 ? `/* long head */ ${text}` : text, values] as const)
    const b = burst(pool, statements)
    await pipelinedNow(pool)
    // The backend whose head is statement 0 (its text marked), found while it sleeps.
    let victims: number[] = []
    await waitFor(async () => {
      victims = await backends("wait_event = 'PgSleep' AND query LIKE '/* long head */%'")
      return victims.length === 1
    }, 5_000)
    const killed = victims[0]!
    const clients = (pool as unknown as { _clients: pg.Client[] })._clients
    expect(clients).toHaveLength(2)
    const doomed = clients.find((c) => (c as unknown as { processID: number }).processID === killed)
    expect(doomed).toBeDefined()
    const onKilled = inFlight(doomed!)
    expect(onKilled).toBeGreaterThan(1) // its head and at least one pipelined behind it
    await terminate([killed])
    await b.settled
    await sleep(100)
    for (const o of b.outcomes) expect(o.calls, `statement ${o.id}`).toBe(1)

    const failed = b.outcomes.filter((o) => o.error !== undefined)
    const ok = b.outcomes.filter((o) => o.rows !== undefined)
    expect(failed).toHaveLength(onKilled)
    expect(ok).toHaveLength(20 - onKilled)
    for (const o of ok) expect(o.rows![0]!.pid).not.toBe(killed)
    const { heads, aborted } = splitFailures(failed)
    expect(heads.map((o) => o.id)).toEqual([0])
    expect(sqlState(heads[0]!.error)).toBe('57P01') // terminating connection due to administrator command
    expect(aborted).toHaveLength(onKilled - 1)
    await checkNoRetry(b.outcomes)

    await checkServes(pool)
    await checkQuietSoon(pool)
  })

  it("client query_timeout inside a full pipeline: pg's 'Query read timeout' for it, the connection destroyed, the others on it aborted once", async () => {
    const pool = open({ max: 2, maxPipeline: 10 })
    await warm(pool, 2)
    const before = await backends()
    // Both heads sleep 1.5 s; statement 2 lands behind connection 1's head, with its own 300 ms timeout.
    const statements: Statement[] = Array.from({ length: 20 }, (_, id) =>
      insert(id, id < 2 ? 1.5 : 0),
    )
    const [text, values] = insert(2)
    statements[2] = [{ text, values, query_timeout: 300 } as unknown as pg.QueryConfig]
    const b = burst(pool, statements)
    await pipelinedNow(pool)
    // Read well before the 300 ms timeout, while both heads sleep.
    const loads = await dispatched(pool)
    await b.settled
    await sleep(100)
    for (const o of b.outcomes) expect(o.calls, `statement ${o.id}`).toBe(1)

    const timedOut = b.outcomes[2]!
    expect((timedOut.error as Error).message).toBe('Query read timeout')
    const failed = b.outcomes.filter((o) => o.error !== undefined && o !== timedOut)
    const ok = b.outcomes.filter((o) => o.rows !== undefined)
    // Its connection carried its head, itself and those behind: all of them fail, the rest succeed.
    expect(loads).toContain(failed.length + 1)
    expect(ok).toHaveLength(20 - 1 - failed.length)
    const { heads, aborted } = splitFailures(failed)
    expect(heads).toHaveLength(1)
    expect(heads[0]!.id === 0 || heads[0]!.id === 1).toBe(true)
    expect(aborted).toHaveLength(failed.length - 1)
    const survivors = new Set(ok.map((o) => o.rows![0]!.pid))
    // The timed-out statement's connection is gone from the server; the other is still there.
    const [gone] = before.filter((pid) => !survivors.has(pid))
    await waitFor(async () => !(await backends()).includes(gone!), 5_000)
    await checkNoRetry(b.outcomes)

    await checkServes(pool)
    await checkQuietSoon(pool)
  })

  it('server statement_timeout inside a pipeline: only that statement fails (57014), the others on the same connection succeed', async () => {
    // One connection, so that all share it; pg sends statement_timeout at connect.
    const pool = open({ max: 1, maxPipeline: 20, statement_timeout: 400 })
    await warm(pool, 1)
    const statements = Array.from({ length: 20 }, (_, id) => insert(id, id === 5 ? 1 : 0.01))
    const b = burst(pool, statements)
    expect(await pipelinedNow(pool)).toBeGreaterThan(0)
    await b.settled
    await sleep(100)
    for (const o of b.outcomes) expect(o.calls, `statement ${o.id}`).toBe(1)
    const failed = b.outcomes.filter((o) => o.error !== undefined)
    expect(failed.map((o) => o.id)).toEqual([5])
    expect(sqlState(failed[0]!.error)).toBe('57014')
    const ok = b.outcomes.filter((o) => o.rows !== undefined)
    expect(ok).toHaveLength(19)
    expect(new Set(ok.map((o) => o.rows![0]!.pid)).size).toBe(1)
    const counts = await checkNoRetry(b.outcomes)
    expect(counts.has(5)).toBe(false)
    expect(counts.size).toBe(19)
    checkQuiet(pool)
  })

  /** 10,000 statements at once, every 100th dividing by zero, with stats().pipelined sampled every ms. */
  async function mixedBurst(pool: PgPool): Promise<{ maxPipelined: number; ms: number }> {
    const total = 10_000
    const statements = Array.from({ length: total }, (_, i) =>
      i % 100 === 99
        ? (['SELECT $1::int / 0 AS n', [i]] as const)
        : (['SELECT $1::int AS n', [i]] as const),
    )
    let maxPipelined = 0
    const sampler = setInterval(() => {
      maxPipelined = Math.max(maxPipelined, pool.lifeguard.stats().pipelined)
    }, 1)
    const started = performance.now()
    const b = burst(pool, statements)
    await b.settled
    const elapsed = performance.now() - started
    clearInterval(sampler)
    await sleep(100)
    let failures = 0
    for (const o of b.outcomes) {
      expect(o.calls, `statement ${o.id}`).toBe(1)
      if (o.id % 100 === 99) {
        failures++
        expect(sqlState(o.error), `statement ${o.id}`).toBe('22012')
      } else {
        expect(o.error, `statement ${o.id}`).toBeUndefined()
        expect(o.rows, `statement ${o.id}`).toEqual([{ n: o.id }])
      }
    }
    expect(failures).toBe(100)
    checkQuiet(pool)
    return { maxPipelined, ms: Math.round(elapsed) }
  }

  it('10,000 concurrent statements with 1% errors, pool of 4: each gets its own result or its own error, once', async () => {
    const pool = open({ max: 4 })
    await warm(pool, 4)
    const { maxPipelined, ms } = await mixedBurst(pool)
    console.log(`[pipelining] 10k burst, max 4: ${ms} ms, max pipelined ${maxPipelined}`)
    expect(maxPipelined).toBeGreaterThan(4)
  })

  it('maxPipeline: 1 never pipelines, and the same burst gives the same results', async () => {
    const pool = open({ max: 4, maxPipeline: 1 })
    await warm(pool, 4)
    const { maxPipelined, ms } = await mixedBurst(pool)
    console.log(`[pipelining] 10k burst, max 4, maxPipeline 1: ${ms} ms`)
    expect(maxPipelined).toBe(0)
    expect(pool.lifeguard.stats().pipelined).toBe(0)
  })

  it('an exclusive connect() behind full pipelines is served in bounded time, and its transaction is not interleaved', async () => {
    const pool = open({ max: 2, maxPipeline: 10 })
    await warm(pool, 2)
    type Row = { pid: number; at: string }
    const seen: Row[] = []
    const errors: unknown[] = []
    let stop = false
    // 30 callers, each with statements one after another for as long as the test lasts: more
    // than the two pipelines hold, so that callers always wait.
    const stream = Promise.all(
      Array.from({ length: 30 }, async () => {
        while (!stop) {
          try {
            const r = await pool.query<Row>(
              'SELECT pg_backend_pid() AS pid, clock_timestamp()::text AS at FROM pg_sleep(0.02)',
            )
            seen.push(r.rows[0]!)
          } catch (error) {
            errors.push(error)
          }
        }
      }),
    )
    expect(await pipelinedNow(pool)).toBeGreaterThan(0)
    await sleep(200)
    const asked = performance.now()
    // A starved caller would wait for as long as the stream goes on: fail it after 10 s instead.
    let timer: NodeJS.Timeout | undefined
    const client = await Promise.race([
      pool.connect(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error('connect() starved behind the pipelines')),
          10_000,
        )
      }),
    ])
      .catch(async (error) => {
        stop = true
        await stream
        throw error
      })
      .finally(() => clearTimeout(timer))
    const waited = performance.now() - asked
    let pid: number
    let xids: string[]
    let from: string
    let to: string
    try {
      await client.query('BEGIN')
      const rows: Array<{ pid: number; xid: string; at: string }> = []
      for (let i = 0; i < 5; i++) {
        const r = await client.query<{ pid: number; xid: string; at: string }>(
          'SELECT pg_backend_pid() AS pid, txid_current()::text AS xid, clock_timestamp()::text AS at FROM pg_sleep(0.05)',
        )
        rows.push(r.rows[0]!)
      }
      await client.query('COMMIT')
      pid = rows[0]!.pid
      xids = rows.map((r) => r.xid)
      from = rows[0]!.at
      to = rows[rows.length - 1]!.at
      for (const r of rows) expect(r.pid).toBe(pid)
    } finally {
      client.release()
    }
    await sleep(200) // the stream goes on over the released connection too
    stop = true
    await stream
    expect(errors).toEqual([])
    console.log(
      `[pipelining] exclusive connect() behind full pipelines: waited ${Math.round(waited)} ms`,
    )
    // Served once the connection drained its pipeline, not after the stream: a loose bound.
    expect(waited).toBeLessThan(5_000)
    expect(new Set(xids).size).toBe(1)
    // No streamed statement ran on the transaction's backend while the transaction was open.
    const { rows: overlap } = await admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM unnest($1::int[], $2::timestamptz[]) AS s(pid, at)
        WHERE pid = $3 AND at > $4::timestamptz AND at < $5::timestamptz`,
      [seen.map((r) => r.pid), seen.map((r) => r.at), pid, from, to],
    )
    expect(overlap[0]!.n).toBe(0)
    // ...while the stream did use that backend before and after: the test could have seen one.
    expect(seen.some((r) => r.pid === pid)).toBe(true)
    await checkQuietSoon(pool)
  })
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
    await pipelinedNow(pool)
    await waitFor(async () => (await backends("wait_event = 'PgSleep'")).length === 1, 5_000)
    // The first `n` are on the connection (5 at most), the others wait in line.
    const [n] = await dispatched(pool)
    expect(pool.lifeguard.stats().waiting).toBe(7 - n!)
    const [killed] = await backends()
    await terminate([killed!])
    await b.settled
    await sleep(100)
    for (const o of b.outcomes) expect(o.calls, `statement ${o.id}`).toBe(1)
    expect(sqlState(b.outcomes[0]!.error)).toBe('57P01')
    for (const o of b.outcomes.slice(1, n)) expect(o.error).toBeInstanceOf(PipelineAbortedError)
    for (const o of b.outcomes.slice(n)) {
      expect(o.error, `statement ${o.id}`).toBeUndefined()
      expect(o.rows![0]!.pid).not.toBe(killed)
    }
    await checkNoRetry(b.outcomes)
    await checkQuietSoon(pool)
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
    await pipelinedNow(pool)
    const [n] = await dispatched(pool)
    expect(n).toBeGreaterThanOrEqual(2) // the head, and the statement that times out behind it
    expect(pool.lifeguard.stats().waiting).toBe(7 - n!)
    const [first] = await backends()
    await b.settled
    await sleep(100)
    for (const o of b.outcomes) expect(o.calls, `statement ${o.id}`).toBe(1)
    expect((b.outcomes[1]!.error as Error).message).toBe('Query read timeout')
    expect(b.outcomes[0]!.error).toBeInstanceOf(Error)
    expect(b.outcomes[0]!.error).not.toBeInstanceOf(PipelineAbortedError)
    for (const o of b.outcomes.slice(2, n)) expect(o.error).toBeInstanceOf(PipelineAbortedError)
    for (const o of b.outcomes.slice(n)) {
      expect(o.error, `statement ${o.id}`).toBeUndefined()
      expect(o.rows![0]!.pid).not.toBe(first)
    }
    await checkNoRetry(b.outcomes)
    await checkQuietSoon(pool)
  })
  it('sharing callers queued while the pool opens their connections are not joined onto the first one that opens', async () => {
    const pool = open({ max: 6 })
    let maxPipelined = 0
    const sampler = setInterval(() => {
      maxPipelined = Math.max(maxPipelined, pool.lifeguard.stats().pipelined)
    }, 1)
    // A cold pool: six statements, six connections opened for them, each its own.
    const results = await Promise.all(
      Array.from({ length: 6 }, () =>
        pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid FROM pg_sleep(0.3)'),
      ),
    )
    clearInterval(sampler)
    expect(maxPipelined).toBe(0)
    expect(new Set(results.map((r) => r.rows[0]!.pid)).size).toBe(6)
    expect(pool.lifeguard.stats().created).toBe(6)
    checkQuiet(pool)
  })
  it('a server restart (pg_ctl restart -m fast, throwaway server) under full pipelines: each statement settles once, none retried, the pool serves after', async () => {
    const server = await startThrowawayPostgres()
    try {
      const own = 'faults_pipe_restart'
      await server.sql(`CREATE TABLE ${own} (id int NOT NULL, pid int NOT NULL)`)
      const pool = open({ connectionString: server.url, max: 2, maxPipeline: 10 })
      await warm(pool, 2)
      const b = burst(
        pool,
        Array.from(
          { length: 30 },
          (_, id): Statement => [
            `INSERT INTO ${own} (id, pid) SELECT $1::int, pg_backend_pid() FROM pg_sleep($2) RETURNING pid`,
            [id, id < 2 ? 3 : 0],
          ],
        ),
      )
      await pipelinedNow(pool)
      await waitFor(async () => {
        const rows = await server.sql<{ n: number }>(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event = 'PgSleep'",
        )
        return rows[0]!.n === 2
      }, 5_000)
      const lost = sum(await dispatched(pool))
      expect(lost).toBeGreaterThan(2)
      await server.restart({ mode: 'fast' })
      await b.settled
      await sleep(100)
      for (const o of b.outcomes) expect(o.calls, `statement ${o.id}`).toBe(1)
      const failed = b.outcomes.filter((o) => o.error !== undefined)
      const { heads, aborted } = splitFailures(failed)
      // The heads get the server's goodbye (57P01) or pg's end of the connection; those behind
      // them PipelineAbortedError. Those in line ran on new connections, or failed to connect
      // while the server was down: each with its own error, never an abort.
      for (const o of heads) expect(o.error).toBeInstanceOf(Error)
      expect(aborted.map((o) => o.id).sort((x, y) => x - y)).toEqual(
        Array.from({ length: lost - 2 }, (_, i) => i + 2),
      )
      const rows = await server.sql<{ id: number; n: number }>(
        `SELECT id, count(*)::int AS n FROM ${own} GROUP BY id`,
      )
      const counts = new Map(rows.map((r) => [r.id, r.n]))
      for (const [id, n] of counts) expect(n, `id ${id}`).toBe(1)
      for (const o of b.outcomes) {
        if (o.rows !== undefined) expect(counts.get(o.id), `id ${o.id}`).toBe(1)
      }
      await checkServes(pool)
      await checkQuietSoon(pool)
      await pool.end()
    } finally {
      await server.remove()
    }
  })
})
