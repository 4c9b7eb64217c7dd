import { expect, it } from 'vitest'
import { createPool, type Dialect, type Lease, type Pool } from '../../src/index.js'
import { sleep, uniqueName, waitFor } from '../conformance/targets.js'
import { describeOnServer, probe } from '../support/servers.js'
import { FaultProxy } from './fault-proxy.js'
import {
  type FaultTarget,
  mysqlFaultTarget,
  postgresFaultTarget,
  type Rig,
  report,
  rig,
} from './fault-targets.js'

// Issue 15, section 3: a half-open idle connection (the network swallows its packets, its socket
// stays open) never holds a borrower for long. The pre-ping that finds it silent is hedged: the
// borrower gets the next idle connection, or a new one; the silent one is destroyed at
// `validationTimeout`. Each idle connection goes through a proxy of its own, so that one link
// can be blackholed (half-open) while the others and new connections stay healthy.

const [pgStatus, myStatus] = await Promise.all([probe('postgres'), probe('mysql')])

/** Short, so that each scenario takes a few seconds; the default is 5 s. */
const VALIDATION_TIMEOUT = 1_000

/** A dialect that opens connection `n` through `ports[route(n)]`, and sends every other call to the dialect that opened it. */
interface Routed<C> {
  readonly dialect: Dialect<C>
  /** The index of the port each connection was opened through. */
  readonly portOf: Map<C, number>
  /** Which port the next connect goes through. */
  next: number
}

function routed<C>(target: FaultTarget<C>, ports: number[], tag: string): Routed<C> {
  const inner = ports.map((port) => target.dialect(port, tag))
  const first = inner[0]!
  const owner = new Map<C, Dialect<C>>()
  const portOf = new Map<C, number>()
  const of = (connection: C) => owner.get(connection) ?? first
  const route: Routed<C> = {
    portOf,
    next: 0,
    dialect: {
      name: first.name,
      async connect(signal) {
        const index = route.next
        const connection = await inner[index]!.connect(signal)
        owner.set(connection, inner[index]!)
        portOf.set(connection, index)
        return connection
      },
      close: (connection, signal) => of(connection).close(connection, signal),
      ping: (connection, signal) => of(connection).ping!(connection, signal),
      reset: (connection, mode, signal) => of(connection).reset!(connection, mode, signal),
      isDisconnect: (error) => first.isDisconnect!(error),
      watch: (connection, onDeath) => of(connection).watch!(connection, onDeath),
    },
  }
  return route
}

/** Borrows and returns a connection `times` times, so that the pool has timed healthy pings. */
async function warm<C>(target: FaultTarget<C>, pool: Pool<C>, n: number, times = 20) {
  for (let i = 0; i < times; i++) {
    const lease = await pool.acquire()
    await target.query(lease.connection, 'SELECT 1 AS one')
    lease.release()
    await waitFor(() => pool.stats().idle === n, 3_000)
  }
}

async function withProxies<C>(
  r: Rig<C>,
  count: number,
  body: (proxies: FaultProxy[]) => Promise<void>,
): Promise<void> {
  const proxies: FaultProxy[] = []
  try {
    for (let i = 0; i < count; i++) proxies.push(await FaultProxy.start(r.target.serverPort))
    await body(proxies)
  } finally {
    await Promise.all(proxies.map((p) => p.clear()))
    await Promise.all(proxies.map((p) => p.waitForNoLinks(5_000).catch(() => {})))
    for (const p of proxies) expect(p.liveLinks, 'proxy links left').toBe(0)
    await Promise.all(proxies.map((p) => p.close()))
  }
}

function scenarios<C>(target: FaultTarget<C>): void {
  const server = target.label

  // `prePing: 0` after 20 healthy pings (the hedge delay learnt: its floor, 5 ms, on a local
  // network); the default `prePing` (500 ms) on a pool that has timed no ping yet (the initial
  // hedge delay, 100 ms), the connections idle 600 ms as in the report.
  const variants = [
    { label: 'prePing: 0, pings timed', prePing: 0 as const, warm: true, idleMs: 0 },
    { label: 'default prePing, no ping timed yet', prePing: true, warm: false, idleMs: 600 },
  ]
  for (const v of variants)
    it(`15. one half-open of 4 idle (${v.label}): the borrower is served within 1 s; the silent one is destroyed at validationTimeout`, async () => {
      const r = await rig(target)
      try {
        // Ports 0–3: one per idle connection; port 4: new connections.
        await withProxies(r, 5, async (proxies) => {
          const route = routed(
            target,
            proxies.map((p) => p.port),
            r.tag,
          )
          const pool = createPool<C>({
            name: uniqueName('faults_half_open'),
            dialect: route.dialect,
            max: 4,
            prePing: v.prePing,
            validationTimeout: VALIDATION_TIMEOUT,
          })
          const invalidated: Array<{ reason: string; at: number }> = []
          pool.on('invalidate', (e) =>
            invalidated.push({ reason: e.reason, at: performance.now() }),
          )
          let most = 0
          const watch = setInterval(() => {
            most = Math.max(most, pool.stats().total)
          }, 1)
          try {
            // Each held until all four are open, so that each is a connection of its own.
            const held: Lease<C>[] = []
            for (let i = 0; i < 4; i++) {
              route.next = i
              held.push(await pool.acquire())
            }
            for (const lease of held) lease.release()
            await waitFor(() => pool.stats().idle === 4, 3_000)
            route.next = 4
            if (v.warm) await warm(target, pool, 4)
            // The next borrower gets the head of the idle list: find it, and silence its link.
            const peek = await pool.acquire()
            const silent = route.portOf.get(peek.connection)!
            peek.release()
            await waitFor(() => pool.stats().idle === 4, 3_000)
            proxies[silent]!.setBoth({ blackhole: true })
            await sleep(v.idleMs) // deliberate: idle past the prePing threshold
            const started = performance.now()
            const lease = await pool.acquire()
            const servedMs = performance.now() - started
            expect(route.portOf.get(lease.connection)).not.toBe(silent)
            await target.query(lease.connection, 'SELECT 1 AS one')
            const queryDoneMs = performance.now() - started
            lease.release()
            await waitFor(() => invalidated.some((e) => e.reason === 'ping'), 5_000)
            const destroyedMs = invalidated.find((e) => e.reason === 'ping')!.at - started
            const s = pool.stats()
            expect(most).toBeLessThanOrEqual(4)
            report(
              `15 one half-open of 4 idle (${v.label})`,
              server,
              {
                servedMs: Math.round(servedMs * 10) / 10,
                queryDoneMs: Math.round(queryDoneMs * 10) / 10,
                silentDestroyedMs: Math.round(destroyedMs),
                validationTimeout: VALIDATION_TIMEOUT,
                created: s.created,
                mostOpen: most,
              },
              {
                served: { value: servedMs, target: 1_000, bound: VALIDATION_TIMEOUT - 100 },
                destroyed: {
                  value: destroyedMs,
                  target: VALIDATION_TIMEOUT + 50,
                  bound: VALIDATION_TIMEOUT + 1_000,
                },
              },
            )
            expect(destroyedMs).toBeGreaterThanOrEqual(VALIDATION_TIMEOUT - 5)
          } finally {
            clearInterval(watch)
            await pool.close({ timeout: 2_000 })
          }
        })
      } finally {
        await r.finish()
      }
    })

  it('16. every idle connection half-open (pool full): the borrower is served within validationTimeout plus one connect', async () => {
    const r = await rig(target)
    try {
      // Port 0: the 4 idle connections; port 1: new connections.
      await withProxies(r, 2, async (proxies) => {
        const route = routed(
          target,
          proxies.map((p) => p.port),
          r.tag,
        )
        const pool = createPool<C>({
          name: uniqueName('faults_half_open'),
          dialect: route.dialect,
          max: 4,
          prePing: 0,
          validationTimeout: VALIDATION_TIMEOUT,
        })
        const connects: number[] = []
        pool.on('connect', (e) => connects.push(e.durationMs))
        let most = 0
        const watch = setInterval(() => {
          most = Math.max(most, pool.stats().total)
        }, 1)
        try {
          route.next = 0
          const held = await Promise.all(Array.from({ length: 4 }, () => pool.acquire()))
          for (const lease of held) lease.release()
          await waitFor(() => pool.stats().idle === 4, 3_000)
          await warm(target, pool, 4)
          route.next = 1
          proxies[0]!.setBoth({ blackhole: true })
          const started = performance.now()
          const lease = await pool.acquire()
          const servedMs = performance.now() - started
          expect(route.portOf.get(lease.connection)).toBe(1)
          await target.query(lease.connection, 'SELECT 1 AS one')
          lease.release()
          const connectMs = connects.at(-1)!
          const s = pool.stats()
          expect(most).toBeLessThanOrEqual(4)
          report(
            '16 every idle connection half-open',
            server,
            {
              servedMs: Math.round(servedMs),
              validationTimeout: VALIDATION_TIMEOUT,
              connectMs: Math.round(connectMs * 10) / 10,
              created: s.created,
              invalidated: s.invalidated,
              mostOpen: most,
            },
            {
              served: {
                value: servedMs,
                target: VALIDATION_TIMEOUT + connectMs + 10,
                bound: VALIDATION_TIMEOUT + 2_000,
              },
            },
          )
          await waitFor(() => pool.stats().validating === 0, 5_000)
        } finally {
          clearInterval(watch)
          await pool.close({ timeout: 2_000 })
        }
      })
    } finally {
      await r.finish()
    }
  })
}

describeOnServer(pgStatus, 'faults: half-open idle connections on PostgreSQL', () =>
  scenarios(postgresFaultTarget(pgStatus)),
)
describeOnServer(myStatus, 'faults: half-open idle connections on MariaDB', () =>
  scenarios(mysqlFaultTarget(myStatus)),
)
