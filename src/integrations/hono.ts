import type { EventEmitter } from 'node:events'
import type { MiddlewareHandler } from 'hono'
import type { RequestScope, RequestScopeOptions } from '../core/request-scope.js'
import { type PoolSource, poolFrom } from './pool-source.js'
import type { ScopedConnection } from './scoped-connection.js'

declare module 'hono' {
  interface ContextVariableMap {
    /**
     * The request's hold on the pool, set by `requestScope()`: `c.var.db.use(fn)` runs `fn` with
     * the request's connection, borrowed on first use and returned with the response.
     */
    db: RequestScope<ScopedConnection>
  }
}

/** The bindings of @hono/node-server: Node's response, whose `'close'` ends the scope. */
interface NodeBindings {
  outgoing?: (EventEmitter & { readonly writableFinished?: boolean }) | undefined
}

/**
 * A Hono middleware that gives every request its own hold on `pool` as `c.var.db`, a
 * {@link RequestScope}: a connection is borrowed when the request first queries and returned
 * with the response, after rolling back whatever the request left open. Inside handlers, the
 * pool's own `acquire()` and `use()`, a `lifeguard/pg` or `lifeguard/mysql2` pool and the ORMs over
 * them join the request's connection.
 *
 * On @hono/node-server the connection goes back when Node's response closes (`c.env.outgoing`),
 * so a streamed body keeps it to the end, and an aborted request returns it too. On other
 * runtimes it goes back when the handlers are done.
 *
 * When the client goes away before the response is finished (on @hono/node-server, Node's
 * response closes unfinished; elsewhere, `c.req.raw.signal` aborts while handlers run), the
 * request is abandoned (`c.var.db.abort()`): its acquires still waiting reject at once with an
 * `AbortError`, so do the ones it starts later, and `c.var.db.signal` aborts, for the handler to
 * pass on.
 *
 * With `{ transaction: true }` (mount it on a route for a per-route transaction) the request
 * runs in one transaction: committed before the response leaves when its status is below 400
 * and no error was thrown, and rolled back otherwise. A failed commit is thrown, so `app.onError`
 * answers instead.
 *
 * @param pool - a core `Pool`, a `lifeguard/pg` `Pool`, or a `lifeguard/mysql2` pool.
 * @param options - `transaction`: wrap each request in a transaction; `cancelOnAbort`: cancel
 *   the statement an abandoned request is running (see `RequestScopeOptions`). Checked here: a
 *   bad option throws `InvalidOptionError` at once.
 *
 * @example
 * ```ts
 * import { Hono } from 'hono'
 * import { requestScope } from 'lifeguard/hono'
 *
 * const app = new Hono()
 * app.use(requestScope(pool))
 * app.get('/now', async (c) => c.json(await c.var.db.use((db) => db.query('SELECT now()'))))
 * app.post('/orders', requestScope(pool, { transaction: true }), createOrder)
 * ```
 */
export function requestScope<C = ScopedConnection>(
  pool: PoolSource<C>,
  options?: RequestScopeOptions,
): MiddlewareHandler {
  const core = poolFrom(pool, 'requestScope', options)
  return async function lifeguardRequestScope(c, next) {
    const scope = core.openScope(options) as RequestScope<unknown> as RequestScope<ScopedConnection>
    c.set('db', scope)
    const outgoing = (c.env as NodeBindings | undefined)?.outgoing
    // Elsewhere, the request's own signal says that the client went away, while handlers run.
    const signal = outgoing === undefined ? c.req.raw.signal : undefined
    const abandon = () => {
      scope.abort().catch(() => {})
    }
    if (outgoing !== undefined) {
      outgoing.once('close', () => {
        if (outgoing.writableFinished === false) abandon()
        else scope.end('rollback').catch(() => {})
      })
    } else if (signal?.aborted) abandon()
    else signal?.addEventListener('abort', abandon, { once: true })
    try {
      await scope.run(next)
    } catch (error) {
      await scope.end('rollback')
      throw error
    } finally {
      signal?.removeEventListener('abort', abandon)
    }
    if (scope.transaction) {
      await scope.end(c.error === undefined && c.res.status < 400 ? 'commit' : 'rollback')
    } else if (outgoing === undefined) {
      await scope.end()
    }
  }
}
