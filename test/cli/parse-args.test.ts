import { describe, expect, it } from 'vitest'
import { errorKind, TOO_MANY_CONNECTIONS } from '../../src/cli/error-kind.js'
import { parseCliArgs, UsageError } from '../../src/cli/parse-args.js'
import { redactUrl } from '../../src/cli/redact-url.js'

function usageError(argv: string[]): string {
  try {
    parseCliArgs(argv)
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError)
    return (error as Error).message
  }
  throw new Error(`parseCliArgs(${JSON.stringify(argv)}) did not throw`)
}

describe('parseCliArgs', () => {
  it('fills in the issue’s defaults for bench', () => {
    expect(parseCliArgs(['bench'])).toEqual({
      command: 'bench',
      options: {
        url: undefined,
        clients: 1000,
        durationMs: 10_000,
        rounds: 3,
        max: 10,
        overflow: 0,
        maxPipeline: undefined,
        modes: ['per-request', 'lifeguard', 'driver-pool'],
        report: undefined,
        json: false,
      },
    })
  })

  it('reads every bench flag', () => {
    const parsed = parseCliArgs([
      'bench',
      '--url=mysql://root@127.0.0.1/test',
      '--clients',
      '50',
      '--duration',
      '1500ms',
      '--rounds',
      '5',
      '--max',
      '4',
      '--overflow',
      '2',
      '--max-pipeline',
      '1',
      '--modes',
      'lifeguard,per-request',
      '--report',
      'r.html',
      '--json',
    ])
    expect(parsed).toEqual({
      command: 'bench',
      options: {
        url: 'mysql://root@127.0.0.1/test',
        clients: 50,
        durationMs: 1500,
        rounds: 5,
        max: 4,
        overflow: 2,
        maxPipeline: 1,
        modes: ['lifeguard', 'per-request'],
        report: 'r.html',
        json: true,
      },
    })
  })

  it.each([
    [['bench', '--clients', '0'], 'invalid --clients "0": expected a whole number from 1 to 10000'],
    [['bench', '--clients', '2.5'], 'invalid --clients "2.5"'],
    [['bench', '--max=-1'], 'invalid --max "-1": expected a whole number from 1 to 1000'],
    [['bench', '--max', '-1'], 'option --max needs a value (write --max=VALUE'],
    [['bench', '--duration', 'forever'], 'invalid --duration "forever": expected a time from 1s'],
    [['bench', '--duration', '20m'], 'invalid --duration "20m"'],
    [['bench', '--rounds', '0'], 'invalid --rounds "0": expected a whole number from 1 to 50'],
    [['bench', '--rounds', 'three'], 'invalid --rounds "three"'],
    [
      ['bench', '--max-pipeline', '0'],
      'invalid --max-pipeline "0": expected a whole number from 1 to 10000',
    ],
    [['bench', '--max-pipeline=1.5'], 'invalid --max-pipeline "1.5"'],
    [['bench', '--max-pipeline', '10001'], 'invalid --max-pipeline "10001"'],
    [['doctor', 'postgres://h/db', '--min', '-2'], 'option --min needs a value'],
    [['doctor', 'postgres://h/db', '--min', 'x'], 'invalid --min "x"'],
    [['bench', '--modes', 'lifeguard,pgbouncer'], 'unknown mode "pgbouncer"; allowed: per-request'],
    [['bench', '--clients'], 'option --clients needs a value'],
    [['bench', '--json=yes'], 'option --json takes no value'],
    [['bench', '--verbose'], 'unknown option --verbose for "lifeguard bench"; allowed: --url'],
    [['bench', 'postgres://x'], 'pass the server with --url'],
    [['doctor'], 'lifeguard doctor needs a URL'],
    [['doctor', 'postgres://h/db', '--max-lifetime', '10s'], 'invalid --max-lifetime "10s"'],
    [['frobnicate'], 'unknown command "frobnicate"; commands: bench, doctor, explain, help'],
  ])('rejects %j with a clear message', (argv, message) => {
    expect(usageError(argv)).toContain(message)
  })

  it('never echoes a password from a URL it rejects', () => {
    for (const argv of [
      ['bench', '--url', 'redis://u:hunter22@h/0'],
      ['doctor', 'http://u:hunter22@h/'],
      ['postgres://u:hunter22@h/db'],
      ['doctor', 'postgres://u:hunter22@h:99999/db'],
    ]) {
      expect(usageError(argv)).not.toContain('hunter22')
    }
  })
})

describe('errorKind', () => {
  it('names PostgreSQL 53300 and MySQL 1040 "Too many connections", also wrapped by the pool', () => {
    const pg = Object.assign(new Error('sorry, too many clients already'), { code: '53300' })
    const my = Object.assign(new Error('Too many connections'), {
      errno: 1040,
      code: 'ER_CON_COUNT_ERROR',
    })
    const wrapped = Object.assign(new Error('connect failed'), {
      code: 'LIFEGUARD_CONNECT_FAILED',
      cause: pg,
    })
    expect(errorKind(pg)).toBe(TOO_MANY_CONNECTIONS)
    expect(errorKind(my)).toBe(TOO_MANY_CONNECTIONS)
    expect(errorKind(wrapped)).toBe(TOO_MANY_CONNECTIONS)
  })

  it('tells the other kinds apart', () => {
    expect(errorKind(Object.assign(new Error('x'), { code: 'LIFEGUARD_ACQUIRE_TIMEOUT' }))).toBe(
      'Acquire timeout',
    )
    expect(errorKind(Object.assign(new Error('x'), { errno: 1226 }))).toBe('User connection limit')
    expect(errorKind(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }))).toBe(
      'Connection refused',
    )
    expect(errorKind(new Error('timeout expired'))).toBe('Connect timeout')
    expect(errorKind(Object.assign(new Error('x'), { code: '42P01' }))).toBe('Other (42P01)')
    expect(errorKind('boom')).toBe('Other')
  })
})

describe('redactUrl', () => {
  it('masks the password and a password parameter', () => {
    expect(redactUrl('postgres://app:s3cret@db:5432/app?sslmode=require')).toBe(
      'postgres://app:***@db:5432/app?sslmode=require',
    )
    expect(redactUrl('mysql://app@db/app?password=s3cret')).toBe('mysql://app@db/app?password=***')
    expect(redactUrl('postgres://a:b@c:d@h/x')).not.toContain('b@c')
  })
})
