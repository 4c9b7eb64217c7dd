import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, expectTypeOf, it } from 'vitest'
import { canonicalCode, codeSections } from '../../src/cli/explain.js'
import {
  ERROR_CODES,
  type ErrorCode,
  explainHint,
  WARNING_CODES,
  type WarningCode,
} from '../../src/core/errors.js'
import { DriverMissingError as FromMysql } from '../../src/dialects/mysql.js'
import { DriverMissingError as FromPostgres } from '../../src/dialects/postgres.js'
import { DriverMissingError as FromSqlite } from '../../src/dialects/sqlite.js'
import * as lifeguard from '../../src/index.js'
import { tick } from '../support/clock.js'
import { useFakePools } from '../support/fake-pools.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const DOC = readFileSync(join(ROOT, 'docs', 'errors.md'), 'utf8')
const CODES: string[] = [...ERROR_CODES, ...WARNING_CODES]

/** Every file under `dir` whose name ends with one of `extensions`. */
function filesUnder(dir: string, extensions: string[]): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((file) => extensions.some((ext) => file.endsWith(ext)))
    .map((file) => join(dir, file))
}

/** Each `LIFEGUARD_…` code written in `files`, with the files that write it. */
function codesIn(files: string[]): Map<string, string[]> {
  const found = new Map<string, string[]>()
  for (const file of files) {
    for (const [code] of readFileSync(file, 'utf8').matchAll(/\bLIFEGUARD_[A-Z0-9_]*[A-Z0-9]\b/g)) {
      found.set(code, [...(found.get(code) ?? []), file.slice(ROOT.length)])
    }
  }
  return found
}

/** The exported error classes (PoolError's subclasses), by their code. */
function exportedClasses(): Map<string, typeof lifeguard.PoolError & { code: string }> {
  const classes = new Map<string, typeof lifeguard.PoolError & { code: string }>()
  for (const [name, value] of Object.entries(lifeguard)) {
    // PoolError.prototype carries the brand, so the base class itself passes `instanceof`.
    if (typeof value !== 'function' || value === lifeguard.PoolError) continue
    if (!(value.prototype instanceof lifeguard.PoolError)) continue
    const code = (value as unknown as { code: string }).code
    expect(classes.has(code), `${name} repeats the code ${code}`).toBe(false)
    classes.set(code, value as typeof lifeguard.PoolError & { code: string })
  }
  return classes
}

describe('error and warning codes', () => {
  it('the union lists each code once, and no code is both an error and a warning', () => {
    expect(new Set(CODES).size).toBe(CODES.length)
  })

  it('every code written anywhere in src/ is in the union', () => {
    const found = codesIn(filesUnder(join(ROOT, 'src'), ['.ts']))
    // The scan itself must see the codes the sources are known to write.
    expect(found.get('LIFEGUARD_POOL_EXCEEDS_SERVER')).toContain('src/core/pool-core.ts')
    expect(found.get('LIFEGUARD_LISTENER_THREW')).toContain('src/core/events.ts')
    const unknown = [...found].filter(([code]) => !CODES.includes(code))
    expect(unknown).toEqual([])
  })

  it('every code the docs name is in the union', () => {
    const found = codesIn(filesUnder(join(ROOT, 'docs'), ['.md']))
    expect([...found].filter(([code]) => !CODES.includes(code))).toEqual([])
  })

  it('docs/errors.md has one section per code, anchored by the code, and none for another', () => {
    const sections = codeSections(DOC)
    expect([...sections.keys()].sort()).toEqual([...CODES].sort())
    for (const code of CODES) {
      const section = sections.get(code)!
      expect(section.markdown.split('\n')[0]).toBe(`## ${code.toLowerCase()}`)
      // The line under the heading says what carries the code.
      expect(section.markdown.split('\n')[2]).toContain(`code \`${code}\`.`)
      expect(section.summary.length).toBeGreaterThan(20)
      expect(section.summary.length).toBeLessThanOrEqual(100)
      expect(section.summary).not.toMatch(/[`*[\]]/)
    }
  })

  it('each error code has one exported class, which its docs section names', () => {
    const classes = exportedClasses()
    expect([...classes.keys()].sort()).toEqual([...ERROR_CODES].sort())
    const sections = codeSections(DOC)
    for (const [code, Class] of classes) {
      expect(sections.get(code)!.markdown.split('\n')[2]).toBe(
        `\`${Class.prototype.name}\`, code \`${code}\`.`,
      )
    }
  })

  it('the dialect entries export the DriverMissingError their factories throw', () => {
    for (const Class of [FromPostgres, FromMysql, FromSqlite]) {
      expect(Class).toBe(lifeguard.DriverMissingError)
    }
  })

  it('reads a code as a user types it', () => {
    for (const spelling of [
      'LIFEGUARD_PING_TIMEOUT',
      'ping_timeout',
      'Ping-Timeout',
      ' ping timeout ',
      '#lifeguard_ping_timeout',
    ]) {
      expect(canonicalCode(spelling)).toBe('LIFEGUARD_PING_TIMEOUT')
    }
    expect(canonicalCode('LIFEGUARD_')).toBeUndefined()
    expect(canonicalCode('ping')).toBeUndefined()
    expect(canonicalCode('ECONNREFUSED')).toBeUndefined()
  })
})

describe('error classes', () => {
  it('narrow code to their own literal, and PoolError.code is the union', () => {
    expectTypeOf(new lifeguard.PoolError('m', 'LIFEGUARD_CLOSED').code).toEqualTypeOf<ErrorCode>()
    expectTypeOf(
      new lifeguard.AcquireTimeoutError('m').code,
    ).toEqualTypeOf<'LIFEGUARD_ACQUIRE_TIMEOUT'>()
    expectTypeOf(
      new lifeguard.DriverMissingError('m').code,
    ).toEqualTypeOf<'LIFEGUARD_DRIVER_MISSING'>()
    expectTypeOf(new lifeguard.PingTimeoutError('m').code).toEqualTypeOf<'LIFEGUARD_PING_TIMEOUT'>()
    expectTypeOf(
      new lifeguard.ResetTimeoutError('m').code,
    ).toEqualTypeOf<'LIFEGUARD_RESET_TIMEOUT'>()
    expectTypeOf(
      new lifeguard.CloseTimeoutError('m').code,
    ).toEqualTypeOf<'LIFEGUARD_CLOSE_TIMEOUT'>()
    expectTypeOf<lifeguard.ErrorCode>().toEqualTypeOf<ErrorCode>()
    expectTypeOf<lifeguard.WarningCode>().toEqualTypeOf<WarningCode>()
    // @ts-expect-error: a code outside the union is refused.
    new lifeguard.PoolError('m', 'LIFEGUARD_NOT_A_CODE')
  })

  it.each([
    ['DriverMissingError', () => new lifeguard.DriverMissingError('m', { cause: 'c' })],
    ['PingTimeoutError', () => new lifeguard.PingTimeoutError('m')],
    ['ResetTimeoutError', () => new lifeguard.ResetTimeoutError('m')],
    ['CloseTimeoutError', () => new lifeguard.CloseTimeoutError('m')],
  ] as const)('%s: its code, its name, and instanceof across copies', (name, make) => {
    const error = make()
    const Class = error.constructor as typeof lifeguard.PingTimeoutError
    expect(error.name).toBe(name)
    expect(String(error).startsWith(`${name}: m [`)).toBe(true)
    expect(error.code).toBe(Class.code)
    expect(error).toBeInstanceOf(lifeguard.PoolError)
    expect(error).not.toBeInstanceOf(lifeguard.AcquireTimeoutError)
    // Another copy of the package (the CJS build beside the ESM one): a look-alike with the brand.
    const foreign = Object.assign(Object.create({ [Symbol.for('lifeguard.error')]: true }), {
      code: Class.code,
    })
    expect(foreign instanceof Class).toBe(true)
    expect(foreign instanceof lifeguard.PoolError).toBe(true)
    expect({ code: Class.code } instanceof Class).toBe(false)
  })

  it('end their message with the code and the command that explains it', () => {
    const error = new lifeguard.PoolClosedError('The pool is closed')
    expect(error.message).toBe(
      'The pool is closed [LIFEGUARD_CLOSED, run: npx lifeguard explain closed]',
    )
    expect(explainHint('LIFEGUARD_POOL_EXCEEDS_SERVER')).toBe(
      '[LIFEGUARD_POOL_EXCEEDS_SERVER, run: npx lifeguard explain pool_exceeds_server]',
    )
    for (const code of CODES) {
      const hint = explainHint(code as ErrorCode)
      expect(canonicalCode(/explain (\S+)\]$/.exec(hint)![1]!)).toBe(code)
    }
  })
})

describe('the codes in a running pool', () => {
  const fake = useFakePools()

  it('a ping that does not answer in time invalidates with PingTimeoutError', async () => {
    fake.dialect.pingDelay = 5_000
    const pool = fake.make({ validationTimeout: 1_000, prePing: 0 })
    const errors: unknown[] = []
    pool.on('invalidate', (e) => errors.push(e.reason, e.error))
    ;(await pool.acquire()).release()
    const next = pool.acquire()
    await tick(1_000)
    expect(errors[0]).toBe('ping')
    expect(errors[1]).toBeInstanceOf(lifeguard.PingTimeoutError)
    // Its own class, not a bare PoolError with the code (which the brand would also let through).
    expect((errors[1] as Error).constructor).toBe(lifeguard.PingTimeoutError)
    expect((errors[1] as Error).message).toMatch(/^ping timed out after 1000 ms \[/)
    await tick(5_000)
    ;(await next).release()
  })

  it('a reset that does not finish in time invalidates with ResetTimeoutError', async () => {
    fake.dialect.resetDelay = 5_000
    const pool = fake.make({ validationTimeout: 1_000 })
    const errors: unknown[] = []
    pool.on('invalidate', (e) => errors.push(e.reason, e.error))
    const lease = await pool.acquire()
    lease.connection.inTransaction = true
    lease.release()
    await tick(1_000)
    expect(errors[0]).toBe('reset-failed')
    expect((errors[1] as Error).constructor).toBe(lifeguard.ResetTimeoutError)
    await tick(5_000)
  })

  it("a pool's warning names its code and the command that explains it", async () => {
    fake.dialect.server = { maxConnections: 10 }
    const pool = fake.make({ max: 8, maxOverflow: 5 })
    const warnings: { code: WarningCode; message: string }[] = []
    pool.on('warning', (w) => warnings.push(w))
    ;(await pool.acquire()).release()
    expect(warnings).toHaveLength(1)
    expect(warnings[0]!.code).toBe('LIFEGUARD_POOL_EXCEEDS_SERVER')
    expect(warnings[0]!.message.endsWith(explainHint('LIFEGUARD_POOL_EXCEEDS_SERVER'))).toBe(true)
  })
})
