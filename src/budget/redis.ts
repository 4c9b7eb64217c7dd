import { randomUUID } from 'node:crypto'
import { inspect } from 'node:util'
import type { BudgetListener, BudgetSlot, ConnectionBudget } from '../core/connection-budget.js'
import { InvalidOptionError } from '../core/errors.js'
import { describe } from '../core/pool-options.js'
import { type RedisClientLike, type RunScript, scriptRunner } from './redis-client.js'
import { BUDGET_SCRIPTS } from './redis-scripts.js'

export type { IoredisLike, NodeRedisLike, RedisClientLike } from './redis-client.js'

/** The options of {@link redisBudget}. */
export interface RedisBudgetOptions {
  /**
   * A connected client of an existing Redis library: ioredis (`new Redis()`, or a `Cluster`), or
   * node-redis v4 and later (`await createClient().connect()`). The budget never closes it.
   */
  redis: RedisClientLike
  /** The budget's name in Redis; every process sharing the budget uses the same key and limit. */
  key: string
  /** How many connections all the pools sharing this budget may hold together. */
  limit: number
  /**
   * How long a slot outlives its process, in ms: a process that dies without giving its slots
   * back (`kill -9`, a frozen container) loses them this long after its last refresh. Leases are
   * refreshed every third of it, so two refreshes in a row may fail before one is lost.
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
  /** Whether the last command failed or timed out. */
  unreachable: boolean
  /** Slots registered again after their lease had ended (Redis away for longer than the lease, or restarted empty), in all. */
  restored: number
}

const KEYS = ['slots', 'queue', 'tickets', 'seq', 'owners'] as const

/** One waiting `take()`: its ticket in the queue and the id its slot will have. */
interface Take {
  readonly ticket: string
  readonly slot: string
  readonly signal: AbortSignal
  resolve(slot: BudgetSlot): void
  reject(error: unknown): void
  onAbort(): void
  /** A poll of it is in flight. */
  polling: boolean
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
  const allowed = ['redis', 'key', 'limit', 'leaseTtl', 'failOpen']
  for (const name of Object.keys(options)) {
    if (!allowed.includes(name))
      fail(
        name,
        (options as unknown as Record<string, unknown>)[name],
        `one of the options ${allowed.join(', ')}`,
      )
  }
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
  if (!Number.isInteger(leaseTtl) || leaseTtl < 100) {
    fail('leaseTtl', leaseTtl, 'an integer number of milliseconds ≥ 100')
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
  readonly #held = new Set<string>()
  readonly #takes = new Set<Take>()
  readonly #listeners = new Set<BudgetListener>()
  #next = 0
  #pollTimer: NodeJS.Timeout | undefined
  #refreshTimer: NodeJS.Timeout | undefined
  #refreshing = false
  #taken = 0
  #queued = 0
  #owners = 0
  #restored = 0
  /** When Redis stopped answering (ms, performance.now()), or undefined while it answers. */
  #downSince: number | undefined
  #lastError: Error | undefined

  constructor(run: RunScript, key: string, limit: number, leaseTtl: number, failOpen: boolean) {
    this.#run = run
    this.key = key
    this.limit = limit
    this.leaseTtl = leaseTtl
    this.#failOpen = failOpen
    // One hash tag for all keys: a Redis Cluster keeps them on one node, as a script needs.
    const tagged = key.includes('{') ? key : `{${key}}`
    this.#keys = KEYS.map((name) => `lifeguard:budget:${tagged}:${name}`)
    this.#pollInterval = Math.min(250, Math.max(20, Math.round(leaseTtl / 50)))
    this.#ticketTtl = Math.max(10 * this.#pollInterval, Math.round(leaseTtl / 4))
    this.#commandTimeout = Math.max(200, Math.min(2_000, Math.round(leaseTtl / 5)))
  }

  take(signal: AbortSignal): Promise<BudgetSlot> {
    if (signal.aborted) return Promise.reject(signal.reason)
    const id = `${this.#owner}:${++this.#next}`
    return new Promise<BudgetSlot>((resolve, reject) => {
      const take: Take = {
        ticket: `t:${id}`,
        slot: `s:${id}`,
        signal,
        resolve,
        reject,
        polling: false,
        onAbort: () => {
          if (!this.#takes.delete(take)) return
          // Withdraw the ticket, and the slot in case a lost reply had granted it.
          this.#send(BUDGET_SCRIPTS.giveBack, [take.slot, take.ticket]).catch(() => {})
          reject(signal.reason)
        },
      }
      signal.addEventListener('abort', take.onAbort, { once: true })
      this.#takes.add(take)
      this.#poll(take)
    })
  }

  surplus(): number {
    const held = this.#held.size
    if (held === 0 || (this.#queued === 0 && this.#taken <= this.limit)) return 0
    const share = Math.max(1, Math.floor(this.limit / Math.max(1, this.#owners)))
    return Math.max(0, held - share)
  }

  blocked(): { message: string; cause?: unknown } {
    const name = `the shared budget "${this.key}" (limit ${this.limit})`
    if (this.#downSince !== undefined) {
      const ms = Math.round(performance.now() - this.#downSince)
      return {
        message: `${name} cannot be reached: Redis has not answered for ${ms} ms (${this.#lastError?.message ?? 'no reply'}); connections this process holds keep serving`,
        cause: this.#lastError,
      }
    }
    return {
      message: `${name} has no slot free: ${this.#taken} taken, ${this.#queued} tickets queued by ${this.#owners} processes; this process holds ${this.#held.size}`,
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
      unreachable: this.#downSince !== undefined,
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
          // Late too: a client that queued the command while offline sends it once back.
          anyReply?.(reply)
          clearTimeout(timer)
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
    ]
    this.#send(BUDGET_SCRIPTS.take, args).then(
      (reply) => {
        take.polling = false
        this.#answered()
        const [granted, , taken, queued, owners] = (reply as unknown[]).map(Number)
        this.#counts(taken!, queued!, owners!)
        if (!this.#takes.has(take)) {
          // Aborted meanwhile: its give-back, sent after this take, removes what it was granted.
          return
        }
        if (granted === 1) this.#grant(take)
        else this.#schedulePoll()
      },
      (error) => {
        take.polling = false
        this.#unreachable(error)
        if (!this.#takes.has(take)) return
        // The same slot id: if Redis ran the take after all, the next refresh finds it taken.
        if (this.#failOpen) this.#grant(take)
        else this.#schedulePoll()
      },
    )
  }

  #grant(take: Take): void {
    this.#takes.delete(take)
    take.signal.removeEventListener('abort', take.onAbort)
    const id = take.slot
    this.#held.add(id)
    this.#scheduleRefresh()
    let released = false
    take.resolve({
      release: () => {
        if (released) return
        released = true
        this.#held.delete(id)
        this.#send(BUDGET_SCRIPTS.giveBack, [id, '']).then(
          () => this.#answered(),
          // Unreachable: the lease ends by itself within leaseTtl, and it is never refreshed again.
          (error) => this.#unreachable(error),
        )
        // A slot came free here: this process's own waiters may take it at once.
        if (this.#takes.size > 0) this.#pollAll()
      },
    })
  }

  #schedulePoll(): void {
    if (this.#pollTimer !== undefined) return
    const delay = this.#downSince === undefined ? this.#pollInterval : this.#pollInterval * 4
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

  #refresh(): void {
    if (this.#refreshing || this.#held.size === 0) return
    this.#refreshing = true
    const args = [String(this.leaseTtl), this.#owner, ...this.#held]
    const restored = (reply: unknown) => {
      this.#restored += Number((reply as unknown[])[0])
    }
    this.#send(BUDGET_SCRIPTS.refresh, args, restored).then(
      (reply) => {
        this.#refreshing = false
        this.#answered()
        const [, taken, queued, owners] = (reply as unknown[]).map(Number)
        this.#counts(taken!, queued!, owners!)
        this.#scheduleRefresh()
      },
      (error) => {
        this.#refreshing = false
        this.#unreachable(error)
        this.#scheduleRefresh()
      },
    )
  }

  /** The counts of the last reply: when they call for connections back, the pools hear of it. */
  #counts(taken: number, queued: number, owners: number): void {
    this.#taken = taken
    this.#queued = queued
    this.#owners = owners
    if (this.surplus() > 0) {
      for (const listener of this.#listeners) listener.shed()
    }
  }

  #answered(): void {
    if (this.#downSince === undefined) return
    this.#downSince = undefined
    // Back: renew (or register again) every slot held now, rather than a third of a lease later.
    if (this.#refreshTimer !== undefined) {
      clearTimeout(this.#refreshTimer)
      this.#refreshTimer = undefined
    }
    this.#refresh()
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
    for (const listener of this.#listeners)
      listener.warning('LIFEGUARD_BUDGET_UNREACHABLE', message)
  }
}
