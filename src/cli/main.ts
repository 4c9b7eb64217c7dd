#!/usr/bin/env node
import { readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type BenchProgress, runBench } from './bench-runner.js'
import { runDoctor } from './doctor.js'
import { renderDoctor } from './doctor-text.js'
import { kindOfUrl } from './drivers.js'
import { type EmbeddedPostgres, startEmbeddedPostgres } from './embedded-postgres.js'
import { explain } from './explain.js'
import { assertInstalled } from './missing-packages.js'
import {
  type BenchOptions,
  type DoctorOptions,
  parseCliArgs,
  USAGE,
  UsageError,
} from './parse-args.js'
import { redactUrl } from './redact-url.js'
import { renderHtmlReport } from './report-html.js'
import { renderTable } from './report-table.js'

/**
 * Exit codes (docs/cli.md): 0 done, 1 doctor found a problem, the bench failed or explain found
 * no docs, 2 bad usage (an unknown code for explain) or no server, 3 a package the command needs
 * is not installed, 130 interrupted.
 */
const EXIT = { ok: 0, problem: 1, usage: 2, missing: 3, interrupted: 130 } as const

/** Errors whose message is already the one line a user should see. */
const ONE_LINE_ERRORS = new Set([
  'UsageError',
  'DoctorConnectError',
  'DriverMissingError',
  'EmbeddedPostgresError',
])

function here(): string {
  return typeof __filename === 'string' ? __filename : fileURLToPath(import.meta.url)
}

function version(): string {
  // dist/cli.js and src/cli/main.ts sit one and two levels below package.json.
  for (const up of ['..', join('..', '..')]) {
    try {
      const pkg = JSON.parse(readFileSync(join(dirname(here()), up, 'package.json'), 'utf8'))
      if (pkg.name === 'lifeguard') return String(pkg.version)
    } catch {
      // try the next level
    }
  }
  return 'unknown'
}

/** Masks the URL's password in any text, for errors that quote what the driver was given. */
function masker(url: string | undefined): (text: string) => string {
  let secret = ''
  try {
    secret = url === undefined ? '' : decodeURIComponent(new URL(url).password)
  } catch {
    secret = ''
  }
  return (text) => (secret.length < 3 ? text : text.split(secret).join('***'))
}

function write(stream: NodeJS.WriteStream, text: string): Promise<void> {
  return new Promise((done) => {
    stream.write(text.endsWith('\n') ? text : `${text}\n`, () => done())
  })
}

function progressPrinter(clients: number, durationMs: number): (p: BenchProgress) => void {
  const tty = process.stderr.isTTY === true
  return (p) => {
    const conns = p.serverConnections === undefined ? '?' : String(p.serverConnections)
    const round = p.rounds > 1 ? `round ${p.round}/${p.rounds} ` : ''
    const line = `  ${round}${p.mode.padEnd(11)} ${(p.elapsedMs / 1000).toFixed(0).padStart(3)} s / ${durationMs / 1000} s   ${String(p.requestsPerSecond).padStart(6)} req/s   ${conns.padStart(4)} server connections   (${clients} clients)`
    if (tty) process.stderr.write(`\r\x1b[2K${line}`)
  }
}

/** The packages `bench` needs for these options; checked before anything starts. */
function benchPackages(options: BenchOptions): string[] {
  const driver =
    options.url === undefined || kindOfUrl(options.url) === 'postgres' ? 'pg' : 'mysql2'
  return ['autocannon', ...(options.url === undefined ? ['embedded-postgres'] : []), driver]
}

async function bench(options: BenchOptions): Promise<number> {
  assertInstalled('bench', benchPackages(options), true, {
    'embedded-postgres': 'or pass --url to bench a server of your own',
  })
  const controller = new AbortController()
  let interrupted = false
  const onSigint = () => {
    if (interrupted) process.exit(EXIT.interrupted)
    interrupted = true
    process.stderr.write('\nlifeguard bench: stopping (Ctrl-C again to quit at once)…\n')
    controller.abort()
  }
  process.on('SIGINT', onSigint)
  process.on('SIGTERM', onSigint)
  const mask = masker(options.url)
  let embedded: EmbeddedPostgres | undefined
  try {
    let url = options.url
    if (url === undefined) {
      process.stderr.write(
        'lifeguard bench: starting a throwaway PostgreSQL (embedded-postgres)…\n',
      )
      embedded = await startEmbeddedPostgres()
      url = embedded.url
    }
    process.stderr.write(
      `lifeguard bench: ${redactUrl(url)}, ${options.clients} clients, ${options.durationMs / 1000} s per mode, ${options.rounds} round${options.rounds === 1 ? '' : 's'}, modes ${options.modes.join(', ')}\n`,
    )
    const printProgress = progressPrinter(options.clients, options.durationMs)
    let lastMode: string | undefined
    const report = await runBench(url, options, {
      signal: controller.signal,
      embedded: embedded !== undefined,
      onProgress: (p) => {
        if (p.mode !== lastMode && lastMode !== undefined && process.stderr.isTTY) {
          process.stderr.write('\n')
        }
        lastMode = p.mode
        printProgress(p)
      },
    })
    if (process.stderr.isTTY) process.stderr.write('\n')
    if (options.json) await write(process.stdout, JSON.stringify(report, null, 2))
    else await write(process.stdout, `\n${renderTable(report)}`)
    if (options.report !== undefined) {
      const path = resolve(options.report)
      await writeFile(path, renderHtmlReport(report))
      await write(options.json ? process.stderr : process.stdout, `\nreport: ${path}`)
    }
    return interrupted ? EXIT.interrupted : EXIT.ok
  } catch (error) {
    if (interrupted) return EXIT.interrupted
    throw new Error(mask(error instanceof Error ? error.message : String(error)), {
      cause: error,
    })
  } finally {
    await embedded?.stop()
    process.off('SIGINT', onSigint)
    process.off('SIGTERM', onSigint)
  }
}

async function doctor(options: DoctorOptions): Promise<number> {
  assertInstalled('doctor', [kindOfUrl(options.url) === 'postgres' ? 'pg' : 'mysql2'], false)
  const report = await runDoctor(options)
  await write(process.stdout, options.json ? JSON.stringify(report, null, 2) : renderDoctor(report))
  return report.ok ? EXIT.ok : EXIT.problem
}

/** Runs the CLI on `argv` (without node and the script) and resolves to the exit code. */
async function main(argv: string[]): Promise<number> {
  let command: ReturnType<typeof parseCliArgs>
  try {
    command = parseCliArgs(argv)
  } catch (error) {
    if (error instanceof UsageError) {
      await write(process.stderr, `lifeguard: ${error.message}. Run "lifeguard help" for usage.`)
      return EXIT.usage
    }
    throw error
  }
  const url =
    command.command === 'bench' || command.command === 'doctor' ? command.options.url : undefined
  try {
    switch (command.command) {
      case 'help':
        await write(process.stdout, USAGE)
        return EXIT.ok
      case 'version':
        await write(process.stdout, version())
        return EXIT.ok
      case 'bench':
        return await bench(command.options)
      case 'doctor':
        return await doctor(command.options)
      case 'explain': {
        const result = explain(command.code, here())
        if (result.stdout !== '') await write(process.stdout, result.stdout)
        if (result.stderr !== '') await write(process.stderr, result.stderr)
        return result.exitCode
      }
    }
  } catch (error) {
    // bench wraps errors to mask the password; the one-line kind may sit one level down.
    const known = [error, (error as { cause?: unknown } | null)?.cause].find(
      (e) => e instanceof Error && ONE_LINE_ERRORS.has(e.name),
    ) as Error | undefined
    const name = known?.name ?? ''
    const message = masker(url)(error instanceof Error ? error.message : String(error))
    await write(process.stderr, `lifeguard ${command.command}: ${message.split('\n')[0]}`)
    if (known === undefined && /\blifeguard\b/.test(process.env.NODE_DEBUG ?? '')) {
      await write(process.stderr, masker(url)(String((error as Error)?.stack ?? error)))
    }
    if (name === 'DriverMissingError') return EXIT.missing
    return command.command === 'doctor' && name === 'DoctorConnectError' ? EXIT.usage : EXIT.problem
  }
}

// Exit explicitly: embedded-postgres hooks beforeExit and would otherwise exit with 0.
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`lifeguard: ${error instanceof Error ? error.message : String(error)}\n`)
    process.exit(EXIT.problem)
  },
)
