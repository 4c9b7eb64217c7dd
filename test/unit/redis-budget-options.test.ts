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
      /Invalid option leaseTtl .*: 10; expected an integer number of milliseconds from 100 to 3600000/,
    ],
    [
      // Past 2^31 ms Node's timers fire at once: the refresh would spin.
      { redis: ioredisShaped, key: 'k', limit: 1, leaseTtl: 2 ** 31 },
      /Invalid option leaseTtl .*: 2147483648; expected .* to 3600000 \(an hour\)/,
    ],
    [
      { redis: ioredisShaped, key: 'k', limit: 1, failOpen: 'yes' },
      /Invalid option failOpen .*: "yes"; expected true or false/,
    ],
    [
      { redis: ioredisShaped, key: 'k', limit: 1, lease: 5 },
      /Unknown option lease passed to redisBudget\(\); known options are redis, key, limit, leaseTtl, failOpen/,
    ],
    [undefined, /Invalid option options of redisBudget\(\): undefined/],
  ])('refuses %o at the call', (options, message) => {
    expect(() => redisBudget(options as never)).toThrow(InvalidOptionError)
    expect(() => redisBudget(options as never)).toThrow(message)
  })

  it('an unknown option does not print its value: a URL with a password is not echoed', () => {
    const options = { redis: ioredisShaped, key: 'k', limit: 1, url: 'redis://:hunter2-secret@h:1' }
    const error = (() => {
      try {
        redisBudget(options as never)
      } catch (e) {
        return e as Error
      }
    })()
    expect(error).toBeInstanceOf(InvalidOptionError)
    expect(error!.message).toMatch(/Unknown option url passed to redisBudget\(\)/)
    expect(error!.message).not.toContain('hunter2')
  })

  it('takes a node-redis cluster client, sending each script to the node of its keys', async () => {
    const sent: unknown[][] = []
    const cluster = {
      nodeClient: () => undefined,
      sendCommand: async (firstKey: string, isReadonly: boolean, args: string[]) => {
        sent.push([firstKey, isReadonly, args[0]])
        return [1, 0, 1, 0, 1, 1, 0, 0]
      },
    }
    const budget = redisBudget({ redis: cluster as never, key: 'orders', limit: 1 })
    const slot = await budget.take(new AbortController().signal)
    slot.release()
    expect(sent[0]).toEqual(['lifeguard:budget:{orders}:slots', false, 'EVALSHA'])
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
