import { randomBytes } from 'node:crypto'
import { cpus, platform, release } from 'node:os'
import { startBenchApp } from './bench-app.js'
import { prepareBenchDatabase } from './bench-database.js'
import { type ConnectionSample, startConnectionSampler } from './connection-sampler.js'
import { DriverMissingError } from './drivers.js'
import type { BenchMode, BenchOptions } from './parse-args.js'
import { redactUrl } from './redact-url.js'

/** One mode's figures. The names of `requestsPerSecond`, `latencyMs`, `errors` are binding. */
export interface BenchModeResult {
  mode: BenchMode
  /** Successful (HTTP 200) responses per second; a failed request does not count. */
  requestsPerSecond: number
  /** Responses received: all, and the successful ones. */
  requests: { total: number; ok: number }
  /** Client-side latency of every response, in ms, as autocannon measured it. */
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number }
  /** Failed requests, by kind: "Too many connections" is the server's refusal (53300, 1040). */
  errors: { total: number; byKind: Record<string, number> }
  /** The highest count of the app's connections the server reported. */
  peakServerConnections: number
  /** This mode's requestsPerSecond ÷ per-request's; `null` without a per-request run. */
  ratioToPerRequest: number | null
  /** The server's count of the app's connections: [ms since the mode began, count]. */
  serverConnections: ConnectionSample[]
}

/** The whole run, as `--json` prints it and the HTML report draws it. */
export interface BenchReport {
  /** The server, redacted. */
  url: string
  clients: number
  durationMs: number
  max: number
  overflow: number
  modes: BenchModeResult[]
  server: {
    kind: 'postgres' | 'mysql'
    version: string
    maxConnections: number
    /** Whether the bench started its own throwaway PostgreSQL. */
    embedded: boolean
    /** How the app's connections were told from everyone else's. */
    countedBy: string
  }
  /** When the run started, ISO 8601. */
  startedAt: string
  machine: { cpuModel: string; cpus: number; node: string; os: string }
}

/** What the runner tells its caller while it runs. */
export interface BenchProgress {
  mode: BenchMode
  elapsedMs: number
  /** Responses in the last second. */
  requestsPerSecond: number
  serverConnections: number | undefined
}

/** The caller's hooks: progress lines, and a signal that stops the run early (Ctrl-C). */
export interface BenchHooks {
  signal?: AbortSignal | undefined
  onProgress?: ((progress: BenchProgress) => void) | undefined
  /** Whether the server is the bench's own embedded PostgreSQL, for the report. */
  embedded?: boolean | undefined
}

/** The part of autocannon's result the runner reads. */
interface CannonResult {
  '2xx': number
  non2xx: number
  errors: number
  timeouts: number
  latency: { p50: number; p90: number; p99: number; max: number; average: number }
}

/** An autocannon run, as far as the runner drives it. */
interface CannonInstance {
  on(event: 'tick', listener: (tick: { counter: number }) => void): unknown
  stop(): void
}

type Cannon = (
  options: Record<string, unknown>,
  done: (error: Error | null, result: CannonResult) => void,
) => CannonInstance

/** How long a request may wait for a pooled connection before it fails. */
const ACQUIRE_TIMEOUT_MS = 10_000
/** autocannon's per-request timeout, in s: a request unanswered this long counts as an error. */
const HTTP_TIMEOUT_S = 10
/** The most requests one mode may send: a bound on count next to the bound on time. */
const MAX_REQUESTS_PER_SECOND = 50_000

async function loadAutocannon(): Promise<Cannon> {
  try {
    const module = (await import('autocannon')) as unknown as { default?: Cannon } & Cannon
    return module.default ?? module
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new DriverMissingError(
        'lifeguard bench needs the autocannon package: npm install autocannon',
      )
    }
    throw error
  }
}

function round(value: number, digits = 1): number {
  const f = 10 ** digits
  return Math.round(value * f) / f
}

async function runMode(
  mode: BenchMode,
  options: BenchOptions,
  db: Awaited<ReturnType<typeof prepareBenchDatabase>>,
  cannon: Cannon,
  hooks: BenchHooks,
): Promise<Omit<BenchModeResult, 'ratioToPerRequest'>> {
  await db.waitForNoConnections()
  const app = await startBenchApp(mode, db, {
    max: options.max,
    overflow: options.overflow,
    acquireTimeoutMs: ACQUIRE_TIMEOUT_MS,
    backlog: options.clients + 64,
  })
  const sampler = startConnectionSampler(() => db.countConnections())
  const started = performance.now()
  let result: CannonResult
  try {
    result = await new Promise<CannonResult>((resolve, reject) => {
      let watchdog: NodeJS.Timeout | undefined
      const stop = () => instance.stop()
      const instance = cannon(
        {
          url: app.url,
          connections: options.clients,
          duration: options.durationMs / 1000,
          timeout: HTTP_TIMEOUT_S,
          maxOverallRequests: Math.ceil((MAX_REQUESTS_PER_SECOND * options.durationMs) / 1000),
        },
        (error, done) => {
          clearTimeout(watchdog)
          hooks.signal?.removeEventListener('abort', stop)
          if (error) reject(error)
          else resolve(done)
        },
      )
      // A bound of its own on time, should autocannon not stop by itself.
      watchdog = setTimeout(stop, options.durationMs + 30_000)
      if (hooks.signal?.aborted) stop()
      else hooks.signal?.addEventListener('abort', stop, { once: true })
      instance.on('tick', ({ counter }) => {
        hooks.onProgress?.({
          mode,
          elapsedMs: performance.now() - started,
          requestsPerSecond: counter,
          serverConnections: sampler.last,
        })
      })
    })
  } finally {
    await app.close()
  }
  const elapsedMs = performance.now() - started
  const samples = await sampler.stop()
  const byKind: Record<string, number> = Object.fromEntries(
    [...app.counts.errors].sort((a, b) => b[1] - a[1]),
  )
  // Socket errors and timeouts seen by autocannon itself (autocannon counts timeouts as errors).
  if (result.timeouts > 0) byKind['HTTP timeout'] = result.timeouts
  if (result.errors - result.timeouts > 0) byKind['HTTP error'] = result.errors - result.timeouts
  const total = Object.values(byKind).reduce((sum, n) => sum + n, 0)
  const seconds = Math.min(elapsedMs, options.durationMs) / 1000
  return {
    mode,
    requestsPerSecond: round(result['2xx'] / seconds),
    requests: { total: result['2xx'] + result.non2xx, ok: result['2xx'] },
    latencyMs: {
      p50: result.latency.p50,
      p90: result.latency.p90,
      p99: result.latency.p99,
      max: result.latency.max,
      mean: round(result.latency.average, 2),
    },
    errors: { total, byKind },
    peakServerConnections: Math.max(0, ...samples.map(([, n]) => n)),
    serverConnections: samples,
  }
}

/**
 * Runs the bench against the server at `url`: seeds a table, then for each mode starts the app,
 * loads it with autocannon for the set duration while sampling the server's count of the app's
 * connections every 100 ms, and collects the figures. It always drops what it created, also
 * when stopped through `hooks.signal` or failing.
 */
export async function runBench(
  url: string,
  options: BenchOptions,
  hooks: BenchHooks = {},
): Promise<BenchReport> {
  const cannon = await loadAutocannon()
  const startedAt = new Date().toISOString()
  const runId = `${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`
  const db = await prepareBenchDatabase(url, runId)
  const modes: Array<Omit<BenchModeResult, 'ratioToPerRequest'>> = []
  try {
    for (const mode of options.modes) {
      if (hooks.signal?.aborted) break
      modes.push(await runMode(mode, options, db, cannon, hooks))
    }
  } finally {
    await db.drop()
  }
  const base = modes.find((m) => m.mode === 'per-request')?.requestsPerSecond
  const cpu = cpus()
  return {
    url: redactUrl(url),
    clients: options.clients,
    durationMs: options.durationMs,
    max: options.max,
    overflow: options.overflow,
    modes: modes.map((m) => ({
      ...m,
      ratioToPerRequest:
        base === undefined || base === 0 ? null : round(m.requestsPerSecond / base, 2),
    })),
    server: {
      kind: db.kind,
      version: db.version,
      maxConnections: db.maxConnections,
      embedded: hooks.embedded === true,
      countedBy: db.countedBy,
    },
    startedAt,
    machine: {
      cpuModel: cpu[0]?.model.trim() ?? 'unknown',
      cpus: cpu.length,
      node: process.version,
      os: `${platform()} ${release()}`,
    },
  }
}
