import type { Client } from 'pg'

/** The parts of pg's `Client` that pipelining reads or sets; pg's typings leave them out. */
interface PipelineInternals {
  /** pg ≥ 8.23: whether queries are sent while earlier ones are still running. */
  pipeline?: boolean
  /** pg ≥ 8.23, in pipeline mode: the queries sent and not yet answered. */
  _sentQueryQueue?: unknown[]
  query: (...args: unknown[]) => unknown
  connection?: { stream?: { cork?: () => void; uncork?: () => void } }
}

/** The `pipeline` setting each client was made with, to put back when the pool stops pipelining. */
const madeWith = new WeakMap<object, boolean>()

/** The streams corked until the end of the current tick. */
const corked = new WeakSet<object>()

function uncork(stream: { uncork?: () => void }): void {
  corked.delete(stream)
  stream.uncork?.()
}

/**
 * Makes `client` gather what its queries write during one tick of the event loop into one write
 * while it pipelines: a burst of statements sent together then costs one system call, not one each
 * (postgres.js writes the same way). Installed once per client, on its own `query`.
 */
function batchWrites(client: PipelineInternals): void {
  // A `query` of the client's own (the dialect's guard behind a pooler) is kept; otherwise the
  // class's is looked up at each call, so that instrumentation patching it later still runs.
  const own = Object.hasOwn(client, 'query') ? client.query : undefined
  const batched = function (this: PipelineInternals, ...args: unknown[]): unknown {
    const query = own ?? (Object.getPrototypeOf(this) as PipelineInternals).query
    if (this.pipeline === true) {
      const stream = this.connection?.stream
      if (stream !== undefined && !corked.has(stream) && typeof stream.cork === 'function') {
        corked.add(stream)
        stream.cork()
        process.nextTick(uncork, stream)
      }
    }
    return query.apply(this, args)
  }
  Object.defineProperty(client, 'query', { value: batched, writable: true, configurable: true })
}

/**
 * Turns pg's pipeline mode on or off for one client, for the pool's sharing callers (see
 * `Dialect.pipeline`): on, pg sends each query at once with its own Sync, so that a failing one
 * fails alone; off, the client goes back to the setting it was made with. Returns whether the
 * client pipelines now: `false` on a pg older than 8.23, which has no pipeline mode, and when
 * `allowed` is false (a pooler in front that may not take a pipeline).
 */
export function pgPipeline(client: Client, on: boolean, allowed: boolean): boolean {
  const c = client as unknown as PipelineInternals
  if (!Array.isArray(c._sentQueryQueue)) return false
  if (!madeWith.has(c)) {
    madeWith.set(c, c.pipeline === true)
    if (allowed) batchWrites(c)
  }
  if (!on) {
    c.pipeline = madeWith.get(c) === true
    return false
  }
  if (!allowed) return false
  c.pipeline = true
  return true
}
