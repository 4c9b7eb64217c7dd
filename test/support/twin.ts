import { describe, expect, it } from 'vitest'

/** The two modules a twin test runs against: the driver's own, and lifeguard's drop-in facade. */
export type TwinSide = 'driver' | 'facade'

/** Options of one twin test. */
export interface TwinOptions {
  /** Each run's timeout, in ms; vitest's default when left out. */
  readonly timeout?: number
}

/**
 * Registers a twin test: `scenario` runs once against the driver's own module and once against
 * lifeguard's facade. Each run must pass its own assertions, and then what the two runs return
 * (their observations: counts, event orders, error codes, rows) must be equal, so that the facade
 * is held to what the driver does rather than to what we believe it does.
 *
 * Call it inside a `describe`/`describeOnServer` block. A scenario returns only what a user of
 * the driver can observe; timings go in its own assertions, with bounds loose enough for CI.
 *
 * @example
 * ```ts
 * twin('D. release(err) drops the client from totalCount at once', { driver: pg, facade }, async (m) => {
 *   const pool = new m.Pool({ connectionString: PG_URL })
 *   const client = await pool.connect()
 *   client.release(new Error('broken'))
 *   const total = pool.totalCount
 *   await pool.end()
 *   return { total }
 * })
 * ```
 */
export function twin<M, R>(
  title: string,
  modules: Readonly<Record<TwinSide, M>>,
  scenario: (module: M, side: TwinSide) => Promise<R>,
  options: TwinOptions = {},
): void {
  describe(title, () => {
    const seen = new Map<TwinSide, R>()
    for (const side of ['driver', 'facade'] as const) {
      it(
        side === 'driver' ? "on the driver's own pool" : 'on the lifeguard facade',
        async () => {
          seen.set(side, await scenario(modules[side], side))
        },
        options.timeout,
      )
    }
    it('the facade agrees with the driver', () => {
      expect([...seen.keys()].sort(), 'both runs must have passed').toEqual(['driver', 'facade'])
      expect(seen.get('facade')).toEqual(seen.get('driver'))
    })
  })
}
