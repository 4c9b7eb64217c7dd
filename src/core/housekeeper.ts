import type { ConnectionRecord } from './connection-record.js'
import type { InvalidateReason } from './events.js'

/** What the housekeeper asks of its pool. */
export interface HousekeeperHost<C> {
  /** The idle records, most eligible for lending first. */
  idle(): Iterable<ConnectionRecord<C>>
  /** How many records are idle. */
  idleCount(): number
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
 * lets the pool refill to `min`. It runs on an unref'd timer, so an idle pool never keeps the
 * process alive. (Lifetime is enforced by a timer per connection, which is more precise.)
 */
export class Housekeeper<C> {
  readonly #host: HousekeeperHost<C>
  #settings: HousekeeperSettings
  #period: number
  #timer: NodeJS.Timeout | undefined

  constructor(host: HousekeeperHost<C>, settings: HousekeeperSettings) {
    this.#host = host
    this.#settings = settings
    this.#period = Housekeeper.#periodOf(settings)
  }

  static #periodOf(settings: HousekeeperSettings): number {
    let period = MAX_PERIOD_MS
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
    }
  }

  /** How often it runs, in ms. */
  get period(): number {
    return this.#period
  }

  /** Starts the periodic runs; idempotent. */
  start(): void {
    if (this.#timer !== undefined) return
    this.#timer = setInterval(() => this.run(performance.now()), this.#period)
    this.#timer.unref()
  }

  /** Stops the periodic runs; idempotent. */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer)
    this.#timer = undefined
  }

  /** One housekeeping pass at time `now`. */
  run(now: number): void {
    const { min, idleTimeout, keepaliveInterval } = this.#settings
    let idle = this.#host.idleCount()
    for (const record of [...this.#host.idle()]) {
      // An event listener of an earlier step may have borrowed it meanwhile.
      if (record.state !== 'idle') continue
      if (this.#host.isStale(record)) {
        this.#host.retire(record, 'stale')
        idle--
        continue
      }
      const idleFor = now - record.lastUsedAt
      if (idle > min && idleFor >= idleTimeout) {
        this.#host.retire(record, 'idle')
        idle--
      } else if (keepaliveInterval > 0 && idleFor >= keepaliveInterval) {
        this.#host.validate(record)
      }
    }
    this.#host.pump()
  }
}
