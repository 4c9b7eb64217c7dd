import { inspect } from 'node:util'
import { describe, expect, it } from 'vitest'
import { redisBudget } from '../../src/budget/redis.js'
import { InvalidOptionError } from '../../src/index.js'

/** A client of neither library's full shape: only what the adapter looks for. */
const ioredisShaped = { call: async () => [1, 0, 1, 0, 1] }
const nodeRedisShaped = { sendCommand: async () => [1, 0, 1, 0, 1] }

describe('redisBudget() options', () => {
  it('takes an ioredis-shaped or a node-redis-shaped client', () => {
    expect(redisBudget({ redis: ioredisShaped as never, key: 'k', limit: 1 }).leaseTtl).toBe(10_000)
    expect(redisBudget({ redis: nodeRedisShaped as never, key: 'k', limit: 1 }).limit).toBe(1)
  })

  it.each([
    [
      { redis: {}, key: 'k', limit: 1 },
      /Invalid option redis of redisBudget\(\): an object; expected an ioredis client/,
    ],
    [
      { redis: ioredisShaped, key: '', limit: 1 },
      /Invalid option key .*: ""; expected a non-empty string/,
    ],
    [
      { redis: ioredisShaped, key: 'k', limit: 0 },
      /Invalid option limit .*: 0; expected an integer ≥ 1/,
    ],
    [{ redis: ioredisShaped, key: 'k', limit: 1.5 }, /Invalid option limit/],
    [
      { redis: ioredisShaped, key: 'k', limit: 1, leaseTtl: 10 },
      /Invalid option leaseTtl .*: 10; expected an integer number of milliseconds ≥ 100/,
    ],
    [
      { redis: ioredisShaped, key: 'k', limit: 1, failOpen: 'yes' },
      /Invalid option failOpen .*: "yes"; expected true or false/,
    ],
    [
      { redis: ioredisShaped, key: 'k', limit: 1, lease: 5 },
      /Invalid option lease .*: 5; expected one of the options redis, key, limit, leaseTtl, failOpen/,
    ],
    [undefined, /Invalid option options of redisBudget\(\): undefined/],
  ])('refuses %o at the call', (options, message) => {
    expect(() => redisBudget(options as never)).toThrow(InvalidOptionError)
    expect(() => redisBudget(options as never)).toThrow(message)
  })

  it('shows neither the client nor its URL in inspect, JSON or state', () => {
    const client = {
      ...ioredisShaped,
      options: { password: 'hunter2-secret' },
      url: 'redis://u:hunter2-secret@h:1',
    }
    const budget = redisBudget({ redis: client as never, key: 'orders', limit: 3 })
    const shown = [
      inspect(budget, { depth: 10, showHidden: true }),
      JSON.stringify(budget),
      JSON.stringify(budget.state()),
    ]
    for (const text of shown) expect(text).not.toContain('hunter2')
    expect(shown[0]).toBe(
      'RedisBudget { key: "orders", limit: 3, leaseTtl: 10000, held: 0, waiting: 0, unreachable: false }',
    )
  })
})
