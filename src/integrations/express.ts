import type { IncomingMessage, ServerResponse } from 'node:http'
import type { RequestScope, RequestScopeOptions } from '../core/request-scope.js'
import { type PoolSource, poolFrom } from './pool-source.js'
import type { ScopedConnection } from './scoped-connection.js'

declare global {
  // Express's own way to type what middleware adds to a request.
  namespace Express {
    interface Request {
      /**
       * The request's hold on the pool, opened by `requestScope()`: `req.db.use(fn)` runs `fn`
       * with the request's connection, borrowed on first use and returned when the response
       * ends.
       */
      db: RequestScope<ScopedConnection>
    }
  }
}

/** Express's `next`, as much of it as the middleware calls. */
type Next = (error?: unknown) => void

/** A request as the middleware sees it (Express's `Request` is one). */
type ScopedRequest = IncomingMessage & { db?: RequestScope<ScopedConnection> }

/**
 * An Express middleware: it is typed by Node's own request and response, the subset of
 * Express's that it uses, so that `express` stays an optional peer dependency.
 */
export type RequestScopeMiddleware = (req: IncomingMessage, res: ServerResponse, next: Next) => void

// Headers that described the body the handler meant to send, before its commit failed.
const BODY_HEADERS = ['content-length', 'content-type', 'etag']

/**
 * Gives every request its own hold on `pool`, Django's connection-per-request: a connection is
 * borrowed when the request first queries and returned when the response is finished or the
 * client goes away (`res` `'close'`), after rolling back whatever the request left open.
 * `req.db` is the request's {@link RequestScope}, and inside the request's handlers the pool's
 * own `acquire()`/`use()` join it, as do a `lifeguard/pg` or `lifeguard/mysql2` pool and every ORM
 * over them.
 *
 * When the client goes away before the response is finished, the request is abandoned
 * (`req.db.abort()`): its acquires still waiting reject at once with an `AbortError`, so do the
 * ones it starts later, and `req.db.signal` aborts, for the handler to pass on.
 *
 * With `{ transaction: true }` (on a route, or on the whole app) the request runs in one
 * transaction, committed before the response leaves when its status is below 400 and rolled
 * back otherwise. A failed commit turns the response into an error through `next(error)`; if
 * the handler had already streamed part of the body, the response is destroyed instead, so a
 * client never reads a success that was not committed.
 *
 * Mount it after body parsers: a parser that resumes in a stream event loses the async context
 * (expressjs/express#4396), while `req.db` always works.
 *
 * @param pool - a core `Pool`, a `lifeguard/pg` `Pool`, or a `lifeguard/mysql2` pool.
 * @param options - `transaction`: wrap each request in a transaction; `cancelOnAbort`: cancel
 *   the statement an abandoned request is running (see `RequestScopeOptions`). Checked here: a
 *   bad option throws `InvalidOptionError` at once.
 *
 * @example
 * ```ts
 * import express from 'express'
 * import { Pool } from 'lifeguard/pg'
 * import { requestScope } from 'lifeguard/express'
 *
 * const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 10 })
 * const app = express()
 * app.use(requestScope(pool))
 * app.get('/users/:id', async (req, res) => {
 *   const { rows } = await pool.query('SELECT * FROM users WHERE id = $1', [req.params.id])
 *   res.json(rows[0])
 * })
 * app.post('/orders', requestScope(pool, { transaction: true }), createOrder)
 * ```
 */
export function requestScope<C = ScopedConnection>(
  pool: PoolSource<C>,
  options?: RequestScopeOptions,
): RequestScopeMiddleware {
  const core = poolFrom(pool, 'requestScope', options)
  return function lifeguardRequestScope(req: ScopedRequest, res, next): void {
    const scope = core.openScope(options) as RequestScope<unknown> as RequestScope<ScopedConnection>
    req.db = scope
    // 'close' comes after 'finish', and also when the client goes away: a transaction not yet
    // committed by then is rolled back, and a request abandoned before its response finished
    // takes no more connections (`scope.abort()`).
    res.once('close', () => {
      ;(res.writableFinished ? scope.end('rollback') : scope.abort()).catch(() => {})
    })
    if (scope.transaction) commitBeforeSending(res, scope, next)
    scope.run(next)
  }
}

/**
 * Holds back the end of the response until the transaction is committed (status below 400) or
 * rolled back, so that the client never hears of a success that did not commit.
 */
function commitBeforeSending(res: ServerResponse, scope: RequestScope<unknown>, next: Next): void {
  const end = res.end
  let deferred = false
  res.end = function deferredEnd(this: ServerResponse, ...args: unknown[]) {
    // Another end() while the commit runs is what Node makes of one on an ended response: nothing.
    if (deferred) return res
    deferred = true
    scope.end(res.statusCode < 400 ? 'commit' : 'rollback').then(
      () => {
        res.end = end
        ;(end as (...a: unknown[]) => ServerResponse).apply(res, args)
      },
      (error: unknown) => {
        res.end = end
        if (res.headersSent) return res.destroy(error as Error)
        for (const name of BODY_HEADERS) res.removeHeader(name)
        res.statusCode = 500
        next(error)
      },
    )
    return res
  } as ServerResponse['end']
}
