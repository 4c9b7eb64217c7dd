import { createServer, type Server } from 'node:http'
import { createAdaptorServer } from '@hono/node-server'
import express, { type NextFunction, type Request, type Response } from 'express'
import Fastify from 'fastify'
import { type Context, Hono } from 'hono'
import { lifeguardOf } from '../../src/compat/lifeguard-of.js'
import { requestScope as expressScope } from '../../src/integrations/express.js'
import fastifyLifeguard from '../../src/integrations/fastify.js'
import { requestScope as honoScope } from '../../src/integrations/hono.js'
import { BACKLOG, type Framework, type Route } from './framework-suite.js'

/** A route's scope options, as each framework's per-route option takes them. */
function scopeOptions(route: Route) {
  return { transaction: route.transaction ?? false, cancelOnAbort: route.cancelOnAbort ?? false }
}

/**
 * The test apps of the request-scope suites, one per framework, each mounting lifeguard's
 * integration in the framework's own idiom: `framework-suite.ts` and `abandoned-requests.test.ts`
 * serve their routes through them.
 */
export const expressFramework: Framework = {
  name: 'express',
  serve(pool, routes) {
    const app = express()
    app.use(express.json())
    app.use(expressScope(pool))
    for (const route of routes) {
      const own =
        route.transaction || route.cancelOnAbort ? [expressScope(pool, scopeOptions(route))] : []
      const method = route.method === 'GET' ? 'get' : 'post'
      app[method](route.path, ...own, async (req: Request, res: Response) => {
        res.json(await route.handle({ db: req.db }))
      })
    }
    app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
      res.status(500).json({ error: error.message })
    })
    return new Promise<Server>((resolve) => {
      const server = app.listen(0, '127.0.0.1', BACKLOG, () => resolve(server))
    })
  },
}

/** Fastify with the lifeguard plugin; a route's transaction is its `config.lifeguard`. */
export const fastifyFramework: Framework = {
  name: 'fastify',
  async serve(pool, routes) {
    const app = Fastify()
    await app.register(fastifyLifeguard, { pool })
    for (const route of routes) {
      app.route({
        method: route.method,
        url: route.path,
        config: { lifeguard: scopeOptions(route) },
        handler: (request) => route.handle({ db: request.db }),
      })
    }
    await app.listen({ port: 0, host: '127.0.0.1', backlog: BACKLOG })
    return app.server as Server
  },
}

/** Hono on @hono/node-server. */
export const honoFramework: Framework = {
  name: 'hono',
  serve(pool, routes) {
    const app = new Hono()
    app.use(honoScope(pool))
    for (const route of routes) {
      const method = route.method === 'GET' ? 'get' : 'post'
      const handler = async (c: Context) => c.json(await route.handle({ db: c.var.db }))
      if (route.transaction || route.cancelOnAbort) {
        app[method](route.path, honoScope(pool, scopeOptions(route)), handler)
      } else {
        app[method](route.path, handler)
      }
    }
    app.onError((error, c) => c.json({ error: error.message }, 500))
    // createAdaptorServer rather than serve(), which cannot pass a listen backlog.
    const server = createAdaptorServer({ fetch: app.fetch }) as Server
    return new Promise<Server>((resolve) => {
      server.listen(0, '127.0.0.1', BACKLOG, () => resolve(server))
    })
  },
}

/**
 * No framework: Node's own `http` server over the core scope API, as docs/frameworks.md ("Other
 * servers and jobs") shows it: a scope per request, ended when the response is finished and
 * aborted (`scope.abort()`) when it closes unfinished.
 */
export const coreFramework: Framework = {
  name: 'core',
  serve(pool, routes) {
    const core = lifeguardOf(pool)
    const server = createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname
      const route = routes.find((r) => r.method === req.method && r.path === path)
      req.resume()
      if (route === undefined) {
        res.writeHead(404).end()
        return
      }
      const scope = core.openScope(scopeOptions(route))
      res.once('close', () => {
        ;(res.writableFinished ? scope.end('rollback') : scope.abort()).catch(() => {})
      })
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
      }
      scope
        .run(() => route.handle({ db: scope }))
        .then(
          async (body) => {
            try {
              if (scope.transaction) await scope.end('commit')
              send(200, body)
            } catch (error) {
              send(500, { error: (error as Error).message })
            }
          },
          async (error: unknown) => {
            await scope.end('rollback')
            send(500, { error: (error as Error).message })
          },
        )
    })
    return new Promise<Server>((resolve) => {
      server.listen(0, '127.0.0.1', BACKLOG, () => resolve(server))
    })
  },
}
