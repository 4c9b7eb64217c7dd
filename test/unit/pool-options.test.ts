import { describe, expect, it } from 'vitest'
import { createPool, InvalidOptionError, type PoolOptions } from '../../src/index.js'
import { type FakeConnection, FakeDialect } from '../support/fake-dialect.js'

function attempt(options: Record<string, unknown>): InvalidOptionError {
  try {
    void createPool({
      dialect: new FakeDialect(),
      ...options,
    } as PoolOptions<FakeConnection>).destroy()
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidOptionError)
    return error as InvalidOptionError
  }
  throw new Error(`createPool accepted ${JSON.stringify(options)}`)
}

describe('pool options', () => {
  it('fills in the documented defaults', async () => {
    const pool = createPool({ dialect: new FakeDialect() })
    expect(pool.options).toMatchObject({
      max: 10,
      maxOverflow: 0,
      min: 0,
      minMode: 'fill',
      connectErrors: 'retry',
      failFast: true,
      failFastAfter: 5_000,
      acquireTimeout: 30_000,
      maxWaiting: Number.POSITIVE_INFINITY,
      connectTimeout: 10_000,
      validationTimeout: 5_000,
      maxLifetime: 1_800_000,
      idleTimeout: 600_000,
      prePing: 500,
      keepaliveInterval: 0,
      resetOnRelease: 'rollback',
      order: 'lifo',
      leakDetectionThreshold: 0,
      allowExitOnIdle: true,
      name: pool.stats().name,
    })
    expect(pool.options.name).toMatch(/^pool-\d+$/)
    await pool.destroy()
  })

  it.each([
    [{ max: 0 }, 'max', /Invalid option max: 0; expected an integer ≥ 1/],
    [{ max: 2.5 }, 'max', /Invalid option max: 2.5; expected an integer ≥ 1/],
    [{ max: '10' }, 'max', /Invalid option max: "10"; expected an integer ≥ 1/],
    [{ maxOverflow: -1 }, 'maxOverflow', /maxOverflow: -1; expected an integer ≥ 0/],
    [{ min: 5, max: 2 }, 'min', /Invalid option min: 5; expected an integer from 0 to max \(2\)/],
    [
      { acquireTimeout: 0 },
      'acquireTimeout',
      /acquireTimeout: 0; expected a number of milliseconds from 1 to 2147483647/,
    ],
    [{ acquireTimeout: -1 }, 'acquireTimeout', /acquireTimeout: -1; expected .* or Infinity/],
    [{ connectTimeout: 3e9 }, 'connectTimeout', /connectTimeout: 3000000000/],
    [
      { validationTimeout: 0 },
      'validationTimeout',
      /validationTimeout: 0; expected a number of milliseconds from 1 to 2147483647/,
    ],
    [{ maxWaiting: -1 }, 'maxWaiting', /maxWaiting: -1; expected an integer ≥ 0/],
    [
      { maxLifetime: -5 },
      'maxLifetime',
      /maxLifetime: -5; expected a number of milliseconds up to 2147483647, or 0 or Infinity for off/,
    ],
    [{ idleTimeout: Number.NaN }, 'idleTimeout', /idleTimeout: NaN/],
    [
      { prePing: 'yes' },
      'prePing',
      /prePing: "yes"; expected true, false, or a number of milliseconds ≥ 0/,
    ],
    [{ prePing: -1 }, 'prePing', /prePing: -1/],
    [{ keepaliveInterval: -1 }, 'keepaliveInterval', /keepaliveInterval: -1/],
    [
      { resetOnRelease: 'discard' },
      'resetOnRelease',
      /resetOnRelease: "discard"; expected one of "rollback", "session", false/,
    ],
    [{ resetOnRelease: true }, 'resetOnRelease', /resetOnRelease: true/],
    [{ onConnect: 'SET x' }, 'onConnect', /onConnect: "SET x"; expected a function/],
    [{ order: 'random' }, 'order', /order: "random"; expected one of "lifo", "fifo"/],
    [{ minMode: 'eager' }, 'minMode', /minMode: "eager"; expected one of "fill", "floor"/],
    [
      { connectErrors: true },
      'connectErrors',
      /connectErrors: true; expected one of "retry", "reject"/,
    ],
    [{ failFast: 'yes' }, 'failFast', /Invalid option failFast: "yes"; expected true or false/],
    [
      { failFastAfter: -1 },
      'failFastAfter',
      /failFastAfter: -1; expected a number of milliseconds from 0 to 2147483647, or Infinity/,
    ],
    [{ leakDetectionThreshold: -1 }, 'leakDetectionThreshold', /leakDetectionThreshold: -1/],
    [{ name: 42 }, 'name', /Invalid option name: 42; expected a string/],
    [{ allowExitOnIdle: 'no' }, 'allowExitOnIdle', /allowExitOnIdle: "no"; expected true or false/],
    [{ dialect: {} }, 'dialect', /Invalid option dialect: an object; expected a Dialect/],
  ])(
    'rejects %j at construction, naming the option, the value and what is allowed',
    (options, option, message) => {
      const error = attempt(options)
      expect(error.option).toBe(option)
      expect(error.code).toBe('LIFEGUARD_INVALID_OPTION')
      expect(error.message).toMatch(message)
    },
  )

  it.each([
    ['maxOverflows', 'maxOverflow'],
    ['acquireTimeoutMillis', 'acquireTimeout'],
    ['idle_timeout', 'idleTimeout'],
    ['prePIng', 'prePing'],
    ['pool_size', undefined],
  ])('rejects the unknown key %s, suggesting %s', (key, suggestion) => {
    const error = attempt({ [key]: 1 })
    expect(error.option).toBe(key)
    expect(error.message).toContain(`Unknown option ${key}`)
    if (suggestion !== undefined) expect(error.message).toContain(`did you mean ${suggestion}?`)
    else expect(error.message).toContain('known options are')
  })

  it('accepts the off values: 0 or Infinity for lifetimes, false for prePing and reset', async () => {
    const pool = createPool({
      dialect: new FakeDialect(),
      maxLifetime: 0,
      idleTimeout: Number.POSITIVE_INFINITY,
      prePing: false,
      resetOnRelease: false,
      maxWaiting: Number.POSITIVE_INFINITY,
      acquireTimeout: Number.POSITIVE_INFINITY,
    })
    expect(pool.options).toMatchObject({
      maxLifetime: Number.POSITIVE_INFINITY,
      idleTimeout: Number.POSITIVE_INFINITY,
      prePing: false,
      resetOnRelease: false,
    })
    await pool.destroy()
  })
})
