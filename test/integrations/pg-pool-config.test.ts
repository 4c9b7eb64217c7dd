import pg from 'pg'
import { describe, expect, it } from 'vitest'
import { Client, lifeguardOf, Pool } from '../../src/compat/pg.js'
import { InvalidOptionError } from '../../src/index.js'
import { trackProcessErrors } from '../support/process-errors.js'
import { pendingAfter } from '../support/promises.js'
import { describeOnServer, probe } from '../support/servers.js'
import { PG_URL } from './support.js'

// pg's pool config as pg reads it. Environment variables are strings, and pg-pool uses its numbers
// loosely (`clients.length >= max`, `setTimeout(fn, idleTimeoutMillis)`), so a numeric string works
// as its number there: each accepted form runs on pg's own Pool and on the facade, which must agree.

const MODULES = [
  ['pg', pg.Pool],
  ['lifeguard/pg', Pool],
] as const

/** Resolves once `check()` holds, or rejects after `ms`. */
async function eventually(check: () => boolean, ms: number): Promise<number> {
  const started = performance.now()
  while (!check()) {
    if (performance.now() - started > ms) throw new Error(`not within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  return performance.now() - started
}

function pid(client: object): number {
  return (client as { processID: number }).processID
}

describeOnServer(
  await probe('postgres'),
  'pg pool options given as strings, twinned with pg',
  () => {
    for (const [module, PoolClass] of MODULES) {
      it(`${module}: max: '3' lends three clients and makes the fourth caller wait`, async () => {
        const pool = new PoolClass({ connectionString: PG_URL, max: '3' as unknown as number })
        try {
          expect(pool.options.max).toBe('3') // pg keeps the value as given
          const clients = await Promise.all([pool.connect(), pool.connect(), pool.connect()])
          const fourth = pool.connect()
          expect(await pendingAfter(fourth, 200)).toBe(true)
          expect(pool.totalCount).toBe(3)
          clients[0]!.release()
          ;(await fourth).release()
          for (const client of clients.slice(1)) client.release()
          if (module === 'lifeguard/pg') expect(lifeguardOf(pool).options.max).toBe(3)
        } finally {
          await pool.end()
        }
      })

      it(`${module}: idleTimeoutMillis: '300' closes an idle client after about 300 ms`, async () => {
        const pool = new PoolClass({
          connectionString: PG_URL,
          idleTimeoutMillis: '300' as unknown as number,
        })
        try {
          ;(await pool.connect()).release()
          // Deliberate: the client must still be there 100 ms on (the string "0" would close it at once).
          await new Promise((resolve) => setTimeout(resolve, 100))
          expect(pool.totalCount).toBe(1)
          const waited = await eventually(() => pool.totalCount === 0, 3_000)
          expect(waited).toBeGreaterThan(100)
        } finally {
          await pool.end()
        }
      })

      it(`${module}: connectionTimeoutMillis: '500' gives up on a full pool after about 500 ms`, async () => {
        const pool = new PoolClass({
          connectionString: PG_URL,
          max: 1,
          connectionTimeoutMillis: '500' as unknown as number,
        })
        try {
          const held = await pool.connect()
          const started = performance.now()
          await expect(pool.connect()).rejects.toThrow(/timeout|timed out/i)
          const waited = performance.now() - started
          expect(waited).toBeGreaterThanOrEqual(450)
          expect(waited).toBeLessThan(2_500)
          held.release()
        } finally {
          await pool.end()
        }
      })

      it(`${module}: maxUses: '2' replaces a client after its second use`, async () => {
        const pool = new PoolClass({
          connectionString: PG_URL,
          max: 1,
          maxUses: '2' as unknown as number,
        })
        try {
          const first = await pool.connect()
          const backend = pid(first)
          first.release()
          const second = await pool.connect()
          expect(pid(second)).toBe(backend)
          second.release()
          const third = await pool.connect()
          expect(pid(third)).not.toBe(backend)
          third.release()
        } finally {
          await pool.end()
        }
      })

      it(`${module}: 0, null, '' and NaN for max mean pg's default of 10`, async () => {
        for (const max of [0, null, '', Number.NaN]) {
          const pool = new PoolClass({ connectionString: PG_URL, max: max as number })
          expect(pool.options.max).toBe(10)
          if (module === 'lifeguard/pg') expect(lifeguardOf(pool).options.max).toBe(10)
          await pool.end()
        }
      })
    }

    it("lifeguard/pg: maxLifetimeSeconds given as 0 is pg's no limit, as '60' is a minute; left out, lifeguard's 30 min apply", async () => {
      const pools = [0, null, '60', undefined].map(
        (maxLifetimeSeconds) =>
          new Pool({ connectionString: PG_URL, maxLifetimeSeconds: maxLifetimeSeconds as number }),
      )
      try {
        expect(pools.map((pool) => lifeguardOf(pool).options.maxLifetime)).toEqual([
          Number.POSITIVE_INFINITY,
          Number.POSITIVE_INFINITY,
          60_000,
          1_800_000,
        ])
      } finally {
        await Promise.all(pools.map((pool) => pool.end()))
      }
    })

    // Why these are refused rather than passed on: pg reads them as something other than what they
    // say. The string "0" is truthy, so pg keeps it, and then compares and times with it as 0.
    it('on pg, max: "0" never lends and idleTimeoutMillis: "0" closes idle clients at once', async () => {
      const never = new pg.Pool({ connectionString: PG_URL, max: '0' as unknown as number })
      expect(await pendingAfter(never.connect(), 300)).toBe(true)
      const eager = new pg.Pool({
        connectionString: PG_URL,
        idleTimeoutMillis: '0' as unknown as number,
      })
      ;(await eager.connect()).release()
      await eventually(() => eager.totalCount === 0, 200)
      await Promise.all([never.end(), eager.end()])
    })
  },
)

describe('pg pool options lifeguard/pg refuses, at new Pool()', () => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['max', { max: '0' }, /max: "0"; expected a number ≥ 1/],
    ['max', { max: 'ten' }, /max: "ten"/],
    ['max', { max: -1 }, /max: -1/],
    ['max', { max: true }, /max: true/],
    ['poolSize', { poolSize: '0' }, /poolSize: "0"/],
    ['min', { min: -1 }, /min: -1; expected a number ≥ 0/],
    [
      'idleTimeoutMillis',
      { idleTimeoutMillis: '0' },
      /idleTimeoutMillis: "0"; expected .* or 0 or null for no idle timeout/,
    ],
    ['idleTimeoutMillis', { idleTimeoutMillis: -5 }, /idleTimeoutMillis: -5/],
    [
      'idleTimeoutMillis',
      { idleTimeoutMillis: Number.POSITIVE_INFINITY },
      /idleTimeoutMillis: Infinity/,
    ],
    [
      'connectionTimeoutMillis',
      { connectionTimeoutMillis: 'soon' },
      /connectionTimeoutMillis: "soon"; .*or 0 to wait for ever/,
    ],
    ['maxLifetimeSeconds', { maxLifetimeSeconds: '0' }, /maxLifetimeSeconds: "0"/],
    ['maxUses', { maxUses: '0' }, /maxUses: "0"/],
    ['onConnect', { onConnect: 42 }, /onConnect: 42; expected a function/],
    ['stream', { stream: 42 }, /stream: 42; expected a function returning a socket, or a socket/],
    ['stream', { stream: {} }, /stream: an object; expected/],
    ['lifeguard', { lifeguard: 'max=3' }, /lifeguard: "max=3"; expected an object/],
    ['maxOverflow', { lifeguard: { maxOverflow: -1 } }, /maxOverflow: -1/],
  ]
  for (const [option, config, message] of cases) {
    it(`${JSON.stringify(config)} throws InvalidOptionError naming ${option}`, () => {
      let thrown: unknown
      try {
        new Pool({ connectionString: PG_URL, ...config })
      } catch (error) {
        thrown = error
      }
      expect(thrown).toBeInstanceOf(InvalidOptionError)
      expect((thrown as InvalidOptionError).code).toBe('LIFEGUARD_INVALID_OPTION')
      expect((thrown as InvalidOptionError).option).toBe(option)
      expect((thrown as Error).message).toMatch(message)
    })
  }

  it('a config that is not an object throws InvalidOptionError, where pg throws a TypeError', () => {
    expect(() => new pg.Pool(42 as never)).toThrow(TypeError)
    expect(() => new Pool(42 as never)).toThrow(InvalidOptionError)
    expect(() => new Pool(PG_URL as never)).toThrow(/connectionString/)
  })

  it('a stream function that returns no socket made the pg dialect throw where nobody caught it (unhandled rejections)', async () => {
    const processErrors = trackProcessErrors()
    const pool = new Pool({
      host: '127.0.0.1',
      connectionTimeoutMillis: 300,
      stream: (() => ({})) as never,
    })
    try {
      const error = await pool.query('SELECT 1').then(
        () => undefined,
        (reason: unknown) => reason,
      )
      // The connect failed on the check, before any socket, and that error reached the caller.
      expect((error as { code?: string }).code).toMatch(/^LIFEGUARD_/)
      let cause: unknown = error
      while (cause !== undefined && !(cause instanceof InvalidOptionError)) {
        cause = (cause as { cause?: unknown }).cause
      }
      expect(cause).toBeInstanceOf(InvalidOptionError)
      expect((cause as InvalidOptionError).option).toBe('stream')
      // The same check at new Client(): pg calls the function there.
      expect(() => new Client({ stream: (() => 7) as never })).toThrow(/stream: 7/)
    } finally {
      await pool.end()
      // Deliberate: an unhandled rejection is reported a turn or two later; there is no event
      // for its absence.
      await new Promise((resolve) => setTimeout(resolve, 20))
      processErrors.stop()
    }
    expect(processErrors.errors).toEqual([])
  })

  it('a Client with bad lifeguard options throws at new Client(), not at connect()', () => {
    expect(() => new Client({ connectionString: PG_URL, lifeguard: { max: 0 } })).toThrow(
      /Invalid option max: 0/,
    )
    expect(() => new Client({ lifeguard: 7 as never })).toThrow(InvalidOptionError)
  })
})
