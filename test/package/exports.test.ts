import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'

const root = join(import.meta.dirname, '../..')
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  exports: Record<string, unknown>
}
const subpaths = Object.keys(pkg.exports)
  .filter((key) => key !== './package.json')
  .map((key) => (key === '.' ? 'lifeguard' : `lifeguard/${key.slice(2)}`))

// A scratch project inside node_modules, so that it resolves the drivers and their types
// from this repository while `lifeguard` itself comes from the packed tarball.
let project: string

beforeAll(() => {
  const scratch = join(root, 'node_modules', '.cache')
  mkdirSync(scratch, { recursive: true })
  project = mkdtempSync(join(scratch, 'lifeguard-pack-'))
  // `npm pack` runs the build first (prepack), so this checks what would be published.
  const tarball = execFileSync('npm', ['pack', '--silent', '--pack-destination', project], {
    cwd: root,
    encoding: 'utf8',
  })
    .trim()
    .split('\n')
    .pop()!
  const target = join(project, 'node_modules', 'lifeguard')
  mkdirSync(target, { recursive: true })
  execFileSync('tar', ['-xzf', join(project, tarball), '-C', target, '--strip-components=1'])
}, 120_000)

/** Runs tsc on `files` of the scratch project; throws (with tsc's output) when they do not check. */
function typecheck(files: string[], module: string, resolution: string, skipLibCheck: boolean) {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
  execFileSync(
    process.execPath,
    [
      tsc,
      '--noEmit',
      '--strict',
      '--skipLibCheck',
      String(skipLibCheck),
      '--module',
      module,
      '--moduleResolution',
      resolution,
      '--target',
      'ES2022',
      '--types',
      'node',
      ...files,
    ],
    { cwd: project, encoding: 'utf8' },
  )
}

describe('the packed tarball', () => {
  it('ships dist, the README and the docs, and nothing from src or test', () => {
    const listing = execFileSync('find', ['.', '-type', 'f'], {
      cwd: join(project, 'node_modules', 'lifeguard'),
      encoding: 'utf8',
    })
    expect(listing).toContain('./dist/index.js')
    expect(listing).toContain('./README.md')
    expect(listing).toContain('./docs/errors.md')
    expect(listing).not.toMatch(/\.\/(src|test)\//)
  })

  it.each(subpaths)('%s loads as ESM and as CommonJS', (subpath) => {
    const esm = execFileSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import * as m from '${subpath}'; console.log(Object.keys(m).sort().join())`,
      ],
      { cwd: project, encoding: 'utf8' },
    )
    const cjs = execFileSync(
      process.execPath,
      ['-e', `console.log(Object.keys(require('${subpath}')).sort().join())`],
      { cwd: project, encoding: 'utf8' },
    )
    expect(esm.trim()).not.toBe('')
    expect(cjs.trim()).toBe(esm.trim())
  })

  it('the CommonJS and ESM builds share error identity through the brand', () => {
    const out = execFileSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { createRequire } from 'node:module'
         import { PoolClosedError } from 'lifeguard'
         const cjs = createRequire(import.meta.url)('lifeguard')
         console.log(new cjs.PoolClosedError('x') instanceof PoolClosedError, new PoolClosedError('x') instanceof cjs.PoolError)`,
      ],
      { cwd: project, encoding: 'utf8' },
    )
    expect(out.trim()).toBe('true true')
  })

  it('types req.db, request.db and c.var.db by the connection type the app declares', () => {
    writeFileSync(
      join(project, 'frameworks.mts'),
      `import type { Client } from 'pg'
import express from 'express'
import Fastify from 'fastify'
import { Hono } from 'hono'
import { createPool } from 'lifeguard'
import { requestScope } from 'lifeguard/express'
import fastifyLifeguard from 'lifeguard/fastify'
import { requestScope as honoScope } from 'lifeguard/hono'
import { postgres } from 'lifeguard/postgres'

declare module 'lifeguard' {
  interface ScopedConnectionTypes {
    connection: Client
  }
}

const pool = createPool({ dialect: postgres('postgres://app@127.0.0.1/app') })
const app = express()
app.use(requestScope(pool))
app.get('/', async (req, res) => {
  const { rowCount } = await req.db.use((client) => client.query('SELECT 1'))
  // @ts-expect-error the connection is a pg Client, which has no such method
  await req.db.use((client) => client.noSuchMethod())
  res.json(rowCount)
})
const fastify = Fastify()
await fastify.register(fastifyLifeguard, { pool })
fastify.get('/', { config: { lifeguard: { transaction: true } } }, async (request) =>
  (await request.db.use((client) => client.query('SELECT 1'))).rowCount,
)
const hono = new Hono()
hono.use(honoScope(pool))
hono.get('/', async (c) => c.json((await c.var.db.use((client) => client.query('SELECT 1'))).rowCount))
`,
    )
    typecheck(['frameworks.mts'], 'NodeNext', 'NodeNext', true)
  }, 60_000)

  it('has types for every subpath, under NodeNext (ESM and CJS) and bundler resolution', () => {
    const imports = subpaths.map((s, i) => `import * as m${i} from '${s}'\nvoid m${i}`).join('\n')
    writeFileSync(
      join(project, 'check.ts'),
      `${imports}\nimport { createPool, type Pool } from 'lifeguard'\nconst p: Pool<{ id: number }> = createPool({ dialect: { name: 'x', connect: async () => ({ id: 1 }), close: async () => {} } })\nvoid p\n`,
    )
    writeFileSync(
      join(project, 'check.cts'),
      `import lifeguard = require('lifeguard')\nvoid lifeguard.createPool\n`,
    )
    for (const [module, resolution] of [
      ['NodeNext', 'NodeNext'],
      ['ESNext', 'Bundler'],
    ] as const) {
      const files = module === 'NodeNext' ? ['check.ts', 'check.cts'] : ['check.ts']
      typecheck(files, module, resolution, false)
    }
  }, 60_000)
})
