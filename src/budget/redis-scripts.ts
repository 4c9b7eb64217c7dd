import { createHash } from 'node:crypto'

/**
 * The Lua scripts of `redisBudget()`, run atomically by Redis, on Redis's own clock (`TIME`):
 * the hosts' clocks never matter. Every script is given the same five keys, which share one hash
 * tag so that a Redis Cluster keeps them on one node:
 *
 * 1. `slots`: a sorted set of slot ids, scored by when their lease ends (ms, Redis time);
 * 2. `queue`: a sorted set of waiting tickets, scored by arrival (from `seq`): the fair queue;
 * 3. `tickets`: the same tickets, scored by when they expire (a waiter that stops polling leaves);
 * 4. `seq`: the ticket counter;
 * 5. `owners`: the processes holding or waiting for slots, scored by when that ends.
 *
 * Every key expires a while after its last write, so an unused budget leaves nothing behind.
 */

/** What every script does first: the time, and expired leases, tickets and owners purged. */
const PRELUDE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
local stale = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for i = 1, #stale do redis.call('ZREM', KEYS[2], stale[i]) end
if #stale > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now) end
local function keep(ms)
  for i = 1, 5 do redis.call('PEXPIRE', KEYS[i], ms) end
end
`

/**
 * Takes a slot for a ticket, in its turn. ARGV: limit, leaseTtl, ticketTtl, owner, ticket, slot.
 * The ticket joins the queue on its first call and is kept alive by each later one; it gets the
 * slot once fewer tickets are ahead of it than slots are free. Taking a slot already taken (a
 * reply lost to a timeout, and the same ticket asking again) renews it. Returns
 * `{ granted (0/1), tickets ahead, slots taken, tickets queued, owners }`.
 */
const TAKE = `${PRELUDE}
local limit, ttl, ticketTtl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local owner, ticket, slot = ARGV[4], ARGV[5], ARGV[6]
redis.call('ZADD', KEYS[5], now + ttl, owner)
local granted = 0
local ahead = 0
if redis.call('ZSCORE', KEYS[1], slot) then
  granted = 1
else
  if not redis.call('ZSCORE', KEYS[2], ticket) then
    redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), ticket)
  end
  local free = limit - redis.call('ZCARD', KEYS[1])
  local rank = redis.call('ZRANK', KEYS[2], ticket)
  if rank < free then granted = 1 else ahead = rank - math.max(free, 0) + 1 end
end
if granted == 1 then
  redis.call('ZADD', KEYS[1], now + ttl, slot)
  redis.call('ZREM', KEYS[2], ticket)
  redis.call('ZREM', KEYS[3], ticket)
else
  redis.call('ZADD', KEYS[3], now + ticketTtl, ticket)
end
keep(ttl * 2)
return { granted, ahead, redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[5]) }
`

/**
 * Renews the leases of the slots a process holds. ARGV: leaseTtl, owner, then the slot ids. A slot
 * whose lease ended meanwhile (Redis was unreachable for longer than the lease, or restarted
 * empty) is registered again even past the limit: its connection is open, and the count must say
 * so; the budget is then over-subscribed until the processes above their share give some back.
 * Returns `{ slots registered again, slots taken, tickets queued, owners }`.
 */
const REFRESH = `${PRELUDE}
local ttl, owner = tonumber(ARGV[1]), ARGV[2]
local lost = 0
for i = 3, #ARGV do
  if not redis.call('ZSCORE', KEYS[1], ARGV[i]) then lost = lost + 1 end
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
end
if #ARGV > 2 then redis.call('ZADD', KEYS[5], now + ttl, owner) end
keep(ttl * 2)
return { lost, redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[5]) }
`

/** Gives back a slot and withdraws a ticket (either may be empty). ARGV: slot, ticket. */
const GIVE_BACK = `
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[1], ARGV[1]) end
if ARGV[2] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
end
return 1
`

/** A script and its SHA-1, for EVALSHA. */
export interface BudgetScript {
  readonly source: string
  readonly sha: string
}

function script(source: string): BudgetScript {
  return { source, sha: createHash('sha1').update(source).digest('hex') }
}

/** The scripts of `redisBudget()`: take, refresh and give back. */
export const BUDGET_SCRIPTS = {
  take: script(TAKE),
  refresh: script(REFRESH),
  giveBack: script(GIVE_BACK),
} as const
