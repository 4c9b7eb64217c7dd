import Fastify from 'fastify'
import { afterAll, describe, expect, it } from 'vitest'
import { postgres } from '../../src/dialects/postgres.js'
import { createPool, InvalidOptionError } from '../../src/index.js'
import { requestScope as expressScope } from '../../src/integrations/express.js'
import fastifyLifeguard from '../../src/integrations/fastify.js'
import { requestScope as honoScope } from '../../src/integrations/hono.js'

// The integrations check what they are given when they are made, not on the first request.
// No server is needed: a pool with `min: 0` connects only when something borrows.
const pool = createPool({ dialect: postgres('postgres://nobody@127.0.0.1:1/none'), max: 1 })
afterAll(() => pool.close())

describe.each([
  ['lifeguard/express', expressScope],
  ['lifeguard/hono', honoScope],
])('%s requestScope()', (_name, requestScope) => {
  it('rejects a bad option at once, naming it', () => {
    expect(() => requestScope(pool, { transaction: 'yes' as never })).toThrow(InvalidOptionError)
    expect(() => requestScope(pool, { cancelOnAbort: 1 as never })).toThrow(
      /Invalid option cancelOnAbort: 1; expected true or false/,
    )
    expect(() => requestScope(pool, { transactions: true } as never)).toThrow(
      /did you mean transaction/,
    )
  })

  it('rejects what is not a pool, saying what is accepted', () => {
    expect(() => requestScope({} as never)).toThrow(/expected a lifeguard Pool/)
    expect(() => requestScope(null as never)).toThrow(/got null/)
  })

  it('borrows nothing when it is made', () => {
    requestScope(pool, { transaction: true })
    expect(pool.stats()).toMatchObject({ acquired: 0, total: 0 })
  })
})

describe('lifeguard/fastify', () => {
  it('fails registration for a bad option', async () => {
    const app = Fastify()
    await expect(
      app.register(fastifyLifeguard, { pool, transaction: 1 as never }).ready(),
    ).rejects.toThrow(InvalidOptionError)
  })

  it('fails a route whose own lifeguard config is bad, when it is declared', async () => {
    const app = Fastify()
    await app.register(fastifyLifeguard, { pool })
    expect(() =>
      app.get('/x', { config: { lifeguard: { transaction: 'on' as never } } }, async () => 'x'),
    ).toThrow(InvalidOptionError)
  })
})

describe('the integrations find the pool behind every facade', () => {
  it('a lifeguard/mysql2/promise pool is accepted, as the docs say, and its own pool is found', async () => {
    const { createPool: createPromisePool, lifeguardOf } = await import(
      '../../src/compat/mysql2-promise.js'
    )
    const { poolFrom } = await import('../../src/integrations/pool-source.js')
    // A closed port on 127.0.0.1: nothing connects, since nothing borrows.
    const promisePool = createPromisePool({ host: '127.0.0.1', port: 9, user: 'nobody' })
    try {
      expect(() => expressScope(promisePool)).not.toThrow()
      expect(() => honoScope(promisePool)).not.toThrow()
      expect(poolFrom(promisePool, 'test')).toBe(lifeguardOf(promisePool))
    } finally {
      await promisePool.end()
    }
  })
})
