import type { BudgetScript } from './redis-scripts.js'

/** The subset of an ioredis client (`Redis` or `Cluster`) that a budget uses. */
export interface IoredisLike {
  call(command: string, args: (string | number)[]): Promise<unknown>
}

/** The subset of a node-redis (v4 and later) client that a budget uses. */
export interface NodeRedisLike {
  sendCommand(args: string[]): Promise<unknown>
}

/** A Redis client of either library: ioredis, or node-redis v4 and later. */
export type RedisClientLike = IoredisLike | NodeRedisLike

/** Runs one script: EVALSHA, and EVAL when the server does not know it yet (`NOSCRIPT`: first use, a restart). */
export type RunScript = (script: BudgetScript, keys: string[], args: string[]) => Promise<unknown>

/**
 * Both libraries send a raw command (`call`, `sendCommand`), which is all a budget needs: EVALSHA
 * and EVAL. Neither library is imported, so neither is needed to load `lifeguard/redis`.
 * Returns `undefined` for anything else.
 */
export function scriptRunner(client: unknown): RunScript | undefined {
  if (typeof client !== 'object' || client === null) return undefined
  const candidate = client as Partial<IoredisLike & NodeRedisLike>
  let send: (args: string[]) => Promise<unknown>
  // ioredis has both `call` and `sendCommand` (its own, taking a Command object): test `call` first.
  if (typeof candidate.call === 'function') {
    const io = client as IoredisLike
    send = (args) => io.call(args[0]!, args.slice(1))
  } else if (typeof candidate.sendCommand === 'function') {
    const node = client as NodeRedisLike
    send = (args) => node.sendCommand(args)
  } else {
    return undefined
  }
  return async (script, keys, args) => {
    const rest = [String(keys.length), ...keys, ...args]
    try {
      return await send(['EVALSHA', script.sha, ...rest])
    } catch (error) {
      if (!/NOSCRIPT/.test(error instanceof Error ? error.message : String(error))) throw error
      return send(['EVAL', script.source, ...rest])
    }
  }
}
