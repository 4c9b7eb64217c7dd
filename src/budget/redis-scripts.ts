import { createHash } from 'node:crypto'

/**
 * The Lua scripts of `redisBudget()`, run atomically by Redis, on Redis's own clock (`TIME`):
 * the hosts' clocks never matter. Every script is given the same five keys, which share one hash
 * tag so that a Redis Cluster keeps them on one node:
 *
 * 1. `slots`: a sorted set of slot ids (`s:<owner>:<n>`), scored by when their lease ends (ms, Redis time);
 * 2. `queue`: a sorted set of waiting tickets (`t:<owner>:<n>`), scored by arrival (from `seq`): the fair queue;
 * 3. `tickets`: the same tickets, scored by when they expire (a waiter that stops polling leaves);
 * 4. `seq`: the ticket counter;
 * 5. `epoch`: when the state began (absent after a restart or an eviction), valued with the time
 *    until which no slot is granted, so that every live holder registers its slots again first.
 *
 * The owners (processes) and what each holds and waits for are read from the ids themselves, so
 * that nothing else can disagree with the slots. Every key but `epoch` expires a while after its
 * last write, so an unused budget leaves little behind (`epoch` after a day).
 *
 * The scripts call `TIME` and then write: Redis ≥ 5 replicates their effects, not the scripts
 * (older servers are asked to, with `redis.replicate_commands()`).
 */

/**
 * What every script does first: the time, expired leases and tickets purged, the epoch checked.
 * `settle` (ms) is how long a new epoch grants nothing.
 */
const prelude = (settle: string) => `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local stale = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for i = 1, #stale do redis.call('ZREM', KEYS[2], stale[i]) end
if #stale > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now) end
local fresh = 0
local readyAt = tonumber(redis.call('GET', KEYS[5]))
if not readyAt then
  fresh = 1
  readyAt = now + tonumber(${settle})
  redis.call('SET', KEYS[5], readyAt)
end
redis.call('PEXPIRE', KEYS[5], 86400000)
local function keep(ms)
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ms) end
end
`

/**
 * The shares, from the ids of the slots and tickets: every owner holding or waiting gets
 * floor(limit / owners), and the first limit % owners of them (by id) one more, so the shares add
 * up to the limit. With more owners than slots every share is 1: those without a slot are all
 * starved alike, and take turns in arrival order as slots come free. An owner is starved when it waits below its share. Returns the status every
 * script replies with: { slots taken, tickets queued, owners, share of `me`, whether another owner is starved }.
 */
const TALLY = `
local function owner(id) return string.match(id, '^%a:([^:]+):') end
local function tally(limit, me)
  local held, queued, owners = {}, {}, {}
  local function add(o)
    if held[o] == nil then
      held[o] = 0
      queued[o] = 0
      owners[#owners + 1] = o
    end
  end
  add(me)
  local slots = redis.call('ZRANGE', KEYS[1], 0, -1)
  for i = 1, #slots do
    local o = owner(slots[i])
    if o then add(o) held[o] = held[o] + 1 end
  end
  local queue = redis.call('ZRANGE', KEYS[2], 0, -1)
  for i = 1, #queue do
    local o = owner(queue[i])
    if o then add(o) queued[o] = queued[o] + 1 end
  end
  table.sort(owners)
  local share = {}
  local n = #owners
  for i = 1, n do
    if n > limit then
      share[owners[i]] = 1
    else
      share[owners[i]] = math.floor(limit / n) + ((i <= limit % n) and 1 or 0)
    end
  end
  local starved = {}
  local anyStarved = false
  local othersStarved = 0
  for i = 1, n do
    local o = owners[i]
    starved[o] = queued[o] > 0 and held[o] < share[o]
    if starved[o] then
      anyStarved = true
      if o ~= me then othersStarved = 1 end
    end
  end
  return {
    queue = queue, starved = starved, anyStarved = anyStarved,
    status = { #slots, #queue, n, share[me], othersStarved },
  }
end
`

/**
 * Takes a slot for a ticket, in its turn. ARGV: limit, leaseTtl, ticketTtl, owner, ticket, slot,
 * settle. The ticket joins the queue on its first call and is kept alive by each later one. While
 * an owner is starved, only starved owners' tickets are served; the ticket gets the slot once
 * fewer servable tickets are ahead of it than slots are free, and not before the epoch is ready.
 * Taking a slot already taken (a reply lost to a timeout, and the same ticket asking again)
 * renews it. Returns `{ granted (0/1), tickets ahead, ...status, fresh epoch (0/1) }`.
 */
const TAKE = `${prelude('ARGV[7]')}${TALLY}
local limit, ttl, ticketTtl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local me, ticket, slot = ARGV[4], ARGV[5], ARGV[6]
local granted = 0
local ahead = 0
if redis.call('ZSCORE', KEYS[1], slot) then
  granted = 1
else
  if not redis.call('ZSCORE', KEYS[2], ticket) then
    redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), ticket)
  end
  local s = tally(limit, me)
  local function servable(o) return o ~= nil and ((not s.anyStarved) or s.starved[o]) end
  for i = 1, #s.queue do
    if s.queue[i] == ticket then break end
    if servable(owner(s.queue[i])) then ahead = ahead + 1 end
  end
  local free = limit - redis.call('ZCARD', KEYS[1])
  if now >= readyAt and servable(me) and ahead < free then
    granted = 1
    ahead = 0
  else
    ahead = ahead - math.max(free, 0) + 1
  end
end
if granted == 1 then
  redis.call('ZADD', KEYS[1], now + ttl, slot)
  redis.call('ZREM', KEYS[2], ticket)
  redis.call('ZREM', KEYS[3], ticket)
else
  redis.call('ZADD', KEYS[3], now + ticketTtl, ticket)
end
keep(ttl * 2)
local st = tally(limit, me).status
return { granted, ahead, st[1], st[2], st[3], st[4], st[5], fresh }
`

/**
 * Renews the leases of the slots a process holds. ARGV: limit, leaseTtl, owner, settle, then the
 * slot ids. A slot whose lease ended meanwhile (Redis was unreachable for longer than the lease,
 * or restarted empty, or evicted the keys) is registered again even past the limit: its
 * connection is open, and the count must say so; the budget is then over-subscribed until the
 * processes above their share give some back. Returns `{ slots registered again, ...status, fresh epoch }`.
 */
const REFRESH = `${prelude('ARGV[4]')}${TALLY}
local limit, ttl, me = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local lost = 0
for i = 5, #ARGV do
  if not redis.call('ZSCORE', KEYS[1], ARGV[i]) then lost = lost + 1 end
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
end
keep(ttl * 2)
local st = tally(limit, me).status
return { lost, st[1], st[2], st[3], st[4], st[5], fresh }
`

/**
 * Gives back a slot and withdraws a ticket (either may be empty). ARGV: slot, ticket, limit,
 * owner. Returns `{ 1, ...status }`.
 */
const GIVE_BACK = `${TALLY}
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[1], ARGV[1]) end
if ARGV[2] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
end
local st = tally(tonumber(ARGV[3]), ARGV[4]).status
return { 1, st[1], st[2], st[3], st[4], st[5] }
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
