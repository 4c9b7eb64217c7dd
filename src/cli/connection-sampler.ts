import type { SessionCount } from './bench-database.js'

/**
 * One reading of the server's sessions: ms since sampling began, the app's sessions, and all
 * client sessions on the server (what `max_connections` limits).
 */
export type ConnectionSample = [elapsedMs: number, connections: number, allSessions: number]

/** A running sampler; `stop()` ends it and returns what it read. */
export interface ConnectionSampler {
  /** The highest count of the app's sessions read so far. */
  readonly peak: number
  /** The latest count read, `undefined` before the first. */
  readonly last: number | undefined
  stop(): Promise<ConnectionSample[]>
}

/**
 * Reads the server's connection count every `intervalMs` (100 ms by default) until stopped. A
 * reading starts only after the previous one has finished, so a slow server gets fewer samples
 * rather than a pile of overlapping queries; a failed reading is skipped.
 */
export function startConnectionSampler(
  count: () => Promise<SessionCount>,
  intervalMs = 100,
): ConnectionSampler {
  const samples: ConnectionSample[] = []
  const started = performance.now()
  let peak = 0
  let last: number | undefined
  let stopped = false
  let timer: NodeJS.Timeout | undefined
  let inFlight: Promise<void> = Promise.resolve()

  const tick = () => {
    const at = performance.now()
    inFlight = count().then(
      ({ app, all }) => {
        samples.push([Math.round(at - started), app, all])
        peak = Math.max(peak, app)
        last = app
      },
      () => {},
    )
    void inFlight.then(() => {
      if (stopped) return
      const wait = Math.max(0, intervalMs - (performance.now() - at))
      timer = setTimeout(tick, wait)
    })
  }
  tick()

  return {
    get peak() {
      return peak
    },
    get last() {
      return last
    },
    async stop() {
      stopped = true
      clearTimeout(timer)
      await inFlight
      return samples
    },
  }
}
