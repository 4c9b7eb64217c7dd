import { describe, expect, it } from 'vitest'
import { InvalidOptionError, type Lease } from '../../src/index.js'
import { tick } from '../support/clock.js'
import type { FakeConnection } from '../support/fake-dialect.js'
import { useFakePools } from '../support/fake-pools.js'
import { trackProcessErrors } from '../support/process-errors.js'

/** Awaits `promise` and returns its rejection, which must be an `InvalidOptionError`. */
async function invalid(promise: Promise<unknown>): Promise<InvalidOptionError> {
  const error = await promise.then(
    () => {
      throw new Error('expected a rejection')
    },
    (reason: unknown) => reason,
  )
  expect(error).toBeInstanceOf(InvalidOptionError)
  return error as InvalidOptionError
}

describe('bad input to a pool', () => {
  const fake = useFakePools()

  it('acquire({ signal: new AbortController() }) rejected with a TypeError, left a waiter behind, and the next connect crashed the process', async () => {
    const errors = trackProcessErrors()
    try {
      const pool = fake.make({ max: 1 })
      const held = await pool.acquire()
      const error = await invalid(
        pool.acquire({ signal: new AbortController() as unknown as AbortSignal }),
      )
      expect(error.option).toBe('signal')
      expect(error.message).toMatch(
        /Invalid option signal: an object; expected an AbortSignal: pass controller\.signal, not the AbortController/,
      )
      expect(pool.stats().waiting).toBe(0)
      // Serving the next waiter must not meet the half-queued one.
      held.release()
      const next = await pool.acquire()
      next.release()
      await tick(10)
      expect(pool.stats()).toMatchObject({ waiting: 0, leased: 0, acquired: 2 })
    } finally {
      errors.stop()
    }
    expect(errors.errors).toEqual([])
  })

  it('acquire() accepted a signal that is not an AbortSignal', async () => {
    const pool = fake.make()
    for (const signal of ['abort', 5, {}, { aborted: false }]) {
      const error = await invalid(pool.acquire({ signal: signal as unknown as AbortSignal }))
      expect(error.option).toBe('signal')
      expect(error.message).toContain('expected an AbortSignal or undefined')
    }
    expect(pool.stats()).toMatchObject({ waiting: 0, connecting: 0, total: 0 })
  })

  it('acquire() and close() accepted unknown keys such as { timeot: 5 }', async () => {
    const pool = fake.make()
    const acquireError = await invalid(pool.acquire({ timeot: 5 } as never))
    expect(acquireError.option).toBe('timeot')
    expect(acquireError.message).toContain(
      'Unknown option timeot passed to acquire; did you mean timeout? (known options are signal, timeout, shared)',
    )
    const useError = await invalid(pool.use(() => 1, { sginal: undefined } as never))
    expect(useError.option).toBe('sginal')
    const closeError = await invalid(pool.close({ timeot: 5 } as never))
    expect(closeError.option).toBe('timeot')
    expect(closeError.message).toContain('Unknown option timeot passed to close')
    expect(closeError.message).toContain('known options are timeout')
    // The bad close() closed nothing.
    expect(pool.closed).toBe(false)
    expect(pool.stats()).toMatchObject({ waiting: 0, connecting: 0, total: 0 })
  })

  it('acquire(), use() and close() accepted options that are not an object', async () => {
    const pool = fake.make()
    for (const options of [5, 'fast', null, [], () => {}]) {
      expect((await invalid(pool.acquire(options as never))).option).toBe('options')
      expect((await invalid(pool.use(() => 1, options as never))).option).toBe('options')
      expect((await invalid(pool.close(options as never))).option).toBe('options')
    }
    expect(pool.closed).toBe(false)
    expect(pool.stats()).toMatchObject({ waiting: 0, total: 0 })
  })

  it("pool.use('select 1') threw a raw TypeError: fn is not a function", async () => {
    const pool = fake.make()
    const error = await invalid(pool.use('select 1' as never))
    expect(error.option).toBe('fn')
    expect(error.message).toMatch(
      /Invalid argument fn of use\(\): "select 1"; expected a function \(connection\) => result/,
    )
    // Checked before the acquire: nothing was borrowed or opened.
    expect(pool.stats()).toMatchObject({ acquired: 0, total: 0, waiting: 0 })
  })

  it('pool.options showed prePingThreshold and name: undefined where the option is prePing and stats().name is pool-N', async () => {
    const unnamed = fake.make({ prePing: 250 })
    expect(unnamed.options.name).toBe(unnamed.stats().name)
    expect(unnamed.options.prePing).toBe(250)
    expect(unnamed.options).not.toHaveProperty('prePingThreshold')
    const named = fake.make({ name: 'orders', prePing: false })
    expect(named.options).toMatchObject({ name: 'orders', prePing: false })
    // Every key is an option a caller can pass, and passing them back makes the same pool.
    const again = fake.make({ ...named.options, name: 'orders-2' })
    expect({ ...again.options, name: 'orders' }).toEqual(named.options)
  })

  it('openScope(null) threw a raw TypeError, and scope.end() and scope.run() took anything', async () => {
    const pool = fake.make()
    expect(() => pool.openScope(null as never)).toThrow(InvalidOptionError)
    expect(() => pool.openScope(5 as never)).toThrow(/expected an object/)
    const scope = pool.openScope()
    expect(() => scope.run('x' as never)).toThrow(/Invalid argument fn of run\(\)/)
    const error = await invalid(scope.end('commmit' as never))
    expect(error.option).toBe('outcome')
    await scope.end()
  })

  it('a bad acquire() inside a request scope is rejected as outside one', async () => {
    const pool = fake.make()
    const scope = pool.openScope()
    const lease = (await scope.run(() => pool.acquire())) as Lease<FakeConnection>
    lease.release()
    const error = await invalid(
      scope.run(() => pool.acquire({ signal: new AbortController() as never })),
    )
    expect(error.option).toBe('signal')
    await scope.end()
    expect(pool.stats()).toMatchObject({ leased: 0, waiting: 0 })
  })
})
