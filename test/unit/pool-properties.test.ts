import fc from 'fast-check'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createPool, type Lease } from '../../src/index.js'
import { tick, useFakeClock } from '../support/clock.js'
import { type FakeConnection, FakeDialect, FakeDisconnect } from '../support/fake-dialect.js'
import { checkInvariants } from '../support/invariants.js'

type Op =
  | { kind: 'acquire' }
  | { kind: 'acquireAbortable' }
  | { kind: 'release'; pick: number }
  | { kind: 'destroy'; pick: number; disconnect: boolean }
  | { kind: 'abort'; pick: number }
  | { kind: 'advance'; ms: number }
  | { kind: 'connectFailure'; on: boolean }
  | { kind: 'pingFailure'; pick: number }
  | { kind: 'dirty'; pick: number }

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.constant({ kind: 'acquire' } as const) },
  { weight: 2, arbitrary: fc.constant({ kind: 'acquireAbortable' } as const) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('release' as const), pick: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('destroy' as const),
      pick: fc.nat(),
      disconnect: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('abort' as const), pick: fc.nat() }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('advance' as const),
      ms: fc.integer({ min: 0, max: 400 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('connectFailure' as const), on: fc.boolean() }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('pingFailure' as const), pick: fc.nat() }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('dirty' as const), pick: fc.nat() }) },
)

const config = fc.record({
  max: fc.integer({ min: 1, max: 4 }),
  maxOverflow: fc.integer({ min: 0, max: 2 }),
  min: fc.integer({ min: 0, max: 1 }),
  acquireTimeout: fc.integer({ min: 50, max: 500 }),
  prePing: fc.oneof(fc.constant(false), fc.constant(0), fc.constant(100)),
  connectDelay: fc.integer({ min: 0, max: 30 }),
  resetDelay: fc.integer({ min: 0, max: 5 }),
  order: fc.constantFrom('lifo' as const, 'fifo' as const),
})

interface Pending {
  seq: number
  settled: boolean
  lease?: Lease<FakeConnection>
  controller?: AbortController
}

afterEach(() => {
  vi.useRealTimers()
})

describe('pool invariants under random operations', () => {
  it('bounds, no double lending, counts add up, FIFO, nothing lost', async () => {
    await fc.assert(
      fc.asyncProperty(config, fc.array(op, { maxLength: 60 }), async (cfg, ops) => {
        useFakeClock()
        const dialect = new FakeDialect()
        dialect.connectDelay = cfg.connectDelay
        dialect.resetDelay = cfg.resetDelay
        dialect.syncReset = cfg.resetDelay === 0
        const pool = createPool<FakeConnection>({
          dialect,
          max: cfg.max,
          maxOverflow: cfg.maxOverflow,
          min: Math.min(cfg.min, cfg.max),
          acquireTimeout: cfg.acquireTimeout,
          prePing: cfg.prePing,
          order: cfg.order,
        })
        const pending: Pending[] = []
        const held: Lease<FakeConnection>[] = []
        let seq = 0
        const served: number[] = []

        const start = (abortable: boolean) => {
          const entry: Pending = { seq: seq++, settled: false }
          if (abortable) entry.controller = new AbortController()
          pending.push(entry)
          pool.acquire({ signal: entry.controller?.signal }).then(
            (lease) => {
              entry.settled = true
              entry.lease = lease
              // FIFO: nobody who asked earlier is still waiting when a later caller is served.
              for (const other of pending) {
                if (other.seq < entry.seq) expect(other.settled).toBe(true)
              }
              served.push(entry.seq)
              held.push(lease)
            },
            () => {
              entry.settled = true
            },
          )
        }

        try {
          for (const step of ops) {
            switch (step.kind) {
              case 'acquire':
                start(false)
                break
              case 'acquireAbortable':
                start(true)
                break
              case 'release': {
                const lease = held.splice(step.pick % Math.max(1, held.length), 1)[0]
                lease?.release()
                break
              }
              case 'destroy': {
                const lease = held.splice(step.pick % Math.max(1, held.length), 1)[0]
                lease?.destroy(step.disconnect ? new FakeDisconnect('gone') : new Error('bad'))
                break
              }
              case 'abort': {
                const open = pending.filter((p) => !p.settled && p.controller !== undefined)
                open[step.pick % Math.max(1, open.length)]?.controller?.abort(new Error('aborted'))
                break
              }
              case 'advance':
                await tick(step.ms)
                break
              case 'connectFailure':
                dialect.connectError = step.on ? new Error('refused') : undefined
                break
              case 'pingFailure': {
                const open = dialect.open
                const victim = open[step.pick % Math.max(1, open.length)]
                if (victim !== undefined) dialect.killSilently(victim)
                break
              }
              case 'dirty': {
                const lease = held[step.pick % Math.max(1, held.length)]
                if (lease !== undefined) lease.connection.inTransaction = true
                break
              }
            }
            await tick(0)
            const stats = checkInvariants(pool, dialect)
            // No connection is lent twice at once.
            const lent = held.map((lease) => lease.connection)
            expect(new Set(lent).size).toBe(lent.length)
            expect(stats.leased).toBe(held.length)
            // Nobody is handed a connection that a previous borrower left dirty.
            // (A connection made dirty while held is cleaned before the next borrower.)
            expect(stats.waiting).toBe(pending.filter((p) => !p.settled).length)
          }

          // Drain: heal the server, return everything, let every waiter settle.
          dialect.connectError = undefined
          for (const lease of held.splice(0)) lease.release()
          for (let i = 0; i < 50 && pending.some((p) => !p.settled); i++) {
            await tick(100)
            for (const lease of held.splice(0)) lease.release()
          }
          expect(pending.every((p) => p.settled)).toBe(true)
          for (const entry of pending) {
            if (entry.lease !== undefined) expect(entry.lease.active).toBe(false)
          }
          // Every lent connection came back clean.
          await tick(50)
          const stats = checkInvariants(pool, dialect)
          expect(stats.leased).toBe(0)
          expect(stats.acquired).toBe(served.length)
          expect(stats.released).toBe(served.length)
          for (const connection of dialect.open) expect(connection.inTransaction).toBe(false)
          await pool.close({ timeout: 1000 })
          await tick(0)
          // Nothing lost: every connection ever opened is closed.
          expect(dialect.open).toEqual([])
          expect(pool.stats().total).toBe(0)
        } finally {
          void pool.destroy()
          await tick(0)
          vi.useRealTimers()
        }
      }),
      { numRuns: Number(process.env.FC_NUM_RUNS ?? 300) },
    )
  })

  it('with sharing and sealing callers: bounds, counts add up, nothing lost, and the seals all lift', async () => {
    type ShareOp =
      | { kind: 'acquire'; shared: boolean | 'last' }
      | { kind: 'release'; pick: number }
      | { kind: 'destroy'; pick: number; reason: boolean }
      | { kind: 'advance'; ms: number }
    const shareOp: fc.Arbitrary<ShareOp> = fc.oneof(
      {
        weight: 6,
        arbitrary: fc.record({
          kind: fc.constant('acquire' as const),
          shared: fc.constantFrom<boolean | 'last'>(true, true, 'last', false),
        }),
      },
      {
        weight: 5,
        arbitrary: fc.record({ kind: fc.constant('release' as const), pick: fc.nat() }),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          kind: fc.constant('destroy' as const),
          pick: fc.nat(),
          reason: fc.boolean(),
        }),
      },
      {
        weight: 2,
        arbitrary: fc.record({
          kind: fc.constant('advance' as const),
          ms: fc.integer({ min: 0, max: 300 }),
        }),
      },
    )
    const shareConfig = fc.record({
      max: fc.integer({ min: 1, max: 4 }),
      maxOverflow: fc.integer({ min: 0, max: 1 }),
      maxPipeline: fc.integer({ min: 2, max: 4 }),
      acquireTimeout: fc.integer({ min: 50, max: 500 }),
      connectDelay: fc.integer({ min: 0, max: 20 }),
    })
    await fc.assert(
      fc.asyncProperty(shareConfig, fc.array(shareOp, { maxLength: 60 }), async (cfg, ops) => {
        useFakeClock()
        const dialect = new FakeDialect()
        dialect.enablePipeline()
        dialect.connectDelay = cfg.connectDelay
        const pool = createPool<FakeConnection>({
          dialect,
          max: cfg.max,
          maxOverflow: cfg.maxOverflow,
          maxPipeline: cfg.maxPipeline,
          acquireTimeout: cfg.acquireTimeout,
        })
        const held: Array<{ lease: Lease<FakeConnection>; shared: boolean | 'last' }> = []
        let asked = 0
        let settled = 0
        let served = 0
        const start = (shared: boolean | 'last') => {
          asked++
          pool.acquire({ shared }).then(
            (lease) => {
              settled++
              served++
              held.push({ lease, shared })
            },
            () => {
              settled++
            },
          )
        }
        const take = (pick: number) => held.splice(pick % Math.max(1, held.length), 1)[0]?.lease
        try {
          for (const step of ops) {
            switch (step.kind) {
              case 'acquire':
                start(step.shared)
                break
              case 'release':
                take(step.pick)?.release()
                break
              case 'destroy':
                take(step.pick)?.destroy(step.reason ? new Error('bad') : undefined)
                break
              case 'advance':
                await tick(step.ms)
                break
            }
            await tick(0)
            const stats = checkInvariants(pool, dialect)
            // Never more connections than max + maxOverflow, never more sharers on one than
            // maxPipeline, and an exclusive lease or a sealing one has nobody behind it.
            expect(stats.total).toBeLessThanOrEqual(cfg.max + cfg.maxOverflow)
            const live = held.filter((h) => h.lease.active)
            const byConnection = new Map<FakeConnection, Array<boolean | 'last'>>()
            for (const h of live) {
              const list = byConnection.get(h.lease.connection) ?? []
              list.push(h.shared)
              byConnection.set(h.lease.connection, list)
            }
            for (const list of byConnection.values()) {
              expect(list.length).toBeLessThanOrEqual(cfg.maxPipeline)
              if (list.includes(false)) expect(list).toHaveLength(1)
            }
            expect(stats.waiting).toBe(asked - settled)
          }

          // Drain: give everything back and let every waiter settle.
          for (let i = 0; i < 50 && (held.length > 0 || settled < asked); i++) {
            for (const h of held.splice(0)) h.lease.release()
            await tick(100)
          }
          expect(settled).toBe(asked)
          const stats = checkInvariants(pool, dialect)
          expect(stats.leased).toBe(0)
          expect(stats.pipelined).toBe(0)
          expect(stats.acquired).toBe(served)
          // The seals all lifted: as many sealing callers as the pool has connections are each
          // lent one at once.
          const capacity = cfg.max + cfg.maxOverflow
          const sealers: Lease<FakeConnection>[] = []
          for (let i = 0; i < capacity; i++) {
            void pool.acquire({ shared: 'last', timeout: 1000 }).then((l) => sealers.push(l))
          }
          await tick(100)
          expect(new Set(sealers.map((l) => l.connection)).size).toBe(capacity)
          for (const lease of sealers) lease.release()
          await pool.close({ timeout: 1000 })
          await tick(0)
          expect(dialect.open).toEqual([])
        } finally {
          void pool.destroy()
          await tick(0)
          vi.useRealTimers()
        }
      }),
      { numRuns: Number(process.env.FC_NUM_RUNS ?? 200) },
    )
  })
})
