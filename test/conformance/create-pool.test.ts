import { randomBytes } from 'node:crypto'
import { existsSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inspect } from 'node:util'
import type pg from 'pg'
import { afterEach, describe, expect, expectTypeOf, it } from 'vitest'
import { DRIVER_MISSING, DriverLoader } from '../../src/dialects/driver-loader.js'
import { redactError, secretsOfUrl } from '../../src/dialects/redact.js'
import { sqlite } from '../../src/dialects/sqlite.js'
import { createPool, InvalidOptionError, type Pool, PoolError } from '../../src/index.js'

const CANARY = `Canary${randomBytes(12).toString('hex')}`

/** The error `fn` throws; fails the test when it throws none. */
function thrown(fn: () => unknown): Error {
  try {
    fn()
  } catch (error) {
    return error as Error
  }
  throw new Error('expected a throw')
}

describe('createPool({ url })', () => {
  const pools: Pool<unknown>[] = []
  function make(options: object): Pool<unknown> {
    const pool = createPool(options as never) as Pool<unknown>
    pools.push(pool)
    return pool
  }

  afterEach(async () => {
    await Promise.all(pools.splice(0).map((p) => p.close({ timeout: 1_000 })))
  })

  it.each([
    ['postgres://u@127.0.0.1:5432/db', 'postgres'],
    ['postgresql://u@127.0.0.1/db?sslmode=disable', 'postgres'],
    ['POSTGRES://u@127.0.0.1/db', 'postgres'],
    ['mysql://root@127.0.0.1:3306/db', 'mysql'],
    ['mariadb://root@127.0.0.1/db', 'mysql'],
    ['sqlite:///tmp/never-opened.db', 'sqlite'],
    ['sqlite::memory:', 'sqlite'],
  ])('picks the dialect for %s', (url, name) => {
    const pool = make({ url, max: 1 })
    expect(pool.options.dialect.name).toBe(name)
  })

  it('keeps the other pool options and validates them as createPool does', () => {
    const pool = make({ url: 'postgres://u@127.0.0.1/db', max: 3, maxOverflow: 2, name: 'p' })
    expect(pool.options).toMatchObject({ max: 3, maxOverflow: 2, name: 'p' })
    expect(() => createPool({ url: 'postgres://u@127.0.0.1/db', maxx: 3 } as never)).toThrow(
      /Unknown option maxx passed to createPool; did you mean max\?/,
    )
  })

  it('rejects url together with dialect', () => {
    const error = thrown(() =>
      createPool({ url: `postgres://u:${CANARY}@h/db`, dialect: sqlite(':memory:') } as never),
    )
    expect(error).toBeInstanceOf(InvalidOptionError)
    expect((error as InvalidOptionError).option).toBe('url')
    expect(error.message).toMatch(/pass one or the other/)
    expect(inspect(error)).not.toContain(CANARY)
  })

  it('accepts url: undefined next to a dialect, and rejects it alone', () => {
    const pool = make({ url: undefined, dialect: sqlite(':memory:'), max: 1 } as never)
    expect(pool.options.dialect.name).toBe('sqlite')
    expect(() => createPool({ url: undefined } as never)).toThrow(/Invalid option url: undefined/)
  })

  it.each([
    [
      `redis://u:${CANARY}@127.0.0.1/0`,
      /the scheme "redis:" is not supported; expected one of postgres:\/\/, postgresql:\/\/, mysql:\/\/, mariadb:\/\/, sqlite:\/\/\/absolute\/path, sqlite::memory:/,
    ],
    [`u:${CANARY}@127.0.0.1/db`, /the scheme "u:" is not supported/],
    [`//u:${CANARY}@127.0.0.1/db`, /does not start with a scheme/],
    [`sqlite://host/${CANARY}.db`, /three slashes/],
    [`sqlite:${CANARY}.db`, /three slashes/],
    ['sqlite:///tmp/x.db?mode=ro', /takes no query/],
    ['sqlite:///', /names no file/],
  ])('rejects %s with an InvalidOptionError that does not echo the URL', (url, message) => {
    const error = thrown(() => createPool({ url }))
    expect(error).toBeInstanceOf(InvalidOptionError)
    expect((error as InvalidOptionError).option).toBe('url')
    expect(error.message).toMatch(message)
    expect(inspect(error, { depth: Number.POSITIVE_INFINITY })).not.toContain(CANARY)
  })

  it('rejects a url that is not a string, without echoing it', () => {
    expect(() => createPool({ url: { password: CANARY } } as never)).toThrow(
      'Invalid option url: an object; expected a string',
    )
  })

  it('gives sqlite::memory: one connection, never recycled, and refuses more', () => {
    const pool = make({ url: 'sqlite::memory:' })
    expect(pool.options).toMatchObject({
      max: 1,
      maxOverflow: 0,
      maxLifetime: Number.POSITIVE_INFINITY,
      idleTimeout: Number.POSITIVE_INFINITY,
    })
    expect(() => createPool({ url: 'sqlite::memory:', max: 4 })).toThrow(
      /Invalid option max: 4; sqlite::memory: gives each connection its own empty database/,
    )
    expect(() => createPool({ url: 'sqlite::memory:', maxOverflow: 1 })).toThrow(/maxOverflow/)
    // An explicit lifetime is the user's call.
    expect(make({ url: 'sqlite::memory:', maxLifetime: 60_000 }).options.maxLifetime).toBe(60_000)
  })

  it('opens the percent-decoded path of a sqlite URL', async () => {
    const file = join(tmpdir(), `lifeguard url ${randomBytes(4).toString('hex')}.db`)
    try {
      const pool = make({ url: `sqlite://${encodeURI(file)}`, max: 1 })
      expect(await pool.use((db) => (db as { name: string }).name)).toBe(file)
      expect(existsSync(file)).toBe(true)
    } finally {
      await Promise.all(pools.splice(0).map((p) => p.close()))
      for (const suffix of ['', '-wal', '-shm']) rmSync(file + suffix, { force: true })
    }
  })

  it('types the pool by the connection type given or inferred from onConnect', () => {
    const inferred = createPool({
      url: 'postgres://u@127.0.0.1/db',
      onConnect: (_: pg.Client) => {},
    })
    const named = createPool<pg.Client>({ url: 'postgres://u@127.0.0.1/db' })
    const unknown = createPool({ url: 'postgres://u@127.0.0.1/db' })
    pools.push(inferred as Pool<unknown>, named as Pool<unknown>, unknown)
    expectTypeOf(inferred).toEqualTypeOf<Pool<pg.Client>>()
    expectTypeOf(named).toEqualTypeOf<Pool<pg.Client>>()
    expectTypeOf(unknown).toEqualTypeOf<Pool<unknown>>()
  })

  it('still takes plain PoolOptions with a dialect', async () => {
    const pool = make({ dialect: sqlite(':memory:'), max: 1 })
    expect(await pool.use((db) => (db as { open: boolean }).open)).toBe(true)
  })
})

describe('loading drivers', () => {
  it('names the package to install when it is missing, at construction', () => {
    const loader = new DriverLoader(
      'lifeguard-no-such-driver',
      'lifeguard/nothing',
      () => import('lifeguard-no-such-driver' as string),
      (m) => m,
    )
    const error = thrown(() => loader.check())
    expect(error).toBeInstanceOf(PoolError)
    expect(error).toMatchObject({ code: DRIVER_MISSING })
    expect(error.message).toMatch(
      /^lifeguard\/nothing needs the 'lifeguard-no-such-driver' package: npm install lifeguard-no-such-driver/,
    )
  })

  it('names the package to install when it is missing, on load', async () => {
    const loader = new DriverLoader(
      'lifeguard-no-such-driver',
      'lifeguard/nothing',
      () => import('lifeguard-no-such-driver' as string),
      (m) => m,
    )
    await expect(loader.load()).rejects.toMatchObject({
      code: DRIVER_MISSING,
      message: expect.stringContaining('npm install lifeguard-no-such-driver'),
    })
  })

  it('imports an installed driver once', async () => {
    let imports = 0
    const loader = new DriverLoader(
      'pg',
      'lifeguard/postgres',
      () => {
        imports++
        return import('pg')
      },
      (m) => m,
    )
    loader.check()
    const [a, b] = await Promise.all([loader.load(), loader.load()])
    expect(a).toBe(b)
    expect(await loader.load()).toBe(a)
    expect(imports).toBe(1)
  })
})

describe('redaction', () => {
  it('finds the password of a URL, even one URL cannot parse', () => {
    expect(secretsOfUrl('mysql://u:p%40ss1@h/db')).toEqual(['p%40ss1', 'p@ss1'])
    expect(secretsOfUrl(`mysql://u:${CANARY}@[bad/db`)).toContain(CANARY)
    expect(secretsOfUrl('mysql://u:pa/ss@word@[bad/db')).toContain('pa/ss@word')
    expect(secretsOfUrl('postgres://h/db?password=qwerty')).toEqual(['qwerty'])
    expect(secretsOfUrl('no url')).toEqual([])
  })

  it('leaves a clean error alone and copies a tainted one without the secret', () => {
    const clean = new Error('connect ECONNREFUSED')
    expect(redactError(clean, [CANARY])).toBe(clean)
    const tainted = Object.assign(new TypeError('Invalid URL'), {
      code: 'ERR_INVALID_URL',
      input: `mysql://u:${CANARY}@[bad`,
    })
    const copy = redactError(new Error(`wrapped ${CANARY}`, { cause: tainted }), [CANARY]) as Error
    expect(inspect(copy, { depth: Number.POSITIVE_INFINITY })).not.toContain(CANARY)
    expect(copy.message).toBe('wrapped ***')
    expect(copy.cause).toMatchObject({ code: 'ERR_INVALID_URL', message: 'Invalid URL' })
  })
})
