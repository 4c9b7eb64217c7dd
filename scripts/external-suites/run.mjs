#!/usr/bin/env node
// Runs node-postgres's and mysql2's own pool test suites twice: against the real drivers
// ("stock") and against lifeguard's facades, loaded from a built worktree's dist/ ("facade").
// The upstream files are extracted at run time from git checkouts into a directory under /tmp;
// nothing upstream is ever written into this repository. See README.md next to this file.

import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const SUITES = ['pg-pool', 'pg-connection-pool', 'mysql2']

const USAGE = `usage: run.sh [--lifeguard DIR] [--build] [--side stock|facade|both]
              [--file-timeout SECONDS] [--suite-timeout SECONDS] [--out DIR]
              [--grep SUBSTRING] [--exclude SUBSTRING]... [--keep-going] [SUITE...]
suites: ${SUITES.join(', ')} (default: all)`

function parseArgs(argv) {
  const opts = {
    lifeguard: path.resolve(here, '..', '..'),
    build: false,
    side: 'both',
    fileTimeout: 30,
    suiteTimeout: 600,
    out: null,
    grep: null,
    exclude: [],
    keepGoing: false,
    suites: [],
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const value = () => {
      const v = argv[++i]
      if (v === undefined) fail(`${arg} needs a value\n${USAGE}`)
      return v
    }
    if (arg === '--lifeguard') opts.lifeguard = path.resolve(value())
    else if (arg === '--build') opts.build = true
    else if (arg === '--side') opts.side = value()
    else if (arg === '--file-timeout') opts.fileTimeout = Number(value())
    else if (arg === '--suite-timeout') opts.suiteTimeout = Number(value())
    else if (arg === '--out') opts.out = path.resolve(value())
    else if (arg === '--grep') opts.grep = value()
    else if (arg === '--exclude') opts.exclude.push(value())
    else if (arg === '--keep-going') opts.keepGoing = true
    else if (arg === '-h' || arg === '--help') {
      console.log(USAGE)
      process.exit(0)
    } else if (SUITES.includes(arg)) opts.suites.push(arg)
    else fail(`unknown argument ${JSON.stringify(arg)}\n${USAGE}`)
  }
  if (!['stock', 'facade', 'both'].includes(opts.side)) {
    fail(`--side must be stock, facade or both, got ${JSON.stringify(opts.side)}`)
  }
  for (const [key, flag] of [
    ['fileTimeout', '--file-timeout'],
    ['suiteTimeout', '--suite-timeout'],
  ]) {
    if (!(opts[key] > 0)) fail(`${flag} must be a positive number of seconds, got ${opts[key]}`)
  }
  if (opts.suites.length === 0) opts.suites = [...SUITES]
  return opts
}

/** Whether --grep and --exclude let a test file run. */
function selected(opts, file) {
  return (!opts.grep || file.includes(opts.grep)) && !opts.exclude.some((x) => file.includes(x))
}

function fail(message) {
  console.error(`external-suites: ${message}`)
  process.exit(2)
}

const CACHE = process.env.LG_EXT_CACHE || '/tmp/lifeguard-external-suites'
const NODE_POSTGRES_DIR = process.env.NODE_POSTGRES_DIR || '/work/.mirror/brianc+node-postgres/repo'
const MYSQL2_DIR = process.env.MYSQL2_DIR || '/work/.mirror/sidorares+node-mysql2/repo'

const PG_ENV = {
  PGHOST: process.env.PGHOST || '127.0.0.1',
  PGPORT: process.env.PGPORT || '5432',
  PGUSER: process.env.PGUSER || 'postgres',
  PGDATABASE: process.env.PGDATABASE || 'test',
}
const MYSQL_ENV = {
  MYSQL_HOST: process.env.MYSQL_HOST || '127.0.0.1',
  MYSQL_PORT: process.env.MYSQL_PORT || '3306',
  MYSQL_USER: process.env.MYSQL_USER || 'root',
  MYSQL_PASSWORD: process.env.MYSQL_PASSWORD || '',
  MYSQL_DATABASE: process.env.MYSQL_DATABASE || 'test',
}

// Files that cannot run here, with the reason printed in the report.
const PG_CONNECTION_POOL_SKIPPED = {
  'native-instance-tests.js': 'needs pg-native',
  'tls-tests.js': 'needs a TLS-enabled server',
  'test-helper.js': 'helper, not a test',
}
// mysql2 test files that cannot run here, by path, with the reason (none today).
const MYSQL2_SKIPPED = {}

// --- git checkouts --------------------------------------------------------------------------

/** The git dir of a checkout: a bare mirror, or a plain clone's `.git`. */
function gitDir(dir) {
  if (fs.existsSync(path.join(dir, '.git'))) return path.join(dir, '.git')
  if (fs.existsSync(path.join(dir, 'HEAD'))) return dir
  fail(`no git checkout at ${dir} (set NODE_POSTGRES_DIR / MYSQL2_DIR)`)
}

function git(dir, ...args) {
  const r = spawnSync('git', ['--git-dir', gitDir(dir), ...args], {
    encoding: 'utf8',
    maxBuffer: 1 << 26,
  })
  if (r.status !== 0) fail(`git ${args.join(' ')} failed in ${dir}: ${r.stderr}`)
  return r.stdout
}

function extract(dir, paths, into) {
  fs.mkdirSync(into, { recursive: true })
  const archive = spawnSync('git', ['--git-dir', gitDir(dir), 'archive', 'HEAD', ...paths], {
    maxBuffer: 1 << 30,
  })
  if (archive.status !== 0) fail(`git archive failed in ${dir}: ${archive.stderr}`)
  const tar = spawnSync('tar', ['-x', '-C', into], { input: archive.stdout })
  if (tar.status !== 0) fail(`tar failed: ${tar.stderr}`)
}

// --- npm dependencies, installed once into the cache ----------------------------------------

function installDeps(name, dependencies) {
  const manifest = JSON.stringify({ name: `lg-ext-${name}-deps`, private: true, dependencies })
  const key = createHash('sha256').update(manifest).digest('hex').slice(0, 12)
  const dir = path.join(CACHE, 'deps', `${name}-${key}`)
  if (fs.existsSync(path.join(dir, '.installed'))) return path.join(dir, 'node_modules')
  // Installed beside it and renamed into place, so two first runs at once do not collide.
  const staging = `${dir}.staging-${process.pid}`
  fs.rmSync(staging, { recursive: true, force: true })
  fs.mkdirSync(staging, { recursive: true })
  fs.writeFileSync(path.join(staging, 'package.json'), manifest)
  log(`installing ${name}'s test dependencies into ${dir} (once)`)
  const r = spawnSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error'], {
    cwd: staging,
    stdio: 'inherit',
  })
  if (r.status !== 0) fail(`npm install failed in ${staging}`)
  fs.writeFileSync(path.join(staging, '.installed'), '')
  try {
    fs.rmSync(dir, { recursive: true, force: true })
    fs.renameSync(staging, dir)
  } catch (err) {
    if (!fs.existsSync(path.join(dir, '.installed'))) throw err
    fs.rmSync(staging, { recursive: true, force: true }) // another run finished first
  }
  return path.join(dir, 'node_modules')
}

/** A node_modules of symlinks to the cached packages, so extras can be added per run. */
function linkNodeModules(cached, into) {
  const target = path.join(into, 'node_modules')
  fs.mkdirSync(target, { recursive: true })
  for (const entry of fs.readdirSync(cached)) {
    fs.symlinkSync(path.join(cached, entry), path.join(target, entry))
  }
  return target
}

/** lifeguard's package.json and dist/, copied so that its `require('pg')` finds the tree's. */
function copyLifeguard(opts, nodeModules) {
  const dest = path.join(nodeModules, 'lifeguard')
  fs.mkdirSync(dest, { recursive: true })
  fs.copyFileSync(path.join(opts.lifeguard, 'package.json'), path.join(dest, 'package.json'))
  fs.cpSync(path.join(opts.lifeguard, 'dist'), path.join(dest, 'dist'), { recursive: true })
  return dest
}

// --- running a test file --------------------------------------------------------------------

// The process group of the test file running now, killed if the harness itself is stopped.
let runningGroup = null
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    if (runningGroup) killGroup(runningGroup)
    process.exit(130)
  })
}

/** Runs one process in its own process group; kills the whole group when done or timed out. */
function runProcess(command, args, { cwd, env, timeout }) {
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      cwd,
      env: { ...process.env, ...env },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    runningGroup = child.pid
    let output = ''
    const keep = (chunk) => {
      output += chunk
      if (output.length > 200_000) output = output.slice(-100_000)
    }
    child.stdout.on('data', keep)
    child.stderr.on('data', keep)
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      killGroup(child.pid)
    }, timeout * 1000)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      killGroup(child.pid) // leftovers: grandchildren that outlived the file
      runningGroup = null
      resolve({ code, signal, timedOut, output })
    })
  })
}

function killGroup(pid) {
  try {
    process.kill(-pid, 'SIGKILL')
  } catch {
    // the group is already gone
  }
}

function readJsonLines(file) {
  if (!fs.existsSync(file)) return []
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line))
}

function stripAnsi(text) {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escapes are control characters
  return text.replace(/\u001b\[[0-9;]*m/g, '')
}

function exitNote(run) {
  if (run.timedOut) return 'killed after the per-file timeout'
  return `process exited with ${run.signal ? `signal ${run.signal}` : `code ${run.code}`}`
}

/** Merges a file's planned tests with the outcomes that were recorded. */
function outcomes(file, planned, records, run) {
  const results = new Map()
  for (const title of planned) results.set(title, { file, title, status: 'not run' })
  for (const r of records) {
    if (r.type === 'passed' || r.type === 'failed' || r.type === 'skipped') {
      const error = r.error?.startsWith('process exited') ? `${r.error}: ${lastLine(run)}` : r.error
      results.set(r.title, { file, title: r.title, status: r.type, error })
    }
  }
  const tests = [...results.values()]
  for (const t of tests) {
    if (t.status === 'not run') {
      t.status = 'failed'
      t.error = `did not run: ${exitNote(run)} before it: ${lastLine(run)}`
    }
  }
  if (tests.length === 0) {
    tests.push({
      file,
      title: '(whole file)',
      status: run.code === 0 && !run.timedOut ? 'passed' : 'failed',
      error: run.code === 0 && !run.timedOut ? undefined : `${exitNote(run)}: ${lastLine(run)}`,
    })
  } else if (run.timedOut && tests.every((t) => t.status !== 'failed')) {
    tests.push({
      file,
      title: '(process exit after the tests)',
      status: 'failed',
      error: 'the process did not exit after its tests: killed after the per-file timeout',
    })
  } else if (!run.timedOut && run.code !== 0 && tests.every((t) => t.status !== 'failed')) {
    tests.push({
      file,
      title: '(file exit status)',
      status: 'failed',
      error: `${exitNote(run)}: ${lastLine(run)}`,
    })
  }
  return tests
}

function lastLine(run) {
  const lines = stripAnsi(run.output)
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
  const error = lines.find((l) => /\b\w*Error\b|did not complete|✘|^Message:/.test(l))
  return (error || lines.at(-1) || '(no output)').slice(0, 300)
}

// --- suite: pg-pool's own tests (mocha) ------------------------------------------------------

function preparePg(opts, runDir) {
  const dir = path.join(runDir, 'node-postgres')
  extract(NODE_POSTGRES_DIR, ['packages/pg', 'packages/pg-pool', 'packages/pg-cursor'], dir)
  const pkg = (p) => JSON.parse(fs.readFileSync(path.join(dir, 'packages', p, 'package.json')))
  const pg = pkg('pg')
  const pool = pkg('pg-pool')
  const deps = { ...pg.dependencies, ...pool.devDependencies }
  for (const name of ['async', 'co', 'bluebird']) deps[name] = pg.devDependencies[name]
  delete deps['pg-pool']
  const nodeModules = linkNodeModules(installDeps('node-postgres', deps), dir)
  // One pg copy for everything: the tests' own, pg-pool's default Client, and the facade's driver.
  fs.symlinkSync('../packages/pg', path.join(nodeModules, 'pg'))
  fs.symlinkSync('../packages/pg-pool', path.join(nodeModules, 'pg-pool'))
  fs.symlinkSync('../packages/pg-cursor', path.join(nodeModules, 'pg-cursor')) // submittable.js
  const lifeguard = copyLifeguard(opts, nodeModules)
  // The facade's pg-pool: its tests `require('../')`, which here is lifeguard's Pool.
  const facadePool = path.join(dir, 'packages', 'pg-pool-facade')
  fs.mkdirSync(facadePool)
  fs.writeFileSync(path.join(facadePool, 'package.json'), JSON.stringify({ main: 'index.js' }))
  fs.writeFileSync(
    path.join(facadePool, 'index.js'),
    `'use strict'\nmodule.exports = require('lifeguard/pg').Pool\n`,
  )
  fs.cpSync(path.join(dir, 'packages', 'pg-pool', 'test'), path.join(facadePool, 'test'), {
    recursive: true,
  })
  return {
    dir,
    version: `pg ${pg.version}, pg-pool ${pool.version} (${git(NODE_POSTGRES_DIR, 'rev-parse', '--short', 'HEAD').trim()})`,
    facadePg: path.join(lifeguard, 'dist', 'pg.cjs'),
  }
}

async function runPgPool(opts, tree, side, deadline) {
  const cwd = path.join(tree.dir, 'packages', side === 'stock' ? 'pg-pool' : 'pg-pool-facade')
  const mocha = path.join(tree.dir, 'node_modules', 'mocha', 'bin', 'mocha.js')
  const files = fs
    .readdirSync(path.join(cwd, 'test'))
    .filter((f) => f.endsWith('.js') && f !== 'setup.js')
    .filter((f) => selected(opts, f))
    .sort()
  const tests = []
  for (const file of files) {
    if (Date.now() > deadline) {
      tests.push(suiteTimeoutEntry(file))
      continue
    }
    const results = path.join(cwd, `.results-${file}.jsonl`)
    fs.rmSync(results, { force: true })
    const run = await runProcess(
      process.execPath,
      [mocha, '--reporter', path.join(here, 'mocha-reporter.cjs'), 'test/setup.js', `test/${file}`],
      { cwd, env: { ...PG_ENV, LG_EXT_RESULTS: results }, timeout: opts.fileTimeout },
    )
    const records = readJsonLines(results)
    const plan = records.find((r) => r.type === 'plan')
    const planned = plan ? plan.tests.map((t) => t.title) : []
    tests.push(...outcomes(file, planned, records, run))
    progress(side, file, tests)
  }
  return tests
}

// --- suite: pg's own connection-pool integration tests ---------------------------------------

async function runPgConnectionPool(opts, tree, side, deadline) {
  const pgRoot = path.join(tree.dir, 'packages', 'pg')
  const testDir = path.join(pgRoot, 'test', 'integration', 'connection-pool')
  const tests = []
  for (const file of fs.readdirSync(testDir).sort()) {
    if (!file.endsWith('.js')) continue
    if (!selected(opts, file)) continue
    if (file === 'error-tests.js') {
      log('  note: error-tests.js terminates every idle backend on the PostgreSQL server')
    }
    if (PG_CONNECTION_POOL_SKIPPED[file]) {
      if (file !== 'test-helper.js') {
        tests.push({
          file,
          title: '(whole file)',
          status: 'skipped',
          error: PG_CONNECTION_POOL_SKIPPED[file],
        })
      }
      continue
    }
    if (Date.now() > deadline) {
      tests.push(suiteTimeoutEntry(file))
      continue
    }
    const results = path.join(tree.dir, `.results-${side}-${file}.jsonl`)
    fs.rmSync(results, { force: true })
    const run = await runProcess(
      process.execPath,
      ['-r', path.join(here, 'pg-suite-preload.cjs'), path.join(testDir, file)],
      {
        cwd: pgRoot,
        env: {
          ...PG_ENV,
          LG_EXT_RESULTS: results,
          LG_EXT_PG_ROOT: pgRoot,
          LG_EXT_FACADE: side === 'facade' ? tree.facadePg : '',
          LG_EXT_KEEP_GOING: opts.keepGoing ? '1' : '',
        },
        timeout: opts.fileTimeout,
      },
    )
    const records = readJsonLines(results)
    const planned = records.filter((r) => r.type === 'planned').map((r) => r.title)
    tests.push(...outcomes(file, planned, records, run))
    progress(side, file, tests)
  }
  return tests
}

// --- suite: mysql2's pool tests (poku files, run one by one with tsx) ------------------------

const MYSQL2_PATHS = [
  'index.js',
  'promise.js',
  'index.d.ts',
  'promise.d.ts',
  'lib',
  'typings',
  'test',
  'tools',
  'package.json',
  'tsconfig.json',
]

function prepareMysql2(opts, runDir) {
  const base = path.join(runDir, 'mysql2')
  const stock = path.join(base, 'stock')
  extract(MYSQL2_DIR, MYSQL2_PATHS, stock)
  const pkg = JSON.parse(fs.readFileSync(path.join(stock, 'package.json')))
  const deps = { ...pkg.dependencies }
  for (const name of ['poku', 'tsx', 'assert-diff', 'error-stack-parser', 'portfinder']) {
    if (pkg.devDependencies[name]) deps[name] = pkg.devDependencies[name]
  }
  const cached = installDeps('mysql2', deps)
  linkNodeModules(cached, stock)

  // The facade tree: mysql2's entry points are renamed *.stock.js, and new index.js/promise.js
  // re-export them with createPool (and createPoolCluster, when lifeguard has one) from lifeguard.
  // lifeguard's own `require('mysql2')` reaches the stock entry points through node_modules/mysql2,
  // so the tests and the facade share one copy of mysql2's lib/.
  const facade = path.join(base, 'facade')
  extract(MYSQL2_DIR, MYSQL2_PATHS, facade)
  const nodeModules = linkNodeModules(cached, facade)
  copyLifeguard(opts, nodeModules)
  for (const entry of ['index', 'promise']) {
    fs.renameSync(path.join(facade, `${entry}.js`), path.join(facade, `${entry}.stock.js`))
  }
  // The stock entry points refer to each other, never to the shims.
  for (const entry of ['index', 'promise']) {
    const file = path.join(facade, `${entry}.stock.js`)
    fs.writeFileSync(
      file,
      fs
        .readFileSync(file, 'utf8')
        .replaceAll("require('./index.js')", "require('./index.stock.js')")
        .replaceAll("require('./promise.js')", "require('./promise.stock.js')"),
    )
  }
  const driverShim = path.join(nodeModules, 'mysql2')
  fs.mkdirSync(driverShim)
  fs.writeFileSync(
    path.join(driverShim, 'package.json'),
    JSON.stringify({
      name: 'mysql2',
      version: pkg.version,
      main: 'index.js',
      exports: { '.': './index.js', './promise': './promise.js', './promise.js': './promise.js' },
    }),
  )
  fs.writeFileSync(
    path.join(driverShim, 'index.js'),
    "module.exports = require('../../index.stock.js')\n",
  )
  fs.writeFileSync(
    path.join(driverShim, 'promise.js'),
    "module.exports = require('../../promise.stock.js')\n",
  )
  const require = createRequire(path.join(facade, 'x.js'))
  const replaced = {}
  for (const [entry, lifeguardEntry] of [
    ['index', 'lifeguard/mysql2'],
    ['promise', 'lifeguard/mysql2/promise'],
  ]) {
    const stockNames = Object.getOwnPropertyNames(require(`./${entry}.stock.js`))
    const lifeguardNames = Object.keys(require(lifeguardEntry))
    const lifeguardModule = require(lifeguardEntry)
    const stockModule = require(`./${entry}.stock.js`)
    const names = ['createPool', 'createPoolCluster'].filter((n) => lifeguardNames.includes(n))
    replaced[entry] = names.map((n) =>
      lifeguardModule[n] === stockModule[n] ? `${n} (lifeguard re-exports mysql2's own)` : n,
    )
    fs.writeFileSync(
      path.join(facade, `${entry}.js`),
      mysql2Shim(entry, lifeguardEntry, names, stockNames),
    )
  }
  return {
    stock,
    facade,
    version: `mysql2 ${pkg.version} (${git(MYSQL2_DIR, 'rev-parse', '--short', 'HEAD').trim()})`,
    replaced,
  }
}

function mysql2Shim(entry, lifeguardEntry, names, stockNames) {
  return [
    "'use strict'",
    `// external-suites: mysql2's ${entry}.js with ${names.join(' and ')} from lifeguard.`,
    `const stock = require('./${entry}.stock.js')`,
    `const lifeguard = require('${lifeguardEntry}')`,
    'for (const name of Object.getOwnPropertyNames(stock)) {',
    '  Object.defineProperty(exports, name, Object.getOwnPropertyDescriptor(stock, name))',
    '}',
    ...(entry === 'index'
      ? [
          '// index.js getters that hand out promise.js functions: the shim promise.js.',
          "for (const name of ['createConnectionPromise', 'createPoolPromise', 'createPoolClusterPromise']) {",
          "  const promiseName = name.replace('Promise', '')",
          "  Object.defineProperty(exports, name, { get: () => require('./promise.js')[promiseName], configurable: true })",
          '}',
        ]
      : []),
    ...names.map(
      (n) =>
        `Object.defineProperty(exports, '${n}', { value: lifeguard.${n}, enumerable: true, writable: true, configurable: true })`,
    ),
    '// The export names, for the cjs-module-lexer of ESM importers.',
    `0 && (module.exports = { ${stockNames.filter((n) => /^[A-Za-z_$][\w$]*$/.test(n)).join(', ')} })`,
    '',
  ].join('\n')
}

/** mysql2's test files that reach a pool, found by what they call. */
function mysql2PoolFiles(root) {
  const files = []
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name)
      if (entry.isDirectory()) walk(full)
      else if (entry.name.endsWith('.test.mts')) {
        const text = fs.readFileSync(full, 'utf8')
        if (/createPool|getConnection\(|PoolCluster|\bpool\b/i.test(text)) files.push(full)
      }
    }
  }
  for (const sub of ['unit', 'integration', 'global']) walk(path.join(root, 'test', sub))
  return files.map((f) => path.relative(root, f)).sort()
}

async function runMysql2(opts, tree, side, deadline) {
  const root = side === 'stock' ? tree.stock : tree.facade
  const tsx = path.join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs')
  const tests = []
  for (const file of mysql2PoolFiles(root).filter((f) => selected(opts, f))) {
    if (MYSQL2_SKIPPED[file]) {
      tests.push({ file, title: '(whole file)', status: 'skipped', error: MYSQL2_SKIPPED[file] })
      continue
    }
    if (Date.now() > deadline) {
      tests.push(suiteTimeoutEntry(file))
      continue
    }
    const run = await runProcess(process.execPath, [tsx, file], {
      cwd: root,
      env: { ...MYSQL_ENV, NO_COLOR: '1', FORCE_COLOR: '0' },
      timeout: opts.fileTimeout,
    })
    const ok = run.code === 0 && !run.timedOut
    const failures = ok ? [] : pokuFailures(run.output)
    tests.push({
      file,
      title: '(whole file)',
      status: ok ? 'passed' : 'failed',
      error: ok ? undefined : `${exitNote(run)}: ${mysql2FirstFailure(run.output, failures)}`,
      failures: ok ? undefined : failures.map(describeFailure),
      output: ok ? undefined : stripAnsi(run.output).slice(-4000),
    })
    progress(side, file, tests)
  }
  return tests
}

/**
 * poku's failed assertions, read from its output: `◌ title` opens a describe/it, `● title › time`
 * closes it, `✘ message` is a failed assertion followed by its File, Actual and Expected lines,
 * and an `XxxError: message` line inside an open block is an exception that ended it.
 */
function pokuFailures(output) {
  const lines = stripAnsi(output).split('\n')
  const open = []
  const failures = []
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim()
    if (line.startsWith('◌ ')) open.push(line.slice(2))
    else if (line.startsWith('● ')) open.pop()
    else if (/^\w*Error\b/.test(line) && open.length) {
      // an exception that ended the test, printed with its stack
      failures.push({ where: open.join(' › '), assertion: `threw ${line}` })
    } else if (line.startsWith('✘ ')) {
      const f = { where: open.join(' › '), assertion: line.slice(2) }
      for (let j = i + 1; j < Math.min(lines.length, i + 14); j++) {
        const l = lines[j].trim()
        if (/^(✘|●|◌|✔)/.test(l)) break
        if (l.startsWith('File ')) f.at = l.slice(5)
        if (/^(Actual|Expected):$/.test(l)) f[l.slice(0, -1).toLowerCase()] = lines[j + 1]?.trim()
      }
      failures.push(f)
    }
  }
  return failures
}

function describeFailure(f) {
  const values = f.actual !== undefined ? ` (actual ${f.actual}, expected ${f.expected})` : ''
  return `${f.where ? `${f.where}: ` : ''}✘ ${f.assertion}${values}${f.at ? ` at ${f.at}` : ''}`
}

function mysql2FirstFailure(output, failures) {
  if (failures.length) return describeFailure(failures[0]).slice(0, 400)
  const lines = stripAnsi(output)
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
  const error = lines.find((l) => /\b\w*Error\b|Warning/.test(l))
  const open = lines.filter((l) => l.startsWith('◌ ')).at(-1)
  return `${error || lines.at(-1) || '(no output)'}${open ? ` (last started: ${open.slice(2)})` : ''}`.slice(
    0,
    400,
  )
}

// --- report ---------------------------------------------------------------------------------

function suiteTimeoutEntry(file) {
  return { file, title: '(whole file)', status: 'failed', error: 'not run: suite timeout reached' }
}

function progress(side, file, tests) {
  const mine = tests.filter((t) => t.file === file)
  const failed = mine.filter((t) => t.status === 'failed').length
  log(`  ${side} ${file}: ${mine.length - failed} ok, ${failed} failed`)
}

function count(tests) {
  const c = { passed: 0, failed: 0, skipped: 0 }
  for (const t of tests)
    c[t.status === 'passed' ? 'passed' : t.status === 'skipped' ? 'skipped' : 'failed']++
  return c
}

function key(t) {
  return `${t.file} :: ${t.title}`
}

function compare(stock, facade) {
  const byKey = (tests) => new Map(tests.map((t) => [key(t), t]))
  const s = byKey(stock)
  const f = byKey(facade)
  const regressions = []
  const improvements = []
  for (const [k, t] of f) {
    const st = s.get(k)
    // A failure with no stock counterpart (e.g. a file that only exits badly on the facade) counts.
    if (t.status === 'failed' && (!st || st.status === 'passed')) regressions.push(t)
    if (t.status === 'passed' && st && st.status === 'failed') improvements.push(t)
  }
  return { regressions, improvements }
}

function log(message) {
  process.stderr.write(`${message}\n`)
}

// --- main -----------------------------------------------------------------------------------

async function main() {
  const opts = parseArgs(process.argv.slice(2))
  if (opts.build) {
    log(`building ${opts.lifeguard}`)
    const r = spawnSync('npm', ['run', 'build', '--silent'], {
      cwd: opts.lifeguard,
      stdio: 'inherit',
    })
    if (r.status !== 0) fail('npm run build failed')
  }
  if (!fs.existsSync(path.join(opts.lifeguard, 'dist', 'pg.cjs'))) {
    fail(`${opts.lifeguard}/dist/pg.cjs is missing: run \`npm run build\` there, or pass --build`)
  }
  fs.mkdirSync(path.join(CACHE, 'runs'), { recursive: true })
  const stamp = new Date().toISOString().replace(/[:.]/g, '-')
  const runDir = fs.mkdtempSync(path.join(CACHE, 'runs', `${stamp}-`))
  const outDir = opts.out || runDir
  fs.mkdirSync(outDir, { recursive: true })
  const sides = opts.side === 'both' ? ['stock', 'facade'] : [opts.side]
  const distMtime = fs.statSync(path.join(opts.lifeguard, 'dist', 'pg.cjs')).mtime
  const distTime = distMtime.toISOString()
  const newer = newestFile(path.join(opts.lifeguard, 'src'))
  if (newer && newer.mtime > distMtime) {
    log(`warning: ${newer.file} is newer than dist/: the facade side runs the last build`)
    log('         (run `npm run build` there, or pass --build)')
  }
  log(`lifeguard: ${opts.lifeguard} (dist built ${distTime}); work dir ${runDir}`)

  const report = {
    lifeguard: opts.lifeguard,
    lifeguardCommit: spawnSync('git', ['-C', opts.lifeguard, 'rev-parse', '--short', 'HEAD'], {
      encoding: 'utf8',
    }).stdout.trim(),
    distBuilt: distTime,
    startedAt: new Date().toISOString(),
    suites: {},
  }
  let pgTree = null
  let mysql2Tree = null
  for (const suite of opts.suites) {
    const started = Date.now()
    const deadline = started + opts.suiteTimeout * 1000
    let upstream
    let runner
    let tree
    let note
    if (suite === 'mysql2') {
      mysql2Tree ??= prepareMysql2(opts, runDir)
      tree = mysql2Tree
      upstream = tree.version
      runner = runMysql2
      note = `facade replaces index.js: ${tree.replaced.index.join(', ') || 'nothing'}; promise.js: ${tree.replaced.promise.join(', ') || 'nothing'}`
    } else {
      pgTree ??= preparePg(opts, runDir)
      tree = pgTree
      upstream = tree.version
      runner = suite === 'pg-pool' ? runPgPool : runPgConnectionPool
      note =
        suite === 'pg-pool'
          ? "facade: the tests' require('../') is lifeguard/pg's Pool"
          : "facade: helper.pg.Pool (pg's module) is lifeguard/pg's Pool"
    }
    const entry = { upstream, note }
    for (const side of sides) {
      log(`${suite} (${side})`)
      // Each side gets its own budget, so a slow facade cannot starve the stock run.
      const sideDeadline = Math.max(deadline, Date.now() + opts.suiteTimeout * 1000)
      entry[side] = { tests: await runner(opts, tree, side, sideDeadline) }
      entry[side].counts = count(entry[side].tests)
    }
    entry.seconds = Math.round((Date.now() - started) / 1000)
    if (entry.stock && entry.facade) {
      Object.assign(entry, compare(entry.stock.tests, entry.facade.tests))
    }
    report.suites[suite] = entry
    writeReport(report, outDir) // after each suite, so a long run can be read as it goes
  }
  report.finishedAt = new Date().toISOString()
  process.stdout.write(writeReport(report, outDir))
  log(`\nwritten: ${path.join(outDir, 'report.txt')}, report.json and report.md`)
}

function writeReport(report, outDir) {
  const text = render(report)
  fs.writeFileSync(path.join(outDir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`)
  fs.writeFileSync(path.join(outDir, 'report.txt'), text)
  fs.writeFileSync(path.join(outDir, 'report.md'), renderMarkdown(report))
  return text
}

/** The counts as a table and the tests that still differ, ready for a note or a PR. */
function renderMarkdown(report) {
  const fmt = (side) =>
    side ? `${side.counts.passed} passed, ${side.counts.failed} failed` : '(not run)'
  const lines = [
    `lifeguard @ ${report.lifeguardCommit}, dist built ${report.distBuilt}`,
    '',
    '| suite | upstream | stock | facade |',
    '|---|---|---|---|',
  ]
  for (const [name, s] of Object.entries(report.suites)) {
    lines.push(`| ${name} | ${s.upstream} | ${fmt(s.stock)} | ${fmt(s.facade)} |`)
  }
  for (const [name, s] of Object.entries(report.suites)) {
    const differ = s.regressions ?? s.facade?.tests.filter((t) => t.status === 'failed') ?? []
    if (!differ.length) continue
    lines.push('', `${name}, failing on the facade only:`, '')
    for (const t of differ) lines.push(`- \`${t.file}\` ${t.title}: ${t.error}`)
  }
  return `${lines.join('\n')}\n`
}

function newestFile(dir) {
  let newest = null
  if (!fs.existsSync(dir)) return null
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue
    const file = path.join(entry.parentPath ?? entry.path, entry.name)
    const { mtime } = fs.statSync(file)
    if (!newest || mtime > newest.mtime) newest = { file, mtime }
  }
  return newest
}

function render(report) {
  const lines = [
    `lifeguard ${report.lifeguard} @ ${report.lifeguardCommit} (dist built ${report.distBuilt})`,
  ]
  for (const [name, s] of Object.entries(report.suites)) {
    lines.push('', `== ${name} — ${s.upstream} — ${s.seconds}s`, `   ${s.note}`)
    const fmt = (c) =>
      `${c.passed} passed / ${c.failed} failed${c.skipped ? ` / ${c.skipped} skipped` : ''}`
    const parts = []
    if (s.stock) parts.push(`stock: ${fmt(s.stock.counts)}`)
    if (s.facade) parts.push(`facade: ${fmt(s.facade.counts)}`)
    lines.push(`   ${parts.join('; ')}`)
    const skipped = (s.stock || s.facade).tests.filter((t) => t.status === 'skipped')
    for (const t of skipped) lines.push(`   skipped: ${t.file} ${t.title}: ${t.error || ''}`)
    if (s.regressions) {
      lines.push(`   pass on stock, fail on the facade (${s.regressions.length}):`)
      for (const t of s.regressions) {
        lines.push(`   - ${t.file} :: ${t.title}`, `       ${t.error}`)
        for (const more of t.failures?.slice(1) ?? []) lines.push(`       ${more}`)
      }
      if (s.improvements.length) {
        lines.push(`   fail on stock, pass on the facade (${s.improvements.length}):`)
        for (const t of s.improvements) lines.push(`   - ${t.file} :: ${t.title}`)
      }
    }
    for (const side of ['stock', 'facade']) {
      const failed = s[side]?.tests.filter((t) => t.status === 'failed') ?? []
      if (side === 'stock' || !s.stock) {
        if (failed.length) {
          lines.push(`   failing on ${side} (${failed.length}):`)
          for (const t of failed) {
            lines.push(`   - ${t.file} :: ${t.title}`, `       ${t.error}`)
            for (const more of t.failures?.slice(1) ?? []) lines.push(`       ${more}`)
          }
        }
      }
    }
  }
  return `${lines.join('\n')}\n`
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
