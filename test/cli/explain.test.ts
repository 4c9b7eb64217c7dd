import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { codeSections } from '../../src/cli/explain.js'
import { ERROR_CODES, WARNING_CODES } from '../../src/core/errors.js'
import * as lifeguard from '../../src/index.js'
import { bundleCli, packagedCli, runCli } from './support/cli-process.js'

const DOC = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8')
const CODES = [...ERROR_CODES, ...WARNING_CODES]

let bundle = ''
let cli = ''
const work = mkdtempSync(join(tmpdir(), 'lifeguard-explain-test-'))
beforeAll(async () => {
  bundle = await bundleCli('explain')
  // As installed: node_modules/lifeguard/dist/cli.js beside node_modules/lifeguard/docs/errors.md.
  cli = packagedCli(bundle, join(work, 'lifeguard'))
})
afterAll(() => {
  rmSync(work, { recursive: true, force: true })
  if (bundle !== '') rmSync(bundle, { force: true })
})

/** Every exported error class, by its code. */
function classesByCode(): Map<string, new (...args: any[]) => lifeguard.PoolError> {
  const classes = new Map<string, new (...args: any[]) => lifeguard.PoolError>()
  for (const value of Object.values(lifeguard)) {
    // PoolError.prototype carries the brand, so the base class passes the test: leave it out.
    if (typeof value !== 'function' || value === lifeguard.PoolError) continue
    if (!(value.prototype instanceof lifeguard.PoolError)) continue
    classes.set((value as unknown as { code: string }).code, value as any)
  }
  return classes
}

describe('lifeguard explain', () => {
  it.each(CODES)('prints the section of %s from the installed docs/errors.md', async (code) => {
    const section = codeSections(DOC).get(code)
    expect(section, `docs/errors.md has no "## ${code.toLowerCase()}"`).toBeDefined()
    const run = await runCli(cli, ['explain', code])
    expect(run.stderr).toBe('')
    expect(run.code).toBe(0)
    expect(run.stdout.startsWith(`## ${code.toLowerCase()}\n`)).toBe(true)
    expect(run.stdout).toContain(section!.markdown)
    // The section ends at the next heading: no other code's text leaks in.
    expect(run.stdout.match(/^## /gm)).toHaveLength(1)
    expect(run.stdout).toContain(`docs/errors.md#${code.toLowerCase()}`)
  })

  it('runs the very command that each error message names, and gets that error explained', async () => {
    const classes = classesByCode()
    expect([...classes.keys()].sort()).toEqual([...ERROR_CODES].sort())
    for (const [code, Class] of classes) {
      const error =
        Class === lifeguard.InvalidOptionError ? new Class('max', 'message') : new Class('message')
      const command = /\[(LIFEGUARD_[A-Z_]+), run: npx lifeguard (explain [a-z_]+)\]$/.exec(
        error.message,
      )
      expect(command, error.message).not.toBeNull()
      expect(command![1]).toBe(code)
      const run = await runCli(cli, command![2]!.split(' '))
      expect(run.code).toBe(0)
      expect(run.stdout.split('\n')[0]).toBe(`## ${code.toLowerCase()}`)
    }
  })

  it('reads a code in any case, with or without its prefix, with dashes or as the anchor', async () => {
    for (const spelling of [
      'LIFEGUARD_ACQUIRE_TIMEOUT',
      'acquire_timeout',
      'Acquire-Timeout',
      'lifeguard_acquire_timeout',
      '#lifeguard_acquire_timeout',
    ]) {
      const run = await runCli(cli, ['explain', spelling])
      expect(run.code, spelling).toBe(0)
      expect(run.stdout.split('\n')[0]).toBe('## lifeguard_acquire_timeout')
    }
  })

  it('lists every code with a one-line summary when given none', async () => {
    const run = await runCli(cli, ['explain'])
    expect(run.code).toBe(0)
    expect(run.stderr).toBe('')
    const rows = run.stdout.split('\n').filter((line) => /^ {2}LIFEGUARD_/.test(line))
    expect(rows.map((row) => row.trim().split(/\s+/)[0])).toEqual(CODES)
    for (const row of rows) {
      expect(row).not.toContain('(not documented)')
      expect(row.length).toBeLessThanOrEqual(2 + 29 + 2 + 100)
    }
    expect(rows.find((row) => row.includes('LIFEGUARD_ACQUIRE_TIMEOUT'))).toMatch(
      /waited acquireTimeout ms/,
    )
  })

  it('answers an unknown code with one line that says how to list the codes, exit 2 (usage)', async () => {
    const run = await runCli(cli, ['explain', 'LIFEGUARD_NO_SUCH_THING'])
    expect(run.code).toBe(2)
    expect(run.stdout).toBe('')
    expect(run.stderr).toBe(
      'lifeguard explain: no code "LIFEGUARD_NO_SUCH_THING"; run "lifeguard explain" to list every code\n',
    )
    const url = await runCli(cli, ['explain', 'postgres://app:secret@db/app'])
    expect(url.code).toBe(2)
    expect(url.stderr).not.toContain('secret')
    const two = await runCli(cli, ['explain', 'closed', 'connect_failed'])
    expect(two.code).toBe(2)
    expect(two.stderr.trim().split('\n')).toHaveLength(1)
  })

  it('says the install is broken, exit 1, when docs/errors.md is not beside the CLI', async () => {
    const broken = packagedCli(bundle, join(work, 'no-docs'), false)
    const run = await runCli(broken, ['explain', 'closed'])
    expect(run.code).toBe(1)
    expect(run.stdout).toBe('')
    expect(run.stderr).toMatch(/^lifeguard explain: cannot find docs\/errors\.md beside the CLI/)
    expect(run.stderr.trim().split('\n')).toHaveLength(1)
  })
})
