import { randomBytes } from 'node:crypto'
import { cpus, platform, release } from 'node:os'
import { startBenchApp } from './bench-app.js'
import { prepareBenchDatabase } from './bench-database.js'
import { type ConnectionSample, startConnectionSampler } from './connection-sampler.js'
import { DriverMissingError } from './drivers.js'
import type { BenchMode, BenchOptions } from './parse-args.js'
import { redactUrl } from './redact-url.js'
import { type WaitHistogram, watchPoolWaits } from './wait-histogram.js'

/** One round of one mode: what a single run measured. */
export interface BenchRoundResult {
  /** Successful (HTTP 200) responses per second; a failed request does not count. */
  requestsPerSecond: number
  /** Responses received: all, and the successful ones. */
  requests: { total: number; ok: number }
  /** Client-side latency of every response, in ms, as autocannon measured it. */
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number }
  /** Failed requests, by kind: "Too many connections" is the server's refusal (53300, 1040). */
  errors: { total: number; byKind: Record<string, number> }
  /** The highest count of the app's sessions the server reported. */
  peakServerConnections: number
  /** The server's sessions: [ms since the mode began, the app's, all client sessions]. */
  serverConnections: ConnectionSample[]
  /**
   * Connects the server refused for want of a slot ("Too many connections", or the user's
   * connection limit), per {@link REFUSED_INTERVAL_MS}: [ms since the mode began, count].
   */
  refusedConnects: Array<[elapsedMs: number, refused: number]>
  /**
   * The lifeguard mode only: how long requests waited for a pooled connection, the buckets of the
   * pool's `db_client_connection_wait_time_seconds` histogram.
   */
  waitTime?: WaitHistogram | undefined
}

/** A range over the rounds. */
export interface Spread {
  min: number
  max: number
}

/**
 * One mode's figures. With several rounds they are those of the mode's median round (by
 * requests per second), so that its chart, errors and table row come from one real run;
 * `requestsPerSecond` is the median over all rounds. The names of `requestsPerSecond`,
 * `latencyMs`, `errors` are binding.
 */
export interface BenchModeResult extends BenchRoundResult {
  mode: BenchMode
  /** The median requestsPerSecond ÷ per-request's median; `null` without a per-request run. */
  ratioToPerRequest: number | null
  /** Which round the figures are from (0-based): the median one. */
  medianRound: number
  /** Over the rounds: requests per second, and each round's ratio to that round's per-request. */
  spread: { requestsPerSecond: Spread; ratioToPerRequest: Spread | null }
  /** Every round's figures, in the order run, without the time series. */
  rounds: Array<
    Omit<BenchRoundResult, 'serverConnections' | 'refusedConnects' | 'waitTime'> & {
      ratioToPerRequest: number | null
    }
  >
}

/** The whole run, as `--json` prints it and the HTML report draws it. */
export interface BenchReport {
  /** The server, redacted. */
  url: string
  clients: number
  durationMs: number
  /** How many times each mode ran; modes take turns, round by round. */
  rounds: number
  max: number
  overflow: number
  /** `--max-pipeline`, when given (the lifeguard mode's `maxPipeline`). */
  maxPipeline?: number
  modes: BenchModeResult[]
  server: {
    kind: 'postgres' | 'mysql'
    version: string
    maxConnections: number
    /** The most sessions the app can have: `max_connections` less what the server keeps back. */
    usableConnections: number
    /** How `usableConnections` was reckoned. */
    usableBy: string
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
  /** 1-based, of `rounds`. */
  round: number
  rounds: number
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
/** The width of one bar of refused connects in the report. */
export const REFUSED_INTERVAL_MS = 500

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

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** Refusals per interval from 0 to the end of the mode, zeros included, so bars line up. */
function bucketRefusals(
  at: number[],
  started: number,
  elapsedMs: number,
): BenchRoundResult['refusedConnects'] {
  const buckets = Math.max(1, Math.ceil(elapsedMs / REFUSED_INTERVAL_MS))
  const counts = new Array<number>(buckets).fill(0)
  for (const t of at) {
    const i = Math.floor((t - started) / REFUSED_INTERVAL_MS)
    counts[Math.min(buckets - 1, Math.max(0, i))]!++
  }
  return counts.map((n, i) => [i * REFUSED_INTERVAL_MS, n])
}

async function runMode(
  mode: BenchMode,
  roundNo: number,
  options: BenchOptions,
  db: Awaited<ReturnType<typeof prepareBenchDatabase>>,
  cannon: Cannon,
  hooks: BenchHooks,
): Promise<BenchRoundResult> {
  await db.waitForNoConnections()
  const app = await startBenchApp(mode, db, {
    max: options.max,
    overflow: options.overflow,
    maxPipeline: options.maxPipeline,
    acquireTimeoutMs: ACQUIRE_TIMEOUT_MS,
    backlog: options.clients + 64,
  })
  const waits = app.pool === undefined ? undefined : watchPoolWaits(app.pool)
  const sampler = startConnectionSampler(() => db.countSessions())
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
          round: roundNo,
          rounds: options.rounds,
          elapsedMs: performance.now() - started,
          requestsPerSecond: counter,
          serverConnections: sampler.last,
        })
      })
    })
  } finally {
    await app.close()
  }
  const waitTime = waits?.stop()
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
    refusedConnects: bucketRefusals(app.counts.refusedAt, started, elapsedMs),
    ...(waitTime === undefined ? {} : { waitTime }),
  }
}

/** Folds one mode's rounds into its result: the median round's figures, medians and spreads. */
function summarise(
  mode: BenchMode,
  rounds: BenchRoundResult[],
  perRequest: BenchRoundResult[] | undefined,
): BenchModeResult {
  const rates = rounds.map((r) => r.requestsPerSecond)
  const rate = median(rates)
  // The round nearest the median (the earlier on a tie): with an odd count, the median itself.
  let medianRound = 0
  rates.forEach((r, i) => {
    if (Math.abs(r - rate) < Math.abs(rates[medianRound]! - rate)) medianRound = i
  })
  const ratioOf = (r: BenchRoundResult, i: number) => {
    const base = perRequest?.[i]?.requestsPerSecond
    return base === undefined || base === 0 ? null : round(r.requestsPerSecond / base, 2)
  }
  const ratios = rounds.map(ratioOf).filter((r): r is number => r !== null)
  const base =
    perRequest === undefined ? undefined : median(perRequest.map((r) => r.requestsPerSecond))
  return {
    mode,
    ...rounds[medianRound]!,
    requestsPerSecond: round(rate),
    ratioToPerRequest: base === undefined || base === 0 ? null : round(rate / base, 2),
    medianRound,
    spread: {
      requestsPerSecond: { min: Math.min(...rates), max: Math.max(...rates) },
      ratioToPerRequest:
        ratios.length === 0 ? null : { min: Math.min(...ratios), max: Math.max(...ratios) },
    },
    rounds: rounds.map(
      ({ serverConnections: _s, refusedConnects: _r, waitTime: _w, ...figures }, i) => ({
        ...figures,
        ratioToPerRequest: ratioOf(rounds[i]!, i),
      }),
    ),
  }
}

/**
 * Runs the bench against the server at `url`: seeds a table, then for each round and each mode
 * in turn starts the app, loads it with autocannon for the set duration while sampling the
 * server's sessions every 100 ms and timing every connect the server refused, and collects the
 * figures; each mode's result is its median round, with the spread over the rounds. It always
 * drops what it created, also when stopped through `hooks.signal` or failing.
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
  const byMode = new Map<BenchMode, BenchRoundResult[]>(options.modes.map((m) => [m, []]))
  try {
    // Modes take turns round by round, so that a slow spell of a shared machine hits them all.
    rounds: for (let r = 1; r <= options.rounds; r++) {
      for (const mode of options.modes) {
        if (hooks.signal?.aborted) break rounds
        const result = await runMode(mode, r, options, db, cannon, hooks)
        byMode.get(mode)!.push(result)
      }
    }
  } finally {
    await db.drop()
  }
  // An interrupted run keeps only the rounds every mode finished.
  const complete = Math.min(...[...byMode.values()].map((rounds) => rounds.length))
  const perRequest = byMode.get('per-request')?.slice(0, complete)
  const modes =
    complete === 0
      ? []
      : options.modes.map((mode) =>
          summarise(mode, byMode.get(mode)!.slice(0, complete), perRequest),
        )
  const cpu = cpus()
  return {
    url: redactUrl(url),
    clients: options.clients,
    durationMs: options.durationMs,
    rounds: complete,
    max: options.max,
    overflow: options.overflow,
    ...(options.maxPipeline === undefined ? {} : { maxPipeline: options.maxPipeline }),
    modes,
    server: {
      kind: db.kind,
      version: db.version,
      maxConnections: db.maxConnections,
      usableConnections: db.usableConnections,
      usableBy: db.usableBy,
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
