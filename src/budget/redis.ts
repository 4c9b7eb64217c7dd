import { randomUUID } from 'node:crypto'
import { inspect } from 'node:util'
import { watchAbort } from '../core/abort-watch.js'
import type { BudgetListener, BudgetSlot, ConnectionBudget } from '../core/connection-budget.js'
import { InvalidOptionError } from '../core/errors.js'
import { describe, rejectUnknownKeys } from '../core/pool-options.js'
import {
  isConfigurationError,
  type RedisClientLike,
  type RunScript,
  scriptRunner,
} from './redis-client.js'
import { BUDGET_SCRIPTS } from './redis-scripts.js'

export type {
  IoredisLike,
  NodeRedisClusterLike,
  NodeRedisLike,
  RedisClientLike,
} from './redis-client.js'

/** The options of {@link redisBudget}. */
export interface RedisBudgetOptions {
  /**
   * A connected client of an existing Redis library: ioredis (`new Redis()`, or a `Cluster`), or
   * node-redis v4 and later (`await createClient().connect()`, or `createCluster()`), in its
   * default mode (not `legacyMode`). The budget never closes it. Redis 5 or later, with
   * `maxmemory-policy noeviction` (an evicted budget is a lost one: see docs/scaling.md).
   */
  redis: RedisClientLike
  /** The budget's name in Redis; every process sharing the budget uses the same key and limit. */
  key: string
  /** How many connections all the pools sharing this budget may hold together. */
  limit: number
  /**
   * How long a slot outlives its process, in ms: a process that dies without giving its slots
   * back (`kill -9`, a frozen container) loses them this long after its last refresh. Leases are
   * refreshed every third of it, so two refreshes in a row may fail before one is lost. At most an
   * hour.
   * @defaultValue 10000
   */
  leaseTtl?: number
  /**
   * While Redis is unreachable, open new connections anyway (`true`), or wait for Redis (`false`).
   * Failing open keeps a process able to grow when Redis is down, at the price of the cap:
   * the server may see more than `limit` connections until Redis is back and the excess is given
   * back. See docs/scaling.md.
   * @defaultValue false
   */
  failOpen?: boolean
}

/** A budget of connections shared through Redis: pass it as `createPool({ budget })`. */
export interface RedisBudget extends ConnectionBudget {
  /** The key it was given. */
  readonly key: string
  /** The limit it was given. */
  readonly limit: number
  /** The lease time, in ms. */
  readonly leaseTtl: number
  /** What the budget knows now: its own slots, its waiting takes, and the last counts Redis gave. */
  state(): RedisBudgetState
}

/** A snapshot of a {@link RedisBudget}, from this process's point of view. */
export interface RedisBudgetState {
  /** Slots this process holds. */
  held: number
  /** Takes of this process waiting for a slot. */
  waiting: number
  /** Slots taken by all processes, at the last reply from Redis. */
  taken: number
  /** Tickets queued by all processes, at the last reply from Redis. */
  queued: number
  /** Processes holding or waiting for slots, at the last reply from Redis. */
  owners: number
  /** This process's share of the limit, at the last reply from Redis. */
  share: number
  /** Whether the last command failed or timed out. */
  unreachable: boolean
  /** Whether the last reply was an error of Redis's own, or malformed: the budget is set up wrong. */
  refused: boolean
  /** Slots registered again after their lease had ended (Redis away for longer than the lease, or restarted empty), in all. */
  restored: number
}

const KEYS = ['slots', 'queue', 'tickets', 'seq', 'epoch'] as const

/** One waiting `take()`: its ticket in the queue and the id its slot will have. */
interface Take {
  readonly ticket: string
  readonly slot: string
  resolve(slot: BudgetSlot): void
  reject(error: unknown): void
  /** Ends the watch on its abort signal. */
  unwatch(): void
  /** A poll of it is in flight. */
  polling: boolean
}

/** The longest lease: a timer of Node's overflows past 2^31 ms, and a dead process's slots must come back. */
const MAX_LEASE_TTL = 3_600_000

/** A reply of a shape the scripts never give: a client in another mode (node-redis's `legacyMode`), or a proxy. */
class MalformedReplyError extends Error {}

/** The integers of a script's reply, or a {@link MalformedReplyError}. */
function integers(reply: unknown, length: number): number[] {
  const values = Array.isArray(reply) ? reply.slice(0, length).map(Number) : []
  if (values.length < length || !values.every(Number.isInteger)) {
    throw new MalformedReplyError(
      `malformed reply to the budget's script: ${describe(reply)}, expected an array of ${length} integers (is the client in legacyMode?)`,
    )
  }
  return values
}

function fail(option: string, value: unknown, allowed: string): never {
  throw new InvalidOptionError(
    option,
    `Invalid option ${option} of redisBudget(): ${describe(value)}; expected ${allowed}`,
  )
}

/** A message with any `user:password@` of a URL masked: Redis errors may name the address. */
function redacted(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error)
  return message.replace(/\/\/[^@\s/]*@/g, '//***@')
}

/**
 * A connection budget shared through Redis: every pool given it, in every process that uses the
 * same `key`, holds at most `limit` connections together. A pool takes a slot before it opens a
 * connection and gives it back when that connection closes; borrowing an open connection never
 * talks to Redis.
 *
 * Slots are leases that Redis expires (on its own clock), refreshed in the background; waiting
 * pools are served in arrival order through a ticket queue; a process above its share gives
 * connections back while others wait. See docs/scaling.md.
 *
 * @example
 * ```ts
 * import Redis from 'ioredis'
 * import { createPool } from 'lifeguard'
 * import { redisBudget } from 'lifeguard/redis'
 *
 * const budget = redisBudget({ redis: new Redis(), key: 'orders-db', limit: 90 })
 * const pool = createPool({ url: process.env.DATABASE_URL, max: 10, budget })
 * ```
 */
export function redisBudget(options: RedisBudgetOptions): RedisBudget {
  if (typeof options !== 'object' || options === null) {
    fail('options', options, 'an object { redis, key, limit, leaseTtl?, failOpen? }')
  }
  rejectUnknownKeys(options, ['redis', 'key', 'limit', 'leaseTtl', 'failOpen'], 'redisBudget()')
  const run = scriptRunner(options.redis)
  if (run === undefined) {
    fail(
      'redis',
      options.redis,
      'an ioredis client (with call()) or a node-redis v4+ client (with sendCommand())',
    )
  }
  const { key, limit } = options
  if (typeof key !== 'string' || key.length === 0) fail('key', key, 'a non-empty string')
  if (!Number.isInteger(limit) || limit < 1) fail('limit', limit, 'an integer ≥ 1')
  const leaseTtl = options.leaseTtl ?? 10_000
  if (!Number.isInteger(leaseTtl) || leaseTtl < 100 || leaseTtl > MAX_LEASE_TTL) {
    fail(
      'leaseTtl',
      leaseTtl,
      `an integer number of milliseconds from 100 to ${MAX_LEASE_TTL} (an hour)`,
    )
  }
  const failOpen = options.failOpen ?? false
  if (typeof failOpen !== 'boolean') fail('failOpen', failOpen, 'true or false')
  return new RedisConnectionBudget(run, key, limit, leaseTtl, failOpen)
}

class RedisConnectionBudget implements RedisBudget {
  readonly key: string
  readonly limit: number
  readonly leaseTtl: number
  readonly #run: RunScript
  readonly #failOpen: boolean
  readonly #keys: string[]
  readonly #owner = randomUUID()
  /** How often waiting takes ask again: a fiftieth of the lease, 20 to 250 ms. */
  readonly #pollInterval: number
  /** How long a waiter's ticket outlives its last poll: well inside a lease, so a dead waiter's tickets go before its slots. */
  readonly #ticketTtl: number
  /** How long a command may take before Redis counts as unreachable. */
  readonly #commandTimeout: number
  /** How long a new epoch (a restart, an eviction) grants nothing: a refresh period and four polls, for every holder to register again. */
  readonly #settle: number
  readonly #held = new Set<string>()
  /** Held slots whose connections are closing: given back already, as far as {@link surplus} counts. */
  readonly #returning = new Set<string>()
  readonly #takes = new Set<Take>()
  readonly #listeners = new Set<BudgetListener>()
  #next = 0
  #pollTimer: NodeJS.Timeout | undefined
  #refreshTimer: NodeJS.Timeout | undefined
  #refreshing = false
  #taken = 0
  #queued = 0
  #owners = 0
  #share = Number.POSITIVE_INFINITY
  #othersStarved = false
  /** Whether the pools were last told of a surplus. */
  #shedding = false
  #restored = 0
  /** When Redis stopped answering (ms, performance.now()), or undefined while it answers. */
  #downSince: number | undefined
  #lastError: Error | undefined
  /** Redis's own error (or a malformed reply), until a script succeeds: the budget is set up wrong. */
  #refused: Error | undefined

  constructor(run: RunScript, key: string, limit: number, leaseTtl: number, failOpen: boolean) {
    this.#run = run
    this.key = key
    this.limit = limit
    this.leaseTtl = leaseTtl
    this.#failOpen = failOpen
    // One hash tag for all keys, always ours: a Redis Cluster keeps them on one node, as a script needs.
    this.#keys = KEYS.map((name) => `lifeguard:budget:{${key}}:${name}`)
    this.#pollInterval = Math.min(250, Math.max(20, Math.round(leaseTtl / 50)))
    this.#ticketTtl = Math.max(10 * this.#pollInterval, Math.round(leaseTtl / 4))
    this.#commandTimeout = Math.max(200, Math.min(2_000, Math.round(leaseTtl / 5)))
    this.#settle = Math.round(leaseTtl / 3) + 4 * this.#pollInterval
  }

  take(signal: AbortSignal): Promise<BudgetSlot> {
    if (signal.aborted) return Promise.reject(signal.reason)
    const id = `${this.#owner}:${++this.#next}`
    return new Promise<BudgetSlot>((resolve, reject) => {
      const take: Take = {
        ticket: `t:${id}`,
        slot: `s:${id}`,
        resolve,
        reject,
        polling: false,
        unwatch: watchAbort(signal, () => {
          if (!this.#takes.delete(take)) return
          // Withdraw the ticket, and the slot in case a lost reply had granted it.
          this.#giveBack(take.slot, take.ticket)
          reject(signal.reason)
        }),
      }
      this.#takes.add(take)
      this.#poll(take)
    })
  }

  surplus(): number {
    const kept = this.#held.size - this.#returning.size
    const over = kept - this.#share
    // At its share a process never gives back (the shares add up to the limit); above it, only
    // while another process waits below its own share, or the budget is over-subscribed.
    if (over <= 0 || !(this.#othersStarved || this.#taken > this.limit)) return 0
    return over
  }

  blocked(): { message: string; cause?: unknown } {
    const name = `the shared budget "${this.key}" (limit ${this.limit})`
    if (this.#refused !== undefined) {
      return {
        message: `${name} is set up wrong: ${this.#refused.message}; connections this process holds keep serving`,
        cause: this.#refused,
      }
    }
    if (this.#downSince !== undefined) {
      const ms = Math.round(performance.now() - this.#downSince)
      return {
        message: `${name} cannot be reached: Redis has not answered for ${ms} ms (${this.#lastError?.message ?? 'no reply'}); connections this process holds keep serving`,
        cause: this.#lastError,
      }
    }
    return {
      message: `${name} has no slot free: ${this.#taken} taken, ${this.#queued} tickets queued by ${this.#owners} processes; this process holds ${this.#held.size} (its share ${this.#share})`,
    }
  }

  subscribe(listener: BudgetListener): () => void {
    this.#listeners.add(listener)
    return () => {
      this.#listeners.delete(listener)
    }
  }

  state(): RedisBudgetState {
    return {
      held: this.#held.size,
      waiting: this.#takes.size,
      taken: this.#taken,
      queued: this.#queued,
      owners: this.#owners,
      share: this.#share,
      unreachable: this.#downSince !== undefined,
      refused: this.#refused !== undefined,
      restored: this.#restored,
    }
  }

  [inspect.custom](): string {
    const s = this.state()
    return `RedisBudget { key: ${JSON.stringify(this.key)}, limit: ${this.limit}, leaseTtl: ${this.leaseTtl}, held: ${s.held}, waiting: ${s.waiting}, unreachable: ${s.unreachable} }`
  }

  toJSON(): object {
    return { key: this.key, limit: this.limit, leaseTtl: this.leaseTtl, ...this.state() }
  }

  /** Runs a script with a deadline: a client that queues commands while offline must not stall the budget. */
  #send(
    script: (typeof BUDGET_SCRIPTS)[keyof typeof BUDGET_SCRIPTS],
    args: string[],
    anyReply?: (reply: unknown) => void,
  ) {
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no reply within ${this.#commandTimeout} ms`)),
        this.#commandTimeout,
      )
      timer.unref()
      this.#run(script, this.#keys, args).then(
        (reply) => {
          clearTimeout(timer)
          // Late too: a client that queued the command while offline sends it once back.
          try {
            anyReply?.(reply)
          } catch (error) {
            return reject(error)
          }
          resolve(reply)
        },
        (error) => {
          clearTimeout(timer)
          reject(error)
        },
      )
    })
  }

  #poll(take: Take): void {
    if (take.polling) return
    take.polling = true
    const args = [
      String(this.limit),
      String(this.leaseTtl),
      String(this.#ticketTtl),
      this.#owner,
      take.ticket,
      take.slot,
      String(this.#settle),
    ]
    this.#send(BUDGET_SCRIPTS.take, args)
      .then((reply) => {
        const [granted, , taken, queued, owners, share, starved, fresh] = integers(reply, 8)
        take.polling = false
        this.#answered()
        // A new epoch while this process holds slots: Redis lost them; register them again now.
        if (fresh === 1 && this.#held.size > 0) this.#refreshNow()
        this.#counts(taken!, queued!, owners!, share!, starved!)
        if (!this.#takes.has(take)) {
          // Aborted meanwhile: its give-back, sent after this take, removes what it was granted.
          return
        }
        if (granted === 1) this.#grant(take)
        else this.#schedulePoll()
      })
      .catch((error) => {
        take.polling = false
        const configuration = this.#failed(error)
        if (!this.#takes.has(take)) return
        // The same slot id: if Redis ran the take after all, the next refresh finds it taken.
        // Redis refusing the script is no outage: failing open would hide a broken setup.
        if (this.#failOpen && !configuration) this.#grant(take)
        else this.#schedulePoll()
      })
  }

  #grant(take: Take): void {
    this.#takes.delete(take)
    take.unwatch()
    const id = take.slot
    this.#held.add(id)
    this.#scheduleRefresh()
    let released = false
    take.resolve({
      closing: () => {
        if (!released) this.#returning.add(id)
      },
      release: () => {
        if (released) return
        released = true
        this.#held.delete(id)
        this.#returning.delete(id)
        this.#giveBack(id, '')
        // A slot came free here: this process's own waiters may take it at once.
        if (this.#takes.size > 0) this.#pollAll()
      },
    })
  }

  #giveBack(slot: string, ticket: string): void {
    this.#send(BUDGET_SCRIPTS.giveBack, [slot, ticket, String(this.limit), this.#owner])
      .then((reply) => {
        const [, taken, queued, owners, share, starved] = integers(reply, 6)
        this.#answered()
        this.#counts(taken!, queued!, owners!, share!, starved!)
      })
      // Unreachable: the lease ends by itself within leaseTtl, and it is never refreshed again.
      .catch((error) => this.#failed(error))
  }

  #schedulePoll(): void {
    if (this.#pollTimer !== undefined) return
    const slow = this.#downSince !== undefined || this.#refused !== undefined
    const delay = slow ? this.#pollInterval * 4 : this.#pollInterval
    this.#pollTimer = setTimeout(() => {
      this.#pollTimer = undefined
      this.#pollAll()
    }, delay)
    this.#pollTimer.unref()
  }

  #pollAll(): void {
    for (const take of this.#takes) this.#poll(take)
  }

  #scheduleRefresh(): void {
    if (this.#refreshTimer !== undefined || this.#held.size === 0) return
    // A third of the lease: two refreshes in a row may fail (a Redis blip, a long GC pause or a
    // busy event loop) before a lease ends. While Redis is away, it is tried again sooner, so
    // that the leases are back soon after Redis is.
    const delay =
      this.#downSince === undefined
        ? Math.round(this.leaseTtl / 3)
        : Math.min(Math.round(this.leaseTtl / 3), this.#pollInterval * 4)
    this.#refreshTimer = setTimeout(() => {
      this.#refreshTimer = undefined
      this.#refresh()
    }, delay)
    this.#refreshTimer.unref()
  }

  #refreshNow(): void {
    if (this.#refreshTimer !== undefined) {
      clearTimeout(this.#refreshTimer)
      this.#refreshTimer = undefined
    }
    this.#refresh()
  }

  #refresh(): void {
    if (this.#refreshing || this.#held.size === 0) return
    this.#refreshing = true
    const args = [
      String(this.limit),
      String(this.leaseTtl),
      this.#owner,
      String(this.#settle),
      ...this.#held,
    ]
    const restored = (reply: unknown) => {
      this.#restored += integers(reply, 1)[0]!
    }
    this.#send(BUDGET_SCRIPTS.refresh, args, restored)
      .then((reply) => {
        const [, taken, queued, owners, share, starved] = integers(reply, 6)
        this.#refreshing = false
        this.#answered()
        this.#counts(taken!, queued!, owners!, share!, starved!)
        this.#scheduleRefresh()
      })
      .catch((error) => {
        this.#refreshing = false
        this.#failed(error)
        this.#scheduleRefresh()
      })
  }

  /** The counts of the last reply: when they call for connections back, the pools hear of it. */
  #counts(taken: number, queued: number, owners: number, share: number, starved: number): void {
    this.#taken = taken
    this.#queued = queued
    this.#owners = owners
    this.#share = share
    this.#othersStarved = starved === 1
    // Risen: give back. Fallen to zero: the pools may open connections for their waiters again.
    const surplus = this.surplus()
    if (surplus > 0 || this.#shedding) this.#notify((listener) => listener.shed())
    this.#shedding = surplus > 0
  }

  /** Calls every listener; one that throws neither stops the others nor becomes an unhandled rejection. */
  #notify(call: (listener: BudgetListener) => void): void {
    for (const listener of this.#listeners) {
      try {
        call(listener)
      } catch {}
    }
  }

  #answered(): void {
    this.#refused = undefined
    if (this.#downSince === undefined) return
    this.#downSince = undefined
    // Back: renew (or register again) every slot held now, rather than a third of a lease later.
    this.#refreshNow()
  }

  /** A script failed: Redis away, or the budget set up wrong. Returns whether it is the latter. */
  #failed(error: unknown): boolean {
    if (error instanceof MalformedReplyError || isConfigurationError(error)) {
      this.#refusedBy(error)
      return true
    }
    this.#unreachable(error)
    return false
  }

  #refusedBy(error: unknown): void {
    const first = this.#refused === undefined
    this.#refused = new Error(`Redis: ${redacted(error)}`)
    if (!first) return
    const message = `the shared budget "${this.key}" is set up wrong: ${this.#refused.message}. Open connections keep serving; new connections beyond the slots held wait until it is fixed (failOpen does not apply)`
    this.#notify((listener) => listener.warning('LIFEGUARD_BUDGET_REFUSED', message))
  }

  #unreachable(error: unknown): void {
    const cause = new Error(`Redis: ${redacted(error)}`)
    this.#lastError = cause
    if (this.#downSince !== undefined) return
    this.#downSince = performance.now()
    const then = this.#failOpen
      ? 'new connections open without a slot (failOpen), and count once Redis is back'
      : 'new connections beyond the slots held wait for it'
    const message = `the shared budget "${this.key}" cannot reach Redis (${cause.message}): open connections keep serving; ${then}`
    this.#notify((listener) => listener.warning('LIFEGUARD_BUDGET_UNREACHABLE', message))
  }
}
