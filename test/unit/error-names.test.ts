import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { build } from 'tsup'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import tsupConfig from '../../tsup.config.js'

const root = join(import.meta.dirname, '../..')
let outDir: string

const ERROR_CLASSES = [
  'PoolError',
  'AcquireTimeoutError',
  'TooManyWaitersError',
  'PoolClosedError',
  'ConnectError',
  'LeaseReleasedError',
  'InvalidOptionError',
  'ScopeEndedError',
  'TransactionFailedError',
  'DriverMissingError',
  'PingTimeoutError',
  'ResetTimeoutError',
  'CloseTimeoutError',
  'NamedStatementError',
]

beforeAll(async () => {
  // The package's own build (`npm run build`: tsup with tsup.config.ts), into a folder of its own
  // so that it never races another test over dist/; without declarations, which take longest.
  const cache = join(root, 'node_modules', '.cache')
  mkdirSync(cache, { recursive: true })
  outDir = mkdtempSync(join(cache, 'lifeguard-dist-'))
  const config = Array.isArray(tsupConfig) ? tsupConfig[0] : tsupConfig
  await build({ ...(config as object), outDir, dts: false, sourcemap: false, silent: true })
}, 120_000)

afterAll(() => {
  if (outDir !== undefined) rmSync(outDir, { recursive: true, force: true })
})

/** What a process that loads the built entry with `load` sees of each error class. */
function namesIn(load: string, module: 'module' | 'commonjs'): Record<string, unknown> {
  const script = `
    ${load}
    const seen = {}
    for (const name of ${JSON.stringify(ERROR_CLASSES)}) {
      const Class = lg[name]
      const error = name === 'PoolError' ? new Class('m', 'LIFEGUARD_CLOSED') : name === 'InvalidOptionError' ? new Class('o', 'm') : new Class('m')
      seen[name] = { name: error.name, string: String(error).split(':')[0], stack: error.stack.split(':')[0] }
    }
    try { lg.createPool({}) } catch (error) { seen.thrown = String(error) }
    console.log(JSON.stringify(seen))
  `
  const stdout = execFileSync(process.execPath, [`--input-type=${module}`, '-e', script], {
    cwd: outDir,
    encoding: 'utf8',
  })
  return JSON.parse(stdout) as Record<string, unknown>
}

describe('error names in the built package', () => {
  it.each([
    ['dist/index.js', `import * as lg from ${JSON.stringify('./index.js')}`, 'module'],
    ['dist/index.cjs', `const lg = require('./index.cjs')`, 'commonjs'],
  ] as const)('errors printed with bundler names (_InvalidOptionError): %s', (_, load, module) => {
    const seen = namesIn(load, module)
    for (const name of ERROR_CLASSES) {
      expect(seen[name]).toEqual({ name, string: name, stack: name })
    }
    expect(seen.thrown).toMatch(/^InvalidOptionError: Invalid option dialect: undefined/)
  })
})
