import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { mysql } from '../../src/dialects/mysql.js'
import { postgres } from '../../src/dialects/postgres.js'
import { sqlite } from '../../src/dialects/sqlite.js'
import {
  AcquireTimeoutError,
  ConnectError,
  createPool,
  InvalidOptionError,
} from '../../src/index.js'
import { trackProcessErrors } from '../support/process-errors.js'

/** Calls `make` and returns the `InvalidOptionError` it must throw. */
function rejected(make: () => unknown): InvalidOptionError {
  try {
    make()
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidOptionError)
    expect((error as InvalidOptionError).code).toBe('LIFEGUARD_INVALID_OPTION')
    return error as InvalidOptionError
  }
  throw new Error('the factory accepted it')
}

const SECRET = 's3cr3t-pw'

describe('the dialect factories check their argument at the call', () => {
  it("postgres(42) and postgres('mysql://…') were accepted and failed after the acquire timeout as 'unexpected copyData'", () => {
    const number = rejected(() => postgres(42 as never))
    expect(number.option).toBe('config')
    expect(number.message).toMatch(
      /Invalid argument config of postgres\(\): 42; expected a postgres:\/\/ or postgresql:\/\/ URL, a socket: URL, a socket directory .*, a pg ClientConfig object, or undefined/,
    )
    const mysqlUrl = rejected(() => postgres(`mysql://root:${SECRET}@127.0.0.1:3306/test`))
    expect(mysqlUrl.message).toContain('Invalid argument config of postgres(): a "mysql:" URL')
    expect(mysqlUrl.message).not.toContain(SECRET)
    expect(mysqlUrl.message).not.toContain('127.0.0.1')
  })

  it.each([
    ['a number', 42],
    ['null', null],
    ['an array', ['postgres://x']],
    ['a function', () => 'postgres://x'],
    ['a boolean', true],
    ['an empty string', ''],
    ['a host name', 'localhost'],
    ['an http URL', 'http://localhost'],
  ])('postgres() rejects %s', (_, value) => {
    expect(rejected(() => postgres(value as never)).option).toBe('config')
  })

  it('postgres() checks a connectionString in its config, naming only the scheme', () => {
    const error = rejected(() => postgres({ connectionString: `mariadb://app:${SECRET}@db/app` }))
    expect(error.option).toBe('connectionString')
    expect(error.message).toContain('a "mariadb:" URL')
    expect(error.message).not.toContain(SECRET)
  })

  it.each([
    'postgres://postgres@127.0.0.1:5432/test',
    'POSTGRESQL://postgres@127.0.0.1/test',
    'socket:/var/run/postgresql?db=test',
    '/var/run/postgresql test',
    undefined,
  ])('postgres() accepts %s', (value) => {
    expect(postgres(value).name).toBe('postgres')
  })

  it('postgres() accepts a ClientConfig, with or without a connectionString', () => {
    expect(postgres({ host: '127.0.0.1', user: 'postgres' }).name).toBe('postgres')
    expect(postgres({ connectionString: 'postgres://127.0.0.1/test' }).name).toBe('postgres')
  })

  it("mysql(42) and mysql('postgres://…') are rejected, naming only the scheme", () => {
    expect(rejected(() => mysql(42 as never)).message).toMatch(
      /Invalid argument config of mysql\(\): 42; expected a mysql:\/\/ or mariadb:\/\/ URL, a mysql2 ConnectionOptions object, or undefined/,
    )
    const pgUrl = rejected(() => mysql(`postgres://app:${SECRET}@db/app`))
    expect(pgUrl.message).toContain('a "postgres:" URL')
    expect(pgUrl.message).not.toContain(SECRET)
    const uri = rejected(() => mysql({ uri: `postgresql://app:${SECRET}@db/app` }))
    expect(uri.option).toBe('uri')
    expect(uri.message).not.toContain(SECRET)
    expect(rejected(() => mysql('127.0.0.1:3306')).option).toBe('config')
    expect(rejected(() => mysql(null as never)).option).toBe('config')
  })

  it('mysql() accepts mysql:// and mariadb:// URLs and ConnectionOptions', () => {
    for (const config of [
      'mysql://root@127.0.0.1:3306/test',
      'mariadb://root@127.0.0.1/test',
      { host: '127.0.0.1', user: 'root' },
      { uri: 'mysql://root@127.0.0.1/test' },
      undefined,
    ]) {
      expect(mysql(config).name).toBe('mysql')
    }
  })

  it('sqlite() rejects a URL as its file name, naming only the scheme', () => {
    const error = rejected(() => sqlite(`postgres://app:${SECRET}@db/app`))
    expect(error.option).toBe('filename')
    expect(error.message).toContain('a "postgres:" URL')
    expect(error.message).not.toContain(SECRET)
    expect(rejected(() => sqlite('sqlite:///tmp/app.db')).message).toContain('createPool({ url })')
    expect(rejected(() => sqlite(42 as never)).option).toBe('filename')
    expect(rejected(() => sqlite(':memory:', 5 as never)).option).toBe('options')
    const dir = mkdtempSync(join(tmpdir(), 'lifeguard-args-'))
    try {
      expect(sqlite(join(dir, 'app.db')).name).toBe('sqlite')
      expect(sqlite(':memory:').name).toBe('sqlite')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('postgres() with a stream option that returns no socket', () => {
  it('a stream without destroy() made the failed connect throw an unhandled rejection', async () => {
    const processErrors = trackProcessErrors()
    const pool = createPool({
      dialect: postgres({ host: '127.0.0.1', stream: (() => ({})) as never }),
      acquireTimeout: 300,
    })
    try {
      const error = (await pool.acquire().catch((e: unknown) => e)) as Error
      expect(error).toBeInstanceOf(AcquireTimeoutError)
      expect(error.cause).toBeInstanceOf(ConnectError)
      await new Promise((resolve) => setImmediate(resolve))
      expect(processErrors.errors).toEqual([])
    } finally {
      processErrors.stop()
      await pool.close()
    }
  })
})
