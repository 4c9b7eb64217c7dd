import type { FastifyInstance, FastifyPluginAsync } from 'fastify'
import type { RequestScope, RequestScopeOptions } from '../core/request-scope.js'
import { type PoolSource, poolFrom } from './pool-source.js'
import type { ScopedConnection } from './scoped-connection.js'

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * The request's hold on the pool, opened by the lifeguard plugin: `request.db.use(fn)` runs
     * `fn` with the request's connection, borrowed on first use and returned with the reply.
     */
    db: RequestScope<ScopedConnection>
  }
  interface FastifyContextConfig {
    /** lifeguard's per-route settings: `{ transaction: true }` wraps the route in a transaction. */
    lifeguard?: RequestScopeOptions
  }
}

/** The options of the lifeguard Fastify plugin. */
export interface FastifyLifeguardOptions {
  /** A core `Pool`, a `lifeguard/pg` `Pool`, or a `lifeguard/mysql2` pool. */
  pool: PoolSource<unknown>
  /**
   * Wraps every route in a transaction unless its `config.lifeguard.transaction` says otherwise.
   * @defaultValue false
   */
  transaction?: boolean | undefined
  /**
   * Cancels the statement an abandoned request is running (see `RequestScopeOptions`), unless a
   * route's `config.lifeguard.cancelOnAbort` says otherwise.
   * @defaultValue false
   */
  cancelOnAbort?: boolean | undefined
}

/**
 * Marks `plugin` as fastify-plugin would, without depending on it (so `npm install lifeguard
 * fastify` is enough): Fastify reads these registered symbols when the plugin is registered.
 * `skip-override` keeps the plugin out of a child context, so `request.db` and the hooks reach the
 * whole app; `plugin-meta` gives the Fastify versions it supports (checked at `register`) and the
 * name other plugins can list in their `dependencies`; `display-name` names it in errors and in
 * `app.printPlugins()`.
 */
function unencapsulated<T extends (...args: never[]) => unknown>(
  plugin: T,
  meta: { fastify: string; name: string },
): T {
  Object.assign(plugin, {
    [Symbol.for('skip-override')]: true,
    [Symbol.for('fastify.display-name')]: meta.name,
    [Symbol.for('plugin-meta')]: meta,
  })
  return plugin
}

/**
 * The lifeguard Fastify plugin, not encapsulated, so it decorates the whole app: each
 * request gets its own hold on the pool as `request.db`, a {@link RequestScope} that borrows a
 * connection on the first query and returns it when the reply is sent or the client goes away,
 * rolling back whatever the request left open. Inside handlers, the pool's own `acquire()` and
 * `use()`, a `lifeguard/pg` or `lifeguard/mysql2` pool and the ORMs over them join the request's
 * connection.
 *
 * When the client goes away before the reply is finished, the request is abandoned
 * (`request.db.abort()`): its acquires still waiting reject at once with an `AbortError`, so do
 * the ones it starts later, and `request.db.signal` aborts, for the handler to pass on.
 *
 * A route with `config: { lifeguard: { transaction: true } }` (or every route, with the plugin's
 * `transaction: true`) runs in one transaction, as with @fastify/postgres: committed in
 * `onSend`, before the reply leaves, when the status is below 400, and rolled back otherwise.
 * A failed commit becomes the reply's error.
 *
 * @example
 * ```ts
 * import Fastify from 'fastify'
 * import { Pool } from 'lifeguard/pg'
 * import fastifyLifeguard from 'lifeguard/fastify'
 *
 * const app = Fastify()
 * await app.register(fastifyLifeguard, { pool: new Pool({ connectionString }) })
 * app.post('/orders', { config: { lifeguard: { transaction: true } } }, async (request) => {
 *   return request.db.use((client) => client.query('INSERT INTO orders DEFAULT VALUES'))
 * })
 * ```
 */
export const fastifyLifeguard: FastifyPluginAsync<FastifyLifeguardOptions> = unencapsulated(
  async function lifeguard(fastify: FastifyInstance, options: FastifyLifeguardOptions) {
    const fallback: RequestScopeOptions = {
      transaction: options.transaction ?? false,
      cancelOnAbort: options.cancelOnAbort ?? false,
    }
    const pool = poolFrom(options.pool, 'fastifyLifeguard', fallback)
    fastify.decorateRequest('db', null as unknown as RequestScope<ScopedConnection>)

    fastify.addHook('onRoute', (route) => {
      // A route's own options are checked when it is declared.
      const own = route.config?.lifeguard
      if (own !== undefined) {
        poolFrom(pool, 'fastifyLifeguard', own)
        // A route's own settings override the plugin's, key by key.
        const merged: Record<string, unknown> = { ...fallback }
        for (const [key, value] of Object.entries(own)) if (value !== undefined) merged[key] = value
        route.config = { ...route.config, lifeguard: merged }
      }
    })

    fastify.addHook('onRequest', (request, reply, done) => {
      const scope = pool.openScope(request.routeOptions.config?.lifeguard ?? fallback)
      request.db = scope as RequestScope<unknown> as RequestScope<ScopedConnection>
      // After the reply, or when the client goes away: a transaction not committed by then is
      // rolled back, and a request abandoned before its reply finished takes no more connections.
      const raw = reply.raw
      raw.once('close', () => {
        ;(raw.writableFinished ? scope.end('rollback') : scope.abort()).catch(() => {})
      })
      scope.run(done)
    })

    // A body is read in stream events, outside the context set above: enter it again.
    fastify.addHook('preValidation', (request, _reply, done) => {
      request.db.run(done)
    })

    fastify.addHook('onSend', async (request, reply, payload) => {
      const scope = request.db as RequestScope<ScopedConnection> | null
      // Runs again for the error reply of a failed commit: that one is already settled. No scope:
      // an earlier onRequest hook replied (or threw) before this plugin's opened one.
      if (scope === null || !scope.transaction || scope.ended) return payload
      await scope.end(reply.statusCode < 400 ? 'commit' : 'rollback')
      return payload
    })
  },
  { fastify: '>=4', name: 'lifeguard' },
)

export default fastifyLifeguard
