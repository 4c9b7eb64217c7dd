import type { ConnectionRecord } from './connection-record.js'
import type { InvalidateReason } from './events.js'

/** What the housekeeper asks of its pool. */
export interface HousekeeperHost<C> {
  /** The idle records, most eligible for lending first. */
  idle(): Iterable<ConnectionRecord<C>>
  /** How many records are idle. */
  idleCount(): number
  /** How many records are open or opening, not counting those being closed. */
  openCount(): number
  /** Whether a record was condemned by a disconnect seen after it was made. */
  isStale(record: ConnectionRecord<C>): boolean
  /** Takes an idle record out of service and closes it. */
  retire(record: ConnectionRecord<C>, reason: InvalidateReason): void
  /** Pings an idle record in the background. */
  validate(record: ConnectionRecord<C>): void
  /** Lets the pool open what it lacks (the `min` refill). */
  pump(): void
}

/** The housekeeper's settings, from the pool's options. */
export interface HousekeeperSettings {
  readonly min: number
  /** `'fill'`: `min` counts idle connections; `'floor'`: it counts all open ones (pg-pool's rule). */
  readonly minMode: 'fill' | 'floor'
  /** `Infinity` when off. */
  readonly idleTimeout: number
  /** `0` when off. */
  readonly keepaliveInterval: number
}

/** The longest pause between two housekeeping runs. */
const MAX_PERIOD_MS = 30_000

/**
 * The pool's background work: closes idle connections beyond `min` after `idleTimeout`, closes
 * idle connections condemned by a disconnect, pings idle ones every `keepaliveInterval`, and
 * lets the pool refill to `min`. It runs on unref'd timers, so an idle pool never keeps the
 * process alive: a periodic one, and one aimed at the earliest idle deadline, so that an idle
 * connection closes at its `idleTimeout` (as pg-pool's timer per client does) without a timer
 * per release. (Lifetime is enforced by a timer per connection, which is more precise.)
 */
export class Housekeeper<C> {
  readonly #host: HousekeeperHost<C>
  #settings: HousekeeperSettings
  #period: number
  #timer: NodeJS.Timeout | undefined
  /**
   * The timer aimed at the earliest idle deadline, if one is armed. A plain property, read by
   * the pool each time a connection goes idle (see `PoolCore`'s note on private names).
   */
  idleTimer: NodeJS.Timeout | undefined = undefined

  constructor(host: HousekeeperHost<C>, settings: HousekeeperSettings) {
    this.#host = host
    this.#settings = settings
    this.#period = Housekeeper.#periodOf(settings)
  }

  static #periodOf(settings: HousekeeperSettings): number {
    let period = MAX_PERIOD_MS
    // Idle deadlines have a timer of their own (see `watchIdle`); this pace is for stale
    // connections and the `min` refill.
    if (Number.isFinite(settings.idleTimeout)) period = Math.min(period, settings.idleTimeout / 2)
    if (settings.keepaliveInterval > 0) period = Math.min(period, settings.keepaliveInterval / 2)
    return Math.max(1, Math.floor(period))
  }

  /** Applies new settings (the pool clamped `idleTimeout`), restarting the timer if it runs. */
  update(settings: HousekeeperSettings): void {
    this.#settings = settings
    this.#period = Housekeeper.#periodOf(settings)
    if (this.#timer !== undefined) {
      this.stop()
      this.start()
      // Re-aims the idle timer at the deadlines of the new idleTimeout.
      this.run(performance.now())
    }
  }

  /** How often it runs, in ms. */
  get period(): number {
    return this.#period
  }

  /** Starts the periodic runs; idempotent. */
  start(): void {
    if (this.#timer !== undefined) return
    // The timer holds the housekeeper (and so the pool) weakly: a pool dropped without close(),
    // and holding no connection, is collected, and its default name is free again (pool-names.ts).
    const self = new WeakRef(this)
    const timer = setInterval(() => {
      const housekeeper = self.deref()
      if (housekeeper === undefined) clearInterval(timer)
      else housekeeper.run(performance.now())
    }, this.#period)
    timer.unref()
    this.#timer = timer
  }

  /** Stops the periodic runs and the idle timer; idempotent. */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer)
    this.#timer = undefined
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer)
    this.idleTimer = undefined
  }

  /**
   * A connection last used at `lastUsedAt` just went idle: arms the idle timer for its deadline
   * unless one is armed already (every armed deadline is earlier, as all share `idleTimeout`).
   */
  watchIdle(lastUsedAt: number): void {
    if (this.idleTimer !== undefined || this.#timer === undefined) return
    const { idleTimeout } = this.#settings
    if (!Number.isFinite(idleTimeout)) return
    this.#armIdle(lastUsedAt + idleTimeout, performance.now())
  }

  /**
   * Arms the idle timer for `deadline`. When it fires, the pass runs as of that deadline at the
   * earliest: Node's timers keep time in whole milliseconds on a clock read once per loop turn,
   * so a timer may fire up to a millisecond before `performance.now()` reaches its deadline. A
   * pass that read the clock alone would find nothing due, and re-arm, closing the connection a
   * millisecond or more late, after timers armed later than it (pg-pool's timer per client fires
   * first: `idleTimeoutMillis: 1` closes a client before a 2 ms wait armed after the release ends).
   */
  #armIdle(deadline: number, now: number): void {
    this.idleTimer = setTimeout(
      () => {
        this.idleTimer = undefined
        this.run(Math.max(performance.now(), deadline))
      },
      Math.max(1, Math.ceil(deadline - now)),
    )
    this.idleTimer.unref()
  }

  /** One housekeeping pass at time `now`; then the idle timer is aimed at the next idle deadline. */
  run(now: number): void {
    const { min, minMode, idleTimeout, keepaliveInterval } = this.#settings
    let idle = this.#host.idleCount()
    let open = minMode === 'floor' ? this.#host.openCount() : 0
    let next = Number.POSITIVE_INFINITY
    for (const record of [...this.#host.idle()]) {
      // An event listener of an earlier step may have borrowed it meanwhile.
      if (record.state !== 'idle') continue
      if (this.#host.isStale(record)) {
        this.#host.retire(record, 'stale')
        idle--
        open--
        continue
      }
      const idleFor = now - record.lastUsedAt
      const aboveMin = minMode === 'floor' ? open > min : idle > min
      if (aboveMin && idleFor >= idleTimeout) {
        this.#host.retire(record, 'idle')
        idle--
        open--
        continue
      }
      if (idleFor < idleTimeout) next = Math.min(next, record.lastUsedAt + idleTimeout)
      if (keepaliveInterval > 0 && idleFor >= keepaliveInterval) this.#host.validate(record)
    }
    this.#host.pump()
    if (this.idleTimer === undefined && this.#timer !== undefined && Number.isFinite(next)) {
      this.#armIdle(next, now)
    }
  }
}
