import { describe, expect, it } from 'vitest'
import { redisBudget } from '../../src/budget/redis.js'
import { createPool } from '../../src/index.js'
import { FakeDialect } from '../support/fake-dialect.js'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** An ioredis-shaped client whose every command answers `reply()`. */
function client(reply: () => Promise<unknown>) {
  return { call: async () => reply() }
}

/** An error of the class name ioredis (ReplyError) or node-redis (ErrorReply) gives a Redis error reply. */
function replyError(
  className: 'ReplyError' | 'ErrorReply' | 'ClientClosedError',
  message: string,
): Error {
  const classes = {
    ReplyError: class ReplyError extends Error {},
    ErrorReply: class ErrorReply extends Error {},
    ClientClosedError: class ClientClosedError extends Error {},
  }
  return new classes[className](message)
}

/** Unhandled rejections during `run`, collected instead of failing the worker later. */
async function unhandledDuring(run: () => Promise<void>): Promise<unknown[]> {
  const seen: unknown[] = []
  const record = (reason: unknown) => seen.push(reason)
  process.on('unhandledRejection', record)
  try {
    await run()
    await sleep(50)
  } finally {
    process.off('unhandledRejection', record)
  }
  return seen
}

describe('regressions: malformed replies and Redis errors', () => {
  it.each([
    ['null (a node-redis client in legacyMode)', null],
    ['a string', 'OK'],
    ['a short array', [1, 0]],
    ['non-integers', [1, 0, 'x', 0, 1, 1, 0, 0]],
  ])(
    'a malformed reply (%s) is an error the take survives: no unhandled rejection, polled again, never failing open',
    async (_, reply) => {
      let calls = 0
      const budget = redisBudget({
        redis: client(async () => {
          calls++
          return reply
        }) as never,
        key: 'k',
        limit: 2,
        leaseTtl: 1000,
        failOpen: true,
      })
      const warnings: string[] = []
      budget.subscribe({
        warning: (code, message) => warnings.push(`${code} ${message}`),
        shed() {},
      })
      const controller = new AbortController()
      let settled = false
      const unhandled = await unhandledDuring(async () => {
        const take = budget.take(controller.signal).finally(() => {
          settled = true
        })
        await sleep(400)
        expect(settled).toBe(false)
        controller.abort(new Error('gave up'))
        await expect(take).rejects.toThrow('gave up')
      })
      expect(unhandled).toEqual([])
      expect(calls).toBeGreaterThan(1)
      expect(budget.state().refused).toBe(true)
      expect(budget.state().unreachable).toBe(false)
      expect(budget.blocked().message).toMatch(/set up wrong: Redis: malformed reply/)
      expect(warnings).toHaveLength(1)
      expect(warnings[0]).toMatch(/^LIFEGUARD_BUDGET_REFUSED /)
    },
  )

  it.each([
    ['ReplyError', "NOPERM User app has no permissions to run the 'evalsha' command"],
    ['ErrorReply', 'WRONGTYPE Operation against a key holding the wrong kind of value'],
    ['ClientClosedError', 'The client is closed'],
  ] as const)(
    'a %s from Redis is a configuration error: LIFEGUARD_BUDGET_REFUSED with its message, not "unreachable", and failOpen does not apply',
    async (className, message) => {
      const budget = redisBudget({
        redis: client(async () => {
          throw replyError(className, message)
        }) as never,
        key: 'k',
        limit: 2,
        leaseTtl: 1000,
        failOpen: true,
      })
      const codes: string[] = []
      budget.subscribe({ warning: (code) => codes.push(code), shed() {} })
      const controller = new AbortController()
      const take = budget.take(controller.signal)
      await sleep(300)
      controller.abort(new Error('gave up'))
      await expect(take).rejects.toThrow('gave up')
      expect(codes).toEqual(['LIFEGUARD_BUDGET_REFUSED'])
      expect(budget.state().unreachable).toBe(false)
      const blocked = budget.blocked()
      expect(blocked.message).toContain(message)
      expect(blocked.message).not.toMatch(/cannot be reached/)
    },
  )

  it('a listener that throws neither stops the take nor becomes an unhandled rejection', async () => {
    const budget = redisBudget({
      redis: client(async () => {
        throw new Error('connect ECONNREFUSED 127.0.0.1:1')
      }) as never,
      key: 'k',
      limit: 2,
      leaseTtl: 1000,
    })
    const codes: string[] = []
    budget.subscribe({
      warning: () => {
        throw new Error('listener bug')
      },
      shed() {},
    })
    budget.subscribe({ warning: (code) => codes.push(code), shed() {} })
    const controller = new AbortController()
    const unhandled = await unhandledDuring(async () => {
      const take = budget.take(controller.signal)
      await sleep(200)
      controller.abort(new Error('gave up'))
      await expect(take).rejects.toThrow('gave up')
    })
    expect(unhandled).toEqual([])
    expect(codes).toEqual(['LIFEGUARD_BUDGET_UNREACHABLE'])
  })

  it('a pool whose budget gets malformed replies keeps serving its open connection and times out new ones with the reason', async () => {
    let broken = false
    const budget = redisBudget({
      redis: client(async () => (broken ? null : [1, 0, 1, 0, 1, 2, 0, 0])) as never,
      key: 'k',
      limit: 2,
      leaseTtl: 1000,
    })
    const pool = createPool({ dialect: new FakeDialect(), max: 2, budget, acquireTimeout: 300 })
    pool.on('warning', () => {})
    try {
      const first = await pool.acquire()
      broken = true
      const error = (await pool.acquire().catch((e) => e)) as Error
      expect(error.message).toMatch(/set up wrong: Redis: malformed reply/)
      first.release()
      ;(await pool.acquire()).release()
    } finally {
      await pool.destroy()
    }
  })
})
