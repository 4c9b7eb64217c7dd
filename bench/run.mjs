#!/usr/bin/env node
/**
 * The benchmark runner: lifeguard side by side with its peers in one run (issue 8).
 *
 *   npm run bench                       every benchmark, 6 runs each (a few minutes)
 *   npm run bench -- --quick            2 runs, short windows: under 60 s (the CI smoke test)
 *   npm run bench -- --only=noio,memory select: noio, db, memory
 *
 * Other flags: --src (bundle src/ with esbuild instead of loading dist/), --runs=N,
 * --out=FILE (default bench/results/<date>[-quick][-only-…].json), --contenders=a,b (no-I/O
 * and memory: keep only these, and the floor), --callers=1,1000 (no-I/O), --keep-bundle.
 * POSTGRES_URL and MYSQL_URL override the servers. With CI=true an unreachable server fails.
 */
import { spawnSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { dirname, join } from 'node:path'
import mysql2 from 'mysql2'
import pg from 'pg'
import { mysqlContenders, postgresContenders, runDb } from './db.mjs'
import { loadLifeguard } from './load-lifeguard.mjs'
import { runMemory } from './memory.mjs'
import { bounded, runNoio } from './noio.mjs'
import { renderReport } from './report.mjs'
import { evaluateTargets } from './targets.mjs'

const root = join(import.meta.dirname, '..')
const BENCHMARKS = ['noio', 'db', 'memory']
const PEERS = ['pg', 'pg-pool', 'postgres', 'mysql2', 'mariadb', 'generic-pool', 'tarn']

// The memory benchmark needs gc(): re-run this script under --expose-gc rather than ask for it.
if (typeof globalThis.gc !== 'function') {
  const child = spawnSync(
    process.execPath,
    [...process.execArgv, '--expose-gc', import.meta.filename, ...process.argv.slice(2)],
    { stdio: 'inherit' },
  )
  process.exit(child.status ?? 1)
}

/**
 * Parses `--name=value` and `--flag` arguments, rejecting unknown ones.
 * @param {string[]} argv
 */
function parseArgs(argv) {
  const known = ['quick', 'only', 'src', 'runs', 'out', 'contenders', 'callers', 'keep-bundle']
  /** @type {Record<string, string | true>} */
  const args = {}
  for (const arg of argv) {
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg)
    if (match === null || !known.includes(/** @type {string} */ (match[1]))) {
      throw new Error(
        `unknown argument ${JSON.stringify(arg)}; known: ${known.map((k) => `--${k}`).join(', ')}`,
      )
    }
    args[/** @type {string} */ (match[1])] = match[2] ?? true
  }
  return args
}

/**
 * A comma list argument, or undefined.
 * @param {string | true | undefined} value
 * @param {string} name
 */
function list(value, name) {
  if (value === undefined) return undefined
  if (value === true || value === '') throw new Error(`--${name} needs a value, e.g. --${name}=a,b`)
  return value.split(',').map((s) => s.trim())
}

/**
 * A positive integer argument.
 * @param {string | true | undefined} value
 * @param {string} name
 * @param {number} fallback
 */
function positive(value, name, fallback) {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`--${name} must be a positive integer, not ${JSON.stringify(value)}`)
  return n
}

/** The installed version of a package, read from node_modules. @param {string} name */
function versionOf(name) {
  try {
    return JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8'))
      .version
  } catch {
    return 'not installed'
  }
}

/** The commit measured, and whether the code measured (the core and the dialects) differs from it. */
function revision() {
  const git = (/** @type {string[]} */ args) =>
    spawnSync('git', args, { cwd: root, encoding: 'utf8' }).stdout?.trim() ?? ''
  const commit = git(['rev-parse', '--short', 'HEAD'])
  const measured = ['src/core', 'src/dialects', 'src/index.ts', 'src/create-pool.ts']
  const dirty = git(['status', '--porcelain', '--', ...measured]) !== ''
  return commit === '' ? 'unknown' : `${commit}${dirty ? ' + uncommitted changes to the core' : ''}`
}

/**
 * Connects once and reads the server's version; never throws.
 * @param {'postgres' | 'mysql'} kind
 * @param {string} url
 * @returns {Promise<{ up: true, version: string } | { up: false, reason: string }>}
 */
async function probe(kind, url) {
  try {
    if (kind === 'postgres') {
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3_000 })
      client.on('error', () => {})
      try {
        await bounded(client.connect(), 3_000, 'connect')
        const { rows } = await bounded(client.query('SHOW server_version'), 3_000, 'query')
        return { up: true, version: `PostgreSQL ${rows[0].server_version}` }
      } finally {
        await client.end().catch(() => {})
      }
    }
    const connection = mysql2.createConnection(url)
    connection.on('error', () => {})
    try {
      const rows = await bounded(
        new Promise((resolve, reject) =>
          connection.query('SELECT VERSION() AS v', (error, r) =>
            error ? reject(error) : resolve(r),
          ),
        ),
        3_000,
        'query',
      )
      return { up: true, version: /** @type {any} */ (rows)[0].v }
    } finally {
      connection.destroy()
    }
  } catch (error) {
    return { up: false, reason: error instanceof Error ? error.message : String(error) }
  }
}

/** @param {Date} d */
function localDate(d) {
  const pad = (/** @type {number} */ n) => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`
}

async function main() {
  const args = parseArgs(process.argv.slice(2))
  const quick = args.quick === true
  const only = list(args.only, 'only') ?? BENCHMARKS
  for (const name of only) {
    if (!BENCHMARKS.includes(name))
      throw new Error(
        `--only: unknown benchmark ${JSON.stringify(name)}; known: ${BENCHMARKS.join(', ')}`,
      )
  }
  const runs = positive(args.runs, 'runs', quick ? 2 : 6)
  const contenders = list(args.contenders, 'contenders')
  const callers = (list(args.callers, 'callers') ?? ['1', '10', '1000', '10000']).map((n) =>
    positive(n, 'callers', 1),
  )
  const started = new Date()
  const log = (/** @type {string} */ line) => process.stderr.write(`${line}\n`)
  const failures = /** @type {string[]} */ ([])
  process.on('unhandledRejection', (reason) => {
    failures.push(
      `unhandled rejection: ${reason instanceof Error ? reason.message : String(reason)}`,
    )
  })
  // Every loop stops by itself; this only catches a hang, so a broken pool cannot stall CI.
  const watchdog = setTimeout(
    () => {
      log(`bench: still running after ${quick ? 150 : 1800} s: giving up`)
      process.exit(2)
    },
    (quick ? 150 : 1800) * 1000,
  )
  watchdog.unref()

  const lifeguard = await loadLifeguard({
    fromSource: args.src === true,
    keep: args['keep-bundle'] === true,
  })
  /** @type {any} */
  const results = {
    date: localDate(started),
    startedAt: started.toISOString(),
    quick,
    lifeguard: { version: versionOf('..'), from: lifeguard.from, revision: revision() },
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      node: process.version,
      platform: `${os.platform()} ${os.release()}`,
      loadAverageAtStart: os.loadavg().map((n) => Number(n.toFixed(2))),
    },
    peers: Object.fromEntries(PEERS.map((name) => [name, versionOf(name)])),
  }
  results.lifeguard.version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version
  log(
    `bench: lifeguard ${results.lifeguard.version} from ${lifeguard.from} (${results.lifeguard.revision}), ${quick ? 'quick, ' : ''}${runs} runs: ${only.join(', ')}`,
  )
  try {
    if (only.includes('noio')) {
      results.noio = await runNoio({
        lifeguard,
        callers,
        runs,
        windowMs: quick ? 100 : 1000,
        only: contenders,
        log,
      })
    }
    if (only.includes('memory')) {
      results.memory = await runMemory({
        lifeguard,
        runs,
        connections: quick ? 500 : 2000,
        waiters: 10_000,
        only: contenders,
        log,
      })
    }
    if (only.includes('db')) {
      results.db = { servers: {} }
      const servers = /** @type {const} */ ([
        ['postgres', process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'],
        ['mysql', process.env.MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test'],
      ])
      for (const [kind, url] of servers) {
        const status = await probe(kind, url)
        if (!status.up) {
          const message = `${kind} server unreachable (${status.reason}); set ${kind === 'postgres' ? 'POSTGRES_URL' : 'MYSQL_URL'} or start it`
          log(`bench: SKIPPING ${kind}: ${message}`)
          results.db[kind] = { skipped: message }
          if (process.env.CI === 'true' || process.env.CI === '1') failures.push(message)
          continue
        }
        results.db.servers[kind] = status.version
        results.db[kind] = await runDb({
          contenders:
            kind === 'postgres'
              ? postgresContenders(lifeguard, url)
              : mysqlContenders(lifeguard, url),
          runs,
          windowMs: quick ? 400 : 2000,
          warmMs: quick ? 150 : 500,
          label: kind,
          log,
        })
      }
    }
  } finally {
    lifeguard.cleanup()
  }
  results.targets = evaluateTargets(results)
  results.machine.loadAverageAtEnd = os.loadavg().map((n) => Number(n.toFixed(2)))
  results.durationS = Number(((Date.now() - started.getTime()) / 1000).toFixed(1))
  for (const section of [results.noio, results.memory, results.db?.postgres, results.db?.mysql]) {
    for (const [name, r] of Object.entries(section?.contenders ?? {})) {
      if (/** @type {any} */ (r).error !== undefined)
        failures.push(`${name}: ${/** @type {any} */ (r).error}`)
    }
  }
  results.failures = failures
  const suffix = `${quick ? '-quick' : ''}${only.length < BENCHMARKS.length ? `-${only.join('-')}` : ''}`
  const out =
    typeof args.out === 'string'
      ? args.out
      : join(root, 'bench', 'results', `${results.date}${suffix}.json`)
  mkdirSync(dirname(out), { recursive: true })
  writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`)
  process.stdout.write(renderReport(results))
  log(
    `bench: wrote ${out} in ${results.durationS} s${failures.length > 0 ? `; FAILED: ${failures.join('; ')}` : ''}`,
  )
  clearTimeout(watchdog)
  process.exitCode = failures.length > 0 ? 1 : 0
}

main().catch((error) => {
  process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`)
  process.exitCode = 1
})
