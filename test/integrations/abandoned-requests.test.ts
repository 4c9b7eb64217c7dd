import { spawn } from 'node:child_process'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Hono } from 'hono'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { lifeguardOf } from '../../src/compat/lifeguard-of.js'
import type { Pool } from '../../src/index.js'
import { requestScope as honoScope } from '../../src/integrations/hono.js'
import { trackProcessErrors } from '../conformance/targets.js'
import { report } from '../faults/fault-targets.js'
import { describeOnServer, probe, type ServerKind } from '../support/servers.js'
import { type Backend, type Framework, mysqlBackend, postgresBackend } from './framework-suite.js'
import { coreFramework, expressFramework, fastifyFramework, honoFramework } from './frameworks.js'
import { SessionMonitor } from './session-monitor.js'
import { unique } from './support.js'

/** The pool: every connection held by a request that stays, while the abandoned ones wait. */
const POOL_SIZE = 5
/** The clients that go away while their handlers wait for a connection. */
const ABANDONED = 200
/** Issue 15's target from the aborts to no abandoned handler holding or waiting, and its CI bound. */
const TARGET_MS = 100
const CI_BOUND_MS = 1000
/** The statement that `cancelOnAbort` must stop: far longer than any bound. */
const LONG_SECONDS = 20
/** The CI bound for the cancelled connections to come back. */
const CANCEL_BOUND_MS = 5000

/** What an abandoned handler saw. */
interface Seen {
  /** The error its first query rejected with. */
  first: { name: string }
  /** `db.signal.aborted` when it did. */
  signalAborted: boolean
  /** What the query it started after that gave: the error's name, or `'served'`. */
  later: string
  /** How long that later query took to settle, in ms. */
  laterMs: number
  /** When the first query rejected (`performance.now()`). */
  at: number
}

/**
 * Clients in a process of their own, as real clients are: they send `count` requests to `url`,
 * and go away (`AbortController.abort()`) when told to. The server's process then does only the
 * server's work, and the time of the aborts is the clients' own clock reading
 * (`performance.timeOrigin + performance.now()`, comparable across processes on one machine).
 */
class RemoteClients {
  readonly #child: ReturnType<typeof spawn>
  readonly #lines: string[] = []
  #waiting: (() => void) | undefined

  constructor(url: string, count: number) {
    const script = `
      import { createInterface } from 'node:readline'
      const abort = new AbortController()
      const settled = Promise.allSettled(
        Array.from({ length: ${count} }, () => fetch(${JSON.stringify(url)}, { signal: abort.signal })),
      )
      for await (const line of createInterface({ input: process.stdin })) {
        if (line !== 'abort') continue
        const at = performance.timeOrigin + performance.now()
        abort.abort()
        console.log('aborted ' + at + ' ' + (performance.timeOrigin + performance.now()))
        const results = await settled
        console.log('fulfilled ' + results.filter((r) => r.status === 'fulfilled').length)
        process.exit(0)
      }
    `
    this.#child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['pipe', 'pipe', 'inherit'],
    })
    let buffer = ''
    this.#child.stdout!.on('data', (chunk: Buffer) => {
      buffer += chunk.toString()
      const lines = buffer.split('\n')
      buffer = lines.pop()!
      this.#lines.push(...lines)
      this.#waiting?.()
    })
  }

  /**
   * Tells the clients to go away; resolves with when they started to (just before their
   * `abort()`), on this process's clock.
   */
  async abort(): Promise<number> {
    this.#child.stdin!.write('abort\n')
    const [start, end] = (await this.#line('aborted ')).split(' ').map(Number)
    this.abortCallMs = end! - start!
    return start! - performance.timeOrigin
  }

  /** How long the clients' own `abort()` call took: the last of them went away after it. */
  abortCallMs = 0

  /** How many of the requests got a response (none should: every client went away). */
  async fulfilled(): Promise<number> {
    return Number(await this.#line('fulfilled '))
  }

  kill(): void {
    if (this.#child.exitCode === null) this.#child.kill()
  }

  async #line(prefix: string): Promise<string> {
    for (;;) {
      const found = this.#lines.find((l) => l.startsWith(prefix))
      if (found !== undefined) return found.slice(prefix.length)
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no "${prefix}" from the clients`)), 15_000)
        this.#waiting = () => {
          clearTimeout(timer)
          resolve()
        }
      })
    }
  }
}

async function until(condition: () => boolean, what: string, ms = 15_000): Promise<void> {
  const deadline = performance.now() + ms
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
}

/**
 * Issue 15, section 4, for one framework (or the core scope API on Node's own server), on both
 * servers, over real HTTP on 127.0.0.1: 5 requests hold the pool's 5 connections inside
 * transactions, 200 more wait for one, and their clients go away. The abandoned handlers' waits
 * must end at once with an `AbortError`, their later queries too, and none of them may borrow.
 */
async function abandonedSuite(framework: Framework): Promise<void> {
  for (const kind of ['postgres', 'mysql'] as ServerKind[]) {
    const status = await probe(kind)
    describeOnServer(status, `${framework.name}: abandoned requests on ${status.label}`, () => {
      let monitor: SessionMonitor
      let backend: Backend
      let core: Pool<unknown>
      let server: Server
      let base: string
      let table: string
      let processErrors: ReturnType<typeof trackProcessErrors>
      let holding = 0
      let running = 0
      let openGate!: () => void
      let gate = Promise.resolve()
      const seen: Seen[] = []
      let abandonedBorrowed = 0
      const closes: number[] = []
      let clients_: RemoteClients | undefined

      const rowsOf = async (marker: string) =>
        Number(
          (await backend.query(`SELECT COUNT(*) AS n FROM ${table} WHERE marker = '${marker}'`))[0]!
            .n,
        )

      beforeAll(async () => {
        processErrors = trackProcessErrors()
        monitor = await SessionMonitor.open(kind, `abandon_${framework.name}`)
        backend =
          kind === 'postgres'
            ? postgresBackend(monitor.url, POOL_SIZE)
            : mysqlBackend(monitor.url, POOL_SIZE)
        core = lifeguardOf(backend.facade)
        table = unique('abandon')
        await backend.query(backend.sql.create(table))
        server = await framework.serve(backend.facade, [
          {
            // Holds a connection inside its transaction until the test opens the gate.
            method: 'GET',
            path: '/hold',
            transaction: true,
            handle: async () => {
              await backend.query(backend.sql.insert(table, 'held'))
              holding++
              await gate
              await backend.query(backend.sql.sleep(0.05))
              return { ok: true }
            },
          },
          {
            // A statement far longer than the test, for cancelOnAbort to stop.
            method: 'GET',
            path: '/long',
            transaction: true,
            cancelOnAbort: true,
            handle: async () => {
              await backend.query(backend.sql.insert(table, 'long'))
              running++
              await backend.query(backend.sql.sleep(LONG_SECONDS))
              // MariaDB's SLEEP() returns 1 when killed: this query must not run either.
              await backend.query(backend.sql.insert(table, 'long'))
              return { ok: true }
            },
          },
          {
            // The same work, for the clients that go away while it waits for a connection.
            method: 'GET',
            path: '/abandoned',
            transaction: true,
            handle: async ({ db }) => {
              try {
                await backend.query(backend.sql.insert(table, 'abandoned'))
              } catch (error) {
                const at = performance.now()
                const signalAborted = db.signal.aborted
                const later = await backend.query('SELECT 1 AS one').then(
                  () => 'served',
                  (e: Error) => e.name,
                )
                seen.push({
                  first: { name: (error as Error).name },
                  signalAborted,
                  later,
                  laterMs: performance.now() - at,
                  at,
                })
                throw error
              }
              abandonedBorrowed++
              await gate
              return { ok: true }
            },
          },
        ])
        base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
        // When the server learns that each client went away: its response's 'close', seen
        // before the integration's own listener.
        server.prependListener('request', (_req, res) => {
          res.prependOnceListener('close', () => {
            if (!res.writableFinished) closes.push(performance.now())
          })
        })
      })

      afterAll(async () => {
        clients_?.kill()
        openGate?.()
        await new Promise<void>((resolve) => {
          server?.close(() => resolve())
          server?.closeAllConnections()
        })
        await backend?.query(`DROP TABLE IF EXISTS ${table}`).catch(() => {})
        await backend?.end()
        await monitor?.close()
        processErrors?.stop()
        expect(processErrors?.errors ?? []).toEqual([])
      })

      it(`ends the waits of ${ABANDONED} abandoned handlers at once; none of them borrows`, async () => {
        gate = new Promise<void>((resolve) => {
          openGate = resolve
        })
        const before = core.stats()
        const holders = Array.from({ length: POOL_SIZE }, () =>
          fetch(`${base}/hold`).then(async (r) => ({ status: r.status, body: await r.json() })),
        )
        await until(() => holding === POOL_SIZE, 'the holders to hold every connection')
        const clients = new RemoteClients(`${base}/abandoned`, ABANDONED)
        clients_ = clients
        await until(() => core.stats().waiting === ABANDONED, 'every abandoned handler to wait')
        const aborting = clients.abort()
        await until(() => core.stats().waiting === 0, 'the waits to end')
        const noneWaitingAt = performance.now()
        const aborted = await aborting
        const noneWaiting = noneWaitingAt - aborted
        await until(() => seen.length === ABANDONED, 'every abandoned handler to be told')
        const allTold = Math.max(...seen.map((s) => s.at)) - aborted
        // The server's part alone: from its last 'close' of an abandoned response.
        const lastClose = Math.max(...closes)
        const afterLastClose = noneWaitingAt - lastClose
        const stats = core.stats()
        // Only the requests that stayed hold connections, and the server sees only their
        // transactions.
        expect(stats).toMatchObject({ waiting: 0, leased: POOL_SIZE })
        expect(abandonedBorrowed).toBe(0)
        const openTransactions = await monitor.inTransaction()
        expect(openTransactions).toBe(POOL_SIZE)
        expect(await clients.fulfilled()).toBe(0)
        expect(closes).toHaveLength(ABANDONED)
        expect(new Set(seen.map((s) => s.first.name))).toEqual(new Set(['AbortError']))
        expect(seen.every((s) => s.signalAborted)).toBe(true)
        // A query started after the abort rejects the same way, without queueing.
        expect(new Set(seen.map((s) => s.later))).toEqual(new Set(['AbortError']))
        const laterMax = Math.max(...seen.map((s) => s.laterMs))

        openGate()
        for (const holder of await Promise.all(holders)) {
          expect(holder).toEqual({ status: 200, body: { ok: true } })
        }
        await until(() => core.stats().leased === 0, 'the holders to give their connections back')
        const after = core.stats()
        // The abandoned requests never borrowed: only the holders' checkouts count.
        expect(after.acquired - before.acquired).toBe(POOL_SIZE)
        expect(after.aborted - before.aborted).toBe(ABANDONED)
        expect(await monitor.inTransaction()).toBe(0)
        expect(await rowsOf('abandoned')).toBe(0)
        expect(await rowsOf('held')).toBe(POOL_SIZE)
        report(
          `A1 ${ABANDONED} abandoned requests (${framework.name}, pool of ${POOL_SIZE})`,
          status.label,
          {
            openTransactionsAfterAbort: openTransactions,
            leasedAfterAbort: stats.leased,
            abandonedBorrowed,
            acquired: after.acquired - before.acquired,
            clientAbortCallMs: Math.round(clients.abortCallMs * 10) / 10,
            firstCloseAfterAbortMs: Math.round((Math.min(...closes) - aborted) * 10) / 10,
            lastCloseAfterAbortMs: Math.round((lastClose - aborted) * 10) / 10,
          },
          {
            noneWaiting: { value: noneWaiting, target: TARGET_MS, bound: CI_BOUND_MS },
            noneWaitingAfterLastClose: { value: afterLastClose, target: 10, bound: CI_BOUND_MS },
            allHandlersTold: { value: allTold, target: TARGET_MS, bound: CI_BOUND_MS },
            laterQueryMax: { value: laterMax, target: 10, bound: CI_BOUND_MS },
          },
        )
      })

      it('with cancelOnAbort, stops the statements that abandoned requests were running', async () => {
        const before = core.stats()
        const clients = new RemoteClients(`${base}/long`, POOL_SIZE)
        clients_ = clients
        await until(() => running === POOL_SIZE, 'the long statements to start')
        // Let each statement reach the server.
        await new Promise((resolve) => setTimeout(resolve, 100))
        expect(core.stats().leased).toBe(POOL_SIZE)
        const aborted = await clients.abort()
        await until(() => core.stats().leased === 0, 'the cancelled connections to come back')
        const freed = performance.now() - aborted
        expect(await clients.fulfilled()).toBe(0)
        // Each cancelled connection was closed rather than lent again; the server rolled back.
        await until(
          () => core.stats().closed - before.closed === POOL_SIZE,
          'the cancelled connections to close',
        )
        const after = core.stats()
        expect(after).toMatchObject({ leased: 0, waiting: 0 })
        expect(await monitor.inTransaction()).toBe(0)
        expect(await rowsOf('long')).toBe(0)
        report(
          `A2 ${POOL_SIZE} abandoned requests mid-statement, cancelOnAbort (${framework.name})`,
          status.label,
          { statementSeconds: LONG_SECONDS, closed: after.closed - before.closed },
          // The bound only has to tell a cancelled statement from one that ran its 20 s: a
          // cancel opens a connection of its own, which a loaded server made take 2 s once.
          { connectionsBack: { value: freed, target: TARGET_MS, bound: CANCEL_BOUND_MS } },
        )
      })
    })
  }
}

for (const framework of [expressFramework, fastifyFramework, honoFramework, coreFramework]) {
  await abandonedSuite(framework)
}

// Hono elsewhere than on Node (Bun, Deno, Workers) has no Node response to watch: the request's own
// signal says that the client went away. `app.request()` is such a runtime's fetch call.
const postgres = await probe('postgres')
describeOnServer(
  postgres,
  `hono on a fetch runtime: abandoned requests on ${postgres.label}`,
  () => {
    it("abandons the request's scope when the Request's signal aborts", async () => {
      const backend = postgresBackend(postgres.url, 1)
      const core = lifeguardOf(backend.facade)
      try {
        const held = await core.acquire()
        const app = new Hono()
        app.use(honoScope(backend.facade))
        let seen: { name: string; signalAborted: boolean } | undefined
        app.get('/wait', async (c) => {
          try {
            await backend.query('SELECT 1 AS one')
          } catch (error) {
            seen = { name: (error as Error).name, signalAborted: c.var.db.signal.aborted }
            throw error
          }
          return c.json({ ok: true })
        })
        app.onError((error, c) => c.json({ error: error.message }, 500))
        const controller = new AbortController()
        const response = app.request('/wait', { signal: controller.signal })
        await until(() => core.stats().waiting === 1, 'the handler to wait')
        controller.abort()
        expect((await response).status).toBe(500)
        expect(seen).toEqual({ name: 'AbortError', signalAborted: true })
        expect(core.stats()).toMatchObject({ waiting: 0, leased: 1, aborted: 1 })
        held.release()
      } finally {
        await backend.end()
      }
    })
  },
)
