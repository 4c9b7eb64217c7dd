import type { BudgetScript } from './redis-scripts.js'

/** The subset of an ioredis client (`Redis` or `Cluster`) that a budget uses. */
export interface IoredisLike {
  call(command: string, args: (string | number)[]): Promise<unknown>
}

/** The subset of a node-redis (v4 and later) client that a budget uses. */
export interface NodeRedisLike {
  sendCommand(args: string[]): Promise<unknown>
}

/** The subset of a node-redis cluster client (`createCluster()`) that a budget uses. */
export interface NodeRedisClusterLike {
  sendCommand(firstKey: string, isReadonly: boolean, args: string[]): Promise<unknown>
  nodeClient(node: unknown): unknown
}

/** A Redis client of either library: ioredis, or node-redis v4 and later (a client or a cluster). */
export type RedisClientLike = IoredisLike | NodeRedisLike | NodeRedisClusterLike

/** Runs one script: EVALSHA, and EVAL when the server does not know it yet (`NOSCRIPT`: first use, a restart). */
export type RunScript = (script: BudgetScript, keys: string[], args: string[]) => Promise<unknown>

/**
 * Both libraries send a raw command (`call`, `sendCommand`), which is all a budget needs: EVALSHA
 * and EVAL. Neither library is imported, so neither is needed to load `lifeguard/redis`.
 * Returns `undefined` for anything else.
 */
export function scriptRunner(client: unknown): RunScript | undefined {
  if (typeof client !== 'object' || client === null) return undefined
  const candidate = client as Partial<IoredisLike & NodeRedisLike & NodeRedisClusterLike>
  let send: (firstKey: string, args: string[]) => Promise<unknown>
  // ioredis has both `call` and `sendCommand` (its own, taking a Command object): test `call` first.
  if (typeof candidate.call === 'function') {
    const io = client as IoredisLike
    send = (_, args) => io.call(args[0]!, args.slice(1))
  } else if (
    typeof candidate.sendCommand === 'function' &&
    typeof candidate.nodeClient === 'function'
  ) {
    // A node-redis cluster routes a raw command by the key it is given first.
    const cluster = client as NodeRedisClusterLike
    send = (firstKey, args) => cluster.sendCommand(firstKey, false, args)
  } else if (typeof candidate.sendCommand === 'function') {
    const node = client as NodeRedisLike
    send = (_, args) => node.sendCommand(args)
  } else {
    return undefined
  }
  return async (script, keys, args) => {
    const rest = [String(keys.length), ...keys, ...args]
    try {
      return await send(keys[0]!, ['EVALSHA', script.sha, ...rest])
    } catch (error) {
      if (!/NOSCRIPT/.test(error instanceof Error ? error.message : String(error))) throw error
      return send(keys[0]!, ['EVAL', script.source, ...rest])
    }
  }
}

/** The class names of an error and its ancestors: the libraries do not all set `name`. */
function classNames(error: unknown): string[] {
  const names: string[] = []
  let proto = typeof error === 'object' && error !== null ? Object.getPrototypeOf(error) : null
  while (proto !== null && proto !== Object.prototype) {
    const name = (proto as { constructor?: { name?: unknown } }).constructor?.name
    if (typeof name === 'string') names.push(name)
    proto = Object.getPrototypeOf(proto)
  }
  return names
}

/**
 * Whether `error` says the budget is set up wrong rather than Redis away: Redis answered with an
 * error (ioredis's `ReplyError`, node-redis's `ErrorReply`: NOPERM, WRONGTYPE, a script error,
 * OOM), or the node-redis client was closed by the application (`ClientClosedError`).
 */
export function isConfigurationError(error: unknown): boolean {
  return classNames(error).some(
    (name) => name === 'ReplyError' || name === 'ErrorReply' || name === 'ClientClosedError',
  )
}
