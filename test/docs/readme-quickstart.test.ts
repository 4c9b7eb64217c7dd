import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build, type Plugin } from 'esbuild'
import { afterAll, describe, expect, it } from 'vitest'
import tsupConfig from '../../tsup.config.js'
import { describeOnServer, probe, type ServerKind } from '../support/servers.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const README = readFileSync(join(ROOT, 'README.md'), 'utf8')

/** The README's quickstart blocks, by the dialect their info string names (```ts quickstart=pg). */
const blocks = new Map<string, string>()
for (const match of README.matchAll(/^```ts quickstart=(\w+)\n([\s\S]*?)^```$/gm)) {
  blocks.set(match[1]!, match[2]!)
}

/** Each `lifeguard/…` subpath the package exports, mapped to the source file its build comes from. */
function sourceOf(specifier: string): string | undefined {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    exports: Record<string, { import?: { default?: string } }>
  }
  const subpath = specifier === 'lifeguard' ? '.' : `./${specifier.slice('lifeguard/'.length)}`
  const built = pkg.exports[subpath]?.import?.default
  if (built === undefined) return undefined
  const entry = /^\.\/dist\/(.+)\.js$/.exec(built)?.[1]
  const entries = (tsupConfig as { entry: Record<string, string> }).entry
  return entry === undefined ? undefined : join(ROOT, entries[entry]!)
}

/**
 * Resolves `lifeguard` and its subpaths the way the published package does (through package.json's
 * exports), but to the current sources, so that the README is checked against this tree.
 */
const lifeguardFromSource: Plugin = {
  name: 'lifeguard-from-source',
  setup(b) {
    b.onResolve({ filter: /^lifeguard(\/.*)?$/ }, (args) => {
      const path = sourceOf(args.path)
      if (path === undefined) {
        return { errors: [{ text: `package.json exports no subpath for "${args.path}"` }] }
      }
      return { path }
    })
  },
}

const work = mkdtempSync(join(tmpdir(), 'lifeguard-readme-'))
const bundles = join(ROOT, 'node_modules', '.cache', 'lifeguard-readme-test')
mkdirSync(bundles, { recursive: true })
afterAll(() => {
  rmSync(work, { recursive: true, force: true })
  for (const name of blocks.keys())
    rmSync(join(bundles, `${name}-${process.pid}.mjs`), { force: true })
})

interface Run {
  code: number | null
  stdout: string
  stderr: string
  ms: number
}

/** Bundles one README block as written and runs it in its own process, in a scratch directory. */
async function runBlock(name: string, env: Record<string, string>): Promise<Run> {
  const source = blocks.get(name)
  if (source === undefined) throw new Error(`README.md has no \`\`\`ts quickstart=${name} block`)
  // Under node_modules/.cache, so that the drivers resolve from this repository as from an app's.
  const outfile = join(bundles, `${name}-${process.pid}.mjs`)
  await build({
    stdin: { contents: source, loader: 'ts', resolveDir: ROOT, sourcefile: `README-${name}.ts` },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    plugins: [lifeguardFromSource],
    outfile,
    logLevel: 'silent',
  })
  const started = performance.now()
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [outfile], {
      cwd: work,
      env: { ...process.env, ...env, NODE_DEBUG: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk) => {
      stdout += chunk
    })
    child.stderr.on('data', (chunk) => {
      stderr += chunk
    })
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`the ${name} quickstart did not exit within 30 s\n${stdout}\n${stderr}`))
    }, 30_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr, ms: performance.now() - started })
    })
  })
}

describe('the README quickstart', () => {
  it('has a PostgreSQL, a MySQL and a SQLite block', () => {
    expect([...blocks.keys()].sort()).toEqual(['mysql', 'postgres', 'sqlite'])
  })

  it('runs the SQLite block as written: it queries, writes, and exits with no leased connection', async () => {
    const run = await runBlock('sqlite', {})
    expect(run.stderr).toBe('')
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/now: '\d{4}-\d\d-\d\d \d\d:\d\d:\d\d'/)
    expect(run.stdout).toMatch(/leased: 0/)
    const db = new (await import('better-sqlite3')).default(join(work, 'app.db'))
    expect(db.prepare('SELECT balance FROM accounts WHERE id = 1').get()).toEqual({ balance: 100 })
    db.close()
  })
})

const servers: Record<'postgres' | 'mysql', Awaited<ReturnType<typeof probe>>> = {
  postgres: await probe('postgres'),
  mysql: await probe('mysql'),
}

for (const kind of ['postgres', 'mysql'] as const satisfies readonly ServerKind[]) {
  describeOnServer(servers[kind], `the README quickstart on ${servers[kind].label}`, () => {
    it(`runs the ${kind} block as written and exits by itself with no leased connection`, async () => {
      const run = await runBlock(kind, { DATABASE_URL: servers[kind].url })
      expect(run.stderr).toBe('')
      expect(run.code).toBe(0)
      // The first line is the server's clock, printed by the block's first query.
      expect(run.stdout).toMatch(
        kind === 'postgres' ? /^\d{4}-\d\d-\d\dT/ : /now: \d{4}-\d\d-\d\dT/,
      )
      expect(run.stdout).toMatch(/leased: 0/)
      expect(run.stdout).toMatch(/waiting: 0/)
    })
  })
}
